"""Which device to run on, how to time it, what it can do at best, and what it is.

`device_ops` gives the harness what differs between devices: how a block is timed, what
ends a step, and the schedule that decides when warm-up and timing are over. XLA's are in
`coatbench.xla`; the rest are here.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from functools import cache

import torch

from coatbench.errors import CoatbenchError
from coatbench.options import Budget, DeviceKind
from coatbench.results import Env
from coatbench.stats import summarize


def resolve_device(kind: DeviceKind) -> torch.device:
    """The device to measure on. `auto`: a CUDA GPU, else a TPU (torch_xla and a TPU
    attached), else the CPU. Asking for XLA checks the torch/torch_xla pairing first."""
    from coatbench import xla

    if kind is DeviceKind.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        kind = DeviceKind.XLA if xla.installed() and xla.tpu_present() else DeviceKind.CPU
    if kind is DeviceKind.CUDA and not torch.cuda.is_available():
        raise CoatbenchError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu or auto")
    if kind is DeviceKind.XLA:
        xla.check_install()
    return torch.device(kind.value)


def device_ops(device: torch.device):
    """Timing hooks and schedule for `device`: `xla.XlaOps` (defaults; a launcher makes its
    own for the processes it starts) or `DeviceOps`."""
    if device.type == "xla":
        from coatbench.xla import XlaOps

        return XlaOps()
    return DeviceOps(device)


class AdaptiveSchedule:
    """One process, deciding by its own clock: blocks of about `budget.block_time`; warm-up
    until two blocks in a row agree; timing until the 95% CI of the median is within the
    target (after the minimum time), or the maximum time is spent."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.timeout = budget.timeout

    def block_steps(self, step_s: float) -> int:
        return max(1, round(self.budget.block_time / step_s))

    def warmup_over(self, blocks: int, elapsed_s: float) -> bool:
        return elapsed_s >= self.budget.max_warmup_time

    def warm(self, block_s: float, previous_s: float, compiled: bool) -> bool:
        return abs(block_s - previous_s) <= self.budget.warmup_tolerance * previous_s

    def timing_done(self, samples: list[float], timed_s: float) -> bool:
        if len(samples) < self.budget.min_samples:
            return False
        if timed_s >= self.budget.max_time:
            return True  # the CI did not get narrow enough in time: report it as it is
        return timed_s >= self.budget.min_time and summarize(samples).ci_halfwidth_rel <= self.budget.target_ci


class DeviceOps:
    """Wall time of a block of steps, closed by a device synchronisation.

    On CUDA the block is bracketed by events recorded on the stream, so host-side
    launch jitter before the first kernel is not counted; `stop` waits for the last one.
    In the timed window it also notes, per block, the host's seconds to issue the steps and how
    long the device ran on after the last issue (`host_timing`): the launch queue is finite, so a
    host ahead of the device waits too, and only that tail tells a device that had work queued
    from one that waited on the host. Eager CUDA and CPU steps need nothing after each step and
    never recompile.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.timing = False
        self.issue_s: list[float] = []  # per timed block (CUDA)
        self.tail_s: list[float] = []

    def schedule(self, budget: Budget) -> AdaptiveSchedule:
        return AdaptiveSchedule(budget)

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        """Seconds since `start`, once the device has finished the block."""
        if not self.cuda:
            return time.perf_counter() - self._t0
        issued = time.perf_counter()
        self._end.record()
        self._end.synchronize()
        if self.timing:
            self.issue_s.append(issued - self._t0)
            self.tail_s.append(time.perf_counter() - issued)
        return self._begin.elapsed_time(self._end) / 1e3

    def host_timing(self) -> dict | None:
        """The timed blocks' issue and tail seconds (`results.HostTiming`); None off CUDA."""
        return {"issue_s": self.issue_s, "tail_s": self.tail_s} if self.cuda and self.issue_s else None

    def after_step(self) -> None:
        pass

    def wrap_model(self, model, training: bool):
        return model  # one device: nothing between the steps and the model

    def agree(self, value):
        return value  # one process decides alone

    def optimizer_step(self, optimizer, scaler) -> None:
        scaler.step(optimizer)
        scaler.update()

    def barrier(self) -> None:
        pass

    def compile_count(self) -> int:
        return 0

    def open_window(self) -> None:
        self.timing = True

    def close_window(self) -> None:
        """Nothing to check: eager and compiled CPU/GPU steps are timed after their compilation."""
        self.timing = False
        return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """Peak bytes allocated by tensors on the device; None where torch cannot tell (CPU)."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# Dense (no sparsity) tensor-core peaks in TFLOP/s per device, from the vendors' datasheets.
# Matched against the device name, first match wins; fp32 means TF32 tensor cores are off.
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "fp16": 989.4, "fp32": 66.9}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "fp16": 362.1, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
    ("A10G", {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
)


@dataclass(frozen=True)
class TpuPeak:
    """A TPU generation's bf16 peak (Google Cloud's datasheets), per chip and per core, and
    what one XLA device is there: a core (v2, v3) or a whole chip (v4 and v5p run their two
    cores as one "megacore" device; v5e and v6e have one core)."""

    per_chip: float
    cores_per_chip: int
    devices_per_chip: int

    @property
    def per_core(self) -> float:
        return self.per_chip / self.cores_per_chip

    @property
    def per_device(self) -> float:
        return self.per_chip / self.devices_per_chip


TPU_PEAKS = {
    "v2": TpuPeak(45.0, 2, 2),
    "v3": TpuPeak(123.0, 2, 2),
    "v4": TpuPeak(275.0, 2, 1),
    "v5e": TpuPeak(197.0, 1, 1),
    "v5p": TpuPeak(459.0, 2, 1),
    "v6e": TpuPeak(918.0, 1, 1),
}


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The datasheet peak of one device (what a row's per-core figure runs on): a GPU, or one
    XLA device of a TPU ("XLA:TPU v4"; bf16 only)."""
    if device_name.startswith("XLA:TPU "):
        peak = TPU_PEAKS.get(device_name.removeprefix("XLA:TPU "))
        return peak.per_device if peak is not None and dtype == "bf16" else None
    for pattern, peaks in GPU_PEAK_TFLOPS:
        if pattern in device_name:
            return peaks.get(dtype)
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def git_sha() -> str | None:
    """The commit of the coatbench source tree in use, when it runs from a git checkout
    (None for an installed copy, even one installed inside some other repository).
    A copy shipped without its .git (to a remote machine, say) names it in COATBENCH_GIT_SHA."""
    if os.environ.get("COATBENCH_GIT_SHA"):
        return os.environ["COATBENCH_GIT_SHA"]
    package_dir = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package_dir, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or os.path.dirname(package_dir) != os.path.realpath(lines[0]):
        return None
    return lines[1]


def nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def fingerprint(device: torch.device, device_count: int = 1, name: str | None = None) -> Env:
    """The environment of a run on `device_count` devices of `device`'s type; `name` where only
    a worker can tell it (XLA)."""
    from coatbench import __version__

    cuda = device.type == "cuda"
    return Env(
        coatbench=__version__,
        git_sha=git_sha(),
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        driver=nvidia_driver() if cuda else None,
        device_type=device.type,
        device_name=name or device_name(device),
        device_count=device_count,
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
    )

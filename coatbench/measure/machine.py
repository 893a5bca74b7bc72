"""What a machine is and what it can do at best: the fingerprint every row keeps (`Env`), device
names (a GPU's, a CPU's, an XLA device's as its worker sees it) and the datasheet peaks that MFU
is computed against.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from functools import cache

import torch

from coatbench.results import Env

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
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # coatbench/, above measure/
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


# Accelerator types whose generation is spelt otherwise than the datasheets' (TPU_PEAKS)
TPU_TYPE_NAMES = {"v5litepod": "v5e", "v5lite": "v5e", "v6litepod": "v6e"}


def xla_device_name(info: dict) -> str:
    """ "XLA:TPU v5p" or "XLA:CPU", from `measure.xla.platform()` (known only inside an XLA child): the
    generation from the accelerator type where known, else "v" and the version number."""
    if info.get("tpu_version") is None:
        return f"XLA:{info['pjrt_device']}"
    generation = info.get("tpu_type") or f"v{info['tpu_version']}"
    return f"XLA:{info['pjrt_device']} {TPU_TYPE_NAMES.get(generation, generation)}"

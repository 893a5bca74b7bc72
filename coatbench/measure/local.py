"""Which device to run on and how to time it (what it is and can do at best: `machine`).

`device_ops` gives the harness what differs between devices: how a block is timed, what
ends a step, and the schedule that decides when warm-up and timing are over. XLA's are in
`coatbench.measure.xla`; the rest are here.
"""

from __future__ import annotations

import time

import torch

from coatbench.errors import CoatbenchError
from coatbench.measure.ops import Ops
from coatbench.settings import Budget, DeviceKind
from coatbench.stats import summarize


def resolve_device(kind: DeviceKind) -> torch.device:
    """The device to measure on. `auto`: a CUDA GPU, else a TPU (torch_xla and a TPU
    attached), else the CPU. Asking for XLA checks the torch/torch_xla pairing first."""
    from coatbench.measure import xla

    if kind is DeviceKind.AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        kind = DeviceKind.XLA if xla.installed() and xla.tpu_present() else DeviceKind.CPU
    if kind is DeviceKind.CUDA and not torch.cuda.is_available():
        raise CoatbenchError("--device cuda asked for, but torch sees no CUDA GPU: use --device cpu or auto")
    if kind is DeviceKind.XLA:
        xla.check_install()
    return torch.device(kind.value)


def device_ops(device: torch.device) -> Ops:
    """Timing hooks and schedule for `device`: `measure.xla.XlaOps` (defaults; a launcher makes its
    own for the processes it starts) or `DeviceOps`."""
    if device.type == "xla":
        from coatbench.measure.xla import XlaOps

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

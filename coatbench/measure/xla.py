"""The XLA backend (TPUs) through torch_xla, tested on its CPU backend (PJRT_DEVICE=CPU).

A leaf: timing, metrics and the step schedule on one XLA device. Starting one process per
core is the launcher's job (`run.launch`, `run.child`), which hands each core what it shares with
its siblings. What differs from CUDA, and why:
- XLA traces lazily: every step ends with `torch_xla.sync()` to cut the graph, and a
  block is timed only once `xm.wait_device_ops()` says the device is done (sync alone is
  asynchronous and would time the dispatch).
- The first steps compile; warm-up lasts until the CompileTime count stops growing.
- A recompilation or an aten fallback (an op XLA runs on the host) inside the timed window
  makes the row suspect: `XlaOps.close_window` counts both from torch_xla.debug.metrics.
- Training all-reduces gradients with `xm.optimizer_step`, so the per-core figure is a
  data-parallel one (on a TPU; see `XlaOps.gradient_allreduce` for the CPU backend). Every
  process follows the same step schedule (`LockStepSchedule`), as collectives require.

Only this module imports torch_xla, and only when the XLA device is asked for.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

import torch

from coatbench.errors import CoatbenchError


def _major_minor(text: str) -> str:
    return ".".join(text.split("+")[0].split(".")[:2])


def check_pair(torch_version: str, xla_version: str) -> None:
    """torch_xla runs only on the torch of its own release (its wheel does not say so)."""
    if _major_minor(xla_version) != _major_minor(torch_version):
        raise CoatbenchError(
            f"torch_xla {xla_version} does not run on torch {torch_version}: install the pair, "
            "pip install torch==2.9.0 torch_xla==2.9.0 (or pip install 'coatbench[xla]')"
        )


def check_install() -> None:
    """torch_xla importable, and paired with the torch it was built for."""
    try:
        xla_version = version("torch_xla")
    except PackageNotFoundError:
        raise CoatbenchError(
            "--device xla needs torch_xla: pip install 'coatbench[xla]' (torch 2.9.0 + torch_xla 2.9.0)"
        ) from None
    check_pair(torch.__version__, xla_version)


def tpu_present() -> bool:
    """A TPU is attached (what --device auto looks for); the XLA CPU backend does not count."""
    if os.environ.get("PJRT_DEVICE", "").upper() == "TPU":
        return True
    return os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0")


def installed() -> bool:
    try:
        version("torch_xla")
    except PackageNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class LockStep:
    """The schedule every core's process follows step for step: counts only, no clock."""

    block_steps: int = 5
    max_warmup_blocks: int = 20  # at most; warm-up ends once `quiet_blocks` in a row compiled nothing
    quiet_blocks: int = 3
    timed_blocks: int = 10


@dataclass(frozen=True)
class XlaOptions:
    strict: bool = False  # fail a cell that recompiles or falls back inside the timed window
    cache_dir: str | None = None  # persistent compilation cache
    lock_step: LockStep = field(default_factory=LockStep)


class LockStepSchedule:
    """With one process per core every process must run the same number of steps, or their
    gradient all-reduces would wait for each other: decisions depend on step and compile
    counts only, never on a process's own clock (so there is no timeout either)."""

    timeout = None

    def __init__(self, lock_step: LockStep):
        self.lock_step = lock_step
        self.quiet = 0  # warm-up blocks in a row that compiled nothing

    def block_steps(self, step_s: float) -> int:
        return self.lock_step.block_steps

    def warmup_over(self, blocks: int, elapsed_s: float) -> bool:
        return blocks >= self.lock_step.max_warmup_blocks

    def warm(self, block_s: float, previous_s: float, compiled: bool) -> bool:
        self.quiet = 0 if compiled else self.quiet + 1
        return self.quiet >= self.lock_step.quiet_blocks

    def timing_done(self, samples: list[float], timed_s: float) -> bool:
        return len(samples) >= self.lock_step.timed_blocks


class ThreadBarrier:
    """Where the device threads of one worker process meet after warm-up.

    The CPU backend runs a process's devices as threads, and the metrics are the process's:
    a slower thread compiling its graphs would show up in a faster one's timed window. The
    launcher passes one instance to every worker; unpickled once per process, it is shared
    by that process's threads (the lock and barrier are made anew on unpickling)."""

    def __init__(self, timeout_s: float = 900.0):
        self.timeout_s = timeout_s  # a sibling that died must not hang the others
        self._lock, self._barrier = threading.Lock(), None

    def __getstate__(self) -> dict:
        return {"timeout_s": self.timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["timeout_s"])

    def wait(self, parties: int) -> None:
        if parties < 2:
            return
        with self._lock:
            if self._barrier is None:
                self._barrier = threading.Barrier(parties)
        self._barrier.wait(timeout=self.timeout_s)


class WindowCheck(NamedTuple):
    info: dict  # compiles and fallbacks in the timed window, and the process's metrics
    problem: str  # what makes the window suspect; empty when it is clean
    fail: bool  # --strict: a suspect window fails the cell


class XlaOps:
    """Timing and metrics on an XLA device (see the module docstring)."""

    def __init__(self, options: XlaOptions = XlaOptions(), barrier: ThreadBarrier | None = None, threads: int = 1):
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.debug.metrics as met
        import torch_xla.runtime as xr

        self.torch_xla, self.xm, self.met = torch_xla, xm, met
        self.options, self.threads = options, threads
        self.timing, self.blocks = False, []  # the timed blocks' (start, end), wall clock
        self._barrier = barrier or ThreadBarrier()
        # All-reduce gradients across cores, as data-parallel training does. Not on the XLA
        # CPU backend: torch_xla 2.9's CPU client cannot rendezvous across processes (a plain
        # xm.all_reduce between the two processes of torch_xla.launch hangs there), so each
        # core steps on its own gradients when testing without a TPU. Decided once, not per step.
        self.gradient_allreduce = xr.world_size() > 1 and xr.device_type() != "CPU"

    def schedule(self, budget) -> LockStepSchedule:
        return LockStepSchedule(self.options.lock_step)

    def start(self) -> None:
        self.xm.wait_device_ops()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        self.xm.wait_device_ops()
        seconds = time.perf_counter() - self._t0
        if self.timing:  # on the wall clock too, for the launcher to put the cores' blocks together
            ended = time.time()
            self.blocks.append((ended - seconds, ended))
        return seconds

    def after_step(self) -> None:
        self.torch_xla.sync()

    def wrap_model(self, model, training: bool):
        return model  # gradients are all-reduced in `optimizer_step`

    def agree(self, value):
        return value  # the lock-step schedule decides by counts, alike in every process

    def optimizer_step(self, optimizer, scaler) -> None:
        # fp16 (the only dtype that scales its loss) is refused for XLA training
        if self.gradient_allreduce:
            self.xm.optimizer_step(optimizer)  # all-reduce, then step
        else:
            optimizer.step()

    def barrier(self) -> None:
        """Wait until every device driven by this process has warmed up (returns at once on a
        TPU, where each process drives one core)."""
        self._barrier.wait(self.threads)

    def compile_count(self) -> int:
        data = self.met.metric_data("CompileTime")
        return int(data[0]) if data else 0

    def fallbacks(self) -> dict[str, int]:
        return {
            name: int(self.met.counter_value(name)) for name in self.met.counter_names() if name.startswith("aten::")
        }

    def open_window(self) -> None:
        self.timing = True
        self._window = self.compile_count(), self.fallbacks()

    def host_timing(self) -> None:
        return None  # a lazy tensor's steps are traced, not issued kernel by kernel

    def close_window(self) -> WindowCheck:
        """A timed window that recompiled or ran ops on the host did not time the steady step."""
        compiles_before, fallbacks_before = self._window
        recompiles = self.compile_count() - compiles_before
        fell_back = {
            op: n - fallbacks_before.get(op, 0) for op, n in self.fallbacks().items() if n > fallbacks_before.get(op, 0)
        }
        info = {"compiles_in_window": recompiles, "fallbacks_in_window": fell_back, **self.summary()}
        info["suspect"] = recompiles > 0 or bool(fell_back)
        problem = (
            f"{recompiles} recompilation(s) and {sum(fell_back.values())} aten fallback(s) inside the timed window"
            if info["suspect"]
            else ""
        )
        return WindowCheck(info, problem, info["suspect"] and self.options.strict)

    def summary(self) -> dict:
        compile_time = self.met.metric_data("CompileTime")
        execute_time = self.met.metric_data("ExecuteTime")
        return {
            "compiles": int(compile_time[0]) if compile_time else 0,
            "compile_s": compile_time[1] / 1e9 if compile_time else 0.0,
            "executions": int(execute_time[0]) if execute_time else 0,
            "cached_graphs": self._cached_graphs(),
            "gradient_allreduce": self.gradient_allreduce,
            "platform": platform(),
        }

    @staticmethod
    def _cached_graphs() -> int | None:
        import torch_xla.runtime as xr

        try:
            return int(xr.get_num_cached_compilation_graph())
        except Exception:  # only some PJRT clients keep a persistent cache
            return None


def platform() -> dict:
    """What runs the graphs: the PJRT device type, the TPU generation and libtpu where present."""
    import torch_xla.runtime as xr

    info = {"pjrt_device": xr.device_type(), "world_size": xr.world_size()}
    if info["pjrt_device"] == "TPU":
        import torch_xla.tpu

        info["tpu_version"] = torch_xla.tpu.version()
        try:  # the accelerator type's generation, e.g. "v5p" of "v5p-8": v5e and v5p share version 5
            from torch_xla._internal.tpu import get_tpu_type

            info["tpu_type"] = get_tpu_type()
        except Exception:
            info["tpu_type"] = None
        try:
            info["libtpu"] = version("libtpu")
        except PackageNotFoundError:
            info["libtpu"] = None
    return info

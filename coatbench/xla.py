"""The XLA backend (TPUs) through torch_xla, tested on its CPU backend (PJRT_DEVICE=CPU).

What differs from CUDA, and why:
- XLA traces lazily: every step ends with `torch_xla.sync()` to cut the graph, and a
  block is timed only once `xm.wait_device_ops()` says the device is done (sync alone is
  asynchronous and would time the dispatch).
- The first steps compile; warm-up lasts until the CompileTime count stops growing.
- A recompilation or an aten fallback (an op XLA runs on the host) inside the timed window
  makes the row suspect: the guard counts both from torch_xla.debug.metrics.
- One process per core via `torch_xla.launch`; training all-reduces gradients with
  `xm.optimizer_step`, so the per-core figure is a data-parallel one (on a TPU; see
  `XlaOps.gradient_allreduce` for the CPU backend). Every process follows the same
  step schedule (harness.measure), as collectives require.

Only this module imports torch_xla, and only when the XLA device is asked for.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import time
from importlib.metadata import PackageNotFoundError, version

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
        raise CoatbenchError("--device xla needs torch_xla: pip install 'coatbench[xla]' (torch 2.9.0 + torch_xla 2.9.0)") from None
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


_launched_threads = 1  # devices this process drives as threads, set by a torch_xla.launch worker
_BARRIERS: dict[int, threading.Barrier] = {}
_BARRIER_LOCK = threading.Lock()
BARRIER_TIMEOUT_S = 900.0


class XlaOps:
    """Timing and metrics on an XLA device (see the module docstring)."""

    deterministic = True  # every core's process must run the same steps (see harness.measure)

    def __init__(self):
        import torch_xla
        import torch_xla.core.xla_model as xm
        import torch_xla.debug.metrics as met

        self.torch_xla, self.xm, self.met = torch_xla, xm, met
        # All-reduce gradients across cores, as data-parallel training does. Not on the XLA
        # CPU backend: torch_xla 2.9's CPU client cannot rendezvous across processes (a plain
        # xm.all_reduce between the two processes of torch_xla.launch hangs there), so each
        # core steps on its own gradients when testing without a TPU. Decided once, not per step.
        import torch_xla.runtime as xr

        self.gradient_allreduce = xr.world_size() > 1 and xr.device_type() != "CPU"

    def start(self) -> None:
        self.xm.wait_device_ops()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        self.xm.wait_device_ops()
        return time.perf_counter() - self._t0

    def after_step(self) -> None:
        self.torch_xla.sync()

    def barrier(self) -> None:
        """Wait until every device driven by this process has warmed up.

        The CPU backend runs its devices as threads of one process, and the metrics are the
        process's: a slower thread compiling its graphs would show up in a faster one's
        timed window. On a TPU each process drives one core and this returns at once."""
        parties = _launched_threads
        if parties > 1:
            with _BARRIER_LOCK:
                barrier = _BARRIERS.setdefault(parties, threading.Barrier(parties))
            barrier.wait(timeout=BARRIER_TIMEOUT_S)  # a sibling that died must not hang this one


    def compile_count(self) -> int:
        data = self.met.metric_data("CompileTime")
        return int(data[0]) if data else 0

    def fallbacks(self) -> dict[str, int]:
        return {name: int(self.met.counter_value(name)) for name in self.met.counter_names() if name.startswith("aten::")}

    def summary(self) -> dict:
        compile_time = self.met.metric_data("CompileTime")
        execute_time = self.met.metric_data("ExecuteTime")
        return {
            "compiles": int(compile_time[0]) if compile_time else 0,
            "compile_s": compile_time[1] / 1e9 if compile_time else 0.0,
            "executions": int(execute_time[0]) if execute_time else 0,
            "cached_graphs": self._cached_graphs(),
            "gradient_allreduce": self.gradient_allreduce,
        }

    @staticmethod
    def _cached_graphs() -> int | None:
        import torch_xla.runtime as xr

        try:
            return int(xr.get_num_cached_compilation_graph())
        except Exception:  # only some PJRT clients keep a persistent cache
            return None

    def optimizer_step(self, optimizer) -> None:
        if self.gradient_allreduce:
            self.xm.optimizer_step(optimizer)  # all-reduce, then step
        else:
            optimizer.step()


def platform() -> dict:
    """What runs the graphs: the PJRT device type, the TPU generation and libtpu where present."""
    import torch_xla.runtime as xr

    info = {"pjrt_device": xr.device_type(), "world_size": xr.world_size()}
    if info["pjrt_device"] == "TPU":
        import torch_xla.tpu

        info["tpu_version"] = torch_xla.tpu.version()
        try:
            info["libtpu"] = version("libtpu")
        except PackageNotFoundError:
            info["libtpu"] = None
    return info


def _worker(index: int, cell, budget, cache_dir: str | None, out_dir: str) -> None:
    import torch_xla
    import torch_xla.runtime as xr

    from coatbench.harness import measure

    global _launched_threads
    _launched_threads = xr.addressable_runtime_device_count()
    if cache_dir:
        xr.initialize_cache(cache_dir, readonly=False)
    result = measure(cell, torch_xla.device(), budget)
    result.devices = xr.world_size()
    result.xla = {**(result.xla or {}), "platform": platform()}
    result.device_name = f"XLA:{xr.device_type()}" + (f" v{result.xla['platform']['tpu_version']}" if "tpu_version" in result.xla["platform"] else "")
    if xr.global_ordinal() == 0:
        with open(os.path.join(out_dir, "rank0.pkl"), "wb") as f:
            pickle.dump(result, f)


def measure_on_all_cores(cell, budget, cache_dir: str | None = None):
    """Measure `cell` on every local XLA core, one process each; rank 0's measurement back."""
    import torch_xla

    from coatbench.harness import Measurement

    with tempfile.TemporaryDirectory(prefix="coatbench-xla-") as out_dir:
        try:
            torch_xla.launch(_worker, args=(cell, budget, cache_dir, out_dir))
        except Exception as error:  # a worker died: a result for this cell, the sweep goes on
            return Measurement(status="failed", message=f"an XLA worker failed: {str(error).splitlines()[0][:200]}")
        path = os.path.join(out_dir, "rank0.pkl")
        if not os.path.exists(path):
            return Measurement(status="failed", message="the XLA worker of rank 0 ended without a result")
        with open(path, "rb") as f:
            return pickle.load(f)

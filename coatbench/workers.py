"""The processes that measure, apart from the one that plans, saves and prints (as pyperf's
workers): on a CPU or a GPU a fresh worker process per round of a sweep, so that what a process
brings with it (its allocator, where its threads landed) is sampled round by round instead of
weighing on every cell alike; on XLA one process per local core (`torch_xla.launch`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from coatbench.errors import CoatbenchError
from coatbench.harness import Cell, Measurement, measure
from coatbench.options import Budget
from coatbench.results import Status
from coatbench.xla import XlaOptions

Job = tuple[Cell, Budget]


def _measure_jobs(conn, jobs: Sequence[Job], device_type: str) -> None:
    """The worker: measure each job in turn, saying when it starts and what it measured."""
    index = -1
    try:
        try:
            for index, (cell, budget) in enumerate(jobs):
                conn.send(("start", index, None))
                conn.send(("done", index, measure(cell, torch.device(device_type), budget)))
        except CoatbenchError as error:
            conn.send(("error", index, str(error)))
        except (KeyboardInterrupt, BrokenPipeError):
            pass  # the sweep was interrupted or stopped listening: it says why itself
        except BaseException:
            conn.send(("crash", index, traceback.format_exc()))
    except (BrokenPipeError, EOFError):
        pass  # nobody is listening any more
    finally:
        conn.close()


def in_worker(
    jobs: Sequence[Job], device: torch.device, target=_measure_jobs
) -> Iterator[tuple[int, Measurement | None]]:
    """Measure `jobs` in order in a fresh worker process: (index, None) when a job starts,
    (index, its measurement) when it ends. A worker that dies takes only the job it was
    measuring, which ends `failed`; the jobs after it start again in a new worker. (`target`
    is what the worker runs: a test gives one that dies.)"""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state of this one
    first = 0
    while first < len(jobs):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=target, args=(sender, jobs[first:], device.type), daemon=True)
        process.start()
        sender.close()
        running, ended = None, first
        try:
            while True:
                try:
                    kind, index, payload = receiver.recv()
                except EOFError:
                    break
                if kind == "start":
                    running = first + index
                    yield running, None
                elif kind == "done":
                    running, ended = None, first + index + 1
                    yield first + index, payload
                elif kind == "error":
                    raise CoatbenchError(payload)
                else:
                    raise RuntimeError(f"a worker process failed:\n{payload}")
        finally:
            receiver.close()
            process.join(timeout=10)
            if process.is_alive():  # the sweep stopped early (interrupted or failed)
                process.kill()
                process.join()
        if running is None and ended == first:
            raise CoatbenchError(f"a worker process ended (exit code {process.exitcode}) before measuring anything")
        if running is not None:
            yield running, Measurement(Status.FAILED, message=f"its worker process died (exit code {process.exitcode})")
            ended = running + 1
        first = ended


# The XLA launcher: one worker process per local core (torch_xla.launch), each timing the
# cell on its own core in lock step with the others; rank 0's result comes back in a file.


@dataclass(frozen=True)
class _XlaJob:
    cell: Cell | None  # None: report the topology only
    budget: Budget
    options: XlaOptions
    barrier: object  # xla.ThreadBarrier, shared by the device threads of each worker process
    out_dir: str


def _xla_worker(index: int, job: _XlaJob) -> None:
    import torch_xla
    import torch_xla.runtime as xr

    from coatbench.xla import XlaOps, device_name, platform

    if job.cell is None:
        result = (xr.world_size(), device_name(platform()))
    else:
        if job.options.cache_dir:
            xr.initialize_cache(job.options.cache_dir, readonly=False)
        ops = XlaOps(job.options, job.barrier, threads=xr.addressable_runtime_device_count())
        result = measure(job.cell, torch_xla.device(), job.budget, ops=ops)
    if xr.global_ordinal() == 0:
        with open(os.path.join(job.out_dir, "rank0.pkl"), "wb") as f:
            pickle.dump(result, f)


def _launch(cell: Cell | None, budget: Budget, options: XlaOptions):
    """Rank 0's result of `_xla_worker` on every local core; the failure as a string when a
    worker died or rank 0 ended without a result."""
    import torch_xla

    from coatbench.xla import ThreadBarrier

    with tempfile.TemporaryDirectory(prefix="coatbench-xla-") as out_dir:
        job = _XlaJob(cell, budget, options, ThreadBarrier(), out_dir)
        try:
            torch_xla.launch(_xla_worker, args=(job,))
        except Exception as error:
            return f"an XLA worker failed: {str(error).splitlines()[0][:200]}"
        path = os.path.join(out_dir, "rank0.pkl")
        if not os.path.exists(path):
            return "the XLA worker of rank 0 ended without a result"
        with open(path, "rb") as f:
            return pickle.load(f)


def xla_topology() -> tuple[int, str]:
    """(cores, device name) as the workers see them: what the rows of an XLA sweep will say,
    known before the first cell (resume needs it)."""
    found = _launch(None, Budget(), XlaOptions())
    if isinstance(found, str):
        raise CoatbenchError(f"cannot start the XLA workers: {found}")
    return found


def measure_on_all_cores(cell: Cell, budget: Budget, options: XlaOptions) -> Measurement:
    """Measure `cell` on every local XLA core, one process each; rank 0's measurement back.
    A dead worker is a failed cell, not a lost sweep."""
    found = _launch(cell, budget, options)
    return Measurement(Status.FAILED, message=found) if isinstance(found, str) else found

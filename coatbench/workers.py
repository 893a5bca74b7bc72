"""The processes that measure, apart from the one that plans, saves and prints (as pyperf's
workers): on a CPU or a GPU a fresh worker process per round of a sweep, so that what a process
brings with it (its allocator, where its threads landed) is sampled round by round instead of
weighing on every cell alike; on XLA one process per local core (`torch_xla.launch`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from coatbench import rank
from coatbench.child import Event, EventKind, Job, run_jobs
from coatbench.distributed import REPLICAS, rank_summary, window_of
from coatbench.errors import CoatbenchError
from coatbench.harness import Cell, Measurement, measure
from coatbench.options import Budget, Mode
from coatbench.results import Status
from coatbench.xla import XlaOptions


def _measure_jobs(conn, jobs: Sequence[Job], device_type: str, threads: int | None = None) -> None:
    """The worker: `child.run_jobs` on this device (with `threads` CPU threads where a CPU
    device is a share of the cores: `sweep.make_plan`)."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device_type)
    try:
        run_jobs(conn, jobs, lambda: lambda cell, budget: measure(cell, device, budget))
    finally:
        conn.close()


# No word from a worker for this long past twice a job's own timeout: it hangs, and is ended.
HANG_GRACE_S = 120.0


def in_worker(
    jobs: Sequence[Job], device: torch.device, target=_measure_jobs, devices: int = 1, threads: int | None = None
) -> Iterator[Event]:
    """Measure `jobs` in order in fresh worker processes: one process, or with `devices` > 1 a
    group of that many ranks started by torchrun (`RankGroup`). Yields `child.job_events`'
    START and DONE events, indexed in `jobs`. A worker that dies or hangs takes only
    the job it was measuring, which ends `failed` (`oom` where a rank ran out of memory); the
    jobs after it start again in new workers. (`target` is what a one-process worker runs: a
    test gives one that dies.)"""
    first = 0
    while first < len(jobs):
        if devices > 1:
            worker = RankGroup(jobs[first:], device.type, devices)
        else:
            worker = OneProcess(jobs[first:], device.type, target, () if threads is None else (threads,))
        running, ended = None, first
        try:
            for event in worker.events():
                if event.kind is EventKind.START:
                    running = first + event.index
                    yield Event(EventKind.START, running)
                elif event.kind is EventKind.DONE:
                    running, ended = None, first + event.index + 1
                    yield Event(EventKind.DONE, first + event.index, event.measurement)
                elif event.kind is EventKind.ERROR:
                    raise CoatbenchError(event.message)
                else:
                    raise RuntimeError(f"a worker process failed:\n{event.message}")
        finally:
            worker.stop()
        if running is None and ended == first:
            raise CoatbenchError(f"{worker.name} ended ({worker.why_ended()}) before measuring anything")
        if running is not None:
            lost = worker.lost or Measurement(Status.FAILED, message=f"{worker.name}: {worker.why_ended()}")
            yield Event(EventKind.DONE, running, lost)
            ended = running + 1
        first = ended


class Worker:
    """Worker processes and the connections their events come over; `events` watches them: a
    job that gives no word for its timeout plus HANG_GRACE_S ends the workers."""

    name = "its worker process"
    crash_stops_sweep = True  # an exception in the measuring code is a bug, not a measurement

    def __init__(self, jobs: Sequence[Job]):
        self.jobs = jobs
        self.connections: list = []
        self.lost: Measurement | None = None  # what a dying worker said of the job it was on
        self.hung = self.crashed = ""

    def events(self) -> Iterator[Event]:
        index, since = 0, time.monotonic()
        while self.connections:
            # twice the cell's timeout: the harness ends a slow cell itself at its timeout, but
            # only between blocks, and a first step (compilation) runs whole
            patience = 2 * self.jobs[min(index, len(self.jobs) - 1)][1].timeout + HANG_GRACE_S
            ready = multiprocessing.connection.wait(self.connections, timeout=1.0)
            if not ready and time.monotonic() - since > patience:
                self.hung = f"no word from it for {patience:.0f} s: it hung"
                self.kill()
                return
            for connection in ready:
                try:
                    event = connection.recv()
                except (EOFError, OSError):
                    self.connections.remove(connection)
                    self.closed(connection)
                    continue
                since, index = time.monotonic(), event.index
                if event.kind is EventKind.OOM:
                    self.lost = self.lost or Measurement(Status.OOM, message=event.message)
                elif event.kind is EventKind.CRASH and not self.crash_stops_sweep:
                    self.crashed = self.crashed or event.message.strip().splitlines()[-1][:200]
                else:
                    yield event

    def closed(self, connection) -> None:
        """A connection ended (its process exited or died)."""


class OneProcess(Worker):
    """One spawned process that measures the jobs in turn (`_measure_jobs`)."""

    def __init__(self, jobs: Sequence[Job], device_type: str, target, extra: tuple = ()):
        super().__init__(jobs)
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state of this one
        receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=target, args=(sender, jobs, device_type, *extra), daemon=True)
        self.process.start()
        sender.close()
        self.connections = [receiver]

    def why_ended(self) -> str:
        return self.hung or f"died, exit code {self.process.exitcode}"

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        for connection in self.connections:
            connection.close()
        self.process.join(timeout=10)
        if self.process.is_alive():  # the sweep stopped early (interrupted or failed), or it hung
            self.process.kill()
            self.process.join()


class RankGroup(Worker):
    """`devices` ranks on this host, started by torchrun (`python -m torch.distributed.run
    --standalone`), each running `coatbench.rank` on the jobs. Every rank connects back over a
    local socket: rank 0 reports the jobs, any rank that runs out of memory says so before it
    exits. torchrun ends the whole group when one rank fails."""

    name = "its group of ranks"
    # A rank whose peer died fails in its next collective: the job failed, the sweep goes on.
    crash_stops_sweep = False

    def __init__(self, jobs: Sequence[Job], device_type: str, devices: int):
        super().__init__(jobs)
        self.devices, self.first_gone = devices, None
        self.folder = tempfile.TemporaryDirectory(prefix="coatbench-ranks-")
        jobs_file = os.path.join(self.folder.name, "jobs.pkl")
        with open(jobs_file, "wb") as f:
            pickle.dump((list(jobs), device_type), f)
        server = socket.create_server(("127.0.0.1", 0))
        token = secrets.token_hex(16)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}"]
        command += ["--max-restarts=0", "-m", "coatbench.rank", jobs_file, str(server.getsockname()[1])]
        self.log = open(os.path.join(self.folder.name, "torchrun.log"), "w+b")
        environment = {**os.environ, rank.TOKEN_ENV: token}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self.log, env=environment, start_new_session=True
        )
        self.pids: list[int] = []  # the ranks' processes: torchrun starts each in a session of its own
        try:
            self.ranks = self._accept(server, token, max(budget.timeout for _, budget in jobs))
        except BaseException:  # interrupted while the ranks start: leave nothing running
            self.kill()
            self.stop()
            raise
        finally:
            server.close()
        self.connections = list(self.ranks)

    def _accept(self, server: socket.socket, token: str, timeout: float) -> dict:
        """The connection of each rank, by rank; fewer if the group ended or took too long to start."""
        ranks, deadline = {}, time.monotonic() + timeout + HANG_GRACE_S
        server.settimeout(0.5)
        while len(ranks) < self.devices and self.process.poll() is None and time.monotonic() < deadline:
            try:
                sock, _ = server.accept()
            except TimeoutError:
                continue
            try:
                sock.settimeout(10)
                hello = sock.recv(len(token) + 16)
                if hello[: len(token)] != token.encode():
                    raise ValueError("not one of ours")
                rank_, pid = int(hello[len(token) : len(token) + 8]), int(hello[len(token) + 8 :])
            except (OSError, ValueError):
                sock.close()
                continue
            sock.settimeout(None)
            self.pids.append(pid)
            ranks[multiprocessing.connection.Connection(sock.detach())] = rank_
        return ranks

    def closed(self, connection) -> None:
        if self.first_gone is None:
            self.first_gone = self.ranks[connection]

    def why_ended(self) -> str:
        return self.reason

    def _reason(self) -> str:
        if self.hung:
            return self.hung
        code = self.process.returncode
        who = "" if self.first_gone is None else f"rank {self.first_gone} ended first; "
        if not self.crashed:
            self.log.seek(0)
            lines = [line for line in self.log.read().decode(errors="replace").splitlines() if "rror" in line]
            self.crashed = lines[-1].strip()[:200] if lines else ""
        return f"{who}torchrun exit code {code}" + (f"; {self.crashed}" if self.crashed else "")

    def kill(self) -> None:
        for pid in [self.process.pid, *self.pids]:
            try:
                os.killpg(pid, signal.SIGKILL)  # each rank leads a session (and group) of its own
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self) -> None:
        for connection in self.connections:
            connection.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the sweep stopped early (interrupted or failed)
            self.process.terminate()  # torchrun ends its ranks itself
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left, ranks included
        self.process.wait()
        self.reason = self._reason()
        self.log.close()
        self.folder.cleanup()


# The XLA launcher: one worker process per local core (torch_xla.launch), each timing the
# cell on its own core in lock step with the others; every core's result comes back in a file.


@dataclass(frozen=True)
class _XlaJob:
    cell: Cell | None  # None: report the topology only
    budget: Budget
    options: XlaOptions
    barrier: object  # xla.ThreadBarrier, shared by the device threads of each worker process
    out_dir: str


@dataclass(frozen=True)
class _CoreResult:
    """What the worker of one XLA core measured, for `_together`."""

    measurement: Measurement
    blocks: list[tuple[float, float]]  # each timed block's (start, end), this core's clock
    who: tuple[str, str, int | None]  # host, device name, peak memory (`distributed.rank_summary`)
    parallel: str  # how the cores' training shares gradients, or REPLICAS


@dataclass(frozen=True)
class _Topology:
    cores: int
    device_name: str


def _xla_worker(index: int, job: _XlaJob) -> None:
    import torch_xla
    import torch_xla.runtime as xr

    from coatbench.machine import xla_device_name
    from coatbench.xla import XlaOps, platform

    if job.cell is None:
        result = _Topology(xr.world_size(), xla_device_name(platform()))
    else:
        if job.options.cache_dir:
            xr.initialize_cache(job.options.cache_dir, readonly=False)
        ops = XlaOps(job.options, job.barrier, threads=xr.addressable_runtime_device_count())
        found = measure(job.cell, torch_xla.device(), job.budget, ops=ops)
        allreduce = "gradients all-reduced by xm.optimizer_step" if ops.gradient_allreduce else (
            "each core on its own gradients (the XLA CPU backend)")  # fmt: skip
        parallel = allreduce if job.cell.mode is Mode.TRAIN else REPLICAS
        who = (socket.gethostname(), xla_device_name(platform()), None)
        result = _CoreResult(found, ops.blocks, who, parallel)
    if job.cell is not None or xr.global_ordinal() == 0:
        with open(os.path.join(job.out_dir, f"rank{xr.global_ordinal()}.pkl"), "wb") as f:
            pickle.dump(result, f)


def _launch(cell: Cell | None, budget: Budget, options: XlaOptions):
    """`_xla_worker` on every local core: the topology (cell None), or the cores' measurements
    together (`_together`); the failure as a string when a worker died or left no result."""
    import torch_xla

    from coatbench.xla import ThreadBarrier

    with tempfile.TemporaryDirectory(prefix="coatbench-xla-") as out_dir:
        job = _XlaJob(cell, budget, options, ThreadBarrier(), out_dir)
        try:
            torch_xla.launch(_xla_worker, args=(job,))
        except Exception as error:
            return f"an XLA worker failed: {str(error).splitlines()[0][:200]}"
        found = []
        for rank in itertools.count():
            path = os.path.join(out_dir, f"rank{rank}.pkl")
            if not os.path.exists(path):
                break
            with open(path, "rb") as f:
                found.append(pickle.load(f))
        if not found:
            return "the XLA worker of rank 0 ended without a result"
        return found[0] if cell is None else _together(cell, found)


def _together(cell: Cell, ranks: list[_CoreResult]) -> Measurement:
    """Rank 0's measurement, with each timed block taken over all cores: the cores step in lock
    step, so block i of every core is one block of all, from the earliest start to the latest
    end (`distributed.window_of`), as on several ranks of torch.distributed."""
    result = ranks[0].measurement
    blocks = [core.blocks for core in ranks]
    if result.status is not Status.OK or len({len(b) for b in blocks}) != 1:
        return result  # not measured, or a core's result is missing blocks: rank 0's own figure
    images = cell.batch_size * result.block_steps
    count = len(blocks[0])
    result.samples = [images / window_of([b[i][0] for b in blocks], [b[i][1] for b in blocks]) for i in range(count)]
    seconds = [[b[i][1] - b[i][0] for b in blocks] for i in range(count)]
    result.distributed = rank_summary(
        seconds, images, [core.who for core in ranks], world_size=len(ranks), backend="xla", nodes=1,
        parallel=ranks[0].parallel,
    )  # fmt: skip
    return result


def xla_topology() -> tuple[int, str]:
    """(cores, device name) as the workers see them: what the rows of an XLA sweep will say,
    known before the first cell (resume needs it)."""
    found = _launch(None, Budget(), XlaOptions())
    if isinstance(found, str):
        raise CoatbenchError(f"cannot start the XLA workers: {found}")
    return found.cores, found.device_name


def measure_on_all_cores(cell: Cell, budget: Budget, options: XlaOptions) -> Measurement:
    """Measure `cell` on every local XLA core, one process each, timed over all of them.
    A dead worker is a failed cell, not a lost sweep."""
    found = _launch(cell, budget, options)
    return Measurement(Status.FAILED, message=found) if isinstance(found, str) else found

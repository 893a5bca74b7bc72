"""Where jobs are measured, apart from the process that plans, saves and prints (as pyperf's
workers): one `Launcher` protocol, `events(jobs)`, whose START and DONE events (`run.child`)
the sweep reads alike from every launcher:

- `Children`: the child program (`run.child`) in fresh processes: one process (CPU, GPU), a
  group of ranks that torchrun starts on this host (`--devices N`), or one process per XLA
  core (`torch_xla.launch`). Each connects back over a local socket;
- `TorchrunRanks`: this process as one rank of `torchrun -m coatbench`, measuring with the
  others;
- `Inline`: in this process (tests, and measurement functions of one's own).

On a CPU or a GPU a sweep starts fresh children per round, so that what a process brings with
it (its allocator, where its threads landed) is sampled round by round instead of weighing on
every cell alike.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch.distributed as dist

from coatbench.errors import CoatbenchError
from coatbench.measure.distributed import REPLICAS, join, rank_summary, timing_group, window_of
from coatbench.measure.harness import Cell, Measurement, measure
from coatbench.results import Status
from coatbench.run.child import (
    COLLECTIVE_GRACE_S,
    TOKEN_ENV,
    ChildKind,
    Event,
    EventKind,
    Job,
    Joined,
    Task,
    job_events,
    measure_on_ranks,
)
from coatbench.settings import Budget, Mode

# No word from a child for this long past twice a job's own timeout: it hangs, and is ended.
HANG_GRACE_S = 120.0


class Launcher(Protocol):
    def events(self, jobs: Sequence[Job]) -> Iterator[Event]:
        """START and DONE events of `jobs`, measured in order, indexed in `jobs`."""


class Inline:
    """`jobs` measured in this process by `measure_job`."""

    def __init__(self, measure_job: Callable[[Cell, Budget], Measurement]):
        self.measure_job = measure_job

    def events(self, jobs: Sequence[Job]) -> Iterator[Event]:
        return job_events(jobs, self.measure_job)


class TorchrunRanks:
    """This process as one rank of `torchrun ... -m coatbench ...` (several hosts: torchrun's
    c10d rendezvous): every rank runs the sweep in its own process, rank 0's plan for all;
    a cell of several devices is measured by every rank together, a one-device cell by rank 0
    alone while the others wait. Rank 0 saves the rows and speaks."""

    def __init__(self, device_type: str, timeout_s: float):
        self.world = join(device_type, timeout_s + COLLECTIVE_GRACE_S)
        self.group = timing_group()

    @property
    def speaks(self) -> bool:
        return self.world.rank == 0

    def agree(self, value):
        """Rank 0's `value` (its plan: seed, sweep id, order and file; its next round)."""
        shared = [value]
        dist.broadcast_object_list(shared, src=0, group=self.group)
        return shared[0]

    def events(self, jobs: Sequence[Job]) -> Iterator[Event]:
        """`run.child.job_events` on this rank, every rank's alike (the measurements are rank 0's)."""
        return job_events(jobs, self._measure_job)

    def _measure_job(self, cell: Cell, budget: Budget) -> Measurement:
        if cell.devices == 1:  # rank 0 alone; the others wait for its result
            return self.agree(measure(cell, self.world.device, budget) if self.speaks else None)
        result = measure_on_ranks(cell, budget, self.world, self.group)
        if result.status is Status.OOM:  # the other ranks would wait for it in a collective
            raise CoatbenchError(
                f"rank {self.world.rank} ran out of memory ({result.message}): under torchrun that ends "
                "the run (the rows measured before it are saved); coatbench --devices N goes on instead"
            )
        return result


class Children:
    """`jobs` measured in order by the child program of `kind`, in fresh processes. A child that
    dies or hangs takes only the job it was measuring, which ends `failed` (`oom` where a rank
    ran out of memory); the jobs after it start again in new children."""

    def __init__(self, kind: ChildKind, device_type: str, devices: int = 1, threads: int | None = None, xla=None):
        self.kind, self.device_type, self.devices, self.threads, self.xla = kind, device_type, devices, threads, xla

    def events(self, jobs: Sequence[Job]) -> Iterator[Event]:
        first = 0
        while first < len(jobs):
            group = _Group(self._task(jobs[first:]), self.devices)
            running, ended = None, first
            try:
                for event in group.events():
                    if event.kind is EventKind.START:
                        running = first + event.index
                        yield Event(EventKind.START, running)
                    elif event.kind is EventKind.DONE:
                        running, ended = None, first + event.index + 1
                        yield Event(EventKind.DONE, first + event.index, event.measurement)
                    elif event.kind is EventKind.ERROR:
                        raise CoatbenchError(event.message)
                    else:
                        raise RuntimeError(f"a child process failed:\n{event.message}")
            finally:
                group.stop()
            if running is None and ended == first:
                raise CoatbenchError(f"{group.name} ended ({group.reason}) before measuring anything")
            if running is not None:
                lost = group.lost or Measurement(Status.FAILED, message=f"{group.name}: {group.reason}")
                yield Event(EventKind.DONE, running, lost)
                ended = running + 1
            first = ended

    def joined(self) -> list[Joined]:
        """Who the children are, by rank, started with no job (XLA: the cores and their name)."""
        group = _Group(self._task([]), self.devices)
        for _ in group.events():
            pass
        group.stop()
        if not group.members:
            raise CoatbenchError(f"cannot start {group.name}: {group.reason}")
        return [group.members[r] for r in sorted(group.members)]

    def _task(self, jobs: Sequence[Job]) -> Task:
        return Task(self.kind, tuple(jobs), self.device_type, self.threads, self.xla)


NAMES = {ChildKind.PROCESS: "its worker process", ChildKind.RANK: "its group of ranks", ChildKind.XLA: "its XLA cores"}


class _Group:
    """One start of the child program: the children of one launch, the connections their
    events come over, and a watchdog (a job that gives no word for twice its timeout plus
    HANG_GRACE_S ends them). A RANK group is torchrun's (`--standalone`), which ends the whole
    group when one rank fails; an XLA group is one process that `torch_xla.launch` forks into one
    per core."""

    def __init__(self, task: Task, devices: int):
        self.task, self.name = task, NAMES[task.kind]
        self.members: dict[int, Joined] = {}
        self.connections: dict = {}  # connection -> rank
        self.lost: Measurement | None = None  # what a dying rank said of the job it was on
        self.hung = self.crashed = self.reason = ""
        self.first_gone: int | None = None
        # XLA: every core reports its blocks of a job; the job is done once all have (`_together`)
        self.reports: dict[int, dict[int, Measurement]] = {}
        self.folder = tempfile.TemporaryDirectory(prefix="coatbench-child-")
        task_file = os.path.join(self.folder.name, "task.pkl")
        with open(task_file, "wb") as f:
            pickle.dump(task, f)
        server = socket.create_server(("127.0.0.1", 0))
        token = secrets.token_hex(16)
        child = ["-m", "coatbench.run.child", task_file, str(server.getsockname()[1])]
        if task.kind is ChildKind.RANK:
            torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}"]
            child = [*torchrun, "--max-restarts=0", *child]
        self.log = open(os.path.join(self.folder.name, "child.log"), "w+b")
        # a session of its own: ending it ends what it forked (torchrun starts each rank in a
        # session of its own too: those are ended by their pids, `kill`)
        self.process = subprocess.Popen(
            [sys.executable, *child], stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, TOKEN_ENV: token}, start_new_session=True,
        )  # fmt: skip
        try:
            self._accept(server, token, max((budget.timeout for _, budget in task.jobs), default=Budget().timeout))
        except BaseException:  # interrupted while the children start: leave nothing running
            self.kill()
            self.stop()
            raise
        finally:
            server.close()

    def _accept(self, server: socket.socket, token: str, timeout: float) -> None:
        """Each child's connection and who it is; fewer if the group ended or took too long."""
        deadline, expected = time.monotonic() + timeout + HANG_GRACE_S, None
        server.settimeout(0.5)
        while expected is None or len(self.members) < expected:
            if self.process.poll() is not None or time.monotonic() > deadline:
                return
            try:
                sock, _ = server.accept()
            except TimeoutError:
                continue
            try:
                sock.settimeout(10)
                if sock.recv(len(token)) != token.encode():
                    raise ValueError("not one of ours")
                sock.settimeout(None)
                connection = multiprocessing.connection.Connection(sock.detach())
                if not connection.poll(10):
                    raise ValueError("no word")
                event = connection.recv()
            except (OSError, ValueError, EOFError, pickle.UnpicklingError):
                sock.close()
                continue
            joined = event.joined
            self.members[joined.rank], self.connections[connection] = joined, joined.rank
            expected = joined.members

    def events(self) -> Iterator[Event]:
        index, since = 0, time.monotonic()
        jobs = self.task.jobs
        while self.connections:
            # twice the cell's timeout: the harness ends a slow cell itself at its timeout, but
            # only between blocks, and a first step (compilation) runs whole
            patience = 2 * jobs[min(index, len(jobs) - 1)][1].timeout + HANG_GRACE_S if jobs else HANG_GRACE_S
            ready = multiprocessing.connection.wait(list(self.connections), timeout=1.0)
            if not ready and time.monotonic() - since > patience:
                self.hung = f"no word from it for {patience:.0f} s: it hung"
                self.kill()
                return
            for connection in ready:
                try:
                    event = connection.recv()
                except (EOFError, OSError):
                    gone = self.connections.pop(connection)
                    self.first_gone = gone if self.first_gone is None else self.first_gone
                    continue
                since, index = time.monotonic(), event.index
                if event.kind is EventKind.OOM:
                    self.lost = self.lost or Measurement(Status.OOM, message=event.message)
                elif event.kind is EventKind.CRASH and self.task.kind is not ChildKind.PROCESS:
                    # a rank whose peer died fails in its next collective: the job failed, the
                    # sweep goes on (in one process, an exception in the measuring code is a bug)
                    self.crashed = self.crashed or event.message.strip().splitlines()[-1][:200]
                elif event.kind is EventKind.DONE and self.task.kind is ChildKind.XLA:
                    cores = self.reports.setdefault(event.index, {})
                    cores[self.connections[connection]] = event.measurement
                    if len(cores) == len(self.members):
                        yield Event(EventKind.DONE, event.index, self._together(event.index))
                else:
                    yield event

    def _together(self, index: int) -> Measurement:
        """Core 0's measurement, with each timed block taken over all cores: the cores step in lock
        step, so block i of every core is one block of all, from the earliest start to the
        latest end (`distributed.window_of`), as on several ranks of torch.distributed."""
        reported = self.reports.pop(index)
        cores = [reported[r] for r in sorted(self.members)]
        result, cell = cores[0], self.task.jobs[index][0]
        spans = [core.spans for core in cores]
        if result.status is not Status.OK or len({len(s) for s in spans}) != 1:
            return result  # not measured, or a core's result is missing blocks: core 0's own figure
        images, count = cell.batch_size * result.block_steps, len(spans[0])
        result.samples = [images / window_of([s[i][0] for s in spans], [s[i][1] for s in spans]) for i in range(count)]
        seconds = [[s[i][1] - s[i][0] for s in spans] for i in range(count)]
        members = [self.members[r] for r in sorted(self.members)]
        gradients = "gradients all-reduced by xm.optimizer_step" if (result.xla or {}).get("gradient_allreduce") else (
            "each core on its own gradients (the XLA CPU backend)")  # fmt: skip
        result.distributed = rank_summary(
            seconds, images, [(m.host, m.device_name, None) for m in members], world_size=len(members),
            backend="xla", nodes=1, parallel=gradients if cell.mode is Mode.TRAIN else REPLICAS,
        )  # fmt: skip
        return result

    def _why(self) -> str:
        if self.hung:
            return self.hung
        code = self.process.returncode
        ranks = self.task.kind is not ChildKind.PROCESS
        who = f"rank {self.first_gone} ended first; " if ranks and self.first_gone is not None else ""
        if not self.crashed:
            self.log.seek(0)
            lines = [line for line in self.log.read().decode(errors="replace").splitlines() if "rror" in line]
            self.crashed = lines[-1].strip()[:200] if lines else ""
        what = "torchrun exit code" if self.task.kind is ChildKind.RANK else "exit code"
        return f"{who}{what} {code}" + (f"; {self.crashed}" if self.crashed else "")

    def kill(self) -> None:
        for pid in [self.process.pid, *(m.pid for m in self.members.values())]:
            try:
                os.killpg(pid, signal.SIGKILL)  # a session (and group) of its own
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def stop(self) -> None:
        if self.log.closed:
            return
        early = bool(self.connections)  # the sweep stopped listening (interrupted or failed), or it hung
        for connection in self.connections:
            connection.close()
        try:
            self.process.wait(timeout=1 if early else 30)
        except subprocess.TimeoutExpired:
            self.process.terminate()  # torchrun ends its ranks itself
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # whatever is left, ranks included
        self.process.wait()
        self.reason = self._why()
        self.log.close()
        self.folder.cleanup()


def xla_topology(xla) -> tuple[int, str]:
    """(cores, device name) as the XLA children see them: what the rows of an XLA sweep will
    say, known before the first cell (resume needs it)."""
    members = Children(ChildKind.XLA, "xla", xla=xla).joined()
    return len(members), members[0].device_name

"""The child side of a sweep: the one loop over jobs that every measuring process runs, the
typed events it sends back, and the program the launchers start (`run.launch`).

A job is a cell with its budget. The loop measures the jobs in turn and says when each starts
and what it measured. Every child connects back to the sweep over a local socket, proves it is
one of the sweep's with a token, says who it is (`Joined`) and then sends `Event`s: a spawned
process, each rank of a group that torchrun starts, each core's process under
`torch_xla.launch`.

`python -m coatbench.run.child TASK_FILE PORT` with the token in TOKEN_ENV; the task file holds
a pickled `Task`.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import socket
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

import torch
import torch.distributed as dist

from coatbench.errors import CoatbenchError
from coatbench.measure.distributed import RankOps, join, timing_group
from coatbench.measure.harness import Cell, Measurement, measure
from coatbench.measure.local import device_ops
from coatbench.results import Status
from coatbench.settings import Budget, Mode

Job = tuple[Cell, Budget]
MeasureJob = Callable[[Cell, Budget], Measurement]

TOKEN_ENV = "COATBENCH_CHILD_TOKEN"  # proves to the sweep that a connection is one of its children
OUT_OF_MEMORY_EXIT = 3
# A collective waits this long past a cell's timeout before it fails (a rank measuring alone,
# or one that hung); below the sweep's own watchdog (`run.launch.HANG_GRACE_S`).
COLLECTIVE_GRACE_S = 60.0


class EventKind(Enum):
    JOINED = "joined"  # the child is up: who it is (`Event.joined`)
    START = "start"  # the job began
    DONE = "done"  # its measurement (`Event.measurement`)
    OOM = "oom"  # a rank ran out of memory: its group ends, the job is `oom`
    ERROR = "error"  # bad input found late (a CoatbenchError): the sweep stops with its message
    CRASH = "crash"  # an exception in the measuring code (`Event.message`: its traceback)


@dataclass(frozen=True)
class Joined:
    """A child, as it tells the sweep when it connects."""

    rank: int  # its place among the children of one launch (a core's ordinal on XLA)
    members: int  # the children of the launch in all
    pid: int
    host: str
    device_name: str = ""  # XLA: the name the rows give the cores (`machine.xla_device_name`)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    index: int  # the job's place in the list the child was given (-1: before the first)
    measurement: Measurement | None = None
    message: str = ""
    joined: Joined | None = None


class Ending(Enum):
    """How the loop ended, for the child's exit code."""

    DONE = "done"
    OUT_OF_MEMORY = "out of memory"
    ERROR = "error"
    CRASH = "crash"
    STOPPED = "stopped"  # interrupted, or the sweep stopped listening


EXIT_CODES = {Ending.DONE: 0, Ending.ERROR: 2, Ending.CRASH: 1, Ending.STOPPED: 130, Ending.OUT_OF_MEMORY: 3}


def job_events(
    jobs: Sequence[Job],
    measure_job: MeasureJob,
    announces: bool = True,
    reports: bool = True,
    out_of_memory_ends: str | None = None,
) -> Iterator[Event]:
    """The loop over `jobs`, measured in turn by `measure_job`: a START event for each where this
    process `announces`, a DONE where it `reports` (rank 0 of a group does both; every XLA core
    reports, for the launcher to put the cores' blocks together). With `out_of_memory_ends` (a
    rank's name), a job out of memory is an OOM event that ends the loop: the other ranks would
    wait for this one in a collective."""
    for index, (cell, budget) in enumerate(jobs):
        if announces:
            yield Event(EventKind.START, index)
        result = measure_job(cell, budget)
        if out_of_memory_ends is not None and result.status is Status.OOM:
            yield Event(EventKind.OOM, index, message=f"{out_of_memory_ends}: {result.message}")
            return
        if reports:
            yield Event(EventKind.DONE, index, result)


def run_jobs(conn, jobs: Sequence[Job], measurer: Callable[[], MeasureJob], **loop) -> Ending:
    """A child's side: `job_events` (with `loop`'s choices), sent on `conn`, with what `measurer`
    gives (called once: a rank joins its group there, so that a failure to join is reported as
    any other); an error becomes an ERROR event (a CoatbenchError) or a CRASH (any other)."""
    index = -1
    try:
        try:
            for event in job_events(jobs, measurer(), **loop):
                index = event.index
                conn.send(event)
                if event.kind is EventKind.OOM:
                    return Ending.OUT_OF_MEMORY
        except CoatbenchError as error:
            conn.send(Event(EventKind.ERROR, index, message=str(error)))
            return Ending.ERROR
        except (KeyboardInterrupt, BrokenPipeError):
            return Ending.STOPPED  # the sweep was interrupted or stopped listening: it says why itself
        except Exception:
            conn.send(Event(EventKind.CRASH, index, message=traceback.format_exc()))
            return Ending.CRASH
    except (BrokenPipeError, EOFError):
        return Ending.STOPPED  # nobody is listening any more
    return Ending.DONE


class ChildKind(Enum):
    """What the child program runs as."""

    PROCESS = "process"  # one process on one device
    RANK = "rank"  # one rank of a group torchrun started on this host (`--devices N`)
    XLA = "xla"  # the parent of one process per XLA core (`torch_xla.launch`)


@dataclass(frozen=True)
class Task:
    """What a launcher hands its children, in the task file."""

    kind: ChildKind
    jobs: tuple[Job, ...]
    device_type: str
    threads: int | None = None  # a process's CPU threads, where a CPU device is a share of the cores
    xla: object = None  # XLA: `measure.xla.XlaOptions`


def connect(port: int, token: str, joined: Joined) -> multiprocessing.connection.Connection:
    """The connection to the sweep, after the token and who this child is."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(token.encode())
    conn = multiprocessing.connection.Connection(sock.detach())
    conn.send(Event(EventKind.JOINED, -1, joined=joined))
    return conn


def measure_on_ranks(cell: Cell, budget: Budget, world, group) -> Measurement:
    """`cell` measured by every rank together (a collective: all ranks call it), with what
    each rank saw when it was measured."""
    ops = RankOps(device_ops(world.device), world, group, cell.ddp)
    result = measure(cell, world.device, budget, ops=ops)
    if result.status is Status.OK:
        images = cell.batch_size * result.block_steps
        result.distributed = ops.summary(images, cell.mode is Mode.TRAIN, result.peak_memory_bytes)
    return result


def _process(task: Task, port: int, token: str) -> Ending:
    if task.threads is not None:
        torch.set_num_threads(task.threads)
    device = torch.device(task.device_type)
    conn = connect(port, token, Joined(0, 1, os.getpid(), socket.gethostname()))
    try:
        return run_jobs(conn, task.jobs, lambda: lambda cell, budget: measure(cell, device, budget))
    finally:
        conn.close()


def _rank(task: Task, port: int, token: str) -> Ending:
    rank, members = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    conn = connect(port, token, Joined(rank, members, os.getpid(), socket.gethostname()))
    timeout_s = max(budget.timeout for _, budget in task.jobs) + COLLECTIVE_GRACE_S

    def measurer():  # joining the group is part of the loop: a failure there is reported alike
        world, group = join(task.device_type, timeout_s), timing_group()
        return lambda cell, budget: measure_on_ranks(cell, budget, world, group)

    loop = dict(announces=rank == 0, reports=rank == 0, out_of_memory_ends=f"rank {rank}")
    ending = run_jobs(conn, task.jobs, measurer, **loop)
    conn.close()
    if ending is Ending.OUT_OF_MEMORY:
        os._exit(OUT_OF_MEMORY_EXIT)  # the others wait in a collective: torchrun ends them
    if ending is Ending.DONE:
        dist.destroy_process_group()
    return ending


def _xla(task: Task, port: int, token: str) -> Ending:
    import torch_xla

    from coatbench.measure.xla import ThreadBarrier

    torch_xla.launch(_xla_core, args=(task, port, token, ThreadBarrier()))
    return Ending.DONE


def _xla_core(index: int, task: Task, port: int, token: str, barrier) -> None:
    """One XLA core's process (or thread, on the CPU backend): the jobs, each timed on this
    core in lock step with the others; every core reports its blocks (`Measurement.spans`)."""
    import torch_xla
    import torch_xla.runtime as xr

    from coatbench.measure.machine import xla_device_name
    from coatbench.measure.xla import XlaOps, platform

    ordinal, name = xr.global_ordinal(), xla_device_name(platform())
    conn = connect(port, token, Joined(ordinal, xr.world_size(), os.getpid(), socket.gethostname(), name))
    if task.xla.cache_dir and task.jobs:
        xr.initialize_cache(task.xla.cache_dir, readonly=False)

    def measure_on_core(cell: Cell, budget: Budget) -> Measurement:
        ops = XlaOps(task.xla, barrier, threads=xr.addressable_runtime_device_count())
        result = measure(cell, torch_xla.device(), budget, ops=ops)
        result.spans = list(ops.blocks)
        return result

    try:
        run_jobs(conn, task.jobs, lambda: measure_on_core, announces=ordinal == 0)
    finally:
        conn.close()


PROGRAMS = {ChildKind.PROCESS: _process, ChildKind.RANK: _rank, ChildKind.XLA: _xla}


def main(task_file: str, port: str) -> int:
    with open(task_file, "rb") as f:
        task = pickle.load(f)
    return EXIT_CODES[PROGRAMS[task.kind](task, int(port), os.environ.pop(TOKEN_ENV))]


if __name__ == "__main__":
    # the task's classes are `coatbench.run.child`'s, not this `__main__` copy's: run that module's
    from coatbench.run import child

    sys.exit(child.main(*sys.argv[1:]))

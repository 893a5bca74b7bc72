"""The child side of a sweep: the one loop that a spawned worker process and each rank of a
group run over their jobs, and the typed events it sends back to the sweep (`workers.Worker`
reads them). A job is a cell with its budget; the loop measures them in turn and says when
each starts and what it measured.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from coatbench.errors import CoatbenchError
from coatbench.harness import Cell, Measurement
from coatbench.options import Budget
from coatbench.results import Status

Job = tuple[Cell, Budget]
MeasureJob = Callable[[Cell, Budget], Measurement]


class EventKind(Enum):
    START = "start"  # the job began
    DONE = "done"  # its measurement (`Event.measurement`)
    OOM = "oom"  # a rank ran out of memory: its group ends, the job is `oom`
    ERROR = "error"  # bad input found late (a CoatbenchError): the sweep stops with its message
    CRASH = "crash"  # an exception in the measuring code (`Event.message`: its traceback)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    index: int  # the job's place in the list the child was given (-1: before the first)
    measurement: Measurement | None = None
    message: str = ""


class Ending(Enum):
    """How the loop ended, for the child's exit code."""

    DONE = "done"
    OUT_OF_MEMORY = "out of memory"
    ERROR = "error"
    CRASH = "crash"
    STOPPED = "stopped"  # interrupted, or the sweep stopped listening


def job_events(
    jobs: Sequence[Job], measure_job: MeasureJob, speaks: bool = True, out_of_memory_ends: str | None = None
) -> Iterator[Event]:
    """The loop over `jobs`, measured in turn by `measure_job`: a START and a DONE event for each,
    where this process `speaks` (rank 0 of a group: every rank measures, one reports). With
    `out_of_memory_ends` (a rank's name), a job out of memory is an OOM event that ends the loop:
    the other ranks would wait for this one in a collective. The sweep reads these events from
    every launcher: in its own process, from a worker process, from a group of ranks."""
    for index, (cell, budget) in enumerate(jobs):
        if speaks:
            yield Event(EventKind.START, index)
        result = measure_job(cell, budget)
        if out_of_memory_ends is not None and result.status is Status.OOM:
            yield Event(EventKind.OOM, index, message=f"{out_of_memory_ends}: {result.message}")
            return
        if speaks:
            yield Event(EventKind.DONE, index, result)


def run_jobs(
    conn, jobs: Sequence[Job], measurer: Callable[[], MeasureJob], speaks: bool = True,
    out_of_memory_ends: str | None = None,
) -> Ending:  # fmt: skip
    """A child process's side: `job_events`, sent on `conn`, with what `measurer` gives (called
    once: a rank joins its group there, so that a failure to join is reported as any other); an
    error becomes an ERROR event (a CoatbenchError) or a CRASH (any other exception)."""
    index = -1
    try:
        try:
            for event in job_events(jobs, measurer(), speaks, out_of_memory_ends):
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

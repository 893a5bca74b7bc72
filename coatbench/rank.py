"""The program torchrun starts on each rank of a `--devices N` group (`workers.RankGroup`):
connect back to the sweep, join the process group, and measure the jobs together.

`python -m coatbench.rank JOBS_FILE PORT`, with the group's token in TOKEN_ENV. Rank 0 says
when each job starts and what it measured; a rank that runs out of memory says so and exits,
and torchrun then ends the others (they would wait in a collective for it).
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import socket
import sys
from collections.abc import Iterator

import torch.distributed as dist

from coatbench.child import Ending, Event, job_events, run_jobs
from coatbench.distributed import RankOps, World, join, timing_group
from coatbench.errors import CoatbenchError
from coatbench.hardware import device_ops
from coatbench.harness import Cell, Measurement, measure
from coatbench.options import Budget, Mode
from coatbench.results import Status

TOKEN_ENV = "COATBENCH_RANKS_TOKEN"  # proves to the sweep that a connection is one of its ranks
OUT_OF_MEMORY_EXIT = 3
EXIT_CODES = {Ending.DONE: 0, Ending.ERROR: 2, Ending.CRASH: 1, Ending.STOPPED: 130}
# A collective waits this long past a cell's timeout before it fails (a rank measuring alone,
# or one that hung); below the sweep's own watchdog (`workers.HANG_GRACE_S`).
COLLECTIVE_GRACE_S = 60.0


def measure_on_ranks(cell: Cell, budget: Budget, world: World, group) -> Measurement:
    """`cell` measured by every rank together (a collective: all ranks call it), with what
    each rank saw when it was measured."""
    ops = RankOps(device_ops(world.device), world, group, cell.ddp)
    result = measure(cell, world.device, budget, ops=ops)
    if result.status is Status.OK:
        images = cell.batch_size * result.block_steps
        result.distributed = ops.summary(images, cell.mode is Mode.TRAIN, result.peak_memory_bytes)
    return result


class Ranks:
    """This process as one rank of `torchrun ... -m coatbench ...` (several hosts: torchrun's
    c10d rendezvous): every rank runs the sweep in its own process, rank 0's plan for all;
    a cell of several devices is measured by every rank together, a one-device cell by rank 0
    alone while the others wait. Rank 0 saves the rows and speaks."""

    def __init__(self, device_type: str, timeout_s: float):
        self.world = join(device_type, timeout_s)
        self.group = timing_group()

    @property
    def speaks(self) -> bool:
        return self.world.rank == 0

    def agree(self, plan):
        """Rank 0's plan: its seed, sweep id, order and file."""
        shared = [plan]
        dist.broadcast_object_list(shared, src=0, group=self.group)
        return shared[0]

    def measure(self, jobs) -> Iterator[Event]:
        """`child.job_events` on this rank, every rank's alike (the measurements are rank 0's)."""
        return job_events(jobs, self._measure_job)

    def _measure_job(self, cell: Cell, budget: Budget) -> Measurement:
        if cell.devices == 1:  # rank 0 alone; the others wait for its result
            shared = [measure(cell, self.world.device, budget) if self.speaks else None]
            dist.broadcast_object_list(shared, src=0, group=self.group)
            return shared[0]
        result = measure_on_ranks(cell, budget, self.world, self.group)
        if result.status is Status.OOM:  # the other ranks would wait for it in a collective
            raise CoatbenchError(
                f"rank {self.world.rank} ran out of memory ({result.message}): under torchrun that ends "
                "the run (the rows measured before it are saved); coatbench --devices N goes on instead"
            )
        return result


def _connect(port: int, token: str, rank: int) -> multiprocessing.connection.Connection:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(token.encode() + f"{rank:8d}{os.getpid():8d}".encode())
    return multiprocessing.connection.Connection(sock.detach())


def main(jobs_file: str, port: str) -> int:
    with open(jobs_file, "rb") as f:
        jobs, device_type = pickle.load(f)
    this_rank = int(os.environ["RANK"])
    conn = _connect(int(port), os.environ.pop(TOKEN_ENV), this_rank)

    def measurer():  # joining the group is part of the loop: a failure there is reported alike
        world = join(device_type, timeout_s=max(budget.timeout for _, budget in jobs) + COLLECTIVE_GRACE_S)
        group = timing_group()
        return lambda cell, budget: measure_on_ranks(cell, budget, world, group)

    ending = run_jobs(conn, jobs, measurer, speaks=this_rank == 0, out_of_memory_ends=f"rank {this_rank}")
    conn.close()
    if ending is Ending.OUT_OF_MEMORY:
        os._exit(OUT_OF_MEMORY_EXIT)  # the others wait in a collective: torchrun ends them
    if ending is Ending.DONE:
        dist.destroy_process_group()
    return EXIT_CODES[ending]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

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
import traceback
from collections.abc import Callable

import torch.distributed as dist

from coatbench.distributed import RankOps, World, fault, join, timing_group
from coatbench.errors import CoatbenchError
from coatbench.hardware import device_ops
from coatbench.harness import Cell, Measurement, measure
from coatbench.options import Budget, Mode
from coatbench.results import Status

TOKEN_ENV = "COATBENCH_RANKS_TOKEN"  # proves to the sweep that a connection is one of its ranks
OUT_OF_MEMORY_EXIT = 3


def measure_on_ranks(
    cell: Cell, budget: Budget, world: World, group, before_step: Callable[[int], None] | None = None
) -> Measurement:
    """`cell` measured by every rank together (a collective: all ranks call it), with what
    each rank saw when it was measured."""
    ops = RankOps(device_ops(world.device), world, group, cell.ddp)
    result = measure(cell, world.device, budget, ops=ops, before_step=before_step)
    if result.status is Status.OK:
        images = cell.batch_size * result.block_steps
        result.distributed = ops.summary(images, cell.mode is Mode.TRAIN, result.peak_memory_bytes)
    return result


def _connect(port: int, token: str, rank: int) -> multiprocessing.connection.Connection:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(token.encode() + f"{rank:8d}".encode())
    return multiprocessing.connection.Connection(sock.detach())


def main(jobs_file: str, port: str) -> int:
    with open(jobs_file, "rb") as f:
        jobs, device_type = pickle.load(f)
    conn = _connect(int(port), os.environ.pop(TOKEN_ENV), int(os.environ["RANK"]))
    index = -1
    try:
        world = join(device_type, timeout_s=max(budget.timeout for _, budget in jobs))
        group, before_step = timing_group(), fault(world.rank)
        for index, (cell, budget) in enumerate(jobs):
            if world.rank == 0:
                conn.send(("start", index, None))
            result = measure_on_ranks(cell, budget, world, group, before_step)
            if result.status is Status.OOM:
                conn.send(("oom", index, f"rank {world.rank}: {result.message}"))
                conn.close()
                os._exit(OUT_OF_MEMORY_EXIT)  # the others wait in a collective: torchrun ends them
            if world.rank == 0:
                conn.send(("done", index, result))
    except CoatbenchError as error:
        conn.send(("error", index, str(error)))
        return 2
    except Exception:
        conn.send(("crash", index, traceback.format_exc()))
        return 1
    conn.close()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

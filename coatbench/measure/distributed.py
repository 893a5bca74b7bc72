"""Several devices through torch.distributed: one process per device (a rank), started by
torchrun, timed together.

What a rank needs below the harness: joining the process group (`join`), timing hooks that
make every block a block of all ranks (`RankOps`), decisions that every rank takes alike
(`AgreedSchedule`), DDP around the model for training, and what the ranks measured, gathered
(`RankOps.summary`).

Timing across ranks. Each block starts when the ranks leave a barrier and ends, on each rank,
once its device has finished (the device's own synchronisation). The ranks' wall-clock start
and end times are gathered; the block took (latest end - earliest start), so a rank that
drifts lengthens every block instead of hiding behind the others' rates. Neither of the
shortcuts is taken: rank 0's rate times the world size, or the sum of per-rank rates each over
its own window, both overstate throughput when the ranks drift (issue 16).

On several hosts the window leans on their clocks agreeing (NTP: typically well under a
millisecond); it is never shorter than the slowest rank's own block, which needs no clock.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from coatbench.errors import CoatbenchError
from coatbench.measure.machine import device_name
from coatbench.results import Distributed
from coatbench.settings import Budget, DdpOptions

WINDOW_METHOD = (
    "all ranks' images / (latest end - earliest start) of each block, the ranks started by a barrier; "
    "a rank's start = its end - the device's own time for the block (CUDA events on a GPU)"
)
RANK_BLOCK_S = 1.0  # a timed block of several ranks lasts this long at least (`rank_block_time`)


def rank_block_time(budget: Budget) -> float:
    """The shortest timed block of several ranks: RANK_BLOCK_S, or less where the cell's timed
    seconds (`--max-time`) would not hold its minimum blocks of that length, so that a cell
    never times longer than it was given."""
    return min(RANK_BLOCK_S, budget.max_time / budget.min_samples)


REPLICAS = "independent replicas"  # inference on several devices: no communication between steps


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    nodes: int
    backend: str
    device: torch.device


def join(device_type: str, timeout_s: float) -> World:
    """Join the process group torchrun set up (its env:// variables): NCCL on GPUs, gloo on
    CPUs. A collective that waits longer than `timeout_s` raises instead of hanging. The host's
    cores are shared out between the local ranks (torchrun would give each one thread); on a CPU
    that share is the device."""
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank, local_size = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise CoatbenchError(f"local rank {local_rank} has no GPU: this host has {torch.cuda.device_count()}")
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    torch.set_num_threads(threads_per_rank(local_size))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", max(1, size // local_size)))
    return World(rank, size, local_rank, nodes, backend, device)


def timing_group():
    """The group the timing talks over: gloo, on the CPU, whatever the devices' backend (a
    barrier or a gather of start times must not queue behind the device's work)."""
    return dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD


def threads_per_rank(local_ranks: int) -> int:
    """The CPU threads each of `local_ranks` ranks on this host gets (`join`): a share of the CPUs
    this process may run on (its affinity), not of the host's, which a container or a `taskset`
    may not give it: more threads than CPUs make gloo's ranks wait on each other's threads."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, usable // local_ranks)


class AgreedSchedule:
    """A schedule whose every decision is rank 0's, so that all ranks warm up, time and stop
    together (each rank's own clock would decide slightly differently, and a rank that left the
    loop early would leave the others waiting in a collective)."""

    def __init__(self, schedule, agree: Callable, budget: Budget):
        self.inner, self.agree, self.timeout = schedule, agree, schedule.timeout
        self.min_block_s = rank_block_time(budget)

    def block_steps(self, step_s: float) -> int:
        # long blocks: the barrier, the gathers and the decisions between blocks leave the
        # devices idle, and the ranks' edges (barrier skew) count once a block
        return int(self.agree(max(self.inner.block_steps(step_s), math.ceil(self.min_block_s / step_s))))

    def warmup_over(self, blocks: int, elapsed_s: float) -> bool:
        return bool(self.agree(self.inner.warmup_over(blocks, elapsed_s)))

    def warm(self, block_s: float, previous_s: float, compiled: bool) -> bool:
        return bool(self.agree(self.inner.warm(block_s, previous_s, compiled)))

    def timing_done(self, samples: list[float], timed_s: float) -> bool:
        return bool(self.agree(self.inner.timing_done(samples, timed_s)))


class RankOps:
    """A device's ops (`measure.local.device_ops`) made into ops of all ranks: a barrier opens each
    block, and a block lasts from the earliest start to the latest end over the ranks (see the
    module docstring). Training steps go through DDP; inference runs independent replicas."""

    def __init__(self, inner, world: World, group, ddp: DdpOptions = DdpOptions()):
        self.inner, self.world, self.group, self.ddp = inner, world, group, ddp
        self.timing = False
        self.rank_seconds: list[list[float]] = []  # per timed block: each rank's own seconds

    def schedule(self, budget) -> AgreedSchedule:
        return AgreedSchedule(self.inner.schedule(budget), self.agree, budget)

    def agree(self, value: float) -> float:
        """Rank 0's `value`, on every rank."""
        shared = torch.tensor([float(value)], dtype=torch.float64)
        dist.broadcast(shared, src=0, group=self.group)
        return shared.item()

    def wrap_model(self, model: torch.nn.Module, training: bool) -> torch.nn.Module:
        if not training:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.world.device.index] if self.world.device.type == "cuda" else None
        return DistributedDataParallel(
            model,
            device_ids=ids,
            bucket_cap_mb=self.ddp.bucket_cap_mb,
            gradient_as_bucket_view=self.ddp.gradient_as_bucket_view,
        )

    def start(self) -> None:
        dist.barrier(group=self.group)
        self.inner.start()

    def stop(self) -> float:
        # The device's own time for the block (on a GPU from CUDA events, so without the host's
        # launch latency, as on one device), placed on the wall clock by the moment it ended.
        own = self.inner.stop()
        ended = time.time()
        mine = torch.tensor([ended - own, ended], dtype=torch.float64)
        every = [torch.empty(2, dtype=torch.float64) for _ in range(self.world.size)]
        dist.all_gather(every, mine, group=self.group)
        starts, ends = [t[0].item() for t in every], [t[1].item() for t in every]
        if self.timing:
            self.rank_seconds.append([end - start for start, end in zip(starts, ends)])
        return window_of(starts, ends)

    def after_step(self) -> None:
        self.inner.after_step()

    def optimizer_step(self, optimizer, scaler) -> None:
        self.inner.optimizer_step(optimizer, scaler)

    def barrier(self) -> None:
        self.inner.barrier()
        dist.barrier(group=self.group)

    def compile_count(self) -> int:
        return self.inner.compile_count()

    def open_window(self) -> None:
        self.timing = True
        self.inner.open_window()

    def close_window(self):
        return self.inner.close_window()

    def host_timing(self) -> dict | None:
        return self.inner.host_timing()  # this rank's

    def summary(self, images_per_rank_block: int, training: bool, peak_bytes: int | None) -> Distributed:
        """What the ranks measured (a collective: every rank calls it)."""
        mine = (socket.gethostname(), device_name(self.world.device), peak_bytes)
        every = [None] * self.world.size
        dist.all_gather_object(every, mine, group=self.group)
        return rank_summary(
            self.rank_seconds,
            images_per_rank_block,
            every,
            world_size=self.world.size,
            backend=self.world.backend,
            nodes=self.world.nodes,
            parallel=self.ddp.describe() if training else REPLICAS,
        )


def window_of(starts: list[float], ends: list[float]) -> float:
    """Seconds a block of all ranks took: latest end - earliest start (and never less than the
    slowest rank's own time, which needs no clocks to agree)."""
    return max(max(ends) - min(starts), max(end - start for start, end in zip(starts, ends)))


def rank_summary(
    rank_seconds: list[list[float]], images_per_rank_block: int, ranks: list[tuple], **world
) -> Distributed:
    """Each rank's median images/s over its own timed blocks (`rank_seconds`: per block, each
    rank's seconds), the straggler index, and each rank's (host, device, peak memory) from
    `ranks`; `world`: world_size, backend, nodes, parallel."""
    rates = [statistics.median(images_per_rank_block / block[r] for block in rank_seconds)
             for r in range(len(ranks))]  # fmt: skip
    return Distributed(
        **world,
        window=WINDOW_METHOD,
        rank_images_per_s=rates,
        # the median rank against the slowest: 1.0 when they keep pace. In DDP training the
        # all-reduce makes every rank wait for the slowest at each step, so their own times
        # agree and a slow rank shows in the global rate (and the scaling efficiency) instead.
        straggler=statistics.median(rates) / min(rates),
        rank_hosts=[host for host, _, _ in ranks],
        rank_devices=[name for _, name, _ in ranks],
        rank_peak_memory_bytes=[peak for _, _, peak in ranks],
    )

"""A sweep: the plan of cells and their rounds (`coatbench.rounds`), measured in worker
processes (`coatbench.workers`), each row saved the moment its cell ends. With `--rounds auto`
the sweep adds rounds of the claim cells that are still unresolved while their projected need
fits in its time budget (`next_round`), and says what it stopped on."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import torch

from coatbench.accuracy import Accuracies
from coatbench.child import EventKind, job_events
from coatbench.config import CoAtNetConfig
from coatbench.counting import ModelCount, count
from coatbench.distributed import RANK_BLOCK_S, threads_per_rank
from coatbench.errors import CoatbenchError, Interrupted
from coatbench.files import WriteError, check_writable
from coatbench.hardware import resolve_device
from coatbench.harness import PEAK_MEMORY_METHOD, Cell, Measurement, check_cell
from coatbench.machine import fingerprint, peak_tflops
from coatbench.options import (
    CPU_BUDGET,
    DEFAULT_BUDGET_S,
    Budget,
    Dtype,
    Mode,
    Rounds,
    SweepOptions,
    Torchrun,
)
from coatbench.rank import COLLECTIVE_GRACE_S, Ranks
from coatbench.report import Pending, pending
from coatbench.results import (
    Compute,
    Distributed,
    Env,
    HostTiming,
    Memory,
    ModelSize,
    Row,
    Status,
    Throughput,
    Timing,
    Trial,
    append_row,
    network_key,
    read_rows,
    run_key,
)
from coatbench.rounds import WARMUP_POSITION, Slot, moved_copy, round_slots, schedule
from coatbench.suite import Suite, load_suite
from coatbench.workers import in_worker, measure_on_all_cores, xla_topology
from coatbench.xla import XlaOptions

GPU_BATCH_SIZES = (32, 64, 128, 256)
# One size on a CPU: with rounds, per-core 1 and 2 of Table 8 did not fit the 10 minutes of the
# default run on the 2-core VM (a CoAtNet-3 training step at 384 takes 4-9 s there).
CPU_BATCH_SIZES = (1,)
CPU_MAX_BATCH = 8  # a suite whose batch sizes stay at or under this (ci-cpu's 2) keeps them on a CPU


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    groups: tuple[tuple[Cell, ...], ...]  # the settings: cells interleaved together, baseline first
    slots: tuple[Slot, ...]  # what runs, in order: the groups' rounds (`rounds.schedule`)
    device: torch.device
    env: Env  # the machine the cells will run on (for XLA: as its workers see it)
    budget: Budget  # a cell's, over all its rounds
    out: Path
    rounds: int = 1
    seed: int = 0
    sweep: str = ""  # the id its rows share
    processes: int = 1  # worker processes the rounds are spread over, one after another
    scaled_down: tuple[str, ...] = ()  # what the CPU defaults changed, said to the user
    resumed: str = ""  # which file a resumed plan continues, and how far it had got
    previous: tuple[Row, ...] = ()  # the rows already in that file
    xla: XlaOptions = field(default_factory=XlaOptions)
    auto: bool = False  # --rounds auto: `rounds` is the minimum, `next_round` adds more
    time_budget_s: float = 0.0  # auto: the sweep's wall time within which rounds are added
    suite: Suite | None = None  # whose claims decide whether more rounds are needed
    replicated: frozenset = frozenset()  # configs of settings with a replicate row (`rounds.aa_cells`)
    # this process as a rank of `torchrun -m coatbench`, or None; its own, not rank 0's (`run_sweep`)
    torchrun: Torchrun | None = None

    @property
    def timed_slots(self) -> int:
        return sum(slot.timed for slot in self.slots)

    def budget_of(self, slot: Slot) -> Budget:
        """A timed slot gets the cell's share of the budget for one round; the warm-up copy
        runs its first steps only (it warms the process: allocator, thread pools, caches)."""
        budget = self.budget.per_round(self.rounds)
        quick = dict(min_time=0.0, max_time=0.0, min_samples=1, max_warmup_time=0.0)
        return budget if slot.timed else dataclasses.replace(budget, **quick)

    def process_of(self, round_: int) -> int:
        return round_ * self.processes // self.rounds

    @property
    def threads(self) -> int | None:
        """With several devices, the CPU threads of one rank, which a one-device cell gets too (on
        a CPU that share of the cores is the device, so that E compares like with like); None:
        torch's default."""
        return self.env.threads if any(cell.devices > 1 for cell in self.cells) else None

    def env_of(self, cell: Cell) -> Env:
        """The environment of `cell`'s rows: the plan's, on as many devices as the cell has ranks."""
        return self.env if cell.devices == 1 else dataclasses.replace(self.env, device_count=cell.devices)


def make_plan(
    configs: Sequence[CoAtNetConfig],
    asked: SweepOptions,
    *,
    groups: Sequence[Sequence[CoAtNetConfig]] | None = None,
    default_batch_sizes: Sequence[int] = GPU_BATCH_SIZES,
    suite: Suite | None = None,
) -> Plan:
    """The cells to measure and their rounds, as `asked`, with the defaults that fit the device;
    on a CPU, what was scaled down is listed so that nobody mistakes it for the full run. `groups`
    (default: all configs, one group) are the settings whose cells are interleaved: the first
    config of each is its baseline. `suite`: whose claims and replicate rows the sweep follows.
    With `asked.resume`, only what that file does not hold yet, appended to it, and its sweep's
    rounds go on. The file the rows go to is checked for writing before anything else."""
    check_writable(asked.resume or asked.out)
    rounds, time_budget_s, seed, processes = asked.rounds, asked.time_budget_s, asked.seed, asked.processes
    batch_sizes, dtype, devices, channels_last = asked.batch_sizes, asked.dtype, asked.devices, asked.channels_last
    rounds = Rounds(rounds) if isinstance(rounds, int) else rounds  # a number: that many rounds
    auto, rounds = rounds.auto, rounds.count
    if rounds < 1:
        raise CoatbenchError(f"--rounds must be at least 1, got {rounds}")
    target = resolve_device(asked.device)
    time_budget_s = DEFAULT_BUDGET_S[target.type] if time_budget_s is None else time_budget_s
    # A fresh process per round on a CPU, where the first cell of a process reads slow; on a GPU
    # rounds in one process and in one each agreed within 0.05% (results/h100/process_check.md),
    # and one process saves a CUDA start per round.
    processes = (rounds if target.type == "cpu" else 1) if processes is None else processes
    if not 1 <= processes <= rounds:
        raise CoatbenchError(f"--processes must be between 1 and the rounds ({rounds}), got {processes}")
    notes = []
    on_cpu = target.type == "cpu"
    if batch_sizes is None:
        batch_sizes = default_batch_sizes
        if on_cpu and max(batch_sizes) > CPU_MAX_BATCH:
            batch_sizes = CPU_BATCH_SIZES
            notes.append(
                f"per-core batch sizes {','.join(map(str, default_batch_sizes))} -> "
                f"{','.join(map(str, CPU_BATCH_SIZES))} (no accelerator; pass --batch-sizes to choose)"
            )
    if dtype is None:
        dtype = Dtype.FP32 if on_cpu else Dtype.BF16
        if on_cpu:
            notes.append("dtype bf16 -> fp32 (CPUs without bf16 units run autocast slower; pass --dtype)")
    budget = CPU_BUDGET if on_cpu else Budget()
    if on_cpu and asked.min_time is None and asked.max_time is None:
        notes.append(
            f"timed seconds per cell {Budget().min_time:g}-{Budget().max_time:g} -> "
            f"{budget.min_time:g}-{budget.max_time:g} (pass --min-time / --max-time)"
        )
    overrides = {"min_time": asked.min_time, "max_time": asked.max_time, "timeout": asked.timeout}
    for name, value in overrides.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CoatbenchError(f"--{name.replace('_', '-')} must be a positive number of seconds, got {value:g}")
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    if budget.max_time < budget.min_time:
        raise CoatbenchError(f"--max-time {budget.max_time:g} is below --min-time {budget.min_time:g}: raise it")
    if target.type != "xla" and (asked.xla_cache is not None or asked.strict):
        given = "--xla-cache" if asked.xla_cache is not None else "--strict"
        raise CoatbenchError(f"{given} applies to --device xla only")
    torchrun = Torchrun.of_this_process()
    devices = check_devices(devices, target, notes, torchrun)
    if max(devices) > 1:
        # Every cell's blocks as long as a block of several ranks: E divides X_N by X_1, and a
        # short block reads slow by the launch latency at its start (in results/h200x2, blocks of
        # 2 compiled steps on one GPU read 3% under the plain loop), which would lift E.
        budget = dataclasses.replace(budget, block_time=max(budget.block_time, RANK_BLOCK_S))
    if target.type == "xla" and channels_last:
        channels_last = False  # XLA picks its own layouts: a memory format means nothing there
    cells = tuple(
        Cell(config, mode, batch, dtype, execution, channels_last, n, asked.ddp)
        for config in configs
        for execution in asked.executions
        for mode in asked.modes
        for batch in batch_sizes
        for n in devices
    )
    if Mode.INFER in asked.modes:  # with inference asked for too, an inference-only execution skips training
        left_out = {c.execution.value for c in cells if c.execution.inference_only and c.mode is Mode.TRAIN}
        cells = tuple(c for c in cells if not (c.execution.inference_only and c.mode is Mode.TRAIN))
        notes += [
            f"{execution} measures inference only: its training cells are left out" for execution in sorted(left_out)
        ]
    for cell in cells:  # refuse a bad combination before the first cell runs
        check_cell(cell, target)
    groups = [list(configs)] if groups is None else groups
    in_groups = tuple(
        g for g in (tuple(c for config in group for c in cells if c.config == config) for group in groups) if g
    )
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    sweep = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{seed}"
    replicated = frozenset(suite.replicated) if suite is not None else frozenset()
    slots = schedule(in_groups, rounds, seed, warmup=target.type != "xla", replicated=replicated)
    xla = XlaOptions(strict=asked.strict, cache_dir=None if asked.xla_cache is None else str(asked.xla_cache))
    env = fingerprint(target, *xla_topology()) if target.type == "xla" else fingerprint(target)
    if max(devices) > 1 or torchrun is not None:
        # a rank's threads (`distributed.join`): on a CPU a device is a share of its cores
        local = torchrun.local_world_size if torchrun is not None else max(devices)
        env = dataclasses.replace(env, threads=threads_per_rank(local))
    plan = Plan(
        cells,
        in_groups,
        slots,
        target,
        env,
        budget,
        Path(asked.out),
        rounds,
        seed,
        sweep,
        processes,
        tuple(notes),
        xla=xla,
        auto=auto,
        time_budget_s=time_budget_s,
        suite=suite,
        replicated=replicated,
        torchrun=torchrun,
    )
    return plan if asked.resume is None else skip_done(plan, read_rows(asked.resume), asked.resume)


def check_devices(
    devices: Sequence[int], target: torch.device, notes: list[str], torchrun: Torchrun | None
) -> tuple[int, ...]:
    """The device counts to measure, one device first: the scaling efficiency of N devices needs
    the one-device figure of the same sweep (the plan's notes say it is measured too)."""
    devices = tuple(sorted(set(devices)))
    if devices[0] < 1:
        raise CoatbenchError(f"--devices must be positive, got {devices[0]}")
    if torchrun is not None:  # torchrun's ranks are the devices, here and on other hosts
        world = torchrun.world_size
        if devices not in ((1,), (world,), (1, world)):
            raise CoatbenchError(f"under torchrun the devices are its {world} ranks: drop --devices")
        if target.type == "xla":
            raise CoatbenchError("torchrun runs CPUs and GPUs: on XLA run coatbench without it (torch_xla.launch)")
        return (1, world) if world > 1 else (1,)
    if devices == (1,):
        return devices
    if target.type == "xla":
        raise CoatbenchError("--devices is for CPUs and GPUs: on XLA every local core runs (torch_xla.launch)")
    have = torch.cuda.device_count() if target.type == "cuda" else (os.cpu_count() or 1)
    if devices[-1] > have:
        what = "GPUs" if target.type == "cuda" else "CPU cores (a rank needs one at least)"
        raise CoatbenchError(f"--devices {devices[-1]} asked for, this machine has {have} {what}: ask for fewer")
    if devices[0] != 1:
        devices = (1, *devices)  # the plan's notes say so
    return devices


def plan_suite(suite_name: str, asked: SweepOptions) -> tuple[Suite, Plan]:
    """A suite's cells, in its modes, at its batch sizes unless `asked` names them."""
    suite = load_suite(suite_name)
    asked = dataclasses.replace(asked, modes=tuple(suite.modes))
    return suite, make_plan(
        suite.configs, asked, groups=suite.groups, default_batch_sizes=suite.batch_sizes, suite=suite
    )


def skip_done(plan: Plan, rows: Sequence[Row], source: Path) -> Plan:
    """`plan` without what `rows` already measured (or found out of memory) on this machine: a
    cell of an older file (one row, no rounds) entirely; a sweep that was cut short, the slots
    it has, continued with its own seed. A timed-out or failed slot is tried again."""
    kept = [r for r in rows if r.status in (Status.OK, Status.OOM)]
    whole = {run_key(r.env, r.spec) for r in kept if r.trial is None}
    # a cell out of memory is not tried again in any round (the sweep left its later slots out)
    whole |= {run_key(r.env, r.spec) for r in kept if r.status is Status.OOM}
    last = next((r.trial for r in reversed(rows) if r.trial is not None), None)
    if last is not None and last.rounds == plan.rounds:
        slots = schedule(plan.groups, plan.rounds, last.seed, plan.device.type != "xla", plan.replicated)
        plan = dataclasses.replace(plan, seed=last.seed, sweep=last.sweep, slots=slots)
    done = {
        (r.trial.round, r.trial.replicate, run_key(r.env, r.spec))
        for r in kept
        if r.trial and r.trial.sweep == plan.sweep
    }

    def left(slot: Slot) -> bool:
        env = plan.env_of(slot.cell)
        key = run_key(env, slot.cell.spec(env))
        return key not in whole and (slot.round, slot.replicate, key) not in done

    def needed(slot: Slot) -> bool:  # a warm-up copy, while its round of its group has a slot left
        same = (t for t in plan.slots if (t.round, t.group) == (slot.round, slot.group) and t.timed)
        return left(slot) if slot.timed else any(left(t) for t in same)

    slots = tuple(s for s in plan.slots if needed(s))
    measured = plan.timed_slots - sum(s.timed for s in slots)
    note = f"resuming {source}: {measured} of {plan.timed_slots} measurements already there"
    return dataclasses.replace(plan, slots=slots, out=Path(source), resumed=note, previous=tuple(rows))


def make_row(
    cell: Cell,
    result: Measurement,
    counted: ModelCount,
    env: Env,
    notes: Sequence[str] = (),
    trial: Trial | None = None,
) -> Row:
    """One results-file row: the full spec, the model's size, the statistics, the environment,
    where the run sat in its sweep, and what the sweep scaled down (so that every report made
    from it can say so)."""
    devices = env.device_count
    counted_size = ModelSize(counted.params, counted.macs, counted.flops, counted.train_flops)
    row = Row(
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        status=result.status,
        message=result.message,
        spec=cell.spec(env),
        model_size=counted_size,
        timing=Timing(
            result.first_step_s, result.warmup_s, result.warmup_steps, result.warmup_stable, result.block_steps
        ),
        samples=list(result.samples),
        env=env,
        scaled_down=list(notes),
        xla=result.xla,
        trial=trial,
        distributed=None if result.distributed is None else Distributed(**result.distributed),
        host=None if result.host is None else HostTiming.of(result.host, cell.batch_size, result.samples),
    )
    if not result.samples:
        return row
    flops_per_image = counted_size.train_flops if cell.mode is Mode.TRAIN else counted_size.flops
    throughput = Throughput.of(result.samples, cell.batch_size, devices)
    peak = peak_tflops(env.device_name, cell.dtype.value)
    return dataclasses.replace(
        row,
        throughput=throughput,
        compute=Compute.of(throughput.images_per_s, devices, flops_per_image, peak, cell.dtype.value, env.device_name),
        memory=Memory(result.peak_memory_bytes, None if result.peak_memory_bytes is None else PEAK_MEMORY_METHOD),
    )


# Rough rates for --dry-run estimates only, from committed runs: compile time near the slowest
# compiled first step in results/h100/table8.jsonl (timing.first_step_s: up to 105 s training,
# 29 s inference); 15% of the datasheet peak on a GPU (compiled MFU 13-18%, results/h100/speed.md);
# 0.08 TFLOP/s per CPU thread (compute.tflops 0.16-0.22 on 2 threads, results/cpu/table8.jsonl).
COMPILE_SECONDS = {Mode.TRAIN: 100.0, Mode.INFER: 35.0}
CPU_TFLOPS_PER_THREAD = 0.08
GPU_FRACTION_OF_PEAK = 0.15


def estimate_seconds(cell: Cell, counted: ModelCount, env: Env, budget: Budget) -> float:
    """A rough wall-clock guess for one cell, for --dry-run."""
    flops = (counted.train_flops if cell.mode is Mode.TRAIN else counted.flops) * cell.batch_size
    peak = peak_tflops(env.device_name, cell.dtype.value) if env.device_type == "cuda" else None
    rate = (peak or 100.0) * GPU_FRACTION_OF_PEAK if env.device_type == "cuda" else CPU_TFLOPS_PER_THREAD * env.threads
    step = flops / (rate * 1e12)
    steps = 5 + max(budget.min_samples * max(1, round(budget.block_time / step)), budget.min_time / step)
    compile_time = COMPILE_SECONDS[cell.mode] if cell.execution.compiles else 0.0
    return compile_time + steps * step


def estimate(plan: Plan) -> list[tuple[Cell | None, int, float]]:
    """Each cell of `plan` (and each A/A copy: replicate 1) with a rough guess of its seconds over
    the planned rounds (from MACs, not a measurement); the warm-up copies together, as cell None."""
    counts: dict[CoAtNetConfig, ModelCount] = {}
    seconds: dict[tuple[Cell | None, int], float] = {}
    for slot in plan.slots:
        counted = counts.setdefault(slot.cell.config, count(slot.cell.config))
        guess = estimate_seconds(slot.cell, counted, plan.env, plan.budget_of(slot))
        key = (slot.cell, slot.replicate) if slot.timed else (None, 0)
        seconds[key] = seconds.get(key, 0.0) + guess
    return [(cell, replicate, s) for (cell, replicate), s in seconds.items()]


@dataclass
class SweepProgress:
    """Callbacks for a front end; the sweep itself prints nothing. `index` counts the timed
    measurements (`Plan.timed_slots` in all, and those of the rounds `on_round` announces)."""

    on_start: Callable[[int, Cell], None] = lambda index, cell: None
    on_done: Callable[[int, Cell, Row], None] = lambda index, cell, row: None
    on_round: Callable[[int, int, str], None] = lambda round_, measurements, why: None  # a round added


class StopReason(str, Enum):
    """Why a sweep added no more rounds."""

    FIXED = "fixed"  # --rounds N: the rounds asked for
    NO_CLAIMS = "no claims"  # nothing for more rounds to resolve
    RESOLVED = "resolved"  # every claim cell resolved
    BUDGET = "budget"  # the time budget is spent
    OUT_OF_REACH = "out of reach"  # every unresolved cell has its estimate on a boundary


@dataclass(frozen=True)
class Stop:
    reason: StopReason
    detail: str  # for a person: what stopped it, with figures


@dataclass
class SweepResult:
    rows: list[Row] = field(default_factory=list)
    interrupted: bool = False
    stopped: Stop | None = None  # None: interrupted
    rounds: int = 0  # the rounds the sweep has, earlier sessions' included
    elapsed_s: float = 0.0


MeasureCell = Callable[[Cell, torch.device, Budget], Measurement]


@dataclass
class _Costs:
    """What the slots of this sweep took, for the cost of a round to come: each slot's wall seconds
    (by cell, replicate and timing), and a launch's own (processes starting)."""

    slot_s: dict[tuple, float] = field(default_factory=dict)
    launch_s: float = 0.0

    def of(self, slots: Sequence[Slot]) -> float:
        """The seconds `slots` took when last measured (a slot never measured: the slowest seen)."""
        slowest = max(self.slot_s.values(), default=0.0)
        return self.launch_s + sum(self.slot_s.get((s.cell, s.replicate, s.timed), slowest) for s in slots)


def run_sweep(
    plan: Plan, progress: SweepProgress = SweepProgress(), measure_cell: MeasureCell | None = None
) -> SweepResult:
    """Measure every slot of the plan, the rounds spread over `plan.processes` worker processes
    (XLA, or a given `measure_cell`: in this process), appending each timed slot's row to
    `plan.out` as soon as it exists; with `plan.auto`, then the rounds `next_round` adds. A cell
    out of memory is not tried again (its A/A copy moves to the batch below). Ctrl-C stops the
    sweep; every finished measurement is already on disk."""
    ranks = None
    if measure_cell is None and plan.torchrun is not None:
        ranks = Ranks(plan.device.type, plan.budget.timeout + COLLECTIVE_GRACE_S)
        plan = dataclasses.replace(ranks.agree(plan), torchrun=plan.torchrun)  # rank 0's, as this rank
    if measure_cell is None and plan.device.type == "xla":
        measure_cell = lambda cell, device, budget: measure_on_all_cores(cell, budget, plan.xla)  # noqa: E731
    sweeping = _Sweeping(plan, progress, ranks, measure_cell)
    started = time.monotonic()
    try:
        for process in range(plan.processes):
            sweeping.run([s for s in plan.slots if plan.process_of(s.round) == process], process)
        process = plan.processes
        while True:
            rows = [*plan.previous, *sweeping.result.rows] if ranks is None or ranks.speaks else []
            decided = next_round(plan, rows, time.monotonic() - started, sweeping.costs, sweeping.out_of_memory)
            if ranks is not None:
                decided = ranks.agree(decided)  # rank 0's, which holds the rows
            slots, stop, why = decided
            if stop is not None:
                sweeping.result.stopped = stop
                break
            progress.on_round(slots[0].round, sum(s.timed for s in slots), why)
            sweeping.run(slots, process)
            process += 1
    except KeyboardInterrupt:
        sweeping.result.interrupted = True
    result = sweeping.result
    mine = [r for r in (*plan.previous, *result.rows) if r.trial and r.trial.sweep == plan.sweep]
    result.rounds = len({r.trial.round for r in mine})
    result.elapsed_s = time.monotonic() - started
    return result


class _Sweeping:
    """A sweep under way: its rows, the cells found out of memory, what slots cost, and how the
    slots' launches are run."""

    def __init__(self, plan: Plan, progress: SweepProgress, ranks: Ranks | None, measure_cell: MeasureCell | None):
        self.plan, self.progress, self.ranks, self.measure_cell = plan, progress, ranks, measure_cell
        # Counted before any worker starts: counting takes the CPU for seconds, and a worker
        # measuring meanwhile would time the two together.
        self.counts = {config: count(config) for config in dict.fromkeys(c.config for c in plan.cells)}
        self.result, self.costs, self.timed = SweepResult(), _Costs(), 0
        oom = {run_key(r.env, r.spec) for r in plan.previous if r.status is Status.OOM}
        self.out_of_memory = {c for c in plan.cells if run_key(plan.env_of(c), c.spec(plan.env_of(c))) in oom}

    def run(self, slots: Sequence[Slot], process: int) -> None:
        """`slots` in launches; a launch in which a cell ran out of memory is cut short there, and
        what it had left goes on in a new launch without that cell."""
        left = list(slots)
        while left:
            left = [s for s in map(self._after_oom, left) if s is not None]
            pieces = launches(left)
            left = []
            for i, launch in enumerate(pieces):
                rest = self._launch(launch, process)
                if rest:
                    left = rest + [s for piece in pieces[i + 1 :] for s in piece]
                    break

    def _after_oom(self, slot: Slot) -> Slot | None:
        """`slot` as it runs now: dropped if its cell ran out of memory, unless it is an A/A copy,
        which moves to the cell below (`rounds.moved_copy`)."""
        if slot.cell not in self.out_of_memory:
            return slot
        plan = self.plan
        moved = moved_copy(plan.groups, slot, self.out_of_memory, plan.replicated) if slot.replicate else None
        return moved

    def _launch(self, launch: list[Slot], process: int) -> list[Slot]:
        """Run one launch; the slots it left when a cell ran out of memory before its end."""
        plan, ranks = self.plan, self.ranks
        jobs = [(slot.cell if slot.timed else slot.cell.warm_up_copy(), plan.budget_of(slot)) for slot in launch]
        if ranks is not None:
            events = ranks.measure(jobs)
        elif self.measure_cell is None:
            events = in_worker(jobs, plan.device, devices=launch[0].cell.devices, threads=plan.threads)
        else:
            events = job_events(jobs, lambda cell, budget: self.measure_cell(cell, plan.device, budget))
        opened = since = time.monotonic()
        try:
            for event in events:
                index, measured = event.index, event.measurement
                slot = launch[index]
                if event.kind is EventKind.START:
                    since = time.monotonic()
                    if slot.timed and (ranks is None or ranks.speaks):
                        self.progress.on_start(self.timed, slot.cell)
                    continue
                self.costs.slot_s[slot.cell, slot.replicate, slot.timed] = time.monotonic() - since
                if slot.timed and (ranks is None or ranks.speaks):
                    self._save(slot, measured, process)
                if measured.status is Status.OOM and slot.timed:  # on every rank alike; a warm-up copy
                    self.out_of_memory.add(slot.cell)  # runs eager: the cell itself is tried, and its row says
                    if index + 1 < len(launch):
                        return launch[index + 1 :]
        finally:
            events.close()  # ends the launch's processes, also when it is cut short
            measured_s = sum(self.costs.slot_s.get((s.cell, s.replicate, s.timed), 0.0) for s in launch)
            self.costs.launch_s = max(0.0, time.monotonic() - opened - measured_s)
        return []

    def _save(self, slot: Slot, measured: Measurement, process: int) -> None:
        plan = self.plan
        trial = Trial(plan.sweep, plan.seed, slot.round, plan.rounds, slot.position, process, slot.replicate)
        row = make_row(
            slot.cell, measured, self.counts[slot.cell.config], plan.env_of(slot.cell), plan.scaled_down, trial
        )
        _save(row, plan)
        self.result.rows.append(row)
        self.progress.on_done(self.timed, slot.cell, row)
        self.timed += 1


def next_round(
    plan: Plan, rows: Sequence[Row], elapsed_s: float, costs: _Costs, out_of_memory: set[Cell]
) -> tuple[list[Slot], Stop | None, str]:
    """The slots of the round to add, or why none is added: (slots, None, why) or ([], stop, "").
    Under `--rounds auto` a round measures again the claim cells that are unresolved (with their
    baselines and A/A copies), those whose projected need (`report.pending`) fits, with the rounds
    it takes at what a round of them cost so far, in what is left of the time budget; where no
    need fits, the closest cell alone, while one round of it fits."""
    if not plan.auto:
        return [], Stop(StopReason.FIXED, f"{plan.rounds} round(s), as asked (--rounds)"), ""
    if plan.suite is None or not plan.suite.claims:
        return [], Stop(StopReason.NO_CLAIMS, f"{plan.rounds} rounds: no claim for more rounds to resolve"), ""
    mine = [r for r in rows if r.trial and r.trial.sweep == plan.sweep]
    waiting = pending(plan.suite, mine, Accuracies((), ())) if mine else []
    if not waiting:
        return [], Stop(StopReason.RESOLVED, "every claim cell is resolved"), ""
    round_ = 1 + max(r.trial.round for r in mine)
    warmup = plan.device.type != "xla"

    def slots_of(chosen) -> list[Slot]:
        cells = {c for p in chosen for c in plan.cells if _pending_cell(p, c)}
        return round_slots(
            plan.groups, round_, plan.seed, replicated=plan.replicated, skip=out_of_memory, only=cells, warmup=warmup
        )

    left = plan.time_budget_s - elapsed_s
    reachable = sorted((p for p in waiting if p.rounds_needed is not None), key=lambda p: p.rounds_needed - p.rounds)
    chosen: list = []
    for i, p in enumerate(reachable):
        if (p.rounds_needed - p.rounds) * costs.of(slots_of(reachable[: i + 1])) > left:
            break
        chosen = reachable[: i + 1]
    budget = f"{plan.time_budget_s / 60:.1f} min budget, {max(left, 0) / 60:.1f} min left"
    if left < 0:  # the minimum rounds are measured whatever they cost: say that they overran
        budget = f"{plan.time_budget_s / 60:.1f} min budget, overrun by the {plan.rounds} rounds at least"
    if chosen:
        slots = slots_of(chosen)
        return slots, None, f"{len(waiting)} claim cell(s) unresolved, {len(chosen)} within reach ({budget})"
    if reachable:
        # No projected need fits. The projection comes from few rounds' spread, and one wide
        # round inflates it, so while a round of the closest cell fits, it is measured again.
        p, cost = reachable[0], costs.of(slots_of(reachable[:1]))
        if cost <= left:
            why = (
                f"{len(waiting)} claim cell(s) unresolved; the closest, {p.where}, needs ~{p.rounds_needed} "
                f"rounds in all at its spread so far, more than fit: one more round of it ({budget})"
            )
            return slots_of(reachable[:1]), None, why
        detail = f"{len(waiting)} claim cell(s) unresolved; a round of the closest takes ~{cost:.0f} s ({budget})"
        return [], Stop(StopReason.BUDGET, detail), ""
    detail = f"{len(waiting)} claim cell(s) unresolved, each with its estimate on a boundary (e.g. {waiting[0].where})"
    return [], Stop(StopReason.OUT_OF_REACH, detail), ""


def _pending_cell(p: Pending, cell: Cell) -> bool:
    """Whether `cell` is one that the pending claim cell `p` measures again."""
    return network_key(cell.config.spec()) in p.networks and (
        cell.mode.value,
        cell.batch_size,
        cell.execution.value,
        cell.devices,
    ) == (p.mode, p.batch, p.execution, p.devices)


def launches(slots: Sequence[Slot]) -> list[list[Slot]]:
    """`slots` cut where the device count changes: each piece runs in one launch of workers (one
    process, or a group of ranks). A launch that would open with a timed slot opens with an
    untimed copy of it, as every round does (`rounds.schedule`): no process's first cell is timed."""
    pieces: list[list[Slot]] = []
    for slot in slots:
        if pieces and pieces[-1][0].cell.devices == slot.cell.devices:
            pieces[-1].append(slot)
        elif slot.timed and pieces:
            pieces.append([dataclasses.replace(slot, position=WARMUP_POSITION, replicate=0), slot])
        else:
            pieces.append([slot])
    return pieces


def _save(row: Row, plan: Plan) -> None:
    """Append `row` to the plan's file; if that fails after all (the disk filled up), to a file
    in the temporary folder, and stop the sweep saying where the row is."""
    try:
        append_row(plan.out, row)
    except WriteError as error:
        rescue = Path(tempfile.gettempdir()) / f"coatbench-rescued-{plan.sweep}.jsonl"
        append_row(rescue, row)
        raise CoatbenchError(f"{error}; the measurement just made is saved in {rescue}") from None


def run_plan(plan: Plan, progress: SweepProgress = SweepProgress()) -> tuple[list[Row], SweepResult]:
    """The rows of the file's earlier runs (when resumed) and of this sweep, and how the sweep
    ended; an interrupted sweep is an error that says where its finished cells are."""
    result = run_sweep(plan, progress)
    if result.interrupted:
        done = f"{len(result.rows)} measurements"
        raise Interrupted(f"interrupted after {done}; they are saved in {plan.out}", plan.out)
    return list(plan.previous) + result.rows, result

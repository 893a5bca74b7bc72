"""A sweep: the plan of cells and their rounds (`coatbench.rounds`), measured in worker
processes (`coatbench.workers`), each row saved the moment its cell ends."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from coatbench.config import CoAtNetConfig
from coatbench.counting import ModelCount, count
from coatbench.distributed import RANK_BLOCK_S, threads_per_rank
from coatbench.errors import CoatbenchError, Interrupted
from coatbench.files import WriteError, check_writable
from coatbench.hardware import fingerprint, peak_tflops, resolve_device
from coatbench.harness import PEAK_MEMORY_METHOD, Cell, Measurement, check_cell
from coatbench.options import (
    CPU_BUDGET,
    DEFAULT_ROUNDS,
    Budget,
    DdpOptions,
    DeviceKind,
    Dtype,
    Execution,
    Mode,
    torchrun_rank,
)
from coatbench.rank import COLLECTIVE_GRACE_S, Ranks
from coatbench.results import (
    Compute,
    Distributed,
    Env,
    Memory,
    ModelSize,
    Row,
    Status,
    Throughput,
    Timing,
    Trial,
    append_row,
    read_rows,
    run_key,
)
from coatbench.rounds import WARMUP_POSITION, Slot, schedule
from coatbench.suite import Suite, load_suite
from coatbench.workers import Job, in_worker, measure_on_all_cores, xla_topology
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
    *,
    groups: Sequence[Sequence[CoAtNetConfig]] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int | None = None,
    processes: int | None = None,
    device: DeviceKind = DeviceKind.AUTO,
    modes: Sequence[Mode] = (Mode.TRAIN, Mode.INFER),
    batch_sizes: Sequence[int] | None = None,
    default_batch_sizes: Sequence[int] = GPU_BATCH_SIZES,
    dtype: Dtype | None = None,
    executions: Sequence[Execution] = (Execution.EAGER,),
    channels_last: bool = True,
    devices: Sequence[int] = (1,),
    ddp: DdpOptions = DdpOptions(),
    min_time: float | None = None,
    max_time: float | None = None,
    timeout: float | None = None,
    strict: bool = False,
    xla_cache: Path | None = None,
    out: Path,
    resume: Path | None = None,
) -> Plan:
    """The cells to measure and their rounds, with the defaults that fit the device; on a CPU,
    what was scaled down is listed so that nobody mistakes it for the full run. `groups`
    (default: all configs, one group) are the settings whose cells are interleaved: the first
    config of each is its baseline. With `resume`, only what that file does not hold yet,
    appended to it. The file the rows go to is checked for writing before anything else."""
    check_writable(resume or out)
    if rounds < 1:
        raise CoatbenchError(f"--rounds must be at least 1, got {rounds}")
    target = resolve_device(device)
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
    if on_cpu and min_time is None and max_time is None:
        notes.append(
            f"timed seconds per cell {Budget().min_time:g}-{Budget().max_time:g} -> "
            f"{budget.min_time:g}-{budget.max_time:g} (pass --min-time / --max-time)"
        )
    overrides = {"min_time": min_time, "max_time": max_time, "timeout": timeout}
    for name, value in overrides.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CoatbenchError(f"--{name.replace('_', '-')} must be a positive number of seconds, got {value:g}")
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    if budget.max_time < budget.min_time:
        raise CoatbenchError(f"--max-time {budget.max_time:g} is below --min-time {budget.min_time:g}: raise it")
    if target.type != "xla" and (xla_cache is not None or strict):
        raise CoatbenchError(f"{'--xla-cache' if xla_cache is not None else '--strict'} applies to --device xla only")
    devices = check_devices(devices, target, notes)
    if max(devices) > 1:
        # Every cell's blocks as long as a block of several ranks: E divides X_N by X_1, and a
        # short block reads slow by the launch latency at its start (in results/h200x2, blocks of
        # 2 compiled steps on one GPU read 3% under the plain loop), which would lift E.
        budget = dataclasses.replace(budget, block_time=max(budget.block_time, RANK_BLOCK_S))
    if target.type == "xla" and channels_last:
        channels_last = False  # XLA picks its own layouts: a memory format means nothing there
    cells = tuple(
        Cell(config, mode, batch, dtype, execution, channels_last, n, ddp)
        for config in configs
        for execution in executions
        for mode in modes
        for batch in batch_sizes
        for n in devices
    )
    if Mode.INFER in modes:  # with inference asked for too, an inference-only execution skips training
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
    slots = schedule(in_groups, rounds, seed, warmup=target.type != "xla")
    xla = XlaOptions(strict=strict, cache_dir=None if xla_cache is None else str(xla_cache))
    env = fingerprint(target, *xla_topology()) if target.type == "xla" else fingerprint(target)
    if max(devices) > 1 or torchrun_rank() is not None:
        # a rank's threads (`distributed.join`): on a CPU a device is a share of its cores
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if torchrun_rank() is not None else max(devices)
        env = dataclasses.replace(env, threads=threads_per_rank(local))
    plan = Plan(
        cells, in_groups, slots, target, env, budget, Path(out), rounds, seed, sweep, processes, tuple(notes), xla=xla
    )
    return plan if resume is None else skip_done(plan, read_rows(resume), resume)


def check_devices(devices: Sequence[int], target: torch.device, notes: list[str]) -> tuple[int, ...]:
    """The device counts to measure, one device first: the scaling efficiency of N devices needs
    the one-device figure of the same sweep (the plan's notes say it is measured too)."""
    devices = tuple(sorted(set(devices)))
    if devices[0] < 1:
        raise CoatbenchError(f"--devices must be positive, got {devices[0]}")
    if torchrun_rank() is not None:  # torchrun's ranks are the devices, here and on other hosts
        world = int(os.environ["WORLD_SIZE"])
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


def plan_suite(
    suite_name: str, *, executions: Sequence[Execution] = (Execution.EAGER,), **options
) -> tuple[Suite, Plan]:
    """A suite's cells (`options` as for `make_plan`)."""
    suite = load_suite(suite_name)
    groups = dict(groups=suite.groups, modes=suite.modes, default_batch_sizes=suite.batch_sizes)
    return suite, make_plan(suite.configs, executions=executions, **groups, **options)


def skip_done(plan: Plan, rows: Sequence[Row], source: Path) -> Plan:
    """`plan` without what `rows` already measured (or found out of memory) on this machine: a
    cell of an older file (one row, no rounds) entirely; a sweep that was cut short, the slots
    it has, continued with its own seed. A timed-out or failed slot is tried again."""
    kept = [r for r in rows if r.status in (Status.OK, Status.OOM)]
    whole = {run_key(r.env, r.spec) for r in kept if r.trial is None}
    last = next((r.trial for r in reversed(rows) if r.trial is not None), None)
    if last is not None and last.rounds == plan.rounds:
        slots = schedule(plan.groups, plan.rounds, last.seed, warmup=plan.device.type != "xla")
        plan = dataclasses.replace(plan, seed=last.seed, sweep=last.sweep, slots=slots)
    done = {
        (r.trial.round, r.trial.self_test, run_key(r.env, r.spec))
        for r in kept
        if r.trial and r.trial.sweep == plan.sweep
    }

    def left(slot: Slot) -> bool:
        env = plan.env_of(slot.cell)
        key = run_key(env, slot.cell.spec(env))
        return key not in whole and (slot.round, slot.self_test, key) not in done

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


def estimate(plan: Plan) -> list[tuple[Cell, float]]:
    """Each cell of `plan` with a rough guess of its seconds over all its rounds (from MACs,
    not a measurement)."""
    counts: dict[CoAtNetConfig, ModelCount] = {}
    seconds: dict[Cell, float] = {}
    for slot in plan.slots:
        counted = counts.setdefault(slot.cell.config, count(slot.cell.config))
        guess = estimate_seconds(slot.cell, counted, plan.env, plan.budget_of(slot))
        seconds[slot.cell] = seconds.get(slot.cell, 0.0) + guess
    return list(seconds.items())


@dataclass
class SweepProgress:
    """Callbacks for a front end; the sweep itself prints nothing. `index` counts the timed
    measurements (`Plan.timed_slots` in all)."""

    on_start: Callable[[int, Cell], None] = lambda index, cell: None
    on_done: Callable[[int, Cell, Row], None] = lambda index, cell, row: None


@dataclass
class SweepResult:
    rows: list[Row] = field(default_factory=list)
    interrupted: bool = False


MeasureCell = Callable[[Cell, torch.device, Budget], Measurement]


def _inline(
    jobs: Sequence[Job], device: torch.device, measure_cell: MeasureCell
) -> Iterator[tuple[int, Measurement | None]]:
    """`workers.in_worker`'s protocol, in this process (one device)."""
    for index, (cell, budget) in enumerate(jobs):
        yield index, None
        yield index, measure_cell(cell, device, budget)


def run_sweep(
    plan: Plan, progress: SweepProgress = SweepProgress(), measure_cell: MeasureCell | None = None
) -> SweepResult:
    """Measure every slot of the plan, the rounds spread over `plan.processes` worker processes
    (XLA, or a given `measure_cell`: in this process), appending each timed slot's row to
    `plan.out` as soon as it exists. A cell out of memory is not tried again in later rounds.
    Ctrl-C stops the sweep; every finished measurement is already on disk."""
    ranks = None
    if measure_cell is None and torchrun_rank() is not None:
        ranks = Ranks(plan.device.type, plan.budget.timeout + COLLECTIVE_GRACE_S)
        plan = ranks.agree(plan)
    if measure_cell is None and plan.device.type == "xla":
        measure_cell = lambda cell, device, budget: measure_on_all_cores(cell, budget, plan.xla)  # noqa: E731
    # Counted before any worker starts: counting takes the CPU for seconds, and a worker measuring
    # meanwhile would time the two together.
    counts = {config: count(config) for config in dict.fromkeys(slot.cell.config for slot in plan.slots)}
    result, out_of_memory, timed = SweepResult(), set(), 0
    try:
        for process in range(plan.processes):
            slots = [s for s in plan.slots if plan.process_of(s.round) == process]
            for launch in launches(slots):
                launch = [s for s in launch if s.cell not in out_of_memory]
                jobs = [
                    (slot.cell if slot.timed else slot.cell.warm_up_copy(), plan.budget_of(slot)) for slot in launch
                ]
                devices = launch[0].cell.devices if launch else 1
                if ranks is not None:
                    events = ranks.measure(jobs)
                elif measure_cell is None:
                    events = in_worker(jobs, plan.device, devices=devices, threads=plan.threads)
                else:
                    events = _inline(jobs, plan.device, measure_cell)
                for index, measured in events:
                    slot = launch[index]
                    if measured is not None and measured.status is Status.OOM:
                        out_of_memory.add(slot.cell)  # on every rank alike: later rounds skip it
                    if not slot.timed or (ranks is not None and not ranks.speaks):
                        continue
                    if measured is None:
                        progress.on_start(timed, slot.cell)
                        continue
                    counted = counts[slot.cell.config]
                    position, test = slot.position, slot.self_test
                    trial = Trial(plan.sweep, plan.seed, slot.round, plan.rounds, position, process, test)
                    row = make_row(slot.cell, measured, counted, plan.env_of(slot.cell), plan.scaled_down, trial)
                    _save(row, plan)
                    result.rows.append(row)
                    progress.on_done(timed, slot.cell, row)
                    timed += 1
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def launches(slots: Sequence[Slot]) -> list[list[Slot]]:
    """`slots` cut where the device count changes: each piece runs in one launch of workers (one
    process, or a group of ranks). A launch that would open with a timed slot opens with an
    untimed copy of it, as every round does (`rounds.schedule`): no process's first cell is timed."""
    pieces: list[list[Slot]] = []
    for slot in slots:
        if pieces and pieces[-1][0].cell.devices == slot.cell.devices:
            pieces[-1].append(slot)
        elif slot.timed and pieces:
            pieces.append([dataclasses.replace(slot, position=WARMUP_POSITION, self_test=""), slot])
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


def run_plan(plan: Plan, progress: SweepProgress = SweepProgress()) -> list[Row]:
    """The rows of the file's earlier runs (when resumed) and of this sweep; an interrupted
    sweep is an error that says where its finished cells are."""
    result = run_sweep(plan, progress)
    if result.interrupted:
        done = f"{len(result.rows)} of {plan.timed_slots} measurements"
        raise Interrupted(f"interrupted after {done}; they are saved in {plan.out}", plan.out)
    return list(plan.previous) + result.rows

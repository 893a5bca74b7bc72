"""A sweep's plan: the cells to measure, their rounds in order (`run.schedule`), the device's
defaults, and how the cells are launched (`Plan.launcher`); what a resumed file already holds is
left out (`skip_done`), and `estimate` guesses the time for --dry-run. Nothing is measured here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from coatbench.config import Network
from coatbench.counting import ModelCount, count_or_none
from coatbench.errors import CoatbenchError
from coatbench.files import check_writable
from coatbench.measure.distributed import rank_block_time, threads_per_rank
from coatbench.measure.harness import Cell, check_cell
from coatbench.measure.local import resolve_device
from coatbench.measure.machine import fingerprint, peak_tflops
from coatbench.measure.xla import XlaOptions
from coatbench.networks import resolve
from coatbench.results import Env, Row, Status, read_rows, run_key
from coatbench.run.child import ChildKind
from coatbench.run.launch import Children, Launcher, xla_topology
from coatbench.run.schedule import Slot, schedule
from coatbench.settings import CPU_BUDGET, DEFAULT_BUDGET_S, Budget, Dtype, Mode, SweepOptions, Torchrun
from coatbench.suite import Suite

GPU_BATCH_SIZES = (32, 64, 128, 256)
# One size on a CPU: with rounds, per-core 1 and 2 of Table 8 did not fit the 10 minutes of the
# default run on the 2-core VM (a CoAtNet-3 training step at 384 takes 4-9 s there).
CPU_BATCH_SIZES = (1,)
CPU_MAX_BATCH = 8  # a suite whose batch sizes stay at or under this (ci-cpu's 2) keeps them on a CPU


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    groups: tuple[tuple[Cell, ...], ...]  # the settings: cells interleaved together, baseline first
    slots: tuple[Slot, ...]  # what runs, in order: the groups' rounds (`run.schedule.schedule`)
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
    replicated: frozenset = frozenset()  # configs of settings with a replicate row (`run.schedule.aa_cells`)
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

    def launcher(self, devices: int) -> Launcher:
        """Where a launch of cells on `devices` devices runs: every local XLA core; a group of
        ranks; one process. (Under torchrun the sweep's own ranks measure: `run.sweep`.)"""
        if self.device.type == "xla":
            return Children(ChildKind.XLA, "xla", xla=self.xla)
        if devices > 1:
            return Children(ChildKind.RANK, self.device.type, devices)
        return Children(ChildKind.PROCESS, self.device.type, threads=self.threads)


def make_plan(
    configs: Sequence[Network],
    asked: SweepOptions,
    *,
    groups: Sequence[Sequence[Network]] | None = None,
    default_batch_sizes: Sequence[int] = GPU_BATCH_SIZES,
    suite: Suite | None = None,
) -> Plan:
    """The cells to measure and their rounds, as `asked`, with the defaults that fit the device;
    on a CPU, what was scaled down is listed so that nobody mistakes it for the full run. `groups`
    (default: all configs, one group) are the settings whose cells are interleaved: the first
    config of each is its baseline. `suite`: whose claims and replicate rows the sweep follows.
    With `asked.resume`, only what that file does not hold yet, appended to it, and its sweep's
    rounds go on. The file the rows go to is checked for writing before anything else; an external
    model is checked and given its input size and classes (`networks.resolve`) before any cell."""
    check_writable(asked.resume or asked.out)
    resolved = {config: resolve(config) for config in configs}
    configs = list(resolved.values())
    groups = None if groups is None else [[resolved[c] for c in group] for group in groups]
    rounds = asked.rounds.count
    target = resolve_device(asked.device)
    time_budget_s = DEFAULT_BUDGET_S[target.type] if asked.time_budget_s is None else asked.time_budget_s
    # A fresh process per round on a CPU, where the first cell of a process reads slow; on a GPU
    # rounds in one process and in one each agreed within 0.05% (results/h100/process_check.md),
    # and one process saves a CUDA start per round.
    processes = (rounds if target.type == "cpu" else 1) if asked.processes is None else asked.processes
    if not 1 <= processes <= rounds:
        raise CoatbenchError(f"--processes must be between 1 and the rounds ({rounds}), got {processes}")
    notes = []
    on_cpu = target.type == "cpu"
    batch_sizes, dtype = asked.batch_sizes, asked.dtype
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
    devices = check_devices(asked.devices, target, notes, torchrun)
    if max(devices) > 1:
        # Every cell's blocks as long as a block of several ranks: E divides X_N by X_1, and a
        # short block reads slow by the launch latency at its start (in results/h200x2, blocks of
        # 2 compiled steps on one GPU read 3% under the plain loop), which would lift E.
        budget = dataclasses.replace(budget, block_time=max(budget.block_time, rank_block_time(budget)))
    # XLA picks its own layouts: a memory format means nothing there
    channels_last = asked.channels_last and target.type != "xla"
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
    by_config: dict[Network, list[Cell]] = {}
    for cell in cells:
        by_config.setdefault(cell.config, []).append(cell)
    in_groups = tuple(
        g for g in (tuple(c for config in group for c in by_config.get(config, ())) for group in groups) if g
    )
    seed = random.SystemRandom().randrange(2**31) if asked.seed is None else asked.seed
    sweep = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{seed}"
    replicated = frozenset(resolved[c] for c in suite.replicated) if suite is not None else frozenset()
    slots = schedule(in_groups, rounds, seed, warmup=target.type != "xla", replicated=replicated)
    xla = XlaOptions(strict=asked.strict, cache_dir=None if asked.xla_cache is None else str(asked.xla_cache))
    # The XLA cores are counted and named by children that the launcher starts (this process
    # must not start an XLA runtime of its own): the rows' environment, which resume matches on.
    env = fingerprint(target, *xla_topology(xla)) if target.type == "xla" else fingerprint(target)
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
        auto=asked.rounds.auto,
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


def plan_suite(suite: Suite, asked: SweepOptions) -> Plan:
    """A suite's cells, in its modes, at its batch sizes unless `asked` names them."""
    asked = dataclasses.replace(asked, modes=tuple(suite.modes))
    return make_plan(suite.configs, asked, groups=suite.groups, default_batch_sizes=suite.batch_sizes, suite=suite)


def skip_done(plan: Plan, rows: Sequence[Row], source: Path) -> Plan:
    """`plan` without what `rows` already measured (or found out of memory) on this machine: a
    cell of an older file (one row, no rounds) entirely; a sweep that was cut short, the slots
    it has, continued with its own seed. A timed-out or failed slot is tried again."""
    kept = [r for r in rows if r.status in (Status.OK, Status.OOM)]
    whole = {run_key(r.env, r.spec) for r in kept if r.trial is None}
    # a cell out of memory is not tried again in any round (the sweep left its later slots out)
    whole |= {run_key(r.env, r.spec) for r in kept if r.status is Status.OOM}
    machines = {plan.env_of(c).hardware_key for c in plan.cells}
    theirs = sorted({r.env.hardware_key for r in rows} - machines)
    if rows and len(theirs) == len({r.env.hardware_key for r in rows}):  # not one row of this machine
        raise CoatbenchError(
            f"--resume {source}: its rows were measured on {', '.join(theirs)}, not on this machine "
            f"({', '.join(sorted(machines))}): resume it there, or measure into a new --out"
        )
    last = next((r.trial for r in reversed(rows) if r.trial is not None), None)
    if last is not None:  # only the same plan goes on: its rounds would be paired with this one's
        keys = {run_key(plan.env_of(c), c.spec(plan.env_of(c))) for c in plan.cells}
        other = next(
            (r for r in rows if r.trial and r.trial.sweep == last.sweep and run_key(r.env, r.spec) not in keys), None
        )
        if other is not None:
            raise CoatbenchError(
                f"--resume {source}: its sweep measured a cell this command does not ({other.spec.model} "
                f"{other.spec.mode} bs{other.spec.batch_per_core} {other.spec.execution} on {other.env.hardware_key}): "
                "resume it with the command and on the machine that made it, or measure into a new --out"
            )
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

    open_groups = {(t.round, t.group) for t in plan.slots if t.timed and left(t)}

    def needed(slot: Slot) -> bool:  # a warm-up copy, while its round of its group has a slot left
        return left(slot) if slot.timed else (slot.round, slot.group) in open_groups

    slots = tuple(s for s in plan.slots if needed(s))
    measured = plan.timed_slots - sum(s.timed for s in slots)
    note = f"resuming {source}: {measured} of {plan.timed_slots} measurements already there"
    return dataclasses.replace(plan, slots=slots, out=Path(source), resumed=note, previous=tuple(rows))


# Rough rates for --dry-run estimates only, from committed runs: compile time near the slowest
# compiled first step in results/h100/table8.jsonl (timing.first_step_s: up to 105 s training,
# 29 s inference); 15% of the datasheet peak on a GPU (compiled MFU 13-18%, results/h100/speed.md);
# 0.08 TFLOP/s per CPU thread (compute.tflops 0.16-0.22 on 2 threads, results/cpu/table8.jsonl).
COMPILE_SECONDS = {Mode.TRAIN: 100.0, Mode.INFER: 35.0}
CPU_TFLOPS_PER_THREAD = 0.08
GPU_FRACTION_OF_PEAK = 0.15


def estimate_seconds(cell: Cell, counted: ModelCount | None, env: Env, budget: Budget) -> float:
    """A rough wall-clock guess for one cell, for --dry-run (0 for a model that cannot be counted:
    it fails at its first step)."""
    if counted is None:
        return 0.0
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
    counts: dict[Network, ModelCount | None] = {}
    seconds: dict[tuple[Cell | None, int], float] = {}
    for slot in plan.slots:
        if slot.cell.config not in counts:
            counts[slot.cell.config] = count_or_none(slot.cell.config)
        counted = counts[slot.cell.config]
        guess = estimate_seconds(slot.cell, counted, plan.env, plan.budget_of(slot))
        key = (slot.cell, slot.replicate) if slot.timed else (None, 0)
        seconds[key] = seconds.get(key, 0.0) + guess
    return [(cell, replicate, s) for (cell, replicate), s in seconds.items()]

"""A sweep: a plan's slots (`run.plan`) measured by its launchers (`run.launch`), each row made
and saved the moment its cell ends. With `--rounds auto` the sweep adds rounds of the claim
cells that are still unresolved while their projected need fits in its time budget
(`next_round`), and says what it stopped on."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from coatbench.accuracy import Accuracies
from coatbench.counting import ModelCount, count_or_none
from coatbench.errors import CoatbenchError, Interrupted
from coatbench.files import WriteError
from coatbench.measure.harness import PEAK_MEMORY_METHOD, Cell, Measurement
from coatbench.measure.machine import peak_tflops
from coatbench.report import Pending, pending
from coatbench.results import (
    Compute,
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
    run_key,
)
from coatbench.run.child import EventKind
from coatbench.run.launch import Launcher, TorchrunRanks
from coatbench.run.plan import Plan
from coatbench.run.schedule import WARMUP_POSITION, Slot, moved_copy, round_slots
from coatbench.settings import Mode


def make_row(
    cell: Cell,
    result: Measurement,
    counted: ModelCount | None,  # None: an external model that does not run at its size (`UncountedModel`)
    env: Env,
    notes: Sequence[str] = (),
    trial: Trial | None = None,
) -> Row:
    """One results-file row: the full spec, the model's size, the statistics, the environment,
    where the run sat in its sweep, and what the sweep scaled down (so that every report made
    from it can say so)."""
    devices = env.device_count
    counted_size = (
        None
        if counted is None
        else ModelSize(
            counted.params,
            counted.macs,
            counted.flops,
            counted.train_flops,
            counted.uncounted_ops,
            counted.architecture,
        )
    )
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
        distributed=result.distributed,
        host=None if result.host is None else HostTiming.of(result.host, cell.batch_size, result.samples),
    )
    if not result.samples:
        return row
    throughput = Throughput.of(result.samples, cell.batch_size, devices)
    compute = None
    if counted_size is not None:
        flops_per_image = counted_size.train_flops if cell.mode is Mode.TRAIN else counted_size.flops
        peak = peak_tflops(env.device_name, cell.dtype.value)
        compute = Compute.of(throughput.images_per_s, devices, flops_per_image, peak, cell.dtype.value, env.device_name)
    return dataclasses.replace(
        row,
        throughput=throughput,
        compute=compute,
        memory=Memory(result.peak_memory_bytes, None if result.peak_memory_bytes is None else PEAK_MEMORY_METHOD),
    )


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


def run_sweep(plan: Plan, progress: SweepProgress = SweepProgress(), launcher: Launcher | None = None) -> SweepResult:
    """Measure every slot of the plan, the rounds spread over `plan.processes` launches of its
    launchers (`Plan.launcher`; a given `launcher` runs every launch instead), appending each
    timed slot's row to `plan.out` as soon as it exists; with `plan.auto`, then the rounds
    `next_round` adds. A cell out of memory is not tried again (its A/A copy moves to the batch
    below). Ctrl-C stops the sweep; every finished measurement is already on disk."""
    ranks = None
    if launcher is None and plan.torchrun is not None:
        launcher = ranks = TorchrunRanks(plan.device.type, plan.budget.timeout)
        plan = dataclasses.replace(ranks.agree(plan), torchrun=plan.torchrun)  # rank 0's, as this rank
    sweeping = _Sweeping(plan, progress, launcher, speaks=ranks is None or ranks.speaks)
    started = time.monotonic()
    try:
        for process in range(plan.processes):
            sweeping.run([s for s in plan.slots if plan.process_of(s.round) == process], process)
        process = plan.processes
        while True:
            rows = [*plan.previous, *sweeping.result.rows] if sweeping.speaks else []
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
    """A sweep under way: its rows, the cells found out of memory, what slots cost, and where
    the slots' launches run (`launcher`, or the plan's); only where it `speaks` (rank 0 under
    torchrun) are rows saved and progress shown."""

    def __init__(self, plan: Plan, progress: SweepProgress, launcher: Launcher | None, speaks: bool):
        self.plan, self.progress, self.launcher, self.speaks = plan, progress, launcher, speaks
        # Counted before any worker starts: counting takes the CPU for seconds, and a worker
        # measuring meanwhile would time the two together.
        self.counts = {config: count_or_none(config) for config in dict.fromkeys(c.config for c in plan.cells)}
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
        which moves to the cell below (`run.schedule.moved_copy`)."""
        if slot.cell not in self.out_of_memory:
            return slot
        plan = self.plan
        moved = moved_copy(plan.groups, slot, self.out_of_memory, plan.replicated) if slot.replicate else None
        return moved

    def _launch(self, launch: list[Slot], process: int) -> list[Slot]:
        """Run one launch; the slots it left when a cell ran out of memory before its end."""
        plan = self.plan
        jobs = [(slot.cell if slot.timed else slot.cell.warm_up_copy(), plan.budget_of(slot)) for slot in launch]
        events = (self.launcher or plan.launcher(launch[0].cell.devices)).events(jobs)
        opened = since = time.monotonic()
        try:
            for event in events:
                index, measured = event.index, event.measurement
                slot = launch[index]
                if event.kind is EventKind.START:
                    since = time.monotonic()
                    if slot.timed and self.speaks:
                        self.progress.on_start(self.timed, slot.cell)
                    continue
                self.costs.slot_s[slot.cell, slot.replicate, slot.timed] = time.monotonic() - since
                if slot.timed and self.speaks:
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
    untimed copy of it, as every round does (`run.schedule.schedule`): no process's first cell is timed."""
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

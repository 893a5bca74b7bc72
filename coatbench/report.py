"""Reports in the form of the paper's tables: recorded accuracy beside measured speed,
every change given against the setting's baseline with its uncertainty, the A/A controls, and a
verdict on each of the paper's speed claims at each per-core batch.

Pure data: `build_reports` returns dataclasses; `coatbench.views.report` writes them.
Runs made under different conditions (hardware, torch, execution, dtype, memory format,
devices) are never compared: each set of conditions gets its own report
(`results.condition_key`).

A verdict is a statement at 95%: each word says where the 95% interval of the claimed side's
speed-up lies against the claimed range R = [min, max] (`classify`), an interval over rounds at
the confidence of its look, so that 95% holds over every look a sweep takes (`stats.look`,
97.5% at a sweep's first rounds, 98.75% at twice as many, ...); an interval that straddles
a boundary of R or 0 is `unresolved`, with the rounds that would resolve it. A cell's A/A
control (the baseline measured twice a round, `run.schedule.aa_cells`) that shows an order effect
makes inconclusive the verdicts it covers, and only those.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from coatbench.accuracy import Accuracies, AccuracyRecord
from coatbench.config import ExternalModel, short_name
from coatbench.errors import CoatbenchError
from coatbench.results import Row, Status, condition_key, network_key, scaling_key
from coatbench.runs import CellRuns, change_of
from coatbench.stats import Basis, Change, next_look, on_grid
from coatbench.suite import Claim, Setting, Suite, SuiteRow

# The A/A control shows an order effect only when its 95% interval excludes 0 by more than this:
# a bias smaller than that moves no verdict on the claims at hand (5% and more).
ORDER_TOLERANCE = 0.02

# A scaling efficiency above this is a measurement problem, never superlinear scaling: data-
# parallel ranks each do one device's work plus communication (issue 16).
SUPERLINEAR = 1.02


class Word(str, Enum):
    """A verdict on one cell of a claim; I = the 95% interval of the claimed side's speed-up,
    R = [min, max] the claimed range."""

    CONSISTENT = "consistent"  # I lies within R
    STRONGER = "stronger than claimed"  # I lies above R
    WEAKER = "weaker than claimed"  # I lies in (0, min)
    NO_DIFFERENCE = "no measurable difference"  # I contains 0 and lies below min
    CONTRADICTED = "contradicted"  # I lies below 0
    UNRESOLVED = "unresolved"  # I straddles a boundary (or there is no interval at 95%)
    INCONCLUSIVE = "inconclusive"  # the A/A control covering the cell shows an order effect
    UNTESTED = "untested"  # a side was not measured

    @property
    def conclusive(self) -> bool:
        return self in CONCLUSIVE


CONCLUSIVE = frozenset({Word.CONSISTENT, Word.STRONGER, Word.WEAKER, Word.NO_DIFFERENCE, Word.CONTRADICTED})


class AAState(str, Enum):
    """What an A/A control says."""

    PASSED = "no order effect"  # its interval lies within +-ORDER_TOLERANCE
    FAILED = "order-sensitive"  # its interval excludes 0 by more than ORDER_TOLERANCE
    WIDE = "too noisy to tell"  # neither: no evidence of an order effect, nor of its absence
    NO_INTERVAL = "one round: no interval"  # a single pair


@dataclass(frozen=True)
class AAResult:
    """The A/A control of one cell: its second measurement in each round against its first, by the
    same code as a variant's change (`runs.change_of`)."""

    setting: str
    mode: str
    batch: int
    change: Change

    @property
    def state(self) -> AAState:
        c = self.change
        if not c.has_interval or c.basis is Basis.SINGLE_RUN:  # one pair: its blocks leave out how runs wander
            return AAState.NO_INTERVAL
        if c.low > ORDER_TOLERANCE or c.high < -ORDER_TOLERANCE:
            return AAState.FAILED
        if c.low >= -ORDER_TOLERANCE and c.high <= ORDER_TOLERANCE:
            return AAState.PASSED
        return AAState.WIDE

    @property
    def failed(self) -> bool:
        return self.state is AAState.FAILED


@dataclass(frozen=True)
class Scaling:
    """E(N) = X_N / (N * X_1): per-core images/s on N devices against one device, from the
    runs of both (paired within rounds when they share them, as a variant with its baseline)."""

    change: Change  # X_N / X_1 - 1

    @property
    def efficiency(self) -> float:
        return 1 + self.change.change

    @property
    def uncertainty(self) -> float:
        return self.change.uncertainty

    @property
    def suspect(self) -> bool:
        return self.efficiency > SUPERLINEAR


SCALING_NOTE = (
    "E: scaling efficiency X_N / (N X_1), per-core images/s on N devices against one device measured in the same "
    "rounds, 95% interval; ! marks E above 1.02, which is a measurement problem (a slow one-device figure, hosts' "
    "clocks apart), not superlinear scaling"
)


def scaling_of(runs: Sequence[Row], single: Sequence[Row] | None) -> Scaling | None:
    """The scaling efficiency of a cell on several devices (`runs`) against its one-device runs
    of the same sweeps: a one-device run from elsewhere (another sweep, measured in blocks of
    another length or on a quieter afternoon) would make E an unpaired comparison."""
    sweeps = {r.trial.sweep for r in runs if r.trial}
    single = [r for r in single or () if r.trial and r.trial.sweep in sweeps]
    change = change_of(CellRuns.of(runs), CellRuns.of(single)) if single else None
    return None if change is None else Scaling(change)


def single_device_runs(rows: Sequence[Row]) -> dict[tuple, list[Row]]:
    """The one-device runs among `rows`, by the scaling key they share with their N-device runs."""
    found: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if row.spec.devices == 1 and row.spec.device != "xla":
            found[scaling_key(row.env, row.spec)].append(row)
    return found


@dataclass(frozen=True)
class Measured:
    """One (mode, per-core batch) cell of a report line."""

    runs: CellRuns
    change: Change | None = None  # against the setting's baseline row; None for the baseline itself
    scaling: Scaling | None = None  # on several devices: against one device

    @property
    def status(self) -> Status | None:
        return self.runs.status

    @property
    def images_per_s(self) -> float | None:
        return self.runs.value

    @property
    def unstable(self) -> str:
        return self.runs.unstable

    @property
    def host_bound(self) -> bool:
        return self.runs.host_bound


@dataclass(frozen=True)
class Line:
    setting: str
    label: str
    short: str  # for narrow tables: "base", "hd64", "LN", "A/A" (`config.short_name`)
    model: str
    image_size: int
    baseline: bool
    accuracy: AccuracyRecord | None
    params: int | None
    macs: int | None
    cells: dict[tuple[str, int], Measured]  # (mode, per-core batch) -> measurement
    network: Mapping[str, Any] = field(default_factory=dict)  # the suite row's (`config.spec()`)
    architecture: Mapping[str, str] = field(default_factory=dict)  # an external model's (`ModelSize`)


@dataclass(frozen=True)
class Difference:
    """One thing that differs between a claim's two models: a knob, a kwarg, an architecture
    config field or a count of modules of one kind, the params or the MACs."""

    what: str
    baseline: str
    variant: str


# A claim lists this many differences, then counts the rest (the JSON report has them all).
SHOWN_DIFFERENCES = 8


def differences(base: Line, other: Line) -> tuple[Difference, ...]:
    """What differs between two lines' models: the network's fields (knobs; an external model's
    name and kwargs), an external model's architecture, the params and MACs."""
    found = []
    for what, a, b, unit in (("params", base.params, other.params, 1e6), ("MACs", base.macs, other.macs, 1e9)):
        if a is not None and b is not None and a != b:
            suffix = "M" if unit == 1e6 else "G"
            found.append(Difference(what, f"{a / unit:,.3f}{suffix}", f"{b / unit:,.3f}{suffix}"))
    for source_a, source_b in ((base.network, other.network), (base.architecture, other.architecture)):
        for key in dict.fromkeys([*source_a, *source_b]):
            a, b = source_a.get(key, "-"), source_b.get(key, "-")
            if a != b:
                found.append(Difference(key, _said(a), _said(b)))
    return tuple(found)


def _said(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class CellVerdict:
    """The verdict on one per-core batch of a claim."""

    batch: int
    word: Word
    change: Change | None = None  # the variant against its baseline, as in the tables (+ = the variant is faster)
    straddles: tuple[float, ...] = ()  # UNRESOLVED: the boundaries (claimed-side speed-ups) its interval straddles
    rounds_needed: int | None = None  # UNRESOLVED: rounds in all that would resolve it at the rounds' spread
    host_bound: bool = False  # a side's steps were host-bound: the cell measures kernel launches
    aa: tuple[AAResult, ...] = ()  # the A/A controls that cover it
    missing: str = ""  # UNTESTED: what was not measured

    @property
    def rounds(self) -> int:
        return 0 if self.change is None else self.change.n


@dataclass(frozen=True)
class Verdict:
    """A claim on one setting and mode: a verdict per per-core batch."""

    claim: Claim
    variant: str  # the variant's short name
    setting: str
    mode: str
    execution: str
    dtype: str
    device: str
    per_batch: tuple[CellVerdict, ...]
    differences: tuple[Difference, ...] = ()  # between the baseline's model and the variant's

    @property
    def summary(self) -> tuple[tuple[Word, tuple[int, ...]], ...]:
        """Each word with the per-core batches it holds at, in the order they first appear."""
        found: dict[Word, list[int]] = {}
        for cell in self.per_batch:
            found.setdefault(cell.word, []).append(cell.batch)
        return tuple((word, tuple(batches)) for word, batches in found.items())

    @property
    def tested(self) -> bool:
        return any(cell.word is not Word.UNTESTED for cell in self.per_batch)


@dataclass
class Report:
    suite: str
    description: str
    hardware_key: str
    device_name: str
    torch: str
    execution: str
    dtype: str
    channels_last: bool
    devices: int
    modes: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    lines: list[Line]
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    accuracy_files: tuple[str, ...] = ()  # every accuracy file read, the user's before the paper's
    controls: list[AAResult] = field(default_factory=list)  # the A/A controls measured in these rows
    commits: tuple[str, ...] = ()  # the coatbench commits that measured the rows ("unknown" without one)
    dates: tuple[str, ...] = ()  # the first and last day a row was measured


def boundaries(claim: Claim) -> tuple[float, ...]:
    """0 and the ends of R: where a verdict's word changes."""
    return (0.0, claim.low) + (() if claim.high is None else (claim.high,))


def classify(speedup: Change, claim: Claim) -> tuple[Word, tuple[float, ...]]:
    """Where the 95% interval of the claimed side's speed-up lies against R (and 0): a word, and
    for an unresolved one the boundaries its interval straddles."""
    if not speedup.has_interval:
        return Word.UNRESOLVED, ()
    low, high, r_min, r_max = speedup.low, speedup.high, claim.low, claim.high
    if high < 0:
        return Word.CONTRADICTED, ()
    if r_max is not None and low > r_max:
        return Word.STRONGER, ()
    if low >= r_min and (r_max is None or high <= r_max):
        return Word.CONSISTENT, ()
    if high < r_min:
        return (Word.WEAKER if low > 0 else Word.NO_DIFFERENCE), ()
    return Word.UNRESOLVED, tuple(b for b in boundaries(claim) if low <= b <= high)


def claimed_speedup(change: Change, claim: Claim) -> Change:
    """The speed-up of the side the claim says is faster, from the variant's change against its
    baseline (the report's one sign: positive = variant faster)."""
    return change if claim.faster == "variant" else change.inverted()


def claimed_change(claim: Claim) -> str:
    """The claim as a change of the variant against its baseline (the report's one sign)."""
    if claim.faster == "variant":
        return f">= +{claim.low:.0%}" if claim.high is None else f"+{claim.low:.0%} to +{claim.high:.0%}"
    if claim.high is None:
        return f"<= {1 / (1 + claim.low) - 1:.0%}"
    return f"{1 / (1 + claim.low) - 1:.0%} to {1 / (1 + claim.high) - 1:.0%}"


def cell_verdict(
    batch: int, base: Measured, other: Measured, claim: Claim, covering: Sequence[AAResult]
) -> CellVerdict:
    """The verdict at one per-core batch: from the variant's change against its baseline, unless a
    side is missing, or an A/A control that covers the cell failed."""
    if base.status is not Status.OK or other.status is not Status.OK:
        missing = f"baseline {_state(base)}, variant {_state(other)}"
        return CellVerdict(batch, Word.UNTESTED, missing=missing)
    change = other.change
    host_bound = base.host_bound or other.host_bound
    if any(aa.failed for aa in covering):
        return CellVerdict(batch, Word.INCONCLUSIVE, change, host_bound=host_bound, aa=tuple(covering))
    speedup = claimed_speedup(change, claim)
    word, straddled = classify(speedup, claim) if change.basis is not Basis.SINGLE_RUN else (Word.UNRESOLVED, ())
    needed = speedup.rounds_to_clear(boundaries(claim)) if word is Word.UNRESOLVED else None
    return CellVerdict(batch, word, change, straddled, needed, host_bound, tuple(covering))


def _state(m: Measured) -> str:
    return "missing" if m.status is None else m.status.value


def covering_controls(controls: Sequence[AAResult], setting: str, mode: str, batch: int) -> list[AAResult]:
    """The A/A controls that cover a cell: the one at its own per-core batch, where there is one;
    else every control of its setting and mode."""
    mine = [aa for aa in controls if (aa.setting, aa.mode) == (setting, mode)]
    own = [aa for aa in mine if aa.batch == batch]
    return own or mine


def _verdicts(report: Report, suite: Suite, lines: dict[tuple[str, str], Line]) -> list[Verdict]:
    verdicts = []
    for claim in suite.claims:
        for setting in suite.settings:
            variant = claim.selects(setting)
            if variant is None:
                continue
            base, other = lines[setting.name, setting.baseline.label], lines[setting.name, variant.label]
            for mode in report.modes:
                per_batch = tuple(
                    cell_verdict(
                        batch,
                        base.cells[mode, batch],
                        other.cells[mode, batch],
                        claim,
                        covering_controls(report.controls, setting.name, mode, batch),
                    )
                    for batch in report.batch_sizes
                )
                where = dict(execution=report.execution, dtype=report.dtype, device=report.device_name)
                verdicts.append(
                    Verdict(
                        claim, other.short, setting.name, mode, **where, per_batch=per_batch,
                        differences=differences(base, other),
                    )
                )  # fmt: skip
    return verdicts


def covers(suite: Suite, rows: Sequence[Row]) -> bool:
    """Whether any of `rows` measured a network of the suite's settings."""
    suite = suite.measured_as([r.spec.network for r in rows])
    networks = {network_key(row.config.spec()) for s in suite.settings for row in s.rows}
    return any(network_key(r.spec.network) in networks for r in rows)


def report_cell(network, mode: str, batch: int) -> tuple[str, str, int]:
    """A cell of a report: the network with every knob, the mode and the per-core batch (the
    report's condition, `results.condition_key`, holds the rest of the run key)."""
    return network_key(network), mode, batch


def build_reports(suite: Suite, rows: Sequence[Row], accuracies: Accuracies) -> list[Report]:
    """One report per set of conditions found in `rows` (hardware, torch, execution, dtype,
    memory format, devices), in the order they first appear."""
    if not rows:
        raise CoatbenchError(f"no results to report for suite {suite.name}: measure first (coatbench run {suite.name})")
    suite = suite.measured_as([r.spec.network for r in rows])  # external models at their measured size
    groups: dict[tuple, dict[tuple, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cell = report_cell(row.spec.network, row.spec.mode, row.spec.batch_per_core)
        groups[condition_key(row.env, row.spec)][cell].append(row)  # every run of a cell, both replicates
    singles = single_device_runs(rows)
    return [_report(suite, cells, accuracies, singles) for cells in groups.values()]


def _report(
    suite: Suite, cells: dict[tuple, list[Row]], accuracies: Accuracies, singles: dict[tuple, list[Row]]
) -> Report:
    first = next(iter(cells.values()))[0]
    days = sorted({r.timestamp[:10] for runs in cells.values() for r in runs})
    present_batches = {batch for _, _, batch in cells}
    batch_sizes = tuple(b for b in suite.batch_sizes if b in present_batches) or tuple(sorted(present_batches))
    report = Report(
        suite=suite.name,
        description=suite.description,
        hardware_key=first.env.hardware_key,
        device_name=first.env.device_name,
        torch=first.env.torch,
        execution=first.spec.execution,
        dtype=first.spec.dtype,
        channels_last=first.spec.channels_last,
        devices=first.spec.devices,
        modes=tuple(m.value for m in suite.modes),
        batch_sizes=batch_sizes,
        lines=[],
        accuracy_files=accuracies.files,
        commits=tuple(dict.fromkeys((r.env.git_sha or "unknown")[:7] for runs in cells.values() for r in runs)),
        dates=tuple(dict.fromkeys([days[0], days[-1]])),
    )
    by_label: dict[tuple[str, str], Line] = {}
    for setting in suite.settings:
        for suite_row in setting.rows:
            line = _line(report, setting, suite_row, cells, accuracies, singles)
            report.lines.append(line)
            by_label[setting.name, suite_row.label] = line
        report.controls += controls_of(setting, report, cells)
    report.verdicts = _verdicts(report, suite, by_label)
    report.notes += _notes(report, cells)
    return report


def _line(report, setting: Setting, suite_row: SuiteRow, cells, accuracies, singles) -> Line:
    """A row of the suite as measured: each (mode, batch) cell with its change against the baseline
    (a replicate row: the baseline's second measurements, `Trial.replicate`)."""
    is_baseline = suite_row is setting.baseline
    measured, size = {}, None
    for mode in report.modes:
        for batch in report.batch_sizes:
            found = cells.get(report_cell(suite_row.config.spec(), mode, batch), [])
            base = CellRuns.of(cells.get(report_cell(setting.baseline.config.spec(), mode, batch), []))
            runs = CellRuns.of(found, replicate=int(suite_row.replicate))
            cell = Measured(runs, None if is_baseline else change_of(runs, base))
            if runs.rows and report.devices > 1:
                mine = list(runs.rows)
                scaling = scaling_of(mine, singles.get(scaling_key(mine[0].env, mine[0].spec)))
                cell = dataclasses.replace(cell, scaling=scaling)
            measured[mode, batch] = cell
            size = size or (runs.rows[-1].model_size if runs.rows else None)
    return Line(
        setting=setting.name,
        label=suite_row.label,
        short="base" if is_baseline else "A/A" if suite_row.replicate else _short(suite_row),
        model=suite_row.config.name,
        image_size=suite_row.config.image_size,
        baseline=is_baseline,
        accuracy=accuracies.lookup(suite_row.config.spec(), setting.pretrain, setting.accuracy_source),
        params=size.params if size else None,
        macs=size.macs if size else None,
        cells=measured,
        network=suite_row.config.spec(),
        architecture=(size.architecture if size else None) or {},
    )


def _short(suite_row: SuiteRow) -> str:
    """A variant's short name: its knobs (CoAtNet), or its label (another model's row)."""
    return suite_row.label if isinstance(suite_row.config, ExternalModel) else short_name(suite_row.knobs)


def controls_of(setting: Setting, report: Report, cells: dict[tuple, list[Row]]) -> list[AAResult]:
    """The A/A controls of a setting in one report: every cell of its baseline measured twice in a
    round, its second measurement against its first."""
    controls = []
    for mode in report.modes:
        for batch in report.batch_sizes:
            found = cells.get(report_cell(setting.baseline.config.spec(), mode, batch), [])
            change = change_of(CellRuns.of(found, replicate=1), CellRuns.of(found))
            if change is not None:
                controls.append(AAResult(setting.name, mode, batch, change))
    return controls


BASIS_NOTES = {
    Basis.ROUNDS: "from the ratios of variant and baseline within each round (paired; a t-interval over rounds, "
    "at 97.5% at a sweep's first rounds, 98.75% at twice as many, and so on: 95% over every look that --rounds "
    "auto takes)",
    Basis.RUNS: "over the runs of each cell (unpaired; Welch's t-interval)",
    Basis.SINGLE_RUN: "from the timed blocks of a single run, which leaves out how far whole runs wander, so no "
    "verdict rests on it (measure in rounds: coatbench run)",
}


def _notes(report: Report, cells: dict[tuple, list[Row]]) -> list[str]:
    scaled = dict.fromkeys(note for runs in cells.values() for row in runs for note in row.scaled_down)
    notes = [f"Scaled down for the CPU: {note}" for note in scaled]
    bases = [m.change.basis for line in report.lines for m in line.cells.values() if m.change is not None]
    if bases:
        notes.append("+-: 95% interval of the change; " + BASIS_NOTES[max(bases, key=list(Basis).index)])
    if not report.controls:
        measured_in_rounds = any(r.trial for runs in cells.values() for r in runs)
        why = (
            "no sweep of these rows measured a baseline twice in a round"
            if measured_in_rounds
            else ("these rows were measured without rounds")
        )
        notes.append(f"A/A control: not run ({why}), so no verdict here is checked against an order effect")
    unstable = [(line, key, m) for line in report.lines for key, m in line.cells.items() if m.unstable]
    if unstable:
        notes.append(
            f"Unstable (marked ~): {len(unstable)} cell(s), e.g. {unstable[0][0].label} "
            f"{unstable[0][1][0]} {unstable[0][1][1]}: {unstable[0][2].unstable}"
        )
    if report.devices > 1 and not report.hardware_key.startswith("xla:"):
        notes.append(
            SCALING_NOTE
            + (
                ""
                if any(m.scaling for line in report.lines for m in line.cells.values())
                else "; no one-device run in these rows, so no E"
            )
        )
    superseded = sum(m.runs.superseded for line in report.lines for m in line.cells.values())
    if superseded:
        notes.append(SUPERSEDED_NOTE.format(superseded))
    if any(line.accuracy is None for line in report.lines):
        notes.append("Top-1 `-`: no accuracy recorded for this spec (add one with `coatbench accuracy add`)")
    return notes


SUPERSEDED_NOTE = "Left out: {} run(s) by older code; each cell shows only the runs of the commit that measured it last"


@dataclass(frozen=True)
class Pending:
    """A claim cell that more rounds could resolve: which cells to measure again, and how many
    rounds in all its interval needs at the spread of the rounds so far."""

    networks: tuple[str, str]  # the baseline's and the variant's `results.network_key`
    mode: str
    batch: int
    execution: str
    devices: int
    rounds: int
    rounds_needed: int | None  # None: out of reach (the estimate sits on a boundary)
    where: str  # "hd64 train per-core 32 (ImageNet-1K)"


def pending(suite: Suite, rows: Sequence[Row], accuracies: Accuracies) -> list[Pending]:
    """The claim cells among `rows`' reports that more rounds could resolve, for `--rounds auto`:
    the unresolved ones, with the rounds their interval needs; those read between two looks, to
    the next; and the inconclusive ones, a round at a time: an A/A that failed by chance (one time
    in twenty at 95%) passes again as rounds come, while an order effect that is real stays.
    Host-bound cells get no more rounds (on the H200 one took 40 rounds of a 9-minute budget,
    results/h200/README.md)."""
    found = []
    suite = suite.measured_as([r.spec.network for r in rows])  # its networks as the sweep's cells name them
    for report in build_reports(suite, rows, accuracies):
        for verdict in report.verdicts:
            setting = next(s for s in suite.settings if s.name == verdict.setting)
            variant = verdict.claim.selects(setting)
            networks = (network_key(setting.baseline.config.spec()), network_key(variant.config.spec()))
            for cell in verdict.per_batch:
                if cell.change is None or cell.change.basis is not Basis.ROUNDS:
                    continue
                if cell.host_bound:  # more rounds time the same kernel launches: its advice is to replay
                    continue
                if cell.word is Word.UNRESOLVED:
                    needed = cell.rounds_needed
                elif cell.word is Word.INCONCLUSIVE:
                    needed = cell.rounds + 1
                elif not on_grid(cell.change.n, cell.change.first):
                    # Read between two looks: a sweep that stopped on it would look once more
                    # at the confidence of the next look than the 5% in all allows (`stats.look`).
                    needed = next_look(cell.change.n, cell.change.first)
                else:
                    continue
                where = f"{verdict.variant} {verdict.mode} per-core {cell.batch} ({verdict.setting})"
                found.append(
                    Pending(
                        networks, verdict.mode, cell.batch, report.execution, report.devices, cell.rounds, needed, where
                    )
                )
    return found


def disagreements(reports: Sequence[Report]) -> list[tuple[Verdict, dict[str, Word]]]:
    """Where the executions of one hardware reach different conclusive words on a claim's cell:
    each such cell (one of the verdicts, for its claim, setting and mode) with the word of each
    execution."""
    by_cell: dict[tuple, dict[str, Word]] = defaultdict(dict)
    first: dict[tuple, Verdict] = {}
    for report in reports:
        for v in report.verdicts:
            for cell in v.per_batch:
                if cell.word.conclusive:
                    key = (report.hardware_key, report.torch, v.claim.text, v.setting, v.mode, v.dtype, cell.batch)
                    by_cell[key][v.execution] = cell.word
                    first.setdefault(key, v)
    return [(first[key], words) for key, words in by_cell.items() if len(set(words.values())) > 1]


def format_batches(batches: Sequence[int], order: Sequence[int]) -> str:
    """ "128-256" for consecutive per-core batches of `order`, "32, 128" otherwise."""
    index = [order.index(b) for b in batches]
    runs: list[list[int]] = []
    for i in index:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(order[r[0]]) if len(r) == 1 else f"{order[r[0]]}-{order[r[-1]]}" for r in runs)

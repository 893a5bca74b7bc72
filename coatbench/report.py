"""Reports in the form of the paper's tables: recorded accuracy beside measured speed,
every change given against the setting's baseline with its uncertainty, and a verdict on
each of the paper's speed claims.

Pure data: `build_reports` returns dataclasses; `coatbench.views.report` writes them.
Runs made under different conditions (hardware, torch, execution, dtype, memory format,
devices) are never compared: each set of conditions gets its own report
(`results.condition_key`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import gmean

from coatbench.accuracy import Accuracies, AccuracyRecord
from coatbench.config import short_name
from coatbench.errors import CoatbenchError
from coatbench.results import FIRST, LAST, Row, Status, condition_key, run_key, scaling_key
from coatbench.stats import paired_change, ratio_with_uncertainty, runs_ratio_with_uncertainty, spread_of_runs
from coatbench.suite import Claim, Setting, Suite, SuiteRow

UNSTABLE_CI = 0.05  # a cell whose 95% CI is wider than +-5% is marked unstable
ORDER_TOLERANCE = 0.02  # the position self-test (an A/A) must stay within 1 +- 2%
# How a change's interval was made, strongest first (`Measured.basis`).
ROUNDS, RUNS, SINGLE_RUN = "rounds", "runs", "single run"


# A scaling efficiency above this is a measurement problem, never superlinear scaling: data-
# parallel ranks each do one device's work plus communication (issue 16).
SUPERLINEAR = 1.02


@dataclass(frozen=True)
class Scaling:
    """E(N) = X_N / (N * X_1): per-core images/s on N devices against one device, from the
    runs of both (paired within rounds when they share them, as a variant with its baseline)."""

    efficiency: float
    uncertainty: float  # 95% half-width
    basis: str

    @property
    def suspect(self) -> bool:
        return self.efficiency > SUPERLINEAR

    @property
    def text(self) -> str:
        """ "0.99 +-0.01"; "!" marks an efficiency above SUPERLINEAR."""
        u = "" if math.isnan(self.uncertainty) else f" +-{self.uncertainty:.2f}"
        return f"{'!' if self.suspect else ''}{self.efficiency:.2f}{u}"


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
    if not single:
        return None
    many, one = cell_summary(runs), cell_summary(single)
    if many.status is not Status.OK or one.status is not Status.OK:
        return None
    change, u, basis = change_of(many, one)
    return Scaling(1 + change, u, basis)


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

    status: Status | None  # None: no run of this cell
    images_per_s: float | None = None  # one run: its median; several: the geometric mean of their medians
    ci: float | None = None  # 95% half-width of images_per_s, relative: over the runs, or one run's blocks
    change: float | None = None  # against the setting's baseline row; None for the baseline itself
    uncertainty: float | None = None  # 95% half-width of `change`
    basis: str = ""  # ROUNDS (paired within rounds), RUNS (unpaired) or SINGLE_RUN (one run's blocks)
    runs: tuple[tuple[float, ...], ...] = ()  # per-block samples of each measured run
    rounds: dict[tuple[str, int], float] = field(default_factory=dict)  # (sweep, round) -> that run's median
    unstable: str = ""  # why the cell's figure is too noisy to lean on; empty when it is not
    superseded: int = 0  # runs of this cell by older code, left out (`latest_code`)
    scaling: Scaling | None = None  # on several devices: against one device


@dataclass(frozen=True)
class Line:
    setting: str
    label: str
    short: str  # for narrow tables: "base", "hd64", "LN" (`config.short_name`)
    model: str
    image_size: int
    baseline: bool
    accuracy: AccuracyRecord | None
    params: int | None
    macs: int | None
    cells: dict[tuple[str, int], Measured]  # (mode, per-core batch) -> measurement


@dataclass(frozen=True)
class BatchVerdict:
    batch: int
    change: float  # the variant against its baseline, as in the table (positive: the variant is faster)
    uncertainty: float
    verdict: str
    basis: str = ROUNDS


@dataclass(frozen=True)
class SelfTest:
    """The position self-test of one sweep and setting: the baseline measured last against the
    same cell measured first in the same round (an A/A: on a machine where order does not
    matter, 1 +- 2%)."""

    setting: str
    cell: str  # mode and per-core batch of the baseline cell measured twice
    change: float  # last / first - 1
    uncertainty: float  # 95% half-width, from the two runs' blocks

    @property
    def order_sensitive(self) -> bool:
        return abs(self.change) > ORDER_TOLERANCE

    @property
    def text(self) -> str:
        """ "+1.2% +-0.8" (no interval where each run had one timed block)."""
        u = "" if math.isnan(self.uncertainty) else f" +-{self.uncertainty * 100:.1f}"
        return f"{self.change * 100:+.1f}%{u}"


@dataclass(frozen=True)
class Verdict:
    claim: str
    variant: str  # the variant's short name
    claimed: str  # the claimed change of the variant against its baseline, e.g. "+5% or more"
    setting: str
    mode: str
    execution: str
    dtype: str
    device: str
    # stronger than claimed | consistent | weaker than claimed | no measurable difference | contradicted
    # | mixed | untested
    verdict: str
    detail: str
    per_batch: tuple[BatchVerdict, ...] = ()


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
    self_tests: list[SelfTest] = field(default_factory=list)  # none for rows measured without rounds
    commits: tuple[str, ...] = ()  # the coatbench commits that measured the rows ("unknown" without one)
    dates: tuple[str, ...] = ()  # the first and last day a row was measured

    @property
    def order_sensitive(self) -> bool:
        return any(test.order_sensitive for test in self.self_tests)


def _cell(network: dict, mode: str, batch: int) -> tuple[str, str, int]:
    """A cell of a report: the network with every knob, the mode and the per-core batch."""
    return json.dumps(network, sort_keys=True), mode, batch


def classify(change: float, uncertainty: float, claim: Claim) -> str:
    """Where the measured speed-up (with its 95% half-width) falls against the claimed range."""
    u = 0.0 if math.isnan(uncertainty) else uncertainty
    low, high = change - u, change + u
    if high < 0:
        return "contradicted"
    if low <= 0 <= high and claim.low > 0:
        return "no measurable difference"
    if claim.high is not None and low > claim.high:
        return "stronger than claimed"
    if high < claim.low:
        return "weaker than claimed"
    return "consistent"


def claimed_speedup(change: float, uncertainty: float, claim: Claim) -> tuple[float, float]:
    """The speed-up of the side the claim says is faster, with its 95% half-width, from the
    variant's change against its baseline (the report's one sign: positive = variant faster).
    When the baseline is claimed faster, its speed-up is 1 / (1 + change) - 1, and the interval
    is mapped end by end."""
    if claim.faster == "variant":
        return change, uncertainty
    u = 0.0 if math.isnan(uncertainty) else uncertainty
    low, high = 1 / (1 + change + u) - 1, 1 / (1 + change - u) - 1
    return (low + high) / 2, math.nan if math.isnan(uncertainty) else (high - low) / 2


def _variant_row(setting: Setting, claim: Claim) -> SuiteRow | None:
    for row in setting.variants:
        if dict(row.knobs) == dict(claim.variant):
            return row
    return None


def _verdicts(report: Report, suite: Suite, lines: dict[tuple[str, str], Line]) -> list[Verdict]:
    verdicts = []
    for claim in suite.claims:
        for setting in suite.settings:
            variant = _variant_row(setting, claim)
            if variant is None:
                continue
            base, other = lines[setting.name, setting.baseline.label], lines[setting.name, variant.label]
            for mode in report.modes:
                per_batch, missing = [], []
                for batch in report.batch_sizes:
                    a, b = base.cells[mode, batch], other.cells[mode, batch]
                    if a.status is not Status.OK or b.status is not Status.OK:
                        missing.append(f"per-core {batch}: baseline {_state(a)}, variant {_state(b)}")
                        continue
                    change, u, basis = change_of(b, a)  # the variant against its baseline, as in the table
                    verdict = classify(*claimed_speedup(change, u, claim), claim)
                    if report.order_sensitive:
                        verdict = "inconclusive (order-sensitive)"
                    elif basis == SINGLE_RUN:
                        verdict += " (single run)"
                    per_batch.append(BatchVerdict(batch, change, u, verdict, basis))
                verdicts.append(_summarize(claim, setting, mode, report, per_batch, missing))
    return verdicts


def _state(m: Measured) -> str:
    return "missing" if m.status is None else m.status.value


def claimed_change(claim: Claim) -> str:
    """The claim as a change of the variant against its baseline (the report's one sign)."""
    if claim.faster == "variant":
        return f">= +{claim.low:.0%}" if claim.high is None else f"+{claim.low:.0%} to +{claim.high:.0%}"
    if claim.high is None:
        return f"<= {1 / (1 + claim.low) - 1:.0%}"
    return f"{1 / (1 + claim.low) - 1:.0%} to {1 / (1 + claim.high) - 1:.0%}"


def _summarize(claim, setting, mode, report, per_batch, missing) -> Verdict:
    where = dict(
        claim=claim.text,
        variant=short_name(claim.variant),
        claimed=claimed_change(claim),
        setting=setting.name,
        mode=mode,
        execution=report.execution,
        dtype=report.dtype,
        device=report.device_name,
    )
    if not per_batch:
        why = "; ".join(missing) or "no measurement"
        return Verdict(**where, verdict="untested", detail=f"untested: {why}")
    kinds = sorted({v.verdict for v in per_batch}, key=[v.verdict for v in per_batch].index)
    single = " (single run)" if any(v.basis == SINGLE_RUN for v in per_batch) else ""
    verdict = kinds[0] if len(kinds) == 1 else f"mixed{single}"
    measured = ", ".join(f"{v.change * 100:+.1f}% +-{v.uncertainty * 100:.1f} (per-core {v.batch})" for v in per_batch)
    faster = "the variant" if claim.faster == "variant" else "the baseline"
    claimed = f"{claim.low * 100:.0f}%" + (f"-{claim.high * 100:.0f}%" if claim.high is not None else "+")
    detail = (
        f"claimed: {faster} {claimed} faster; measured, the variant against the baseline: {measured} "
        f"[{mode}, {report.execution}, {report.dtype}, {report.device_name}]: "
        + (
            verdict
            if len(kinds) == 1
            else f"{verdict}: " + ", ".join(f"{v.verdict} at per-core {v.batch}" for v in per_batch)
        )
    )
    if missing:
        detail += f" (not measured: {'; '.join(missing)})"
    return Verdict(**where, verdict=verdict, detail=detail, per_batch=tuple(per_batch))


def covers(suite: Suite, rows: Sequence[Row]) -> bool:
    """Whether any of `rows` measured a network of the suite's settings."""
    networks = {json.dumps(row.config.spec(), sort_keys=True) for s in suite.settings for row in s.rows}
    return any(json.dumps(dict(r.spec.network), sort_keys=True) in networks for r in rows)


def build_reports(suite: Suite, rows: Sequence[Row], accuracies: Accuracies) -> list[Report]:
    """One report per set of conditions found in `rows` (hardware, torch, execution, dtype,
    memory format, devices), in the order they first appear."""
    if not rows:
        raise CoatbenchError(f"no results to report for suite {suite.name}: measure first (coatbench run {suite.name})")
    groups: dict[tuple, dict[tuple, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cell = _cell(row.spec.network, row.spec.mode, row.spec.batch_per_core)
        groups[condition_key(row.env, row.spec)][cell].append(row)  # every run of a cell
    singles = single_device_runs(rows)
    return [_report(suite, cells, accuracies, singles, rows) for cells in groups.values()]


def _report(
    suite: Suite,
    cells: dict[tuple, list[Row]],
    accuracies: Accuracies,
    singles: dict[tuple, list[Row]],
    every_row: Sequence[Row],
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
        baseline_row = setting.baseline
        for suite_row in setting.rows:
            measured, size = {}, None
            for mode in report.modes:
                for batch in batch_sizes:
                    found = cells.get(_cell(suite_row.config.spec(), mode, batch))
                    base = cells.get(_cell(baseline_row.config.spec(), mode, batch))
                    measured[mode, batch] = _measured(found, base, suite_row is baseline_row)
                    if found and report.devices > 1:
                        scaling = scaling_of(found, singles.get(scaling_key(found[0].env, found[0].spec)))
                        measured[mode, batch] = dataclasses.replace(measured[mode, batch], scaling=scaling)
                    size = size or (found[-1].model_size if found else None)
            line = Line(
                setting=setting.name,
                label=suite_row.label,
                short="base" if suite_row is baseline_row else short_name(suite_row.knobs),
                model=suite_row.config.name,
                image_size=suite_row.config.image_size,
                baseline=suite_row is baseline_row,
                accuracy=accuracies.lookup(suite_row.config.spec(), setting.pretrain, setting.accuracy_source),
                params=size.params if size else None,
                macs=size.macs if size else None,
                cells=measured,
            )
            report.lines.append(line)
            by_label[setting.name, suite_row.label] = line
    report.self_tests = sweep_self_tests(suite, cells, every_row)
    report.verdicts = _verdicts(report, suite, by_label)
    report.notes += _notes(report, cells)
    return report


def _notes(report: Report, cells: dict[tuple, list[Row]]) -> list[str]:
    scaled = dict.fromkeys(note for runs in cells.values() for row in runs for note in row.scaled_down)
    notes = [f"Scaled down for the CPU: {note}" for note in scaled]
    bases = {m.basis for line in report.lines for m in line.cells.values() if m.basis}
    notes.append(
        "+-: 95% interval of the change; "
        + {
            ROUNDS: "from the ratios of variant and baseline within each round (paired; a t-interval over rounds)",
            RUNS: "over the runs of each cell (unpaired; Welch's t-interval)",
            SINGLE_RUN: "from the timed blocks of a single run, which leaves out how far whole runs wander: "
            "verdicts marked (single run) rest on it (measure with --rounds 2 or more)",
        }[min(bases, key=[ROUNDS, RUNS, SINGLE_RUN].index) if bases else SINGLE_RUN]
    )
    if report.self_tests:
        tests = "; ".join(f"{t.setting}, {t.cell}: {t.text}" for t in report.self_tests)
        verdict = (
            "outside 1 +- 2%: this machine is order-sensitive, so every verdict here is inconclusive"
            if report.order_sensitive
            else "within 1 +- 2%"
        )
        notes.append(
            f"Position self-test (the baseline measured last vs first in one round, an A/A): {tests}; {verdict}"
        )
    else:
        measured_in_rounds = any(r.trial for runs in cells.values() for r in runs)
        why = "no sweep of these rows measured a baseline first and last" if measured_in_rounds else (
            "these rows were measured without rounds")  # fmt: skip
        notes.append(f"Position self-test: not run ({why})")
    unstable = [(line, key, m) for line in report.lines for key, m in line.cells.items() if m.unstable]
    if unstable:
        notes.append(f"Unstable (marked ~): {len(unstable)} cell(s), e.g. {unstable[0][0].label} "
                     f"{unstable[0][1][0]} {unstable[0][1][1]}: {unstable[0][2].unstable}")  # fmt: skip
    if report.devices > 1 and not report.hardware_key.startswith("xla:"):
        notes.append(SCALING_NOTE + ("" if any(m.scaling for line in report.lines for m in line.cells.values())
                     else "; no one-device run in these rows, so no E"))  # fmt: skip
    superseded = sum(m.superseded for line in report.lines for m in line.cells.values())
    if superseded:
        notes.append(SUPERSEDED_NOTE.format(superseded))
    if any(line.accuracy is None for line in report.lines):
        notes.append("Top-1 `-`: no accuracy recorded for this spec (add one with `coatbench accuracy add`)")
    return notes


SUPERSEDED_NOTE = "Left out: {} run(s) by older code; each cell shows only the runs of the commit that measured it last"


def sweep_self_tests(suite: Suite, cells: dict[tuple, list[Row]], every_row: Sequence[Row]) -> list[SelfTest]:
    """The position self-tests of the sweeps that measured `cells`, on the same machine.

    Order-sensitivity belongs to a sweep, not to a condition: a sweep on several devices runs
    its self-test on one device only (the cells of N devices are never the baseline measured
    twice), yet an order-sensitive machine makes its N-device verdicts inconclusive too. A test
    run under another condition than `cells`' says which."""
    mine = next(iter(cells.values()))[0].spec

    def sweep_and_machine(r: Row) -> tuple:  # a resumed sweep may have gone on on another machine
        return r.trial.sweep, r.env.device_type, r.env.device_name, r.env.cpu_model

    sweeps = {sweep_and_machine(r) for runs in cells.values() for r in runs if r.trial}
    of_sweeps = [r for r in every_row if r.trial and r.trial.self_test and sweep_and_machine(r) in sweeps]
    tests = []
    for setting in suite.settings:
        base_key = json.dumps(setting.baseline.config.spec(), sort_keys=True)
        runs = [r for r in of_sweeps if json.dumps(dict(r.spec.network), sort_keys=True) == base_key]
        for execution, devices in sorted({(r.spec.execution, r.spec.devices) for r in runs}):
            alike = [r for r in runs if (r.spec.execution, r.spec.devices) == (execution, devices)]
            other = (execution, devices) != (mine.execution, mine.devices)
            where = f" ({execution}, {devices} device{'s' if devices > 1 else ''}, same sweep)" if other else ""
            tests += position_self_tests(alike, setting.name, where)
    return tests


def position_self_tests(runs: Sequence[Row], setting: str = "", where: str = "") -> list[SelfTest]:
    """The position self-tests among `runs`: each LAST with the FIRST of its sweep, round and cell
    (`where` follows the cell's name)."""

    def key(r: Row) -> tuple:
        return r.trial.sweep, r.trial.round, run_key(r.env, r.spec)

    firsts = {key(r): r for r in runs if r.ok and r.trial and r.trial.self_test == FIRST}
    tests = []
    for last in (r for r in runs if r.ok and r.trial and r.trial.self_test == LAST):
        first = firsts.get(key(last))
        if first is not None:
            change, u = ratio_with_uncertainty(last.samples, first.samples)
            cell = f"{last.spec.mode} per-core {last.spec.batch_per_core}{where}"
            tests.append(SelfTest(setting, cell, change, u))
    return tests


def cell_summary(runs: Sequence[Row]) -> Measured:
    """One cell from all its runs (rows with one run key), as a report shows it."""
    return _measured(list(runs), None, True)


def latest_code(runs: Sequence[Row]) -> list[Row]:
    """The runs made by the code (env.git_sha) that measured the cell last. Runs of one cell by
    different code are not pooled: a change in between (results/h100/levers.md: +6% to +12%
    from one commit) would read as noise, or shift a cell against its baseline."""
    if not runs:
        return []
    latest = max(runs, key=lambda r: r.timestamp).env.git_sha
    return [r for r in runs if r.env.git_sha == latest]


def _measured(found: list[Row] | None, base: list[Row] | None, is_baseline: bool) -> Measured:
    """A cell from its runs (rows of one cell; the self-test's second measurement left out, and
    runs by older code); runs that did not measure (OOM, ...) are left out unless none did."""
    found = [r for r in found or () if not (r.trial and r.trial.self_test == LAST)]
    current = latest_code(found)
    superseded, found = len(found) - len(current), current
    if not found:
        return Measured(None)
    ok = [row for row in found if row.ok]
    if not ok:
        return Measured(found[-1].status, superseded=superseded)
    spread = spread_of_runs([float(np.median(r.samples)) for r in ok]) if len(ok) >= 2 else ok[0].throughput.ci95_rel
    cell = Measured(
        Status.OK,
        float(gmean([row.throughput.images_per_s for row in ok])),
        ci=spread,
        runs=tuple(tuple(row.samples) for row in ok),
        rounds={(r.trial.sweep, r.trial.round): float(np.median(r.samples)) for r in ok if r.trial},
        unstable=_unstable(ok),
        superseded=superseded,
    )
    base_cell = _measured(base, None, True) if base and not is_baseline else None
    if base_cell is None or base_cell.status is not Status.OK:
        return cell
    change, u, basis = change_of(cell, base_cell)
    return dataclasses.replace(cell, change=change, uncertainty=u, basis=basis)


def change_of(a: Measured, b: Measured) -> tuple[float, float, str]:
    """a / b - 1 with its 95% half-width and how it was made: from the rounds both ran in
    (paired), else from their runs (unpaired), else from one run's blocks each."""
    paired = sorted(a.rounds.keys() & b.rounds.keys())
    if len(paired) >= 2:
        return (*paired_change([a.rounds[k] for k in paired], [b.rounds[k] for k in paired]), ROUNDS)
    change, u = runs_ratio_with_uncertainty(a.runs, b.runs)
    return change, u, RUNS if min(len(a.runs), len(b.runs)) >= 2 else SINGLE_RUN


def _unstable(runs: Sequence[Row]) -> str:
    """Why a cell's figure is too noisy to lean on (as pyperf warns), or ""."""
    medians = [float(np.median(r.samples)) for r in runs]
    if len(runs) >= 2:
        spread = spread_of_runs(medians)
        if spread > UNSTABLE_CI:
            return f"its {len(runs)} runs give a 95% CI of +-{spread:.1%}, wider than +-{UNSTABLE_CI:.0%}"
        # two runs apart by more than the threshold, and beyond their own intervals
        bounds = [r.throughput.ci95 for r in runs if None not in r.throughput.ci95]
        disjoint = len(bounds) >= 2 and max(low for low, _ in bounds) > min(high for _, high in bounds)
        if disjoint and max(medians) / min(medians) - 1 > UNSTABLE_CI:
            return f"its runs disagree beyond their 95% CIs ({min(medians):.3g} to {max(medians):.3g} images/s)"
        return ""
    ci = runs[0].throughput.ci95_rel
    if ci is None:
        return "one run with too few timed blocks for a 95% CI"
    return f"its 95% CI is +-{ci:.1%}, wider than +-{UNSTABLE_CI:.0%}" if ci > UNSTABLE_CI else ""


def disagreements(reports: Sequence[Report]) -> list[str]:
    """Where eager and compiled runs of one hardware reach different verdicts on a claim."""
    by_claim = defaultdict(dict)
    for report in reports:
        for v in report.verdicts:
            if v.verdict != "untested":
                by_claim[report.hardware_key, report.torch, v.claim, v.setting, v.mode, v.dtype][v.execution] = (
                    v.verdict
                )
    return [
        f"{claim} [{setting}, {mode}]: "
        + "; ".join(f"{ex}: {verdict}" for ex, verdict in sorted(found.items()))
        + " - the execution mode changes the answer"
        for (_, _, claim, setting, mode, _), found in by_claim.items()
        if len(set(found.values())) > 1
    ]

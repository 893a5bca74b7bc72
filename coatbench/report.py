"""Reports in the form of the paper's tables: recorded accuracy beside measured speed,
every change given against the setting's baseline with its uncertainty, and a verdict on
each of the paper's speed claims.

Pure data: `build_reports` returns dataclasses; `coatbench.views.report` writes them.
Runs made under different conditions (hardware, torch, execution, dtype, memory format,
devices) are never compared: each set of conditions gets its own report
(`results.condition_key`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy.stats import gmean

from coatbench.accuracy import Accuracies, AccuracyRecord
from coatbench.errors import CoatbenchError
from coatbench.results import Row, Status, condition_key
from coatbench.stats import runs_ratio_with_uncertainty
from coatbench.suite import Claim, Setting, Suite, SuiteRow


@dataclass(frozen=True)
class Measured:
    """One (mode, per-core batch) cell of a report line."""

    status: Status | None  # None: no run of this cell
    images_per_s: float | None = None  # one run: its median; several: the geometric mean of their medians
    change: float | None = None  # against the setting's baseline row; None for the baseline itself
    uncertainty: float | None = None  # 95% half-width of `change`
    runs: tuple[tuple[float, ...], ...] = ()  # per-block samples of each measured run


@dataclass(frozen=True)
class Line:
    setting: str
    label: str
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
    change: float  # speed-up of the side the claim says is faster; negative: it is slower
    uncertainty: float
    verdict: str


@dataclass(frozen=True)
class Verdict:
    claim: str
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


def _variant_row(setting: Setting, claim: Claim) -> SuiteRow | None:
    for row in setting.rows[1:]:
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
            base, other = lines[setting.name, setting.rows[0].label], lines[setting.name, variant.label]
            for mode in report.modes:
                per_batch, missing = [], []
                for batch in report.batch_sizes:
                    a, b = base.cells[mode, batch], other.cells[mode, batch]
                    if a.status is not Status.OK or b.status is not Status.OK:
                        missing.append(f"per-core {batch}: baseline {_state(a)}, variant {_state(b)}")
                        continue
                    faster, slower = (b, a) if claim.faster == "variant" else (a, b)
                    change, u = runs_ratio_with_uncertainty(faster.runs, slower.runs)
                    per_batch.append(BatchVerdict(batch, change, u, classify(change, u, claim)))
                verdicts.append(_summarize(claim, setting, mode, report, per_batch, missing))
    return verdicts


def _state(m: Measured) -> str:
    return "missing" if m.status is None else m.status.value


def _summarize(claim, setting, mode, report, per_batch, missing) -> Verdict:
    where = dict(
        claim=claim.text,
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
    verdict = kinds[0] if len(kinds) == 1 else "mixed"
    measured = ", ".join(f"{v.change * 100:+.1f}% +-{v.uncertainty * 100:.1f} (per-core {v.batch})" for v in per_batch)
    claimed = f"{claim.low * 100:.0f}%" + (f"-{claim.high * 100:.0f}%" if claim.high is not None else "+")
    detail = (
        f"claimed {claimed}; measured {measured} [{mode}, {report.execution}, {report.dtype}, {report.device_name}]: "
        + (
            verdict
            if len(kinds) == 1
            else "mixed: " + ", ".join(f"{v.verdict} at per-core {v.batch}" for v in per_batch)
        )
    )
    if missing:
        detail += f" (not measured: {'; '.join(missing)})"
    return Verdict(**where, verdict=verdict, detail=detail, per_batch=tuple(per_batch))


def build_reports(suite: Suite, rows: Sequence[Row], accuracies: Accuracies) -> list[Report]:
    """One report per set of conditions found in `rows` (hardware, torch, execution, dtype,
    memory format, devices), in the order they first appear."""
    if not rows:
        raise CoatbenchError(f"no results to report for suite {suite.name}: measure first (coatbench run {suite.name})")
    groups: dict[tuple, dict[tuple, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        cell = _cell(row.spec.network, row.spec.mode, row.spec.batch_per_core)
        groups[condition_key(row.env, row.spec)][cell].append(row)  # every run of a cell
    return [_report(suite, cells, accuracies) for cells in groups.values()]


def _report(suite: Suite, cells: dict[tuple, list[Row]], accuracies: Accuracies) -> Report:
    first = next(iter(cells.values()))[0]
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
    )
    by_label: dict[tuple[str, str], Line] = {}
    for setting in suite.settings:
        baseline_row = setting.rows[0]
        for suite_row in setting.rows:
            measured, size = {}, None
            for mode in report.modes:
                for batch in batch_sizes:
                    found = cells.get(_cell(suite_row.config.spec(), mode, batch))
                    base = cells.get(_cell(baseline_row.config.spec(), mode, batch))
                    measured[mode, batch] = _measured(found, base, suite_row is baseline_row)
                    size = size or (found[-1].model_size if found else None)
            line = Line(
                setting=setting.name,
                label=suite_row.label,
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
    report.verdicts = _verdicts(report, suite, by_label)
    scaled = dict.fromkeys(note for runs in cells.values() for row in runs for note in row.scaled_down)
    report.notes += [f"Scaled down for the CPU: {note}" for note in scaled]
    most_runs = max(len(runs) for runs in cells.values())
    report.notes.append(
        "+-: 95% interval of the change from the timed blocks of one run per cell; it leaves out how far "
        "whole runs wander (more on a shared machine): measure again into the same file for run-aware intervals"
        if most_runs < 2
        else f"+-: 95% interval of the change over the runs of each cell (up to {most_runs}; cells with a single "
        "run fall back to its timed blocks)"
    )
    if any(line.accuracy is None for line in report.lines):
        report.notes.append("Top-1 `-`: no accuracy recorded for this spec (add one with `coatbench accuracy add`)")
    return report


def _measured(found: list[Row] | None, base: list[Row] | None, is_baseline: bool) -> Measured:
    """A cell from its runs (rows of one cell); runs that did not measure (OOM, ...) are left
    out unless none did."""
    if not found:
        return Measured(None)
    ok = [row for row in found if row.ok]
    if not ok:
        return Measured(found[-1].status)
    runs = tuple(tuple(row.samples) for row in ok)
    value = float(gmean([row.throughput.images_per_s for row in ok]))
    base_runs = [row.samples for row in base or () if row.ok]
    if is_baseline or not base_runs:
        return Measured(Status.OK, value, runs=runs)
    change, u = runs_ratio_with_uncertainty(runs, base_runs)
    return Measured(Status.OK, value, change, u, runs)


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

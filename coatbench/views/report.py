"""Reports in every format (the terminal, Markdown, CSV, JSON, LaTeX) and their plot."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from coatbench.errors import CoatbenchError
from coatbench.files import write_atomically
from coatbench.report import (
    ORDER_TOLERANCE,
    SHOWN_DIFFERENCES,
    AAResult,
    AAState,
    CellVerdict,
    Line,
    Measured,
    Report,
    Verdict,
    Word,
    claimed_change,
    claimed_speedup,
    disagreements,
    format_batches,
)
from coatbench.results import Status
from coatbench.settings import Format
from coatbench.stats import Basis, Change
from coatbench.views.console import print_table

if TYPE_CHECKING:
    import pandas as pd

UNSTABLE_MARK, HOST_BOUND_MARK = "~", "†"
HOST_BOUND_ADVICE = "measures kernel launches; try --execution cuda-graphs"


def value_text(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell_text(m: Measured, split: str = " ") -> str:
    """Images/s per core and the change against the baseline, e.g. "957 (+7.9% ±0.6)"; ~ marks an
    unstable cell, † a host-bound one. `split` goes between the two ("\n": a cell of two lines,
    for a terminal)."""
    if m.status is not Status.OK:
        return "-" if m.status is None else m.status.value.upper()
    marks = (UNSTABLE_MARK if m.unstable else "") + (HOST_BOUND_MARK if m.host_bound else "")
    text = marks + value_text(m.images_per_s)
    if m.change is not None:
        text += f"{split}({change_text(m.change)})"
    if m.scaling is not None:
        text += f"{split}E {scaling_text(m.scaling)}"
    return text


def scaling_text(scaling) -> str:
    """ "0.99 ±0.01"; "!" marks an efficiency above SUPERLINEAR."""
    u = "" if math.isnan(scaling.uncertainty) else f" ±{scaling.uncertainty:.2f}"
    return f"{'!' if scaling.suspect else ''}{scaling.efficiency:.2f}{u}"


def change_text(change: Change | None, split: str = " ") -> str:
    """ "+8.4% ±0.2": the change and half its 95% interval's width (none without an interval)."""
    if change is None:
        return "-"
    u = f"{split}±{change.uncertainty * 100:.1f}" if change.has_interval else ""
    return f"{change.change * 100:+.1f}%{u}"


def accuracy_text(line: Line) -> str:
    return "-" if line.accuracy is None else f"{line.accuracy.value:g}"


def title(report: Report) -> str:
    layout = "channels-last" if report.channels_last else "contiguous"
    return (
        f"{report.suite} on {report.device_name}: torch {report.torch}, {report.execution}, {report.dtype}, {layout}"
        + ("" if report.devices == 1 else f", {report.devices} devices")
    )


VERDICT_WORDS = (
    "Verdicts, each a statement at 95% on the interval I of the claimed side's speed-up against the claimed range "
    "R: consistent = I lies within R; stronger / weaker than claimed = I lies above R / between 0 and R; no "
    "measurable difference = I contains 0 and lies below R; contradicted = I lies below 0; unresolved = I straddles "
    "a boundary of R or 0 (with the rounds in all that would resolve it at the rounds' spread); inconclusive = the "
    "A/A control covering the cell shows an order effect; † host-bound: the device waited on the host to issue its "
    f"steps, so the cell {HOST_BOUND_ADVICE}."
)


def need_text(cell: CellVerdict) -> str:
    """Why an unresolved cell is unresolved, briefly: the rounds it needs, or what is missing."""
    if cell.change is not None and cell.change.basis is Basis.SINGLE_RUN:
        return "single run"
    if cell.rounds_needed is None:
        return "no interval" if cell.change is None or not cell.change.has_interval else "out of reach"
    return f"~{cell.rounds_needed} rounds"


def summary_text(verdict: Verdict, order: Sequence[int]) -> str:
    """ "consistent at 128-256; unresolved at 32 (~9 rounds), 64 (out of reach)"; host-bound batches
    named last."""
    cells = {c.batch: c for c in verdict.per_batch}
    parts = []
    for word, batches in verdict.summary:
        text = f"{word.value} at {format_batches(batches, order)}"
        if word is Word.UNRESOLVED:
            needs = [need_text(cells[b]) for b in batches]
            if len(set(needs)) == 1:
                text += f" ({needs[0]})"
            else:  # each batch with what it needs
                text = f"{word.value} at " + ", ".join(f"{b} ({need})" for b, need in zip(batches, needs))
        elif word is Word.INCONCLUSIVE:
            text += " (A/A order-sensitive)"
        parts.append(text)
    bound = [c.batch for c in verdict.per_batch if c.host_bound]
    if bound:
        parts.append(f"host-bound at {format_batches(bound, order)}")
    return "; ".join(parts)


def verdict_class(verdict: Verdict) -> str:
    """A CSS class for the verdict's cell: its one word, or "mixed"."""
    return verdict.summary[0][0].name.lower() if len(verdict.summary) == 1 else "mixed"


def summary_rows(report: Report, split: str = " ") -> list[dict[str, str]]:
    """One row per claim, setting and mode: the variant's change against its baseline at each
    per-core batch (the tables' sign: + = the variant is faster), and the verdict."""
    rows = []
    for v in report.verdicts:
        measured = {
            c.batch: (HOST_BOUND_MARK if c.host_bound else "") + change_text(c.change, split) for c in v.per_batch
        }
        row = {"claim": f"{v.variant} {claimed_change(v.claim)}", "setting": v.setting, "mode": v.mode}
        row.update({f"bs{batch}": measured.get(batch, "-") for batch in report.batch_sizes})
        rows.append({**row, "verdict": summary_text(v, report.batch_sizes)})
    return rows


AA_HEADING = (
    "A/A controls: the baseline measured a second time in each round, against its first (95% interval over the "
    f"rounds); order-sensitive when the interval excludes 0 by more than {ORDER_TOLERANCE:.0%}"
)


def aa_rows(report: Report, split: str = " ") -> list[dict[str, str]]:
    """One row per A/A control: where, its change, what it says and what it covers."""
    return [
        {
            "setting": aa.setting,
            "mode": aa.mode,
            "bs": str(aa.batch),
            "A/A": change_text(aa.change, split),
            "rounds": str(aa.change.n),
            "verdict": aa_text(aa),
        }
        for aa in report.controls
    ]


def aa_text(aa: AAResult) -> str:
    if aa.state is AAState.FAILED:
        return f"{aa.state.value}: the verdicts it covers are inconclusive"
    return aa.state.value


def mode_rows(report: Report, mode: str, split: str = " ") -> list[dict[str, str]]:
    """images/s per core (and the change against the setting's baseline) of every line in `mode`."""
    return [
        {"setting": line.setting, "row": line.short, "top-1": accuracy_text(line)}
        | {f"bs{batch}": cell_text(line.cells[mode, batch], split) for batch in report.batch_sizes}
        for line in report.lines
    ]


def legend(report: Report) -> list[str]:
    """What each short row name stands for, with its size."""
    entries = []
    for line in report.lines:
        size = "" if line.params is None else f", {line.params / 1e6:.1f}M params, {line.macs / 1e9:.1f} GMACs"
        entries.append(f"{line.short} = {line.label} ({line.model} @{line.image_size}{size})")
    return ["Rows: " + "; ".join(dict.fromkeys(entries))]


def sections(report: Report, split: str = " ") -> list[tuple[str, list[dict[str, str]]]]:
    """(heading, rows) of a report's tables: the verdicts and the A/A controls beside them first,
    then each mode."""
    heading = "images/s per core (the change against the setting's baseline, 95% interval)"
    modes = [
        (f"{'Training' if mode == 'train' else 'Inference'}: {heading}", mode_rows(report, mode, split))
        for mode in report.modes
    ]
    verdicts = "Claims: the variant's change against its baseline (+ = faster), 95% interval, and the verdict"
    claims = [(verdicts, summary_rows(report, split))] if report.verdicts else []
    controls = [(AA_HEADING, aa_rows(report, split))] if report.controls else []
    return claims + controls + modes


def notes_of(report: Report) -> list[str]:
    return [*([VERDICT_WORDS] if report.verdicts else []), *legend(report), *accuracy_sources(report), *report.notes]


def accuracy_sources(report: Report) -> list[str]:
    sources = sorted({line.accuracy.source for line in report.lines if line.accuracy})
    read = f"Accuracy files read: {', '.join(report.accuracy_files)}"
    return ([f"Top-1 from: {'; '.join(sources)}"] if sources else []) + [read]


def cell_detail(cell: CellVerdict) -> str:
    """One per-core batch of a verdict in full: the change, its basis and the word, with why."""
    where = f"per-core {cell.batch}"
    if cell.word is Word.UNTESTED:
        return f"{where}: untested ({cell.missing})"
    c = cell.change
    basis = {Basis.ROUNDS: f"over {c.n} rounds", Basis.RUNS: f"over {c.n} runs a side", Basis.SINGLE_RUN: "one run"}
    text = f"{where}: {change_text(c)} {basis[c.basis]}: {cell.word.value}"
    if cell.word is Word.UNRESOLVED:
        if c.basis is Basis.SINGLE_RUN:
            text += " (a single run's blocks leave out how far runs wander: measure in rounds)"
        elif not c.has_interval:
            text += " (one round: no interval yet)"
        else:
            straddled = ", ".join(f"{b:+.0%}" for b in cell.straddles)
            need = (
                f"~{cell.rounds_needed} rounds in all would resolve it at the rounds' spread"
                if cell.rounds_needed is not None
                else "its estimate sits on a boundary: more rounds are unlikely to resolve it"
            )
            text += f" (the claimed side's interval straddles {straddled}; {need})"
    elif cell.word is Word.INCONCLUSIVE:
        failed = [aa for aa in cell.aa if aa.failed]
        text += " (" + "; ".join(f"A/A {aa.mode} per-core {aa.batch}: {change_text(aa.change)}" for aa in failed)
        text += f", which excludes 0 by more than {ORDER_TOLERANCE:.0%})"
    if cell.host_bound:
        text += f" [{HOST_BOUND_MARK} host-bound: {HOST_BOUND_ADVICE}]"
    return text


def verdict_lines(report: Report) -> list[str]:
    """Each claim on each setting and mode in full."""
    lines = []
    for v in report.verdicts:
        faster = "the variant" if v.claim.faster == "variant" else "the baseline"
        claimed = f"{v.claim.low:.0%}" + (f"-{v.claim.high:.0%}" if v.claim.high is not None else " or more")
        where = f"[{v.mode}, {v.execution}, {v.dtype}, {v.device}]"
        cells = "; ".join(cell_detail(c) for c in v.per_batch)
        lines.append(
            f"{v.claim.text} [{v.setting}]: claimed: {faster} {claimed} faster; measured, the variant against the "
            f"baseline {where}: {cells}"
        )
        if v.differences:
            lines.append(f"  {v.variant} differs from the baseline in: {differences_text(v.differences)}")
    return lines


def differences_text(found) -> str:
    """ "norm bn -> ln; params 24.40M -> 24.39M" (the first few, then how many more)."""
    shown = [f"{d.what} {d.baseline} -> {d.variant}" for d in found[:SHOWN_DIFFERENCES]]
    more = len(found) - len(shown)
    return "; ".join(shown) + (f"; and {more} more (--format json lists them)" if more else "")


def all_notes(reports: Sequence[Report]) -> list[str]:
    notes = []
    for verdict, words in disagreements(reports):
        found = "; ".join(f"{execution}: {word.value}" for execution, word in sorted(words.items()))
        notes.append(f"The executions disagree on {verdict.claim.text} [{verdict.setting}, {verdict.mode}]: {found}")
    return notes


def to_markdown(reports: Sequence[Report]) -> str:
    import pandas as pd

    parts = []
    for report in reports:
        parts += [f"### {title(report)}", ""]
        for heading, rows in sections(report):
            parts += [f"**{heading}**", "", pd.DataFrame.from_records(rows).to_markdown(index=False), ""]
        parts += [f"- {note}" for note in notes_of(report)]
        if report.verdicts:
            parts += ["", "Claims in full:", ""] + [f"- {line}" for line in verdict_lines(report)]
        parts.append("")
    parts += [f"- {note}" for note in all_notes(reports)]
    return "\n".join(parts).rstrip() + "\n"


def to_latex(reports: Sequence[Report]) -> str:
    import pandas as pd

    return "\n".join(
        pd.DataFrame.from_records(rows).to_latex(index=False, caption=f"{title(report)}. {heading}", escape=True)
        for report in reports
        for heading, rows in sections(report)
    )


def _interval(change: Change | None) -> dict:
    """A change's figures for CSV and JSON (NaN ends: null)."""
    if change is None:
        return {"change": None, "ci95_low": None, "ci95_high": None, "basis": None, "n": None}
    finite = lambda x: None if math.isnan(x) else x  # noqa: E731
    return {
        "change": change.change,
        "ci95_low": finite(change.low),
        "ci95_high": finite(change.high),
        "basis": change.basis.value,
        "n": change.n,
    }


def long_frame(reports: Sequence[Report]) -> pd.DataFrame:
    """One row per (report, line, mode, batch) with raw numbers: for spreadsheets and pandas."""
    import pandas as pd

    records = []
    for report in reports:
        for line in report.lines:
            for (mode, batch), m in line.cells.items():
                change = _interval(m.change)
                records.append(
                    {
                        "hardware": report.hardware_key,
                        "device": report.device_name,
                        "torch": report.torch,
                        "execution": report.execution,
                        "dtype": report.dtype,
                        "channels_last": report.channels_last,
                        "devices": report.devices,
                        "setting": line.setting,
                        "model": line.label,
                        "image_size": line.image_size,
                        "top1": None if line.accuracy is None else line.accuracy.value,
                        "top1_source": None if line.accuracy is None else line.accuracy.source,
                        "params": line.params,
                        "macs": line.macs,
                        "mode": mode,
                        "batch_per_core": batch,
                        "status": "missing" if m.status is None else m.status.value,
                        "images_per_s": m.images_per_s,
                        "change": change["change"],
                        "change_ci95_low": change["ci95_low"],
                        "change_ci95_high": change["ci95_high"],
                        "change_basis": change["basis"],
                        "unstable": m.unstable,
                        "host_bound": m.host_bound,
                        "efficiency": None if m.scaling is None else m.scaling.efficiency,
                        "efficiency_ci95_halfwidth": None if m.scaling is None else m.scaling.uncertainty,
                        "efficiency_suspect": None if m.scaling is None else m.scaling.suspect,
                    }
                )
    return pd.DataFrame.from_records(records)


def _claim_dict(verdict: Verdict) -> dict:
    c = verdict.claim
    return {"text": c.text, "faster": c.faster, "min": c.low, "max": c.high, "claimed_change": claimed_change(c)}


def _aa_dict(aa: AAResult) -> dict:
    return {
        "setting": aa.setting,
        "mode": aa.mode,
        "batch_per_core": aa.batch,
        **_interval(aa.change),
        "state": aa.state.name.lower(),
        "order_sensitive": aa.failed,
    }


def to_json(reports: Sequence[Report]) -> str:
    def cell(m: Measured, mode: str, batch: int) -> dict:
        return {
            "mode": mode,
            "batch_per_core": batch,
            "status": "missing" if m.status is None else m.status.value,
            "images_per_s": m.images_per_s,
            "ci95_rel": m.runs.spread,
            "runs": len(m.runs.ok),
            "superseded": m.runs.superseded,
            "unstable": m.unstable,
            "host_bound": m.host_bound,
            **({} if m.change is None else {"against_baseline": _interval(m.change)}),
            **(
                {}
                if m.scaling is None
                else {
                    "scaling": {
                        "efficiency": m.scaling.efficiency,
                        "ci95_halfwidth": m.scaling.uncertainty,
                        "suspect": m.scaling.suspect,
                    }
                }
            ),
        }

    def verdict(v: Verdict, report: Report) -> dict:
        return {
            "claim": _claim_dict(v),
            "variant": v.variant,
            "setting": v.setting,
            "mode": v.mode,
            "summary": [{"word": w.value, "batch_per_core": list(b)} for w, b in v.summary],
            "summary_text": summary_text(v, report.batch_sizes),
            "differences": [dataclasses.asdict(d) for d in v.differences],
            "per_batch": [
                {
                    "batch_per_core": c.batch,
                    "word": c.word.value,
                    "against_baseline": _interval(c.change),
                    "straddles": list(c.straddles),
                    "rounds_needed": c.rounds_needed,
                    "host_bound": c.host_bound,
                    "covered_by": [_aa_dict(aa) for aa in c.aa],
                    "missing": c.missing,
                }
                for c in v.per_batch
            ],
        }

    def clean(report: Report) -> dict:
        data = {
            k: getattr(report, k)
            for k in (
                "suite",
                "description",
                "hardware_key",
                "device_name",
                "torch",
                "execution",
                "dtype",
                "channels_last",
                "devices",
                "modes",
                "batch_sizes",
                "notes",
                "accuracy_files",
                "commits",
                "dates",
            )
        }
        data["lines"] = [
            {
                **{k: getattr(line, k) for k in ("setting", "label", "short", "model", "image_size", "baseline")},
                "accuracy": None if line.accuracy is None else dataclasses.asdict(line.accuracy),
                "params": line.params,
                "macs": line.macs,
                "cells": [cell(m, mode, batch) for (mode, batch), m in line.cells.items()],
            }
            for line in report.lines
        ]
        data["controls"] = [_aa_dict(aa) for aa in report.controls]
        data["verdicts"] = [verdict(v, report) for v in report.verdicts]
        return data

    return json.dumps({"reports": [clean(r) for r in reports], "notes": all_notes(reports)}, indent=2) + "\n"


def speed_points(report: Report, line: Line, mode: str) -> list[tuple[int, float]]:
    """(per-core batch, images/s) of every cell of `line` in `mode` that ran."""
    return [
        (b, line.cells[mode, b].images_per_s) for b in report.batch_sizes if line.cells[mode, b].status is Status.OK
    ]


def accuracy_point(report: Report, line: Line, mode: str) -> tuple[float, str] | None:
    """Where `line` goes on the accuracy-against-speed plot: its speed at the largest batch
    that ran, labelled with that batch when a larger one ran out of memory."""
    points = speed_points(report, line, mode)
    if line.accuracy is None or not points:
        return None
    batch, rate = points[-1]
    at = "" if batch == report.batch_sizes[-1] else f", per-core {batch}"
    return rate, f"{line.label} ({mode}{at})"


MODE_COLOURS = {"train": "tab:blue", "infer": "tab:orange"}
EXECUTION_STYLES = ("-", "--", ":", "-.")  # one per execution mode, in the order they appear


def claim_panels(reports: Sequence[Report]) -> dict[tuple[str, str, str], list[tuple[Report, Verdict]]]:
    """(hardware, claim, setting) -> the reports' verdicts on it: a panel of the decision figure."""
    panels: dict[tuple[str, str, str], list] = {}
    for report in reports:
        for verdict in report.verdicts:
            if any(c.change is not None for c in verdict.per_batch):
                key = (report.hardware_key, verdict.claim.text, verdict.setting)
                panels.setdefault(key, []).append((report, verdict))
    return panels


# A point whose interval is wider than this (percentage points either side), or host-bound, or
# without an interval, does not set a panel's axis: it is drawn at the edge if outside, and marked.
STEADY_HALF_WIDTH = 10.0


@dataclasses.dataclass(frozen=True)
class ClaimPoint:
    """One per-core batch of a verdict on the decision figure: the claimed side's speed-up in %
    (up = the claim holds), its interval, and its verdict."""

    batch: int
    speedup: float
    low: float  # NaN: no interval
    high: float
    word: Word
    host_bound: bool

    @property
    def steady(self) -> bool:
        return not self.host_bound and math.isfinite(self.low) and (self.high - self.low) / 2 <= STEADY_HALF_WIDTH


def claim_points(verdict: Verdict) -> list[ClaimPoint]:
    """The measured cells of `verdict`, as the claimed-faster side's speed-up."""
    points = []
    for cell in verdict.per_batch:
        if cell.change is not None:
            s = claimed_speedup(cell.change, verdict.claim)
            points.append(ClaimPoint(cell.batch, 100 * s.change, 100 * s.low, 100 * s.high, cell.word, cell.host_bound))
    return points


def claim_limits(claim, points: Sequence[ClaimPoint]) -> tuple[float, float]:
    """A panel's y range: 0, the claimed range and the steady points' intervals, padded; an
    unsteady point cannot stretch it (it is clipped to the edge instead)."""
    top = 100 * (claim.high if claim.high is not None else claim.low * 2)
    values = [0.0, 100 * claim.low, top] + [v for p in points if p.steady for v in (p.low, p.high)]
    low, high = min(values), max(values)
    pad = max(2.0, 0.12 * (high - low))
    return low - pad, high + pad


# verdict -> (marker, filled): a conclusive verdict filled, an open question hollow
VERDICT_MARKERS = {
    Word.CONSISTENT: ("o", True),
    Word.STRONGER: ("^", True),
    Word.WEAKER: ("v", True),
    Word.NO_DIFFERENCE: ("s", True),
    Word.CONTRADICTED: ("X", True),
    Word.UNRESOLVED: ("o", False),
    Word.INCONCLUSIVE: ("D", False),
}
MODE_OFFSETS = {"train": 0.96, "infer": 1.04}  # on the log2 batch axis, so that the modes' points sit apart


def draw_claim(axis, found: list[tuple[Report, Verdict]], executions: list[str]) -> None:
    """One claim on one setting: each mode's claimed-side speed-up across per-core batches, the
    claimed range shaded, each point's verdict by its marker, unsteady points clipped and marked."""
    claim = found[0][1].claim
    points = {id(v): claim_points(v) for _, v in found}
    low, high = claim_limits(claim, [p for ps in points.values() for p in ps])
    axis.axhspan(100 * claim.low, 100 * claim.high if claim.high is not None else high, color="tab:green", alpha=0.12)
    axis.axhline(0, color="black", linewidth=0.8)
    for report, verdict in found:
        colour = MODE_COLOURS.get(verdict.mode, "tab:gray")
        style = EXECUTION_STYLES[executions.index(report.execution) % len(EXECUTION_STYLES)]
        shown = points[id(verdict)]
        xs = [p.batch * MODE_OFFSETS.get(verdict.mode, 1.0) for p in shown]
        ys = [min(max(p.speedup, low), high) for p in shown]
        # the line joins steady points only: a clipped one would draw a zigzag of no meaning
        axis.plot(xs, [y if p.steady else math.nan for y, p in zip(ys, shown)], style, color=colour, linewidth=1.2)
        for x, y, p in zip(xs, ys, shown):
            if math.isfinite(p.low):
                axis.vlines(x, max(p.low, low), min(p.high, high), color=colour, linewidth=1.5)
            marker, filled = VERDICT_MARKERS.get(p.word, ("o", False))
            face = colour if filled else "white"
            axis.scatter(x, y, marker=marker, s=46, zorder=3, edgecolors=colour, facecolors=face)
            # what lies beyond the axis (NaN ends compare False): a mark at the edge
            for edge, beyond, arrow in (
                (high, max(p.speedup, p.high) > high, "^"),
                (low, min(p.speedup, p.low) < low, "v"),
            ):
                if beyond:
                    axis.scatter(x, edge, marker=arrow, s=22, color=colour, clip_on=False, zorder=4)
            if p.host_bound:
                axis.annotate("†", (x, y), xytext=(4, 4), textcoords="offset points", fontsize=9, color=colour)
    axis.set_ylim(low, high)
    batches = sorted({p.batch for ps in points.values() for p in ps})
    axis.set_xscale("log", base=2)
    axis.set_xticks(batches, [str(b) for b in batches])
    axis.set_xlim(batches[0] / 1.4, batches[-1] * 1.4)
    axis.minorticks_off()
    side = found[0][1].variant if claim.faster == "variant" else "baseline"
    axis.set(xlabel="per-core batch size", ylabel=f"speed-up of the {side} (%)")
    text = "\n".join(textwrap.wrap(claim.text, 56, max_lines=2, placeholder=" [...]"))
    axis.set_title(f"{text}\n{found[0][1].setting}", fontsize=9)


def figure_legend(fig, modes: Sequence[str], executions: list[str]) -> None:
    """One legend for every panel: modes, execution styles, verdict markers, the marks."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color=MODE_COLOURS.get(m, "tab:gray"), label=m) for m in modes]
    if len(executions) > 1:
        styles = enumerate(executions)
        handles += [Line2D([], [], color="black", linestyle=EXECUTION_STYLES[i % 4], label=e) for i, e in styles]
    for word, (marker, filled) in VERDICT_MARKERS.items():
        face = "black" if filled else "white"
        handles.append(
            Line2D([], [], linestyle="", marker=marker, color="black", markerfacecolor=face, label=word.value)
        )
    handles += [
        Patch(color="tab:green", alpha=0.12, label="claimed range"),
        Line2D([], [], linestyle="", marker="^", color="gray", label="clipped: beyond the axis"),
        Line2D([], [], linestyle="", marker="$†$", color="gray", label="host-bound"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8, frameon=False)


# --plot writes the format its suffix names
PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}


def plot_format(path: Path) -> str:
    """The image format `path`'s suffix names; refused when it names none coatbench draws."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise CoatbenchError(f"--plot {path}: give a file ending in {', '.join(PLOT_FORMATS)} (the format it names)")
    return PLOT_FORMATS[suffix]


def plot(reports: Sequence[Report], path: Path) -> None:
    """The decision figure (`figure`) at `path`, in the format its suffix names."""
    import matplotlib.pyplot as plt

    fig = figure(reports)
    image = io.BytesIO()
    fig.savefig(image, format=plot_format(path), dpi=100)
    write_atomically(Path(path), image.getvalue())
    plt.close(fig)


def figure(reports: Sequence[Report]):
    """The decision figure: a panel per claim and setting, the claimed-faster side's speed-up
    across per-core batch sizes (up = the claim holds), then top-1 against throughput. The suite,
    hardware, dtype, and the commits and days where the rows name them, are in its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = claim_panels(reports)
    executions = list(dict.fromkeys(r.execution for r in reports))
    # top-1 against speed, for the modes where a row has an accuracy recorded
    shown = [r for r in reports if r.execution == executions[0]]  # the first execution's
    modes = [
        m for m in (reports[0].modes if reports else ()) if any(accuracy_point(r, x, m) for r in shown for x in r.lines)
    ]
    columns = max(1, min(3, len(panels)), len(modes))
    rows = -(-len(panels) // columns) + bool(modes)
    fig = plt.figure(figsize=(4.6 * columns, 3.4 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    for index, found in enumerate(panels.values()):
        draw_claim(fig.add_subplot(grid[index // columns, index % columns]), found, executions)
    for offset, mode in enumerate(modes):
        accuracy_panel(fig.add_subplot(grid[rows - 1, offset % columns]), shown, mode)
    figure_legend(fig, list(dict.fromkeys(v.mode for found in panels.values() for _, v in found)), executions)
    first = reports[0]
    commits = [c for c in dict.fromkeys(c for r in reports for c in r.commits) if c != "unknown"]
    days = " to ".join(dict.fromkeys(d for r in reports for d in r.dates))
    made = (f"coatbench {', '.join(commits)}, " if commits else "") + (f"measured {days}" if days else "")
    heading = f"{first.suite} on {first.device_name} ({first.dtype}, torch {first.torch})"
    fig.suptitle(heading + (f": {made}" if made else ""), fontsize=10)
    return fig


def accuracy_panel(axis, reports: Sequence[Report], mode: str) -> None:
    """Top-1 against images/s per core at the largest per-core batch that ran; the labels are
    stacked where points share a top-1, so none covers another."""
    import matplotlib.ticker

    placed: list[tuple[float, float, str]] = []
    for report in reports:
        for line in report.lines:
            point = accuracy_point(report, line, mode)
            if point is not None:
                at = point[1].partition(", per-core ")[2].rstrip(")")
                label = f"{line.short}, {line.setting}" + (f" (per-core {at})" if at else "")
                placed.append((point[0], line.accuracy.value, label))
    for rate, top1, label in placed:
        # points whose top-1 is close get their labels stacked, lowest first
        below = sum(1 for r, t, _ in placed if abs(t - top1) < 0.3 and (t, r) < (top1, rate))
        axis.scatter(rate, top1, color=MODE_COLOURS.get(mode, "tab:gray"))
        axis.annotate(label, (rate, top1), fontsize=8, xytext=(6, -4 + 11 * below), textcoords="offset points")
    title = f"accuracy against {mode} speed ({reports[0].execution if reports else ''})"
    axis.set(xlabel=f"{mode}: images/s per core (largest per-core batch that ran)", ylabel="top-1 (%)", title=title)
    axis.title.set_fontsize(10)
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.margins(x=0.4, y=0.3)


def write_terminal(reports: Sequence[Report]) -> None:
    for report in reports:
        print_table([], title=title(report))
        for heading, rows in sections(report, split="\n"):
            print_table(rows, title=heading)
        print_table([], notes=notes_of(report) + ["Claims in full:"] + verdict_lines(report))
    for note in all_notes(reports):
        print_table([], notes=[note])


def to_html(reports: Sequence[Report], command: str = "coatbench report") -> str:
    """One self-contained page (jinja2): per report the claims, the tables by mode and the notes;
    the decision figure inline; the environment; the command that made the page."""
    import jinja2
    import matplotlib.pyplot as plt

    image, drawn = io.BytesIO(), figure(reports)
    drawn.savefig(image, format="png", dpi=100)
    plt.close(drawn)
    first = reports[0]
    environment = [
        ("hardware", first.hardware_key),
        ("torch", ", ".join(dict.fromkeys(r.torch for r in reports))),
        ("executions", ", ".join(r.execution for r in reports)),
        ("dtype", first.dtype),
        ("coatbench commits", ", ".join(dict.fromkeys(c for r in reports for c in r.commits))),
        ("measured", " to ".join(dict.fromkeys(d for r in reports for d in r.dates))),
        ("accuracy files", ", ".join(first.accuracy_files)),
    ]
    pages = [
        {
            "title": title(report),
            "sections": [
                {"heading": h, "rows": rows, "columns": list(rows[0]) if rows else [], "classes": classes}
                for (h, rows), classes in zip(sections(report), row_classes(report))
            ],
            "notes": notes_of(report) + ["Claims in full:"] + verdict_lines(report),
        }
        for report in reports
    ]
    template = jinja2.Environment(
        loader=jinja2.PackageLoader("coatbench.views", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    ).get_template("report.html.j2")
    return template.render(
        heading=f"{first.suite} on {first.device_name}",
        reports=pages,
        figure=base64.b64encode(image.getvalue()).decode(),
        environment=environment,
        command=command,
        text_columns={"claim", "setting", "mode", "row", "verdict"},
        verdict_column="verdict",
    )


def row_classes(report: Report) -> list[list[str]]:
    """Per section of `sections`, a CSS class per row for its verdict column: the claims' words,
    the A/A controls' states, none for the speed tables."""
    claims = [[verdict_class(v) for v in report.verdicts]] if report.verdicts else []
    controls = [["inconclusive" if aa.failed else "" for aa in report.controls]] if report.controls else []
    return claims + controls + [[""] * len(report.lines) for _ in report.modes]


def show_reports(reports: Sequence[Report], fmt: Format, plot_path: Path | None = None, command: str = "") -> None:
    if fmt is Format.TABLE:
        write_terminal(reports)
    elif fmt is Format.CSV:
        long_frame(reports).to_csv(sys.stdout, index=False)
    elif fmt is Format.HTML:
        sys.stdout.write(to_html(reports, command or "coatbench report"))
    else:
        writer = {Format.MARKDOWN: to_markdown, Format.JSON: to_json, Format.LATEX: to_latex}[fmt]
        sys.stdout.write(writer(reports))
    if plot_path is not None:
        plot(reports, plot_path)

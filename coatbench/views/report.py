"""Reports in every format (the terminal, Markdown, CSV, JSON, LaTeX) and their plot."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coatbench.files import write_atomically
from coatbench.options import Format
from coatbench.report import Line, Measured, Report, disagreements
from coatbench.results import Status
from coatbench.views.console import print_table

if TYPE_CHECKING:
    import pandas as pd


def cell_text(m: Measured, split: str = " ") -> str:
    """Images/s per core and the change against the baseline, e.g. "957 (+7.9% ±0.6)"; ~ marks an
    unstable cell. `split` goes between the two ("\n": a cell of two lines, for a terminal)."""
    if m.status is not Status.OK:
        return "-" if m.status is None else m.status.value.upper()
    value = m.images_per_s
    text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    text = ("~" if m.unstable else "") + text  # unstable: the note says why
    if m.change is not None:
        text += f"{split}({change_text(m.change, m.uncertainty)})"
    if m.scaling is not None:
        text += f"{split}E {m.scaling.text}"
    return text


def change_text(change: float, uncertainty: float | None, split: str = " ") -> str:
    u = "" if uncertainty is None or math.isnan(uncertainty) else f"{split}±{uncertainty * 100:.1f}"
    return f"{change * 100:+.1f}%{u}"


def accuracy_text(line: Line) -> str:
    return "-" if line.accuracy is None else f"{line.accuracy.value:g}"


def title(report: Report) -> str:
    layout = "channels-last" if report.channels_last else "contiguous"
    return (
        f"{report.suite} on {report.device_name}: torch {report.torch}, {report.execution}, {report.dtype}, {layout}"
        + ("" if report.devices == 1 else f", {report.devices} devices")
    )


VERDICT_WORDS = (
    "Verdicts: consistent = the 95% interval reaches into the claimed range; stronger / weaker than claimed = "
    "wholly beyond / short of it, same direction; no measurable difference = it contains 0; contradicted = wholly "
    "the other way; mixed = the batch sizes disagree; (single run) = an interval from one run's blocks."
)


def summary_rows(report: Report, split: str = " ") -> list[dict[str, str]]:
    """One row per claim, setting and mode: the variant's change against its baseline at each
    per-core batch (the tables' sign: + = the variant is faster), and the verdict."""
    rows = []
    for v in report.verdicts:
        measured = {b.batch: change_text(b.change, b.uncertainty, split) for b in v.per_batch}
        row = {"claim": f"{v.variant} {v.claimed}", "setting": v.setting, "mode": v.mode}
        row.update({f"bs{batch}": measured.get(batch, "-") for batch in report.batch_sizes})
        rows.append({**row, "verdict": v.verdict})
    return rows


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
    """(heading, rows) of a report's tables: the verdicts first, then each mode."""
    heading = "images/s per core (the change against the setting's baseline, 95% interval)"
    modes = [
        (f"{'Training' if mode == 'train' else 'Inference'}: {heading}", mode_rows(report, mode, split))
        for mode in report.modes
    ]
    verdicts = "Claims: the variant's change against its baseline (+ = faster), 95% interval, and the verdict"
    return ([(verdicts, summary_rows(report, split))] if report.verdicts else []) + modes


def notes_of(report: Report) -> list[str]:
    return [*([VERDICT_WORDS] if report.verdicts else []), *legend(report), *accuracy_sources(report), *report.notes]


def accuracy_sources(report: Report) -> list[str]:
    sources = sorted({line.accuracy.source for line in report.lines if line.accuracy})
    read = f"Accuracy files read: {', '.join(report.accuracy_files)}"
    return ([f"Top-1 from: {'; '.join(sources)}"] if sources else []) + [read]


def verdict_lines(report: Report) -> list[str]:
    return [f"{v.claim} [{v.setting}]: {v.detail}" for v in report.verdicts]


def all_notes(reports: Sequence[Report]) -> list[str]:
    return [f"Eager and compiled disagree: {d}" for d in disagreements(reports)]


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


def long_frame(reports: Sequence[Report]) -> pd.DataFrame:
    """One row per (report, line, mode, batch) with raw numbers: for spreadsheets and pandas."""
    import pandas as pd

    records = []
    for report in reports:
        for line in report.lines:
            for (mode, batch), m in line.cells.items():
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
                        "change": m.change,
                        "change_ci95_halfwidth": m.uncertainty,
                        "change_basis": m.basis,
                        "unstable": m.unstable,
                        "efficiency": None if m.scaling is None else m.scaling.efficiency,
                        "efficiency_ci95_halfwidth": None if m.scaling is None else m.scaling.uncertainty,
                        "efficiency_suspect": None if m.scaling is None else m.scaling.suspect,
                    }
                )
    return pd.DataFrame.from_records(records)


def to_json(reports: Sequence[Report]) -> str:
    def clean(report: Report) -> dict:
        data = dataclasses.asdict(report)
        for line, raw in zip(report.lines, data["lines"]):
            raw["cells"] = [
                {
                    "mode": mode,
                    "batch_per_core": batch,
                    **{k: v for k, v in dataclasses.asdict(m).items() if k not in ("runs", "rounds")},
                    "status": "missing" if m.status is None else m.status.value,
                }
                for (mode, batch), m in line.cells.items()
            ]
        data["order_sensitive"] = report.order_sensitive
        for test, raw in zip(report.self_tests, data["self_tests"]):
            raw["order_sensitive"] = test.order_sensitive
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


def claim_panels(reports: Sequence[Report]) -> dict[tuple[str, str, str], list[tuple[Report, object]]]:
    """(hardware, claim, setting) -> the reports' verdicts on it: a panel of the decision figure."""
    panels: dict[tuple[str, str, str], list] = {}
    for report in reports:
        for verdict in report.verdicts:
            if verdict.per_batch:
                panels.setdefault((report.hardware_key, verdict.claim, verdict.setting), []).append((report, verdict))
    return panels


def claimed_band(verdict, limits: tuple[float, float]) -> tuple[float, float]:
    """The claimed range as the variant's change against its baseline, in %, for shading; an
    open-ended claim ("at least 5%") runs to the edge of the panel (`limits`)."""
    low, _, high = verdict.claimed.replace(">= ", "").replace("<= ", "").partition(" to ")
    bound = float(low.rstrip("%"))
    other = float(high.rstrip("%")) if high else (limits[1] if bound > 0 else limits[0])
    return min(bound, other), max(bound, other)


def plot(reports: Sequence[Report], path: Path) -> None:
    """The decision figure (`figure`) as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = figure(reports)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=100)
    write_atomically(Path(path), image.getvalue())
    plt.close(fig)


def figure(reports: Sequence[Report]):
    """The decision figure: for each claim and setting, the variant's change against its baseline
    across per-core batch sizes with its 95% interval as a band and the claimed range shaded
    (train and infer in colour, execution modes by line style); then top-1 against throughput.
    The suite, hardware, dtype, commits and days are written on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = claim_panels(reports)
    executions = list(dict.fromkeys(r.execution for r in reports))
    columns = max(1, min(3, len(panels)))
    rows = -(-len(panels) // columns) + 1
    fig = plt.figure(figsize=(5 * columns, 3.6 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    for index, ((_, _, setting), found) in enumerate(panels.items()):
        axis = fig.add_subplot(grid[index // columns, index % columns])
        axis.axhline(0, color="black", linewidth=0.8)
        for report, verdict in found:
            style = EXECUTION_STYLES[executions.index(report.execution) % len(EXECUTION_STYLES)]
            batches = [b.batch for b in verdict.per_batch]
            change = np.array([b.change * 100 for b in verdict.per_batch])
            spread = np.nan_to_num([b.uncertainty * 100 for b in verdict.per_batch])
            colour = MODE_COLOURS.get(verdict.mode, "tab:gray")
            label = f"{verdict.mode}, {report.execution}: {verdict.verdict}"
            axis.errorbar(batches, change, yerr=spread, fmt=style, marker="o", color=colour, capsize=3, label=label)
            axis.fill_between(batches, change - spread, change + spread, color=colour, alpha=0.12)
        limits = axis.get_ylim()
        low, high = claimed_band(found[0][1], limits)
        axis.axhspan(low, high, color="tab:green", alpha=0.12, label="claimed")
        axis.set_ylim(min(limits[0], low - 2), max(limits[1], high + 2))
        shown = sorted({b.batch for _, v in found for b in v.per_batch})
        axis.set_xscale("log", base=2)
        axis.set_xticks(shown, [str(b) for b in shown])
        axis.minorticks_off()
        axis.set(xlabel="per-core batch size", ylabel=f"{found[0][1].variant} vs baseline (%)",
                 title=f"{found[0][1].variant} ({found[0][1].claimed} claimed), {setting}")  # fmt: skip
        axis.title.set_fontsize(10)
        axis.legend(fontsize=7, loc="best")
    for offset, mode in enumerate(reports[0].modes if reports else ()):
        axis = fig.add_subplot(grid[rows - 1, offset % columns])
        accuracy_panel(axis, [r for r in reports if r.execution == executions[0]], mode)
    first = reports[0]
    commits = ", ".join(dict.fromkeys(c for r in reports for c in r.commits))
    days = " to ".join(dict.fromkeys(d for r in reports for d in r.dates))
    fig.suptitle(
        f"{first.suite} on {first.device_name} ({first.dtype}, torch {first.torch}): coatbench commits {commits}; "
        f"measured {days}",
        fontsize=10,
    )
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
                {"heading": h, "rows": rows, "columns": list(rows[0]) if rows else []} for h, rows in sections(report)
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
    )


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

"""Reports in every format (the terminal, Markdown, CSV, JSON, LaTeX) and their plot."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from coatbench.files import write_atomically
from coatbench.options import Format
from coatbench.report import Line, Measured, Report, disagreements
from coatbench.results import Status
from coatbench.views.console import print_table

if TYPE_CHECKING:
    import pandas as pd


def cell_text(m: Measured) -> str:
    if m.status is not Status.OK:
        return "-" if m.status is None else m.status.value.upper()
    value = m.images_per_s
    text = f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    text = ("~" if m.unstable else "") + text  # unstable: the note says why
    if m.change is not None:
        u = "" if m.uncertainty is None or m.uncertainty != m.uncertainty else f" +-{m.uncertainty * 100:.1f}"
        text += f" ({m.change * 100:+.1f}%{u})"
    return text


def accuracy_text(line: Line) -> str:
    return "-" if line.accuracy is None else f"{line.accuracy.value:g}"


def title(report: Report) -> str:
    layout = "channels-last" if report.channels_last else "contiguous"
    return (
        f"{report.suite}: {report.description} | {report.device_name} ({report.hardware_key}), torch {report.torch}, "
        f"{report.execution}, {report.dtype}, {layout}; images/s per core (change vs the setting's first row, 95% CI)"
    )


def display_frame(report: Report) -> pd.DataFrame:
    import pandas as pd

    records = []
    for line in report.lines:
        record = {
            "Setting": line.setting,
            "Models": line.label,
            "ImageSize": str(line.image_size),
            "Top-1 Accuracy": accuracy_text(line),
            "Params": "-" if line.params is None else f"{line.params / 1e6:.1f}M",
            "GMACs": "-" if line.macs is None else f"{line.macs / 1e9:.1f}",
        }
        for (mode, batch), m in line.cells.items():
            record[f"{mode} {batch}"] = cell_text(m)
        records.append(record)
    return pd.DataFrame.from_records(records)


def accuracy_sources(report: Report) -> list[str]:
    sources = sorted({line.accuracy.source for line in report.lines if line.accuracy})
    read = f"Accuracy files read: {', '.join(report.accuracy_files)}"
    return ([f"Top-1 from: {'; '.join(sources)}"] if sources else []) + [read]


def verdict_lines(report: Report) -> list[str]:
    return [f"{v.claim} [{v.setting}]: {v.detail}" for v in report.verdicts]


def all_notes(reports: Sequence[Report]) -> list[str]:
    return [f"Eager and compiled disagree: {d}" for d in disagreements(reports)]


def to_markdown(reports: Sequence[Report]) -> str:
    parts = []
    for report in reports:
        parts += [f"### {title(report)}", "", display_frame(report).to_markdown(index=False), ""]
        parts += [f"- {note}" for note in accuracy_sources(report) + report.notes]
        if report.verdicts:
            parts += ["", "Claims:", ""] + [f"- {line}" for line in verdict_lines(report)]
        parts.append("")
    parts += [f"- {note}" for note in all_notes(reports)]
    return "\n".join(parts).rstrip() + "\n"


def to_latex(reports: Sequence[Report]) -> str:
    parts = []
    for report in reports:
        frame = display_frame(report)
        parts.append(frame.to_latex(index=False, caption=title(report), escape=True))
    return "\n".join(parts)


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


def plot(reports: Sequence[Report], path: Path) -> None:
    """Throughput against per-core batch size per variant, and top-1 against throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(reports), 2, figsize=(13, 4.5 * len(reports)), squeeze=False)
    for (left, right), report in zip(axes, reports):
        for line in report.lines:
            for mode, style in zip(report.modes, ("-o", "--s")):
                points = speed_points(report, line, mode)
                if points:
                    left.plot(*zip(*points), style, label=f"{line.setting}: {line.label} ({mode})")
                placed = accuracy_point(report, line, mode)
                if placed is not None:
                    rate, label = placed
                    right.scatter(rate, line.accuracy.value, marker="o" if mode == report.modes[0] else "s")
                    lift = 4 if mode == report.modes[0] else -9  # train above, infer below: equal top-1s overlap
                    right.annotate(
                        label, (rate, line.accuracy.value), fontsize=7, xytext=(3, lift), textcoords="offset points"
                    )
        left.set(
            xscale="log",
            yscale="log",
            xlabel="per-core batch size",
            ylabel="images/s per core",
            title=f"{report.device_name}, {report.execution}, {report.dtype}",
        )
        left.set_xticks(report.batch_sizes, [str(b) for b in report.batch_sizes])
        left.tick_params(axis="x", which="minor", labelbottom=False)  # only the measured sizes
        left.legend(fontsize=7)
        largest = report.batch_sizes[-1] if report.batch_sizes else "-"
        right.set(
            xlabel=f"images/s per core at the largest per-core batch that ran (of {largest})",
            ylabel="top-1 (%)",
            title=f"{report.suite}: accuracy against speed",
        )
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    write_atomically(Path(path), image.getvalue())
    plt.close(fig)


def write_terminal(reports: Sequence[Report]) -> None:
    for report in reports:
        frame = display_frame(report)
        print_table(
            frame.to_dict("records"),
            title=title(report),
            notes=accuracy_sources(report) + report.notes + ["Claims:"] + verdict_lines(report),
        )
    for note in all_notes(reports):
        print_table([], notes=[note])


def show_reports(reports: Sequence[Report], fmt: Format, plot_path: Path | None = None) -> None:
    if fmt is Format.TABLE:
        write_terminal(reports)
    elif fmt is Format.CSV:
        long_frame(reports).to_csv(sys.stdout, index=False)
    else:
        writer = {Format.MARKDOWN: to_markdown, Format.JSON: to_json, Format.LATEX: to_latex}[fmt]
        sys.stdout.write(writer(reports))
    if plot_path is not None:
        plot(reports, plot_path)

"""Running a plan in front of a person: a rich progress bar on a terminal, plain lines
in a log, nothing with --quiet. The sweep itself stays silent and pure."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from coatbench.errors import CoatbenchError
from coatbench.options import Execution, ReportFormat
from coatbench.render import err_console, print_table, throughput_cell, variant_label

if TYPE_CHECKING:
    from coatbench.harness import Cell
    from coatbench.sweep import Plan


def cell_name(cell: Cell) -> str:
    spec = cell.spec("")
    return f"{variant_label(spec)} {cell.mode.value} bs{cell.batch_size} {cell.execution.value}"


def plan_notes(plan: Plan) -> list[str]:
    notes = [f"scaled down for the CPU: {note}" for note in plan.scaled_down]
    if plan.resumed:
        notes.append(plan.resumed)
    notes.append(f"results appended to {plan.out}")
    return notes


def parse_executions(text: str) -> list[Execution]:
    try:
        return [Execution(part.strip()) for part in text.split(",")]
    except ValueError:
        choices = ",".join(e.value for e in Execution)
        raise CoatbenchError(f"invalid --execution {text!r}: a comma-separated list of {choices}") from None


def print_dry_run(plan: Plan) -> None:
    """The cells a plan would measure, each with a rough time, and the total."""
    from coatbench.counting import count
    from coatbench.hardware import fingerprint
    from coatbench.sweep import estimate_seconds

    env = fingerprint(plan.device)
    counts = {}
    rows, total = [], 0.0
    for cell in plan.cells:
        counted = counts.setdefault(cell.config, count(cell.config))
        seconds = estimate_seconds(cell, counted, env, plan.budget)
        total += seconds
        rows.append({"cell": cell_name(cell), "dtype": cell.dtype.value, "estimate": f"{seconds:,.0f} s"})
    notes = plan_notes(plan)[:-1] + [
        f"{len(plan.cells)} cells on {env.device_name}, roughly {total / 60:,.1f} min (a guess from MACs, "
        "not a measurement); nothing was measured"
    ]
    print_table(rows, title="Dry run", notes=notes)


def write_report(suite, rows: list[dict], accuracy_files: list[Path], fmt: ReportFormat, plot_path: Path | None) -> None:
    from coatbench.accuracy import load
    from coatbench.report import build_reports
    from coatbench.report_render import emit_reports, plot

    reports = build_reports(suite, rows, load(accuracy_files))
    if not reports:
        raise CoatbenchError(f"no results to report for suite {suite.name}: measure first (coatbench run {suite.name})")
    emit_reports(reports, fmt)
    if plot_path is not None:
        plot(reports, plot_path)


def run_plan(plan: Plan, *, quiet: bool = False) -> list[dict]:
    """Run the sweep with progress on stderr; the rows measured, even when interrupted."""
    from coatbench.sweep import SweepProgress, run_sweep

    total = len(plan.cells)
    for note in plan_notes(plan)[:-1] if not quiet else ():
        err_console.print(note, highlight=False, soft_wrap=True)
    if quiet:
        result = run_sweep(plan)
    elif sys.stderr.isatty():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err_console) as bar:
            task = bar.add_task("measuring", total=total)
            result = run_sweep(
                plan,
                SweepProgress(
                    on_start=lambda i, cell: bar.update(task, description=cell_name(cell)),
                    on_done=lambda i, cell, row: bar.update(task, advance=1),
                ),
            )
    else:
        result = run_sweep(
            plan,
            SweepProgress(
                on_done=lambda i, cell, row: err_console.print(
                    f"[{i + 1}/{total}] {cell_name(cell)}: {throughput_cell(row)} images/s/core",
                    highlight=False,
                    soft_wrap=True,
                )
            ),
        )
    if result.interrupted:
        raise CoatbenchError(
            f"interrupted after {len(result.rows)} of {total} cells; those are saved in {plan.out} "
            "(run again to measure the rest)"
        )
    return result.rows


def write_comparison(results, fmt: str) -> None:
    from coatbench.render import (
        benchmark_action_json,
        comparison_markdown,
        comparison_records,
        comparison_summary,
        print_json,
    )

    if fmt == "json":
        print_json(benchmark_action_json(results))
    elif fmt == "markdown":
        sys.stdout.write(comparison_markdown(results))
    else:
        print_table(comparison_records(results), title=comparison_summary(results))

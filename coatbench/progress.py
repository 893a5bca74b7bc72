"""Running a plan in front of a person: a rich progress bar on a terminal, plain lines
in a log, nothing with --quiet. The sweep itself stays silent and pure."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from coatbench.errors import CoatbenchError
from coatbench.render import err_console, throughput_cell, variant_label

if TYPE_CHECKING:
    from coatbench.harness import Cell
    from coatbench.sweep import Plan


def cell_name(cell: Cell) -> str:
    spec = cell.spec("")
    return f"{variant_label(spec)} {cell.mode.value} bs{cell.batch_size} {cell.execution.value}"


def plan_notes(plan: Plan) -> list[str]:
    notes = [f"scaled down for the CPU: {note}" for note in plan.scaled_down]
    notes.append(f"results appended to {plan.out}")
    return notes


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

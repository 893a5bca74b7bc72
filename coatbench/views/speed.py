"""A sweep in front of a person: its plan, its progress, its rows as a speed table.

Progress is a rich bar on a terminal, a plain line per cell in a log, nothing with --quiet.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from coatbench.config import variant_name
from coatbench.options import Format, torchrun_rank
from coatbench.results import LAST, Row, run_key
from coatbench.views.console import emit, err_console, print_note

if TYPE_CHECKING:
    from coatbench.harness import Cell
    from coatbench.sweep import Plan


def cell_name(cell: Cell) -> str:
    devices = f" x{cell.devices} devices" if cell.devices > 1 else ""
    return f"{variant_name(cell.config.spec())} {cell.mode.value} bs{cell.batch_size} {cell.execution.value}{devices}"


def plan_notes(plan: Plan) -> list[str]:
    """How the cells are measured, what the plan scaled down and where it continues; where the
    rows go comes last."""
    where = "in this process" if plan.device.type == "xla" else f"in {plan.processes} worker process(es)"
    if torchrun_rank() is not None:
        where = "in each rank's own process (torchrun)"
    notes = [
        f"{plan.rounds} round(s) of interleaved cells, order drawn from seed {plan.seed} (sweep {plan.sweep}), "
        f"{where}; the position self-test measures each setting's baseline first and last in round 1"
    ]
    several = sorted({cell.devices for cell in plan.cells})
    if several != [1]:
        notes.append(
            f"devices {', '.join(map(str, several))}: a rank each, started by torchrun "
            f"({'NCCL' if plan.device.type == 'cuda' else 'gloo'}); one device is measured too, for the scaling "
            "efficiency"
        )
    notes += [f"scaled down for the CPU: {note}" for note in plan.scaled_down]
    if plan.resumed:
        notes.append(plan.resumed)
    return notes + [f"results appended to {plan.out}"]


def throughput_cell(row: Row) -> str:
    """ "1234.5 +-1.2%" (images/s per core and the 95% CI of the median), or the status."""
    if not row.ok:
        return row.status.value.upper()
    t = row.throughput
    ci = "" if t.ci95_rel is None else f" +-{t.ci95_rel * 100:.1f}%"
    return f"{t.images_per_s:,.1f}{ci}"


def speed_table(rows: Sequence[Row]) -> tuple[list[dict[str, str]], int]:
    """One line per cell, its runs (rounds) together: the geometric mean of their medians and
    its 95% CI over them; ~ marks an unstable cell. Also how many runs by older code were left out."""
    from coatbench.report import cell_summary, latest_code, single_device_runs  # scipy: not at start of the CLI

    cells: dict[tuple, list[Row]] = {}
    for row in rows:
        if not (row.trial and row.trial.self_test == LAST):  # the position self-test's extra run
            cells.setdefault(run_key(row.env, row.spec), []).append(row)
    table, superseded = [], 0
    several = any(row.spec.devices > 1 and row.spec.device != "xla" for row in rows)
    singles = single_device_runs(rows) if several else {}
    for runs in cells.values():
        cell, spec = cell_summary(runs), runs[0].spec
        superseded += cell.superseded
        ok = [r for r in latest_code(runs) if r.ok]
        value, compute = cell.images_per_s, ok[-1].compute if ok else None
        tflops = None if compute is None else value * spec.devices * compute.flops_per_image / 1e12
        peak = max((r.memory.peak_bytes or 0 for r in ok if r.memory), default=0)
        first = [r.timing.first_step_s for r in ok if r.timing.first_step_s]
        ci = "" if cell.ci is None else f" +-{cell.ci * 100:.1f}%"
        shown = f"{'~' if cell.unstable else ''}{value:,.1f}{ci}" if ok else cell.status.value.upper()
        table.append(
            {
                "variant": variant_name(spec.network),
                "mode": spec.mode,
                "execution": spec.execution,
                "dtype": spec.dtype,
                "bs": str(spec.batch_per_core),
                "img/s/core": shown,
                "runs": str(len(cell.runs)),
                "TFLOP/s": "-" if tflops is None else f"{tflops:.1f}",
                "MFU": "-" if tflops is None or not compute.peak_tflops else f"{tflops / compute.peak_tflops:.1%}",
                "peak GiB": f"{peak / 2**30:.2f}" if peak else "-",
                "1st step": f"{float(np.median(first)):.1f}s" if first else "-",
            }
        )
        if several:
            table[-1].update(_scaling_columns(runs, spec, ok, singles, value))
    return table, superseded


def _scaling_columns(runs, spec, ok, singles, per_core) -> dict[str, str]:
    """Devices, all devices' images/s, the scaling efficiency and the straggler index."""
    from coatbench.report import scaling_of
    from coatbench.results import scaling_key

    if spec.devices == 1 or not ok:
        return {"dev": str(spec.devices), "img/s all": "-", "E": "-", "straggler": "-"}
    scaling = scaling_of(runs, singles.get(scaling_key(runs[0].env, spec)))
    stragglers = [r.distributed.straggler for r in ok if r.distributed]
    return {
        "dev": str(spec.devices),
        "img/s all": f"{per_core * spec.devices:,.1f}",
        "E": "-" if scaling is None else scaling.text,
        "straggler": f"{max(stragglers):.2f}" if stragglers else "-",
    }


def self_test_notes(rows: Sequence[Row]) -> list[str]:
    """The position self-test of each sweep among `rows`: the baseline measured last vs first."""
    from coatbench.report import position_self_tests

    notes = []
    for test in position_self_tests(rows):
        verdict = "outside 1 +- 2%: this machine is order-sensitive" if test.order_sensitive else "within 1 +- 2%"
        notes.append(f"position self-test ({test.cell}, last vs first in round 1): {test.text}, {verdict}")
    return notes


SPEED_LEGEND = (
    "img/s/core: images/s per core, the geometric mean of the runs' medians with its 95% interval (~: unstable); "
    "bs: per-core batch; 1st step: compilation, capture and the first step, timed apart"
)


def show_rows(rows: Sequence[Row], fmt: Format, title: str, notes: Sequence[str] = ()) -> None:
    from coatbench.report import SCALING_NOTE, SUPERSEDED_NOTE

    table, superseded = speed_table(rows)
    several = [SCALING_NOTE + "; straggler: median rank's images/s over the slowest rank's"] if "E" in (
        table[0] if table else {}) else []  # fmt: skip
    notes = [SPEED_LEGEND, *several, *self_test_notes(rows), *notes]
    if superseded:
        notes.append(SUPERSEDED_NOTE.format(superseded))
    emit(fmt, [row.to_dict() for row in rows], table, title=title, notes=notes)


def show_dry_run(plan: Plan, estimates: Sequence[tuple[Cell, float]], fmt: Format) -> None:
    """The cells a plan would measure, each with a rough time, and the total."""
    rows = [
        {"cell": cell_name(cell), "dtype": cell.dtype.value, "estimate": f"{seconds:,.0f} s"}
        for cell, seconds in estimates
    ]
    total = sum(seconds for _, seconds in estimates)
    notes = plan_notes(plan)[:-1] + [
        f"{len(plan.cells)} cells x {plan.rounds} rounds on {plan.env.device_name}, roughly {total / 60:,.1f} min "
        "(a guess from MACs, "
        "not a measurement); nothing was measured"
    ]
    raw = [{"cell": r["cell"], "dtype": r["dtype"], "seconds": s} for r, (_, s) in zip(rows, estimates)]
    emit(fmt, raw, rows, title="Dry run", notes=notes)


class _Lines:
    """Progress as one plain line per finished cell (a log, a CI job)."""

    def __init__(self, total: int):
        self.total = total

    def on_start(self, index: int, cell: Cell) -> None:
        pass

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        print_note(f"[{index + 1}/{self.total}] {cell_name(cell)}: {throughput_cell(row)} images/s/core")


class _Bar:
    def __init__(self, bar: Progress, task):
        self.bar, self.task = bar, task

    def on_start(self, index: int, cell: Cell) -> None:
        self.bar.update(self.task, description=cell_name(cell))

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        self.bar.update(self.task, advance=1)


class _Silent:
    def on_start(self, index: int, cell: Cell) -> None:
        pass

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        pass


@contextmanager
def progress(plan: Plan, quiet: bool = False) -> Iterator[object]:
    """The callbacks (`sweep.SweepProgress`'s two) that show a sweep's progress on stderr."""
    if quiet or torchrun_rank():  # under torchrun, rank 0 shows the progress
        yield _Silent()
        return
    for note in plan_notes(plan)[:-1]:
        print_note(note)
    if not sys.stderr.isatty():
        yield _Lines(plan.timed_slots)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        yield _Bar(bar, bar.add_task("measuring", total=plan.timed_slots))

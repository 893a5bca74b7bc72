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
from rich.text import Text

from coatbench.config import variant_name
from coatbench.results import Row, run_key
from coatbench.settings import Format
from coatbench.views.console import emit, err_console, print_note

if TYPE_CHECKING:
    from coatbench.measure.harness import Cell
    from coatbench.run.plan import Plan
    from coatbench.run.sweep import SweepResult


def cell_name(cell: Cell) -> str:
    devices = f" x{cell.devices} devices" if cell.devices > 1 else ""
    return f"{variant_name(cell.config.spec())} {cell.mode.value} bs{cell.batch_size} {cell.execution.value}{devices}"


def plan_notes(plan: Plan) -> list[str]:
    """How the cells are measured, what the plan scaled down and where it continues; where the
    rows go comes last."""
    where = "in this process" if plan.device.type == "xla" else f"in {plan.processes} worker process(es)"
    if plan.torchrun is not None:
        where = "in each rank's own process (torchrun)"
    rounds = (
        f"at least {plan.rounds}, then more of the claim cells still unresolved while they fit in "
        f"{plan.time_budget_s / 60:g} min (--rounds auto, --budget)"
        if plan.auto
        else f"{plan.rounds} (--rounds)"
    )
    notes = [
        f"rounds of interleaved cells, order drawn from seed {plan.seed} (sweep {plan.sweep}), {where}: {rounds}; "
        "the A/A control measures each setting's baseline a second time in every round"
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
    """One line per cell, its runs (rounds) together (`runs.CellRuns`): the geometric mean of their
    medians and its 95% CI over them; ~ marks an unstable cell, † a host-bound one. Also how many
    runs by older code were left out."""
    from coatbench.report import single_device_runs  # scipy: not at start of the CLI
    from coatbench.runs import CellRuns

    table, superseded = [], 0
    several = any(row.spec.devices > 1 and row.spec.device != "xla" for row in rows)
    singles = single_device_runs(rows) if several else {}
    for runs in by_cell(rows):
        cell, spec = CellRuns.of(runs), runs[0].spec
        superseded += cell.superseded
        ok = cell.ok
        value, compute = cell.value, ok[-1].compute if ok else None
        tflops = None if compute is None else value * spec.devices * compute.flops_per_image / 1e12
        peak = max((r.memory.peak_bytes or 0 for r in ok if r.memory), default=0)
        first = [r.timing.first_step_s for r in ok if r.timing.first_step_s]
        ci = "" if cell.spread is None else f" +-{cell.spread * 100:.1f}%"
        marks = ("~" if cell.unstable else "") + ("†" if cell.host_bound else "")
        shown = f"{marks}{value:,.1f}{ci}" if ok else ("-" if cell.status is None else cell.status.value.upper())
        table.append(
            {
                "variant": variant_name(spec.network),
                "mode": spec.mode,
                "execution": spec.execution,
                "dtype": spec.dtype,
                "bs": str(spec.batch_per_core),
                "img/s/core": shown,
                "runs": str(len(ok)),
                "TFLOP/s": "-" if tflops is None else f"{tflops:.1f}",
                "MFU": "-" if tflops is None or not compute.peak_tflops else f"{tflops / compute.peak_tflops:.1%}",
                "peak GiB": f"{peak / 2**30:.2f}" if peak else "-",
                "1st step": f"{float(np.median(first)):.1f}s" if first else "-",
            }
        )
        if several:
            table[-1].update(_scaling_columns(runs, spec, ok, singles, value))
    return table, superseded


def by_cell(rows: Sequence[Row]) -> list[list[Row]]:
    """`rows` by run key, in the order the cells first appear."""
    cells: dict[tuple, list[Row]] = {}
    for row in rows:
        cells.setdefault(run_key(row.env, row.spec), []).append(row)
    return list(cells.values())


def _scaling_columns(runs, spec, ok, singles, per_core) -> dict[str, str]:
    """Devices, all devices' images/s, the scaling efficiency and the straggler index."""
    from coatbench.report import scaling_of
    from coatbench.results import scaling_key
    from coatbench.views.report import scaling_text

    if spec.devices == 1 or not ok:
        return {"dev": str(spec.devices), "img/s all": "-", "E": "-", "straggler": "-"}
    scaling = scaling_of(runs, singles.get(scaling_key(runs[0].env, spec)))
    stragglers = [r.distributed.straggler for r in ok if r.distributed]
    return {
        "dev": str(spec.devices),
        "img/s all": f"{per_core * spec.devices:,.1f}",
        "E": "-" if scaling is None else scaling_text(scaling),
        "straggler": f"{max(stragglers):.2f}" if stragglers else "-",
    }


def aa_notes(rows: Sequence[Row]) -> list[str]:
    """The A/A control of each cell among `rows` that was measured twice a round."""
    from coatbench.report import AAResult
    from coatbench.runs import CellRuns, change_of
    from coatbench.views.report import aa_text, change_text

    notes = []
    for runs in by_cell(rows):
        change = change_of(CellRuns.of(runs, replicate=1), CellRuns.of(runs))
        if change is not None:
            spec = runs[0].spec
            aa = AAResult(variant_name(spec.network), spec.mode, spec.batch_per_core, change)
            where = f"{aa.setting} {aa.mode} bs{aa.batch} {spec.execution}"
            rounds = f"{change.n} round{'s' if change.n > 1 else ''}"
            notes.append(
                f"A/A control ({where}, measured twice a round): {change_text(change)} over {rounds}: " + aa_text(aa)
            )
    return notes


SPEED_LEGEND = (
    "img/s/core: images/s per core, the geometric mean of the runs' medians with its 95% interval (~: unstable; "
    "†: host-bound, the device waited on the host: it measures kernel launches, try --execution cuda-graphs); "
    "bs: per-core batch; 1st step: compilation, capture and the first step, timed apart"
)


def show_rows(rows: Sequence[Row], fmt: Format, title: str, notes: Sequence[str] = ()) -> None:
    from coatbench.report import SCALING_NOTE, SUPERSEDED_NOTE

    table, superseded = speed_table(rows)
    several = (
        [SCALING_NOTE + "; straggler: median rank's images/s over the slowest rank's"]
        if "E" in (table[0] if table else {})
        else []
    )
    notes = [SPEED_LEGEND, *several, *aa_notes(rows), *notes]
    if superseded:
        notes.append(SUPERSEDED_NOTE.format(superseded))
    emit(fmt, [row.to_dict() for row in rows], table, title=title, notes=notes)


def stop_note(result: SweepResult) -> str:
    """How a sweep ended: its rounds, its wall time, and what it stopped on."""
    return f"{result.rounds} round(s) in {result.elapsed_s / 60:.1f} min; stopped: {result.stopped.detail}"


def show_dry_run(plan: Plan, estimates: Sequence[tuple[Cell | None, int, float]], fmt: Format) -> None:
    """The cells a plan would measure (an A/A copy marked as such; the warm-up copies together),
    each with a rough time, the A/A control's share and the total."""

    def name(cell: Cell | None, replicate: int) -> str:
        return "warm-up copies (untimed)" if cell is None else cell_name(cell) + (" (A/A copy)" if replicate else "")

    rows = [
        {
            "cell": name(cell, replicate),
            "dtype": "-" if cell is None else cell.dtype.value,
            "estimate": f"{seconds:,.0f} s",
        }
        for cell, replicate, seconds in estimates
    ]
    total = sum(seconds for _, _, seconds in estimates)
    control = sum(seconds for _, replicate, seconds in estimates if replicate)
    copies = sum(1 for _, replicate, _ in estimates if replicate)
    notes = plan_notes(plan)[:-1] + [
        f"A/A control: {copies} cell(s) measured twice a round, roughly {control / 60:,.1f} min of the total "
        f"({control / total:.0%})"
        if total
        else "A/A control: none",
        f"{len(plan.cells)} cells x {plan.rounds} rounds on {plan.env.device_name}, roughly {total / 60:,.1f} min "
        "(a guess from MACs, not a measurement)"
        + (f", then rounds added within {plan.time_budget_s / 60:g} min in all" if plan.auto else "")
        + "; nothing was measured",
    ]
    raw = [
        {"cell": r["cell"], "dtype": r["dtype"], "replicate": replicate, "seconds": seconds}
        for r, (_, replicate, seconds) in zip(rows, estimates)
    ]
    emit(fmt, raw, rows, title="Dry run", notes=notes)


class _Lines:
    """Progress as one plain line per finished cell (a log, a CI job)."""

    def __init__(self, total: int):
        self.total = total

    def on_start(self, index: int, cell: Cell) -> None:
        pass

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        print_note(f"[{index + 1}/{self.total}] {cell_name(cell)}: {throughput_cell(row)} images/s/core")

    def on_round(self, round_: int, measurements: int, why: str) -> None:
        self.total += measurements
        print_note(f"round {round_ + 1} added, {measurements} measurements: {why}")


class _Bar:
    def __init__(self, bar: Progress, task):
        self.bar, self.task = bar, task

    def on_start(self, index: int, cell: Cell) -> None:
        self.bar.update(self.task, description=cell_name(cell))

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        self.bar.update(self.task, advance=1)

    def on_round(self, round_: int, measurements: int, why: str) -> None:
        total = self.bar.tasks[0].total + measurements
        self.bar.update(self.task, total=total)
        self.bar.console.print(Text(f"round {round_ + 1} added, {measurements} measurements: {why}"))


class _Silent:
    def on_start(self, index: int, cell: Cell) -> None:
        pass

    def on_done(self, index: int, cell: Cell, row: Row) -> None:
        pass

    def on_round(self, round_: int, measurements: int, why: str) -> None:
        pass


@contextmanager
def progress(plan: Plan, quiet: bool = False) -> Iterator[object]:
    """The callbacks (`run.sweep.SweepProgress`'s) that show a sweep's progress on stderr."""
    if quiet or (plan.torchrun is not None and plan.torchrun.rank > 0):  # under torchrun, rank 0 shows it
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

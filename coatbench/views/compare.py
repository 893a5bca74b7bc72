"""A comparison of two runs: a table, Markdown for a CI job summary, or
github-action-benchmark's JSON."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence

from coatbench.compare import Comparison, Outcome, RowComparison
from coatbench.settings import Format, Rounds
from coatbench.views.console import cell_label, emit, markdown, print_json, print_note, signed_percent

ORDER = {
    Outcome.REGRESSED: 0,
    Outcome.INCONCLUSIVE: 1,
    Outcome.IMPROVED: 2,
    Outcome.NOT_COMPARABLE: 3,
    Outcome.UNCHANGED: 4,
}


def label(r: RowComparison) -> str:
    return "all cells (geometric mean)" if r.spec is None else cell_label(r.spec)


def records(results: Sequence[RowComparison]) -> list[dict[str, str]]:
    return [
        {
            "cell": label(r),
            "status": r.status.value,
            "baseline img/s": "-" if r.baseline is None else f"{r.baseline:,.1f}",
            "current img/s": "-" if r.current is None else f"{r.current:,.1f}",
            "change": signed_percent(r.change),
            "p": "-" if r.p_value is None else f"{r.p_value:.2g}",
            "runs": f"{r.runs[0]}/{r.runs[1]}",
            "why": r.reason,
        }
        for r in sorted(results, key=lambda r: ORDER[r.status])
    ]


def summary(results: Sequence[RowComparison]) -> str:
    regressed = [r for r in results if r.status is Outcome.REGRESSED]
    if not results:
        return "Nothing compared."
    if all(r.status is Outcome.NOT_COMPARABLE for r in results):
        return f"Nothing comparable: {len(results)} cell(s) not comparable ({results[0].reason})."
    if not regressed:
        others = (Outcome.UNCHANGED, Outcome.IMPROVED, Outcome.INCONCLUSIVE, Outcome.NOT_COMPARABLE)
        counts = {s.value: sum(r.status is s for r in results) for s in others}
        return "No regression (" + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing compared") + ")."
    return f"{len(regressed)} regression(s): " + "; ".join(f"{label(r)} {signed_percent(r.change)}" for r in regressed)


def benchmark_action_json(results: Sequence[RowComparison]) -> list[dict]:
    """github-action-benchmark's `customBiggerIsBetter` format: one entry per measured cell, with
    the 95% range of its value over its runs (when it has two or more) and the verdict."""
    entries = []
    for r in results:
        if r.current is None:
            continue
        entry = {"name": label(r), "unit": "images/s", "value": r.current}
        if r.current_ci is not None and not math.isnan(r.current_ci):
            entry["range"] = f"± {r.current * r.current_ci:.1f}"
        entry["verdict"] = r.status.value
        entry["extra"] = f"{r.status.value}; change {signed_percent(r.change)} vs baseline {r.baseline:,.1f}"
        entries.append(entry)
    return entries


def show_comparison(comparison: Comparison, fmt: Format) -> None:
    """The verdict first: regressions, or "No regression" in one line; notes on stderr so that
    stdout stays one document."""
    if comparison.note:
        print_note(comparison.note)
    results = [*([comparison.overall] if comparison.overall else []), *comparison.results]
    table = records(results)
    if fmt is Format.JSON:
        print_json(benchmark_action_json(results))
    elif fmt is Format.MARKDOWN:
        changed = any(r.status is not Outcome.UNCHANGED for r in results) or not results
        sys.stdout.write(f"**{summary(results)}**\n\n" + (markdown(table) if changed else ""))
    elif fmt is Format.TABLE and not results and comparison.note:
        return  # the note said it all
    else:
        emit(fmt, [dict(r) for r in table], table, title=summary(results))


def round_printer(rounds: Rounds) -> Callable[[int, str], None]:
    """`ab`'s progress: which revision runs in which round, on stderr."""
    of = f"{rounds.count}+" if rounds.auto else str(rounds.count)
    return lambda index, ref: print_note(f"round {index + 1}/{of}: {ref.upper()}")

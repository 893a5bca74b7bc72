"""Comparing two runs cell by cell: a regression must be both large and significant.

The unit of evidence is the run (one process measuring one cell), not the timed block. Blocks
of one run share the machine's state (clock, where the threads landed, the neighbours of a
shared VM) and move together: on this project's 2-core development VM, whole runs of the same
code landed 2.5-31% apart while no run's own CI was wider than +-2%, and a test on pooled blocks
called identical code slower at p down to 3e-17 (results/cpu/run_to_run.md). Each run is
therefore reduced to its median, and
the runs of a cell are compared (`runs.CellRuns`): the change is the ratio of their geometric
means, and each outcome is earned by a one-sided t-test on the log run values against the
threshold (alpha 0.01 by default), as a report's verdicts are by their intervals:
- `regressed`: significantly slower than the baseline scaled down by the threshold;
- `improved`: significantly faster than the baseline scaled up by it;
- `unchanged`: significantly not slower than the baseline scaled down by it;
- `inconclusive`: none of these (too few runs, or too noisy for the threshold).
Testing against the threshold, not against zero, is what keeps a real but small slowdown from
being called a regression. Runs from `coatbench ab` are paired (A and B of one round ran side
by side, sharing the machine's state), which cancels most of the run-to-run drift. With one run
on a side the run-to-run noise is unknown: every outcome is then `inconclusive`. Rows from
different hardware or torch versions are `not comparable`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
from scipy.stats import gmean, ttest_1samp, ttest_ind

from coatbench.errors import CoatbenchError
from coatbench.files import check_not_input
from coatbench.results import Row, Spec, read_rows, workload_key, write_rows
from coatbench.runs import CellRuns
from coatbench.stats import identical_runs_allowed, spread_of_runs


class Outcome(str, Enum):
    """A cell's outcome; only `regressed` fails a check."""

    REGRESSED = "regressed"  # significantly slower than the threshold allows
    INCONCLUSIVE = "inconclusive"  # none of the others is significant; or one run a side
    IMPROVED = "improved"  # significantly faster than the threshold
    NOT_COMPARABLE = "not comparable"  # other hardware or torch, missing or unmeasured on a side
    UNCHANGED = "unchanged"  # significantly not slower than the threshold allows

    @property
    def resolved(self) -> bool:
        """Whether more runs could change the outcome: `ab` adds rounds until none could."""
        return self in (Outcome.REGRESSED, Outcome.IMPROVED, Outcome.UNCHANGED)


@dataclass(frozen=True)
class RowComparison:
    spec: Spec | None  # None: every comparable cell together (`Comparison.overall`)
    status: Outcome
    reason: str = ""
    baseline: float | None = None  # images/s per core: geometric mean of the runs' medians
    current: float | None = None
    change: float | None = None  # current / baseline - 1
    p_value: float | None = None
    runs: tuple[int, int] = (0, 0)  # runs on each side (baseline, current)
    current_ci: float | None = None  # 95% half-width of `current`, relative, over its runs (2 runs or more)


@dataclass(frozen=True)
class Comparison:
    results: list[RowComparison] = field(default_factory=list)
    note: str = ""  # why nothing was compared, when nothing was
    # Every comparable cell at once, each run the geometric mean of its cells: a change that
    # slows every cell a little stands out there before it does in any one cell.
    overall: RowComparison | None = None

    @property
    def regressed(self) -> list[RowComparison]:
        judged = [*self.results, *([self.overall] if self.overall else [])]
        return [r for r in judged if r.status is Outcome.REGRESSED]

    @property
    def nothing_comparable(self) -> bool:
        return all(r.status is Outcome.NOT_COMPARABLE for r in self.results)

    def exit_code(self, allow_nothing_comparable: bool = False) -> int:
        """0: no regression; 1: a regression; 3: no cell could be compared (other hardware,
        another torch, no baseline), unless that is allowed. (2 is bad input, from the CLI.)"""
        if self.regressed:
            return 1
        return NOTHING_COMPARABLE if self.nothing_comparable and not allow_nothing_comparable else 0


NOTHING_COMPARABLE = 3  # the exit code when no cell could be compared


def _not_comparable(base: list[Row], cur: list[Row], paired: bool) -> str:
    if not base:
        return "missing in the baseline"
    if not cur:
        return "missing in the current run"
    for key, what in ((lambda r: r.env.hardware_key, "hardware"), (lambda r: r.env.torch, "torch")):
        sides = [sorted({key(r) for r in rows}) for rows in (base, cur)]
        if sides[0] != sides[1]:
            return f"different {what} ({', '.join(sides[0])} vs {', '.join(sides[1])})"
    for name, rows in (("baseline", base), ("current run", cur)):
        failed = [r.status.value for r in rows if not r.ok or not r.samples]
        if failed:
            return f"the {name} has no samples ({failed[0]}) in {len(failed)} of {len(rows)} run(s)"
    if paired and len(run_values(base)) != len(run_values(cur)):
        return f"paired runs differ in number ({len(run_values(base))} vs {len(run_values(cur))})"
    return ""


def compare_runs(
    base: Sequence[float], cur: Sequence[float], threshold: float, alpha: float, paired: bool = False
) -> tuple[Outcome, float, float | None]:
    """(outcome, change, p-value of the test that decided it) from each run's median throughput
    (bigger is better); with `paired`, base[i] and cur[i] ran side by side."""
    log_base, log_cur = np.log(np.asarray(base, float)), np.log(np.asarray(cur, float))
    change = float(np.expm1(log_cur.mean() - log_base.mean()))
    if min(len(log_base), len(log_cur)) < 2:
        return Outcome.INCONCLUSIVE, change, None  # one run: no idea how far runs wander on their own

    def p_value(shift: float, side: str) -> float:
        """p of: log(cur / base) is `side` than `shift`."""
        with identical_runs_allowed():
            if paired:
                p = ttest_1samp(log_cur - log_base, shift, alternative=side).pvalue
            else:
                p = ttest_ind(log_cur, log_base + shift, equal_var=False, alternative=side).pvalue
        return float(p)  # NaN: runs with no spread at all

    slower, faster = np.log1p(-threshold), np.log1p(threshold)
    tests = (
        (Outcome.REGRESSED, p_value(slower, "less")),
        (Outcome.IMPROVED, p_value(faster, "greater")),
        (Outcome.UNCHANGED, p_value(slower, "greater")),
    )
    for outcome, p in tests:
        if p < alpha:
            return outcome, change, p
    if all(np.isnan(p) for _, p in tests):  # no spread: the change is what it is
        outcome = Outcome.REGRESSED if change < -threshold else Outcome.IMPROVED if change > threshold else None
        return outcome or Outcome.UNCHANGED, change, None
    closest = tests[0][1] if change < 0 else tests[2][1]
    return Outcome.INCONCLUSIVE, change, None if np.isnan(closest) else closest


def compare_rows(
    baseline: Sequence[Row], current: Sequence[Row], threshold: float = 0.05, alpha: float = 0.01, paired: bool = False
) -> list[RowComparison]:
    """Match rows by workload and judge each. A run is a sweep (the rows of its rounds, reduced
    to the geometric mean of their medians) or, for a row measured without rounds, the row."""
    base_by: dict[str, list[Row]] = {}
    cur_by: dict[str, list[Row]] = {}
    for rows, by in ((baseline, base_by), (current, cur_by)):
        for row in rows:
            by.setdefault(workload_key(row.spec), []).append(row)
    base_hw = {r.env.hardware_key for r in baseline}
    cur_hw = {r.env.hardware_key for r in current}
    if not base_hw & cur_hw:  # nothing in common: say so, rather than "missing" for every cell
        why = f"different hardware ({', '.join(sorted(base_hw))} vs {', '.join(sorted(cur_hw))})"
        return [RowComparison(rows[0].spec, Outcome.NOT_COMPARABLE, why) for rows in cur_by.values()]
    results = []
    for key in dict.fromkeys([*cur_by, *base_by]):
        base, cur = base_by.get(key, []), cur_by.get(key, [])
        spec = (cur or base)[0].spec
        reason = _not_comparable(base, cur, paired)
        if reason:
            results.append(RowComparison(spec, Outcome.NOT_COMPARABLE, reason, runs=(len(base), len(cur))))
            continue
        base_medians, cur_medians = run_values(base), run_values(cur)
        runs = (len(base_medians), len(cur_medians))
        status, change, p = compare_runs(base_medians, cur_medians, threshold, alpha, paired)
        one_run = min(runs) < 2
        why = "one run on a side: its run-to-run noise is unknown" if one_run else ""
        spread = spread_of_runs(cur_medians) if len(cur_medians) >= 2 else None
        results.append(
            RowComparison(
                spec, status, why, float(gmean(base_medians)), float(gmean(cur_medians)), change, p, runs, spread
            )
        )
    return results


def judge(
    baseline: Sequence[Row], current: Sequence[Row], threshold: float = 0.05, alpha: float = 0.01, paired: bool = False
) -> Comparison:
    """Each cell judged (`compare_rows`), and every comparable cell together (`Comparison.overall`)."""
    results = compare_rows(baseline, current, threshold, alpha, paired)
    return Comparison(results, overall=_overall(baseline, current, results, threshold, alpha, paired))


def _overall(baseline, current, results, threshold, alpha, paired) -> RowComparison | None:
    """The comparable cells together: run i of a side is the geometric mean over the cells of
    their run i. Needs two cells or more, each with as many runs as the others on its side."""
    keys = [workload_key(r.spec) for r in results if r.status is not Outcome.NOT_COMPARABLE]
    if len(keys) < 2:
        return None
    sides = []
    for rows in (baseline, current):
        values = [run_values([r for r in rows if workload_key(r.spec) == key]) for key in keys]
        if len({len(v) for v in values}) != 1:
            return None
        sides.append(np.exp(np.log(np.asarray(values)).mean(axis=0)))
    base, cur = sides
    if paired and len(base) != len(cur):
        return None
    status, change, p = compare_runs(base, cur, threshold, alpha, paired)
    why = f"all {len(keys)} comparable cells, each run their geometric mean"
    return RowComparison(None, status, why, float(gmean(base)), float(gmean(cur)), change, p, (len(base), len(cur)))


def run_values(rows: Sequence[Row]) -> list[float]:
    """One value per run of a cell, in order (`runs.CellRuns.sweep_values`)."""
    return CellRuns.of(rows).sweep_values()


def compare_files(
    files: Sequence[Path], baseline: str | None, baselines_dir: Path, threshold: float = 0.05, alpha: float = 0.01
) -> Comparison:
    """BASELINE CURRENT, or CURRENT with `baseline` a file or "auto" (the one saved in
    `baselines_dir` for the current run's hardware)."""
    if not 0 < alpha < 1:
        raise CoatbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    if len(files) == 2 and baseline is None:
        base_path, current_path = files
    elif len(files) == 1 and baseline is not None:
        (current_path,) = files
        base_path = None if baseline == "auto" else Path(baseline)
    else:
        raise CoatbenchError("give BASELINE CURRENT, or CURRENT with --baseline FILE|auto")
    current = load(current_path)
    if base_path is None:
        base_path = find_baseline(current, baselines_dir)
        if base_path is None:
            hardware = current[0].env.hardware_key
            return Comparison(
                note=f"No baseline saved for {hardware}: not comparable, nothing to check "
                "(save one with `coatbench baseline save RESULTS`)."
            )
    return judge(load(base_path), current, threshold, alpha)


def baseline_path(hardware_key: str, directory: Path) -> Path:
    return Path(directory) / (re.sub(r"[^A-Za-z0-9.]+", "-", hardware_key).strip("-") + ".jsonl")


def save_baselines(rows: Sequence[Row], directory: Path, source: Path | None = None) -> list[Path]:
    """One baseline file per hardware fingerprint, replacing any earlier one atomically.
    Only measured rows count: an out-of-memory or timed-out cell has nothing to compare with.
    `source`, the file the rows come from, is never one of those replaced."""
    by_hardware: dict[str, list[Row]] = {}
    for row in rows:
        if row.ok:
            by_hardware.setdefault(row.env.hardware_key, []).append(row)
    if not by_hardware:
        raise CoatbenchError("no measured (status ok) rows to keep as a baseline: measure first")
    paths = {hardware: baseline_path(hardware, directory) for hardware in by_hardware}
    for path in paths.values():  # all checked before any is written
        check_not_input(path, [] if source is None else [source], "the baseline")
    for hardware, hw_rows in by_hardware.items():
        write_rows(paths[hardware], hw_rows)
    return list(paths.values())


def find_baseline(current: Sequence[Row], directory: Path) -> Path | None:
    """The saved baseline for the current run's hardware, if there is one."""
    keys = {r.env.hardware_key for r in current}
    if len(keys) != 1:
        raise CoatbenchError(f"the current run mixes {len(keys)} machines: compare one machine's results at a time")
    path = baseline_path(keys.pop(), directory)
    return path if path.is_file() else None


def load(path: Path) -> list[Row]:
    rows = read_rows(path)
    if not rows:
        raise CoatbenchError(f"{path} holds no results: measure first")
    return rows

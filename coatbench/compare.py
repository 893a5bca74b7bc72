"""Comparing two runs cell by cell: a regression must be both large and significant.

The unit of evidence is the run (one process measuring one cell), not the timed block. Blocks
of one run share the machine's state (clock, where the threads landed, the neighbours of a
shared VM) and move together: on this project's 2-core development VM, whole runs of the same
code landed 2.5-31% apart while no run's own CI was wider than +-2%, and a test on pooled blocks
called identical code slower at p down to 3e-17 (results/cpu/run_to_run.md). Each run is
therefore reduced to its median, and
the runs of a cell are compared: the change is the ratio of their geometric means, and a row is
`regressed` only when the current run is slower than the baseline by more than the threshold
AND a one-sided t-test on the log run medians says it is significantly slower than the
baseline scaled down by that threshold (alpha 0.01 by default). Testing against the threshold,
not against zero, is what keeps a real but small slowdown from being called a regression.
Runs from `coatbench ab` are paired (A and B of one round ran side by side, sharing the
machine's state), which cancels most of the run-to-run drift. With one run on a side the
run-to-run noise is unknown: a change past the threshold is then `inconclusive`, never a
verdict. Rows from different hardware or torch versions are `not comparable`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import gmean, ttest_1samp, ttest_ind

from coatbench.errors import CoatbenchError
from coatbench.results import read_rows, spec_key
from coatbench.stats import identical_runs_allowed

BASELINE_DIR = Path("results") / "baselines"


@dataclass(frozen=True)
class RowComparison:
    spec: dict
    status: str  # regressed | improved | unchanged | inconclusive | not comparable
    reason: str = ""
    baseline: float | None = None  # images/s per core: geometric mean of the runs' medians
    current: float | None = None
    change: float | None = None  # current / baseline - 1
    p_value: float | None = None
    runs: tuple[int, int] = (0, 0)  # runs on each side (baseline, current)


def _not_comparable(base: list[dict], cur: list[dict], paired: bool) -> str:
    if not base:
        return "missing in the baseline"
    if not cur:
        return "missing in the current run"
    for key, what in (("hardware_key", "hardware"), ("torch", "torch")):
        sides = [sorted({r["env"][key] for r in rows}) for rows in (base, cur)]
        if sides[0] != sides[1]:
            return f"different {what} ({', '.join(sides[0])} vs {', '.join(sides[1])})"
    for name, rows in (("baseline", base), ("current run", cur)):
        failed = [r["status"] for r in rows if r["status"] != "ok" or not r["samples"]]
        if failed:
            return f"the {name} has no samples ({failed[0]}) in {len(failed)} of {len(rows)} run(s)"
    if paired and len(base) != len(cur):
        return f"paired rounds differ in number ({len(base)} vs {len(cur)})"
    return ""


def compare_runs(base: Sequence[float], cur: Sequence[float], threshold: float, alpha: float,
                 paired: bool = False) -> tuple[str, float, float | None]:
    """(status, change, p-value) from each run's median throughput (bigger is better); with
    `paired`, base[i] and cur[i] ran side by side."""
    log_base, log_cur = np.log(np.asarray(base, float)), np.log(np.asarray(cur, float))
    change = float(np.expm1(log_cur.mean() - log_base.mean()))
    if abs(change) <= threshold:
        return "unchanged", change, None
    if min(len(log_base), len(log_cur)) < 2:
        return "inconclusive", change, None  # one run: no idea how far runs wander on their own
    side = "less" if change < 0 else "greater"
    shift = np.log1p(-threshold if change < 0 else threshold)
    with identical_runs_allowed():
        if paired:
            p = ttest_1samp(log_cur - log_base, shift, alternative=side).pvalue
        else:
            p = ttest_ind(log_cur, log_base + shift, equal_var=False, alternative=side).pvalue
    if not p < alpha:  # also NaN: runs with no spread at all
        return "inconclusive", change, None if np.isnan(p) else float(p)
    return ("regressed" if change < 0 else "improved"), change, float(p)


def compare_rows(baseline: Sequence[dict], current: Sequence[dict], threshold: float = 0.05, alpha: float = 0.01,
                 paired: bool = False) -> list[RowComparison]:
    """Match rows by spec (every row of a spec is one run of it, in file order) and judge each."""
    base_by: dict[str, list[dict]] = {}
    cur_by: dict[str, list[dict]] = {}
    for rows, by in ((baseline, base_by), (current, cur_by)):
        for row in rows:
            by.setdefault(spec_key(row["spec"]), []).append(row)
    base_hw = {r["env"]["hardware_key"] for r in baseline}
    cur_hw = {r["env"]["hardware_key"] for r in current}
    if not base_hw & cur_hw:  # nothing in common: say so, rather than "missing" for every cell
        why = f"different hardware ({', '.join(sorted(base_hw))} vs {', '.join(sorted(cur_hw))})"
        return [RowComparison(rows[0]["spec"], "not comparable", why) for rows in cur_by.values()]
    results = []
    for key in dict.fromkeys([*cur_by, *base_by]):
        base, cur = base_by.get(key, []), cur_by.get(key, [])
        spec, runs = (cur or base)[0]["spec"], (len(base), len(cur))
        reason = _not_comparable(base, cur, paired)
        if reason:
            results.append(RowComparison(spec, "not comparable", reason, runs=runs))
            continue
        base_medians = [float(np.median(r["samples"])) for r in base]
        cur_medians = [float(np.median(r["samples"])) for r in cur]
        status, change, p = compare_runs(base_medians, cur_medians, threshold, alpha, paired)
        why = "one run on a side: its run-to-run noise is unknown" if status == "inconclusive" and min(runs) < 2 else ""
        results.append(RowComparison(spec, status, why, float(gmean(base_medians)), float(gmean(cur_medians)),
                                     change, p, runs))
    return results


def parse_fraction(text: str, option: str) -> float:
    """"5%" or "0.05" -> 0.05."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1
    if not 0 < value < 1:
        raise CoatbenchError(f"invalid {option} {text!r}: give a fraction or a percentage, e.g. 5% or 0.05")
    return value


def baseline_path(hardware_key: str, directory: Path = BASELINE_DIR) -> Path:
    return Path(directory) / (re.sub(r"[^A-Za-z0-9.]+", "-", hardware_key).strip("-") + ".jsonl")


def save_baselines(rows: Sequence[dict], directory: Path = BASELINE_DIR) -> list[Path]:
    """One baseline file per hardware fingerprint, replacing any earlier one atomically.
    Only measured rows count: an out-of-memory or timed-out cell has nothing to compare with."""
    from coatbench.results import encode_row, write_atomically

    by_hardware: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == "ok":
            by_hardware.setdefault(row["env"]["hardware_key"], []).append(row)
    if not by_hardware:
        raise CoatbenchError("no measured (status ok) rows to keep as a baseline: measure first")
    written = []
    for hardware, hw_rows in by_hardware.items():
        path = baseline_path(hardware, directory)
        write_atomically(path, b"".join(encode_row(row) for row in hw_rows))
        written.append(path)
    return written


def find_baseline(current: Sequence[dict], directory: Path = BASELINE_DIR) -> Path | None:
    """The saved baseline for the current run's hardware, if there is one."""
    keys = {r["env"]["hardware_key"] for r in current}
    if len(keys) != 1:
        raise CoatbenchError(f"the current run mixes {len(keys)} machines: compare one machine's results at a time")
    path = baseline_path(keys.pop(), directory)
    return path if path.is_file() else None


def load(path: Path) -> list[dict]:
    rows = read_rows(path)
    if not rows:
        raise CoatbenchError(f"{path} holds no results: measure first")
    for number, row in enumerate(rows, 1):
        if "hardware_key" not in row.get("env", {}) or not isinstance(row.get("samples"), list):
            raise CoatbenchError(f"{path}: row {number} has no env.hardware_key or samples: not a coatbench speed row")
    return rows

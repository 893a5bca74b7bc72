"""Comparing two runs cell by cell: a regression must be both large and significant.

A row is `regressed` only when the current run is slower than the baseline by more than
the threshold AND a one-sided Mann-Whitney U test on the per-block samples says it is
significantly slower than the baseline scaled down by that threshold (alpha 0.01 by
default). Testing against the threshold, not against zero, is what keeps a real but
small slowdown (3% under a 5% threshold) from ever being called a regression, and noise
on a shared runner from crying wolf. Rows from different hardware or torch versions are
`not comparable`, never a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from coatbench.errors import CoatbenchError
from coatbench.results import read_rows, spec_key

BASELINE_DIR = Path("results") / "baselines"


@dataclass(frozen=True)
class RowComparison:
    spec: dict
    status: str  # regressed | improved | unchanged | inconclusive | not comparable
    reason: str = ""
    baseline: float | None = None  # median images/s per core
    current: float | None = None
    change: float | None = None  # current / baseline - 1
    p_value: float | None = None


def _not_comparable(base: dict | None, cur: dict | None) -> str:
    if base is None:
        return "missing in the baseline"
    if cur is None:
        return "missing in the current run"
    if base["env"]["hardware_key"] != cur["env"]["hardware_key"]:
        return f"different hardware ({base['env']['hardware_key']} vs {cur['env']['hardware_key']})"
    if base["env"]["torch"] != cur["env"]["torch"]:
        return f"different torch ({base['env']['torch']} vs {cur['env']['torch']})"
    for name, row in (("baseline", base), ("current run", cur)):
        if row["status"] != "ok" or len(row["samples"]) < 2:
            return f"the {name} has no samples ({row['status']})"
    return ""


def compare_samples(base: Sequence[float], cur: Sequence[float], threshold: float, alpha: float) -> tuple[str, float, float]:
    """(status, change, p-value) for throughput samples (bigger is better)."""
    base, cur = np.asarray(base, float), np.asarray(cur, float)
    change = float(np.median(cur) / np.median(base) - 1)
    if abs(change) <= threshold:
        return "unchanged", change, 1.0
    if change < 0:
        p = mannwhitneyu(cur, base * (1 - threshold), alternative="less").pvalue
        return ("regressed" if p < alpha else "inconclusive"), change, float(p)
    p = mannwhitneyu(cur, base * (1 + threshold), alternative="greater").pvalue
    return ("improved" if p < alpha else "inconclusive"), change, float(p)


def compare_rows(baseline: Sequence[dict], current: Sequence[dict], threshold: float = 0.05, alpha: float = 0.01) -> list[RowComparison]:
    """Match rows by spec (the last row of a spec wins) and judge each."""
    base_by = {spec_key(r["spec"]): r for r in baseline}
    cur_by = {spec_key(r["spec"]): r for r in current}
    base_hw = {r["env"]["hardware_key"] for r in baseline}
    cur_hw = {r["env"]["hardware_key"] for r in current}
    if not base_hw & cur_hw:  # nothing in common: say so, rather than "missing" for every cell
        why = f"different hardware ({', '.join(sorted(base_hw))} vs {', '.join(sorted(cur_hw))})"
        return [RowComparison(r["spec"], "not comparable", why) for r in current]
    results = []
    for key in dict.fromkeys([*cur_by, *base_by]):
        base, cur = base_by.get(key), cur_by.get(key)
        spec = (cur or base)["spec"]
        reason = _not_comparable(base, cur)
        if reason:
            results.append(RowComparison(spec, "not comparable", reason))
            continue
        status, change, p = compare_samples(base["samples"], cur["samples"], threshold, alpha)
        results.append(
            RowComparison(spec, status, "", float(np.median(base["samples"])), float(np.median(cur["samples"])), change, p)
        )
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

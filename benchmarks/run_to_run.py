"""How far do whole runs of the same code wander, against the blocks inside one run?

Measures SUITE N times, each in a fresh process (`coatbench run`), then prints per cell each
run's median, the spread of the run medians (fastest / slowest - 1), the widest 95% CI that a
single run reported, and what a test pooling the per-block samples of the slowest and the
fastest run (one-sided Mann-Whitney U) would conclude about identical code: the mistake that
made coatbench's guard judge runs, not blocks (coatbench/compare.py).

    python benchmarks/run_to_run.py [--suite ci-cpu] [--runs 4] [--device cpu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from coatbench.measure.machine import cpu_model, git_sha
from coatbench.results import read_rows, run_key
from coatbench.views.console import cell_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="ci-cpu")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.runs < 2:
        sys.exit("run_to_run: --runs must be at least 2")
    with tempfile.TemporaryDirectory(prefix="coatbench-runs-") as tmp:
        out = Path(tmp) / "runs.jsonl"
        for _ in range(args.runs):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "coatbench",
                    "run",
                    args.suite,
                    "--device",
                    args.device,
                    "--quiet",
                    "--out",
                    str(out),
                ],
                check=True,
                capture_output=True,
            )
        rows = read_rows(out)
    by_cell: dict[tuple, list] = {}
    for row in rows:
        by_cell.setdefault(run_key(row.env, row.spec), []).append(row)
    print(
        f"# Run-to-run spread: `python benchmarks/run_to_run.py --suite {args.suite} --runs {args.runs} "
        f"--device {args.device}`\n\n{cpu_model()}, coatbench {git_sha() or 'unknown commit'}; "
        "every run a fresh process, same code.\n"
    )
    print(
        "| cell | run medians (images/s) | spread of runs | widest CI of one run | "
        "pooled blocks, slowest vs fastest run: p |"
    )
    print("|---|---|---|---|---|")
    for cell_runs in by_cell.values():
        medians = [float(np.median(r.samples)) for r in cell_runs]
        slow, fast = cell_runs[int(np.argmin(medians))], cell_runs[int(np.argmax(medians))]
        p = mannwhitneyu(slow.samples, fast.samples, alternative="less").pvalue
        widest = max(r.throughput.ci95_rel or float("inf") for r in cell_runs)
        print(
            f"| {cell_label(cell_runs[0].spec)} | {', '.join(f'{m:.1f}' for m in medians)} | "
            f"{max(medians) / min(medians) - 1:+.1%} | +-{widest:.1%} | {p:.1g} |"
        )


if __name__ == "__main__":
    main()

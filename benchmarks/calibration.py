"""Are the verdicts calibrated on this machine? Ten sweeps of one setting, each with its own seed:

- an A/A row (the baseline measured again, `replicate = true`) with a claim on it that cannot hold
  ("the A/A row is 5% faster"): every verdict on it must be `no measurable difference` or
  `unresolved`;
- a variant with a large true effect (CoAtNet-0 with `blocks = "C-C-C-C"`, convolutions where
  the baseline has attention) with a claim well inside that effect: every verdict on it must be
  `consistent` or `stronger than claimed`.

Each sweep is `coatbench run` with `--rounds auto` and a time budget, in a process of its own, so
the rounds go on until the claims are resolved or the budget ends, as a user's would. Prints the
words counted per claim, each sweep's line, and the time; exits 1 if a verdict falls outside its
expected words. It measures wall-clock time, so it is a benchmark, not a test.

    python benchmarks/calibration.py [--sweeps 10] [--budget 90s] [--out results/cpu/calibration.md]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coatbench.accuracy import Accuracies
from coatbench.report import Word, build_reports
from coatbench.results import read_rows
from coatbench.suite import load_suite

SUITE = """description = "Calibration: an A/A row and a large effect, CoAtNet-0 inference at 224"
modes = ["infer"]
batch_sizes = [1]

[[settings]]
name = "calibration"
model = "coatnet-0"
image_size = 224
rows = [
  { label = "CoAtNet-0" },
  { label = "CoAtNet-0 again", replicate = true },
  { label = "C-C-C-C", blocks = "C-C-C-C" },
]

[[claims]]
text = "the A/A row is at least 5% faster (it cannot be)"
row = "CoAtNet-0 again"
faster = "variant"
min = 0.05

[[claims]]
text = "C-C-C-C is at least 10% faster"
row = "C-C-C-C"
faster = "variant"
min = 0.10
"""

EXPECTED = {
    "the A/A row is at least 5% faster (it cannot be)": {Word.NO_DIFFERENCE, Word.UNRESOLVED},
    "C-C-C-C is at least 10% faster": {Word.CONSISTENT, Word.STRONGER},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--budget", default="90s", help="each sweep's --budget")
    parser.add_argument("--out", default=None, help="also write the table as Markdown here (and the rows beside it)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="coatbench-calibration-"))
    suite_file = work / "calibration.toml"
    suite_file.write_text(SUITE)
    suite = load_suite(str(suite_file))
    rows_file = Path(args.out).with_suffix(".jsonl") if args.out else work / "calibration.jsonl"
    if rows_file.exists():  # the seeds repeat from 1: old rows of a seed would join its sweep
        sys.exit(f"error: {rows_file} exists: remove it (git keeps the committed one) or give another --out")
    counts = {claim: collections.Counter() for claim in EXPECTED}
    lines, wrong, started = [], 0, time.monotonic()
    for seed in range(1, args.sweeps + 1):
        began = time.monotonic()
        command = [sys.executable, "-m", "coatbench", "run", str(suite_file), "--device", "cpu", "--seed", str(seed),
                   "--budget", args.budget, "--quiet", "--out", str(rows_file)]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True)
        rows = [r for r in read_rows(rows_file) if r.trial and r.trial.seed == seed]
        (report,) = build_reports(suite, rows, Accuracies((), ()))
        rounds = len({r.trial.round for r in rows})
        found = []
        for verdict in report.verdicts:
            for cell in verdict.per_batch:
                counts[verdict.claim.text][cell.word] += 1
                bad = cell.word not in EXPECTED[verdict.claim.text]
                wrong += bad
                # an unresolved verdict is no wrong answer, only none: the budget ended first
                why = " (not resolved in the budget)" if cell.word is Word.UNRESOLVED else " (WRONG)"
                change = f"{cell.change.change * 100:+.1f}% ±{cell.change.uncertainty * 100:.1f}"
                found.append(f"{verdict.variant}: {change} {cell.word.value}{why if bad else ''}")
        lines.append(f"| {seed} | {rounds} | {time.monotonic() - began:.0f} s | " + " | ".join(found) + " |")
        print(lines[-1], flush=True)
    minutes = (time.monotonic() - started) / 60
    table = [
        f"# Verdict calibration: `python benchmarks/calibration.py --sweeps {args.sweeps} --budget {args.budget}`",
        "",
        f"coatbench {commit or 'at an unknown commit'}; {args.sweeps} sweeps of `coatbench run` (--rounds auto, "
        f"--budget {args.budget}), one seed each, on this machine's CPU, {minutes:.1f} min in all; the rows are in "
        f"`{rows_file.name}` beside this file.",
        "",
        "| claim | expected | " + " | ".join(w.value for w in Word if any(c[w] for c in counts.values())) + " |",
        "|---|---|" + "---|" * sum(1 for w in Word if any(c[w] for c in counts.values())),
    ]
    shown = [w for w in Word if any(c[w] for c in counts.values())]
    for claim, counted in counts.items():
        expected = " or ".join(sorted(w.value for w in EXPECTED[claim]))
        table.append(f"| {claim} | {expected} | " + " | ".join(str(counted[w]) for w in shown) + " |")
    table += ["", f"**{wrong} verdict(s) outside the expected words.**", "",
              "| seed | rounds | time | A/A row | C-C-C-C |", "|---|---|---|---|---|", *lines]  # fmt: skip
    print("\n".join(table))
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

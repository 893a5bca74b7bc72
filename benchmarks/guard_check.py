"""Does the throughput guard hold on real measurements, on this machine?

Copies coatbench and `.ci/guard` (CI's own guard command) into a scratch git repository with
two commits: A, and B whose every step (training and inference) takes longer by a share of
itself, so that B's throughput is lower by `--slowdown` (default 10%) whatever the machine's
speed: each step sleeps for slowdown / (1 - slowdown) of the time the step took. Then runs
`.ci/guard` twice: A against A (an A/A: must not fail) and A against B (must fail). Prints both
comparisons, the rounds and the time each took, and a verdict for each; exits 1 if either verdict
is wrong. It measures wall-clock time, so it is a benchmark, not a test: run it on a quiet
machine.

    python benchmarks/guard_check.py [--slowdown 0.10] [--rounds auto]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = "    return step\n"  # the end of harness.build_step
INJECTED = """
    def slowed() -> None:  # injected: every step longer by a share of itself
        started = time.perf_counter()
        step()
        time.sleep({longer!r} * (time.perf_counter() - started))

    return slowed
"""


def scratch_repo(where: Path, slowdown: float) -> Path:
    """A git repository holding coatbench and .ci/guard at A (HEAD~1) and A + the slowdown at B (HEAD)."""
    repo = where / "repo"
    shutil.copytree(ROOT / "coatbench", repo / "coatbench")
    (repo / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci" / "guard", repo / ".ci" / "guard")

    def git(*args: str) -> None:
        identity = ["-c", "user.email=guard@check", "-c", "user.name=guard"]
        subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "A")
    harness = repo / "coatbench" / "measure" / "harness.py"
    source = harness.read_text()
    if source.count(ANCHOR) != 1:
        sys.exit(f"guard_check: {ANCHOR.strip()!r} is not once in coatbench/measure/harness.py; update ANCHOR/INJECTED")
    harness.write_text(source.replace(ANCHOR, INJECTED.format(longer=slowdown / (1 - slowdown))))
    git("commit", "-qam", f"B: throughput -{slowdown:.0%}")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slowdown", type=float, default=0.10, help="B's throughput lower by this fraction")
    parser.add_argument("--rounds", default="auto", help="GUARD_ROUNDS: auto (until resolved) or a number")
    args = parser.parse_args()
    import torch

    from coatbench.measure.machine import cpu_model, git_sha

    print(
        f"# Throughput guard check: `python benchmarks/guard_check.py --slowdown {args.slowdown:g} --rounds "
        f"{args.rounds}`\n\n"
        f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, coatbench "
        f"{git_sha() or 'unknown commit'}; `.ci/guard` (coatbench ab, ci-cpu, paired rounds) with "
        f"GUARD_ROUNDS={args.rounds}.\n"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="coatbench-guard-") as tmp:
        repo = scratch_repo(Path(tmp), args.slowdown)
        slower = f"A/B (throughput -{args.slowdown:.0%}: every step {args.slowdown / (1 - args.slowdown):.1%} longer)"
        for title, ref_b, want in (("A/A (no change)", "HEAD~1", 0), (slower, "HEAD", 1)):
            started = time.perf_counter()
            env = {**os.environ, "GUARD_ROUNDS": str(args.rounds)}
            out = subprocess.run([".ci/guard", "HEAD~1", ref_b], cwd=repo, capture_output=True, text=True, env=env)
            minutes = (time.perf_counter() - started) / 60
            if out.returncode not in (0, 1):
                sys.exit(f"guard_check: .ci/guard failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
            verdict = "as expected" if out.returncode == want else "WRONG"
            ok &= out.returncode == want
            rounds = sum(1 for line in out.stderr.splitlines() if line.startswith("round ") and line.endswith(": B"))
            heading = f"## {title}: exit {out.returncode}, {verdict} ({rounds} rounds, {minutes:.1f} min)"
            print(f"{heading}\n\n{out.stdout}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

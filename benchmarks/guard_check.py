"""Does the throughput guard hold on real measurements, on this machine?

Copies coatbench and `.ci/guard` (CI's own guard command) into a scratch git repository with
two commits: A, and B whose every step (training and inference) takes 25% longer, so that B's
throughput is 20% lower whatever the machine's speed: each step sleeps for a quarter of the
time the step took. Then runs `.ci/guard` twice: A against A (an A/A: must not fail) and A
against B (must fail). Prints both comparisons, the rounds and the time each took, and a
verdict for each; exits 1 if either verdict is wrong. It measures wall-clock time, so it is a
benchmark, not a test: run it on a quiet machine.

    python benchmarks/guard_check.py [--rounds 5]
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
    def slowed() -> None:  # injected: every step 25% longer, throughput -20%
        started = time.perf_counter()
        step()
        time.sleep(0.25 * (time.perf_counter() - started))

    return slowed
"""


def scratch_repo(where: Path) -> Path:
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
    harness = repo / "coatbench" / "harness.py"
    source = harness.read_text()
    if source.count(ANCHOR) != 1:
        sys.exit(f"guard_check: {ANCHOR.strip()!r} is not once in coatbench/harness.py; update ANCHOR/INJECTED")
    harness.write_text(source.replace(ANCHOR, INJECTED))
    git("commit", "-qam", "B: every step 25% longer")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import torch

    from coatbench.hardware import cpu_model, git_sha

    print(
        f"# Throughput guard check: `python benchmarks/guard_check.py --rounds {args.rounds}`\n\n"
        f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, coatbench "
        f"{git_sha() or 'unknown commit'}; `.ci/guard` (coatbench ab, ci-cpu, paired rounds) with "
        f"GUARD_ROUNDS={args.rounds}.\n"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="coatbench-guard-") as tmp:
        repo = scratch_repo(Path(tmp))
        for title, ref_b, want in (("A/A (no change)", "HEAD~1", 0), ("A/B (every step 25% longer)", "HEAD", 1)):
            started = time.perf_counter()
            env = {**os.environ, "GUARD_ROUNDS": str(args.rounds)}
            out = subprocess.run([".ci/guard", "HEAD~1", ref_b], cwd=repo, capture_output=True, text=True, env=env)
            minutes = (time.perf_counter() - started) / 60
            if out.returncode not in (0, 1):
                sys.exit(f"guard_check: .ci/guard failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
            verdict = "as expected" if out.returncode == want else "WRONG"
            ok &= out.returncode == want
            print(f"## {title}: exit {out.returncode}, {verdict} ({minutes:.1f} min)\n\n{out.stdout}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

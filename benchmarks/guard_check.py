"""Does the throughput guard hold on real measurements, on this machine?

Copies coatbench into a scratch git repository with two commits: A, and B with a slowdown
injected into every MBConv block: a 4 ms sleep, a cost of known size whatever the machine's
speed (-49% to -55% for ci-cpu's inference cells, -19% to -28% for its training cells on the
2-core VM, results/cpu/guard_check.md; an injected computation cost only 1-9% there, under
the noise of five rounds).
Then runs `coatbench ab` twice, interleaved on this machine: A against A (must not regress)
and A against B (must be caught). Prints both comparisons and a verdict for each; exits 1 if
either verdict is wrong. It measures wall-clock time, so it is a benchmark, not a test: run it
on a quiet machine.

    python benchmarks/guard_check.py [--suite ci-cpu] [--rounds 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INJECTED = "        time.sleep(0.004)  # injected slowdown\n"
ANCHOR = "        return scaled_pointwise_conv(y, self.se(y), self.project, self.shortcut(x))"


def scratch_repo(where: Path) -> Path:
    """A git repository holding coatbench at A (HEAD~1) and A + the slowdown at B (HEAD)."""
    repo = where / "repo"
    shutil.copytree(Path(__file__).resolve().parents[1] / "coatbench", repo / "coatbench")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.email=guard@check", "-c", "user.name=guard", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "A")
    model = repo / "coatbench" / "model.py"
    source = model.read_text()
    if ANCHOR not in source:
        sys.exit(f"guard_check: {ANCHOR.strip()!r} is no longer in coatbench/model.py; update INJECTED/ANCHOR")
    model.write_text(
        source.replace("import torch\n", "import time\n\nimport torch\n", 1).replace(ANCHOR, INJECTED + ANCHOR)
    )
    git("commit", "-qam", "B: injected slowdown")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="ci-cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    from coatbench.hardware import cpu_model, git_sha

    print(
        f"# Throughput guard check: `python benchmarks/guard_check.py --suite {args.suite} --rounds {args.rounds} "
        f"--device {args.device}`\n\n{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"coatbench {git_sha() or 'unknown commit'}; interleaved rounds, paired comparison.\n"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="coatbench-guard-") as tmp:
        repo = scratch_repo(Path(tmp))
        for title, ref_a, want in (("A/A (no change)", "HEAD~1", 0), ("A/B (injected slowdown)", "HEAD~1", 1)):
            ref_b = ref_a if want == 0 else "HEAD"
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "coatbench",
                    "ab",
                    ref_a,
                    ref_b,
                    args.suite,
                    "--rounds",
                    str(args.rounds),
                    "--device",
                    args.device,
                    "--format",
                    "markdown",
                ],
                cwd=repo,
                capture_output=True,
                text=True,
            )
            if out.returncode not in (0, 1):
                sys.exit(f"guard_check: coatbench ab failed: {out.stderr.strip()}")
            verdict = "as expected" if out.returncode == want else "WRONG"
            ok &= out.returncode == want
            print(f"## {title}: exit {out.returncode}, {verdict}\n\n{out.stdout}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

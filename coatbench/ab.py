"""A/B on one machine: two git revisions measured interleaved, A B B A ..., then compared.

Each revision is checked out in its own git worktree and run from there with this
interpreter and its installed dependencies, so only coatbench's code differs between the
two. Interleaving spreads the machine's drift (other jobs, thermals) over both sides,
which is what makes a comparison on a shared runner trustworthy; the order alternates
(A B, B A, ...) so that a steady drift does not favour the side that runs first. Each round
is one run of each side; the comparison pairs the runs of a round (`compare_rows(paired=True)`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from coatbench.compare import Comparison, judge
from coatbench.errors import CoatbenchError
from coatbench.results import Row, read_rows


def _git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        why = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode
        raise CoatbenchError(f"git {' '.join(args)} failed: {why}")
    return out.stdout.strip()


def run_ab(
    ref_a: str,
    ref_b: str,
    suite: str,
    rounds: int,
    extra_args: list[str],
    repo: Path = Path("."),
    on_round: Callable[[int, str], None] = lambda round_index, ref: None,
) -> tuple[list[Row], list[Row]]:
    """Measure `suite` with revisions A and B interleaved; the rows of each, one per cell and round,
    in round order."""
    if rounds < 1:
        raise CoatbenchError(f"--rounds must be at least 1, got {rounds}")
    top = Path(_git("rev-parse", "--show-toplevel", cwd=repo))
    shas = [_git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=top) for ref in (ref_a, ref_b)]
    suite_arg = str(Path(suite).resolve()) if suite.endswith(".toml") else suite
    with tempfile.TemporaryDirectory(prefix="coatbench-ab-") as tmp:
        trees = []
        for name, sha in zip("ab", shas):
            tree = Path(tmp) / name
            _git("worktree", "add", "--detach", str(tree), sha, cwd=top)
            trees.append(tree)
        try:
            for round_index in range(rounds):
                # A B, then B A, ...: a drift during the run weighs on both sides alike
                order = list(zip("ab", trees))[:: 1 if round_index % 2 == 0 else -1]
                for name, tree in order:
                    on_round(round_index, name)
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    command = [
                        sys.executable,
                        "-m",
                        "coatbench",
                        "run",
                        suite_arg,
                        "--quiet",
                        "--out",
                        str(Path(tmp) / f"{name}.jsonl"),
                        *extra_args,
                    ]
                    out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
                    if out.returncode != 0:
                        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
                        raise CoatbenchError(f"revision {name.upper()} failed to run {suite}: {tail}")
            return tuple(read_rows(Path(tmp) / f"{name}.jsonl") for name in "ab")
        finally:
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=top, capture_output=True)


def compare_revisions(
    ref_a: str,
    ref_b: str,
    suite: str,
    rounds: int,
    extra_args: list[str],
    threshold: float,
    alpha: float,
    on_round: Callable[[int, str], None] = lambda round_index, ref: None,
) -> Comparison:
    """`run_ab`, then each cell judged on its rounds, paired (A and B of a round ran side by side)."""
    rows_a, rows_b = run_ab(ref_a, ref_b, suite, rounds, extra_args, on_round=on_round)
    return judge(rows_a, rows_b, threshold, alpha, paired=True)

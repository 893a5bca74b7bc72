"""A/B on one machine: two git revisions measured interleaved, A B B A ..., then compared.

Each revision is checked out in its own git worktree and run from there with this
interpreter and its installed dependencies, so only coatbench's code differs between the
two. Interleaving spreads the machine's drift (other jobs, thermals) over both sides,
which is what makes a comparison on a shared runner trustworthy; the order alternates
(A B, B A, ...) so that a steady drift does not favour the side that runs first. Each round
is one run of each side (its suite measured in one round of its own); the comparison pairs the
runs of a round (`compare_rows(paired=True)`). With `--rounds auto` rounds are added until every
cell (and all cells together) is resolved as regressed, improved or unchanged at the threshold,
or until another round would not fit in the time budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from coatbench.compare import Comparison, Outcome, judge
from coatbench.errors import CoatbenchError, Stopped
from coatbench.results import Row, read_rows
from coatbench.settings import Rounds


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
    rounds: Rounds,
    budget_s: float,
    extra_args: list[str],
    repo: Path = Path("."),
    on_round: Callable[[int, str], None] = lambda round_index, ref: None,
    enough: Callable[[list[Row], list[Row]], bool] = lambda rows_a, rows_b: False,
) -> tuple[list[Row], list[Row]]:
    """Measure `suite` with revisions A and B interleaved; the rows of each, one per cell and round,
    in round order. With `rounds.auto`, after the minimum, rounds go on until `enough` says so or
    another round (as long as the longest so far) would end past `budget_s`."""
    if rounds.count < 1:
        raise CoatbenchError(f"--rounds must be at least 1, got {rounds.count}")
    top = Path(_git("rev-parse", "--show-toplevel", cwd=repo))
    shas = [_git("rev-parse", "--verify", f"{ref}^{{commit}}", cwd=top) for ref in (ref_a, ref_b)]
    suite_arg = str(Path(suite).resolve()) if suite.endswith(".toml") else suite
    with tempfile.TemporaryDirectory(prefix="coatbench-ab-") as tmp:
        trees = []
        for name, sha in zip("ab", shas):
            tree = Path(tmp) / name
            _git("worktree", "add", "--detach", str(tree), sha, cwd=top)
            trees.append(tree)
        files = [Path(tmp) / f"{name}.jsonl" for name in "ab"]
        try:
            started, longest, round_index = time.monotonic(), 0.0, 0
            while True:
                began = time.monotonic()
                # A B, then B A, ...: a drift during the run weighs on both sides alike
                order = list(zip("ab", trees, files))[:: 1 if round_index % 2 == 0 else -1]
                for name, tree, out in order:
                    on_round(round_index, name)
                    _run_side(name, tree, suite, suite_arg, out, extra_args)
                round_index += 1
                longest = max(longest, time.monotonic() - began)
                if round_index < rounds.count:
                    continue
                if not rounds.auto or time.monotonic() - started + longest > budget_s:
                    break
                if enough(*(read_rows(f) for f in files)):
                    break
            return tuple(read_rows(f) for f in files)
        finally:
            for tree in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=top, capture_output=True)
            subprocess.run(["git", "worktree", "prune"], cwd=top, capture_output=True)  # one removal failed: its entry


def _run_side(name: str, tree: Path, suite: str, suite_arg: str, out: Path, extra_args: list[str]) -> None:
    """One run of a revision: its suite, one round, appended to `out`, with only its own code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "coatbench", "run", suite_arg, "--quiet", "--rounds", "1", "--out", str(out)]
    # A session of its own: a terminal's Ctrl-C reaches this process only, which passes it on
    # once (below), so that the side's own cleanup (its workers, its rows) is not cut short.
    side = subprocess.Popen([*command, *extra_args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        _, stderr = side.communicate()
    except BaseException as error:  # Ctrl-C, SIGTERM, SIGHUP: the side stops as after its own Ctrl-C
        _stop(side)
        if isinstance(error, KeyboardInterrupt):
            raise Stopped(f"interrupted while revision {name.upper()} measured: nothing was compared") from None
        raise
    if side.returncode != 0:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CoatbenchError(f"revision {name.upper()} failed to run {suite}: {tail}")


def _stop(side: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGINT to the side, which ends its own workers; whatever of its session is left after
    `grace_s`, SIGKILL."""
    side.send_signal(signal.SIGINT)
    try:
        side.communicate(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(side.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    side.wait()


def compare_revisions(
    ref_a: str,
    ref_b: str,
    suite: str,
    rounds: Rounds,
    budget_s: float,
    extra_args: list[str],
    threshold: float,
    alpha: float,
    on_round: Callable[[int, str], None] = lambda round_index, ref: None,
) -> Comparison:
    """`run_ab`, then each cell judged on its rounds, paired (A and B of a round ran side by side);
    with `rounds.auto`, rounds until every judgement is resolved (`compare.Outcome.resolved`)."""

    def resolved(rows_a: list[Row], rows_b: list[Row]) -> bool:
        found = judge(rows_a, rows_b, threshold, alpha, paired=True)
        judged = [r for r in found.results if r.status is not Outcome.NOT_COMPARABLE]
        judged += [found.overall] if found.overall else []
        return all(r.status.resolved for r in judged)

    rows_a, rows_b = run_ab(ref_a, ref_b, suite, rounds, budget_s, extra_args, on_round=on_round, enough=resolved)
    return judge(rows_a, rows_b, threshold, alpha, paired=True)

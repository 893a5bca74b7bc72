"""The machine's fingerprint as rows record it."""

import subprocess
from pathlib import Path

import pytest


def test_rows_name_the_commit_of_the_checkout_they_run_from():
    """Run from a git checkout (as the tests are), every row's env.git_sha is its HEAD; an
    installed copy says None rather than some other repository's commit."""
    from coatbench.measure.machine import git_sha

    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert git_sha() == head.stdout.strip()

import os
import subprocess
import sys

import pytest


@pytest.fixture
def cli():
    """Run the real `coatbench` entry point in a subprocess; returns the CompletedProcess."""

    def run(*args: str, cwd=None, timeout: float = 600, env_columns: int | None = None) -> subprocess.CompletedProcess:
        env = None if env_columns is None else {**os.environ, "COLUMNS": str(env_columns)}
        return subprocess.run(
            [sys.executable, "-m", "coatbench", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            env=env,
        )

    return run


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]

import os
import subprocess
import sys
from pathlib import Path

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


FAULTS = Path(__file__).resolve().parent / "faults"


def fault_env(fault: str = "", **extra: str) -> dict[str, str]:
    """This process's environment for a subprocess, with `fault` injected into its ranks
    (`tests/faults/sitecustomize.py` says how) or, when empty, none."""
    env = {k: v for k, v in os.environ.items() if k != "COATBENCH_FAULT"} | extra
    if fault:
        env["COATBENCH_FAULT"] = fault
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTS), env.get("PYTHONPATH", "")]))
    return env


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]

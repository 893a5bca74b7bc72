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


TESTS = Path(__file__).resolve().parent


def coatbench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real `coatbench` in a subprocess, with this folder on PYTHONPATH: a factory defined in
    a test module (`test_external:tiny_net`) imports there and in its workers."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "coatbench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": path},
    )


def one_claim_verdict(tmp_path: Path, suite_text: str, *quick: str):
    """`suite_text` (a suite of one claim on one setting, one batch) run for 2 rounds on the CPU
    with `quick`'s timing options, and the report's one verdict, checked to have been measured
    on both sides: (verdict, rows file, suite file)."""
    from coatbench.accuracy import load
    from coatbench.report import Word, build_reports
    from coatbench.results import read_rows
    from coatbench.suite import load_suite

    suite_file, out = tmp_path / "suite.toml", tmp_path / "rows.jsonl"
    suite_file.write_text(suite_text)
    result = coatbench("run", str(suite_file), "--device", "cpu", *quick, "--rounds", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (report,) = build_reports(load_suite(str(suite_file)), read_rows(out), load([]))
    (verdict,) = report.verdicts
    (cell,) = verdict.per_batch
    assert cell.word is not Word.UNTESTED and cell.change is not None and cell.change.n == 2, cell
    return verdict, out, suite_file

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from coatbench.errors import CoatbenchError
from coatbench.results import JsonLines, SkippedLineWarning, read_rows


def record(i: int) -> dict:
    return {"spec": {"batch_per_core": i}, "status": "ok", "samples": [1.0, 2.0]}


def numbers(path) -> list[int]:
    return [value["spec"]["batch_per_core"] for _, value in JsonLines(path).read()]


def test_append_creates_folder_and_keeps_order(tmp_path):
    path = tmp_path / "deep" / "runs.jsonl"
    for i in range(3):
        JsonLines(path).append([record(i)])
    assert numbers(path) == [0, 1, 2]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "runs.jsonl"
    JsonLines(path).append([record(0)])
    with path.open("a") as f:
        f.write('{"spec": {"batch_per_core": 1}, "sta')  # a crash mid-write
    with pytest.warns(SkippedLineWarning, match=r"runs.jsonl: skipped 1 broken line\(s\) \(2\)"):
        values = JsonLines(path).read()
    assert len(values) == 1
    # appending after a broken line keeps the new row whole
    JsonLines(path).append([record(2)])
    with pytest.warns(SkippedLineWarning):
        assert numbers(path) == [0, 2]


def test_foreign_json_is_refused(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"hello": 1}) + "\n")
    with pytest.raises(CoatbenchError, match="not a coatbench result row"):
        read_rows(path)


def test_missing_file(tmp_path):
    with pytest.raises(CoatbenchError, match="does not exist"):
        read_rows(tmp_path / "nope.jsonl")


def test_killed_writer_leaves_a_readable_file(tmp_path):
    """A process appending in a loop, killed with SIGKILL at a random moment: every line
    that is there parses."""
    path = tmp_path / "runs.jsonl"
    code = (
        "import sys; from coatbench.results import JsonLines\n"
        "for i in range(100000):\n"
        "    JsonLines(sys.argv[1]).append([{'spec': {'i': i}, 'status': 'ok', 'pad': 'x' * 20000}])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    deadline = time.time() + 30
    while not (path.exists() and path.stat().st_size > 200_000) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    values = JsonLines(path).read()  # no warning, no error: the rename is atomic
    assert values and [value["spec"]["i"] for _, value in values] == list(range(len(values)))

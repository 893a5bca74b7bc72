"""Every command against bad input and faults: one line, the right exit code, no traceback, and
no row lost. A benchmark of the CLI as a hostile user meets it (the tests pin each case too).

Runs each case as a real `coatbench` process in a scratch folder and prints a table: the
command, the exit code against the one expected, whether stderr was one `error:` line, and for
the faults, how many rows survived against how many were measured.

    python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = str(ROOT / "results" / "cpu" / "table8.jsonl")
TINY = ["coatnet-0", "--image-size", "32", "--layout", "1,1,1,1,1", "--num-classes", "10", "--device", "cpu"]
QUICK = ["--min-time", "0.05", "--max-time", "0.2", "--quiet", "--rounds", "1"]


def coatbench(*args: str, cwd: Path, stdout: str = "pipe", env: dict[str, str] | None = None):
    """A real `coatbench` process, its stdout `stdout`: "pipe" (read), "closed" (no descriptor 1),
    "full" (/dev/full), or "gone" (a pipe whose reader has closed it, as `| head` does)."""
    command = [sys.executable, "-m", "coatbench", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if stdout == "closed":
        command = ["sh", "-c", 'exec "$@" >&-', "sh", *command]
    if stdout == "pipe":
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if stdout == "gone":
        reader, writer = os.pipe()
        os.close(reader)
        out = writer
    else:
        out = open("/dev/full", "w") if stdout == "full" else subprocess.DEVNULL
    try:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, timeout=600)
    finally:
        if isinstance(out, int) and out >= 0:
            os.close(out)
        elif hasattr(out, "close"):
            out.close()
    return subprocess.CompletedProcess(done.args, done.returncode, "", done.stderr)


REDIRECTS = {"pipe": "", "closed": " >&-", "full": " >/dev/full", "gone": " | (a reader that closed)"}


class Case(NamedTuple):
    """A bad input: the command, the exit code it must give, and how it is run (its stdout and
    environment; see `coatbench`)."""

    what: str
    args: list[str]
    expected: int
    stdout: str = "pipe"
    env: dict[str, str] | None = None
    says: str = ""  # for exit 0: the one line of stderr must say this (a note)

    def run(self, cwd: Path) -> subprocess.CompletedProcess:
        return coatbench(*self.args, cwd=cwd, stdout=self.stdout, env=self.env)

    def kept(self, result: subprocess.CompletedProcess) -> bool:
        """Its promise: the exit code, and on stderr one `error:` line, no traceback. Where there
        is no error (exit 0, 3, or 141 for a reader gone) stderr holds no traceback, and for 0 and
        141 nothing but the note the case `says`; exit 0 prints its output."""
        if result.returncode != self.expected or "Traceback" in result.stderr:
            return False
        lines = result.stderr.strip().splitlines()
        if self.expected == 141:
            return not lines
        if self.expected == 0:
            said = lines == [] if not self.says else len(lines) == 1 and self.says in lines[0]
            return said and (self.stdout != "pipe" or bool(result.stdout.strip()))
        return self.expected == 3 or one_error_line(result.stderr)


def fingerprint(folder: Path) -> dict[str, str]:
    """Each regular file under `folder` and a hash of its bytes: what a case must leave as it was."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and ".git" not in path.parts:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def files(tmp: Path) -> dict[str, str]:
    """The scratch inputs the cases name."""
    (tmp / "a-file").write_text("x")
    (tmp / "a-dir").mkdir()
    (tmp / "binary.jsonl").write_bytes(os.urandom(2000).replace(b"\n", b"x"))
    (tmp / "binary.toml").write_bytes(b"\xff\xfe\x00binary")
    (tmp / "foreign.jsonl").write_text('{"hello": 1}\n')
    (tmp / "missing-field.jsonl").write_text(json.dumps({"spec": {}, "status": "ok", "schema": 2}) + "\n")
    (tmp / "not.toml").write_text("not toml [")
    (tmp / "typo.toml").write_text("[[settings]]\nname='x'\nmodel='coatnet-0'\nimage_sise=64\nrows=[{}]\n")
    (tmp / "no-modes.toml").write_text("modes=[]\n[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{}]\n")
    (tmp / "stray-claim.toml").write_text(
        "[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{norm='ln'}]\n"
        "[[claims]]\ntext='c'\nvariant={head_size=64}\nfaster='variant'\nmin=0.05\n"
    )
    oom = json.loads(Path(RESULTS).read_text().splitlines()[0])
    oom.update(status="oom", samples=[])
    for key in ("throughput", "compute", "memory"):
        oom.pop(key, None)
    (tmp / "oom-only.jsonl").write_text(json.dumps(oom) + "\n")
    good = json.loads(Path(RESULTS).read_text().splitlines()[-1])
    for name, change in ROW_CHANGES.items():  # one row each, broken in one field (class 1 of issue 24)
        row = json.loads(json.dumps(good))
        change(row)
        (tmp / f"row-{name}.jsonl").write_text(json.dumps(row) + "\n")
    (tmp / "same").mkdir()
    (tmp / "mixed.jsonl").write_text(Path(RESULTS).read_text() + json.dumps(oom) + "\n")
    (tmp / "other.csv").write_text("name,score\nx,1\n")
    (tmp / "empty.jsonl").write_text("")
    (tmp / "utf16.jsonl").write_bytes(Path(RESULTS).read_text().encode("utf-16"))
    (tmp / "loop.jsonl").symlink_to(tmp / "loop.jsonl")
    os.mkfifo(tmp / "fifo.jsonl")
    os.mkfifo(tmp / "fifo.toml")
    (tmp / "dir.toml").mkdir()
    (tmp / "more.csv").write_text("model,image_size,pretrain,metric,value,notes\n")
    (tmp / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (ROOT / "coatbench" / "data" / "accuracy.csv").read_bytes())
    suite = "[[settings]]\nname='{name}'\nmodel='coatnet-0'\nrows=[{rows}]\n{extra}"
    for name, (setting, rows, extra) in SUITES.items():  # suites that would measure nonsense (class 3)
        (tmp / f"{name}.toml").write_text(suite.format(name=setting, rows=rows, extra=extra))
    for key, value in (("modes", "['infer', 'infer']"), ("batch_sizes", "[1, 1]")):
        (tmp / f"{key}-twice.toml").write_text(f"{key} = {value}\n" + suite.format(name="x", rows="{}", extra=""))
    from coatbench.compare import baseline_path
    from coatbench.results import read_rows

    own = baseline_path(read_rows(RESULTS)[0].env.hardware_key, tmp / "same")
    own.write_text(Path(RESULTS).read_text())
    (tmp / "same-key.jsonl").symlink_to(own)
    return {name: str(tmp / name) for name in os.listdir(tmp)}


def _set(part: str | None, **values):
    """A change of a row: `values` set in its `part` (None: the row itself)."""
    return lambda row: (row if part is None else row[part]).update(values)


ROW_CHANGES = {
    "no-samples": _set(None, samples=[]),
    "nan-sample": _set(None, samples=[float("nan")]),
    "inf-sample": _set(None, samples=[float("inf")]),
    "huge-sample": _set(None, samples=[1e400]),
    "negative-sample": _set(None, samples=[-5.0, 3.0]),
    "text-samples": _set(None, samples=["fast", "faster"]),
    "null-throughput": _set(None, throughput=None),
    "negative-rate": _set("throughput", images_per_s=-3.0),
    "nan-rate": _set("throughput", images_per_s=float("nan")),
    "norm-gn": _set("spec", norm="gn"),
    "head-size-text": _set("spec", head_size="sixty-four"),
    "head-size-quoted": _set("spec", head_size="64"),
    "mode-sideways": _set("spec", mode="sideways"),
    "execution-warp": _set("spec", execution="warp-drive"),
    "batch-0": _set("spec", batch_per_core=0),
    "batch-googol": _set("spec", batch_per_core=10**100),
    "devices-0": _set("spec", devices=0),
    "model-99": _set("spec", model="coatnet-99"),
    "unknown-knob": _set("spec", colour="red"),
    "unknown-field": _set(None, colour="red"),
    "negative-threads": _set("env", threads=-1),
    "negative-first-step": _set("timing", first_step_s=-1.0),
    "samples-not-a-list": _set(None, samples=5.0),
    "boolean-samples": _set(None, samples=[True, True]),
    "infinite-rate": _set("throughput", images_per_s=float("inf")),
    "negative-blocks-timed": _set("throughput", n=-1),
    "status-fine": _set(None, status="fine"),
    "schema-99": _set(None, schema=99),
    "spec-a-string": _set(None, spec="coatnet-0"),
    "env-null": _set(None, env=None),
    "dtype-int8": _set("spec", dtype="int8"),
    "device-quantum": _set("spec", device="quantum"),
    "image-size-100": _set("spec", image_size=100),
    "layout-v9": _set("spec", layout="v9"),
    "blocks-TCCT": _set("spec", blocks="T-C-C-T"),
    "head-size-50": _set("spec", head_size=50),
    "classes-0": _set("spec", num_classes=0),
    "rel-attn-text": _set("spec", rel_attn="yes"),
    "batch-fractional": _set("spec", batch_per_core=64.5),
    "batch-boolean": _set("spec", batch_per_core=True),
    "replicate-2": _set("trial", replicate=2),
    "round-negative": _set("trial", round=-1),
    "trial-self-test-middle": _set("trial", self_test="middle"),
    "params-negative": _set("model_size", params=-1),
    "cpu-count-0": _set("env", cpu_count=0),
    "hardware-key-forged": _set("env", hardware_key="cuda:NVIDIA H200 x1"),
}
SUITES = {
    "two-labels": ("x", "{label='a'},{label='a', norm='ln'}", ""),
    "same-rows": ("x", "{},{}", ""),
    "empty-name": ("", "{}", ""),
    "empty-label": ("x", "{label=''}", ""),
    "two-settings-one-name": ("x", "{}", "[[settings]]\nname='x'\nmodel='coatnet-1'\nrows=[{}]\n"),
}


def cases(f: dict[str, str]) -> list[Case]:
    """Every bad input: the first round's (issue 7's) and ROUND_TWO's."""
    first = [
        ("unknown model", ["count", "coatnet-9"], 2),
        ("head size that divides nothing", ["count", "coatnet-2", "--head-size", "48"], 2),
        ("image size not a multiple of 32", ["count", "coatnet-2", "--image-size", "100"], 2),
        ("unknown layout", ["count", "coatnet-2", "--layout", "v9"], 2),
        ("a stage of 99,999,999 blocks", ["count", "coatnet-2", "--layout", "2,2,3,5,99999999"], 2),
        ("image size 99,999,968", ["count", "coatnet-2", "--image-size", "99999968"], 2),
        ("99,999,999,999 classes", ["count", "coatnet-2", "--num-classes", "99999999999"], 2),
        ("unknown norm", ["count", "coatnet-2", "--norm", "gn"], 2),
        ("unknown block pattern", ["count", "coatnet-2", "--blocks", "T-C-C-T"], 2),
        ("unknown format (count)", ["count", "coatnet-2", "--format", "yaml"], 2),
        ("unknown format (models)", ["models", "--format", "yaml"], 2),
        ("batch sizes not numbers", ["speed", "--batch-sizes", "a,b"], 2),
        ("batch size 0", ["speed", "--batch-sizes", "0"], 2),
        ("--min-time nan", ["speed", "--min-time", "nan"], 2),
        ("--max-time -1", ["speed", "--max-time", "-1"], 2),
        ("--max-time under --min-time", ["speed", "--min-time", "5", "--max-time", "1", "--device", "cpu"], 2),
        ("--device cuda without a GPU", ["speed", "--device", "cuda"], 2),
        ("--execution cuda-graphs on a CPU", ["speed", "--execution", "cuda-graphs", "--device", "cpu"], 2),
        ("an unknown --execution", ["speed", "--execution", "warp-drive"], 2),
        ("unknown dtype", ["speed", "--dtype", "int8"], 2),
        ("--out in /proc", ["speed", *TINY, "--out", "/proc/x.jsonl"], 2),
        ("--out a directory", ["speed", *TINY, "--out", f["a-dir"]], 2),
        ("--rounds 0", ["speed", *TINY, "--rounds", "0"], 2),
        ("--processes over the rounds", ["speed", *TINY, "--rounds", "2", "--processes", "9"], 2),
        ("--xla-cache off XLA", ["speed", *TINY, "--xla-cache", "/tmp/x"], 2),
        ("--strict off XLA", ["speed", *TINY, "--strict"], 2),
        ("--device xla without torch_xla", ["speed", "--device", "xla"], 2),
        ("--devices 0", ["speed", *TINY, "--devices", "0"], 2),
        ("--devices not a number", ["speed", *TINY, "--devices", "two"], 2),
        ("--devices over the CPU cores", ["speed", *TINY, "--devices", str((os.cpu_count() or 1) + 1)], 2),
        ("--bucket-cap-mb 0", ["speed", *TINY, "--devices", "2", "--bucket-cap-mb", "0"], 2),
        ("--bucket-cap-mb nan", ["speed", *TINY, "--devices", "2", "--bucket-cap-mb", "nan"], 2),
        ("unknown suite", ["run", "table99"], 2),
        ("suite not TOML", ["run", f["not.toml"], "--dry-run"], 2),
        ("suite binary", ["run", f["binary.toml"], "--dry-run"], 2),
        ("suite key misspelt", ["run", f["typo.toml"], "--dry-run"], 2),
        ("suite with no modes", ["run", f["no-modes.toml"], "--dry-run"], 2),
        ("suite claim matching no row", ["run", f["stray-claim.toml"], "--dry-run"], 2),
        ("unknown execution", ["run", "ci-cpu", "--execution", "jit", "--dry-run"], 2),
        ("--resume a file with a broken row",
         ["run", "ci-cpu", "--device", "cpu", "--resume", f["missing-field.jsonl"]], 2),
        ("table8 --plot in /proc", ["table8", "--device", "cpu", "--plot", "/proc/x.png"], 2),
        ("report of a missing file", ["report", "none.jsonl"], 2),
        ("report of a directory", ["report", f["a-dir"]], 2),
        ("report of a binary file", ["report", f["binary.jsonl"]], 2),
        ("report of foreign JSON", ["report", f["foreign.jsonl"]], 2),
        ("report of a row missing its spec", ["report", f["missing-field.jsonl"]], 2),
        ("report --plot in /proc", ["report", RESULTS, "--plot", "/proc/x.png"], 2),
        ("report of an unknown suite", ["report", RESULTS, "--suite", "nope"], 2),
        ("compare with one file", ["compare", RESULTS], 2),
        ("compare --threshold 150%", ["compare", RESULTS, RESULTS, "--threshold", "150%"], 2),
        ("compare --alpha nan", ["compare", RESULTS, RESULTS, "--alpha", "nan"], 2),
        ("compare other hardware (nothing comparable)",
         ["compare", RESULTS, str(ROOT / "results/h100/table8.jsonl")], 3),
        ("ab --rounds 0", ["ab", "HEAD", "HEAD", "--rounds", "0"], 2),
        ("ab of an unknown revision", ["ab", "no-such-ref", "HEAD", "--rounds", "1"], 2),
        ("accuracy with an unknown pretrain", ["accuracy", "add", "coatnet-2", "--top1", "84", "--source", "x",
                                               "--pretrain", "imagenet-2k", "--file", "mine.csv"], 2),
        ("accuracy --top1 nan",
         ["accuracy", "add", "coatnet-2", "--top1", "nan", "--source", "x", "--file", "m.csv"], 2),
        ("accuracy to a device, not a file (/dev/full)",
         ["accuracy", "add", "coatnet-2", "--top1", "84", "--source", "x", "--file", "/dev/full"], 2),
        ("baseline to a --dir that is a file", ["baseline", "save", RESULTS, "--dir", f["a-file"]], 2),
        ("baseline to /proc", ["baseline", "save", RESULTS, "--dir", "/proc/baselines"], 2),
        ("baseline of out-of-memory rows only", ["baseline", "save", f["oom-only.jsonl"], "--dir", "b"], 2),
    ]  # fmt: skip
    return [*(Case(*case) for case in first), *ROUND_TWO(f)]


def ROUND_TWO(f: dict[str, str]) -> list[Case]:
    """Issue 24's cases (hostile inputs, round two); none measures, so the tests run them all."""
    rows = []
    for name in ROW_CHANGES:  # every reader of rows refuses each broken row (class 1)
        broken = f[f"row-{name}.jsonl"]
        rows += [
            Case(f"report of a row: {name}", ["report", broken], 2),
            Case(f"compare of a row: {name}", ["compare", RESULTS, broken], 2),
            Case(f"baseline of a row: {name}", ["baseline", "save", broken, "--dir", "bl"], 2),
            Case(
                f"--resume of a row: {name}", ["run", "ci-cpu", "--device", "cpu", "--dry-run", "--resume", broken], 2
            ),
        ]
    suites = [
        Case(f"suite: {name}", ["run", f[f"{name}.toml"], "--dry-run", "--device", "cpu"], 2)
        for name in [*SUITES, "modes-twice", "batch_sizes-twice"]
    ]
    streams = [  # class 5: where the output goes
        Case("compare into a pipe its reader closed", ["compare", RESULTS, RESULTS], 141, stdout="gone"),
        Case("report into a pipe its reader closed", ["report", RESULTS], 141, stdout="gone"),
        Case("report --format csv into a closed pipe", ["report", RESULTS, "--format", "csv"], 141, stdout="gone"),
        Case("models into a pipe its reader closed", ["models"], 141, stdout="gone"),
        Case("report with stdout closed", ["report", RESULTS], 2, stdout="closed"),
        Case("compare with stdout closed", ["compare", RESULTS, RESULTS], 2, stdout="closed"),
        Case("report to /dev/full", ["report", RESULTS], 2, stdout="full"),
        Case("compare to /dev/full", ["compare", RESULTS, RESULTS], 2, stdout="full"),
        Case("count --format json to /dev/full", ["count", "coatnet-0", "--format", "json"], 2, stdout="full"),
        Case("report, PYTHONIOENCODING=ascii", ["report", RESULTS], 0, env={"PYTHONIOENCODING": "ascii"}),
        Case("compare, PYTHONIOENCODING=ascii", ["compare", RESULTS, RESULTS], 0, env={"PYTHONIOENCODING": "ascii"}),
        Case(
            "report --format markdown, LC_ALL=C and ascii",
            ["report", RESULTS, "--format", "markdown"],
            0,
            env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C"},
        ),
        Case("report, COLUMNS=0", ["report", RESULTS], 0, env={"COLUMNS": "0"}),
        Case("compare, COLUMNS=1", ["compare", RESULTS, RESULTS], 0, env={"COLUMNS": "1"}),
        Case("models, COLUMNS=-5", ["models"], 0, env={"COLUMNS": "-5"}),
    ]
    return [
        *rows,
        *suites,
        *streams,
        Case("--batch-sizes 1,1,1", ["speed", "--batch-sizes", "1,1,1"], 2),
        Case("--devices 2,2", ["speed", "--devices", "2,2"], 2),
        Case("baseline save over its own input", ["baseline", "save", f["same-key.jsonl"], "--dir", f["same"]], 2),
        Case("report --plot over its input", ["report", RESULTS, "--plot", RESULTS], 2),
        Case("report --plot to a format it cannot draw", ["report", RESULTS, "--plot", "fig.gif"], 2),
        Case("report --plot over the accuracy file",
             ["report", RESULTS, "--accuracy", f["bom.csv"], "--plot", f["bom.csv"]], 2),
        Case("report --plot with no cell of the suite", ["report", RESULTS, "--suite", "ci-cpu", "--plot", "x.png"], 0,
             says="--plot: nothing drawn in x.png: no cell of suite ci-cpu among the runs"),
        Case("accuracy add under other columns", ["accuracy", "add", "coatnet-2", "--top1", "84", "--source", "x",
                                                  "--file", f["other.csv"]], 2),
        Case("accuracy add under coatbench's columns and more", ["accuracy", "add", "coatnet-2", "--top1", "84",
                                                                 "--source", "x", "--file", f["more.csv"]], 2),
        Case("report of an empty file (nothing to report)", ["report", f["empty.jsonl"]], 3),
        Case("report of a UTF-16 file", ["report", f["utf16.jsonl"]], 2),
        Case("report of a loop of symbolic links", ["report", f["loop.jsonl"]], 2),
        Case("compare with a loop of symbolic links", ["compare", RESULTS, f["loop.jsonl"]], 2),
        Case("report of a FIFO", ["report", f["fifo.jsonl"]], 2),
        Case("run of a directory named .toml", ["run", f["dir.toml"], "--dry-run"], 2),
        Case("run of a FIFO named .toml", ["run", f["fifo.toml"], "--dry-run"], 2),
        Case("report --accuracy of a directory", ["report", RESULTS, "--accuracy", f["a-dir"]], 2),
        Case("--resume X --out Y", ["speed", *TINY, "--resume", f["mixed.jsonl"], "--out", "y.jsonl"], 2),
        Case("--resume a file of other cells", ["speed", *TINY, "--mode", "infer", "--resume", f["mixed.jsonl"],
                                                "--quiet"], 2),
        Case("--resume a results file of another machine",
             ["run", "ci-cpu", "--device", "cpu", "--dry-run", "--resume", str(ROOT / "results/h100/table8.jsonl")], 2),
    ]  # fmt: skip


def one_error_line(stderr: str) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr


def faults(tmp: Path) -> list[tuple[str, str, bool]]:
    """(fault, what survived, as promised) for the faults that must lose nothing."""
    from coatbench.results import read_rows

    found = []
    out = tmp / "two-writers.jsonl"
    code = "import sys; from coatbench.results import read_rows, append_row\n" \
           "row = read_rows(sys.argv[2])[0]\nfor _ in range(300): append_row(sys.argv[1], row)\n"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", code, str(out), RESULTS], env=env) for _ in range(2)]
    for writer in writers:
        writer.wait()
    kept = len(read_rows(out))
    found.append(("two processes appending 300 rows each", f"{kept} of 600 rows", kept == 600))
    full = coatbench("speed", *TINY, "--mode", "infer", "--batch-sizes", "1", *QUICK, "--out", "/dev/full", cwd=tmp)
    rescue = full.stderr.split("saved in ")[-1].split()[0] if "saved in " in full.stderr else ""
    rescued = len(read_rows(rescue)) if rescue and Path(rescue).exists() else 0
    ok = full.returncode == 2 and one_error_line(full.stderr) and rescued == 1
    found.append(
        ("the disk fills up after a cell is measured", f"exit {full.returncode}, {rescued} of 1 row in {rescue}", ok)
    )
    if rescue and Path(rescue).exists():
        Path(rescue).unlink()
    found += [stopped_sweep(tmp, name) for name in STOPS]
    found.append(stopped_ab(tmp))
    return found


# How a sweep is stopped: a terminal's Ctrl-C reaches its whole process group; a supervisor's
# SIGTERM (CI's timeout, a scheduler) and a closed terminal's SIGHUP, the process alone.
STOPS = {"Ctrl-C": (signal.SIGINT, os.killpg), "SIGTERM": (signal.SIGTERM, os.kill), "SIGHUP": (signal.SIGHUP, os.kill)}


def stopped_sweep(tmp: Path, name: str) -> tuple[str, str, bool]:
    """A sweep stopped as STOPS[name] says once a row is saved: exit 128 + the signal, one line
    that names it (but Ctrl-C) and gives the --resume command, and every row counted when the
    signal went there after."""
    from coatbench.results import read_rows

    stop, by = STOPS[name]
    out = tmp / f"stopped-by-{name}.jsonl"
    command = [sys.executable, "-m", "coatbench", "speed", *TINY, "--rounds", "3", "--min-time", "1", "--max-time", "1",
               "--out", str(out), "--quiet"]  # fmt: skip
    sweep = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    while not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.2)
    by(sweep.pid, stop)
    before = out.read_text().count("\n")
    _, stderr = sweep.communicate()
    after = len(read_rows(out))
    said = stderr.startswith("error: interrupted" if name == "Ctrl-C" else f"error: {name}: interrupted")
    ok = sweep.returncode == 128 + stop and one_error_line(stderr) and said and f"--resume {out}" in stderr
    ok = ok and after >= before
    survived = f"exit {sweep.returncode}, rows {before} when stopped, {after} after; --resume said"
    return f"{name} during a sweep", survived, ok


def stopped_ab(tmp: Path) -> tuple[str, str, bool]:
    """`ab HEAD HEAD` on this repository, SIGTERM while a side measures: exit 143, one line, and
    nothing left behind: no process of the side, no worktree, no temporary folder."""
    temporary = tmp / "ab-tmp"
    temporary.mkdir()
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    ab = subprocess.Popen([sys.executable, "-m", "coatbench", "ab", "HEAD", "HEAD", "ci-cpu", "--rounds", "3",
                           "--device", "cpu"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "TMPDIR": str(temporary)})  # fmt: skip
    while not any("coatbench run" in p for p in processes_naming(str(temporary))) and ab.poll() is None:
        time.sleep(0.2)
    time.sleep(2)
    ab.send_signal(signal.SIGTERM)
    _, stderr = ab.communicate()
    left = processes_naming(str(temporary))
    after = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = stderr.strip().splitlines()
    said = lines[-1:] == ["error: SIGTERM: interrupted while revision A measured: nothing was compared"]
    folders = [p for p in temporary.iterdir() if p.name.startswith("coatbench-")]  # not torch's caches
    ok = ab.returncode == 143 and said and not left and after == worktrees and not folders
    survived = (f"exit {ab.returncode}, {'the' if said else 'NOT the'} one line; {len(left)} side process(es), "
                f"{len(after.splitlines())} worktree(s) ({len(worktrees.splitlines())} before), {len(folders)} "
                "temporary folder(s) left")  # fmt: skip
    return "SIGTERM to ab while a side measures", survived, ok


def processes_naming(text: str) -> list[str]:
    """The command lines of this machine's processes that contain `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found += [line] if text in line else []
    return found


def main() -> None:
    import torch

    from coatbench.measure.machine import cpu_model, git_sha

    print(f"# Bad input and faults: `python benchmarks/bad_inputs.py`\n\n{cpu_model()}, torch {torch.__version__}, "
          f"coatbench {git_sha()}\n")  # fmt: skip
    print("| case | command | exit (expected) | one line, no traceback |")
    print("|---|---|---|---|")
    wrong = tracebacks = 0
    with tempfile.TemporaryDirectory(prefix="coatbench-bad-") as scratch:
        tmp = Path(scratch)
        subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)  # `ab` needs a repository: an empty one
        inputs = files(tmp)
        every = cases(inputs)
        for case in every:
            before = fingerprint(tmp)
            result = case.run(tmp)
            after = fingerprint(tmp)
            changed = [p for p in before if after.get(p) != before[p]]
            clean = case.kept(result) and not changed
            wrong += result.returncode != case.expected or not clean
            tracebacks += "Traceback" in result.stderr
            shown = " ".join(a.replace(scratch, "<tmp>").replace(str(ROOT) + "/", "") for a in case.args)
            env = "".join(f"{k}={v} " for k, v in (case.env or {}).items())
            command = f"{env}coatbench {shown}{REDIRECTS[case.stdout]}"
            lost = f"; CHANGED {', '.join(p.replace(scratch, '<tmp>') for p in changed)}" if changed else ""
            print(f"| {case.what} | `{command}` | {result.returncode} ({case.expected}) | {'yes' if clean else 'NO'}"
                  f"{lost} |", flush=True)  # fmt: skip
        print("\n| fault | what survived | as promised |\n|---|---|---|")
        lost, found = 0, faults(tmp)
        for fault, survived, ok in found:
            lost += not ok
            print(f"| {fault} | {survived.replace(scratch, '<tmp>')} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"\n{len(every)} bad inputs: {wrong} not as expected, {tracebacks} traceback(s); "
          f"{len(found) - lost} of {len(found)} faults lost nothing.")  # fmt: skip
    sys.exit(1 if wrong or tracebacks or lost else 0)


if __name__ == "__main__":
    main()

"""Every command against bad input and faults: one line, the right exit code, no traceback, and
no row lost. A benchmark of the CLI as a hostile user meets it (the tests pin each case too).

Runs each case as a real `coatbench` process in a scratch folder and prints a table: the
command, the exit code against the one expected, whether stderr was one `error:` line, and for
the faults, how many rows survived against how many were measured.

    python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = str(ROOT / "results" / "cpu" / "table8.jsonl")
TINY = ["coatnet-0", "--image-size", "32", "--layout", "1,1,1,1,1", "--num-classes", "10", "--device", "cpu"]
QUICK = ["--min-time", "0.05", "--max-time", "0.2", "--quiet", "--rounds", "1"]


def coatbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "coatbench", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)  # fmt: skip


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
    return {name: str(tmp / name) for name in os.listdir(tmp)}


def cases(f: dict[str, str]) -> list[tuple[str, list[str], int]]:
    """(what, arguments, the exit code expected)."""
    return [
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
    out = tmp / "interrupted.jsonl"
    command = [sys.executable, "-m", "coatbench", "speed", *TINY, "--rounds", "3", "--min-time", "1", "--max-time", "1",
               "--out", str(out), "--quiet"]  # fmt: skip
    sweep = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    while not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGINT)
    _, stderr = sweep.communicate()
    kept = len(read_rows(out))
    ok = sweep.returncode == 130 and one_error_line(stderr) and "--resume" in stderr and kept >= 1
    found.append(("Ctrl-C during a sweep", f"exit {sweep.returncode}, {kept} measured row(s) kept, --resume said", ok))
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
        for what, args, expected in every:
            result = coatbench(*args, cwd=tmp)
            clean = one_error_line(result.stderr) or (expected == 3 and "Traceback" not in result.stderr)
            wrong += result.returncode != expected or not clean
            tracebacks += "Traceback" in result.stderr
            shown = " ".join(a.replace(scratch, "<tmp>").replace(str(ROOT) + "/", "") for a in args)
            print(f"| {what} | `coatbench {shown}` | {result.returncode} ({expected}) | {'yes' if clean else 'NO'} |",
                  flush=True)  # fmt: skip
        print("\n| fault | what survived | as promised |\n|---|---|---|")
        lost = 0
        for fault, survived, ok in faults(tmp):
            lost += not ok
            print(f"| {fault} | {survived.replace(scratch, '<tmp>')} | {'yes' if ok else 'NO'} |", flush=True)
    print(f"\n{len(every)} bad inputs: {wrong} not as expected, {tracebacks} traceback(s); "
          f"{3 - lost} of 3 faults lost nothing.")  # fmt: skip
    sys.exit(1 if wrong or tracebacks or lost else 0)


if __name__ == "__main__":
    main()

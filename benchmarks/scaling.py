"""Scaling on several GPUs: `coatbench speed --devices 2` beside a plain DDP loop written apart
from the harness (benchmarks/ddp_loop.py), CoAtNet-2 training, bf16, channels-last.

    python benchmarks/scaling.py --part eager      # per-core 32 and 128: coatbench, 2 rounds
    python benchmarks/scaling.py --part compiled   # per-core 32 and 128, regional compile: 2 rounds
    python benchmarks/scaling.py --render          # DIR/scaling.md from the files below

(--batches and --rounds override a part's; --dir names the machine's folder, default
results/h100x2; --no-plain leaves the plain loop out, for a part whose plain-loop lines that
machine already has.) Each part appends coatbench's rows to DIR/scaling.jsonl and the plain
loop's lines (1 GPU, then 2 GPUs, with the commit) to DIR/plain_ddp.jsonl. The eager part runs
the plain loop after coatbench; the compiled part runs it first, so that coatbench's cells find
its graphs in inductor's cache and a part's minutes go to measuring rather than compiling
again. The report takes, for each batch and execution, the newest commit's coatbench rows, and
every plain-loop line of that batch and execution (the loop uses coatbench's model and nothing
of its timing, so a line stays valid across coatbench commits; each names its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from scipy.stats import gmean

from coatbench.measure.machine import git_sha

PARTS = {"eager": ([32, 128], False, 2), "compiled": ([32, 128], True, 2)}  # batches, compile, rounds


def plain(out: Path, devices: int, batch: int, compiled: bool) -> None:
    launcher = [sys.executable] if devices == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      f"--nproc-per-node={devices}"]  # fmt: skip
    command = [*launcher, "benchmarks/ddp_loop.py", "--batch", str(batch), "--repeats", "11"]
    command += ["--compile"] if compiled else []
    line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    found = {**json.loads(line), "git_sha": git_sha()}
    print("plain loop:", json.dumps(found), flush=True)
    with (out / "plain_ddp.jsonl").open("a") as f:
        f.write(json.dumps(found) + "\n")


def run_part(out: Path, part: str, batches: list[int] | None, rounds: int | None, with_plain: bool) -> None:
    default_batches, compiled, default_rounds = PARTS[part]
    batches, rounds = batches or default_batches, rounds or default_rounds
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "coatbench", "speed", "coatnet-2", "--devices", "2", "--mode", "train",
               "--batch-sizes", ",".join(map(str, batches)), "--rounds", str(rounds),
               "--out", str(out / "scaling.jsonl")]  # fmt: skip
    plain_loops = [(devices, batch) for batch in batches for devices in (1, 2)] if with_plain else []
    if compiled:
        for devices, batch in plain_loops:
            plain(out, devices, batch, compiled)
    subprocess.run(command + (["--execution", "compile"] if compiled else []), check=True)
    if not compiled:
        for devices, batch in plain_loops:
            plain(out, devices, batch, compiled)


def run_of(row) -> tuple[int, str, str]:
    """A table line: one setting measured at one commit (rows of one setting in the order measured)."""
    return row.spec.batch_per_core, row.spec.execution, row.env.git_sha


def render(out: Path) -> str:
    from coatbench.report import scaling_of, single_device_runs
    from coatbench.results import read_rows, scaling_key
    from coatbench.runs import CellRuns
    from coatbench.views.report import scaling_text

    every_row = [r for r in read_rows(out / "scaling.jsonl") if r.ok]
    loops = [json.loads(line) for line in (out / "plain_ddp.jsonl").read_text().splitlines() if line.strip()]
    lines = [
        "| per-GPU batch | execution | commit | rounds | coatbench 1 GPU | coatbench 2 GPUs, global (per GPU) "
        "| E (95%) | straggler | plain loop 1 GPU | plain loop 2 GPUs | coatbench vs plain, 2 GPUs | plain E |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = {run_of(r) for r in every_row}
    for batch, execution, commit in sorted(
        runs, key=lambda run: (*run[:2], min(r.timestamp for r in every_row if run_of(r) == run))
    ):
        cell = [r for r in every_row if run_of(r) == (batch, execution, commit)]
        two = [r for r in cell if r.spec.devices == 2]
        one = single_device_runs(cell).get(scaling_key(two[0].env, two[0].spec), []) if two else []
        if not two or not one:
            continue
        x1, x2 = CellRuns.of(one).value, CellRuns.of(two).value  # the A/A copies left out, as E does
        scaling = scaling_of(two, one)
        done = len({r.trial.round for r in two})
        key = (batch, execution != "eager")
        p1, p2 = ([p["global_images_per_s"] for p in loops if (p["batch"], p["compile"]) == key and p["devices"] == n]
                  for n in (1, 2))  # fmt: skip
        p2_mean = gmean(p2) if p2 else float("nan")
        straggler = max(r.distributed.straggler for r in two)
        lines.append(
            f"| {batch} | {execution} | {commit[:7]} | {done} of {two[0].trial.rounds} | {x1:,.0f} | "
            f"{2 * x2:,.0f} ({x2:,.0f}) | {scaling_text(scaling)} | {straggler:.3f} | "
            f"{', '.join(f'{v:,.0f}' for v in p1)} | {', '.join(f'{v:,.0f}' for v in p2)} | "
            f"{(2 * x2 / p2_mean - 1) * 100:+.1f}% | {p2_mean / (2 * gmean(p1)) if p1 else float('nan'):.3f} |"
        )
    first = every_row[0].env
    header = [
        f"# Scaling on 2x {first.device_name}: coatbench --devices 2 beside a plain DDP loop",
        "",
        f"Hardware: {first.device_name} x2 (one host), torch {first.torch}, CUDA {first.cuda}, driver "
        f"{first.driver}; each row names the coatbench commit it was measured at.",
        "Commands: `python benchmarks/scaling.py --part eager`, `python benchmarks/scaling.py --part compiled` "
        "(rows: scaling.jsonl, plain loop: plain_ddp.jsonl), then `python benchmarks/scaling.py --render`.",
        "",
        "CoAtNet-2 @224, training, bf16 autocast, channels-last, SGD with momentum, DDP with its defaults (bucket 25 "
        "MiB, no gradient-as-bucket-view), NCCL. coatbench: images/s per GPU, the geometric mean of the rounds' "
        "medians; global = all images / (latest end - earliest start) per block. Plain loop: "
        "benchmarks/ddp_loop.py, median of its repeats of 20 steps, global from the same window definition, run "
        "on the same machine as coatbench (eager: after it; compiled: before it), every line of the setting listed.",
        "",
    ]
    footer = [
        "",
        "coatbench 1 GPU and 2 GPUs leave out the A/A control's second runs of the cell, as E does. Rounds: those "
        "of the 2-GPU cell that ran, of those planned (a sweep cut short by the machine's time keeps its rows). "
        "Before 03679fb a one-GPU cell was timed in blocks of about 0.2 s (1-2 steps) beside 2-GPU blocks of at "
        "least 1 s, which reads the one-GPU figure slow and lifts E; since then every cell of a sweep with several "
        "devices is timed in blocks of about 1 s or more. A line of one round has an E interval from its blocks "
        "alone, which leaves out how far whole runs wander.",
    ]
    return "\n".join(header + lines + footer) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--batches", type=lambda text: [int(b) for b in text.split(",")])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--dir", type=Path, default=Path("results/h100x2"))
    parser.add_argument("--no-plain", dest="plain", action="store_false")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    if args.part:
        run_part(args.dir, args.part, args.batches, args.rounds, args.plain)
    if args.render:
        (args.dir / "scaling.md").write_text(render(args.dir))
        print((args.dir / "scaling.md").read_text())


if __name__ == "__main__":
    main()

"""Do rounds need a fresh process each on this machine, and is peak memory right in every mode?

`--part processes`: the same sweep (a model's training and inference at one per-core batch,
`--rounds` rounds) with every round in one worker process and with a fresh worker process per
round, alternated `--repeats` times (one, several, one, several, ...), each through the CLI.
Prints each cell's value per sweep and the change of several-processes against one-process.

`--part memory`: one training cell per execution mode (eager, compile, and on a GPU
cuda-graphs and compile+cuda-graphs), each measured once by the harness: peak memory and
throughput side by side. A CUDA graph allocates only while it is captured, so a peak taken
over the timed steps alone missed it (issue 13); the harness now spans the whole cell.

    python benchmarks/process_check.py --part processes [--model coatnet-2] [--batch 128] [--rounds 3]
    python benchmarks/process_check.py --part memory [--model coatnet-2] [--batch 128]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def processes(args: argparse.Namespace, device) -> None:
    from coatbench.results import read_rows, run_key
    from coatbench.runs import CellRuns
    from coatbench.views.console import cell_label

    print(f"## Rounds in one process or one per round: `{' '.join(sys.argv)}`\n")
    sweeps = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2 * args.repeats):
            processes = 1 if i % 2 == 0 else args.rounds
            out = Path(tmp) / f"{i}.jsonl"
            sweep = ["--rounds", str(args.rounds), "--processes", str(processes), "--out", str(out), "--quiet"]
            command = [sys.executable, "-m", "coatbench", "speed", args.model, "--batch-sizes", str(args.batch), *sweep]
            subprocess.run(command, check=True, capture_output=True)
            sweeps.append((processes, read_rows(out)))
    cells: dict[tuple, list[tuple[int, float]]] = {}
    labels = {}
    for processes, rows in sweeps:
        by_cell: dict[tuple, list] = {}
        for row in rows:
            by_cell.setdefault(run_key(row.env, row.spec), []).append(row)
        for key, runs in by_cell.items():
            labels[key] = cell_label(runs[0].spec)
            cells.setdefault(key, []).append((processes, CellRuns.of(runs).value))
    print("| cell | one process (per sweep) | a process per round (per sweep) | several vs one |")
    print("|---|---|---|---|")
    for key, values in cells.items():
        one = [v for p, v in values if p == 1]
        several = [v for p, v in values if p != 1]
        change = np.exp(np.mean(np.log(several)) - np.mean(np.log(one))) - 1
        print(f"| {labels[key]} | {', '.join(f'{v:,.1f}' for v in one)} | {', '.join(f'{v:,.1f}' for v in several)} "
              f"| {change:+.2%} |")  # fmt: skip
    print()


def memory(args: argparse.Namespace, device) -> None:
    from coatbench.config import build_config
    from coatbench.measure.harness import Cell, measure
    from coatbench.settings import Budget, Dtype, Execution, Mode

    print(f"## Peak memory by execution mode: `{' '.join(sys.argv)}`\n")
    executions = [Execution.EAGER, Execution.COMPILE]
    if device.type == "cuda":
        executions += [Execution.CUDA_GRAPHS, Execution.COMPILE_CUDA_GRAPHS]
    dtype = Dtype.BF16 if device.type == "cuda" else Dtype.FP32
    print("| execution | images/s | peak memory GiB | vs eager |")
    print("|---|---|---|---|")
    eager = None
    for execution in executions:
        cell = Cell(build_config(args.model), Mode.TRAIN, args.batch, dtype, execution)
        result = measure(cell, device, Budget(max_time=5))
        peak = result.peak_memory_bytes
        eager = eager or peak
        versus = "-" if not (peak and eager) else f"{peak / eager - 1:+.1%}"
        rate = float(np.median(result.samples)) if result.samples else float("nan")
        shown = "-" if peak is None else f"{peak / 2**30:.2f}"
        print(f"| {execution.value} | {rate:,.1f} | {shown} | {versus} |", flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["processes", "memory"], required=True)
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    from coatbench.measure.machine import device_name, git_sha

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"# Process and memory check: {device_name(device)}, torch {torch.__version__}, "
          f"coatbench {git_sha() or 'unknown commit'}\n")  # fmt: skip
    {"processes": processes, "memory": memory}[args.part](args, device)


if __name__ == "__main__":
    main()

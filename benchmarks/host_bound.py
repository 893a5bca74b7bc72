"""Where does an eager GPU step wait on the host? The threshold behind `host-bound`, checked.

For each per-core batch and mode, on one GPU: the eager step through coatbench's harness, which
records per timed block how long the host took to issue the steps and how long the device ran on
after the last issue (`results.HostTiming.queued_steps`: that tail in steps); then the same step
captured as a CUDA graph and replayed, which issues one launch a step and so cannot wait on the
host. Where eager falls far behind its replay, the host issued slower than the device ran; the
queued work at the end of a block should say so without the replay. Prints a table: eager and
replay images/s, how far eager is behind, the host's issue time over the device's, the queued
steps, and whether `results.HOST_BOUND_QUEUE` marks the cell.

    python benchmarks/host_bound.py [--model coatnet-2] [--batch-sizes 32,64,128,256] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from coatbench.config import build_config
from coatbench.measure.harness import Cell, measure
from coatbench.measure.machine import device_name, git_sha
from coatbench.results import HOST_BOUND_QUEUE, HostTiming
from coatbench.settings import Budget, Dtype, Execution, Mode

BUDGET = Budget(min_time=1.0, max_time=3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--out", default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    config, device = build_config(args.model), torch.device("cuda")
    commit = (git_sha() or "")[:7]  # COATBENCH_GIT_SHA where the copy has no .git of its own
    lines = [
        f"# Host-bound check: {args.model}, bf16, channels-last, on {device_name(device)}",
        "",
        f"Command: `python benchmarks/host_bound.py --model {args.model} --batch-sizes {args.batch_sizes}` "
        f"at {commit or 'an unknown commit'}, torch {torch.__version__}. host / device: the host's seconds to "
        "issue a block over the device's to run it; queued: the device's time after the last issue, in steps "
        f"(median over blocks); host-bound: queued under {HOST_BOUND_QUEUE:g}.",
        "",
        "| mode | batch | eager img/s | replay img/s | eager behind replay | host / device | queued steps | "
        "host-bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for mode in (Mode.INFER, Mode.TRAIN):
        for batch in map(int, args.batch_sizes.split(",")):
            eager = measure(Cell(config, mode, batch, Dtype.BF16), device, BUDGET)
            replay = measure(Cell(config, mode, batch, Dtype.BF16, Execution.CUDA_GRAPHS), device, BUDGET)
            if not (eager.samples and replay.samples and eager.host):
                lines.append(f"| {mode.value} | {batch} | {eager.status.value} | {replay.status.value} | | | | |")
                print(lines[-1], flush=True)
                continue
            host = HostTiming.of(eager.host, batch, eager.samples)
            rate, replayed = statistics.median(eager.samples), statistics.median(replay.samples)
            device_s = [batch * eager.block_steps / s for s in eager.samples]
            issue = statistics.median(i / d for i, d in zip(host.issue_s, device_s))
            lines.append(
                f"| {mode.value} | {batch} | {rate:,.0f} | {replayed:,.0f} | {(1 - rate / replayed) * 100:.1f}% | "
                f"{issue:.2f} | {host.queued_steps:.3f} | {'yes' if host.host_bound else 'no'} |"
            )
            print(lines[-1], flush=True)
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

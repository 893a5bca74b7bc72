"""How far does this machine's speed wander within seconds, for one model instance?

Builds a few instances of one inference cell in one process and times each over consecutive
windows (a median of steps each), round-robin: a row per repetition, a column per instance.
Differences down a column are the machine's wander over time; across a row, between instances.

    python benchmarks/instance_wander.py [--model coatnet-2] [--instances 4] [--repeats 3] [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    import torch

    from coatbench.config import build_config
    from coatbench.measure.harness import Cell, build_step
    from coatbench.measure.machine import cpu_model, git_sha
    from coatbench.settings import Dtype, Mode

    def rate(step) -> float:
        seconds = []
        for _ in range(args.steps):
            started = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - started)
        return 1 / statistics.median(seconds)

    cell = Cell(build_config(args.model), Mode.INFER, 1, Dtype.FP32)
    steps = [build_step(cell, torch.device("cpu")) for _ in range(args.instances)]
    for step in steps:  # the first steps allocate
        step(), step()
    print(f"# Speed of {args.model} inference instances over time: `python benchmarks/instance_wander.py "
          f"--model {args.model} --instances {args.instances} --repeats {args.repeats} --steps {args.steps}`\n\n"
          f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, coatbench {git_sha()}; "
          f"images/s per core, median of {args.steps} steps\n")  # fmt: skip
    print("| repetition | " + " | ".join(f"instance {i + 1}" for i in range(args.instances)) + " |")
    print("|---|" + "---|" * args.instances)
    for repeat in range(args.repeats):
        print(f"| {repeat + 1} | " + " | ".join(f"{rate(step):.2f}" for step in steps) + " |", flush=True)


if __name__ == "__main__":
    main()

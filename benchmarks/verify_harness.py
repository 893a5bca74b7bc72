"""Does coatbench's harness report what a plain CUDA-event loop sees?

For each cell, on one model object: coatbench's `measure`, then an independent loop
(its own step code, its own warm-up, CUDA events around N steps), then `measure` again.
Prints images/s for all three and the differences. Acceptance: loop vs coatbench within
3%, coatbench run 1 vs run 2 within 2%.

    python benchmarks/verify_harness.py [--model coatnet-2] [--batch-sizes 64,256] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from coatbench.config import build_config
from coatbench.measure.harness import Cell, measure
from coatbench.measure.machine import device_name
from coatbench.model import build_model
from coatbench.settings import Budget, Dtype, Mode


def plain_event_loop(model, mode: str, batch: int, image_size: int, steps: int = 30, repeats: int = 5) -> float:
    """Images/s from CUDA events around `steps` steps, median of `repeats`; written without coatbench."""
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, image_size, image_size, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    model.train(mode == "train")

    def one():
        if mode == "train":
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                model(x)

    for _ in range(15):
        one()
    torch.cuda.synchronize()
    rates = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            one()
        end.record()
        end.synchronize()
        rates.append(batch * steps / (start.elapsed_time(end) / 1e3))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--out", default=None, help="also write the table as Markdown here")
    args = parser.parse_args()
    config = build_config(args.model)
    device = torch.device("cuda")
    lines = [
        f"# Harness check: {args.model}, bf16, channels-last, eager, on {device_name(device)}",
        "",
        "Command: `python benchmarks/verify_harness.py " + f"--model {args.model} --batch-sizes {args.batch_sizes}`",
        "",
        "| mode | batch | coatbench run 1 | plain event loop | coatbench run 2 | loop vs run 1 | run 2 vs run 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for mode in (Mode.TRAIN, Mode.INFER):
        for batch in map(int, args.batch_sizes.split(",")):
            torch.manual_seed(0)
            model = build_model(config, device)
            cell = Cell(config, mode, batch, Dtype.BF16)
            first = statistics.median(measure(cell, device, Budget(), model=model).samples)
            loop = plain_event_loop(model, mode.value, batch, config.image_size)
            second = statistics.median(measure(cell, device, Budget(), model=model).samples)
            line = (
                f"| {mode.value} | {batch} | {first:,.1f} | {loop:,.1f} | {second:,.1f} | "
                f"{(loop / first - 1) * 100:+.2f}% | {(second / first - 1) * 100:+.2f}% |"
            )
            lines.append(line)
            print(line, flush=True)
            del model
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

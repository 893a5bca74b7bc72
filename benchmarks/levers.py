"""What each speed lever buys on one GPU, measured side by side in one process.

Every row is one way of running the same CoAtNet step (bf16, channels-last, fixed synthetic
data), timed by coatbench's harness; the ratio is against coatbench's default compiled
execution (regional torch.compile) at the same mode and batch size.

    python benchmarks/levers.py [--model coatnet-2] [--modes infer,train] [--batch-sizes 32,128] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from coatbench.config import build_config
from coatbench.measure.harness import Cell, compile_frozen, compile_regions, measure
from coatbench.measure.machine import device_name
from coatbench.model import CoAtNet, build_model
from coatbench.settings import Budget, Dtype, Execution, Mode


def regional(model: CoAtNet) -> CoAtNet:
    compile_regions(model)
    return model


def whole(**options) -> Callable[[CoAtNet], CoAtNet]:
    """torch.compile of the whole model as one graph, with torch.compile's `options`."""

    def prepare(model: CoAtNet) -> CoAtNet:
        torch._dynamo.reset()
        model.compile(dynamic=False, **options)
        return model

    return prepare


def frozen(model: CoAtNet) -> CoAtNet:
    """coatbench's compile-folded-bn: inductor's freezing, BatchNorm folded into the convs."""
    compile_frozen(model)
    return model


# key -> (label, how the model is prepared, how the harness runs the step, modes it applies to)
LEVERS: dict[str, tuple[str, Callable[[CoAtNet], CoAtNet] | None, Execution, tuple[Mode, ...]]] = {
    "regional": (
        "compile, regional (default)",
        regional,
        Execution.EAGER,
        (Mode.TRAIN, Mode.INFER),
    ),  # the baseline: first
    "eager": ("eager", None, Execution.EAGER, (Mode.TRAIN, Mode.INFER)),
    "eager-graph": ("eager + CUDA graph", None, Execution.CUDA_GRAPHS, (Mode.TRAIN, Mode.INFER)),
    "regional-graph": (
        "compile, regional + CUDA graph of the whole step",
        regional,
        Execution.CUDA_GRAPHS,
        (Mode.TRAIN, Mode.INFER),
    ),
    "whole": ("compile, whole model", whole(), Execution.EAGER, (Mode.TRAIN, Mode.INFER)),
    "whole-reduce-overhead": (
        "compile, whole model, mode=reduce-overhead",
        whole(mode="reduce-overhead"),
        Execution.EAGER,
        (Mode.INFER,),
    ),
    "whole-frozen": ("compile, whole model, frozen (BN folded)", frozen, Execution.EAGER, (Mode.INFER,)),
}


def optimizer_step_ms(model: torch.nn.Module, **kwargs) -> float:
    """Median time of one SGD step over the model's parameters (random gradients)."""
    from triton.testing import do_bench

    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, **kwargs)
    return do_bench(optimizer.step, warmup=25, rep=200, return_mode="median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--modes", default="infer,train")
    parser.add_argument("--batch-sizes", default="128")
    parser.add_argument("--levers", default=",".join(LEVERS), help="comma-separated keys of LEVERS")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    unknown = set(args.levers.split(",")) - LEVERS.keys()
    if unknown:
        parser.error(f"unknown lever(s) {','.join(sorted(unknown))}: choose from {','.join(LEVERS)}")
    device = torch.device("cuda")
    config = build_config(args.model)
    lines = [
        f"# Speed levers: {args.model} at {config.image_size}, bf16, channels-last, {device_name(device)}, "
        f"torch {torch.__version__}",
        "",
        f"Command: `python benchmarks/levers.py --model {args.model} --modes {args.modes} "
        f"--batch-sizes {args.batch_sizes}`",
        "",
        "| mode | batch | execution | images/s | vs compile, regional | first step s |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for mode in map(Mode, args.modes.split(",")):
        for batch in map(int, args.batch_sizes.split(",")):
            baseline = None
            for key in args.levers.split(","):
                name, prepare, execution, modes = LEVERS[key]
                if mode not in modes:
                    continue
                model = build_model(config, device)
                if prepare is not None:
                    model = prepare(model)
                t0 = time.perf_counter()
                cell = Cell(config, mode, batch, Dtype.BF16, execution)
                result = measure(cell, device, Budget(max_time=10), model=model)
                del model
                torch.cuda.empty_cache()
                if result.samples:
                    rate = statistics.median(result.samples)
                    baseline = rate if key == "regional" else baseline
                    ratio = f"{rate / baseline:.2f}x" if baseline else "-"
                    cells = f"{rate:,.0f} | {ratio} | {result.first_step_s:.0f}"
                else:
                    cells = f"{result.status.value}: {result.message[:60]} | - | {time.perf_counter() - t0:.0f}"
                lines.append(f"| {mode.value} | {batch} | {name} | {cells} |")
                print(lines[-1], flush=True)
    if "train" in args.modes:
        model = build_model(config, device)
        foreach, fused = optimizer_step_ms(model, foreach=True), optimizer_step_ms(model, fused=True)
        lines += [
            "",
            f"SGD step over {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters: "
            f"foreach {foreach:.2f} ms, fused {fused:.2f} ms.",
        ]
        print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

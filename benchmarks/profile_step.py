"""Where a step's GPU time goes: the top kernels of one coatbench cell, from torch.profiler.

python benchmarks/profile_step.py [--model coatnet-2] [--mode train] [--batch 128] [--compile] [--norm ln]
"""

from __future__ import annotations

import argparse

import torch

from coatbench.config import build_config
from coatbench.measure.harness import Cell, build_step
from coatbench.settings import Dtype, Execution, Mode

# Kernel-name fragments -> what the kernel does, first match wins.
CATEGORIES = [
    ("fused pointwise/reduction (triton)", ("triton_",)),
    ("attention", ("attention", "fmha", "flash", "cudnn_sdpa", "sdpa")),
    ("depthwise conv", ("depthwise", "dwconv", "conv_depthwise")),
    ("matmul / 1x1 conv", ("nvjet", "gemm", "sm90_xmma", "cutlass", "dgrad", "wgrad", "fprop", "implicit", "conv")),
    ("norm (native)", ("batch_norm", "layer_norm", "GammaBeta")),
    ("pointwise/reduction (native)", ("elementwise", "reduce_kernel", "Gelu")),
]


def category(name: str) -> str:
    lowered = name.lower()
    for label, fragments in CATEGORIES:
        if any(f.lower() in lowered for f in fragments):
            return label
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--mode", default="train", choices=["train", "infer"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--norm", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    config = build_config(args.model, norm=args.norm)
    execution = Execution.COMPILE if args.compile else Execution.EAGER
    cell = Cell(config, Mode(args.mode), args.batch, Dtype.BF16, execution)
    step = build_step(cell, torch.device("cuda"))
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    print(
        f"## {args.model} {args.mode} bs{args.batch} {execution.value} bf16: GPU time per step {total / 5 / 1e3:.1f} ms"
    )
    shares: dict[str, float] = {}
    for e in events:
        shares[category(e.key)] = shares.get(category(e.key), 0.0) + e.device_time_total
    print("| kind of kernel | share | ms/step |\n|---|---|---|")
    for label, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {t / total:.1%} | {t / 5 / 1e3:.2f} |")
    print()
    print("| kernel | share | ms/step |\n|---|---|---|")
    for e in sorted(events, key=lambda e: -e.device_time_total)[: args.top]:
        print(f"| {e.key[:90]} | {e.device_time_total / total:.1%} | {e.device_time_total / 5 / 1e3:.2f} |")


if __name__ == "__main__":
    main()

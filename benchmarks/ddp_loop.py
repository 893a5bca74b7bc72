"""A plain data-parallel training loop, written apart from coatbench's harness, to check what
`coatbench speed --devices N` reports.

Run it as one process for one GPU, or under torchrun for several:

    python benchmarks/ddp_loop.py --batch 128 [--compile]
    torchrun --standalone --nproc-per-node 2 benchmarks/ddp_loop.py --batch 128 [--compile]

It takes coatbench's model and regional compilation (the thing measured), nothing of its
timing: DDP with its defaults, bf16 autocast, channels-last, SGD with momentum, fixed random
data; warm-up steps, then repeats of a timed block: a barrier, a device sync, the wall clock,
the steps, a device sync, the wall clock. Global images/s of a repeat = all ranks' images /
(latest end - earliest start). Rank 0 prints one JSON line: the median over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from coatbench.config import build_config
from coatbench.measure.harness import compile_regions
from coatbench.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local)
    device = torch.device("cuda", local)
    if world > 1:
        dist.init_process_group("nccl")
    config = build_config(args.model)
    model = build_model(config, device).to(memory_format=torch.channels_last)
    if args.compile:
        compile_regions(model)
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local]) if world > 1 else model
    images = torch.randn(args.batch, 3, config.image_size, config.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, config.num_classes, (args.batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        if world > 1:
            dist.barrier()
        torch.cuda.synchronize()
        start = time.time()
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
        times = torch.tensor([start, time.time()], dtype=torch.float64, device=device)
        if world > 1:
            every = [torch.empty_like(times) for _ in range(world)]
            dist.all_gather(every, times)
        else:
            every = [times]
        window = max(t[1].item() for t in every) - min(t[0].item() for t in every)
        rates.append(world * args.batch * args.steps / window)
    if local == 0 and int(os.environ.get("RANK", 0)) == 0:
        found = dict(
            devices=world, batch=args.batch, compile=args.compile, global_images_per_s=statistics.median(rates)
        )
        print(json.dumps({**found, "repeats": rates, "gpu": torch.cuda.get_device_name(device)}), flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

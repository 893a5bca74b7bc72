"""Where a compiled CoAtNet step's time goes, stage by stage, against the GPU's ceilings.

Each stage (the stem, S1..S4, the head) of coatbench's compiled model (regional compile, bf16,
channels-last) is timed alone on its own input, forward (inference) and forward+backward
(training), with CUDA events. Against it:
- its FLOPs (torch's FlopCounterMode over the same call: matmuls, convolutions, attention) and
  the time they take at the measured bf16 matmul ceiling;
- its activation traffic, each leaf module's inputs and outputs once (what a step that fused
  nothing across modules must move at least; inside a module, fusion moves less), and the time
  it takes at the measured copy bandwidth (training: three times the forward's: the forward's
  writes, and the backward's reads of them and writes of their gradients).
Both ceilings are measured in the same run: a large bf16 matmul and a large device copy.
The sum of the stages is set beside the whole step's time, as coatbench measures it.

    python benchmarks/roofline.py [--model coatnet-2] [--batch 128] [--out FILE.md]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from triton.testing import do_bench

from coatbench.config import build_config
from coatbench.measure.harness import Cell, build_step, compile_regions
from coatbench.model import build_model
from coatbench.settings import Dtype, Execution, Mode


def matmul_ceiling() -> float:
    """bf16 FLOP/s of one large square matmul."""
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    return 2 * n**3 / (do_bench(lambda: a @ b, warmup=25, rep=200, return_mode="median") / 1e3)


def copy_ceiling() -> float:
    """Bytes/s moved (read + written) by one large device-to-device copy."""
    source = torch.empty(2**30, device="cuda", dtype=torch.uint8)
    target = torch.empty_like(source)
    return 2 * source.numel() / (do_bench(lambda: target.copy_(source), warmup=25, rep=200, return_mode="median") / 1e3)


def tensor_bytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def activation_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """The inputs and outputs of every leaf module of one eager forward, each counted once."""
    total = 0

    def hook(_, inputs, output):
        nonlocal total
        total += tensor_bytes(inputs) + tensor_bytes(output)

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        module(x)
    for handle in handles:
        handle.remove()
    return total


def flops_of(call) -> int:
    with FlopCounterMode(display=False) as mode:
        call()
    return mode.get_total_flops()


def stages_of(model) -> list[tuple[str, nn.Module]]:
    return [("stem", model.stem), *((f"S{i + 1}", s) for i, s in enumerate(model.stages)), ("head", model.head)]


def stage_inputs(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each stage's input, from one eager forward."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(lambda _, args, name=name: seen.setdefault(name, args[0].detach()))
        for name, module in stages_of(model)
    ]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(images)
    for handle in handles:
        handle.remove()
    return seen


def stage_call(module: nn.Module, x: torch.Tensor, mode: Mode, first: bool):
    """The stage's call for `mode`, ready to time and to count; in training the gradient of every
    stage's input is computed but the first's (the images)."""
    if mode is Mode.INFER:

        def infer():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                module(x)

        return infer
    x = x.clone().requires_grad_(not first)

    def train():
        module.zero_grad(set_to_none=True)  # as the step does: no gradient accumulated
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = module(x)
        y.backward(torch.ones_like(y))

    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="coatnet-2")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = build_config(args.model)
    flops_ceiling, bytes_ceiling = matmul_ceiling(), copy_ceiling()
    lines = [
        f"## {args.model} at {config.image_size}, batch {args.batch}, bf16, channels-last, compiled (regional): "
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}",
        "",
        f"Measured ceilings: bf16 matmul {flops_ceiling / 1e12:.0f} TFLOP/s, "
        f"device copy {bytes_ceiling / 1e12:.2f} TB/s.",
        "",
        "| mode | stage | ms | share | GFLOP | TFLOP/s | ms at matmul ceiling | activation GB "
        "| ms at copy ceiling | bound by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    images = torch.randn(args.batch, 3, config.image_size, config.image_size, device="cuda")
    images = images.contiguous(memory_format=torch.channels_last)
    for mode in (Mode.INFER, Mode.TRAIN):
        model = build_model(config, "cuda").to(memory_format=torch.channels_last)
        model.train(mode is Mode.TRAIN)
        inputs = stage_inputs(model, images)
        calls = {name: stage_call(module, inputs[name], mode, name == "stem") for name, module in stages_of(model)}
        # counted eagerly, before the blocks are compiled
        counted = {name: (flops_of(calls[name]), activation_bytes(module, inputs[name]))
                   for name, module in stages_of(model)}  # fmt: skip
        compile_regions(model)
        rows = []
        for name, call in calls.items():
            call()  # compiles this stage's regions
            ms = do_bench(call, warmup=25, rep=200, return_mode="median")
            flops, traffic = counted[name]
            rows.append((name, ms, flops, traffic * (1 if mode is Mode.INFER else 3)))
        total = sum(ms for _, ms, _, _ in rows)
        for name, ms, flops, moved in rows:
            at_flops, at_bytes = flops / flops_ceiling * 1e3, moved / bytes_ceiling * 1e3
            lines.append(
                f"| {mode.value} | {name} | {ms:.2f} | {ms / total:.0%} | {flops / 1e9:,.0f} "
                f"| {flops / ms / 1e9:.0f} | {at_flops:.2f} | {moved / 1e9:.2f} | {at_bytes:.2f} "
                f"| {'compute' if at_flops > at_bytes else 'memory'} |"
            )
            print(lines[-1], flush=True)
        flops = sum(f for _, _, f, _ in rows)
        step = build_step(Cell(config, mode, args.batch, Dtype.BF16, Execution.COMPILE), torch.device("cuda"))
        step()
        whole = do_bench(step, warmup=10, rep=200, return_mode="median")
        lines.append(
            f"| {mode.value} | sum of stages | {total:.2f} | | {flops / 1e9:,.0f} | {flops / total / 1e9:.0f} "
            f"| {flops / flops_ceiling * 1e3:.2f} | | | |"
        )
        lines.append(
            f"| {mode.value} | whole step (coatbench's compile) | {whole:.2f} | | | | | | | "
            f"{args.batch / whole * 1e3:,.0f} images/s |"
        )
        print("\n".join(lines[-2:]), flush=True)
        del model, step
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

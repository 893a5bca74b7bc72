"""Does every knob value compile, on the fused attention path, and match eager?

For each variant (one block per stage to keep compile time short: the knobs, not the
depth, decide what the compiler sees), compile a training step and an inference step,
compare compiled logits and gradients with eager ones, and list the attention kernels the
profiler saw in the compiled inference step.

    python benchmarks/compile_check.py [--device cuda] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch
import torch.nn.functional as F

from coatbench.config import build_config
from coatbench.files import write_atomically
from coatbench.measure.harness import compile_regions
from coatbench.model import build_model

VARIANTS = {
    "base": {},
    "head 64": {"head_size": 64},
    "norm ln": {"norm": "ln"},
    "no rel-attn": {"rel_attn": False},
    "dwconv": {"downsample": "dwconv"},
    "C-T-T-T": {"blocks": "C-T-T-T"},
    "C-C-C-T": {"blocks": "C-C-C-T"},
    "C-C-C-C": {"blocks": "C-C-C-C"},
}


def shallow(config):
    """One block per stage (S0 keeps its two convs); CoAtNet-6's mixed S3 keeps its shape."""
    return dataclasses.replace(config, stages=tuple(dataclasses.replace(s, depth=1) for s in config.stages))


def attention_kernels(fn) -> list[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    names = {e.key for e in prof.key_averages()}
    return sorted(n for n in names if "attention" in n and n.startswith("aten::_"))


def check(name: str, config, device: torch.device, batch: int = 8) -> str:
    torch.manual_seed(0)
    model = build_model(config, device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, config.image_size, config.image_size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 1000, (batch,), device=device)
    compiled = build_model(config, device).to(memory_format=torch.channels_last)
    compiled.load_state_dict(model.state_dict())
    compile_regions(compiled)  # the same compilation the harness does
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    model.eval()
    compiled.eval()
    with torch.no_grad(), autocast:
        eager_out = model(x).float()
        t0 = time.perf_counter()
        compiled_out = compiled(x).float()
        infer_compile = time.perf_counter() - t0
        kernels = attention_kernels(lambda: compiled(x)) if "T" in config.blocks else []
    err = relative_error(compiled_out, eager_out)

    def grads(m, use_autocast: bool) -> torch.Tensor:
        m.train().zero_grad(set_to_none=True)
        with autocast if use_autocast else contextlib.nullcontext():
            loss = F.cross_entropy(m(x), y)
        loss.backward()
        assert torch.isfinite(loss).item()
        return torch.cat([p.grad.flatten() for p in m.parameters()])

    # A compiled step can take other kernels than eager and get gradients wrong where the
    # logits are right (FlexAttention did: results/h100/micro_paths.md). bf16 gradients of a
    # small batch differ from fp32 ones by a few percent whatever the path, so compiled must
    # be as close to eager fp32 as eager bf16 is (within 2x), not equal to it.
    reference = grads(model, use_autocast=False)
    eager_err = relative_error(grads(model, use_autocast=True), reference)
    t0 = time.perf_counter()
    compiled_err = relative_error(grads(compiled, use_autocast=True), reference)
    train_compile = time.perf_counter() - t0
    ok = err < 2e-2 and compiled_err <= 2 * eager_err + 1e-3
    return (
        f"| {name} | {'ok' if ok else 'MISMATCH'} | {err:.1e} | {compiled_err:.1e} / {eager_err:.1e} | "
        f"{infer_compile:.0f} s | {train_compile:.0f} s | {', '.join(kernels) or '-'} |"
    )


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    lines = [
        f"# torch.compile of every knob value ({torch.__version__}, {name})",
        "",
        "| variant (coatnet-0, 1 block/stage) | compiled vs eager | rel. error of logits (bf16) | "
        "grads vs fp32: compiled / eager bf16 | infer compile | train compile "
        "| attention ops in the compiled inference step |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    cases = [(name, shallow(build_config("coatnet-0", **knobs))) for name, knobs in VARIANTS.items()]
    cases.append(("coatnet-6 (mixed S3)", shallow(build_config("coatnet-6"))))
    for name, config in cases:
        try:
            line = check(name, config, device)
        except Exception as error:  # report and go on: the table is the result
            line = f"| {name} | FAILED | - | - | - | - | {type(error).__name__}: {str(error).splitlines()[0][:120]} |"
        lines.append(line)
        print(line, flush=True)
        if args.out:  # after every variant: a run stopped early keeps what it checked
            write_atomically(args.out, ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()

"""Alternative formulations of hot spots of a compiled CoAtNet step, timed in isolation.

1. Depthwise 3x3 conv + BatchNorm + GELU + SE mean on an expanded MBConv tensor: cuDNN's
   depthwise kernel (inductor cannot fuse into it) against nine shifted multiply-adds that
   inductor fuses with the norm, the activation and the reduction into one kernel.
2. The relative-position bias as SDPA's mask: dense per batch (what compiled before) against
   one broadcast (1, heads, N, N) mask, plain or with rows padded to a 16-byte stride.
3. Which SDPA backend runs attention with a learnt bias fastest, compiled, forward and
   forward+backward: the default choice, memory-efficient, cuDNN, and the unfused math
   path that inductor fuses itself.
4. The end of an MBConv block, project(y * se_scale) + bias + shortcut: the scaled tensor
   written and read again before a cuDNN 1x1 conv, against one batched matmul whose
   per-image weights carry the SE scale (W * s[b]), with the shortcut added in its epilogue.
5. Training attention with the learnt bias: SDPA (memory-efficient, the only fused backend
   that returns the bias gradient) against FlexAttention with the bias as a captured
   tensor (its backward scatters the bias gradient with atomics, no dense score matrix).

Same function in each pair (checked against each other), bf16, channels-last.

    python benchmarks/micro_paths.py [--only dwconv,mask,backend,se_project,flex]
"""

from __future__ import annotations

import argparse
import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench


def depthwise_taps(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """3x3 depthwise conv (padding 1) of a (B, C, H, W) tensor as nine shifted products."""
    _, C, H, W = x.shape
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (B, H+2, W+2, C)
    w = weight.view(C, 9).t().to(x.dtype)  # (9, C)
    out = None
    for t in range(9):
        i, j = divmod(t, 3)
        tap = xp[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :] * w[t]
        out = tap if out is None else out + tap
    return out.permute(0, 3, 1, 2)  # (B, Ho, Wo, C) -> (B, C, Ho, Wo) channels-last view


class DwBlock(nn.Module):
    def __init__(self, channels: int, taps: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.taps = taps

    def forward(self, x):
        y = depthwise_taps(x, self.conv.weight) if self.taps else self.conv(x)
        y = F.gelu(self.norm(y))
        return y * torch.sigmoid(y.mean((2, 3), keepdim=True))


def relative_difference(a: torch.Tensor, reference: torch.Tensor) -> float:
    return ((a - reference).norm() / reference.norm()).item()


def compare_pair(label: str, train: bool, make_runs) -> str:
    """Time two compiled versions of one function, forward (and backward when `train`), and
    check they agree. `make_runs()` returns the two forward callables on fresh inputs."""
    times, outs = [], []
    for forward in make_runs():
        fn = torch.compile(forward)

        def run():
            with torch.autocast("cuda", torch.bfloat16):
                out = fn()
            if train:
                out.float().sum().backward()
            return out

        outs.append(run().float())
        times.append(do_bench(run, warmup=50, rep=300, return_mode="median"))
    diff = relative_difference(outs[1], outs[0])
    mode = "train fwd+bwd" if train else "infer"
    line = f"| {label} | {mode} | {times[0]:.3f} | {times[1]:.3f} | {times[0] / times[1]:.2f}x | {diff:.1e} |"
    print(line, flush=True)
    return line


def channels_last_randn(*shape, requires_grad: bool) -> torch.Tensor:
    t = torch.randn(*shape, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def bench_dwconv() -> list[str]:
    lines = [
        "| shape (B, C, H, W) | mode | cuDNN dwconv ms | taps ms | speed-up | rel. diff |",
        "|---|---|---|---|---|---|",
    ]
    for shape in [(128, 512, 56, 56), (128, 1024, 28, 28), (128, 512, 112, 112)]:
        for train in (False, True):

            def make_runs():
                torch.manual_seed(0)
                x = channels_last_randn(*shape, requires_grad=train)
                blocks = [
                    DwBlock(shape[1], taps).cuda().to(memory_format=torch.channels_last).train(train)
                    for taps in (False, True)
                ]
                blocks[1].load_state_dict(blocks[0].state_dict())
                return [lambda block=block: block(x) for block in blocks]

            lines.append(compare_pair(str(shape), train, make_runs))
    return lines


def bench_mask() -> list[str]:
    lines = ["| heads, d | mask | compiles | fwd ms | fwd+bwd ms |", "|---|---|---|---|---|"]
    B, N = 128, 196
    for heads, d in [(16, 32), (8, 64)]:
        table = torch.randn(heads, N, N, device="cuda", requires_grad=True)

        def dense(q):
            return table.to(q.dtype)[None].expand(q.shape[0], -1, -1, -1).contiguous()

        def broadcast(q):
            return table.to(q.dtype)[None]

        def padded(q):
            # rows at a 16-byte stride: (heads, N, N+pad) storage, viewed back to N columns
            return F.pad(table.to(q.dtype), (0, (-N) % 8))[None, :, :, :N]

        for name, make in [("dense per batch", dense), ("broadcast", broadcast), ("broadcast, padded rows", padded)]:
            q, k, v = (
                torch.randn(B, heads, N, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
            )
            fn = torch.compile(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=make(q)))
            try:
                fwd = do_bench(lambda: fn(q, k, v), warmup=50, rep=200, return_mode="median")
                bwd = do_bench(lambda: fn(q, k, v).sum().backward(), warmup=50, rep=200, return_mode="median")
                lines.append(f"| {heads}, {d} | {name} | yes | {fwd:.3f} | {bwd:.3f} |")
            except Exception as error:  # the result is whether it compiles
                lines.append(f"| {heads}, {d} | {name} | no: {str(error).splitlines()[0][:80]} | - | - |")
            torch._dynamo.reset()
            print(lines[-1], flush=True)
    return lines


BACKENDS = {
    "default": None,
    "memory-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cuDNN": SDPBackend.CUDNN_ATTENTION,
    "math (inductor-fused)": SDPBackend.MATH,
}


def bench_backend() -> list[str]:
    """CoAtNet-2's attention shapes at per-core batch 128: S3 (196 tokens) at head size 32
    and 64, S4 (49 tokens)."""
    # The backend is chosen when the graph is traced: a cached compiled graph would replay
    # the first backend's choice for every later one.
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    lines = [
        "| tokens, heads, d | backend | fwd ms | fwd+bwd ms | rel. diff vs math (out, grad of bias) |",
        "|---|---|---|---|---|",
    ]
    B = 128
    for N, heads, d in [(196, 16, 32), (196, 8, 64), (49, 32, 32)]:
        torch.manual_seed(0)
        table = torch.randn(heads, N, N, device="cuda", requires_grad=True)
        q, k, v = (
            torch.randn(B, heads, N, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
        )
        reference = None
        for name, backend in reversed(BACKENDS.items()):  # math first: the reference
            torch._dynamo.reset()
            context = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
            try:
                with context:
                    fn = torch.compile(
                        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=table.to(q.dtype)[None])
                    )
                    table.grad = None
                    out = fn(q, k, v)
                    out.float().square().sum().backward()
                    result = (out.float(), table.grad.clone())
                    fwd = do_bench(lambda: fn(q, k, v), warmup=50, rep=200, return_mode="median")
                    bwd = do_bench(lambda: fn(q, k, v).sum().backward(), warmup=50, rep=200, return_mode="median")
                if reference is None:
                    reference, diff = result, "-"
                else:
                    diff = ", ".join(f"{relative_difference(a, b):.1e}" for a, b in zip(result, reference))
                lines.append(f"| {B}, {N}, {heads}, {d} | {name} | {fwd:.3f} | {bwd:.3f} | {diff} |")
            except Exception as error:  # the result is whether this backend takes the case
                lines.append(
                    f"| {N}, {heads}, {d} | {name} | not supported: {str(error).splitlines()[0][:90]} | - | - |"
                )
            print(lines[-1], flush=True)
    return lines


def se_project_conv(y, scale, weight, bias, shortcut):
    return F.conv2d(y * scale, weight, bias) + shortcut


def se_project_bmm(y, scale, weight, bias, shortcut):
    """The same function: (B, HW, C4) @ (B, C4, C), the SE scale folded into per-image weights."""
    B, C4, H, W = y.shape
    C = weight.shape[0]
    tokens = y.permute(0, 2, 3, 1).reshape(B, H * W, C4)  # free view of a channels-last tensor
    weights = weight.view(C, C4).t()[None] * scale.view(B, C4, 1)  # (B, C4, C)
    rest = (shortcut + bias.view(1, C, 1, 1)).permute(0, 2, 3, 1).reshape(B, H * W, C)
    return torch.baddbmm(rest, tokens, weights.to(y.dtype)).view(B, H, W, C).permute(0, 3, 1, 2)


def bench_se_project() -> list[str]:
    lines = [
        "| y (B, C4, H, W) -> C | mode | scale + conv ms | per-image bmm ms | speed-up | rel. diff |",
        "|---|---|---|---|---|---|",
    ]
    for (B, C4, H, W), C in [((128, 512, 56, 56), 128), ((128, 1024, 28, 28), 256)]:
        for train in (False, True):

            def make_runs():
                torch.manual_seed(0)
                y, shortcut = (
                    channels_last_randn(B, C4, H, W, requires_grad=train),
                    channels_last_randn(B, C, H, W, requires_grad=train),
                )
                scale = torch.rand(B, C4, 1, 1, device="cuda", dtype=torch.bfloat16, requires_grad=train)
                weight = (torch.randn(C, C4, 1, 1, device="cuda") / C4**0.5).requires_grad_(train)
                bias = torch.randn(C, device="cuda", requires_grad=train)
                return [
                    lambda impl=impl: impl(y, scale, weight, bias, shortcut)
                    for impl in (se_project_conv, se_project_bmm)
                ]

            lines.append(compare_pair(f"({B}, {C4}, {H}, {W}) -> {C}", train, make_runs))
    return lines


FLEX_VARIANTS = {
    "flex, default blocks": None,
    "flex, 64x64 blocks, 2 stages": {
        "BLOCK_M": 64,
        "BLOCK_N": 64,
        "BLOCK_M1": 32,
        "BLOCK_N1": 64,
        "BLOCK_M2": 64,
        "BLOCK_N2": 32,
        "num_stages": 2,
    },
}


def bench_flex() -> list[str]:
    """CoAtNet-2's training attention at per-core batch 128 (S3 and S4 at head size 32 and 64),
    and CoAtNet-0's at batch 8 (the shapes of benchmarks/compile_check.py).
    Flex's default tiles can ask for more shared memory than an H100 has at d=64, hence the
    smaller configurations."""
    from torch.nn.attention.flex_attention import flex_attention

    lines = [
        "| batch, tokens, heads, d | attention | fwd ms | fwd+bwd ms | fwd+bwd vs SDPA "
        "| rel. diff vs SDPA (out, grad of q, grad of bias) |",
        "|---|---|---|---|---|---|",
    ]
    for B, N, heads, d in [
        (128, 196, 16, 32),
        (128, 49, 32, 32),
        (8, 196, 12, 32),
        (8, 49, 24, 32),
        (128, 196, 8, 64),
        (128, 49, 16, 64),
    ]:
        torch.manual_seed(0)
        bias = torch.randn(heads, N, N, device="cuda", requires_grad=True)
        q, k, v = (
            torch.randn(B, heads, N, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
        )

        def sdpa(q, k, v):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype)[None])

        def flex(options):
            return lambda q, k, v: flex_attention(
                q, k, v, score_mod=lambda score, b, h, i, j: score + bias[h, i, j], kernel_options=options
            )

        reference = None
        for name, fn in [("SDPA (memory-efficient)", sdpa), *((n, flex(o)) for n, o in FLEX_VARIANTS.items())]:
            # one fresh compile per row: every row compiles the same lambdas, and dynamo's
            # recompile limit would otherwise send later shapes to unfused eager flex
            torch._dynamo.reset()
            try:
                fn = torch.compile(fn)
                bias.grad = q.grad = None
                out = fn(q, k, v)
                out.float().square().sum().backward()
                result = (out.float(), q.grad.float(), bias.grad.clone())
                fwd = do_bench(lambda: fn(q, k, v), warmup=50, rep=200, return_mode="median")
                both = do_bench(lambda: fn(q, k, v).sum().backward(), warmup=50, rep=200, return_mode="median")
            except Exception as error:  # the result is whether this configuration compiles
                lines.append(
                    f"| {B}, {N}, {heads}, {d} | {name} | fails: {str(error).splitlines()[0][-90:]} | - | - | - |"
                )
                print(lines[-1], flush=True)
                continue
            if reference is None:
                reference, sdpa_both, diff = result, both, "-"
            else:
                diff = ", ".join(f"{relative_difference(a, b):.1e}" for a, b in zip(result, reference))
            lines.append(
                f"| {B}, {N}, {heads}, {d} | {name} | {fwd:.3f} | {both:.3f} | {sdpa_both / both:.2f}x | {diff} |"
            )
            print(lines[-1], flush=True)
    return lines


SECTIONS = {
    "dwconv": ("depthwise conv + BN + GELU + SE scale, compiled", bench_dwconv),
    "mask": ("relative bias as SDPA mask, compiled", bench_mask),
    "backend": ("SDPA backend for attention with a learnt bias, compiled", bench_backend),
    "se_project": (
        "SE scale + project conv + shortcut: conv against per-image batched matmul, compiled",
        bench_se_project,
    ),
    "flex": ("training attention with a learnt bias: SDPA against FlexAttention, compiled", bench_flex),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS))
    args = parser.parse_args()
    print(f"# micro paths ({torch.__version__}, {torch.cuda.get_device_name()})\n", flush=True)
    out = []
    for key in args.only.split(","):
        title, bench = SECTIONS[key]
        out += [f"## {title}", *bench(), ""]
    print("\n" + "\n".join(out))


if __name__ == "__main__":
    main()

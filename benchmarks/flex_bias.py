"""Attention with CoAtNet's learnt relative bias through FlexAttention: right gradients, and time.

FlexAttention adds the bias in its kernel and returns the bias's gradient (no dense score
matrix), but in the model its gradients were wrong at small shapes (results/h100/micro_paths.md).
Its kernels work on tiles of 128 (or 64) tokens; CoAtNet's 49 and 196 tokens are not a multiple,
so the score_mod is also evaluated on the tile's padding. If a bias indexed there is read past
the end of each (N, N) plane, and its gradient scattered there, the next rows of the bias take
it. The padded variant tests that: it indexes a bias padded to whole tiles, every index in bounds.

Every attention of CoAtNet-0..3 at 224 (and CoAtNet-3's at 384), head size 32 and 64, at batch 8:
each variant's output and gradients (q, k, v, bias) against the same attention in fp32. Then
CoAtNet-2's shapes at batch 128: forward+backward time against SDPA, all compiled.

    python benchmarks/flex_bias.py [--out FILE.md]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention
from triton.testing import do_bench

# (model, input size) -> (tokens, channels) of its two transformer stages
ATTENTIONS = {
    ("coatnet-0/1", 224): ((196, 384), (49, 768)),
    ("coatnet-2", 224): ((196, 512), (49, 1024)),
    ("coatnet-3", 224): ((196, 768), (49, 1536)),
    ("coatnet-3", 384): ((576, 768), (144, 1536)),
}
# The default tiles ask for more shared memory than an H100/H200 has at head size 64.
SMALL_TILES = {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_M1": 32, "BLOCK_N1": 64, "BLOCK_M2": 64, "BLOCK_N2": 32,
               "num_stages": 2}  # fmt: skip
TILE = 128  # the largest tile any configuration uses: padding to it pads to every smaller one too
TOLERANCE = 5e-2  # relative error; eager bf16 SDPA is at 1e-2 or less


def sdpa(q, k, v, bias):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype)[None])


def flex(options):
    def attend(q, k, v, bias):
        return flex_attention(q, k, v, score_mod=lambda s, b, h, i, j: s + bias[h, i, j], kernel_options=options)

    return attend


def flex_padded(options):
    def attend(q, k, v, bias):
        n = bias.shape[-1]
        pad = -n % TILE
        padded = F.pad(bias, (0, pad, 0, pad))  # (heads, N, N) -> (heads, N+pad, N+pad)
        return flex_attention(q, k, v, score_mod=lambda s, b, h, i, j: s + padded[h, i, j], kernel_options=options)

    return attend


def reference(q, k, v, bias):
    """The attention in fp32, unfused."""
    q, k, v, bias = (t.detach().float().requires_grad_() for t in (q, k, v, bias))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias[None]  # (B, heads, N, N)
    return (q, k, v, bias), scores.softmax(-1) @ v


def gradients(fn, q, k, v, bias, weight):
    """fn's output and the gradients of (output * weight).sum() with respect to q, k, v, bias."""
    for t in (q, k, v, bias):
        t.grad = None
    out = fn(q, k, v, bias)
    (out.float() * weight).sum().backward()
    return [out.float(), *(t.grad.float() for t in (q, k, v, bias))]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def inputs(batch, tokens, heads, d):
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, tokens, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))  # fmt: skip
    bias = (0.5 * torch.randn(heads, tokens, tokens, device="cuda")).requires_grad_()
    return q, k, v, bias


def variants(d):
    options = None if d == 32 else SMALL_TILES
    tiles = "default tiles" if options is None else "64x64 tiles"
    return {
        "SDPA (bf16)": sdpa,
        f"flex, {tiles}": flex(options),
        f"flex, {tiles}, bias padded": flex_padded(options),
    }


def check_gradients(lines: list[str]) -> None:
    lines += [
        "| model | tokens, heads, d | attention | rel. error vs fp32: out, dq, dk, dv, dbias | right |",
        "|---|---|---|---|---|",
    ]
    for (model, size), stages in ATTENTIONS.items():
        for tokens, channels in stages:
            for d in (32, 64):
                heads = channels // d
                q, k, v, bias = inputs(8, tokens, heads, d)
                leaves, out = reference(q, k, v, bias)
                weight = torch.randn_like(out)
                out.mul(weight).sum().backward()
                expected = [out.detach(), *(t.grad for t in leaves)]
                for name, fn in variants(d).items():
                    torch._dynamo.reset()  # one compile per row: the recompile limit would fall back to eager
                    try:
                        got = gradients(torch.compile(fn, dynamic=False), q, k, v, bias, weight)
                        errors = [relative_error(a, b) for a, b in zip(got, expected)]
                        right = "yes" if max(errors) < TOLERANCE else "NO"
                        cells = f"{', '.join(f'{e:.1e}' for e in errors)} | {right}"
                    except Exception as error:  # whether this configuration compiles is the result
                        cells = f"fails: {str(error).splitlines()[0][-80:]} | -"
                    lines.append(f"| {model} @{size} | {tokens}, {heads}, {d} | {name} | {cells} |")
                    print(lines[-1], flush=True)


def step_of(fn, q, k, v, bias):
    return lambda: fn(q, k, v, bias).sum().backward()


def time_coatnet2(lines: list[str]) -> None:
    lines += [
        "",
        "| CoAtNet-2 at batch 128: tokens, heads, d | attention | fwd+bwd ms | vs SDPA |",
        "|---|---|---|---|",
    ]
    for tokens, channels in ATTENTIONS[("coatnet-2", 224)]:
        for d in (32, 64):
            q, k, v, bias = inputs(128, tokens, channels // d, d)
            base = None
            for name, fn in variants(d).items():
                torch._dynamo.reset()
                try:
                    step = step_of(torch.compile(fn, dynamic=False), q, k, v, bias)
                    ms = do_bench(step, warmup=50, rep=200, return_mode="median")
                    base = ms if base is None else base
                    cells = f"{ms:.3f} | {base / ms:.2f}x"
                except Exception as error:
                    cells = f"fails: {str(error).splitlines()[0][-80:]} | -"
                lines.append(f"| {tokens}, {channels // d}, {d} | {name} | {cells} |")
                print(lines[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    lines = [f"## FlexAttention with CoAtNet's relative bias: {where}", ""]
    print("\n".join(lines), flush=True)
    check_gradients(lines)
    time_coatnet2(lines)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

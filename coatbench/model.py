"""CoAtNet (Dai et al., 2021) written for speed, every ablation knob included.

Layout of activations: MBConv stages work on (B, C, H, W) tensors, transformer stages on
(B, H, W, C). With channels-last memory both are the same bytes, so moving between them
is a free view; LayerNorm over channels then runs on contiguous rows without a copy.

Where this departs from the paper (none changes params or MACs by more than 0.1%):
- a LayerNorm after global pooling, since a pre-norm residual stream is never normalised
  otherwise (ViT does the same);
- max pooling in Eqn 4/5 shortcuts is 3x3 with stride 2 (the paper says only "stride 2");
- no dropout or stochastic depth: coatbench measures speed, not regularisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coatbench.config import BlockType, CoAtNetConfig, Downsample, Norm, StageConfig


class LayerNorm(nn.LayerNorm):
    """LayerNorm over the last dimension that keeps the input's dtype under autocast.

    Autocast runs layer_norm in fp32 and returns fp32, so every LayerNorm would write and
    re-read its activations at twice the width of the BatchNorm it is compared with (which
    autocast leaves in bf16). The kernel accumulates in fp32 whatever its input dtype, so
    running it on bf16 with fp32 statistics loses nothing and costs what BatchNorm costs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        # (the meta device, used for counting, has no autocast state to ask about)
        if device == "meta" or not torch.is_autocast_enabled(device):
            return super().forward(x)
        with torch.autocast(device, enabled=False):
            weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
            return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


class LayerNorm2d(LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) tensor: the `--norm ln` of Table 8."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, H, W, C): a free view of a channels-last tensor
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def mbconv_norm(norm: Norm):
    return {Norm.BATCH: nn.BatchNorm2d, Norm.LAYER: LayerNorm2d}[norm]


def max_pool_nhwc(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max pool of a (B, H, W, C) tensor."""
    # (B, H, W, C) -> (B, C, H, W) channels-last view -> pool -> back to (B, H/2, W/2, C)
    return F.max_pool2d(x.permute(0, 3, 1, 2), 3, 2, 1).permute(0, 2, 3, 1)


class Stem(nn.Module):
    """S0: 3x3 convs at half resolution, the first with stride 2."""

    def __init__(self, depth: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False)]
        for _ in range(depth - 1):
            layers += [nn.BatchNorm2d(channels), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class SqueezeExcite(nn.Module):
    """The squeeze-excitation gate of a (B, C, H, W) tensor: (B, C, 1, 1) in (0, 1).

    Only the gate: the block applies it inside its project conv (`scaled_pointwise_conv`).
    """

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return torch.sigmoid(self.expand(F.gelu(self.reduce(scale))))


def scaled_pointwise_conv(y: torch.Tensor, gate: torch.Tensor, conv: nn.Conv2d, residual: torch.Tensor) -> torch.Tensor:
    """residual + conv(y * gate) for a 1x1 `conv`, without ever writing y * gate.

    y is the widest tensor of an MBConv block (4x its width); multiplying it by the SE gate
    wrote and re-read it once more before the conv. The gate scales the conv's input
    channels, so it goes into a per-image copy of the (C4 x C) weight instead and one
    batched matmul reads y once, with the residual added in its epilogue. Compiled CoAtNet-2
    on an H100: +5.9% training, +11.6% inference (results/h100/levers.md).
    """
    B, C4, H, W = y.shape
    C = conv.out_channels
    tokens = y.permute(0, 2, 3, 1).reshape(B, H * W, C4)  # (B, HW, C4): a free view when channels-last
    weight = conv.weight.view(C, C4).t() * gate.view(B, C4, 1)  # (C4, C) x (B, C4, 1) -> (B, C4, C)
    residual = residual + conv.bias.view(1, C, 1, 1)
    residual = residual.permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, HW, C)
    out = torch.baddbmm(residual, tokens, weight)  # (B, HW, C)
    return out.view(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last memory


class MBConv(nn.Module):
    """Pre-norm inverted bottleneck: x + Project(SE(DWConv(Expand(Norm(x))))), Eqn 5 when downsampling."""

    def __init__(self, cin: int, cout: int, stride: int, config: CoAtNetConfig):
        super().__init__()
        norm = mbconv_norm(config.norm)
        mid = cout * config.expand_ratio
        expand_stride, dw_stride = (stride, 1) if config.downsample is Downsample.CONV else (1, stride)
        self.shortcut = ConvShortcut(cin, cout, stride)
        self.norm = norm(cin)
        self.expand = nn.Conv2d(cin, mid, 1, stride=expand_stride, bias=False)
        self.expand_norm = norm(mid)
        self.dwconv = nn.Conv2d(mid, mid, 3, stride=dw_stride, padding=1, groups=mid, bias=False)
        self.dwconv_norm = norm(mid)
        self.se = SqueezeExcite(mid, max(1, int(cin * config.se_ratio)))
        self.project = nn.Conv2d(mid, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.expand_norm(self.expand(self.norm(x))))
        y = F.gelu(self.dwconv_norm(self.dwconv(y)))
        return scaled_pointwise_conv(y, self.se(y), self.project, self.shortcut(x))


class ConvShortcut(nn.Module):
    """Identity, or Proj(Pool(x)) on (B, C, H, W) when the block changes resolution or width."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.pool = nn.MaxPool2d(3, stride, 1) if stride > 1 else nn.Identity()
        self.proj = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class RelativePositionBias(nn.Module):
    """The 2-D relative position bias w[i - j]: a (2H-1) x (2W-1) table per head."""

    def __init__(self, heads: int, grid: int):
        super().__init__()
        span = 2 * grid - 1
        self.grid = grid
        self.table = nn.Parameter(torch.zeros(heads, span, span))
        nn.init.trunc_normal_(self.table, std=0.02)
        self.register_buffer("index", self.relative_index(), persistent=False)

    def relative_index(self) -> torch.Tensor:
        """For each (query i, key j) pair, the flat table position of w[i - j]: shape (N*N,)."""
        grid, span = self.grid, 2 * self.grid - 1
        axis = torch.arange(grid, device=self.table.device)
        coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij")).flatten(1)  # (2, N)
        delta = coords[:, :, None] - coords[:, None, :] + grid - 1  # (2, N, N), each in [0, span)
        return (delta[0] * span + delta[1]).flatten()

    def forward(self) -> torch.Tensor:
        n = self.grid * self.grid
        # (heads, span*span) gathered at (N*N) -> (heads, N, N)
        return self.table.flatten(1)[:, self.index].view(-1, n, n)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A table trained at another image size is resized bilinearly (Section 4.1).
        key = prefix + "table"
        if key in state_dict and state_dict[key].shape != self.table.shape:
            table = state_dict[key][None]  # (1, heads, span', span')
            state_dict[key] = F.interpolate(table, size=self.table.shape[1:], mode="bilinear")[0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class RelativeAttention(nn.Module):
    """Global multi-head self-attention with softmax(q.k + w[i-j]), through one fused SDPA call."""

    def __init__(self, cin: int, cout: int, grid: int, config: CoAtNetConfig):
        super().__init__()
        self.heads = cout // config.head_size
        self.qkv = nn.Linear(cin, 3 * cout)
        self.proj = nn.Linear(cout, cout)
        self.bias = RelativePositionBias(self.heads, grid) if config.rel_attn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        # (B, H, W, Cin) -> (B, N, 3, heads, d) -> (3, B, heads, N, d)
        qkv = self.qkv(x).view(B, H * W, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # The bias is gathered once per call and broadcast over the batch, never copied per
        # image: a dense (B, heads, N, N) mask cost 6% of a compiled CoAtNet-2 inference step
        # (results/h100/micro_paths.md). torch 2.11 compiles the broadcast mask fine.
        mask = self.bias().to(q.dtype)[None] if self.bias is not None else None  # (1, heads, N, N)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, N, d)
        y = y.transpose(1, 2).reshape(B, H, W, -1)  # (B, H, W, heads*d)
        return self.proj(y)


class FeedForward(nn.Module):
    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels * ratio)
        self.fc2 = nn.Linear(channels * ratio, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on (B, H, W, C); Eqn 4 when it downsamples:
    x <- Proj(Pool(x)) + Attention(Pool(Norm(x)))."""

    def __init__(self, cin: int, cout: int, stride: int, grid: int, config: CoAtNetConfig):
        super().__init__()
        self.pool = max_pool_nhwc if stride > 1 else nn.Identity()
        self.shortcut = nn.Linear(cin, cout) if cin != cout else nn.Identity()  # 1x1 conv on (B, H, W, C)
        self.norm1 = LayerNorm(cin)
        self.attn = RelativeAttention(cin, cout, grid, config)
        self.norm2 = LayerNorm(cout)
        self.ffn = FeedForward(cout, config.ffn_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shortcut(self.pool(x)) + self.attn(self.pool(self.norm1(x)))
        return x + self.ffn(self.norm2(x))


class Stage(nn.Module):
    def __init__(self, cin: int, stage: StageConfig, grid: int, config: CoAtNetConfig):
        super().__init__()
        self.block_type = stage.block
        blocks = []
        for i in range(stage.depth):
            stride = stage.stride if i == 0 else 1
            c_in = cin if i == 0 else stage.channels
            if stage.block is BlockType.CONV:
                blocks.append(MBConv(c_in, stage.channels, stride, config))
            else:
                blocks.append(TransformerBlock(c_in, stage.channels, stride, grid, config))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Each stage takes and returns (B, C, H, W); transformer stages work on (B, H, W, C)
        # inside, a free view when the input is channels-last.
        if self.block_type is BlockType.CONV:
            return self.blocks(x)
        return self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ClassifierHead(nn.Module):
    """Global average pooling, then one linear classifier (after the departure-from-paper norm)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.norm = LayerNorm(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x.mean((2, 3))))  # (B, C, H, W) -> (B, classes)


class CoAtNet(nn.Module):
    def __init__(self, config: CoAtNetConfig):
        super().__init__()
        self.config = config
        self.stem = Stem(config.stem_depth, config.stem_channels)
        stages, cin = [], config.stem_channels
        for i, stage in enumerate(config.stages):
            stages.append(Stage(cin, stage, config.grid(i), config))
            cin = stage.channels
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(cin, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C, H/32, W/32)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def compile_units(self) -> list[nn.Module]:
        """The regions torch.compile takes one at a time: the stem, every block, the head."""
        return [self.stem, *(block for stage in self.stages for block in stage.blocks), self.head]


def build_model(config: CoAtNetConfig, device: torch.device | str | None = None) -> CoAtNet:
    """Build on `device` directly (the meta device allocates nothing: used for counting)."""
    with torch.device(device or "cpu"):
        return CoAtNet(config)

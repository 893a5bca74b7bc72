"""CoAtNet configurations: the paper's variants (Tables 3, 11, 12) and the ablation knobs.

A config is a frozen dataclass; a knob is applied with `dataclasses.replace`, and every
config is validated before any tensor is allocated, so a bad combination fails fast with
a message that names the fix.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import Enum

from coatbench.errors import CoatbenchError


class BlockType(str, Enum):
    CONV = "C"  # MBConv
    TRANSFORMER = "T"  # pre-norm transformer block with relative attention


class Norm(str, Enum):
    """Normalisation inside MBConv blocks (Table 8). Transformer blocks always use LayerNorm."""

    BATCH = "bn"
    LAYER = "ln"


class Downsample(str, Enum):
    """Where an MBConv block that halves the resolution puts its stride."""

    CONV = "conv"  # Eqn 5: stride 2 in the first 1x1 conv (the main-text variant)
    DWCONV = "dwconv"  # Table 9: stride 2 in the depthwise conv ("helpful but slower")


@dataclass(frozen=True)
class StageConfig:
    block: BlockType
    depth: int
    channels: int
    stride: int = 2  # the first block halves the resolution; CoAtNet-6/7's S3b keeps it


@dataclass(frozen=True)
class CoAtNetConfig:
    name: str
    stem_depth: int
    stem_channels: int
    stages: tuple[StageConfig, ...]  # S1..S4 (CoAtNet-6/7 split S3 into an MBConv and a TFM part)
    head_size: int = 32
    norm: Norm = Norm.BATCH
    rel_attn: bool = True
    downsample: Downsample = Downsample.CONV
    image_size: int = 224
    num_classes: int = 1000
    expand_ratio: int = 4  # MBConv inverted bottleneck: 1x1 expand to 4x the output width
    se_ratio: float = 0.25  # squeeze-excitation width relative to the block's input width
    ffn_ratio: int = 4

    @property
    def mixed_s3(self) -> bool:
        """CoAtNet-6/7: S3 is MBConv blocks followed by transformer blocks at the same resolution."""
        return len(self.stages) != 4

    @property
    def layout(self) -> str:
        """Blocks per stage [S0..S4] as the paper's Table 7 writes them, e.g. "2,2,6,14,2"."""
        depths = [self.stem_depth] + [s.depth for s in self.stages]
        if self.mixed_s3:
            depths = depths[:3] + [f"{self.stages[2].depth}+{self.stages[3].depth}"] + depths[5:]
        return ",".join(str(d) for d in depths)

    @property
    def blocks(self) -> str:
        """Block type of S1..S4, e.g. "C-C-T-T"; CoAtNet-6/7's mixed S3 shows as "C+T"."""
        types = [s.block.value for s in self.stages]
        if self.mixed_s3:
            types = types[:2] + [f"{types[2]}+{types[3]}"] + types[4:]
        return "-".join(types)

    def grid(self, stage_index: int) -> int:
        """Side of the feature map that stage `stage_index` (0-based over `stages`) works on."""
        halvings = 1 + sum(1 for s in self.stages[: stage_index + 1] if s.stride == 2)
        return self.image_size // 2**halvings

    def spec(self) -> dict:
        """The knobs that define this model, as they appear in every result row."""
        return {
            "model": self.name,
            "image_size": self.image_size,
            "head_size": self.head_size,
            "norm": self.norm.value,
            "layout": self.layout,
            "blocks": self.blocks,
            "rel_attn": self.rel_attn,
            "downsample": self.downsample.value,
            "num_classes": self.num_classes,
        }


def _four_stage(stem: int, widths: tuple[int, ...], depths: tuple[int, ...], head_size: int = 32):
    types = (BlockType.CONV, BlockType.CONV, BlockType.TRANSFORMER, BlockType.TRANSFORMER)
    stages = tuple(StageConfig(t, d, w) for t, d, w in zip(types, depths, widths))
    return dict(stem_depth=2, stem_channels=stem, stages=stages, head_size=head_size)


def _mixed_s3(stem: int, s1: int, s2: int, s3c: int, s3t: int, s4: int):
    stages = (
        StageConfig(BlockType.CONV, 2, s1),
        StageConfig(BlockType.CONV, 4, s2),
        StageConfig(BlockType.CONV, 8, s3c),
        StageConfig(BlockType.TRANSFORMER, 42, s3t, stride=1),
        StageConfig(BlockType.TRANSFORMER, 2, s4),
    )
    return dict(stem_depth=2, stem_channels=stem, stages=stages, head_size=128)


# Table 3 (CoAtNet-0..5), Tables 11-12 (CoAtNet-6/7).
VARIANTS: dict[str, CoAtNetConfig] = {
    name: CoAtNetConfig(name=name, **kwargs)
    for name, kwargs in {
        "coatnet-0": _four_stage(64, (96, 192, 384, 768), (2, 3, 5, 2)),
        "coatnet-1": _four_stage(64, (96, 192, 384, 768), (2, 6, 14, 2)),
        "coatnet-2": _four_stage(128, (128, 256, 512, 1024), (2, 6, 14, 2)),
        "coatnet-3": _four_stage(192, (192, 384, 768, 1536), (2, 6, 14, 2)),
        "coatnet-4": _four_stage(192, (192, 384, 768, 1536), (2, 12, 28, 2)),
        "coatnet-5": _four_stage(192, (256, 512, 1280, 2048), (2, 12, 28, 2), head_size=64),
        "coatnet-6": _mixed_s3(192, 192, 384, 768, 1536, 2048),
        "coatnet-7": _mixed_s3(192, 256, 512, 1024, 2048, 3072),
    }.items()
}

# Table 7: blocks per stage [S0, S1, S2, S3, S4], S2 + S3 fixed.
NAMED_LAYOUTS: dict[str, tuple[int, ...]] = {
    "v0": (2, 2, 6, 14, 2),
    "v1": (2, 2, 2, 18, 2),
    "v2": (2, 2, 8, 12, 2),
}

BLOCK_PATTERNS = ("C-C-C-C", "C-C-C-T", "C-C-T-T", "C-T-T-T")


def canonical_name(model: str) -> str:
    """`coatnet-2`, `coatnet_2`, `CoAtNet-2` and `coatnet2` all name the same variant."""
    match = re.fullmatch(r"coatnet[-_]?(\d+)", model.strip().lower())
    name = f"coatnet-{match.group(1)}" if match else model
    if name not in VARIANTS:
        raise CoatbenchError(f"unknown model {model!r}: choose one of {', '.join(VARIANTS)}")
    return name


def parse_layout(layout: str) -> tuple[int, ...]:
    """`v0|v1|v2` (Table 7) or five comma-separated block counts for S0..S4."""
    key = layout.strip().lower()
    if key in NAMED_LAYOUTS:
        return NAMED_LAYOUTS[key]
    try:
        depths = tuple(int(part) for part in key.split(","))
    except ValueError:
        depths = ()
    if len(depths) != 5 or min(depths) < 1:
        raise CoatbenchError(
            f"invalid layout {layout!r}: give five positive block counts for S0..S4 "
            f"(e.g. 2,2,6,14,2) or one of {', '.join(NAMED_LAYOUTS)}"
        )
    return depths


def parse_blocks(blocks: str) -> tuple[BlockType, ...]:
    key = blocks.strip().upper()
    if key not in BLOCK_PATTERNS:
        raise CoatbenchError(f"invalid blocks {blocks!r}: choose one of {', '.join(BLOCK_PATTERNS)}")
    return tuple(BlockType(t) for t in key.split("-"))


def build_config(
    model: str = "coatnet-2",
    *,
    head_size: int | None = None,
    norm: Norm | str | None = None,
    layout: str | None = None,
    blocks: str | None = None,
    rel_attn: bool | None = None,
    downsample: Downsample | str | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
) -> CoAtNetConfig:
    """The named variant with the given knobs changed (None keeps the paper's default)."""
    config = VARIANTS[canonical_name(model)]
    if (layout is not None or blocks is not None) and config.mixed_s3:
        raise CoatbenchError(
            f"{config.name} has a mixed S3 (MBConv then transformer blocks): --layout and --blocks "
            "apply to CoAtNet-0..5 only"
        )
    stages = config.stages
    stem_depth = config.stem_depth
    if layout is not None:
        stem_depth, *depths = parse_layout(layout)
        stages = tuple(dataclasses.replace(s, depth=d) for s, d in zip(stages, depths))
    if blocks is not None:
        stages = tuple(dataclasses.replace(s, block=t) for s, t in zip(stages, parse_blocks(blocks)))
    changes = dict(
        head_size=head_size,
        norm=_enum(Norm, norm, "norm"),
        rel_attn=rel_attn,
        downsample=_enum(Downsample, downsample, "downsample"),
        image_size=image_size,
        num_classes=num_classes,
    )
    config = dataclasses.replace(
        config,
        stem_depth=stem_depth,
        stages=stages,
        **{k: v for k, v in changes.items() if v is not None},
    )
    validate(config)
    return config


def _enum(kind: type[Enum], value, option: str):
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(str(value).lower())
    except ValueError:
        choices = "|".join(m.value for m in kind)
        raise CoatbenchError(f"invalid --{option} {value!r}: choose {choices}") from None


def validate(config: CoAtNetConfig) -> None:
    """Raise CoatbenchError for any combination the model cannot be built with."""
    if config.image_size < 32 or config.image_size % 32:
        raise CoatbenchError(
            f"image size {config.image_size} is not a positive multiple of 32 "
            "(the network halves the resolution five times): try 224, 256, 384 or 512"
        )
    if config.num_classes < 1:
        raise CoatbenchError(f"--num-classes must be at least 1, got {config.num_classes}")
    if config.head_size < 1:
        raise CoatbenchError(f"--head-size must be positive, got {config.head_size}")
    for stage in config.stages:
        if stage.block is BlockType.TRANSFORMER and stage.channels % config.head_size:
            widths = sorted({s.channels for s in config.stages if s.block is BlockType.TRANSFORMER})
            raise CoatbenchError(
                f"head size {config.head_size} does not divide the transformer width "
                f"{stage.channels} of {config.name}: pick a divisor of {', '.join(map(str, widths))} "
                "(e.g. 32 or 64)"
            )

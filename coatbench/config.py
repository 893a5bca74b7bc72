"""CoAtNet configurations: the paper's variants (Tables 3, 11, 12) and the ablation knobs.

A config is a frozen dataclass; a knob is applied with `dataclasses.replace`, and every
config is validated before any tensor is allocated, so a bad combination fails fast with
a message that names the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

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
        """The model and the value of every knob, as they appear in every result row."""
        values = {name: getattr(self, name) for name in KNOB_NAMES}
        return {"model": self.name, **{k: v.value if isinstance(v, Enum) else v for k, v in values.items()}}


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


@dataclass(frozen=True)
class Knob:
    """One ablation knob: a keyword of `build_config`, an option of every CLI command that
    builds a model, a field of a suite row and a column of the accuracy table."""

    name: str
    type: type  # int, str, bool or an Enum of this module
    help: str
    ablation: bool = True  # a suite row and an accuracy record may set it (image_size is the setting's)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, value):
        """`value` as this knob's type; text (from TOML, CSV or a row) is parsed."""
        if isinstance(value, self.type) and not (self.type is int and isinstance(value, bool)):
            return value
        text = str(value).strip().lower()
        if self.type is bool and text in ("true", "false"):
            return text == "true"
        if issubclass(self.type, Enum):
            try:
                return self.type(text)
            except ValueError:
                choices = "|".join(m.value for m in self.type)
                raise CoatbenchError(f"invalid {self.option} {value!r}: choose {choices}") from None
        if self.type is int and text.lstrip("-").isdigit():
            return int(text)
        if self.type is str and isinstance(value, str):
            return value
        expected = {bool: "true or false", int: "an integer", str: "text"}[self.type]
        raise CoatbenchError(f"invalid {self.option} {value!r}: give {expected}")


# Adding a knob: an entry here, its effect in `build_config` and the model; the CLI, suites,
# accuracy records and result rows take it from this table.
KNOBS: tuple[Knob, ...] = (
    Knob("head_size", int, "Attention head size. Default: 32; 64 for CoAtNet-5; 128 for -6/7."),
    Knob("norm", Norm, "Norm inside MBConv blocks (Table 8). Default: bn."),
    Knob("layout", str, "Blocks per stage S0..S4, e.g. 2,2,8,12,2, or v0|v1|v2 (Table 7)."),
    Knob("blocks", str, "Block type of S1..S4: C-C-C-C, C-C-C-T, C-C-T-T or C-T-T-T."),
    Knob("rel_attn", bool, "Relative position bias (Table 6). Default: on."),
    Knob("downsample", Downsample, "MBConv stride in the 1x1 conv (Eqn 5) or the dwconv (Table 9). Default: conv."),
    Knob("image_size", int, "Input resolution, a multiple of 32. Default: 224.", ablation=False),
    Knob("num_classes", int, "Classifier outputs. Default: 1000.", ablation=False),
)
KNOB_NAMES = tuple(k.name for k in KNOBS)
ABLATIONS = tuple(k.name for k in KNOBS if k.ablation)
_BY_NAME = {k.name: k for k in KNOBS}


def parse_knobs(values: dict, allowed: tuple[str, ...] = KNOB_NAMES) -> dict:
    """{name: value} with each value parsed; None values are dropped (the paper's default)."""
    unknown = set(values) - set(allowed)
    if unknown:
        raise CoatbenchError(f"unknown knob(s) {', '.join(sorted(unknown))}: use {', '.join(allowed)}")
    return {name: _BY_NAME[name].parse(value) for name, value in values.items() if value is not None}


def build_config(model: str = "coatnet-2", **knobs) -> CoAtNetConfig:
    """The named variant with the given knobs changed (None keeps the paper's default)."""
    knobs = parse_knobs(knobs)
    config = VARIANTS[canonical_name(model)]
    layout, blocks = knobs.pop("layout", None), knobs.pop("blocks", None)
    if (layout is not None or blocks is not None) and config.mixed_s3:
        raise CoatbenchError(
            f"{config.name} has a mixed S3 (MBConv then transformer blocks): --layout and --blocks "
            "apply to CoAtNet-0..5 only"
        )
    stages, stem_depth = config.stages, config.stem_depth
    if layout is not None:
        stem_depth, *depths = parse_layout(layout)
        stages = tuple(dataclasses.replace(s, depth=d) for s, d in zip(stages, depths))
    if blocks is not None:
        stages = tuple(dataclasses.replace(s, block=t) for s, t in zip(stages, parse_blocks(blocks)))
    config = dataclasses.replace(config, stem_depth=stem_depth, stages=stages, **knobs)
    validate(config)
    return config


# Models coatbench does not define: "timm:<name>" (any timm model, built without weights), or
# "<module>:<function>", a factory that returns an nn.Module, called with the row's kwargs.
TIMM_PREFIX = "timm:"
_TIMM_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
EXTERNAL_EXAMPLES = "timm:coatnet_0_rw_224 or mypkg.models:build"


@dataclass(frozen=True)
class ExternalModel:
    """A model from timm or from a factory, as a suite row and a results row name it.

    Built by `coatbench.networks` (which imports torch); here only what identifies it. `image_size`
    None is the model's own (timm's pretrained config; 224 for a factory) and `num_classes` None
    its output width, both filled in by `networks.resolve` before anything is measured: a row
    holds the values it was measured with."""

    model: str  # "timm:coatnet_0_rw_224" or "mypkg.models:build"
    kwargs_json: str = "{}"  # the keyword arguments, canonical JSON (so that the config hashes)
    image_size: int | None = None
    num_classes: int | None = None

    @property
    def name(self) -> str:
        return self.model

    @property
    def is_timm(self) -> bool:
        return self.model.startswith(TIMM_PREFIX)

    @property
    def target(self) -> str:
        """The timm name, or the factory's `module:function`."""
        return self.model.removeprefix(TIMM_PREFIX)

    @property
    def kwargs(self) -> dict:
        return json.loads(self.kwargs_json)

    def spec(self) -> dict:
        return dict(model=self.model, kwargs=self.kwargs, image_size=self.image_size, num_classes=self.num_classes)

    def matches(self, network: Mapping[str, Any]) -> bool:
        """Whether a row's network is this model as measured: the same model and kwargs, and
        the input size and classes where this one names them."""
        mine = self.spec()
        return all(network.get(k) == v for k, v in mine.items() if v is not None or k in ("model", "kwargs"))


Network = CoAtNetConfig | ExternalModel  # what a cell measures


def is_external(model: str) -> bool:
    return ":" in model


def external_model(
    model: str, kwargs: Mapping[str, Any] | None = None, image_size: int | None = None, num_classes=None
) -> ExternalModel:
    """`model` ("timm:<name>" or "<module>:<function>") with `kwargs`, its syntax and values
    checked (nothing imported: `networks.resolve` checks that it exists)."""
    model = model.strip()
    module, _, function = model.partition(":")
    if model.startswith(TIMM_PREFIX):
        if not _TIMM_NAME.fullmatch(model.removeprefix(TIMM_PREFIX)):
            raise CoatbenchError(f"invalid timm model {model!r}: give timm:<name>, e.g. timm:coatnet_0_rw_224")
    elif not (_DOTTED.fullmatch(module) and _DOTTED.fullmatch(function)):
        raise CoatbenchError(
            f"invalid model {model!r}: give a CoAtNet variant ({', '.join(VARIANTS)}), timm:<name>, or a "
            "factory as module:function (e.g. mypkg.models:build)"
        )
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise CoatbenchError(f"kwargs of {model} must be a table of name = value, got {kwargs!r}")
    try:
        kwargs_json = json.dumps(dict(kwargs), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CoatbenchError(f"kwargs of {model}: {error}: give text, numbers, booleans, lists and tables") from None
    for name, value in (("image size", image_size), ("num_classes", num_classes)):
        limit = MAX_IMAGE_SIZE if name == "image size" else MAX_CLASSES
        if value is not None and (type(value) is not int or not 1 <= value <= limit):
            raise CoatbenchError(f"{name} of {model} must be an integer from 1 to {limit:,}, got {value!r}")
    return ExternalModel(model, kwargs_json, image_size, num_classes)


def build_network(model: str = "coatnet-2", kwargs: Mapping[str, Any] | None = None, **knobs) -> Network:
    """A CoAtNet variant with its knobs (`build_config`), or an external model with its kwargs
    (which take no knob but the input size)."""
    if not is_external(model):
        if kwargs:
            raise CoatbenchError(f"kwargs are for timm models and factories; {model} takes knobs (e.g. --head-size)")
        return build_config(model, **knobs)
    given = {k: v for k, v in knobs.items() if v is not None and k != "image_size"}
    if given:
        named = ", ".join(f"{k} ({_BY_NAME[k].option})" for k in given)  # a suite's field, the CLI's option
        raise CoatbenchError(f"{named}: a knob of the paper's CoAtNet; for {model} pass kwargs instead")
    image_size = knobs.get("image_size")
    return external_model(model, kwargs, None if image_size is None else _BY_NAME["image_size"].parse(image_size))


def network_problem(network: Mapping[str, Any]) -> str | None:
    """Why a results row's network (`CoAtNetConfig.spec()`: the model and its knobs) is not one
    that coatbench builds, or None. Each knob must be a known one whose value, as written, is
    what `build_config` makes of it: a head size of "64" or 64.5 is not a head size of 64."""
    return _network_problem(json.dumps(dict(network), sort_keys=True))


@functools.lru_cache(maxsize=1024)  # a file holds few networks in many rows
def _network_problem(key: str) -> str | None:
    network = json.loads(key)
    model = network.pop("model", None)
    if not isinstance(model, str):
        return f"model {model!r} is not a model name"
    if is_external(model):
        fields = set(ExternalModel(model).spec()) - {"model"}
        if set(network) != fields:
            return f"the fields of {model} are {', '.join(sorted(fields))}, not {', '.join(sorted(network))}"
        try:
            external_model(model, network["kwargs"], network["image_size"], network["num_classes"])
        except CoatbenchError as error:
            return str(error)
        return None if network["image_size"] is not None else f"image_size of {model} is missing"
    try:
        default = build_config(model).spec()
        unknown = sorted(set(network) - set(default))
        if unknown:
            return f"unknown knob(s) {', '.join(unknown)}: the knobs are {', '.join(KNOB_NAMES)}"
        # knobs at the model's own value are not passed: CoAtNet-6/7 take no --layout at all
        changed = {k: v for k, v in network.items() if v != default[k] or type(v) is not type(default[k])}
        built = build_config(model, **changed).spec()
    except CoatbenchError as error:  # said as the row's fields, not as the CLI's options
        return functools.reduce(lambda text, k: text.replace(f"{k.option} ", f"{k.name} "), KNOBS, str(error))
    wrong = [k for k, v in network.items() if built[k] != v or type(built[k]) is not type(v)]
    return f"{', '.join(f'{k} {network[k]!r}' for k in wrong)} is not a value of that knob" if wrong else None


# Short names of knob values, for tables that must fit a terminal (a legend spells them out).
_SHORT = {
    "head_size": lambda v: f"hd{v}",
    "norm": lambda v: str(getattr(v, "value", v)).upper(),
    "layout": lambda v: str(v),
    "blocks": lambda v: str(v),
    "rel_attn": lambda v: "rel" if _BY_NAME["rel_attn"].parse(v) else "no-rel",
    "downsample": lambda v: "dw" if str(getattr(v, "value", v)) == "dwconv" else "conv",
    "image_size": lambda v: f"{v}px",
    "num_classes": lambda v: f"{v}cls",
}


def short_name(knobs) -> str:
    """ "hd64", "LN", "hd64+LN": the knobs a variant sets, briefly ("base" when none)."""
    return "+".join(_SHORT[name](value) for name, value in dict(knobs).items()) or "base"


def variant_name(spec: dict) -> str:
    """The model and every knob that differs from its paper default, e.g. "coatnet-2 head size 64 @384".
    A knob the spec lacks is at its default (rows of vs_timm's format name the model only), and
    another implementation's model is named after it ("timm coatnet-2"); an external model by its
    name and kwargs ("timm:resnet18 drop_rate=0.1")."""
    size = "" if spec.get("image_size") in (224, None) else f" @{spec['image_size']}"
    if is_external(spec["model"]):
        kwargs = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(dict(spec.get("kwargs") or {}).items()))
        return " ".join(filter(None, [spec["model"], kwargs])) + size
    default = build_config(spec["model"], image_size=spec["image_size"]).spec()
    changed = [
        f"{name.replace('_', ' ')} {spec[name]}"
        for name in KNOB_NAMES
        if name != "image_size" and spec.get(name, default[name]) != default[name]
    ]
    implementation = spec.get("implementation", "coatbench")
    named = [spec["model"]] if implementation == "coatbench" else [implementation, spec["model"]]
    return " ".join([*named, *changed]) + size


# Beyond these a model cannot be built or counted in reasonable time and memory (the paper's
# largest: 42 blocks in a stage, 512 px, JFT's 18k classes); refused before anything is built.
MAX_BLOCKS_PER_STAGE = 128
MAX_IMAGE_SIZE = 4096
MAX_CLASSES = 1_000_000


def validate(config: CoAtNetConfig) -> None:
    """Raise CoatbenchError for any combination the model cannot be built with."""
    if config.image_size < 32 or config.image_size % 32:
        raise CoatbenchError(
            f"image size {config.image_size} is not a positive multiple of 32 "
            "(the network halves the resolution five times): try 224, 256, 384 or 512"
        )
    if config.image_size > MAX_IMAGE_SIZE:
        raise CoatbenchError(f"image size {config.image_size} is over the limit of {MAX_IMAGE_SIZE}: try 224 to 512")
    if not 1 <= config.num_classes <= MAX_CLASSES:
        raise CoatbenchError(f"--num-classes must be between 1 and {MAX_CLASSES:,}, got {config.num_classes}")
    depths = [config.stem_depth] + [s.depth for s in config.stages]
    if max(depths) > MAX_BLOCKS_PER_STAGE:
        raise CoatbenchError(
            f"a stage of {max(depths):,} blocks is over the limit of {MAX_BLOCKS_PER_STAGE} per stage: "
            "the paper's deepest has 42 (e.g. 2,2,6,14,2)"
        )
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

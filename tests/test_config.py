import pytest

from coatbench.config import BlockType, Downsample, Norm, build_config, canonical_name
from coatbench.errors import CoatbenchError


@pytest.mark.parametrize("name", ["coatnet-2", "coatnet_2", "CoAtNet-2", "coatnet2"])
def test_model_name_spellings(name):
    assert canonical_name(name) == "coatnet-2"


def test_default_head_size_per_model():
    assert [build_config(f"coatnet-{i}").head_size for i in range(8)] == [32] * 5 + [64, 128, 128]


def test_layout_names_and_lists():
    assert build_config("coatnet-2", layout="v1").layout == "2,2,2,18,2"
    assert build_config("coatnet-2", layout="v2").layout == "2,2,8,12,2"
    assert build_config("coatnet-2", layout="2,2,8,12,2").layout == "2,2,8,12,2"


def test_blocks_pattern_sets_stage_types():
    config = build_config("coatnet-0", blocks="C-T-T-T")
    assert [s.block for s in config.stages] == [BlockType.CONV] + [BlockType.TRANSFORMER] * 3
    assert config.blocks == "C-T-T-T"


def test_mixed_s3_is_described():
    config = build_config("coatnet-6")
    assert config.blocks == "C-C-C+T-T"
    assert config.layout == "2,2,4,8+42,2"


def test_enum_knobs_accept_strings():
    config = build_config("coatnet-0", norm="LN", downsample="dwconv")
    assert config.norm is Norm.LAYER and config.downsample is Downsample.DWCONV


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="coatnet-8"), "unknown model"),
        (dict(head_size=48), "does not divide"),
        (dict(head_size=0), "must be positive"),
        (dict(image_size=200), "multiple of 32"),
        (dict(image_size=0), "multiple of 32"),
        (dict(layout="v7"), "invalid layout"),
        (dict(layout="2,2,6,14"), "five positive block counts"),
        (dict(layout="2,2,0,14,2"), "five positive block counts"),
        (dict(blocks="T-C-C-T"), "invalid blocks"),
        (dict(num_classes=0), "num-classes"),
        (dict(norm="gn"), "--norm"),
        (dict(model="coatnet-7", layout="v0"), "mixed S3"),
    ],
)
def test_invalid_combinations_fail_before_building(kwargs, message):
    with pytest.raises(CoatbenchError, match=message):
        build_config(**{"model": "coatnet-2", **kwargs})

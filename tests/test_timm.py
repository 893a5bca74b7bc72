"""timm models under coatbench's rounds and verdicts, on the CPU with timm's tiny test models.

They need timm and a torchvision built for this torch: `.ci/run` runs them in its second venv
(PyPI's torch 2.9.0, torch_xla, timm), with `-m "xla or timm"`."""

import json

import pytest
from conftest import assert_one_line_error, coatbench, one_claim_verdict

from coatbench.config import build_network
from coatbench.counting import count
from coatbench.networks import resolve
from coatbench.results import Status, read_rows
from coatbench.suite import load_suite

pytestmark = pytest.mark.timm
timm = pytest.importorskip("timm")

QUICK = ["--device", "cpu", "--batch-sizes", "2", "--min-time", "0.05", "--max-time", "0.3"]


@pytest.mark.parametrize("name", ["test_efficientnet", "test_coatnet", "test_vit", "resnet10t"])
def test_counting_matches_timms_own_parameter_count(name):
    counted = count(resolve(build_network(f"timm:{name}")))
    model = timm.create_model(name, pretrained=False)
    assert counted.params == sum(p.numel() for p in model.parameters())
    assert counted.macs > 0 and counted.train_flops > 2 * counted.macs  # backward costs more than forward
    assert counted.config.image_size == model.pretrained_cfg["input_size"][-1]  # timm's own input size


def test_a_timm_architecture_config_is_diffed_field_by_field():
    from coatbench.networks import architecture, build

    described = {}
    for name in ("test_coatnet", "test_maxvit"):
        network = resolve(build_network(f"timm:{name}"))
        described[name] = architecture(network, build(network, "meta"))
    coat, max_vit = described["test_coatnet"], described["test_maxvit"]
    assert coat["config.depths"] == "(1, 1, 2, 1)" and max_vit["config.depths"] == "(1, 1, 1, 1)"
    assert coat["config.conv_cfg.stride_mode"] == "pool"


def test_a_timm_model_gets_a_speed_row(tmp_path):
    out = tmp_path / "rows.jsonl"
    result = coatbench("speed", "timm:test_efficientnet", "--mode", "infer", *QUICK, "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert {r.status for r in rows} == {Status.OK}
    assert rows[0].spec.network == {"model": "timm:test_efficientnet", "kwargs": {}, "image_size": 160,
                                    "num_classes": 1000}  # fmt: skip
    assert rows[0].model_size.params == sum(p.numel() for p in timm.create_model("test_efficientnet").parameters())


SUITE = """
description = "timm's tiny EfficientNet, BatchNorm against LayerNorm"
modes = ["infer"]
batch_sizes = [2]
[[settings]]
name = "test nets"
model = "timm:test_efficientnet"
rows = [
  { label = "BN" },
  { label = "LN", model = "timm:test_efficientnet_ln" },
]
[[claims]]
text = "BatchNorm is faster"
row = "LN"
faster = "baseline"
min = 0.0
"""


def test_a_two_row_timm_suite_gets_a_verdict_and_says_what_differs(tmp_path):
    verdict, out, suite_file = one_claim_verdict(tmp_path, SUITE, "--min-time", "0.05", "--max-time", "0.3")
    differs = {d.what: (d.baseline, d.variant) for d in verdict.differences}
    assert differs["model"] == ("timm:test_efficientnet", "timm:test_efficientnet_ln")
    assert any(what.startswith("modules.") and "Norm" in what for what in differs), differs
    shown = json.loads(coatbench("report", str(out), "--suite", str(suite_file), "--format", "json").stdout)
    assert shown["reports"][0]["verdicts"][0]["differences"]


def test_timm_bad_input_gets_one_line():
    assert_one_line_error(coatbench("count", "timm:coatnet_0_rw_22"), "unknown timm model", "timm:coatnet_0_rw_224")
    assert_one_line_error(coatbench("count", "timm:test_vit", "--kwargs", '{"depht": 2}'), "refuses its kwargs")
    assert_one_line_error(coatbench("count", "timm:test_vit", "--head-size", "64"), "--head-size", "kwargs")


def test_the_timm_norm_suite_names_timms_pair():
    suite = load_suite("timm-norm")
    models = [row.config.model for row in suite.settings[0].rows]
    assert models == ["timm:coatnet_bn_0_rw_224", "timm:coatnet_0_rw_224"]
    assert suite.claims[0].selects(suite.settings[0]).config.model == "timm:coatnet_0_rw_224"
    for model in models:  # both exist in this timm and build without weights
        assert resolve(build_network(model)).image_size == 224

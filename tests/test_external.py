"""Your own nn.Module under the same rounds and verdicts: a factory defined here, in the test,
named `test_external:<function>` (this folder is put on the subprocesses' PYTHONPATH)."""

import json

from conftest import assert_one_line_error, coatbench, one_claim_verdict
from torch import nn

from coatbench.accuracy import load as load_accuracies
from coatbench.config import ExternalModel, build_network, external_model, network_problem
from coatbench.counting import count
from coatbench.networks import resolve
from coatbench.report import pending
from coatbench.results import Status, network_key, read_rows
from coatbench.suite import load_suite

QUICK = ["--device", "cpu", "--batch-sizes", "2", "--min-time", "0.05", "--max-time", "0.2"]


def tiny_net(width: int = 8, classes: int = 7) -> nn.Module:
    """A conv net of any input size: a factory as a user writes one."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, classes),
    )


class Cumulative(nn.Module):
    """A net with an op (cumsum) that the counter has no rule for."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).cumsum(-1).mean((2, 3))


def cumulative() -> nn.Module:
    return Cumulative()


def fixed_size_net() -> nn.Module:
    """Takes 32x32 images only: its forward fails at any other size."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))


def not_a_module():
    return {"weights": 1}


def test_a_factory_is_resolved_to_its_input_size_and_output_width():
    model = resolve(build_network("test_external:tiny_net", {"width": 4, "classes": 3}, image_size=32))
    assert (model.image_size, model.num_classes, model.kwargs) == (32, 3, {"width": 4, "classes": 3})
    assert resolve(build_network("test_external:tiny_net")).image_size == 224  # a factory's default
    assert network_problem(model.spec()) is None  # what a row holds reads back


def test_counting_a_factory_matches_its_module_and_lists_what_it_cannot_count():
    counted = count(resolve(build_network("test_external:tiny_net", {"width": 8}, image_size=32)))
    assert counted.params == sum(p.numel() for p in tiny_net(width=8).parameters())
    conv_macs = 8 * 3 * 3 * 3 * 16 * 16  # out channels x kernel x output pixels
    assert counted.macs > conv_macs and counted.uncounted_ops == {}
    assert counted.architecture["kwargs.width"] == "8" and counted.architecture["modules.BatchNorm2d"] == "1"
    uncounted = count(resolve(build_network("test_external:cumulative", image_size=16)))
    assert uncounted.uncounted_ops == {"aten::cumsum": 1}


def test_a_factory_gets_a_speed_row_with_its_kwargs_and_size(tmp_path):
    out = tmp_path / "rows.jsonl"
    args = ["speed", "test_external:tiny_net", "--kwargs", '{"width": 4}', "--image-size", "32", "--mode", "train"]
    result = coatbench(*args, *QUICK, "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert {r.status for r in rows} == {Status.OK}
    network = rows[0].spec.network
    assert network == {"model": "test_external:tiny_net", "kwargs": {"width": 4}, "image_size": 32, "num_classes": 7}
    assert rows[0].model_size.params == sum(p.numel() for p in tiny_net(width=4).parameters())
    assert "test_external:tiny_net width=4 @32 train" in result.stderr  # the progress lines


def test_a_model_whose_forward_fails_at_the_asked_size_is_a_failed_row(tmp_path):
    out = tmp_path / "rows.jsonl"
    result = coatbench("speed", "test_external:fixed_size_net", "--image-size", "64", *QUICK, "--rounds", "1",
                       "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = read_rows(out)
    assert len(rows) == 4 and {r.status for r in rows} == {Status.FAILED}  # train and infer, A/A copies: all ran
    assert all("fixed_size_net failed at 2x3x64x64" in r.message for r in rows), rows[0].message
    assert all(r.model_size is None for r in rows)  # nothing to count either: not a zero


def test_a_factory_runs_on_two_gloo_ranks_and_compares_with_itself(tmp_path):
    out = tmp_path / "two.jsonl"
    args = ["speed", "test_external:tiny_net", "--image-size", "32", "--mode", "train", "--devices", "2"]
    result = coatbench(*args, *QUICK, "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    two = [r for r in rows if r.spec.devices == 2]
    assert two and all(r.status is Status.OK for r in rows), [r.message for r in rows]
    assert all(r.spec.network["model"] == "test_external:tiny_net" for r in rows)
    assert all(r.distributed.world_size == 2 and r.distributed.backend == "gloo" for r in two)
    # compare matches a factory's cells across files as it does the paper's models'
    compared = coatbench("compare", str(out), str(out), "--format", "json")
    assert compared.returncode == 0, compared.stderr
    names = {bench["name"] for bench in json.loads(compared.stdout)}
    assert any("test_external:tiny_net" in name for name in names), names


SUITE = """
description = "two widths of one factory"
modes = ["infer"]
batch_sizes = [2]
[[settings]]
name = "widths"
model = "test_external:tiny_net"
rows = [
  { label = "narrow", kwargs = { width = 8 } },
  { label = "wide", kwargs = { width = 9 } },
]
[[claims]]
text = "the narrow net is faster"
row = "wide"
faster = "baseline"
min = 0.0
"""


def test_a_suite_of_two_factory_rows_gets_a_verdict_that_names_what_differs(tmp_path):
    verdict, out, suite_file = one_claim_verdict(tmp_path, SUITE, "--min-time", "0.05", "--max-time", "0.2")
    differs = {d.what: (d.baseline, d.variant) for d in verdict.differences}
    assert differs["kwargs"] == ('{"width": 8}', '{"width": 9}')
    assert differs["kwargs.width"] == ("8", "9")
    assert "params" in differs
    # --rounds auto asks which cells to measure again: the suite leaves the input size to the model
    # (224), and the pending cells must name the networks as the rows do (else no cell is picked)
    rows = read_rows(out)
    measured = {network_key(r.spec.network) for r in rows}
    waiting = pending(load_suite(str(suite_file)), rows, load_accuracies([]))
    assert waiting, "a 1-channel difference is not resolved in 2 rounds"
    assert all(network in measured for p in waiting for network in p.networks)
    shown = coatbench("report", str(out), "--suite", str(suite_file))
    assert shown.returncode == 0, shown.stderr
    assert "wide differs from the baseline in: params" in " ".join(shown.stdout.split())
    as_json = json.loads(coatbench("report", str(out), "--suite", str(suite_file), "--format", "json").stdout)
    assert {"what": "kwargs.width", "baseline": "8", "variant": "9"} in as_json["reports"][0]["verdicts"][0][
        "differences"
    ]


def test_bad_factories_and_kwargs_get_one_line_each():
    cases = [
        (["count", "nowhere_at_all.models:build"], ["does not import", "PYTHONPATH"]),
        (["count", "test_external:tiny_nett"], ["no function 'tiny_nett'", "did you mean tiny_net"]),
        (["count", "test_external:not_a_module"], ["returned dict", "not a torch.nn.Module"]),
        (["count", "test_external:tiny_net", "--kwargs", '{"depth": 3}'], ["refuses its kwargs", "depth"]),
        (["count", "test_external:tiny_net", "--kwargs", "width=3"], ["--kwargs", "JSON object"]),
        (["count", "test_external:tiny_net", "--norm", "ln"], ["--norm", "pass kwargs instead"]),
        (["count", "coatnet-0", "--kwargs", '{"width": 3}'], ["kwargs are for timm models and factories"]),
        (["count", "test_external:"], ["invalid model", "module:function"]),
        (["speed", "test_external:tiny_net", "--kwargs", '{"width": -1}', *QUICK], ["raised RuntimeError", "built"]),
    ]
    for args, needles in cases:
        assert_one_line_error(coatbench(*args), *needles)


BAD_ROWS = [
    ("kwargs = 3", ["kwargs must be a table"]),
    ("model = 'timm:'", ["invalid timm model"]),
    ("model = 'not a model'", ["unknown model"]),
    ("head_size = 64", ["head_size", "pass kwargs instead"]),
    ("kwargs = { width = 4 }, model = 'coatnet-0'", ["kwargs are for timm models and factories"]),
]


def test_a_suite_row_with_a_bad_model_or_kwargs_gets_one_line(tmp_path):
    for i, (fields, needles) in enumerate(BAD_ROWS):
        suite = tmp_path / f"bad{i}.toml"
        suite.write_text(f"[[settings]]\nname = 'x'\nmodel = 'test_external:tiny_net'\nrows = [{{ {fields} }}]\n")
        before = suite.read_text()
        assert_one_line_error(coatbench("run", str(suite), "--device", "cpu"), "row 1", *needles)
        assert suite.read_text() == before and sorted(p.name for p in tmp_path.iterdir())[-1] == suite.name


def test_a_row_of_an_external_model_is_checked_on_read():
    good = external_model("test_external:tiny_net", {"width": 4}, 32, 7).spec()
    assert network_problem(good) is None
    assert "kwargs" in network_problem({**good, "kwargs": [4]})
    assert "image size" in network_problem({**good, "image_size": 0})
    assert "fields" in network_problem({**good, "head_size": 32})
    assert ExternalModel("test_external:tiny_net", '{"width": 4}').matches(good)  # the size left to the model
    assert not ExternalModel("test_external:tiny_net", '{"width": 8}').matches(good)

"""The XLA path on the real torch_xla CPU backend (no TPU here). Run in the XLA venv:
PJRT_DEVICE=CPU CPU_NUM_DEVICES=2 python -m pytest -m xla"""

import json

import pytest

pytestmark = pytest.mark.xla
torch_xla = pytest.importorskip("torch_xla")

import torch  # noqa: E402
from conftest import coatbench  # noqa: E402

from coatbench.config import build_config  # noqa: E402
from coatbench.measure.harness import Cell, measure  # noqa: E402
from coatbench.measure.xla import LockStep, XlaOps, XlaOptions  # noqa: E402
from coatbench.results import read_rows  # noqa: E402
from coatbench.settings import Dtype, Mode  # noqa: E402

TINY = ["coatnet-0", "--image-size", "32", "--layout", "1,1,1,1,1", "--num-classes", "10"]


def test_sweep_on_two_xla_cores(cli, tmp_path):
    out = tmp_path / "xla.jsonl"
    result = cli(
        "speed",
        *TINY,
        "--device",
        "xla",
        "--batch-sizes",
        "2",
        "--mode",
        "both",
        "--format",
        "json",
        "--out",
        str(out),
        "--quiet",
        "--strict",
        "--rounds",
        "1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    # each mode once, and its A/A copy (replicate 1) at a drawn position in the round
    cells = sorted((r["spec"]["mode"], r["trial"]["replicate"]) for r in rows)
    assert cells == [("infer", 0), ("infer", 1), ("train", 0), ("train", 1)]
    for row in rows:
        assert row["status"] == "ok", row["message"]
        assert row["spec"]["devices"] == 2 and row["spec"]["global_batch"] == 4
        assert row["xla"]["compiles_in_window"] == 0 and row["xla"]["fallbacks_in_window"] == {}
        assert row["xla"]["platform"]["pjrt_device"] == "CPU"
        t = row["throughput"]
        assert 0 < t["images_per_s"] < 1e5 and t["images_per_s_total"] == pytest.approx(2 * t["images_per_s"])
        assert row["timing"]["first_step_s"] > 0 and row["env"]["hardware_key"] == "xla:XLA:CPU x2"
        # each block over both cores (latest end - earliest start), not rank 0's alone
        d = row["distributed"]
        assert (d["world_size"], d["backend"], len(d["rank_images_per_s"])) == (2, "xla", 2)
        assert t["images_per_s"] <= min(d["rank_images_per_s"]) * 1.05 and d["straggler"] >= 1.0


class ShapeShift(torch.nn.Module):
    """Feeds the model a smaller batch after `after` calls: a new graph to compile, late."""

    def __init__(self, model, after: int, keep: int = 1):
        super().__init__()
        self.model, self.after, self.keep, self.calls = model, after, keep, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x if self.calls <= self.after else x[: self.keep])


def test_guard_flags_a_recompilation_inside_the_timed_window():
    from coatbench.model import build_model

    device = torch_xla.device()
    config = build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10)
    lock_step = LockStep(block_steps=2, max_warmup_blocks=6, timed_blocks=6)
    ops = lambda strict=False: XlaOps(XlaOptions(strict=strict, lock_step=lock_step))  # noqa: E731
    steady = measure(Cell(config, Mode.INFER, 2, Dtype.BF16, channels_last=False), device, ops=ops())
    assert steady.xla["compiles_in_window"] == 0 and not steady.xla["suspect"]
    # warm-up ends by step 2 + 6 x 2 = 14 at the latest and timing runs to step 26: change at 16
    model = ShapeShift(build_model(config, device), after=16)
    flagged = measure(Cell(config, Mode.INFER, 2, Dtype.BF16, channels_last=False), device, ops=ops(), model=model)
    assert flagged.xla["suspect"] and flagged.xla["compiles_in_window"] >= 1
    assert "recompilation" in flagged.message and flagged.status == "ok"
    # batch 4 cut to 3: shapes this process has not compiled yet
    strict = measure(
        Cell(config, Mode.INFER, 4, Dtype.BF16, channels_last=False),
        device,
        ops=ops(strict=True),
        model=ShapeShift(build_model(config, device), 16, keep=3),
    )
    assert strict.status == "failed"


def test_installed_pair_is_accepted():
    from coatbench.measure import xla

    xla.check_install()  # this venv: torch 2.9.0 + torch_xla 2.9.0


def test_resume_of_an_xla_sweep_measures_nothing_again(tmp_path):
    """The rows of an XLA sweep name the devices its workers saw (XLA:CPU x2); resuming must
    key the plan's cells the same way, or every cell would be measured again. Its second
    setting is a factory's model (tests/test_external.py): any model runs on XLA alike."""
    suite = tmp_path / "one.toml"
    suite.write_text(
        'modes = ["infer"]\nbatch_sizes = [2]\n[[settings]]\nname = "x"\nmodel = "coatnet-0"\n'
        'image_size = 32\nrows = [{ layout = "1,1,1,1,1" }]\n'
        '[[settings]]\nname = "factory"\nmodel = "test_external:tiny_net"\nimage_size = 32\nrows = [{}]\n'
    )
    out = tmp_path / "xla.jsonl"
    first = coatbench("run", str(suite), "--device", "xla", "--rounds", "1", "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr[-3000:]
    measured = out.read_text()
    # each setting's cell first and last (its A/A copy)
    assert measured.count("\n") == 4 and measured.count('"status":"ok"') == 4, measured
    rows = read_rows(out)
    assert {r.spec.network["model"] for r in rows} == {"coatnet-0", "test_external:tiny_net"}
    assert all(r.spec.devices == 2 and r.xla["compiles_in_window"] == 0 for r in rows)
    again = coatbench("run", str(suite), "--device", "xla", "--rounds", "1", "--resume", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 measurements already there" in again.stderr + again.stdout
    assert out.read_text() == measured  # nothing measured, nothing appended

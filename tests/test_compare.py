import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error
from coatbench.errors import CoatbenchError
from coatbench.compare import compare_rows, compare_samples, find_baseline, save_baselines
from coatbench.results import append_row

TRIALS, SAMPLES, NOISE = 500, 15, 0.03


def trial_statuses(slowdown: float, threshold: float = 0.05, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    statuses = []
    for _ in range(TRIALS):
        base = 1000 * (1 + NOISE * rng.standard_normal(SAMPLES))
        cur = 1000 * (1 - slowdown) * (1 + NOISE * rng.standard_normal(SAMPLES))
        statuses.append(compare_samples(base, cur, threshold, 0.01)[0])
    return statuses


def test_a_a_trials_rarely_raise_false_alarms():
    assert trial_statuses(0.0).count("regressed") <= TRIALS * 0.01


def test_a_ten_percent_slowdown_is_caught():
    assert trial_statuses(0.10).count("regressed") >= TRIALS * 0.95


def test_a_three_percent_slowdown_under_a_five_percent_threshold_is_never_a_regression():
    assert trial_statuses(0.03).count("regressed") == 0


def test_speedup_and_noise_statuses():
    base = [1000, 1010, 990, 1005, 995, 1002, 998]
    assert compare_samples(base, [v * 1.2 for v in base], 0.05, 0.01)[0] == "improved"
    assert compare_samples(base, [900, 1100, 700, 1300, 850, 1000, 600], 0.05, 0.01)[0] == "inconclusive"


def row(samples, hardware="cuda:NVIDIA H100 x1", torch="2.11", batch=64, status="ok"):
    return {"spec": {"model": "coatnet-2", "image_size": 224, "head_size": 32, "norm": "bn", "layout": "2,2,6,14,2",
                     "blocks": "C-C-T-T", "rel_attn": True, "downsample": "conv", "num_classes": 1000,
                     "mode": "train", "batch_per_core": batch, "execution": "eager", "dtype": "bf16"},
            "status": status, "samples": samples, "env": {"hardware_key": hardware, "torch": torch}}


def test_not_comparable_reasons():
    base = [row([1.0] * 5)]
    assert compare_rows(base, [row([1.0] * 5, hardware="cuda:A100 x1")])[0].reason.startswith("different hardware")
    assert "different torch" in compare_rows(base, [row([1.0] * 5, torch="2.12")])[0].reason
    assert compare_rows(base, [row([], status="oom")])[0].reason == "the current run has no samples (oom)"
    both = compare_rows(base, [row([1.0] * 5, batch=128)])
    assert {r.reason for r in both} == {"missing in the baseline", "missing in the current run"}
    assert all(r.status == "not comparable" for r in both)


def write(path: Path, rows) -> Path:
    for r in rows:
        append_row(path, r)
    return path


def test_compare_cli_exit_codes_and_formats(cli, tmp_path):
    rng = np.random.default_rng(3)
    base = write(tmp_path / "base.jsonl", [row(list(1000 + 10 * rng.standard_normal(15)))])
    same = write(tmp_path / "same.jsonl", [row(list(1000 + 10 * rng.standard_normal(15)))])
    slow = write(tmp_path / "slow.jsonl", [row(list(850 + 10 * rng.standard_normal(15)))])
    ok = cli("compare", str(base), str(same), "--format", "markdown")
    assert ok.returncode == 0 and ok.stdout.startswith("**No regression")
    bad = cli("compare", str(base), str(slow), "--format", "markdown")
    assert bad.returncode == 1 and bad.stdout.startswith("**1 regression(s)") and "regressed" in bad.stdout
    entries = json.loads(cli("compare", str(base), str(slow), "--format", "json").stdout)
    assert entries[0]["unit"] == "images/s" and entries[0]["value"] == pytest.approx(850, rel=0.02)
    assert_one_line_error(cli("compare", str(base), str(slow), "--threshold", "150%"), "--threshold")
    assert_one_line_error(cli("compare", str(base)), "BASELINE CURRENT")
    assert_one_line_error(cli("compare", str(base), str(tmp_path / "none.jsonl")), "does not exist")


def test_saved_baseline_is_picked_by_hardware(cli, tmp_path):
    rows = [row([1000.0] * 15), row([500.0] * 15, hardware="cpu:AMD EPYC x1")]
    paths = save_baselines(rows, tmp_path / "baselines")
    assert sorted(p.name for p in paths) == ["cpu-AMD-EPYC-x1.jsonl", "cuda-NVIDIA-H100-x1.jsonl"]
    assert find_baseline([row([1.0])], tmp_path / "baselines").name == "cuda-NVIDIA-H100-x1.jsonl"
    assert find_baseline([row([1.0], hardware="cuda:L4 x1")], tmp_path / "baselines") is None
    current = write(tmp_path / "cur.jsonl", [row([1000.0] * 15, hardware="cuda:L4 x1")])
    result = cli("compare", str(current), "--baseline", "auto", cwd=tmp_path)  # no results/baselines there
    assert result.returncode == 0 and "No baseline saved for cuda:L4 x1" in result.stderr
    as_json = cli("compare", str(current), "--baseline", "auto", "--format", "json", cwd=tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []  # stdout stays one JSON document


def test_baseline_keeps_only_measured_rows(tmp_path):
    (path,) = save_baselines([row([1000.0] * 15), row([], batch=128, status="oom")], tmp_path)
    assert [json.loads(line)["spec"]["batch_per_core"] for line in path.read_text().splitlines()] == [64]
    with pytest.raises(CoatbenchError, match="no measured"):
        save_baselines([row([], status="oom")], tmp_path)
    assert path.read_text().count("\n") == 1  # the saved baseline is untouched by the refusal


def test_rows_without_samples_or_hardware_are_refused_in_one_line(cli, tmp_path):
    broken = {k: v for k, v in row([1.0] * 5).items() if k != "env"}
    bad = write(tmp_path / "bad.jsonl", [broken])
    good = write(tmp_path / "good.jsonl", [row([1.0] * 5)])
    assert_one_line_error(cli("compare", str(good), str(bad)), "row 1 has no env.hardware_key or samples")


@pytest.mark.slow
def test_real_a_a_and_injected_slowdown(cli, tmp_path):
    """The same code measured twice shows no regression; an extra op in every block is caught."""
    repo = tmp_path / "repo"
    shutil.copytree(Path(__file__).resolve().parents[1] / "coatbench", repo / "coatbench")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "A")
    model = repo / "coatbench" / "model.py"
    source = model.read_text()
    slow = source.replace(
        "        return self.shortcut(x) + self.project(self.se(y))",
        "        for _ in range(3):  # injected slowdown\n            y = y * torch.sigmoid(y).sigmoid().sigmoid() + 0\n"
        "        return self.shortcut(x) + self.project(self.se(y))",
    )
    assert slow != source
    model.write_text(slow)
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "B: slower")
    args = ["--rounds", "2", "--device", "cpu", "--format", "markdown"]
    same = cli("ab", "HEAD", "HEAD", "ci-cpu", *args, cwd=repo)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No regression" in same.stdout
    slower = cli("ab", "HEAD~1", "HEAD", "ci-cpu", *args, cwd=repo)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert "regressed" in slower.stdout


def test_ab_bad_input(cli, tmp_path):
    assert_one_line_error(cli("ab", "HEAD", "HEAD", "--rounds", "0"), "--rounds must be at least 1")
    assert_one_line_error(cli("ab", "no-such-ref", "HEAD", "--rounds", "1"), "git rev-parse")
    assert_one_line_error(cli("ab", "HEAD", "HEAD", cwd=tmp_path), "git rev-parse")  # not a git checkout

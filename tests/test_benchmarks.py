"""The benchmark scripts' logic that needs no GPU: argument checks, cell planning, rendering,
and the source anchor guard_check injects its slowdown at."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vs_timm = load("vs_timm")


def test_guard_check_anchor_is_in_the_harness_once():
    """guard_check injects its slowdown at the end of harness.build_step: an edit that drops the
    line would leave the benchmark unable to run."""
    anchor = load("guard_check").ANCHOR
    source = (BENCHMARKS.parent / "coatbench" / "measure" / "harness.py").read_text()
    assert source.count(anchor) == 1


def row(impl, model, mode, batch, execution, rate, sha="aaaaaaa", day="2026-11-25", timm="1.0"):
    return {
        "timestamp": f"{day}T00:00:00+00:00",
        "status": "ok",
        "spec": {"implementation": impl, "model": model, "mode": mode, "batch_per_core": batch, "execution": execution},
        "env": {"device_name": "GPU", "git_sha": sha, "torch": "2"},
        "timm": timm,
        "images_per_s": rate,
        "mfu": 0.1,
        "peak_tflops": 1.0,
    }


def test_targets_say_met_or_by_how_much_not():
    rows = [
        row("coatbench", "coatnet-2", "train", 128, "eager", 1000.0),
        row("coatbench", "coatnet-2", "infer", 128, "compile+cuda-graphs", 5400.0),
    ]
    text = vs_timm.render(rows, "cmd")
    assert "| train | eager | 935 | 1,000 | met |" in text
    assert "| infer | compile+cuda-graphs | 6,000 | 5,400 | not met (-10.0%) |" in text
    assert "| train | compile+cuda-graphs | 1,500 | - | not measured |" in text


def test_provenance_names_the_cells_of_a_group_split_across_commits():
    rows = [
        row("coatbench", "coatnet-3", "train", 128, "eager", 1.0, sha="1111111", day="2026-11-24"),
        row("coatbench", "coatnet-3", "infer", 128, "eager", 1.0, sha="2222222"),
        row("timm", "coatnet-3", "train", 128, "eager", 1.0, sha="2222222"),
    ]
    text = vs_timm.render(rows, "cmd")
    assert "- commit 1111111, 2026-11-24: coatbench eager coatnet-3 train 128\n" in text
    assert "- commit 2222222, 2026-11-25: coatbench eager coatnet-3 infer 128, timm eager coatnet-3\n" in text


def test_repeats_compare_runs_of_the_same_code_only():
    rows = [
        # coatbench at two commits: a code change, not run-to-run spread
        row("coatbench", "coatnet-2", "train", 32, "eager", 463.0, sha="1111111"),
        row("coatbench", "coatnet-2", "train", 32, "eager", 723.0, sha="2222222"),
        row("coatbench", "coatnet-2", "train", 32, "eager", 516.0, sha="2222222"),
        # timm at one version, measured at two coatbench commits: the same code
        row("timm", "coatnet-2", "train", 32, "eager", 457.0, sha="1111111"),
        row("timm", "coatnet-2", "train", 32, "eager", 627.0, sha="2222222"),
        # within 10%: not listed
        row("timm", "coatnet-2", "infer", 128, "eager", 2638.0, sha="1111111"),
        row("timm", "coatnet-2", "infer", 128, "eager", 2653.0, sha="2222222"),
    ]
    text = vs_timm.render(rows, "cmd")
    assert "- coatbench 2222222 coatnet-2 train 32 eager: 723, 516 (the table shows the last)" in text
    assert "- timm 1.0 coatnet-2 train 32 eager: 457, 627" in text
    assert "463" not in text.split("disagree by more than 10%")[1]
    assert "infer 128" not in text.split("disagree by more than 10%")[1]


def test_cells_to_measure_skips_done_cells_unless_again():
    args = vs_timm.parse_arguments(
        [
            "--models",
            "2",
            "--batch-sizes",
            "128",
            "--implementations",
            "coatbench",
            "--out",
            "x.jsonl",
            "--markdown",
            "x.md",
        ]
    )
    done = {("coatbench", "coatnet-2", "train", 128, "eager")}
    every = vs_timm.cells_to_measure(args, set())
    assert len(every) == 4  # train/infer x eager/compiled, coatbench only
    assert {c[0] for c in every} == {"coatbench"}
    assert ("coatbench", 2, "train", 128, "eager") not in vs_timm.cells_to_measure(args, done)
    assert len(vs_timm.cells_to_measure(args, done)) == 3


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--implementations", "pytorch"], "--implementations"),
        (["--executions", "compile"], "--executions"),
        (["--models", "two"], "--models"),
        (["--batch-sizes", "0"], "--batch-sizes"),
        ([], "--out"),
    ],
)
def test_vs_timm_refuses_bad_arguments_in_one_line(argv, needle, tmp_path):
    out = [] if argv == [] else ["--out", str(tmp_path / "x.jsonl")]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "vs_timm.py"), *argv, *out, "--markdown", str(tmp_path / "x.md")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(result, needle)
    assert not (tmp_path / "x.md").exists()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """benchmarks/bad_inputs.py's scratch folder and its inputs."""
    bad_inputs = load("bad_inputs")
    tmp = tmp_path_factory.mktemp("hostile")
    subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
    return bad_inputs, tmp, bad_inputs.files(tmp)


# Every broken row goes through `report`; through compare, baseline save and --resume, these
# few: each reader's own refusal of every field is test_row_domains.py's, in process (fast), and
# `python benchmarks/bad_inputs.py` runs every case (results/cpu/bad_inputs.md).
EVERY_READER = ("nan-sample", "text-samples", "null-throughput", "model-99", "hardware-key-forged")


def _round_two() -> list[str]:
    bad_inputs = load("bad_inputs")
    with __import__("tempfile").TemporaryDirectory() as folder:
        cases = bad_inputs.ROUND_TWO(bad_inputs.files(Path(folder)))
    return [
        c.what
        for c in cases
        if c.what.startswith("report of a row") or " of a row: " not in c.what or c.what.split(": ")[-1] in EVERY_READER
    ]


@pytest.mark.parametrize("what", _round_two())
def test_each_hostile_input_of_round_two_gets_its_exit_code_and_one_line(hostile, what):
    """Issue 24's cases (none measures): the exit code, one `error:` line (or none where there is
    no error) with no traceback, and every file of the scratch folder as it was."""
    bad_inputs, tmp, inputs = hostile
    (case,) = [c for c in bad_inputs.ROUND_TWO(inputs) if c.what == what]
    before = bad_inputs.fingerprint(tmp)
    result = case.run(tmp)
    assert case.kept(result), (result.returncode, result.stderr[-2000:])
    after = bad_inputs.fingerprint(tmp)
    assert {path: after.get(path) for path in before} == before  # no input changed or lost


@pytest.mark.parametrize("stop", ["Ctrl-C", "SIGTERM", "SIGHUP"])
def test_a_stopped_sweep_keeps_its_rows_and_says_how_to_go_on(tmp_path, stop):
    """Ctrl-C exits 130, SIGTERM 143, SIGHUP 129: one line with the command that goes on, and
    every row saved when the signal came still there, whole."""
    _, survived, ok = load("bad_inputs").stopped_sweep(tmp_path, stop)
    assert ok, survived


@pytest.mark.slow
def test_sigterm_to_ab_leaves_no_side_worktree_or_temporary_folder(tmp_path):
    """The side under way stops as after its own Ctrl-C (its workers with it); both worktrees
    and the temporary folder go; ab exits 143 with one line."""
    _, survived, ok = load("bad_inputs").stopped_ab(tmp_path)
    assert ok, survived

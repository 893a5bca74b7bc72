import json

import pytest
import torch
from conftest import assert_one_line_error

from coatbench.config import build_config
from coatbench.errors import CoatbenchError
from coatbench.measure.harness import Cell, check_cell, measure
from coatbench.results import read_rows
from coatbench.run.launch import Inline
from coatbench.run.plan import make_plan
from coatbench.run.sweep import run_sweep
from coatbench.settings import Budget, DeviceKind, Dtype, Execution, Mode, Rounds, SweepOptions

CPU = torch.device("cpu")
FAST = Budget(min_time=0.05, max_time=0.5, block_time=0.0, max_warmup_time=1.0, min_samples=3)
TINY = build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10)


@pytest.mark.parametrize("mode", list(Mode))
def test_measure_cpu_cell(mode):
    result = measure(Cell(TINY, mode, 2, Dtype.FP32), CPU, FAST)
    assert result.status == "ok"
    assert len(result.samples) >= FAST.min_samples and all(s > 0 for s in result.samples)
    assert result.first_step_s > 0 and result.block_steps >= 1


def test_out_of_memory_is_a_result_not_a_crash():
    def fail_on_third_step(step: int) -> None:
        if step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    result = measure(Cell(TINY, Mode.TRAIN, 2, Dtype.FP32), CPU, FAST, before_step=fail_on_third_step)
    assert result.status == "oom" and "injected" in result.message
    assert result.samples == []


def test_xla_out_of_memory_is_a_result_and_other_errors_are_not_hidden():
    def fail(message):
        def hook(step):
            if step == 2:
                raise RuntimeError(message)

        return hook

    exhausted = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2.00G (injected)"
    result = measure(Cell(TINY, Mode.INFER, 1, Dtype.FP32), CPU, FAST, before_step=fail(exhausted))
    assert result.status == "oom" and "RESOURCE_EXHAUSTED" in result.message
    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure(Cell(TINY, Mode.INFER, 1, Dtype.FP32), CPU, FAST, before_step=fail("shape mismatch (injected)"))


def test_warm_up_on_one_process_ends_when_two_blocks_agree():
    """The 'nothing compiled for a few blocks' rule is for XLA's lock-step processes only."""
    # any two blocks agree: a run-to-run stall on a loaded machine (a block 10x its neighbour, seen
    # under a concurrent test run) cannot add blocks, so only the rule under test can
    patient = Budget(
        min_time=0.05, max_time=0.5, block_time=0.05, max_warmup_time=5.0, min_samples=3, warmup_tolerance=float("inf")
    )
    result = measure(Cell(TINY, Mode.INFER, 1, Dtype.FP32), CPU, patient)
    # the first step, the step that sizes the blocks (the first reference), one block that agrees with it
    assert result.warmup_stable and result.warmup_steps == 2 + result.block_steps


def test_cell_past_its_timeout_is_recorded():
    result = measure(Cell(TINY, Mode.INFER, 1, Dtype.FP32), CPU, Budget(timeout=1e-9))
    assert result.status == "timeout"


def test_bad_cells_are_refused():
    with pytest.raises(CoatbenchError, match="batch size must be at least 1"):
        measure(Cell(TINY, Mode.INFER, 0), CPU, FAST)
    with pytest.raises(CoatbenchError, match="needs a CUDA device"):
        measure(Cell(TINY, Mode.INFER, 1, execution=Execution.CUDA_GRAPHS), CPU, FAST)
    for execution in (Execution.COMPILE, Execution.COMPILE_FOLDED_BN):
        with pytest.raises(CoatbenchError, match="XLA compiles every step itself"):
            check_cell(Cell(TINY, Mode.INFER, 1, execution=execution), torch.device("xla"))
    with pytest.raises(CoatbenchError, match="use --dtype bf16"):
        check_cell(Cell(TINY, Mode.TRAIN, 1, Dtype.FP16), torch.device("xla"))
    # a captured eager step trains under DDP; a captured compiled one is one device's only, while
    # inference replicas may capture either (check_cell needs no GPU to say so)
    cuda, both = torch.device("cuda"), Execution.COMPILE_CUDA_GRAPHS
    with pytest.raises(CoatbenchError, match="trains on one device only: use compile or cuda-graphs, or --devices 1"):
        check_cell(Cell(TINY, Mode.TRAIN, 1, execution=both, devices=2), cuda)
    for cell in (Cell(TINY, Mode.TRAIN, 1, execution=Execution.CUDA_GRAPHS, devices=2),
                 Cell(TINY, Mode.INFER, 1, execution=both, devices=2)):  # fmt: skip
        check_cell(cell, cuda)


def test_folded_bn_computes_the_same_function():
    """compile-folded-bn folds BatchNorm into the convs: same logits as the eager model."""
    from coatbench.measure.harness import compile_frozen
    from coatbench.model import build_model

    torch.manual_seed(0)
    eager = build_model(TINY).eval()
    for m in eager.modules():  # non-trivial running statistics, or folding would be a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    folded = build_model(TINY).eval()
    folded.load_state_dict(eager.state_dict())
    compile_frozen(folded)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = eager(x), folded(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    torch._dynamo.reset()


def test_folded_bn_sweep_leaves_out_training_and_says_so(tmp_path):
    plan = make_plan(
        [TINY],
        SweepOptions(
            device=DeviceKind.CPU,
            batch_sizes=[1],
            executions=[Execution.EAGER, Execution.COMPILE_FOLDED_BN],
            out=tmp_path / "r.jsonl",
        ),
    )
    cells = [(c.execution, c.mode) for c in plan.cells]
    assert cells == [
        (Execution.EAGER, Mode.TRAIN),
        (Execution.EAGER, Mode.INFER),
        (Execution.COMPILE_FOLDED_BN, Mode.INFER),
    ]
    assert any("inference only" in note for note in plan.scaled_down)


def three_cells(tmp_path):
    """One round of TINY's inference at per-core 1, 2 and 3 (and the A/A copy of 3), saved to
    tmp_path/r.jsonl."""
    return make_plan(
        [TINY],
        SweepOptions(
            device=DeviceKind.CPU,
            modes=[Mode.INFER],
            batch_sizes=[1, 2, 3],
            min_time=0.05,
            max_time=0.3,
            rounds=Rounds(1),
            seed=0,
            out=tmp_path / "r.jsonl",
        ),
    )


def test_sweep_records_oom_and_goes_on(tmp_path):
    plan = three_cells(tmp_path)

    def measure_with_fault(cell, budget):
        def fault(step):
            if cell.batch_size == 2:
                raise torch.OutOfMemoryError("injected")

        return measure(cell, torch.device("cpu"), budget, before_step=fault)

    result = run_sweep(plan, launcher=Inline(measure_with_fault))
    assert {r.spec.batch_per_core: r.status for r in result.rows} == {1: "ok", 2: "oom", 3: "ok"}
    assert len(result.rows) == 4  # per-core 3 twice: the A/A copy
    saved = read_rows(tmp_path / "r.jsonl")
    assert [r.to_dict() for r in saved] == [r.to_dict() for r in result.rows]
    assert next(r for r in saved if r.spec.batch_per_core == 2).throughput is None


def test_interrupted_sweep_keeps_finished_cells(tmp_path):
    plan = three_cells(tmp_path)

    def interrupt_third(cell, budget):
        if cell.batch_size == 3:
            raise KeyboardInterrupt
        return measure(cell, torch.device("cpu"), budget)

    result = run_sweep(plan, launcher=Inline(interrupt_third))
    assert result.interrupted
    order = [s.cell.batch_size for s in plan.slots if s.timed]
    saved = [r.spec.batch_per_core for r in read_rows(tmp_path / "r.jsonl")]
    assert saved == order[: order.index(3)] and saved  # everything measured before the interruption


def test_cpu_plan_says_what_it_scaled_down(tmp_path):
    plan = make_plan([TINY], SweepOptions(device=DeviceKind.CPU, out=tmp_path / "r.jsonl"))
    assert {c.batch_size for c in plan.cells} == {1}
    assert any("batch sizes 32,64,128,256 -> 1 " in note for note in plan.scaled_down)
    explicit = make_plan(
        [TINY],
        SweepOptions(device=DeviceKind.CPU, batch_sizes=[4], dtype=Dtype.FP32, min_time=1, out=tmp_path / "r.jsonl"),
    )
    assert explicit.scaled_down == ()


ROW_FIELDS = {
    "schema",
    "timestamp",
    "status",
    "spec",
    "model_size",
    "timing",
    "samples",
    "env",
    "throughput",
    "compute",
    "memory",
}
SPEC_FIELDS = {
    "model",
    "image_size",
    "head_size",
    "norm",
    "layout",
    "blocks",
    "rel_attn",
    "downsample",
    "mode",
    "batch_per_core",
    "global_batch",
    "devices",
    "device",
    "dtype",
    "execution",
    "channels_last",
    "input",
}


def test_speed_cli_json_rows(cli, tmp_path):
    out = tmp_path / "speed.jsonl"
    result = cli(
        "speed",
        "coatnet-0",
        "--device",
        "cpu",
        "--mode",
        "infer",
        "--batch-sizes",
        "1,2",
        "--image-size",
        "64",
        "--min-time",
        "0.2",
        "--max-time",
        "1",
        "--format",
        "json",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(r["spec"]["batch_per_core"] for r in rows) == [1, 1, 2, 2, 2, 2]  # two rounds, the A/A copy of 2
    assert sorted((r["trial"]["round"], r["trial"]["replicate"]) for r in rows if r["spec"]["batch_per_core"] == 2) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]  # fmt: skip
    for r in rows:
        assert ROW_FIELDS <= r.keys() and SPEC_FIELDS <= r["spec"].keys()
        t = r["throughput"]
        assert t["images_per_s"] > 0 and t["n"] == len(r["samples"])
        assert t["iqr"][0] <= t["images_per_s"] <= t["iqr"][1]
        assert r["env"]["threads"] >= 1 and r["env"]["cpu_count"] >= 1
        assert r["model_size"]["macs"] > 0
        assert "host" not in r  # a CPU issues nothing ahead: host-bound is a GPU's question
    assert [row.to_dict() for row in read_rows(out)] == rows


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--batch-sizes", "0"], ["--batch-sizes", "give integers from 1"]),
        (["--batch-sizes", "a,b"], ["--batch-sizes"]),
        (["--min-time", "-1"], ["--min-time must be a positive number"]),
        (["--min-time", "5", "--max-time", "1"], ["--max-time"]),
        (["--device", "cuda"], ["no CUDA GPU"]),
        (["--execution", "cuda-graphs", "--device", "cpu"], ["cuda-graphs needs a CUDA device"]),
        (["--execution", "compile+cuda-graphs", "--device", "cpu"], ["needs a CUDA device"]),
        (["--execution", "warp-drive"], ["--execution", "eager,compile"]),
        (["--execution", "compile-folded-bn", "--mode", "train", "--device", "cpu"], ["inference only", "infer"]),
        (["--dtype", "int8"], ["--dtype"]),
        (["coatnet-11"], ["unknown model"]),
    ],
)
def test_speed_bad_input(cli, tmp_path, args, needles):
    out = tmp_path / "x.jsonl"
    assert_one_line_error(cli("speed", *args, "--out", str(out)), *needles)
    assert not out.exists()  # refused before anything was written


def test_torch_xla_pairing_is_checked():
    from coatbench.measure.xla import check_pair

    check_pair("2.9.0+cu128", "2.9.0")
    with pytest.raises(CoatbenchError, match=r"torch_xla 2\.9\.0 does not run on torch 2\.13\.0"):
        check_pair("2.13.0+cpu", "2.9.0")


def test_xla_without_torch_xla_is_a_clear_error(cli, tmp_path):
    pytest.importorskip("torch")
    if __import__("importlib").util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed here")
    result = cli("speed", "--device", "xla", "--out", str(tmp_path / "x.jsonl"))
    assert_one_line_error(result, "needs torch_xla", "coatbench[xla]")


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["run", "ci-cpu", "--execution", "jit", "--dry-run"],
            ["--execution", "compile+cuda-graphs", "compile-folded-bn"],
        ),
        (["speed", "--device", "cpu", "--xla-cache", "/tmp/x"], ["--xla-cache applies to --device xla"]),
        (["speed", "--device", "cpu", "--strict"], ["--strict applies to --device xla"]),
    ],
)
def test_execution_and_xla_cache_bad_input(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)

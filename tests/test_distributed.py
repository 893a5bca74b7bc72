"""Several devices through torch.distributed, on real gloo processes started by torchrun
(the CPU is the test path): rows of two ranks, the straggler index, a rank that dies, the
scaling efficiency, and the planning around them."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from coatbench.config import build_config
from coatbench.counting import count
from coatbench.measure.harness import Cell, Measurement, measure
from coatbench.report import SUPERLINEAR, scaling_of
from coatbench.results import Status, Trial, read_rows
from coatbench.run.launch import Inline
from coatbench.run.plan import make_plan
from coatbench.run.sweep import launches, make_row, run_sweep
from coatbench.settings import DeviceKind, Execution, Mode, Rounds, SweepOptions
from coatbench.views.report import scaling_text
from tests.conftest import assert_one_line_error, fault_env

TINY = ["coatnet-0", "--device", "cpu", "--image-size", "64", "--batch-sizes", "2", "--min-time", "0.3",
        "--max-time", "1", "--rounds", "1", "--format", "json"]  # fmt: skip


def speed(*args: str, fault: str = "", timeout: float = 400) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "coatbench", "speed", *TINY, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=fault_env(fault))


def by_devices(path) -> dict[int, list]:
    """The rows of `path` by device count, the A/A control's second measurements left out."""
    rows = {}
    for row in read_rows(path):
        if not row.replicate:
            rows.setdefault(row.spec.devices, []).append(row)
    return rows


def test_two_ranks_give_a_row_with_every_rank_in_it_and_resume_measures_nothing_again(tmp_path):
    out = tmp_path / "two.jsonl"
    result = speed("--devices", "2", "--mode", "train", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = by_devices(out)
    assert set(rows) == {1, 2}  # one device measured too, for the scaling efficiency
    (two,) = rows[2]
    assert two.ok, two.message
    d = two.distributed
    assert (d.world_size, d.backend, d.nodes) == (2, "gloo", 1)
    assert two.spec.parallel == d.parallel == "DDP(bucket_cap_mb=25, gradient_as_bucket_view=False)"
    assert two.spec.global_batch == 4 and two.env.device_count == 2
    assert len(d.rank_images_per_s) == len(d.rank_devices) == len(d.rank_hosts) == 2
    assert d.straggler >= 1.0
    assert two.throughput.images_per_s_total == pytest.approx(2 * two.throughput.images_per_s)
    assert all(row.distributed is None and row.spec.parallel is None for row in rows[1])
    # the speed table's JSON is the rows; the table itself names E (printed as a table too)
    table = subprocess.run([sys.executable, "-m", "coatbench", "report", str(out)], capture_output=True, text=True)
    assert table.returncode == 0 and "scaling efficiency" in table.stdout, table.stderr

    again = speed("--devices", "2", "--mode", "train", "--resume", str(out))
    assert again.returncode == 0, again.stderr
    assert len(read_rows(out)) == 4  # each device count twice (the A/A control): nothing new


def _identity(row) -> tuple:
    """What a row says of its cell and how it ended: all but the timings, the device count and
    the distributed fields (a rank group's own)."""
    spec = {k: v for k, v in row.spec.to_dict().items() if k not in ("devices", "global_batch", "parallel")}
    return json.dumps(spec, sort_keys=True), row.status, row.model_size, row.replicate, bool(row.samples)


def test_one_plan_gives_the_same_rows_inline_in_a_worker_and_on_two_ranks(tmp_path):
    """The launchers share one protocol: the same two cells (train and infer) measured in this
    process, in a worker process and by a group of 2 gloo ranks give the same rows."""

    def plan(devices: list[int], name: str):
        asked = SweepOptions(device=DeviceKind.CPU, batch_sizes=[2], devices=devices, rounds=Rounds(1), seed=5,
                             min_time=0.05, max_time=0.2, out=tmp_path / f"{name}.jsonl")  # fmt: skip
        return make_plan([build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10)], asked)

    inline = run_sweep(
        plan([1], "inline"), launcher=Inline(lambda cell, budget: measure(cell, torch.device("cpu"), budget))
    ).rows
    worker = run_sweep(plan([1], "worker")).rows
    group = [r for r in run_sweep(plan([2], "ranks")).rows if r.spec.devices == 2]
    assert len(inline) == len(worker) == len(group) == 4  # train and infer, each with its A/A copy
    assert all(r.status is Status.OK for r in inline + worker + group)
    assert sorted(map(_identity, inline)) == sorted(map(_identity, worker)) == sorted(map(_identity, group))
    assert all(r.distributed is None for r in inline + worker)
    assert all(r.distributed.world_size == 2 for r in group)


def test_a_rank_slowed_down_shows_as_a_straggler(tmp_path):
    # Inference runs independent replicas, so each rank's own block times tell its speed (in
    # training DDP's all-reduce makes the ranks wait for each other at every step).
    # 0.2 s more a step on rank 1: longer than the tiny net's own step even on a busy 2-core
    # machine, so rank 1 runs at under half rank 0's rate (0.05 s was not, with CI beside it)
    out = tmp_path / "slow.jsonl"
    result = speed("--devices", "2", "--mode", "infer", "--out", str(out), fault="delay:1:0.2")
    assert result.returncode == 0, result.stderr
    (two,) = by_devices(out)[2]
    rates = two.distributed.rank_images_per_s
    assert rates[1] < rates[0] / 2
    assert two.distributed.straggler > 1.2
    # the global rate is bounded by the slow rank, not rank 0's rate times two
    assert two.throughput.images_per_s <= rates[1] * 1.05


def test_a_killed_rank_fails_its_cell_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "killed.jsonl"
    # the timeout fails the test if the group is left to hang (a collective waits 960 s by default)
    result = speed("--devices", "2", "--mode", "train", "--out", str(out), fault="kill:1:2", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = by_devices(out)
    (two,) = rows[2]
    assert two.status is Status.FAILED
    assert "rank 1 ended first" in two.message, two.message
    assert all(row.ok for row in rows[1])  # the one-device cells were measured all the same


def test_device_counts_are_checked_before_anything_runs(cli):
    assert_one_line_error(cli("speed", *TINY, "--devices", "0"), "--devices")
    assert_one_line_error(cli("speed", *TINY, "--devices", "two"), "--devices")
    too_many = str((os.cpu_count() or 1) + 1)
    assert_one_line_error(cli("speed", *TINY, "--devices", too_many), f"--devices {too_many}", "CPU cores")
    assert_one_line_error(cli("speed", *TINY, "--devices", "2", "--bucket-cap-mb", "0"), "--bucket-cap-mb")


def test_each_launch_opens_with_an_untimed_copy_of_its_first_cell(tmp_path):
    plan = make_plan(
        [build_config("coatnet-0", image_size=64)],
        SweepOptions(
            device=DeviceKind.CPU,
            modes=[Mode.TRAIN],
            batch_sizes=[2],
            devices=[2],
            rounds=Rounds(2),
            seed=3,
            out=tmp_path / "x.jsonl",
        ),
    )
    pieces = launches(plan.slots)
    assert len(pieces) > 1
    for piece in pieces:
        assert not piece[0].timed  # a warm-up copy
        assert piece[1].timed and piece[1].cell == piece[0].cell
        assert len({slot.cell.devices for slot in piece}) == 1
    timed = [slot for piece in pieces for slot in piece if slot.timed]
    assert timed == [slot for slot in plan.slots if slot.timed]  # the same measurements, in the same order


def _rows(per_core: dict[int, list[float]], tmp_path):
    """Rows of one sweep: per-core images/s of each device count, one value per round."""
    plan = make_plan(
        [build_config("coatnet-0", image_size=64)],
        SweepOptions(device=DeviceKind.CPU, modes=[Mode.TRAIN], batch_sizes=[2], devices=[2], out=tmp_path / "x.jsonl"),
    )
    counted = count(plan.cells[0].config)
    rows = []
    for devices, rates in per_core.items():
        cell = next(c for c in plan.cells if c.devices == devices)
        for round_, rate in enumerate(rates):
            trial = Trial("s", 1, round_, len(rates), 0, 0)
            samples = [rate * (1 + 0.001 * k) for k in (-1, 0, 1)]
            rows.append(make_row(cell, Measurement(Status.OK, samples, 1), counted, plan.env_of(cell), (), trial))
    return rows


def test_scaling_efficiency_pairs_the_rounds_and_flags_what_cannot_be(tmp_path):
    rows = _rows({1: [100.0, 110.0, 90.0], 2: [98.0, 107.8, 88.2]}, tmp_path)
    many = [r for r in rows if r.spec.devices == 2]
    one = [r for r in rows if r.spec.devices == 1]
    scaling = scaling_of(many, one)
    assert scaling.efficiency == pytest.approx(0.98) and scaling.uncertainty < 1e-6  # the rounds wander, E not
    assert scaling.change.basis.value == "rounds" and not scaling.suspect and scaling_text(scaling).startswith("0.98")

    rows = _rows({1: [100.0, 100.0], 2: [104.0, 105.0]}, tmp_path)
    superlinear = scaling_of([r for r in rows if r.spec.devices == 2], [r for r in rows if r.spec.devices == 1])
    assert superlinear.efficiency > SUPERLINEAR and superlinear.suspect and scaling_text(superlinear).startswith("!")

    # one device measured in another sweep (other blocks, another hour) is no X_1 for this one
    elsewhere = [dataclasses.replace(r, trial=dataclasses.replace(r.trial, sweep="other")) for r in one]
    assert scaling_of(many, elsewhere) is None and scaling_of(many, elsewhere + one).efficiency == pytest.approx(0.98)


def test_one_device_cells_of_a_sweep_on_several_devices_are_timed_in_blocks_as_long_as_the_ranks(tmp_path):
    """X_1 and X_N in blocks alike: a short block reads slow by the launch latency at its start."""
    from coatbench.measure.distributed import RANK_BLOCK_S

    def plan(devices, max_time=None):
        asked = SweepOptions(device=DeviceKind.CPU, modes=[Mode.TRAIN], batch_sizes=[2], devices=devices,
                             max_time=max_time, out=tmp_path / "x.jsonl")  # fmt: skip
        return make_plan([build_config("coatnet-0", image_size=64)], asked)

    alone, several = plan([1]), plan([2])
    assert alone.budget.block_time < RANK_BLOCK_S <= several.budget.block_time
    one = next(slot for slot in several.slots if slot.timed and slot.cell.devices == 1)
    assert several.budget_of(one).block_time >= RANK_BLOCK_S
    # but no longer than the cell's --max-time allows for its minimum blocks
    short = plan([2], max_time=1.0)
    assert short.budget.block_time == pytest.approx(1.0 / short.budget.min_samples)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to give a process one")
def test_a_ranks_threads_are_a_share_of_the_cpus_it_may_run_on():
    """Not of the host's: a process confined to one CPU (taskset, a container) gets one thread a
    rank; with the host's count two agents on one host ran their ranks 10x slower."""
    from coatbench.measure.distributed import threads_per_rank

    cpus = os.sched_getaffinity(0)
    assert threads_per_rank(1) == len(cpus) and threads_per_rank(len(cpus)) == 1
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert threads_per_rank(1) == 1
    finally:
        os.sched_setaffinity(0, cpus)


def test_the_table8_report_shows_e_for_each_row_on_several_devices(tmp_path):
    from coatbench.accuracy import Accuracies
    from coatbench.report import build_reports
    from coatbench.suite import load_suite

    suite = load_suite("ci-cpu")
    config = suite.settings[0].rows[0].config
    plan = make_plan(
        [config],
        SweepOptions(device=DeviceKind.CPU, modes=[Mode.TRAIN], batch_sizes=[2], devices=[2], out=tmp_path / "x"),
    )
    counted, rows = count(config), []
    for cell in plan.cells:
        for round_, rate in enumerate([10.0, 11.0]):
            rate = rate * (0.9 if cell.devices == 2 else 1.0)
            trial = Trial("s", 1, round_, 2, 0, 0)
            rows.append(make_row(cell, Measurement(Status.OK, [rate], 1), counted, plan.env_of(cell), (), trial))
    reports = build_reports(suite, rows, Accuracies((), ()))
    two = next(r for r in reports if r.devices == 2)
    cell = two.lines[0].cells["train", 2]
    assert cell.scaling.efficiency == pytest.approx(0.9)
    assert any(note.startswith("E: scaling efficiency") for note in two.notes)
    assert next(r for r in reports if r.devices == 1).lines[0].cells["train", 2].scaling is None


def test_a_plan_on_several_devices_keeps_one_device_and_shares_the_cores(tmp_path):
    plan = make_plan(
        [build_config("coatnet-0", image_size=64)],
        SweepOptions(device=DeviceKind.CPU, modes=[Mode.TRAIN], batch_sizes=[2], devices=[2], out=tmp_path / "x.jsonl"),
    )
    assert sorted({c.devices for c in plan.cells}) == [1, 2]
    two = next(c for c in plan.cells if c.devices == 2)
    env = plan.env_of(two)
    assert env.device_count == 2 and env.threads == max(1, (os.cpu_count() or 1) // 2)
    assert two.spec(env).parallel.startswith("DDP(") and plan.env_of(plan.cells[0]) == plan.env
    infer = Cell(two.config, Mode.INFER, 2, execution=Execution.EAGER, devices=2)
    assert infer.parallel == "independent replicas"
    assert json.loads(json.dumps(two.spec(env).to_dict()))["global_batch"] == 4


def test_torchrun_runs_coatbench_as_two_nodes_through_the_c10d_rendezvous(tmp_path):
    # Two torchrun agents on this host, one rank each, meeting at a c10d rendezvous: what two
    # hosts do. Each rank runs the sweep; rank 0 saves the rows. Each agent is given CPUs of its
    # own, as a host would be (with every CPU each, the two ranks' threads ran 10x slower).
    out = tmp_path / "nodes.jsonl"
    env = fault_env()
    port = 29400 + os.getpid() % 500
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "nodes",
               "-m", "coatbench", "speed", *TINY[:-2], "--mode", "train", "--out", str(out)]  # fmt: skip
    cpus = sorted(os.sched_getaffinity(0))
    halves = [cpus[: max(1, len(cpus) // 2)], cpus[len(cpus) // 2 :] or cpus]
    agents = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda half=half: os.sched_setaffinity(0, half))
              for half in halves]  # fmt: skip
    logs = [agent.communicate(timeout=300)[0] for agent in agents]
    assert [agent.returncode for agent in agents] == [0, 0], logs
    rows = by_devices(out)
    (two,) = rows[2]
    assert two.ok and two.distributed.nodes == 2 and two.distributed.world_size == 2
    assert len(rows[1]) == 1 and len(read_rows(out)) == 4  # each cell and its A/A copy, saved once each
    assert sum("Throughput on" in log for log in logs) == 1  # rank 0 speaks for both


def _tagged(tag: str, part: str = "") -> list[int]:
    """Processes whose environment holds `tag` (and whose command line holds `part`)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if f"COATBENCH_TEST_TAG={tag}".encode() in environ and part.encode() in cmdline:
            found.append(int(entry))
    return found


def test_ctrl_c_during_a_group_of_ranks_keeps_the_rows_and_leaves_no_rank_running(tmp_path):
    out, tag = tmp_path / "stopped.jsonl", f"{os.getpid()}-{time.time_ns()}"
    env = fault_env("delay:1:0.2", COATBENCH_TEST_TAG=tag)  # a long cell of ranks
    command = [sys.executable, "-m", "coatbench", "speed", *TINY[:-2], "--devices", "2", "--mode", "infer",
               "--rounds", "3", "--out", str(out), "--quiet"]  # fmt: skip
    sweep = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not _tagged(tag, "torch.distributed.run") and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.2)
    assert _tagged(tag, "torch.distributed.run"), "no group of ranks started"
    time.sleep(2)  # the ranks are measuring
    os.killpg(sweep.pid, signal.SIGINT)  # a terminal's Ctrl-C: the sweep's process group, not torchrun's
    _, stderr = sweep.communicate(timeout=180)
    assert sweep.returncode == 130, stderr
    assert f"--resume {out}" in stderr.strip().splitlines()[-1]
    assert all(row.status is Status.OK for row in read_rows(out)) if out.exists() else True
    deadline = time.monotonic() + 30
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _tagged(tag) == [], "processes of the sweep left running"

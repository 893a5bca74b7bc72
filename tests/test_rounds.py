"""Rounds: the planner, the worker processes, the paired statistics, the position self-test and
the noise flag. Nothing here times anything: speeds are made up, or only checked for shape."""

import dataclasses
import math
import os

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from coatbench.accuracy import load
from coatbench.config import build_config
from coatbench.counting import ModelCount
from coatbench.harness import Cell, Measurement
from coatbench.options import Budget, DeviceKind, Dtype, Mode
from coatbench.report import build_reports
from coatbench.results import FIRST, LAST, Env, Status, Trial, read_rows
from coatbench.rounds import schedule
from coatbench.stats import paired_change
from coatbench.suite import load_suite
from coatbench.sweep import make_plan, make_row, run_sweep
from coatbench.views.report import to_json, to_markdown
from coatbench.workers import in_worker

TINY = build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10)
CELLS = [Cell(build_config("coatnet-0", head_size=h), m, b) for h in (32, 64) for m in Mode for b in (1, 2)]


def test_every_cell_once_per_round_with_a_warm_up_copy_and_the_self_test():
    groups = [CELLS[:4], CELLS[4:]]
    slots = schedule(groups, rounds=3, seed=7)
    for round_ in range(3):
        for group, cells in enumerate(groups):
            mine = [s for s in slots if (s.round, s.group) == (round_, group)]
            assert not mine[0].timed and mine[0].cell == mine[1].cell  # the untimed warm-up copy comes first
            measured = [s.cell for s in mine if s.timed and s.self_test != LAST]
            assert sorted(measured, key=cells.index) == cells  # every cell once
            assert [s.position for s in mine if s.timed] == list(range(len(mine) - 1))
    round0 = [s for s in slots if (s.round, s.group) == (0, 0)]
    assert round0[1].cell == round0[-1].cell == CELLS[0]  # the baseline first and last
    assert (round0[1].self_test, round0[-1].self_test) == (FIRST, LAST)
    assert not any(s.self_test for s in slots if s.round > 0)


def test_the_seed_reproduces_the_order_and_another_seed_draws_another():
    order = lambda seed: [(s.cell, s.round) for s in schedule([CELLS], 4, seed)]  # noqa: E731
    assert order(1) == order(1)
    assert order(1) != order(2)
    later_rounds = {tuple(c for c, r in order(1) if r == round_) for round_ in (1, 2, 3)}
    assert len(later_rounds) > 1  # rounds are drawn afresh, not one order repeated


def test_paired_change_on_known_samples():
    change, u = paired_change([110, 121, 99], [100, 110, 90])
    assert change == pytest.approx(0.10) and u == 0.0  # every round +10%: no doubt
    variant, baseline = [112, 119, 99, 130], [100, 110, 90, 120]
    logs = np.log(variant) - np.log(baseline)
    low, high = scipy_stats.t.interval(0.95, len(logs) - 1, logs.mean(), scipy_stats.sem(logs))
    change, u = paired_change(variant, baseline)
    assert change == pytest.approx(math.exp(logs.mean()) - 1)
    assert u == pytest.approx((math.exp(high) - math.exp(low)) / 2)
    assert math.isnan(paired_change([110], [100])[1])


ENV = Env("0.1.0", None, "3.11", "2.13", None, None, None, "cpu", "Test CPU", 1, "Test CPU", 2, 2)


def sweep_rows(suite, speed, rounds=4, self_test=(1.0, 1.0), jitter=0.0, seed=0, devices=(1,), sweep="sweep-1"):
    """Rows of one sweep of `suite` with made-up speeds: speed(label, mode, round) images/s;
    the first setting's baseline measured first and last in round 0 at the given levels, on
    one device (as a sweep on several devices does)."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, n in ((setting, n) for n in devices for setting in suite.settings):
        for row in setting.rows:
            counted = ModelCount(row.config, 1, 1, 6, {})
            for mode in suite.modes:
                for batch in suite.batch_sizes:
                    cell = Cell(row.config, mode, batch, Dtype.FP32, devices=n)
                    for round_ in range(rounds):
                        level = speed(row.label, mode.value, round_) * (1 + jitter * rng.standard_normal())
                        ends = [("", 1.0)]
                        if (
                            n == 1
                            and round_ == 0
                            and row is setting.rows[0]
                            and (mode, batch) == (suite.modes[0], suite.batch_sizes[0])
                        ):
                            ends = [(FIRST, self_test[0]), (LAST, self_test[1])]
                        for end, factor in ends:
                            samples = [level * factor * (1 + 0.001 * (i % 3 - 1)) for i in range(6)]
                            trial = Trial(sweep, 5, round_, rounds, 0, round_, end)
                            env = dataclasses.replace(ENV, device_count=n)
                            rows.append(make_row(cell, Measurement(Status.OK, samples, 1), counted, env, (), trial))
    return rows


@pytest.fixture(scope="module")
def ci_suite():
    return load_suite("ci-cpu")


def steady(label, mode, round_):
    """The variant "head size 32 -> 64" 10% faster than the baseline in every round, while each
    round as a whole runs at its own level (a machine whose speed wanders 20% between rounds)."""
    return 100.0 * (1.2 if round_ % 2 else 1.0) * (1.1 if label == "head size 32 -> 64" else 1.0)


def test_changes_are_paired_within_rounds(ci_suite):
    (report,) = build_reports(ci_suite, sweep_rows(ci_suite, steady), load())
    head64 = next(line for line in report.lines if line.label == "head size 32 -> 64").cells["train", 2]
    assert head64.basis == "rounds"
    assert head64.change == pytest.approx(0.10, abs=0.002) and head64.uncertainty < 0.005
    assert not report.order_sensitive and "within 1 +- 2%" in to_markdown([report])


def test_an_order_sensitive_machine_makes_every_verdict_inconclusive():
    suite = load_suite("table8")
    speeds = lambda label, mode, round_: 100.0 * (1.3 if label == "head size 32 -> 64" else 1.0)  # noqa: E731
    (quiet,) = build_reports(suite, sweep_rows(suite, speeds, self_test=(1.0, 1.01)), load())
    assert not quiet.order_sensitive
    assert {v.verdict for v in quiet.verdicts if v.claim.startswith("head")} == {"consistent"}
    (shaky,) = build_reports(suite, sweep_rows(suite, speeds, self_test=(1.0, 1.08)), load())
    assert shaky.order_sensitive and shaky.self_tests[0].change == pytest.approx(0.08, abs=0.005)
    assert {v.verdict for v in shaky.verdicts if v.verdict != "untested"} == {"inconclusive (order-sensitive)"}
    assert "order-sensitive" in to_markdown([shaky]) and '"order_sensitive": true' in to_json([shaky])


def test_the_one_device_self_test_of_a_sweep_holds_for_its_cells_on_several_devices():
    """A sweep on several devices tests the position on one device only; the verdicts of its
    2-device cells, measured in the same rounds on the same machine, stand or fall with it."""
    suite = load_suite("table8")
    speeds = lambda label, mode, round_: 100.0 * (1.3 if label == "head size 32 -> 64" else 1.0)  # noqa: E731
    for level, sensitive in ((1.01, False), (1.08, True)):
        reports = build_reports(suite, sweep_rows(suite, speeds, self_test=(1.0, level), devices=(1, 2)), load())
        (two,) = [report for report in reports if report.devices == 2]
        assert two.order_sensitive is sensitive
        assert two.self_tests[0].cell.endswith("(eager, 1 device, same sweep)")
        head = {v.verdict for v in two.verdicts if v.claim.startswith("head")}
        assert head == ({"inconclusive (order-sensitive)"} if sensitive else {"consistent"})
    # another sweep's self-test says nothing of this one's order
    alone = sweep_rows(suite, speeds, devices=(2,), sweep="sweep-2")
    other = sweep_rows(suite, speeds, self_test=(1.0, 1.08), sweep="sweep-3")
    (two,) = [report for report in build_reports(suite, alone + other, load()) if report.devices == 2]
    assert two.self_tests == [] and not two.order_sensitive


def test_single_run_verdicts_say_so(ci_suite):
    suite = load_suite("table8")
    speeds = lambda label, mode, round_: 100.0 * (1.3 if label == "head size 32 -> 64" else 1.0)  # noqa: E731
    rows = [
        dataclasses.replace(r, trial=None) for r in sweep_rows(suite, speeds, rounds=1) if not r.trial.self_test == LAST
    ]
    (report,) = build_reports(suite, rows, load())
    head = [v for v in report.verdicts if v.claim.startswith("head")]
    assert {v.verdict for v in head} == {"consistent (single run)"}
    assert "Position self-test: not run" in to_markdown([report])


def test_a_cell_whose_rounds_wander_is_marked_unstable(ci_suite):
    wild = lambda label, mode, round_: 100.0 * (1.0, 1.3, 0.8, 1.1)[round_]  # noqa: E731
    (report,) = build_reports(ci_suite, sweep_rows(ci_suite, wild), load())
    cell = report.lines[0].cells["train", 2]
    assert "wider than +-5%" in cell.unstable
    assert "~" in to_markdown([report]) and '"unstable": "its 4 runs' in to_json([report])
    level = lambda label, mode, round_: 100.0  # noqa: E731
    (calm,) = build_reports(ci_suite, sweep_rows(ci_suite, level, jitter=0.002), load())
    assert not any(m.unstable for line in calm.lines for m in line.cells.values())


def test_a_sweep_runs_its_rounds_in_worker_processes(tmp_path):
    plan = make_plan([TINY], device=DeviceKind.CPU, modes=[Mode.INFER], batch_sizes=[1, 2], rounds=2, seed=3,
                     min_time=0.05, max_time=0.2, out=tmp_path / "r.jsonl")  # fmt: skip
    result = run_sweep(plan)
    rows = read_rows(tmp_path / "r.jsonl")
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in result.rows]
    assert len(rows) == 2 * 2 + 1  # two cells, two rounds, the self-test's second measurement
    assert {r.trial.process for r in rows} == {0, 1} and {r.trial.seed for r in rows} == {3}
    assert all(r.ok and r.trial.sweep == plan.sweep for r in rows)
    assert [(r.trial.round, r.trial.self_test) for r in rows if r.trial.self_test] == [(0, FIRST), (0, LAST)]


def die_on_second_job(conn, jobs, device_type):
    """A worker that dies while measuring its second job (once: the worker after it does not)."""
    for index in range(len(jobs)):
        conn.send(("start", index, None))
        if index == 1 and len(jobs) == 3:
            os._exit(9)
        conn.send(("done", index, Measurement(Status.OK, [float(index)])))
    conn.close()


def test_a_dead_worker_fails_only_the_job_it_was_measuring():
    jobs = [(Cell(TINY, Mode.INFER, 1), Budget())] * 3
    events = [(i, m) for i, m in in_worker(jobs, torch.device("cpu"), target=die_on_second_job) if m is not None]
    assert [(i, m.status) for i, m in events] == [(0, Status.OK), (1, Status.FAILED), (2, Status.OK)]
    assert "exit code 9" in events[1][1].message

"""Rounds: the planner, the A/A control, the worker processes, the paired statistics and the noise
flag. Nothing here times anything: speeds are made up, or only checked for shape."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from coatbench.accuracy import Accuracies, load
from coatbench.config import build_config
from coatbench.counting import ModelCount
from coatbench.measure.harness import Cell, Measurement
from coatbench.report import AAState, Word, build_reports, classify, pending
from coatbench.results import Env, Status, Trial, read_rows
from coatbench.run.child import ChildKind, EventKind
from coatbench.run.launch import Children, Inline
from coatbench.run.plan import make_plan
from coatbench.run.schedule import aa_cells, schedule
from coatbench.run.sweep import StopReason, _Costs, make_row, next_round, run_sweep
from coatbench.settings import Budget, DeviceKind, Dtype, Mode, Rounds, SweepOptions
from coatbench.stats import look_confidence, on_grid, paired_change
from coatbench.suite import Claim, load_suite
from coatbench.views.report import to_json, to_markdown
from tests.conftest import fault_env

TINY = build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10)
CELLS = [Cell(build_config("coatnet-0", head_size=h), m, b) for h in (32, 64) for m in Mode for b in (1, 2)]


def test_every_cell_once_per_round_with_a_warm_up_copy_and_the_a_a_copies():
    groups = [CELLS[:4], CELLS[4:]]
    slots = schedule(groups, rounds=3, seed=7)
    for round_ in range(3):
        for group, cells in enumerate(groups):
            mine = [s for s in slots if (s.round, s.group) == (round_, group)]
            assert not mine[0].timed and mine[0].cell == mine[1].cell  # the untimed warm-up copy comes first
            assert sorted((s.cell for s in mine if s.timed and not s.replicate), key=cells.index) == cells
            # the A/A control: the baseline again at its largest per-core batch, in each mode
            copies = [s.cell for s in mine if s.replicate]
            assert sorted(copies, key=cells.index) == [c for c in cells if c.batch_size == 2]
            assert [s.position for s in mine if s.timed] == list(range(len(mine) - 1))
    # the copy's place is drawn, not always last
    places = {s.position for s in slots if s.replicate}
    assert len(places) > 1


def test_a_replicate_row_measures_every_cell_of_the_baseline_twice_and_oom_moves_the_copy_down():
    cells = CELLS[:4]
    assert aa_cells(cells, replicated=True) == cells
    assert aa_cells(cells, replicated=False) == [cells[1], cells[3]]  # (train, 2), (infer, 2)
    assert aa_cells(cells, replicated=False, skip={cells[1]}) == [cells[0], cells[3]]  # train 2 out of memory


def test_the_seed_reproduces_the_order_and_another_seed_draws_another():
    order = lambda seed: [(s.cell, s.round, s.replicate) for s in schedule([CELLS], 4, seed)]  # noqa: E731
    assert order(1) == order(1)
    assert order(1) != order(2)
    later_rounds = {tuple(c for c, r, _ in order(1) if r == round_) for round_ in (1, 2, 3)}
    assert len(later_rounds) > 1  # rounds are drawn afresh, not one order repeated


def test_paired_change_on_known_samples():
    found = paired_change([110, 121, 99], [100, 110, 90])
    assert found.change == pytest.approx(0.10) and found.low == found.high == pytest.approx(0.10)  # no doubt
    variant, baseline = [112, 119, 99, 130], [100, 110, 90, 120]
    logs = np.log(variant) - np.log(baseline)
    found = paired_change(variant, baseline, first=4)  # one look at 4 rounds: 97.5% (`stats.look`)
    low, high = scipy_stats.t.interval(0.975, len(logs) - 1, logs.mean(), scipy_stats.sem(logs))
    assert found.change == pytest.approx(math.exp(logs.mean()) - 1)
    assert (found.low, found.high) == (pytest.approx(math.expm1(low)), pytest.approx(math.expm1(high)))
    assert found.n == 4 and found.log_sd == pytest.approx(logs.std(ddof=1))
    assert not paired_change([110], [100]).has_interval


ENV = Env("0.1.0", None, "3.11", "2.13", None, None, None, "cpu", "Test CPU", 1, "Test CPU", 2, 2)


def sweep_rows(
    suite,
    speed,
    rounds=4,
    aa=lambda setting, mode, round_: 1.0,
    jitter=0.0,
    seed=0,
    devices=(1,),
    sweep="sweep-1",
    first=None,
):
    """Rows of one sweep of `suite` with made-up speeds: speed(label, mode, round) images/s; each
    setting's baseline measured a second time in every round at its largest per-core batch, at
    aa(setting, mode, round) times its first measurement. `first`: the sweep's minimum rounds
    (its first look), `rounds` when None."""
    rng = np.random.default_rng(seed)
    rows = []
    for setting, n in ((setting, n) for n in devices for setting in suite.settings):
        for row in setting.rows:
            if row.replicate:
                continue
            counted = ModelCount(row.config, 1, 1, 6, {})
            for mode in suite.modes:
                for batch in suite.batch_sizes:
                    cell = Cell(row.config, mode, batch, Dtype.FP32, devices=n)
                    for round_ in range(rounds):
                        level = speed(row.label, mode.value, round_) * (1 + jitter * rng.standard_normal())
                        copies = [(0, 1.0)]
                        if row is setting.baseline and batch == max(suite.batch_sizes):
                            copies.append((1, aa(setting.name, mode.value, round_)))
                        for replicate, factor in copies:
                            samples = [level * factor * (1 + 0.001 * (i % 3 - 1)) for i in range(6)]
                            trial = Trial(sweep, 5, round_, first or rounds, 0, round_, replicate)
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
    assert head64.change.basis.value == "rounds" and head64.change.n == 4
    assert head64.change.change == pytest.approx(0.10, abs=0.002) and head64.change.uncertainty < 0.005
    assert [aa.state for aa in report.controls] == [AAState.PASSED, AAState.PASSED]
    assert "no order effect" in to_markdown([report])


def faster_head(label, mode, round_):
    return 100.0 * (1.3 if label == "head size 32 -> 64" else 1.0) * (1 + 0.01 * (round_ % 3))


def test_a_failing_a_a_makes_inconclusive_only_the_verdicts_it_covers():
    """An order effect in training on ImageNet-1K voids that setting's training verdicts, and no
    others: its inference and the other setting keep theirs."""
    suite = load_suite("table8")

    def shifted(setting, mode, round_):
        return 1.08 + 0.002 * round_ if (setting, mode) == ("ImageNet-1K", "train") else 1.0

    (report,) = build_reports(suite, sweep_rows(suite, faster_head, aa=shifted), load())
    failed = [aa for aa in report.controls if aa.failed]
    assert [(aa.setting, aa.mode) for aa in failed] == [("ImageNet-1K", "train")]
    words = {(v.claim.text.split()[0], v.setting, v.mode): {c.word for c in v.per_batch} for v in report.verdicts}
    assert words["head", "ImageNet-1K", "train"] == {Word.INCONCLUSIVE}
    assert words["BatchNorm", "ImageNet-1K", "train"] == {Word.INCONCLUSIVE}
    assert words["head", "ImageNet-1K", "infer"] == {Word.CONSISTENT}
    assert Word.INCONCLUSIVE not in words["BatchNorm", "ImageNet-21K -> 1K", "train"]
    text = to_markdown([report])
    assert "order-sensitive: the verdicts it covers are inconclusive" in text
    assert '"order_sensitive": true' in to_json([report])


def test_looks_lie_on_a_grid_of_doublings_each_at_its_share_of_the_5_percent():
    assert [look_confidence(n, 3) for n in (2, 3, 4, 6, 7, 12, 13)] == pytest.approx(
        [0.975, 0.975, 0.9875, 0.9875, 0.99375, 0.99375, 0.996875]
    )
    assert [n for n in range(2, 30) if on_grid(n, 3)] == [2, 3, 6, 12, 24]
    logs = [0.10, 0.02, 0.06]  # +6% with a wide spread: unresolved against +5%
    need = paired_change(np.exp(logs), [1.0] * 3, first=3).rounds_to_clear((0.0, 0.05))
    assert need is not None and on_grid(need, 3) and need > 3


def stopping_sweep(rng, first, on_the_grid, rounds=48):
    """The word a sweep under `--rounds auto` ends with on a change that sits on the claim's
    boundary (+5%, the rounds' log ratios N(log 1.05, 0.05)): it reads the cell after each round
    from `first` and stops on a conclusive word, at grid points only where `on_the_grid`, as
    `report.pending` makes it. first=None reads every round at a single look's confidence: the
    rule before the looks' grid."""
    claim = Claim("boundary", (), "variant", 0.05)
    logs = rng.normal(math.log(1.05), 0.05, rounds)
    for n in range(3, rounds + 1):
        word, _ = classify(paired_change(np.exp(logs[:n]), [1.0] * n, first), claim)
        if word is not Word.UNRESOLVED and (not on_the_grid or on_grid(n, first)):
            return word
    return word


def test_stopping_on_a_verdict_keeps_false_statements_under_5_percent():
    """A change on the boundary makes every conclusive word false. Read at 95% after every round,
    a sweep that stops on a verdict is wrong about one time in six; on the looks' grid, at most
    one in twenty (Monte Carlo: 400 sweeps, the bound 3 standard errors above 5%)."""
    rng = np.random.default_rng(2)
    grid = [stopping_sweep(rng, 3, True) for _ in range(400)]
    assert sum(w is not Word.UNRESOLVED for w in grid) / 400 < 0.08
    rng = np.random.default_rng(2)
    every_round = [stopping_sweep(rng, None, False) for _ in range(400)]
    assert sum(w is not Word.UNRESOLVED for w in every_round) / 400 > 0.12  # what the grid prevents


def test_a_cell_resolved_between_two_looks_gets_rounds_to_the_next():
    """Minimum 3 rounds, 4 measured: a verdict there is not a look the sweep may stop on."""
    suite = load_suite("table8")
    between = pending(suite, sweep_rows(suite, faster_head, rounds=4, first=3), load())
    assert between and {p.rounds_needed for p in between} == {6}
    assert not pending(suite, sweep_rows(suite, faster_head, rounds=6, first=3), load())


def test_the_cells_of_a_failing_a_a_get_more_rounds():
    """A failed A/A may be chance (one time in twenty): its cells go on a round at a time."""
    from coatbench.report import pending

    suite = load_suite("table8")

    def shifted(setting, mode, round_):
        return 1.08 + 0.002 * round_ if (setting, mode) == ("ImageNet-1K", "train") else 1.0

    waiting = pending(suite, sweep_rows(suite, faster_head, aa=shifted), load())
    assert {(p.mode, p.rounds_needed) for p in waiting} == {("train", 5)}  # 4 rounds so far, one more
    assert len(waiting) == 2 * 4  # both claims of the setting, every per-core batch


def test_a_noisy_a_a_whose_interval_contains_0_voids_nothing():
    """The H200's case: one A/A read +2.9% +-4.5. A wide interval that contains 0 shows noise,
    not an order effect, and the sharp verdicts beside it stand."""
    suite = load_suite("table8")
    noisy = lambda setting, mode, round_: (1.10, 0.95, 1.02, 0.99)[round_] if mode == "train" else 1.0  # noqa: E731
    (report,) = build_reports(suite, sweep_rows(suite, faster_head, aa=noisy), load())
    states = {(aa.setting, aa.mode): aa.state for aa in report.controls}
    assert states["ImageNet-1K", "train"] is AAState.WIDE
    head = {c.word for v in report.verdicts if v.claim.text.startswith("head") for c in v.per_batch}
    assert head == {Word.CONSISTENT}


def test_the_a_a_of_a_sweep_on_several_devices_covers_each_device_count_apart():
    suite = load_suite("table8")
    reports = build_reports(suite, sweep_rows(suite, faster_head, devices=(1, 2)), load())
    assert [r.devices for r in reports] == [1, 2]
    for report in reports:
        assert {(aa.setting, aa.mode) for aa in report.controls} == {
            (s.name, m) for s in suite.settings for m in ("train", "infer")
        }


def test_single_run_verdicts_are_unresolved_and_say_why():
    suite = load_suite("table8")
    rows = [dataclasses.replace(r, trial=None) for r in sweep_rows(suite, faster_head, rounds=1) if not r.replicate]
    (report,) = build_reports(suite, rows, load())
    head = [c for v in report.verdicts if v.claim.text.startswith("head") for c in v.per_batch]
    assert {c.word for c in head} == {Word.UNRESOLVED}
    text = to_markdown([report])
    assert "unresolved at 32-256 (single run)" in text
    assert "A/A control: not run (these rows were measured without rounds)" in text


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
    plan = make_plan(
        [TINY],
        SweepOptions(
            device=DeviceKind.CPU,
            modes=[Mode.INFER],
            batch_sizes=[1, 2],
            rounds=Rounds(2),
            seed=3,
            min_time=0.05,
            max_time=0.2,
            out=tmp_path / "r.jsonl",
        ),
    )
    result = run_sweep(plan)
    rows = read_rows(tmp_path / "r.jsonl")
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in result.rows]
    assert len(rows) == 2 * (2 + 1)  # two rounds of two cells and the A/A copy of the larger batch
    assert {r.trial.process for r in rows} == {0, 1} and {r.trial.seed for r in rows} == {3}
    assert all(r.ok and r.trial.sweep == plan.sweep for r in rows)
    assert sorted((r.trial.round, r.spec.batch_per_core) for r in rows if r.replicate) == [(0, 2), (1, 2)]
    assert result.stopped.reason.value == "fixed" and result.rounds == 2


def test_a_dead_worker_fails_only_the_job_it_was_measuring(monkeypatch):
    for name, value in fault_env("killjob:0:1").items():  # the worker dies in its second job
        monkeypatch.setenv(name, value)
    jobs = [(Cell(TINY, Mode.INFER, 1), Budget(min_time=0.05, max_time=0.2))] * 3
    found = Children(ChildKind.PROCESS, "cpu").events(jobs)
    events = [(e.index, e.measurement) for e in found if e.kind is EventKind.DONE]
    assert [(i, m.status) for i, m in events] == [(0, Status.OK), (1, Status.FAILED), (2, Status.OK)]
    assert "exit code -9" in events[1][1].message


AUTO_SUITE = """
batch_sizes = [1]
modes = ["infer"]
[[settings]]
name = "tiny"
model = "coatnet-0"
image_size = 32
rows = [{ layout = "1,1,1,1,1" }, { label = "hd64", layout = "1,1,1,1,1", head_size = 64 },
        { layout = "1,1,1,1,1", norm = "ln" }]
[[claims]]
text = "head size 64 is at least 5% faster"
row = "hd64"
faster = "variant"
min = 0.05
"""


def made_up(effect: float, noise: float, seed: int = 0):
    """A stand-in for the harness (measuring inline: `run.launch.Inline`): the head-size-64 variant `effect`
    faster, LN as fast as the baseline, every measurement `noise` apart from the next."""
    rng = np.random.default_rng(seed)

    def measure_cell(cell, budget):
        level = 100.0 * (1 + effect if cell.config.head_size == 64 else 1.0) * math.exp(noise * rng.standard_normal())
        return Measurement(Status.OK, [level * (1 + 0.001 * k) for k in (-1, 0, 1)], 1)

    return measure_cell


def auto_plan(tmp_path, budget_s: float, resume=None):
    from coatbench.run.plan import plan_suite
    from coatbench.suite import load_suite

    suite_file = tmp_path / "auto.toml"
    suite_file.write_text(AUTO_SUITE)
    plan = plan_suite(
        load_suite(str(suite_file)),
        SweepOptions(
            device=DeviceKind.CPU,
            seed=4,
            rounds=Rounds(3, auto=True),
            time_budget_s=budget_s,
            out=tmp_path / "auto.jsonl",
            resume=resume,
        ),
    )
    return plan


def test_rounds_auto_stops_once_every_claim_cell_is_resolved(tmp_path):
    result = run_sweep(auto_plan(tmp_path, 600.0), launcher=Inline(made_up(0.30, 0.005)))
    assert result.stopped.reason.value == "resolved" and result.rounds == 3


def test_rounds_auto_adds_rounds_of_the_unresolved_cells_only(tmp_path):
    """+8% against a claim of 5%, each measurement 3% noisy: three rounds straddle 5%; later rounds
    measure only the claim's two cells and the A/A copy, until the claim is resolved."""
    result = run_sweep(auto_plan(tmp_path, 600.0), launcher=Inline(made_up(0.08, 0.03)))
    assert result.rounds > 3 and result.stopped.reason.value in ("resolved", "out of reach")
    later = [r for r in result.rows if r.trial.round >= 3]
    assert later and {r.spec.network["norm"] for r in later} == {"bn"}  # LN has no claim: not measured again
    assert {(r.spec.network["head_size"], r.replicate) for r in later} == {(32, 0), (32, 1), (64, 0)}


def test_rounds_auto_measures_the_closest_cell_again_while_one_round_of_it_fits(tmp_path):
    """After the minimum, no projected need fits what is left, yet one round of the closest cell
    does: that round is added, of its cells alone (a few rounds' spread is itself uncertain).
    Once not even one round fits, the sweep stops on the budget. Costs are made up: nothing timed."""
    plan = auto_plan(tmp_path, 1e-6)
    rows = run_sweep(plan, launcher=Inline(made_up(0.30, 0.25))).rows  # the minimum three rounds
    closest = pending(plan.suite, rows, Accuracies((), ()))[0]
    more = closest.rounds_needed - closest.rounds
    assert more >= 2  # made_up's seed gives a wide interval: a need of several rounds
    costs = _Costs(launch_s=1.0)  # every round of these cells: 1 s
    fits_one = dataclasses.replace(plan, time_budget_s=more - 0.5)  # `more` rounds do not fit, one does
    slots, stop, why = next_round(fits_one, rows, 0.0, costs, set())
    assert stop is None and "more than fit: one more round of it" in why
    timed = {(s.cell.config.head_size, s.cell.config.norm, s.replicate) for s in slots if s.timed}
    assert timed == {(32, "bn", 0), (32, "bn", 1), (64, "bn", 0)}  # the claim's two cells, the A/A copy
    slots, stop, _ = next_round(dataclasses.replace(plan, time_budget_s=0.5), rows, 0.0, costs, set())
    assert slots == [] and stop.reason is StopReason.BUDGET


def test_rounds_auto_stops_on_the_budget_and_resume_goes_on_with_the_same_sweep(tmp_path):
    first = run_sweep(auto_plan(tmp_path, 1e-6), launcher=Inline(made_up(0.08, 0.03)))
    assert first.rounds == 3 and first.stopped.reason.value == "budget"
    assert "a round of the closest takes" in first.stopped.detail and "overrun by the 3 rounds" in first.stopped.detail
    plan = auto_plan(tmp_path, 600.0, resume=tmp_path / "auto.jsonl")
    assert plan.slots == () and plan.sweep == first.rows[0].trial.sweep  # the minimum is there: only more rounds
    again = run_sweep(plan, launcher=Inline(made_up(0.08, 0.03, seed=1)))
    assert again.rounds > 3 and {r.trial.sweep for r in again.rows} == {plan.sweep}
    assert min(r.trial.round for r in again.rows) == 3


def test_a_cell_out_of_memory_is_not_tried_again_and_its_a_a_copy_moves_to_the_batch_below(tmp_path):
    def measure_cell(cell, budget):
        if cell.batch_size == 2:
            return Measurement(Status.OOM, message="out of memory")
        return Measurement(Status.OK, [100.0, 100.1, 99.9], 1)

    plan = make_plan(
        [TINY, build_config("coatnet-0", image_size=32, layout="1,1,1,1,1", num_classes=10, norm="ln")],
        SweepOptions(
            device=DeviceKind.CPU,
            modes=[Mode.INFER],
            batch_sizes=[1, 2],
            rounds=Rounds(3),
            seed=1,
            out=tmp_path / "oom.jsonl",
        ),
    )
    rows = run_sweep(plan, launcher=Inline(measure_cell)).rows
    at_2 = [(r.spec.network["norm"], r.status) for r in rows if r.spec.batch_per_core == 2]
    assert sorted(at_2) == [("bn", Status.OOM), ("ln", Status.OOM)]  # each once, in round 0
    copies = [r for r in rows if r.replicate and r.ok]
    assert {r.spec.batch_per_core for r in copies} == {1} and {r.trial.round for r in copies} >= {1, 2}
    # a resumed sweep does not try them again either, in any round
    configs = list(dict.fromkeys(c.config for c in plan.cells))
    again = make_plan(
        configs,
        SweepOptions(
            device=DeviceKind.CPU,
            modes=[Mode.INFER],
            batch_sizes=[1, 2],
            rounds=Rounds(4),
            out=tmp_path / "x",
            resume=tmp_path / "oom.jsonl",
        ),
    )
    assert again.slots and not any(s.cell.batch_size == 2 for s in again.slots if s.timed)


def test_a_cell_whose_a_a_copy_ran_out_of_memory_first_reads_oom_not_missing():
    """The sweep measures no more a cell that ran out of memory, and its A/A copy may be the first
    to find that: the H200's CoAtNet-3 training at per-core 256 read "baseline missing"."""
    suite = load_suite("table8")
    rows = []
    for row in sweep_rows(suite, faster_head, rounds=3):
        if row.spec.model == "coatnet-3" and row.spec.mode == "train" and row.spec.batch_per_core == 256:
            if row.replicate == 0 and row.spec.network["norm"] == "bn":
                continue  # never measured: its A/A copy ran first and out of memory
            row = dataclasses.replace(row, status=Status.OOM, samples=[])
        rows.append(row)
    (report,) = build_reports(suite, rows, load())
    (verdict,) = [v for v in report.verdicts if v.setting.startswith("ImageNet-21K") and v.mode == "train"]
    cell = next(c for c in verdict.per_batch if c.batch == 256)
    assert cell.word is Word.UNTESTED and cell.missing == "baseline oom, variant oom"


def test_host_bound_cells_get_no_more_rounds():
    """More rounds of a host-bound cell time the same kernel launches (the H200 gave one 40 rounds
    of a 9-minute budget): `--rounds auto` spends its budget on the others."""
    from coatbench.results import HostTiming

    def starved(row):  # the device had nothing queued when the host issued the block's last step
        blocks = {"issue_s": [1.0] * len(row.samples), "tail_s": [1e-6] * len(row.samples)}
        return dataclasses.replace(row, host=HostTiming.of(blocks, row.spec.batch_per_core, row.samples))

    suite = load_suite("table8")
    rows = sweep_rows(suite, faster_head, rounds=3, jitter=0.3, seed=1)
    assert 32 in {p.batch for p in pending(suite, rows, load())}
    marked = [starved(r) if r.spec.batch_per_core == 32 else r for r in rows]
    waiting = pending(suite, marked, load())
    assert waiting and 32 not in {p.batch for p in waiting}

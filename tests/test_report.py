import base64
import json
import math
from pathlib import Path

import pytest
from conftest import assert_one_line_error
from scipy import stats as scipy_stats

from coatbench.accuracy import load
from coatbench.counting import ModelCount
from coatbench.errors import CoatbenchError
from coatbench.measure.harness import Cell, Measurement
from coatbench.report import Word, build_reports, classify
from coatbench.results import Env, Status, Trial, append_row, read_rows
from coatbench.run.sweep import make_row
from coatbench.settings import Dtype, Execution, Format
from coatbench.stats import Basis, Change, look_confidence, on_grid
from coatbench.suite import Claim, load_suite
from coatbench.views.report import long_frame, plot, summary_text, to_json, to_latex, to_markdown, verdict_lines


def env(device="NVIDIA H100 80GB HBM3"):
    return Env("0.1.0", None, "3.11", "2.11", "13.0", 90000, "580", "cuda", device, 1, "x", 16, 16)


def rows_for(
    suite, speeds, device="NVIDIA H100 80GB HBM3", execution=Execution.EAGER, status=None, channels_last=True, rounds=0
):
    """Result rows as the sweep writes them, with chosen speeds: {(label, mode): images/s}; one run
    a cell without rounds (rounds=0), else a sweep of that many rounds, each round at its own level."""
    rows = []
    for setting in suite.settings:
        for row in setting.rows:
            counted = ModelCount(row.config, 75_000_000, 15_700_000_000, 94_000_000_000, {})
            for mode in suite.modes:
                for batch in suite.batch_sizes:
                    cell = Cell(row.config, mode, batch, Dtype.BF16, execution, channels_last)
                    base = speeds.get((setting.name, row.label, mode.value), 1000.0)
                    state = (status or {}).get((setting.name, row.label, mode.value, batch), "ok")
                    for round_ in range(max(rounds, 1)):
                        level = base * (1 + 0.05 * (round_ % 3))
                        samples = [] if state != "ok" else [level * (1 + 0.002 * ((i % 5) - 2)) for i in range(12)]
                        trial = Trial(f"sweep-{execution.value}", 1, round_, rounds, 0, 0) if rounds else None
                        measured = Measurement(Status(state), samples, 1)
                        rows.append(make_row(cell, measured, counted, env(device), (), trial))
    return rows


@pytest.fixture(scope="module")
def table8():
    return load_suite("table8")


def test_report_joins_accuracy_and_changes(table8):
    speeds = {("ImageNet-1K", "head size 32 -> 64", "train"): 1150.0, ("ImageNet-1K", "norm BN -> LN", "train"): 700.0}
    (report,) = build_reports(table8, rows_for(table8, speeds), load())
    lines = {(line.setting, line.label): line for line in report.lines}
    assert [line.accuracy.value for line in report.lines] == [84.1, 83.9, 84.1, 87.9, 87.8]
    head64 = lines["ImageNet-1K", "head size 32 -> 64"].cells["train", 64]
    assert head64.change.change == pytest.approx(0.15, abs=0.005) and head64.change.uncertainty < 0.01
    assert lines["ImageNet-1K", "CoAtNet-2"].cells["train", 64].change is None  # the baseline


def test_verdicts(table8):
    speeds = {
        ("ImageNet-1K", "head size 32 -> 64", "train"): 1150.0,  # +15%: consistent with "significant"
        ("ImageNet-1K", "norm BN -> LN", "train"): 700.0,  # BN +43%: stronger than 10-20%
        ("ImageNet-1K", "norm BN -> LN", "infer"): 950.0,
    }  # BN +5%: weaker
    (report,) = build_reports(table8, rows_for(table8, speeds, rounds=3), load())
    got = {(v.claim.text.split()[0], v.setting, v.mode): {c.word for c in v.per_batch} for v in report.verdicts}
    assert got["head", "ImageNet-1K", "train"] == {Word.CONSISTENT}
    assert got["head", "ImageNet-1K", "infer"] == {Word.NO_DIFFERENCE}
    assert got["BatchNorm", "ImageNet-1K", "train"] == {Word.STRONGER}
    assert got["BatchNorm", "ImageNet-1K", "infer"] == {Word.WEAKER}
    assert got["BatchNorm", "ImageNet-21K -> 1K", "train"] == {Word.NO_DIFFERENCE}
    (detail,) = [line for line in verdict_lines(report) if "stronger than claimed" in line and "[ImageNet-1K]" in line]
    # one sign everywhere: LN (the variant) at 700 against BN at 1000 is -30.0%, as in the table
    assert "-30.0%" in detail and "the baseline 10%-20% faster" in detail and "eager" in detail and "H100" in detail
    assert "over 3 rounds" in detail
    # one run a cell: no verdict rests on one run's blocks
    (single,) = build_reports(table8, rows_for(table8, speeds), load())
    assert {c.word for v in single.verdicts for c in v.per_batch} == {Word.UNRESOLVED}


CLAIM = Claim("bn", (), "baseline", 0.10, 0.20)  # the claimed side's speed-up: R = [10%, 20%]
OPEN = Claim("hd64", (), "variant", 0.05)  # R = [5%, inf)


def interval(low: float, high: float, n: int = 5) -> Change:
    """The claimed side's speed-up with a given 95% interval, as rounds would give it."""
    mid = (math.log1p(low) + math.log1p(high)) / 2
    sd = (math.log1p(high) - mid) / scipy_stats.t.ppf(0.975, n - 1) * math.sqrt(n)
    return Change(math.expm1(mid), low, high, Basis.ROUNDS, n, sd)


@pytest.mark.parametrize(
    "claim, low, high, word, straddles",
    [
        (CLAIM, 0.12, 0.18, Word.CONSISTENT, ()),
        (CLAIM, 0.25, 0.35, Word.STRONGER, ()),
        (CLAIM, 0.02, 0.08, Word.WEAKER, ()),
        (CLAIM, -0.02, 0.05, Word.NO_DIFFERENCE, ()),
        (CLAIM, -0.12, -0.03, Word.CONTRADICTED, ()),
        (CLAIM, 0.05, 0.15, Word.UNRESOLVED, (0.10,)),  # straddles min
        (CLAIM, 0.15, 0.25, Word.UNRESOLVED, (0.20,)),  # straddles max
        (CLAIM, -0.02, 0.14, Word.UNRESOLVED, (0.0, 0.10)),  # contains 0 but reaches into R: not "no difference"
        (CLAIM, -0.40, 0.43, Word.UNRESOLVED, (0.0, 0.10, 0.20)),  # +-43% is no "no measurable difference"
        (OPEN, -0.052, 0.124, Word.UNRESOLVED, (0.0, 0.05)),  # +3.6% +-8.6 for >= 5% is not "consistent"
        (OPEN, 0.06, 0.60, Word.CONSISTENT, ()),  # no max: nothing is stronger
        (OPEN, 0.01, 0.04, Word.WEAKER, ()),
    ],
)
def test_each_verdict_word_from_constructed_intervals(claim, low, high, word, straddles):
    assert classify(interval(low, high), claim) == (word, straddles)


def test_no_interval_is_unresolved():
    assert classify(Change(0.3, math.nan, math.nan, Basis.ROUNDS, 1), OPEN) == (Word.UNRESOLVED, ())


def test_the_rounds_that_would_resolve_an_interval():
    """With the rounds' spread and mean kept, the interval narrows as t(n-1) / sqrt(n), t at the
    confidence of the look at n: the need is the first point of the looks' grid (doublings of
    the first look) at which it clears the nearest boundary, and none when the mean sits on one."""
    near = interval(0.06, 0.16)  # straddles 10%, mean ~10.9%: close to the boundary
    far = interval(0.11, 0.35, n=3)  # straddles 20%, mean ~22.4%

    def half_width(c: Change, n: int) -> float:
        return scipy_stats.t.ppf(0.5 + look_confidence(n, c.first) / 2, n - 1) * c.log_sd / math.sqrt(n)

    for c in (near, far):
        need = c.rounds_to_clear((0.0, 0.10, 0.20))
        room = min(abs(math.log1p(c.change) - math.log1p(b)) for b in (0.0, 0.10, 0.20))
        assert on_grid(need, c.first) and half_width(c, need) < room
        assert need // 2 < c.n or room <= half_width(c, need // 2)  # the grid point before did not
    assert near.rounds_to_clear((0.0, 0.10, 0.20)) > far.rounds_to_clear((0.0, 0.10, 0.20))
    on_the_line = interval(-0.05, 1 / 0.95 - 1)  # its mean is 0 on the log scale
    assert on_the_line.rounds_to_clear((0.0,)) is None  # no number of rounds clears 0
    assert Change(0.1, 0.0, 0.2, Basis.RUNS, 3).rounds_to_clear((0.05,)) is None  # not paired: no projection


def test_a_claims_summary_names_the_batches_of_each_word(table8):
    """ "weaker at 32; consistent at 64-256", not a bare "mixed"."""
    rows = []
    for batch, speed in ((32, 1030.0), (64, 1300.0), (128, 1150.0), (256, 1200.0)):
        found = rows_for(table8, {("ImageNet-1K", "head size 32 -> 64", "train"): speed}, rounds=3)
        rows += [r for r in found if r.spec.batch_per_core == batch]
    (report,) = build_reports(table8, rows, load())
    head = next(v for v in report.verdicts if v.claim.text.startswith("head") and v.mode == "train")
    assert head.summary == ((Word.WEAKER, (32,)), (Word.CONSISTENT, (64, 128, 256)))
    assert summary_text(head, report.batch_sizes) == "weaker than claimed at 32; consistent at 64-256"
    first = json.loads(to_json([report]))["reports"][0]["verdicts"][0]["summary"][0]
    assert first == {"word": "weaker than claimed", "batch_per_core": [32]}


def test_oom_cells_make_untested_claims(table8):
    status = {("ImageNet-21K -> 1K", "norm BN -> LN", "train", b): "oom" for b in table8.batch_sizes}
    (report,) = build_reports(table8, rows_for(table8, {}, status=status), load())
    v = next(v for v in report.verdicts if v.setting == "ImageNet-21K -> 1K" and v.mode == "train")
    assert {c.word for c in v.per_batch} == {Word.UNTESTED} and all("variant oom" in c.missing for c in v.per_batch)
    assert "OOM" in to_markdown([report])


def test_accuracy_plot_says_which_batch_a_point_ran_at(table8):
    from coatbench.views.report import accuracy_point

    status = {("ImageNet-21K -> 1K", "CoAtNet-3", "train", b): "oom" for b in (128, 256)}
    speeds = {("ImageNet-21K -> 1K", "CoAtNet-3", "train"): 200.0}
    (report,) = build_reports(table8, rows_for(table8, speeds, status=status), load())
    lines = {(line.setting, line.label): line for line in report.lines}
    rate, label = accuracy_point(report, lines["ImageNet-21K -> 1K", "CoAtNet-3"], "train")
    assert rate == pytest.approx(200.0, rel=0.01) and label == "CoAtNet-3 (train, per-core 64)"
    assert accuracy_point(report, lines["ImageNet-21K -> 1K", "CoAtNet-3"], "infer")[1] == "CoAtNet-3 (infer)"


def test_hardware_is_never_mixed(table8):
    rows = rows_for(table8, {}) + rows_for(
        table8, {("ImageNet-1K", "norm BN -> LN", "train"): 500.0}, device="NVIDIA A100-SXM4-80GB"
    )
    reports = build_reports(table8, rows, load())
    assert sorted(r.device_name for r in reports) == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]
    h100 = next(r for r in reports if "H100" in r.device_name)
    ln_h100 = next(line for line in h100.lines if line.label == "norm BN -> LN" and line.setting == "ImageNet-1K")
    assert ln_h100.cells["train", 32].images_per_s == pytest.approx(1000, rel=0.01)  # no A100 run pooled in
    a100 = next(r for r in reports if "A100" in r.device_name)
    ln = next(line for line in a100.lines if line.label == "norm BN -> LN" and line.setting == "ImageNet-1K")
    assert ln.cells["train", 32].change.change == pytest.approx(-0.5, abs=0.01)  # against the A100's own baseline


def test_several_runs_of_a_cell_are_all_used(table8):
    head64 = ("ImageNet-1K", "head size 32 -> 64", "train")
    once = rows_for(table8, {head64: 1150.0})
    (single,) = build_reports(table8, once, load())
    (double,) = build_reports(table8, once + rows_for(table8, {head64: 1500.0}), load())
    cell = lambda report: next(line for line in report.lines if line.label == head64[1]).cells["train", 64]  # noqa: E731
    assert len(cell(double).runs.ok) == 2
    assert cell(double).images_per_s == pytest.approx(math.sqrt(1150 * 1500), rel=0.01)
    assert cell(double).change.change == pytest.approx(math.sqrt(1.15 * 1.5) - 1, abs=0.01)
    assert cell(double).change.uncertainty > 0.1 > cell(single).change.uncertainty  # the runs disagree: so does it
    assert "from the timed blocks of a single run" in to_markdown(
        [single]
    ) and "over the runs of each cell" in to_markdown([double])


def test_eager_and_compiled_disagreement_is_said(table8):
    eager = rows_for(table8, {("ImageNet-1K", "norm BN -> LN", "train"): 700.0}, rounds=3)
    compiled = rows_for(
        table8, {("ImageNet-1K", "norm BN -> LN", "train"): 960.0}, execution=Execution.COMPILE, rounds=3
    )
    reports = build_reports(table8, eager + compiled, load())
    assert {r.execution for r in reports} == {"eager", "compile"}
    markdown = " ".join(to_markdown(reports).split())
    assert "The executions disagree on BatchNorm is 10-20% faster than LayerNorm [ImageNet-1K, train]" in markdown
    assert "compile: weaker than claimed; eager: stronger than claimed" in markdown


def test_missing_accuracy_is_a_dash_with_a_footnote():
    suite = load_suite("ci-cpu")
    (report,) = build_reports(suite, rows_for(suite, {}), load())
    assert all(line.accuracy is None for line in report.lines)
    markdown = to_markdown([report])
    assert "| -  " in markdown or "| - |" in markdown
    assert "no accuracy recorded" in markdown


def test_every_format(table8, tmp_path):
    reports = build_reports(table8, rows_for(table8, {}), load())
    assert "| setting" in to_markdown(reports) and "\\begin{tabular}" in to_latex(reports)
    data = json.loads(to_json(reports))
    assert data["reports"][0]["lines"][0]["accuracy"]["value"] == 84.1
    frame = long_frame(reports)
    assert len(frame) == 5 * 2 * 4 and set(frame["status"]) == {"ok"}
    png = tmp_path / "plot.png"
    plot(reports, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli_from_saved_runs(cli, table8, tmp_path):
    path = tmp_path / "runs.jsonl"
    for row in rows_for(table8, {("ImageNet-1K", "norm BN -> LN", "infer"): 600.0}):
        append_row(path, row)
    for fmt in Format:
        result = cli("report", str(path), "--format", fmt.value)
        assert result.returncode == 0, result.stderr
    markdown = cli("report", str(path), "--format", "markdown").stdout
    # the claims first (3 claim-settings x 2 modes), then a table per mode (5 rows each)
    assert markdown.count("| ImageNet") == 6 + 2 * 5 and "84.1" in markdown and "BatchNorm is 10-20% faster" in markdown
    assert markdown.index("**Claims:") < markdown.index("**Training:") < markdown.index("**Inference:")


@pytest.mark.parametrize(
    "content, needles",
    [
        ("not toml [", ["not valid TOML"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-9'\nrows=[{}]\n", ["unknown model"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-2'\nrows=[{colour='red'}]\n", ["unknown row field"]),
        ("description='x'\n", ["malformed suite"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-2'\nrows=[{baseline=true},{norm='ln',baseline=true}]\n", ["mark one"]),
    ],
)
def test_malformed_suite(cli, tmp_path, content, needles):
    path = tmp_path / "mine.toml"
    path.write_text(content)
    assert_one_line_error(cli("run", str(path), "--dry-run"), str(path), *needles)
    with pytest.raises(CoatbenchError):
        load_suite(str(path))


def test_unknown_suite_and_corrupt_results(cli, tmp_path):
    assert_one_line_error(cli("run", "table99"), "unknown suite", "table8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n')
    assert_one_line_error(cli("report", str(bad)), "not a coatbench result row")
    assert_one_line_error(cli("report", str(tmp_path / "none.jsonl")), "does not exist")


def test_dry_run_and_resume(cli, tmp_path):
    dry = cli("run", "ci-cpu", "--device", "cpu", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "6 cells x 3 rounds" in dry.stdout and "nothing was measured" in dry.stdout
    out, suite = tmp_path / "r.jsonl", tmp_path / "tiny.toml"
    suite.write_text('batch_sizes = [1]\n[[settings]]\nname = "tiny"\nmodel = "coatnet-0"\nimage_size = 32\n'
                     'rows = [{ layout = "1,1,1,1,1" }, { layout = "1,1,1,1,1", head_size = 64 }]\n')  # fmt: skip
    quick = [str(suite), "--device", "cpu", "--rounds", "2", "--min-time", "0.05", "--max-time", "0.2"]
    first = cli("run", *quick, "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == (4 + 2) * 2  # four cells and the A/A copies of two, in each of two rounds
    out.write_text("\n".join(lines[:3]) + "\n")  # as if the sweep had stopped after 3 measurements
    again = cli("run", *quick, "--resume", str(out), "--dry-run")
    assert "3 of 12 measurements already there" in " ".join((again.stdout + again.stderr).split())  # notes wrap
    resumed = cli("run", *quick, "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    keys = [(r.trial.sweep, r.trial.round, r.replicate, r.spec.network["head_size"], r.spec.mode) for r in rows]
    assert len(rows) == 12 and len(set(keys)) == 12  # the same sweep continued: nothing twice, nothing missing
    assert rows[:5] == read_rows(out)[:5] and len({r.trial.seed for r in rows}) == 1


def test_the_baseline_is_the_marked_row_wherever_it_is_listed():
    """results/cpu/order/reversed.toml lists Table 8's CoAtNet-2 rows backwards, the baseline last:
    the same comparisons as the suite's own order."""
    root = Path(__file__).resolve().parents[1] / "results" / "cpu" / "order"
    forward, reversed_ = (load_suite(str(root / f"{name}.toml")) for name in ("forward", "reversed"))
    (f,), (r,) = forward.settings, reversed_.settings
    assert f.baseline.label == r.baseline.label == "CoAtNet-2" and r.baseline_index == 2
    assert [row.label for row in r.variants] == [row.label for row in reversed(f.variants)]
    assert forward.groups[0][0] == reversed_.groups[0][0] == f.baseline.config  # measured first and last


def test_runs_under_other_conditions_are_never_pooled(table8):
    """The same variant measured with and without channels-last (or on more devices, or with
    another torch) is another cell: each set of conditions gets its own report."""
    head64 = ("ImageNet-1K", "head size 32 -> 64", "train")
    rows = rows_for(table8, {}) + rows_for(table8, {head64: 1500.0}, channels_last=False)
    reports = build_reports(table8, rows, load())
    assert sorted(r.channels_last for r in reports) == [False, True]
    for report in reports:
        cell = next(line for line in report.lines if line.label == head64[1]).cells["train", 64]
        assert len(cell.runs.ok) == 1
        assert cell.images_per_s == pytest.approx(1000.0 if report.channels_last else 1500.0, rel=0.01)
    assert "contiguous" in to_markdown(reports) and "channels-last" in to_markdown(reports)


def test_runs_of_older_code_are_left_out_of_a_cell(table8):
    """A cell measured again after a code change shows only the new code's runs: pooling them
    would read the change as noise, or as a change against a baseline not re-measured."""
    import dataclasses

    head64 = ("ImageNet-1K", "head size 32 -> 64", "train")

    def at(rows, sha, day):
        return [dataclasses.replace(r, env=dataclasses.replace(r.env, git_sha=sha), timestamp=day) for r in rows]

    old = at(rows_for(table8, {head64: 1500.0}), "a" * 40, "2026-11-01T00:00:00+00:00")
    new = at(rows_for(table8, {head64: 1100.0}), "b" * 40, "2026-11-02T00:00:00+00:00")
    (report,) = build_reports(table8, old + new, load())
    cell = next(line for line in report.lines if line.label == head64[1]).cells["train", 64]
    assert len(cell.runs.ok) == 1 and cell.images_per_s == pytest.approx(1100.0, rel=0.01)
    assert cell.runs.superseded == 1
    assert cell.change.change == pytest.approx(0.10, abs=0.01)  # against the baseline's new run, not a pool of both
    assert "Left out: 40 run(s) by older code" in to_markdown([report])


def test_report_shows_a_speed_file_of_no_suite_cell(cli):
    """results/h100/speed.jsonl (benchmarks/vs_timm.py's own format): the speed table, each
    implementation named, each cell from the runs of the code that measured it last."""
    result = cli("report", "results/h100/speed.jsonl", env_columns=100, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert "no cell of suite table8" in result.stdout and "timm coatnet-2" in result.stdout
    assert "Left out: 36 run(s) by older code" in result.stdout


def test_a_vs_timm_row_without_a_field_is_one_line(cli, tmp_path):
    line = json.loads(
        Path(__file__).resolve().parents[1].joinpath("results/h100/speed.jsonl").read_text().splitlines()[0]
    )
    del line["samples"]
    broken = tmp_path / "speed.jsonl"
    broken.write_text(json.dumps(line) + "\n")
    assert_one_line_error(cli("report", str(broken)), "speed.jsonl:1", "samples")


@pytest.mark.parametrize(
    "args",
    [
        ["report", "results/h200/table8.jsonl"],
        ["report", "results/h100/table8.jsonl"],
        ["models"],
        ["report", "results/cpu/table8.jsonl"],
        ["report", "results/h100/speed.jsonl"],
    ],
)
def test_tables_fit_100_columns_without_cutting_a_number(cli, args):
    result = cli(*args, env_columns=100, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert not any("…" in line for line in lines)  # rich's mark of a cut cell


def test_the_html_report_is_one_self_contained_page(cli):
    """The structure a reader needs (CI checks it; the committed screenshot shows the pixels):
    the claims and a table per mode for each execution, the figure inline, no outside reference."""
    from html.parser import HTMLParser

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.images, self.references, self.headings = 0, [], [], []
            self._in = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.tables += tag == "table"
            if tag == "img":
                self.images.append(attrs.get("src", ""))
                self.tables_before_image = self.tables
            self.references += [v for k, v in attrs.items() if k in ("src", "href") and not v.startswith("data:")]
            self._in = tag

        def handle_data(self, data):
            if self._in in ("h2", "h3"):
                self.headings.append(data.strip())

    result = cli("report", "results/h100/table8.jsonl", "--format", "html", cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    page = Page()
    page.feed(result.stdout)
    claims = [h for h in page.headings if h.startswith("Claims")]
    assert len(claims) == 2 and page.tables == 2 * 3 + 1  # eager and compiled: claims, train, infer; environment
    assert len(page.images) == 1 and base64.b64decode(page.images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.tables_before_image == 0  # the decision figure first, above the tables
    assert page.references == []  # self-contained: nothing to fetch, nothing to break
    assert "Environment" in page.headings and "How it was made" in page.headings


def test_the_decision_figure_puts_the_claim_up_and_clips_what_wanders(table8):
    """On results/h200/table8.jsonl: the BN claim is drawn as BN's speed-up over LN (up: the claim
    holds), and a host-bound point of +-106% neither sets the axis nor vanishes: it sits at the
    edge; with no commit named by the rows the title names none (no "unknown")."""
    from coatbench.views.report import claim_limits, claim_points, figure

    root = Path(__file__).resolve().parents[1] / "results" / "h200"
    (report,) = build_reports(table8, read_rows(root / "table8.jsonl"), load())
    ln = next(v for v in report.verdicts if (v.variant, v.setting, v.mode) == ("LN", "ImageNet-1K", "infer"))
    points = {p.batch: p for p in claim_points(ln)}
    cell = {c.batch: c for c in ln.per_batch}[256]
    assert cell.change.change < 0 and points[256].speedup == pytest.approx(100 * (1 / (1 + cell.change.change) - 1))
    assert points[256].steady and not points[32].steady and points[32].high - points[32].low > 100
    # the panel holds both modes: its range is the claimed range (to 20%) and their steady points
    both = [p for v in report.verdicts if (v.claim, v.setting) == (ln.claim, ln.setting) for p in claim_points(v)]
    low, high = claim_limits(ln.claim, both)
    assert low < 0 and 20 < high < 40  # not the +-106% of the host-bound point
    fig = figure([report])
    (axis,) = [a for a in fig.axes if a.get_title().startswith("BatchNorm") and a.get_title().endswith("\nImageNet-1K")]
    assert axis.get_ylim() == pytest.approx((low, high))
    assert "coatbench 7bfb25b" in fig.get_suptitle()
    unnamed = figure(build_reports(table8, rows_for(table8, {}), load()))
    assert "unknown" not in unnamed.get_suptitle()


@pytest.mark.parametrize("hardware", ["h200", "h100", "cpu", "h200x2"])
def test_the_committed_reports_are_what_report_renders_now(cli, hardware):
    root = Path(__file__).resolve().parents[1] / "results" / hardware
    result = cli("report", str(root / "table8.jsonl"), "--format", "markdown", cwd=root.parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout == (root / "table8.md").read_text()  # re-render: see CONTRIBUTING.md


@pytest.mark.parametrize("width", [100, 60])
def test_a_table_wider_than_the_console_keeps_every_character_of_its_figures(monkeypatch, width):
    """rich narrows a table that does not fit by cutting cells ("128" read "12") or dropping a
    column; the speed table of a 2x H200 sweep (12 columns) must keep every figure whole: on one
    line at 100 columns, folded onto more lines at 60."""
    import io
    import re
    from collections import Counter

    from rich.console import Console

    import coatbench.views.console as console_module
    from coatbench.views.speed import show_rows, speed_table

    out = io.StringIO()
    monkeypatch.setattr(console_module, "console", Console(width=width, file=out))
    rows = [r for r in read_rows(Path("results/h200x2/scaling.jsonl")) if r.trial.sweep.endswith("-105403684")]
    show_rows(rows, Format.TABLE, "Throughput")
    table = out.getvalue().split("In every row")[0]
    assert max(len(line) for line in table.splitlines()) <= width
    lines = speed_table(rows)[0]
    shown = [column for column in lines[0] if len({line[column] for line in lines}) > 1]
    cells = [line[column] for line in lines for column in shown]
    if width == 100:
        assert all(value in table for value in cells) and "variant" in table
    # folded or not, no character is left out: cutting "128" to "12" loses a "8"
    needed = Counter(re.sub(r"\s", "", "".join(cells) + "".join(shown)))
    shown_chars = Counter(re.sub(r"\s", "", table))
    assert all(shown_chars[char] >= count for char, count in needed.items()), needed - shown_chars


def test_host_bound_cells_are_marked_in_tables_json_and_verdicts(table8):
    """At per-core 32 the device had nothing queued when the host issued a block's last step (it
    waited on the host); at the larger batches a whole step was still queued."""
    import dataclasses

    from coatbench.results import HostTiming

    def issued(row):
        step_s = row.spec.batch_per_core / row.samples[0]
        tail = 1e-5 if row.spec.batch_per_core == 32 else step_s
        blocks = {"issue_s": [step_s] * len(row.samples), "tail_s": [tail] * len(row.samples)}
        return dataclasses.replace(row, host=HostTiming.of(blocks, row.spec.batch_per_core, row.samples))

    rows = [issued(r) for r in rows_for(table8, {("ImageNet-1K", "head size 32 -> 64", "train"): 1150.0}, rounds=3)]
    assert {r.host.host_bound for r in rows if r.spec.batch_per_core == 32} == {True}
    assert all(r.host.queued_steps == pytest.approx(1.0, rel=0.01) for r in rows if r.spec.batch_per_core > 32)
    (report,) = build_reports(table8, rows, load())
    head = next(v for v in report.verdicts if v.claim.text.startswith("head") and v.mode == "train")
    assert [c.host_bound for c in head.per_batch] == [True, False, False, False]
    assert summary_text(head, report.batch_sizes) == "consistent at 32-256; host-bound at 32"
    text = to_markdown([report])
    assert "†+15.0% ±0.0" in text and "~†1,048" in text  # the claims table and the speed table
    assert "host-bound: measures kernel launches; try --execution cuda-graphs" in text
    cells = json.loads(to_json([report]))["reports"][0]["lines"][0]["cells"]
    assert [c["host_bound"] for c in cells if c["mode"] == "train"] == [True, False, False, False]

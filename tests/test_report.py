import base64
import json
import math
from pathlib import Path

import pytest
from conftest import assert_one_line_error

from coatbench.accuracy import load
from coatbench.counting import ModelCount
from coatbench.errors import CoatbenchError
from coatbench.harness import Cell, Measurement
from coatbench.options import Dtype, Execution, Format
from coatbench.report import build_reports, classify
from coatbench.results import Env, Status, append_row, read_rows
from coatbench.suite import Claim, load_suite
from coatbench.sweep import make_row
from coatbench.views.report import long_frame, plot, to_json, to_latex, to_markdown


def env(device="NVIDIA H100 80GB HBM3"):
    return Env("0.1.0", None, "3.11", "2.11", "13.0", 90000, "580", "cuda", device, 1, "x", 16, 16)


def rows_for(suite, speeds, device="NVIDIA H100 80GB HBM3", execution=Execution.EAGER, status=None, channels_last=True):
    """Result rows as the sweep writes them, with chosen speeds: {(label, mode): images/s}."""
    rows = []
    for setting in suite.settings:
        for row in setting.rows:
            counted = ModelCount(row.config, 75_000_000, 15_700_000_000, 94_000_000_000, {})
            for mode in suite.modes:
                for batch in suite.batch_sizes:
                    cell = Cell(row.config, mode, batch, Dtype.BF16, execution, channels_last)
                    base = speeds.get((setting.name, row.label, mode.value), 1000.0)
                    state = (status or {}).get((setting.name, row.label, mode.value, batch), "ok")
                    samples = [] if state != "ok" else [base * (1 + 0.002 * ((i % 5) - 2)) for i in range(12)]
                    rows.append(make_row(cell, Measurement(Status(state), samples, 1), counted, env(device)))
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
    assert head64.change == pytest.approx(0.15, abs=0.005) and head64.uncertainty < 0.01
    assert lines["ImageNet-1K", "CoAtNet-2"].cells["train", 64].change is None  # the baseline


def test_verdicts(table8):
    speeds = {
        ("ImageNet-1K", "head size 32 -> 64", "train"): 1150.0,  # +15%: consistent with "significant"
        ("ImageNet-1K", "norm BN -> LN", "train"): 700.0,  # BN +43%: stronger than 10-20%
        ("ImageNet-1K", "norm BN -> LN", "infer"): 950.0,
    }  # BN +5%: weaker
    (report,) = build_reports(table8, rows_for(table8, speeds), load())
    # one run a cell (no rounds): every verdict says it rests on a single run
    got = {(v.claim.split()[0], v.setting, v.mode): v.verdict.removesuffix(" (single run)") for v in report.verdicts}
    assert all(v.verdict.endswith(" (single run)") for v in report.verdicts)
    assert got["head", "ImageNet-1K", "train"] == "consistent"
    assert got["head", "ImageNet-1K", "infer"] == "no measurable difference"
    assert got["BatchNorm", "ImageNet-1K", "train"] == "stronger than claimed"
    assert got["BatchNorm", "ImageNet-1K", "infer"] == "weaker than claimed"
    assert got["BatchNorm", "ImageNet-21K -> 1K", "train"] == "no measurable difference"
    detail = next(v.detail for v in report.verdicts if v.verdict.startswith("stronger than claimed"))
    # one sign everywhere: LN (the variant) at 700 against BN at 1000 is -30.0%, as in the table
    assert "-30.0%" in detail and "the baseline 10%-20% faster" in detail and "eager" in detail and "H100" in detail


@pytest.mark.parametrize(
    "change, u, verdict",
    [
        (0.15, 0.01, "consistent"),
        (0.30, 0.02, "stronger than claimed"),
        (0.05, 0.01, "weaker than claimed"),
        (0.01, 0.02, "no measurable difference"),
        (-0.10, 0.02, "contradicted"),
    ],
)
def test_classify(change, u, verdict):
    assert classify(change, u, Claim("bn", (), "baseline", 0.10, 0.20)) == verdict


def test_oom_cells_make_untested_claims(table8):
    status = {("ImageNet-21K -> 1K", "norm BN -> LN", "train", b): "oom" for b in table8.batch_sizes}
    (report,) = build_reports(table8, rows_for(table8, {}, status=status), load())
    v = next(v for v in report.verdicts if v.setting == "ImageNet-21K -> 1K" and v.mode == "train")
    assert v.verdict == "untested" and "variant oom" in v.detail
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
    assert ln.cells["train", 32].change == pytest.approx(-0.5, abs=0.01)  # against the A100's own baseline


def test_several_runs_of_a_cell_are_all_used(table8):
    head64 = ("ImageNet-1K", "head size 32 -> 64", "train")
    once = rows_for(table8, {head64: 1150.0})
    (single,) = build_reports(table8, once, load())
    (double,) = build_reports(table8, once + rows_for(table8, {head64: 1500.0}), load())
    cell = lambda report: next(line for line in report.lines if line.label == head64[1]).cells["train", 64]  # noqa: E731
    assert len(cell(double).runs) == 2 and cell(double).images_per_s == pytest.approx(math.sqrt(1150 * 1500), rel=0.01)
    assert cell(double).change == pytest.approx(math.sqrt(1.15 * 1.5) - 1, abs=0.01)
    assert cell(double).uncertainty > 0.1 > cell(single).uncertainty  # the runs disagree: so does the interval
    assert "from the timed blocks of a single run" in to_markdown(
        [single]
    ) and "over the runs of each cell" in to_markdown([double])


def test_eager_and_compiled_disagreement_is_said(table8):
    eager = rows_for(table8, {("ImageNet-1K", "norm BN -> LN", "train"): 700.0})
    compiled = rows_for(table8, {("ImageNet-1K", "norm BN -> LN", "train"): 960.0}, execution=Execution.COMPILE)
    reports = build_reports(table8, eager + compiled, load())
    assert {r.execution for r in reports} == {"eager", "compile"}
    markdown = to_markdown(reports)
    assert "Eager and compiled disagree" in markdown and "the execution mode changes the answer" in markdown


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
    assert len(lines) == 4 * 2 + 1  # four cells, two rounds, the baseline twice in the self-test round
    out.write_text("\n".join(lines[:3]) + "\n")  # as if the sweep had stopped after 3 measurements
    again = cli("run", *quick, "--resume", str(out), "--dry-run")
    assert "3 of 9 measurements already there" in " ".join((again.stdout + again.stderr).split())  # notes wrap
    resumed = cli("run", *quick, "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    keys = [(r.trial.sweep, r.trial.round, r.trial.self_test, r.spec.network["head_size"], r.spec.mode) for r in rows]
    assert len(rows) == 9 and len(set(keys)) == 9  # the same sweep continued: nothing twice, nothing missing
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
        assert len(cell.runs) == 1
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
    assert len(cell.runs) == 1 and cell.images_per_s == pytest.approx(1100.0, rel=0.01) and cell.superseded == 1
    assert cell.change == pytest.approx(0.10, abs=0.01)  # against the baseline's new run, not a pool of both
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
    assert page.references == []  # self-contained: nothing to fetch, nothing to break
    assert "Environment" in page.headings and "How it was made" in page.headings


@pytest.mark.parametrize("hardware", ["h100", "cpu"])
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

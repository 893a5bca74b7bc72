"""The `coatbench` command: declarations only. Each command parses its options, makes one
library call, hands the result to one view, and returns the exit code. Nothing imported at
module level imports torch, so `--help`, `report` and `compare` answer without it."""

import dataclasses
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from coatbench import options
from coatbench.config import ABLATIONS, KNOB_NAMES, KNOBS, build_config
from coatbench.errors import CoatbenchError, Interrupted
from coatbench.files import check_writable
from coatbench.options import DeviceKind, Format, Modes, option_group
from coatbench.views.console import print_error, print_note, print_table
from coatbench.views.speed import plan_notes, progress, show_dry_run, show_rows, stop_note

# Plain help (no rich panels): defaults stay visible, flags show no placeholder, lines fit 100 columns.
MANNERS = dict(no_args_is_help=True, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
app = typer.Typer(pretty_exceptions_enable=False, **MANNERS)


def show_version(asked: bool) -> None:
    if asked:
        raise typer.Exit(print_table([], notes=[f"coatbench {__import__('coatbench').__version__}"]) or 0)


Version = Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True, help="Say the version.")]


@app.callback()
def main_options(version: Version = False) -> None:
    """Measure what CoAtNet's architecture choices cost on your hardware."""


def knob_options(names: tuple[str, ...] = KNOB_NAMES):
    """The knobs `names` (config.KNOBS) as options; the command gets `knobs` for `build_config`."""
    flags = {k.name: f"{k.option}/--no-{k.option[2:]}" if k.type is bool else k.option for k in KNOBS}
    knobs = {k.name: (Annotated[k.type | None, typer.Option(flags[k.name], help=k.help)], None) for k in KNOBS}
    return option_group("knobs", {name: knobs[name] for name in names})


def option(kind, help: str, *names: str):
    """The type of an option of `kind`, for a command's signature."""
    return Annotated[kind, typer.Option(*names, help=help)]


Model = Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7 (coatnet_2 and CoAtNet-2 work too).")]
FormatOpt = option(Format, "table, markdown, csv, json, latex or html.", "--format")
Accuracy = option(list[Path] | None, f"Your accuracy CSV (preferred). Default: {options.USER_ACCURACY}.", "--accuracy")
Plot = option(Path | None, "Also draw throughput vs batch and top-1 vs throughput to this PNG.")
Baseline = option(str | None, f"A baseline file, or 'auto': the one saved for this hardware ({options.BASELINES_DIR}).")
ModeOpt = option(Modes, "Training step, inference, or both.")


def typed(declared: options.Declared):
    return option(declared.kind, declared.help, *declared.flags)


def declared_group(group: str, declared: dict[str, options.Declared]):
    """An option group of `options`' declarations (type, default, help, flags)."""
    return option_group(group, {name: (typed(d), d.default) for name, d in declared.items()})


measure_options = declared_group("measure", options.MEASURE_OPTIONS)  # speed, run, table8
suite_options = declared_group("sweep", options.SUITE_OPTIONS)  # run, table8
judge_options = declared_group("judge", options.JUDGE_OPTIONS)  # compare, ab
Device, BatchSizes = (typed(options.MEASURE_OPTIONS[name]) for name in ("device", "batch_sizes"))  # ab's too
Quiet = typed(options.SUITE_OPTIONS["quiet"])  # speed's too


def planned(
    batch_sizes: str | None, devices: str, bucket_cap_mb: float, gradient_as_bucket_view: bool,
    out: Path | None, resume: Path | None, rounds: str, budget: str | None, execution: str, **given,
) -> options.SweepOptions:  # fmt: skip
    """`measure_options` parsed and checked (before torch is imported) for `sweep.make_plan`;
    the rows' file is checked for writing before anything is measured."""
    batches = None if batch_sizes is None else options.parse_batch_sizes(batch_sizes)
    ddp = options.DdpOptions.checked(bucket_cap_mb, gradient_as_bucket_view)
    out = out or options.new_runs_path()
    check_writable(resume or out)
    sizes = {"batch_sizes": batches, "devices": options.parse_devices(devices), "ddp": ddp}
    sizes["executions"] = options.parse_executions(execution)
    rule = options.Rounds.parse(rounds)
    if budget is not None and not rule.auto:
        raise CoatbenchError("--budget bounds the rounds that --rounds auto adds: drop it, or use --rounds auto")
    seconds = None if budget is None else options.parse_duration(budget, "--budget")
    return options.SweepOptions(**given, **sizes, out=out, resume=resume, rounds=rule, time_budget_s=seconds)


@app.command()
def models(fmt: FormatOpt = Format.TABLE) -> None:
    """Every CoAtNet variant counted, beside the params and FLOPs the paper reports."""
    from coatbench.paper import counts_vs_paper
    from coatbench.views.counts import show_models

    show_models(counts_vs_paper(), fmt)


@app.command()
@knob_options()
def count(model: Model, fmt: FormatOpt = Format.TABLE, *, knobs: dict) -> None:
    """Params, MACs and a per-stage breakdown of one model."""
    from coatbench.counting import count as count_model
    from coatbench.views.counts import show_count

    show_count(count_model(build_config(model, **knobs)), fmt)


@app.command()
@knob_options()
@measure_options
def speed(
    model: Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7.")] = "coatnet-2",
    mode: ModeOpt = Modes.BOTH,
    fmt: FormatOpt = Format.TABLE,
    quiet: Quiet = False,
    *,
    knobs: dict,
    measure: dict,
) -> None:
    """Training and inference throughput across per-core batch sizes, with honest statistics."""
    config, asked = build_config(model, **knobs), planned(**measure)
    from coatbench.sweep import make_plan, run_plan

    plan = make_plan([config], dataclasses.replace(asked, modes=tuple(mode.modes())))
    with progress(plan, quiet) as shown:
        rows, result = run_plan(plan, shown)
    notes = plan_notes(plan) + [stop_note(result)]
    show_rows(rows, fmt, title=f"Throughput on {plan.env.device_name}", notes=notes)


def _measure_suite(suite: str, dry_run: bool, quiet: bool, measure: dict):
    """(the suite, its rows: the resumed file's and this run's); the rows are None after a dry run."""
    asked = planned(**measure)
    from coatbench.sweep import estimate, plan_suite, run_plan

    suite, plan = plan_suite(suite, asked)
    if dry_run:
        show_dry_run(plan, estimate(plan), Format.TABLE)
        return suite, None
    with progress(plan, quiet) as shown:
        rows, result = run_plan(plan, shown)
    if not quiet:
        print_note(stop_note(result))
    return suite, rows


@app.command()
@measure_options
@suite_options
def run(suite: Annotated[str, typer.Argument(help="table6, table7, table8, table9, ci-cpu or a .toml file.")], *,
        sweep: dict, measure: dict) -> None:  # fmt: skip
    """Measure a benchmark suite and save every cell (no report: see `coatbench report`)."""
    found, rows = _measure_suite(suite, **sweep, measure=measure)
    if rows is not None:
        show_rows(rows, Format.TABLE, title=f"{found.name}: {len(rows)} cells")


def _show_report(suite, rows, accuracy: list[Path] | None, fmt: Format, plot: Path | None) -> None:
    """`suite`'s report on `rows` (the given accuracy files, or the default one if it exists); rows
    none of whose cells is the suite's get the speed table instead."""
    from coatbench.accuracy import load
    from coatbench.report import build_reports, covers
    from coatbench.views.report import show_reports

    if plot is not None:
        check_writable(plot)  # before the report is computed and printed
    if not covers(suite, rows):
        return show_rows(rows, fmt, title=f"{len(rows)} runs (no cell of suite {suite.name} among them)")
    files = accuracy or ([options.USER_ACCURACY] if options.USER_ACCURACY.is_file() else [])
    show_reports(build_reports(suite, rows, load(files)), fmt, plot, shlex.join(["coatbench", *sys.argv[1:]]))


@app.command()
@measure_options
@suite_options
def table8(accuracy: Accuracy = None, fmt: FormatOpt = Format.TABLE, plot: Plot = None, *, sweep: dict, measure: dict):
    """The paper's Table 8 on your hardware: `run table8`, then its report."""
    if plot is not None:
        check_writable(plot)  # before anything is measured
    found, rows = _measure_suite("table8", **sweep, measure=measure)
    if rows is not None:
        _show_report(found, rows, accuracy, fmt, plot)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Results files (JSON Lines) to report on.")],
    suite: Annotated[str, typer.Option(help="Suite whose settings and claims to report.")] = "table8",
    accuracy: Accuracy = None,
    fmt: FormatOpt = Format.TABLE,
    plot: Plot = None,
) -> None:
    """Render saved runs as a suite's report, without measuring anything."""
    from coatbench.results import read_rows
    from coatbench.suite import load_suite

    _show_report(load_suite(suite), [row for path in results for row in read_rows(path)], accuracy, fmt, plot)


accuracy_app = typer.Typer(help="Recorded accuracies: the paper's and your own.", **MANNERS)
app.add_typer(accuracy_app, name="accuracy")


@accuracy_app.command("add")
@knob_options(ABLATIONS)
@declared_group("given", options.RECORD_OPTIONS)
def accuracy_add(model: Model, *, given: dict, knobs: dict) -> None:
    """Record a top-1 of your own; reports prefer it over the paper's."""
    from coatbench.accuracy import add_record

    file = given.pop("file")
    record = add_record(file, {"model": model, "metric": "top1", "value": given.pop("top1"), **given, **knobs})
    knobs_set = dict(record.knobs)
    print_table([], notes=[f"recorded {record.model} @{record.image_size} {knobs_set} top-1 {record.value} in {file}"])


@app.command()
@judge_options
def compare(
    files: Annotated[list[Path], typer.Argument(help="BASELINE CURRENT, or CURRENT alone with --baseline.")],
    baseline: Baseline = None,
    fmt: FormatOpt = Format.TABLE,
    *,
    judge: dict,
) -> int:
    """Compare two runs cell by cell. Exit 0: no regression; 1: a regression (large and
    significant); 2: bad input; 3: nothing comparable. --format markdown suits a CI job summary,
    json is github-action-benchmark's."""
    from coatbench.compare import compare_files
    from coatbench.views.compare import show_comparison

    cut, alpha = options.parse_fraction(judge["threshold"], "--threshold"), judge["alpha"]
    comparison = compare_files(files, baseline, options.BASELINES_DIR, cut, alpha)
    show_comparison(comparison, fmt)
    return comparison.exit_code(judge["allow_nothing_comparable"])


@app.command()
@judge_options
def ab(
    ref_a: Annotated[str, typer.Argument(help="Git revision A (the baseline), e.g. origin/main or HEAD~1.")],
    ref_b: Annotated[str, typer.Argument(help="Git revision B (the change), e.g. HEAD.")],
    suite: Annotated[str, typer.Argument(help="Suite to measure with both.")] = "ci-cpu",
    rounds: Annotated[
        str, typer.Option(help="Rounds A B, B A, ...: N, or auto (3, then more until every cell is resolved).")
    ] = "auto",
    budget: Annotated[str | None, typer.Option(help="auto: the wall time rounds may take. Default: 14m.")] = None,
    device: Device = DeviceKind.AUTO,
    batch_sizes: BatchSizes = None,
    max_time: Annotated[
        float | None, typer.Option(help="Each revision's --max-time per cell. Default: the run's own, 6 on a CPU.")
    ] = None,
    fmt: FormatOpt = Format.TABLE,
    *,
    judge: dict,
) -> int:
    """Measure two git revisions interleaved on this machine, then compare them (exit codes as
    `compare`'s)."""
    from coatbench.ab import compare_revisions
    from coatbench.views.compare import round_printer, show_comparison

    rule = options.Rounds.parse(rounds)
    if budget is not None and not rule.auto:
        raise CoatbenchError("--budget bounds the rounds that --rounds auto adds: drop it, or use --rounds auto")
    seconds = options.AB_BUDGET_S if budget is None else options.parse_duration(budget, "--budget")
    extra = ["--device", device.value] + ([] if batch_sizes is None else ["--batch-sizes", batch_sizes])
    extra += [] if max_time is None else ["--max-time", f"{max_time:g}"]
    cut, alpha = options.parse_fraction(judge["threshold"], "--threshold"), judge["alpha"]
    comparison = compare_revisions(ref_a, ref_b, suite, rule, seconds, extra, cut, alpha, round_printer(rule))
    show_comparison(comparison, fmt)
    return comparison.exit_code(judge["allow_nothing_comparable"])


baseline_app = typer.Typer(help="Saved baselines, one per hardware fingerprint.", **MANNERS)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Annotated[Path, typer.Argument(help="A results file to keep as the baseline for its hardware.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where baselines live.")] = options.BASELINES_DIR,
) -> None:
    """Keep RESULTS as the baseline of the machine(s) it was measured on."""
    from coatbench.compare import load, save_baselines

    print_table([], notes=[f"baseline saved: {path}" for path in save_baselines(load(results), directory)])


def main() -> None:
    """Entry point: the one place where known errors become a one-line message and their exit
    code (2: bad input; 130: interrupted, with the command that goes on); warnings one line each."""
    warnings.showwarning = lambda message, *_: print_note(f"warning: {message}")
    torchrun = options.Torchrun.of_this_process()
    if torchrun is not None and torchrun.rank > 0:  # under torchrun rank 0 prints; errors show on every rank
        sys.stdout = open(os.devnull, "w")
    try:
        sys.exit(app(standalone_mode=False) or 0)
    except Interrupted as error:
        again = sys.argv[1:] if "--resume" in sys.argv else [*sys.argv[1:], "--resume", str(error.out)]
        print_error(f"{error}; go on with: {shlex.join(['coatbench', *again])}")
        sys.exit(error.exit_code)
    except CoatbenchError as error:
        print_error(str(error))
    except typer.Abort:
        print_error("interrupted")
        sys.exit(130)
    except typer.TyperException as error:  # bad option value, missing argument, ...
        print_error(f"{error.format_message()} (see --help)")
    sys.exit(2)

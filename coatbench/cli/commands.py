"""The `coatbench` command: declarations only. Each command parses its options, makes one
library call, hands the result to one view, and returns the exit code. Nothing imported at
module level imports torch, so `--help`, `report` and `compare` answer without it."""

import dataclasses
import os
import shlex
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from coatbench import settings
from coatbench.cli.options import (
    DEFAULTS,
    Accuracy,
    AllowNothing,
    Alpha,
    AnyModel,
    Baseline,
    BatchSizes,
    BlocksOpt,
    BucketCap,
    BucketView,
    BudgetOpt,
    ChannelsLast,
    Device,
    Devices,
    DownsampleOpt,
    DryRun,
    DtypeOpt,
    ExecutionOpt,
    FormatOpt,
    HeadSize,
    ImageSize,
    Kwargs,
    Layout,
    MaxTime,
    MinTime,
    Model,
    ModeOpt,
    NormOpt,
    NumClasses,
    Out,
    Plot,
    Processes,
    Quiet,
    RelAttn,
    Resume,
    RoundsOpt,
    Seed,
    Strict,
    Threshold,
    Timeout,
    XlaCache,
    knobs_of,
    network_of,
    sweep_options,
)  # fmt: skip
from coatbench.config import ABLATIONS
from coatbench.errors import CoatbenchError, Interrupted, NothingToReport, ReaderGone, Stopped
from coatbench.files import check_not_input, check_writable
from coatbench.settings import DeviceKind, Format, Modes
from coatbench.suite import load_suite
from coatbench.views.console import drop_output, guard_streams, print_error, print_note, print_table
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


@app.command()
def models(fmt: FormatOpt = Format.TABLE) -> None:
    """Every CoAtNet variant counted, beside the params and FLOPs the paper reports."""
    from coatbench.paper import counts_vs_paper
    from coatbench.views.counts import show_models

    show_models(counts_vs_paper(), fmt)


@app.command()
def count(
    model: AnyModel,
    fmt: FormatOpt = Format.TABLE,
    kwargs: Kwargs = None,
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: BlocksOpt = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
    image_size: ImageSize = None,
    num_classes: NumClasses = None,
) -> None:
    """Params, MACs and a per-stage breakdown of one model."""
    from coatbench.counting import count as count_model
    from coatbench.networks import resolve
    from coatbench.views.counts import show_count

    show_count(count_model(resolve(network_of(locals()))), fmt)


@app.command()
def speed(
    model: AnyModel = "coatnet-2",
    mode: ModeOpt = Modes.BOTH,
    kwargs: Kwargs = None,
    fmt: FormatOpt = Format.TABLE,
    quiet: Quiet = False,
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: BlocksOpt = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
    image_size: ImageSize = None,
    num_classes: NumClasses = None,
    device: Device = DEFAULTS.device,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    channels_last: ChannelsLast = DEFAULTS.channels_last,
    min_time: MinTime = None,
    max_time: MaxTime = None,
    timeout: Timeout = None,
    strict: Strict = DEFAULTS.strict,
    xla_cache: XlaCache = None,
    out: Out = None,
    resume: Resume = None,
    devices: Devices = "1",
    bucket_cap_mb: BucketCap = settings.DdpOptions.bucket_cap_mb,
    gradient_as_bucket_view: BucketView = settings.DdpOptions.gradient_as_bucket_view,
    rounds: RoundsOpt = "auto",
    budget: BudgetOpt = None,
    seed: Seed = None,
    processes: Processes = None,
    execution: ExecutionOpt = "eager",
) -> None:
    """Training and inference throughput across per-core batch sizes, with honest statistics."""
    config, asked = network_of(locals()), sweep_options(locals())
    from coatbench.run.plan import make_plan
    from coatbench.run.sweep import run_plan

    plan = make_plan([config], dataclasses.replace(asked, modes=tuple(mode.modes())))
    with progress(plan, quiet) as shown:
        rows, result = run_plan(plan, shown)
    notes = plan_notes(plan) + [stop_note(result)]
    show_rows(rows, fmt, title=f"Throughput on {plan.env.device_name}", notes=notes)


def _measure_suite(suite: str, dry_run: bool, quiet: bool, asked: settings.SweepOptions):
    """(the suite, its rows: the resumed file's and this run's); the rows are None after a dry run.
    The suite is read first: a mistake in it is said before torch is imported (seconds)."""
    suite = load_suite(suite)
    from coatbench.run.plan import estimate, plan_suite
    from coatbench.run.sweep import run_plan

    plan = plan_suite(suite, asked)
    if dry_run:
        show_dry_run(plan, estimate(plan), Format.TABLE)
        return suite, None
    with progress(plan, quiet) as shown:
        rows, result = run_plan(plan, shown)
    if not quiet:
        print_note(stop_note(result))
    return suite, rows


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="table6, table7, table8, table9, timm-norm, ci-cpu or a .toml file.")],
    dry_run: DryRun = False,
    quiet: Quiet = False,
    device: Device = DEFAULTS.device,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    channels_last: ChannelsLast = DEFAULTS.channels_last,
    min_time: MinTime = None,
    max_time: MaxTime = None,
    timeout: Timeout = None,
    strict: Strict = DEFAULTS.strict,
    xla_cache: XlaCache = None,
    out: Out = None,
    resume: Resume = None,
    devices: Devices = "1",
    bucket_cap_mb: BucketCap = settings.DdpOptions.bucket_cap_mb,
    gradient_as_bucket_view: BucketView = settings.DdpOptions.gradient_as_bucket_view,
    rounds: RoundsOpt = "auto",
    budget: BudgetOpt = None,
    seed: Seed = None,
    processes: Processes = None,
    execution: ExecutionOpt = "eager",
) -> None:
    """Measure a benchmark suite and save every cell (no report: see `coatbench report`)."""
    found, rows = _measure_suite(suite, dry_run, quiet, sweep_options(locals()))
    if rows is not None:
        show_rows(rows, Format.TABLE, title=f"{found.name}: {len(rows)} cells")


def check_plot(plot: Path, inputs: list[Path]) -> None:
    """--plot names an image format, is none of the files read, and can be written."""
    from coatbench.views.report import plot_format

    check_not_input(plot, inputs, "--plot")
    plot_format(plot)
    check_writable(plot)


def _show_report(suite, rows, accuracy: list[Path] | None, fmt: Format, plot: Path | None, inputs: list[Path]) -> None:
    """`suite`'s report on `rows` (read from `inputs`; the given accuracy files, or the default
    one if it exists); rows none of whose cells is the suite's get the speed table instead."""
    from coatbench.accuracy import load
    from coatbench.report import build_reports, covers
    from coatbench.views.report import show_reports

    if plot is not None:
        check_plot(plot, [*inputs, *(accuracy or [])])  # before the report is computed and printed
    if not covers(suite, rows):
        if plot is not None:
            print_note(f"--plot: nothing drawn in {plot}: no cell of suite {suite.name} among the runs")
        return show_rows(rows, fmt, title=f"{len(rows)} runs (no cell of suite {suite.name} among them)")
    files = accuracy or ([settings.USER_ACCURACY] if settings.USER_ACCURACY.is_file() else [])
    show_reports(build_reports(suite, rows, load(files)), fmt, plot, shlex.join(["coatbench", *sys.argv[1:]]))


@app.command()
def table8(
    accuracy: Accuracy = None,
    fmt: FormatOpt = Format.TABLE,
    plot: Plot = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    device: Device = DEFAULTS.device,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    channels_last: ChannelsLast = DEFAULTS.channels_last,
    min_time: MinTime = None,
    max_time: MaxTime = None,
    timeout: Timeout = None,
    strict: Strict = DEFAULTS.strict,
    xla_cache: XlaCache = None,
    out: Out = None,
    resume: Resume = None,
    devices: Devices = "1",
    bucket_cap_mb: BucketCap = settings.DdpOptions.bucket_cap_mb,
    gradient_as_bucket_view: BucketView = settings.DdpOptions.gradient_as_bucket_view,
    rounds: RoundsOpt = "auto",
    budget: BudgetOpt = None,
    seed: Seed = None,
    processes: Processes = None,
    execution: ExecutionOpt = "eager",
):
    """The paper's Table 8 on your hardware: `run table8`, then its report."""
    asked = sweep_options(locals())
    if plot is not None:  # before anything is measured
        check_plot(plot, [asked.resume or asked.out, *(accuracy or [])])
    found, rows = _measure_suite("table8", dry_run, quiet, asked)
    if rows is not None:
        _show_report(found, rows, accuracy, fmt, plot, [asked.resume or asked.out])


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

    rows = [row for path in results for row in read_rows(path)]
    if not rows:
        raise NothingToReport(f"no runs in {', '.join(map(str, results))}: nothing to report; measure first")
    _show_report(load_suite(suite), rows, accuracy, fmt, plot, results)


accuracy_app = typer.Typer(help="Recorded accuracies: the paper's and your own.", **MANNERS)
app.add_typer(accuracy_app, name="accuracy")


@accuracy_app.command("add")
def accuracy_add(
    model: Model,
    top1: Annotated[float, typer.Option(help="Top-1 accuracy in percent.")],
    source: Annotated[str, typer.Option(help="Where the number comes from, e.g. 'my run 2026-11-24'.")],
    pretrain: Annotated[str, typer.Option(help="imagenet-1k, imagenet-21k or jft.")] = "imagenet-1k",
    image_size: Annotated[int, typer.Option(help="Evaluation resolution.")] = 224,
    file: Annotated[
        Path, typer.Option(help="CSV to append to (give it to reports with --accuracy).")
    ] = settings.USER_ACCURACY,
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: BlocksOpt = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
) -> None:
    """Record a top-1 of your own; reports prefer it over the paper's."""
    from coatbench.accuracy import add_record

    given = {"model": model, "metric": "top1", "value": top1, "source": source, "pretrain": pretrain}
    record = add_record(file, {**given, "image_size": image_size, **knobs_of(locals(), ABLATIONS)})
    knobs_set = dict(record.knobs)
    print_table([], notes=[f"recorded {record.model} @{record.image_size} {knobs_set} top-1 {record.value} in {file}"])


@app.command()
def compare(
    files: Annotated[list[Path], typer.Argument(help="BASELINE CURRENT, or CURRENT alone with --baseline.")],
    baseline: Baseline = None,
    fmt: FormatOpt = Format.TABLE,
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    allow_nothing_comparable: AllowNothing = False,
) -> int:
    """Compare two runs cell by cell. Exit 0: no regression; 1: a regression (large and
    significant); 2: bad input; 3: nothing comparable. --format markdown suits a CI job summary,
    json is github-action-benchmark's."""
    from coatbench.compare import compare_files
    from coatbench.views.compare import show_comparison

    cut = settings.parse_fraction(threshold, "--threshold")
    comparison = compare_files(files, baseline, settings.BASELINES_DIR, cut, alpha)
    show_comparison(comparison, fmt)
    return comparison.exit_code(allow_nothing_comparable)


@app.command()
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
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    allow_nothing_comparable: AllowNothing = False,
) -> int:
    """Measure two git revisions interleaved on this machine, then compare them (exit codes as
    `compare`'s)."""
    from coatbench.ab import compare_revisions
    from coatbench.views.compare import round_printer, show_comparison

    rule = settings.Rounds.parse(rounds)
    if budget is not None and not rule.auto:
        raise CoatbenchError("--budget bounds the rounds that --rounds auto adds: drop it, or use --rounds auto")
    seconds = settings.AB_BUDGET_S if budget is None else settings.parse_duration(budget, "--budget")
    extra = ["--device", device.value] + ([] if batch_sizes is None else ["--batch-sizes", batch_sizes])
    extra += [] if max_time is None else ["--max-time", f"{max_time:g}"]
    cut = settings.parse_fraction(threshold, "--threshold")
    comparison = compare_revisions(ref_a, ref_b, suite, rule, seconds, extra, cut, alpha, round_printer(rule))
    show_comparison(comparison, fmt)
    return comparison.exit_code(allow_nothing_comparable)


baseline_app = typer.Typer(help="Saved baselines, one per hardware fingerprint.", **MANNERS)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Annotated[Path, typer.Argument(help="A results file to keep as the baseline for its hardware.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where baselines live.")] = settings.BASELINES_DIR,
) -> None:
    """Keep RESULTS as the baseline of the machine(s) it was measured on."""
    from coatbench.compare import load, save_baselines

    saved = save_baselines(load(results), directory, source=results)
    print_table([], notes=[f"baseline saved: {path}" for path in saved])


# Stopped like Ctrl-C: a supervisor's SIGTERM (CI's timeout, a scheduler), a closed terminal's SIGHUP
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_like_ctrl_c(received: list[int]) -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as SIGINT does: the sweep saves what it has,
    ends its children, and says how to go on. Each is noted in `received`, for the exit code and
    the message (typer turns a KeyboardInterrupt in a command into a plain exit 130). SIGTERM and
    SIGHUP act once: the saving that follows runs whole; a second Ctrl-C still stops it."""

    def stop(signum, frame):
        if signum != signal.SIGINT:
            for each in STOPPING[1:]:
                signal.signal(each, signal.SIG_IGN)
        received.append(signum)
        raise KeyboardInterrupt

    for each in STOPPING:
        signal.signal(each, stop)


def _by(received: list[int]) -> str:
    """How the message names what stopped the command: Ctrl-C goes without saying."""
    return f"{signal.Signals(received[0]).name}: " if received and received[0] != signal.SIGINT else ""


def main() -> None:
    """Entry point: the one place where known errors become a one-line message and their exit
    code (2: bad input; 128 + the signal, 130 for Ctrl-C: interrupted, with the command that goes
    on; 141: stdout's reader went away); warnings one line each."""
    warnings.showwarning = lambda message, *_: print_note(f"warning: {message}")
    torchrun = settings.Torchrun.of_this_process()
    if torchrun is not None and torchrun.rank > 0:  # under torchrun rank 0 prints; errors show on every rank
        sys.stdout = open(os.devnull, "w")
    received: list[int] = []
    _stop_like_ctrl_c(received)
    try:
        guard_streams()
        code = app(standalone_mode=False) or 0
        if received:  # interrupted inside a command, outside a sweep: typer's exit 130
            raise Stopped("interrupted")
        sys.stdout.flush()  # here, where a fault of the output is an error with its line, not at exit
    except ReaderGone as error:
        drop_output()
        code = error.exit_code
    except Stopped as error:
        resume = ""
        if isinstance(error, Interrupted):
            again = sys.argv[1:] if "--resume" in sys.argv else [*sys.argv[1:], "--resume", str(error.out)]
            resume = f"; go on with: {shlex.join(['coatbench', *again])}"
        print_error(f"{_by(received)}{error}{resume}")
        code = 128 + received[0] if received else error.exit_code
    except CoatbenchError as error:
        print_error(str(error))
        code = error.exit_code
    except (typer.Abort, KeyboardInterrupt):  # before or after a command (the output's flush)
        print_error(f"{_by(received)}interrupted")
        code = 128 + received[0] if received else 130
    except typer.TyperException as error:  # bad option value, missing argument, ...
        print_error(f"{error.format_message()} (see --help)")
        code = 2
    sys.exit(code)

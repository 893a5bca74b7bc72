"""The `coatbench` command: declarations only. Each command parses its options, makes one
library call, hands the result to one view, and returns the exit code.

Nothing that imports torch is imported at module level, so `coatbench --help`, `report`
and `compare` answer without it.
"""

import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from coatbench.config import ABLATIONS, KNOB_NAMES, KNOBS, build_config
from coatbench.errors import CoatbenchError
from coatbench.options import (
    BASELINES_DIR, USER_ACCURACY, DeviceKind, Dtype, Execution, Format, Modes, new_runs_path, parse_batch_sizes,
    parse_executions, parse_fraction,
)
from coatbench.views.console import print_error, print_table
from coatbench.views.speed import plan_notes, progress, show_dry_run, show_rows

app = typer.Typer(
    help="Measure what CoAtNet's architecture choices cost on your hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def knob_options(names: tuple[str, ...] = KNOB_NAMES):
    """Declare the knobs `names` (config.KNOBS) as options of a command, which receives the
    ones given as `knobs`, a dict for `build_config`."""

    def decorate(command):
        signature = inspect.signature(command, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name != "knobs"]
        for knob in (k for k in KNOBS if k.name in names):
            flag = f"{knob.option}/--no-{knob.option[2:]}" if knob.type is bool else knob.option
            annotation = Annotated[Optional[knob.type], typer.Option(flag, help=knob.help)]
            params.append(inspect.Parameter(knob.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))

        @functools.wraps(command)
        def with_knobs(**kwargs):
            knobs = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, knobs=knobs)

        with_knobs.__signature__ = signature.replace(parameters=params)
        with_knobs.__annotations__ = {p.name: p.annotation for p in params}
        return with_knobs

    return decorate


Model = Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7 (coatnet_2 and CoAtNet-2 work too).")]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, markdown, csv, json or latex.")]
Device = Annotated[DeviceKind, typer.Option(help="auto picks a GPU, else a TPU, else the CPU.")]
BatchSizes = Annotated[Optional[str], typer.Option(help="Per-core batch sizes, e.g. 32,64. Default: 32,64,128,256 "
                                                        "(a suite's own); 1,2 on a CPU.")]
DtypeOpt = Annotated[Optional[Dtype], typer.Option(help="Autocast dtype. Default: bf16; fp32 on a CPU.")]
Executions = Annotated[str, typer.Option("--execution", help="Execution modes, comma-separated: "
                                         + ",".join(e.value for e in Execution) + ".")]
Out = Annotated[Optional[Path], typer.Option(help="JSON Lines file to append to. Default: a new "
                                             "results/runs/speed-<time>.jsonl.")]
Resume = Annotated[Optional[Path], typer.Option(help="Skip the cells already in this results file and append to it.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List the cells and a rough time estimate; measure nothing.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress, only the result.")]
Accuracy = Annotated[Optional[list[Path]], typer.Option(
    "--accuracy", help=f"Your own accuracy CSV, preferred over the paper's. Default: {USER_ACCURACY} when it exists.")]
Plot = Annotated[Optional[Path], typer.Option(help="Also draw throughput vs batch and top-1 vs throughput to this PNG.")]
Threshold = Annotated[str, typer.Option(help="Slowdown that counts as a regression, e.g. 5% or 0.05.")]
Alpha = Annotated[float, typer.Option(help="Significance level of the one-sided t-test on the runs' medians.")]


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
def speed(
    model: Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7.")] = "coatnet-2",
    device: Device = DeviceKind.AUTO,
    mode: Annotated[Modes, typer.Option(help="Training step, inference, or both.")] = Modes.BOTH,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile each block of the model.")] = False,
    cuda_graphs: Annotated[bool, typer.Option(
        "--cuda-graphs", help="Capture the whole step in a CUDA graph (with --compile: the compiled step).")] = False,
    fold_bn: Annotated[bool, typer.Option(
        "--fold-bn", help="Inference, compiled with BatchNorm folded into the convs (compile-folded-bn).")] = False,
    min_time: Annotated[Optional[float], typer.Option(help="Timed seconds per cell, at least. Default: 2; 1 on a CPU.")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop refining the CI after this many timed seconds.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Give up on a cell after this many seconds. Default: 900.")] = None,
    out: Out = None,
    fmt: FormatOpt = Format.TABLE,
    quiet: Quiet = False,
    strict: Annotated[bool, typer.Option("--strict", help="XLA: fail a cell that recompiles or falls back while timed.")] = False,
    xla_cache: Annotated[Optional[Path], typer.Option(help="XLA: persistent compilation cache directory.")] = None,
    *,
    knobs: dict,
) -> None:
    """Training and inference throughput across per-core batch sizes, with honest statistics."""
    from coatbench.sweep import make_plan, run_plan

    plan = make_plan(
        [build_config(model, **knobs)],
        device=device,
        modes=mode.modes(),
        batch_sizes=None if batch_sizes is None else parse_batch_sizes(batch_sizes),
        dtype=dtype,
        executions=[Execution.of_flags(compile, cuda_graphs, fold_bn)],
        channels_last=channels_last,
        min_time=min_time,
        max_time=max_time,
        timeout=timeout,
        strict=strict,
        xla_cache=xla_cache,
        out=out or new_runs_path(),
    )
    with progress(plan, quiet) as shown:
        rows = run_plan(plan, shown)
    show_rows(rows, fmt, title=f"Throughput on {plan.env.device_name}", notes=plan_notes(plan))


def _measure_suite(suite, device, batch_sizes, dtype, execution, out, resume, dry_run, quiet):
    """(the suite, its rows: the resumed file's and this run's); the rows are None after a dry run."""
    from coatbench.sweep import estimate, plan_suite, run_plan

    suite, plan = plan_suite(
        suite,
        device=device,
        batch_sizes=None if batch_sizes is None else parse_batch_sizes(batch_sizes),
        dtype=dtype,
        executions=parse_executions(execution),
        out=out or new_runs_path(),
        resume=resume,
    )
    if dry_run:
        show_dry_run(plan, estimate(plan), Format.TABLE)
        return suite, None
    with progress(plan, quiet) as shown:
        return suite, run_plan(plan, shown)


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="A suite name (table6, table7, table8, table9, ci-cpu) or a .toml file.")],
    device: Device = DeviceKind.AUTO,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    execution: Executions = "eager",
    out: Out = None,
    resume: Resume = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
) -> None:
    """Measure a benchmark suite and save every cell (no report: see `coatbench report`)."""
    found, rows = _measure_suite(suite, device, batch_sizes, dtype, execution, out, resume, dry_run, quiet)
    if rows is not None:
        show_rows(rows, Format.TABLE, title=f"{found.name}: {len(rows)} cells")


def _accuracy_files(given: Optional[list[Path]]) -> list[Path]:
    return given or ([USER_ACCURACY] if USER_ACCURACY.is_file() else [])


@app.command()
def table8(
    device: Device = DeviceKind.AUTO,
    batch_sizes: BatchSizes = None,
    dtype: DtypeOpt = None,
    execution: Executions = "eager",
    out: Out = None,
    resume: Resume = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    accuracy: Accuracy = None,
    fmt: FormatOpt = Format.TABLE,
    plot: Plot = None,
) -> None:
    """The paper's Table 8 on your hardware: `run table8`, then its report."""
    from coatbench.accuracy import load
    from coatbench.report import build_reports
    from coatbench.views.report import show_reports

    found, rows = _measure_suite("table8", device, batch_sizes, dtype, execution, out, resume, dry_run, quiet)
    if rows is not None:
        show_reports(build_reports(found, rows, load(_accuracy_files(accuracy))), fmt, plot)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Results files (JSON Lines) to report on.")],
    suite: Annotated[str, typer.Option(help="Suite whose settings and claims to report.")] = "table8",
    accuracy: Accuracy = None,
    fmt: FormatOpt = Format.TABLE,
    plot: Plot = None,
) -> None:
    """Render saved runs as a suite's report, without measuring anything."""
    from coatbench.accuracy import load
    from coatbench.report import build_reports
    from coatbench.results import read_rows
    from coatbench.suite import load_suite
    from coatbench.views.report import show_reports

    rows = [row for path in results for row in read_rows(path)]
    show_reports(build_reports(load_suite(suite), rows, load(_accuracy_files(accuracy))), fmt, plot)


accuracy_app = typer.Typer(help="Recorded accuracies: the paper's and your own.", no_args_is_help=True)
app.add_typer(accuracy_app, name="accuracy")


@accuracy_app.command("add")
@knob_options(ABLATIONS)
def accuracy_add(
    model: Model,
    top1: Annotated[float, typer.Option(help="Top-1 accuracy in percent.")],
    source: Annotated[str, typer.Option(help="Where the number comes from, e.g. 'my run 2026-11-24'.")],
    pretrain: Annotated[str, typer.Option(help="imagenet-1k, imagenet-21k or jft.")] = "imagenet-1k",
    image_size: Annotated[int, typer.Option(help="Evaluation resolution.")] = 224,
    file: Annotated[Path, typer.Option(help="CSV to append to (pass it to reports with --accuracy).")] = USER_ACCURACY,
    *,
    knobs: dict,
) -> None:
    """Record a top-1 of your own; reports prefer it over the paper's."""
    from coatbench.accuracy import add_record

    fields = dict(model=model, image_size=image_size, pretrain=pretrain, metric="top1", value=top1, source=source)
    record = add_record(file, {**fields, **knobs})
    print_table([], notes=[f"recorded {record.model} @{record.image_size} {dict(record.knobs)} top-1 {record.value} in {file}"])


@app.command()
def compare(
    files: Annotated[list[Path], typer.Argument(help="BASELINE CURRENT, or CURRENT alone with --baseline.")],
    baseline: Annotated[Optional[str], typer.Option(help="A baseline file, or 'auto': the saved one for this "
                                                         f"hardware (in {BASELINES_DIR}).")] = None,
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    fmt: Annotated[Format, typer.Option("--format", help="table, markdown (CI job summary), json "
                                        "(github-action-benchmark), csv or latex.")] = Format.TABLE,
) -> int:
    """Compare two runs cell by cell; exit 1 only on a real (large and significant) regression."""
    from coatbench.compare import compare_files
    from coatbench.views.compare import show_comparison

    comparison = compare_files(files, baseline, BASELINES_DIR, parse_fraction(threshold, "--threshold"), alpha)
    show_comparison(comparison, fmt)
    return 1 if comparison.regressed else 0


@app.command()
def ab(
    ref_a: Annotated[str, typer.Argument(help="Git revision A (the baseline), e.g. origin/main or HEAD~1.")],
    ref_b: Annotated[str, typer.Argument(help="Git revision B (the change), e.g. HEAD.")],
    suite: Annotated[str, typer.Argument(help="Suite to measure with both.")] = "ci-cpu",
    rounds: Annotated[int, typer.Option(help="Interleaved rounds: A B, B A, ... (at least 2 for a verdict).")] = 5,
    device: Device = DeviceKind.AUTO,
    batch_sizes: BatchSizes = None,
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    fmt: FormatOpt = Format.TABLE,
) -> int:
    """Measure two git revisions interleaved on this machine, then compare them."""
    from coatbench.ab import compare_revisions
    from coatbench.views.compare import round_printer, show_comparison

    extra = ["--device", device.value] + ([] if batch_sizes is None else ["--batch-sizes", batch_sizes])
    cut = parse_fraction(threshold, "--threshold")
    comparison = compare_revisions(ref_a, ref_b, suite, rounds, extra, cut, alpha, round_printer(rounds))
    show_comparison(comparison, fmt)
    return 1 if comparison.regressed else 0


baseline_app = typer.Typer(help="Saved baselines, one per hardware fingerprint.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Annotated[Path, typer.Argument(help="A results file to keep as the baseline for its hardware.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where baselines live.")] = BASELINES_DIR,
) -> None:
    """Keep RESULTS as the baseline of the machine(s) it was measured on."""
    from coatbench.compare import load, save_baselines

    print_table([], notes=[f"baseline saved: {path}" for path in save_baselines(load(results), directory)])


def main() -> None:
    """Entry point: the one place where known errors become a one-line message and exit 2."""
    try:
        exit_code = app(standalone_mode=False)
    except CoatbenchError as error:
        print_error(str(error))
        sys.exit(2)
    except typer.Abort:
        print_error("interrupted")
        sys.exit(130)
    except typer.TyperException as error:  # bad option value, missing argument, ...
        print_error(f"{error.format_message()} (see --help)")
        sys.exit(2)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)


if __name__ == "__main__":
    main()

"""The `coatbench` command: thin Typer declarations over the library.

torch is imported inside the commands, never at module level, so `coatbench --help`
answers at once.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from coatbench.config import Downsample, Norm, build_config
from coatbench.options import DeviceKind, Dtype, Execution, Mode, ReportFormat
from coatbench.accuracy import USER_FILE
from coatbench.progress import parse_executions, plan_notes, print_dry_run, run_plan, write_comparison, write_report
from coatbench.errors import CoatbenchError
from coatbench.render import (
    OutputFormat, billions, emit, err_console, millions, print_error, print_table, signed_percent, speed_rows,
)

app = typer.Typer(
    help="Measure what CoAtNet's architecture choices cost on your hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

MACS_NOTE = "MACs = multiply-adds, what the paper calls FLOPs; FLOPs = 2 x MACs."

# The ablation knobs, shared by every command that builds a model.
Model = Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7 (coatnet_2 and CoAtNet-2 work too).")]
HeadSize = Annotated[Optional[int], typer.Option(help="Attention head size [default: 32; 64 for -5; 128 for -6/7].")]
NormOpt = Annotated[Optional[Norm], typer.Option("--norm", help="Norm inside MBConv blocks (Table 8) [default: bn].")]
Layout = Annotated[Optional[str], typer.Option(help="Blocks per stage S0..S4, e.g. 2,2,8,12,2, or v0|v1|v2 (Table 7).")]
Blocks = Annotated[Optional[str], typer.Option(help="Block type of S1..S4: C-C-C-C, C-C-C-T, C-C-T-T or C-T-T-T.")]
RelAttn = Annotated[
    Optional[bool], typer.Option("--rel-attn/--no-rel-attn", help="Relative position bias (Table 6) [default: on].")
]
DownsampleOpt = Annotated[
    Optional[Downsample], typer.Option("--downsample", help="MBConv stride in the 1x1 conv (Eqn 5) or the dwconv (Table 9).")
]
ImageSize = Annotated[Optional[int], typer.Option(help="Input resolution, a multiple of 32 [default: 224].")]
NumClasses = Annotated[Optional[int], typer.Option(help="Classifier outputs [default: 1000].")]
Format = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


def execution_of(compile: bool, cuda_graphs: bool, fold_bn: bool) -> Execution:
    if fold_bn:
        if cuda_graphs:
            raise CoatbenchError("--fold-bn compiles the whole model without a CUDA graph: drop --cuda-graphs")
        return Execution.COMPILE_FOLDED_BN
    if compile:
        return Execution.COMPILE_CUDA_GRAPHS if cuda_graphs else Execution.COMPILE
    return Execution.CUDA_GRAPHS if cuda_graphs else Execution.EAGER


@app.command()
def models(fmt: Format = OutputFormat.TABLE) -> None:
    """Every CoAtNet variant counted, beside the params and FLOPs the paper reports."""
    from coatbench.paper import counts_vs_paper

    rows = counts_vs_paper()
    raw = [
        {
            "model": r.model,
            "image_size": r.image_size,
            "downsample": r.downsample,
            "params": r.params,
            "macs": r.macs,
            "flops": 2 * r.macs,
            "paper_params": r.paper_params,
            "paper_macs": r.paper_macs,
            "params_diff": r.params_diff,
            "macs_diff": r.macs_diff,
            "source": r.source,
        }
        for r in rows
    ]
    table = [
        {
            "model": r.model,
            "size": str(r.image_size),
            "downsample": r.downsample,
            "params": millions(r.params),
            "paper": millions(r.paper_params),
            "diff": signed_percent(r.params_diff),
            "GMACs": billions(r.macs),
            "paper GMACs": billions(r.paper_macs),
            "diff ": signed_percent(r.macs_diff),
            "source": r.source,
        }
        for r in rows
    ]
    emit(fmt, raw, table, title="CoAtNet family vs the paper", notes=[MACS_NOTE])


@app.command()
def count(
    model: Model,
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: Blocks = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
    image_size: ImageSize = None,
    num_classes: NumClasses = None,
    fmt: Format = OutputFormat.TABLE,
) -> None:
    """Params, MACs and a per-stage breakdown of one model."""
    from coatbench.counting import count as count_model

    config = build_config(
        model,
        head_size=head_size,
        norm=norm,
        layout=layout,
        blocks=blocks,
        rel_attn=rel_attn,
        downsample=downsample,
        image_size=image_size,
        num_classes=num_classes,
    )
    result = count_model(config)
    if fmt is not OutputFormat.TABLE:
        emit(fmt, [result.as_dict()], [])
        return
    spec = ", ".join(f"{k}={v}" for k, v in config.spec().items() if k != "model")
    stages = [
        {"stage": name, "GMACs": billions(macs), "share": f"{macs / result.macs:.1%}"}
        for name, macs in result.by_stage.items()
    ]
    stages.append({"stage": "total", "GMACs": billions(result.macs), "share": "100.0%"})
    notes = [
        f"params {result.params:,} ({millions(result.params)}); {billions(result.macs)} GMACs = "
        f"{billions(result.flops)} GFLOPs forward; {billions(result.train_flops)} GFLOPs per training image (fwd+bwd)",
        f"uncounted ops: {result.uncounted_ops or 'none'}. {MACS_NOTE}",
        f"counter: {result.counter}",
    ]
    emit(fmt, [], stages, title=f"{config.name}, one image: {spec}", notes=notes)


class ModeChoice(str, Enum):
    TRAIN = "train"
    INFER = "infer"
    BOTH = "both"


@app.command()
def speed(
    model: Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7.")] = "coatnet-2",
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: Blocks = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
    image_size: ImageSize = None,
    num_classes: NumClasses = None,
    device: Annotated[DeviceKind, typer.Option(help="auto picks a GPU, else a TPU, else the CPU.")] = DeviceKind.AUTO,
    mode: Annotated[ModeChoice, typer.Option(help="Training step, inference, or both.")] = ModeChoice.BOTH,
    batch_sizes: Annotated[
        Optional[str], typer.Option(help="Per-core batch sizes [default: 32,64,128,256; 1,2 on a CPU].")
    ] = None,
    dtype: Annotated[Optional[Dtype], typer.Option(help="Autocast dtype [default: bf16; fp32 on a CPU].")] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last/--no-channels-last")] = True,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile each block of the model.")] = False,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="Capture the whole step in a CUDA graph (with --compile: the compiled step).")
    ] = False,
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn", help="Inference, compiled with BatchNorm folded into the convs (execution compile-folded-bn).")
    ] = False,
    min_time: Annotated[Optional[float], typer.Option(help="Timed seconds per cell, at least [default: 2; 1 on a CPU].")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop refining the CI after this many timed seconds.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Give up on a cell after this many seconds [default: 900].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="JSON Lines file to append to [default: results/runs/speed-<time>.jsonl].")] = None,
    fmt: Format = OutputFormat.TABLE,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress, only the result.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="XLA: fail a cell that recompiles or falls back while timed.")] = False,
    xla_cache: Annotated[Optional[Path], typer.Option(help="XLA: persistent compilation cache directory.")] = None,
) -> None:
    """Training and inference throughput across per-core batch sizes, with honest statistics."""
    from coatbench.results import default_path
    from coatbench.sweep import make_plan, parse_batch_sizes

    execution = execution_of(compile, cuda_graphs, fold_bn)
    config = build_config(
        model,
        head_size=head_size,
        norm=norm,
        layout=layout,
        blocks=blocks,
        rel_attn=rel_attn,
        downsample=downsample,
        image_size=image_size,
        num_classes=num_classes,
    )
    plan = make_plan(
        [config],
        device=device,
        modes=[Mode.TRAIN, Mode.INFER] if mode is ModeChoice.BOTH else [Mode(mode.value)],
        batch_sizes=None if batch_sizes is None else parse_batch_sizes(batch_sizes),
        dtype=dtype,
        executions=[execution],
        channels_last=channels_last,
        min_time=min_time,
        max_time=max_time,
        timeout=timeout,
        strict=strict,
        xla_cache=xla_cache,
        out=out or default_path(),
    )
    rows = run_plan(plan, quiet=quiet)
    emit(fmt, rows, speed_rows(rows), title=f"Throughput on {plan.device.type}", notes=plan_notes(plan))


Accuracy = Annotated[
    Optional[list[Path]], typer.Option("--accuracy", help="Your own accuracy CSV (same columns as results/accuracy.csv).")
]
ReportFormatOpt = Annotated[ReportFormat, typer.Option("--format", help="Report format.")]
Plot = Annotated[Optional[Path], typer.Option(help="Also draw throughput vs batch and top-1 vs throughput to this PNG.")]


def _run_suite(
    suite_name: str,
    device: DeviceKind,
    batch_sizes: Optional[str],
    dtype: Optional[Dtype],
    executions: str,
    out: Optional[Path],
    resume: Optional[Path],
    dry_run: bool,
    quiet: bool,
) -> tuple[object, list[dict]]:
    """Measure a suite (or list its cells); returns the suite and every row of this run."""
    from coatbench.results import default_path, read_rows
    from coatbench.suite import load_suite
    from coatbench.sweep import make_plan, parse_batch_sizes, skip_done

    suite = load_suite(suite_name)
    plan = make_plan(
        suite.configs,
        device=device,
        modes=suite.modes,
        batch_sizes=None if batch_sizes is None else parse_batch_sizes(batch_sizes),
        default_batch_sizes=suite.batch_sizes,
        dtype=dtype,
        executions=parse_executions(executions),
        out=out or default_path(),
    )
    previous = []
    if resume is not None:
        previous = read_rows(resume)
        plan = skip_done(plan, previous, resume)
    if dry_run:
        print_dry_run(plan)
        raise typer.Exit(0)
    return suite, previous + run_plan(plan, quiet=quiet)


SuiteDevice = Annotated[DeviceKind, typer.Option(help="auto picks a GPU when there is one.")]
SuiteBatches = Annotated[Optional[str], typer.Option(help="Per-core batch sizes [default: the suite's; 1,2 on a CPU].")]
SuiteDtype = Annotated[Optional[Dtype], typer.Option(help="Autocast dtype [default: bf16; fp32 on a CPU].")]
Executions = Annotated[str, typer.Option("--execution", help="Execution modes, comma-separated: eager,compile,cuda-graphs,compile+cuda-graphs,compile-folded-bn.")]
Out = Annotated[Optional[Path], typer.Option(help="JSON Lines file to append to [default: results/runs/speed-<time>.jsonl].")]
Resume = Annotated[Optional[Path], typer.Option(help="Skip the cells already in this results file and append to it.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List the cells and a rough time estimate; measure nothing.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress, only the result.")]


@app.command()
def run(
    suite: Annotated[str, typer.Argument(help="A suite name (table6, table7, table8, table9, ci-cpu) or a .toml file.")],
    device: SuiteDevice = DeviceKind.AUTO,
    batch_sizes: SuiteBatches = None,
    dtype: SuiteDtype = None,
    execution: Executions = "eager",
    out: Out = None,
    resume: Resume = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
) -> None:
    """Measure a benchmark suite and save every cell (no report: see `coatbench report`)."""
    _, rows = _run_suite(suite, device, batch_sizes, dtype, execution, out, resume, dry_run, quiet)
    emit(OutputFormat.TABLE, rows, speed_rows(rows), title=f"{suite}: {len(rows)} cells")


@app.command()
def table8(
    device: SuiteDevice = DeviceKind.AUTO,
    batch_sizes: SuiteBatches = None,
    dtype: SuiteDtype = None,
    execution: Executions = "eager",
    out: Out = None,
    resume: Resume = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    accuracy: Accuracy = None,
    fmt: ReportFormatOpt = ReportFormat.TABLE,
    plot: Plot = None,
) -> None:
    """The paper's Table 8 on your hardware: `run table8`, then its report."""
    suite, rows = _run_suite("table8", device, batch_sizes, dtype, execution, out, resume, dry_run, quiet)
    write_report(suite, rows, accuracy or [], fmt, plot)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Results files (JSON Lines) to report on.")],
    suite: Annotated[str, typer.Option(help="Suite whose settings and claims to report.")] = "table8",
    accuracy: Accuracy = None,
    fmt: ReportFormatOpt = ReportFormat.TABLE,
    plot: Plot = None,
) -> None:
    """Render saved runs as a suite's report, without measuring anything."""
    from coatbench.results import read_rows
    from coatbench.suite import load_suite

    rows = [row for path in results for row in read_rows(path)]
    write_report(load_suite(suite), rows, accuracy or [], fmt, plot)


accuracy_app = typer.Typer(help="Recorded accuracies: the paper's and your own.", no_args_is_help=True)
app.add_typer(accuracy_app, name="accuracy")


@accuracy_app.command("add")
def accuracy_add(
    model: Model,
    top1: Annotated[float, typer.Option(help="Top-1 accuracy in percent.")],
    source: Annotated[str, typer.Option(help="Where the number comes from, e.g. 'my run 2026-11-24'.")],
    pretrain: Annotated[str, typer.Option(help="imagenet-1k, imagenet-21k or jft.")] = "imagenet-1k",
    image_size: Annotated[int, typer.Option(help="Evaluation resolution.")] = 224,
    head_size: HeadSize = None,
    norm: NormOpt = None,
    layout: Layout = None,
    blocks: Blocks = None,
    rel_attn: RelAttn = None,
    downsample: DownsampleOpt = None,
    file: Annotated[Path, typer.Option(help="CSV to append to; read by every report when it exists.")] = USER_FILE,
) -> None:
    """Record a top-1 of your own; reports prefer it over the paper's."""
    from coatbench.accuracy import add_record

    record = add_record(
        file,
        dict(
            model=model, image_size=image_size, pretrain=pretrain, metric="top1", value=top1,
            head_size=head_size, norm=None if norm is None else norm.value, layout=layout, blocks=blocks,
            rel_attn=None if rel_attn is None else str(rel_attn).lower(),
            downsample=None if downsample is None else downsample.value, source=source,
        ),
    )
    print_table([], notes=[f"recorded {record.model} @{record.image_size} {dict(record.knobs)} top-1 {record.value} in {file}"])


class CompareFormat(str, Enum):
    TABLE = "table"
    MARKDOWN = "markdown"
    JSON = "json"


Threshold = Annotated[str, typer.Option(help="Slowdown that counts as a regression, e.g. 5% or 0.05.")]
Alpha = Annotated[float, typer.Option(help="Significance level of the one-sided t-test on the runs' medians.")]
CompareFormatOpt = Annotated[CompareFormat, typer.Option("--format", help="table, markdown (CI job summary) or json (github-action-benchmark).")]


@app.command()
def compare(
    files: Annotated[list[Path], typer.Argument(help="BASELINE CURRENT, or CURRENT alone with --baseline.")],
    baseline: Annotated[Optional[str], typer.Option(help="A baseline file, or 'auto': the saved one for this hardware.")] = None,
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    fmt: CompareFormatOpt = CompareFormat.TABLE,
) -> None:
    """Compare two runs cell by cell; exit 1 only on a real (large and significant) regression."""
    from coatbench.compare import compare_rows, find_baseline, load, parse_fraction

    if len(files) == 2 and baseline is None:
        base_path, current_path = files
    elif len(files) == 1 and baseline is not None:
        (current_path,) = files
        base_path = None if baseline == "auto" else Path(baseline)
    else:
        raise CoatbenchError("give BASELINE CURRENT, or CURRENT with --baseline FILE|auto")
    cut, current = parse_fraction(threshold, "--threshold"), load(current_path)
    if not 0 < alpha < 1:
        raise CoatbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    if base_path is None:
        base_path = find_baseline(current)
        if base_path is None:
            err_console.print(f"No baseline saved for {current[0]['env']['hardware_key']}: not comparable, "
                              "nothing to check (save one with `coatbench baseline save RESULTS`).", markup=False)
            if fmt is not CompareFormat.TABLE:  # still a well-formed, empty document on stdout
                write_comparison([], fmt.value)
            return
    results = compare_rows(load(base_path), current, cut, alpha)
    write_comparison(results, fmt.value)
    if any(r.status == "regressed" for r in results):
        raise typer.Exit(1)


@app.command()
def ab(
    ref_a: Annotated[str, typer.Argument(help="Git revision A (the baseline), e.g. origin/main or HEAD~1.")],
    ref_b: Annotated[str, typer.Argument(help="Git revision B (the change), e.g. HEAD.")],
    suite: Annotated[str, typer.Argument(help="Suite to measure with both.")] = "ci-cpu",
    rounds: Annotated[int, typer.Option(help="Interleaved rounds: A B, B A, ... (at least 2 for a verdict).")] = 5,
    device: SuiteDevice = DeviceKind.AUTO,
    batch_sizes: SuiteBatches = None,
    threshold: Threshold = "5%",
    alpha: Alpha = 0.01,
    fmt: CompareFormatOpt = CompareFormat.TABLE,
) -> None:
    """Measure two git revisions interleaved on this machine, then compare them."""
    from coatbench.ab import run_ab
    from coatbench.compare import compare_rows, parse_fraction

    cut = parse_fraction(threshold, "--threshold")
    extra = ["--device", device.value] + ([] if batch_sizes is None else ["--batch-sizes", batch_sizes])
    rows_a, rows_b = run_ab(ref_a, ref_b, suite, rounds, extra,
                            on_round=lambda i, ref: err_console.print(f"round {i + 1}/{rounds}: {ref.upper()}"))
    results = compare_rows(rows_a, rows_b, cut, alpha, paired=True)
    write_comparison(results, fmt.value)
    if any(r.status == "regressed" for r in results):
        raise typer.Exit(1)


baseline_app = typer.Typer(help="Saved baselines, one per hardware fingerprint.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Annotated[Path, typer.Argument(help="A results file to keep as the baseline for its hardware.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where baselines live.")] = Path("results/baselines"),
) -> None:
    """Keep RESULTS as the baseline of the machine(s) it was measured on."""
    from coatbench.compare import load, save_baselines

    for path in save_baselines(load(results), directory):
        print_table([], notes=[f"baseline saved: {path}"])


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

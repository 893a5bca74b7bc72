"""The options that several commands share, declared once as typer `Annotated` aliases (in the
style of asv's common_args): a command lists the aliases it takes, under the parameter names
below, and hands its values to one of the helpers at the end (`sweep_options`, `knobs_of`),
which parse them with the parsers of `coatbench.settings`. Nothing here rewrites a signature.
"""

from pathlib import Path
from typing import Annotated

import typer

from coatbench import settings
from coatbench.config import KNOBS, build_network
from coatbench.errors import CoatbenchError
from coatbench.files import check_writable
from coatbench.settings import DeviceKind, Dtype, Execution, Format, Modes


def option(kind, help: str, *names: str):
    """The type of an option of `kind`, for a command's signature."""
    return Annotated[kind, typer.Option(*names, help=help)]


# What most commands take
FormatOpt = option(Format, "table, markdown, csv, json, latex or html.", "--format")
ModeOpt = option(Modes, "Training step, inference, or both.")
Quiet = option(bool, "No progress, only the result.", "--quiet")
Model = Annotated[str, typer.Argument(help="coatnet-0 ... coatnet-7 (coatnet_2 and CoAtNet-2 work too).")]
AnyModel = Annotated[
    str,
    typer.Argument(
        help="coatnet-0 ... coatnet-7; timm:<name> (pip install 'coatbench[timm]'); or module:function, a "
        "factory that returns an nn.Module."
    ),
]
Kwargs = option(str | None, "timm models and factories: keyword arguments as JSON, e.g. '{\"drop_rate\": 0.1}'.")

# The knobs (`config.KNOBS`): count, speed, and (the ablations) accuracy add. Default None: the
# model's own value.
_FLAGS = {k.name: f"{k.option}/--no-{k.option[2:]}" if k.type is bool else k.option for k in KNOBS}
_KNOB = {k.name: option(k.type | None, k.help, _FLAGS[k.name]) for k in KNOBS}
HeadSize, NormOpt, Layout, BlocksOpt = _KNOB["head_size"], _KNOB["norm"], _KNOB["layout"], _KNOB["blocks"]
RelAttn, DownsampleOpt, ImageSize, NumClasses = (
    _KNOB[name] for name in ("rel_attn", "downsample", "image_size", "num_classes")
)

# How and where cells are measured: speed, run, table8 (device and batch sizes: ab too)
Device = option(DeviceKind, "auto picks a GPU, else a TPU, else the CPU.")
BatchSizes = option(str | None, "Per-core batch sizes, e.g. 32,64. Default: 32,64,128,256 (a suite's own); 1 on a CPU.")
DtypeOpt = option(Dtype | None, "Autocast dtype. Default: bf16; fp32 on a CPU.")
ChannelsLast = option(bool, "Channels-last memory format (CPU and GPU).", "--channels-last/--no-channels-last")
MinTime = option(float | None, "Timed seconds per cell, at least. Default: 2; 1 on a CPU.")
MaxTime = option(float | None, "Stop refining the CI after this many timed seconds. Default: 30; 6 on a CPU.")
Timeout = option(float | None, "Give up on a cell after this many seconds. Default: 900.")
Strict = option(bool, "XLA: fail a cell that recompiles or falls back while timed.", "--strict")
XlaCache = option(Path | None, "XLA: persistent compilation cache directory.")
Out = option(Path | None, "JSON Lines file to append to. Default: a new results/runs/speed-<time>.jsonl.")
Resume = option(Path | None, "Measure only what this results file lacks, and append to it.")
Devices = option(str, "Devices, a rank each (torch.distributed), e.g. 2 or 1,2,4; 1 is always measured too.")
BucketCap = option(float, "DDP gradient bucket size in MiB (training on several devices).")
BucketView = option(bool, "DDP: gradients as views into its buckets.", "--gradient-as-bucket-view")
RoundsOpt = option(str, "Rounds, each cell once a round, interleaved: N, or auto (3, then more while unresolved).")
BudgetOpt = option(
    str | None, "Wall time within which rounds are added after the first 3 (auto). Default: 8m CPU, 20m GPU."
)
Seed = option(int | None, "Seed of the rounds' orders. Default: a new one (saved in every row).")
Processes = option(int | None, "Worker processes the rounds are spread over. Default: one a round; 1 on GPU.")
ExecutionOpt = option(str, "Execution modes, comma-separated: " + ",".join(e.value for e in Execution), "--execution")
# What a suite command does besides measuring: run, table8
DryRun = option(bool, "List the cells and a rough time estimate; measure nothing.", "--dry-run")

# How a comparison judges: compare, ab
Threshold = option(str, "Slowdown that counts as a regression, e.g. 5% or 0.05.")
Alpha = option(float, "Significance level of the one-sided t-test on the runs' medians.")
AllowNothing = option(bool, "Exit 0, not 3, when no cell could be compared.", "--allow-nothing-comparable")

# Reports: table8, report
Accuracy = option(list[Path] | None, f"Your accuracy CSV (preferred). Default: {settings.USER_ACCURACY}.", "--accuracy")
Plot = option(Path | None, "Also draw throughput vs batch and top-1 vs throughput to this PNG.")
Baseline = option(
    str | None, f"A baseline file, or 'auto': the one saved for this hardware ({settings.BASELINES_DIR})."
)

# The measure group's defaults, for the commands' signatures: a sweep's own where it has one.
DEFAULTS = settings.SweepOptions
MEASURE = (
    "device", "batch_sizes", "dtype", "channels_last", "min_time", "max_time", "timeout", "strict",
    "xla_cache", "out", "resume", "devices", "bucket_cap_mb", "gradient_as_bucket_view", "rounds",
    "budget", "seed", "processes", "execution",
)  # fmt: skip


def sweep_options(given: dict) -> settings.SweepOptions:
    """The measure group among a command's values `given` (its `locals()`), parsed for
    `run.plan.make_plan` (which checks what depends on the device); the rows' file is checked for
    writing here already, before torch is imported."""
    v = {name: given[name] for name in MEASURE}
    if v["resume"] is not None and v["out"] is not None and v["out"] != v["resume"]:
        raise CoatbenchError(f"--resume {v['resume']} appends to that file: drop --out {v['out']}")
    rule = settings.Rounds.parse(v["rounds"])
    if v["budget"] is not None and not rule.auto:
        raise CoatbenchError("--budget bounds the rounds that --rounds auto adds: drop it, or use --rounds auto")
    out = v["out"] or settings.new_runs_path()
    check_writable(v["resume"] or out)
    return settings.SweepOptions(
        out=out,
        resume=v["resume"],
        rounds=rule,
        time_budget_s=None if v["budget"] is None else settings.parse_duration(v["budget"], "--budget"),
        seed=v["seed"],
        processes=v["processes"],
        device=v["device"],
        batch_sizes=None if v["batch_sizes"] is None else settings.parse_batch_sizes(v["batch_sizes"]),
        dtype=v["dtype"],
        executions=settings.parse_executions(v["execution"]),
        channels_last=v["channels_last"],
        devices=settings.parse_devices(v["devices"]),
        ddp=settings.DdpOptions.checked(v["bucket_cap_mb"], v["gradient_as_bucket_view"]),
        min_time=v["min_time"],
        max_time=v["max_time"],
        timeout=v["timeout"],
        strict=v["strict"],
        xla_cache=v["xla_cache"],
    )


def knobs_of(given: dict, names=tuple(k.name for k in KNOBS)) -> dict:
    """The knobs `names` among a command's values `given`, for `config.build_config`."""
    return {name: given[name] for name in names}


def network_of(given: dict):
    """The model a command names (its `model`, `kwargs` and knobs among `given`), built."""
    return build_network(given["model"], settings.parse_kwargs(given["kwargs"]), **knobs_of(given))

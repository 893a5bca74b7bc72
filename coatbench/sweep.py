"""A sweep: the plan of cells, measured one after another, each saved the moment it finishes.

On XLA each cell runs in one worker process per local core (`torch_xla.launch`); the
launcher is here, the per-core backend in `coatbench.xla`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from coatbench.config import CoAtNetConfig
from coatbench.counting import ModelCount, count
from coatbench.errors import CoatbenchError
from coatbench.hardware import fingerprint, peak_tflops, resolve_device
from coatbench.harness import Cell, Measurement, check_cell, measure
from coatbench.options import CPU_BUDGET, Budget, DeviceKind, Dtype, Execution, Mode
from coatbench.results import (
    Compute,
    Env,
    Memory,
    ModelSize,
    Row,
    Status,
    Throughput,
    Timing,
    append_row,
    read_rows,
    run_key,
)
from coatbench.stats import summarize
from coatbench.suite import Suite, load_suite
from coatbench.xla import XlaOptions

GPU_BATCH_SIZES = (32, 64, 128, 256)
CPU_BATCH_SIZES = (1, 2)


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    device: torch.device
    env: Env  # the machine the cells will run on (for XLA: as its workers see it)
    budget: Budget
    out: Path
    scaled_down: tuple[str, ...] = ()  # what the CPU defaults changed, said to the user
    resumed: str = ""  # which file a resumed plan continues, and how far it had got
    previous: tuple[Row, ...] = ()  # the rows already in that file
    xla: XlaOptions = field(default_factory=XlaOptions)


def make_plan(
    configs: Sequence[CoAtNetConfig],
    *,
    device: DeviceKind = DeviceKind.AUTO,
    modes: Sequence[Mode] = (Mode.TRAIN, Mode.INFER),
    batch_sizes: Sequence[int] | None = None,
    default_batch_sizes: Sequence[int] = GPU_BATCH_SIZES,
    dtype: Dtype | None = None,
    executions: Sequence[Execution] = (Execution.EAGER,),
    channels_last: bool = True,
    min_time: float | None = None,
    max_time: float | None = None,
    timeout: float | None = None,
    strict: bool = False,
    xla_cache: Path | None = None,
    out: Path,
) -> Plan:
    """The cells to measure, with the defaults that fit the device; on a CPU, what was
    scaled down is listed so that nobody mistakes it for the full run."""
    target = resolve_device(device)
    notes = []
    on_cpu = target.type == "cpu"
    if batch_sizes is None:
        batch_sizes = default_batch_sizes
        if on_cpu and max(batch_sizes) > max(CPU_BATCH_SIZES):
            batch_sizes = CPU_BATCH_SIZES
            notes.append(
                f"per-core batch sizes {','.join(map(str, default_batch_sizes))} -> "
                f"{','.join(map(str, CPU_BATCH_SIZES))} (no accelerator; pass --batch-sizes to choose)"
            )
    if dtype is None:
        dtype = Dtype.FP32 if on_cpu else Dtype.BF16
        if on_cpu:
            notes.append("dtype bf16 -> fp32 (CPUs without bf16 units run autocast slower; pass --dtype)")
    budget = CPU_BUDGET if on_cpu else Budget()
    if on_cpu and min_time is None and max_time is None:
        notes.append(
            f"timed seconds per cell {Budget().min_time:g}-{Budget().max_time:g} -> "
            f"{budget.min_time:g}-{budget.max_time:g} (pass --min-time / --max-time)"
        )
    overrides = {"min_time": min_time, "max_time": max_time, "timeout": timeout}
    for name, value in overrides.items():
        if value is not None and value <= 0:
            raise CoatbenchError(f"--{name.replace('_', '-')} must be positive, got {value:g}")
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    if budget.max_time < budget.min_time:
        raise CoatbenchError(f"--max-time {budget.max_time:g} is below --min-time {budget.min_time:g}: raise it")
    if target.type != "xla" and (xla_cache is not None or strict):
        raise CoatbenchError(f"{'--xla-cache' if xla_cache is not None else '--strict'} applies to --device xla only")
    if target.type == "xla" and channels_last:
        channels_last = False  # XLA picks its own layouts: a memory format means nothing there
    cells = tuple(
        Cell(config, mode, batch, dtype, execution, channels_last)
        for config in configs
        for execution in executions
        for mode in modes
        for batch in batch_sizes
    )
    if Mode.INFER in modes:  # with inference asked for too, an inference-only execution skips training
        left_out = {c.execution.value for c in cells if c.execution.inference_only and c.mode is Mode.TRAIN}
        cells = tuple(c for c in cells if not (c.execution.inference_only and c.mode is Mode.TRAIN))
        notes += [
            f"{execution} measures inference only: its training cells are left out" for execution in sorted(left_out)
        ]
    for cell in cells:  # refuse a bad combination before the first cell runs
        check_cell(cell, target)
    xla = XlaOptions(strict=strict, cache_dir=None if xla_cache is None else str(xla_cache))
    env = fingerprint(target, *xla_topology()) if target.type == "xla" else fingerprint(target)
    return Plan(cells, target, env, budget, Path(out), tuple(notes), xla=xla)


def plan_suite(
    suite_name: str,
    *,
    executions: Sequence[Execution] = (Execution.EAGER,),
    resume: Path | None = None,
    **options,
) -> tuple[Suite, Plan]:
    """A suite's cells (`options` as for `make_plan`); with `resume`, only those that file does
    not hold yet, appended to it."""
    suite = load_suite(suite_name)
    plan = make_plan(
        suite.configs, modes=suite.modes, default_batch_sizes=suite.batch_sizes, executions=executions, **options
    )
    return suite, plan if resume is None else skip_done(plan, read_rows(resume), resume)


def skip_done(plan: Plan, rows: Sequence[Row], source: Path) -> Plan:
    """`plan` without the cells that `rows` already measured or found out of memory on this
    machine; a timed-out or failed cell is tried again."""
    done = {run_key(r.env, r.spec) for r in rows if r.status in (Status.OK, Status.OOM)}
    cells = tuple(c for c in plan.cells if run_key(plan.env, c.spec(plan.env)) not in done)
    note = f"resuming {source}: {len(plan.cells) - len(cells)} of {len(plan.cells)} cells already there"
    return dataclasses.replace(plan, cells=cells, out=Path(source), resumed=note, previous=tuple(rows))


def make_row(cell: Cell, result: Measurement, counted: ModelCount, env: Env, notes: Sequence[str] = ()) -> Row:
    """One results-file row: the full spec, the model's size, the statistics, the environment,
    and what the run scaled down (so that every report made from it can say so)."""
    devices = env.device_count
    counted_size = ModelSize(counted.params, counted.macs, counted.flops, counted.train_flops)
    row = Row(
        timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        status=result.status,
        message=result.message,
        spec=cell.spec(env),
        model_size=counted_size,
        timing=Timing(
            result.first_step_s, result.warmup_s, result.warmup_steps, result.warmup_stable, result.block_steps
        ),
        samples=list(result.samples),
        env=env,
        scaled_down=list(notes),
        xla=result.xla,
    )
    if not result.samples:
        return row
    summary = summarize(result.samples)
    flops_per_image = counted_size.train_flops if cell.mode is Mode.TRAIN else counted_size.flops
    achieved = summary.median * devices * flops_per_image / 1e12
    peak = peak_tflops(env.device_name, cell.dtype.value)
    stats = summary.as_dict()
    return dataclasses.replace(
        row,
        throughput=Throughput(
            images_per_s=summary.median,  # per core
            images_per_s_total=summary.median * devices,
            iqr=stats["iqr"],
            ci95=stats["ci95"],
            ci95_rel=stats["ci95_rel"],
            n=stats["n"],
            step_time_s=cell.batch_size / summary.median,
        ),
        compute=Compute(
            tflops=achieved,
            flops_per_image=flops_per_image,
            peak_tflops=None if peak is None else peak * devices,
            peak_source=None if peak is None else f"datasheet dense {cell.dtype.value}, {env.device_name}",
            mfu=None if peak is None else achieved / (peak * devices),
        ),
        memory=Memory(result.peak_memory_bytes),
    )


# Rough rates for --dry-run estimates only, from committed runs: compile time near the slowest
# compiled first step in results/h100/table8.jsonl (timing.first_step_s: up to 105 s training,
# 29 s inference); 15% of the datasheet peak on a GPU (compiled MFU 13-18%, results/h100/speed.md);
# 0.08 TFLOP/s per CPU thread (compute.tflops 0.16-0.22 on 2 threads, results/cpu/table8.jsonl).
COMPILE_SECONDS = {Mode.TRAIN: 100.0, Mode.INFER: 35.0}
CPU_TFLOPS_PER_THREAD = 0.08
GPU_FRACTION_OF_PEAK = 0.15


def estimate_seconds(cell: Cell, counted: ModelCount, env: Env, budget: Budget) -> float:
    """A rough wall-clock guess for one cell, for --dry-run."""
    flops = (counted.train_flops if cell.mode is Mode.TRAIN else counted.flops) * cell.batch_size
    peak = peak_tflops(env.device_name, cell.dtype.value) if env.device_type == "cuda" else None
    rate = (peak or 100.0) * GPU_FRACTION_OF_PEAK if env.device_type == "cuda" else CPU_TFLOPS_PER_THREAD * env.threads
    step = flops / (rate * 1e12)
    steps = 5 + max(budget.min_samples * max(1, round(budget.block_time / step)), budget.min_time / step)
    compile_time = COMPILE_SECONDS[cell.mode] if cell.execution.compiles else 0.0
    return compile_time + steps * step


def estimate(plan: Plan) -> list[tuple[Cell, float]]:
    """Each cell of `plan` with a rough guess of its seconds (from MACs, not a measurement)."""
    counts: dict[CoAtNetConfig, ModelCount] = {}
    return [
        (cell, estimate_seconds(cell, counts.setdefault(cell.config, count(cell.config)), plan.env, plan.budget))
        for cell in plan.cells
    ]


@dataclass
class SweepProgress:
    """Callbacks for a front end; the sweep itself prints nothing."""

    on_start: Callable[[int, Cell], None] = lambda index, cell: None
    on_done: Callable[[int, Cell, Row], None] = lambda index, cell, row: None


@dataclass
class SweepResult:
    rows: list[Row] = field(default_factory=list)
    interrupted: bool = False


def run_sweep(
    plan: Plan,
    progress: SweepProgress = SweepProgress(),
    measure_cell: Callable[[Cell, torch.device, Budget], Measurement] | None = None,
) -> SweepResult:
    """Measure every cell in order, appending each row to `plan.out` as soon as it exists.
    Ctrl-C stops the sweep; every finished cell is already on disk."""
    if measure_cell is None:
        if plan.device.type == "xla":
            measure_cell = lambda cell, device, budget: measure_on_all_cores(cell, budget, plan.xla)  # noqa: E731
        else:
            measure_cell = measure
    counts: dict[CoAtNetConfig, ModelCount] = {}
    result = SweepResult()
    try:
        for index, cell in enumerate(plan.cells):
            progress.on_start(index, cell)
            if cell.config not in counts:
                counts[cell.config] = count(cell.config)
            measured = measure_cell(cell, plan.device, plan.budget)
            row = make_row(cell, measured, counts[cell.config], plan.env, plan.scaled_down)
            append_row(plan.out, row)
            result.rows.append(row)
            progress.on_done(index, cell, row)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def run_plan(plan: Plan, progress: SweepProgress = SweepProgress()) -> list[Row]:
    """The rows of the file's earlier runs (when resumed) and of this sweep; an interrupted
    sweep is an error that says where its finished cells are."""
    result = run_sweep(plan, progress)
    if result.interrupted:
        raise CoatbenchError(
            f"interrupted after {len(result.rows)} of {len(plan.cells)} cells; those are saved in {plan.out} "
            "(run again with --resume to measure the rest)"
        )
    return list(plan.previous) + result.rows


# The XLA launcher: one worker process per local core (torch_xla.launch), each timing the
# cell on its own core in lock step with the others; rank 0's result comes back in a file.


@dataclass(frozen=True)
class _XlaJob:
    cell: Cell | None  # None: report the topology only
    budget: Budget
    options: XlaOptions
    barrier: object  # xla.ThreadBarrier, shared by the device threads of each worker process
    out_dir: str


def _xla_worker(index: int, job: _XlaJob) -> None:
    import torch_xla
    import torch_xla.runtime as xr

    from coatbench.xla import XlaOps, device_name, platform

    if job.cell is None:
        result = (xr.world_size(), device_name(platform()))
    else:
        if job.options.cache_dir:
            xr.initialize_cache(job.options.cache_dir, readonly=False)
        ops = XlaOps(job.options, job.barrier, threads=xr.addressable_runtime_device_count())
        result = measure(job.cell, torch_xla.device(), job.budget, ops=ops)
    if xr.global_ordinal() == 0:
        with open(os.path.join(job.out_dir, "rank0.pkl"), "wb") as f:
            pickle.dump(result, f)


def _launch(cell: Cell | None, budget: Budget, options: XlaOptions):
    """Rank 0's result of `_xla_worker` on every local core; the failure as a string when a
    worker died or rank 0 ended without a result."""
    import torch_xla

    from coatbench.xla import ThreadBarrier

    with tempfile.TemporaryDirectory(prefix="coatbench-xla-") as out_dir:
        job = _XlaJob(cell, budget, options, ThreadBarrier(), out_dir)
        try:
            torch_xla.launch(_xla_worker, args=(job,))
        except Exception as error:
            return f"an XLA worker failed: {str(error).splitlines()[0][:200]}"
        path = os.path.join(out_dir, "rank0.pkl")
        if not os.path.exists(path):
            return "the XLA worker of rank 0 ended without a result"
        with open(path, "rb") as f:
            return pickle.load(f)


def xla_topology() -> tuple[int, str]:
    """(cores, device name) as the workers see them: what the rows of an XLA sweep will say,
    known before the first cell (resume needs it)."""
    found = _launch(None, Budget(), XlaOptions())
    if isinstance(found, str):
        raise CoatbenchError(f"cannot start the XLA workers: {found}")
    return found


def measure_on_all_cores(cell: Cell, budget: Budget, options: XlaOptions) -> Measurement:
    """Measure `cell` on every local XLA core, one process each; rank 0's measurement back.
    A dead worker is a failed cell, not a lost sweep."""
    found = _launch(cell, budget, options)
    return Measurement(Status.FAILED, message=found) if isinstance(found, str) else found

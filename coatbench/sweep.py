"""A sweep: cells measured one after another, each saved the moment it finishes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from coatbench.config import CoAtNetConfig
from coatbench.counting import ModelCount, count
from coatbench.errors import CoatbenchError
from coatbench.harness import Budget, Cell, Measurement, check_cell, measure
from coatbench.hardware import Fingerprint, fingerprint, peak_tflops, resolve_device
from coatbench.options import DeviceKind, Dtype, Execution, Mode
from coatbench.results import SCHEMA, append_row, spec_key
from coatbench.stats import summarize

GPU_BATCH_SIZES = (32, 64, 128, 256)
CPU_BATCH_SIZES = (1, 2)
CPU_BUDGET = Budget(min_time=1.0, max_time=10.0, block_time=0.0, max_warmup_time=15.0)


@dataclass(frozen=True)
class Plan:
    cells: tuple[Cell, ...]
    device: torch.device
    budget: Budget
    out: Path
    scaled_down: tuple[str, ...] = ()  # what the CPU defaults changed, said to the user
    resumed: str = ""  # which file a resumed plan continues, and how far it had got
    xla_cache: str | None = None  # persistent XLA compilation cache directory


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise CoatbenchError(f"invalid --batch-sizes {text!r}: give positive integers, e.g. 32,64,128")
    return sizes


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
                f"per-core batch sizes {','.join(map(str, default_batch_sizes))} -> {','.join(map(str, CPU_BATCH_SIZES))} "
                "(no accelerator; pass --batch-sizes to choose)"
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
    budget = dataclasses.replace(budget, strict=strict, **{k: v for k, v in overrides.items() if v is not None})
    if target.type == "xla" and channels_last:
        channels_last = False  # XLA picks its own layouts: a memory format means nothing there
    if xla_cache is not None and target.type != "xla":
        raise CoatbenchError("--xla-cache applies to --device xla only")
    if budget.max_time < budget.min_time:
        raise CoatbenchError(f"--max-time {budget.max_time:g} is below --min-time {budget.min_time:g}: raise it")
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
        notes += [f"{execution} measures inference only: its training cells are left out" for execution in sorted(left_out)]
    for cell in cells:  # refuse a bad combination before the first cell runs
        check_cell(cell, target)
    return Plan(cells, target, budget, Path(out), tuple(notes), xla_cache=None if xla_cache is None else str(xla_cache))


def make_row(cell: Cell, result: Measurement, counted: ModelCount, env: Fingerprint, notes: Sequence[str] = ()) -> dict:
    """One results-file row: the full spec, the model's size, the statistics, the environment,
    and what the run scaled down (so that every report made from it can say so)."""
    devices = result.devices
    env = dataclasses.replace(env, device_count=devices, device_name=result.device_name or env.device_name)
    row: dict = {
        "schema": SCHEMA,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": result.status,
        "message": result.message,
        "spec": cell.spec(env.device_type, devices),
        "model_size": {
            "params": counted.params,
            "macs": counted.macs,
            "flops": counted.flops,
            "train_flops": counted.train_flops,
        },
        "timing": {
            "first_step_s": result.first_step_s,
            "warmup_s": result.warmup_s,
            "warmup_steps": result.warmup_steps,
            "warmup_stable": result.warmup_stable,
            "block_steps": result.block_steps,
        },
        "samples": result.samples,
        "env": env.as_dict(),
        "scaled_down": list(notes),
    }
    if result.xla is not None:
        row["xla"] = result.xla
    if result.samples:
        summary = summarize(result.samples)
        flops_per_image = counted.train_flops if cell.mode is Mode.TRAIN else counted.flops
        achieved = summary.median * devices * flops_per_image / 1e12
        peak = peak_tflops(env.device_name, cell.dtype.value)
        row["throughput"] = {
            "images_per_s": summary.median,  # per core
            "images_per_s_total": summary.median * devices,
            **{k: v for k, v in summary.as_dict().items() if k != "median"},
            "step_time_s": cell.batch_size / summary.median,
        }
        row["compute"] = {
            "tflops": achieved,
            "flops_per_image": flops_per_image,
            "peak_tflops": None if peak is None else peak * devices,
            "peak_source": None if peak is None else f"datasheet dense {cell.dtype.value}, {env.device_name}",
            "mfu": None if peak is None else achieved / (peak * devices),
        }
        row["memory"] = {"peak_bytes": result.peak_memory_bytes}
    return row


def skip_done(plan: Plan, rows: Sequence[dict], source: Path) -> Plan:
    """`plan` without the cells that `rows` (from the same hardware) already measured or
    found out of memory; a timed-out cell is tried again."""
    hardware = fingerprint(plan.device).hardware_key
    done = {spec_key(r["spec"]) for r in rows if r["env"]["hardware_key"] == hardware and r["status"] in ("ok", "oom")}
    cells = tuple(c for c in plan.cells if spec_key(c.spec(plan.device.type)) not in done)
    note = f"resuming {source}: {len(plan.cells) - len(cells)} of {len(plan.cells)} cells already there"
    return dataclasses.replace(plan, cells=cells, out=Path(source), resumed=note)


# Rough rates for --dry-run estimates only: compile times as seen on an H100 (anchors.md),
# sustained TFLOP/s per CPU thread as seen on this project's 2-core CI machine.
COMPILE_SECONDS = {Mode.TRAIN: 100.0, Mode.INFER: 35.0}
CPU_TFLOPS_PER_THREAD = 0.08
GPU_FRACTION_OF_PEAK = 0.15


def estimate_seconds(cell: Cell, counted: ModelCount, env: Fingerprint, budget: Budget) -> float:
    """A rough wall-clock guess for one cell, for --dry-run."""
    flops = (counted.train_flops if cell.mode is Mode.TRAIN else counted.flops) * cell.batch_size
    peak = peak_tflops(env.device_name, cell.dtype.value) if env.device_type == "cuda" else None
    rate = (peak or 100.0) * GPU_FRACTION_OF_PEAK if env.device_type == "cuda" else CPU_TFLOPS_PER_THREAD * env.threads
    step = flops / (rate * 1e12)
    steps = 5 + max(budget.min_samples * max(1, round(budget.block_time / step)), budget.min_time / step)
    compile_time = COMPILE_SECONDS[cell.mode] if cell.execution.compiles else 0.0
    return compile_time + steps * step


@dataclass
class SweepProgress:
    """Callbacks for a front end; the sweep itself prints nothing."""

    on_start: Callable[[int, Cell], None] = lambda index, cell: None
    on_done: Callable[[int, Cell, dict], None] = lambda index, cell, row: None


@dataclass
class SweepResult:
    rows: list[dict] = field(default_factory=list)
    interrupted: bool = False


def run_sweep(
    plan: Plan,
    progress: SweepProgress = SweepProgress(),
    measure_cell: Callable[[Cell, torch.device, Budget], Measurement] = measure,
) -> SweepResult:
    """Measure every cell in order, appending each row to `plan.out` as soon as it exists.
    Ctrl-C stops the sweep; every finished cell is already on disk."""
    env = fingerprint(plan.device)
    if plan.device.type == "xla" and measure_cell is measure:
        from coatbench.xla import measure_on_all_cores

        def measure_cell(cell, device, budget):
            return measure_on_all_cores(cell, budget, plan.xla_cache)

    counts: dict[CoAtNetConfig, ModelCount] = {}
    result = SweepResult()
    try:
        for index, cell in enumerate(plan.cells):
            progress.on_start(index, cell)
            if cell.config not in counts:
                counts[cell.config] = count(cell.config)
            measured = measure_cell(cell, plan.device, plan.budget)
            row = make_row(cell, measured, counts[cell.config], env, plan.scaled_down)
            append_row(plan.out, row)
            result.rows.append(row)
            progress.on_done(index, cell, row)
    except KeyboardInterrupt:
        result.interrupted = True
    return result

"""Timing one cell: a model, a mode (train or infer) and a per-core batch size.

Pure measurement: it returns a dataclass and prints nothing. The protocol:
1. build the model and synthetic data on the device (data never crosses the bus again);
2. time the first step alone: compilation, graph capture, cudnn autotuning live here;
3. warm up in blocks until two blocks in a row agree within 5%;
4. time blocks, each closed by a device synchronisation, until the 95% CI of the
   median is within the target (+-2%) and the minimum time has passed, or the budget ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from coatbench.config import CoAtNetConfig
from coatbench.errors import CoatbenchError
from coatbench.hardware import device_ops, free_memory, peak_memory_bytes, reset_peak_memory, synchronize
from coatbench.model import build_model
from coatbench.options import Dtype, Execution, Mode
from coatbench.stats import summarize


TORCH_DTYPES = {Dtype.FP32: torch.float32, Dtype.BF16: torch.bfloat16, Dtype.FP16: torch.float16}


OPTIMIZER = "SGD(lr=0.01, momentum=0.9, foreach)"
SYNTHETIC_INPUT = "randn images, randint labels, created once on the device"


@dataclass(frozen=True)
class Cell:
    config: CoAtNetConfig
    mode: Mode
    batch_size: int  # per core
    dtype: Dtype = Dtype.BF16
    execution: Execution = Execution.EAGER
    channels_last: bool = True

    def spec(self, device_type: str, devices: int = 1) -> dict:
        return {
            **self.config.spec(),
            "mode": self.mode.value,
            "batch_per_core": self.batch_size,
            "global_batch": self.batch_size * devices,
            "devices": devices,
            "device": device_type,
            "dtype": self.dtype.value,
            "execution": self.execution.value,
            "channels_last": self.channels_last,
            "input": SYNTHETIC_INPUT,
            "optimizer": OPTIMIZER if self.mode is Mode.TRAIN else None,
        }


@dataclass(frozen=True)
class Budget:
    min_time: float = 2.0  # seconds of timed blocks, at least
    max_time: float = 30.0  # stop refining the CI after this many timed seconds
    target_ci: float = 0.02  # stop once the 95% CI of the median is within +-2%
    min_samples: int = 6  # fewer order statistics cannot bound a 95% CI of the median
    block_time: float = 0.2  # seconds per timed block, roughly
    warmup_tolerance: float = 0.05
    max_warmup_time: float = 60.0  # after compilation
    timeout: float = 900.0  # the whole cell, compilation included
    strict: bool = False  # XLA: fail a cell that recompiles or falls back inside the timed window
    # XLA, one process per core: a schedule that every process follows step for step
    fixed_block_steps: int = 5
    fixed_warmup_blocks: int = 20  # at most; warm-up ends once `quiet_blocks` in a row compiled nothing
    quiet_blocks: int = 3
    fixed_timed_blocks: int = 10


@dataclass
class Measurement:
    status: str  # ok | oom | timeout
    samples: list[float] = field(default_factory=list)  # images/s per core, one per timed block
    block_steps: int = 0
    first_step_s: float | None = None  # compilation / capture / autotuning, timed apart
    warmup_s: float | None = None
    warmup_steps: int = 0
    warmup_stable: bool = False
    peak_memory_bytes: int | None = None
    message: str = ""
    devices: int = 1  # cores the cell ran on (XLA: one process each)
    device_name: str | None = None  # set where only the measuring process can tell (XLA)
    xla: dict | None = None  # the guard: compiles and fallbacks in the timed window, metrics


class CellTimeout(Exception):
    pass


def build_step(cell: Cell, device: torch.device, model: torch.nn.Module | None = None) -> Callable[[], None]:
    """One training or inference step on fixed synthetic data, ready to call repeatedly.
    `model` (built from `cell.config` when None) lets another harness time the same object."""
    config, batch = cell.config, cell.batch_size
    memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
    model = (model or build_model(config, device)).to(memory_format=memory_format)
    images = torch.randn(batch, 3, config.image_size, config.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    if cell.execution is Execution.COMPILE_FOLDED_BN:
        compile_frozen(model)
    elif cell.execution.compiles:
        compile_regions(model)
    forward = model

    def autocast():
        enabled = cell.dtype is not Dtype.FP32
        return torch.autocast(device.type, dtype=TORCH_DTYPES[cell.dtype], enabled=enabled)

    if cell.mode is Mode.INFER:
        model.eval()
        # inference_mode tensors cannot enter XLA's lazy graphs; no_grad does the same job there
        no_grad = torch.no_grad if device.type == "xla" else torch.inference_mode

        live: list[torch.Tensor] = []  # XLA runs only graphs whose results are still alive

        def step() -> None:
            live.clear()  # free the last output before tracing the next: same graph every step
            with no_grad(), autocast():
                live.append(forward(images))

    else:
        model.train()
        labels = torch.randint(0, config.num_classes, (batch,), device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
        scaler = torch.amp.GradScaler(device.type, enabled=cell.dtype is Dtype.FP16)
        xla_ops = device_ops(device) if device.type == "xla" else None

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(forward(images), labels)
            scaler.scale(loss).backward()
            if xla_ops is not None:
                xla_ops.optimizer_step(optimizer)
            else:
                scaler.step(optimizer)
                scaler.update()

    if cell.execution.captures:
        return capture_cuda_graph(step)
    return step


def compile_regions(model: torch.nn.Module, units: list[torch.nn.Module] | None = None) -> None:
    """torch.compile each block in place (regional compilation), static shapes.

    Blocks after the first in a stage are identical, so they share one compiled graph:
    CoAtNet-2 compiles 11 graphs instead of one graph of 26 blocks, several times faster,
    while the fusions that matter (inside a block) are kept. Dynamo's caches are reset
    first so that each cell's compile time is its own and no earlier graph is reused.
    `units` (default: the model's compile_units) lets another model be compiled the same way.
    """
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    for unit in units if units is not None else model.compile_units():
        unit.compile(dynamic=False)


def compile_frozen(model: torch.nn.Module) -> None:
    """torch.compile the whole model with inductor's freezing, for inference: parameters
    become constants, BatchNorm folds into the conv before it, the relative-bias gather is
    done once at compile time."""
    torch._dynamo.reset()
    model.compile(dynamic=False, options={"freezing": True})


def capture_cuda_graph(step: Callable[[], None]) -> Callable[[], None]:
    """Capture the whole step (forward, backward, optimizer) once; replay it as one launch."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def guard(result: Measurement, ops, compiles_before: int, fallbacks_before: dict[str, int], strict: bool) -> None:
    """Flag a timed window that recompiled or ran ops on the host: its time is not the
    steady step's. With `strict` the cell fails instead."""
    recompiles = ops.compile_count() - compiles_before
    fell_back = {op: n - fallbacks_before.get(op, 0) for op, n in ops.fallbacks().items() if n > fallbacks_before.get(op, 0)}
    suspect = recompiles > 0 or bool(fell_back)
    result.xla = {"compiles_in_window": recompiles, "fallbacks_in_window": fell_back, "suspect": suspect, **ops.summary()}
    if suspect:
        why = f"{recompiles} recompilation(s) and {sum(fell_back.values())} aten fallback(s) inside the timed window"
        result.message = why
        if strict:
            result.status = "failed"


def check_cell(cell: Cell, device: torch.device) -> None:
    if cell.batch_size < 1:
        raise CoatbenchError(f"batch size must be at least 1, got {cell.batch_size}")
    if cell.execution.captures:
        if device.type != "cuda":
            raise CoatbenchError("--cuda-graphs needs a CUDA device: drop it or use --device cuda")
        if cell.mode is Mode.TRAIN and cell.dtype is Dtype.FP16:
            raise CoatbenchError("--cuda-graphs cannot capture fp16 loss scaling: use --dtype bf16")
    if device.type == "xla" and cell.mode is Mode.TRAIN and cell.dtype is Dtype.FP16:
        raise CoatbenchError("fp16 training needs loss scaling, which coatbench does not do on XLA: use --dtype bf16")
    if cell.execution.compiles and device.type == "xla":
        raise CoatbenchError(f"{cell.execution.value} is for CPUs and GPUs: XLA compiles every step itself, use --execution eager")
    if cell.execution.inference_only and cell.mode is not Mode.INFER:
        raise CoatbenchError(f"{cell.execution.value} measures inference only: use --mode infer")


def measure(
    cell: Cell,
    device: torch.device,
    budget: Budget = Budget(),
    before_step: Callable[[int], None] | None = None,
    model: torch.nn.Module | None = None,
) -> Measurement:
    """Time `cell` on `device`. Out of memory and running past `budget.timeout` are results.

    `before_step(i)` runs before the i-th step: a hook for progress or fault injection.
    """
    check_cell(cell, device)
    started = time.perf_counter()
    result = Measurement(status="ok")
    steps_done = 0
    ops = device_ops(device)

    # With one process per XLA core every process must run the same number of steps, or
    # their gradient all-reduces would wait for each other: there (`ops.deterministic`) the
    # schedule depends on step and compile counts only, never on a process's own clock.
    fixed = ops.deterministic

    def run_block(steps: int) -> float:
        nonlocal steps_done
        if not fixed and time.perf_counter() - started > budget.timeout:
            raise CellTimeout
        ops.start()
        for _ in range(steps):
            if before_step is not None:
                before_step(steps_done)
            step()
            ops.after_step()
            steps_done += 1
        return ops.stop()

    step = None
    try:
        t0 = time.perf_counter()
        step = build_step(cell, device, model)
        run_block(1)
        synchronize(device)
        result.first_step_s = time.perf_counter() - t0

        # Warm-up: blocks of about `block_time`, until two in a row agree.
        warm_start = time.perf_counter()
        step_time = run_block(1)
        result.block_steps = budget.fixed_block_steps if fixed else max(1, round(budget.block_time / step_time))
        # the step just timed is the first reference: when the next block agrees with it, warm-up
        # is over (on a CPU, where a CoAtNet-3 step takes seconds, that saves a whole block)
        previous, blocks, quiet = step_time * result.block_steps, 0, 0  # quiet: blocks in a row that compiled nothing
        while (blocks < budget.fixed_warmup_blocks) if fixed else (time.perf_counter() - warm_start < budget.max_warmup_time):
            compiles = ops.compile_count()
            block = run_block(result.block_steps)
            blocks += 1
            quiet = quiet + 1 if ops.compile_count() == compiles else 0
            steady = fixed or abs(block - previous) <= budget.warmup_tolerance * previous
            # one process per XLA core: also wait until nothing compiled for a few blocks
            if steady and (not fixed or quiet >= budget.quiet_blocks):
                result.warmup_stable = True
                break
            previous = block
        result.warmup_s = time.perf_counter() - warm_start
        result.warmup_steps = steps_done

        ops.barrier()
        reset_peak_memory(device)
        compiles, fallbacks = ops.compile_count(), ops.fallbacks()
        timed = 0.0
        while True:
            block = run_block(result.block_steps)
            timed += block
            result.samples.append(cell.batch_size * result.block_steps / block)
            if fixed:
                if len(result.samples) >= budget.fixed_timed_blocks:
                    break
                continue
            enough = len(result.samples) >= budget.min_samples and timed >= budget.min_time
            if enough and summarize(result.samples).ci_halfwidth_rel <= budget.target_ci:
                break
            if timed >= budget.max_time and len(result.samples) >= budget.min_samples:
                break  # the CI did not get narrow enough in time: report it as it is
        result.peak_memory_bytes = peak_memory_bytes(device)
        if device.type == "xla":
            guard(result, ops, compiles, fallbacks, budget.strict)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        # XLA runs out of device memory as a RuntimeError naming RESOURCE_EXHAUSTED
        if not isinstance(error, torch.OutOfMemoryError) and "RESOURCE_EXHAUSTED" not in str(error):
            raise
        result.status, result.message = "oom", str(error).splitlines()[0][:200]
    except CellTimeout:
        result.status = "timeout"
        result.message = f"exceeded {budget.timeout:.0f} s (after {steps_done} steps)"
    finally:
        del step
        free_memory(device)
    return result

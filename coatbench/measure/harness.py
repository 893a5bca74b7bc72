"""Timing one cell: a model, a mode (train or infer) and a per-core batch size.

Pure measurement: it returns a dataclass and prints nothing. The protocol:
1. build the model and synthetic data on the device (data never crosses the bus again);
2. time the first step alone: compilation, graph capture, cudnn autotuning live here;
3. warm up in blocks until the device's schedule calls it warm;
4. time blocks, each closed by a device synchronisation, until the schedule has enough.
The schedule is the device's (`measure.local.AdaptiveSchedule`: two blocks in a row agree, then
until the 95% CI of the median is within +-2%; `measure.xla.LockStepSchedule`: fixed counts that
every core's process follows step for step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from coatbench.config import ExternalModel, Network
from coatbench.errors import CoatbenchError
from coatbench.measure.distributed import REPLICAS
from coatbench.measure.local import device_ops, free_memory, peak_memory_bytes, reset_peak_memory, synchronize
from coatbench.measure.ops import Ops, Schedule
from coatbench.networks import build
from coatbench.results import Distributed, Env, Spec, Status
from coatbench.settings import Budget, DdpOptions, Dtype, Execution, Mode

TORCH_DTYPES = {Dtype.FP32: torch.float32, Dtype.BF16: torch.bfloat16, Dtype.FP16: torch.float16}

OPTIMIZER = "SGD(lr=0.01, momentum=0.9, foreach)"
# A CUDA graph allocates its memory once, while it is captured (part of the first step), and
# replays without allocating: a peak taken over the timed steps alone misses it. So the peak
# spans the whole cell, as the largest batch that fits depends on it.
PEAK_MEMORY_METHOD = "torch.cuda.max_memory_allocated over the whole cell (first step and capture included)"
SYNTHETIC_INPUT = "randn images, randint labels, created once on the device"


@dataclass(frozen=True)
class Cell:
    config: Network  # CoAtNet, or an external model (resolved: `networks.resolve`)
    mode: Mode
    batch_size: int  # per core
    dtype: Dtype = Dtype.BF16
    execution: Execution = Execution.EAGER
    channels_last: bool = True
    devices: int = 1  # ranks (torch.distributed), one device each; XLA's cores are its launcher's
    ddp: DdpOptions = field(default_factory=DdpOptions)  # training on several ranks

    @property
    def parallel(self) -> str | None:
        """How several ranks share the work: DDP for training, replicas for inference."""
        if self.devices == 1:
            return None
        return self.ddp.describe() if self.mode is Mode.TRAIN else REPLICAS

    def warm_up_copy(self) -> Cell:
        """The untimed copy that opens a round or a launch (`run.schedule.schedule`): the same cell
        eager, since it is there to warm the process (allocator, threads, CUDA context), and
        compiling it would cost a compilation per round (30-120 s a cell on the H100)."""
        return dataclasses.replace(self, execution=Execution.EAGER)

    def spec(self, env: Env) -> Spec:
        """What this cell measures on `env`'s devices (each core with `batch_size` images)."""
        return Spec(
            network=self.config.spec(),
            mode=self.mode.value,
            batch_per_core=self.batch_size,
            devices=env.device_count,
            device=env.device_type,
            dtype=self.dtype.value,
            execution=self.execution.value,
            channels_last=self.channels_last,
            input=SYNTHETIC_INPUT,
            optimizer=OPTIMIZER if self.mode is Mode.TRAIN else None,
            parallel=self.parallel,
        )


@dataclass
class Measurement:
    status: Status
    samples: list[float] = field(default_factory=list)  # images/s per core, one per timed block
    block_steps: int = 0
    first_step_s: float | None = None  # compilation / capture / autotuning, timed apart
    warmup_s: float | None = None
    warmup_steps: int = 0
    warmup_stable: bool = False
    peak_memory_bytes: int | None = None
    message: str = ""
    xla: dict | None = None  # XLA: compiles and fallbacks in the timed window, metrics
    distributed: Distributed | None = None  # several ranks: what each measured (`RankOps.summary`)
    # XLA: each timed block's (start, end) on the wall clock, for the launcher to put the cores'
    # blocks together (`run.launch`)
    spans: list[tuple[float, float]] = field(default_factory=list)
    host: dict | None = None  # CUDA: each timed block's issue and tail seconds (`measure.local.DeviceOps`)


class CellTimeout(Exception):
    pass


def build_step(
    cell: Cell, device: torch.device, ops: Ops | None = None, model: torch.nn.Module | None = None
) -> Callable[[], None]:
    """One training or inference step on fixed synthetic data, ready to call repeatedly.
    `ops` are the device's (`measure.local.device_ops`); `model` (built from `cell.config` when
    None) lets another harness time the same object."""
    ops = ops or device_ops(device)
    config, batch = cell.config, cell.batch_size
    memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
    model = (model or build(config, device)).to(memory_format=memory_format)
    images = torch.randn(batch, 3, config.image_size, config.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    if cell.execution is Execution.COMPILE_FOLDED_BN:
        compile_frozen(model)
    elif cell.execution.compiles:
        compile_regions(model)
    # A captured step runs off the default stream. DDP's all-reduce can be captured with it only
    # if DDP is built on that stream too (PyTorch's CUDA graphs notes, "Usage with DDP").
    capture_stream = torch.cuda.Stream(device) if cell.execution.captures else None
    if capture_stream is not None:
        capture_stream.wait_stream(torch.cuda.current_stream(device))
    # (torch.cuda.stream(None) would look up the current CUDA device, so no CUDA context is
    # created on a CPU or XLA cell of a GPU host)
    with torch.cuda.stream(capture_stream) if capture_stream is not None else contextlib.nullcontext():
        forward = ops.wrap_model(model, training=cell.mode is Mode.TRAIN)  # DDP on several ranks

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
        if config.num_classes is None:  # `networks.resolve` found no (batch, classes) output
            raise ValueError(f"{config.name} gives no (batch, classes) logits at {config.image_size}px to train on")
        labels = torch.randint(0, config.num_classes, (batch,), device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
        scaler = torch.amp.GradScaler(device.type, enabled=cell.dtype is Dtype.FP16)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(forward(images), labels)
            scaler.scale(loss).backward()
            ops.optimizer_step(optimizer, scaler)

    if cell.execution.captures:
        ddp = cell.devices > 1 and cell.mode is Mode.TRAIN
        return capture_cuda_graph(step, capture_stream, DDP_CAPTURE_WARMUP_STEPS if ddp else CAPTURE_WARMUP_STEPS)
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
    # a model of another source is compiled whole: its repeated parts are not known here
    units = units if units is not None else getattr(model, "compile_units", lambda: [model])()
    for unit in units:
        unit.compile(dynamic=False)


def compile_frozen(model: torch.nn.Module) -> None:
    """torch.compile the whole model with inductor's freezing, for inference: parameters
    become constants, BatchNorm folds into the conv before it, the relative-bias gather is
    done once at compile time."""
    torch._dynamo.reset()
    model.compile(dynamic=False, options={"freezing": True})


# Eager steps before a capture: they allocate what the step keeps (optimizer state, autograd's
# buffers) outside the graph. DDP needs 11: it rebuilds its buckets after the first step and
# counts iterations before it settles (PyTorch's CUDA graphs notes, "Usage with DDP").
CAPTURE_WARMUP_STEPS = 3
DDP_CAPTURE_WARMUP_STEPS = 11


def capture_cuda_graph(step: Callable[[], None], stream: torch.cuda.Stream, warmup_steps: int) -> Callable[[], None]:
    """Capture the whole step (forward, backward, all-reduce, optimizer) once, on `stream` (the
    one DDP was built on); replay it as one launch."""
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
        for _ in range(warmup_steps):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        step()
    return graph.replay


# How running out of memory reads where it is not a torch.OutOfMemoryError: XLA names
# RESOURCE_EXHAUSTED, the CPU allocator says it "can't allocate memory".
OUT_OF_MEMORY_MESSAGES = ("RESOURCE_EXHAUSTED", "can't allocate memory", "DefaultCPUAllocator: not enough memory")


def out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return any(text in str(error) for text in OUT_OF_MEMORY_MESSAGES)


def check_cell(cell: Cell, device: torch.device) -> None:
    if cell.batch_size < 1:
        raise CoatbenchError(f"batch size must be at least 1, got {cell.batch_size}")
    if cell.execution.captures:
        if device.type != "cuda":
            raise CoatbenchError(f"--execution {cell.execution.value} needs a CUDA device: use eager, or --device cuda")
        if cell.devices > 1 and cell.execution.compiles and cell.mode is Mode.TRAIN:
            # an eager step under DDP is captured (build_step); a compiled one has not been
            # measured captured under DDP, so coatbench does not offer it (inference runs
            # replicas, each captured as on one device)
            raise CoatbenchError(
                "--execution compile+cuda-graphs trains on one device only: use compile or cuda-graphs, or --devices 1"
            )
        if cell.mode is Mode.TRAIN and cell.dtype is Dtype.FP16:
            captured = cell.execution.value
            raise CoatbenchError(f"--execution {captured} cannot capture fp16 loss scaling: use --dtype bf16")
    if device.type == "xla" and cell.mode is Mode.TRAIN and cell.dtype is Dtype.FP16:
        raise CoatbenchError("fp16 training needs loss scaling, which coatbench does not do on XLA: use --dtype bf16")
    if cell.execution.compiles and device.type == "xla":
        raise CoatbenchError(
            f"{cell.execution.value} is for CPUs and GPUs: XLA compiles every step itself, use --execution eager"
        )
    if cell.execution.inference_only and cell.mode is not Mode.INFER:
        raise CoatbenchError(f"{cell.execution.value} measures inference only: use --mode infer")


class Blocks:
    """Runs blocks of steps, each timed by the device's ops and closed by its synchronisation."""

    def __init__(
        self, step: Callable[[], None], ops: Ops, deadline: float | None, before_step: Callable[[int], None] | None
    ):
        self.step, self.ops, self.deadline, self.before_step = step, ops, deadline, before_step
        self.steps = 0  # run so far, the first step included

    def run(self, steps: int) -> float:
        """Seconds the device took for `steps` steps."""
        if self.deadline is not None and self.ops.agree(time.perf_counter() > self.deadline):
            raise CellTimeout  # on every rank at once
        self.ops.start()
        for _ in range(steps):
            if self.before_step is not None:
                self.before_step(self.steps)
            self.step()
            self.ops.after_step()
            self.steps += 1
        return self.ops.stop()


def warm_up(blocks: Blocks, schedule: Schedule, result: Measurement) -> None:
    """Blocks until the schedule calls the device warm. The step that sizes the blocks is the
    first reference: on a CPU, where a CoAtNet-3 step takes seconds, that saves a whole block."""
    started = time.perf_counter()
    step_s = blocks.run(1)
    result.block_steps = schedule.block_steps(step_s)
    previous, count = step_s * result.block_steps, 0
    while not schedule.warmup_over(count, time.perf_counter() - started):
        compiles = blocks.ops.compile_count()
        block = blocks.run(result.block_steps)
        count += 1
        if schedule.warm(block, previous, compiled=blocks.ops.compile_count() != compiles):
            result.warmup_stable = True
            break
        previous = block
    result.warmup_s = time.perf_counter() - started
    result.warmup_steps = blocks.steps


def time_blocks(blocks: Blocks, schedule: Schedule, batch_size: int, result: Measurement) -> None:
    """Timed blocks, one sample of images/s each, until the schedule has enough."""
    timed = 0.0
    while not schedule.timing_done(result.samples, timed):
        block = blocks.run(result.block_steps)
        timed += block
        result.samples.append(batch_size * result.block_steps / block)


def _model_failure(cell: Cell, error: Exception) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:160]
    size = cell.config.image_size
    return f"{cell.config.name} failed at {cell.batch_size}x3x{size}x{size}: {type(error).__name__}: {first}"


def measure(
    cell: Cell,
    device: torch.device,
    budget: Budget = Budget(),
    *,
    ops: Ops | None = None,
    before_step: Callable[[int], None] | None = None,
    model: torch.nn.Module | None = None,
) -> Measurement:
    """Time `cell` on `device` (see the module docstring). Out of memory and running past the
    budget's timeout are results. `ops` default to the device's; `before_step(i)` runs before
    the i-th step (a hook for progress or fault injection)."""
    check_cell(cell, device)
    started = time.perf_counter()
    ops = ops or device_ops(device)
    schedule = ops.schedule(budget)
    deadline = None if schedule.timeout is None else started + schedule.timeout
    result, blocks = Measurement(Status.OK), None
    reset_peak_memory(device)
    try:
        blocks = Blocks(build_step(cell, device, ops, model), ops, deadline, before_step)
        blocks.run(1)
        synchronize(device)
        result.first_step_s = time.perf_counter() - started
        warm_up(blocks, schedule, result)
        ops.barrier()
        ops.open_window()
        time_blocks(blocks, schedule, cell.batch_size, result)
        result.peak_memory_bytes = peak_memory_bytes(device)
        result.host = ops.host_timing()
        window = ops.close_window()
        if window is not None:
            result.xla = window.info
            result.message = window.problem
            result.status = Status.FAILED if window.fail else result.status
    except CellTimeout:
        result.status = Status.TIMEOUT
        result.message = f"exceeded {budget.timeout:.0f} s (after {blocks.steps if blocks else 0} steps)"
    except Exception as error:
        if isinstance(error, (MemoryError, RuntimeError)) and out_of_memory(error):  # torch's OOM is a RuntimeError
            result.status, result.message = Status.OOM, (str(error).splitlines() or ["out of memory"])[0][:200]
        elif isinstance(cell.config, ExternalModel) and not isinstance(error, CoatbenchError):
            # an external model's own failure (e.g. not at this size) is a row; in coatbench's own
            # model, a bug, not a result
            result.status, result.message = Status.FAILED, _model_failure(cell, error)
        else:
            raise
    finally:
        del blocks
        free_memory(device)
    return result

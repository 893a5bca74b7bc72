"""The results row, the identity of a cell, and the file format (JSON Lines).

One row is one run: one process measuring one cell. `Row` and its parts are the row's only
definition; every module reads rows through them, and `workload_key` / `run_key` are the
only answers to "is this the same cell?" (resume, report and compare all ask it).

Files: JSON Lines, one row per line (`JsonLines`): appended under a lock in one write, so two
writers keep every row and a crash leaves at most a torn last line, which reading skips
with a warning that names it (`coatbench.files`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from coatbench.config import network_problem
from coatbench.errors import CoatbenchError
from coatbench.files import append_locked, check_readable, write_atomically
from coatbench.settings import MAX_BATCH, MAX_DEVICES, Dtype, Execution, Mode

SCHEMA = 4  # the version of the row below; written in every row and checked on read
# Older rows are read too. Schema 1 rows have no `trial` (each is a single run of its own) and no
# memory method, and a CPU's hardware key is rebuilt from the cpu_count and threads they recorded.
# Schema 2 rows marked the position self-test (`trial.self_test`: the baseline measured "first" and
# "last" in round 0); the "last" one is read as what it was, a replicate of its cell (`Trial`).
# Schema 4 rows add the model size's uncounted ops and an external model's architecture.
READABLE_SCHEMAS = (1, 2, 3, 4)
# And so are the rows of benchmarks/vs_timm.py's own format (results/h100/speed.jsonl): no
# schema, `spec.implementation`; read by `_from_vs_timm`.


class Status(str, Enum):
    """How a run ended. Only `ok` rows have throughput; the others say why in `message`."""

    OK = "ok"  # measured
    OOM = "oom"  # the device ran out of memory (the cell is too big for it: not retried)
    TIMEOUT = "timeout"  # ran past the budget's timeout (retried by --resume)
    FAILED = "failed"  # a worker died, or --strict refused a suspect XLA window


@dataclass(frozen=True)
class Spec:
    """What was measured, and where."""

    network: Mapping[str, Any]  # the model and every knob: CoAtNetConfig.spec(), flat in the file
    mode: str  # train | infer
    batch_per_core: int
    devices: int  # cores the cell ran on, each with batch_per_core images
    device: str  # cpu | cuda | xla
    dtype: str
    execution: str
    channels_last: bool
    input: str  # where the images come from
    optimizer: str | None  # training only
    parallel: str | None = None  # several ranks: "DDP(...)" for training, replicas for inference

    @property
    def global_batch(self) -> int:
        return self.batch_per_core * self.devices

    @property
    def model(self) -> str:
        return self.network["model"]

    @property
    def image_size(self) -> int:
        return self.network["image_size"]

    def to_dict(self) -> dict:
        workload = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "network"}
        if self.parallel is None:
            del workload["parallel"]  # one device: rows as they were before several
        return {**self.network, **workload, "global_batch": self.global_batch}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "spec") -> Spec:
        workload = {f.name for f in dataclasses.fields(cls)} - {"network"}
        network = {k: v for k, v in data.items() if k not in workload and k != "global_batch"}
        for name in ("model", "image_size"):
            if name not in network:
                raise CoatbenchError(f"{where}: the row has no spec.{name}")
        problem = network_problem(network)
        if problem is not None:
            raise CoatbenchError(f"{where}: spec: {problem}; {FIX}")
        return _build(cls, {**{k: data[k] for k in workload if k in data}, "network": network}, where, "spec.")


@dataclass(frozen=True)
class Env:
    """Everything about the machine and software that a throughput figure depends on."""

    coatbench: str
    git_sha: str | None
    python: str
    torch: str
    cuda: str | None
    cudnn: int | None
    driver: str | None
    device_type: str
    device_name: str
    device_count: int
    cpu_model: str
    cpu_count: int
    threads: int

    @property
    def hardware_key(self) -> str:
        """What must match for two runs to be comparable: the device and its count; on a CPU also
        how many CPUs the machine has and how many threads torch used."""
        key = f"{self.device_type}:{self.device_name} x{self.device_count}"
        return key + (f" ({self.cpu_count} CPUs, {self.threads} threads)" if self.device_type == "cpu" else "")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "hardware_key": self.hardware_key}


@dataclass(frozen=True)
class ModelSize:
    params: int
    macs: int  # forward multiply-adds for one image (the paper's "FLOPs")
    flops: int
    train_flops: int  # forward + backward FLOPs for one training image
    # ops the counter has no rule for (op -> occurrences): the MACs above leave them out (schema 4;
    # None: not recorded)
    uncounted_ops: dict[str, int] | None = None
    # an external model's description, "field" -> value (`networks.architecture`), for the report's
    # "what differs" (schema 4; {} for CoAtNet, whose knobs say it)
    architecture: dict[str, str] | None = None


@dataclass(frozen=True)
class Timing:
    first_step_s: float | None  # compilation, capture, autotuning: timed apart
    warmup_s: float | None  # this and below: None in rows of vs_timm's format, which kept none of it
    warmup_steps: int | None
    warmup_stable: bool | None  # warm-up ended because blocks agreed, not because its time ran out
    block_steps: int | None  # steps per timed block


@dataclass(frozen=True)
class Throughput:
    """Per-core images/s: the median of the timed blocks, and its spread."""

    images_per_s: float
    images_per_s_total: float  # all cores together
    iqr: list[float]
    ci95: list[float | None]  # distribution-free 95% CI of the median
    ci95_rel: float | None  # its half-width relative to the median
    n: int  # timed blocks
    step_time_s: float

    @classmethod
    def of(cls, samples: Sequence[float], batch_per_core: int, devices: int) -> Throughput:
        """A run's throughput from its per-core samples (one per timed block)."""
        from coatbench.stats import summarize  # scipy: imported only where samples are summarized

        summary = summarize(samples)
        stats = summary.as_dict()
        return cls(
            images_per_s=summary.median,
            images_per_s_total=summary.median * devices,
            iqr=stats["iqr"],
            ci95=stats["ci95"],
            ci95_rel=stats["ci95_rel"],
            n=stats["n"],
            step_time_s=batch_per_core / summary.median,
        )


@dataclass(frozen=True)
class Compute:
    tflops: float
    flops_per_image: int
    peak_tflops: float | None
    peak_source: str | None
    mfu: float | None

    @classmethod
    def of(
        cls, images_per_s: float, devices: int, flops_per_image: int, peak: float | None, dtype: str, device_name: str
    ):
        """Achieved TFLOP/s of all cores and the MFU against the per-device datasheet `peak`."""
        achieved = images_per_s * devices * flops_per_image / 1e12
        return cls(
            tflops=achieved,
            flops_per_image=flops_per_image,
            peak_tflops=None if peak is None else peak * devices,
            peak_source=None
            if peak is None
            else f"datasheet dense {dtype}, {peak:g} TFLOP/s per device, {device_name}",
            mfu=None if peak is None else achieved / (peak * devices),
        )


@dataclass(frozen=True)
class Memory:
    peak_bytes: int | None  # None where torch cannot tell (CPU, XLA)
    method: str | None = None  # how it was measured (schema 2)


@dataclass(frozen=True)
class Distributed:
    """A run on several ranks (torch.distributed), one device each. The row's throughput is per
    core from the global window (`window`); this keeps what each rank saw."""

    world_size: int
    backend: str  # nccl | gloo
    nodes: int
    parallel: str  # DDP and its options (training), or independent replicas (inference)
    window: str  # how a block was timed across the ranks
    rank_images_per_s: list[float]  # each rank's median over its own block times
    straggler: float  # median rank's images/s / slowest rank's (1.0: the ranks keep pace)
    rank_hosts: list[str]
    rank_devices: list[str]
    rank_peak_memory_bytes: list[int | None]


@dataclass(frozen=True)
class Trial:
    """Where a run sat in its sweep (schema 2): a sweep measures each setting's cells in rounds,
    interleaved in an order drawn per round from `seed`, each round in a worker process."""

    sweep: str  # shared by every row of one sweep: pairs a variant with its baseline round by round
    seed: int
    round: int  # 0-based
    rounds: int  # the rounds planned: with --rounds auto the minimum, which later rounds extend
    position: int  # 0-based place in the round's order (the untimed warm-up copy is not counted)
    process: int  # the worker process that ran the round
    # 1: the A/A control, the same cell measured a second time in the round at a place of its own
    # (`run.schedule.schedule`); its change against replicate 0 is a variant's that cannot differ.
    replicate: int = 0


@dataclass(frozen=True)
class HostTiming:
    """How a GPU's steps were issued, per timed block: the host's seconds to issue the block's
    steps, and how long the device went on running after the last was issued (the work still
    queued). A device that runs faster than the host issues waits for every kernel, so it finishes
    right after the last issue: that cell measures the host's kernel launches, not the device."""

    issue_s: list[float]
    tail_s: list[float]
    queued_steps: float  # median over the blocks of tail / (device seconds per step)

    @property
    def host_bound(self) -> bool:
        """Whether the device waited on the host (decided here, not saved: rows keep the figures)."""
        return self.queued_steps < HOST_BOUND_QUEUE

    @classmethod
    def of(cls, blocks: Mapping[str, list[float]], batch_per_core: int, samples: Sequence[float]) -> HostTiming:
        """From the blocks' issue and tail seconds and their samples (images/s per core, so a step
        of the device takes batch / sample seconds)."""
        queued = sorted(tail * sample / batch_per_core for tail, sample in zip(blocks["tail_s"], samples))
        middle = len(queued) // 2
        median = queued[middle] if len(queued) % 2 else (queued[middle - 1] + queued[middle]) / 2
        return cls(list(blocks["issue_s"]), list(blocks["tail_s"]), median)


# A block whose device ran on for less than this share of one step after the last issue had
# (almost) nothing queued: the device waited on the host. On the H200 a full launch queue held
# about half a training step and 1.2 inference steps of CoAtNet-2, and starving steps 0.002-0.045
# (results/h200/host_bound.md): the threshold sits between the two.
HOST_BOUND_QUEUE = 0.1


@dataclass(frozen=True)
class Row:
    """One run of one cell, as a line of a results file."""

    timestamp: str
    status: Status
    message: str
    spec: Spec
    model_size: ModelSize | None  # None: rows of vs_timm's format, which counted FLOPs only
    timing: Timing
    samples: list[float]  # images/s per core, one per timed block
    env: Env
    scaled_down: list[str] = field(default_factory=list)  # what the plan scaled down, said in every report
    xla: dict | None = None  # the XLA guard: compiles and fallbacks in the timed window, metrics
    throughput: Throughput | None = None  # the measured parts: only when status is ok
    compute: Compute | None = None
    memory: Memory | None = None
    note: str | None = None  # a person's note on this row (e.g. why it was relabelled)
    trial: Trial | None = None  # None: a run of its own (schema 1, or measured outside a sweep)
    distributed: Distributed | None = None  # a run on several ranks
    host: HostTiming | None = None  # GPU rows of schema 3: how the steps were issued
    schema: int = SCHEMA

    @property
    def replicate(self) -> int:
        return self.trial.replicate if self.trial else 0

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict:
        return {"schema": self.schema, **{k: v for k, v in _plain(self).items() if k != "schema"}}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "row") -> Row:
        if not isinstance(data, Mapping) or "spec" not in data or "status" not in data:
            raise CoatbenchError(f"{where} is not a coatbench result row (no spec/status): is this the right file?")
        schema = data.get("schema")
        if schema is None and isinstance(data["spec"], Mapping) and "implementation" in data["spec"]:
            try:
                return _from_vs_timm(data, where)
            except KeyError as missing:
                raise CoatbenchError(f"{where}: the row has no {missing.args[0]}") from None
        if schema not in READABLE_SCHEMAS:
            newer = isinstance(schema, int) and schema > SCHEMA
            fix = "upgrade coatbench" if newer else "re-measure it with this coatbench"
            readable = ", ".join(map(str, READABLE_SCHEMAS[:-1])) + f" and {READABLE_SCHEMAS[-1]}"
            raise CoatbenchError(f"{where}: results schema {schema!r}, this coatbench reads schemas {readable}: {fix}")
        if schema == 2 and isinstance(data.get("trial"), Mapping) and "self_test" in data["trial"]:
            self_test = data["trial"]["self_test"]
            if self_test not in ("", "first", "last"):  # "": neither of the two
                raise CoatbenchError(f"{where}: trial.self_test {self_test!r} is not first, last or empty: {FIX}")
            trial = {k: v for k, v in data["trial"].items() if k != "self_test"}
            data = {**data, "trial": {**trial, "replicate": int(self_test == "last")}}
        row = _build(cls, data, where, "")
        if row.ok and (not row.samples or row.throughput is None):
            missing = "samples" if not row.samples else "throughput"
            raise CoatbenchError(f"{where}: status ok with no {missing}: a measured row has both; {FIX}")
        written = data["env"].get("hardware_key", row.env.hardware_key)
        if schema > 1 and written != row.env.hardware_key:  # a key edited by hand would be ignored
            raise CoatbenchError(
                f"{where}: env.hardware_key {written!r} is not the one its fields give, {row.env.hardware_key!r}: {FIX}"
            )
        return row


def _from_vs_timm(data: Mapping, where: str) -> Row:
    """A row of benchmarks/vs_timm.py's own format as a Row. It ran one cell with coatbench's
    harness and kept the spec (the implementation, the model at its defaults), the samples, the
    first step, the FLOPs per image, the peak and the environment; what it did not keep (params,
    MACs, warm-up, memory) stays None, and the summary is rebuilt from the samples."""
    old = data["spec"]
    env = _build(Env, data["env"], where, "env.")
    network = {"implementation": old["implementation"], "model": old["model"], "image_size": old["image_size"]}
    spec = Spec(
        network=network,
        mode=old["mode"],
        batch_per_core=old["batch_per_core"],
        devices=env.device_count,
        device=env.device_type,
        dtype=old["dtype"],
        execution=old["execution"],
        channels_last=old["channels_last"],
        # what coatbench's harness fed and stepped then, as now (harness.SYNTHETIC_INPUT, harness.OPTIMIZER)
        input="randn images, randint labels, created once on the device",
        optimizer="SGD(lr=0.01, momentum=0.9, foreach)" if old["mode"] == "train" else None,
    )
    samples = list(data["samples"])
    row = Row(
        timestamp=data["timestamp"],
        status=_convert(Status, data["status"], where, "status"),
        message=data.get("message", ""),
        spec=spec,
        model_size=None,
        timing=Timing(data.get("first_step_s"), None, None, None, None),
        samples=samples,
        env=env,
        note=f"read from benchmarks/vs_timm.py's format (timm {data.get('timm')})",
    )
    if not samples:
        return row
    throughput = Throughput.of(samples, spec.batch_per_core, spec.devices)
    compute = Compute.of(
        throughput.images_per_s,
        spec.devices,
        data["flops_per_image"],
        data.get("peak_tflops"),
        spec.dtype,
        env.device_name,
    )
    return dataclasses.replace(row, throughput=throughput, compute=compute)


def _plain(value):
    """A row part as JSON-ready data (the spec flat, the env with its hardware key). A field
    whose default is None is left out while it is None: older rows never had it."""
    if isinstance(value, (Spec, Env)):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.default is None and getattr(value, f.name) is None)
        }
    if isinstance(value, Enum):
        return value.value
    return value


_SIMPLE = {int: (int,), float: (int, float), str: (str,), bool: (bool,), list: (list,), dict: (dict,)}

# Each field's domain beyond its type, by its name in the row (a list's elements by the list's):
# every number is finite, and at least 0 unless it is listed here as positive or in a range; a
# text listed in CHOICES is one of them. A reader never computes on a row outside these.
POSITIVE = frozenset({
    "samples", "throughput.images_per_s", "throughput.images_per_s_total", "throughput.step_time_s",
    "throughput.iqr", "throughput.ci95", "throughput.n", "env.device_count", "env.cpu_count", "env.threads",
    "trial.rounds", "distributed.world_size", "distributed.nodes", "distributed.rank_images_per_s",
    "distributed.straggler", "model_size.params", "model_size.macs", "model_size.flops",
    "model_size.train_flops", "compute.flops_per_image",
})  # fmt: skip
RANGES = {"spec.batch_per_core": (1, MAX_BATCH), "spec.devices": (1, MAX_DEVICES), "trial.replicate": (0, 1)}
ANY_SIGN = frozenset({"trial.seed"})  # a seed is any integer
CHOICES = {
    "spec.mode": tuple(m.value for m in Mode),
    "spec.device": ("cpu", "cuda", "xla"),
    "spec.dtype": tuple(d.value for d in Dtype),
    "spec.execution": tuple(e.value for e in Execution),
}
DERIVED = {Env: ("hardware_key",)}  # written for people and tools, rebuilt on read (Row.from_dict checks it)
FIX = "fix the row, or measure the cell again"


def _build(cls, data: Mapping, where: str, prefix: str):
    """`cls` from `data`, each field checked against its declared type and its domain; an error
    names the field, the file and the line. A key that is no field is refused: a misspelt field
    would otherwise read as absent."""
    fields = _fields(cls)
    unknown = sorted(set(data) - {name for name, _, _ in fields} - set(DERIVED.get(cls, ())))
    if unknown:
        raise CoatbenchError(
            f"{where}: unknown field(s) {', '.join(prefix + k for k in unknown)}: is this the right file?"
        )
    values = {}
    for field_name, hint, optional in fields:
        name = f"{prefix}{field_name}"
        if field_name not in data:
            if optional:
                continue
            raise CoatbenchError(f"{where}: the row has no {name}: {FIX}")
        values[field_name] = _convert(hint, data[field_name], where, name)
    return cls(**values)


@functools.cache
def _fields(cls) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, has a default) of each field of `cls`: resolving the type hints costs far
    more than checking a row, so it is done once per class (benchmarks/read_speed.py)."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


def _convert(hint, value, where: str, name: str):
    options = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    if value is None:
        if type(None) in options:
            return None
        raise CoatbenchError(f"{where}: {name} is null: {FIX}")
    kind = next(o for o in options if o is not type(None))
    base = typing.get_origin(kind) or kind
    if dataclasses.is_dataclass(base):
        if not isinstance(value, Mapping):
            raise CoatbenchError(f"{where}: {name} is not an object: {FIX}")
        return base.from_dict(value, where) if base is Spec else _build(base, value, where, f"{name}.")
    if isinstance(base, type) and issubclass(base, Enum):
        try:
            return base(value)
        except ValueError:
            raise CoatbenchError(
                f"{where}: {name} {value!r} is not one of {', '.join(m.value for m in base)}: {FIX}"
            ) from None
    if base is Mapping:
        base = dict
    accepted = _SIMPLE.get(base, (object,))
    if not isinstance(value, accepted) or (base in (int, float) and isinstance(value, bool)):
        raise CoatbenchError(f"{where}: {name} is {type(value).__name__}, not {base.__name__}: {FIX}")
    if base is list and typing.get_args(kind):
        return [_convert(typing.get_args(kind)[0], item, where, name) for item in value]
    if base in (int, float):
        _check_number(value, where, name)
    elif base is str and name in CHOICES and value not in CHOICES[name]:
        raise CoatbenchError(f"{where}: {name} {value!r} is not one of {', '.join(CHOICES[name])}: {FIX}")
    return value


def _check_number(value: float, where: str, name: str) -> None:
    low, high = RANGES.get(name, (None, None))
    if not math.isfinite(value):
        problem = "not a finite number"
    elif low is not None and not low <= value <= high:
        problem = f"outside {low}..{high}"
    elif name in POSITIVE and value <= 0:
        problem = "not positive"
    elif name not in ANY_SIGN and low is None and value < 0:
        problem = "negative"
    else:
        return
    raise CoatbenchError(f"{where}: {name} {value!r} is {problem}: {FIX}")


def network_key(network: Mapping[str, Any]) -> str:
    """The identity of a network: the model and every knob (`CoAtNetConfig.spec()` or a row's
    `spec.network`), as one string."""
    return json.dumps(dict(network), sort_keys=True)


def workload_key(spec: Spec) -> str:
    """What was measured: the network, the mode, the batch on each of how many cores, the
    dtype, the execution, the memory format, the input and the optimizer."""
    workload = spec.to_dict()
    del workload["device"], workload["global_batch"]  # where it ran is the hardware's; the global batch follows
    return json.dumps(workload, sort_keys=True)


def run_key(env: Env, spec: Spec) -> tuple[str, str, str]:
    """Rows with equal run keys are runs of one cell: the same workload on the same hardware
    with the same torch. Resume, report and compare group rows by it."""
    return env.hardware_key, env.torch, workload_key(spec)


def scaling_key(env: Env, spec: Spec) -> tuple:
    """What a run on N devices shares with its one-device partner (the scaling efficiency's
    X_1): the run key without the device count and how the ranks share the work. On a CPU the
    threads stay in it: one device there is a share of the cores, the same for both."""
    workload = spec.to_dict()
    for name in ("device", "global_batch", "devices", "parallel"):
        workload.pop(name, None)
    cpu = (env.cpu_count, env.threads) if env.device_type == "cpu" else None  # a CPU device: its threads
    machine = (env.device_type, env.device_name, cpu)
    return machine, env.torch, json.dumps(workload, sort_keys=True)


def condition_key(env: Env, spec: Spec) -> tuple:
    """What the runs of one report share: the run key without the network, the mode, the
    per-core batch and the optimizer (which follows the mode). Within a report, the network,
    mode and batch pick the cell."""
    return env.hardware_key, env.torch, spec.execution, spec.dtype, spec.channels_last, spec.devices, spec.input


class SkippedLineWarning(UserWarning):
    pass


SHOWN_BROKEN_LINES = 3  # a warning names this many broken lines, then counts the rest


class JsonLines:
    """A JSON Lines file: appends are locked and whole, a replacement is atomic (`files`), and
    reading skips a torn line with one warning."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def append(self, records: Iterable[dict]) -> None:
        append_locked(self.path, _encode(records))

    def replace(self, records: Iterable[dict]) -> None:
        write_atomically(self.path, _encode(records))

    def read(self) -> list[tuple[int, Any]]:
        """(line number, value) of every complete line. Broken lines (an interrupted write) are
        skipped with one warning; a file none of whose lines is JSON is refused."""
        check_readable(self.path, "results file", "give the .jsonl file")
        with self.path.open("rb") as f:
            head = f.read(4)
        if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
            raise CoatbenchError(f"{self.path} is UTF-16 (or binary), not UTF-8 JSON Lines: save it as UTF-8")
        values, broken = [], []
        with self.path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    values.append((number, json.loads(raw)))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    broken.append(number)
        if broken and not values:
            raise CoatbenchError(f"{self.path} is not a results file (no line of it is JSON): is this the right file?")
        if broken:
            shown = ", ".join(map(str, broken[:SHOWN_BROKEN_LINES]))
            more = f" and {len(broken) - SHOWN_BROKEN_LINES} more" if len(broken) > SHOWN_BROKEN_LINES else ""
            message = f"{self.path}: skipped {len(broken)} broken line(s) ({shown}{more}): an interrupted write?"
            warnings.warn(message, SkippedLineWarning, stacklevel=2)
        return values


def _encode(records: Iterable[dict]) -> bytes:
    return b"".join(json.dumps(record, separators=(",", ":")).encode() + b"\n" for record in records)


def append_row(path: Path, row: Row) -> None:
    """Add one row at the end of `path` (created with its folder if missing)."""
    JsonLines(path).append([row.to_dict()])


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Replace `path` with `rows`, all or nothing."""
    JsonLines(path).replace(row.to_dict() for row in rows)


def read_rows(path: Path) -> list[Row]:
    """Every complete row of a results file, each checked against `Row`; broken lines are
    skipped with a warning."""
    return [Row.from_dict(data, f"{path}:{number}") for number, data in JsonLines(path).read()]

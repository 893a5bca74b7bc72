"""The plain settings of a measurement: every choice a user makes, its parser, the defaults and
the default paths; importable without torch, and without the CLI.

The CLI (`cli.options`) declares its options with these types and parsers and passes the
parsed values to the library: a bad value is refused by its parser, or by `run.plan.make_plan`
where it depends on the device, once, before anything is measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from coatbench.errors import CoatbenchError


class DeviceKind(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    XLA = "xla"


class Mode(str, Enum):
    TRAIN = "train"
    INFER = "infer"


class Modes(str, Enum):
    """`--mode`: one mode, or both in the order train, infer."""

    TRAIN = "train"
    INFER = "infer"
    BOTH = "both"

    def modes(self) -> tuple[Mode, ...]:
        return (Mode.TRAIN, Mode.INFER) if self is Modes.BOTH else (Mode(self.value),)


class Dtype(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Execution(str, Enum):
    EAGER = "eager"
    COMPILE = "compile"  # torch.compile of each block (regional), default mode
    CUDA_GRAPHS = "cuda-graphs"  # the eager step captured once and replayed
    COMPILE_CUDA_GRAPHS = "compile+cuda-graphs"  # regional compile, the whole step captured and replayed
    # Inference only: inductor freezing makes the weights constants and folds each BatchNorm
    # into the conv before it. A different computation of the same function: never the
    # silent default, since it favours BatchNorm over LayerNorm.
    COMPILE_FOLDED_BN = "compile-folded-bn"

    @property
    def compiles(self) -> bool:
        return self in (Execution.COMPILE, Execution.COMPILE_CUDA_GRAPHS, Execution.COMPILE_FOLDED_BN)

    @property
    def inference_only(self) -> bool:
        return self is Execution.COMPILE_FOLDED_BN

    @property
    def captures(self) -> bool:
        return self in (Execution.CUDA_GRAPHS, Execution.COMPILE_CUDA_GRAPHS)


class Format(str, Enum):
    """How a command prints its result: the same choices for every command."""

    TABLE = "table"  # for a person, in the terminal
    MARKDOWN = "markdown"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"
    HTML = "html"  # a self-contained page (reports)


@dataclass(frozen=True)
class Budget:
    """How long one cell may take, and when its timing is good enough (see harness.measure)."""

    min_time: float = 2.0  # seconds of timed blocks, at least
    max_time: float = 30.0  # stop refining the CI after this many timed seconds
    target_ci: float = 0.02  # stop once the 95% CI of the median is within +-2%
    min_samples: int = 6  # fewer order statistics cannot bound a 95% CI of the median
    block_time: float = 0.2  # seconds per timed block, roughly
    warmup_tolerance: float = 0.05  # warm-up ends when two blocks in a row agree this closely
    max_warmup_time: float = 60.0  # after compilation
    timeout: float = 900.0  # the whole cell, compilation included

    def per_round(self, rounds: int) -> Budget:
        """A cell's share of this budget in each of `rounds` rounds: the timed seconds split
        between them, so that rounds cost what one long run did (each round then estimates
        the cell by its median; the uncertainty comes from the rounds, so a round needs
        fewer blocks than a CI of one run does)."""
        if rounds < 2:
            return self
        return dataclasses.replace(
            self, min_time=self.min_time / rounds, max_time=self.max_time / rounds, min_samples=ROUND_MIN_SAMPLES
        )


@dataclass(frozen=True)
class Rounds:
    """`--rounds`: a fixed number of rounds, or `auto`: at least `count`, then more while a claim's
    cell is unresolved and its projected need fits in the time budget (`--budget`)."""

    count: int  # the rounds (fixed), or the minimum (auto)
    auto: bool = False

    def __post_init__(self) -> None:
        if self.count < 1:
            raise CoatbenchError(f"--rounds must be at least 1, got {self.count}")

    @classmethod
    def parse(cls, text: str) -> Rounds:
        if text.strip() == "auto":
            return cls(MIN_ROUNDS, auto=True)
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise CoatbenchError(f"invalid --rounds {text!r}: give auto or a number of rounds, e.g. 5")
        return cls(count)

    def describe(self) -> str:
        return f"at least {self.count} rounds, more while a claim is unresolved (auto)" if self.auto else (
            f"{self.count} round{'s' if self.count > 1 else ''}")  # fmt: skip


# `--rounds auto` starts with this many: fewer leave a t-interval too wide to resolve anything
# (with 2 rounds its 95% factor is 12.7, with 3 it is 4.3).
MIN_ROUNDS = 3

# `--budget` defaults: seconds of a sweep's wall time within which rounds are added after the
# minimum, per device kind. On a CPU a quick start (install and default table8) should end within
# 10 minutes (results/cpu/README.md); on a GPU the default table8's first three rounds fit well
# inside it on one H200 (results/h200/README.md: its first sitting), which leaves room for more;
# a TPU is untested.
DEFAULT_BUDGET_S = {"cpu": 8 * 60.0, "cuda": 20 * 60.0, "xla": 30 * 60.0}
# `ab` adds rounds (each both revisions' whole suite) within this (benchmarks/guard_check.py)
AB_BUDGET_S = 14 * 60.0


def parse_duration(text: str, option: str) -> float:
    """ "90", "90s", "15m", "1h" -> seconds, positive."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip()
    scale = units.get(text[-1:], None) if text else None
    try:
        value = float(text[:-1] if scale else text) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise CoatbenchError(f"invalid {option} {text!r}: give a time, e.g. 600, 90s, 15m or 1h")
    return value


DEFAULT_ROUNDS = MIN_ROUNDS
# Timed blocks of a cell in one round, at least: the round's value is the median of its blocks,
# and the uncertainty comes from the rounds, so one block will do where a block is long (a
# CoAtNet-3 training step at 384 takes seconds on a CPU); short blocks fill the round's time.
ROUND_MIN_SAMPLES = 1

# On a CPU a CoAtNet-3 step at 384 takes seconds: shorter timing keeps the default table8
# within minutes there (the README's quick start), and the plan says it scaled down. A round's
# share (2 s of timing, after at most 3 s of warm-up) rarely narrows a CPU cell's CI to +-2%:
# its uncertainty comes from the rounds. With 10 s and 5 s the default table8's three rounds took
# 9.1 minutes on the 2-core VM (27ffbe1), past a quick start's 10 with the install.
CPU_BUDGET = Budget(min_time=1.0, max_time=6.0, block_time=0.0, max_warmup_time=3.0)


@dataclass(frozen=True)
class DdpOptions:
    """What DistributedDataParallel does that matters for speed; DDP's own defaults."""

    bucket_cap_mb: float = 25.0
    gradient_as_bucket_view: bool = False

    @classmethod
    def checked(cls, bucket_cap_mb: float, gradient_as_bucket_view: bool) -> DdpOptions:
        if not (math.isfinite(bucket_cap_mb) and bucket_cap_mb > 0):
            raise CoatbenchError(f"--bucket-cap-mb must be a positive number of MiB, got {bucket_cap_mb:g}")
        return cls(bucket_cap_mb, gradient_as_bucket_view)

    def describe(self) -> str:
        return f"DDP(bucket_cap_mb={self.bucket_cap_mb:g}, gradient_as_bucket_view={self.gradient_as_bucket_view})"


@dataclass(frozen=True)
class Torchrun:
    """This process as a rank that torchrun (torch.distributed.run) started: every rank runs the
    whole sweep, rank 0's plan for all (`run.launch.TorchrunRanks`), and rank 0 speaks and saves."""

    rank: int
    world_size: int  # ranks in all, on every host
    local_world_size: int  # ranks on this host

    @classmethod
    def of_this_process(cls) -> Torchrun | None:
        """From torchrun's environment variables; None where torchrun did not start this process.
        Read once by the CLI (who prints) and once by `run.plan.make_plan` (the plan's field)."""
        if "TORCHELASTIC_RUN_ID" not in os.environ or "RANK" not in os.environ:
            return None
        env = os.environ
        return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_WORLD_SIZE", 1)))


@dataclass(frozen=True)
class SweepOptions:
    """What a user asked of a sweep, before the device's defaults fill it in (`run.plan.make_plan`
    checks it and says what it scaled down). None: the default for the device."""

    out: Path  # the results file the rows are appended to
    resume: Path | None = None  # a results file whose sweep goes on
    rounds: Rounds = Rounds(MIN_ROUNDS, auto=True)
    time_budget_s: float | None = None  # --rounds auto: wall time within which rounds are added
    seed: int | None = None
    processes: int | None = None
    device: DeviceKind = DeviceKind.AUTO
    modes: tuple[Mode, ...] = (Mode.TRAIN, Mode.INFER)
    batch_sizes: tuple[int, ...] | None = None
    dtype: Dtype | None = None
    executions: tuple[Execution, ...] = (Execution.EAGER,)
    channels_last: bool = True
    devices: tuple[int, ...] = (1,)
    ddp: DdpOptions = DdpOptions()
    min_time: float | None = None
    max_time: float | None = None
    timeout: float | None = None
    strict: bool = False  # XLA: fail a cell that recompiles while timed
    xla_cache: Path | None = None


# The largest per-core batch and device count: what a results row may hold (results.RANGES), so
# nothing measured is written that a reader would refuse.
MAX_BATCH = 2**30
MAX_DEVICES = 2**16


def parse_counts(text: str, option: str, example: str, most: int) -> tuple[int, ...]:
    """ "32,64,128" -> (32, 64, 128): integers from 1 to `most`, comma-separated (`option` and an
    `example` name them in the error)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or max(counts) > most:
        raise CoatbenchError(f"invalid {option} {text!r}: give integers from 1 to {most:,}, e.g. {example}")
    if len(set(counts)) < len(counts):
        raise CoatbenchError(f"invalid {option} {text!r}: each is measured once a round, give it once")
    return counts


def parse_devices(text: str) -> tuple[int, ...]:
    """ "2" -> (2,); "1,2,4" -> (1, 2, 4)."""
    return parse_counts(text, "--devices", "2 or 1,2,4", MAX_DEVICES)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """ "32,64,128" -> (32, 64, 128)."""
    return parse_counts(text, "--batch-sizes", "32,64,128", MAX_BATCH)


def parse_executions(text: str) -> tuple[Execution, ...]:
    """ "eager,compile" -> (Execution.EAGER, Execution.COMPILE)."""
    try:
        return tuple(Execution(part.strip()) for part in text.split(","))
    except ValueError:
        choices = ",".join(e.value for e in Execution)
        raise CoatbenchError(f"invalid --execution {text!r}: a comma-separated list of {choices}") from None


def parse_kwargs(text: str | None) -> dict | None:
    """'{"drop_rate": 0.1}' -> {"drop_rate": 0.1}: a JSON object, an external model's kwargs."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        value = error
    if not isinstance(value, dict):
        raise CoatbenchError(f"invalid --kwargs {text!r}: give a JSON object, e.g. '{{\"drop_rate\": 0.1}}'")
    return value


def parse_fraction(text: str, option: str) -> float:
    """ "5%" or "0.05" -> 0.05; a fraction strictly between 0 and 1."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        value = -1
    if not 0 < value < 1:
        raise CoatbenchError(f"invalid {option} {text!r}: give a fraction or a percentage, e.g. 5% or 0.05")
    return value


# Default paths, relative to the folder coatbench runs in. The CLI resolves them and passes
# every file to the library explicitly; nothing below the CLI looks at the current folder.
RUNS_DIR = Path("results") / "runs"
BASELINES_DIR = Path("results") / "baselines"
USER_ACCURACY = Path("results") / "my-accuracy.csv"  # written by `coatbench accuracy add`


def new_runs_path(now: datetime | None = None) -> Path:
    """Where a measurement goes when --out is not given: a new file named by the time."""
    now = now or datetime.now(timezone.utc)
    return RUNS_DIR / f"speed-{now:%Y%m%d-%H%M%S}.jsonl"

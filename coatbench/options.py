"""The choices a measurement is made under, importable without torch (the CLI needs them
before it decides to load torch)."""

from enum import Enum


class DeviceKind(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    XLA = "xla"


class Mode(str, Enum):
    TRAIN = "train"
    INFER = "infer"


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


class ReportFormat(str, Enum):
    TABLE = "table"
    MARKDOWN = "markdown"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"

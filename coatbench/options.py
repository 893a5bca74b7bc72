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
    COMPILE = "compile"  # torch.compile, default mode
    CUDA_GRAPHS = "cuda-graphs"  # the eager step captured once and replayed


class ReportFormat(str, Enum):
    TABLE = "table"
    MARKDOWN = "markdown"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"

"""What the CoAtNet paper reports for params and FLOPs (which are multiply-adds).

Facts quoted from Dai et al. 2021 (arXiv 2106.04803 v2), with the table they come from;
coatbench's counts are tested against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files


@dataclass(frozen=True)
class PaperCount:
    model: str
    image_size: int
    params: float
    macs: float | None  # the paper's "FLOPs"; None where it gives params only
    source: str
    downsample: str = "conv"


PAPER_COUNTS: tuple[PaperCount, ...] = (
    PaperCount("coatnet-0", 224, 25e6, 4.2e9, "Table 4"),
    PaperCount("coatnet-1", 224, 42e6, 8.4e9, "Table 4"),
    PaperCount("coatnet-2", 224, 75e6, 15.7e9, "Table 4"),
    PaperCount("coatnet-3", 224, 168e6, 34.7e9, "Table 4"),
    PaperCount("coatnet-0", 384, 25e6, 13.4e9, "Table 4"),
    PaperCount("coatnet-1", 384, 42e6, 27.4e9, "Table 4"),
    PaperCount("coatnet-2", 384, 75e6, 49.8e9, "Table 4"),
    PaperCount("coatnet-3", 384, 168e6, 107.4e9, "Table 4"),
    PaperCount("coatnet-2", 512, 75e6, 96.7e9, "Table 4"),
    PaperCount("coatnet-3", 512, 168e6, 203.1e9, "Table 4"),
    PaperCount("coatnet-4", 384, 275e6, 189.5e9, "Table 4"),
    PaperCount("coatnet-4", 512, 275e6, 360.9e9, "Table 4"),
    PaperCount("coatnet-5", 512, 688e6, 812e9, "Table 5"),
    PaperCount("coatnet-6", 512, 1.47e9, None, "Table 5"),
    PaperCount("coatnet-7", 512, 2.44e9, 2586e9, "Table 5"),
    PaperCount("coatnet-0", 224, 25e6, 4.6e9, "Table 9", downsample="dwconv"),
    PaperCount("coatnet-1", 224, 42e6, 8.8e9, "Table 9", downsample="dwconv"),
    PaperCount("coatnet-2", 224, 75e6, 16.6e9, "Table 9", downsample="dwconv"),
)

# Where coatbench's count of the paper's own architecture table disagrees with the paper's
# reported total, and why. Tests pin these deviations so that any change to them is seen.
KNOWN_DISCREPANCIES: dict[str, str] = {
    "coatnet-6": (
        "Table 12's CoAtNet-6 (S4 = 2 blocks at 2048) has 1.34B params, not the 1.47B of "
        "Table 5; 1.47B matches the same net with S4 at 3072 (CoAtNet-7's S4 width) or with "
        "S3's MBConv blocks at 1536. coatbench builds the architecture as Table 12 writes it."
    ),
}


@dataclass(frozen=True)
class CountVsPaper:
    model: str
    image_size: int
    downsample: str
    params: int
    macs: int
    paper_params: float | None
    paper_macs: float | None
    source: str

    @property
    def params_diff(self) -> float | None:
        return None if self.paper_params is None else self.params / self.paper_params - 1

    @property
    def macs_diff(self) -> float | None:
        return None if self.paper_macs is None else self.macs / self.paper_macs - 1


# The counts `coatbench models` shows, recorded with the package so that it answers at once
# (counting all of them takes about 30 s on a 2-core CPU); tests/test_counting.py counts them
# afresh and fails if the record is stale: then run `python -m coatbench.paper` to record again.
RECORDED = "counts.json"


def compared_variants() -> list[tuple[str, int, str]]:
    """(model, image size, downsampling) of every variant at 224 and every size the paper reports."""
    from coatbench.config import VARIANTS

    reported = [(p.model, p.image_size, p.downsample) for p in PAPER_COUNTS]
    return [(name, 224, "conv") for name in VARIANTS] + [k for k in dict.fromkeys(reported) if k[1:] != (224, "conv")]


def count_variants() -> dict[str, dict[str, int]]:
    """Params and MACs of `compared_variants()`, counted now."""
    from coatbench.config import build_config
    from coatbench.counting import count

    counts = {}
    for model, size, downsample in compared_variants():
        counted = count(build_config(model, image_size=size, downsample=downsample), train=False)
        counts[f"{model}@{size}/{downsample}"] = {"params": counted.params, "macs": counted.macs}
    return counts


def recorded_counts() -> dict[str, dict[str, int]]:
    return json.loads((files("coatbench") / "data" / RECORDED).read_text())


def counts_vs_paper() -> list[CountVsPaper]:
    """Every variant at 224, and every size and downsampling the paper reports, from the record."""
    reported = {(p.model, p.image_size, p.downsample): p for p in PAPER_COUNTS}
    counts = recorded_counts()
    rows = []
    for model, size, downsample in compared_variants():
        counted, paper = counts[f"{model}@{size}/{downsample}"], reported.get((model, size, downsample))
        rows.append(
            CountVsPaper(
                model=model,
                image_size=size,
                downsample=downsample,
                params=counted["params"],
                macs=counted["macs"],
                paper_params=paper.params if paper else None,
                paper_macs=paper.macs if paper else None,
                source=f"CoAtNet paper, {paper.source}" if paper else "",
            )
        )
    return rows


if __name__ == "__main__":  # python -m coatbench.paper: record the counts again
    from pathlib import Path

    from coatbench.files import write_atomically

    target = Path(__file__).parent / "data" / RECORDED
    write_atomically(target, (json.dumps(count_variants(), indent=1) + "\n").encode())
    print(f"recorded {target}")

"""Params and MACs: the family against the paper (`models`) and one model in detail (`count`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from coatbench.settings import Format
from coatbench.views.console import billions, emit, millions, signed_percent

if TYPE_CHECKING:
    from coatbench.counting import ModelCount
    from coatbench.paper import CountVsPaper

MACS_NOTE = "MACs = multiply-adds, what the paper calls FLOPs; FLOPs = 2 x MACs."


def show_models(rows: Sequence[CountVsPaper], fmt: Format) -> None:
    raw = [
        {
            "model": r.model,
            "image_size": r.image_size,
            "downsample": r.downsample,
            "params": r.params,
            "macs": r.macs,
            "flops": 2 * r.macs,
            "paper_params": r.paper_params,
            "paper_macs": r.paper_macs,
            "params_diff": r.params_diff,
            "macs_diff": r.macs_diff,
            "source": r.source,
        }
        for r in rows
    ]
    table = [
        {
            "model": r.model,
            "px": str(r.image_size),
            "down": r.downsample,
            "params": millions(r.params),
            "paper": millions(r.paper_params),
            "diff": signed_percent(r.params_diff),
            "GMACs": billions(r.macs),
            "paper ": billions(r.paper_macs),
            "diff ": signed_percent(r.macs_diff),
            "source": r.source.removeprefix("CoAtNet paper, "),
        }
        for r in rows
    ]
    notes = [MACS_NOTE, "down: where an MBConv block puts its stride (conv: Eqn 5; dwconv: Table 9)."]
    emit(fmt, raw, table, title="CoAtNet family vs the paper's tables", notes=notes)


def show_count(result: ModelCount, fmt: Format) -> None:
    spec = ", ".join(f"{k}={v}" for k, v in result.config.spec().items() if k != "model")
    stages = [
        {"stage": name, "GMACs": billions(macs), "share": f"{macs / result.macs:.1%}"}
        for name, macs in result.by_stage.items()
    ]
    stages.append({"stage": "total", "GMACs": billions(result.macs), "share": "100.0%"})
    notes = [
        f"params {result.params:,} ({millions(result.params)}); {billions(result.macs)} GMACs = "
        f"{billions(result.flops)} GFLOPs forward; {billions(result.train_flops)} GFLOPs per training image (fwd+bwd)",
        f"uncounted ops: {result.uncounted_ops or 'none'}. {MACS_NOTE}",
        f"counter: {result.counter}",
    ]
    emit(fmt, [result.as_dict()], stages, title=f"{result.config.name}, one image: {spec}", notes=notes)

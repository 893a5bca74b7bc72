"""Writing rows to the terminal: rich tables for people, JSON and CSV for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import Enum

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class OutputFormat(str, Enum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def print_error(message: str) -> None:
    """One line on stderr; the message is plain text, never rich markup."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def print_csv(rows: Sequence[dict]) -> None:
    import pandas as pd

    # Nested fields (by_stage, ...) become dotted columns.
    pd.json_normalize(list(rows)).to_csv(sys.stdout, index=False)


def print_table(rows: Sequence[dict[str, str]], *, title: str = "", notes: Sequence[str] = ()) -> None:
    """Rows of already formatted strings (the first row's keys are the columns), then notes."""
    if title:
        console.print(Text(title, style="bold"))
    table = Table()
    for column in rows[0] if rows else ():
        table.add_column(column, justify="left" if column in {"model", "variant", "stage"} else "right")
    for row in rows:
        table.add_row(*row.values())
    if rows:
        console.print(table)
    for note in notes:
        console.print(Text(note), soft_wrap=True)


def emit(fmt: OutputFormat, raw: Sequence[dict], table: Sequence[dict[str, str]], **table_kwargs) -> None:
    """Print `raw` as JSON or CSV, or the formatted `table` rows for a person."""
    if fmt is OutputFormat.JSON:
        print_json(list(raw))
    elif fmt is OutputFormat.CSV:
        print_csv(raw)
    else:
        print_table(table, **table_kwargs)


def signed_percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:+.1f}%"


def millions(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}M"


def billions(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:,.2f}"


def variant_label(spec: dict) -> str:
    """The model and every knob that differs from its paper default, e.g. "coatnet-2 head 64"."""
    from coatbench.config import build_config

    default = build_config(spec["model"], image_size=spec["image_size"]).spec()
    changed = [
        f"{key.replace('_', ' ')} {spec[key]}"
        for key in ("head_size", "norm", "layout", "blocks", "rel_attn", "downsample", "num_classes")
        if spec.get(key) != default[key]
    ]
    return " ".join([spec["model"], *changed]) + ("" if spec["image_size"] == 224 else f" @{spec['image_size']}")


def throughput_cell(row: dict) -> str:
    """"1234.5 +-1.2%" (images/s per core and the 95% CI of the median), or the status."""
    if row["status"] != "ok":
        return row["status"].upper()
    t = row["throughput"]
    ci = "" if t["ci95_rel"] is None else f" +-{t['ci95_rel'] * 100:.1f}%"
    return f"{t['images_per_s']:,.1f}{ci}"


def speed_rows(rows: Sequence[dict]) -> list[dict[str, str]]:
    table = []
    for row in rows:
        spec, ok = row["spec"], row["status"] == "ok"
        compute = row.get("compute", {})
        peak = row.get("memory", {}).get("peak_bytes")
        table.append(
            {
                "variant": variant_label(spec),
                "mode": spec["mode"],
                "execution": spec["execution"],
                "dtype": spec["dtype"],
                "batch/core": str(spec["batch_per_core"]),
                "images/s/core (95% CI)": throughput_cell(row),
                "step ms": f"{row['throughput']['step_time_s'] * 1e3:.1f}" if ok else "-",
                "TFLOP/s": f"{compute['tflops']:.1f}" if ok else "-",
                "MFU": f"{compute['mfu']:.1%}" if ok and compute.get("mfu") is not None else "-",
                "peak mem": f"{peak / 2**30:.2f} GiB" if peak else "-",
                "compile/1st step": f"{row['timing']['first_step_s']:.1f} s" if row["timing"]["first_step_s"] else "-",
            }
        )
    return table


def cell_label(spec: dict) -> str:
    """A cell's name in comparisons: variant, mode, per-core batch, execution, dtype."""
    return f"{variant_label(spec)} {spec['mode']} bs{spec['batch_per_core']} {spec['execution']} {spec['dtype']}"


def comparison_records(results) -> list[dict[str, str]]:
    order = {"regressed": 0, "inconclusive": 1, "improved": 2, "not comparable": 3, "unchanged": 4}
    return [
        {
            "cell": cell_label(r.spec),
            "status": r.status,
            "baseline img/s": "-" if r.baseline is None else f"{r.baseline:,.1f}",
            "current img/s": "-" if r.current is None else f"{r.current:,.1f}",
            "change": signed_percent(r.change),
            "p": "-" if r.p_value is None else f"{r.p_value:.2g}",
            "runs": f"{r.runs[0]}/{r.runs[1]}",
            "why": r.reason,
        }
        for r in sorted(results, key=lambda r: order[r.status])
    ]


def comparison_summary(results) -> str:
    regressed = [r for r in results if r.status == "regressed"]
    if not regressed:
        counts = {s: sum(r.status == s for r in results) for s in ("unchanged", "improved", "inconclusive", "not comparable")}
        return "No regression (" + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing compared") + ")."
    return f"{len(regressed)} regression(s): " + "; ".join(
        f"{cell_label(r.spec)} {signed_percent(r.change)}" for r in regressed
    )


def comparison_markdown(results) -> str:
    import pandas as pd

    lines = [f"**{comparison_summary(results)}**", ""]
    if any(r.status != "unchanged" for r in results) or not results:
        lines.append(pd.DataFrame.from_records(comparison_records(results)).to_markdown(index=False))
    return "\n".join(lines) + "\n"


def benchmark_action_json(results) -> list[dict]:
    """github-action-benchmark's `customBiggerIsBetter` format: one entry per measured cell."""
    return [
        {
            "name": cell_label(r.spec),
            "unit": "images/s",
            "value": r.current,
            "extra": f"{r.status}; change {signed_percent(r.change)} vs baseline {r.baseline:,.1f}",
        }
        for r in results
        if r.current is not None
    ]

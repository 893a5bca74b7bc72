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

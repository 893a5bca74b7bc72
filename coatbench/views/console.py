"""Console plumbing: where output goes, one-line errors, and records in every `Format`.

Every command prints through `emit`: rich tables for a person, Markdown and LaTeX for a
document, JSON and CSV for a program. pandas is imported only when a format needs it, so
that `coatbench --help` answers at once.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coatbench.config import variant_name
from coatbench.errors import CoatbenchError, OutputFailed, ReaderGone
from coatbench.results import Spec
from coatbench.settings import Format

NARROWEST = 40  # a COLUMNS below this (0, say) fits no table: it is taken as unset


def _width(stream) -> int:
    """COLUMNS when set and at least NARROWEST, else the terminal's width; 100 when piped (a log,
    a file). Always a number: given none, rich would read COLUMNS itself, 0 included."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) >= NARROWEST:
        return int(columns)
    try:
        return max(os.get_terminal_size(stream.fileno()).columns, NARROWEST) if stream.isatty() else 100
    except (AttributeError, OSError, ValueError):  # no stream (a closed stdout), or not a file
        return 100


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

LEFT_ALIGNED = {
    "model",
    "variant",
    "execution",
    "stage",
    "cell",
    "status",
    "why",
    "claim",
    "setting",
    "row",
    "verdict",
    "source",
}


# What stands in for a character that the output's encoding lacks (PYTHONIOENCODING=ascii, a C
# locale): the figures' signs keep their meaning; anything else becomes "?".
ASCII_STAND_INS = {
    "\N{PLUS-MINUS SIGN}": "+/-",
    "\N{MINUS SIGN}": "-",
    "\N{EN DASH}": "-",
    "\N{EM DASH}": "-",
    "\N{MULTIPLICATION SIGN}": "x",
    "\N{HORIZONTAL ELLIPSIS}": "...",
    "\N{RIGHTWARDS ARROW}": "->",
    "\N{GREATER-THAN OR EQUAL TO}": ">=",
    "\N{LESS-THAN OR EQUAL TO}": "<=",
}


def _stand_in(error: UnicodeError) -> tuple[str, int]:
    unsayable = error.object[error.start : error.end]
    return "".join(ASCII_STAND_INS.get(c, "?") for c in unsayable), error.end


codecs.register_error("coatbench", _stand_in)


class _Guarded:
    """A text stream whose write faults become typed errors: a reader gone (`| head`) is
    ReaderGone; any other (a full disk, a dead terminal) is OutputFailed on stdout, and nothing on
    stderr, which has nowhere to say it. Everything else is the stream's own."""

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name

    def _guard(self, action, *args):
        try:
            return action(*args)
        except BrokenPipeError:
            if self._name == "stdout":
                raise ReaderGone() from None
        except OSError as error:
            if self._name == "stdout":
                raise OutputFailed(
                    f"cannot write the output to stdout: {error.strerror}; send it where it can be"
                    " written (> file), or to /dev/null"
                ) from None

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text) or 0

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Make stdout and stderr safe to write for the rest of the process: characters their
    encoding lacks get stand-ins, and write faults become typed errors (see _Guarded). A closed
    stdout is refused: a file opened next would take its descriptor and get the output."""
    if sys.stdout is None:
        raise CoatbenchError("stdout is closed: run the command with an output (> /dev/null to discard it)")
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or isinstance(stream, _Guarded):
            continue
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="coatbench")
        setattr(sys, name, _Guarded(stream, name))


def drop_output() -> None:
    """After ReaderGone: stdout's descriptor goes to /dev/null, so that the interpreter's last flush
    at exit, with output still buffered, does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def print_error(message: str) -> None:
    """One line on stderr; the message is plain text, never rich markup."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def print_note(message: str) -> None:
    """A line for the person on stderr (progress, what was scaled down), never markup."""
    err_console.print(Text(message), soft_wrap=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _sayable(text: str) -> str:
    """`text` as the console's encoding can write it (ASCII_STAND_INS), before rich measures it:
    a stand-in of another width put in later would push the table's columns out of line."""
    encoding = console.encoding or "utf-8"
    return text if encoding.lower().startswith("utf") else text.encode(encoding, "coatbench").decode(encoding)


def print_table(rows: Sequence[dict[str, str]], *, title: str = "", notes: Sequence[str] = ()) -> None:
    """Rows of already formatted strings (the first row's keys are the columns), then notes."""
    rows = [{_sayable(c): _sayable(v) for c, v in row.items()} for row in rows]
    title, notes = _sayable(title), [_sayable(note) for note in notes]
    if title:
        console.print(Text(title, style="bold"))
    # a column with one value in every row is said once, under the table, to leave room for the rest
    columns = list(rows[0]) if rows else []
    same = [c for c in columns if len(rows) > 1 and len({row[c] for row in rows}) == 1 and c not in LEFT_ALIGNED]
    shown = [c for c in columns if c not in same]
    if rows:
        console.print(_fitted_table(rows, shown))
    if same:
        console.print(Text("In every row: " + ", ".join(f"{c} {rows[0][c]}" for c in same), overflow="fold"))
    for note in notes:
        console.print(Text(note, overflow="fold"))


# The layouts a table tries, each only if the one before is too wide: (headers broken at spaces
# with one space between columns, numbers wrapped at their spaces, words kept whole, the width
# that must fit: every cell on one line or every wrappable cell wrapped). The last one always fits.
LAYOUTS = (
    (False, False, True, "maximum"),
    (True, False, True, "maximum"),
    (True, False, True, "minimum"),
    (True, True, True, "minimum"),
    (True, True, False, "minimum"),
)


def _fitted_table(rows: Sequence[dict[str, str]], shown: Sequence[str]) -> Table:
    """The table at the console's width, with no character of a number cut.

    rich narrows a column that does not fit by cutting its cells ("128" reads "12") or drops it
    altogether. So each layout of LAYOUTS is tried only if the one before is too wide: numbers,
    text and headers on one line; then headers broken at their spaces ("peak" over "GiB") with
    one space between columns (the box's); then text wrapped at spaces; then numbers wrapped at
    their spaces too ("1,033.2" over "+-0.9%"); at last, on a console too narrow for any of
    those, every cell folded wherever it must, which splits words but loses no character."""
    for narrow, fold_numbers, whole_words, width in LAYOUTS:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0) if narrow else (0, 1))
        for column in shown:
            text = column in LEFT_ALIGNED
            header = column.replace(" ", "\n") if narrow else column
            no_wrap = not (text or fold_numbers)
            # a wrapped cell breaks at its spaces only: no column narrower than its longest word
            words = [word for value in (header, *(row[column] for row in rows)) for word in value.split()]
            table.add_column(
                header,
                justify="left" if text else "right",
                overflow="fold",
                no_wrap=no_wrap,
                min_width=max(map(len, words), default=1) if whole_words and not no_wrap else None,
            )
        for row in rows:
            table.add_row(*(row[c] for c in shown))
        if getattr(_unconstrained_width(table), width) <= console.width:
            break
    return table


def _unconstrained_width(table: Table):
    """The widths a table takes with room to spare (console.measure clamps them to the console's):
    `maximum` with every cell on one line, `minimum` with every wrappable cell wrapped."""
    return Console(width=10_000, file=io.StringIO()).measure(table)


def markdown(rows: Sequence[dict[str, str]], *, title: str = "", notes: Sequence[str] = ()) -> str:
    import pandas as pd

    parts = [f"### {title}", ""] if title else []
    if rows:
        parts += [pd.DataFrame.from_records(list(rows)).to_markdown(index=False), ""]
    parts += [f"- {note}" for note in notes]
    return "\n".join(parts).rstrip() + "\n"


def emit(
    fmt: Format, raw: Sequence[dict], table: Sequence[dict[str, str]], *, title: str = "", notes: Sequence[str] = ()
) -> None:
    """`raw` records as JSON or CSV (nested fields become dotted columns), or the formatted
    `table` rows for a person (terminal, Markdown or LaTeX)."""
    if fmt is Format.JSON:
        print_json(list(raw))
    elif fmt is Format.CSV:
        import pandas as pd

        pd.json_normalize(list(raw)).to_csv(sys.stdout, index=False)
    elif fmt is Format.MARKDOWN:
        sys.stdout.write(markdown(table, title=title, notes=notes))
    elif fmt is Format.LATEX:
        import pandas as pd

        sys.stdout.write(pd.DataFrame.from_records(list(table)).to_latex(index=False, caption=title or None))
    elif fmt is Format.HTML:
        import html

        import pandas as pd

        page = [f"<h1>{html.escape(title)}</h1>"] if title else []
        page += [pd.DataFrame.from_records(list(table)).to_html(index=False)] if table else []
        page += [f"<p>{html.escape(note)}</p>" for note in notes]
        sys.stdout.write('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n')
        sys.stdout.write("\n".join(page) + "\n</body></html>\n")
    else:
        print_table(table, title=title, notes=notes)


def signed_percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:+.1f}%"


def millions(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f}M"


def billions(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:,.2f}"


def cell_label(spec: Spec) -> str:
    """A cell's name: variant, mode, per-core batch, execution, dtype."""
    return f"{variant_name(spec.network)} {spec.mode} bs{spec.batch_per_core} {spec.execution} {spec.dtype}"

"""Recorded accuracies: the paper's (shipped with the package) and the user's own.

One CSV row per reported number. A blank knob means the model's paper default; a filled
one must match the measured spec. Where the paper contradicts itself both rows are kept,
each with its table, and a suite says which table it reproduces.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib.resources import files
from pathlib import Path

from coatbench.config import ABLATIONS, build_config
from coatbench.errors import CoatbenchError
from coatbench.files import append_locked, check_readable

COLUMNS = ("model", "image_size", "pretrain", "metric", "value", *ABLATIONS, "source")
PAPER_FILE = "coatbench/data/accuracy.csv"  # shipped with the package: every top-1 of the paper
PRETRAIN = ("imagenet-1k", "imagenet-21k", "jft")
METRICS = ("top1", "pretrain_precision1")


@dataclass(frozen=True)
class AccuracyRecord:
    model: str
    image_size: int
    pretrain: str
    metric: str
    value: float
    knobs: tuple[tuple[str, str], ...]  # only the knobs the row sets
    source: str
    user: bool = False  # from the user's own file: preferred over the paper

    def matches(self, spec: dict, pretrain: str, metric: str = "top1") -> bool:
        if (self.model, self.image_size, self.pretrain, self.metric) != (
            spec["model"],
            spec["image_size"],
            pretrain,
            metric,
        ):
            return False
        default = build_config(self.model, image_size=self.image_size).spec()
        wanted = {**{k: _text(default[k]) for k in ABLATIONS}, **dict(self.knobs)}
        return all(_text(spec[k]) == wanted[k] for k in ABLATIONS)


def _text(value) -> str:
    return str(value).lower()


def parse_row(row: dict, where: str, user: bool) -> AccuracyRecord:
    """Validate one CSV row; errors name the file and line and say what to fix."""
    try:
        model, size = row["model"], int(row["image_size"])
        value = float(row["value"])
    except (KeyError, TypeError, ValueError):
        raise CoatbenchError(f"{where}: needs model, an integer image_size and a numeric value") from None
    if row.get("pretrain") not in PRETRAIN:
        raise CoatbenchError(f"{where}: pretrain must be one of {', '.join(PRETRAIN)}, got {row.get('pretrain')!r}")
    if row.get("metric") not in METRICS:
        raise CoatbenchError(f"{where}: metric must be one of {', '.join(METRICS)}, got {row.get('metric')!r}")
    if not 0 <= value <= 100:
        raise CoatbenchError(f"{where}: value {value} is not a percentage")
    knobs = {k: row[k].strip() for k in ABLATIONS if (row.get(k) or "").strip()}
    try:  # the knobs must describe a buildable model
        config = build_config(model, image_size=size, **knobs)
    except CoatbenchError as error:
        raise CoatbenchError(f"{where}: {error}") from None
    spec = config.spec()
    return AccuracyRecord(
        model=config.name,
        image_size=size,
        pretrain=row["pretrain"],
        metric=row["metric"],
        value=value,
        knobs=tuple((k, _text(spec[k])) for k in ABLATIONS if k in knobs),
        source=(row.get("source") or "").strip() or ("user" if user else ""),
        user=user,
    )


def read_records(path: Path | None = None, *, user: bool = False) -> list[AccuracyRecord]:
    """The paper's accuracies (path None) or a user's CSV of the same columns."""
    source = Path(path) if path is not None else files("coatbench") / "data" / "accuracy.csv"
    name = str(path) if path is not None else PAPER_FILE
    if path is not None:
        check_readable(Path(path), "accuracy file", "give a .csv file")
    try:
        text = source.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is no column
    except (OSError, UnicodeDecodeError) as error:
        raise CoatbenchError(f"cannot read accuracy file {name}: {error}") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("model", "image_size", "pretrain", "metric", "value") if c not in (reader.fieldnames or [])]
    if missing:
        raise CoatbenchError(f"{name}:1: header lacks {', '.join(missing)}; expected columns: {','.join(COLUMNS)}")
    return [parse_row(row, f"{name}:{line}", user) for line, row in enumerate(reader, 2)]


@dataclass(frozen=True)
class Accuracies:
    """The records a report joins with its measurements, and the files they came from."""

    records: tuple[AccuracyRecord, ...]
    files: tuple[str, ...]  # every file read: the user's first, the paper's last

    def lookup(self, spec: dict, pretrain: str, prefer_source: str = "") -> AccuracyRecord | None:
        return lookup(self.records, spec, pretrain, prefer_source)


def load(user_files: Sequence[Path] = ()) -> Accuracies:
    """The records of `user_files` (a person's own, preferred) before the paper's."""
    records = [record for path in user_files for record in read_records(path, user=True)] + read_records()
    return Accuracies(tuple(records), (*map(str, user_files), PAPER_FILE))


def lookup(records, spec: dict, pretrain: str, prefer_source: str = "") -> AccuracyRecord | None:
    """The top-1 recorded for `spec`: the user's own first, then the suite's table, then any."""
    found = [r for r in records if r.matches(spec, pretrain)]
    for keep in (lambda r: r.user, lambda r: prefer_source and prefer_source in r.source, lambda r: True):
        chosen = [r for r in found if keep(r)]
        if chosen:
            return chosen[0]
    return None


def add_record(path: Path, record_fields: dict) -> AccuracyRecord:
    """Validate one record and append it to the user's CSV (created with a header). Knob
    values may be given as the knobs' types (an enum, a bool) or as text."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise CoatbenchError(f"cannot write {path}: it is not a regular file: give a .csv file")
    cells = {k: _cell(record_fields.get(k)) for k in COLUMNS}
    record = parse_row(cells, "new record", True)
    if path.exists():
        read_records(path, user=True)  # refuse to append to a malformed file
        header = next(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()), [])
        if header and header != list(COLUMNS):
            raise CoatbenchError(
                f"{path}:1: its columns are not coatbench's ({','.join(COLUMNS)}): a record appended under them "
                "would be misread; give a new file with --file"
            )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if not path.exists():
        writer.writeheader()
    writer.writerow(cells)
    append_locked(path, buffer.getvalue().encode())
    return record


def _cell(value) -> str:
    """A CSV cell: blank for None, an enum's value, true/false for a bool."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    return str(value).lower() if isinstance(value, bool) else str(value)

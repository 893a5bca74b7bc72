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
from importlib.resources import files
from pathlib import Path

from coatbench.config import build_config
from coatbench.errors import CoatbenchError
from coatbench.results import append_atomically

KNOBS = ("head_size", "norm", "layout", "blocks", "rel_attn", "downsample")
COLUMNS = ("model", "image_size", "pretrain", "metric", "value", *KNOBS, "source")
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
        if (self.model, self.image_size, self.pretrain, self.metric) != (spec["model"], spec["image_size"], pretrain, metric):
            return False
        default = build_config(self.model, image_size=self.image_size).spec()
        wanted = {**{k: _text(default[k]) for k in KNOBS}, **dict(self.knobs)}
        return all(_text(spec[k]) == wanted[k] for k in KNOBS)


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
    knobs = {k: row[k].strip() for k in KNOBS if (row.get(k) or "").strip()}
    try:  # the knobs must describe a buildable model
        config = build_config(
            model,
            image_size=size,
            head_size=int(knobs["head_size"]) if "head_size" in knobs else None,
            norm=knobs.get("norm"),
            layout=knobs.get("layout"),
            blocks=knobs.get("blocks"),
            rel_attn={"true": True, "false": False}[knobs["rel_attn"].lower()] if "rel_attn" in knobs else None,
            downsample=knobs.get("downsample"),
        )
    except (CoatbenchError, ValueError, KeyError) as error:
        raise CoatbenchError(f"{where}: {error}") from None
    spec = config.spec()
    return AccuracyRecord(
        model=config.name,
        image_size=size,
        pretrain=row["pretrain"],
        metric=row["metric"],
        value=value,
        knobs=tuple((k, _text(spec[k])) for k in KNOBS if k in knobs),
        source=(row.get("source") or "").strip() or ("user" if user else ""),
        user=user,
    )


def read_records(path: Path | None = None, *, user: bool = False) -> list[AccuracyRecord]:
    """The paper's accuracies (path None) or a user's CSV of the same columns."""
    source = Path(path) if path is not None else files("coatbench") / "data" / "accuracy.csv"
    name = str(path) if path is not None else "coatbench/data/accuracy.csv"
    try:
        text = source.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CoatbenchError(f"cannot read accuracy file {name}: {error}") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in ("model", "image_size", "pretrain", "metric", "value") if c not in (reader.fieldnames or [])]
    if missing:
        raise CoatbenchError(f"{name}:1: header lacks {', '.join(missing)}; expected columns: {','.join(COLUMNS)}")
    return [parse_row(row, f"{name}:{line}", user) for line, row in enumerate(reader, 2)]


USER_FILE = Path("results") / "my-accuracy.csv"  # where `coatbench accuracy add` writes


def load(user_files: Sequence[Path] = ()) -> list[AccuracyRecord]:
    """The user's records (the given files, and USER_FILE when it exists) before the paper's."""
    records = []
    files_to_read = list(user_files) + ([USER_FILE] if USER_FILE.exists() and USER_FILE not in user_files else [])
    for path in files_to_read:
        records += read_records(path, user=True)
    return records + read_records()


def lookup(records, spec: dict, pretrain: str, prefer_source: str = "") -> AccuracyRecord | None:
    """The top-1 recorded for `spec`: the user's own first, then the suite's table, then any."""
    found = [r for r in records if r.matches(spec, pretrain)]
    for keep in (lambda r: r.user, lambda r: prefer_source and prefer_source in r.source, lambda r: True):
        chosen = [r for r in found if keep(r)]
        if chosen:
            return chosen[0]
    return None


def add_record(path: Path, record_fields: dict) -> AccuracyRecord:
    """Validate one record and append it to the user's CSV (created with a header)."""
    path = Path(path)
    record = parse_row({k: "" if v is None else str(v) for k, v in record_fields.items()}, "new record", True)
    if path.exists():
        read_records(path, user=True)  # refuse to append to a malformed file
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if not path.exists():
        writer.writeheader()
    writer.writerow({k: "" if record_fields.get(k) is None else record_fields[k] for k in COLUMNS})
    append_atomically(path, buffer.getvalue().encode())
    return record

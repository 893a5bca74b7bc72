"""Results files: JSON Lines, one measured cell per line, never left half-written.

Appending rewrites the file through a temporary file and an atomic rename, so a crash or
Ctrl-C at any moment leaves either the old file or the new one. Files written by other
means (a copy cut short, an older tool killed mid-write) may still end in a broken line:
reading skips such lines with a warning that names them.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

from coatbench.errors import CoatbenchError

SCHEMA = 1
DEFAULT_DIR = Path("results") / "runs"


class SkippedLineWarning(UserWarning):
    pass


def default_path(now: datetime | None = None) -> Path:
    now = now or datetime.now(timezone.utc)
    return DEFAULT_DIR / f"speed-{now:%Y%m%d-%H%M%S}.jsonl"


def spec_key(spec: dict) -> str:
    """What identifies a cell across runs: its full spec, canonically serialised."""
    return json.dumps(spec, sort_keys=True)


def append_atomically(path: Path, data: bytes) -> None:
    """Append `data` to `path` by writing the whole new file aside and renaming it over the
    old one: a reader, a crash or Ctrl-C sees the old file or the new one, never half."""
    path = Path(path)
    existing = path.read_bytes() if path.exists() else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"  # a broken last line stays a (skipped) line of its own
    write_atomically(path, existing + data)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (created with its folder if missing), all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_row(row: dict) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode() + b"\n"


def append_row(path: Path, row: dict) -> None:
    """Add one row to `path` atomically (created with its folder if missing)."""
    append_atomically(path, encode_row(row))


def read_rows(path: Path) -> list[dict]:
    """Every complete row of a results file; broken lines are skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise CoatbenchError(f"results file {path} does not exist: check the path")
    rows = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                warnings.warn(f"{path}:{number}: skipped a broken line (an interrupted write?)", SkippedLineWarning)
                continue
            if not isinstance(row, dict) or "spec" not in row or "status" not in row:
                raise CoatbenchError(
                    f"{path}:{number} is not a coatbench result row (no spec/status): is this the right file?"
                )
            rows.append(row)
    return rows

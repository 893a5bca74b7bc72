"""Named benchmark suites: settings as in one of the paper's tables, and its speed claims.

A suite is a TOML file (`coatbench/suites/NAME.toml`, linked from `benchmarks/`), or any
file of the same form a user writes. Each setting lists rows (variants of one model); its
baseline is the row marked `baseline = true`, else the first. Claims say which variant should
be faster, by how much.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from coatbench.config import ABLATIONS, CoAtNetConfig, build_config
from coatbench.errors import CoatbenchError
from coatbench.options import Mode

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class SuiteRow:
    label: str
    config: CoAtNetConfig
    knobs: tuple[tuple[str, object], ...]  # as written in the suite


@dataclass(frozen=True)
class Setting:
    name: str
    pretrain: str
    accuracy_source: str
    rows: tuple[SuiteRow, ...]  # in the file's order
    baseline_index: int = 0  # the row marked `baseline = true`, else the first

    @property
    def baseline(self) -> SuiteRow:
        return self.rows[self.baseline_index]

    @property
    def variants(self) -> tuple[SuiteRow, ...]:
        return tuple(row for i, row in enumerate(self.rows) if i != self.baseline_index)


@dataclass(frozen=True)
class Claim:
    text: str
    variant: tuple[tuple[str, object], ...]  # knobs that pick the variant row in a setting
    faster: str  # "variant" or "baseline"
    low: float  # the claimed speed-up of the faster one, as a fraction
    high: float | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: tuple[Setting, ...]
    claims: tuple[Claim, ...]
    modes: tuple[Mode, ...]
    batch_sizes: tuple[int, ...]

    @property
    def configs(self) -> list[CoAtNetConfig]:
        return [config for group in self.groups for config in group]

    @property
    def groups(self) -> list[list[CoAtNetConfig]]:
        """Each setting's configs, baseline first; a config already in an earlier setting is
        measured there only."""
        seen: set[CoAtNetConfig] = set()
        groups = []
        for setting in self.settings:
            ordered = (setting.baseline, *setting.variants)  # a group's first config is its baseline
            group = [row.config for row in ordered if row.config not in seen]
            seen.update(group)
            groups.append(group)
        return [group for group in groups if group]


def builtin_suites() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in (files("coatbench") / "suites").iterdir() if p.name.endswith(".toml")
    )


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name (table8, ...) or a TOML file of the same form."""
    path = Path(name_or_path)
    if name_or_path.endswith(".toml"):
        if not path.is_file():
            raise CoatbenchError(f"suite file {path} does not exist: check the path")
        text, where = path.read_text(), str(path)
    elif name_or_path in builtin_suites():
        text = (files("coatbench") / "suites" / f"{name_or_path}.toml").read_text()
        where = f"suite {name_or_path}"
    else:
        raise CoatbenchError(
            f"unknown suite {name_or_path!r}: choose one of {', '.join(builtin_suites())} or give a .toml file"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CoatbenchError(f"{where}: not valid TOML ({error})") from None
    try:
        return parse_suite(path.stem if path.suffix else name_or_path, data)
    except CoatbenchError as error:
        raise CoatbenchError(f"{where}: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CoatbenchError(
            f"{where}: malformed suite ({type(error).__name__}: {error}); see coatbench/suites/table8.toml"
        ) from None


def _knobs(entry: dict) -> tuple[tuple[str, object], ...]:
    unknown = set(entry) - set(ABLATIONS) - {"label", "baseline"}
    if unknown:
        raise CoatbenchError(f"unknown row field(s) {', '.join(sorted(unknown))}: use {', '.join(ABLATIONS)}")
    return tuple((k, entry[k]) for k in ABLATIONS if k in entry)


def parse_suite(name: str, data: dict) -> Suite:
    settings = []
    for s in data["settings"]:
        rows = []
        for entry in s["rows"]:
            knobs = _knobs(entry)
            config = build_config(s["model"], image_size=s.get("image_size", 224), **dict(knobs))
            rows.append(SuiteRow(str(entry.get("label", config.name)), config, knobs))
        if not rows:
            raise CoatbenchError(f"setting {s['name']!r} has no rows")
        marked = [i for i, entry in enumerate(s["rows"]) if entry.get("baseline") is True]
        if len(marked) > 1:
            raise CoatbenchError(f"setting {s['name']!r} marks {len(marked)} rows as its baseline: mark one")
        pretrain, source = s.get("pretrain", "imagenet-1k"), s.get("accuracy_source", "")
        settings.append(Setting(str(s["name"]), pretrain, source, tuple(rows), marked[0] if marked else 0))
    if not settings:
        raise CoatbenchError("a suite needs at least one [[settings]] table")
    claims = []
    for c in data.get("claims", []):
        if c["faster"] not in ("variant", "baseline"):
            raise CoatbenchError(f"claim {c['text']!r}: faster must be 'variant' or 'baseline'")
        claims.append(Claim(str(c["text"]), _knobs(c["variant"]), c["faster"], float(c["min"]), c.get("max")))
    batch_sizes = tuple(int(b) for b in data.get("batch_sizes", (32, 64, 128, 256)))
    if not batch_sizes or min(batch_sizes) < 1:
        raise CoatbenchError("batch_sizes must be positive integers")
    modes = tuple(Mode(m) for m in data.get("modes", ("train", "infer")))
    return Suite(name, str(data.get("description", "")), tuple(settings), tuple(claims), modes, batch_sizes)

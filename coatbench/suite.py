"""Named benchmark suites: settings as in one of the paper's tables, and its speed claims.

A suite is a TOML file (`coatbench/suites/NAME.toml`, linked from `benchmarks/`), or any
file of the same form a user writes. Each setting lists rows (variants of one model); its
baseline is the row marked `baseline = true`, else the first. Claims say which variant should
be faster, by how much.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Sequence
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
    try:
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
    except (UnicodeDecodeError, OSError) as error:
        raise CoatbenchError(f"{path} is not a readable TOML suite ({type(error).__name__}): check the file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CoatbenchError(f"{where}: not valid TOML ({error})") from None
    try:
        return parse_suite(path.stem if path.suffix else name_or_path, data)
    except CoatbenchError as error:
        raise CoatbenchError(f"{where}: {error}") from None


# The keys of a suite file, with what each must be: anything else is refused, with the closest key.
TOP_KEYS = ("description", "modes", "batch_sizes", "settings", "claims")
SETTING_KEYS = ("name", "model", "image_size", "pretrain", "accuracy_source", "rows")
ROW_KEYS = ("label", "baseline", *ABLATIONS)
CLAIM_KEYS = ("text", "variant", "faster", "min", "max")
PRETRAIN = ("imagenet-1k", "imagenet-21k", "jft")


def _keys(table, allowed: Sequence[str], where: str, required: Sequence[str] = (), what: str = "key") -> dict:
    """`table` as a dict whose keys are all `allowed` and include `required`."""
    if not isinstance(table, dict):
        raise CoatbenchError(f"{where} must be a table ({{ ... }}), not {type(table).__name__}")
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CoatbenchError(f"{where}: unknown {what} {key!r}{hint}: use {', '.join(allowed)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise CoatbenchError(f"{where}: {', '.join(missing)} missing")
    return table


def _typed(value, kind: type, where: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = {str: "text", int: "an integer", bool: "true or false", list: "a list"}.get(kind, kind.__name__)
        raise CoatbenchError(f"{where} must be {name}, not {value!r}")
    return value


def _knobs(entry: dict) -> tuple[tuple[str, object], ...]:
    return tuple((k, entry[k]) for k in ABLATIONS if k in entry)


def parse_suite(name: str, data: dict) -> Suite:
    """A suite from its parsed TOML, every key and value checked; errors name where."""
    _keys(data, TOP_KEYS, "the suite")
    if not data.get("settings"):
        raise CoatbenchError(
            "malformed suite: it needs at least one [[settings]] table; see coatbench/suites/table8.toml"
        )
    settings = [_setting(s, f"settings[{i + 1}]") for i, s in enumerate(_typed(data["settings"], list, "settings"))]
    batch_sizes = tuple(
        _typed(b, int, "batch_sizes") for b in _typed(data.get("batch_sizes", [32, 64, 128, 256]), list, "batch_sizes")
    )
    if not batch_sizes or min(batch_sizes) < 1:
        raise CoatbenchError(f"batch_sizes must be positive integers, e.g. [32, 64], got {list(batch_sizes)}")
    modes = _typed(data.get("modes", ["train", "infer"]), list, "modes")
    if not modes or any(m not in ("train", "infer") for m in modes):
        raise CoatbenchError(f"modes must list train and/or infer, got {modes}")
    claims = [
        _claim(c, f"claims[{i + 1}]", settings) for i, c in enumerate(_typed(data.get("claims", []), list, "claims"))
    ]
    description = _typed(data.get("description", ""), str, "description")
    return Suite(name, description, tuple(settings), tuple(claims), tuple(Mode(m) for m in modes), batch_sizes)


def _setting(s, where: str) -> Setting:
    _keys(s, SETTING_KEYS, where, required=("name", "model", "rows"))
    name = _typed(s["name"], str, f"{where}.name")
    where = f"setting {name!r}"
    image_size = _typed(s.get("image_size", 224), int, f"{where}: image_size")
    pretrain = _typed(s.get("pretrain", "imagenet-1k"), str, f"{where}: pretrain")
    if pretrain not in PRETRAIN:
        raise CoatbenchError(f"{where}: pretrain must be one of {', '.join(PRETRAIN)}, got {pretrain!r}")
    rows, marked = [], []
    for i, entry in enumerate(_typed(s["rows"], list, f"{where}: rows")):
        _keys(entry, ROW_KEYS, f"{where}, row {i + 1}", what="row field")
        knobs = _knobs(entry)
        config = build_config(_typed(s["model"], str, f"{where}: model"), image_size=image_size, **dict(knobs))
        rows.append(
            SuiteRow(_typed(entry.get("label", config.name), str, f"{where}, row {i + 1}: label"), config, knobs)
        )
        if _typed(entry.get("baseline", False), bool, f"{where}, row {i + 1}: baseline"):
            marked.append(i)
    if not rows:
        raise CoatbenchError(f"{where} has no rows")
    if len(marked) > 1:
        raise CoatbenchError(f"{where} marks {len(marked)} rows as its baseline: mark one")
    source = _typed(s.get("accuracy_source", ""), str, f"{where}: accuracy_source")
    return Setting(name, pretrain, source, tuple(rows), marked[0] if marked else 0)


def _claim(c, where: str, settings: Sequence[Setting]) -> Claim:
    _keys(c, CLAIM_KEYS, where, required=("text", "variant", "faster", "min"))
    text = _typed(c["text"], str, f"{where}: text")
    where = f"claim {text!r}"
    variant = _knobs(_keys(c["variant"], ABLATIONS, f"{where}: variant", what="knob"))
    if c["faster"] not in ("variant", "baseline"):
        raise CoatbenchError(f"{where}: faster must be 'variant' or 'baseline', got {c['faster']!r}")
    low, high = c["min"], c.get("max")
    for key, value in (("min", low), ("max", high)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and not (number and value >= 0):
            raise CoatbenchError(f"{where}: {key} must be a fraction (0.1 is 10%), got {value!r}")
    if high is not None and high < low:
        raise CoatbenchError(f"{where}: max {high} is below min {low}")
    if not any(dict(row.knobs) == dict(variant) for setting in settings for row in setting.variants):
        raise CoatbenchError(f"{where}: its variant {dict(variant)} matches no row of any setting: fix the variant")
    return Claim(text, variant, c["faster"], float(low), None if high is None else float(high))

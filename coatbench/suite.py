"""Named benchmark suites: settings as in one of the paper's tables, and its speed claims.

A suite is a TOML file (`coatbench/suites/NAME.toml`, linked from `benchmarks/`), or any
file of the same form a user writes. Each setting lists rows (variants of one model); its
baseline is the row marked `baseline = true`, else the first. A row marked `replicate = true`
is the baseline measured a second time (an A/A row, the setting's A/A control at every cell);
any other row that would measure the same network twice is refused. A row may name a model of
its own (`model = "timm:coatnet_bn_0_rw_224"`, or a factory's `"mypkg.models:build"`) with its
`kwargs = { ... }`. Claims say which variant (picked by its knobs, or by its label with `row`)
should be faster, by how much.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from coatbench.config import ABLATIONS, ExternalModel, Network, build_network, external_model, variant_name
from coatbench.errors import CoatbenchError
from coatbench.files import check_readable
from coatbench.settings import MAX_BATCH, Mode

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class SuiteRow:
    label: str
    config: Network
    knobs: tuple[tuple[str, object], ...]  # as written in the suite
    replicate: bool = False  # the baseline measured a second time: an A/A row


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

    @property
    def replicate(self) -> SuiteRow | None:
        """The A/A row, if the setting has one."""
        return next((row for row in self.rows if row.replicate), None)


@dataclass(frozen=True)
class Claim:
    text: str
    variant: tuple[tuple[str, object], ...]  # knobs that pick the variant row in a setting
    faster: str  # "variant" or "baseline"
    low: float  # the claimed speed-up of the faster one, as a fraction
    high: float | None = None
    row: str | None = None  # or the label that picks it

    def selects(self, setting: Setting) -> SuiteRow | None:
        """The variant row of `setting` this claim is about, if it has one."""
        for row in setting.variants:
            if (row.label == self.row) if self.row is not None else dict(row.knobs) == dict(self.variant):
                return row
        return None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: tuple[Setting, ...]
    claims: tuple[Claim, ...]
    modes: tuple[Mode, ...]
    batch_sizes: tuple[int, ...]

    @property
    def configs(self) -> list[Network]:
        return [config for group in self.groups for config in group]

    @property
    def groups(self) -> list[list[Network]]:
        """Each setting's configs, baseline first; a config already in an earlier setting is
        measured there only. (A replicate row is its baseline's config: `replicated` says which
        groups measure it twice.)"""
        seen: set[Network] = set()
        groups = []
        for setting in self.settings:
            ordered = (setting.baseline, *setting.variants)  # a group's first config is its baseline
            group = [row.config for row in ordered if row.config not in seen and not row.replicate]
            seen.update(group)
            groups.append(group)
        return [group for group in groups if group]

    @property
    def replicated(self) -> set[Network]:
        """The baselines that a replicate row measures a second time at every cell."""
        return {setting.baseline.config for setting in self.settings if setting.replicate is not None}

    def measured_as(self, networks: Sequence[Mapping]) -> Suite:
        """This suite with each external model whose input size or classes it leaves to the model
        (`ExternalModel.matches`) as `networks` (rows' `spec.network`) measured it, so that its
        rows find theirs; a model measured at two sizes is refused (name the size in the suite)."""
        found: dict[ExternalModel, ExternalModel] = {}
        for row in (r for setting in self.settings for r in setting.rows):
            model = row.config
            if not isinstance(model, ExternalModel) or model in found or (model.image_size and model.num_classes):
                continue
            measured = {json.dumps(dict(n), sort_keys=True): n for n in networks if model.matches(n)}
            if len(measured) > 1:
                sizes = ", ".join(sorted({str(n["image_size"]) for n in measured.values()}))
                raise CoatbenchError(
                    f"the results hold {model.model} at more than one input size or class count ({sizes} px): "
                    "give image_size in the suite's setting to pick one"
                )
            if measured:
                n = next(iter(measured.values()))
                found[model] = external_model(n["model"], n["kwargs"], n["image_size"], n["num_classes"])
        if not found:
            return self

        def row_as(row: SuiteRow) -> SuiteRow:
            return dataclasses.replace(row, config=found.get(row.config, row.config))

        settings = tuple(dataclasses.replace(s, rows=tuple(map(row_as, s.rows))) for s in self.settings)
        return dataclasses.replace(self, settings=settings)


def builtin_suites() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in (files("coatbench") / "suites").iterdir() if p.name.endswith(".toml")
    )


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name (table8, ...) or a TOML file of the same form."""
    path = Path(name_or_path)
    try:
        if name_or_path.endswith(".toml"):
            check_readable(path, "suite file", "give a .toml file")
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
ROW_KEYS = ("label", "baseline", "replicate", "model", "kwargs", *ABLATIONS)
CLAIM_KEYS = ("text", "variant", "row", "faster", "min", "max")
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
        names = {str: "text", int: "an integer", bool: "true or false", list: "a list", dict: "a table ({ ... })"}
        name = names.get(kind, kind.__name__)
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
    if not batch_sizes or min(batch_sizes) < 1 or max(batch_sizes) > MAX_BATCH:
        raise CoatbenchError(
            f"batch_sizes must be integers from 1 to {MAX_BATCH:,}, e.g. [32, 64], got {list(batch_sizes)}"
        )
    modes = _typed(data.get("modes", ["train", "infer"]), list, "modes")
    if not modes or any(m not in ("train", "infer") for m in modes):
        raise CoatbenchError(f"modes must list train and/or infer, got {modes}")
    for key, values in (("batch_sizes", batch_sizes), ("modes", modes)):
        _once(values, f"{key} lists {{!r}} twice: each is measured once a round, list it once")
    _once([setting.name for setting in settings], "two settings are named {!r}: give each a name of its own")
    claims = [
        _claim(c, f"claims[{i + 1}]", settings) for i, c in enumerate(_typed(data.get("claims", []), list, "claims"))
    ]
    description = _typed(data.get("description", ""), str, "description")
    return Suite(name, description, tuple(settings), tuple(claims), tuple(Mode(m) for m in modes), batch_sizes)


def _setting(s, where: str) -> Setting:
    _keys(s, SETTING_KEYS, where, required=("name", "model", "rows"))
    name = _typed(s["name"], str, f"{where}.name")
    if not name.strip():
        raise CoatbenchError(f"{where}: its name is empty: name the setting")
    where = f"setting {name!r}"
    # an external model's own input size (timm's config) unless the setting names one
    image_size = _typed(s["image_size"], int, f"{where}: image_size") if "image_size" in s else None
    pretrain = _typed(s.get("pretrain", "imagenet-1k"), str, f"{where}: pretrain")
    if pretrain not in PRETRAIN:
        raise CoatbenchError(f"{where}: pretrain must be one of {', '.join(PRETRAIN)}, got {pretrain!r}")
    rows, marked = [], []
    for i, entry in enumerate(_typed(s["rows"], list, f"{where}: rows")):
        _keys(entry, ROW_KEYS, f"{where}, row {i + 1}", what="row field")
        knobs = _knobs(entry)
        model = _typed(entry.get("model", s["model"]), str, f"{where}, row {i + 1}: model")
        kwargs = _typed(entry.get("kwargs", {}), dict, f"{where}, row {i + 1}: kwargs")
        try:
            config = build_network(model, kwargs, image_size=image_size, **dict(knobs))
        except CoatbenchError as error:  # said of the row that asks for it
            raise CoatbenchError(f"{where}, row {i + 1}: {error}") from None
        replicate = _typed(entry.get("replicate", False), bool, f"{where}, row {i + 1}: replicate")
        named = variant_name(config.spec()) + (" (A/A)" if replicate else "")
        label = _typed(entry.get("label", named), str, f"{where}, row {i + 1}: label")
        if not label.strip():
            raise CoatbenchError(f"{where}, row {i + 1}: its label is empty: give a label, or none for the default")
        rows.append(SuiteRow(label, config, knobs, replicate))
        if _typed(entry.get("baseline", False), bool, f"{where}, row {i + 1}: baseline"):
            marked.append(i)
    if not rows:
        raise CoatbenchError(f"{where} has no rows")
    if len(marked) > 1:
        raise CoatbenchError(f"{where} marks {len(marked)} rows as its baseline: mark one")
    setting = Setting(name, pretrain, "", tuple(rows), marked[0] if marked else 0)
    _check_replicates(setting, where)
    source = _typed(s.get("accuracy_source", ""), str, f"{where}: accuracy_source")
    return dataclasses.replace(setting, accuracy_source=source)


def _check_replicates(setting: Setting, where: str) -> None:
    """One network per row, except the one replicate row, which is the baseline's network."""
    baseline = setting.baseline
    replicates = [row for row in setting.rows if row.replicate]
    if baseline.replicate:
        raise CoatbenchError(
            f"{where}: the baseline row {baseline.label!r} cannot be its own replicate: "
            "mark another row replicate = true"
        )
    if len(replicates) > 1:
        raise CoatbenchError(f"{where} has {len(replicates)} replicate rows: one A/A row per setting")
    for row in replicates:
        if row.config != baseline.config:
            raise CoatbenchError(
                f"{where}: replicate row {row.label!r} is not the baseline's network (its knobs "
                "differ): a replicate measures the baseline again, so give it no knobs"
            )
    seen: dict = {}
    for row in setting.rows:
        if row.replicate:
            continue
        if row.config in seen:
            raise CoatbenchError(
                f"{where}: rows {seen[row.config]!r} and {row.label!r} are the same network: mark the second "
                "replicate = true to measure the baseline twice (an A/A row), or change a knob"
            )
        seen[row.config] = row.label
    _once([row.label for row in setting.rows], f"{where}: the label {{!r}} names two rows: give each row its own")


def _once(values: Sequence, message: str) -> None:
    """Refuse a value that `values` lists twice, with `message` formatted with it."""
    twice = [value for value, n in collections.Counter(values).items() if n > 1]
    if twice:
        raise CoatbenchError(message.format(twice[0]))


def _claim(c, where: str, settings: Sequence[Setting]) -> Claim:
    _keys(c, CLAIM_KEYS, where, required=("text", "faster", "min"))
    text = _typed(c["text"], str, f"{where}: text")
    where = f"claim {text!r}"
    if ("variant" in c) == ("row" in c):
        raise CoatbenchError(
            f"{where}: pick its variant by knobs (variant = {{ ... }}) or by label (row = '...'), one of the two"
        )
    variant = _knobs(_keys(c.get("variant", {}), ABLATIONS, f"{where}: variant", what="knob"))
    row = None if "row" not in c else _typed(c["row"], str, f"{where}: row")
    if c["faster"] not in ("variant", "baseline"):
        raise CoatbenchError(f"{where}: faster must be 'variant' or 'baseline', got {c['faster']!r}")
    low, high = c["min"], c.get("max")
    for key, value in (("min", low), ("max", high)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and not (number and value >= 0):
            raise CoatbenchError(f"{where}: {key} must be a fraction (0.1 is 10%), got {value!r}")
    if high is not None and high < low:
        raise CoatbenchError(f"{where}: max {high} is below min {low}")
    claim = Claim(text, variant, c["faster"], float(low), None if high is None else float(high), row)
    if not any(claim.selects(setting) for setting in settings):
        picked = f"row {row!r}" if row is not None else f"variant {dict(variant)}"
        raise CoatbenchError(f"{where}: its {picked} matches no row of any setting but a baseline: fix the claim")
    return claim

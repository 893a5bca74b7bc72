"""Any value in any field of a results row: every reader (`report`, `compare`, `baseline save`,
`--resume`) either refuses the row (a CoatbenchError: exit 2, one line) or reads it and computes
on values inside each field's domain, never a traceback (issue 24). Property-based: hypothesis
draws the field and the value."""

import copy
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coatbench.accuracy import load
from coatbench.compare import compare_files, save_baselines
from coatbench.errors import CoatbenchError
from coatbench.report import build_reports
from coatbench.results import read_rows
from coatbench.run.plan import plan_suite, skip_done
from coatbench.settings import DeviceKind, SweepOptions
from coatbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
GOOD = json.loads((ROOT / "results" / "cpu" / "table8.jsonl").read_text().splitlines()[-1])


def leaves(value, path=()) -> list[tuple]:
    """The path of every field of a row, nested objects' fields and list items too."""
    if isinstance(value, dict):
        return [path] * bool(path) + [p for k, v in value.items() for p in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [p for i, v in enumerate(value) for p in leaves(v, (*path, i))]
    return [path]


FIELDS = leaves(GOOD)
# `--resume` reads rows into this plan: table8 on this CPU at per-core 1, the good row's own cell
RESUMED = plan_suite(
    load_suite("table8"),
    SweepOptions(device=DeviceKind.CPU, batch_sizes=(1,), out=Path(tempfile.mkdtemp()) / "rows.jsonl"),
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.floats(), st.text(max_size=3), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def with_value(path: tuple, value) -> dict:
    row = copy.deepcopy(GOOD)
    target = row
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return row


def numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)
    elif isinstance(value, float):
        yield value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(FIELDS), value=VALUES)
def test_any_value_in_any_field_is_refused_or_read_within_its_domain(path, value):
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "rows.jsonl"
        file.write_text(json.dumps(with_value(path, value)) + "\n")
        try:
            rows = read_rows(file)
        except CoatbenchError:
            return  # refused: exit 2, one line
        (row,) = rows
        assert all(math.isfinite(x) for x in numbers(row.to_dict())), row.to_dict()
        assert not row.ok or (row.samples and min(row.samples) > 0 and row.throughput.images_per_s > 0)
        for reader in (
            lambda: build_reports(load_suite("table8"), rows, load()),
            lambda: compare_files([file, file], None, Path(folder) / "baselines"),
            lambda: save_baselines(rows, Path(folder) / "baselines", source=file),
            lambda: skip_done(RESUMED, rows, file),
        ):
            try:
                reader()
            except CoatbenchError:
                pass  # said in one line, exit 2 (or 3: nothing comparable)

"""The results row: one definition (results.Row) that every committed file fits, checked on
read, and one answer to "is this the same cell?"."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from coatbench.errors import CoatbenchError
from coatbench.results import Row, Status, read_rows, run_key, workload_key

ROOT = Path(__file__).resolve().parents[1]
# committed results, and three rows of schema 1 from a CPU (results/cpu/table8.jsonl at 734e484)
COMMITTED = ("results/h100/table8.jsonl", "results/cpu/table8.jsonl", "results/h100/levers_ab.jsonl",
             "results/h100x2/scaling.jsonl", "results/h100x2/table8-partial.jsonl",  # rows of several GPUs
             "results/h100x2/blocks-of-1-2-steps/scaling.jsonl", "tests/data/schema1-cpu.jsonl")  # fmt: skip


@pytest.mark.parametrize("name", COMMITTED)
def test_every_committed_row_fits_the_definition_exactly(name):
    """Read and written back, each row of a committed results file is the same JSON: the
    typed row leaves no field of the format out. The exceptions are stated: a schema-1 CPU
    row's hardware key is rebuilt with the CPUs and threads it recorded, and a schema-2 row's
    position self-test (`trial.self_test`, "first" or "last") is read as the replicate it was."""
    lines = (ROOT / name).read_text().splitlines()
    rows = read_rows(ROOT / name)
    assert len(rows) == len(lines)
    for line, row in zip(lines, rows):
        original, written = json.loads(line), row.to_dict()
        if row.env.device_type == "cpu" and row.schema == 1:
            env = original["env"]
            assert (
                written["env"]["hardware_key"]
                == f"{env['hardware_key']} ({env['cpu_count']} CPUs, {env['threads']} threads)"
            )
            written["env"]["hardware_key"] = env["hardware_key"]
        if row.schema == 2 and "trial" in original:
            test = original["trial"].pop("self_test")
            assert written["trial"].pop("replicate") == (1 if test == "last" else 0)
        assert written == original


@pytest.fixture
def good():
    return json.loads((ROOT / COMMITTED[1]).read_text().splitlines()[0])


def write(tmp_path, data) -> Path:
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps(data) + "\n")
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["throughput"].pop("images_per_s"), "runs.jsonl:1: the row has no throughput.images_per_s"),
        (lambda r: r["spec"].pop("batch_per_core"), "runs.jsonl:1: the row has no spec.batch_per_core"),
        (lambda r: r["spec"].pop("model"), "runs.jsonl:1: the row has no spec.model"),
        (lambda r: r.pop("samples"), "runs.jsonl:1: the row has no samples"),
        (lambda r: r.update(status="great"), "status 'great' is not one of ok, oom, timeout, failed"),
        (lambda r: r.update(samples="fast"), "samples is str, not list"),
        (lambda r: r["env"].update(device_count="two"), "env.device_count is str, not int"),
        (
            lambda r: r.update(schema=5),
            "results schema 5, this coatbench reads schemas 1, 2, 3 and 4: upgrade coatbench",
        ),
        (lambda r: r.pop("schema"), "results schema None"),
        # each field's domain, beyond its type (class 1 of issue 24)
        (lambda r: r.update(samples=[]), "status ok with no samples"),
        (lambda r: r.update(samples=[float("nan")]), "samples nan is not a finite number"),
        (lambda r: r.update(samples=[float("inf")]), "samples inf is not a finite number"),
        (lambda r: r.update(samples=[-3.0]), "samples -3.0 is not positive"),
        (lambda r: r.update(samples=["fast"]), "samples is str, not float"),
        (lambda r: r.update(throughput=None), "status ok with no throughput"),
        (lambda r: r["throughput"].update(images_per_s=-1.0), "throughput.images_per_s -1.0 is not positive"),
        (lambda r: r["throughput"].update(images_per_s=float("nan")), "throughput.images_per_s nan is not a finite"),
        (lambda r: r["spec"].update(norm="gn"), "spec: invalid norm 'gn': choose bn|ln"),
        (lambda r: r["spec"].update(head_size="sixty-four"), "spec: invalid head_size 'sixty-four'"),
        (lambda r: r["spec"].update(head_size="64"), "spec: head_size '64' is not a value of that knob"),
        (lambda r: r["spec"].update(model="coatnet-99"), "spec: unknown model 'coatnet-99'"),
        (lambda r: r["spec"].update(colour="red"), "spec: unknown knob(s) colour"),
        (lambda r: r["spec"].update(mode="sideways"), "spec.mode 'sideways' is not one of train, infer"),
        (lambda r: r["spec"].update(execution="warp-drive"), "spec.execution 'warp-drive' is not one of eager"),
        (lambda r: r["spec"].update(batch_per_core=0), "spec.batch_per_core 0 is outside 1..1073741824"),
        (lambda r: r["spec"].update(batch_per_core=10**100), "spec.batch_per_core 1000000000"),
        (lambda r: r["spec"].update(devices=0), "spec.devices 0 is outside 1..65536"),
        (lambda r: r["env"].update(threads=-2), "env.threads -2 is not positive"),
        (lambda r: r["timing"].update(first_step_s=-1.0), "timing.first_step_s -1.0 is negative"),
        (lambda r: r.update(colour="red"), "unknown field(s) colour"),
    ],
)
def test_a_row_that_does_not_fit_is_refused_naming_file_line_and_field(tmp_path, good, change, message):
    change(good)
    with pytest.raises(CoatbenchError, match=re.escape(message)):
        read_rows(write(tmp_path, good))


def test_status_is_an_enum_and_only_ok_rows_are_measured(tmp_path, good):
    (row,) = read_rows(write(tmp_path, good))
    assert row.status is Status.OK and row.ok
    assert not dataclasses.replace(row, status=Status.OOM).ok


def test_the_identity_of_a_cell(tmp_path, good):
    (row,) = read_rows(write(tmp_path, good))
    spec, env = row.spec, row.env
    other = {
        "channels_last": dataclasses.replace(spec, channels_last=not spec.channels_last),
        "devices": dataclasses.replace(spec, devices=2),
        "num_classes": dataclasses.replace(spec, network={**spec.network, "num_classes": 10}),
        "dtype": dataclasses.replace(spec, dtype="bf16"),
    }
    for name, changed in other.items():
        assert workload_key(changed) != workload_key(spec), name
    # the same workload on other hardware or another torch: the same workload, another cell
    faster = dataclasses.replace(env, device_name="other CPU")
    assert workload_key(spec) == workload_key(dataclasses.replace(spec, device="cuda"))
    assert run_key(faster, spec) != run_key(env, spec)
    assert run_key(dataclasses.replace(env, torch="9.9"), spec) != run_key(env, spec)
    assert run_key(env, spec) == run_key(env, Row.from_dict(row.to_dict()).spec)

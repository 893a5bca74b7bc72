import pytest
from conftest import assert_one_line_error

from coatbench.accuracy import add_record, load, lookup, read_records
from coatbench.config import build_config
from coatbench.errors import CoatbenchError


def spec(**knobs):
    return build_config(knobs.pop("model", "coatnet-2"), **knobs).spec()


def test_paper_table8_values():
    records = read_records()
    top1 = lambda s, pre="imagenet-1k": lookup(records, s, pre, "Table 8").value  # noqa: E731
    assert top1(spec()) == 84.1
    assert top1(spec(head_size=64)) == 83.9
    assert top1(spec(norm="ln")) == 84.1
    assert top1(spec(model="coatnet-3", image_size=384), "imagenet-21k") == 87.9
    assert top1(spec(model="coatnet-3", image_size=384, norm="ln"), "imagenet-21k") == 87.8


def test_contradicting_tables_are_both_kept():
    records = read_records()
    s = spec(model="coatnet-3", image_size=384)
    assert lookup(records, s, "imagenet-21k", "Table 4").value == 87.6
    assert lookup(records, s, "imagenet-21k", "Table 8").value == 87.9


def test_knob_rows_do_not_match_other_variants():
    records = read_records()
    assert lookup(records, spec(norm="ln", head_size=64), "imagenet-1k") is None
    assert lookup(records, spec(layout="v1"), "imagenet-1k").value == 83.4
    assert lookup(records, spec(rel_attn=False), "imagenet-1k").value == 83.8
    assert lookup(records, spec(model="coatnet-0", downsample="dwconv"), "imagenet-1k").value == 82.0


def test_user_records_win_and_add_validates(tmp_path):
    path = tmp_path / "mine.csv"
    add_record(
        path,
        dict(
            model="coatnet_2",
            image_size=224,
            pretrain="imagenet-1k",
            metric="top1",
            value=84.6,
            head_size=64,
            source="my run",
        ),
    )
    records = load([path])
    assert records.lookup(spec(head_size=64), "imagenet-1k", "Table 8").value == 84.6
    with pytest.raises(CoatbenchError, match="head size 48"):
        add_record(
            path, dict(model="coatnet-2", image_size=224, pretrain="imagenet-1k", metric="top1", value=80, head_size=48)
        )
    assert len(read_records(path, user=True)) == 1  # nothing half-written


@pytest.mark.parametrize(
    "line, message",
    [
        ("coatnet-2,224,imagenet-1k,top1,abc,,,,,,,x", "numeric value"),
        ("coatnet-9,224,imagenet-1k,top1,80,,,,,,,x", "unknown model"),
        ("coatnet-2,224,imagenet-2k,top1,80,,,,,,,x", "pretrain must be"),
        ("coatnet-2,224,imagenet-1k,top5,80,,,,,,,x", "metric must be"),
        ("coatnet-2,224,imagenet-1k,top1,180,,,,,,,x", "not a percentage"),
        ("coatnet-2,224,imagenet-1k,top1,80,48,,,,,,x", "does not divide"),
    ],
)
def test_malformed_file_names_the_line(tmp_path, line, message):
    path = tmp_path / "bad.csv"
    header = "model,image_size,pretrain,metric,value,head_size,norm,layout,blocks,rel_attn,downsample,source"
    path.write_text(f"{header}\ncoatnet-2,224,imagenet-1k,top1,84,,,,,,,ok\n{line}\n")
    with pytest.raises(CoatbenchError, match=rf"bad.csv:3: .*{message}"):
        read_records(path)


def test_missing_header_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("model,value\ncoatnet-2,84\n")
    with pytest.raises(CoatbenchError, match=r"bad\.csv:1: header lacks image_size"):
        read_records(path)


def test_accuracy_add_cli(cli, tmp_path):
    path = tmp_path / "mine.csv"
    ok = cli("accuracy", "add", "coatnet-2", "--norm", "ln", "--top1", "84.3", "--source", "mine", "--file", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "84.3" in path.read_text()
    bad = cli(
        "accuracy",
        "add",
        "coatnet-2",
        "--top1",
        "84.3",
        "--source",
        "x",
        "--pretrain",
        "imagenet-2k",
        "--file",
        str(path),
    )
    assert_one_line_error(bad, "pretrain must be")

"""What coatbench promises: nothing measured or saved is lost (concurrent writers, a full disk,
Ctrl-C, links and modes), and every bad input gets one line and exit 2 (README: "What
coatbench promises"). Faults come from real places where the machine has them: /dev/full for a
full disk, /proc for a folder nobody may write to."""

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import assert_one_line_error
from test_layers import NO_TORCH

from coatbench.compare import save_baselines
from coatbench.errors import CoatbenchError
from coatbench.results import Row, append_row, read_rows

ROOT = Path(__file__).resolve().parents[1]
TINY = ["coatnet-0", "--image-size", "32", "--layout", "1,1,1,1,1", "--num-classes", "10", "--device", "cpu"]
QUICK = ["--min-time", "0.05", "--max-time", "0.2", "--quiet"]


def a_row() -> Row:
    return read_rows(ROOT / "results" / "cpu" / "table8.jsonl")[0]


def test_two_processes_appending_to_one_file_keep_every_row(tmp_path):
    path = tmp_path / "runs.jsonl"
    code = (
        "import sys; from coatbench.results import read_rows, append_row\n"
        "row = read_rows(sys.argv[2])[0]\n"
        "for _ in range(300): append_row(sys.argv[1], row)\n"
    )
    source = str(ROOT / "results" / "cpu" / "table8.jsonl")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), source]) for _ in range(2)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    assert len(read_rows(path)) == 600  # every line whole: no row lost, none torn


def test_an_unwritable_out_is_refused_before_torch_is_even_imported(tmp_path):
    """Refused before anything is measured: the check runs before torch is imported, so with torch
    blocked the answer is still the one-line error."""
    command = "import sys; sys.argv = ['coatbench', *sys.argv[1:]]\nfrom coatbench.cli.commands import main; main()"
    for out in ("/proc/coatbench.jsonl", str(tmp_path)):
        result = subprocess.run([sys.executable, "-c", NO_TORCH + command, "speed", *TINY, "--out", out],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert_one_line_error(result, "cannot write", out)


def test_a_disk_that_fills_up_after_measuring_keeps_the_row_elsewhere(cli, tmp_path):
    """/dev/full takes the file open and refuses the write (ENOSPC), as a disk that filled up
    while the cell was measured."""
    result = cli("speed", *TINY, "--mode", "infer", "--batch-sizes", "1", "--rounds", "1", *QUICK, "--out", "/dev/full")
    assert_one_line_error(result, "cannot write /dev/full", "No space left on device", "saved in")
    rescue = Path(result.stderr.split("saved in ")[1].split()[0])
    rows = read_rows(rescue)
    assert len(rows) == 1 and rows[0].ok  # the measurement that could not be written
    rescue.unlink()


def test_appends_and_replacements_keep_modes_and_follow_links(tmp_path):
    shared = tmp_path / "shared.jsonl"
    shared.write_text("")
    shared.chmod(0o644)
    append_row(shared, a_row())
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644  # an existing file keeps its mode
    (baseline,) = save_baselines([a_row()], tmp_path / "baselines")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o666 & ~umask  # a new one follows the umask
    baseline.chmod(0o640)
    save_baselines([a_row(), a_row()], tmp_path / "baselines")
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o640 and len(read_rows(baseline)) == 2
    target, link = tmp_path / "target.jsonl", tmp_path / "link.jsonl"
    target.write_text("")
    link.symlink_to(target)
    append_row(link, a_row())
    (linked,) = save_baselines([a_row()], tmp_path / "linked")
    linked.rename(tmp_path / "real-baseline.jsonl")
    linked.symlink_to(tmp_path / "real-baseline.jsonl")
    save_baselines([a_row(), a_row(), a_row()], tmp_path / "linked")
    assert link.is_symlink() and len(read_rows(target)) == 1  # the row went to the link's target
    assert linked.is_symlink() and len(read_rows(tmp_path / "real-baseline.jsonl")) == 3


def test_a_cpu_out_of_memory_cell_is_a_row_and_the_next_cell_is_measured(cli, tmp_path):
    out = tmp_path / "r.jsonl"
    sizes = ["--batch-sizes", "1,99999999", "--mode", "infer", "--rounds", "1"]
    result = cli("speed", *TINY, *sizes, *QUICK, "--out", str(out))
    assert result.returncode == 0, result.stderr
    statuses = {(r.spec.batch_per_core, r.status.value) for r in read_rows(out)}
    assert statuses == {(1, "ok"), (99999999, "oom")}


@pytest.mark.parametrize(
    "args, needles",
    [
        (["count", "coatnet-2", "--layout", "2,2,3,5,99999999"], ["over the limit of 128 per stage"]),
        (["count", "coatnet-2", "--image-size", "99999968"], ["over the limit of 4096"]),
        (["count", "coatnet-2", "--num-classes", "99999999999"], ["between 1 and 1,000,000"]),
        (["speed", "--min-time", "nan"], ["--min-time must be a positive number"]),
        (["run", "ci-cpu", "--max-time", "nan"], ["--max-time must be a positive number"]),
        (["speed", "--timeout", "inf"], ["--timeout must be a positive number"]),
        (["compare", "a", "b", "--alpha", "nan"], ["--alpha"]),
        (["speed", "--rounds", "0"], ["invalid --rounds '0'", "auto or a number"]),
        (["table8", "--rounds", "many"], ["invalid --rounds 'many'"]),
        (["run", "ci-cpu", "--budget", "nan"], ["invalid --budget 'nan'", "15m"]),
        (["run", "ci-cpu", "--budget", "-5m"], ["invalid --budget '-5m'"]),
        (["run", "ci-cpu", "--rounds", "4", "--budget", "5m"], ["--budget bounds the rounds that --rounds auto adds"]),
    ],
)
def test_sizes_that_cannot_be_built_and_numbers_that_are_not_finite(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)


def test_rows_with_missing_fields_are_named_by_file_line_and_field(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    no_spec = {**a_row().to_dict(), "spec": {}}
    bad.write_text(json.dumps(a_row().to_dict()) + "\n" + json.dumps(no_spec) + "\n")
    assert_one_line_error(cli("report", str(bad)), "bad.jsonl:2", "spec.model")
    assert_one_line_error(cli("run", "ci-cpu", "--device", "cpu", "--resume", str(bad), "--dry-run"), "bad.jsonl:2")
    no_throughput = a_row().to_dict()
    del no_throughput["throughput"]["images_per_s"]
    bad.write_text(json.dumps(no_throughput) + "\n")
    assert_one_line_error(cli("report", str(bad)), "bad.jsonl:1", "throughput.images_per_s")


def test_file_system_errors_are_one_line(cli, tmp_path):
    results = str(ROOT / "results" / "cpu" / "table8.jsonl")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line_error(cli("baseline", "save", results, "--dir", str(a_file)), "cannot write", "not a folder")
    assert_one_line_error(cli("baseline", "save", results, "--dir", "/proc/baselines"), "cannot write")
    device = cli("accuracy", "add", "coatnet-2", "--top1", "84", "--source", "x", "--file", "/dev/full")
    assert_one_line_error(device, "cannot write /dev/full", "not a regular file")
    assert_one_line_error(cli("report", "/dev/zero"), "is a device, not a file")  # read as a results file: never ends
    plot = cli("report", results, "--plot", "/proc/x.png")
    assert_one_line_error(plot, "cannot write /proc/x.png")
    assert plot.stdout == ""  # checked before the report was computed and printed
    binary = tmp_path / "suite.toml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    assert_one_line_error(cli("run", str(binary), "--dry-run"), "not a readable TOML suite")


@pytest.mark.parametrize(
    "content, needles",
    [
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nimage_sise=64\nrows=[{}]\n",
         ["unknown key 'image_sise'", "did you mean 'image_size'"]),
        ("colour='red'\n[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{}]\n", ["unknown key 'colour'"]),
        ("modes=[]\n[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{}]\n", ["modes must list train and/or infer"]),
        ("batch_sizes='32'\n[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{}]\n", ["batch_sizes must be a list"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nimage_size='64'\nrows=[{}]\n", ["image_size must be an integer"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{norm='ln'}]\n"
         "[[claims]]\ntext='c'\nvariant={head_size=64}\nfaster='variant'\nmin=0.05\n", ["matches no row"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{norm='ln'}]\n"
         "[[claims]]\ntext='c'\nvariant={norm='ln'}\nfaster='variant'\nmin=nan\n", ["min must be a fraction"]),
        # a row that measures the baseline again is a replicate on purpose, or refused
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{layout='2,2,3,5,2'}]\n",
         ["are the same network", "replicate = true"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{replicate=true,norm='ln'}]\n",
         ["is not the baseline's network"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{replicate=true},{replicate=true,label='y'}]\n",
         ["2 replicate rows"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{label='a'},{label='a',norm='ln'}]\n",
         ["the label 'a' names two rows"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{norm='ln'}]\n"
         "[[claims]]\ntext='c'\nvariant={norm='ln'}\nrow='x'\nfaster='variant'\nmin=0.1\n", ["one of the two"]),
        ("[[settings]]\nname='x'\nmodel='coatnet-0'\nrows=[{},{norm='ln'}]\n"
         "[[claims]]\ntext='c'\nrow='nope'\nfaster='variant'\nmin=0.1\n", ["its row 'nope' matches no row"]),
    ],
)  # fmt: skip
def test_a_suite_file_is_checked_key_by_key(cli, tmp_path, content, needles):
    path = tmp_path / "mine.toml"
    path.write_text(content)
    assert_one_line_error(cli("run", str(path), "--device", "cpu", "--dry-run"), *needles)


def test_results_files_that_are_not_one(cli, tmp_path):
    assert_one_line_error(cli("report", str(tmp_path)), "is a directory: give the .jsonl file")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(os.urandom(2000).replace(b"\n", b"x"))
    assert_one_line_error(cli("report", str(binary)), "not a results file")


def test_broken_lines_are_one_warning_line(cli, tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [json.dumps(a_row().to_dict())] + ['{"torn'] * 5
    path.write_text("\n".join(lines) + "\n")
    result = cli("report", str(path), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: {path}: skipped 5 broken line(s) (2, 3, 4 and 2 more): an interrupted write?"
    ]


def test_options_are_checked_before_torch_is_imported():
    command = "import sys; sys.argv = ['coatbench', *sys.argv[1:]]\nfrom coatbench.cli.commands import main; main()"
    for args, needle in (
        (["speed", "--batch-sizes", "a,b"], "--batch-sizes"),
        (["run", "ci-cpu", "--execution", "jit"], "--execution"),
    ):
        result = subprocess.run([sys.executable, "-c", NO_TORCH + command, *args], capture_output=True, text=True,
                                timeout=120, cwd=tempfile.gettempdir())  # fmt: skip
        assert_one_line_error(result, needle)


def test_the_library_refuses_an_unwritable_out_too(tmp_path):
    from coatbench.config import build_config
    from coatbench.run.plan import make_plan
    from coatbench.settings import DeviceKind, SweepOptions

    with pytest.raises(CoatbenchError, match="cannot write"):
        make_plan([build_config("coatnet-0")], SweepOptions(device=DeviceKind.CPU, out=tmp_path))

import json

import pytest
from conftest import assert_one_line_error

JSON_KEYS = {
    "model",
    "image_size",
    "head_size",
    "norm",
    "layout",
    "blocks",
    "rel_attn",
    "downsample",
    "params",
    "macs",
    "flops",
    "train_flops",
    "by_stage",
    "uncounted_ops",
    "counter",
}


def test_count_json(cli):
    result = cli("count", "coatnet_2", "--head-size", "64", "--format", "json")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert JSON_KEYS <= row.keys()
    assert row["model"] == "coatnet-2" and row["head_size"] == 64
    assert row["flops"] == 2 * row["macs"] and row["uncounted_ops"] == {}
    assert "fvcore" in row["counter"]


def test_count_table_states_the_convention(cli):
    result = cli("count", "coatnet-0", "--layout", "v2", "--no-rel-attn")
    assert result.returncode == 0, result.stderr
    assert "layout=2,2,8,12,2" in result.stdout and "rel_attn=False" in result.stdout
    assert "MACs = multiply-adds" in result.stdout and "stage3" in result.stdout


@pytest.mark.slow
def test_models_json_lists_the_family_against_the_paper(cli):
    result = cli("models", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["model"] for r in rows} == {f"coatnet-{i}" for i in range(8)}
    compared = [r for r in rows if r["paper_macs"]]
    assert len(compared) == 17
    assert all(abs(r["macs_diff"]) < 0.03 for r in compared)


def test_models_csv(cli):
    result = cli("models", "--format", "csv")
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split(",")
    assert header[:5] == ["model", "image_size", "downsample", "params", "macs"]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["count", "coatnet-9"], ["unknown model", "coatnet-0"]),
        (["count", "coatnet-2", "--head-size", "48"], ["head size 48", "divisor"]),
        (["count", "coatnet-2", "--image-size", "100"], ["multiple of 32"]),
        (["count", "coatnet-2", "--layout", "v9"], ["invalid layout", "v0"]),
        (["count", "coatnet-2", "--layout", "2,2,6"], ["five positive"]),
        (["count", "coatnet-2", "--blocks", "T-T-C-C"], ["invalid blocks"]),
        (["count", "coatnet-2", "--norm", "gn"], ["--norm"]),
        (["count", "coatnet-2", "--head-size", "abc"], ["--head-size"]),
        (["count"], ["Missing argument"]),
        (["count", "coatnet-2", "--format", "yaml"], ["--format"]),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, args, needles):
    assert_one_line_error(cli(*args), *needles)


def test_help_lists_commands(cli):
    result = cli("--help")
    assert result.returncode == 0
    assert "count" in result.stdout and "models" in result.stdout


@pytest.mark.parametrize("command", ["count", "speed"])
def test_every_knob_is_an_option_of_every_command_that_builds_a_model(cli, command):
    """The knobs are declared once (config.KNOBS); each command that builds a model offers them all."""
    from coatbench.config import KNOBS

    result = cli(command, "--help", env_columns=200)
    assert result.returncode == 0, result.stderr
    for knob in KNOBS:
        assert knob.option in result.stdout, knob.name


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.argv=['coatbench','--help'];\n"
        "try:\n from coatbench.cli.commands import main; main()\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("command", ["speed", "run", "table8", "report", "compare", "ab"])
def test_help_shows_every_default(cli, command):
    """Each option with a default shows it; those whose default depends on the machine or the
    suite say it in words (Default: ...). A lost default fails here."""
    import typer

    from coatbench.cli.commands import app

    params = [p for p in typer.main.get_command(app).commands[command].params if p.param_type_name == "option"]
    text = " ".join(cli(command, "-h", env_columns=400).stdout.split())
    text = text[text.index("Options:") :]  # the entries, not the command's own description
    starts = sorted(text.index(f"{p.opts[0]} ") for p in params)
    for param in params:
        start = text.index(f"{param.opts[0]} ")
        block = text[start : next((s for s in starts if s > start), len(text))]  # this option's entry only
        if param.default not in (None, False):
            assert "[default:" in block, param.name
        elif param.name in (
            "batch_sizes",
            "dtype",
            "min_time",
            "max_time",
            "timeout",
            "processes",
            "seed",
            "out",
            "budget",
        ):
            assert "Default:" in block, param.name


def test_version_and_short_help(cli):
    from coatbench import __version__

    assert cli("--version").stdout.strip() == f"coatbench {__version__}"
    assert "Usage:" in cli("-h").stdout and "Usage:" in cli("speed", "-h").stdout

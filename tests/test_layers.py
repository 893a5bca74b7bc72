"""The import layers: each module imports only those below it, and nothing the CLI, the
report or the comparison needs imports torch (they run where torch is not installed)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coatbench"
ROOT = PACKAGE.parent

# Top to bottom; a module may import from its own layer (without a cycle) or any layer below.
LAYERS = (
    ("__main__",),
    ("cli",),  # the package: its commands, and the options they share
    ("views",),
    ("run.sweep",),
    ("run.plan",),
    ("run.launch",),
    ("run.child",),
    ("run.schedule", "report", "compare", "ab"),
    ("measure.harness",),
    ("measure.local", "measure.distributed"),
    ("measure.machine",),
    ("measure.xla", "measure.ops"),
    ("counting", "paper", "accuracy", "suite", "networks", "model"),
    ("results", "runs", "config", "files", "stats", "settings", "errors"),
    ("__init__", "run.__init__", "measure.__init__"),  # the packages' own: a docstring or the version
)
# The orchestration line: these run where torch is not installed (the CLI, the report, the
# comparison), so neither they nor anything they import may import torch.
TORCH_FREE = (
    "settings", "config", "suite", "accuracy", "results", "runs", "files", "stats", "report", "compare", "ab",
)  # fmt: skip


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """'views.console' -> its file, for every module of the package."""
    return {".".join(f.relative_to(package).with_suffix("").parts): f for f in sorted(package.rglob("*.py"))}


def layer(module: str) -> int:
    """`module`'s layer: its own entry in LAYERS, else its package's ('views.console': views)."""
    for name in (module, module.split(".")[0]):
        for index, names in enumerate(LAYERS):
            if name in names:
                return index
    raise AssertionError(f"coatbench/{module}.py has no layer: add it to LAYERS (and to CONTRIBUTING's Layout)")


def imported(tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The package's modules that `tree` imports anywhere (inside functions too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "coatbench":
                found.add("__init__")
            elif name.startswith("coatbench."):
                local = name.removeprefix("coatbench.")
                found |= {m for m in (local, f"{local}.__init__") if m in known}
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(package)
    return {m: imported(ast.parse(f.read_text()), known) - {m} for m, f in known.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if layer(b) < layer(a))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(edges[node]):
            if target in path:
                found.append(path[path.index(target) :] + [target])
            elif target not in done:
                visit(target, path + [target])
        done.add(node)

    for start in sorted(edges):
        if start not in done:
            visit(start, [start])
    return found


def test_every_import_goes_down_the_layers():
    assert upward_imports(graph()) == []


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The two checks above fail where they should: on a copy of the package with harness
    importing the sweep above it (an upward import that closes a cycle)."""
    copy = tmp_path / "coatbench"
    for path in modules().values():
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    harness = copy / "measure" / "harness.py"
    harness.write_text(harness.read_text() + "\nfrom coatbench.run.sweep import Plan\n")
    edges = graph(copy)
    assert "measure.harness -> run.sweep" in upward_imports(edges)
    assert any({"measure.harness", "run.sweep"} <= set(cycle) for cycle in cycles(edges))


def contributing_layout(text: str) -> list[list[str]]:
    """The modules of CONTRIBUTING's Layout table, grouped by layer, top to bottom
    ('views/console' -> 'views.console'); a row with an empty layer cell joins the one above."""
    lines = text.split("| layer | module | its one job |\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    groups: list[list[str]] = []
    for line in lines:
        layer_cell, module, job = (cell.strip() for cell in line.strip().strip("|").split("|"))
        assert job, f"CONTRIBUTING's Layout: {module} has no job"
        if layer_cell or not groups:
            groups.append([])
        groups[-1].append(module.strip("`").replace("/", "."))
    return groups


def layout_mismatches(groups: list[list[str]], package: Path = PACKAGE) -> list[str]:
    """How a Layout table's groups differ from LAYERS and from the package's files (packages'
    own empty `__init__` files aside)."""
    files = {m for m in modules(package) if not m.endswith(".__init__")}
    listed = [m for group in groups for m in group]
    problems = [f"{m}: a file not in the table" for m in sorted(files - set(listed))]
    problems += [f"{m}: in the table, not a file" for m in sorted(set(listed) - files)]
    problems += [f"{m}: listed twice" for m in sorted({m for m in listed if listed.count(m) > 1})]
    if not problems:
        wanted = [sorted(m for m in files if layer(m) == index) for index in range(len(LAYERS))]
        if [sorted(group) for group in groups] != wanted:
            problems.append(f"the table's layers {groups} are not LAYERS {wanted}")
    return problems


def test_contributing_names_every_module_in_its_layer():
    assert layout_mismatches(contributing_layout((ROOT / "CONTRIBUTING.md").read_text())) == []


def test_the_layout_check_catches_a_missing_module_and_a_wrong_layer():
    groups = contributing_layout((ROOT / "CONTRIBUTING.md").read_text())
    assert layout_mismatches([[m for m in g if m != "files"] for g in groups]) == ["files: a file not in the table"]
    moved = [list(g) for g in groups]
    moved[0] += moved[1]  # the CLI in the entry layer
    del moved[1]
    assert len(layout_mismatches(moved)) == 1


def only_views_import(package: str) -> list[str]:
    return sorted(
        m
        for m, f in modules().items()
        if not m.startswith("views.")
        and any(
            isinstance(n, (ast.Import, ast.ImportFrom)) and package in _names(n)
            for n in ast.walk(ast.parse(f.read_text()))
        )
    )


def _names(node) -> set[str]:
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    return {name.split(".")[0] for name in names}


def test_only_views_print_with_rich_or_matplotlib_and_only_cli_knows_typer():
    assert only_views_import("rich") == []
    assert only_views_import("matplotlib") == []
    typer_users = [m for m, f in modules().items() if "import typer" in f.read_text() or "from typer" in f.read_text()]
    assert typer_users == ["cli.commands", "cli.options"]


# A Python where torch cannot be imported (as where it is not installed): any import of it
# below the code run fails.
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r} (torch is blocked here)")
sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.mark.parametrize("module", ("cli", *TORCH_FREE))
def test_module_imports_without_torch(module):
    result = run_without_torch(f"import coatbench.{module}")
    assert result.returncode == 0, result.stderr[-2000:]


def coatbench_without_torch(*args: str) -> subprocess.CompletedProcess:
    return run_without_torch(
        "import sys; sys.argv = ['coatbench', *sys.argv[1:]]\nfrom coatbench.cli.commands import main; main()", *args
    )


def test_report_and_compare_run_without_torch_on_the_committed_results(tmp_path):
    report = coatbench_without_torch("report", "results/h100/table8.jsonl", "--format", "markdown")
    assert report.returncode == 0, report.stderr[-2000:]
    assert "BatchNorm is 10-20% faster" in report.stdout and "NVIDIA H100" in report.stdout
    compared = coatbench_without_torch(
        "compare", "results/cpu/table8.jsonl", "results/cpu/table8.jsonl", "--format", "markdown"
    )
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert compared.stdout.startswith("**No regression")
    # and the check is real: a command that needs torch fails without it
    counted = coatbench_without_torch("count", "coatnet-0")
    assert counted.returncode != 0 and "torch" in counted.stderr

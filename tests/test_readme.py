import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_is_two_commands():
    assert len(quick_start_commands()) == 2


def test_ci_runs_the_readme_test_command_word_for_word():
    test_command = quick_start_commands()[1]
    install_and_test = test_command.split(" && ", 2)[2]  # after creating and activating the venv
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


def cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def test_the_readme_claims_table_is_the_committed_reports():
    """The first table a reader sees is copied from results/h200/table8.md, which the report
    command renders from the committed rows (tests/test_report.py re-renders it)."""
    readme = (ROOT / "README.md").read_text()
    table = [cells(line) for line in readme.split("| claim |", 1)[1].split("\n\n", 1)[0].splitlines()[2:]]
    report = {cells(line) for line in (ROOT / "results" / "h200" / "table8.md").read_text().splitlines()}
    assert len(table) == 6 and all(row in report for row in table)


def test_the_readme_stays_a_readme():
    """Commands, method and promises in 200 lines at most: measurement notes and their
    histories belong in results/<machine>/README.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move notes to results/<machine>/README.md"

"""How fast coatbench reads and validates results rows: a file of N rows (copies of a committed
CPU row, each with its own samples) read with `results.read_rows`, timed over several reads.

    python benchmarks/read_speed.py [--rows 100000] [--reads 3]

It decided how rows are validated (issue 24): the hand-written domains of `coatbench.results`
against a declarative schema library, which would be a new dependency.
"""

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from coatbench.measure.machine import cpu_model, git_sha
from coatbench.results import read_rows

ROW = Path(__file__).resolve().parents[1] / "results" / "cpu" / "table8.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=3)
    args = parser.parse_args()
    template = json.loads(ROW.read_text().splitlines()[-1])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.jsonl"
        with path.open("w") as f:
            for i in range(args.rows):
                template["samples"] = [100.0 + i % 7, 101.0, 99.5]
                f.write(json.dumps(template) + "\n")
        seconds = []
        for _ in range(args.reads):
            started = time.perf_counter()
            rows = read_rows(path)
            seconds.append(time.perf_counter() - started)
        assert len(rows) == args.rows
    median = statistics.median(seconds)
    print(f"coatbench {git_sha()} on {cpu_model()}, Python {platform.python_version()}")
    print(f"read_rows of {args.rows} rows: median {median:.2f} s over {args.reads} reads "
          f"({args.rows / median:,.0f} rows/s; each read {', '.join(f'{s:.2f}' for s in seconds)} s)")  # fmt: skip


if __name__ == "__main__":
    main()

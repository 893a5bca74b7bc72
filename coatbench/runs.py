"""The runs of one cell, aggregated in one place (as pyperf's Benchmark aggregates its runs):
which runs count, each run's value, the value per round, the geometric mean and its spread, and
the change of one cell against another. The report, `compare` and the speed table read cells
through `CellRuns` only.

Which runs count: those of one replicate (the A/A control's second measurement is a cell of its
own, `Trial.replicate`), made by the code that measured the cell last (`latest_code`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coatbench.results import Row, Status
from coatbench.stats import Change, paired_change, runs_change, spread_of_runs

UNSTABLE_CI = 0.05  # a cell whose 95% CI is wider than +-5% is marked unstable


def latest_code(runs: Sequence[Row]) -> list[Row]:
    """The runs made by the code (env.git_sha) that measured the cell last. Runs of one cell by
    different code are not pooled: a change in between (results/h100/levers.md: +6% to +12%
    from one commit) would read as noise, or shift a cell against its baseline."""
    if not runs:
        return []
    latest = max(runs, key=lambda r: r.timestamp).env.git_sha
    return [r for r in runs if r.env.git_sha == latest]


@dataclass(frozen=True)
class CellRuns:
    """The counted runs of one cell (rows of one run key), and what is computed from them."""

    rows: tuple[Row, ...]  # the latest code's runs of one replicate, every status
    superseded: int = 0  # runs of this cell by older code, left out

    @classmethod
    def of(cls, rows: Sequence[Row], replicate: int = 0) -> CellRuns:
        mine = [r for r in rows if r.replicate == replicate]
        if not mine:
            # A cell whose A/A copy ran out of memory first is not measured again (`sweep`): the
            # copy's row is how it ended.
            mine = [r for r in rows if r.status is Status.OOM]
        current = latest_code(mine)
        return cls(tuple(current), len(mine) - len(current))

    @property
    def ok(self) -> list[Row]:
        return [r for r in self.rows if r.ok]

    @property
    def status(self) -> Status | None:
        """OK when a run measured; else how the last run ended; None: no run."""
        if not self.rows:
            return None
        return Status.OK if self.ok else self.rows[-1].status

    @property
    def medians(self) -> list[float]:
        """Each measured run's median images/s per core."""
        return [float(np.median(r.samples)) for r in self.ok]

    @property
    def value(self) -> float | None:
        """Images/s per core: the geometric mean of the runs' medians."""
        medians = self.medians
        return float(np.exp(np.mean(np.log(medians)))) if medians else None

    @property
    def spread(self) -> float | None:
        """95% half-width of `value`, relative: over the runs, or one run's blocks."""
        ok = self.ok
        if not ok:
            return None
        return spread_of_runs(self.medians) if len(ok) >= 2 else ok[0].throughput.ci95_rel

    @property
    def samples(self) -> tuple[tuple[float, ...], ...]:
        """Each measured run's per-block samples."""
        return tuple(tuple(r.samples) for r in self.ok)

    @property
    def rounds(self) -> dict[tuple[str, int], float]:
        """(sweep, round) -> that run's median, for the runs measured in a sweep."""
        return {(r.trial.sweep, r.trial.round): float(np.median(r.samples)) for r in self.ok if r.trial}

    def sweep_values(self) -> list[float]:
        """One value per run in `compare`'s sense, in order: a sweep (the geometric mean of its
        rounds' medians) or a row measured outside a sweep (its median)."""
        runs: dict[object, list[float]] = {}
        for index, row in enumerate(self.ok):
            runs.setdefault(index if row.trial is None else row.trial.sweep, []).append(float(np.median(row.samples)))
        return [float(np.exp(np.mean(np.log(medians)))) for medians in runs.values()]

    @property
    def host_bound(self) -> bool:
        """Whether the device waited on the host in any run (`results.HostTiming.host_bound`): on
        the H200 a cell at per-core 64 starved in two of its three runs and ran 9-23% slower in
        them (results/h200/README.md), so one such run already makes its figure partly the
        host's."""
        return any(r.host is not None and r.host.host_bound for r in self.ok)

    @property
    def unstable(self) -> str:
        """Why the cell's figure is too noisy to lean on (as pyperf warns), or ""."""
        runs, medians = self.ok, self.medians
        if not runs:
            return ""
        if len(runs) >= 2:
            spread = spread_of_runs(medians)
            if spread > UNSTABLE_CI:
                return f"its {len(runs)} runs give a 95% CI of +-{spread:.1%}, wider than +-{UNSTABLE_CI:.0%}"
            # two runs apart by more than the threshold, and beyond their own intervals
            bounds = [r.throughput.ci95 for r in runs if None not in r.throughput.ci95]
            disjoint = len(bounds) >= 2 and max(low for low, _ in bounds) > min(high for _, high in bounds)
            if disjoint and max(medians) / min(medians) - 1 > UNSTABLE_CI:
                return f"its runs disagree beyond their 95% CIs ({min(medians):.3g} to {max(medians):.3g} images/s)"
            return ""
        ci = runs[0].throughput.ci95_rel
        if ci is None:
            return "one run with too few timed blocks for a 95% CI"
        return f"its 95% CI is +-{ci:.1%}, wider than +-{UNSTABLE_CI:.0%}" if ci > UNSTABLE_CI else ""


def change_of(a: CellRuns, b: CellRuns) -> Change | None:
    """a / b - 1 with its 95% interval: from the rounds both ran in (paired), else from their runs
    (unpaired), else from one run's blocks each. None unless both measured."""
    if a.status is not Status.OK or b.status is not Status.OK:
        return None
    ours, theirs = a.rounds, b.rounds
    paired = sorted(ours.keys() & theirs.keys())
    if len(paired) >= 2:
        # The first look: the sweeps' minimum rounds, as each row's trial records them.
        first = min(r.trial.rounds for r in a.ok + b.ok if r.trial)
        return paired_change([ours[k] for k in paired], [theirs[k] for k in paired], first)
    return runs_change(a.samples, b.samples)

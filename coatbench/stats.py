"""Summaries of timing samples: robust (median, IQR) and honest about their uncertainty."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    ci_low: float  # distribution-free 95% confidence interval of the median
    ci_high: float  # (NaN while there are too few samples to bound it)
    n: int

    @property
    def ci_halfwidth_rel(self) -> float:
        """Half the CI's width relative to the median: 0.02 means +-2%."""
        if math.isnan(self.ci_low) or self.median == 0:
            return math.inf
        return (self.ci_high - self.ci_low) / 2 / self.median

    def as_dict(self) -> dict:
        return {
            "median": self.median,
            "iqr": [self.q1, self.q3],
            "ci95": [
                None if math.isnan(self.ci_low) else self.ci_low,
                None if math.isnan(self.ci_high) else self.ci_high,
            ],
            "ci95_rel": None if math.isinf(self.ci_halfwidth_rel) else self.ci_halfwidth_rel,
            "n": self.n,
        }


def summarize(samples) -> Summary:
    """Median, quartiles and the 95% CI of the median from order statistics (binomial
    argument, no normality assumed; scipy.stats.quantile_test)."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to summarize")
    median = float(np.median(x))
    q1, q3 = (float(v) for v in np.percentile(x, [25, 75]))
    if x.size >= 2:
        ci = stats.quantile_test(x, q=median, p=0.5).confidence_interval(0.95)
        low, high = float(ci.low), float(ci.high)
    else:
        low = high = math.nan
    return Summary(median, q1, q3, low, high, int(x.size))


@contextmanager
def identical_runs_allowed():
    """scipy warns of precision loss when a side's runs are (nearly) identical; the test is still
    right then (the spread is ~0), and a user should not see the warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        yield


class Basis(str, Enum):
    """How a change's interval was made, strongest first."""

    ROUNDS = "rounds"  # paired within rounds: a t-interval over the rounds' log ratios
    RUNS = "runs"  # unpaired runs: Welch's t-interval on the log run values
    SINGLE_RUN = "single run"  # one run a side: a bootstrap over its blocks (run-to-run drift left out)


CONFIDENCE = 0.95
ROUNDS_LIMIT = 1000  # a projection past this many rounds is "out of reach"


# Looks. `--rounds auto` reads a cell's interval after its first rounds and again as rounds are
# added, and stops where a verdict is reached: read at 95% every time, a change that is not there
# is "found" far more often than one time in twenty (benchmarks/calibration.py saw an A/A row
# "contradicted" at 95%). So the looks lie on a grid, the first rounds and then each doubling of
# them (3, 6, 12, ... rounds), the j-th look at confidence 1 - 0.05 / 2**j (97.5%, 98.75%, ...):
# the chances of a false statement over all looks add up to at most 5% (Bonferroni), whatever the
# stopping rule. Between two grid points a cell is read at the confidence of the next one: the
# sweep does not stop on such a reading (`report.pending`), so it is the last look of a sweep
# that ended there.
def look(n: int, first: int) -> int:
    """The 1-based index of the look at n rounds on the grid first, 2 first, 4 first, ..."""
    index, point = 1, max(first, 2)
    while point < n:
        index, point = index + 1, point * 2
    return index


def next_look(n: int, first: int) -> int:
    """The rounds of the first look at n rounds or more: a point of the grid."""
    point = max(first, 2)
    while point < n:
        point *= 2
    return point


def on_grid(n: int, first: int) -> bool:
    """Whether a reading at n rounds is a look of the grid (fewer rounds than its first count as its first)."""
    return next_look(n, first) in (n, max(first, 2))


def look_confidence(n: int, first: int) -> float:
    """The confidence of the interval read at n rounds: 1 - 0.05 / 2**look."""
    return 1 - (1 - CONFIDENCE) / 2 ** look(n, first)


@dataclass(frozen=True)
class Change:
    """a / b - 1 with its 95% interval [low, high] (NaN ends: no interval) and how it was made.
    Paired over rounds it keeps the rounds' spread (the sample SD of their log ratios), which
    says how many rounds would narrow the interval enough (`rounds_to_clear`), and the first
    look's rounds: the interval is at the confidence of its look (`look_confidence`), so that
    95% holds over every look a sweep takes."""

    change: float
    low: float
    high: float
    basis: Basis
    n: int  # rounds (ROUNDS), the fewer runs of the two sides (RUNS), or 1
    log_sd: float = math.nan  # ROUNDS only
    first: int = 2  # ROUNDS only: the rounds of the first look (a sweep's minimum rounds)

    @property
    def uncertainty(self) -> float:
        """Half the interval's width (NaN without one): the "+-" of a table."""
        return (self.high - self.low) / 2

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def inverted(self) -> Change:
        """b / a - 1: the same measurement seen from the other side, the interval mapped end by end."""
        flip = lambda x: 1 / (1 + x) - 1  # noqa: E731
        return Change(flip(self.change), flip(self.high), flip(self.low), self.basis, self.n, self.log_sd, self.first)

    def rounds_to_clear(self, boundaries: Sequence[float], limit: int = ROUNDS_LIMIT) -> int | None:
        """How many rounds in all would give an interval that lies clear of every boundary (each a
        change, e.g. 0.05 for +5%), if further rounds had the spread and mean of these: the
        smallest n on the looks' grid with t(n-1) sd / sqrt(n) < the log distance to the nearest
        boundary, t at that look's confidence. None: unknown (not paired over 2 rounds or more)
        or beyond `limit` (the mean sits on a boundary)."""
        if self.basis is not Basis.ROUNDS or self.n < 2 or math.isnan(self.log_sd):
            return None
        mean = math.log1p(self.change)
        room = min(abs(mean - math.log1p(b)) for b in boundaries)
        n = next_look(self.n, self.first)
        if self.log_sd == 0:
            return n
        while n <= limit:
            if stats.t.ppf(0.5 + look_confidence(n, self.first) / 2, n - 1) * self.log_sd / math.sqrt(n) < room:
                return n
            n *= 2
        return None


def ratio_with_uncertainty(a, b) -> Change:
    """Median(a) / median(b) - 1 and its 95% interval from a percentile bootstrap of the
    median ratio: one run a side, its blocks the samples."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    change = float(np.median(a) / np.median(b) - 1)
    if a.size < 2 or b.size < 2:
        return Change(change, math.nan, math.nan, Basis.SINGLE_RUN, 1)
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
        n_resamples=2000,
        confidence_level=CONFIDENCE,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    ci = result.confidence_interval
    return Change(change, float(ci.low - 1), float(ci.high - 1), Basis.SINGLE_RUN, 1)


def runs_change(runs_a, runs_b) -> Change:
    """The change of a against b when each is measured in several runs (lists of per-block
    samples) that were not paired. Blocks of one run share the machine's state, so with two or
    more runs a side the runs are the unit: the ratio of the geometric means of the run medians,
    with a 95% Welch t-interval on the log scale. With fewer, the blocks of the last run of each
    (`ratio_with_uncertainty`), which leaves run-to-run variation out."""
    if min(len(runs_a), len(runs_b)) < 2:
        return ratio_with_uncertainty(runs_a[-1], runs_b[-1])
    log_a = np.log([np.median(run) for run in runs_a])
    log_b = np.log([np.median(run) for run in runs_b])
    diff = float(log_a.mean() - log_b.mean())
    n = min(len(runs_a), len(runs_b))
    if log_a.var() == 0 and log_b.var() == 0:
        return Change(math.expm1(diff), math.expm1(diff), math.expm1(diff), Basis.RUNS, n)
    with identical_runs_allowed():
        low, high = stats.ttest_ind(log_a, log_b, equal_var=False).confidence_interval(CONFIDENCE)
    return Change(math.expm1(diff), math.expm1(low), math.expm1(high), Basis.RUNS, n)


def paired_change(variant: Sequence[float], baseline: Sequence[float], first: int | None = None) -> Change:
    """The change of a variant against its baseline from rounds in which both ran side by side
    (one value each per round, same order): the geometric mean of the within-round ratios - 1,
    with the t-interval over the rounds (log scale; no interval with one round) at the confidence
    of its look, `first` the rounds of the first look (None: these rounds, a single look)."""
    logs = np.log(np.asarray(variant, dtype=float)) - np.log(np.asarray(baseline, dtype=float))
    mean, n = float(logs.mean()), int(logs.size)
    first = n if first is None else first
    if n < 2:
        return Change(math.expm1(mean), math.nan, math.nan, Basis.ROUNDS, n, first=first)
    sd = float(logs.std(ddof=1))
    if sd == 0:
        return Change(math.expm1(mean), math.expm1(mean), math.expm1(mean), Basis.ROUNDS, n, 0.0, first)
    with identical_runs_allowed():
        low, high = stats.ttest_1samp(logs, 0.0).confidence_interval(look_confidence(n, first))
    return Change(math.expm1(mean), math.expm1(low), math.expm1(high), Basis.ROUNDS, n, sd, first)


def spread_of_runs(values: Sequence[float]) -> float:
    """95% half-width, relative, of the geometric mean of run values (t-interval, log scale);
    NaN with one run."""
    logs = np.log(np.asarray(values, dtype=float))
    if logs.size < 2:
        return math.nan
    if logs.var() == 0:
        return 0.0
    low, high = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    return float((math.exp(high) - math.exp(low)) / 2 / math.exp(logs.mean()))

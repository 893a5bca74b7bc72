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


@dataclass(frozen=True)
class Change:
    """a / b - 1 with its 95% interval [low, high] (NaN ends: no interval) and how it was made.
    Paired over rounds it keeps the rounds' spread (the sample SD of their log ratios), which
    says how many rounds would narrow the interval enough (`rounds_to_clear`)."""

    change: float
    low: float
    high: float
    basis: Basis
    n: int  # rounds (ROUNDS), the fewer runs of the two sides (RUNS), or 1
    log_sd: float = math.nan  # ROUNDS only

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
        return Change(flip(self.change), flip(self.high), flip(self.low), self.basis, self.n, self.log_sd)

    def rounds_to_clear(self, boundaries: Sequence[float], limit: int = ROUNDS_LIMIT) -> int | None:
        """How many rounds in all would give an interval that lies clear of every boundary (each a
        change, e.g. 0.05 for +5%), if further rounds had the spread and mean of these: the
        smallest n with t(n-1) sd / sqrt(n) < the log distance to the nearest boundary. None:
        unknown (not paired over 2 rounds or more) or beyond `limit` (the mean sits on a boundary)."""
        if self.basis is not Basis.ROUNDS or self.n < 2 or math.isnan(self.log_sd):
            return None
        mean = math.log1p(self.change)
        room = min(abs(mean - math.log1p(b)) for b in boundaries)
        if self.log_sd == 0:
            return self.n
        for n in range(max(self.n, 2), limit + 1):
            if stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * self.log_sd / math.sqrt(n) < room:
                return n
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


def paired_change(variant: Sequence[float], baseline: Sequence[float]) -> Change:
    """The change of a variant against its baseline from rounds in which both ran side by side
    (one value each per round, same order): the geometric mean of the within-round ratios - 1,
    with the 95% t-interval over the rounds (log scale; no interval with one round)."""
    logs = np.log(np.asarray(variant, dtype=float)) - np.log(np.asarray(baseline, dtype=float))
    mean, n = float(logs.mean()), int(logs.size)
    if n < 2:
        return Change(math.expm1(mean), math.nan, math.nan, Basis.ROUNDS, n)
    sd = float(logs.std(ddof=1))
    if sd == 0:
        return Change(math.expm1(mean), math.expm1(mean), math.expm1(mean), Basis.ROUNDS, n, 0.0)
    with identical_runs_allowed():
        low, high = stats.ttest_1samp(logs, 0.0).confidence_interval(CONFIDENCE)
    return Change(math.expm1(mean), math.expm1(low), math.expm1(high), Basis.ROUNDS, n, sd)


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

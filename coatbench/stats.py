"""Summaries of timing samples: robust (median, IQR) and honest about their uncertainty."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

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


def ratio_with_uncertainty(a, b) -> tuple[float, float]:
    """Median(a) / median(b) - 1 and a 95% half-width from a percentile bootstrap of the
    median ratio (the report's "+12.3% +-1.1")."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    change = float(np.median(a) / np.median(b) - 1)
    if a.size < 2 or b.size < 2:
        return change, math.nan
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
        n_resamples=2000,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    ci = result.confidence_interval
    return change, float((ci.high - ci.low) / 2)


def runs_ratio_with_uncertainty(runs_a, runs_b) -> tuple[float, float]:
    """The change of a against b when each is measured in several runs (lists of per-block
    samples). Blocks of one run share the machine's state, so with two or more runs a side the
    runs are the unit: the ratio of the geometric means of the run medians, with a 95% Welch
    t-interval on the log scale. With fewer, the blocks of the last run of each
    (`ratio_with_uncertainty`), which leaves run-to-run variation out."""
    if min(len(runs_a), len(runs_b)) < 2:
        return ratio_with_uncertainty(runs_a[-1], runs_b[-1])
    log_a = np.log([np.median(run) for run in runs_a])
    log_b = np.log([np.median(run) for run in runs_b])
    diff = log_a.mean() - log_b.mean()
    if log_a.var() == 0 and log_b.var() == 0:
        return float(np.expm1(diff)), 0.0
    with identical_runs_allowed():
        low, high = stats.ttest_ind(log_a, log_b, equal_var=False).confidence_interval(0.95)
    return float(np.expm1(diff)), float((math.exp(high) - math.exp(low)) / 2)


def paired_change(variant: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """The change of a variant against its baseline from rounds in which both ran side by side
    (one value each per round, same order): the geometric mean of the within-round ratios - 1,
    with the 95% half-width of a t-interval over the rounds (log scale; NaN with one round)."""
    logs = np.log(np.asarray(variant, dtype=float)) - np.log(np.asarray(baseline, dtype=float))
    change = float(np.expm1(logs.mean()))
    if logs.size < 2:
        return change, math.nan
    if logs.var() == 0:
        return change, 0.0
    low, high = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
    return change, float((math.exp(high) - math.exp(low)) / 2)


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

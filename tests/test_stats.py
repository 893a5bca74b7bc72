import math

import numpy as np
import pytest

from coatbench.stats import ratio_with_uncertainty, runs_change, summarize


def test_summary_of_known_samples():
    s = summarize([10, 12, 11, 13, 9, 11, 10, 12, 11])
    assert s.median == 11
    assert (s.q1, s.q3) == (10, 12)
    assert s.n == 9
    assert s.ci_low <= 11 <= s.ci_high
    # order statistics: the CI's ends are samples
    assert s.ci_low in {9, 10, 11} and s.ci_high in {11, 12, 13}


def test_ci_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    few = summarize(100 + rng.normal(0, 3, 8))
    many = summarize(100 + rng.normal(0, 3, 200))
    assert many.ci_halfwidth_rel < few.ci_halfwidth_rel
    assert many.ci_halfwidth_rel < 0.01


def test_too_few_samples_have_no_ci():
    s = summarize([5.0])
    assert math.isnan(s.ci_low) and math.isinf(s.ci_halfwidth_rel)
    assert s.as_dict()["ci95"] == [None, None]


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def test_ratio_of_medians_with_uncertainty():
    rng = np.random.default_rng(2)
    a = 110 + rng.normal(0, 1, 30)
    b = 100 + rng.normal(0, 1, 30)
    found = ratio_with_uncertainty(a, b)
    assert found.change == pytest.approx(0.10, abs=0.01)
    assert found.low < found.change < found.high and 0 < found.uncertainty < 0.02


def test_runs_are_the_unit_when_there_are_several():
    """Two runs a side whose levels differ by 15%: each run's blocks are tight, so one run's
    blocks would claim +-0.5%; over the runs the interval is as wide as the runs wander."""
    rng = np.random.default_rng(3)
    run = lambda level: list(level * (1 + 0.002 * rng.standard_normal(20)))  # noqa: E731
    a, b = [run(110), run(95)], [run(100), run(86)]
    found = runs_change(a, b)
    assert found.change == pytest.approx(math.sqrt(110 * 95 / (100 * 86)) - 1, abs=0.005)
    assert found.uncertainty > 0.1 > ratio_with_uncertainty(a[-1], b[-1]).uncertainty
    assert runs_change(a[:1], b) == ratio_with_uncertainty(a[0], b[-1])  # one run: its blocks

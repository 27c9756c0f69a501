"""Calibrated latency intervals (hurricane.latency.calibration): split conformal factors from a
predictor's held-out log ratios bound new architectures at the level asked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hurricane.latency.calibration import (
    interval_factors,
    log_ratios,
    near_edge,
    upper_factor,
)


def test_upper_factor_covers_new_architectures_at_the_level_asked() -> None:
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(400):  # many calibrations, each checked on fresh draws
        held = rng.normal(0.02, 0.08, size=30)
        f = upper_factor(held, 0.9)
        fresh = rng.normal(0.02, 0.08, size=50)
        covered.append(np.mean(np.exp(fresh) <= f.factor))
        assert f.calibrated and f.points == 30
    # conformal: at least the level on average, and not far above it with 30 points
    assert 0.9 <= float(np.mean(covered)) <= 0.95


def test_two_sided_interval_and_the_budget_edge() -> None:
    r = np.log(np.array([0.9, 0.95, 1.0, 1.0, 1.02, 1.05, 1.1, 0.97, 1.03, 1.01,
                         0.99, 1.04, 0.96, 1.0, 1.08, 0.93, 1.06, 0.98, 1.0, 1.01]))
    lo, hi = interval_factors(r, 0.8)
    assert lo.factor < 1 < hi.factor and lo.calibrated and hi.calibrated
    # the interval's ends are held-out ratios (order statistics)
    assert any(math.isclose(lo.factor, x) for x in np.exp(r))
    preds = [1.0, 4.9, 5.0, 5.2, 9.0]
    n = near_edge(preds, 5.0, lo, hi)
    assert n == sum(p * lo.factor <= 5.0 <= p * hi.factor for p in preds) and 2 <= n <= 3


def test_too_few_points_use_the_extreme_and_say_so() -> None:
    f = upper_factor([0.0, 0.1, 0.2, 0.05], 0.9)
    assert not f.calibrated and f.factor == pytest.approx(math.exp(0.2))
    with pytest.raises(ValueError, match="at least 3 held-out"):
        upper_factor([0.1, 0.2], 0.9)
    with pytest.raises(ValueError, match="confidence"):
        upper_factor([0.1, 0.2, 0.3], 1.5)


def test_log_ratios_skip_missing_and_check_alignment() -> None:
    r = log_ratios([2.0, float("nan"), 3.0], [1.0, 1.0, 3.0])
    assert r.tolist() == pytest.approx([math.log(2.0), 0.0])
    with pytest.raises(ValueError, match="aligned"):
        log_ratios([1.0, 2.0], [1.0])

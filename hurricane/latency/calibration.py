"""Calibrated latency intervals from a predictor's held-out errors (split conformal).

A latency predictor is fitted on some measured architectures and checked on others it never
saw. The held-out log ratios ``r = log(measured / predicted)`` say how far the predictor is off,
whatever its model: the ``ceil((n + 1) q) / n`` empirical quantile of ``r`` bounds a new
architecture's ratio with probability at least ``q`` (split conformal prediction; exchangeable
architectures). So:

- ``upper_factor(r, c)``: ``predicted * factor`` is at or above the true latency with
  probability ``c``; evolution's budget check at confidence ``c`` accepts an architecture when
  ``predicted * factor <= budget``, which is ``predicted <= budget / factor``;
- ``interval_factors(r, c)``: a two-sided interval at ``c``; an architecture whose interval holds
  the budget is *near the budget edge* (the predictor cannot say on which side it is).

With too few held-out points for the level asked, the largest (smallest) ratio is used and the
result says it is not calibrated at that level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_POINTS = 3


@dataclass(frozen=True)
class Factor:
    """A multiplicative bound on the predicted latency, and whether the held-out points
    sufficed for its level."""

    factor: float
    level: float
    points: int
    calibrated: bool

    def to_json(self) -> dict[str, Any]:
        return {"factor": round(self.factor, 4), "level": self.level, "points": self.points,
                "calibrated": self.calibrated}


def log_ratios(measured_ms: Sequence[float], predicted_ms: Sequence[float]) -> np.ndarray:
    y, p = np.asarray(measured_ms, dtype=float), np.asarray(predicted_ms, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"measured and predicted latencies must be aligned 1-D, got shapes "
                         f"{y.shape} and {p.shape}")
    ok = np.isfinite(y) & np.isfinite(p) & (y > 0) & (p > 0)
    return np.log(y[ok] / p[ok])


def _quantile(r: np.ndarray, level: float) -> tuple[float, bool]:
    n = r.size
    if n < MIN_POINTS:
        raise ValueError(f"calibration needs at least {MIN_POINTS} held-out architectures, "
                         f"got {n}")
    k = math.ceil((n + 1) * level)  # the conformal rank
    s = np.sort(r)
    if k > n:
        return float(s[-1]), False
    if k < 1:
        return float(s[0]), False
    return float(s[k - 1]), True


def upper_factor(ratios: Sequence[float] | np.ndarray, confidence: float) -> Factor:
    """``predicted * factor`` bounds the true latency from above with probability
    ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = np.asarray(ratios, dtype=float)
    q, ok = _quantile(r, confidence)
    return Factor(math.exp(q), confidence, int(r.size), ok)


def interval_factors(ratios: Sequence[float] | np.ndarray,
                     confidence: float) -> tuple[Factor, Factor]:
    """(low, high) factors of a two-sided interval at ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = np.asarray(ratios, dtype=float)
    tail = (1 - confidence) / 2
    hi, ok_hi = _quantile(r, 1 - tail)
    # the lower bound: the upper quantile of -r
    lo_neg, ok_lo = _quantile(-r, 1 - tail)
    return (Factor(math.exp(-lo_neg), tail, int(r.size), ok_lo),
            Factor(math.exp(hi), 1 - tail, int(r.size), ok_hi))


def near_edge(predicted_ms: Sequence[float] | np.ndarray, budget_ms: float,
              low: Factor, high: Factor) -> int:
    """How many predictions' intervals hold the budget: the predictor cannot tell their side."""
    p = np.asarray(predicted_ms, dtype=float)
    return int(np.sum((p * low.factor <= budget_ms) & (budget_ms <= p * high.factor)))

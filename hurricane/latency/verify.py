"""The final latency check of a winner: re-measured in rounds until the rounds agree or decide,
reported as a median with a confidence interval and a three-way verdict against the budget.

One end-to-end timing of a network is one draw from a machine whose state drifts (frequency,
other tenants, caches): on a 2-core CPU, three re-measurements of one network gave 2.03, 2.23
and 2.93 ms. So a winner is timed in ``min_rounds`` independent rounds (each its own warm-up
and repeats, its median kept), and more rounds follow, up to ``max_rounds``, while the round
medians spread by more than ``spread`` of their median or while the interval straddles the
budget. The interval is Student's t on the rounds' log medians (latencies are multiplicative;
rounds are the independent unit, not the repeats inside one), at ``confidence``:

- ``within``: the interval's upper end is at or under the budget;
- ``over``: its lower end is above the budget;
- ``inconclusive``: the interval straddles the budget; the machine cannot tell at this noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scipy.stats import t as student_t

Verdict = Literal["within", "over", "inconclusive"]


@dataclass(frozen=True)
class VerifyConfig:
    """How many rounds, when to take more, and the interval's confidence."""

    min_rounds: int = 3
    max_rounds: int = 7
    spread: float = 0.10  # (max - min) / median of the round medians that asks for more rounds
    confidence: float = 0.9

    def __post_init__(self) -> None:
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"rounds: need 2 <= min_rounds <= max_rounds, got "
                             f"{self.min_rounds} and {self.max_rounds}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.spread < 0:
            raise ValueError(f"spread must be >= 0, got {self.spread}")


@dataclass(frozen=True)
class LatencyCheck:
    """The verdict and what it rests on."""

    verdict: Verdict
    median_ms: float
    low_ms: float
    high_ms: float
    confidence: float
    budget_ms: float
    rounds_ms: list[float] = field(default_factory=list)
    spread: float = 0.0
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()} | {
            "rounds_ms": [round(x, 4) for x in self.rounds_ms]}


def interval(rounds_ms: list[float], confidence: float) -> tuple[float, float]:
    """Student's t interval of the typical latency from round medians, in log space."""
    n = len(rounds_ms)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 rounds, got {n}")
    if min(rounds_ms) <= 0:
        raise ValueError(f"latencies must be positive, got {min(rounds_ms)}")
    logs = [math.log(x) for x in rounds_ms]
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return math.exp(mean - half), math.exp(mean + half)


def judge(rounds_ms: list[float], budget_ms: float, confidence: float = 0.9) -> LatencyCheck:
    """The verdict of these rounds against ``budget_ms``."""
    if budget_ms <= 0:
        raise ValueError(f"budget_ms must be positive, got {budget_ms}")
    lo, hi = interval(rounds_ms, confidence)
    med = statistics.median(rounds_ms)
    spread = (max(rounds_ms) - min(rounds_ms)) / med
    verdict: Verdict = "within" if hi <= budget_ms else "over" if lo > budget_ms \
        else "inconclusive"
    pct = f"{confidence:.0%}"
    reason = {
        "within": f"{pct} interval {lo:.3f}-{hi:.3f} ms is under the {budget_ms:.3f} ms budget",
        "over": f"{pct} interval {lo:.3f}-{hi:.3f} ms is above the {budget_ms:.3f} ms budget",
        "inconclusive": f"{pct} interval {lo:.3f}-{hi:.3f} ms straddles the {budget_ms:.3f} ms "
                        f"budget after {len(rounds_ms)} rounds (spread {spread:.0%}): measure on "
                        "a quieter node, or leave the budget a margin"}[verdict]
    return LatencyCheck(verdict, med, lo, hi, confidence, budget_ms, list(rounds_ms), spread,
                        reason)


def verify(measure: Callable[[], float], budget_ms: float,
           config: VerifyConfig | None = None) -> LatencyCheck:
    """Rounds of ``measure`` (one round's median, ms) until they agree and decide, or
    ``max_rounds``; the verdict of them all."""
    cfg = config or VerifyConfig()
    rounds = [float(measure()) for _ in range(cfg.min_rounds)]
    while True:
        check = judge(rounds, budget_ms, cfg.confidence)
        settled = check.spread <= cfg.spread and check.verdict != "inconclusive"
        if settled or len(rounds) >= cfg.max_rounds:
            return check
        rounds.append(float(measure()))

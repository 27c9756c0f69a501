"""Search strategies: each names the pipeline steps it uses, in order (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hurricane.registry import Registry


@dataclass(frozen=True)
class Strategy:
    name: str
    steps: tuple[str, ...]
    description: str
    two_stage: bool = False  # Stage 1 fixes the early layers to a_win0 (Algorithm 1)

    def plan(self, spec: Any) -> tuple[str, ...]:
        """The steps ``spec`` runs (HURRICANE may stop after Stage 1)."""
        if self.two_stage and spec.hurricane.stop_after_stage1:
            return tuple(s for s in self.steps if s not in ("stage2", "search2"))
        return self.steps

    def winner_step(self, spec: Any) -> str:
        """The step whose result holds each device's final architecture."""
        plan = self.plan(spec)
        return plan[plan.index("retrain") - 1]


STRATEGIES: Registry[Strategy] = Registry("strategy")
STRATEGIES.register("spos", Strategy(
    "spos",
    ("profile", "space", "predictor", "stage1", "search1", "retrain", "export"),
    "SPOS: one-stage constrained one-shot NAS over all layers of any space (pool, manual, "
    "hardware); latency budget by rejection in evolution",
))
STRATEGIES.register("hurricane", Strategy(
    "hurricane",
    ("profile", "space", "predictor", "stage1", "search1", "stage2", "search2", "retrain",
     "export"),
    "HURRICANE Algorithm 1: Stage 1 trains and searches the later layers with layers 1..t "
    "fixed to a_win0 (top Eq. 2 score); Stage 2 searches layers 1..t with the rest fixed to "
    "Stage 1's winner",
    two_stage=True,
))
STRATEGIES.register("proxyless", Strategy(
    "proxyless",
    ("profile", "space", "predictor", "proxyless", "retrain", "export"),
    "ProxylessNAS baseline: binarised path gates trained by gradient with an expected-latency "
    "loss from the device's latency table; one search per device",
))

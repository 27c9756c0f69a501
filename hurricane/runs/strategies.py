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
    stage2: tuple[str, ...] = ()  # Stage 2's steps: left out when hurricane.stop_after_stage1
    proxy_step: str = "transfer"  # devices served by a proxy device get their architecture here,
    proxy_before: str = "retrain"  # right before this step

    def plan(self, spec: Any, *, proxies: bool = True) -> tuple[str, ...]:
        """The steps ``spec`` runs: HURRICANE may stop after Stage 1; devices served by a
        proxy device get their architecture in ``proxy_step`` (``proxies``: if any)."""
        steps = self.steps
        if self.two_stage and spec.hurricane.stop_after_stage1:
            steps = tuple(s for s in steps if s not in self.stage2)
        if proxies and any(d.proxy for d in spec.devices):
            i = steps.index(self.proxy_before)
            steps = (*steps[:i], self.proxy_step, *steps[i:])
        return steps


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
    two_stage=True, stage2=("stage2", "search2"),
))
STRATEGIES.register("proxyless", Strategy(
    "proxyless",
    ("profile", "space", "predictor", "proxyless", "retrain", "export"),
    "ProxylessNAS baseline: binarised path gates trained by gradient with an expected-latency "
    "loss from the device's latency table; one search per device",
))

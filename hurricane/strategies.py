"""Search strategies: each names the pipeline steps it uses, in order."""

from __future__ import annotations

from dataclasses import dataclass

from hurricane.registry import Registry


@dataclass(frozen=True)
class Strategy:
    name: str
    steps: tuple[str, ...]
    description: str


STRATEGIES: Registry[Strategy] = Registry("strategy")
STRATEGIES.register("spos", Strategy(
    "spos",
    ("profile", "space", "predictor", "stage1", "search1", "retrain", "export"),
    "one-stage constrained one-shot NAS (SPOS) over all layers, latency budget by rejection",
))

"""The results view of a search, read through the steps' traits: which steps yield each
device's architecture, that architecture per device, and the artifacts each device gets.
The report, the retraining step, the one-proxy transfer and the API all read these.
Torch-free."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hurricane.runs.contract import STEPS, Artifact, Step
from hurricane.spec import SearchSpec

Result = Callable[[str], "dict[str, Any] | None"]  # a step's stored result (None: not yet)


def step_of(name: str) -> Step:
    """The registered step ``name`` (the built-in steps are registered on import)."""
    return STEPS.get(name)


def winner_steps(plan: Iterable[str]) -> list[str]:
    """The steps of ``plan`` that yield devices' architectures, in plan order."""
    return [s for s in plan if s in STEPS and STEPS.get(s).winner]


def winner_step(spec: SearchSpec) -> str:
    """The search step whose result holds each searched device's final architecture: the last
    winner step of the strategy's plan before devices served by a proxy get theirs."""
    from hurricane.runs.strategies import STRATEGIES

    return winner_steps(STRATEGIES.get(spec.strategy).plan(spec, proxies=False))[-1]


def device_winners(plan: Iterable[str], result: Result) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per device: (step, its entry in that step's result) of the latest winner step of
    ``plan`` that has a result naming the device (a later step's winner replaces an earlier
    one's: Stage 2 after Stage 1; a proxy's transfer adds the devices it serves)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for s in winner_steps(plan):
        for dev, r in ((result(s) or {}).get("devices") or {}).items():
            out[dev] = (s, r)
    return out


def artifacts(plan: Iterable[str]) -> list[Artifact]:
    """Every artifact the steps of ``plan`` publish per device, in plan order."""
    return [a for s in plan if s in STEPS for a in STEPS.get(s).artifacts]


def device_artifacts(plan: Iterable[str], device: str, *,
                     reported: bool = False) -> dict[str, str]:
    """``{name: key relative to the search}`` of ``device``'s artifacts (``reported``: only
    those report.json lists)."""
    return {a.name: a.of(device) for a in artifacts(plan) if a.reported or not reported}

"""Step ``space``: the candidate ops per layer (pool, manual, or HURRICANE's Eq. 2 hardware-aware
space); light, so it runs no job: it is computed where the step finishes."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step

STEP = STEPS.register("space", Step("space", "hurricane.runs.steps.measure:space_result"))

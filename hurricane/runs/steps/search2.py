"""Step ``search2`` (HURRICANE): evolution under each searched device's budget on the Stage 2
supernet of its Stage 1 winner; its winners replace Stage 1's."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, searched_devices
from hurricane.runs.steps.keys import evolution_key

STEP = STEPS.register("search2", Step(
    "search2", "hurricane.runs.steps.oneshot:search2_result",
    units=searched_devices,
    done=lambda spec, sid, store, u: store.exists(evolution_key(sid, "search2", u)),
    run="hurricane.runs.steps.oneshot:search2_job",
    reads_images=True, winner=True))

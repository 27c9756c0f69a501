"""Step ``search1``: evolution under each searched device's budget on Stage 1's supernet, on any
node of the training pool."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, searched_devices
from hurricane.runs.steps.keys import evolution_key

STEP = STEPS.register("search1", Step(
    "search1", "hurricane.runs.steps.oneshot:search1_result",
    units=searched_devices,
    done=lambda spec, sid, store, u: store.exists(evolution_key(sid, "search1", u)),
    run="hurricane.runs.steps.oneshot:search1_job",
    reads_images=True, winner=True))

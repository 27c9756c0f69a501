"""Step ``profile``: each device's layer × op latency table, measured on its own node pool
(or imported). Its job: :func:`hurricane.runs.steps.measure.profile_job`."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, every_device
from hurricane.runs.steps.keys import table_key

STEP = STEPS.register("profile", Step(
    "profile", "hurricane.runs.steps.measure:profile_result",
    units=every_device,
    done=lambda spec, sid, store, u: store.exists(table_key(sid, u)),
    run="hurricane.runs.steps.measure:profile_job",
    pool="device"))

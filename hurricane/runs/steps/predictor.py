"""Step ``predictor``: sampled architectures measured end to end on each measurable device and
a latency predictor fitted on them; every budget is checked before training."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step
from hurricane.runs.steps.keys import predictor_key

STEP = STEPS.register("predictor", Step(
    "predictor", "hurricane.runs.steps.measure:predictor_result",
    units="hurricane.runs.steps.measure:measurable_units",
    done=lambda spec, sid, store, u: store.exists(predictor_key(sid, u)),
    run="hurricane.runs.steps.measure:predictor_job",
    pool="device"))

"""Step ``stage2`` (HURRICANE): one supernet training per distinct Stage 1 winner, layers 1..t
active and the rest fixed to that winner, launched by torchrun on the training pool."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, searched_devices

STEP = STEPS.register("stage2", Step(
    "stage2", "hurricane.runs.steps.oneshot:stage2_result",
    units="hurricane.runs.steps.oneshot:stage2_units",
    done="hurricane.runs.steps.oneshot:stage2_done",
    run="hurricane.runs.steps.oneshot:stage2_job",
    distributed=True, reads_images=True, planned_units=searched_devices,
    supernets="hurricane.runs.steps.oneshot:stage2_supernets"))

"""Step ``stage1``: one supernet training (SPOS: the whole space; HURRICANE: layers 1..t fixed to
a_win0), launched by torchrun on the training pool."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, one_unit
from hurricane.runs.steps.keys import train_key

STEP = STEPS.register("stage1", Step(
    "stage1", "hurricane.runs.steps.oneshot:stage1_result",
    units=one_unit,
    done=lambda spec, sid, store, u: store.exists(train_key(sid, "stage1")),
    run="hurricane.runs.steps.oneshot:stage1_job",
    distributed=True, reads_images=True,
    supernets="hurricane.runs.steps.oneshot:stage1_supernets"))

"""Step ``retrain``: each device's winner trained from scratch on train+val and scored on the
test split, one torchrun training per distinct winner; it publishes the model."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Artifact, Step

STEP = STEPS.register("retrain", Step(
    "retrain", "hurricane.runs.steps.final:retrain_result",
    units="hurricane.runs.steps.final:retrain_units",
    done="hurricane.runs.steps.final:retrain_done",
    run="hurricane.runs.steps.final:retrain_job",
    distributed=True, reads_images=True,
    artifacts=(Artifact("final.pt", "retrain/{device}/final.pt"),
               Artifact("arch.json", "retrain/{device}/arch.json"),
               Artifact("metrics.json", "retrain/{device}/metrics.json", reported=False))))

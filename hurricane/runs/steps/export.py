"""Step ``export``: each retrained model as ONNX (checked against torch) and re-measured on its
device's own node pool; it publishes model.onnx."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Artifact, Step, every_device
from hurricane.runs.steps.keys import export_key

STEP = STEPS.register("export", Step(
    "export", "hurricane.runs.steps.final:export_result",
    units=every_device,
    done=lambda spec, sid, store, u: store.exists(export_key(sid, u)),
    run="hurricane.runs.steps.final:export_job",
    pool="device", reads_images=True,
    artifacts=(Artifact("model.onnx", "export/{device}/model.onnx"),)))

"""Step ``transfer`` (one proxy device, Lu et al.): each device served by a proxy gets its
architecture from the proxy's search, measured on the target device's node pool."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step
from hurricane.runs.steps.keys import transfer_key

STEP = STEPS.register("transfer", Step(
    "transfer", "hurricane.runs.steps.oneproxy:transfer_result",
    units=lambda spec, sid, store: [t.name for t in spec.devices if t.proxy is not None],
    done=lambda spec, sid, store, u: store.exists(transfer_key(sid, u)),
    run="hurricane.runs.steps.oneproxy:transfer_job",
    pool="device", reads_images=True, winner=True))

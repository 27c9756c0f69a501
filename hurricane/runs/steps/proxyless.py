"""Step ``proxyless`` (the ProxylessNAS baseline): one gradient search per searched device, its
expected-latency loss from that device's table, on any node of the training pool."""

from __future__ import annotations

from hurricane.runs.contract import STEPS, Step, searched_devices
from hurricane.runs.steps.keys import proxyless_key

STEP = STEPS.register("proxyless", Step(
    "proxyless", "hurricane.runs.steps.gradient:proxyless_result",
    units=searched_devices,
    done=lambda spec, sid, store, u: store.exists(proxyless_key(sid, u)),
    run="hurricane.runs.steps.gradient:proxyless_job",
    reads_images=True, winner=True,
    supernets="hurricane.runs.steps.gradient:proxyless_supernets"))

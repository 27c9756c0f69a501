"""Device profiles: which inference backend measures latency and where (node label) it runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hurricane.registry import Registry

NODE_LABEL = "hurricane.io/device"


@dataclass(frozen=True)
class DeviceProfile:
    """A named target: backend, engine options, and the Kubernetes node pool it runs on."""

    name: str
    backend: str  # torch (more backends arrive with the profiling issue)
    node_label: str  # value of hurricane.io/device: cpu, dsp, vpu, gpu
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def node_selector(self) -> dict[str, str]:
        return {NODE_LABEL: self.node_label}


DEVICES: Registry[DeviceProfile] = Registry("device")
DEVICES.register("cpu", DeviceProfile("cpu", "torch", "cpu", "this machine's CPU, PyTorch eager"))

"""Device profiles: which inference engine measures latency, with what options, on which nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hurricane.registry import Registry

NODE_LABEL = "hurricane.io/device"
BACKEND_NAMES = ("torch", "onnxruntime", "openvino", "table")


@dataclass(frozen=True)
class DeviceProfile:
    """A named target: backend and engine options, and the Kubernetes node pool it runs on.

    options: ``device`` (torch: cpu/cuda; openvino: CPU/GPU/NPU), ``provider`` (onnxruntime
    execution provider), ``provider_options`` (dict), ``path`` (table: a latency CSV/JSON).
    """

    name: str
    backend: str
    node_label: str  # value of hurricane.io/device: cpu, dsp, vpu, gpu
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # extended resources a measuring pod asks for (a device plugin's resource), per pod
    resources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(f"device {self.name!r}: unknown backend {self.backend!r}; "
                             f"allowed: {', '.join(BACKEND_NAMES)}")

    @property
    def node_selector(self) -> dict[str, str]:
        return {NODE_LABEL: self.node_label}


DEVICES: Registry[DeviceProfile] = Registry("device")
for _p in (
    DeviceProfile("cpu", "torch", "cpu", "CPU, PyTorch eager", {"device": "cpu"}),
    DeviceProfile("cpu-ort", "onnxruntime", "cpu", "CPU, ONNX Runtime CPU execution provider",
                  {"provider": "CPUExecutionProvider"}),
    DeviceProfile("cpu-ov", "openvino", "cpu", "CPU, OpenVINO runtime", {"device": "CPU"}),
    DeviceProfile("gpu", "torch", "gpu", "NVIDIA GPU, PyTorch eager (CUDA)", {"device": "cuda"},
                  {"nvidia.com/gpu": "1"}),
    DeviceProfile("gpu-ort", "onnxruntime", "gpu", "NVIDIA GPU, ONNX Runtime CUDA provider",
                  {"provider": "CUDAExecutionProvider"}, {"nvidia.com/gpu": "1"}),
    DeviceProfile("gpu-ov", "openvino", "gpu", "Intel GPU, OpenVINO runtime", {"device": "GPU"},
                  {"gpu.intel.com/i915": "1"}),
    DeviceProfile("vpu-ov", "openvino", "vpu", "Intel NPU/VPU, OpenVINO runtime", {"device": "NPU"},
                  {"npu.intel.com/accel": "1"}),
    DeviceProfile("cpu-ort-ov", "onnxruntime", "cpu", "CPU, ONNX Runtime OpenVINO provider",
                  {"provider": "OpenVINOExecutionProvider"}),
    DeviceProfile("dsp-qnn", "onnxruntime", "dsp", "Qualcomm Hexagon DSP, ONNX Runtime QNN provider",
                  {"provider": "QNNExecutionProvider",
                   "provider_options": {"backend_path": "libQnnHtp.so"}},
                  {"qualcomm.com/hexagon": "1"}),
):
    DEVICES.register(_p.name, _p)


def device_profile(name: str, *, table: str | None = None) -> DeviceProfile:
    """The registered profile ``name``, or a replayed-table device when ``table`` is given."""
    if table is not None:
        base = DEVICES.get(name) if name in DEVICES else None
        return DeviceProfile(name, "table", base.node_label if base else "cpu",
                             f"imported latency table {table}", {"path": str(table)})
    return DEVICES.get(name)

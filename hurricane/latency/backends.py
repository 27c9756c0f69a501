"""Inference engines that time a module: torch, onnxruntime, OpenVINO; all behind one interface."""

from __future__ import annotations

import functools
import io
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hurricane.latency.devices import DeviceProfile
from hurricane.registry import Registry

Runner = Callable[[], object]


class DeviceUnavailable(RuntimeError):
    """The profile needs hardware or an engine this machine does not have."""


class Backend(ABC):
    """Prepares a module for repeated inference on one device; the runner is what gets timed."""

    @abstractmethod
    def unavailable(self, profile: DeviceProfile) -> str | None:
        """Why this machine cannot run ``profile`` (None when it can)."""

    @abstractmethod
    def prepare(self, module: nn.Module, shape: tuple[int, ...], profile: DeviceProfile,
                *, threads: int) -> Runner: ...

    def check(self, profile: DeviceProfile) -> None:
        reason = self.unavailable(profile)
        if reason:
            raise DeviceUnavailable(f"device {profile.name!r} ({profile.description}) cannot run "
                                    f"here: {reason}. Run it on a node labelled "
                                    f"hurricane.io/device={profile.node_label}, or give the "
                                    "device as an imported latency table.")


def onnx_bytes(module: nn.Module, shape: tuple[int, ...]) -> bytes:
    """The module as ONNX (TorchScript exporter: fast enough for hundreds of small ops)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(shape),), buf,  # type: ignore[arg-type]
                          dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"])
    return buf.getvalue()


class TorchBackend(Backend):
    def unavailable(self, profile: DeviceProfile) -> str | None:
        dev = profile.options.get("device", "cpu")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            return "no CUDA device is visible to torch"
        return None

    def prepare(self, module: nn.Module, shape: tuple[int, ...], profile: DeviceProfile,
                *, threads: int) -> Runner:
        dev = torch.device(profile.options.get("device", "cpu"))
        m = module.eval().to(dev)
        x = torch.randn(shape, device=dev)
        if dev.type == "cuda":
            def run() -> object:
                with torch.inference_mode():
                    out = m(x)
                torch.cuda.synchronize(dev)
                return out
            return run

        def run_cpu() -> object:
            with torch.inference_mode():
                return m(x)
        return run_cpu


class OnnxRuntimeBackend(Backend):
    def unavailable(self, profile: DeviceProfile) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        provider = profile.options.get("provider", "CPUExecutionProvider")
        have = ort.get_available_providers()
        if provider not in have:
            return f"onnxruntime here has no {provider} (available: {', '.join(have)})"
        return None

    def prepare(self, module: nn.Module, shape: tuple[int, ...], profile: DeviceProfile,
                *, threads: int) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        provider = profile.options.get("provider", "CPUExecutionProvider")
        providers: list[Any] = [(provider, profile.options.get("provider_options", {}))]
        sess = ort.InferenceSession(onnx_bytes(module, shape), opts, providers=providers)
        feed = {"input": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        return lambda: sess.run(None, feed)


@functools.cache
def _ov_core() -> Any:
    """One OpenVINO Core per process: each new Core re-enumerates devices (~10–20 ms), once for
    the availability check and once per op prepared otherwise."""
    import openvino as ov

    return ov.Core()


class OpenVinoBackend(Backend):
    def unavailable(self, profile: DeviceProfile) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "the OpenVINO runtime is not installed"
        dev = profile.options.get("device", "CPU")
        have = _ov_core().available_devices
        if not any(d == dev or d.startswith(dev + ".") for d in have):
            return f"OpenVINO here has no {dev} device (available: {', '.join(have)})"
        return None

    def prepare(self, module: nn.Module, shape: tuple[int, ...], profile: DeviceProfile,
                *, threads: int) -> Runner:
        core = _ov_core()
        dev = profile.options.get("device", "CPU")
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.onnx"
            path.write_bytes(onnx_bytes(module, shape))
            model = core.read_model(str(path))
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if dev == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(model, dev, config)
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        return lambda: request.infer({0: x})


class TableBackend(Backend):
    """Replays an imported latency table: nothing is measured."""

    def unavailable(self, profile: DeviceProfile) -> str | None:
        path = profile.options.get("path")
        if not path:
            return "a table device needs options.path (a latency table CSV or JSON)"
        if not Path(path).is_file():
            return f"latency table {path} does not exist"
        return None

    def prepare(self, module: nn.Module, shape: tuple[int, ...], profile: DeviceProfile,
                *, threads: int) -> Runner:
        raise DeviceUnavailable(f"device {profile.name!r} is a replayed table: it cannot time "
                                "new modules")


BACKENDS: Registry[Backend] = Registry("backend")
BACKENDS.register("torch", TorchBackend())
BACKENDS.register("onnxruntime", OnnxRuntimeBackend())
BACKENDS.register("openvino", OpenVinoBackend())
BACKENDS.register("table", TableBackend())


def backend_for(profile: DeviceProfile) -> Backend:
    return BACKENDS.get(profile.backend)

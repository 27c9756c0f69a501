"""ONNX export of a trained network, checked against torch with onnxruntime."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


class ExportMismatch(RuntimeError):
    """onnxruntime's outputs differ from torch's beyond the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    top1_agreement: float
    batch: int


def export_onnx(model: nn.Module, path: str | Path, *, input_size: int, opset: int = 18) -> Path:
    """Writes a single-file ONNX model with a dynamic batch dimension."""
    model.eval()
    x = torch.randn(2, 3, input_size, input_size)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"], output_names=["logits"],
            opset_version=opset, dynamo=True, external_data=False,
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            verbose=False,
        )
    return path


def check_parity(model: nn.Module, onnx_path: str | Path, inputs: torch.Tensor,
                 *, atol: float = 1e-4) -> ParityReport:
    """Runs ``inputs`` through torch and onnxruntime; raises ExportMismatch past ``atol``."""
    import onnxruntime as ort

    model.eval()
    with torch.no_grad():
        ref = model(inputs).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: inputs.numpy()})[0]
    diff = float(np.abs(out - ref).max())
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    if not diff <= atol:
        raise ExportMismatch(f"ONNX output differs from torch by {diff:.3g} (> {atol})")
    return ParityReport(diff, agree, len(inputs))


def export_and_check(model: nn.Module, *, input_size: int, inputs: torch.Tensor, opset: int = 18,
                     atol: float = 1e-4) -> tuple[bytes, ParityReport]:
    with tempfile.TemporaryDirectory() as d:
        p = export_onnx(model, Path(d) / "model.onnx", input_size=input_size, opset=opset)
        report = check_parity(model, p, inputs, atol=atol)
        return p.read_bytes(), report

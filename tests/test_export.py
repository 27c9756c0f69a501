"""ONNX export agrees with torch under onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hurricane.nets.arch import Arch
from hurricane.nets.backbone import Layout
from hurricane.nets.export import ExportMismatch, check_parity, export_onnx
from hurricane.nets.supernet import Network
from hurricane.spec import BackboneSpec


def test_onnx_matches_torch_with_dynamic_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    layout = Layout.from_spec(BackboneSpec(input_size=32, num_classes=7, layers_per_stage=(1, 1, 2),
                                           stage_channels=(16, 24, 32), stem_channels=8,
                                           head_channels=32))
    torch.manual_seed(0)
    net = Network(layout, Arch(("Choice_3_SE", "MB_5_6_SE", "ChoiceX", "SEP_7_SE"))).eval()
    path = export_onnx(net, tmp_path / "m.onnx", input_size=32)
    for batch in (1, 5):
        report = check_parity(net, path, torch.randn(batch, 3, 32, 32), atol=1e-4)
        assert report.max_abs_diff <= 1e-4 and report.top1_agreement == 1.0
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 3, 32, 32), np.float32)})[0].shape == (3, 7)
    # a model that differs from the exported one is caught
    with torch.no_grad():
        net.head.fc.bias.add_(1.0)
    with pytest.raises(ExportMismatch):
        check_parity(net, path, torch.randn(2, 3, 32, 32))

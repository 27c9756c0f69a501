"""Tests generated from the op registry, plus FLOPs/params against hand counts."""

from __future__ import annotations

import pytest
import torch

from hurricane.nets.flops import count, op_cost
from hurricane.nets.ops import OPS, Downsample, build_op

# (stride, cin, cout, hw): stride 1 keeps channels; stride 2 widens, as in the backbone
SHAPES = {1: (16, 16, 8), 2: (16, 32, 8)}


def test_pool_has_the_32_ops_of_table_2():
    names = OPS.names()
    assert len(names) == 32 and len(set(names)) == 32
    fams = [OPS.get(n).family for n in names]
    assert fams.count("SEP") == 6 and fams.count("MB") == 18
    assert fams.count("Choice") == 6 and fams.count("ChoiceX") == 2
    assert sum(OPS.get(n).se for n in names) == 16


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", OPS.names())
def test_op_forward_shape_and_finite(name: str, stride: int) -> None:
    cin, cout, hw = SHAPES[stride]
    torch.manual_seed(0)
    op = build_op(name, cin, cout, stride)
    x = torch.randn(3, cin, hw, hw)
    y = op(x)
    assert y.shape == (3, cout, hw // stride, hw // stride)
    assert torch.isfinite(y).all()
    y.sum().backward()  # every op is trainable end to end
    assert all(p.grad is not None for p in op.parameters())
    op.eval()
    assert torch.isfinite(op(x)).all()


@pytest.mark.parametrize("name", OPS.names())
def test_op_without_affine_bn_has_no_bn_params(name: str) -> None:
    op = build_op(name, 16, 16, 1, affine=False)
    for m in op.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.weight is None and m.bias is None


@pytest.mark.parametrize("name", ["SEP_5_SE", "MB_3_1", "Choice_7", "ChoiceX_SE"])
@pytest.mark.parametrize("hw", [8, 7])
def test_stride2_shortcut_adds_a_pooled_projection(name: str, hw: int) -> None:
    torch.manual_seed(0)
    op = build_op(name, 16, 32, 2, shortcut=True)
    assert isinstance(op, Downsample)
    x = torch.randn(2, 16, hw, hw)
    op.eval()
    y = op(x)
    assert y.shape == (2, 32, (hw + 1) // 2, (hw + 1) // 2)
    # the output is the plain op plus the projected 2x2 means of the input
    pooled = torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True)
    short = op.short[2](torch.nn.functional.conv2d(pooled, op.short[1].weight))
    torch.testing.assert_close(y, op.op(x) + short)
    # the shortcut costs its 1x1 convolution's multiply-adds, at every stride-2 layer only
    out_hw = (hw + 1) // 2
    extra = op_cost(name, 16, 32, 2, hw, True).macs - op_cost(name, 16, 32, 2, hw).macs
    assert extra == 16 * 32 * out_hw * out_hw
    assert not isinstance(build_op(name if name != "Choice_7" else "MB_3_1", 16, 16, 1,
                                   shortcut=True), Downsample)


def test_unknown_op_lists_allowed_names():
    with pytest.raises(KeyError, match="allowed: SEP_3"):
        build_op("SEP_9", 8, 8, 1)


def test_duplicate_registration_raises():
    with pytest.raises(KeyError, match="already registered"):
        OPS.register("SEP_3", OPS.get("SEP_3"))


C, H = 32, 14


def test_sep3_cost_matches_hand_count():
    # twice: depthwise 3x3 (9·C·H²) + pointwise (C²·H²); params: 2·(9C + C² + 2 BN·2C)
    c = op_cost("SEP_3", C, C, 1, H)
    assert c.macs == 2 * (9 * C * H * H + C * C * H * H)
    assert c.params == 2 * (9 * C + C * C + 4 * C)


def test_mb3_6_cost_matches_hand_count():
    m = 6 * C
    c = op_cost("MB_3_6", C, C, 1, H)
    assert c.macs == C * m * H * H + 9 * m * H * H + m * C * H * H
    assert c.params == C * m + 2 * m + 9 * m + 2 * m + m * C + 2 * C


def test_choice3_cost_matches_hand_count():
    h = C // 2  # the branch sees half the channels; mid = C/2; it outputs C/2
    c = op_cost("Choice_3", C, C, 1, H)
    assert c.macs == h * h * H * H + 9 * h * H * H + h * h * H * H
    assert c.params == h * h + 2 * h + 9 * h + 2 * h + h * h + 2 * h


def test_stride2_halves_the_depthwise_cost():
    s1 = op_cost("SEP_3", C, C, 1, H).macs
    s2 = op_cost("SEP_3", C, C, 2, H).macs
    assert s2 < s1


def test_count_of_a_plain_conv():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    c = count(conv, (1, 3, 10, 10))
    assert c.macs == 8 * 3 * 9 * 100 and c.params == 8 * 3 * 9

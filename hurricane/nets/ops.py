"""The 32-operator candidate pool of HURRICANE (Table 2) as a registry of block builders."""

from __future__ import annotations

import torch
from torch import nn

from hurricane.nets.oppool import MANUAL_SPACE_OPS, OPS, OpDef

__all__ = ["MANUAL_SPACE_OPS", "OPS", "Downsample", "OpDef", "build_op", "op_names"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _bn(channels: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine)


def _act(hswish: bool) -> nn.Module:
    return nn.Hardswish(inplace=True) if hswish else nn.ReLU(inplace=True)


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excitation: reduction 4, hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = make_divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * w


def _dw(channels: int, k: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, k, stride, k // 2, groups=channels, bias=False)


def _pw(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


class SepConv(nn.Module):
    """SEP_k: depthwise-separable convolution applied twice (DARTS)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int, se: bool, affine: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _dw(cin, k, stride), _bn(cin, affine), _pw(cin, cin), _bn(cin, affine), _act(se),
            _dw(cin, k, 1), _bn(cin, affine), _pw(cin, cout), _bn(cout, affine), _act(se),
        ]
        if se:
            layers.append(SqueezeExcite(cout))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class MBConv(nn.Module):
    """MB_k_e: MobileNetV2 inverted residual; SE after the depthwise conv as in MobileNetV3."""

    def __init__(
        self, cin: int, cout: int, stride: int, k: int, expand: int, se: bool, affine: bool
    ) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [_pw(cin, mid), _bn(mid, affine), _act(se)]
        layers += [_dw(mid, k, stride), _bn(mid, affine), _act(se)]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [_pw(mid, cout), _bn(cout, affine)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


def channel_split_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2 shuffle fused with the channel split (SPOS reference)."""
    b, c, h, w = x.shape
    x = x.reshape(b * c // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, c // 2, h, w)
    return x[0], x[1]


class ShuffleBlock(nn.Module):
    """Choice_k (ShuffleNetV2 unit) and ChoiceX (Xception-style main branch)."""

    def __init__(
        self, cin: int, cout: int, stride: int, k: int, xception: bool, se: bool, affine: bool
    ) -> None:
        super().__init__()
        if stride == 1 and cin != cout:
            raise ValueError(f"Choice blocks with stride 1 need cin == cout, got {cin}->{cout}")
        if stride == 2 and cout <= cin:
            raise ValueError(f"Choice blocks with stride 2 need cout > cin, got {cin}->{cout}")
        self.stride = stride
        branch_in = cin // 2 if stride == 1 else cin
        branch_out = cout - branch_in
        mid = cout // 2
        act = _act(se)
        if xception:
            main: list[nn.Module] = [
                _dw(branch_in, 3, stride), _bn(branch_in, affine), _pw(branch_in, mid),
                _bn(mid, affine), _act(se),
                _dw(mid, 3, 1), _bn(mid, affine), _pw(mid, mid), _bn(mid, affine), _act(se),
                _dw(mid, 3, 1), _bn(mid, affine), _pw(mid, branch_out), _bn(branch_out, affine),
                act,
            ]
        else:
            main = [
                _pw(branch_in, mid), _bn(mid, affine), _act(se),
                _dw(mid, k, stride), _bn(mid, affine),
                _pw(mid, branch_out), _bn(branch_out, affine), act,
            ]
        if se:
            main.append(SqueezeExcite(branch_out))
        self.main = nn.Sequential(*main)
        self.proj: nn.Module | None = None
        if stride == 2:
            self.proj = nn.Sequential(
                _dw(cin, k if not xception else 3, stride), _bn(cin, affine),
                _pw(cin, cin), _bn(cin, affine), _act(se),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is None:
            x_proj, x_main = channel_split_shuffle(x)
            return torch.cat((x_proj, self.main(x_main)), 1)
        return torch.cat((self.proj(x), self.main(x)), 1)


class Downsample(nn.Module):
    """A stride-2 candidate plus a projection shortcut (ResNet-D style): ``op(x) +
    BN(conv1x1(avgpool2x2(x)))``. Stride-2 layers otherwise have no residual path, so whatever
    candidate is sampled there decides what every later channel means; in a supernet the
    shortcut (shared by all candidates of the layer) keeps one meaning (bench/supernet_learning.py)."""

    def __init__(self, op: nn.Module, cin: int, cout: int, affine: bool) -> None:
        super().__init__()
        self.op = op
        self.short = nn.Sequential(
            nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), _pw(cin, cout),
            _bn(cout, affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) + self.short(x)  # type: ignore[no-any-return]


def build_op(name: str, cin: int, cout: int, stride: int, *, affine: bool = True,
             shortcut: bool = False) -> nn.Module:
    """Builds the registered op ``name`` mapping cin→cout channels at ``stride`` (with a
    projection shortcut when ``shortcut`` and the stride is 2)."""
    if shortcut and stride == 2:
        return Downsample(build_op(name, cin, cout, stride, affine=affine), cin, cout, affine)
    d = OPS.get(name)
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if d.family == "SEP":
        return SepConv(cin, cout, stride, d.kernel, d.se, affine)
    if d.family == "MB":
        return MBConv(cin, cout, stride, d.kernel, d.expand, d.se, affine)
    return ShuffleBlock(cin, cout, stride, d.kernel, d.family == "ChoiceX", d.se, affine)


def op_names() -> list[str]:
    return OPS.names()


"""The fixed macro-structure: stem, learnable layers with their shapes, and head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hurricane.nets.ops import make_divisible
from hurricane.spec import BackboneSpec


@dataclass(frozen=True)
class LayerShape:
    """Where a learnable layer sits and the tensor shapes it sees."""

    index: int
    stage: int
    cin: int
    cout: int
    stride: int
    in_hw: int
    shortcut: bool = False  # a projection shortcut around the candidate (stride-2 layers)

    @property
    def out_hw(self) -> int:
        return self.in_hw // self.stride

    @property
    def key(self) -> tuple[int, int, int, int, bool]:
        """Layers with equal keys run identical ops on identical shapes."""
        return (self.cin, self.cout, self.stride, self.in_hw, self.shortcut)


@dataclass(frozen=True)
class Layout:
    """All shapes of a backbone, derived from a BackboneSpec."""

    input_size: int
    stem_channels: int
    head_channels: int
    num_classes: int
    dropout: float
    layers: tuple[LayerShape, ...]

    @classmethod
    def from_spec(cls, spec: BackboneSpec) -> Layout:
        w = spec.width_mult
        stem = make_divisible(spec.stem_channels * w)
        hw = spec.input_size // 2
        cin = stem
        layers: list[LayerShape] = []
        for stage, (n, c) in enumerate(zip(spec.layers_per_stage, spec.stage_channels, strict=True)):
            cout = make_divisible(c * w)
            for j in range(n):
                stride = 2 if j == 0 else 1
                layers.append(LayerShape(len(layers), stage, cin, cout, stride, hw,
                                         shortcut=spec.downsample_shortcut and stride == 2))
                hw //= stride
                cin = cout
        return cls(
            input_size=spec.input_size,
            stem_channels=stem,
            head_channels=make_divisible(spec.head_channels * max(w, 1.0)),
            num_classes=spec.num_classes,
            dropout=spec.dropout,
            layers=tuple(layers),
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def last_channels(self) -> int:
        return self.layers[-1].cout


def build_stem(layout: Layout, *, affine: bool = True) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, layout.stem_channels, 3, 2, 1, bias=False),
        nn.BatchNorm2d(layout.stem_channels, affine=affine),
        nn.ReLU(inplace=True),
    )


class Head(nn.Module):
    """Last 1x1 conv, global average pool, dropout, classifier."""

    def __init__(self, layout: Layout, *, affine: bool = True) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(layout.last_channels, layout.head_channels, 1, bias=False),
            nn.BatchNorm2d(layout.head_channels, affine=affine),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(layout.dropout)
        self.fc = nn.Linear(layout.head_channels, layout.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.fc(self.dropout(x))

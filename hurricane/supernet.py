"""SPOS supernet over per-layer candidate lists, single-path forward, and standalone subnets."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from hurricane.arch import Arch, SearchSpace
from hurricane.backbone import Head, Layout, build_stem
from hurricane.ops import build_op


class Network(nn.Module):
    """A standalone network for one architecture (what a user deploys)."""

    def __init__(self, layout: Layout, arch: Arch, *, affine: bool = True) -> None:
        super().__init__()
        if len(arch) != layout.num_layers:
            raise ValueError(
                f"architecture has {len(arch)} layers, backbone has {layout.num_layers}"
            )
        self.layout = layout
        self.arch = arch
        self.stem = build_stem(layout, affine=affine)
        self.layers = nn.Sequential(
            *(build_op(op, s.cin, s.cout, s.stride, affine=affine)
              for op, s in zip(arch.ops, layout.layers, strict=True))
        )
        self.head = Head(layout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class Supernet(nn.Module):
    """All candidates of every layer; ``forward(x, arch)`` runs the single path ``arch``.

    BatchNorm has no affine parameters (SPOS); unsampled paths take no part in the graph, so
    they get no gradient, and optimizers that skip ``grad is None`` leave them untouched.
    """

    def __init__(self, layout: Layout, space: SearchSpace) -> None:
        super().__init__()
        if space.num_layers != layout.num_layers:
            raise ValueError(
                f"search space has {space.num_layers} layers, backbone has {layout.num_layers}"
            )
        self.layout = layout
        self.space = space
        self.stem = build_stem(layout, affine=False)
        self.layers: list[nn.ModuleDict] = nn.ModuleList(  # type: ignore[assignment]
            nn.ModuleDict({op: build_op(op, s.cin, s.cout, s.stride, affine=False) for op in c})
            for c, s in zip(space.choices, layout.layers, strict=True)
        )
        self.head = Head(layout, affine=False)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for layer, op in zip(self.layers, arch.ops, strict=True):
            x = layer[op](x)
        return self.head(x)

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        return [self.stem, *(layer[op] for layer, op in zip(self.layers, arch.ops, strict=True)),
                self.head]

    def path_parameters(self, arch: Arch) -> Iterable[nn.Parameter]:
        for m in self.path_modules(arch):
            yield from m.parameters()

    def extract(self, arch: Arch) -> Network:
        """A standalone copy of ``arch`` with the supernet's weights and BN statistics."""
        self.space.check(arch)
        net = Network(self.layout, arch, affine=False)
        net.stem.load_state_dict(self.stem.state_dict())
        for i, op in enumerate(arch.ops):
            net.layers[i].load_state_dict(self.layers[i][op].state_dict())
        net.head.load_state_dict(self.head.state_dict())
        net.train(self.training)
        return net


def _bn_layers(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for mod in modules for m in mod.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    arch: Arch | None = None,
) -> None:
    """Re-estimates BatchNorm statistics of a path from training batches (exact averages).

    Only the BN layers on ``arch``'s path are reset, so recalibrating one candidate never
    disturbs another's statistics beyond the shared stem and head.
    """
    mods = model.path_modules(arch) if isinstance(model, Supernet) and arch is not None else [model]
    bns = _bn_layers(mods)
    saved = [(bn, bn.momentum) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
    was_training = model.training
    model.train()
    try:
        for x in batches:
            model(x, arch) if isinstance(model, Supernet) else model(x)
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.train(was_training)

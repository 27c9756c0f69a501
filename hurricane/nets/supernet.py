"""Single-path supernet over per-layer candidate lists, its weight sharing, and standalone subnets.

Sharing (``Supernet(..., sharing=...)``), measured in bench/supernet_remedies.py and
bench/supernet_ranking.py:

- ``none``: every candidate owns its weights (plain SPOS).
- ``family`` (the default of searches): within a layer, the candidates of one family (SEP,
  MB, Choice, ChoiceX) compute their convolutions from one weight tensor per role, OFA-style: a
  candidate takes the leading input/output channels it needs (its expansion) and the centre
  k x k of the largest kernel.
  BatchNorm statistics and squeeze-excite stay per candidate; the stride-2 projection shortcut
  (``backbone.downsample_shortcut``) is one convolution for the whole layer.
- ``layer``: ``family``, and every candidate of a layer writes its output channels through one
  layer-wide projection (its last pointwise convolutions are row/column slices of it), so the
  features a stride-2 layer hands on mean the same whichever family was sampled.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Head, Layout, build_stem
from hurricane.nets.ops import OPS, Downsample, ShuffleBlock, build_op

SHARING: tuple[str, ...] = ("none", "family", "layer")


class SlicedConv(nn.Module):
    """A bias-free convolution whose weight is a slice of a shared bank tensor: output rows
    ``row:row+out``, the leading ``in`` input channels and the centre ``k x k`` of the kernel.
    The bank is owned (registered) by the supernet; this module only refers to it."""

    def __init__(self, conv: nn.Conv2d, bank: nn.Parameter, row: int = 0) -> None:
        super().__init__()
        self.bank = [bank]  # not a registered parameter: one owner, no duplicate in state_dict
        self.out, self.cin = conv.weight.shape[0], conv.weight.shape[1]
        self.k = conv.weight.shape[2]
        self.row = row
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups

    def weight(self) -> torch.Tensor:
        b = self.bank[0]
        off = (b.shape[2] - self.k) // 2
        return b[self.row:self.row + self.out, :self.cin, off:off + self.k, off:off + self.k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), None, self.stride, self.padding, 1, self.groups)


def _convs(module: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The bias-free convolutions of a candidate, in order (squeeze-excite's have a bias)."""
    return [(n, m) for n, m in module.named_modules()
            if isinstance(m, nn.Conv2d) and m.bias is None]


def _output_convs(module: nn.Module) -> dict[str, int]:
    """name -> first output channel, for the convolutions that write a candidate's output."""
    convs = _convs(module)
    if not isinstance(module, ShuffleBlock):
        return {convs[-1][0]: 0}
    main = [n for n, _ in convs if n.startswith("main.")][-1]
    if module.proj is None:  # stride 1: [identity half, main]
        c = dict(convs)[main].weight.shape[0]
        return {main: c}
    proj = [n for n, _ in convs if n.startswith("proj.")][-1]
    return {proj: 0, main: dict(convs)[proj].weight.shape[0]}


def _set(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)


def share_layer(candidates: dict[str, nn.Module], sharing: str) -> dict[str, torch.Tensor]:
    """Replaces the candidates' convolutions by slices of shared banks (returned by role name,
    each as large as its largest user); ``none`` shares nothing."""
    if sharing not in SHARING:
        raise ValueError(f"sharing must be one of {', '.join(SHARING)}, got {sharing!r}")
    if sharing == "none":
        return {}
    plan: dict[str, list[tuple[nn.Module, str, nn.Conv2d, int]]] = {}
    for op, m in candidates.items():
        fam = OPS.get(op).family
        body, pre = (m.op, "op.") if isinstance(m, Downsample) else (m, "")
        convs = _convs(body)
        outs = _output_convs(body) if sharing == "layer" else {}
        for pos, (name, conv) in enumerate(convs):
            role = "out" if name in outs else f"{fam}_{len(convs) - pos}"
            plan.setdefault(role, []).append((m, pre + name, conv, outs.get(name, 0)))
        if isinstance(m, Downsample):  # the shortcut: one for the whole layer
            short = m.short[1]
            assert isinstance(short, nn.Conv2d)
            plan.setdefault("short", []).append((m, "short.1", short, 0))
    banks: dict[str, torch.Tensor] = {}
    for role, users in plan.items():
        shape = [max(row + c.weight.shape[0] for _, _, c, row in users),
                 *(max(c.weight.shape[d] for _, _, c, _ in users) for d in (1, 2, 3))]
        bank = torch.empty(shape)
        # Kaiming-uniform over the bank, rescaled to the largest user's initial range
        _, _, big, _ = max(users, key=lambda u: u[2].weight.numel())
        nn.init.kaiming_uniform_(bank, a=5 ** 0.5)
        bank.mul_(big.weight.detach().abs().max() / bank.abs().max().clamp_min(1e-12))
        banks[role] = nn.Parameter(bank)
        for m, name, conv, row in users:
            _set(m, name, SlicedConv(conv, banks[role], row))  # type: ignore[arg-type]
    return banks


def _overlap_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """Copies the overlap of two bank tensors: leading channels, centred kernels."""
    idx_d, idx_s = [], []
    for d, (a, b) in enumerate(zip(dst.shape, src.shape, strict=True)):
        n = min(a, b)
        if d >= 2:  # kernel dimensions: centred
            idx_d.append(slice((a - n) // 2, (a - n) // 2 + n))
            idx_s.append(slice((b - n) // 2, (b - n) // 2 + n))
        else:
            idx_d.append(slice(0, n))
            idx_s.append(slice(0, n))
    dst[tuple(idx_d)] = src[tuple(idx_s)]


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
            *(build_op(op, s.cin, s.cout, s.stride, affine=affine, shortcut=s.shortcut)
              for op, s in zip(arch.ops, layout.layers, strict=True))
        )
        self.head = Head(layout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class Supernet(nn.Module):
    """All candidates of every layer; ``forward(x, arch)`` runs the single path ``arch``.

    BatchNorm has no affine parameters (SPOS); unsampled paths take no part in the graph, so
    they get no gradient, and optimizers that skip ``grad is None`` leave them untouched.
    ``sharing`` (module docstring) decides which candidates compute from the same weights.
    """

    def __init__(self, layout: Layout, space: SearchSpace, *, sharing: str = "none") -> None:
        super().__init__()
        if space.num_layers != layout.num_layers:
            raise ValueError(
                f"search space has {space.num_layers} layers, backbone has {layout.num_layers}"
            )
        self.layout = layout
        self.space = space
        self.stem = build_stem(layout, affine=False)
        self.layers: list[nn.ModuleDict] = nn.ModuleList(  # type: ignore[assignment]
            nn.ModuleDict({op: build_op(op, s.cin, s.cout, s.stride, affine=False,
                                      shortcut=s.shortcut) for op in c})
            for c, s in zip(space.choices, layout.layers, strict=True)
        )
        self.head = Head(layout, affine=False)
        self.sharing = sharing
        self.banks = nn.ModuleList(
            nn.ParameterDict(share_layer(dict(layer.items()), sharing))  # type: ignore[arg-type]
            for layer in self.layers)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for layer, op in zip(self.layers, arch.ops, strict=True):
            x = layer[op](x)
        return self.head(x)

    def path_modules(self, arch: Arch) -> list[nn.Module]:
        return [self.stem, *(layer[op] for layer, op in zip(self.layers, arch.ops, strict=True)),
                self.head]

    def path_parameters(self, arch: Arch) -> Iterable[nn.Parameter]:
        """The parameters ``arch``'s forward uses (shared banks once each)."""
        seen: set[int] = set()
        for m in self.path_modules(arch):
            own = list(m.parameters())
            own += [s.bank[0] for s in m.modules() if isinstance(s, SlicedConv)]
            for p in own:
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p

    def load_overlapping(self, state: dict[str, torch.Tensor]) -> int:
        """Loads every tensor of ``state`` this supernet has under the same name: equal shapes
        whole, shared banks of another size by their overlap (leading channels, centred
        kernels), so a stage's supernet inherits another's weights whatever their spaces.
        Returns how many tensors were taken."""
        own = self.state_dict()
        whole = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(whole, strict=False)
        n = len(whole)
        with torch.no_grad():
            for k, v in state.items():
                if (k.startswith("banks.") and k in own and k not in whole
                        and own[k].dim() == v.dim()):
                    _overlap_copy(self.get_parameter(k), v)
                    n += 1
        return n

    def extract(self, arch: Arch) -> Network:
        """A standalone copy of ``arch`` with the supernet's weights and BN statistics."""
        self.space.check(arch)
        net = Network(self.layout, arch, affine=False)
        net.stem.load_state_dict(self.stem.state_dict())
        for i, op in enumerate(arch.ops):
            cand = self.layers[i][op]
            state = cand.state_dict()
            for name, m in cand.named_modules():
                if isinstance(m, SlicedConv):
                    state[f"{name}.weight"] = m.weight().detach().clone()
            net.layers[i].load_state_dict(state)
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

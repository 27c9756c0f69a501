"""FLOPs (multiply-adds, as in the HURRICANE paper) and parameter counts of ops and networks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hurricane.nets.arch import Arch
from hurricane.nets.backbone import Layout
from hurricane.nets.oppool import OPS
from hurricane.nets.ops import build_op


@dataclass(frozen=True)
class Cost:
    macs: int  # multiply-adds of one forward pass at batch 1
    params: int


def count(module: nn.Module, shape: tuple[int, ...]) -> Cost:
    """Counts with torch's flop counter (convs and matmuls; it reports 2 FLOPs per MAC)."""
    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(shape))
    return Cost(counter.get_total_flops() // 2, sum(p.numel() for p in module.parameters()))


@lru_cache(maxsize=4096)
def op_cost(op: str, cin: int, cout: int, stride: int, hw: int, shortcut: bool = False) -> Cost:
    """Cost of ``op`` on a 1×cin×hw×hw input (with the stride-2 projection shortcut)."""
    return count(build_op(op, cin, cout, stride, shortcut=shortcut), (1, cin, hw, hw))


def layer_summary(layout: Layout, arch: Arch) -> list[dict[str, Any]]:
    """Each learnable layer of ``arch``: its op and the op's hyper-parameters (kernel,
    expansion, squeeze-excite), the shapes it sees, and its multiply-adds and parameters."""
    out = []
    for op, s in zip(arch.ops, layout.layers, strict=True):
        d = OPS.get(op)
        c = op_cost(op, s.cin, s.cout, s.stride, s.in_hw, s.shortcut)
        out.append({"index": s.index, "op": op, "family": d.family, "kernel": d.kernel,
                    "expansion": d.expand, "se": d.se, "stride": s.stride, "cin": s.cin,
                    "cout": s.cout, "hw": s.in_hw, "out_hw": s.out_hw, "shortcut": s.shortcut,
                    "macs": c.macs, "params": c.params})
    return out


def network_cost(net: nn.Module, input_size: int) -> Cost:
    """The whole network's cost on one 3×input_size×input_size image (stem and head too)."""
    return count(net, (1, 3, input_size, input_size))

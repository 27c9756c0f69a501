"""FLOPs (multiply-adds, as in the HURRICANE paper) and parameter counts of ops and networks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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

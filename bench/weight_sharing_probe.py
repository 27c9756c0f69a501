"""Probe: do weight-shared (OFA-style) MB candidates make the stride-2 layers learnable?

The demo backbone (examples/digits-cpu.yaml, 600 iterations, SPOS recipe); stride-1 layers
search all 11 demo ops; the stride-2 layers search 6 MB candidates (kernel 3/5/7 x expansion
3/6) at layer 0 only or at all four, the other stride-2 layers fixed to MB_3_3. Candidates
are independent (today's supernet), independent but initialised from one weight (`align`), or
tied (`tie`): every MB_k_e candidate of a layer runs centre k x k of MB_7_6's depthwise kernel
and its first cin*e expansion channels (own BatchNorm statistics), so each step trains the
shared weights. Scores 10 random architectures through the supernet after BN recalibration.
The first probe for issue 15; the library now does this (and more) with `Supernet(sharing=...)`:
bench/supernet_remedies.py measures it.

    python bench/weight_sharing_probe.py --out bench/results/weight_sharing_probe.json
"""
import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _results import emit
from torch import nn

from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.supernet import Supernet, recalibrate_bn
from hurricane.nets.train import evaluate, linear_lr, param_groups, step_seed
from hurricane.runs.steps.common import data_of
from hurricane.spec import read_spec_file

MB = ("MB_3_3", "MB_5_3", "MB_7_3", "MB_3_6", "MB_5_6", "MB_7_6")
CONFIGS = (["--all", "0"], ["--all", "0", "--align", "1"], ["--all", "0", "--tie", "1"],
           ["--all", "1"], ["--all", "1", "--align", "1"], ["--all", "1", "--tie", "1"])
ROOT = Path(__file__).resolve().parents[1]


class Tied(nn.Module):
    """MB_k_e (stride 2, ReLU, no SE) computed from MB_7_6's weights: the first cin*e
    expansion channels and the centre k x k of the depthwise kernel; own BN statistics."""

    def __init__(self, big: nn.Sequential, op: str) -> None:
        super().__init__()
        self.big = [big]  # not registered: the owner is the MB_7_6 candidate
        self.k, self.e = int(op.split("_")[1]), int(op.split("_")[2])
        mid = big[0].weight.shape[0] * self.e // 6
        self.bns = nn.ModuleList(nn.BatchNorm2d(c, affine=False)
                                 for c in (mid, mid, big[6].weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.big[0]
        mid = b[0].weight.shape[0] * self.e // 6
        off, k = (7 - self.k) // 2, self.k
        h = F.relu(self.bns[0](F.conv2d(x, b[0].weight[:mid])))
        dw = b[3].weight[:mid, :, off:off + k, off:off + k]
        h = F.relu(self.bns[1](F.conv2d(h, dw, stride=2, padding=k // 2, groups=mid)))
        return self.bns[2](F.conv2d(h, b[6].weight[:, :mid]))  # type: ignore[no-any-return]


def align(net: Supernet, space: SearchSpace) -> None:
    """Each MB candidate starts from slices of MB_7_6's weights (then trains on its own)."""
    with torch.no_grad():
        for i, c in enumerate(space.choices):
            if c != MB:
                continue
            big = net.layers[i]["MB_7_6"].body
            for op in MB[:-1]:
                b = net.layers[i][op].body
                k, mid = int(op.split("_")[1]), b[0].weight.shape[0]
                off = (7 - k) // 2
                b[0].weight.copy_(big[0].weight[:mid])
                b[3].weight.copy_(big[3].weight[:mid, :, off:off + k, off:off + k])
                b[6].weight.copy_(big[6].weight[:, :mid])


def tie(net: Supernet, space: SearchSpace) -> None:
    for i, c in enumerate(space.choices):
        if c == MB:
            big = net.layers[i]["MB_7_6"].body
            for op in MB[:-1]:
                net.layers[i][op] = Tied(big, op)


def run_one(a: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    spec = read_spec_file(ROOT / "examples" / "digits-cpu.yaml")
    spec = spec.model_copy(update={"backbone": spec.backbone.model_copy(
        update={"downsample_shortcut": False})})  # as measured: the paper's plain ops
    layout = Layout.from_spec(spec.backbone)
    data = data_of(spec)
    ops = tuple(spec.space.ops or ())
    choices = [MB if s.stride == 2 and (s.index == 0 or a.all) else ("MB_3_3",)
               if s.stride == 2 else ops for s in layout.layers]
    space = SearchSpace(tuple(choices))
    net = Supernet(layout, space)
    if a.align:
        align(net, space)
    if a.tie:
        tie(net, space)
    opt = torch.optim.SGD(param_groups(net, 4e-5), lr=0.2, momentum=0.9)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    hist, rec, t0 = [], [], time.time()
    for step in range(600):
        for g in opt.param_groups:
            g["lr"] = linear_lr(0.2, step, 600)
        x, y = data.train.train_batch(step, 64, seed=0)
        torch.manual_seed(step_seed(0, step, 1))
        net.train()
        loss = ce(net(x, space.sample(random.Random(step_seed(0, step, 2)))), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        rec.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            hist.append(round(statistics.fmean(rec[-100:]), 3))
    bnb = [data.train.train_batch(i, 128, seed=7919)[0] for i in range(4)]
    r = random.Random(5)
    accs = []
    for _ in range(10):
        arch = space.sample(r)
        recalibrate_bn(net, bnb, arch=arch)
        accs.append(evaluate(net, data.val, forward=lambda x, arch=arch: net(x, arch)))
    return {"align": a.align, "all": a.all, "tie": a.tie, "out": None, "hist": hist,
            "mean": round(statistics.fmean(accs), 3), "min": min(accs), "max": max(accs),
            "s": round(time.time() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--align", type=int, default=0)
    ap.add_argument("--all", type=int, default=0, help="all four stride-2 layers (else layer 0)")
    ap.add_argument("--tie", type=int, default=0)
    ap.add_argument("--out", type=Path, help="run every configuration (one process each) and "
                    "write JSON here")
    a = ap.parse_args()
    if not a.out:
        print(json.dumps(run_one(a)), flush=True)
        return
    runs = []
    for cfg in CONFIGS:
        out = subprocess.run([sys.executable, __file__, *cfg], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        runs.append(json.loads(out))
        print(out, file=sys.stderr, flush=True)
    doc = {"spec": "examples/digits-cpu.yaml", "iterations": 600, "random_archs": 10,
           "runs": runs, "machine": machine_info("torch"),
           "command": "python bench/weight_sharing_probe.py --out " + str(a.out)}
    emit(doc, a.out)


if __name__ == "__main__":
    main()

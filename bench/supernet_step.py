"""Supernet single-path training throughput vs training the same subnets as fixed modules.

Both sides train the same K sampled architectures with the same optimizer recipe (SGD,
momentum, SPOS weight decay groups), on the same synthetic batches, alternating in short
rounds so that machine noise hits both alike. The supernet side is what `stage1` runs:
one optimizer over all supernet weights, a different path every step. Prints JSON.

    python bench/supernet_step.py [--out bench/results/supernet_step.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import time
from pathlib import Path

import torch
from _results import emit
from torch import nn

from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.oppool import OPS
from hurricane.nets.supernet import Network, Supernet
from hurricane.nets.train import param_groups
from hurricane.spec import BackboneSpec


def make_opt(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups(model, 4e-5), lr=0.05, momentum=0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--archs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=8, help="steps per side per round")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the GPU check: --device cuda "
                    "--bf16 --input 224 --batch 128)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last (CUDA)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bb = BackboneSpec(input_size=args.input, num_classes=100, layers_per_stage=(2, 2, 4, 2),
                      stage_channels=(32, 64, 128, 256), stem_channels=16, head_channels=512)
    layout = Layout.from_spec(bb)
    space = SearchSpace.uniform(OPS.names(), layout.num_layers)  # the full 32-op pool
    torch.manual_seed(0)
    supernet = Supernet(layout, space)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(args.archs)]
    fixed = [Network(layout, a, affine=False) for a in archs]  # same modules as the path
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    dev = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    for m in (supernet, *fixed):
        m.to(dev, memory_format=fmt)  # type: ignore[call-overload]
    sup_opt = make_opt(supernet)  # optimizers over the parameters where they now live
    fixed_opts = [make_opt(m) for m in fixed]
    x = torch.randn(args.batch, 3, args.input, args.input, device=dev).contiguous(
        memory_format=fmt)
    y = torch.randint(0, 100, (args.batch,), device=dev)

    def amp() -> contextlib.AbstractContextManager[object]:
        return (torch.autocast(dev.type, dtype=torch.bfloat16) if args.bf16
                else contextlib.nullcontext())

    def sup_step(i: int) -> None:
        with amp():
            loss = loss_fn(supernet(x, archs[i % len(archs)]), y)
        sup_opt.zero_grad(set_to_none=True)
        loss.backward()
        sup_opt.step()

    def fixed_step(i: int) -> None:
        k = i % len(archs)
        with amp():
            loss = loss_fn(fixed[k](x), y)
        fixed_opts[k].zero_grad(set_to_none=True)
        loss.backward()
        fixed_opts[k].step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    supernet.train()
    for m in fixed:
        m.train()
    for i in range(len(archs)):  # warm-up: allocate momentum buffers, caches
        sup_step(i)
        fixed_step(i)
    sup_t, fix_t = [], []
    step = 0
    for r in range(args.rounds):
        order = [(sup_step, sup_t), (fixed_step, fix_t)]
        if r % 2:
            order.reverse()
        for fn, acc in order:
            sync()
            t = time.perf_counter()
            for i in range(args.steps):
                fn(step + i)
            sync()
            acc.append((time.perf_counter() - t) / args.steps)
        step += args.steps
    sup_s, fix_s = statistics.median(sup_t), statistics.median(fix_t)
    result = {
        "benchmark": "supernet_step",
        "ratio_supernet_to_fixed": fix_s / sup_s,
        "goal": ">= 0.9",
        "supernet_images_per_s": args.batch / sup_s,
        "fixed_images_per_s": args.batch / fix_s,
        "supernet_step_ms_median": sup_s * 1e3,
        "fixed_step_ms_median": fix_s * 1e3,
        "rounds_ms": {"supernet": [t * 1e3 for t in sup_t], "fixed": [t * 1e3 for t in fix_t]},
        "config": {"archs": args.archs, "rounds": args.rounds, "steps_per_round": args.steps,
                   "batch": args.batch, "input": args.input, "layers": layout.num_layers,
                   "ops_per_layer": len(OPS), "threads": args.threads, "device": args.device,
                   "bf16": args.bf16, "channels_last": args.channels_last,
                   "supernet_params": sum(p.numel() for p in supernet.parameters())},
        "machine": machine_info("torch"),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()

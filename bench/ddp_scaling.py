"""Supernet training throughput at 1 and 2 processes (torchrun, gloo on CPU): images/s of the
same global batch, with BatchNorm synchronised across processes (the default: trains like one
process) and with per-process BatchNorm. Each process uses one thread. Prints JSON.

    python bench/ddp_scaling.py [--out bench/results/ddp_scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import emit

from hurricane.data.datasets import Split
from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.distributed import finish, place
from hurricane.nets.oppool import OPS
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import TrainConfig, train
from hurricane.runs.steps import path_sampler
from hurricane.spec import BackboneSpec


def worker(args: argparse.Namespace) -> None:
    """One training process (run by torchrun, or alone for the 1-process figure)."""
    torch.set_num_threads(1)
    bb = BackboneSpec(input_size=args.input, num_classes=100, layers_per_stage=(2, 2, 4, 2),
                      stage_channels=(32, 64, 128, 256), stem_channels=16, head_channels=512)
    layout = Layout.from_spec(bb)
    space = SearchSpace.uniform(OPS.names(), layout.num_layers)  # the full 32-op pool
    where = place("cpu")
    gen = torch.Generator().manual_seed(0)
    n = args.batch * 8
    data = Split(torch.randint(0, 256, (n, 3, args.input, args.input), dtype=torch.uint8,
                               generator=gen),
                 torch.randint(0, 100, (n,), generator=gen), input_size=args.input,
                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), augment=True, flip=True)
    torch.manual_seed(0)
    net = Supernet(layout, space)
    cfg = TrainConfig(iterations=args.warmup + args.steps, batch_size=args.batch, lr=0.05,
                      checkpoint_every=10**9, threads=1, sync_bn=args.sync_bn)
    # warm-up steps first (allocator, gloo connections), then the timed ones
    train(net, data, TrainConfig(**{**cfg.__dict__, "iterations": args.warmup}),
          forward=path_sampler(space, 0), where=where)
    t0 = time.perf_counter()
    res = train(net, data, cfg, forward=path_sampler(space, 0), where=where,
                stop_after=args.warmup + args.steps)
    seconds = time.perf_counter() - t0
    if where.main:
        Path(args.result).write_text(json.dumps({
            "processes": where.world, "sync_bn": args.sync_bn, "steps": res.steps,
            "seconds": round(seconds, 3),
            "images_per_s": round(args.batch * (args.warmup + args.steps) / seconds, 2)}))
    finish()


def run(procs: int, sync_bn: bool, args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        result = Path(d) / "r.json"
        own = [__file__, "--worker", "--result", str(result), "--batch", str(args.batch),
               "--input", str(args.input), "--steps", str(args.steps), "--warmup",
               str(args.warmup), *(["--sync-bn"] if sync_bn else [])]
        head = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc-per-node={procs}"] if procs > 1 else [sys.executable])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([*head, *own], check=True, env=env, capture_output=True, text=True,
                       timeout=1800)
        return json.loads(result.read_text())  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--sync-bn", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64, help="global batch")
    ap.add_argument("--input", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2, help="runs per configuration (best kept)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[str, list[dict[str, object]]] = {}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every configuration
        for name, procs, sync in (("1 process", 1, False), ("2 processes, synced BN", 2, True),
                                  ("2 processes, local BN", 2, False)):
            runs.setdefault(name, []).append(run(procs, sync, args))
    best = {k: max(float(r["images_per_s"]) for r in v) for k, v in runs.items()}  # type: ignore[arg-type]
    base = best["1 process"]
    out = {"bench": "ddp_scaling", "machine": machine_info("torch"),
           "command": "python bench/ddp_scaling.py " + " ".join(sys.argv[1:]),
           "setup": {"supernet": "10 layers × 32 ops, 64×64 input", "global_batch": args.batch,
                     "threads_per_process": 1, "steps": args.steps, "warmup": args.warmup,
                     "backend": "gloo"},
           "images_per_s": best, "runs": runs,
           "speedup_2_processes": {k: round(v / base, 3) for k, v in best.items()
                                   if k != "1 process"},
           "goal": ">= 1.6x at 2 processes on 2 cores"}
    emit(out, args.out)


if __name__ == "__main__":
    main()

"""Does the single-path supernet learn, and what stops it? Ablations on the demo's backbone.

Each configuration trains a supernet with the library's ``train()`` (SPOS recipe, the demo
spec's iterations, batch and lr) over a space that differs only in which layers are searched
and over which candidates, then scores 10 random architectures of that space through it (BN
recalibrated, validation split) exactly as a search's quality check does. Prints JSON; --out
writes it.

    python bench/supernet_learning.py --out bench/results/supernet_learning.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _results import emit

from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import train
from hurricane.runs.steps.common import SupernetScorer, data_of, quality_verdict, train_config
from hurricane.runs.steps.oneshot import path_sampler
from hurricane.spec import read_spec_file

ROOT = Path(__file__).resolve().parents[1]
FIXED = "MB_3_3"


def spaces(layout: Layout, ops: tuple[str, ...]) -> dict[str, SearchSpace]:
    """name -> space: which layers vary, over which candidates (the rest fixed to MB_3_3)."""
    s2 = [s.index for s in layout.layers if s.stride == 2]

    def make(rule: Any) -> SearchSpace:
        return SearchSpace(tuple(tuple(rule(s)) for s in layout.layers))

    out = {
        "all layers searched": make(lambda s: ops),
        "stride-2 layers fixed": make(lambda s: (FIXED,) if s.stride == 2 else ops),
        "stride-1 layers fixed": make(lambda s: ops if s.stride == 2 else (FIXED,)),
    }
    first = s2[0]
    for label, cands in [("2 MB", ("MB_3_3", "MB_5_3")), ("SEP_3, SEP_5_SE, MB_3_3",
                         ("SEP_3", "SEP_5_SE", "MB_3_3")),
                         ("4 MB", ("MB_3_1", "MB_3_3", "MB_5_3", "MB_7_6_SE")),
                         ("5 Choice", ("Choice_3", "Choice_5", "Choice_7_SE", "ChoiceX",
                                       "ChoiceX_SE")), ("all 11", ops)]:
        out[f"only layer {first} (stride 2) varies: {label}"] = make(
            lambda s, c=cands: c if s.index == first else (FIXED,) if s.stride == 2 else ops)
    for i in s2[1:]:
        out[f"only layer {i} (stride 2) varies: all 11"] = make(
            lambda s, i=i: ops if s.index == i else (FIXED,) if s.stride == 2 else ops)
    return out


def run(spec_path: Path, archs: int, only: str | None) -> dict[str, Any]:
    spec = read_spec_file(spec_path)
    # the diagnosis is of plain SPOS: the paper's stride-2 ops, no shortcut, nothing shared
    # (bench/supernet_remedies.py measures the remedies)
    spec = spec.model_copy(update={"backbone": spec.backbone.model_copy(
        update={"downsample_shortcut": False}), "supernet": spec.supernet.model_copy(
        update={"lr": 0.2})})
    layout = Layout.from_spec(spec.backbone)
    data = data_of(spec)
    cfg = train_config(spec.supernet, spec.seed)
    out: dict[str, Any] = {}
    for name, space in spaces(layout, tuple(spec.space.ops or ())).items():
        if only and only not in name:
            continue
        torch.manual_seed(spec.seed)
        net = Supernet(layout, space)
        t0 = time.perf_counter()
        res = train(net, data.train, cfg, forward=path_sampler(space, spec.seed),
                    description=name)
        scorer = SupernetScorer(net, data, spec)
        rng = random.Random(spec.seed + 104_729)
        accs = [scorer(space.sample(rng)) for _ in range(archs)] if space.size > 1 else [
            scorer(space.sample(rng))]
        q = quality_verdict(accs, num_classes=data.num_classes,
                            margin=spec.supernet.quality_margin)
        hist = [m for _, m in res.history]
        per100 = [round(statistics.fmean(hist[i:i + 10]), 3) for i in range(0, len(hist), 10)]
        out[name] = {"space_size": space.size, "loss_per_100_steps": per100,
                     "final_loss_100": per100[-1], "random_archs": len(accs),
                     "accuracy_mean": q["accuracy_mean"], "accuracy_min": q["accuracy_min"],
                     "accuracy_max": q["accuracy_max"], "learned": q["reliable"],
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return {"spec": str(spec_path.relative_to(ROOT)) if spec_path.is_relative_to(ROOT)
            else str(spec_path), "iterations": cfg.iterations, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "fixed_op": FIXED, "chance": round(1 / data.num_classes, 4),
            "configurations": out, "machine": machine_info("torch"),
            "command": "python bench/supernet_learning.py " + " ".join(sys.argv[1:])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "digits-cpu.yaml")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--only", help="run the configurations whose name contains this")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    result = run(args.spec, args.archs, args.only)
    emit(result, args.out)


if __name__ == "__main__":
    main()

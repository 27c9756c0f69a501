"""Which supernet recipe learns when every layer, stride-2 ones included, is searched?

bench/supernet_learning.py found the cause: stride-2 layers have no residual path, so the
candidate sampled there decides what every later channel means. This bench trains the
supernet with each remedy (the library's ``train()``, the spec's iterations, batch and lr) and
scores random architectures of the space through it exactly as a search's quality check does
(``supernet_quality``: BN recalibrated, validation split):

- ``sharing``: none (plain SPOS), family (OFA-style weights within a family), layer (family
  plus one output projection and shortcut per layer);
- ``shortcut``: the backbone's stride-2 projection shortcut (``backbone.downsample_shortcut``).

Spaces: bench/specs/two-stage.yaml's hardware-aware space of this CPU (Eq. 2, top 4 per
layer; profiled here, per backbone) at its 1,500 iterations, and the demo's plain 11-op space
(examples/digits-cpu.yaml, 600 iterations) at three learning rates.

    python bench/supernet_remedies.py --out bench/results/supernet_remedies.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _results import emit

from hurricane.latency.profiling import profile_table
from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import train
from hurricane.runs.steps.common import (
    data_of,
    layout_of,
    protocol_of,
    supernet_quality,
    target_profile,
    train_config,
)
from hurricane.runs.steps.measure import pool_space
from hurricane.runs.steps.oneshot import path_sampler
from hurricane.search.hwspace import hardware_space
from hurricane.spec import SearchSpec, read_spec_file

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [("none", False), ("none", True), ("family", True), ("layer", False), ("layer", True)]


def variant(spec: SearchSpec, sharing: str, shortcut: bool, lr: float | None = None) -> SearchSpec:
    sup: dict[str, Any] = {"sharing": sharing}
    if lr is not None:
        sup["lr"] = lr
    return spec.model_copy(update={
        "backbone": spec.backbone.model_copy(update={"downsample_shortcut": shortcut}),
        "supernet": spec.supernet.model_copy(update=sup)})


def space_of(spec: SearchSpec) -> SearchSpace:
    if spec.space.kind != "hardware":
        return pool_space(spec)
    sp = spec.space
    table = profile_table(layout_of(spec), pool_space(spec),
                          target_profile(spec, spec.devices[0].name), protocol_of(spec))
    return hardware_space(layout_of(spec), table, sp.ops, alpha=sp.alpha, top_p=sp.top_p,
                          explore_layers=sp.explore_layers, explore_rule=sp.explore_rule).space


def run_one(spec: SearchSpec, space: SearchSpace) -> dict[str, Any]:
    data = data_of(spec)
    cfg = train_config(spec.supernet, spec.seed)
    torch.manual_seed(spec.seed)
    net = Supernet(layout_of(spec), space, sharing=spec.supernet.sharing)
    t0 = time.perf_counter()
    res = train(net, data.train, cfg, forward=path_sampler(space, spec.seed),
                description=f"{spec.supernet.sharing}")
    q = supernet_quality(net, space, data, spec)
    assert q is not None
    hist = [m for _, m in res.history]
    return {"sharing": spec.supernet.sharing, "shortcut": spec.backbone.downsample_shortcut,
            "lr": cfg.lr, "iterations": cfg.iterations, "final_loss": round(res.final_loss, 3),
            "loss_first_last_10pct": [round(sum(hist[:max(1, len(hist) // 10)])
                                            / max(1, len(hist) // 10), 3),
                                      round(sum(hist[-max(1, len(hist) // 10):])
                                            / max(1, len(hist) // 10), 3)],
            "random_archs": q["archs"], "accuracy_mean": q["accuracy_mean"],
            "accuracy_min": q["accuracy_min"], "accuracy_max": q["accuracy_max"],
            "learned": q["reliable"], "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--only", choices=["two-stage", "demo"])
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    rows: list[dict[str, Any]] = []
    plan: list[tuple[str, Path, list[tuple[str, bool, float | None]]]] = [
        ("two-stage", ROOT / "bench" / "specs" / "two-stage.yaml",
         [(s, c, None) for s, c in RECIPES]),
        ("demo", ROOT / "examples" / "digits-cpu.yaml",
         [(s, c, lr) for s, c in RECIPES for lr in (0.2, 0.05)]
         + [("layer", True, 0.02)]),
    ]
    for name, path, runs in plan:
        if a.only and a.only != name:
            continue
        base = read_spec_file(path)
        spaces: dict[bool, SearchSpace] = {}
        for sharing, shortcut, lr in runs:
            spec = variant(base, sharing, shortcut, lr)
            if shortcut not in spaces:
                spaces[shortcut] = space_of(spec)
            row = {"space": name, "spec": str(path.relative_to(ROOT)),
                   "space_size": spaces[shortcut].size,
                   **run_one(spec, spaces[shortcut])}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    doc = {"benchmark": "supernet_remedies", "chance": 0.1, "runs": rows,
           "wall_seconds": round(time.time() - t0, 1), "machine": machine_info("torch"),
           "command": "python bench/supernet_remedies.py " + " ".join(sys.argv[1:])}
    emit(doc, a.out, indent=1)


if __name__ == "__main__":
    main()

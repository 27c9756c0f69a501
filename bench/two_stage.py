"""HURRICANE Table 5 at CPU scale: two-stage search vs SPOS under one latency budget.

Per seed, on the same hardware-aware space and budget (bench/specs/two-stage.yaml):
1. SPOS trains the supernet over all layers for ``supernet.iterations``; its final training
   loss level L (mean of the last ``stop_window`` steps) is recorded; evolution; retrain.
2. HURRICANE trains Stage 1 (layers t+1..n, 1..t fixed to a_win0) until its training loss
   reaches L (the paper: "we stop at the same level training loss as SPOS"), evolution → a_win1;
   Stage 2 (layers 1..t, later ones fixed to a_win1, starting from Stage 1's weights) until L
   again; evolution → a_win; both a_win1 (Stage 1 alone) and a_win are retrained.
Reported per seed and as mean ± std: supernet iterations and training seconds of each, the
ratio to SPOS, and the retrained top-1 of every winner. Prints JSON; --out writes it and a PNG.

    python bench/two_stage.py --out bench/results/two_stage.json
"""

from __future__ import annotations

import argparse
import logging
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import emit

from hurricane.machine import machine_info
from hurricane.nets.arch import Arch
from hurricane.progress import LogReporter, use_reporter
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search
from hurricane.runs.steps import data_of, retrain_arch, stage2_dir
from hurricane.spec import SearchSpec, read_spec_file
from hurricane.storage.store import LocalStore, search_key

ROOT = Path(__file__).resolve().parents[1]


def _train(store: LocalStore, sid: str, stage: str) -> dict[str, Any]:
    return store.get_json(search_key(sid, stage, "train.json"))  # type: ignore[no-any-return]


def _quality(train: dict[str, Any]) -> dict[str, Any] | None:
    """Random architectures through the trained supernet (the search's own quality check)."""
    q = train.get("quality")
    return None if q is None else {k: q[k] for k in ("archs", "accuracy_mean", "accuracy_std",
                                                     "accuracy_min", "accuracy_max", "reliable")}


def run_seed(base: SearchSpec, seed: int, store: LocalStore) -> dict[str, Any]:
    ex = InlineExecutor()
    spos = base.model_copy(update={"seed": seed, "strategy": "spos", "name": f"spos-{seed}"})
    t0 = time.perf_counter()
    sid, rep = run_search(spos, store, ex, f"spos-{seed}")
    spos_wall = time.perf_counter() - t0
    s1 = _train(store, sid, "stage1")
    window = [m for _, m in s1["loss_history"]][-max(1, base.supernet.stop_window // 10):]
    level = statistics.fmean(window)

    sup = base.supernet.model_copy(update={"stop_loss": level})
    hur = base.model_copy(update={"seed": seed, "strategy": "hurricane", "name": f"hur-{seed}",
                                  "supernet": sup})
    t0 = time.perf_counter()
    hid, hrep = run_search(hur, store, ex, f"hurricane-{seed}")
    hur_wall = time.perf_counter() - t0
    h1 = _train(store, hid, "stage1")
    dev = base.devices[0].name
    win1 = Arch.parse(hrep["devices"][dev]["stages"]["search1"])
    h2 = _train(store, hid, stage2_dir(win1))
    # Stage 1 alone: retrain its winner the same way
    _, stage1_only = retrain_arch(hur, win1, data_of(hur), store, f"bench/stage1-only-{seed}")
    spos_dev, hur_dev = rep["devices"][dev], hrep["devices"][dev]
    return {
        "seed": seed,
        "loss_level": level,
        "budget_ms": spos_dev["budget_ms"],
        "spos": {"iterations": s1["iterations"], "train_seconds": s1["train_seconds"],
                 "final_loss": s1["final_loss"], "top1": spos_dev["top1"],
                 "supernet_top1": spos_dev["supernet_top1"], "arch": spos_dev["arch"],
                 "latency_ms": spos_dev["predicted_latency_ms"], "wall_seconds": spos_wall,
                 "loss_history": s1["loss_history"], "quality": _quality(s1)},
        "stage1": {"iterations": h1["iterations"], "train_seconds": h1["train_seconds"],
                   "converged": h1["converged"], "top1": stage1_only["test_top1"],
                   "arch": str(win1), "a_win0": h1["a_win0"],
                   "loss_history": h1["loss_history"], "quality": _quality(h1)},
        "two_stage": {"iterations": h1["iterations"] + h2["iterations"],
                      "stage2_iterations": h2["iterations"], "stage2_converged": h2["converged"],
                      "train_seconds": h1["train_seconds"] + h2["train_seconds"],
                      "top1": hur_dev["top1"], "supernet_top1": hur_dev["supernet_top1"],
                      "arch": hur_dev["arch"], "latency_ms": hur_dev["predicted_latency_ms"],
                      "wall_seconds": hur_wall, "stage2_loss_history": h2["loss_history"],
                      "stage2_quality": _quality(h2)},
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def ms(xs: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                "min": min(xs), "max": max(xs)}

    out: dict[str, Any] = {}
    for k in ("spos", "stage1", "two_stage"):
        out[k] = {m: ms([r[k][m] for r in runs]) for m in ("iterations", "train_seconds", "top1")}
    for k in ("stage1", "two_stage"):
        out[k]["iteration_ratio_vs_spos"] = ms([r[k]["iterations"] / r["spos"]["iterations"]
                                                for r in runs])
        out[k]["time_ratio_vs_spos"] = ms([r[k]["train_seconds"] / r["spos"]["train_seconds"]
                                           for r in runs])
        out[k]["top1_minus_spos"] = ms([r[k]["top1"] - r["spos"]["top1"] for r in runs])
    out["spos"]["supernet_random_archs_accuracy"] = ms(
        [r["spos"]["quality"]["accuracy_mean"] for r in runs if r["spos"].get("quality")] or [0.0])
    out["goal_supernet"] = "random architectures >= 80% mean validation accuracy through the " \
        "SPOS supernet after its 1,500 iterations"
    out["goal_supernet_met"] = out["spos"]["supernet_random_archs_accuracy"]["min"] >= 0.8
    ratio = out["two_stage"]["iteration_ratio_vs_spos"]["mean"]
    out["goal"] = "two-stage <= 0.7x SPOS iterations at >= SPOS retrained top-1"
    out["goal_met"] = bool(ratio <= 0.7 and out["two_stage"]["top1"]["mean"]
                           >= out["spos"]["top1"]["mean"])
    return out


def plot(runs: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
    for r in runs:
        xs, ys = zip(*r["spos"]["loss_history"], strict=True)
        a.plot(xs, ys, color="tab:blue", alpha=0.6, label="SPOS" if r is runs[0] else None)
        xs, ys = zip(*r["stage1"]["loss_history"], strict=True)
        a.plot(xs, ys, color="tab:orange", alpha=0.8, label="Stage 1" if r is runs[0] else None)
        if r["two_stage"]["stage2_loss_history"]:
            off = r["stage1"]["iterations"]
            xs, ys = zip(*r["two_stage"]["stage2_loss_history"], strict=True)
            a.plot([x + off for x in xs], ys, color="tab:green", alpha=0.8,
                   label="Stage 2" if r is runs[0] else None)
        a.axhline(r["loss_level"], color="grey", lw=0.6, ls="--")
    a.set_xlabel("supernet iteration")
    a.set_ylabel("training loss (mean per 10 steps)")
    a.set_title("supernet training; dashed: SPOS's final loss level")
    a.legend()
    names = ["spos", "stage1", "two_stage"]
    labels = ["SPOS", "Stage 1", "Stage 1+2"]
    for ax, metric, title in ((b, "iterations", "supernet iterations"),
                              (c, "top1", "retrained top-1 (test)")):
        means = [summary[k][metric]["mean"] for k in names]
        stds = [summary[k][metric]["std"] for k in names]
        ax.bar(labels, means, yerr=stds, capsize=4, color=["tab:blue", "tab:orange", "tab:green"])
        for i, k in enumerate(names):
            ax.scatter([i] * len(runs), [r[k][metric] for r in runs], color="black", s=10, zorder=3)
        ax.set_title(f"{title}, mean ± std over {len(runs)} seeds")
        if metric == "top1":
            lo = min(r[k]["top1"] for r in runs for k in names)
            ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, default=ROOT / "bench" / "specs" / "two-stage.yaml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, help="override supernet.iterations (SPOS)")
    ap.add_argument("--store", type=Path, help="keep the searches here (default: a temp dir)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("hurricane").setLevel(logging.INFO)
    base = read_spec_file(args.spec)
    if args.iterations:
        base = base.model_copy(update={"supernet": base.supernet.model_copy(
            update={"iterations": args.iterations})})
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, use_reporter(LogReporter(every_s=30)):
        store = LocalStore(args.store or Path(tmp))
        runs = [run_seed(base, s, store) for s in seeds]
    summary = summarize(runs)
    spec_path = args.spec.resolve()
    result = {
        "benchmark": "two_stage",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(),
                                                     *(argv or sys.argv[1:])]),
        "spec": str(spec_path.relative_to(ROOT) if spec_path.is_relative_to(ROOT) else spec_path),
        "supernet_iterations_spos": base.supernet.iterations, "t": base.stage_split,
        "layers": base.backbone.num_layers, "seeds": seeds,
        "machine": machine_info("torch"), "wall_seconds": time.perf_counter() - t0,
        "summary": summary, "runs": runs,
    }
    emit(result, args.out)
    if args.out:
        plot(runs, summary, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()

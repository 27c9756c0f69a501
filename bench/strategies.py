"""hurricane vs spos vs proxyless under one latency budget on one device (this CPU).

Same space, budget, data and retraining for all three (bench/specs/two-stage.yaml): SPOS and
HURRICANE exactly as bench/two_stage.py runs them (HURRICANE's stages stop at SPOS's final
training loss), ProxylessNAS for as many iterations as SPOS. Per strategy: retrained top-1,
latency predicted by the search's model and measured end to end on the device after export,
the budget, supernet iterations and the search's wall time (training + search steps). A
shared ``--store`` reuses searches bench/two_stage.py already ran. Prints JSON.

    python bench/strategies.py --out bench/results/strategies.json
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

from hurricane.machine import machine_info
from hurricane.progress import LogReporter, use_reporter
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search
from hurricane.spec import read_spec_file
from hurricane.storage.store import LocalStore, search_key

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit
from two_stage import ROOT, run_seed

SEARCH_STEPS = {"spos": ("stage1", "search1"),
                "hurricane": ("stage1", "search1", "stage2", "search2"),
                "proxyless": ("proxyless",)}


def row(store: LocalStore, sid: str, device: str) -> dict[str, Any]:
    rep = store.get_json(search_key(sid, "report.json"))
    d = rep["devices"][device]
    return {"search_id": sid, "top1": d["top1"], "arch": d["arch"], "budget_ms": d["budget_ms"],
            "predicted_latency_ms": d["predicted_latency_ms"],
            "measured_latency_ms": d["measured_latency_ms"],
            "measured_over_budget": d["measured_latency_ms"] / d["budget_ms"],
            "supernet_iterations": rep["supernet_iterations"],
            "search_seconds": sum(rep["timings_s"][s] for s in SEARCH_STEPS[rep["strategy"]]
                                  if s in rep["timings_s"]),
            "total_seconds": rep["total_s"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, default=ROOT / "bench" / "specs" / "two-stage.yaml")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--store", type=Path, help="shared with bench/two_stage.py to reuse searches")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("hurricane").setLevel(logging.INFO)
    base = read_spec_file(args.spec)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp, use_reporter(LogReporter(every_s=30)):
        store = LocalStore(args.store or Path(tmp))
        for seed in seeds:
            run_seed(base, seed, store)  # spos-<seed>, hurricane-<seed> (reused when stored)
            px = base.model_copy(update={"seed": seed, "strategy": "proxyless",
                                         "name": f"px-{seed}"})
            run_search(px, store, InlineExecutor(), f"proxyless-{seed}")
            runs.append({"seed": seed, **{k: row(store, f"{k}-{seed}", base.devices[0].name)
                                          for k in ("spos", "hurricane", "proxyless")}})
    summary: dict[str, Any] = {}
    for k in ("spos", "hurricane", "proxyless"):
        summary[k] = {}
        for m in ("top1", "measured_latency_ms", "measured_over_budget", "supernet_iterations",
                  "search_seconds"):
            xs = [r[k][m] for r in runs]
            summary[k][m] = {"mean": statistics.fmean(xs),
                             "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}
        summary[k]["within_budget_measured"] = sum(r[k]["measured_over_budget"] <= 1
                                                   for r in runs)
    spec_path = args.spec.resolve()
    result = {
        "benchmark": "strategies",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(),
                                                     *(argv or sys.argv[1:])]),
        "spec": str(spec_path.relative_to(ROOT) if spec_path.is_relative_to(ROOT) else spec_path),
        "device": base.devices[0].name, "seeds": seeds, "machine": machine_info("torch"),
        "wall_seconds": time.perf_counter() - t0, "summary": summary, "runs": runs,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()

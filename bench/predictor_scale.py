"""Latency predictor at scale: fit seconds, peak memory of the fit (tracemalloc: numpy's
allocations) and predictions/s for the 8×11, 20×5, 20×32 and 22×9 spaces at n = 100, 500
and 1,000 samples, with every choice left open (leave-one-out over targets, interaction
strengths and table use), on synthetic latencies with a layer table. Prints JSON.

    python bench/predictor_scale.py [--out bench/results/predictor_scale.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _results import emit

from hurricane.latency.predictor import LatencyPredictor, PredictorConfig, metrics
from hurricane.machine import machine_info

SPACES = ((8, 11), (20, 5), (20, 32), (22, 9))
NS = (100, 500, 1000)


Table = dict[int, dict[str, float]]


def synthetic(layers: int, ops: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, Table]:
    """Per-(layer, op) costs, a fusion discount for equal neighbours (interactions), 2% noise."""
    rng = np.random.default_rng(seed)
    cost = rng.uniform(0.1, 3.0, size=(layers, ops))
    idx = rng.integers(0, ops, size=(n, layers))
    y = (cost[np.arange(layers), idx].sum(axis=1) + 5.0
         - 0.3 * (idx[:, :-1] == idx[:, 1:]).sum(axis=1)) * (1 + rng.normal(0, 0.02, n))
    table = {i: {f"op{k}": float(cost[i, k]) for k in range(ops)} for i in range(layers)}
    return idx, y, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="architectures predicted")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = []
    for layers, ops in SPACES:
        choices = tuple(tuple(f"op{k}" for k in range(ops)) for _ in range(layers))
        for n in NS:
            idx, y, table = synthetic(layers, ops, n + 500)
            tracemalloc.start()
            t0 = time.perf_counter()
            pred = LatencyPredictor(choices, layer_table=table, fixed_ms=5.0).fit_indices(idx[:n], y[:n])
            fit_s = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            big = np.random.default_rng(1).integers(0, ops, size=(args.rows, layers))
            t0 = time.perf_counter()
            pred.predict_indices(big)
            per_s = args.rows / (time.perf_counter() - t0)
            assert pred.chosen is not None
            pairs = LatencyPredictor(choices, layer_table=table, fixed_ms=5.0, config=PredictorConfig(
                log_target=True, pair_scale=0.1)).fit_indices(idx[:100], y[:100])
            t0 = time.perf_counter()
            pairs.predict_indices(big[:200_000])
            pair_per_s = 200_000 / (time.perf_counter() - t0)
            results.append({
                "space": f"{layers}x{ops}", "n": n, "fit_s": round(fit_s, 3),
                "fit_peak_mb": round(peak / 2**20, 1), "predictions_per_s": round(per_s),
                "predictions_per_s_if_pairs_chosen": round(pair_per_s),
                "pair_features": int(sum(ops * ops for _ in range(layers * (layers - 1) // 2))),
                "chosen": {k: pred.chosen[k] for k in ("log_target", "pair_scale", "table_offset",
                                                       "loo_mape")},
                "holdout_mape": round(metrics(pred.predict_indices(idx[n:]), y[n:]).mape, 3)})
            print(json.dumps(results[-1]), file=sys.stderr)
    big = next(r for r in results if r["space"] == "20x32" and r["n"] == 1000)
    out = {"bench": "predictor_scale", "machine": machine_info("numpy", "scipy"),
           "command": "python bench/predictor_scale.py " + " ".join(sys.argv[1:]),
           "rows_predicted": args.rows, "results": results,
           "goals": {"20x32_n1000_fit_s<=10": big["fit_s"] <= 10,
                     "20x32_n1000_fit_peak<=1GB": big["fit_peak_mb"] <= 1024,
                     "predictions_per_s>=1M": all(r["predictions_per_s"] >= 1e6 for r in results)}}
    emit(out, args.out)


if __name__ == "__main__":
    main()

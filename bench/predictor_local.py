"""Latency predictor accuracy on this machine's CPU with the torch, onnxruntime and OpenVINO
backends: fit on ≤ 200 architectures measured end to end, evaluate on ≥ 100 others.

For each backend the layer × op table is profiled, N architectures are sampled from the spec's
space and timed end to end (warm-up, repeats, median), and the Bayesian-ridge predictor (with
the table sum as a feature) is fitted on the first part and scored on the rest: MAPE, share
within ±10%, Spearman rank correlation, fit time, predictions/s. The bare table sum is
reported beside it, and so is the noise floor: the held-out architectures timed a second time
against their first timing ("retest"). Prints JSON.

    python bench/predictor_local.py --out bench/results/predictor_local.json
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from _results import emit

from hurricane.latency.devices import DEVICES
from hurricane.latency.predictor import LatencyPredictor, PredictorConfig, metrics
from hurricane.latency.profiling import Protocol, measure_arch, profile_table
from hurricane.machine import machine_info
from hurricane.runs.steps import layout_of, pool_space
from hurricane.runs.steps.common import noisy
from hurricane.spec import read_spec_file

ROOT = Path(__file__).resolve().parents[1]




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", type=Path, default=ROOT / "bench" / "specs" / "predictor-cpu.yaml")
    ap.add_argument("--devices", default="cpu,cpu-ort,cpu-ov")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.spec = args.spec.resolve()
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    spec = read_spec_file(args.spec)
    layout, space = layout_of(spec), pool_space(spec)
    protocol = Protocol(warmup=5, repeats=args.repeats, batch_size=1, threads=1)
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(10 * (args.train + args.test))))
    archs = archs[: args.train + args.test]
    # every k-th measured architecture is held out, so drift over the run hits both sides alike
    k = (args.train + args.test) / args.test
    is_test = np.zeros(len(archs), dtype=bool)
    is_test[np.floor(np.arange(args.test) * k).astype(int)] = True
    train_a = [a for a, t in zip(archs, is_test, strict=True) if not t]
    test_a = [a for a, t in zip(archs, is_test, strict=True) if t]
    out: dict[str, object] = {
        "benchmark": "predictor_local", "command": command,
        "spec": str(args.spec.relative_to(ROOT) if args.spec.is_relative_to(ROOT) else args.spec),
        "layers": layout.num_layers, "ops": len(space.choices[0]), "train": len(train_a),
        "test": len(test_a), "protocol": vars(protocol),
        "machine": machine_info("torch", "onnxruntime", "openvino"), "goal": "MAPE <= 5% per backend",
        "devices": {},
    }
    for name in args.devices.split(","):
        dev = DEVICES.get(name)
        t0 = time.perf_counter()
        table = profile_table(layout, space, dev, protocol)
        t1 = time.perf_counter()
        timings = [measure_arch(layout, a, protocol, dev) for a in archs]
        lat = np.array([t.median_ms for t in timings])
        flags = np.array([noisy(t) for t in timings])
        train_y, test_y = lat[~is_test], lat[is_test]
        t2 = time.perf_counter()
        # the noise floor: the held-out archs timed a second time, against their first timing
        retest = metrics([measure_arch(layout, a, protocol, dev).median_ms for a in test_a],
                         test_y)
        model = LatencyPredictor(space, layer_table=table)
        f0 = time.perf_counter()
        model.fit(train_a, train_y, flagged=flags[~is_test])
        fit_s = time.perf_counter() - f0
        m = model.evaluate(test_a, test_y)
        additive = LatencyPredictor(space, layer_table=table, config=PredictorConfig(
            log_target=False, pair_scale=0.0, table_offset=False, robust=False)).fit(train_a, train_y)
        am = additive.evaluate(test_a, test_y)
        tm = metrics([table.arch_latency(a) for a in test_a], test_y)
        idx = np.random.default_rng(0).integers(0, len(space.choices[0]),
                                                size=(1_000_000, layout.num_layers))
        p0 = time.perf_counter()
        model.predict_indices(idx)
        pps = len(idx) / (time.perf_counter() - p0)
        out["devices"][name] = {  # type: ignore[index]
            "backend": dev.backend,
            "predictor": {"mape": m.mape, "within_10pct": m.within_10pct, "srcc": m.srcc,
                          "chosen": model.chosen, "flagged_timings": int(flags.sum())},
            "predictor_plain": {"mape": am.mape, "within_10pct": am.within_10pct,
                                   "srcc": am.srcc},
            "table_sum": {"mape": tm.mape, "within_10pct": tm.within_10pct, "srcc": tm.srcc},
            "retest": {"mape": retest.mape, "within_10pct": retest.within_10pct,
                       "srcc": retest.srcc},
            "fit_seconds": fit_s, "predictions_per_s": pps,
            "profile_seconds": t1 - t0, "measure_seconds": t2 - t1,
            "latency_ms": {"min": float(lat.min()), "median": float(np.median(lat)),
                           "max": float(lat.max())},
        }
        print(json.dumps({name: out["devices"][name]}), flush=True)  # type: ignore[index]
    emit(out, args.out)


if __name__ == "__main__":
    main()

"""HURRICANE Fig. 3 in trend: latency of architectures sampled from the hardware-aware space vs
the manual ShuffleNet space (Choice_3/5/7 + ChoiceX) vs the original 32-op space, per backend.

Per backend, the 32 ops are profiled at every layer shape (layer × op table, median of repeats),
the Eq. 2 space is generated from that backend's own table, and 1,000 architectures sampled
uniformly from each space get their table latency; a few per space are also timed end to end
to check the table against reality. Prints JSON; --out writes it and a PNG beside it.

    python bench/space_latency.py --out bench/results/space_latency.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _results import emit
from scipy.stats import spearmanr

from hurricane.latency.devices import DEVICES
from hurricane.latency.profiling import Protocol, measure_arch, profile_table
from hurricane.machine import machine_info
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.oppool import MANUAL_SPACE_OPS, OPS
from hurricane.search.hwspace import EXPLORE_RULES, hardware_space
from hurricane.spec import BackboneSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", default="cpu,cpu-ort,cpu-ov")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--e2e", type=int, default=8, help="archs per space timed end to end")
    ap.add_argument("--input", type=int, default=96)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    bb = BackboneSpec(input_size=args.input, num_classes=1000, width_mult=args.width)
    layout = Layout.from_spec(bb)
    n = layout.num_layers
    protocol = Protocol(warmup=5, repeats=15, batch_size=1, threads=1)
    result: dict[str, object] = {
        "benchmark": "space_latency",
        "backbone": {"input": args.input, "width_mult": args.width, "layers": n,
                     "layers_per_stage": list(bb.layers_per_stage)},
        "protocol": vars(protocol) if hasattr(protocol, "__dict__") else str(protocol),
        "alpha": args.alpha, "samples": args.samples, "command": " ".join(sys.argv),
        "machine": machine_info("torch", "onnxruntime", "openvino"),
        "devices": {},
    }
    per_device: dict[str, dict[str, list[float]]] = {}
    for name in args.devices.split(","):
        dev = DEVICES.get(name)
        t0 = time.perf_counter()
        table = profile_table(layout, SearchSpace.uniform(OPS.names(), n), dev, protocol)
        prof_s = time.perf_counter() - t0
        hw = hardware_space(layout, table, OPS.names(), alpha=args.alpha)  # default rule
        variants = {f"hardware-aware-explore-{rule}": hardware_space(
            layout, table, OPS.names(), alpha=args.alpha, explore_rule=rule).space
            for rule in EXPLORE_RULES if rule != hw.explore_rule}
        no_explore = hardware_space(layout, table, OPS.names(), alpha=args.alpha, explore_layers=0)
        spaces = {"hardware-aware": hw.space, **variants,
                  "hardware-aware-no-exploring-op": no_explore.space,
                  "manual": SearchSpace.uniform(MANUAL_SPACE_OPS, n),
                  "original-32": SearchSpace.uniform(OPS.names(), n)}
        rng = random.Random(0)
        dist: dict[str, list[float]] = {}
        summary: dict[str, object] = {}
        for sname, space in spaces.items():
            archs = [space.sample(rng) for _ in range(args.samples)]
            lat = [table.arch_latency(a) for a in archs]
            dist[sname] = lat
            e2e_archs = archs[: args.e2e]
            e2e = [measure_arch(layout, a, protocol, dev).median_ms for a in e2e_archs]
            summary[sname] = {
                "space_size": float(space.size),
                "median_ms": statistics.median(lat),
                "p10_ms": float(np.percentile(lat, 10)), "p90_ms": float(np.percentile(lat, 90)),
                "min_ms": min(lat), "max_ms": max(lat),
                "e2e_median_ms": statistics.median(e2e),
                "e2e_vs_table_mape": float(np.mean([abs(t - m) / m for t, m in
                                                    zip(lat[: args.e2e], e2e, strict=True)])),
            }
        medians = {s: summary[s]["median_ms"] for s in ("hardware-aware", "manual", "original-32")}  # type: ignore[index]
        summary["hardware_aware_median_lowest"] = medians["hardware-aware"] == min(medians.values())
        summary["profile_seconds"] = prof_s
        summary["hardware_space"] = [list(c) for c in hw.space.choices]
        summary["explore_rule"] = hw.explore_rule
        summary["exploring_ops"] = {str(k + 1): v for k, v in hw.exploring.items()}
        all_e2e = [(k, v) for k, v in summary.items() if isinstance(v, dict) and "median_ms" in v]
        summary["e2e_table_srcc"] = None if len(all_e2e) < 2 else float(spearmanr(
            [v["median_ms"] for _, v in all_e2e], [v["e2e_median_ms"] for _, v in all_e2e])[0])
        result["devices"][name] = summary  # type: ignore[index]
        per_device[name] = dist
    emit(result, args.out)
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(per_device), figsize=(5 * len(per_device), 4),
                                 squeeze=False)
        for ax, (name, dist) in zip(axes[0], per_device.items(), strict=True):
            for sname, lat in dist.items():
                ax.hist(lat, bins=40, alpha=0.55, label=f"{sname} (median {statistics.median(lat):.1f})")
            ax.set_title(f"{name} ({DEVICES.get(name).backend})")
            ax.set_xlabel("architecture latency, table sum (ms)")
            ax.set_ylabel("architectures")
            ax.legend(fontsize=7)
        fig.suptitle(f"{args.samples} sampled architectures per space (HURRICANE Fig. 3 trend)")
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()

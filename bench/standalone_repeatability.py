"""How repeatable is the ranking benchmark's ground truth? The architectures of each seed of a
``bench/supernet_ranking.py`` result are trained alone again with another training seed (the
same recipe: the demo's retrain settings on cluttered-digits, test split), and the two
stand-alone accuracies are compared with Kendall tau and Spearman rho.

This is the ceiling of what ``supernet_ranking.py`` can show: a supernet cannot rank the
architectures more consistently with one stand-alone training than a second stand-alone
training does.

    python bench/standalone_repeatability.py --out bench/results/standalone_repeatability.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import emit
from scipy import stats
from supernet_ranking import GroundTruth, test_copies

from hurricane.machine import machine_info
from hurricane.nets.arch import Arch
from hurricane.nets.train import set_threads
from hurricane.spec import read_spec_file

ROOT = Path(__file__).resolve().parents[1]


def repeat(base: Any, run: dict[str, Any], recipe: str) -> dict[str, Any]:
    r = run["recipes"][recipe]
    seed, sc = run["seed"], r["backbone_shortcut"]
    tc = test_copies(base)
    first = {(seed, sc, a, tc): acc for a, acc in zip(r["archs"], r["standalone"], strict=True)}
    truth = GroundTruth(base, "family" if sc else "spos", seed, 2, first)
    t0 = time.time()
    again = [truth.runs(Arch.parse(a))[1] for a in r["archs"]]
    tau = stats.kendalltau(r["standalone"], again).statistic
    rho = stats.spearmanr(r["standalone"], again).statistic
    return {"seed": seed, "training_seed": truth.seeds[1], "first": r["standalone"],
            "second": again, "kendall_tau": round(float(tau), 3),
            "spearman_rho": round(float(rho), 3),
            "mean_abs_change": round(statistics.fmean(abs(a - b) for a, b in
                                                      zip(r["standalone"], again, strict=True)), 4),
            "seconds": round(time.time() - t0)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    taus = [r["kendall_tau"] for r in runs]
    rhos = [r["spearman_rho"] for r in runs]
    return {"kendall_tau": {"mean": round(statistics.fmean(taus), 3), "min": min(taus),
                            "max": max(taus)},
            "spearman_rho": {"mean": round(statistics.fmean(rhos), 3), "min": min(rhos),
                             "max": max(rhos)},
            "mean_abs_change": round(statistics.fmean(r["mean_abs_change"] for r in runs), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "digits-cpu.yaml")
    ap.add_argument("--ranking", type=Path, default=ROOT / "bench" / "results" / "supernet_ranking.json",
                    help="a supernet_ranking.py result whose architectures to train again")
    ap.add_argument("--recipe", default="shared", help="whose architectures (and backbone)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    set_threads(None)
    base = read_spec_file(a.spec)
    t0 = time.time()
    runs = []
    for run in json.loads(a.ranking.read_text())["runs"]:
        runs.append(repeat(base, run, a.recipe))
        print(json.dumps({k: runs[-1][k] for k in ("seed", "kendall_tau", "spearman_rho")}),
              file=sys.stderr, flush=True)
    doc = {"benchmark": "standalone_repeatability", "ranking": str(a.ranking.relative_to(ROOT)),
           "recipe": a.recipe, "summary": summarize(runs), "runs": runs,
           "wall_seconds": round(time.time() - t0, 1), "machine": machine_info("torch"),
           "command": "python " + " ".join(sys.argv)}
    emit(doc, a.out, indent=1)


if __name__ == "__main__":
    main()

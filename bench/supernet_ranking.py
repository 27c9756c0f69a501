"""Does the supernet rank architectures? Supernet accuracy against stand-alone accuracy.

On the bundled cluttered-digits task (random architectures of the demo space trained alone
spread over >10 points there), per seed and per training recipe:

1. profile the demo backbone's op table on this CPU and place the demo's latency budget
   (`budget_fraction` of the way from the fastest to the slowest architecture);
2. draw ``--archs`` random architectures under that budget and train each alone (the demo's
   retrain settings: train+val, scored on the test split), ``--trainings`` times with seeds
   seed + 100·k, and take the mean as its stand-alone accuracy (``kendall_tau_one_training``
   is against the first training only, as results before this option were);
3. train the recipe's supernet (the demo's iterations and batch), score the same architectures
   through it (BN recalibrated, validation split), and report Kendall tau and Spearman rho
   between the two accuracies;
4. run the demo's evolution on that supernet under the budget, fine-tune its top
   ``--finalists`` from the supernet's weights and re-rank them as the search step does
   (``evolution.finalists``), train the winner alone, and place it among the random feasible
   architectures (goal: above their 75th percentile). With finalists, the supernet's own pick
   and every finalist are trained alone too, and the random architectures are fine-tuned the
   same way (``finetuned_kendall_tau``).

``--eval-copies N`` renders each validation and test digit N times instead of 3
(``dataset.eval_copies``; the training images stay the same): the supernet's scores, which
evolution ranks by, and the stand-alone test accuracy, which is the yardstick, are then
measured on N/3 times the images.

Recipes: ``spos`` is plain SPOS as the paper runs it (independent candidate weights, the
paper's stride-2 ops without a shortcut); ``shared`` has the projection shortcut at stride-2
layers and ``sharing: layer``; ``family`` (the library's default: shortcut, ``sharing:
family``) runs when named in ``--recipes``. Each recipe has its own backbone, so the
stand-alone networks are trained once per backbone.

    python bench/supernet_ranking.py --out bench/results/supernet_ranking.json
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
from scipy import stats

from hurricane.latency.profiling import profile_table
from hurricane.machine import machine_info
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.supernet import Network, Supernet
from hurricane.nets.train import evaluate, set_threads, train
from hurricane.runs.steps.common import (
    SupernetScorer,
    data_of,
    evolution_config,
    finetuned_accuracy,
    layout_of,
    protocol_of,
    rank_finalists,
    target_profile,
    train_config,
)
from hurricane.runs.steps.oneshot import path_sampler
from hurricane.search.evolution import EvolutionSearch
from hurricane.spec import DatasetSpec, SearchSpec, read_spec_file

ROOT = Path(__file__).resolve().parents[1]
RECIPES: dict[str, dict[str, Any]] = {
    "spos": {"sharing": "none", "downsample_shortcut": False},
    "shared": {"sharing": "layer", "downsample_shortcut": True},
    "family": {"sharing": "family", "downsample_shortcut": True},
}


def recipe_spec(base: SearchSpec, recipe: str, seed: int, lr: float | None,
                iterations: int | None) -> SearchSpec:
    r = RECIPES[recipe]
    sup: dict[str, Any] = {"sharing": r["sharing"], "quality_archs": 0}
    if lr is not None:
        sup["lr"] = lr
    if iterations is not None:
        sup["iterations"] = iterations
    return base.model_copy(update={
        "seed": seed,
        "dataset": base.dataset.model_copy(update={"name": "cluttered-digits"}),
        "backbone": base.backbone.model_copy(
            update={"downsample_shortcut": r["downsample_shortcut"]}),
        "supernet": base.supernet.model_copy(update=sup)})


def standalone(spec: SearchSpec, arch: Arch, data: Any) -> float:
    """``arch`` trained alone with the spec's retrain settings; test-split accuracy."""
    torch.manual_seed(spec.seed)
    net = Network(layout_of(spec), arch)
    train(net, data.trainval(), train_config(spec.retrain, spec.seed),
          description=f"alone {arch.digest}")
    return evaluate(net, data.test)


TRAINING_SEED_STEP = 100  # training k of a seed's architectures uses seed + 100·k
Key = tuple[int, bool, str, int]  # training seed, shortcut, arch, test renderings
Known = dict[Key, float]


class GroundTruth:
    """Stand-alone accuracy of an architecture: the mean of ``trainings`` trainings, the k-th
    with seed ``seed + 100·k`` (initialisation, data order and the split of the source digits
    all follow the seed, as in ``standalone_repeatability.py``). One training ranks the
    shortcut backbone's architectures no more repeatably than tau 0.49 against another, so
    one is too noisy a yardstick. Trainings already in ``known`` are reused."""

    def __init__(self, base: SearchSpec, recipe: str, seed: int, trainings: int,
                 known: Known) -> None:
        self.base, self.recipe, self.seed, self.known = base, recipe, seed, known
        self.seeds = [seed + TRAINING_SEED_STEP * k for k in range(trainings)]
        self.shortcut = RECIPES[recipe]["downsample_shortcut"]
        self.test_copies = test_copies(base)
        self._data: dict[int, Any] = {}
        self._used: set[Key] = set()
        self._new: set[Key] = set()

    @property
    def trained(self) -> int:
        return len(self._new)

    @property
    def reused(self) -> int:
        """Trainings taken from earlier results (each counted once, however often read)."""
        return len(self._used - self._new)

    def runs(self, arch: Arch) -> list[float]:
        out = []
        for ts in self.seeds:
            key = (ts, self.shortcut, str(arch), self.test_copies)
            self._used.add(key)
            if key not in self.known:
                spec = recipe_spec(self.base, self.recipe, ts, None, None)
                if ts not in self._data:
                    self._data[ts] = data_of(spec)
                self.known[key] = round(standalone(spec, arch, self._data[ts]), 4)
                self._new.add(key)
            out.append(self.known[key])
        return out

    def __call__(self, arch: Arch) -> float:
        return statistics.fmean(self.runs(arch))


def test_copies(spec: SearchSpec) -> int:
    """Renderings of each test digit the stand-alone accuracy is scored on."""
    return spec.dataset.eval_copies or spec.dataset.copies


def feasible_sample(space: SearchSpace, latency: Any, budget: float, n: int,
                    seed: int) -> list[Arch]:
    rng, out = random.Random(seed), list[Arch]()
    while len(out) < n:
        a = space.sample(rng)
        if latency(a) <= budget and a not in out:
            out.append(a)
    return out


def run_recipe(spec: SearchSpec, recipe: str, archs: list[Arch], alone: list[float],
               space: SearchSpace, table: Any, budget: float, data: Any,
               truth: GroundTruth, rescore: int = 0) -> dict[str, Any]:
    t0 = time.time()
    torch.manual_seed(spec.seed)
    net = Supernet(layout_of(spec), space, sharing=spec.supernet.sharing)
    res = train(net, data.train, train_config(spec.supernet, spec.seed),
                forward=path_sampler(space, spec.seed), description=f"supernet {recipe}")
    scorer = SupernetScorer(net, data, spec)
    through = [scorer(a) for a in archs]
    tau = stats.kendalltau(through, alone).statistic
    rho = stats.spearmanr(through, alone).statistic
    finder = EvolutionSearch(space, evolution_config(spec), accuracy=scorer,
                             latency=table.arch_latency, budget_ms=budget,
                             seeds=[table.fastest(space)])
    found = finder.run()
    p75 = float(statistics.quantiles(alone, n=4)[2])

    def percentile(acc: float) -> float:
        return round(sum(a < acc for a in alone) / len(alone), 3)

    first = [truth.runs(a)[0] for a in archs]
    extra: dict[str, Any] = {}
    ranked = rank_finalists(found, scorer, data, spec)  # what the search step does
    winner = Arch.parse(ranked["top"][0]["arch"])
    won = truth(winner)
    if "finalists" in ranked:
        # the supernet's own pick, and every finalist trained alone: does the fine-tune order
        # them as training alone does? And the random architectures fine-tuned the same way
        fin = [c for c in ranked["top"] if "finetuned_accuracy" in c]
        pick = found.top[0].arch
        pick_alone = truth(pick)
        tuned = [finetuned_accuracy(net, a, data, spec, scorer.bn_batches,
                                    description=f"fine-tune {a.digest}") for a in archs]
        extra = {"finalists": ranked["finalists"],
                 "finalists_top": [{**c, "standalone": round(truth(Arch.parse(c["arch"])), 4)}
                                   for c in fin],
                 "supernet_pick": str(pick), "supernet_pick_standalone": round(pick_alone, 4),
                 "supernet_pick_percentile": percentile(pick_alone),
                 "supernet_pick_above_p75": pick_alone > p75,
                 "finetuned_accuracy": [round(x, 4) for x in tuned],
                 "finetuned_kendall_tau": round(float(stats.kendalltau(tuned, alone).statistic),
                                                3)}
    if rescore:
        # the evolution's top candidates scored again, each the mean over 3 BN recalibrations
        # on 4x the batches: is the winner's curse of ~100 noisy scores what misses the p75?
        ev = spec.evolution
        scorers = [SupernetScorer(net, data, spec.model_copy(update={
            "seed": spec.seed + 1 + j,
            "evolution": ev.model_copy(update={"bn_batches": 4 * ev.bn_batches})}))
            for j in range(3)]
        top = [c.arch for c in found.top[:rescore]]
        again = [statistics.fmean(sc(a) for sc in scorers) for a in top]
        pick = top[max(range(len(top)), key=again.__getitem__)]
        picked = truth(pick)
        extra |= {"rescored_top": [str(a) for a in top],
                 "rescored_accuracy": [round(x, 4) for x in again],
                 "rescored_winner": str(pick), "rescored_standalone": round(picked, 4),
                 "rescored_percentile": percentile(picked),
                 "rescored_above_p75": picked > p75}
    return {**extra, "final_loss": res.final_loss, "train_seconds": round(res.seconds, 1),
            "supernet_accuracy": [round(a, 4) for a in through],
            "supernet_accuracy_mean": round(statistics.fmean(through), 4),
            "kendall_tau": round(float(tau), 3), "spearman_rho": round(float(rho), 3),
            "kendall_tau_one_training": round(float(stats.kendalltau(through, first).statistic), 3),
            "winner": str(winner), "winner_standalone_runs": truth.runs(winner),
            "winner_latency_ms": round(table.arch_latency(winner), 4),
            "winner_standalone": round(won, 4), "random_p75": round(p75, 4),
            "winner_percentile": percentile(won),
            "winner_above_p75": won > p75, "seconds": round(time.time() - t0, 1)}


def known_standalone(paths: list[Path]) -> Known:
    """(training seed, shortcut, arch, test renderings) -> stand-alone accuracy from earlier
    results: the same architecture trained with the same seed and backbone and scored on the
    same test split, so it need not be trained again.
    Reads this benchmark's JSON and ``standalone_repeatability.py``'s (whose architectures are
    those of the ranking result it names)."""
    out: Known = {}
    for path in paths:
        doc = json.loads(path.read_text())
        # results before the option were scored on the default renderings
        tc = doc.get("eval_copies") or DatasetSpec.model_fields["copies"].default
        if doc["benchmark"] == "standalone_repeatability":
            ranking = {r["seed"]: r for r in json.loads(
                (ROOT / doc["ranking"]).read_text())["runs"]}
            for run in doc["runs"]:
                r = ranking[run["seed"]]["recipes"][doc["recipe"]]
                for arch, acc in zip(r["archs"], run["second"], strict=True):
                    out[(run["training_seed"], r["backbone_shortcut"], arch, tc)] = acc
            continue
        for run in doc["runs"]:
            for r in run["recipes"].values():
                sc = r["backbone_shortcut"]
                runs = r.get("standalone_runs") or [[a] for a in r["standalone"]]
                seeds = r.get("training_seeds") or [run["seed"]]
                for arch, accs in zip(r["archs"], runs, strict=True):
                    for ts, acc in zip(seeds, accs, strict=False):
                        out[(ts, sc, arch, tc)] = acc
                won = r.get("winner_standalone_runs") or [r["winner_standalone"]]
                for ts, acc in zip(seeds, won, strict=False):
                    out[(ts, sc, r["winner"], tc)] = acc
    return out


def run_seed(base: SearchSpec, seed: int, n: int, recipes: list[str],
             lr: dict[str, float | None], iterations: int | None, known: Known,
             trainings: int, rescore: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": seed, "recipes": {}}
    for recipe in recipes:
        spec = recipe_spec(base, recipe, seed, lr.get(recipe), iterations)
        layout = layout_of(spec)
        space = SearchSpace.uniform(spec.space.ops, layout.num_layers)
        table = profile_table(layout, space, target_profile(spec, spec.devices[0].name),
                              protocol_of(spec))
        lo, hi = table.bounds(space)
        budget = lo + (spec.devices[0].budget_fraction or 0.0) * (hi - lo)
        data = data_of(spec)
        archs = feasible_sample(space, table.arch_latency, budget, n, seed=1000 + seed)
        t0 = time.time()
        truth = GroundTruth(base, recipe, seed, trainings, known)
        alone = [truth(a) for a in archs]
        res = run_recipe(spec, recipe, archs, alone, space, table, budget, data, truth, rescore)
        res.update(backbone_shortcut=spec.backbone.downsample_shortcut,
                   sharing=spec.supernet.sharing, lr=spec.supernet.lr,
                   supernet_iterations=spec.supernet.iterations,
                   budget_ms=round(budget, 4), archs=[str(a) for a in archs],
                   training_seeds=truth.seeds,
                   standalone_runs=[truth.runs(a) for a in archs],
                   standalone=[round(a, 4) for a in alone],
                   standalone_spread=round(max(alone) - min(alone), 4),
                   standalone_reused=truth.reused, standalone_trained=truth.trained,
                   standalone_seconds=round(time.time() - t0 - res["seconds"], 1))
        out["recipes"][recipe] = res
        print(json.dumps({"seed": seed, "recipe": recipe,
                          **{k: res[k] for k in ("kendall_tau", "spearman_rho",
                                                 "supernet_accuracy_mean", "winner_standalone",
                                                 "random_p75", "standalone_spread")}}),
              file=sys.stderr, flush=True)
    return out


def summarize(runs: list[dict[str, Any]], recipes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in recipes:
        rs = [run["recipes"][r] for run in runs]

        def agg(key: str, rs: list[dict[str, Any]] = rs) -> dict[str, float]:
            v = [float(x[key]) for x in rs]
            return {"mean": round(statistics.fmean(v), 3), "min": round(min(v), 3),
                    "max": round(max(v), 3)}

        out[r] = {"kendall_tau": agg("kendall_tau"), "spearman_rho": agg("spearman_rho"),
                  "kendall_tau_one_training": agg("kendall_tau_one_training"),
                  "supernet_accuracy_mean": agg("supernet_accuracy_mean"),
                  "standalone_spread": agg("standalone_spread"),
                  "winner_above_p75": sum(bool(x["winner_above_p75"]) for x in rs),
                  **({"supernet_pick_above_p75": sum(bool(x["supernet_pick_above_p75"])
                                                     for x in rs),
                      "finetuned_kendall_tau": agg("finetuned_kendall_tau")}
                     if all("finalists" in x for x in rs) else {}),
                  "seeds": len(rs),
                  "goal_tau_0_5_met": statistics.fmean(x["kendall_tau"] for x in rs) >= 0.5}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "digits-cpu.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--recipes", nargs="+", default=["spos", "shared"], choices=list(RECIPES))
    ap.add_argument("--spos-lr", type=float, help="supernet lr of the spos recipe (default: spec)")
    ap.add_argument("--shared-lr", type=float, help="supernet lr of the shared recipe")
    ap.add_argument("--family-lr", type=float, help="supernet lr of the family recipe")
    ap.add_argument("--supernet-iterations", type=int,
                    help="supernet iterations (default: the spec's)")
    ap.add_argument("--trainings", type=int, default=2,
                    help="stand-alone trainings averaged per architecture (seeds seed + 100·k)")
    ap.add_argument("--standalone-from", type=Path, nargs="*", default=[],
                    help="reuse the stand-alone accuracies of these earlier results (this "
                    "benchmark's or standalone_repeatability.py's; same training seed, backbone "
                    "and architecture)")
    ap.add_argument("--rescore", type=int, default=0, metavar="K",
                    help="also score evolution's top K again (3 BN recalibrations on 4x the "
                    "batches, averaged), train the best alone and report it as rescored_*")
    ap.add_argument("--finalists", type=int, metavar="K",
                    help="evolution's top K fine-tuned and re-ranked, as the search step does "
                    "(default: the spec's evolution.finalists; 0: the supernet's pick)")
    ap.add_argument("--finalist-iterations", type=int, metavar="N",
                    help="fine-tuning steps per finalist (default: the spec's)")
    ap.add_argument("--eval-copies", type=int, metavar="N",
                    help="renderings of each validation and test digit (dataset.eval_copies; "
                    "default: dataset.copies, 3): steadier supernet scores and yardstick")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    base = read_spec_file(a.spec)
    base = base.model_copy(update={"dataset": DatasetSpec.model_validate({
        **base.dataset.model_dump(), "name": "cluttered-digits", "eval_copies": a.eval_copies})})
    ev = base.evolution
    base = base.model_copy(update={"evolution": ev.model_copy(update={
        "finalists": ev.finalists if a.finalists is None else a.finalists,
        "finalist_iterations": a.finalist_iterations or ev.finalist_iterations})})
    set_threads(None)
    t0 = time.time()
    lr = {"spos": a.spos_lr, "shared": a.shared_lr, "family": a.family_lr}
    known = known_standalone(a.standalone_from)
    runs = [run_seed(base, s, a.archs, a.recipes, lr, a.supernet_iterations, known, a.trainings,
                     a.rescore) for s in a.seeds]
    doc = {"benchmark": "supernet_ranking", "spec": str(a.spec.resolve().relative_to(ROOT)),
           "dataset": "cluttered-digits", "archs_per_seed": a.archs, "seeds": a.seeds,
           "standalone_trainings": a.trainings, "eval_copies": test_copies(base),
           "recipes": {r: RECIPES[r] for r in a.recipes},
           "goals": {"kendall_tau": ">= 0.5 (mean over seeds)",
                     "winner": "stand-alone accuracy above the 75th percentile of random "
                               "feasible architectures"},
           "summary": summarize(runs, a.recipes), "runs": runs,
           "wall_seconds": round(time.time() - t0, 1), "machine": machine_info("torch"),
           "command": "python " + " ".join(sys.argv)}
    emit(doc, a.out, indent=1)


if __name__ == "__main__":
    main()

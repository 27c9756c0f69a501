"""How fast does each supernet recipe learn, and does it rank? Learning curves on a deeper backbone.

For each recipe, the supernet of ``--spec`` (default ``bench/specs/recipes-deep.yaml``:
cluttered-digits, 10 searched layers of 11 candidates) is trained with the spec's schedule;
at each of ``--at`` iterations the training stops (a checkpoint; the next leg resumes exactly
where it stopped) and ``--archs`` random architectures of the space are scored through it as a
search scores them (BN recalibrated, validation split). Each point of a curve records:

- the mean, spread and range of those accuracies (learning speed, issue 23's measure);
- Kendall tau and Spearman rho against the same architectures trained alone (the spec's
  retrain settings, test split; trained once per seed and reused by every recipe);
- the seconds and forward/backward passes spent so far (a recipe's iteration cost).

Recipes (``supernet`` settings over the spec's):

- ``family``: the library's recipe before issue 23 (uniform single path, family sharing);
- ``uniform4``: four uniform paths per step (the sandwich's compute, without its rule);
- ``sandwich``: largest + smallest + 2 random paths, all from the labels;
- ``sandwich-kd``: the same with in-place distillation from the largest path (BigNAS);
- ``fair``: FairNAS strict fairness (every candidate once per step: 11 paths);
- ``shrink-kd``: ``sandwich-kd`` with progressive shrinking (OFA: largest candidates first,
  3 phases over the first half);
- ``fewshot``: the single-path supernet split by family at the searched layer ``--split-layer``
  after a third of the iterations (Few-shot NAS): each sub-supernet (one per family there)
  starts from the one-shot weights and trains on the paths through its family.

    python bench/supernet_recipes.py --out bench/results/supernet_recipes.json --plot \\
        bench/results/supernet_recipes.png
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _results import emit
from scipy import stats
from torch import nn

from hurricane.machine import machine_info
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.oppool import OPS
from hurricane.nets.sampling import PathPlan
from hurricane.nets.supernet import Network, Supernet
from hurricane.nets.train import Checkpointer, evaluate, set_threads, train
from hurricane.runs.steps.common import data_of, layout_of, train_config
from hurricane.runs.steps.oneshot import path_plan, plan_loss
from hurricane.runs.steps.quality import SplitScorer, verdict
from hurricane.spec import SUPERNET_RECIPES, SearchSpec, read_spec_file
from hurricane.storage.store import LocalStore

ROOT = Path(__file__).resolve().parents[1]
_R = SUPERNET_RECIPES  # the spec's named recipes: each entry sets every sampling field
RECIPES: dict[str, dict[str, Any]] = {
    "family": {**_R["spos"], "recipe": "spos"},  # uniform single path (SPOS), family sharing
    "uniform4": {**_R["spos"], "paths": 4, "recipe": "custom"},
    "sandwich": {**_R["sandwich"], "distill": False, "recipe": "custom"},
    "sandwich-kd": {**_R["sandwich"], "recipe": "sandwich"},
    "fair": {**_R["fair"], "recipe": "fair"},
    "shrink-kd": {**_R["shrink"], "recipe": "shrink"},  # the default since issue 23
    "fewshot": {**_R["spos"], "recipe": "spos"},
}

class FewShot(nn.Module):
    """Sub-supernets split by the family of layer ``layer``'s candidate: before step ``at``
    every path trains sub-supernet 0; at ``at`` its weights are copied to the others and from
    then on a path trains (and is scored by) its family's sub-supernet."""

    def __init__(self, make: Any, space: SearchSpace, layer: int, at: int) -> None:
        super().__init__()
        self.families = sorted({OPS.get(o).family for o in space.choices[layer]})
        self.subs = nn.ModuleList(make() for _ in self.families)
        self.layer, self.at = layer, at
        self.split = False

    def sub(self, arch: Arch) -> Supernet:
        return self.subs[self.families.index(OPS.get(arch[self.layer]).family)]  # type: ignore[return-value]

    def route(self, step: int) -> None:
        if step >= self.at and not self.split:
            with torch.no_grad():
                for s in self.subs[1:]:
                    s.load_state_dict(self.subs[0].state_dict())
            self.split = True

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return (self.sub(arch) if self.split else self.subs[0])(x, arch)


def standalone(spec: SearchSpec, arch: Arch, data: Any) -> float:
    torch.manual_seed(spec.seed)
    net = Network(layout_of(spec), arch)
    train(net, data.trainval(), train_config(spec.retrain, spec.seed),
          description=f"alone {arch.digest}")
    return evaluate(net, data.test)


def curve(spec: SearchSpec, recipe: str, space: SearchSpace, data: Any, archs: list[Arch],
          alone: list[float] | None, at: list[int], split_layer: int) -> dict[str, Any]:
    over = RECIPES[recipe]
    spec = spec.model_copy(update={"supernet": spec.supernet.model_copy(update=over)})
    cfg = train_config(spec.supernet, spec.seed)
    plan: PathPlan = path_plan(spec, space, cfg.iterations)
    torch.manual_seed(spec.seed)

    def make() -> Supernet:
        return Supernet(layout_of(spec), space, sharing=spec.supernet.sharing)

    few = None
    if recipe == "fewshot":
        few = FewShot(make, space, split_layer, at=cfg.iterations // 3)
        net: nn.Module = few
    else:
        net = make()
    base_loss = plan_loss(plan, cfg.label_smoothing)

    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if few is not None:
            few.route(step)
        return base_loss(model, x, y, step)

    points: list[dict[str, Any]] = []
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpointer(LocalStore(tmp), "ckpt", keep=1)
        for stop in at:
            t0 = time.perf_counter()
            res = train(net, data.train, cfg, step_loss=step_loss, checkpointer=ckpt,
                        stop_after=stop, description=f"{recipe} to {stop}")
            seconds += time.perf_counter() - t0
            if few is not None:
                few.split = stop > few.at  # a resumed leg copies nothing again
            snapshot = copy.deepcopy(net)  # scoring recalibrates BN: score a copy
            scored = []
            for a in archs:
                sub = snapshot.sub(a) if few is not None else snapshot  # type: ignore[operator]
                scored.append(SplitScorer(sub, data, spec).scores(a))
            accs = [x[0] for x in scored]
            v = verdict(accs, [x[1] for x in scored], [x[2] for x in scored],
                        points[-1]["accuracies"] if points else None,
                        num_classes=data.num_classes, spec=spec, iterations=stop)
            point: dict[str, Any] = {
                "iterations": stop, "seconds": round(seconds, 1),
                "passes": stop * plan.cost(), "loss": round(res.final_loss, 4),
                "accuracy_mean": round(statistics.fmean(accs), 4),
                "accuracy_std": round(statistics.stdev(accs), 4),
                "accuracy_min": round(min(accs), 4), "accuracy_max": round(max(accs), 4),
                "split_half_rho": v["split_half_rho"], "stability_rho": v["stability_rho"],
                "reliable": v["reliable"], "accuracies": [round(x, 4) for x in accs]}
            if alone is not None:
                point["kendall_tau"] = round(float(stats.kendalltau(accs, alone).statistic), 3)
                point["spearman_rho"] = round(float(stats.spearmanr(accs, alone).statistic), 3)
            points.append(point)
            print(json.dumps({"recipe": recipe, **{k: v for k, v in point.items()
                                                   if k != "accuracies"}}),
                  file=sys.stderr, flush=True)
    return {"settings": over, "paths_per_step": plan.cost(), "points": points}


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    for name in doc["recipes"]:
        for run in doc["runs"]:
            if name not in run["recipes"]:
                continue
            pts = run["recipes"][name]["points"]
            it = [p["iterations"] for p in pts]
            kw: dict[str, Any] = {"label": name if run is doc["runs"][0] else None,
                                  "color": f"C{list(doc['recipes']).index(name)}",
                                  "alpha": 0.9 if run is doc["runs"][0] else 0.5}
            axes[0].errorbar(it, [p["accuracy_mean"] for p in pts],
                             yerr=[p["accuracy_std"] for p in pts], marker="o", capsize=2, **kw)
            axes[1].plot([p["seconds"] / 60 for p in pts], [p["accuracy_mean"] for p in pts],
                         marker="o", **kw)
            if "kendall_tau" in pts[0]:
                axes[2].plot(it, [p["kendall_tau"] for p in pts], marker="o", **kw)
    axes[0].set(xlabel="iterations", ylabel="random archs through the supernet (mean ± sd)",
                title="learning speed per iteration")
    axes[1].set(xlabel="training minutes (2-core CPU)", ylabel="mean accuracy",
                title="per unit of compute")
    axes[2].set(xlabel="iterations", ylabel="Kendall tau vs trained alone",
                title="ranking")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"supernet recipes on {doc['spec']} (seeds {[r['seed'] for r in doc['runs']]})")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "bench/specs/recipes-deep.yaml")
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--at", default="250,500,1000,1500,2000,3000",
                    help="iterations at which the curve is measured (the last is the end)")
    ap.add_argument("--iterations", type=int, help="supernet iterations (default: the spec's)")
    ap.add_argument("--split-layer", type=int, default=4, help="fewshot: the layer split on")
    ap.add_argument("--no-standalone", action="store_true",
                    help="skip training the architectures alone (no ranking columns)")
    ap.add_argument("--standalone-from", type=Path, action="append", default=[],
                    help="earlier results of this bench whose stand-alone accuracies to reuse")
    ap.add_argument("--recipe-iterations", default="",
                    help="recipe=N,...: another iteration count for a recipe (its points are "
                    "--at scaled to it), e.g. fair=500 for about the sandwich's compute")
    ap.add_argument("--resume", action="store_true",
                    help="keep the stand-alone accuracies and recipes already in --out")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--plot-only", action="store_true", help="redraw --plot from --out")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(args.out.read_text()), args.plot)
        return
    set_threads(None)
    base = read_spec_file(args.spec)
    at = sorted(int(x) for x in args.at.split(","))
    its = args.iterations or at[-1]
    base = base.model_copy(update={"supernet": base.supernet.model_copy(
        update={"iterations": its, "quality_archs": 0})})
    known: dict[tuple[int, str], float] = {}
    for p in args.standalone_from:
        for run in json.loads(p.read_text())["runs"]:
            for a, acc in zip(run["archs"], run.get("standalone") or [], strict=False):
                if acc is not None:  # an interrupted run's missing ones are trained again
                    known[(run["seed"], a)] = acc
    recipes = args.recipes.split(",")
    its_of = {r: its for r in recipes}
    for item in args.recipe_iterations.split(",") if args.recipe_iterations else []:
        name, n = item.split("=")
        its_of[name] = int(n)
    t0 = time.time()
    doc: dict[str, Any] = {"benchmark": "supernet_recipes", "machine": machine_info(),
                           "command": " ".join(["python", "bench/supernet_recipes.py",
                                                *sys.argv[1:]]),
                           "spec": str(args.spec.relative_to(ROOT)
                                       if args.spec.is_relative_to(ROOT) else args.spec),
                           "iterations": its_of, "archs": args.archs,
                           "recipes": {r: RECIPES[r] for r in recipes}, "runs": []}
    if args.resume and args.out and args.out.exists():
        old = json.loads(args.out.read_text())
        doc["runs"] = old["runs"]
        for run in old["runs"]:
            for a, acc in zip(run["archs"], run.get("standalone") or [], strict=False):
                if acc is not None:  # an interrupted run's missing ones are trained again
                    known[(run["seed"], a)] = acc

    def save() -> None:
        doc["seconds"] = round(time.time() - t0, 1)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=2) + "\n")

    for seed in (int(s) for s in args.seeds.split(",")):
        spec = base.model_copy(update={"seed": seed})
        layout = layout_of(spec)
        space = SearchSpace.uniform(spec.space.ops, layout.num_layers)
        data = data_of(spec)
        rng = random.Random(1000 + seed)
        archs = [space.sample(rng) for _ in range(args.archs)]
        run = next((r for r in doc["runs"] if r["seed"] == seed), None)
        if run is None:
            run = {"seed": seed, "archs": [str(a) for a in archs], "standalone": None,
                   "recipes": {}}
            doc["runs"].append(run)
        assert run["archs"] == [str(a) for a in archs]
        if not args.no_standalone:
            alone = []
            for a in archs:
                if (seed, str(a)) not in known:
                    known[(seed, str(a))] = round(standalone(spec, a, data), 4)
                alone.append(known[(seed, str(a))])
                run["standalone"] = alone + [None] * (len(archs) - len(alone))
                save()
        for r in recipes:
            if r in run["recipes"]:
                continue
            n = its_of[r]
            spec_r = spec.model_copy(update={"supernet": spec.supernet.model_copy(
                update={"iterations": n})})
            at_r = (sorted({x for x in at if x < n} | {n}) if n == its
                    else sorted({max(1, round(x * n / its)) for x in at}))
            run["recipes"][r] = curve(spec_r, r, space, data, archs, run["standalone"], at_r,
                                      args.split_layer)
            save()
    save()
    emit(doc, None)
    if args.plot:
        plot(doc, args.plot)


if __name__ == "__main__":
    main()

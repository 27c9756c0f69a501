"""One-shot supernet steps: stage1/stage2 training (SPOS, HURRICANE) and search1/search2."""

from __future__ import annotations

import random
from typing import Any

import torch

from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.distributed import barrier, place
from hurricane.nets.sampling import PathPlan
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import Checkpointer, StepLossFn, set_threads, step_seed, train
from hurricane.runs.steps.common import (
    SupernetScorer,
    budget_check,
    data_of,
    devices_of,
    edge_counts,
    evolution_config,
    evolution_key,
    finalist_summary,
    latency_model,
    layout_of,
    load_space,
    load_table,
    loss_curve,
    quality_warnings,
    rank_finalists,
    rescore_top,
    resolve_budget,
    searched_devices,
    train_config,
)
from hurricane.runs.steps.keys import train_key
from hurricane.runs.steps.quality import RankMonitor, supernet_quality
from hurricane.runs.strategies import STRATEGIES
from hurricane.search.evolution import EvolutionSearch, InfeasibleBudget
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, search_key
from hurricane.storage.torchio import load_torch, save_torch


def path_sampler(space: SearchSpace, seed: int):  # type: ignore[no-untyped-def]
    """forward(model, x, step): the uniformly sampled single path of training step ``step``."""

    def forward(model: torch.nn.Module, x: torch.Tensor, step: int) -> torch.Tensor:
        return model(x, space.sample(random.Random(step_seed(seed, step, 2))))

    return forward


def op_sizes(spec: SearchSpec, space: SearchSpace) -> dict[int, dict[str, float]]:
    """Multiply-adds of each candidate at its layer's shape (what "largest" means)."""
    from hurricane.nets.flops import op_cost

    return {s.index: {op: float(op_cost(op, s.cin, s.cout, s.stride, s.in_hw, s.shortcut).macs)
                      for op in c}
            for s, c in zip(layout_of(spec).layers, space.choices, strict=True)}


def path_plan(spec: SearchSpec, space: SearchSpace, iterations: int) -> PathPlan:
    """The spec's sampling rule over ``space`` (``supernet.sampling`` and friends)."""
    s = spec.supernet
    sized = s.sampling == "sandwich" or s.distill or s.shrink_phases > 0
    return PathPlan(space, sampling=s.sampling, paths=s.paths, distill=s.distill,
                    shrink_phases=s.shrink_phases, shrink_until=s.shrink_until,
                    iterations=iterations, sizes=op_sizes(spec, space) if sized else None,
                    seed=spec.seed)


def plan_loss(plan: PathPlan, label_smoothing: float) -> StepLossFn:
    """step_loss(model, x, y, step) for :func:`train`: the sum of the step's path losses
    (cross-entropy with the labels; with distillation, the students' cross-entropy with the
    teacher path's detached softmax), reporting the label-trained paths' mean loss."""
    ce = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def step_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  step: int) -> tuple[torch.Tensor, torch.Tensor]:
        total: torch.Tensor | None = None
        shown: list[torch.Tensor] = []
        soft: torch.Tensor | None = None
        for p in plan(step):
            out = model(x, p.arch)
            if soft is not None:
                loss = -(soft * out.float().log_softmax(1)).sum(1).mean()
            else:
                loss = ce(out, y)
                shown.append(loss)
                if p.teacher:
                    soft = out.detach().float().softmax(1)
            total = loss if total is None else total + loss
        assert total is not None
        return total, torch.stack([v.detach().float() for v in shown]).mean()

    return step_loss


def inherit_weights(net: Supernet, state: dict[str, torch.Tensor]) -> int:
    """Copies every tensor of ``state`` that ``net`` has under the same name (the stem, the head
    and each (layer, op) both supernets contain; shared banks by their overlap); returns how
    many."""
    return net.load_overlapping(state)


def train_supernet(spec: SearchSpec, search_id: str, store: ArtifactStore, stage: str,
                   space: SearchSpace, *, iterations: int | None = None,
                   init: dict[str, torch.Tensor] | None = None, extra: dict[str, Any] | None = None,
                   stop_after: int | None = None) -> dict[str, Any]:
    """Trains one single-path supernet over ``space`` under ``searches/<id>/<stage>/``: periodic
    checkpoints (a restarted job continues from the newest), then supernet.pt + train.json."""
    where = place(spec.training.device)
    torch.manual_seed(spec.seed)
    net = Supernet(layout_of(spec), space, sharing=spec.supernet.sharing)
    inherited = inherit_weights(net, init) if init is not None else 0
    data = data_of(spec, store, search_id)
    cfg = train_config(spec.supernet, spec.seed, iterations=iterations, training=spec.training)
    ckpt = Checkpointer(store, search_key(search_id, stage, "ckpt"), keep=cfg.keep_checkpoints)
    plan = path_plan(spec, space, cfg.iterations)
    monitor = RankMonitor(space, data, spec, cfg.iterations)
    res = train(net, data.train, cfg, step_loss=plan_loss(plan, cfg.label_smoothing),
                monitor=monitor if monitor.enabled else None, checkpointer=ckpt,
                description=f"{stage}: supernet", stop_after=stop_after, where=where)
    if not where.main:  # rank 0 writes the stage's outputs; the others wait for them
        barrier(where.world)
        return {}
    if not res.complete:
        barrier(where.world)
        return {"stopped_at": res.steps}
    save_torch(store, search_key(search_id, stage, "supernet.pt"),
                    {"model": net.state_dict(), "space": space.to_json(), "sharing": net.sharing})
    quality = supernet_quality(net, space, data, spec, monitor, iterations=res.steps)
    fixed = {str(i): c[0] for i, c in enumerate(space.choices) if len(c) == 1}
    summary = {"iterations": res.steps, "iteration_cap": cfg.iterations,
               "converged": res.converged, "stop_loss": cfg.stop_loss,
               "settled": res.settled, "until_reliable": spec.supernet.until_reliable,
               "resumed_from": res.resumed_from, "final_loss": res.final_loss,
               "train_seconds": res.seconds, "images_per_s": res.images_per_s,
               "space_size": space.size, "active_layers": list(space.active_layers),
               "fixed_layers": fixed, "inherited_tensors": inherited,
               "loss_history": [list(h) for h in res.history], "world_size": res.world_size,
               "sampling": {"rule": plan.sampling, "paths_per_step": plan.cost(),
                            "distill": plan.distill, "shrink_phases": plan.shrink_phases},
               **({"quality": quality} if quality is not None else {}), **(extra or {})}
    store.put_json(search_key(search_id, stage, "train.json"), summary)
    barrier(where.world)
    return summary


def a_win0(spec: SearchSpec, store: ArtifactStore, search_id: str, space: SearchSpace) -> Arch:
    """Algorithm 1's start: per layer, the candidate with the top Eq. 2 score on the first
    device (for a hardware space, the op its top-p ranking put first)."""
    from hurricane.search.hwspace import eq2_scores, layer_capacity

    table = load_table(store, search_id, spec.devices[0].name)
    scores = eq2_scores(layer_capacity(layout_of(spec), space.all_ops()), table, spec.space.alpha)
    return Arch(tuple(max(c, key=lambda o, i=i: (scores[i][o], o))  # type: ignore[misc]
                      for i, c in enumerate(space.choices)))


def stage1_space(spec: SearchSpec, store: ArtifactStore, search_id: str) -> tuple[SearchSpace,
                                                                                   dict[str, Any]]:
    """SPOS: the whole space. HURRICANE: layers 1..t fixed to a_win0, t+1..n active."""
    space = load_space(store, search_id)
    if not STRATEGIES.get(spec.strategy).two_stage:
        return space, {}
    start = a_win0(spec, store, search_id, space)
    t = spec.stage_split
    return space.fix(start, range(t)), {"a_win0": str(start), "t": t}


def stage1_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    space, extra = stage1_space(spec, store, search_id)
    train_supernet(spec, search_id, store, "stage1", space, extra=extra)


def stage1_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    out = _public(store.get_json(train_key(search_id, "stage1")))
    return {**out, **quality_warnings({"stage1": out})}


def _public(summary: dict[str, Any], points: int = 12) -> dict[str, Any]:
    """A training's train.json for its step result: the loss history thinned to at most
    ``points`` (step, mean loss) entries, first and last kept, as ``loss_curve``."""
    out = {k: v for k, v in summary.items() if k != "loss_history"}
    out["loss_curve"] = loss_curve(summary.get("loss_history") or [], points)
    return out


def stage2_dir(a_win1: Arch) -> str:
    """Stage 2's supernet is keyed by the Stage 1 winner it fixes: devices whose Stage 1
    winners agree share one Stage 2 training."""
    return f"stage2/{a_win1.digest}"


def stage1_winner(store: ArtifactStore, search_id: str, device: str) -> Arch:
    return Arch.parse(store.get_json(evolution_key(search_id, "search1", device))["top"][0]["arch"])


def stage2_space(spec: SearchSpec, store: ArtifactStore, search_id: str,
                 a_win1: Arch) -> SearchSpace:
    """Layers 1..t active over the full space, t+1..n fixed to Stage 1's winner."""
    space = load_space(store, search_id)
    return space.fix(a_win1, range(spec.stage_split, space.num_layers))


def stage2_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    init = None
    for name in devices_of(spec, device, searched=True):
        win1 = stage1_winner(store, search_id, name)
        stage = stage2_dir(win1)
        if store.exists(search_key(search_id, stage, "train.json")):
            continue
        if spec.hurricane.stage2_init == "stage1" and init is None:
            init = load_torch(store, search_key(search_id, "stage1", "supernet.pt"))["model"]
        train_supernet(spec, search_id, store, stage, stage2_space(spec, store, search_id, win1),
                       iterations=spec.hurricane.stage2_iterations, init=init,
                       extra={"a_win1": str(win1), "t": spec.stage_split,
                              "init": spec.hurricane.stage2_init})


def stage2_units(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """One Stage 2 training per distinct Stage 1 winner, named by the first device with it."""
    firsts: dict[str, str] = {}
    for name in searched_devices(spec):
        firsts.setdefault(stage2_dir(stage1_winner(store, search_id, name)), name)
    return list(firsts.values())


def stage2_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    devices = {name: _public(store.get_json(train_key(
        search_id, stage2_dir(stage1_winner(store, search_id, name)))))
        for name in searched_devices(spec)}
    result = {"devices": devices}
    return {**result, **quality_warnings(stage2_supernets(result))}


def stage1_supernets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"stage1": result}


def stage2_supernets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One training per distinct Stage 1 winner (devices that agree on it share one)."""
    return {f"stage2 ({d['a_win1']})": d for d in result["devices"].values()}


def stage2_done(spec: SearchSpec, search_id: str, store: ArtifactStore, unit: str) -> bool:
    return store.exists(train_key(search_id, stage2_dir(stage1_winner(store, search_id, unit))))


def supernet_stage(spec: SearchSpec, store: ArtifactStore, search_id: str, step: str,
                   device: str) -> str:
    """The stage whose supernet ``step`` searches for ``device``."""
    if step == "search1":
        return "stage1"
    return stage2_dir(stage1_winner(store, search_id, device))


def load_supernet(spec: SearchSpec, store: ArtifactStore, search_id: str,
                  stage: str) -> tuple[SearchSpace, Supernet]:
    """A trained stage's supernet and the space it was trained over."""
    blob = load_torch(store, search_key(search_id, stage, "supernet.pt"))
    space = SearchSpace.from_json(blob["space"])
    net = Supernet(layout_of(spec), space, sharing=blob.get("sharing", "none"))
    net.load_state_dict(blob["model"])
    return space, net


def search_supernet(spec: SearchSpec, search_id: str, store: ArtifactStore, step: str,
                    device: str | None) -> None:
    """Evolution under each device's budget on its stage's supernet; evolution.json holds the
    top architectures and pareto.json the accuracy/latency Pareto set of all evaluated."""
    set_threads(spec.supernet.threads)
    data = data_of(spec, store, search_id)
    loaded: dict[str, tuple[SearchSpace, SupernetScorer]] = {}
    full = load_space(store, search_id)  # budgets are placed on the whole space
    for name in devices_of(spec, device, searched=True):
        key = evolution_key(search_id, step, name)
        if store.exists(key):
            continue
        stage = supernet_stage(spec, store, search_id, step, name)
        if stage not in loaded:
            space, net = load_supernet(spec, store, search_id, stage)
            loaded = {stage: (space, SupernetScorer(net, data, spec))}  # one supernet in memory
        space, scorer = loaded[stage]
        table = load_table(store, search_id, name)
        latency = latency_model(store, search_id, name, table)
        budget = resolve_budget(spec, name, full, table, latency)
        check = budget_check(spec, store, search_id, name, budget)
        finder = EvolutionSearch(space, evolution_config(spec), accuracy=scorer, latency=latency,
                                 budget_ms=check["effective_budget_ms"] if check else budget,
                                 seeds=[table.fastest(space)])
        try:
            found = rescore_top(finder.run(), scorer.net, data, spec)
        except InfeasibleBudget as err:
            if check and check["confidence"]:
                raise InfeasibleBudget(
                    f"{name}: with evolution.budget_confidence = {check['confidence']}, an "
                    f"architecture must be predicted at or under "
                    f"{check['effective_budget_ms']:.3f} ms (the {budget:.3f} ms budget over "
                    f"the predictor's upper factor "
                    f"{check['upper_factor']['factor']:.3f}), and none of the space is: lower "
                    "the confidence, raise the budget or measure more architectures "
                    "(predictor.samples)"
                ) from err
            raise
        res = rank_finalists(found, scorer, data, spec)
        res["supernet"], res["budget_ms"] = stage, budget
        if check:
            res["budget_check"] = {**check, **edge_counts(finder.latencies(), res["top"], check)}
        store.put_json(evolution_key(search_id, step, name, "pareto.json"),
                       {"device": name, "step": step, "budget_ms": res["budget_ms"],
                        "pareto": res["pareto"]})
        store.put_json(key, res)


def search_result(spec: SearchSpec, search_id: str, store: ArtifactStore,
                  step: str) -> dict[str, Any]:
    out = {}
    for name in searched_devices(spec):
        res = store.get_json(evolution_key(search_id, step, name))
        win = res["top"][0]
        out[name] = {"winner": win["arch"], "supernet_accuracy": win["accuracy"],
                     **finalist_summary(res),
                     **({"evolution_pick": res["rescored"]["evolution_pick"],
                         "rescore_changed": res["rescored"]["changed"]}
                        if res.get("rescored") else {}),
                     "latency_ms": win["latency_ms"], "budget_ms": res["budget_ms"],
                     "evaluated": res["evaluated"], "supernet": res.get("supernet"),
                     **({"budget_check": {k: res["budget_check"][k] for k in (
                         "confidence", "interval_confidence", "effective_budget_ms", "priced",
                         "near_edge", "top_near_edge", "held_out")}}
                        if res.get("budget_check") else {}),
                     "pareto": evolution_key(search_id, step, name, "pareto.json"),
                     "pareto_size": len(res.get("pareto", []))}
    return {"devices": out}


def search1_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    search_supernet(spec, search_id, store, "search1", device)


def search2_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    search_supernet(spec, search_id, store, "search2", device)


def search1_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    return search_result(spec, search_id, store, "search1")


def search2_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    return search_result(spec, search_id, store, "search2")

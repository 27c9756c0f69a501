"""The pipeline's steps (what the runner and Celery call) and jobs (what a pod runs)."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hurricane import progress
from hurricane.arch import Arch, SearchSpace
from hurricane.backbone import Layout
from hurricane.data import Data, load_data
from hurricane.devices import DeviceProfile, device_profile
from hurricane.evolution import Candidate, EvolutionConfig, EvolutionSearch, InfeasibleBudget
from hurricane.executor import Executor, JobSpec
from hurricane.oppool import MANUAL_SPACE_OPS
from hurricane.pipeline import JOBS, STEPS, result_key
from hurricane.predictor import metrics
from hurricane.profiling import LatencyTable, Protocol, measure_arch, profile_table
from hurricane.spec import DeviceTarget, SearchSpec, SupernetTrainSpec, TrainSettings
from hurricane.store import ArtifactStore, search_key
from hurricane.strategies import STRATEGIES
from hurricane.supernet import Network, Supernet, recalibrate_bn
from hurricane.train import Checkpointer, TrainConfig, evaluate, set_threads, step_seed, train

# ---------------------------------------------------------------- helpers shared by steps


def layout_of(spec: SearchSpec) -> Layout:
    return Layout.from_spec(spec.backbone)


def protocol_of(spec: SearchSpec, *, repeats: int | None = None) -> Protocol:
    p = spec.profile
    return Protocol(warmup=p.warmup, repeats=repeats or p.repeats, batch_size=p.batch_size,
                    threads=p.threads)


def data_of(spec: SearchSpec) -> Data:
    return load_data(spec.dataset, input_size=spec.backbone.input_size, seed=spec.seed,
                     num_classes=spec.backbone.num_classes)


def table_key(search_id: str, device: str) -> str:
    return search_key(search_id, "profile", device, "latency.json")


def load_table(store: ArtifactStore, search_id: str, device: str) -> LatencyTable:
    return LatencyTable.from_json(store.get_json(table_key(search_id, device)))


def load_space(store: ArtifactStore, search_id: str) -> SearchSpace:
    return SearchSpace.from_json(store.get_json(search_key(search_id, "space", "space.json")))


def step_result(store: ArtifactStore, search_id: str, step: str) -> dict[str, Any]:
    return store.get_json(result_key(search_id, step))  # type: ignore[no-any-return]


def target(spec: SearchSpec, name: str) -> DeviceTarget:
    return next(d for d in spec.devices if d.name == name)


def target_profile(spec: SearchSpec, name: str) -> DeviceProfile:
    t = target(spec, name)
    return device_profile(name, table=str(t.table) if t.table else None)


def _job(spec: SearchSpec, search_id: str, store: ArtifactStore, step: str,
         device: str | None = None, *, pin: bool = True) -> JobSpec:
    """The job of ``step`` (for one ``device`` if given); ``pin`` runs it on that device's node
    pool (measurements), otherwise anywhere (training, evolution)."""
    label = target_profile(spec, device).node_label if device and pin else None
    return JobSpec(search_id=search_id, step=step, store_url=store.url, device=device,
                   node_label=label)


def _devices(spec: SearchSpec, device: str | None, *, searched: bool = False) -> list[str]:
    """Target names (``device`` alone if given); ``searched``: only devices with their own
    search (not served by a proxy device)."""
    names = [d.name for d in spec.devices]
    if device is not None and device not in names:
        raise ValueError(f"device {device!r} is not a target of this search; targets: {names}")
    pool = searched_devices(spec) if searched else names
    return [n for n in pool if device is None or n == device]


def searched_devices(spec: SearchSpec) -> list[str]:
    return [d.name for d in spec.devices if d.proxy is None]


# ---------------------------------------------------------------- profile


def profiled_ops(spec: SearchSpec) -> tuple[str, ...]:
    return MANUAL_SPACE_OPS if spec.space.kind == "manual" else spec.space.ops


def pool_space(spec: SearchSpec) -> SearchSpace:
    """Every profiled op at every layer: what profiling measures (and the `pool` space)."""
    return SearchSpace.uniform(profiled_ops(spec), spec.backbone.num_layers)


@JOBS.decorator("profile")
def profile_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    for name in _devices(spec, device):
        if store.exists(table_key(search_id, name)):
            continue
        # measurements shared by every search in this store: nothing is measured twice
        ckey = f"cache/latency/{name}.json"
        cache = store.get_json(ckey) if store.exists(ckey) else {}
        table = profile_table(layout_of(spec), pool_space(spec), target_profile(spec, name),
                              protocol_of(spec), cache=cache)
        if table.meta.get("measured_now"):
            store.put_json(ckey, cache)
        store.put_bytes(search_key(search_id, "profile", name, "latency.csv"),
                        table.to_csv().encode())
        store.put_json(table_key(search_id, name), table.to_json())


@STEPS.decorator("profile")
def profile_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                 executor: Executor) -> dict[str, Any]:
    out = {}
    for d in spec.devices:  # one job per device: each runs on its own node pool
        if not store.exists(table_key(search_id, d.name)):
            executor.run(_job(spec, search_id, store, "profile", d.name))
        t = load_table(store, search_id, d.name)
        out[d.name] = {"table": table_key(search_id, d.name), "fixed_ms": t.fixed_ms,
                       "measurements": t.meta.get("unique_measurements")}
    return {"devices": out}


# ---------------------------------------------------------------- space


@STEPS.decorator("space")
def space_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
               executor: Executor) -> dict[str, Any]:
    """The candidate ops per layer (pool, manual, or Eq. 2 hardware-aware), and each device's
    table bounds over it; budgets are resolved in the predictor step, on the final model."""
    sp = spec.space
    space = pool_space(spec)
    extra: dict[str, Any] = {}
    if sp.kind == "hardware":
        from hurricane.hwspace import hardware_space, plot_heatmap

        primary = spec.devices[0].name
        hw = hardware_space(layout_of(spec), load_table(store, search_id, primary), sp.ops,
                            alpha=sp.alpha, top_p=sp.top_p, explore_layers=sp.explore_layers,
                            explore_rule=sp.explore_rule)
        space = hw.space
        store.put_json(search_key(search_id, "space", "scores.json"), hw.to_json())
        with tempfile.TemporaryDirectory() as tmp:
            png = plot_heatmap(hw, Path(tmp) / "heatmap.png")
            store.put_file(search_key(search_id, "space", "heatmap.png"), png)
        extra = {"generated_for": primary, "a_win0": "-".join(hw.a_win0),
                 "exploring": {str(k): v for k, v in hw.exploring.items()}}
    store.put_json(search_key(search_id, "space", "space.json"), space.to_json())
    bounds = {}
    for d in spec.devices:
        t = load_table(store, search_id, d.name)
        t.check_covers(space)
        lo, hi = t.bounds(space)
        bounds[d.name] = {"min_ms": lo, "max_ms": hi}
    return {"kind": sp.kind, "size": space.size, "num_layers": space.num_layers,
            "ops": list(space.all_ops()), "table_bounds": bounds, **extra}


# ---------------------------------------------------------------- latency predictor


def predictor_key(search_id: str, device: str, name: str = "predictor.json") -> str:
    return search_key(search_id, "predictor", device, name)


def _measurable(spec: SearchSpec) -> list[str]:
    return [d.name for d in spec.devices if d.proxy is None
            and spec.predictor.enabled and target_profile(spec, d.name).backend != "table"]


@JOBS.decorator("predictor")
def predictor_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    """Measures sampled architectures end to end on the device and fits the predictor."""
    from hurricane.predictor import LatencyPredictor, PredictorConfig

    ps = spec.predictor
    space = load_space(store, search_id)
    layout = layout_of(spec)
    for name in _devices(spec, device):
        if name not in _measurable(spec) or store.exists(predictor_key(search_id, name)):
            continue
        rng = random.Random(step_seed(spec.seed, 0, 3))
        archs = list(dict.fromkeys(space.sample(rng) for _ in range(ps.samples * 3)))[:ps.samples]
        prof, proto = target_profile(spec, name), protocol_of(spec, repeats=ps.repeats)
        lat = []
        with progress.task(f"predictor {name}: measure", total=len(archs)) as bar:
            for a in archs:
                lat.append(measure_arch(layout, a, proto, prof).median_ms)
                bar.advance(1)
        table = load_table(store, search_id, name)
        # every k-th measured arch is held out: drift during the run hits both sides alike
        step = max(2, round(1 / ps.holdout))
        test_i = set(range(0, len(archs), step))
        train_a = [a for i, a in enumerate(archs) if i not in test_i]
        test_a = [a for i, a in enumerate(archs) if i in test_i]
        train_y = [y for i, y in enumerate(lat) if i not in test_i]
        test_y = [y for i, y in enumerate(lat) if i in test_i]
        model = LatencyPredictor(space, layer_table=table,
                                 config=PredictorConfig(log_target=ps.log_target))
        model.fit(train_a, train_y)
        m = model.evaluate(test_a, test_y)
        table_m = metrics([table.arch_latency(a) for a in test_a], test_y)
        store.put_json(predictor_key(search_id, name, "measurements.json"),
                       [{"arch": str(a), "latency_ms": y} for a, y in zip(archs, lat, strict=True)])
        store.put_json(predictor_key(search_id, name, "metrics.json"), {
            "n_train": len(train_a), "n_test": len(test_a),
            "predictor": {"mape": m.mape, "within_10pct": m.within_10pct, "srcc": m.srcc,
                          "max_ape": m.max_ape},
            "table_sum": {"mape": table_m.mape, "within_10pct": table_m.within_10pct,
                          "srcc": table_m.srcc, "max_ape": table_m.max_ape}})
        store.put_json(predictor_key(search_id, name), model.to_json())


@STEPS.decorator("predictor")
def predictor_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                   executor: Executor) -> dict[str, Any]:
    """Fits each measurable device's predictor, then checks every budget before any training."""
    out = {}
    for name in _measurable(spec):
        if not store.exists(predictor_key(search_id, name)):
            executor.run(_job(spec, search_id, store, "predictor", name))
        out[name] = store.get_json(predictor_key(search_id, name, "metrics.json"))
    space = load_space(store, search_id)
    budgets = {}
    for d in spec.devices:
        table = load_table(store, search_id, d.name)
        budgets[d.name] = resolve_budget(spec, d.name, space, table,
                                         latency_model(store, search_id, d.name, table))
    return {"devices": out, "budgets_ms": budgets}


def latency_model(store: ArtifactStore, search_id: str, device: str,
                  table: LatencyTable) -> Callable[[Arch], float]:
    """The device's fitted predictor when one exists (or, for a device served by a proxy, the
    proxy's predictor adapted to it), else the table sum."""
    key = predictor_key(search_id, device)
    adapted = transfer_key(search_id, device, "predictor.json")
    if store.exists(key):
        from hurricane.predictor import LatencyPredictor

        model: Any = LatencyPredictor.from_json(store.get_json(key))
    elif store.exists(adapted):
        from hurricane.proxy import AdaptedPredictor

        model = AdaptedPredictor.from_json(store.get_json(adapted))
    else:
        return table.arch_latency
    return lambda arch: float(model.predict([arch])[0])


def resolve_budget(spec: SearchSpec, device: str, space: SearchSpace, table: LatencyTable,
                   latency: Callable[[Arch], float]) -> float:
    """The device's budget in ms; a ``budget_fraction`` is placed between the fastest and the
    slowest architecture of ``space`` as the search's own latency model sees them."""
    t = target(spec, device)
    lo, hi = latency(table.fastest(space)), latency(table.slowest(space))
    if t.latency_budget_ms is None:
        return lo + (t.budget_fraction or 0.0) * (hi - lo)
    if t.latency_budget_ms < lo:
        raise InfeasibleBudget(
            f"devices[{device}].latency_budget_ms = {t.latency_budget_ms:.3f} ms is below the "
            f"fastest architecture of the space ({lo:.3f} ms on {device}); allowed: >= {lo:.3f} ms "
            f"(the slowest is {hi:.3f} ms)")
    return t.latency_budget_ms


# ---------------------------------------------------------------- supernet training


def train_config(s: TrainSettings, seed: int, *, iterations: int | None = None) -> TrainConfig:
    extra: dict[str, Any] = {}
    if isinstance(s, SupernetTrainSpec):
        extra = {"stop_loss": s.stop_loss, "stop_window": s.stop_window}
    return TrainConfig(iterations=iterations or s.iterations, batch_size=s.batch_size, lr=s.lr,
                       momentum=s.momentum, weight_decay=s.weight_decay,
                       label_smoothing=s.label_smoothing, checkpoint_every=s.checkpoint_every,
                       keep_checkpoints=s.keep_checkpoints, seed=seed, threads=s.threads, **extra)


def path_sampler(space: SearchSpace, seed: int):  # type: ignore[no-untyped-def]
    """forward(model, x, step): the uniformly sampled single path of training step ``step``."""

    def forward(model: torch.nn.Module, x: torch.Tensor, step: int) -> torch.Tensor:
        return model(x, space.sample(random.Random(step_seed(seed, step, 2))))

    return forward


def inherit_weights(net: Supernet, state: dict[str, torch.Tensor]) -> int:
    """Copies every tensor of ``state`` that ``net`` has under the same name and shape (the
    stem, the head and each (layer, op) both supernets contain); returns how many."""
    own = net.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(shared, strict=False)
    return len(shared)


def train_supernet(spec: SearchSpec, search_id: str, store: ArtifactStore, stage: str,
                   space: SearchSpace, *, iterations: int | None = None,
                   init: dict[str, torch.Tensor] | None = None, extra: dict[str, Any] | None = None,
                   stop_after: int | None = None) -> dict[str, Any]:
    """Trains one single-path supernet over ``space`` under ``searches/<id>/<stage>/``: periodic
    checkpoints (a restarted job continues from the newest), then supernet.pt + train.json."""
    torch.manual_seed(spec.seed)
    net = Supernet(layout_of(spec), space)
    inherited = inherit_weights(net, init) if init is not None else 0
    data = data_of(spec)
    cfg = train_config(spec.supernet, spec.seed, iterations=iterations)
    ckpt = Checkpointer(store, search_key(search_id, stage, "ckpt"), keep=cfg.keep_checkpoints)
    res = train(net, data.train, cfg, forward=path_sampler(space, spec.seed), checkpointer=ckpt,
                description=f"{stage}: supernet", stop_after=stop_after)
    if not res.complete:
        return {"stopped_at": res.steps}
    store.put_torch(search_key(search_id, stage, "supernet.pt"),
                    {"model": net.state_dict(), "space": space.to_json()})
    fixed = {str(i): c[0] for i, c in enumerate(space.choices) if len(c) == 1}
    summary = {"iterations": res.steps, "iteration_cap": cfg.iterations,
               "converged": res.converged, "stop_loss": cfg.stop_loss,
               "resumed_from": res.resumed_from, "final_loss": res.final_loss,
               "train_seconds": res.seconds, "images_per_s": res.images_per_s,
               "space_size": space.size, "active_layers": list(space.active_layers),
               "fixed_layers": fixed, "inherited_tensors": inherited,
               "loss_history": [list(h) for h in res.history], **(extra or {})}
    store.put_json(search_key(search_id, stage, "train.json"), summary)
    return summary


def a_win0(spec: SearchSpec, store: ArtifactStore, search_id: str, space: SearchSpace) -> Arch:
    """Algorithm 1's start: per layer, the candidate with the top Eq. 2 score on the first
    device (for a hardware space, the op its top-p ranking put first)."""
    from hurricane.hwspace import eq2_scores, layer_capacity

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


@JOBS.decorator("stage1")
def stage1_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    space, extra = stage1_space(spec, store, search_id)
    train_supernet(spec, search_id, store, "stage1", space, extra=extra)


@STEPS.decorator("stage1")
def stage1_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                executor: Executor) -> dict[str, Any]:
    key = search_key(search_id, "stage1", "train.json")
    if not store.exists(key):
        executor.run(_job(spec, search_id, store, "stage1"))
    return _without_history(store.get_json(key))


def _without_history(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "loss_history"}


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


@JOBS.decorator("stage2")
def stage2_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    init = None
    for name in _devices(spec, device, searched=True):
        win1 = stage1_winner(store, search_id, name)
        stage = stage2_dir(win1)
        if store.exists(search_key(search_id, stage, "train.json")):
            continue
        if spec.hurricane.stage2_init == "stage1" and init is None:
            init = store.get_torch(search_key(search_id, "stage1", "supernet.pt"))["model"]
        train_supernet(spec, search_id, store, stage, stage2_space(spec, store, search_id, win1),
                       iterations=spec.hurricane.stage2_iterations, init=init,
                       extra={"a_win1": str(win1), "t": spec.stage_split,
                              "init": spec.hurricane.stage2_init})


@STEPS.decorator("stage2")
def stage2_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                executor: Executor) -> dict[str, Any]:
    out = {}
    for name in searched_devices(spec):  # one training per distinct Stage 1 winner
        key = search_key(search_id, stage2_dir(stage1_winner(store, search_id, name)),
                         "train.json")
        if not store.exists(key):
            executor.run(_job(spec, search_id, store, "stage2", name, pin=False))
        out[name] = _without_history(store.get_json(key))
    return {"devices": out}


# ---------------------------------------------------------------- evolution on the supernet


class SupernetScorer:
    """Validation accuracy of a path after BN recalibration on fixed training batches."""

    def __init__(self, net: Supernet, data: Data, spec: SearchSpec) -> None:
        ev = spec.evolution
        self.net, self.val, self.limit = net, data.val, ev.eval_batches
        self.bn_batches = [data.train.train_batch(i, ev.bn_batch_size, seed=spec.seed + 7919)[0]
                           for i in range(ev.bn_batches)]

    def __call__(self, arch: Arch) -> float:
        recalibrate_bn(self.net, self.bn_batches, arch=arch)
        return evaluate(self.net, self.val, limit=self.limit,
                        forward=lambda x: self.net(x, arch))


def evolution_config(spec: SearchSpec) -> EvolutionConfig:
    e = spec.evolution
    return EvolutionConfig(iterations=e.iterations, population=e.population, top_k=e.top_k,
                           crossover=e.crossover, mutation=e.mutation,
                           mutation_prob=e.mutation_prob, max_tries=e.max_tries,
                           keep_top=e.keep_top, seed=spec.seed)


def evolution_key(search_id: str, step: str, device: str, name: str = "evolution.json") -> str:
    return search_key(search_id, step, device, name)


def supernet_stage(spec: SearchSpec, store: ArtifactStore, search_id: str, step: str,
                   device: str) -> str:
    """The stage whose supernet ``step`` searches for ``device``."""
    if step == "search1":
        return "stage1"
    return stage2_dir(stage1_winner(store, search_id, device))


def search_supernet(spec: SearchSpec, search_id: str, store: ArtifactStore, step: str,
                    device: str | None) -> None:
    """Evolution under each device's budget on its stage's supernet; evolution.json holds the
    top architectures and pareto.json the accuracy/latency Pareto set of all evaluated."""
    set_threads(spec.supernet.threads)
    data = data_of(spec)
    loaded: dict[str, tuple[SearchSpace, SupernetScorer]] = {}
    for name in _devices(spec, device, searched=True):
        key = evolution_key(search_id, step, name)
        if store.exists(key):
            continue
        stage = supernet_stage(spec, store, search_id, step, name)
        if stage not in loaded:
            blob = store.get_torch(search_key(search_id, stage, "supernet.pt"))
            space = SearchSpace.from_json(blob["space"])
            net = Supernet(layout_of(spec), space)
            net.load_state_dict(blob["model"])
            loaded = {stage: (space, SupernetScorer(net, data, spec))}  # one supernet in memory
        space, scorer = loaded[stage]
        table = load_table(store, search_id, name)
        latency = latency_model(store, search_id, name, table)
        full = load_space(store, search_id)
        finder = EvolutionSearch(space, evolution_config(spec), accuracy=scorer, latency=latency,
                                 budget_ms=resolve_budget(spec, name, full, table, latency),
                                 seeds=[table.fastest(space)])
        res = finder.run().to_json()
        res["supernet"] = stage
        store.put_json(evolution_key(search_id, step, name, "pareto.json"),
                       {"device": name, "step": step, "budget_ms": res["budget_ms"],
                        "pareto": res["pareto"]})
        store.put_json(key, res)


def _search_step(spec: SearchSpec, search_id: str, store: ArtifactStore, executor: Executor,
                 step: str) -> dict[str, Any]:
    out = {}
    for name in searched_devices(spec):
        key = evolution_key(search_id, step, name)
        if not store.exists(key):
            executor.run(_job(spec, search_id, store, step, name, pin=False))
        res = store.get_json(key)
        win = res["top"][0]
        out[name] = {"winner": win["arch"], "supernet_accuracy": win["accuracy"],
                       "latency_ms": win["latency_ms"], "budget_ms": res["budget_ms"],
                       "evaluated": res["evaluated"], "supernet": res.get("supernet"),
                       "pareto": evolution_key(search_id, step, name, "pareto.json"),
                       "pareto_size": len(res.get("pareto", []))}
    return {"devices": out}


@JOBS.decorator("search1")
def search1_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    search_supernet(spec, search_id, store, "search1", device)


@STEPS.decorator("search1")
def search1_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                 executor: Executor) -> dict[str, Any]:
    return _search_step(spec, search_id, store, executor, "search1")


@JOBS.decorator("search2")
def search2_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    search_supernet(spec, search_id, store, "search2", device)


@STEPS.decorator("search2")
def search2_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                 executor: Executor) -> dict[str, Any]:
    return _search_step(spec, search_id, store, executor, "search2")


# ---------------------------------------------------------------- ProxylessNAS baseline


def proxyless_key(search_id: str, device: str, name: str = "search.json") -> str:
    return search_key(search_id, "proxyless", device, name)


@JOBS.decorator("proxyless")
def proxyless_job(spec: SearchSpec, search_id: str, store: ArtifactStore,
                  device: str | None) -> None:
    """One gradient search per device: its expected-latency loss uses that device's table."""
    import statistics

    from hurricane.proxyless import ProxylessConfig, proxyless_search

    ps = spec.proxyless
    space, data, layout = load_space(store, search_id), data_of(spec), layout_of(spec)
    for name in _devices(spec, device, searched=True):
        if store.exists(proxyless_key(search_id, name)):
            continue
        table = load_table(store, search_id, name)
        model = latency_model(store, search_id, name, table)
        budget = resolve_budget(spec, name, space, table, model)
        # The loss compares the table's E[lat] with T: state the budget in table units (the
        # median table/model ratio over sampled archs; 1 when the model is the table).
        rng = random.Random(spec.seed)
        sample = [space.sample(rng) for _ in range(64)]
        scale = statistics.median(table.arch_latency(a) / model(a) for a in sample)
        cfg = ProxylessConfig(
            weights=train_config(ps, spec.seed),
            warmup_iterations=int(ps.warmup_fraction * ps.iterations), arch_lr=ps.arch_lr,
            arch_update_every=ps.arch_update_every, binary_mode=ps.binary_mode,
            latency_loss=ps.latency_loss, latency_lambda=ps.latency_lambda,
            latency_beta=ps.latency_beta)
        torch.manual_seed(spec.seed)
        net = Supernet(layout, space)
        res = proxyless_search(
            layout, space, data, table, budget * scale, cfg,
            latency=lambda a, m=model, s=scale: m(a) * s,  # type: ignore[misc]
            supernet=net, description=f"proxyless {name}",
            checkpointer=Checkpointer(store, proxyless_key(search_id, name, "ckpt"),
                                      keep=ps.keep_checkpoints))
        out = res.to_json()
        out.update(budget_ms=budget, latency_ms=model(res.arch), table_scale=scale,
                   budget_table_ms=budget * scale,
                   supernet_accuracy=SupernetScorer(net, data, spec)(res.arch))
        store.put_json(proxyless_key(search_id, name), out)


@STEPS.decorator("proxyless")
def proxyless_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                   executor: Executor) -> dict[str, Any]:
    out = {}
    for name in searched_devices(spec):
        if not store.exists(proxyless_key(search_id, name)):
            executor.run(_job(spec, search_id, store, "proxyless", name, pin=False))
        r = store.get_json(proxyless_key(search_id, name))
        out[name] = {"winner": r["arch"], "supernet_accuracy": r["supernet_accuracy"],
                       "latency_ms": r["latency_ms"], "budget_ms": r["budget_ms"],
                       "expected_latency_ms": r["expected_latency_ms"],
                       "argmax_arch": r["argmax_arch"], "fallback": r["fallback"],
                       "iterations": r["iterations"], "arch_updates": r["arch_updates"],
                       "train_seconds": r["seconds"]}
    return {"devices": out}


# ---------------------------------------------------------------- one proxy device


def _target_latencies(layout: Layout, prof: DeviceProfile, table: LatencyTable, proto: Protocol,
                      name: str, archs: list[Arch], what: str) -> list[float]:
    """End-to-end latencies on the device; a table device's table is its truth."""
    if prof.backend == "table":
        return [table.arch_latency(a) for a in archs]
    out = []
    with progress.task(f"transfer {name}: {what}", total=len(archs)) as bar:
        for a in archs:
            out.append(measure_arch(layout, a, proto, prof).median_ms)
            bar.advance(1)
    return out


def transfer_key(search_id: str, device: str, name: str = "transfer.json") -> str:
    return search_key(search_id, "transfer", device, name)


def proxy_predictor(spec: SearchSpec, store: ArtifactStore, search_id: str, proxy: str,
                    space: SearchSpace) -> Any:
    """The proxy device's fitted latency predictor; for a table device, one fitted on its
    table's prices of sampled architectures (so it can be adapted all the same)."""
    from hurricane.predictor import LatencyPredictor

    if store.exists(predictor_key(search_id, proxy)):
        return LatencyPredictor.from_json(store.get_json(predictor_key(search_id, proxy)))
    table = load_table(store, search_id, proxy)
    rng = random.Random(step_seed(spec.seed, 0, 6))
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(600)))[:400]
    return LatencyPredictor(space, layer_table=table).fit(archs,
                                                          [table.arch_latency(a) for a in archs])


@JOBS.decorator("transfer")
def transfer_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    """One proxy device (Lu et al.): measure k architectures on the target, compare their
    ranking with the proxy's predictor; SRCC >= threshold: the proxy's Pareto architectures,
    re-measured on the target, give its winner; otherwise (or when none fits the target's
    budget) the proxy predictor adapted to the target drives evolution on the proxy's supernet."""
    from hurricane.proxy import AdaptedPredictor, decide

    op = spec.one_proxy
    space, layout = load_space(store, search_id), layout_of(spec)
    winner_step = STRATEGIES.get(spec.strategy).winner_step(spec)
    for t in spec.devices:
        if t.proxy is None or (device is not None and t.name != device):
            continue
        if store.exists(transfer_key(search_id, t.name)):
            continue
        prof, table = target_profile(spec, t.name), load_table(store, search_id, t.name)
        proto = protocol_of(spec, repeats=op.repeats)

        on_target = partial(_target_latencies, layout, prof, table, proto, t.name)
        rng = random.Random(step_seed(spec.seed, 0, 5))
        archs = list(dict.fromkeys(space.sample(rng) for _ in range(op.samples * 3)))[:op.samples]
        measured = on_target(archs, "measure")
        base = proxy_predictor(spec, store, search_id, t.proxy, space)
        decision = decide(base.predict(archs), measured, op.threshold)
        adapted = AdaptedPredictor(base).fit(archs, measured)
        store.put_json(transfer_key(search_id, t.name, "predictor.json"), adapted.to_json())
        latency = latency_model(store, search_id, t.name, table)
        budget = resolve_budget(spec, t.name, space, table, latency)
        out: dict[str, Any] = {"proxy": t.proxy, "decision": decision.to_json(),
                               "samples": len(archs), "budget_ms": budget,
                               "target_source": "table" if prof.backend == "table" else "measured",
                               "measurements": [{"arch": str(a), "latency_ms": y}
                                                for a, y in zip(archs, measured, strict=True)]}
        winner: Candidate | None = None
        if decision.action == "reuse":
            pareto = [Candidate.from_json(c) for c in store.get_json(
                evolution_key(search_id, winner_step, t.proxy, "pareto.json"))["pareto"]]
            lat = on_target([c.arch for c in pareto], "re-measure the proxy's Pareto set")
            out["reused"] = [{**c.to_json(), "proxy_latency_ms": c.latency_ms,
                              "latency_ms": y, "fits": y <= budget}
                             for c, y in zip(pareto, lat, strict=True)]
            fits = [Candidate(c.arch, c.accuracy, y) for c, y in zip(pareto, lat, strict=True)
                    if y <= budget]
            winner = max(fits, key=lambda c: (c.accuracy, -c.latency_ms), default=None)
            out["method"] = "reuse" if winner else "adapt (no reused architecture fits)"
        if winner is None:
            out.setdefault("method", "adapt")
            stage = supernet_stage(spec, store, search_id, winner_step, t.proxy)
            blob = store.get_torch(search_key(search_id, stage, "supernet.pt"))
            sub = SearchSpace.from_json(blob["space"])
            net = Supernet(layout, sub)
            net.load_state_dict(blob["model"])
            set_threads(spec.supernet.threads)
            finder = EvolutionSearch(sub, evolution_config(spec),
                                     accuracy=SupernetScorer(net, data_of(spec), spec),
                                     latency=latency, budget_ms=budget,
                                     seeds=[table.fastest(sub)])
            res = finder.run()
            store.put_json(transfer_key(search_id, t.name, "evolution.json"),
                           {**res.to_json(), "supernet": stage})
            winner = res.top[0]
            out["supernet"] = stage
        out["winner"] = winner.to_json()
        store.put_json(transfer_key(search_id, t.name), out)


@STEPS.decorator("transfer")
def transfer_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                  executor: Executor) -> dict[str, Any]:
    out = {}
    for t in spec.devices:
        if t.proxy is None:
            continue
        if not store.exists(transfer_key(search_id, t.name)):
            executor.run(_job(spec, search_id, store, "transfer", t.name))  # on the target
        r = store.get_json(transfer_key(search_id, t.name))
        w = r["winner"]
        out[t.name] = {"winner": w["arch"], "supernet_accuracy": w["accuracy"],
                       "latency_ms": w["latency_ms"], "budget_ms": r["budget_ms"],
                       "proxy": r["proxy"], "method": r["method"], "srcc": r["decision"]["srcc"],
                       "samples": r["samples"]}
    return {"devices": out}


def winners(spec: SearchSpec, store: ArtifactStore, search_id: str) -> dict[str, Candidate]:
    """The strategy's final search step's winner per device."""
    strategy = STRATEGIES.get(spec.strategy)
    res = dict(step_result(store, search_id, strategy.winner_step(spec))["devices"])
    if "transfer" in strategy.plan(spec):
        res.update(step_result(store, search_id, "transfer")["devices"])
    return {d: Candidate(Arch.parse(r["winner"]), r["supernet_accuracy"], r["latency_ms"])
            for d, r in res.items()}


# ---------------------------------------------------------------- retrain and export


def final_key(search_id: str, device: str, name: str) -> str:
    return search_key(search_id, "retrain", device, name)


def retrain_arch(spec: SearchSpec, arch: Arch, data: Data, store: ArtifactStore,
                 prefix: str) -> tuple[Network, dict[str, Any]]:
    torch.manual_seed(spec.seed)
    net = Network(layout_of(spec), arch)
    cfg = train_config(spec.retrain, spec.seed)
    res = train(net, data.trainval(), cfg,
                checkpointer=Checkpointer(store, prefix + "/ckpt", keep=cfg.keep_checkpoints),
                description=f"retrain {arch.digest}")
    acc = evaluate(net, data.test)
    return net, {"test_top1": acc, "iterations": res.steps, "train_seconds": res.seconds,
                 "final_loss": res.final_loss, "test_images": len(data.test)}


@JOBS.decorator("retrain")
def retrain_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    set_threads(spec.retrain.threads)
    data = data_of(spec)
    found = winners(spec, store, search_id)
    for name, cand in found.items():
        if device is not None and name != device:
            continue
        if store.exists(final_key(search_id, name, "metrics.json")):
            continue
        # a device whose winner another device already retrained reuses that model
        same = [d for d, c in found.items() if d != name and c.arch == cand.arch
                and store.exists(final_key(search_id, d, "metrics.json"))]
        if same:
            store.put_bytes(final_key(search_id, name, "final.pt"),
                            store.get_bytes(final_key(search_id, same[0], "final.pt")))
            metrics = {**store.get_json(final_key(search_id, same[0], "metrics.json")),
                       "shared_with": same[0]}
        else:
            net, metrics = retrain_arch(spec, cand.arch, data, store,
                                        search_key(search_id, "retrain", name))
            store.put_torch(final_key(search_id, name, "final.pt"), {
                "arch": str(cand.arch), "backbone": spec.backbone.model_dump(mode="json"),
                "classes": list(data.classes), "state_dict": net.state_dict()})
        store.put_json(final_key(search_id, name, "arch.json"), {
            "arch": str(cand.arch), "ops": list(cand.arch.ops), "device": name,
            "backbone": spec.backbone.model_dump(mode="json")})
        store.put_json(final_key(search_id, name, "metrics.json"), metrics)


@STEPS.decorator("retrain")
def retrain_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                 executor: Executor) -> dict[str, Any]:
    if not all(store.exists(final_key(search_id, d.name, "metrics.json")) for d in spec.devices):
        executor.run(_job(spec, search_id, store, "retrain"))
    return {"devices": {d.name: store.get_json(final_key(search_id, d.name, "metrics.json"))
                        for d in spec.devices}}


def load_final(store: ArtifactStore, search_id: str, device: str) -> Network:
    from hurricane.spec import BackboneSpec

    blob = store.get_torch(final_key(search_id, device, "final.pt"))
    net = Network(Layout.from_spec(BackboneSpec.model_validate(blob["backbone"])),
                  Arch.parse(blob["arch"]))
    net.load_state_dict(blob["state_dict"])
    return net.eval()


@JOBS.decorator("export")
def export_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    from hurricane.export import export_and_check

    data = data_of(spec)
    x = next(data.test.eval_batches(64))[0]
    for name in _devices(spec, device):
        key = search_key(search_id, "export", name, "export.json")
        if store.exists(key):
            continue
        net = load_final(store, search_id, name)
        with progress.task(f"export {name}", total=2) as bar:
            onnx_bytes, parity = export_and_check(net, input_size=spec.backbone.input_size,
                                                  inputs=x, opset=spec.retrain.onnx_opset)
            store.put_bytes(search_key(search_id, "export", name, "model.onnx"), onnx_bytes)
            bar.advance(1)
            prof = target_profile(spec, name)
            timing = None if prof.backend == "table" else measure_arch(
                layout_of(spec), net.arch,
                protocol_of(spec, repeats=max(3, spec.profile.measure_final)), prof)
            bar.advance(1)
        table = load_table(store, search_id, name)
        store.put_json(key, {
            "onnx": search_key(search_id, "export", name, "model.onnx"),
            "onnx_max_abs_diff": parity.max_abs_diff, "onnx_top1_agreement": parity.top1_agreement,
            "measured_latency_ms": timing.median_ms if timing else None,
            "measured_latency_iqr_ms": timing.iqr_ms if timing else None,
            "predicted_latency_ms": latency_model(store, search_id, name, table)(net.arch),
            "table_latency_ms": table.arch_latency(net.arch)})


@STEPS.decorator("export")
def export_step(spec: SearchSpec, search_id: str, store: ArtifactStore,
                executor: Executor) -> dict[str, Any]:
    out = {}
    for d in spec.devices:
        key = search_key(search_id, "export", d.name, "export.json")
        if not store.exists(key):
            executor.run(_job(spec, search_id, store, "export", d.name))
        out[d.name] = store.get_json(key)
    return {"devices": out}

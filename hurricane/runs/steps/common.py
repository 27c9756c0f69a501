"""Helpers every step shares: layouts, data, stored tables, latency models, budgets, training
configurations, scorers and quality verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from hurricane import progress
from hurricane.data.datasets import Data, DatasetError, load_data
from hurricane.latency.devices import DeviceProfile, device_profile
from hurricane.latency.profiling import LatencyTable, Protocol, Timing, measure_arch
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.supernet import Supernet, recalibrate_bn
from hurricane.nets.train import TrainConfig, evaluate, train
from hurricane.runs.steps.keys import (
    dataset_key,
    devices_of,
    evolution_key,
    predictor_key,
    searched_devices,
    step_result,
    table_key,
    target,
    transfer_key,
)
from hurricane.search.evolution import EvolutionConfig, EvolutionResult, InfeasibleBudget
from hurricane.spec import SearchSpec, TrainingSpec, TrainSettings
from hurricane.storage.store import ArtifactStore, search_key

if TYPE_CHECKING:
    from hurricane.latency.predictor import Predictor

# the store keys (their home: keys.py), importable from here as before
__all__ = [
    "dataset_key", "devices_of", "evolution_key", "predictor_key", "searched_devices",
    "step_result", "table_key", "target", "transfer_key",
]


def layout_of(spec: SearchSpec) -> Layout:
    return Layout.from_spec(spec.backbone)


def protocol_of(spec: SearchSpec, *, repeats: int | None = None) -> Protocol:
    p = spec.profile
    return Protocol(warmup=p.warmup, repeats=repeats or p.repeats, batch_size=p.batch_size,
                    threads=p.threads)


def data_of(spec: SearchSpec, store: ArtifactStore | None = None,
            search_id: str | None = None) -> Data:
    """The spec's dataset. A packed set's index (source, splits, shard checksums) is recorded
    as the search's ``dataset.json`` by the first step that reads it; a later step that finds
    another index there (the set was re-packed or replaced mid-search, so its validation and
    test images may differ) fails instead of mixing the two."""
    data = load_data(spec.dataset, input_size=spec.backbone.input_size, seed=spec.seed,
                     num_classes=spec.backbone.num_classes)
    if data.info is not None and store is not None and search_id is not None:
        key = dataset_key(search_id)
        if not store.put_json(key, data.info, if_absent=True):
            seen = store.get_json(key)
            if seen.get("index_sha256") != data.info["index_sha256"]:
                raise DatasetError(
                    f"dataset.path {spec.dataset.path}: its index changed since this search "
                    f"first read it (sha256 {str(seen.get('index_sha256'))[:12]}… recorded in "
                    f"{key}, {str(data.info['index_sha256'])[:12]}… now): the validation and "
                    "test splits may differ; restore the packed set or start a new search")
    return data


def load_table(store: ArtifactStore, search_id: str, device: str) -> LatencyTable:
    return LatencyTable.from_json(store.get_json(table_key(search_id, device)))


def load_space(store: ArtifactStore, search_id: str) -> SearchSpace:
    return SearchSpace.from_json(store.get_json(search_key(search_id, "space", "space.json")))


def target_profile(spec: SearchSpec, name: str) -> DeviceProfile:
    t = target(spec, name)
    return device_profile(name, table=str(t.table) if t.table else None)


def latency_model(store: ArtifactStore, search_id: str, device: str,
                  table: LatencyTable) -> Callable[[Arch], float]:
    """The device's fitted predictor when one exists (or, for a device served by a proxy, the
    proxy's predictor adapted to it), else the table sum."""
    key = predictor_key(search_id, device)
    adapted = transfer_key(search_id, device, "predictor.json")
    model: Predictor
    if store.exists(key):
        from hurricane.latency.fewshot import FewShotPredictor, is_fewshot
        from hurricane.latency.predictor import LatencyPredictor

        d = store.get_json(key)
        model = FewShotPredictor.from_json(d) if is_fewshot(d) else LatencyPredictor.from_json(d)
    elif store.exists(adapted):
        from hurricane.latency.proxy import AdaptedPredictor

        model = AdaptedPredictor.from_json(store.get_json(adapted))
    else:
        return table.arch_latency
    return lambda arch: float(model.predict([arch])[0])


def held_out_ratios(store: ArtifactStore, search_id: str, device: str) -> Any:
    """log(measured / predicted) of the device's predictor on the architectures it did not
    fit (its fit.json's test points); None for a device without them (a table device)."""
    from hurricane.latency.calibration import log_ratios

    key = predictor_key(search_id, device, "fit.json")
    if not store.exists(key):
        return None
    pts = [p for p in store.get_json(key)["points"] if p.get("split") == "test"]
    r = log_ratios([p["measured_ms"] for p in pts], [p["predicted_ms"] for p in pts])
    return r if r.size >= 3 else None


def budget_check(spec: SearchSpec, store: ArtifactStore, search_id: str, device: str,
                 budget_ms: float) -> dict[str, Any] | None:
    """The budget evolution enforces: ``budget_ms``, or with ``evolution.budget_confidence``
    the budget over the predictor's calibrated upper factor; None without held-out points."""
    from hurricane.latency.calibration import interval_factors, upper_factor

    r = held_out_ratios(store, search_id, device)
    if r is None:
        return None
    conf = spec.evolution.budget_confidence
    lo, hi = interval_factors(r, conf or 0.9)
    up = upper_factor(r, conf) if conf else None
    return {"budget_ms": budget_ms, "confidence": conf, "interval_confidence": conf or 0.9,
            "effective_budget_ms": budget_ms / up.factor if up else budget_ms,
            "upper_factor": up.to_json() if up else None,
            "interval_factors": [lo.to_json(), hi.to_json()], "held_out": int(r.size)}


def edge_counts(latencies: dict[Any, float], top: list[dict[str, Any]],
                check: dict[str, Any]) -> dict[str, Any]:
    """How many of the architectures evolution priced, and of its top, sit near the budget
    edge: their calibrated interval holds the budget, so the predictor cannot tell their side."""
    from hurricane.latency.calibration import Factor, near_edge

    lo, hi = (Factor(f["factor"], f["level"], f["points"], f["calibrated"])
              for f in check["interval_factors"])
    b = check["budget_ms"]
    return {"priced": len(latencies), "near_edge": near_edge(list(latencies.values()), b, lo, hi),
            "top_near_edge": near_edge([c["latency_ms"] for c in top], b, lo, hi)}


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


def train_config(s: TrainSettings, seed: int, *, iterations: int | None = None,
                 training: TrainingSpec | None = None) -> TrainConfig:
    """A training's configuration from the spec's settings: every field of ``s`` (and of
    ``training``: precision, memory format, BatchNorm sync) that TrainConfig has, by name."""
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in s.model_dump().items() if k in names}
    if training is not None:
        values.update({k: v for k, v in training.model_dump().items() if k in names})
    values.update(seed=seed, iterations=iterations or s.iterations)
    return TrainConfig(**values)


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


def finetuned_accuracy(net: Supernet, arch: Arch, data: Data, spec: SearchSpec,
                       bn_batches: Sequence[Any], *, description: str = "finalist") -> float:
    """``arch`` taken out of the supernet (BN recalibrated on ``bn_batches``), trained alone for
    ``evolution.finalist_iterations`` steps (the supernet's batch size and regularisation,
    ``finalist_lr`` decaying linearly; the same batches for every architecture) and scored on
    the validation split as evolution scores it. The supernet is left as it was."""
    ev = spec.evolution
    recalibrate_bn(net, bn_batches, arch=arch)
    sub = net.extract(arch)
    cfg = replace(train_config(spec.supernet, spec.seed + 6271, iterations=ev.finalist_iterations),
                  lr=ev.finalist_lr, stop_loss=None,
                  log_every=max(1, ev.finalist_iterations // 10))
    train(sub, data.train, cfg, description=description)
    return evaluate(sub, data.val, limit=ev.eval_batches)


def rescore_top(found: EvolutionResult, net: Supernet, data: Data,
                spec: SearchSpec) -> EvolutionResult:
    """Evolution's best ``evolution.rescore`` candidates scored again, each the mean over
    ``evolution.rescore_recalibrations`` BN recalibrations on the whole validation split, and
    put in that order (the rest keep theirs). Evolution keeps the best of some hundred noisy
    scores, so its first is partly the luckiest; the steadier estimate decides among near-ties.
    The step's evolution.json records both scores (``rescored``)."""
    from hurricane.runs.steps.quality import MultiScorer

    ev = spec.evolution
    k = min(ev.rescore, len(found.top))
    if k < 2:
        return found
    t0 = time.monotonic()
    scorer = MultiScorer(net, data, spec, ev.rescore_recalibrations)
    again = [scorer(c.arch) for c in found.top[:k]]
    means = [sum(a) / len(a) for a in again]
    order = sorted(range(k), key=lambda i: (-means[i], i))
    top = [replace(found.top[i], accuracy=round(means[i], 4)) for i in order] + found.top[k:]
    info = {"count": k, "recalibrations": ev.rescore_recalibrations,
            "evolution_pick": str(found.top[0].arch), "changed": order[0] != 0,
            "evolution_rank": [i + 1 for i in order],
            "evolution_accuracy": [found.top[i].accuracy for i in order],
            "scores": [[round(x, 4) for x in again[i]] for i in order],
            "seconds": round(time.monotonic() - t0, 2)}
    return replace(found, top=top, rescored=info)


def rank_finalists(found: EvolutionResult, scorer: SupernetScorer, data: Data,
                   spec: SearchSpec) -> dict[str, Any]:
    """``found`` as stored (``to_json``), its first ``evolution.finalists`` candidates re-ranked
    by :func:`finetuned_accuracy` (ties keep the supernet's order). The supernet scores its best
    candidates within noise of each other; a short fine-tune from the shared weights was meant
    to separate them, but measured on cluttered-digits it picked no better than the supernet
    (bench/results/supernet_ranking_finalists.json), so ``evolution.finalists`` is 0 by
    default. Each finalist records ``finetuned_accuracy`` and ``supernet_rank``; ``finalists``
    says what ran."""
    out = found.to_json()
    k = min(spec.evolution.finalists, len(found.top))
    if k < 2:
        return out
    t0 = time.monotonic()
    tuned = [finetuned_accuracy(scorer.net, c.arch, data, spec, scorer.bn_batches,
                                description=f"finalist {i + 1}/{k} {c.arch.digest}")
             for i, c in enumerate(found.top[:k])]
    order = sorted(range(k), key=lambda i: (-tuned[i], i))
    out["top"] = [{**found.top[i].to_json(), "finetuned_accuracy": round(tuned[i], 4),
                   "supernet_rank": i + 1} for i in order] + out["top"][k:]
    out["finalists"] = {"count": k, "iterations": spec.evolution.finalist_iterations,
                        "lr": spec.evolution.finalist_lr, "supernet_pick": str(found.top[0].arch),
                        "changed": order[0] != 0, "seconds": round(time.monotonic() - t0, 2)}
    return out


def finalist_summary(evolution: dict[str, Any]) -> dict[str, Any]:
    """What a step's result says of a stored evolution's finalists: the winner's fine-tuned
    accuracy, its rank through the supernet, how many were fine-tuned; {} when none were."""
    fin = evolution.get("finalists")
    if not fin:
        return {}
    win = evolution["top"][0]
    return {"finetuned_accuracy": win["finetuned_accuracy"], "supernet_rank": win["supernet_rank"],
            "finalists": fin["count"]}


def quality_verdict(accuracies: list[float], *, num_classes: int,
                    margin: float) -> dict[str, Any]:
    """Mean and spread of random architectures' accuracy through a supernet, against chance:
    below ``chance + margin * (1 - chance)`` the supernet did not learn and a search on it is a
    random pick, which the verdict says in words."""
    chance = 1.0 / num_classes
    floor = chance + margin * (1.0 - chance)
    n = len(accuracies)
    mean = sum(accuracies) / n
    std = (sum((a - mean) ** 2 for a in accuracies) / max(1, n - 1)) ** 0.5
    reliable = mean >= floor
    out: dict[str, Any] = {
        "archs": n, "accuracy_mean": round(mean, 4), "accuracy_std": round(std, 4),
        "accuracy_min": round(min(accuracies), 4), "accuracy_max": round(max(accuracies), 4),
        "chance": round(chance, 4), "floor": round(floor, 4), "reliable": reliable}
    if not reliable:
        out["warning"] = (
            f"the supernet did not learn: {n} random architectures score {mean:.1%} mean "
            f"validation accuracy through it ({min(accuracies):.1%}-{max(accuracies):.1%}; "
            f"chance is {chance:.1%}, reliable from {floor:.1%}), so its ranking is unreliable "
            "and the search's winner is close to a random pick among feasible architectures")
    return out


def loss_curve(history: Sequence[Sequence[float]], points: int = 12) -> list[list[float]]:
    """(step, loss) pairs thinned to at most ``points`` evenly spaced entries, first and last
    kept: a training's loss curve for step results and reports."""
    idx: Sequence[int] = range(len(history))
    if len(history) > points:
        idx = sorted({round(i * (len(history) - 1) / (points - 1)) for i in range(points)})
    return [[int(history[i][0]), round(float(history[i][1]), 4)] for i in idx]


def quality_warnings(trainings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"warnings": [...], "supernets": {label: verdict}}``: a warning naming each training
    (by its label) whose supernet's ranking is unreliable, and every measured training's verdict
    in a structured form (``supernet_verdict``) for status, API and operator; empty when none
    was measured."""
    warnings = [f"{label}: {t['quality']['warning']}" for label, t in trainings.items()
                if (t.get("quality") or {}).get("warning")]
    verdicts = {label: supernet_verdict(t["quality"], t.get("iterations"))
                for label, t in trainings.items() if t.get("quality")}
    return {**({"warnings": sorted(set(warnings))} if warnings else {}),
            **({"supernets": verdicts} if verdicts else {})}


VERDICT_KEYS = ("reliable", "tests", "accuracy_mean", "split_half_rho", "consistency_needed",
                "stability_rho", "stability_needed", "warning")


def supernet_verdict(quality: dict[str, Any], iterations: int | None = None) -> dict[str, Any]:
    """The machine-readable part of a supernet's quality verdict: reliable, which tests passed
    (learned, consistent, stable), the rank agreements against what they need, and the warning
    (what failed and what to change) when unreliable."""
    out = {k: quality[k] for k in VERDICT_KEYS if k in quality}
    if iterations is not None:
        out["iterations"] = int(iterations)
    return out


def evolution_config(spec: SearchSpec) -> EvolutionConfig:
    e = spec.evolution
    return EvolutionConfig(iterations=e.iterations, population=e.population, top_k=e.top_k,
                           crossover=e.crossover, mutation=e.mutation,
                           mutation_prob=e.mutation_prob, max_tries=e.max_tries,
                           keep_top=e.keep_top, seed=spec.seed)


def measure_timings(layout: Layout, archs: list[Arch], protocol: Protocol, device: DeviceProfile,
                    description: str) -> list[Timing]:
    """End-to-end timing (median, IQR, outlier count) of each architecture, with a progress bar."""
    out = []
    with progress.task(description, total=len(archs)) as bar:
        for a in archs:
            out.append(measure_arch(layout, a, protocol, device))
            bar.advance(1)
    return out


def measure_archs(layout: Layout, archs: list[Arch], protocol: Protocol, device: DeviceProfile,
                  description: str) -> list[float]:
    """Median end-to-end latency (ms) of each architecture on the device, with a progress bar."""
    return [t.median_ms for t in measure_timings(layout, archs, protocol, device, description)]


def noisy(t: Timing) -> bool:
    """A timing the protocol flags: repeats beyond Q3 + 3·IQR, or an IQR above a quarter of
    the median (a preempted core, frequency changes). The predictor trusts these less."""
    return t.outliers > 0 or t.iqr_ms > 0.25 * t.median_ms

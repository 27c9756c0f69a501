"""One proxy device (Lu et al.): devices served by another device's search."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

from hurricane.latency.devices import DeviceProfile
from hurricane.latency.profiling import LatencyTable, Protocol
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.train import set_threads, step_seed
from hurricane.runs.steps.common import (
    SupernetScorer,
    data_of,
    evolution_config,
    evolution_key,
    finalist_summary,
    latency_model,
    layout_of,
    load_space,
    load_table,
    measure_archs,
    predictor_key,
    protocol_of,
    rank_finalists,
    rescore_top,
    resolve_budget,
    target_profile,
    transfer_key,
)
from hurricane.runs.steps.oneshot import load_supernet, supernet_stage
from hurricane.runs.steps.results import winner_step as final_search_step
from hurricane.search.evolution import Candidate, EvolutionSearch
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore


def _target_latencies(layout: Layout, prof: DeviceProfile, table: LatencyTable, proto: Protocol,
                      name: str, archs: list[Arch], what: str) -> list[float]:
    """End-to-end latencies on the device; a table device's table is its truth."""
    if prof.backend == "table":
        return [table.arch_latency(a) for a in archs]
    return measure_archs(layout, archs, proto, prof, f"transfer {name}: {what}")


def proxy_predictor(spec: SearchSpec, store: ArtifactStore, search_id: str, proxy: str,
                    space: SearchSpace) -> Any:
    """The proxy device's fitted latency predictor; for a table device, one fitted on its
    table's prices of sampled architectures (so it can be adapted all the same)."""
    from hurricane.latency.predictor import LatencyPredictor

    if store.exists(predictor_key(search_id, proxy)):
        return LatencyPredictor.from_json(store.get_json(predictor_key(search_id, proxy)))
    table = load_table(store, search_id, proxy)
    rng = random.Random(step_seed(spec.seed, 0, 6))
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(600)))[:400]
    return LatencyPredictor(space, layer_table=table).fit(archs,
                                                          [table.arch_latency(a) for a in archs])


def transfer_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    """One proxy device (Lu et al.): measure k architectures on the target, compare their
    ranking with the proxy's predictor; SRCC >= threshold: the proxy's Pareto architectures,
    re-measured on the target, give its winner; otherwise (or when none fits the target's
    budget) the proxy predictor adapted to the target drives evolution on the proxy's supernet."""
    from hurricane.latency.proxy import AdaptedPredictor, decide

    op = spec.one_proxy
    space, layout = load_space(store, search_id), layout_of(spec)
    winner_step = final_search_step(spec)
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
            sub, net = load_supernet(spec, store, search_id, stage)
            set_threads(spec.supernet.threads)
            data = data_of(spec, store, search_id)
            scorer = SupernetScorer(net, data, spec)
            finder = EvolutionSearch(sub, evolution_config(spec), accuracy=scorer,
                                     latency=latency, budget_ms=budget,
                                     seeds=[table.fastest(sub)])
            found = rescore_top(finder.run(), scorer.net, data, spec)
            res = rank_finalists(found, scorer, data, spec)
            store.put_json(transfer_key(search_id, t.name, "evolution.json"),
                           {**res, "supernet": stage})
            winner = Candidate.from_json(res["top"][0])
            out["finalists"] = finalist_summary(res)
            out["supernet"] = stage
        out["winner"] = winner.to_json()
        store.put_json(transfer_key(search_id, t.name), out)


def transfer_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    out = {}
    for t in spec.devices:
        if t.proxy is None:
            continue
        r = store.get_json(transfer_key(search_id, t.name))
        w = r["winner"]
        out[t.name] = {"winner": w["arch"], "supernet_accuracy": w["accuracy"],
                       "latency_ms": w["latency_ms"], "budget_ms": r["budget_ms"],
                       "proxy": r["proxy"], "method": r["method"], "srcc": r["decision"]["srcc"],
                       "samples": r["samples"], **r.get("finalists", {})}
    return {"devices": out}


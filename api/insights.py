"""Insight routes: what a search's steps found, as far as it got (supernet training and its
quality, evolution, the space and its Eq. 2 scores, latency tables, predictor fits, cross-device
rank correlation, the winners layer by layer), and the live tail of one unit's job output.
Both read the step outputs in the store; torch-free."""

from __future__ import annotations

import json
import math
import random
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from hurricane.api.deps import OwnedSearch, ServiceDep
from hurricane.api.schemas import InsightsPublic, UnitLogPublic
from hurricane.api.service import SearchService
from hurricane.latency.latency_table import LatencyTable
from hurricane.latency.predictor import LatencyPredictor, fit_points, holdout_indices
from hurricane.latency.proxy import matrix_json, srcc_matrix_counts
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.runs.contract import WHOLE, JobSpec, Step, every_device
from hurricane.runs.records import TERMINAL, result_key, stored_spec
from hurricane.runs.steps.keys import (
    evolution_key,
    export_key,
    predictor_key,
    table_key,
    train_key,
    transfer_key,
)
from hurricane.runs.steps.results import step_of, winner_steps
from hurricane.runs.unitlog import unit_log_key
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactNotFound, ArtifactStore, search_key

router = APIRouter(prefix="/v1/searches", tags=["insights"])

STEP_NAME = r"^[a-z][-a-z0-9_]{0,31}$"
UNIT_NAME = r"^[A-Za-z0-9][-A-Za-z0-9]{0,62}$"
CURVE_POINTS = 200  # a supernet's loss curve, thinned
CORRELATION_ARCHS = 200  # architectures priced by every table when too few were measured
CACHE_S = 60.0  # a finished search's insights are kept this long per process
_cache: dict[str, tuple[float, tuple[str, int], bytes]] = {}
_cache_lock = threading.Lock()


def _get(store: ArtifactStore, key: str) -> Any:
    try:
        return store.get_json(key)
    except ArtifactNotFound:
        return None


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity made null (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def thinned(history: list[Any], points: int = CURVE_POINTS) -> list[list[float]]:
    """(iteration, loss) pairs, at most ``points`` evenly spaced ones, first and last kept."""
    idx: Any = range(len(history))
    if len(history) > points:
        idx = sorted({round(i * (len(history) - 1) / (points - 1)) for i in range(points)})
    return [[int(history[i][0]), round(float(history[i][1]), 4)] for i in idx]


# -- sections -------------------------------------------------------------------------------------

def supernets(store: ArtifactStore, sid: str, plan: list[str],
              results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each supernet training in the step results (labels as report.json has them); Stage 1's
    loss curve from its train.json (finer, and there before the step's result)."""
    out: dict[str, dict[str, Any]] = {}

    def add(label: str, t: dict[str, Any]) -> None:
        out[label] = {"loss_curve": t.get("loss_curve") or [], "iterations": t.get("iterations"),
                      "final_loss": t.get("final_loss"), "quality": t.get("quality"),
                      **{k: t[k] for k in ("train_seconds", "converged", "images_per_s",
                                           "world_size", "a_win1") if k in t}}

    for s in plan:
        r = results.get(s)
        if s == "stage1":
            train = _get(store, train_key(sid, "stage1"))
            if train is not None:
                add(s, {**train, "loss_curve": thinned(train.get("loss_history") or [])})
                continue
        if not r:
            continue
        if "loss_curve" in r:
            add(s, r)
        for dev, d in (r.get("devices") or {}).items():
            if isinstance(d, dict) and "loss_curve" in d:
                add(f"{s} ({d.get('a_win1') or dev})", d)
    return out


def evolution(store: ArtifactStore, sid: str, spec: SearchSpec,
              plan: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per winner step and device: its evolution.json (history, Pareto set, top, re-scoring)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for s in winner_steps(plan):
        if s == "proxyless":  # a gradient search: no evolution
            continue
        devices = [d.name for d in spec.devices if (d.proxy is not None) == (s == "transfer")]
        for dev in devices:
            key = transfer_key(sid, dev, "evolution.json") if s == "transfer" \
                else evolution_key(sid, s, dev)
            res = _get(store, key)
            if res is None:
                continue
            out.setdefault(s, {})[dev] = {
                **res, "history": res.get("history") or [], "pareto": res.get("pareto") or [],
                "top": res.get("top") or [], "rescored": res.get("rescored")}
    return out


def tables(store: ArtifactStore, sid: str, spec: SearchSpec) -> dict[str, LatencyTable]:
    out = {}
    for d in spec.devices:
        doc = _get(store, table_key(sid, d.name))
        if doc is not None:
            out[d.name] = LatencyTable.from_json(doc)
    return out


def table_section(spec: SearchSpec, found: dict[str, LatencyTable]) -> dict[str, Any]:
    sources = {d.name: "profiled" if d.table is None else "imported" for d in spec.devices}
    return {name: {"fixed_ms": t.fixed_ms, "source": sources[name], "meta": t.meta,
                   "ops": {str(i): dict(row) for i, row in sorted(t.ops.items())}}
            for name, t in found.items()}


def space_section(store: ArtifactStore, sid: str, result: dict[str, Any] | None,
                  found: dict[str, LatencyTable]) -> dict[str, Any] | None:
    """The candidate ops per layer; for a hardware space each device's Eq. 2 scores (the space
    was chosen by ``generated_for``'s: another device's follow from the same FLOPs × Params
    over its own table) and the ops chosen."""
    space = _get(store, search_key(sid, "space", "space.json"))
    if result is None or space is None:
        return None
    out = {k: v for k, v in result.items() if k != "_meta"}
    out.update(choices=space["choices"], scores=None, chosen=None)
    hw = _get(store, search_key(sid, "space", "scores.json")) if result["kind"] == "hardware" \
        else None
    if hw is not None:
        primary, base = hw["device"], found.get(hw["device"])
        scores = {primary: hw["scores"]}
        if base is not None:
            for name, t in found.items():
                if name == primary:
                    continue
                try:
                    scores[name] = {
                        layer: {op: s * max(base.layer_ms(int(layer), op), 1e-9)
                                / max(t.layer_ms(int(layer), op), 1e-9) for op, s in ops.items()}
                        for layer, ops in hw["scores"].items()}
                except (KeyError, ValueError):
                    continue  # a table without some op of the pool
        out.update(scores=scores, chosen={primary: space["choices"]}, alpha=hw.get("alpha"),
                   explore_rule=hw.get("explore_rule"))
    return out


def predictor_section(store: ArtifactStore, sid: str, spec: SearchSpec,
                      found: dict[str, LatencyTable]) -> dict[str, dict[str, Any]]:
    """Each measured device's predictor: held-out metrics, the table sum's, and every measured
    architecture against its prediction (fit.json; recomputed for searches stored before it)."""
    out = {}
    for d in spec.devices:
        m = _get(store, predictor_key(sid, d.name, "metrics.json"))
        if m is None:
            continue
        fit = _get(store, predictor_key(sid, d.name, "fit.json"))
        points = fit["points"] if fit is not None else _points(store, sid, spec, d.name, found)
        out[d.name] = {"metrics": m.get("predictor"), "table_sum": m.get("table_sum"),
                       "chosen": m.get("chosen"), "n_train": m.get("n_train"),
                       "n_test": m.get("n_test"), "points": points}
    return out


def _points(store: ArtifactStore, sid: str, spec: SearchSpec, device: str,
            found: dict[str, LatencyTable]) -> list[dict[str, Any]]:
    model = _get(store, predictor_key(sid, device))
    measured = _get(store, predictor_key(sid, device, "measurements.json"))
    if model is None or not measured:
        return []
    try:
        archs = [Arch.parse(m["arch"]) for m in measured]
        predicted = LatencyPredictor.from_json(model).predict(archs)
    except (KeyError, ValueError):
        return []
    table = found.get(device)
    return fit_points(archs, [m["latency_ms"] for m in measured], list(predicted),
                      [table.arch_latency(a) for a in archs] if table else None,
                      holdout_indices(len(archs), spec.predictor.holdout))


def correlation(store: ArtifactStore, sid: str, spec: SearchSpec,
                predictors: dict[str, dict[str, Any]], found: dict[str, LatencyTable],
                space: dict[str, Any] | None) -> dict[str, Any] | None:
    """SRCC of architecture latencies between the devices: over the architectures every device
    measured (the predictor step measures the same ones on each), else over architectures
    sampled from the space and priced by each device's table; and each proxied device's
    reuse-or-adapt decision."""
    names = [d.name for d in spec.devices]
    if len(names) < 2:
        return None
    proxy = {}
    for d in spec.devices:
        t = _get(store, transfer_key(sid, d.name)) if d.proxy else None
        if t is not None:
            proxy[d.name] = {"proxy": t["proxy"], "k": t.get("samples"), "method": t.get("method"),
                             **t.get("decision", {})}
    measured = {n: {p["arch"]: p["measured_ms"] for p in predictors[n]["points"]}
                for n in names if predictors.get(n, {}).get("points")}
    latencies: dict[str, list[float]] = {}
    source = None
    if len(measured) == len(names):
        common = [a for a in measured[names[0]] if all(a in m for m in measured.values())]
        if len(common) >= 3:
            latencies = {n: [measured[n][a] for a in common] for n in names}
            source = "measured"
    if source is None and len(found) == len(names) and space is not None:
        rng = random.Random(0)
        sp = SearchSpace(tuple(tuple(c) for c in space["choices"]))
        archs = list(dict.fromkeys(sp.sample(rng) for _ in range(CORRELATION_ARCHS)))
        try:
            latencies = {n: [found[n].arch_latency(a) for a in archs] for n in names}
            source = "tables"
        except (KeyError, ValueError):
            latencies = {}
    if source is None:
        return {"devices": names, "srcc": None, "source": None, "proxy": proxy} if proxy else None
    try:
        got, m, counts = srcc_matrix_counts(latencies)
    except ValueError:
        return {"devices": names, "srcc": None, "source": None, "proxy": proxy}
    doc = matrix_json(got, m, counts)
    return {"devices": doc["devices"], "srcc": doc["srcc"],
            "common_architectures": doc["common_architectures"], "source": source,
            "proxy": proxy}


def winners(store: ArtifactStore, sid: str, view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The status view's winners, with what the export step counted: MACs, parameters and the
    layers (null for searches exported before it counted them)."""
    out = {}
    for dev, w in (view.get("devices") or {}).items():
        exp = _get(store, export_key(sid, dev)) if w.get("arch") else None
        exp = exp or {}
        measured = w.get("measured_latency_ms")
        out[dev] = {**w, "measured_latency_ms": exp.get("measured_latency_ms")
                    if measured is None else measured,
                    "table_latency_ms": exp.get("table_latency_ms"),
                    "macs": exp.get("macs"), "params": exp.get("params"),
                    "layers": exp.get("layers")}
    return out


def build(store: ArtifactStore, sid: str, view: dict[str, Any]) -> dict[str, Any]:
    spec = stored_spec(store, sid)
    plan = list(view["plan"])
    results = {s: _get(store, result_key(sid, s)) for s in plan}
    found = tables(store, sid, spec)
    space = space_section(store, sid, results.get("space"), found)
    predictors = predictor_section(store, sid, spec, found)
    return finite({
        "search_id": sid, "strategy": view["strategy"], "state": view["state"],
        "supernets": supernets(store, sid, plan, results),
        "evolution": evolution(store, sid, spec, plan),
        "space": space,
        "tables": table_section(spec, found),
        "predictors": predictors,
        "correlation": correlation(store, sid, spec, predictors, found, space),
        "winners": winners(store, sid, view),
    })


def insights_json(svc: SearchService, sid: str) -> bytes:
    """The encoded insights; a finished search's are kept ``CACHE_S`` per process."""
    view = svc.view(sid)
    stamp = (view["state"], int(view.get("generation", 0)))
    hit = _cache.get(sid)
    if hit is not None and hit[1] == stamp and time.monotonic() - hit[0] < CACHE_S:
        return hit[2]
    body = json.dumps(build(svc.store, sid, view), separators=(",", ":")).encode()
    if view["state"] in TERMINAL:
        with _cache_lock:
            if len(_cache) > 256:
                _cache.clear()
            _cache[sid] = (time.monotonic(), stamp, body)
    return body


@router.get("/{search_id}/insights", response_model=InsightsPublic)
async def get_insights(search_id: OwnedSearch, svc: ServiceDep) -> Response:
    """What the search's steps found so far: supernet loss curves and quality, evolution
    history and Pareto sets, the space (with Eq. 2 scores for a hardware space), latency
    tables, predictor fits, cross-device SRCC and proxy decisions, and each device's winner
    layer by layer. Each section is empty or null until its step has written it."""
    body = await run_in_threadpool(insights_json, svc, search_id)
    return Response(body, media_type="application/json")


# -- logs -------------------------------------------------------------------------------------

def unit_names(step: Step, spec: SearchSpec, sid: str, store: ArtifactStore) -> list[str]:
    """The units ``step`` may run for this search, as far as the API can tell without the
    step's implementation (a unit function in a torch module: its planned units, else one per
    device)."""
    if step.run is None:
        return []
    fn = step.units if callable(step.units) else step.planned_units
    try:
        return list(fn(spec, sid, store)) if callable(fn) else every_device(spec, sid, store)
    except Exception:
        return every_device(spec, sid, store)


def unit_log(svc: SearchService, sid: str, step: str, unit: str, lines: int) -> dict[str, Any]:
    view = svc.view(sid)
    if step not in view["plan"]:
        raise HTTPException(404, f"no step {step!r} in this search's plan; steps: "
                            f"{', '.join(view['plan'])}")
    record = view["steps"].get(step, {})
    seen = record.get("units") or {}
    spec = stored_spec(svc.store, sid)
    allowed = list(dict.fromkeys([*unit_names(step_of(step), spec, sid, svc.store), *seen]))
    if unit not in allowed:
        if not allowed:
            raise HTTPException(404, f"step {step!r} runs no job (it is computed where the "
                                "step finishes): it has no log")
        raise HTTPException(404, f"step {step!r} has no unit {unit!r}; units: "
                            f"{', '.join(allowed)}")
    job = JobSpec(search_id=sid, step=step, store_url="", device=None if unit == WHOLE else unit)
    doc = _get(svc.store, unit_log_key(sid, job.name)) or {}
    u = seen.get(unit) or {}
    kept = doc.get("lines") or []
    return {"step": step, "unit": unit, "job": job.name,
            "state": u.get("state") or ("succeeded" if record.get("state") == "succeeded"
                                        else "pending"),
            "attempt": u.get("attempt"), "lines": kept[-lines:], "updated": doc.get("updated"),
            "exit_code": doc.get("exit_code"), "log_state": doc.get("state"),
            "dropped": int(doc.get("dropped") or 0) + max(0, len(kept) - lines)}


@router.get("/{search_id}/logs/{step}/{unit}", response_model=UnitLogPublic,
            responses={404: {"description": "no such search, step of its plan, or unit of "
                             "that step (the message names the allowed ones)"}})
async def get_unit_log(
    search_id: OwnedSearch, svc: ServiceDep,
    step: Annotated[str, PathParam(pattern=STEP_NAME, description="a step of the search's plan")],
    unit: Annotated[str, PathParam(pattern=UNIT_NAME,
                                   description="a device, or ALL for a whole-search step")],
    lines: Annotated[int, Query(ge=1, le=2000, description="the last this many lines")] = 200,
) -> dict[str, Any]:
    """The tail of one unit's job output (its lines, progress messages, and task starts and
    ends), written by the executor while the job runs (every few seconds) and at its end."""
    return await run_in_threadpool(unit_log, svc, search_id, step, unit, lines)

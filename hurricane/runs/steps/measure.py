"""Steps that measure the devices: profile (layer × op tables), space, predictor and budgets."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from hurricane.latency import tables
from hurricane.latency.latency_table import LatencyTable
from hurricane.latency.predictor import fit_points, holdout_indices, metrics
from hurricane.latency.profiling import profile_table
from hurricane.nets.arch import SearchSpace
from hurricane.nets.oppool import MANUAL_SPACE_OPS
from hurricane.nets.train import step_seed
from hurricane.runs.records import load_meta
from hurricane.runs.steps.common import (
    devices_of,
    latency_model,
    layout_of,
    load_space,
    load_table,
    measure_timings,
    noisy,
    predictor_key,
    protocol_of,
    resolve_budget,
    table_key,
    target,
    target_profile,
)
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, search_key

IMPORTED = "imported"


def imported_table(store: ArtifactStore, search_id: str, device: str) -> LatencyTable:
    """A table imported into the service (PUT /v1/devices/<name>/table): the copy taken when
    the search was submitted, else the one the search's owner may read now (their own, else
    the shared one; never another user's)."""
    copy = search_key(search_id, "inputs", "tables", f"{device}.json")
    key: str | None = copy
    if not store.exists(copy):
        found = tables.resolve(store, str(load_meta(store, search_id).get("owner")), device)
        key = found[0] if found else None
    if key is not None:
        return LatencyTable.from_json({**store.get_json(key), "device": device})
    raise ValueError(f"devices[{device}].table = imported, but no table was imported for "
                     f"{device!r}: PUT /v1/devices/{device}/table first")


def imported_predictor(spec: SearchSpec, store: ArtifactStore, search_id: str,
                       device: str) -> bool:
    """An imported table made by `POST /v1/devices/{name}/adapt` comes with its few-shot
    predictor: when it covers this search's space exactly, it becomes the device's latency
    model (the table alone, a distillation of it, prices the rest)."""
    copy = search_key(search_id, "inputs", "tables", f"{device}.predictor.json")
    key: str | None = copy
    if not store.exists(copy):
        found = tables.resolve(store, str(load_meta(store, search_id).get("owner")), device)
        key = found[0].rsplit("/", 1)[0] + "/predictor.json" if found else None
    if key is None or not store.exists(key):
        return False
    d = store.get_json(key)
    if _choices_of_saved(d) != [list(c) for c in pool_space(spec).choices]:
        return False
    store.put_json(predictor_key(search_id, device), d)
    return True


def _choices_of_saved(d: dict[str, Any]) -> list[list[str]] | None:
    from hurricane.latency.fewshot import FewShotPredictor

    try:
        return [list(c) for c in FewShotPredictor.from_json(d).choices]
    except (ValueError, KeyError, TypeError):
        return None


def profiled_ops(spec: SearchSpec) -> tuple[str, ...]:
    return MANUAL_SPACE_OPS if spec.space.kind == "manual" else spec.space.ops


def pool_space(spec: SearchSpec) -> SearchSpace:
    """Every profiled op at every layer: what profiling measures (and the `pool` space)."""
    return SearchSpace.uniform(profiled_ops(spec), spec.backbone.num_layers)


def profile_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    for name in devices_of(spec, device):
        if store.exists(table_key(search_id, name)) or target(spec, name).samples:
            continue  # a few-shot device's table is derived in the predictor step
        if target(spec, name).table == IMPORTED:
            table = imported_table(store, search_id, name)
            table.check_covers(pool_space(spec))
            imported_predictor(spec, store, search_id, name)
            store.put_bytes(search_key(search_id, "profile", name, "latency.csv"),
                            table.to_csv().encode())
            store.put_json(table_key(search_id, name), table.to_json())
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


def profile_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in spec.devices:
        if d.samples:
            out[d.name] = {"few_shot": d.samples}
            continue
        t = load_table(store, search_id, d.name)
        out[d.name] = {"table": table_key(search_id, d.name), "fixed_ms": t.fixed_ms,
                       "measurements": t.meta.get("unique_measurements")}
    return {"devices": out}


def space_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    """The candidate ops per layer (pool, manual, or Eq. 2 hardware-aware), and each device's
    table bounds over it; budgets are resolved in the predictor step, on the final model."""
    sp = spec.space
    space = pool_space(spec)
    extra: dict[str, Any] = {}
    if sp.kind == "hardware":
        from hurricane.search.hwspace import hardware_space, plot_heatmap

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
        if d.samples:
            continue  # no table yet: the predictor step derives it
        t = load_table(store, search_id, d.name)
        t.check_covers(space)
        lo, hi = t.bounds(space)
        bounds[d.name] = {"min_ms": lo, "max_ms": hi}
    return {"kind": sp.kind, "size": space.size, "num_layers": space.num_layers,
            "ops": list(space.all_ops()), "table_bounds": bounds, **extra}


def _measurable(spec: SearchSpec) -> list[str]:
    return [d.name for d in spec.devices if d.proxy is None
            and spec.predictor.enabled and target_profile(spec, d.name).backend != "table"]


def measurable_units(spec: SearchSpec, search_id: str, store: ArtifactStore) -> list[str]:
    """The predictor step's units: devices measured end to end (not tables, not proxied)."""
    return _measurable(spec)


def predictor_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    """Measures sampled architectures end to end on the device and fits the predictor."""
    from hurricane.latency.predictor import LatencyPredictor, PredictorConfig

    ps = spec.predictor
    space = load_space(store, search_id)
    layout = layout_of(spec)
    for name in devices_of(spec, device):
        if name not in _measurable(spec) or store.exists(predictor_key(search_id, name)):
            continue
        if target(spec, name).samples:
            from hurricane.runs.steps.fewshot import fewshot_job

            fewshot_job(spec, search_id, store, name, space)
            continue
        rng = random.Random(step_seed(spec.seed, 0, 3))
        archs = list(dict.fromkeys(space.sample(rng) for _ in range(ps.samples * 3)))[:ps.samples]
        prof, proto = target_profile(spec, name), protocol_of(spec, repeats=ps.repeats)
        timings = measure_timings(layout, archs, proto, prof, f"predictor {name}: measure")
        lat = [t.median_ms for t in timings]
        flags = [noisy(t) for t in timings]
        table = load_table(store, search_id, name)
        test_i = holdout_indices(len(archs), ps.holdout)
        train_a = [a for i, a in enumerate(archs) if i not in test_i]
        test_a = [a for i, a in enumerate(archs) if i in test_i]
        train_y = [y for i, y in enumerate(lat) if i not in test_i]
        test_y = [y for i, y in enumerate(lat) if i in test_i]
        train_f = [f for i, f in enumerate(flags) if i not in test_i]
        config = PredictorConfig(log_target=ps.log_target, pair_scale=ps.pair_scale,
                                 table_offset=ps.table_offset)
        model = LatencyPredictor(space, layer_table=table, config=config)
        model.fit(train_a, train_y, flagged=train_f)
        m = model.evaluate(test_a, test_y)
        table_m = metrics([table.arch_latency(a) for a in test_a], test_y)
        store.put_json(predictor_key(search_id, name, "measurements.json"), [
            {"arch": str(a), "latency_ms": t.median_ms, "iqr_ms": t.iqr_ms,
             "outliers": t.outliers, "flagged": f}
            for a, t, f in zip(archs, timings, flags, strict=True)])
        # each measured architecture beside its prediction (a scatter plot of the fit)
        store.put_json(predictor_key(search_id, name, "fit.json"), {"points": fit_points(
            archs, lat, model.predict(archs), [table.arch_latency(a) for a in archs], test_i)})
        store.put_json(predictor_key(search_id, name, "metrics.json"), {
            "n_train": len(train_a), "n_test": len(test_a), "chosen": model.chosen,
            "predictor": {"mape": m.mape, "within_10pct": m.within_10pct, "srcc": m.srcc,
                          "max_ape": m.max_ape},
            "table_sum": {"mape": table_m.mape, "within_10pct": table_m.within_10pct,
                          "srcc": table_m.srcc, "max_ape": table_m.max_ape}})
        store.put_json(predictor_key(search_id, name), model.to_json())


def predictor_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    """Each measurable device's predictor metrics; every budget is checked before training."""
    out = {name: store.get_json(predictor_key(search_id, name, "metrics.json"))
           for name in _measurable(spec)}
    space = load_space(store, search_id)
    budgets = {}
    for d in spec.devices:
        table = load_table(store, search_id, d.name)
        budgets[d.name] = resolve_budget(spec, d.name, space, table,
                                         latency_model(store, search_id, d.name, table))
    return {"devices": out, "budgets_ms": budgets}


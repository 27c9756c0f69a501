"""A few-shot device in a search (``devices[].samples: k``): no layer table is profiled on it;
the predictor step times k architectures chosen to separate the known devices and builds its
latency predictor from every known device's table (hurricane.latency.adapt).

Known devices are the search's other devices that have a layer table (profiled or imported)
and the tables imported into the service that the search's owner may read, each covering the
search space.
"""

from __future__ import annotations

from hurricane.latency import tables
from hurricane.latency.adapt import adapt_device, pick, prior_of
from hurricane.latency.latency_table import LatencyTable
from hurricane.latency.predictor import fit_points
from hurricane.nets.arch import SearchSpace
from hurricane.nets.train import step_seed
from hurricane.runs.records import load_meta
from hurricane.runs.steps.common import (
    layout_of,
    measure_timings,
    predictor_key,
    protocol_of,
    table_key,
    target,
    target_profile,
)
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore


def known_tables(spec: SearchSpec, store: ArtifactStore, search_id: str,
                 device: str) -> dict[str, LatencyTable]:
    """The search's devices with a table (not few-shot ones), then the imported tables its
    owner may read."""
    out: dict[str, LatencyTable] = {}
    for d in spec.devices:
        if d.name != device and d.samples is None and store.exists(table_key(search_id, d.name)):
            out[d.name] = LatencyTable.from_json(store.get_json(table_key(search_id, d.name)))
    owner = str(load_meta(store, search_id).get("owner"))
    for name in sorted(tables.visible(store, owner)):
        if name in out or name == device:
            continue
        found = tables.resolve(store, owner, name)
        if found:
            out[name] = LatencyTable.from_json({**store.get_json(found[0]), "device": name})
    return out


def fewshot_job(spec: SearchSpec, search_id: str, store: ArtifactStore, name: str,
                space: SearchSpace) -> None:
    """Times the device's k chosen architectures and stores its few-shot predictor, its fit's
    leave-one-out points and metrics, and its derived layer table."""
    known = known_tables(spec, store, search_id, name)
    prior = prior_of(known, space, seed=step_seed(spec.seed, 0, 7), device=f"devices[{name}].samples")
    archs = pick(prior, space, int(target(spec, name).samples or 0),
                 seed=step_seed(spec.seed, 0, 8))
    timings = measure_timings(layout_of(spec), archs,
                              protocol_of(spec, repeats=spec.predictor.repeats),
                              target_profile(spec, name),
                              f"predictor {name}: measure {len(archs)} (few-shot)")
    lat = [t.median_ms for t in timings]
    done = adapt_device(name, prior, archs, lat)
    store.put_json(table_key(search_id, name), done.table.to_json())
    store.put_json(predictor_key(search_id, name, "measurements.json"), [
        {"arch": str(a), "latency_ms": t.median_ms, "iqr_ms": t.iqr_ms, "outliers": t.outliers}
        for a, t in zip(archs, timings, strict=True)])
    # the leave-one-out predictions are the held-out points (calibration, the fit's plot)
    store.put_json(predictor_key(search_id, name, "fit.json"), {"points": fit_points(
        archs, lat, done.loo_ms, [done.table.arch_latency(a) for a in archs],
        set(range(len(archs))))})
    s = done.summary()
    store.put_json(predictor_key(search_id, name, "metrics.json"), {
        "n_train": len(archs), "n_test": len(archs), "chosen": done.predictor.chosen,
        "predictor": s["loo"], "evaluation": "leave-one-out over the few-shot measurements",
        "few_shot": {**{k: v for k, v in s.items() if k != "loo"}, "selection": "d-optimal"}})
    store.put_json(predictor_key(search_id, name), done.predictor.to_json())

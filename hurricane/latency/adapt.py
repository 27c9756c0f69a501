"""A new device from a few measurements, on a search space: which architectures to time, and
the device's predictor and layer table from the known devices' tables (torch-free: the search's
predictor step, ``hurricane devices adapt`` and ``POST /v1/devices/{name}/adapt`` share it).

Each known device's layer table becomes a predictor over the space (fitted on its prices of
sampled architectures), so tables of any provenance join one prior
(``hurricane.latency.fewshot.Prior``). The device's layer table, which budgets and evolution's
seeds need, is the few-shot predictor distilled into per-(layer, op) costs; its latency model
is the predictor itself.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear

from hurricane.latency.fewshot import FewShotPredictor, Prior, choose_samples
from hurricane.latency.latency_table import LatencyTable
from hurricane.latency.predictor import LatencyPredictor, PredictorMetrics, metrics
from hurricane.nets.arch import Arch, SearchSpace

POOL = 500  # candidate architectures the measured ones are chosen from
PRICED = 400  # architectures a known table prices to become a predictor
DISTIL = 2000  # architectures the few-shot predictor prices to become a layer table


def spec_space(spec: Any) -> SearchSpace:
    """What a spec's profiling prices (every profiled op at every layer): the space a device's
    table and few-shot predictor cover."""
    from hurricane.nets.oppool import MANUAL_SPACE_OPS

    ops = MANUAL_SPACE_OPS if spec.space.kind == "manual" else spec.space.ops
    return SearchSpace.uniform(ops, spec.backbone.num_layers)


def read_measurements(text: str, *, source: str) -> list[tuple[Arch, float]]:
    """``arch,latency_ms`` CSV rows (a header row optional): the architectures timed on the
    device. Errors name the row and what is allowed."""
    import csv
    import io
    import math

    out: list[tuple[Arch, float]] = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or (n == 1 and row[0].strip().lower() == "arch"):
            continue
        if len(row) < 2:
            raise ValueError(f"{source}: row {n}: expected arch,latency_ms; got {row!r}")
        try:
            arch = Arch.parse(row[0].strip())
        except ValueError as err:
            raise ValueError(f"{source}: row {n}: arch: {err}") from None
        try:
            ms = float(row[1])
        except ValueError:
            raise ValueError(f"{source}: row {n}: latency_ms must be a number in ms, got "
                             f"{row[1]!r}") from None
        if not (math.isfinite(ms) and ms > 0):
            raise ValueError(f"{source}: row {n}: latency_ms must be > 0, got {row[1]!r}")
        out.append((arch, ms))
    if not out:
        raise ValueError(f"{source}: no measurements (rows of arch,latency_ms)")
    return out


def table_predictor(table: LatencyTable, space: SearchSpace, seed: int) -> LatencyPredictor:
    """A known device's table as a predictor over ``space``: fitted on its prices of sampled
    architectures (the table is its truth)."""
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(PRICED * 2)))[:PRICED]
    return LatencyPredictor(space, layer_table=table).fit(
        archs, [table.arch_latency(a) for a in archs])


def covering(tables: Mapping[str, LatencyTable], space: SearchSpace) -> dict[str, LatencyTable]:
    """The tables that price every op of ``space`` at every layer."""
    out = {}
    for name, t in tables.items():
        try:
            t.check_covers(space)
        except ValueError:
            continue
        out[name] = t
    return out


def prior_of(tables: Mapping[str, LatencyTable], space: SearchSpace, *, seed: int,
             device: str) -> Prior:
    """The prior of the known devices' tables that cover ``space``; at least two."""
    known = covering(tables, space)
    if len(known) < 2:
        short = sorted(set(tables) - set(known))
        raise ValueError(
            f"{device}: a few-shot device needs at least 2 known devices with a layer table "
            f"covering this search space; found {len(known)} ({', '.join(known) or 'none'}"
            f"{'; not covering it: ' + ', '.join(short) if short else ''}): add a profiled "
            "device, or import tables (PUT /v1/devices/{name}/table, `hurricane devices "
            "import`)")
    return Prior({n: table_predictor(t, space, seed) for n, t in sorted(known.items())},
                 seed=seed)


def pick(prior: Prior, space: SearchSpace, k: int, *, seed: int) -> list[Arch]:
    """The ``k`` architectures to time on the new device, in order: greedy D-optimal among
    ``POOL`` sampled ones (those that best separate the known devices' predictions)."""
    rng = random.Random(seed)
    pool = list(dict.fromkeys(space.sample(rng) for _ in range(POOL * 2)))[:POOL]
    return [pool[int(i)] for i in choose_samples(prior, prior.encode(pool), min(k, len(pool)))]


@dataclass
class Adapted:
    """A device built from few measurements: its predictor, derived table and checks."""

    predictor: FewShotPredictor
    table: LatencyTable
    loo_ms: list[float]  # each measurement predicted by a fit on the others
    loo: PredictorMetrics
    weights: list[tuple[str, float]]

    def summary(self) -> dict[str, Any]:
        return {"samples": len(self.loo_ms), "known_devices": list(self.predictor.prior.names),
                "weights": [[n, round(w, 4)] for n, w in self.weights],
                "table_follows_predictor": self.table.meta["follows_predictor"],
                "loo": {"mape": self.loo.mape, "within_10pct": self.loo.within_10pct,
                        "srcc": self.loo.srcc, "max_ape": self.loo.max_ape}}


def adapt_device(device: str, prior: Prior, archs: Sequence[Arch],
          latencies_ms: Sequence[float]) -> Adapted:
    """Fits the device's few-shot predictor on its measurements, its leave-one-out check and
    its derived layer table."""
    archs, lat = list(archs), [float(y) for y in latencies_ms]
    if len(archs) != len(lat):
        raise ValueError(f"{len(archs)} architectures but {len(lat)} latencies")
    if len(set(archs)) != len(archs):
        raise ValueError("an architecture is measured twice: give each once (its median)")
    model = FewShotPredictor(prior).fit(archs, lat)
    loo = [float(FewShotPredictor(prior).fit([a for j, a in enumerate(archs) if j != i],
                                             [y for j, y in enumerate(lat) if j != i])
                 .predict([archs[i]])[0]) for i in range(len(archs))]
    return Adapted(model, distil(model, space_of(prior), device), loo, metrics(loo, lat),
                   model.weights())


def space_of(prior: Prior) -> SearchSpace:
    return SearchSpace(tuple(tuple(c) for c in prior.choices))


def distil(model: FewShotPredictor, space: SearchSpace, device: str, *, n: int = DISTIL,
           seed: int = 0) -> LatencyTable:
    """The few-shot predictor as a layer table: non-negative per-(layer, op) costs and fixed
    part fitted (least squares) to its predictions of ``n`` sampled architectures, for what
    needs a table (budgets' fastest and slowest, evolution's seeds, a table device). How well
    the table's sums follow the predictor is in its meta (MAPE, SRCC)."""
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(n * 2)))[:n]
    y = model.predict(archs)
    cols = [(i, o) for i, c in enumerate(space.choices) for o in c]
    at = {c: j for j, c in enumerate(cols)}
    x = np.zeros((len(archs), len(cols) + 1))
    x[:, -1] = 1.0
    for r, a in enumerate(archs):
        for i, o in enumerate(a.ops):
            x[r, at[(i, o)]] = 1.0
    sol = lsq_linear(x, y, bounds=(0.0, np.inf)).x
    ops: dict[int, dict[str, float]] = {}
    for (i, o), v in zip(cols, sol[:-1], strict=True):
        ops.setdefault(i, {})[o] = float(v)
    fit = metrics(x @ sol, y)
    return LatencyTable(device=device, ops=ops, fixed_ms=float(sol[-1]), meta={
        "derived": "few-shot", "architectures": len(archs),
        "follows_predictor": {"mape": round(fit.mape, 3), "srcc": round(fit.srcc, 4)},
        "note": "the few-shot predictor distilled into layer costs: for budgets, seeds and "
                "table devices; a search's latency model is the predictor itself"})

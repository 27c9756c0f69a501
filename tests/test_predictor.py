"""Latency predictor: accuracy on synthetic additive latencies, fast path, JSON round trip, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hurricane.arch import Arch
from hurricane.predictor import LatencyPredictor, PredictorConfig, metrics

LAYERS, OPS = 8, 4
CHOICES = tuple(tuple(f"op{k}" for k in range(OPS)) for _ in range(LAYERS))
FIXED_MS = 3.0
Data = tuple[list[tuple[str, ...]], np.ndarray, dict[int, dict[str, float]]]


def _synthetic(n: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(1234)
    costs = rng.uniform(0.2, 2.0, size=(LAYERS, OPS))
    table = {i: {f"op{k}": float(costs[i, k]) for k in range(OPS)} for i in range(LAYERS)}
    idx = np.random.default_rng(seed).integers(0, OPS, size=(n, LAYERS))
    lat = costs[np.arange(LAYERS), idx].sum(axis=1) + FIXED_MS
    lat *= 1 + np.random.default_rng(seed + 1).normal(0, 0.005, size=n)
    archs = [tuple(f"op{k}" for k in row) for row in idx]
    return archs, lat, table


@pytest.fixture(scope="module")
def data() -> Data:
    return _synthetic(300)


def test_learns_additive_latency(data: Data) -> None:
    archs, lat, _ = data
    pred = LatencyPredictor(CHOICES).fit(archs[:100], lat[:100])
    m = pred.evaluate(archs[100:], lat[100:])
    assert m.n == 200
    assert m.mape < 2.0
    assert m.srcc > 0.98
    assert 0.0 <= m.within_10pct <= 1.0


@pytest.mark.parametrize("config", [PredictorConfig(), PredictorConfig(log_target=False, pair_scale=0.0)])
def test_layer_table_is_at_least_as_accurate(data: Data, config: PredictorConfig) -> None:
    archs, lat, table = data
    plain = LatencyPredictor(CHOICES, config=config).fit(archs[:100], lat[:100])
    with_table = LatencyPredictor(CHOICES, layer_table=table, fixed_ms=FIXED_MS, config=config)
    with_table.fit(archs[:100], lat[:100])
    a, b = plain.evaluate(archs[100:], lat[100:]), with_table.evaluate(archs[100:], lat[100:])
    assert b.mape <= a.mape
    assert b.mape < 1.0


def test_fast_path_matches_predict_and_sklearn(data: Data) -> None:
    archs, lat, table = data
    pred = LatencyPredictor(CHOICES, layer_table=table, fixed_ms=FIXED_MS).fit(archs[:100], lat[:100])
    idx = pred.encode(archs)
    assert idx.shape == (len(archs), LAYERS)
    np.testing.assert_allclose(pred.predict_indices(idx), pred.predict(archs), rtol=0, atol=0)
    # the gather-and-sum equals the Bayesian ridge's own prediction on the full design matrix
    from sklearn.linear_model import BayesianRidge

    # default: the log table sum is an offset (the prior mean); the one-hots fit the residual
    offset = np.log(np.array([table_sum(table, a) for a in archs]))
    fitted = BayesianRidge(max_iter=pred.config.max_iter).fit(pred.features(idx[:100]),
                                                              np.log(lat[:100]) - offset[:100])
    np.testing.assert_allclose(pred.predict_indices(idx),
                               np.exp(fitted.predict(pred.features(idx)) + offset), rtol=1e-9)
    # table_offset=False: the table sum is an ordinary (standardised) feature
    feat = LatencyPredictor(CHOICES, layer_table=table, fixed_ms=FIXED_MS,
                            config=PredictorConfig(table_offset=False)).fit(archs[:100], lat[:100])
    fitted = BayesianRidge(max_iter=feat.config.max_iter).fit(feat.features(idx[:100]),
                                                              np.log(lat[:100]))
    np.testing.assert_allclose(feat.predict_indices(idx), np.exp(fitted.predict(feat.features(idx))),
                               rtol=1e-9)


def table_sum(table: dict[int, dict[str, float]], arch: tuple[str, ...]) -> float:
    return FIXED_MS + sum(table[i][op] for i, op in enumerate(arch))


def test_json_round_trip_predicts_identically(data: Data) -> None:
    archs, lat, table = data
    for kwargs in ({}, {"layer_table": table, "fixed_ms": FIXED_MS}):
        pred = LatencyPredictor(CHOICES, **kwargs).fit(archs[:100], lat[:100])  # type: ignore[arg-type]
        loaded = LatencyPredictor.from_json(json.loads(json.dumps(pred.to_json())))
        np.testing.assert_array_equal(loaded.predict(archs), pred.predict(archs))


def test_accepts_arch_objects() -> None:
    ops = ("SEP_3", "MB_3_1")
    choices = (ops, ops, ops)
    archs = [Arch((a, b, c)) for a in ops for b in ops for c in ops]
    lat = np.array([1.0 + sum(0.5 if o == "SEP_3" else 1.0 for o in x.ops) for x in archs])
    pred = LatencyPredictor(choices, config=PredictorConfig(pair_scale=0.0)).fit(archs, lat)
    np.testing.assert_allclose(pred.predict(archs), pred.predict([x.ops for x in archs]))
    assert pred.evaluate(archs, lat).mape < 5.0


def test_errors(data: Data) -> None:
    archs, lat, _ = data
    pred = LatencyPredictor(CHOICES)
    with pytest.raises(ValueError, match="not fitted"):
        pred.predict(archs[:3])
    with pytest.raises(ValueError, match="not fitted"):
        pred.to_json()
    pred.fit(archs[:50], lat[:50])
    bad = list(archs[0])
    bad[5] = "conv9"
    with pytest.raises(ValueError, match=r"'conv9' is not allowed at layer 5; allowed: op0, op1, op2, op3"):
        pred.predict([bad])
    with pytest.raises(ValueError, match="has 7 layers"):
        pred.predict([archs[0][:7]])
    with pytest.raises(ValueError, match="out of range at layer 2"):
        pred.predict_indices(np.array([[0, 0, 4, 0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="layer_table lacks op"):
        LatencyPredictor(CHOICES, layer_table={i: {"op0": 1.0} for i in range(LAYERS)})
    with pytest.raises(ValueError, match="latencies must be finite"):
        LatencyPredictor(CHOICES).fit(archs[:5], [1.0, 2.0, -1.0, 1.0, 1.0])


def test_metrics() -> None:
    m = metrics([1.05, 2.0, 3.6], [1.0, 2.0, 3.0])
    assert m.n == 3
    assert m.mape == pytest.approx((5 + 0 + 20) / 3)
    assert m.within_10pct == pytest.approx(2 / 3)
    assert m.srcc == pytest.approx(1.0)

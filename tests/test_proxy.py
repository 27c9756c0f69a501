"""One proxy device: SRCC and the reuse/adapt rule on synthetic devices, adaptation, sources, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hurricane.latency.latency_sources import MeasuredLatencies, collect_latencies, table_space
from hurricane.latency.predictor import LatencyPredictor, PredictorConfig
from hurricane.latency.proxy import (
    AdaptConfig,
    AdaptedPredictor,
    _loo_scores,
    choose_adaptation,
    decide,
    proxy_decisions,
    srcc,
    srcc_matrix,
)
from hurricane.nets.arch import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
OPS = ("SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX")
SPACE = SearchSpace.uniform(OPS, 8)
# proxy cost of each op (ms) before a per-layer factor; the target runs MB_5_3_SE 5x slower and
# ChoiceX 4x faster: a per-op re-weighting that breaks the proxy's ranking
OP_MS = np.array([1.0, 1.3, 1.6, 0.8, 2.2])
TARGET_FACTOR = np.array([1.0, 1.0, 5.0, 1.0, 0.25])


def _devices(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Op indices of n random archs and their latencies on a proxy and three synthetic targets."""
    rng = np.random.default_rng(7)
    layer = rng.uniform(0.5, 2.0, size=(SPACE.num_layers, 1))
    proxy_cost = layer * OP_MS * rng.uniform(0.8, 1.2, size=(SPACE.num_layers, len(OPS)))
    idx = np.random.default_rng(seed).integers(0, len(OPS), size=(n, SPACE.num_layers))
    rows = np.arange(SPACE.num_layers)
    noise = 1 + np.random.default_rng(seed + 1).normal(0, 0.01, size=n)
    proxy = (proxy_cost[rows, idx].sum(axis=1) + 2.0) * noise
    reweighted = ((proxy_cost * TARGET_FACTOR)[rows, idx].sum(axis=1) + 1.0) * noise
    return idx, {"proxy": proxy, "scaled": 3.0 * proxy + 5.0, "powered": proxy ** 1.7,
                 "reweighted": reweighted}


@pytest.fixture(scope="module")
def devices() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _devices(800, seed=1)


@pytest.fixture(scope="module")
def proxy_model(devices: tuple[np.ndarray, dict[str, np.ndarray]]) -> LatencyPredictor:
    idx, lat = devices
    # additive (no pair terms): the synthetic devices are additive, and it fits in milliseconds
    proxy = LatencyPredictor(SPACE, config=PredictorConfig(pair_scale=0.0))
    return proxy.fit_indices(idx[:400], lat["proxy"][:400])


def test_monotone_targets_are_reused_and_reweighted_ones_adapted(
        devices: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    _, lat = devices
    names, m = srcc_matrix(lat)
    assert names == ["proxy", "scaled", "powered", "reweighted"]
    assert np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] == pytest.approx(1.0)
    assert m[0, 3] < 0.8
    plan = proxy_decisions(names, m, "proxy")
    assert [plan[d].action for d in ("scaled", "powered", "reweighted")] == ["reuse", "reuse", "adapt"]
    assert "0.9" in plan["reweighted"].reason
    with pytest.raises(ValueError, match="proxy 'nope' is not among the devices"):
        proxy_decisions(names, m, "nope")
    # the rule on a handful of measurements, as a user has them
    assert decide(lat["proxy"][:20], lat["powered"][:20]).action == "reuse"
    assert decide(lat["proxy"][:20], lat["reweighted"][:20]).action == "adapt"


def test_decision_threshold_and_missing_correlation() -> None:
    assert choose_adaptation(0.9).action == "reuse"
    assert choose_adaptation(0.8999).action == "adapt"
    assert choose_adaptation(0.95, threshold=0.97).action == "adapt"
    nan = choose_adaptation(float("nan"))
    assert nan.action == "adapt" and "no SRCC" in nan.reason and nan.to_json()["srcc"] is None
    with pytest.raises(ValueError, match="threshold"):
        choose_adaptation(0.5, threshold=1.5)


def test_srcc_uses_rows_both_devices_measured() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0])
    b = np.array([10.0, 20.0, np.nan, 40.0, 1.0, 60.0])
    assert srcc(a, b) == (pytest.approx(1.0), 4)
    assert np.isnan(srcc(a[:3], b[:3])[0])  # 2 common rows
    with pytest.raises(ValueError, match="same rows"):
        srcc_matrix({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0]})


def test_adapted_predictor_recovers_the_target_ranking(
        devices: tuple[np.ndarray, dict[str, np.ndarray]], proxy_model: LatencyPredictor) -> None:
    idx, lat = devices
    y = lat["reweighted"]
    k, test = slice(400, 430), slice(430, None)  # 30 target measurements, disjoint test archs
    raw = srcc(lat["proxy"][test], y[test])[0]
    adapted = AdaptedPredictor(proxy_model).fit_indices(idx[k], y[k])
    got = srcc(adapted.predict_indices(idx[test]), y[test])[0]
    scratch = LatencyPredictor(SPACE).fit_indices(idx[k], y[k])
    from_scratch = srcc(scratch.predict_indices(idx[test]), y[test])[0]
    assert raw < 0.8
    assert got > 0.95 and got > raw + 0.15
    assert got > from_scratch
    # the paper's term alone (each (layer, op) weight re-scaled) recovers most of it; anchored at
    # the cheapest op, the weights are closer to the op costs a per-op slowdown scales
    paper = {g: srcc(AdaptedPredictor(proxy_model, config=AdaptConfig(
        per_op=False, onehot=False, op_pairs=False, gauge=g)).fit_indices(idx[k], y[k])
        .predict_indices(idx[test]), y[test])[0] for g in ("fitted", "min")}
    assert paper["fitted"] > raw + 0.5 and paper["min"] > paper["fitted"]
    assert adapted.n_train == 30 and adapted.loo_rmse_ is not None
    assert set(adapted.penalties_) == {"per_layer_op", "per_op", "onehot", "op_pairs"}
    # a slower op on the target gets its proxy weights scaled up, relative to the others
    op_b = {op: adapted.b_[np.array(adapted._op_id) == i].mean()  # type: ignore[index]
            for i, op in enumerate(adapted.ops)}
    assert op_b["MB_5_3_SE"] > max(op_b[o] for o in OPS if o != "MB_5_3_SE")


def test_closed_form_leave_one_out_matches_refitting() -> None:
    rng = np.random.default_rng(0)
    k, lam = 12, 0.7
    U = np.column_stack([np.ones(k), rng.normal(size=k)])  # free: intercept and proxy scale
    F, y = rng.normal(size=(k, 7)), rng.normal(size=k)  # ridge-penalised features
    errors = []
    for i in range(k):
        keep = np.arange(k) != i
        D = np.column_stack([U[keep], F[keep]])
        coef = np.linalg.solve(D.T @ D + np.diag([0, 0] + [lam] * 7), D.T @ y[keep])
        errors.append((y[i] - np.r_[U[i], F[i]] @ coef) ** 2)
    assert _loo_scores(U, (F @ F.T / lam)[None], y)[0] == pytest.approx(np.mean(errors), rel=1e-9)


def test_monotone_target_is_fitted_by_the_global_scale(
        devices: tuple[np.ndarray, dict[str, np.ndarray]], proxy_model: LatencyPredictor) -> None:
    idx, lat = devices
    ad = AdaptedPredictor(proxy_model).fit_indices(idx[400:415], lat["scaled"][400:415])
    pred = ad.predict_indices(idx[430:])
    assert srcc(pred, lat["scaled"][430:])[0] > 0.98
    assert np.median(np.abs(pred / lat["scaled"][430:] - 1)) < 0.03
    assert ad.evaluate([tuple(OPS[k] for k in row) for row in idx[430:]], lat["scaled"][430:]).mape < 5


def test_same_call_shapes_as_latency_predictor_and_json_round_trip(
        devices: tuple[np.ndarray, dict[str, np.ndarray]], proxy_model: LatencyPredictor) -> None:
    idx, lat = devices
    ad = AdaptedPredictor(proxy_model).fit_indices(idx[400:440], lat["reweighted"][400:440])
    archs = [Arch(tuple(OPS[k] for k in row)) for row in idx[:50]]
    by_arch, by_names = ad.predict(archs), ad.predict([a.ops for a in archs])
    assert by_arch.shape == (50,) and np.allclose(by_arch, ad.predict_indices(idx[:50]))
    assert np.allclose(by_arch, by_names)
    back = AdaptedPredictor.from_json(json.loads(json.dumps(ad.to_json())))
    assert np.allclose(back.predict_indices(idx), ad.predict_indices(idx), rtol=1e-12)
    assert back.penalties_ == ad.penalties_ and back.n_train == 40
    with pytest.raises(ValueError, match="not a saved adapted predictor"):
        AdaptedPredictor.from_json(proxy_model.to_json())
    bad = ad.to_json()
    bad["weights"]["delta"] = bad["weights"]["delta"][:-1]
    with pytest.raises(ValueError, match="do not match"):
        AdaptedPredictor.from_json(bad)


def test_other_spaces_raw_target_proxy_and_input_errors() -> None:
    # NAS-Bench-201's shape: 6 edges x 5 ops; a raw-ms proxy without pair terms
    choices = tuple(tuple(f"op{k}" for k in range(5)) for _ in range(6))
    rng = np.random.default_rng(3)
    cost = rng.uniform(0.2, 2.0, size=(6, 5))
    idx = rng.integers(0, 5, size=(300, 6))
    proxy_ms = cost[np.arange(6), idx].sum(axis=1)
    target_ms = (cost * np.array([1, 1, 1, 4, 1]))[np.arange(6), idx].sum(axis=1)  # op3 4x slower
    proxy = LatencyPredictor(choices, config=PredictorConfig(log_target=False, pair_scale=0.0))
    proxy.fit_indices(idx[:200], proxy_ms[:200])
    ad = AdaptedPredictor(proxy).fit_indices(idx[200:230], target_ms[200:230])
    assert srcc(ad.predict_indices(idx[230:]), target_ms[230:])[0] > 0.97
    assert srcc(proxy_ms[230:], target_ms[230:])[0] < 0.9
    with pytest.raises(ValueError, match="not fitted"):
        AdaptedPredictor(LatencyPredictor(choices))
    with pytest.raises(ValueError, match="at least 3"):
        AdaptedPredictor(proxy).fit_indices(idx[:2], target_ms[:2])
    with pytest.raises(ValueError, match="> 0 ms"):
        AdaptedPredictor(proxy).fit_indices(idx[:5], [1.0, 2.0, -1.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="out of range"):
        AdaptedPredictor(proxy).fit_indices(idx[:5] + 5, target_ms[:5])
    with pytest.raises(ValueError, match="not fitted"):
        AdaptedPredictor(proxy).predict_indices(idx[:5])


# ----- latency sources -----
def _table(scale: float, slow: str | None = None) -> dict[int, dict[str, float]]:
    return {i: {op: (1 + i) * (k + 1) * scale * (5.0 if op == slow else 1.0) for k, op in enumerate(OPS)}
            for i in range(4)}


def test_tables_are_priced_on_sampled_or_measured_architectures() -> None:
    tables = {"a": _table(1.0), "b": _table(2.0), "c": _table(1.0, slow="SEP_3")}
    lat, info = collect_latencies(tables=tables, samples=200, seed=1)
    assert info["architectures"] == 200 and "sampled" in info["architectures_from"]
    _, m = srcc_matrix(lat)
    assert m[0, 1] == pytest.approx(1.0) and m[0, 2] < 0.9
    arch = "-".join(OPS[:4])
    text = f"arch,m1\n{arch},3.0\n{'-'.join(OPS[1:5])},4.0\n{'-'.join([OPS[0]] * 4)},1.5\n"
    lat, info = collect_latencies(tables={"a": _table(1.0)},
                                  measured=[MeasuredLatencies.from_csv(text, source="m.csv")])
    assert list(lat) == ["a", "m1"] and lat["a"][0] == pytest.approx(sum((1 + i) * (i + 1) for i in range(4)))
    with pytest.raises(ValueError, match=r"both table 'a' and m\.csv"):
        collect_latencies(tables={"a": _table(1.0)},
                          measured=[MeasuredLatencies.from_csv(text.replace("m1", "a"), source="m.csv")])
    with pytest.raises(ValueError, match="needs an 'arch' column"):
        collect_latencies(tables={"a": _table(1.0)},
                          measured=[MeasuredLatencies.from_csv("x,y\n1,2\n2,3\n3,5\n", source="n.csv")])
    with pytest.raises(ValueError, match="share no op at layer 0"):
        table_space({"a": {0: {"SEP_3": 1.0}}, "b": {0: {"MB_3_1": 1.0}}})


def test_measured_csv_errors_name_the_file_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"m.csv: line 3, column 'gpu': 'fast' is not a latency"):
        MeasuredLatencies.from_csv("arch_id,cpu,gpu\n0,1,2\n1,2,fast\n2,3,4\n", source="m.csv")
    with pytest.raises(ValueError, match=r"m.csv: no device columns"):
        MeasuredLatencies.from_csv("arch_id,encoding\n0,1\n", source="m.csv")
    with pytest.raises(ValueError, match=r"column 'gpu' has 2 latencies"):
        MeasuredLatencies.from_csv("cpu,gpu\n1,2\n2,\n3,4\n", source="m.csv")
    m = MeasuredLatencies.from_csv("arch_id,cpu,gpu\n0,1,2\n1,2,\n2,3,4\n3,4,5\n", source="m.csv")
    assert m.key == "arch_id" and np.isnan(m.latencies["gpu"][1])


# ----- CLI -----
def hurricane(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hurricane", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_cli_devices_correlate(tmp_path: Path) -> None:
    idx, lat = _devices(60, seed=5)
    archs = ["-".join(OPS[k] for k in row) for row in idx]
    lines = ["arch,proxy,scaled,reweighted"] + [
        f"{a},{p:.5f},{s:.5f},{r:.5f}" for a, p, s, r in
        zip(archs, lat["proxy"], lat["scaled"], lat["reweighted"], strict=True)]
    (tmp_path / "measured.csv").write_text("\n".join(lines) + "\n")
    table = ["layer,op,median_ms,iqr_ms", "fixed,stem+head,2.0,"] + [
        f"{i},{op},{(1 + i % 3) * OP_MS[k]:.4f},"
        for i in range(SPACE.num_layers) for k, op in enumerate(OPS)]
    (tmp_path / "tbl.csv").write_text("\n".join(table) + "\n")
    r = hurricane("devices", "correlate", "measured.csv", "table_dev=tbl.csv", "--proxy", "proxy",
                  "--out", "m.json", "--png", "m.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SRCC of architecture latencies (60 architectures" in r.stdout
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["devices"] == ["table_dev", "proxy", "scaled", "reweighted"]
    m = np.array(doc["srcc"], dtype=float)
    assert m[1, 2] == pytest.approx(1.0) and m[1, 3] < 0.8
    assert doc["decisions"]["scaled"]["action"] == "reuse"
    assert doc["decisions"]["reweighted"]["action"] == "adapt"
    assert doc["common_architectures"][1][2] == 60
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bad input: the file and column are named, exit code 2, nothing written
    (tmp_path / "bad.csv").write_text("arch_id,cpu,gpu\n0,1,2\n1,2,oops\n2,3,4\n")
    r = hurricane("devices", "correlate", "bad.csv", "--out", "bad.json", cwd=tmp_path)
    assert r.returncode == 2
    assert "bad.csv: line 3, column 'gpu': 'oops' is not a latency" in r.stderr
    assert not (tmp_path / "bad.json").exists()

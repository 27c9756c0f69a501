"""POST /v1/devices/{name}/adapt: a new device from a few measurements through the API, its
prior the caller's imported tables (never another user's), bad input a 422 naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hurricane.api.app import create_app

OPS = ["SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX"]
LAYERS = 5


def _client(env, user: str) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(), headers={"Authorization": f"Bearer {env['tokens'][user]}"})


def _table(seed: int) -> dict[str, list[list[float]]]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 2.0, size=(LAYERS, len(OPS))).tolist()


def _csv(costs: list[list[float]], fixed: float) -> str:
    rows = ["layer,op,median_ms", f"fixed,,{fixed}"]
    rows += [f"{i},{o},{costs[i][j]}" for i in range(LAYERS) for j, o in enumerate(OPS)]
    return "\n".join(rows) + "\n"


def _latency(costs: list[list[float]], fixed: float, arch: str) -> float:
    return fixed + sum(costs[i][OPS.index(o)] for i, o in enumerate(arch.split("-")))


@pytest.fixture
def alice(service_env) -> TestClient:  # type: ignore[no-untyped-def]
    c = _client(service_env, "alice")
    for name, seed in (("dev-a", 1), ("dev-b", 2), ("dev-c", 3)):
        r = c.put(f"/v1/devices/{name}/table", content=_csv(_table(seed), 1.0),
                  headers={"Content-Type": "text/csv"})
        assert r.status_code == 201, r.text
    return c


def test_pick_then_adapt_then_the_table_is_the_callers(alice, service_env) -> None:  # type: ignore[no-untyped-def]
    body = {"ops": OPS, "num_layers": LAYERS}
    r = alice.post("/v1/devices/new-npu/adapt", json={**body, "pick": 8})
    assert r.status_code == 200, r.text
    picked = r.json()["architectures"]
    assert len(picked) == len(set(picked)) == 8
    assert r.json()["known_devices"] == ["dev-a", "dev-b", "dev-c"]
    # the "new device": 3x dev-b's costs plus noise-free fixed part: it follows dev-b
    b = _table(2)
    truth = [[3 * x for x in row] for row in b]
    meas = [{"arch": a, "latency_ms": _latency(truth, 2.0, a)} for a in picked]
    r = alice.post("/v1/devices/new-npu/adapt", json={**body, "measurements": meas})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["samples"] == 8 and out["saved"] and out["weights"][0][0] == "dev-b"
    assert out["loo"]["srcc"] > 0.8
    got = alice.get("/v1/devices/new-npu/table")
    assert got.status_code == 200 and got.json()["table"]["meta"]["derived"] == "few-shot"
    assert service_env["store"].exists("tables/users/alice/new-npu/predictor.json")
    # another user neither sees alice's tables as a prior nor her new device
    bob = _client(service_env, "bob")
    r = bob.post("/v1/devices/x/adapt", json={**body, "pick": 5})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tables"]
    r = bob.post("/v1/devices/x/adapt", json={**body, "pick": 5, "tables": ["dev-a", "dev-b"]})
    assert r.status_code == 422 and "no table you can read" in r.json()["detail"][0]["msg"]
    assert bob.get("/v1/devices/new-npu/table").status_code == 404


@pytest.mark.parametrize(("extra", "loc", "words"), [
    ({"pick": 5, "measurements": [{"arch": "SEP_3-SEP_3-SEP_3-SEP_3-SEP_3", "latency_ms": 1}] * 3},
     ["body"], "exactly one of 'pick'"),
    ({"pick": 2}, ["body", "pick"], "greater than or equal to 3"),
    ({"pick": 5, "ops": ["SEP_3", "NOPE"]}, ["body", "ops"], "unknown operator(s) ['NOPE']"),
    ({"measurements": [{"arch": "SEP_3-SEP_3-SEP_3-SEP_3", "latency_ms": 1.0}] * 3},
     ["body", "measurements", 0, "arch"], "not in the space"),
    ({"measurements": [{"arch": "SEP_3-SEP_3-SEP_3-SEP_3-SEP_3", "latency_ms": -1}] * 3},
     ["body", "measurements", 0, "latency_ms"], "greater than 0"),
    ({"pick": 5, "tables": ["dev-a"]}, ["body", "tables"], "at least 2 known devices"),
])
def test_bad_input_is_422_naming_the_field(alice, extra, loc, words) -> None:  # type: ignore[no-untyped-def]
    r = alice.post("/v1/devices/new-npu/adapt", json={"ops": OPS, "num_layers": LAYERS, **extra})
    assert r.status_code == 422, r.text
    d = r.json()["detail"][0]
    assert d["loc"][:len(loc)] == loc and words in d["msg"], d


def test_a_search_on_the_adapted_device_prices_with_its_predictor(alice, service_env) -> None:  # type: ignore[no-untyped-def]
    """`table: imported` on a device made by adapt: the search copies the predictor with the
    table, and the predictor (not the distilled table) is its latency model."""
    from hurricane.latency.fewshot import FORMAT, FewShotPredictor
    from hurricane.nets.arch import Arch
    from hurricane.runs.executor import InlineExecutor
    from hurricane.runs.pipeline import run_step, submit
    from hurricane.runs.steps.common import latency_model, load_table, predictor_key
    from hurricane.spec import SearchSpec
    from tests.conftest import tiny_spec_dict

    body = {"ops": OPS, "num_layers": LAYERS}
    picked = alice.post("/v1/devices/npu2/adapt", json={**body, "pick": 6}).json()["architectures"]
    truth = [[2 * x for x in row] for row in _table(1)]
    r = alice.post("/v1/devices/npu2/adapt", json={**body, "measurements": [
        {"arch": a, "latency_ms": _latency(truth, 1.5, a)} for a in picked]})
    assert r.status_code == 200, r.text
    store = service_env["store"]
    spec = SearchSpec.model_validate(tiny_spec_dict(
        strategy="spos", space={"kind": "pool"},
        devices=[{"name": "npu2", "table": "imported", "budget_fraction": 0.5}]))
    sid = submit(spec, store, "adapted1", owner="alice")
    run_step("profile", spec, sid, store, InlineExecutor())
    d = store.get_json(predictor_key(sid, "npu2"))
    assert d["format"] == FORMAT
    table = load_table(store, sid, "npu2")
    lat = latency_model(store, sid, "npu2", table)
    a = Arch.parse(picked[0])
    assert lat(a) == pytest.approx(float(FewShotPredictor.from_json(d).predict([a])[0]))
    assert lat(a) != pytest.approx(table.arch_latency(a), rel=1e-9)

"""The REST API (FastAPI, in-process client): device profiles and the SRCC matrix endpoint,
with HTTP 422 naming the field on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hurricane.api.app import create_app


@pytest.fixture
def client(service_env) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(), headers={
        "Authorization": f"Bearer {service_env['tokens']['alice']}"})


def _latencies() -> dict[str, list[float | None]]:
    rng = np.random.default_rng(0)
    proxy = rng.uniform(1, 10, 40)
    return {"proxy": proxy.tolist(),
            "scaled": (3 * proxy + 0.5).tolist(),          # monotone: SRCC 1
            "shuffled": rng.permutation(proxy).tolist()}  # unrelated


def test_device_profiles(client) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/devices")
    assert r.status_code == 200
    names = {d["name"]: d for d in r.json()}
    assert names["cpu-ov"]["backend"] == "openvino" and names["dsp-qnn"]["node_label"] == "dsp"


def test_correlate_matrix_and_decisions(client) -> None:  # type: ignore[no-untyped-def]
    lat = _latencies()
    lat["scaled"][3] = None  # a missing measurement: the pair uses the other 39
    r = client.post("/v1/devices/correlate", json={"latencies": lat, "proxy": "proxy"})
    assert r.status_code == 200, r.text
    out = r.json()
    names = out["devices"]
    m = {(a, b): out["srcc"][i][j] for i, a in enumerate(names) for j, b in enumerate(names)}
    assert m[("proxy", "scaled")] == pytest.approx(1.0) and m[("proxy", "proxy")] == 1.0
    assert abs(m[("proxy", "shuffled")]) < 0.5
    assert out["decisions"]["scaled"]["action"] == "reuse"
    assert out["decisions"]["shuffled"]["action"] == "adapt"
    png = client.post("/v1/devices/correlate?format=png", json={"latencies": lat})
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"latencies": {"a": [1.0, 2.0]}}, "latencies", "at least 2 devices"),
    ({"latencies": {"a": [1.0, 2.0], "b": [1.0]}}, "latencies", "same number of architectures"),
    ({"latencies": {"a": [1.0, -2.0], "b": [1.0, 2.0]}}, "latencies", "finite and > 0"),
    ({"latencies": {"a": [1.0, 2.0], "b": [1.0, 2.0]}, "threshold": 1.5}, "threshold",
     "less than or equal to 1"),
    ({"latencies": {"a": [1.0, 2.0], "b": [1.0, 2.0]}, "proxy": "c"}, "body",
     "proxy 'c' is not among the devices: a, b"),
    ({"latencies": {"a": [1.0, 2.0], "b": [1.0, 2.0]}, "extra": 1}, "extra", "Extra inputs"),
])
def test_bad_input_is_422_naming_the_field(client, body, field, message) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/devices/correlate", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] and message in d["msg"] for d in detail), detail

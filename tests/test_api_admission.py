"""Admission limits an operator sets: every field over its limit is a 422 naming the field and
the limit, a user at their number of active searches gets 429 with Retry-After (also when
requests race), admins may be exempt; the settings parse from the environment and the Helm
chart renders them; the CLI refuses data outside the roots."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hurricane.settings import Settings, get_settings
from tests.api_server import MAX_ACTIVE, ApiServer
from tests.conftest import tiny_spec_dict

LIMITS = {"HURRICANE_MAX_ITERATIONS": "100", "HURRICANE_MAX_BATCH_SIZE": "64",
          "HURRICANE_MAX_WORLD_SIZE": "2", "HURRICANE_MAX_INPUT_LAYERS": "200",
          "HURRICANE_MAX_EVOLUTION_EVALS": "50", "HURRICANE_MAX_PREDICTOR_SAMPLES": "20"}

# (what, spec overrides, the field named, the limit's text); the tiny spec is within them all
OVER: list[tuple[str, dict[str, Any], str, str]] = [
    ("supernet-iterations", {"supernet": {"iterations": 101}}, "supernet.iterations", "100"),
    ("retrain-iterations", {"retrain": {"iterations": 500}}, "retrain.iterations", "100"),
    ("stage2-iterations", {"strategy": "hurricane", "hurricane": {"stage2_iterations": 101}},
     "hurricane.stage2_iterations", "100"),
    ("proxyless-iterations", {"strategy": "proxyless", "proxyless": {"iterations": 1000,
                                                                     "batch_size": 32}},
     "proxyless.iterations", "100"),
    ("finalist-iterations", {"evolution": {"finalists": 3, "finalist_iterations": 101}},
     "evolution.finalist_iterations", "100"),
    ("supernet-batch", {"supernet": {"batch_size": 65}}, "supernet.batch_size", "64"),
    ("retrain-batch", {"retrain": {"batch_size": 128}}, "retrain.batch_size", "64"),
    ("bn-batch", {"evolution": {"bn_batch_size": 65}}, "evolution.bn_batch_size", "64"),
    ("profile-batch", {"profile": {"batch_size": 65}}, "profile.batch_size", "64"),
    ("world-size", {"training": {"nodes": 2, "processes_per_node": 2}}, "training", "2"),
    ("input-layers", {"backbone": {"input_size": 64}}, "backbone", "200"),
    ("evolution-evals", {"evolution": {"population": 26, "iterations": 2}}, "evolution", "50"),
    ("predictor-samples", {"predictor": {"samples": 21}}, "predictor.samples", "20"),
    ("one-proxy-samples", {"devices": [{"name": "cpu", "budget_fraction": 0.5},
                                       {"name": "cpu-ort", "budget_fraction": 0.5,
                                        "proxy": "cpu"}], "one_proxy": {"samples": 21}},
     "one_proxy.samples", "20"),
]


@pytest.fixture
def limited(service_env, monkeypatch):  # type: ignore[no-untyped-def]
    for k, v in LIMITS.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    from hurricane.api.app import create_app

    app = create_app()
    return {u: TestClient(app, headers={"Authorization": f"Bearer {t}"})
            for u, t in service_env["tokens"].items()}


def test_the_tiny_spec_is_within_the_limits_used_here(limited) -> None:  # type: ignore[no-untyped-def]
    assert limited["alice"].post("/v1/searches", json=tiny_spec_dict()).status_code == 201


@pytest.mark.parametrize(("over", "field", "limit"), [o[1:] for o in OVER], ids=[o[0] for o in OVER])
def test_a_field_over_its_limit_is_422_naming_field_and_limit(limited, service_env, over, field,  # type: ignore[no-untyped-def]
                                                              limit) -> None:
    r = limited["alice"].post("/v1/searches", json=tiny_spec_dict(**over))
    assert r.status_code == 422, r.text
    hits = [d for d in r.json()["detail"] if ".".join(map(str, d["loc"][1:])) == field]
    assert hits, r.text
    assert f"the limit is {limit} (setting HURRICANE_MAX_" in hits[0]["msg"], hits[0]
    assert service_env["store"].list("searches") == []  # refused before anything is stored
    # admins are exempt by default ...
    assert limited["root"].post("/v1/searches", json=tiny_spec_dict(**over)).status_code == 201


def test_admins_are_held_to_the_limits_when_not_exempt(service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HURRICANE_MAX_ITERATIONS", "100")
    monkeypatch.setenv("HURRICANE_ADMINS_EXEMPT", "false")
    get_settings.cache_clear()
    from hurricane.api.app import create_app

    root = TestClient(create_app(), headers={
        "Authorization": f"Bearer {service_env['tokens']['root']}"})
    r = root.post("/v1/searches", json=tiny_spec_dict(supernet={"iterations": 101}))
    assert r.status_code == 422 and "supernet.iterations is 101" in r.text


def _active(api: ApiServer, user: str) -> list[str]:
    r = httpx.get(f"{api.url}/v1/searches", params={"state": "queued", "limit": 200},
                  headers=api.headers(user))
    return [s["search_id"] for s in r.json()["data"]]


def test_active_searches_per_user_are_capped_with_429(live_api: ApiServer) -> None:
    """On the live service (limit 3): the fourth active search is 429 with Retry-After; a
    cancelled one frees a place; resuming past the limit is 429 too; admins are exempt."""
    c = httpx.Client(base_url=live_api.url, headers=live_api.headers("quota"), timeout=60)
    for sid in _active(live_api, "quota"):
        c.delete(f"/v1/searches/{sid}")
    ids = [c.post("/v1/searches", json=tiny_spec_dict(seed=i)).json()["search_id"]
           for i in range(MAX_ACTIVE)]
    r = c.post("/v1/searches", json=tiny_spec_dict(seed=99))
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    assert f"has {MAX_ACTIVE} queued or running searches; the limit is {MAX_ACTIVE}" in r.json()["detail"]
    assert c.delete(f"/v1/searches/{ids[0]}").json()["state"] == "cancelled"
    assert c.post("/v1/searches", json=tiny_spec_dict(seed=99)).status_code == 201
    resumed = c.post(f"/v1/searches/{ids[0]}/resume")  # a fourth active one again
    assert resumed.status_code == 429 and resumed.headers["retry-after"] == "30"
    assert len(_active(live_api, "quota")) == MAX_ACTIVE
    # another user is not affected by quota's count; an admin is exempt
    root = httpx.Client(base_url=live_api.url, headers=live_api.headers("root"), timeout=60)
    made = [root.post("/v1/searches", json=tiny_spec_dict(seed=i)) for i in range(MAX_ACTIVE + 1)]
    assert [m.status_code for m in made] == [201] * (MAX_ACTIVE + 1)
    for m in made:
        root.delete(f"/v1/searches/{m.json()['search_id']}")
    for sid in _active(live_api, "quota"):
        c.delete(f"/v1/searches/{sid}")
    c.close()
    root.close()


def test_racing_submissions_cannot_pass_the_limit_together(live_api: ApiServer) -> None:
    """Eight POSTs at once from one user with no active search: exactly the limit pass (the
    count and the record happen under one per-user lock in Redis)."""
    for sid in _active(live_api, "quota"):
        httpx.delete(f"{live_api.url}/v1/searches/{sid}", headers=live_api.headers("quota"))
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def post(i: int) -> None:
        with httpx.Client(base_url=live_api.url, headers=live_api.headers("quota"),
                          timeout=120) as c:
            barrier.wait()
            codes.append(c.post("/v1/searches", json=tiny_spec_dict(seed=100 + i)).status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] * MAX_ACTIVE + [429] * (8 - MAX_ACTIVE), codes
    assert len(_active(live_api, "quota")) == MAX_ACTIVE
    for sid in _active(live_api, "quota"):
        httpx.delete(f"{live_api.url}/v1/searches/{sid}", headers=live_api.headers("quota"))


def test_settings_parse_lists_and_refuse_bad_roots(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_roots="/data/shared, /data/users/{user}/", data_buckets='["datasets"]')  # type: ignore[arg-type]
    assert s.data_roots == ("/data/shared", "/data/users/{user}") and s.data_buckets == ("datasets",)
    for bad, key in (("data", "data_roots"), ("/", "data_roots"), ("/data/../etc", "data_roots")):
        with pytest.raises(ValidationError, match=key):
            Settings(data_roots=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="data_buckets"):
        Settings(data_buckets="Bad_Bucket")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_world_size"):
        Settings(max_world_size=0)


def test_the_chart_renders_the_limits_and_the_data_sources(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.test_chart import _settings, render, settings_data

    objs = render({"admission": {"maxWorldSize": 8, "maxActiveSearches": 2, "adminsExempt": False},
                   "data": {"roots": ["/data/shared", "/data/users/{user}"],
                            "buckets": ["datasets", "team/{user}"]}})
    data = settings_data(objs)
    assert data["HURRICANE_MAX_WORLD_SIZE"] == "8" and data["HURRICANE_ADMINS_EXEMPT"] == "false"
    s = _settings(objs, monkeypatch)
    assert (s.max_world_size, s.max_active_searches, s.admins_exempt) == (8, 2, False)
    assert s.max_iterations == 1_000_000 and s.max_batch_size == 4096  # the chart's defaults
    assert s.data_roots == ("/data/shared", "/data/users/{user}")
    assert s.data_buckets == ("datasets", "team/{user}")
    # no roots given: the mounted claim's path when there is one, else none
    assert _settings(render({"data": {"pvc": "datasets"}}), monkeypatch).data_roots == ("/data",)
    assert _settings(render(), monkeypatch).data_roots == ()


def test_the_cli_refuses_data_outside_the_roots(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict(dataset={"name": "imagefolder", "path": "/etc"},
                                                  backbone={"num_classes": 10})))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HURRICANE_")}
    env.update(HURRICANE_DATA_ROOTS=f"{tmp_path}/data", PYTHONPATH=":".join(sys.path))
    r = subprocess.run([sys.executable, "-m", "hurricane", "run", str(spec), "--store",
                        str(tmp_path / "store")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert "dataset.path '/etc'" in r.stderr and f"{tmp_path}/data" in r.stderr
    assert not (tmp_path / "store").exists()  # refused before anything was recorded

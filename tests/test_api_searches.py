"""The search routes in process (FastAPI TestClient) over a real redis-server and a local
store: auth, submission (JSON/YAML, idempotency), ownership, paging, a finished search's view,
artifacts and signed downloads, cancel/resume/purge, events, imported tables, readiness and
metrics. The pipeline itself runs inline on the same store where a test needs results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient

from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_search
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict


@pytest.fixture
def app(service_env):  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    return create_app()


def client(app: Any, token: str | None) -> TestClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers)


@pytest.fixture
def alice(app, service_env) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with client(app, service_env["tokens"]["alice"]) as c:
        yield c


@pytest.fixture
def bob(app, service_env) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with client(app, service_env["tokens"]["bob"]) as c:
        yield c


@pytest.fixture
def root(app, service_env) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with client(app, service_env["tokens"]["root"]) as c:
        yield c


def post_spec(c: TestClient, spec: dict[str, Any] | None = None, *, yaml_body: bool = False,
              **headers: str) -> Any:
    spec = spec or tiny_spec_dict()
    if yaml_body:
        return c.post("/v1/searches", content=yaml.safe_dump(spec),
                      headers={"Content-Type": "application/yaml", **headers})
    return c.post("/v1/searches", json=spec, headers=headers)


def broker(service_env: dict[str, Any]) -> redis.Redis:
    return redis.Redis.from_url(service_env["env"]["HURRICANE_REDIS_URL"])


def test_auth_is_required_and_tokens_are_checked(app, alice) -> None:  # type: ignore[no-untyped-def]
    anon = client(app, None)
    r = anon.get("/v1/searches")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client(app, "hur_wrong").get("/v1/searches").status_code == 401
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert alice.get("/v1/searches").status_code == 200


def test_submit_yaml_and_json_records_and_enqueues(alice, service_env) -> None:  # type: ignore[no-untyped-def]
    r = post_spec(alice, yaml_body=True)
    assert r.status_code == 201, r.text
    sid = r.json()["search_id"]
    assert r.headers["location"] == f"/v1/searches/{sid}" and sid.startswith("tiny-")
    view = alice.get(f"/v1/searches/{sid}").json()
    assert view["state"] == "queued" and view["owner"] == "alice"
    assert view["plan"] == ["profile", "space", "predictor", "stage1", "search1", "retrain",
                            "export"]
    store = service_env["store"]
    assert store.exists(f"searches/{sid}/spec.json") and store.exists(f"index/active/{sid}")
    r = broker(service_env)
    assert r.llen("control") == 1  # one advance task, ids only
    task = json.loads(r.lindex("control", 0))
    assert task["headers"]["task"] == "hurricane.advance" and task["headers"]["argsrepr"] == f"['{sid}']"
    assert json.loads(r.hget(f"hurricane:flight:{sid}", "advance"))["state"] == "queued"
    assert post_spec(alice).status_code == 201  # JSON too


def test_idempotency_key_replays_the_first_submission(alice, bob) -> None:  # type: ignore[no-untyped-def]
    first = post_spec(alice, **{"Idempotency-Key": "k-1"})
    again = post_spec(alice, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["search_id"] == first.json()["search_id"]
    other = post_spec(alice, tiny_spec_dict(seed=9), **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and "another spec" in other.json()["detail"]
    assert post_spec(bob, **{"Idempotency-Key": "k-1"}).json()["search_id"] != first.json()["search_id"]
    assert alice.get("/v1/searches").json()["count"] == 1


def test_other_users_searches_are_invisible_admins_see_all(alice, bob, root) -> None:  # type: ignore[no-untyped-def]
    sid = post_spec(alice).json()["search_id"]
    for path in (f"/v1/searches/{sid}", f"/v1/searches/{sid}/artifacts",
                 f"/v1/searches/{sid}/report"):
        r = bob.get(path)
        assert r.status_code == 404 and sid in r.json()["detail"], path
    assert bob.delete(f"/v1/searches/{sid}").status_code == 404
    assert bob.post(f"/v1/searches/{sid}/resume").status_code == 404
    assert bob.get("/v1/searches").json()["count"] == 0
    assert root.get(f"/v1/searches/{sid}").status_code == 200
    post_spec(bob)
    everyone = root.get("/v1/searches").json()
    assert {s["owner"] for s in everyone["data"]} == {"alice", "bob"}
    assert root.get("/v1/searches", params={"owner": "bob"}).json()["count"] == 1
    assert alice.get("/v1/searches", params={"owner": "bob"}).status_code == 403


def test_paging_newest_first_and_state_filter(alice) -> None:  # type: ignore[no-untyped-def]
    ids = [post_spec(alice, tiny_spec_dict(seed=i)).json()["search_id"] for i in range(5)]
    seen, cursor = [], None
    for _ in range(5):
        page = alice.get("/v1/searches", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [s["search_id"] for s in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    alice.delete(f"/v1/searches/{ids[1]}")
    cancelled = alice.get("/v1/searches", params={"state": "cancelled"}).json()
    assert [s["search_id"] for s in cancelled["data"]] == [ids[1]]
    assert alice.get("/v1/searches", params={"state": "queued"}).json()["count"] == 4


@pytest.fixture
def finished(alice, service_env) -> str:  # type: ignore[no-untyped-def]
    """A search submitted over the API and run to the end by the embedded runner."""
    spec = tiny_spec_dict()
    sid = post_spec(alice, spec).json()["search_id"]
    run_search(SearchSpec.model_validate(spec), service_env["store"], InlineExecutor(), sid)
    return sid


def test_a_finished_search_shows_winners_report_and_artifacts(alice, finished, service_env) -> None:  # type: ignore[no-untyped-def]
    sid, store = finished, service_env["store"]
    view = alice.get(f"/v1/searches/{sid}").json()
    assert view["state"] == "succeeded" and view["finished"]
    assert all(s["state"] == "succeeded" and s["seconds"] is not None for s in view["steps"].values())
    assert view["steps"]["stage1"]["units"]["ALL"]["state"] == "succeeded"
    cpu = view["devices"]["cpu"]
    assert cpu["arch"].count("-") == 4 and 0 <= cpu["top1"] <= 1
    assert cpu["measured_latency_ms"] > 0 and cpu["budget_ms"] > 0
    assert cpu["latency_check"]["median_ms"] == pytest.approx(cpu["measured_latency_ms"], abs=1e-4)
    assert cpu["latency_check"]["verdict"] in ("within", "over", "inconclusive")
    report = alice.get(f"/v1/searches/{sid}/report").json()
    assert report["devices"]["cpu"]["arch"] == cpu["arch"]
    assert alice.get(f"/v1/searches/{sid}/report?format=md").text.startswith(f"# Search {sid}")

    listing = alice.get(f"/v1/searches/{sid}/artifacts", params={"checksums": "true"}).json()
    keys = {a["key"]: a for a in listing["data"]}
    assert "retrain/cpu/final.pt" in keys and "export/cpu/model.onnx" in keys
    assert not any(k.startswith(("state/", "actions/", "jobs/")) for k in keys)
    onnx = keys["export/cpu/model.onnx"]
    body = store.get_bytes(f"searches/{sid}/export/cpu/model.onnx")
    assert onnx["size"] == len(body) and onnx["sha256"] == hashlib.sha256(body).hexdigest()
    # a local store: the API serves the file itself through a signed, expiring link
    got = alice.get(onnx["url"].removeprefix("http://testserver"))
    assert got.status_code == 200 and got.content == body
    tampered = onnx["url"].removeprefix("http://testserver").replace("model.onnx", "arch.json")
    assert alice.get(tampered.replace("export/cpu/arch.json", "retrain/cpu/arch.json")).status_code == 403
    redirect = alice.get(f"/v1/searches/{sid}/artifacts/retrain/cpu/arch.json", follow_redirects=False)
    assert redirect.status_code == 307
    target = redirect.headers["location"].removeprefix("http://testserver")
    assert alice.get(target).json()["arch"] == cpu["arch"]
    fetch_set = alice.get(f"/v1/searches/{sid}/artifacts", params={"device": "cpu"}).json()
    assert {a["key"] for a in fetch_set["data"]} == {
        "retrain/cpu/final.pt", "retrain/cpu/arch.json", "retrain/cpu/metrics.json",
        "export/cpu/model.onnx", "report.json", "report.md"}
    assert all(len(a["sha256"]) == 64 for a in fetch_set["data"])


def test_events_stream_a_finished_search_to_its_end(alice, finished) -> None:  # type: ignore[no-untyped-def]
    events = []
    with alice.stream("GET", f"/v1/searches/{finished}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["state"] == "succeeded"
    assert {d["step"] for e, d in events if e == "step"} == {
        "profile", "space", "predictor", "stage1", "search1", "retrain", "export"}
    assert ("state", {"state": "succeeded", "error": None, "failed_step": None}) in events


def test_cancel_resume_and_purge(alice, finished, service_env) -> None:  # type: ignore[no-untyped-def]
    store, r = service_env["store"], broker(service_env)
    sid = post_spec(alice, tiny_spec_dict(seed=5)).json()["search_id"]
    assert alice.post(f"/v1/searches/{sid}/resume").status_code == 409  # queued: nothing to resume
    out = alice.delete(f"/v1/searches/{sid}")
    assert out.status_code == 202 and out.json()["state"] == "cancelled"
    assert not store.exists(f"index/active/{sid}")
    assert alice.delete(f"/v1/searches/{sid}").json()["state"] == "cancelled"  # idempotent
    before = r.llen("control")
    back = alice.post(f"/v1/searches/{sid}/resume")
    assert back.status_code == 202 and back.json()["state"] == "queued"
    assert back.json()["generation"] == 1 and r.llen("control") == before + 1
    assert store.exists(f"index/active/{sid}")
    # a succeeded search cannot be cancelled, only purged
    assert alice.delete(f"/v1/searches/{finished}").status_code == 409
    assert alice.delete(f"/v1/searches/{finished}?purge=true").status_code == 204
    assert store.list(f"searches/{finished}") == []
    assert alice.get(f"/v1/searches/{finished}").status_code == 404
    assert finished not in [s["search_id"] for s in alice.get("/v1/searches").json()["data"]]


def test_imported_tables(alice, bob, root, service_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rows = ["layer,op,median_ms,iqr_ms", "fixed,stem+head,0.5,"]
    rows += [f"{i},{op},{0.1 * (i + 1) + j * 0.01:.3f}," for i in range(5)
             for j, op in enumerate(["SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX"])]
    r = alice.put("/v1/devices/phone-dsp/table", content="\n".join(rows),
                  headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json()["layers"] == 5 and r.json()["entries"] == 25 and r.json()["fixed_ms"] == 0.5
    devices = {d["name"]: d for d in alice.get("/v1/devices").json()}
    assert devices["phone-dsp"]["imported_table"] and devices["phone-dsp"]["backend"] == "table"
    spec = tiny_spec_dict(devices=[{"name": "cpu", "budget_fraction": 0.5},
                                   {"name": "phone-dsp", "table": "imported",
                                    "budget_fraction": 0.5}])
    sid = post_spec(alice, spec).json()["search_id"]
    store = service_env["store"]
    assert store.exists(f"searches/{sid}/inputs/tables/phone-dsp.json")  # the search's own copy
    # the table is alice's: bob neither sees nor uses it, and importing his own changes nothing
    assert "phone-dsp" not in {d["name"] for d in bob.get("/v1/devices").json()}
    assert bob.get("/v1/devices/phone-dsp/table").status_code == 404
    assert post_spec(bob, spec).status_code == 422
    mine = bob.put("/v1/devices/phone-dsp/table", content="\n".join(rows[:1] + rows[2:]),
                   headers={"Content-Type": "text/csv"})
    assert mine.status_code == 201 and mine.json()["owner"] == "bob"
    assert alice.get("/v1/devices/phone-dsp/table").json()["table"]["fixed_ms"] == 0.5
    assert root.get("/v1/devices/phone-dsp/table?owner=alice").json()["imported_by"] == "alice"
    # the profile step reads the imported table for that device; nothing is measured
    run_search(SearchSpec.model_validate(spec), store, InlineExecutor(), sid)
    view = alice.get(f"/v1/searches/{sid}").json()
    assert view["state"] == "succeeded"
    table = store.get_json(f"searches/{sid}/profile/phone-dsp/latency.json")
    assert table["fixed_ms"] == 0.5 and table["ops"]["0"]["SEP_3"] == 0.1
    assert view["devices"]["phone-dsp"]["measured_latency_ms"] is None


def test_readyz_metrics_and_openapi(app, alice, service_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    anon = client(app, None)
    assert anon.get("/readyz").json() == {"status": "ready", "checks": {"redis": "ok", "store": "ok"}}
    post_spec(alice)
    monkeypatch.setenv("HURRICANE_METRICS", "open")  # off by default (tests/test_api_metrics.py)
    from hurricane.settings import get_settings as _get

    _get.cache_clear()
    text = anon.get("/metrics").text
    assert 'hurricane_searches{state="queued"} 1.0' in text
    assert 'hurricane_queue_depth{queue="control"} 1.0' in text
    assert 'hurricane_http_requests_total{method="POST",route="/v1/searches",status="201"}' in text
    doc = anon.get("/openapi.json").json()
    assert "SearchSpec" in doc["components"]["schemas"]
    assert {"/v1/searches", "/v1/searches/{search_id}/events",
            "/v1/devices/{name}/table"} <= set(doc["paths"])
    assert anon.get("/docs").status_code == 200
    # Redis unreachable: not ready (503), and the check says which part
    from hurricane.api.app import create_app
    from hurricane.settings import get_settings

    monkeypatch.setenv("HURRICANE_REDIS_URL", "redis://127.0.0.1:9/0")
    get_settings.cache_clear()
    r = client(create_app(), None).get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["redis"].startswith("unreachable")

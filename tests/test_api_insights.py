"""The insight routes in process (FastAPI TestClient) over a real redis-server and a local store:
a finished search's insights checked against its stored step outputs, a just-submitted one's
empty sections, the listing's progress and results, one unit's live log tail written by the
process executor running a real job, and who may see them. One tiny search (hardware space, a
measured device and a table device) runs once for the module; each test gets a copy of it."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hurricane.api.schemas import InsightsPublic
from hurricane.latency.latency_table import LatencyTable
from hurricane.runs.contract import JobSpec
from hurricane.runs.executor import InlineExecutor, ProcessExecutor
from hurricane.runs.pipeline import run_search, run_step
from hurricane.runs.records import SearchPurged, guarded, purged_key, submit
from hurricane.runs.steps import pool_space
from hurricane.runs.unitlog import MAX_LINE_CHARS, UnitLog, unit_log_key
from hurricane.spec import SearchSpec
from hurricane.storage.store import LocalStore, search_key
from tests.conftest import tiny_spec_dict

SID = "insight-1"


def hardware_spec(table: Path) -> SearchSpec:
    return SearchSpec.model_validate(tiny_spec_dict(
        name="insight", space={"kind": "hardware", "top_p": 2, "explore_layers": 1},
        devices=[{"name": "cpu", "budget_fraction": 0.6},
                 {"name": "dsp-855", "table": str(table), "budget_fraction": 0.6}]))


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding alice's finished search SID: profiled cpu, a made-up dsp-855 table."""
    root = tmp_path_factory.mktemp("insights")
    probe = SearchSpec.model_validate(tiny_spec_dict())
    rng = random.Random(7)
    table = LatencyTable("dsp-855", {i: {op: rng.uniform(0.1, 1.0) for op in probe.space.ops}
                                     for i in range(pool_space(probe).num_layers)}, fixed_ms=0.2)
    (root / "dsp.csv").write_text(table.to_csv())
    spec = hardware_spec(root / "dsp.csv")
    store = LocalStore(root / "store")
    submit(spec, store, SID, owner="alice")
    run_search(spec, store, InlineExecutor(), SID)
    return root / "store"


@pytest.fixture
def app(service_env):  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    return create_app()


def client(app: Any, token: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def users(app, service_env, finished_store) -> Iterator[dict[str, TestClient]]:  # type: ignore[no-untyped-def]
    shutil.copytree(finished_store, service_env["store"].root, dirs_exist_ok=True)
    with client(app, service_env["tokens"]["alice"]) as a, \
            client(app, service_env["tokens"]["bob"]) as b, \
            client(app, service_env["tokens"]["root"]) as r:
        yield {"alice": a, "bob": b, "root": r}


def stored(service_env: dict[str, Any], *parts: str) -> Any:
    return service_env["store"].get_json(search_key(SID, *parts))


def test_insights_of_a_finished_search_match_its_step_outputs(users, service_env) -> None:  # type: ignore[no-untyped-def]
    got = users["alice"].get(f"/v1/searches/{SID}/insights")
    assert got.status_code == 200
    body = got.json()
    InsightsPublic.model_validate(body)
    assert (body["search_id"], body["strategy"], body["state"]) == (SID, "spos", "succeeded")

    train = stored(service_env, "stage1", "train.json")
    sn = body["supernets"]["stage1"]
    assert sn["iterations"] == train["iterations"] == 12
    assert sn["loss_curve"] == [[int(i), round(v, 4)] for i, v in train["loss_history"]]
    assert sn["final_loss"] == train["final_loss"] and sn["quality"] == train["quality"]
    assert set(sn["quality"]) >= {"reliable", "accuracy_mean", "split_half_rho", "accuracies"}

    evo = stored(service_env, "search1", "cpu", "evolution.json")
    e = body["evolution"]["search1"]["cpu"]
    assert len(e["history"]) == evo["config"]["iterations"] == 2
    assert e["evaluated"] == evo["evaluated"] and e["top"] == evo["top"]
    assert e["pareto"] and all(p["latency_ms"] <= e["budget_ms"] for p in e["pareto"])
    assert set(body["evolution"]["search1"]) == {"cpu", "dsp-855"}

    space = stored(service_env, "space", "space.json")
    sp = body["space"]
    assert sp["kind"] == "hardware" and sp["num_layers"] == 5 and sp["choices"] == space["choices"]
    assert sp["chosen"] == {"cpu": space["choices"]}
    scores = stored(service_env, "space", "scores.json")["scores"]
    assert sp["scores"]["cpu"] == scores and set(sp["scores"]) == {"cpu", "dsp-855"}
    # top-2 by Eq. 2 score on the device the space was made for, in every layer
    for layer, ops in scores.items():
        best = sorted(ops, key=lambda o: -ops[o])[:2]
        assert set(best) <= set(space["choices"][int(layer)])

    cpu_table = stored(service_env, "profile", "cpu", "latency.json")
    assert body["tables"]["cpu"]["ops"] == cpu_table["ops"]
    assert body["tables"]["cpu"]["source"] == "profiled"
    assert body["tables"]["dsp-855"]["source"] == "imported"

    metrics = stored(service_env, "predictor", "cpu", "metrics.json")
    p = body["predictors"]["cpu"]
    assert p["metrics"] == metrics["predictor"] and p["table_sum"] == metrics["table_sum"]
    assert len(p["points"]) == metrics["n_train"] + metrics["n_test"] == 12
    assert sum(pt["split"] == "test" for pt in p["points"]) == metrics["n_test"]
    assert "dsp-855" not in body["predictors"]  # a table device measures nothing

    c = body["correlation"]
    assert c["devices"] == ["cpu", "dsp-855"] and c["source"] == "tables"
    assert c["srcc"][0][0] == 1.0 and c["srcc"][0][1] == c["srcc"][1][0]
    assert -1 <= c["srcc"][0][1] <= 1 and c["proxy"] == {}

    view = users["alice"].get(f"/v1/searches/{SID}").json()["devices"]
    for dev in ("cpu", "dsp-855"):
        w = body["winners"][dev]
        assert {k: w[k] for k in view[dev]} == view[dev]
        assert len(w["layers"]) == sp["num_layers"]
        assert [la["op"] for la in w["layers"]] == w["arch"].split("-")
        assert sum(la["params"] for la in w["layers"]) <= w["params"]
        assert sum(la["macs"] for la in w["layers"]) <= w["macs"]
        assert [la["stride"] for la in w["layers"]] == [2, 2, 2, 1, 2]  # stages of 1, 1, 2, 1
    assert body["winners"]["cpu"]["measured_latency_ms"] > 0


def test_predictor_points_of_a_search_stored_before_fit_json(users, service_env) -> None:  # type: ignore[no-untyped-def]
    """Searches stored before the predictor step wrote fit.json get the same points,
    recomputed from the fitted predictor and the measurements."""
    fit = stored(service_env, "predictor", "cpu", "fit.json")["points"]
    service_env["store"].delete(search_key(SID, "predictor", "cpu", "fit.json"))
    points = users["alice"].get(f"/v1/searches/{SID}/insights").json()["predictors"]["cpu"]["points"]
    assert [(p["arch"], p["split"], p["measured_ms"]) for p in points] == \
        [(p["arch"], p["split"], p["measured_ms"]) for p in fit]
    for a, b in zip(points, fit, strict=True):
        assert a["predicted_ms"] == pytest.approx(b["predicted_ms"], rel=1e-6)
        assert a["table_ms"] == pytest.approx(b["table_ms"], rel=1e-9)


def test_only_the_owner_and_admins_see_insights_and_logs(users) -> None:  # type: ignore[no-untyped-def]
    for path in (f"/v1/searches/{SID}/insights", f"/v1/searches/{SID}/logs/profile/cpu"):
        assert users["bob"].get(path).status_code == 404
        assert users["root"].get(path).status_code == 200
        assert users["alice"].get(path).status_code == 200
    assert TestClient(users["alice"].app).get(f"/v1/searches/{SID}/insights").status_code == 401


def test_log_route_names_what_is_allowed(users) -> None:  # type: ignore[no-untyped-def]
    alice = users["alice"]
    r = alice.get(f"/v1/searches/{SID}/logs/search9/cpu")
    assert r.status_code == 404 and "profile, space, predictor" in r.json()["detail"]
    r = alice.get(f"/v1/searches/{SID}/logs/profile/gpu")
    assert r.status_code == 404 and "units: cpu, dsp-855" in r.json()["detail"]
    r = alice.get(f"/v1/searches/{SID}/logs/stage1/cpu")
    assert r.status_code == 404 and "units: ALL" in r.json()["detail"]
    r = alice.get(f"/v1/searches/{SID}/logs/space/ALL")
    assert r.status_code == 404 and "runs no job" in r.json()["detail"]
    for path, loc in (("logs/Bad!/cpu", ["path", "step"]), ("logs/profile/c%20u", ["path", "unit"]),
                      ("logs/profile/cpu?lines=0", ["query", "lines"]),
                      ("logs/profile/cpu?lines=2001", ["query", "lines"])):
        r = alice.get(f"/v1/searches/{SID}/{path}")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, path
    # the search ran inline: its units have no job output, but their state
    r = alice.get(f"/v1/searches/{SID}/logs/stage1/ALL").json()
    assert r["state"] == "succeeded" and r["lines"] == [] and r["exit_code"] is None


def test_a_just_submitted_search_has_empty_insights_and_listing_numbers(users, service_env) -> None:  # type: ignore[no-untyped-def]
    alice = users["alice"]
    spec = tiny_spec_dict(name="fresh", devices=[{"name": "cpu", "budget_fraction": 0.5},
                                                 {"name": "cpu-ort", "budget_fraction": 0.5}])
    sid = alice.post("/v1/searches", json=spec).json()["search_id"]
    body = alice.get(f"/v1/searches/{sid}/insights").json()
    InsightsPublic.model_validate(body)
    assert body["state"] == "queued"
    assert {k: body[k] for k in ("supernets", "evolution", "space", "tables", "predictors",
                                 "correlation", "winners")} == {
        "supernets": {}, "evolution": {}, "space": None, "tables": {}, "predictors": {},
        "correlation": None, "winners": {}}
    log = alice.get(f"/v1/searches/{sid}/logs/profile/cpu-ort", params={"lines": 5}).json()
    assert log == {"step": "profile", "unit": "cpu-ort", "job": f"{sid}-profile-cpu-ort",
                   "state": "pending", "attempt": None, "lines": [], "updated": None,
                   "exit_code": None, "log_state": None, "dropped": 0}

    listing = {s["search_id"]: s for s in alice.get("/v1/searches").json()["data"]}
    assert listing[sid]["progress"] == {"done": 0, "total": 7}
    assert listing[sid]["results"] == {d: {"top1": None, "latency_ms": None, "budget_ms": None}
                                       for d in ("cpu", "cpu-ort")}
    done = listing[SID]
    view = alice.get(f"/v1/searches/{SID}").json()["devices"]
    assert done["progress"] == {"done": 7, "total": 7}
    assert done["results"]["cpu"] == {"top1": view["cpu"]["top1"],
                                      "latency_ms": view["cpu"]["measured_latency_ms"],
                                      "budget_ms": view["cpu"]["budget_ms"]}
    # a table device measures nothing: its latency is the predicted one
    assert done["results"]["dsp-855"]["latency_ms"] == view["dsp-855"]["predicted_latency_ms"]
    assert SID not in {s["search_id"] for s in users["bob"].get("/v1/searches").json()["data"]}


def test_a_real_jobs_output_tail_is_served_while_and_after_it_runs(users, service_env) -> None:  # type: ignore[no-untyped-def]
    """The process executor runs the profile job of a fresh search as a real process; its
    output tail lands in the store (progress task lines included) and the route serves it."""
    store, alice = service_env["store"], users["alice"]
    spec = SearchSpec.model_validate(tiny_spec_dict(name="logs"))
    sid = alice.post("/v1/searches", json=spec.model_dump(mode="json")).json()["search_id"]
    job = JobSpec(search_id=sid, step="profile", store_url=store.url, device="cpu")
    run_step("profile", spec, sid, store, ProcessExecutor(echo=False, heartbeat_s=0.5))
    doc = store.get_json(unit_log_key(sid, job.name))
    assert doc["state"] == "succeeded" and doc["exit_code"] == 0 and doc["job"] == job.name
    r = alice.get(f"/v1/searches/{sid}/logs/profile/cpu").json()
    assert r["state"] == "succeeded" and r["exit_code"] == 0 and r["updated"] >= doc["started"]
    assert any(line.startswith("» profile cpu: started") for line in r["lines"])
    assert any(line.startswith("» profile cpu: ended") for line in r["lines"])
    assert r["lines"] == doc["lines"][-200:]
    assert alice.get(f"/v1/searches/{sid}/logs/profile/cpu?lines=1").json()["lines"] == \
        doc["lines"][-1:]
    # the log is a record, not an artifact
    keys = [a["key"] for a in alice.get(f"/v1/searches/{sid}/artifacts").json()["data"]]
    assert keys and not any(k.startswith("logs/") for k in keys)


def test_unit_log_keeps_a_bounded_tail_and_never_fails_the_job(store) -> None:  # type: ignore[no-untyped-def]
    ul = UnitLog(store, "s-1", "s-1-profile-cpu", max_lines=3)
    for i in range(5):
        ul.line(f"line {i}\n")
    ul.line("x" * (MAX_LINE_CHARS + 10))
    assert ul.write("running")
    doc = store.get_json(unit_log_key("s-1", "s-1-profile-cpu"))
    assert doc["lines"][:2] == ["line 3", "line 4"] and doc["dropped"] == 3
    assert doc["lines"][2].endswith("(10 more characters)")

    class Broken(LocalStore):
        def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
            raise OSError("disk gone")

    assert not UnitLog(Broken(store.root), "s-1", "j").write("running")  # logged, not raised
    assert not UnitLog(lambda: (_ for _ in ()).throw(ValueError("no keys")), "s-1", "j").write(
        "running")
    store.put_json(purged_key("s-1"), {"by": "test"})  # purged: nothing more is written
    ul.line("after the purge")
    assert not ul.write("succeeded", 0)
    assert store.get_json(unit_log_key("s-1", "s-1-profile-cpu"))["state"] == "running"
    with pytest.raises(SearchPurged):
        guarded(store, "s-1").put_json(unit_log_key("s-1", "x"), {})

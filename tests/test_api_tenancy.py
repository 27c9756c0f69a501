"""Tenant isolation: user B cannot see, use, change or infer user A's searches, artifacts,
imported tables or dataset sources (404 exactly like something that does not exist; 422 naming
only B's own allowed sources); an admin can. The API in process over a real redis-server and a
local store; the job side (which table a search reads, which files a loader opens) through the
library."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hurricane.settings import get_settings
from tests.conftest import tiny_spec_dict

OPS = ["SEP_3", "MB_3_1", "MB_5_3_SE", "Choice_3", "ChoiceX"]


def table(scale: float) -> str:
    rows = ["layer,op,median_ms,iqr_ms", f"fixed,stem+head,{scale},"]
    rows += [f"{i},{op},{scale * (i + 1) + j * 0.01:.3f}," for i in range(5)
             for j, op in enumerate(OPS)]
    return "\n".join(rows)


@pytest.fixture
def clients(service_env) -> Iterator[dict[str, TestClient]]:  # type: ignore[no-untyped-def]
    from hurricane.api.app import create_app

    app = create_app()
    out = {u: TestClient(app, headers={"Authorization": f"Bearer {t}"})
           for u, t in service_env["tokens"].items()}
    yield out
    for c in out.values():
        c.close()


def same_but_for(a: Any, b: Any, x: str, y: str) -> bool:
    """Two answers that differ only where one names ``x`` and the other ``y``."""
    return json.dumps(a).replace(x, "ID") == json.dumps(b).replace(y, "ID")


def stored(store: Any, prefix: str) -> dict[str, bytes]:
    return {k: store.get_bytes(k) for k in store.list(prefix)}


def test_searches_and_artifacts_are_invisible_to_other_users(clients, service_env) -> None:  # type: ignore[no-untyped-def]
    alice, bob, root = clients["alice"], clients["bob"], clients["root"]
    store = service_env["store"]
    sid = alice.post("/v1/searches", json=tiny_spec_dict(name="secret")).json()["search_id"]
    store.put_bytes(f"searches/{sid}/retrain/cpu/final.pt", b"weights of alice")
    store.put_json(f"searches/{sid}/dataset.json", {"source": "/data/users/alice/set"})
    ghost = sid[:-8] + "0" * 8  # the same shape, never created
    before = stored(store, f"searches/{sid}")
    for method, path in [("GET", "/v1/searches/{}"), ("GET", "/v1/searches/{}/artifacts"),
                         ("GET", "/v1/searches/{}/artifacts?device=cpu"),
                         ("GET", "/v1/searches/{}/artifacts/retrain/cpu/final.pt"),
                         ("GET", "/v1/searches/{}/artifacts/dataset.json"),
                         ("GET", "/v1/searches/{}/report"), ("GET", "/v1/searches/{}/events"),
                         ("POST", "/v1/searches/{}/resume"), ("DELETE", "/v1/searches/{}"),
                         ("DELETE", "/v1/searches/{}?purge=true")]:
        theirs = bob.request(method, path.format(sid), follow_redirects=False)
        nobodys = bob.request(method, path.format(ghost), follow_redirects=False)
        assert theirs.status_code == nobodys.status_code == 404, (path, theirs.text)
        assert same_but_for(theirs.json(), nobodys.json(), sid, ghost), (theirs.text, nobodys.text)
    # a traversal out of bob's own search does not reach it either
    own = bob.post("/v1/searches", json=tiny_spec_dict(name="mine")).json()["search_id"]
    for path in (f"/v1/searches/{own}/artifacts/../{sid}/spec.json",
                 f"/v1/searches/{own}/artifacts/%2e%2e/{sid}/spec.json",
                 f"/v1/searches/{own}/artifacts?prefix=../{sid}"):
        r = bob.get(path, follow_redirects=False)
        assert r.status_code in (404, 422) and b"alice" not in r.content, (path, r.text)
    listed = bob.get("/v1/searches").json()
    assert [s["search_id"] for s in listed["data"]] == [own]
    # listing another user's searches is refused alike whether that user exists or not
    a, b = bob.get("/v1/searches?owner=alice"), bob.get("/v1/searches?owner=nobody")
    assert a.status_code == b.status_code == 403 and a.json() == b.json()
    assert stored(store, f"searches/{sid}") == before  # nothing of alice's changed
    assert alice.get(f"/v1/searches/{sid}").json()["state"] == "queued"
    # alice's own download link works for alice only as a capability: bob cannot forge one
    url = alice.get(f"/v1/searches/{sid}/artifacts").json()["data"]
    link = next(a["url"] for a in url if a["key"] == "retrain/cpu/final.pt")
    path = link.removeprefix("http://testserver")
    assert alice.get(path).content == b"weights of alice"
    forged = path.replace("retrain/cpu/final.pt", "dataset.json")
    assert bob.get(forged).status_code == 403
    # an admin sees, reads and cancels it
    assert root.get(f"/v1/searches/{sid}").json()["owner"] == "alice"
    keys = {a["key"] for a in root.get(f"/v1/searches/{sid}/artifacts").json()["data"]}
    assert {"retrain/cpu/final.pt", "dataset.json"} <= keys
    assert root.get(f"/v1/searches/{sid}/artifacts/dataset.json",
                    follow_redirects=False).status_code == 307
    assert sid in {s["search_id"] for s in root.get("/v1/searches?owner=alice").json()["data"]}
    assert root.delete(f"/v1/searches/{sid}").json()["state"] == "cancelled"


def test_imported_tables_belong_to_their_owner_unless_an_admin_shares_them(clients, service_env) -> None:  # type: ignore[no-untyped-def]
    from hurricane.runs.steps.measure import imported_table

    alice, bob, root = clients["alice"], clients["bob"], clients["root"]
    store = service_env["store"]
    csv = {"Content-Type": "text/csv"}
    mine = alice.put("/v1/devices/edge-tpu/table", content=table(1.0), headers=csv)
    assert mine.status_code == 201 and mine.json()["owner"] == "alice"
    # bob: not listed, not readable, not deletable, not usable, and not told it exists
    assert "edge-tpu" not in {d["name"] for d in bob.get("/v1/devices").json()}
    for path in ("/v1/devices/{}/table", "/v1/devices/{}/table?owner=alice"):
        theirs, nobodys = bob.get(path.format("edge-tpu")), bob.get(path.format("edge-gpu"))
        assert theirs.status_code == nobodys.status_code == 404
        assert same_but_for(theirs.json(), nobodys.json(), "edge-tpu", "edge-gpu")
    assert bob.delete("/v1/devices/edge-tpu/table").status_code == 404
    assert bob.put("/v1/devices/edge-tpu/table?shared=true", content=table(9.0),
                   headers=csv).status_code == 403
    assert bob.post("/v1/devices/edge-tpu/table/share?owner=alice").status_code == 403

    def use(c: TestClient, name: str) -> Any:
        return c.post("/v1/searches", json=tiny_spec_dict(devices=[
            {"name": "cpu", "budget_fraction": 0.5},
            {"name": name, "table": "imported", "budget_fraction": 0.5}]))

    theirs, nobodys = use(bob, "edge-tpu"), use(bob, "edge-gpu")
    assert theirs.status_code == nobodys.status_code == 422
    assert same_but_for(theirs.json(), nobodys.json(), "edge-tpu", "edge-gpu")
    assert theirs.json()["detail"][0]["loc"] == ["body", "devices", 1, "table"]
    # bob's own table of that name is his, and his searches read it; alice's read hers
    assert bob.put("/v1/devices/edge-tpu/table", content=table(5.0), headers=csv).json()["owner"] == "bob"
    a_sid, b_sid = use(alice, "edge-tpu").json()["search_id"], use(bob, "edge-tpu").json()["search_id"]
    assert store.get_json(f"searches/{a_sid}/inputs/tables/edge-tpu.json")["fixed_ms"] == 1.0
    assert store.get_json(f"searches/{b_sid}/inputs/tables/edge-tpu.json")["fixed_ms"] == 5.0
    # the job side: without the search's copy, a search reads its owner's table, never another's
    store.delete(f"searches/{b_sid}/inputs/tables/edge-tpu.json")
    assert imported_table(store, b_sid, "edge-tpu").fixed_ms == 5.0
    assert bob.delete("/v1/devices/edge-tpu/table").status_code == 204
    with pytest.raises(ValueError, match="no table was imported"):
        imported_table(store, b_sid, "edge-tpu")  # alice's is there, but it is not bob's
    # an admin reads alice's and shares it: now bob's searches may use it
    assert root.get("/v1/devices/edge-tpu/table?owner=alice").json()["table"]["fixed_ms"] == 1.0
    shared = root.post("/v1/devices/edge-tpu/table/share?owner=alice")
    assert shared.status_code == 201 and shared.json()["shared"]
    assert {d["name"]: d["table_scope"] for d in bob.get("/v1/devices").json()}["edge-tpu"] == "shared"
    assert imported_table(store, b_sid, "edge-tpu").fixed_ms == 1.0
    assert use(bob, "edge-tpu").status_code == 201
    assert bob.delete("/v1/devices/edge-tpu/table?shared=true").status_code == 403
    assert root.delete("/v1/devices/edge-tpu/table?shared=true").status_code == 204
    assert use(bob, "edge-tpu").status_code == 422


def test_dataset_sources_stay_within_each_users_roots(clients, service_env, tmp_path,  # type: ignore[no-untyped-def]
                                                      monkeypatch) -> None:
    alice, bob, root = clients["alice"], clients["bob"], clients["root"]
    data = tmp_path / "data"
    (data / "users" / "alice" / "photos" / "train").mkdir(parents=True)

    def post(c: TestClient, path: str, name: str = "imagefolder") -> Any:
        return c.post("/v1/searches", json=tiny_spec_dict(
            dataset={"name": name, "path": path}, backbone={"num_classes": 10}))

    there, nowhere = f"{data}/users/alice/photos", f"{data}/users/alice/nothing"
    assert post(alice, there).status_code == 201
    theirs, nobodys = post(bob, there), post(bob, nowhere)
    assert theirs.status_code == nobodys.status_code == 422  # existence is not disclosed
    assert same_but_for(theirs.json(), nobodys.json(), there, nowhere)
    msg = theirs.json()["detail"][0]
    assert msg["loc"] == ["body", "dataset", "path"]
    assert f"{data}/users/bob" in msg["msg"] and f"{data}/shared" in msg["msg"]
    assert "users/alice" not in msg["msg"].replace(there, "")  # bob learns only his own roots
    assert post(bob, f"{data}/shared/cifar", "cifar10").status_code == 201
    assert post(root, there).status_code == 201  # an admin may name any user's data
    # per-user buckets for packed sets
    monkeypatch.setenv("HURRICANE_DATA_BUCKETS", "team/{user}")
    get_settings.cache_clear()
    r = post(bob, "s3://team/alice/set", "packed")
    assert r.status_code == 422 and "s3://team/bob" in r.text and "s3://team/alice" not in \
        r.text.replace("s3://team/alice/set", "")


def test_a_job_reads_no_data_outside_the_roots(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Whatever a stored spec says: CIFAR's pickles outside the roots are never opened (a
    crafted pickle would run code), nor a symlink out of a user's directory."""
    from hurricane.data.datasets import DatasetError, load_data
    from hurricane.spec import DatasetSpec

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (outside / name).write_bytes(pickle.dumps(Evil()))
    roots = tmp_path / "data"
    (roots / "users" / "bob").mkdir(parents=True)
    (roots / "users" / "bob" / "link").symlink_to(outside)
    monkeypatch.setenv("HURRICANE_DATA_ROOTS", f"{roots}/users/{{user}}")
    get_settings.cache_clear()
    try:
        for path in (outside, roots / "users" / "bob" / "link"):
            with pytest.raises(DatasetError, match="outside the data roots"):
                load_data(DatasetSpec(name="cifar10", path=str(path)), input_size=32, seed=0)
        assert not marker.exists()
    finally:
        get_settings.cache_clear()


def test_an_admin_submits_on_behalf_of_an_owner_and_a_user_cannot(clients) -> None:  # type: ignore[no-untyped-def]
    """POST ?owner= (the HurricaneSearch operator submits for the resource's namespace): the
    search is the owner's (listed and readable by them, not by others); a user naming another
    owner is refused (403) and nothing is recorded."""
    alice, bob, root = clients["alice"], clients["bob"], clients["root"]
    r = root.post("/v1/searches", params={"owner": "alice"}, json=tiny_spec_dict(name="for-alice"))
    assert r.status_code == 201, r.text
    sid = r.json()["search_id"]
    assert alice.get(f"/v1/searches/{sid}").json()["owner"] == "alice"
    assert [s["search_id"] for s in alice.get("/v1/searches").json()["data"]] == [sid]
    assert bob.get(f"/v1/searches/{sid}").status_code == 404
    assert root.get("/v1/searches", params={"owner": "root"}).json()["data"] == []
    r = bob.post("/v1/searches", params={"owner": "alice"}, json=tiny_spec_dict(name="sneaky"))
    assert r.status_code == 403 and "only an admin" in r.json()["detail"]
    assert [s["search_id"] for s in alice.get("/v1/searches").json()["data"]] == [sid]
    assert bob.get("/v1/searches").json()["data"] == []
    r = root.post("/v1/searches", params={"owner": "Not An Owner"}, json=tiny_spec_dict())
    assert r.status_code == 422 and "owner" in r.text
    # a user naming themselves is just a submission
    r = bob.post("/v1/searches", params={"owner": "bob"}, json=tiny_spec_dict(name="own"))
    assert r.status_code == 201 and bob.get(
        f"/v1/searches/{r.json()['search_id']}").json()["owner"] == "bob"

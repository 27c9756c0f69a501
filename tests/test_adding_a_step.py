"""docs/adding-a-step.md, as a test: a step declared as one object (here in the test, with a
tiny job function) is planned, run by the inline executor, read by the results view (the
report and the API) and rendered into Kubernetes objects, without another file knowing it."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes_validate
import pytest

from hurricane.operator.manifests import Cluster, manifests
from hurricane.runs.contract import STEPS, Artifact, Step, every_device
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import planned_jobs, run_step, submit
from hurricane.runs.records import result_key
from hurricane.runs.report import build_report, render_markdown
from hurricane.runs.steps.keys import devices_of
from hurricane.runs.strategies import STRATEGIES, Strategy
from hurricane.settings import Settings
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, LocalStore, search_key
from tests.conftest import tiny_spec_dict


def pick_key(search_id: str, device: str) -> str:
    return search_key(search_id, "toy", device, "pick.json")


def toy_job(spec: SearchSpec, search_id: str, store: ArtifactStore, device: str | None) -> None:
    """The step's heavy work for one device: here, an architecture picked by name."""
    for name in devices_of(spec, device):
        store.put_json(pick_key(search_id, name), {"arch": f"toy-{name}", "accuracy": 0.5,
                                                   "latency_ms": 1.0, "budget_ms": 2.0})


def toy_result(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    picks = {d.name: store.get_json(pick_key(search_id, d.name)) for d in spec.devices}
    return {"devices": {n: {"winner": p["arch"], "supernet_accuracy": p["accuracy"],
                            "latency_ms": p["latency_ms"], "budget_ms": p["budget_ms"]}
                        for n, p in picks.items()}}


TOY = Step("toy", toy_result, units=every_device,
           done=lambda spec, sid, store, u: store.exists(pick_key(sid, u)), run=toy_job,
           distributed=True, reads_images=True, winner=True,
           artifacts=(Artifact("pick.json", "toy/{device}/pick.json"),))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> SearchSpec:
    """The toy step registered, and a strategy that runs it between the space and retraining."""
    monkeypatch.setitem(STEPS._entries, "toy", TOY)
    monkeypatch.setitem(STRATEGIES._entries, "toy", Strategy(
        "toy", ("space", "toy", "retrain", "export"), "a toy strategy"))
    return SearchSpec.model_validate(tiny_spec_dict(strategy="toy",
                                                    training={"processes_per_node": 2}))


def test_a_new_step_is_planned_run_reported_and_rendered(toy: SearchSpec,
                                                         store: LocalStore) -> None:
    sid = submit(toy, store, "toy-1")
    # planned: one job per device, with the spec's torchrun world (distributed)
    jobs = {(s, u): j for s, u, j in planned_jobs(toy, sid, store)}
    job = jobs[("toy", "cpu")]
    assert (job.nprocs, job.node_label, job.name) == (2, None, f"{sid}-toy-cpu")
    # run: the inline executor calls its job function; its result is stored once
    out = run_step("toy", toy, sid, store, InlineExecutor())
    assert out["devices"]["cpu"]["winner"] == "toy-cpu"
    assert store.exists(pick_key(sid, "cpu")) and store.exists(result_key(sid, "toy"))
    # reported: the report takes the device's architecture and artifacts from its traits
    for step, res in {"space": {"size": 4}, "retrain": {"devices": {"cpu": {"test_top1": 0.9}}},
                      "export": {"devices": {"cpu": {
                          "predicted_latency_ms": 1.5, "measured_latency_ms": None,
                          "table_latency_ms": 1.4, "onnx_max_abs_diff": 0.0}}}}.items():
        store.put_json(result_key(sid, step), {**res, "_meta": {"seconds": 0.0}})
    report = build_report(toy, sid, store)
    cpu = report["devices"]["cpu"]
    assert cpu["arch"] == "toy-cpu" and cpu["stages"] == {"toy": "toy-cpu"}
    assert cpu["artifacts"]["pick.json"] == store.uri(search_key(sid, "toy", "cpu", "pick.json"))
    assert set(cpu["artifacts"]) == {"pick.json", "final.pt", "arch.json", "model.onnx"}
    assert "`toy-cpu`" in render_markdown(report)
    # the API's view of the search: its winner and what `hurricane fetch` downloads
    from hurricane.api.service import fetched, winners

    meta = {"plan": list(STRATEGIES.get("toy").plan(toy))}
    assert winners(store, sid, meta)["cpu"]["step"] == "toy"
    assert fetched(meta, "cpu")[0] == "toy/cpu/pick.json"
    # rendered: a distributed step that reads images is a torchrun Job with the data volumes
    cluster = Cluster.from_settings(Settings(k8s_data={"pvc": "imagenet"}))  # type: ignore[arg-type]
    owner = {"metadata": {"name": "hurricane-search-toy-1", "uid": "0f6a5c3e-1d2b-4c5d-9e8f-0a1b2c3d4e5f"}}
    objs = manifests(dataclasses.replace(job, store_url="s3://bucket/runs"), cluster, owner)
    assert [o["kind"] for o in objs] == ["Service", "Job"]
    for o in objs:
        kubernetes_validate.validate(o, "1.32", strict=True)
    pod = objs[-1]["spec"]["template"]["spec"]
    assert "torch.distributed.run" in pod["containers"][0]["command"]
    assert {v["name"] for v in pod["volumes"]} >= {"data", "data-cache"}


def test_a_step_that_reads_no_images_gets_no_data_volume(toy: SearchSpec,
                                                         store: LocalStore) -> None:
    STEPS._entries["toy"] = dataclasses.replace(TOY, distributed=False, reads_images=False)
    job = next(j for s, _, j in planned_jobs(toy, "toy-2", store) if s == "toy")
    cluster = Cluster.from_settings(Settings(k8s_data={"pvc": "imagenet"}))  # type: ignore[arg-type]
    (obj,) = manifests(job, cluster, {"metadata": {"name": "o", "uid": "u"}})
    assert job.nprocs == 1 and "volumes" not in obj["spec"]["template"]["spec"]

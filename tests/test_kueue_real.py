"""Kueue on the real control plane (tests/realcluster.py): Kueue 0.17's manager built from its
Go module, its CRDs, conversion and admission webhooks served on loopback. A ClusterQueue with
a CPU quota and two WorkloadPriorityClasses; the executor's training Job waits for quota
(queued, with the reason from its real Workload), is admitted, is evicted by a higher-priority
workload (Kueue suspends the Job, the Job controller deletes its pods, the training
checkpoints on SIGTERM), is admitted again, and resumes from its checkpoint to the end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from hurricane import progress
from hurricane.operator.executor import KubernetesExecutor
from hurricane.operator.manifests import job_name
from hurricane.runs.contract import WHOLE, JobSpec
from hurricane.runs.pipeline import run_unit
from hurricane.runs.records import read_unit_state, summarize
from tests.realcluster import (  # noqa: F401
    Namespace,
    RealCluster,
    explained,
    make_namespace,
    pods_of,
    real_cluster,
)
from tests.servers import in_thread, wait_for
from tests.test_kube_real import (  # noqa: F401  (fixtures)
    EVENT_S,
    HOLD,
    gated,
    prepared,
    search,
)
from tests.test_shared_cluster import Recorder

pytestmark = pytest.mark.cluster
KUEUE = "kueue.x-k8s.io"


def blocker(name: str, ns: str, priority: str, cpu: str) -> dict[str, Any]:
    """A plain Job in the queue asking for ``cpu``: it holds the quota while it runs."""
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {f"{KUEUE}/queue-name": "lq",
                                    f"{KUEUE}/priority-class": priority}},
            "spec": {"suspend": True, "backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "nodeSelector": {"hurricane.io/pool": "train"},
                "containers": [{"name": "c", "image": "none",
                                "command": ["python", "-c", "import time; time.sleep(900)"],
                                "resources": {"requests": {"cpu": cpu}}}]}}}}


@pytest.fixture
def queue(real_cluster: RealCluster) -> Namespace:  # noqa: F811
    """A namespace whose LocalQueue feeds a ClusterQueue of 2 CPUs that preempts lower
    priorities, with the executor under Kueue (priority class nas-low)."""
    ns = make_namespace(real_cluster, {}, k8s_kueue={"queue": "lq", "priority_class": "nas-low"},
                        k8s_training={"node_selector": {"hurricane.io/pool": "train"},
                                      "resources": {"requests": {"cpu": "1"}}})
    custom = k8s.CustomObjectsApi(real_cluster.admin)
    for name, value in (("nas-low", 10), ("nas-high", 1000)):
        _create(lambda n=name, v=value: custom.create_cluster_custom_object(
            KUEUE, "v1beta2", "workloadpriorityclasses",
            {"apiVersion": f"{KUEUE}/v1beta2", "kind": "WorkloadPriorityClass",
             "metadata": {"name": n}, "value": v}))
    _create(lambda: custom.create_cluster_custom_object(
        KUEUE, "v1beta2", "resourceflavors",
        {"apiVersion": f"{KUEUE}/v1beta2", "kind": "ResourceFlavor",
         "metadata": {"name": "default-flavor"}}))
    cq = f"cq-{ns.name}"
    custom.create_cluster_custom_object(KUEUE, "v1beta2", "clusterqueues", {
        "apiVersion": f"{KUEUE}/v1beta2", "kind": "ClusterQueue", "metadata": {"name": cq},
        "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}},
                 "preemption": {"withinClusterQueue": "LowerPriority"},
                 "resourceGroups": [{"coveredResources": ["cpu"], "flavors": [{
                     "name": "default-flavor", "resources": [{"name": "cpu",
                                                              "nominalQuota": "2"}]}]}]}})
    custom.create_namespaced_custom_object(KUEUE, "v1beta2", ns.name, "localqueues", {
        "apiVersion": f"{KUEUE}/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": "lq", "namespace": ns.name}, "spec": {"clusterQueue": cq}})
    return ns


def _create(call: Any) -> None:
    try:
        call()
    except k8s.exceptions.ApiException as err:
        if err.status != 409:
            raise


def test_kueue_queues_admits_preempts_and_readmits_a_training_that_resumes(
        queue, search, gated) -> None:  # noqa: F811
    with explained(queue.cluster, queue.name):
        _evicted_and_resumed(queue, search, gated)


def _evicted_and_resumed(queue: Namespace, ready: Any, gate: Path) -> None:
    store, sid, spec = ready
    rc = queue.cluster
    batch = rc.batch
    batch.create_namespaced_job(queue.name, blocker("first", queue.name, "nas-high", "2"))
    wait_for(lambda: any(p.status.phase == "Running" for p in pods_of(rc, queue.name, "first")),
             EVENT_S, "the quota holder running")

    ex = KubernetesExecutor(settings=queue.settings, api_client=queue.client)
    rec = Recorder()

    def run() -> bool:
        with progress.use_reporter(rec):
            return run_unit("stage1", spec, sid, store, ex, WHOLE)

    t, out = in_thread(run)
    name = job_name(JobSpec(sid, "stage1", store.url, nodes=2))

    def unit() -> dict[str, Any]:
        return read_unit_state(store, sid, "stage1", WHOLE) or {}

    # queued: Kueue's own words from the real Workload (no quota left)
    wait_for(lambda: "waiting for quota" in (unit().get("reason") or ""), EVENT_S,
             "the unit queued for quota")
    reason = unit()["reason"]
    assert "insufficient unused quota for cpu" in reason, reason
    assert summarize(store, sid)["steps"]["stage1"]["state"] == "queued"
    assert not pods_of(rc, queue.name, name)  # nothing runs before admission

    batch.delete_namespaced_job("first", queue.name, propagation_policy="Background")
    reached = wait_for(lambda: list(gate.glob("reached-*")), EVENT_S, "the training at the gate")
    assert [int(p.read_text()) for p in reached] == [HOLD]  # one pod (the spec's one node)
    wait_for(lambda: unit().get("state") == "running", EVENT_S, "the unit running")

    # a higher-priority workload takes the quota: Kueue preempts the training
    batch.create_namespaced_job(queue.name, blocker("urgent", queue.name, "nas-high", "2"))
    wait_for(lambda: "evicted by Kueue (Preempted)" in (unit().get("reason") or ""), EVENT_S,
             "the eviction's reason")
    stopped = wait_for(lambda: next((int(m) for x in rec.messages
                                     for m in re.findall(r"stopped after step (\d+)", x)), None),
                       EVENT_S, "the training's checkpoint on SIGTERM")
    assert stopped == HOLD + 1
    wait_for(lambda: not [p for p in pods_of(rc, queue.name, name)
                          if p.status.phase not in ("Succeeded", "Failed")], EVENT_S,
             "the evicted pods ended")
    job = batch.read_namespaced_job(name, queue.name)
    assert job.spec.suspend is True  # Kueue suspended the Job
    assert summarize(store, sid)["steps"]["stage1"]["state"] == "queued"

    batch.delete_namespaced_job("urgent", queue.name, propagation_policy="Background")
    t.join(EVENT_S * 2)
    assert not t.is_alive() and "error" not in out, out.get("error")
    assert out["result"] is True
    train = store.get_json(f"searches/{sid}/stage1/train.json")
    assert train["resumed_from"] == stopped and train["iterations"] == spec.supernet.iterations
    final = unit()
    assert final["state"] == "succeeded" and final["evictions"] == 1 and final["queued_s"] > 0
    wl = k8s.CustomObjectsApi(rc.admin).list_namespaced_custom_object(
        KUEUE, "v1beta2", queue.name, "workloads")["items"]
    ours = [w for w in wl if w["metadata"]["ownerReferences"][0]["name"] == name]
    assert len(ours) == 1
    conds = {c["type"]: c for c in ours[0]["status"]["conditions"]}
    assert conds["Finished"]["status"] == "True"
    assert ours[0]["status"].get("requeueState") is not None or "Evicted" in conds


def test_kueue_crds_are_served_with_their_webhooks(real_cluster) -> None:  # noqa: F811
    """The CRDs came from the pinned release; the admission webhook (served by the manager on
    loopback) refuses an invalid ClusterQueue, so the API server reaches it."""
    custom = k8s.CustomObjectsApi(real_cluster.admin)
    with pytest.raises(k8s.exceptions.ApiException) as info:
        custom.create_cluster_custom_object(KUEUE, "v1beta2", "clusterqueues", {
            "apiVersion": f"{KUEUE}/v1beta2", "kind": "ClusterQueue",
            "metadata": {"name": "bad"},
            "spec": {"resourceGroups": [{"coveredResources": ["cpu"], "flavors": [{
                "name": "f", "resources": [{"name": "memory", "nominalQuota": "1"}]}]}]}})
    # controller-runtime's webhooks deny with 403; the message names the webhook
    assert info.value.status == 403, info.value
    msg = json.loads(info.value.body)["message"]
    assert msg.startswith('admission webhook "vclusterqueue.kb.io" denied the request'), msg
    assert "must match the name in coveredResources" in msg
    assert Path(real_cluster.cp.dir / "kueue.yaml").is_file()

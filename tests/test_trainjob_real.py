"""Training through Kubeflow Trainer v2 on the real control plane (tests/realcluster.py): JobSet
v0.11.1 and Trainer v2.2.0 built from their pinned modules, their webhooks on loopback, the
``torch-distributed`` ClusterTrainingRuntime of the release. The executor with
``training_backend: trainjob`` creates a TrainJob under the worker's Role; Trainer makes a
JobSet, JobSet the Jobs, the scheduler places the pods on the training nodes, the node agent
runs torchrun with the PET_* variables Trainer's torch plugin sets; the stage trains to the
end. Cancelled, the TrainJob goes and its JobSet, Jobs and pods are collected."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from hurricane.operator.manifests import trainjob_name
from hurricane.runs.contract import JobCancelled, JobSpec
from tests.realcluster import Namespace, RealCluster, explained, make_namespace, real_cluster  # noqa: F401
from tests.servers import in_thread, wait_for
from tests.test_kube_real import EVENT_S, executor, gated, prepared, search  # noqa: F401

pytestmark = pytest.mark.cluster
TRAINER = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")


@pytest.fixture(scope="module")
def operators(real_cluster: RealCluster) -> RealCluster:  # noqa: F811
    real_cluster.cp.training_up()
    return real_cluster


@pytest.fixture
def tns(operators: RealCluster) -> Namespace:
    return make_namespace(operators, {"HURRICANE_LOG_LEVEL": "INFO"}, k8s_backoff_limit=1,
                          k8s_training_backend="trainjob",
                          k8s_trainjob={"name": "torch-distributed",
                                        "kind": "ClusterTrainingRuntime"})


def _custom(rc: RealCluster, ns: str, kind: tuple[str, str, str]) -> list[dict[str, Any]]:
    return list(k8s.CustomObjectsApi(rc.admin).list_namespaced_custom_object(
        *kind[:2], ns, kind[2])["items"])


def _pods(rc: RealCluster, ns: str) -> list[Any]:
    return list(rc.core.list_namespaced_pod(ns).items)


def test_a_trainjob_trains_a_stage_through_trainer_and_jobset(tns, search) -> None:  # noqa: F811
    rc, ns = tns.cluster, tns.name
    store, sid, spec = search
    job = JobSpec(sid, "stage1", store.url, nodes=2, nprocs=1)
    with explained(rc, ns):
        executor(tns).run(job)
    name = trainjob_name(job)
    (tj,) = _custom(rc, ns, TRAINER)
    assert tj["metadata"]["name"] == name
    conds = {c["type"]: c["status"] for c in tj["status"]["conditions"]}
    assert conds.get("Complete") == "True", tj["status"]
    (js,) = _custom(rc, ns, JOBSET)  # Trainer's JobSet, owned by the TrainJob
    assert js["metadata"]["ownerReferences"][0]["uid"] == tj["metadata"]["uid"]
    pods = [p for p in _pods(rc, ns) if p.metadata.labels.get("jobset.sigs.k8s.io/jobset-name")
            == name]
    assert len(pods) == 2 and all(p.status.phase == "Succeeded" for p in pods)
    assert {p.spec.node_name for p in pods} <= {"train-0", "train-1"}
    envs = {e.name: e.value for e in pods[0].spec.containers[0].env or [] if e.value}
    assert envs.get("PET_NNODES") == "2" and "PET_MASTER_ADDR" in envs  # Trainer's torch plugin
    # the two ranks trained the stage to its end and wrote its record
    train = store.get_json(f"searches/{sid}/stage1/train.json")
    assert train["iterations"] == spec.supernet.iterations, train


def test_a_cancelled_trainjob_takes_its_jobset_and_pods_with_it(tns, search, gated) -> None:  # noqa: F811
    rc, ns = tns.cluster, tns.name
    store, sid, _ = search
    stop = threading.Event()
    job = JobSpec(sid, "stage1", store.url, nodes=2, nprocs=1)
    t, out = in_thread(executor(tns, cancelled=stop.is_set).run, job)
    with explained(rc, ns):
        wait_for(lambda: len(list(Path(gated).glob("reached-*"))) == 2, EVENT_S,
                 "both torchrun ranks at the gate")
    stop.set()
    t.join(EVENT_S)
    assert isinstance(out.get("error"), JobCancelled), out
    wait_for(lambda: not _custom(rc, ns, TRAINER), EVENT_S, "the TrainJob deleted")
    wait_for(lambda: not _custom(rc, ns, JOBSET), EVENT_S, "its JobSet collected")
    wait_for(lambda: not _pods(rc, ns), EVENT_S, "its pods collected")

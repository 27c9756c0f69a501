"""The Kubernetes executor on a real control plane (tests/realcluster.py): a real
kube-apiserver (defaulting, validation, RBAC on the worker's ServiceAccount token, the Node
authorizer), the real Job controller (conditions, podFailurePolicy, backoffLimit,
activeDeadlineSeconds, Indexed completions), the garbage collector (owner references), the
real scheduler (node labels, taints, extended resources) and watch-fed pods run by the node
agent as local processes, their logs read through ``pods/log``.

Nothing here sleeps for a result: each test waits for the event it asserts (a condition, a
pod's phase, a file the pod gate writes), with bounds that only catch a hang."""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hurricane import progress
from hurricane.operator.executor import PENDING_REPORT_S, KubernetesExecutor
from hurricane.operator.manifests import job_name
from hurricane.runs.contract import JobCancelled, JobFailed, JobInvalid, JobSpec
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_step
from hurricane.runs.records import submit
from hurricane.spec import SearchSpec
from hurricane.storage.store import LocalStore
from tests.conftest import tiny_spec_dict
from tests.realcluster import (  # noqa: F401  (fixtures)
    NODES,
    Namespace,
    RealCluster,
    make_namespace,
    node_of,
    pods_of,
    real_cluster,
)
from tests.servers import in_thread, wait_for
from tests.test_shared_cluster import Recorder

pytestmark = pytest.mark.cluster
POD_GATE = Path(__file__).parent / "pod_gate"
HOLD = 3
EVENT_S = 300  # bounds on events a real process must reach: they only catch a hang


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, SearchSpec]:
    """A tiny search in a local store (the pods are local processes: they read it directly),
    profiled, its space built and its predictor fitted: ready for stage 1."""
    root = tmp_path_factory.mktemp("store")
    store = LocalStore(root)
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"recipe": "spos", "iterations": 200, "checkpoint_every": 10_000}))
    sid = submit(spec, store, "real")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    return root, sid, spec


@pytest.fixture
def search(prepared: tuple[Path, str, SearchSpec], tmp_path: Path) -> tuple[LocalStore, str,
                                                                           SearchSpec]:
    """A copy of the prepared search for one test (a training it stops leaves a checkpoint)."""
    root, sid, spec = prepared
    shutil.copytree(root, tmp_path / "store")
    return LocalStore(tmp_path / "store"), sid, spec


@pytest.fixture
def ns(real_cluster: RealCluster) -> Namespace:  # noqa: F811
    return make_namespace(real_cluster, {"HURRICANE_LOG_LEVEL": "INFO"}, k8s_backoff_limit=1)


def executor(ns: Namespace, **kw: Any) -> KubernetesExecutor:
    return KubernetesExecutor(settings=ns.settings, api_client=ns.client, **kw)


def relayed(ns: Namespace, job: JobSpec, word: str) -> tuple[threading.Thread, dict[str, Any], str]:
    """Runs ``job`` in a thread and waits until the executor relays a message holding
    ``word`` (a pending pod's reason): (thread, its outcome, that message)."""
    rec = Recorder()

    def run() -> None:
        with progress.use_reporter(rec):
            executor(ns).run(job)

    t, out = in_thread(run)
    msg = wait_for(lambda: next((m for m in rec.messages if word in m), None),
                   PENDING_REPORT_S + EVENT_S, f"a {word} message relayed")
    return t, out, str(msg)


def job_obj(ns: Namespace, name: str) -> Any:
    return ns.cluster.batch.read_namespaced_job(name, ns.name)


def conditions(job: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason or "") for c in job.status.conditions or []}


# -- the nodes -------------------------------------------------------------------------------------


def test_nodes_register_with_their_labels_taints_and_capacity_and_stay_ready(real_cluster) -> None:  # noqa: F811
    core = real_cluster.core

    def settled() -> dict[str, Any] | None:
        """The nodes once the lifecycle controller has seen them Ready: it taints a node
        `not-ready` from its creation until it observes the agent's Ready condition."""
        items = {n.metadata.name: n for n in core.list_node().items}
        return None if any(t.key.startswith("node.kubernetes.io/") for n in items.values()
                           for t in n.spec.taints or []) else items

    nodes = wait_for(settled, EVENT_S, "the node lifecycle controller sees every node Ready")
    assert set(nodes) == {n.name for n in NODES}
    dsp = nodes["dsp-0"]
    assert dsp.metadata.labels["hurricane.io/device"] == "dsp"
    assert [(t.key, t.value, t.effect) for t in dsp.spec.taints] == [
        ("hurricane.io/device", "dsp", "NoSchedule")]
    assert dsp.status.allocatable["qualcomm.com/hexagon"] == "1"
    assert dsp.status.daemon_endpoints.kubelet_endpoint.port == real_cluster.agent.logs.port
    for n in nodes.values():
        ready = next(c for c in n.status.conditions if c.type == "Ready")
        assert ready.status == "True"
    leases = k8s.CoordinationV1Api(real_cluster.admin).list_namespaced_lease("kube-node-lease")
    assert {item.metadata.name for item in leases.items} >= set(nodes)


def test_a_node_reads_only_the_secrets_of_its_own_pods(real_cluster) -> None:  # noqa: F811
    """The Node authorizer is on: a node's own identity reads a Secret only once a pod bound
    to it names that Secret."""
    core = real_cluster.core
    name = "node-authz"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(name, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    node_core = real_cluster.agent.core["cpu-0"]
    with pytest.raises(ApiException) as info:
        node_core.read_namespaced_secret("s", name)
    assert info.value.status == 403
    wait_for(lambda: any(sa.metadata.name == "default" for sa in
                         core.list_namespaced_service_account(name).items), 60)
    core.create_namespaced_pod(name, {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "cpu-0", "restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "none",
                                 "command": ["sh", "-c", 'test "$K" = v'],
                                 "env": [{"name": "K", "valueFrom": {"secretKeyRef": {
                                     "name": "s", "key": "k"}}}]}]}})
    wait_for(lambda: core.read_namespaced_pod("p", name).status.phase == "Succeeded", EVENT_S,
             "the pod that reads the Secret to succeed")
    assert node_core.read_namespaced_secret("s", name).data["k"]
    with pytest.raises(ApiException) as info:  # another node's identity still may not
        real_cluster.agent.core["train-0"].read_namespaced_secret("s", name)
    assert info.value.status == 403


# -- the executor's calls under its Role ----------------------------------------------------------


def test_the_workers_token_may_do_what_the_role_allows_and_nothing_else(ns) -> None:
    core, batch = k8s.CoreV1Api(ns.client), k8s.BatchV1Api(ns.client)
    core.list_namespaced_pod(ns.name)  # allowed (pods list)
    with pytest.raises(ApiException) as info:
        batch.read_namespaced_job("absent", ns.name)
    assert info.value.status == 404  # allowed, not found
    for call in (lambda: core.list_namespaced_secret(ns.name),
                 lambda: batch.list_namespaced_job(ns.name),  # get, not list, is granted
                 lambda: core.list_namespaced_pod("default"),  # another namespace
                 lambda: core.create_namespaced_pod(ns.name, {
                     "metadata": {"name": "x"},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}})):
        with pytest.raises(ApiException) as info:
            call()
        assert info.value.status == 403, info.value


# -- Jobs -----------------------------------------------------------------------------------------


def test_a_profile_job_runs_on_its_pools_node_completes_and_relays_progress(ns, tmp_path) -> None:
    store = LocalStore(tmp_path / "store")
    sid = submit(SearchSpec.model_validate(tiny_spec_dict()), store, "prof")
    job = JobSpec(sid, "profile", store.url, device="cpu", node_label="cpu")
    rec = Recorder()
    with progress.use_reporter(rec):
        executor(ns).run(job)
    name = job_name(job)
    j = job_obj(ns, name)
    assert conditions(j)["Complete"][0] == "True" and j.status.succeeded == 1
    owner = j.metadata.owner_references[0]
    assert (owner.kind, owner.name) == ("ConfigMap", f"hurricane-search-{sid}")
    pods = pods_of(ns.cluster, ns.name, name)
    assert [node_of(p) for p in pods] == ["cpu-0"]  # the only node labelled device=cpu
    assert pods[0].status.phase == "Succeeded"
    term = pods[0].status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"
    # the pod's progress bar, read from its log through the API server (pods/log, follow)
    assert any(t[0].startswith("profile") and t[3] > 0 for t in rec.tasks), rec.tasks
    assert store.exists(f"searches/{sid}/profile/cpu/latency.json")  # the pod's work
    # a retried task adopts the finished Job instead of starting a second one
    executor(ns).run(job)
    assert len(pods_of(ns.cluster, ns.name, name)) == 1


def test_exit_65_fails_the_job_at_once_through_its_pod_failure_policy(ns, tmp_path) -> None:
    job = JobSpec("nosuch", "profile", f"file://{tmp_path / 'empty'}", device="cpu",
                  node_label="cpu")
    with pytest.raises(JobInvalid, match="refused the input") as info:
        executor(ns).run(job)
    assert "SearchNotFound" in str(info.value)  # the pod's log tail, through pods/log
    name = job_name(job)
    assert conditions(job_obj(ns, name))["Failed"] == ("True", "PodFailurePolicy")
    assert len(pods_of(ns.cluster, ns.name, name)) == 1  # not retried


def test_a_pod_waiting_for_a_missing_secret_says_why_and_starts_once_it_exists(ns, tmp_path) -> None:
    """The S3 Secret the jobs read is missing: the node cannot configure the container
    (CreateContainerConfigError) and Kubernetes waits. The executor relays the reason instead
    of waiting in silence (the scripted server never showed this); once the Secret exists the
    pod starts."""
    core = ns.cluster.core
    core.delete_namespaced_secret(ns.settings.k8s_s3_secret, ns.name)
    job = JobSpec("nosuch", "profile", f"file://{tmp_path / 'empty'}", device="cpu",
                  node_label="cpu")
    t, out, msg = relayed(ns, job, "CreateContainerConfigError")
    assert ns.settings.k8s_s3_secret in msg, msg
    events = core.list_namespaced_event(ns.name, field_selector="reason=Failed").items
    assert any(ns.settings.k8s_s3_secret in (e.message or "") for e in events)  # describe shows it
    core.create_namespaced_secret(ns.name, {"metadata": {"name": ns.settings.k8s_s3_secret},
                                            "stringData": {"HURRICANE_S3_ACCESS_KEY": "x"}})
    t.join(EVENT_S)
    assert isinstance(out.get("error"), JobInvalid)  # it ran: no such search


def test_a_failing_pod_is_retried_up_to_the_backoff_limit(ns) -> None:
    """backoffLimit 1: two pods fail (exit 1), the Job controller gives up."""
    job = JobSpec("s", "profile", "file:///dev/null/store", device="cpu", node_label="cpu")
    with pytest.raises(JobFailed, match="more often than the Job's backoffLimit") as info:
        executor(ns).run(job)
    assert not isinstance(info.value, JobInvalid)
    name = job_name(job)
    assert conditions(job_obj(ns, name))["Failed"] == ("True", "BackoffLimitExceeded")
    pods = pods_of(ns.cluster, ns.name, name)
    assert len(pods) == 2
    assert all(p.status.container_statuses[0].state.terminated.exit_code == 1 for p in pods)


def test_a_failed_job_of_an_earlier_attempt_is_replaced_on_resume(ns, tmp_path) -> None:
    """The first attempt's Job failed (its store was unusable, backoffLimit 1); a resumed
    search's task meets it on create (409), deletes it (the garbage collector takes its pods),
    waits until the API server no longer has it, and creates it again: it completes."""
    bad = JobSpec("again", "profile", "file:///dev/null/store", device="cpu", node_label="cpu")
    with pytest.raises(JobFailed):
        executor(ns).run(bad)
    name = job_name(bad)
    first_uid = job_obj(ns, name).metadata.uid
    store = LocalStore(tmp_path / "store")
    submit(SearchSpec.model_validate(tiny_spec_dict()), store, "again")
    executor(ns).run(JobSpec("again", "profile", store.url, device="cpu", node_label="cpu"))
    j = job_obj(ns, name)
    assert j.metadata.uid != first_uid and conditions(j)["Complete"][0] == "True"
    def of(uid: str) -> list[Any]:
        return list(ns.cluster.core.list_namespaced_pod(
            ns.name, label_selector=f"batch.kubernetes.io/controller-uid={uid}").items)

    assert [p.status.phase for p in of(j.metadata.uid)] == ["Succeeded"]
    wait_for(lambda: not of(first_uid), EVENT_S, "the failed Job's pods collected")


def test_a_pending_pod_relays_why_the_scheduler_cannot_place_it(ns, tmp_path) -> None:
    """The DSP node has one hexagon; a pod holds it, so the profile job's pod (tolerating the
    pool's taint, asking for one) stays Pending and the executor relays the real scheduler's
    FailedScheduling event; once the holder goes, the pod is placed on the DSP node."""
    core = ns.cluster.core
    core.create_namespaced_pod(ns.name, {
        "metadata": {"name": "holder"},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"hurricane.io/device": "dsp"},
                 "tolerations": [{"key": "hurricane.io/device", "operator": "Equal",
                                  "value": "dsp", "effect": "NoSchedule"}],
                 "containers": [{"name": "c", "image": "none",
                                 "command": ["python", "-c", "import time; time.sleep(900)"],
                                 "resources": {"limits": {"qualcomm.com/hexagon": "1"}}}]}})
    wait_for(lambda: core.read_namespaced_pod("holder", ns.name).status.phase == "Running",
             EVENT_S, "the holder pod running")
    job = JobSpec("nosuch", "profile", f"file://{tmp_path / 'empty'}", device="dsp",
                  node_label="dsp")
    t, out, msg = relayed(ns, job, "FailedScheduling")
    assert "Insufficient qualcomm.com/hexagon" in msg, msg
    core.delete_namespaced_pod("holder", ns.name, grace_period_seconds=1)
    t.join(EVENT_S)
    assert isinstance(out.get("error"), JobInvalid)  # it ran (and found no such search)
    assert [node_of(p) for p in pods_of(ns.cluster, ns.name, job_name(job))] == ["dsp-0"]


def _held_training(ns: Namespace, search: Any, **kw: Any) -> tuple[
        KubernetesExecutor, JobSpec, threading.Thread, dict[str, Any], threading.Event]:
    """A two-node stage-1 Job run by the executor in a thread (its trainings hold at the
    gate: the test takes the ``gated`` fixture)."""
    store, sid, _ = search
    stop = threading.Event()
    ex = executor(ns, cancelled=stop.is_set, **kw)
    job = JobSpec(sid, "stage1", store.url, nodes=2, nprocs=1)
    t, out = in_thread(ex.run, job)
    return ex, job, t, out, stop


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Trainings in the pods hold before step HOLD (tests/pod_gate first on their PYTHONPATH,
    which the agent passes on, as are the gate's variables); the gate's folder."""
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(POD_GATE),
                                                      os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HURRICANE_TEST_HOLD_AT", str(HOLD))
    monkeypatch.setenv("HURRICANE_TEST_HOLD_DIR", str(gate))
    return gate


def test_a_two_node_training_job_runs_indexed_pods_and_cancel_removes_everything(
        ns, search, gated) -> None:
    """An Indexed Job of two pods with its headless Service: the scheduler puts them on the
    training nodes, torchrun's two ranks meet (both reach the gate's step), and cancelling
    deletes the Job (background propagation) and the Service; the garbage collector deletes
    the pods, whose processes get SIGTERM."""
    _, job, t, out, stop = _held_training(ns, search)
    name = job_name(job)
    wait_for(lambda: len(list(gated.glob("reached-*"))) == 2, EVENT_S, "both ranks at the gate")
    pods = pods_of(ns.cluster, ns.name, name)
    assert sorted(node_of(p) for p in pods) in (["train-0", "train-1"], ["train-0", "train-0"],
                                                ["train-1", "train-1"])
    assert sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"]
                  for p in pods) == ["0", "1"]
    assert ns.cluster.core.read_namespaced_service(name, ns.name).spec.cluster_ip == "None"
    stop.set()
    t.join(EVENT_S)
    assert isinstance(out.get("error"), JobCancelled), out
    with pytest.raises(ApiException) as info:
        job_obj(ns, name)
    assert info.value.status == 404
    with pytest.raises(ApiException):
        ns.cluster.core.read_namespaced_service(name, ns.name)
    wait_for(lambda: not pods_of(ns.cluster, ns.name, name), EVENT_S, "the pods collected")
    agent = ns.cluster.agent
    wait_for(lambda: not any(p.ns == ns.name for p in list(agent.pods.values())), EVENT_S,
             "the pods' processes ended")


def test_deleting_a_search_collects_its_jobs_through_the_owner_configmap(
        ns, search, gated) -> None:
    ex, job, t, out, _ = _held_training(ns, search)
    name = job_name(job)
    wait_for(lambda: len(list(gated.glob("reached-*"))) == 2, EVENT_S, "both ranks at the gate")
    ex.delete_search(job.search_id)  # deletes the owner ConfigMap only
    wait_for(lambda: _gone(lambda: job_obj(ns, name)), EVENT_S, "the Job collected")
    wait_for(lambda: not pods_of(ns.cluster, ns.name, name), EVENT_S, "the pods collected")
    t.join(EVENT_S)
    # the executor following the Job says why it vanished (a raw 404 before the real GC showed it)
    assert isinstance(out.get("error"), JobCancelled), out
    assert "the search was purged" in str(out["error"])


def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as err:
        return err.status == 404
    return False


def test_a_job_past_its_deadline_fails_with_deadline_exceeded(ns, search, gated) -> None:
    """activeDeadlineSeconds (60, the least the settings allow) on a training held at the
    gate: the Job controller fails it and deletes its pods."""
    ns2 = make_namespace(ns.cluster, {}, k8s_active_deadline_s=60, k8s_backoff_limit=0)
    _, job, t, out, _ = _held_training(ns2, search)
    t.join(EVENT_S + 60)
    assert isinstance(out.get("error"), JobFailed), out
    assert "activeDeadlineSeconds" in str(out["error"])
    # the Job controller marks FailureTarget at once (the executor stops there), terminates the
    # pods, and sets Failed once they have ended
    assert conditions(job_obj(ns2, job_name(job)))["FailureTarget"] == ("True", "DeadlineExceeded")
    wait_for(lambda: conditions(job_obj(ns2, job_name(job))).get("Failed") == (
        "True", "DeadlineExceeded"), EVENT_S, "the Job Failed once its pods ended")
    assert all(p.status.phase == "Failed" for p in pods_of(ns2.cluster, ns2.name, job_name(job)))


def test_pod_logs_follow_through_the_api_server(ns) -> None:
    core = ns.cluster.core
    core.create_namespaced_pod(ns.name, {
        "metadata": {"name": "talker"},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"hurricane.io/device": "cpu"},
                 "containers": [{"name": "c", "image": "none", "command": [
                     "python", "-c",
                     "import sys, time\nfor i in range(3):\n print('line', i, flush=True)\n"
                     " time.sleep(0.2)\nsys.exit(3)"]}]}})
    wait_for(lambda: core.read_namespaced_pod("talker", ns.name).status.phase == "Failed",
             EVENT_S, "the pod to end")

    def log(**kw: Any) -> str:
        return str(core.read_namespaced_pod_log("talker", ns.name, _preload_content=False,
                                                **kw).data.decode())

    assert re.findall(r"line \d", log(container="c")) == ["line 0", "line 1", "line 2"]
    assert log(tail_lines=1) == "line 2\n"
    assert log(limit_bytes=4) == "line"
    st = core.read_namespaced_pod("talker", ns.name).status.container_statuses[0]
    assert st.state.terminated.exit_code == 3 and st.state.terminated.reason == "Error"

"""Shared GPU clusters (issue 17) at the Kubernetes client's HTTP seam: Kueue admission (a Job
created suspended is ``queued`` with Kueue's reason, admitted it runs; evicted mid-training it
checkpoints on SIGTERM, and re-admitted it continues from that step, with the pod run as a real
local process), and Kubeflow Trainer TrainJobs (create, adopt on 409, complete, fail, cancel)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hurricane import progress
from hurricane.operator.executor import KubernetesExecutor, admission_reason, required_rules
from hurricane.operator.manifests import Cluster, job_name, manifests, trainjob_name
from hurricane.runs.contract import WHOLE, JobCancelled, JobFailed, JobSpec
from hurricane.runs.executor import InlineExecutor
from hurricane.runs.pipeline import run_step, run_unit
from hurricane.runs.records import read_unit_state, submit, summarize
from hurricane.settings import Settings
from hurricane.spec import SearchSpec
from tests.conftest import tiny_spec_dict
from tests.kube_fake import FakeKubeServer, LocalKubelet, condition, pod
from tests.servers import in_thread, wait_for

NS = "team-a"
POD_GATE = Path(__file__).parent / "pod_gate"  # holds a training process at a step (sitecustomize)
HOLD = 60
# Bounds on events that a real process must reach (a pod importing torch, a torchrun start): they
# only catch a hang, so they are generous; nothing is asserted about how soon an event comes.
EVENT_S = 600
QUOTA = ("couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor "
         "default-flavor, 2 more needed")
PREEMPTED = ("Preempted to accommodate a workload (UID: 6d2e) due to prioritization in the "
             "ClusterQueue")


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"k8s_namespace": NS, "k8s_release": "rel", "k8s_poll_s": 0.05,
                            "k8s_trainer_image": "reg/trainer:1",
                            "k8s_profiler_image": "reg/profiler:1"}
    return Settings(**{**base, **kw})


KUEUE = {"queue": "team-a-gpu", "priority_class": "nas-batch"}


def workload(uid: str, **conds: tuple[str, str, str]) -> dict[str, Any]:
    """A Kueue Workload of the job with this uid; conditions as type=(status, reason, message)."""
    return {"metadata": {"name": f"job-x-{uid[:5]}", "creationTimestamp": "2026-12-01T00:00:00Z",
                         "labels": {"kueue.x-k8s.io/job-uid": uid}},
            "status": {"conditions": [{"type": t, "status": s, "reason": r, "message": m}
                                      for t, (s, r, m) in conds.items()]}}


class Recorder:
    """A progress reporter: tasks as [description, total, completed-at-start, advanced] and
    messages."""

    def __init__(self) -> None:
        self.tasks: list[list[Any]] = []
        self.messages: list[str] = []

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Any]:
        entry = [description, total, completed, 0]
        self.tasks.append(entry)

        class T:
            def advance(self, n: int = 1, **metrics: Any) -> None:
                entry[3] += n

        yield T()

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.fixture
def kube() -> Iterator[FakeKubeServer]:
    with FakeKubeServer() as srv:
        yield srv


# -- the objects --------------------------------------------------------------------------------

def test_kueue_labels_and_suspends_every_job_and_admits_training_as_one_unit() -> None:
    owner = {"metadata": {"name": "hurricane-search-s", "uid": "u-1"}}
    measure = JobSpec("s-1", "profile", "s3://b/p", device="cpu", node_label="cpu")
    pool = JobSpec("s-1", "search1", "s3://b/p", device="cpu")
    train = JobSpec("s-1", "stage1", "s3://b/p", nodes=3, nprocs=2)
    plain, queued = Cluster.from_settings(settings()), Cluster.from_settings(settings(k8s_kueue=KUEUE))
    for j in (measure, pool, train):
        for obj in manifests(j, plain, owner):
            assert "suspend" not in obj["spec"]
            assert not any(k.startswith("kueue.x-k8s.io/") for k in obj["metadata"]["labels"])
        objs = manifests(j, queued, owner)
        jobs = [o for o in objs if o["kind"] == "Job"]
        assert len(jobs) == 1  # one workload: all its pods are admitted together
        (job,) = jobs
        assert job["spec"]["suspend"] is True
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpu"
        assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "nas-batch"
        pod_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not any(k.startswith("kueue.x-k8s.io/") for k in pod_labels)
    (svc, job) = manifests(train, queued, owner)
    assert svc["kind"] == "Service" and "suspend" not in svc["spec"]  # Services are not workloads
    assert job["spec"]["parallelism"] == job["spec"]["completions"] == 3
    no_priority = Cluster.from_settings(settings(k8s_kueue={"queue": "q"}))
    labels = manifests(measure, no_priority, owner)[0]["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "q" and "kueue.x-k8s.io/priority-class" not in labels


def test_settings_refuse_a_priority_without_a_queue_and_bad_names() -> None:
    with pytest.raises(ValueError, match="priority_class is set without a queue"):
        settings(k8s_kueue={"priority_class": "high"})
    with pytest.raises(ValueError, match="queue"):
        settings(k8s_kueue={"queue": "Not_A_Label"})
    with pytest.raises(ValueError, match="k8s_training_backend"):
        settings(k8s_training_backend="pytorchjob")


def _env(container_env: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_env}


def test_a_trainjob_carries_what_the_plain_training_job_carries() -> None:
    """Same image, torchrun command, environment (the settings ConfigMap and S3 Secret key by
    key instead of envFrom), resources per node, node selection, service account, security
    contexts, volumes, labels; nodes and processes go to the Trainer (PET_* for torchrun)."""
    s = settings(k8s_training={"node_selector": {"hurricane.io/device": "gpu"},
                               "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                "effect": "NoSchedule"}],
                               "resources": {"requests": {"cpu": "8", "memory": "32Gi"},
                                             "limits": {"memory": "32Gi"}},
                               "gpus_per_node": 2, "shm_size": "8Gi"},
                 k8s_data={"pvc": "datasets", "mount_path": "/data"})
    job = JobSpec("9search", "retrain", "s3://b/p", device="gpu", nodes=2, nprocs=2,
                  max_restarts=1)
    owner = {"metadata": {"name": "hurricane-search-9search", "uid": "u-9"}}
    (svc, plain) = manifests(job, Cluster.from_settings(s), owner)
    (tj,) = manifests(job, Cluster.from_settings(s.model_copy(update={
        "k8s_training_backend": "trainjob"})), owner)
    assert tj["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and tj["kind"] == "TrainJob"
    name = tj["metadata"]["name"]
    assert name == trainjob_name(job) and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    assert tj["metadata"]["labels"] == plain["metadata"]["labels"]
    assert tj["metadata"]["ownerReferences"] == plain["metadata"]["ownerReferences"]
    spec = tj["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                  "apiGroup": "trainer.kubeflow.org"}
    assert spec["activeDeadlineSeconds"] == plain["spec"]["activeDeadlineSeconds"]
    trainer = spec["trainer"]
    pod = plain["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert trainer["image"] == c["image"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 2
    assert trainer["command"][:3] == ["python", "-m", "torch.distributed.run"]
    assert "--max-restarts=1" in trainer["command"]
    module = c["command"][c["command"].index("-m", 3):]
    assert trainer["command"][trainer["command"].index("-m", 3):] == module
    assert trainer["resourcesPerNode"] == c["resources"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    tenv, penv = _env(trainer["env"]), _env(c["env"])
    assert {k: v for k, v in penv.items() if k != "NODE_RANK"}.items() <= tenv.items()
    assert tenv["HURRICANE_DIST_BACKEND"] == "nccl"
    cm = c["envFrom"][0]["configMapRef"]["name"]
    secret = c["envFrom"][1]["secretRef"]["name"]
    assert tenv["HURRICANE_STORE"] == {"configMapKeyRef": {"name": cm, "key": "HURRICANE_STORE",
                                                           "optional": True}}
    assert tenv["HURRICANE_S3_SECRET_KEY"] == {"secretKeyRef": {
        "name": secret, "key": "HURRICANE_S3_SECRET_KEY"}}
    assert len(trainer["env"]) == len(tenv) <= 128  # a list-map (unique names), CRD maxItems
    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "hurricane.io/operator"
    (rj,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rj["name"] == "node"
    ptpl = rj["template"]["spec"]["template"]
    assert ptpl["metadata"]["labels"] == plain["spec"]["template"]["metadata"]["labels"]
    pspec = ptpl["spec"]
    for k in ("serviceAccountName", "nodeSelector", "tolerations", "volumes", "securityContext"):
        assert pspec[k] == pod[k], k
    (node,) = pspec["containers"]
    assert node["name"] == "node" and "env" not in node  # the Trainer refuses env for "node"
    assert node["volumeMounts"] == c["volumeMounts"]
    assert node["securityContext"] == c["securityContext"]
    assert {v["name"] for v in pspec["volumes"]} == {"dshm", "data-cache", "data"}
    assert svc["kind"] == "Service"  # the plain backend's rendezvous; a TrainJob's JobSet has its own


def test_trainjob_names_start_with_a_letter_and_fit_jobsets_pod_names() -> None:
    for sid in ("0abc-search", "digits-cpu-0a1b2c3d", "x" * 80):
        name = trainjob_name(JobSpec(sid, "stage2", "s3://b/p", device="cpu-ov"))
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 46
    assert trainjob_name(JobSpec("digits-1", "stage1", "s3://b")) == "digits-1-stage1"


def test_the_role_rules_follow_the_backend_and_kueue() -> None:
    base = required_rules(Cluster.from_settings(settings()))
    assert ("", "services", "create") in base and not any(g == "trainer.kubeflow.org"
                                                          for g, _, _ in base)
    tj = required_rules(Cluster.from_settings(settings(k8s_training_backend="trainjob")))
    assert {("trainer.kubeflow.org", "trainjobs", v) for v in ("create", "get", "delete")} <= tj
    assert not any(r == "services" for _, r, _ in tj)
    kq = required_rules(Cluster.from_settings(settings(k8s_kueue=KUEUE)))
    assert kq - base == {("kueue.x-k8s.io", "workloads", "list")}


def test_admission_reasons_from_workload_conditions() -> None:
    q = "team-a-gpu"
    assert "no Workload yet" in admission_reason([], q, ran=False)
    pending = workload("u", QuotaReserved=("False", "Pending", QUOTA))
    assert admission_reason([pending], q, ran=False) == f"waiting for quota (LocalQueue {q}): {QUOTA}"
    evicted = workload("u", Evicted=("True", "Preempted", PREEMPTED),
                       QuotaReserved=("False", "Pending", QUOTA))
    assert admission_reason([evicted], q, ran=True).startswith(
        f"evicted by Kueue (Preempted): {PREEMPTED}; waiting to be admitted again")
    checks = workload("u", QuotaReserved=("True", "QuotaReserved", ""),
                      Admitted=("False", "NoChecks", "provisioning request pending"))
    assert "admission checks" in admission_reason([checks], q, ran=False)


# -- Kueue at the HTTP seam ---------------------------------------------------------------------

def test_a_suspended_job_is_queued_with_kueues_reason_then_runs(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    job = JobSpec("s-1", "profile", "s3://b/p", device="cpu", node_label="cpu")
    name = job_name(job)
    k.pods[name] = [pod(f"{name}-a", "Running")]
    k.logs[f"{name}-a"] = ["measuring"]
    states: list[tuple[str, str]] = []
    rec = Recorder()
    ex = KubernetesExecutor(settings=settings(k8s_kueue=KUEUE), api_client=kube.client())

    def run() -> None:
        with progress.use_reporter(rec), progress.use_state_hook(
                lambda s, r: states.append((s, r))):
            ex.run(job)

    t, out = in_thread(run)
    wait_for(lambda: ("Job", name) in k.objects, 60)
    uid = k.uid("Job", name)
    k.workloads[uid] = [workload(uid, QuotaReserved=("False", "Pending", QUOTA))]  # type: ignore[index]
    wait_for(lambda: any(QUOTA in r for _, r in states), 60)
    time.sleep(0.3)  # it keeps waiting: never a failure, never done
    assert t.is_alive() and not k.seen("GET", "pods")  # no pods while suspended
    k.workloads[uid] = [workload(uid, QuotaReserved=("True", "QuotaReserved", ""),  # type: ignore[index]
                                 Admitted=("True", "Admitted", ""))]
    k.set_suspend("Job", name, False)
    wait_for(lambda: ("running", "") in states, 60)
    k.job_status[name] = [condition("Complete")]
    t.join(10)
    assert not t.is_alive() and "error" not in out
    assert states[0][0] == "queued" and states[-1] == ("running", "")
    assert [s for s, _ in states].count("running") == 1
    wl = k.seen("GET", "workloads")
    assert wl and wl[0].path == f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{NS}/workloads"
    assert wl[0].query == {"labelSelector": f"kueue.x-k8s.io/job-uid={uid}"}
    assert any("queued: waiting for quota" in m for m in rec.messages)
    assert k.objects[("Job", name)]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpu"


def test_an_unserved_workload_api_gives_a_generic_reason(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    k.workloads = None
    job = JobSpec("s-1", "profile", "s3://b/p", device="cpu", node_label="cpu")
    name = job_name(job)
    states: list[tuple[str, str]] = []
    ex = KubernetesExecutor(settings=settings(k8s_kueue=KUEUE), api_client=kube.client())

    def run() -> None:
        with progress.use_state_hook(lambda s, r: states.append((s, r))):
            ex.run(job)

    t, out = in_thread(run)
    wait_for(lambda: states, 60)
    time.sleep(0.3)
    assert states[0] == ("queued", "waiting for Kueue (LocalQueue team-a-gpu): no Workload yet")
    assert len(k.seen("GET", "workloads")) == 1  # asked once, then not again
    k.job_status[name] = [condition("Complete")]
    k.set_suspend("Job", name, False)
    t.join(10)
    assert "error" not in out


@pytest.fixture
def ready(store) -> tuple[Any, str, SearchSpec]:  # type: ignore[no-untyped-def]
    """A search whose steps before stage1 are done; stage1 trains 500 steps, no periodic
    checkpoint before the end (what survives an eviction is the SIGTERM checkpoint)."""
    spec = SearchSpec.model_validate(tiny_spec_dict(
        supernet={"recipe": "spos", "iterations": 500, "checkpoint_every": 10_000}))
    sid = submit(spec, store, "evict")
    for step in ("profile", "space", "predictor"):
        run_step(step, spec, sid, store, InlineExecutor())
    return store, sid, spec


def test_an_evicted_training_job_continues_from_its_checkpoint_when_readmitted(  # type: ignore[no-untyped-def]
        kube, ready, tmp_path: Path) -> None:
    """The stage1 Job is created suspended (queued: no quota), admitted (its pod, a real
    torchrun process, trains), evicted by Kueue mid-training (SIGTERM: it checkpoints the step
    it reached and ends), admitted again (a new pod resumes from that step) and completes: one
    step, never failed, with the iterations continuing.

    The first pod's training holds before step HOLD until it receives SIGTERM
    (tests/pod_gate): the eviction lands at a known step on any machine, never after the
    training has already finished."""
    store, sid, spec = ready
    k = kube.kube
    gate = tmp_path / "gate"
    gate.mkdir()
    LocalKubelet(k, tmp_path / "node", env_from={"hurricane-settings": {
        "PYTHONPATH": os.pathsep.join([str(POD_GATE), os.environ.get("PYTHONPATH", "")]),
        "HURRICANE_TEST_HOLD_AT": str(HOLD), "HURRICANE_TEST_HOLD_DIR": str(gate)}})
    ex = KubernetesExecutor(settings=settings(k8s_kueue=KUEUE, k8s_poll_s=0.1),
                            api_client=kube.client())
    rec = Recorder()

    def run() -> bool:
        with progress.use_reporter(rec):
            return run_unit("stage1", spec, sid, store, ex, WHOLE)

    t, out = in_thread(run)
    name = job_name(JobSpec(sid, "stage1", store.url))
    try:
        wait_for(lambda: ("Job", name) in k.objects, 60)
        uid = k.uid("Job", name)
        k.workloads[uid] = [workload(uid, QuotaReserved=("False", "Pending", QUOTA))]  # type: ignore[index]
        unit = lambda: read_unit_state(store, sid, "stage1", WHOLE) or {}  # noqa: E731
        wait_for(lambda: QUOTA in (unit().get("reason") or ""), 60)
        status = summarize(store, sid)["steps"]["stage1"]
        assert status["state"] == "queued" and QUOTA in status["reason"]
        assert not k.kubelet.procs  # nothing runs before admission

        k.workloads[uid] = [workload(uid, Admitted=("True", "Admitted", ""))]  # type: ignore[index]
        k.set_suspend("Job", name, False)
        reached = wait_for(lambda: list(gate.glob("reached-*")), EVENT_S, "the training's hold")
        assert [int(p.read_text()) for p in reached] == [HOLD]  # one process, held there
        wait_for(lambda: unit().get("state") == "running", EVENT_S, "the unit running")

        k.workloads[uid] = [workload(uid, Evicted=("True", "Preempted", PREEMPTED))]  # type: ignore[index]
        k.set_suspend("Job", name, True)
        wait_for(lambda: "evicted by Kueue (Preempted)" in (unit().get("reason") or ""), EVENT_S)
        stopped = wait_for(lambda: next((int(m) for x in rec.messages
                                         for m in re.findall(r"stopped after step (\d+)", x)),
                                        None), EVENT_S)
        wait_for(lambda: k.kubelet.ended.get(k.kubelet.pod_of[name]) is not None, EVENT_S)
        assert stopped == HOLD + 1  # the held step ends, checkpoints, and the pod exits
        assert summarize(store, sid)["steps"]["stage1"]["state"] == "queued"

        k.workloads[uid] = [workload(uid, Admitted=("True", "Admitted", ""))]  # type: ignore[index]
        k.set_suspend("Job", name, False)
        t.join(EVENT_S)
        assert not t.is_alive() and "error" not in out, out.get("error")
    finally:
        k.kubelet.close()
    assert out["result"] is True
    assert len(list(gate.glob("reached-*"))) == 1  # the resumed pod started past the hold
    train = store.get_json(f"searches/{sid}/stage1/train.json")
    assert train["resumed_from"] == stopped and train["iterations"] == 500
    first, second = [task for task in rec.tasks if task[1] == 500][:2]
    assert first[2] == 0 and second[2] == stopped  # the second pod's bar starts where it stopped
    assert second[2] + second[3] == 500
    final = unit()
    assert final["state"] == "succeeded" and final["evictions"] == 1 and final["queued_s"] > 0
    assert k.kubelet.started == 2 and not k.kubelet.outcome[name].get("failed")
    assert summarize(store, sid)["steps"]["stage1"]["state"] != "failed"


# -- TrainJobs at the HTTP seam -----------------------------------------------------------------

TRAIN = JobSpec("s-1", "stage1", "s3://b/p", nodes=2, nprocs=1)
TJ = settings(k8s_training_backend="trainjob")


def test_trainjob_create_follow_complete_with_jobset_pods(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = trainjob_name(TRAIN)
    k.job_status[name] = [{}, {"jobsStatus": [{"name": "node", "active": 1}]},
                          condition("Complete", "JobSetCompleted")]
    k.pods[name] = [pod(f"{name}-node-0-0-abc", "Running")]
    k.logs[f"{name}-node-0-0-abc"] = ['@@hurricane-progress {"event": "start", '
                                      '"description": "stage1", "total": 5}', "trained"]
    rec = Recorder()
    with progress.use_reporter(rec):
        KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)
    (post,) = k.seen("POST", "trainjobs")
    assert post.path == f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
    owner = k.objects[("ConfigMap", "hurricane-search-s-1")]
    assert post.body == manifests(TRAIN, Cluster.from_settings(TJ), owner)[0]
    assert not k.seen("POST", "jobs") and not k.seen("POST", "services")
    assert all(r.path.endswith(f"/trainjobs/{name}") for r in k.seen("GET", "trainjobs"))
    assert k.seen("GET", "pods")[0].query == {
        "labelSelector": f"jobset.sigs.k8s.io/jobset-name={name}"}
    (log,) = k.seen("GET", "pods/log")
    assert log.query["container"] == "node"
    assert rec.tasks and rec.tasks[0][:2] == ["stage1", 5]


def test_trainjob_adopted_on_409_failed_and_cancelled(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = trainjob_name(TRAIN)
    k.job_status[name] = [condition("Complete")]
    KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)
    KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)  # a redelivered task
    assert len(k.seen("POST", "trainjobs")) == 2 and len(
        [o for (kind, _), o in k.objects.items() if kind == "TrainJob"]) == 1
    assert not k.seen("DELETE", "trainjobs")  # adopted, not replaced

    k.objects.pop(("TrainJob", name))
    k.job_status[name] = [{}, condition("Failed", "DeadlineExceeded", "ran 2 days")]
    with pytest.raises(JobFailed, match=f"TrainJob {name}: it ran past the TrainJob's "
                                        "activeDeadlineSeconds: ran 2 days"):
        KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)

    # resumed: the failed TrainJob of the earlier attempt is replaced
    k.job_status[name] = [condition("Failed", "FailedJobs", "x"), condition("Complete")]
    KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)
    assert len(k.seen("DELETE", "trainjobs")) == 1

    k.objects.pop(("TrainJob", name))
    k.job_status[name] = [{}]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(JobCancelled, match=f"TrainJob {name} deleted"):
        KubernetesExecutor(settings=TJ, api_client=kube.client(), cancelled=stop.is_set).run(TRAIN)
    delete = k.seen("DELETE", "trainjobs")[-1]
    assert delete.path.endswith(f"/trainjobs/{name}")
    assert delete.body == {"propagationPolicy": "Background"} or \
        delete.query.get("propagationPolicy") == "Background"
    assert ("TrainJob", name) not in k.objects


def test_a_trainjob_of_the_same_name_for_other_work_is_refused(kube) -> None:  # type: ignore[no-untyped-def]
    name = trainjob_name(TRAIN)
    kube.kube.objects[("TrainJob", name)] = {"metadata": {"name": name, "labels": {
        "hurricane.io/search-id": "other"}}, "spec": {}}
    with pytest.raises(JobFailed, match=r"TrainJob named .* for other work"):
        KubernetesExecutor(settings=TJ, api_client=kube.client()).run(TRAIN)


def test_a_queued_trainjob_under_kueue(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = trainjob_name(TRAIN)
    states: list[tuple[str, str]] = []
    s = settings(k8s_training_backend="trainjob", k8s_kueue=KUEUE)
    ex = KubernetesExecutor(settings=s, api_client=kube.client())

    def run() -> None:
        with progress.use_state_hook(lambda st, r: states.append((st, r))):
            ex.run(TRAIN)

    t, out = in_thread(run)
    wait_for(lambda: ("TrainJob", name) in k.objects, 60)
    tj = k.obj("TrainJob", name)
    assert tj["spec"]["suspend"] is True
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a-gpu"
    uid = k.uid("TrainJob", name)
    k.workloads[uid] = [workload(uid, QuotaReserved=("False", "Pending", QUOTA))]  # type: ignore[index]
    wait_for(lambda: any(QUOTA in r for _, r in states), 60)
    k.set_suspend("TrainJob", name, False)
    wait_for(lambda: ("running", "") in states, 60)
    k.job_status[name] = [{}, condition("Complete")]
    t.join(10)
    assert "error" not in out and states[-1] == ("running", "")


def test_the_event_stream_reports_a_queued_step_with_its_reason_and_changes_of_it() -> None:
    from hurricane.api.searches import _changes

    def view(state: str, reason: str | None, unit: str) -> dict[str, Any]:
        u = {"state": unit, "attempt": 1, **({"reason": reason} if reason else {})}
        st = {"state": state, **({"reason": reason} if reason else {}), "units": {"ALL": u}}
        return {"state": "running", "steps": {"stage1": st}}

    first = _changes(None, view("queued", "waiting for quota (LocalQueue q): 2 more cpu", "queued"))
    assert ("step", {"step": "stage1", "state": "queued", "reason":
                     "waiting for quota (LocalQueue q): 2 more cpu", "seconds": None,
                     "error": None}) in first
    assert any(e == "unit" and d["reason"].startswith("waiting for quota") for e, d in first)
    evicted = _changes(view("queued", "waiting for quota (LocalQueue q): 2 more cpu", "queued"),
                       view("queued", "evicted by Kueue (Preempted): …", "queued"))
    assert [e for e, _ in evicted] == ["step", "unit"]  # same state, a new reason: reported
    running = _changes(view("queued", "evicted by Kueue (Preempted): …", "queued"),
                       view("running", None, "running"))
    assert {(e, d["state"]) for e, d in running} == {("step", "running"), ("unit", "running")}

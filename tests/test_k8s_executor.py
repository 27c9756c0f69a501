"""The Kubernetes executor at the client's HTTP seam: the real `kubernetes` client talks to a
scripted API server (tests/kube_fake.py) and the tests assert the requests it makes: create,
adopt on 409, completion (also of a Job that finished while nobody watched), each failure
reason, a failed Job replaced on resume, cancel, log relay, scheduling events."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from hurricane import progress
from hurricane.operator.executor import KubernetesExecutor, job_outcome
from hurricane.operator.manifests import Cluster, job_name, manifests
from hurricane.runs.contract import JobCancelled, JobFailed, JobInvalid, JobSpec
from hurricane.settings import Settings
from tests.kube_fake import FakeKubeServer, condition, pod

NS = "nas"
SETTINGS = Settings(k8s_namespace=NS, k8s_release="rel", k8s_trainer_image="reg/trainer:1",
                    k8s_profiler_image="reg/profiler:1", k8s_poll_s=0.05,
                    k8s_pools=({"name": "cpu", "label": "cpu"},  # type: ignore[arg-type]
                               {"name": "dsp", "label": "dsp",
                                "resources": {"requests": {"cpu": "1"}}}))
MEASURE = JobSpec(search_id="s-1", step="profile", store_url="s3://b/p", device="cpu",
                  node_label="cpu")
TRAIN = JobSpec(search_id="s-1", step="stage1", store_url="s3://b/p", nodes=2, nprocs=1)
PROGRESS = '@@hurricane-progress {"event": "%s", "description": "profile cpu", "total": 3, "n": 1}'


class Recorder:
    """A reporter recording tasks (description, total, advanced) and messages."""

    def __init__(self) -> None:
        self.tasks: list[list[Any]] = []
        self.messages: list[str] = []

    @contextlib.contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[Any]:
        entry = [description, total, completed]
        self.tasks.append(entry)

        class T:
            def advance(self, n: int = 1, **metrics: Any) -> None:
                entry[2] += n

        yield T()

    def message(self, text: str) -> None:
        self.messages.append(text)


@pytest.fixture
def kube() -> Iterator[FakeKubeServer]:
    with FakeKubeServer() as srv:
        yield srv


def executor(kube: FakeKubeServer, **kw: Any) -> KubernetesExecutor:
    return KubernetesExecutor(settings=SETTINGS, api_client=kube.client(), **kw)


def test_create_follow_complete_with_log_relay(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(MEASURE)
    k.job_status[name] = [{"active": 1}, {"active": 1}, condition("Complete")]
    k.pods[name] = [pod(f"{name}-abc", "Running")]
    k.logs[f"{name}-abc"] = ["loading", PROGRESS % "start", PROGRESS % "advance",
                             PROGRESS % "advance", '@@hurricane-progress {"event": "end"}', "done"]
    rec = Recorder()
    with progress.use_reporter(rec):
        executor(kube).run(MEASURE)
    cm, job = k.requests[0], k.requests[1]
    assert (cm.method, cm.path) == ("POST", f"/api/v1/namespaces/{NS}/configmaps")
    assert cm.body["metadata"]["name"] == "hurricane-search-s-1"
    owner = k.objects[("ConfigMap", "hurricane-search-s-1")]
    assert (job.method, job.path) == ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs")
    assert job.body == manifests(MEASURE, Cluster.from_settings(SETTINGS), owner)[0]
    assert job.body["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    reads = k.seen("GET", "jobs")
    assert reads and all(r.path.endswith(f"/jobs/{name}") for r in reads)
    assert k.seen("GET", "pods")[0].query == {"labelSelector": f"batch.kubernetes.io/job-name={name}"}
    log = k.seen("GET", "pods/log")
    assert len(log) == 1 and log[0].path.endswith(f"/pods/{name}-abc/log")
    assert log[0].query == {"container": "job", "follow": "True"}  # the client sends True
    assert rec.tasks == [["profile cpu", 3, 2]]  # the pod's progress bar, relayed here


def test_a_retried_task_adopts_the_job_and_one_that_finished_unwatched_is_done(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(MEASURE)
    k.job_status[name] = [{"active": 1}, condition("Complete")]
    executor(kube, poll_s=0.05).run(MEASURE)  # the first task
    before = len(k.seen("POST", "jobs"))
    k.job_status[name] = [condition("Complete")]
    executor(kube).run(MEASURE)  # redelivered after the Job finished: adopted, done
    posts = k.seen("POST", "jobs")
    assert len(posts) == before + 1 and len(k.objects) == 2  # one Job, one owner: no second Job
    assert [r.method for r in k.requests[-3:]] == ["POST", "GET", "GET"]  # 409, adopt, complete
    assert not k.seen("DELETE", "jobs")


def test_a_job_of_the_same_name_for_other_work_is_not_adopted(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(MEASURE)
    k.objects[("Job", name)] = {"metadata": {"name": name, "labels": {
        "hurricane.io/search-id": "other"}}, "status": {}}
    with pytest.raises(JobFailed, match="for other work"):
        executor(kube).run(MEASURE)


@pytest.mark.parametrize(("kind", "reason", "error", "words"), [
    ("Failed", "BackoffLimitExceeded", JobFailed, "more often than the Job's backoffLimit"),
    ("Failed", "DeadlineExceeded", JobFailed, "activeDeadlineSeconds"),
    ("Failed", "PodFailurePolicy", JobInvalid, "refused the input (exit code 65)"),
    ("FailureTarget", "PodFailurePolicy", JobInvalid, "exit code 65"),
])
def test_each_failure_reason(kube, kind, reason, error, words) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(MEASURE)
    k.job_status[name] = [{"active": 1}, condition(kind, reason, "pod x failed")]
    k.pods[name] = [pod(f"{name}-p", "Failed")]
    k.logs[f"{name}-p"] = ["Traceback (most recent call last):", "ValueError: bad budget"]
    with pytest.raises(error) as info:
        executor(kube).run(MEASURE)
    assert words in str(info.value) and "pod x failed" in str(info.value)
    assert "ValueError: bad budget" in str(info.value)  # the log tail
    if error is JobFailed:
        assert not isinstance(info.value, JobInvalid)


def test_a_failed_job_of_an_earlier_attempt_is_replaced(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(MEASURE)
    k.objects[("Job", name)] = {"metadata": {"name": name, "labels": {
        "hurricane.io/search-id": "s-1", "hurricane.io/step": "profile",
        "hurricane.io/device": "cpu"}}, "status": condition("Failed", "BackoffLimitExceeded")}
    # read when adopted: Failed; once deleted and created again: Complete
    k.job_status[name] = [condition("Failed", "BackoffLimitExceeded"), condition("Complete")]
    executor(kube).run(MEASURE)
    deletes = k.seen("DELETE", "jobs")
    assert len(deletes) == 1 and deletes[0].query["propagationPolicy"] == "Background"
    assert len(k.seen("POST", "jobs")) == 2


def test_cancel_deletes_the_job_and_its_service(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(TRAIN)
    k.job_status[name] = [{"active": 2}]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(JobCancelled, match="deleted: the search was cancelled"):
        executor(kube, cancelled=stop.is_set).run(TRAIN)
    posts = [(r.resource, r.body["kind"]) for r in k.requests if r.method == "POST"]
    assert posts == [("configmaps", "ConfigMap"), ("services", "Service"), ("jobs", "Job")]
    dels = [(r.resource, r.path.rsplit("/", 1)[1], r.query["propagationPolicy"])
            for r in k.requests if r.method == "DELETE"]
    assert dels == [("jobs", name, "Background"), ("services", name, "Background")]
    assert ("Job", name) not in k.objects and ("Service", name) not in k.objects


def test_pending_pods_relay_their_scheduling_events(kube) -> None:  # type: ignore[no-untyped-def]
    k = kube.kube
    name = job_name(TRAIN)
    k.job_status[name] = [{"active": 2}, {"active": 2}, condition("Complete")]
    k.pods[name] = [pod(f"{name}-0-x", "Pending", index=0)]
    k.events[f"{name}-0-x"] = [{"type": "Warning", "reason": "FailedScheduling",
                                "message": "0/4 nodes: 4 Insufficient nvidia.com/gpu"}]
    rec = Recorder()
    with progress.use_reporter(rec):
        executor(kube).run(TRAIN)
    ev = k.seen("GET", "events")
    assert ev and ev[0].query == {"fieldSelector": f"involvedObject.name={name}-0-x"}
    assert any("FailedScheduling" in m and "nvidia.com/gpu" in m for m in rec.messages)


def test_delete_search_removes_the_owner_object(kube) -> None:  # type: ignore[no-untyped-def]
    ex = executor(kube)
    ex.owner("s-1")
    ex.delete_search("s-1")
    ex.delete_search("s-1")  # gone already: fine
    dels = kube.kube.seen("DELETE", "configmaps")
    assert [d.path.rsplit("/", 1)[1] for d in dels] == ["hurricane-search-s-1"] * 2
    assert dels[0].query["propagationPolicy"] == "Background"


def test_job_outcome_mapping() -> None:
    assert job_outcome({"status": {}}) is None
    assert job_outcome({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}) is None
    assert job_outcome({"status": condition("Complete")}).complete  # type: ignore[union-attr]
    assert job_outcome({"status": condition("SuccessCriteriaMet")}).complete  # type: ignore[union-attr]
    out = job_outcome({"status": condition("Failed", "DeadlineExceeded")})
    assert out is not None and not out.complete and out.reason == "DeadlineExceeded"
    stale = {"conditions": [{"type": "Failed", "status": "False"}]}
    assert job_outcome({"status": stale}) is None

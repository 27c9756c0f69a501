"""One source for the cluster's names: the Jobs the operator builds from the settings the chart
renders use the chart's images, job service account, settings ConfigMap and S3 Secret, and
validate against Kubernetes 1.32; and the chart's Role grants exactly what the executor calls
(measured on the executor's own requests, not on a list)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from hurricane.latency.devices import DEVICES
from hurricane.operator.executor import KubernetesExecutor, required_rules
from hurricane.operator.manifests import Cluster, job_name, manifests, trainjob_name
from hurricane.runs.contract import JobSpec
from hurricane.settings import Settings, get_settings
from tests.kube_fake import FakeKubeServer, condition, pod
from tests.test_chart import of_kind, render, settings_data

ROOT = Path(__file__).resolve().parents[1]
GPU_VALUES = ROOT / "examples" / "values-gpu-cluster.yaml"


def chart_settings(objs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a worker pod of this release reads (its ConfigMap and S3 Secret)."""
    for k, v in settings_data(objs).items():
        monkeypatch.setenv(k, v)
    for secret in of_kind(objs, "Secret"):
        plain = dict(secret.get("stringData") or {})
        plain.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
        for k, v in plain.items():
            if k.startswith("HURRICANE_"):
                monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        return get_settings()
    finally:
        get_settings.cache_clear()


@pytest.fixture(scope="module")
def gpu_objs() -> list[dict[str, Any]]:
    return render(values_file=GPU_VALUES)


def test_operator_jobs_use_the_names_the_chart_renders(gpu_objs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = chart_settings(gpu_objs, monkeypatch)
    cluster = Cluster.from_settings(s)
    owner = {"metadata": {"name": "hurricane-search-x", "uid": "u-1"}}
    jobs = [
        manifests(JobSpec("digits-0a1b2c3d", "profile", s.store, device="dsp-qnn",
                          node_label="dsp", resources=dict(DEVICES.get("dsp-qnn").resources)),
                  cluster, owner)[0],
        manifests(JobSpec("digits-0a1b2c3d", "stage1", s.store, nodes=2, nprocs=4), cluster,
                  owner)[1],
    ]
    service_accounts = {o["metadata"]["name"]: o for o in of_kind(gpu_objs, "ServiceAccount")}
    configmaps = {o["metadata"]["name"] for o in of_kind(gpu_objs, "ConfigMap")}
    secrets = {o["metadata"]["name"]: o for o in of_kind(gpu_objs, "Secret")}
    images = {c["image"] for d in of_kind(gpu_objs, "Deployment")
              for c in d["spec"]["template"]["spec"]["containers"]}
    registry = next(iter(images)).rsplit("/", 1)[0]  # the chart's registry for its images
    for obj in jobs:
        kubernetes_validate.validate(obj, "1.32", strict=True)
        pod_spec = obj["spec"]["template"]["spec"]
        sa = pod_spec["serviceAccountName"]
        assert sa in service_accounts and service_accounts[sa].get(
            "automountServiceAccountToken") is False
        c = pod_spec["containers"][0]
        ref = {next(iter(e.values()))["name"] for e in c["envFrom"]}
        cm = c["envFrom"][0]["configMapRef"]["name"]
        secret = c["envFrom"][1]["secretRef"]["name"]
        assert ref == {cm, secret} and cm in configmaps and secret in secrets
        assert {"HURRICANE_S3_ACCESS_KEY", "HURRICANE_S3_SECRET_KEY"} <= {
            *(secrets[secret].get("stringData") or {}), *(secrets[secret].get("data") or {})}
        assert c["image"].rsplit("/", 1)[0] == registry
        assert c["image"].endswith(("hurricane-trainer:" + c["image"].rsplit(":", 1)[1],
                                    "hurricane-profiler:" + c["image"].rsplit(":", 1)[1]))
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == s.k8s_release
        assert obj["metadata"]["namespace"] == s.k8s_namespace
    measure, train = jobs
    assert measure["spec"]["template"]["spec"]["containers"][0]["image"] == s.k8s_profiler_image
    assert train["spec"]["template"]["spec"]["containers"][0]["image"] == s.k8s_trainer_image
    assert "qualcomm.com/hexagon" in str(measure["spec"]["template"]["spec"]["containers"][0]["resources"])
    assert train["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"


SHARED_VALUES = ROOT / "examples" / "values-shared-cluster.yaml"


class Admitter:
    """Kueue's part, for the scripted API server: every suspended Job or TrainJob gets a
    Workload that lacks quota, and is admitted (unsuspended) a moment later."""

    def __init__(self, kube: Any) -> None:
        self.kube, self.stop = kube, threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        seen: dict[tuple[str, str], float] = {}
        while not self.stop.is_set():
            with self.kube.lock:
                for key, obj in self.kube.objects.items():
                    if key[0] in ("Job", "TrainJob") and obj["spec"].get("suspend"):
                        uid = obj["metadata"]["uid"]
                        self.kube.workloads[uid] = [{"metadata": {"name": f"wl-{uid}"}, "status": {
                            "conditions": [{"type": "QuotaReserved", "status": "False",
                                            "reason": "Pending", "message": "no quota"}]}}]
                        if time.monotonic() - seen.setdefault(key, time.monotonic()) > 0.3:
                            obj["spec"]["suspend"] = False
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.mark.parametrize("values", [GPU_VALUES, SHARED_VALUES], ids=["gpu-cluster", "shared"])
def test_the_role_grants_exactly_what_the_executor_calls(values, monkeypatch, request) -> None:  # type: ignore[no-untyped-def]
    objs = render(values_file=values)
    s = chart_settings(objs, monkeypatch).model_copy(update={"k8s_poll_s": 0.05})
    # no object store answers here: the executor's job logs (UnitLog) give up at once instead
    # of retrying each write for store_retry_s (90 s by default, minutes of idle per run)
    monkeypatch.setenv("HURRICANE_STORE_RETRY_S", "0")
    monkeypatch.setenv("HURRICANE_S3_TIMEOUT_S", "1")
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)  # before the environment is restored
    measure = JobSpec("s-1", "profile", s.store, device="cpu", node_label="cpu")
    train = JobSpec("s-1", "stage1", s.store, nodes=2)
    trainjob = s.k8s_training_backend == "trainjob"
    with FakeKubeServer() as srv:
        k = srv.kube
        admitter = Admitter(k) if s.k8s_kueue.enabled else None
        m = job_name(measure)
        t = trainjob_name(train) if trainjob else job_name(train)
        k.job_status[m] = [{"active": 1}] * 40 + [condition("Complete")]  # reads while queued too
        k.pods[m] = [pod(f"{m}-a", "Running")]
        k.logs[f"{m}-a"] = ["hello"]
        k.job_status[t] = [{"active": 2}]
        k.pods[t] = [pod(f"{t}-0-a", "Pending")]
        k.events[f"{t}-0-a"] = [{"type": "Warning", "reason": "FailedScheduling", "message": "x"}]
        ex = KubernetesExecutor(settings=s, api_client=srv.client())
        ex.run(measure)  # configmaps create, jobs create/get, pods list, pods/log get
        ex.run(measure)  # adopted: configmaps get (409), jobs get (409)
        stop = threading.Event()
        # cancelled once the pending pod's events were read (after Kueue's admission on a slow
        # machine too), or after 30 s so that a regression fails on the Role, not by hanging
        deadline = time.monotonic() + 30

        def relayed() -> bool:
            return any(r.resource == "events" for r in k.requests) or time.monotonic() > deadline

        cancel = KubernetesExecutor(settings=s, api_client=srv.client(), cancelled=relayed)
        from hurricane.runs.contract import JobCancelled

        with pytest.raises(JobCancelled):
            cancel.run(train)  # services or trainjobs create, events list, delete
        cancel = KubernetesExecutor(settings=s, api_client=srv.client(), cancelled=stop.is_set)
        threading.Timer(1.0, stop.set).start()
        with pytest.raises(JobCancelled):  # a one-pod Job on the training pool: jobs delete
            cancel.run(JobSpec("s-1", "search1", s.store, device="cpu"))
        k.job_status[t] = [condition("Complete")]
        ex.run(train)  # created again after the cancel deleted it
        ex.run(train)  # get (409 → adopt)
        ex.delete_search("s-1")  # configmaps delete
        if admitter is not None:
            admitter.close()
        called = k.verbs()
    role = next(iter(of_kind(objs, "Role")))
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert called == granted, (called ^ granted)
    assert granted == required_rules(Cluster.from_settings(s))
    if trainjob:
        assert ("trainer.kubeflow.org", "trainjobs", "create") in called
        assert not any(r == "services" for _, r, _ in called)
    if s.k8s_kueue.enabled:
        assert ("kueue.x-k8s.io", "workloads", "list") in called


def test_workers_that_supervise_jobs_use_threads(gpu_objs) -> None:  # type: ignore[no-untyped-def]
    """A task of the Kubernetes executor waits on its Job: train and profile workers follow
    many at once in threads; control (finishing steps computes) keeps processes."""
    pools = {}
    for dep in of_kind(gpu_objs, "Deployment"):
        cmd = dep["spec"]["template"]["spec"]["containers"][0]["command"]
        if cmd[:2] == ["celery", "-A"] and "worker" in cmd:
            pools[cmd[cmd.index("-Q") + 1]] = cmd[cmd.index("-P") + 1]
    assert pools["control"] == "prefork" and pools["train"] == "threads"
    assert {q for q in pools if q.startswith("profile.")} == {"profile.cpu", "profile.dsp",
                                                              "profile.vpu"}
    assert all(pools[q] == "threads" for q in pools if q.startswith("profile."))

"""The Kubernetes executor: each job is a Kubernetes Job (training: an Indexed Job with a
headless Service for torchrun, or a Kubeflow Trainer TrainJob), created once (a retried task
adopts the object of the same name), followed (status, pod logs with progress lines relayed,
scheduling events) and deleted on cancel.

With Kueue (``settings.k8s_kueue.queue``) the objects are created suspended: while Kueue has not
admitted one (or has evicted it: preemption, quota reclaimed) the unit is ``queued`` with
Kueue's reason, read from the object's Workload; that is never a failure. An evicted training
job's pods get SIGTERM and checkpoint; re-admitted, it continues from the newest checkpoint.

It calls exactly (``required_rules``): jobs create/get/delete; pods list; pods/log get;
configmaps create/get/delete (the search's owner object); events list; with the ``job``
training backend services create/get/delete; with ``trainjob`` trainjobs create/get/delete;
with Kueue workloads list. The chart's Role grants only these.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hurricane import progress
from hurricane.operator.manifests import (
    CONTAINER,
    TRAINER_GROUP,
    TRAINER_NODE,
    TRAINER_VERSION,
    TRAINJOBS,
    Cluster,
    Manifest,
    job_name,
    manifests,
    owner_configmap,
)
from hurricane.runs.contract import JobCancelled, JobFailed, JobInvalid, JobSpec
from hurricane.runs.executor import BaseExecutor, ProgressRelay
from hurricane.runs.records import SearchPurged
from hurricane.runs.unitlog import UnitLog
from hurricane.settings import Settings, get_settings
from hurricane.storage.stores import open_store

log = logging.getLogger("hurricane.operator")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"  # a TrainJob's pods (through its JobSet)
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_JOB_UID = "kueue.x-k8s.io/job-uid"  # Kueue labels a workload with its job's uid
PENDING_REPORT_S = 20.0  # a pod pending this long gets its scheduling events relayed


def required_rules(cluster: Cluster) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every call the executor makes under these settings: the
    Role the chart renders for them (tests compare both with the calls seen)."""
    rules = {("batch", "jobs", v) for v in ("create", "get", "delete")}
    rules |= {("", "configmaps", v) for v in ("create", "get", "delete")}
    rules |= {("", "pods", "list"), ("", "pods/log", "get"), ("", "events", "list")}
    if cluster.training_backend == "trainjob":
        rules |= {(TRAINER_GROUP, TRAINJOBS, v) for v in ("create", "get", "delete")}
    else:
        rules |= {("", "services", v) for v in ("create", "get", "delete")}
    if cluster.kueue.enabled:
        rules.add((KUEUE_GROUP, "workloads", "list"))
    return rules


@dataclass(frozen=True)
class Outcome:
    """A finished Job: ``complete``, or failed with Kubernetes' reason."""

    complete: bool
    reason: str = ""
    message: str = ""


def job_outcome(job: dict[str, Any]) -> Outcome | None:
    """Maps a Job's (or TrainJob's) conditions onto an outcome (None: still running or
    waiting). A TrainJob reports Complete / Failed like a Job (Trainer v2's condition types)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return Outcome(True, c.get("reason", ""), c.get("message", ""))
        if c.get("type") in ("Failed", "FailureTarget"):
            return Outcome(False, c.get("reason", ""), c.get("message", ""))
    return None


def suspended(obj: dict[str, Any]) -> bool:
    """A Job or TrainJob that may not run now: created suspended for Kueue and not admitted
    yet, or suspended again by Kueue (evicted)."""
    return bool((obj.get("spec") or {}).get("suspend"))


def failure(job: JobSpec, outcome: Outcome, tail: str, kind: str = "Job") -> JobFailed:
    """BackoffLimitExceeded / DeadlineExceeded: the job failed; PodFailurePolicy: its pod
    exited with the invalid-input code (FailJob rule): final either way, named. A TrainJob's
    reasons come from its JobSet (e.g. FailedJobs) or the Trainer (DeadlineExceeded,
    TrainingRuntimeNotSupported)."""
    what = {"BackoffLimitExceeded": "its pods failed more often than the Job's backoffLimit",
            "DeadlineExceeded": f"it ran past the {kind}'s activeDeadlineSeconds",
            "PodFailurePolicy": "its pod refused the input (exit code 65)",
            "TrainingRuntimeNotSupported": "its TrainingRuntime is not supported by the Trainer"
            }.get(outcome.reason, f"it failed ({outcome.reason or 'no reason given'})")
    msg = f"Kubernetes {kind} {_name(job, kind)}: {what}: {outcome.message}\n{tail}".rstrip()
    if outcome.reason == "PodFailurePolicy":
        return JobInvalid(msg)
    return JobFailed(msg)


def _name(job: JobSpec, kind: str) -> str:
    from hurricane.operator.manifests import trainjob_name

    return trainjob_name(job) if kind == "TrainJob" else job_name(job)


def admission_reason(workloads: list[dict[str, Any]], queue: str, *, ran: bool) -> str:
    """Why a suspended job waits, from its Kueue Workload's conditions: evicted (preempted,
    quota reclaimed, …) or not admitted yet (Kueue's message: which quota is short)."""
    if not workloads:
        return (f"waiting for Kueue (LocalQueue {queue}): no Workload yet"
                + ("; evicted after it ran" if ran else ""))
    wl = max(workloads, key=lambda w: w["metadata"].get("creationTimestamp", ""))
    conds = {c.get("type"): c for c in (wl.get("status") or {}).get("conditions") or []}
    ev = conds.get("Evicted")
    if ev and ev.get("status") == "True":
        return (f"evicted by Kueue ({ev.get('reason') or 'no reason'}): "
                f"{ev.get('message', '')}; waiting to be admitted again (LocalQueue {queue})")
    qr = conds.get("QuotaReserved")
    if qr and qr.get("status") != "True":
        return f"waiting for quota (LocalQueue {queue}): {qr.get('message') or qr.get('reason')}"
    adm = conds.get("Admitted")
    if adm and adm.get("status") != "True":
        return (f"waiting for admission checks (LocalQueue {queue}): "
                f"{adm.get('message') or adm.get('reason')}")
    return f"admitted by Kueue (LocalQueue {queue}); starting"


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    keys = ("hurricane.io/search-id", "hurricane.io/step", "hurricane.io/device")
    return all(a.get(k) == b.get(k) for k in keys)


class KubernetesExecutor(BaseExecutor):
    """Runs jobs as Kubernetes Jobs (or TrainJobs) in ``settings.k8s_namespace``; created by
    name (``create_executor("kubernetes", ...)``: registered in hurricane.runs.executor)."""

    name = "kubernetes"
    poll_s: float

    def __init__(self, *, settings: Settings | None = None,
                 api_client: k8s.ApiClient | None = None,
                 cancelled: Callable[[], bool] | None = None, echo: bool = False,
                 poll_s: float | None = None) -> None:
        self.settings = settings or get_settings()
        super().__init__(cancelled=cancelled, echo=echo,
                         poll_s=poll_s or self.settings.k8s_poll_s)
        self.cluster = Cluster.from_settings(self.settings)
        if api_client is None:
            from kubernetes import config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = k8s.ApiClient()
        self.batch = k8s.BatchV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self._workloads_missing = False  # Kueue's Workload API of that version is not served

    # -- objects --------------------------------------------------------------------------

    def _json(self, resp: Any) -> dict[str, Any]:
        return json.loads(resp.data) if resp.data else {}  # type: ignore[no-any-return]

    def owner(self, search_id: str) -> dict[str, Any]:
        """The search's owner ConfigMap (created once; every Job of the search names it)."""
        body = owner_configmap(search_id, self.cluster)
        ns, name = self.cluster.namespace, body["metadata"]["name"]
        try:
            return self._json(self.core.create_namespaced_config_map(
                ns, body, _preload_content=False))
        except ApiException as err:
            if err.status != 409:
                raise
        return self._json(self.core.read_namespaced_config_map(name, ns, _preload_content=False))

    def _call(self, kind: str, verb: str, obj_or_name: Any) -> dict[str, Any]:
        """create / read / delete of a Job, Service or TrainJob (404 on delete is fine)."""
        ns = self.cluster.namespace
        if kind == "TrainJob":
            args = (TRAINER_GROUP, TRAINER_VERSION, ns, TRAINJOBS)
            if verb == "create":
                return self._json(self.custom.create_namespaced_custom_object(
                    *args, obj_or_name, _preload_content=False))
            if verb == "read":
                return self._json(self.custom.get_namespaced_custom_object(
                    *args, obj_or_name, _preload_content=False))
            return self._json(self.custom.delete_namespaced_custom_object(
                *args, obj_or_name, propagation_policy="Background", _preload_content=False))
        api, suffix = ((self.batch, "job") if kind == "Job" else (self.core, "service"))
        if verb == "create":
            return self._json(getattr(api, f"create_namespaced_{suffix}")(
                ns, obj_or_name, _preload_content=False))
        if verb == "read":
            return self._json(getattr(api, f"read_namespaced_{suffix}")(
                obj_or_name, ns, _preload_content=False))
        return self._json(getattr(api, f"delete_namespaced_{suffix}")(
            obj_or_name, ns, propagation_policy="Background", _preload_content=False))

    def _create(self, obj: Manifest) -> dict[str, Any]:
        """Creates ``obj``; an existing object of the same name and labels is adopted."""
        ns, name, kind = self.cluster.namespace, obj["metadata"]["name"], obj["kind"]
        try:
            return self._call(kind, "create", obj)
        except ApiException as err:
            if err.status != 409:
                raise
        found = self._call(kind, "read", name)
        if not _same(found.get("metadata", {}).get("labels") or {}, obj["metadata"]["labels"]):
            raise JobFailed(f"a {kind} named {name} exists in {ns} for other work; delete it "
                            "or choose another search id")
        log.info("adopting %s %s", kind, name)
        return found

    def _delete(self, objs: list[Manifest]) -> None:
        """Deletes the job's objects; the pods go with them (background propagation)."""
        for obj in reversed(objs):
            try:
                self._call(obj["kind"], "delete", obj["metadata"]["name"])
            except ApiException as err:
                if err.status != 404:
                    raise

    def delete_search(self, search_id: str) -> None:
        """Deletes the search's owner object: Kubernetes removes every Job it owns."""
        name = owner_configmap(search_id, self.cluster)["metadata"]["name"]
        try:
            self.core.delete_namespaced_config_map(name, self.cluster.namespace,
                                                   propagation_policy="Background",
                                                   _preload_content=False)
        except ApiException as err:
            if err.status != 404:
                raise

    # -- running ----------------------------------------------------------------------------

    def run(self, job: JobSpec) -> None:
        objs = manifests(job, self.cluster, self.owner(job.search_id))
        main = objs[-1]  # the Job or TrainJob whose status is the job's
        created = {}
        for obj in objs:
            created[obj["kind"]] = self._create(obj)
        if (done := job_outcome(created[main["kind"]])) is not None and not done.complete:
            # a failed Job of an earlier attempt (a resumed search): replace it
            log.info("%s %s failed before (%s): starting it again", main["kind"],
                     main["metadata"]["name"], done.reason)
            self._delete([main])
            self._wait_gone(main)
            self._create(main)
        self._follow(job, objs)

    def _wait_gone(self, obj: Manifest, timeout: float = 120.0) -> None:
        name = obj["metadata"]["name"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._call(obj["kind"], "read", name)
            except ApiException as err:
                if err.status == 404:
                    return
                raise
            time.sleep(self.poll_s)
        raise JobFailed(f"the failed {obj['kind']} {name} was not deleted within {timeout:.0f} s")

    def _follow(self, job: JobSpec, objs: list[Manifest]) -> None:
        main = objs[-1]
        kind, name = main["kind"], main["metadata"]["name"]
        selector = f"{JOBSET_NAME_LABEL if kind == 'TrainJob' else JOB_NAME_LABEL}={name}"
        container = TRAINER_NODE if kind == "TrainJob" else CONTAINER
        tail: deque[str] = deque(maxlen=40)
        # the output's tail for the API's log route, from the store the job writes to
        unit_log = UnitLog(lambda: open_store(job.store_url), job.search_id, job.name,
                           every_s=self.settings.job_heartbeat_s).start()
        reporter = unit_log.tee(progress.reporter())
        relay = ProgressRelay(reporter)
        streams: dict[str, threading.Thread] = {}
        reported: set[str] = set()
        phase, said, ran = "created", "", False
        ended: tuple[str, int | None] = ("failed", None)
        try:
            while True:
                if self._is_cancelled():
                    self._stop(objs, selector)
                    ended = ("cancelled", None)
                    raise JobCancelled(f"Kubernetes {kind} {name} deleted: the search was "
                                       "cancelled")
                try:
                    obj = self._call(kind, "read", name)
                except ApiException as err:
                    if err.status != 404:
                        raise
                    raise self._vanished(job, kind, name, "".join(tail)) from None
                outcome = job_outcome(obj)
                if outcome is not None:
                    for t in streams.values():
                        t.join(timeout=10)
                    if outcome.complete:
                        ended = ("succeeded", 0)
                        return
                    raise failure(job, outcome, "".join(tail), kind)
                if suspended(obj):
                    if phase == "running":  # evicted: its pods stop (and checkpoint)
                        relay.close()
                    reason = self._admission_reason(obj, ran=ran)
                    if (phase, said) != ("queued", reason):
                        progress.unit_state("queued", reason)
                        reporter.message(f"{kind} {name} queued: {reason}")
                    phase, said = "queued", reason
                else:
                    if phase == "queued":
                        progress.unit_state("running")
                        reporter.message(f"{kind} {name} admitted: running")
                    phase, ran = "running", True
                    self._watch_pods(selector, container, streams, reported, relay, tail,
                                     unit_log)
                time.sleep(self.poll_s)
        except SearchPurged:  # recording the unit's state was refused: the search was purged
            self._stop(objs, selector)
            raise
        finally:
            relay.close()
            unit_log.close(*ended)

    def _vanished(self, job: JobSpec, kind: str, name: str,
                  tail: str) -> JobFailed | JobCancelled:
        """The followed object is gone: the garbage collector removed it because the search's
        owner object was deleted (a purge: cancelled), or someone deleted it (failed)."""
        owner = owner_configmap(job.search_id, self.cluster)["metadata"]["name"]
        try:
            self.core.read_namespaced_config_map(owner, self.cluster.namespace,
                                                 _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return JobCancelled(f"Kubernetes {kind} {name} was removed with its search's "
                                    f"owner object {owner} (the search was purged)")
            raise
        return JobFailed(f"Kubernetes {kind} {name} was deleted while it ran (not by hurricane)"
                         f"\n{tail}".rstrip())

    def _stop(self, objs: list[Manifest], selector: str) -> None:
        """Deletes the job's objects, then waits (at most ``settings.stop_wait_s``) until its
        pods are gone: a cancel or purge goes on only once nothing of the job runs."""
        self._delete(objs)
        deadline = time.monotonic() + self.settings.stop_wait_s
        while True:
            pods = self._json(self.core.list_namespaced_pod(
                self.cluster.namespace, label_selector=selector,
                _preload_content=False)).get("items", [])
            live = [p["metadata"]["name"] for p in pods
                    if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            if not live:
                return
            if time.monotonic() >= deadline:
                log.warning("pods %s still run %.0f s after their job was deleted",
                            ", ".join(live), self.settings.stop_wait_s)
                return
            time.sleep(self.poll_s)

    def _admission_reason(self, obj: dict[str, Any], *, ran: bool) -> str:
        """Kueue's reason for a suspended object (its Workload's conditions)."""
        k = self.cluster.kueue
        if not k.enabled:
            return "suspended (spec.suspend is true) by someone other than hurricane"
        uid = obj.get("metadata", {}).get("uid", "")
        if self._workloads_missing or not uid:
            return admission_reason([], k.queue, ran=ran)
        try:
            found = self._json(self.custom.list_namespaced_custom_object(
                KUEUE_GROUP, k.api_version, self.cluster.namespace, "workloads",
                label_selector=f"{KUEUE_JOB_UID}={uid}", _preload_content=False))
        except ApiException as err:
            if err.status == 404:  # the cluster serves another version of Kueue's API
                log.warning("kueue.x-k8s.io/%s workloads are not served: set the Kueue API "
                            "version (chart value kueue.apiVersion); reasons stay generic",
                            k.api_version)
                self._workloads_missing = True
                return admission_reason([], k.queue, ran=ran)
            raise
        return admission_reason(found.get("items") or [], k.queue, ran=ran)

    def _watch_pods(self, selector: str, container: str, streams: dict[str, threading.Thread],
                    reported: set[str], relay: ProgressRelay, tail: deque[str],
                    unit_log: UnitLog | None = None) -> None:
        """Streams the logs of the job's leading pod (index 0, else the newest) once it runs;
        relays why a pod has been pending (scheduling events) once per reason."""
        ns = self.cluster.namespace
        pods = self._json(self.core.list_namespaced_pod(
            ns, label_selector=selector, _preload_content=False)).get("items", [])
        pods.sort(key=lambda p: ((p["metadata"].get("annotations") or {}).get(
            "batch.kubernetes.io/job-completion-index", "0"), p["metadata"].get("creationTimestamp", "")))
        for pod in pods:
            pname, phase = pod["metadata"]["name"], (pod.get("status") or {}).get("phase")
            if phase in ("Running", "Succeeded", "Failed") and pname not in streams \
                    and not any(t.is_alive() for t in streams.values()):
                t = threading.Thread(target=self._stream_log,
                                     args=(pname, container, relay, tail, unit_log),
                                     name=f"log-{pname}", daemon=True)
                streams[pname] = t
                t.start()
            elif phase == "Pending" and _age_s(pod) > PENDING_REPORT_S:
                if pname not in reported:
                    reported.add(pname)
                    events = self._json(self.core.list_namespaced_event(
                        ns, field_selector=f"involvedObject.name={pname}", _preload_content=False))
                    for ev in (events.get("items") or [])[-3:]:
                        if ev.get("type") == "Warning":
                            relay.reporter.message(f"pod {pname} pending: {ev.get('reason')}: "
                                                   f"{ev.get('message')}")
                # a container the node cannot start (a Secret or ConfigMap missing, an image
                # that cannot be pulled): Kubernetes waits for it to be fixed; say why, once
                for name, reason, msg in waiting_containers(pod):
                    if f"{pname}/{name}/{reason}" not in reported:
                        reported.add(f"{pname}/{name}/{reason}")
                        relay.reporter.message(f"pod {pname} pending: container {name}: "
                                               f"{reason}: {msg}")

    def _stream_log(self, pod: str, container: str, relay: ProgressRelay,
                    tail: deque[str], unit_log: UnitLog | None = None) -> None:
        try:
            resp = self.core.read_namespaced_pod_log(pod, self.cluster.namespace,
                                                     container=container, follow=True,
                                                     _preload_content=False)
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self.relay_line(raw.decode(errors="replace") + "\n", relay, tail, unit_log)
            if buf:
                self.relay_line(buf.decode(errors="replace") + "\n", relay, tail, unit_log)
        except Exception as err:  # a log stream is best effort: the Job's status decides
            log.warning("log stream of pod %s ended: %s", pod, err)

STARTING = ("ContainerCreating", "PodInitializing")


def waiting_containers(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(container, reason, message) of each container that waits for something other than
    its start (CreateContainerConfigError, ImagePullBackOff, CrashLoopBackOff, ...)."""
    st = pod.get("status") or {}
    out = []
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        w = (cs.get("state") or {}).get("waiting") or {}
        if w.get("reason") and w["reason"] not in STARTING:
            out.append((cs.get("name", ""), w["reason"], w.get("message", "")))
    return out


def _age_s(pod: dict[str, Any]) -> float:
    import datetime as dt

    stamp = pod["metadata"].get("creationTimestamp")
    if not stamp:
        return 0.0
    return time.time() - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

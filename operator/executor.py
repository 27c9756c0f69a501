"""The Kubernetes executor: each job is a Kubernetes Job (an Indexed Job with a headless Service
for torchrun training), created once (a retried task adopts the Job of the same name), followed
(status, pod logs with progress lines relayed, scheduling events) and deleted on cancel.

It calls exactly: jobs create/get/delete; pods list; pods/log get; services create/get/delete;
configmaps create/get/delete (the search's owner object); events list. The chart's Role grants
only these.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hurricane import progress
from hurricane.contract import JobCancelled, JobFailed, JobInvalid, JobSpec
from hurricane.executor import PROGRESS_PREFIX, ProgressRelay
from hurricane.operator.manifests import (
    CONTAINER,
    Cluster,
    Manifest,
    job_name,
    manifests,
    owner_configmap,
)
from hurricane.settings import Settings, get_settings

log = logging.getLogger("hurricane.operator")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
PENDING_REPORT_S = 20.0  # a pod pending this long gets its scheduling events relayed


@dataclass(frozen=True)
class Outcome:
    """A finished Job: ``complete``, or failed with Kubernetes' reason."""

    complete: bool
    reason: str = ""
    message: str = ""


def job_outcome(job: dict[str, Any]) -> Outcome | None:
    """Maps a Job's conditions onto an outcome (None: still running or waiting)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") != "True":
            continue
        if c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return Outcome(True, c.get("reason", ""), c.get("message", ""))
        if c.get("type") in ("Failed", "FailureTarget"):
            return Outcome(False, c.get("reason", ""), c.get("message", ""))
    return None


def failure(job: JobSpec, outcome: Outcome, tail: str) -> JobFailed:
    """BackoffLimitExceeded / DeadlineExceeded: the job failed; PodFailurePolicy: its pod
    exited with the invalid-input code (FailJob rule): final either way, named."""
    what = {"BackoffLimitExceeded": "its pods failed more often than the Job's backoffLimit",
            "DeadlineExceeded": "it ran past the Job's activeDeadlineSeconds",
            "PodFailurePolicy": "its pod refused the input (exit code 65)"}.get(
                outcome.reason, f"it failed ({outcome.reason or 'no reason given'})")
    msg = f"Kubernetes Job {job_name(job)}: {what}: {outcome.message}\n{tail}".rstrip()
    if outcome.reason == "PodFailurePolicy":
        return JobInvalid(msg)
    return JobFailed(msg)


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    keys = ("hurricane.io/search-id", "hurricane.io/step", "hurricane.io/device")
    return all(a.get(k) == b.get(k) for k in keys)


class KubernetesExecutor:
    """Runs jobs as Kubernetes Jobs in ``settings.k8s_namespace``."""

    name = "kubernetes"

    def __init__(self, *, settings: Settings | None = None,
                 api_client: k8s.ApiClient | None = None,
                 cancelled: Callable[[], bool] | None = None, echo: bool = False,
                 poll_s: float | None = None) -> None:
        self.settings = settings or get_settings()
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
        self.cancelled = cancelled
        self.echo = echo
        self.poll_s = poll_s or self.settings.k8s_poll_s

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

    def _create(self, obj: Manifest) -> dict[str, Any]:
        """Creates ``obj``; an existing object of the same name and labels is adopted."""
        ns, name, kind = self.cluster.namespace, obj["metadata"]["name"], obj["kind"]
        create, read = ((self.batch.create_namespaced_job, self.batch.read_namespaced_job)
                        if kind == "Job" else
                        (self.core.create_namespaced_service, self.core.read_namespaced_service))
        try:
            return self._json(create(ns, obj, _preload_content=False))
        except ApiException as err:
            if err.status != 409:
                raise
        found = self._json(read(name, ns, _preload_content=False))
        if not _same(found.get("metadata", {}).get("labels") or {}, obj["metadata"]["labels"]):
            raise JobFailed(f"a {kind} named {name} exists in {ns} for other work; delete it "
                            "or choose another search id")
        log.info("adopting %s %s", kind, name)
        return found

    def _delete(self, objs: list[Manifest]) -> None:
        """Deletes the job's objects; the Job's pods go with it (background propagation)."""
        ns = self.cluster.namespace
        for obj in reversed(objs):
            name = obj["metadata"]["name"]
            delete = (self.batch.delete_namespaced_job if obj["kind"] == "Job"
                      else self.core.delete_namespaced_service)
            try:
                delete(name, ns, propagation_policy="Background", _preload_content=False)
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
        created = {}
        for obj in objs:
            created[obj["kind"]] = self._create(obj)
        if (done := job_outcome(created["Job"])) is not None and not done.complete:
            # a failed Job of an earlier attempt (a resumed search): replace it
            log.info("Job %s failed before (%s): starting it again", job_name(job), done.reason)
            self._delete([o for o in objs if o["kind"] == "Job"])
            self._wait_gone(job_name(job))
            self._create(objs[-1])
        self._follow(job, objs)

    def _wait_gone(self, name: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.batch.read_namespaced_job(name, self.cluster.namespace,
                                               _preload_content=False)
            except ApiException as err:
                if err.status == 404:
                    return
                raise
            time.sleep(self.poll_s)
        raise JobFailed(f"the failed Job {name} was not deleted within {timeout:.0f} s")

    def _is_cancelled(self) -> bool:
        if self.cancelled is None:
            return False
        try:
            return self.cancelled()
        except Exception:  # an unreachable store is not a cancellation
            return False

    def _follow(self, job: JobSpec, objs: list[Manifest]) -> None:
        name, ns = job_name(job), self.cluster.namespace
        tail: deque[str] = deque(maxlen=40)
        relay = ProgressRelay(progress.reporter())
        streams: dict[str, threading.Thread] = {}
        reported: set[str] = set()
        try:
            while True:
                if self._is_cancelled():
                    self._delete(objs)
                    raise JobCancelled(f"Kubernetes Job {name} deleted: the search was cancelled")
                outcome = job_outcome(self._json(self.batch.read_namespaced_job(
                    name, ns, _preload_content=False)))
                if outcome is not None:
                    for t in streams.values():
                        t.join(timeout=10)
                    if outcome.complete:
                        return
                    raise failure(job, outcome, "".join(tail))
                self._watch_pods(name, streams, reported, relay, tail)
                time.sleep(self.poll_s)
        finally:
            relay.close()

    def _watch_pods(self, name: str, streams: dict[str, threading.Thread], reported: set[str],
                    relay: ProgressRelay, tail: deque[str]) -> None:
        """Streams the logs of the job's leading pod (index 0, else the newest) once it runs;
        relays why a pod has been pending (scheduling events) once per reason."""
        ns = self.cluster.namespace
        pods = self._json(self.core.list_namespaced_pod(
            ns, label_selector=f"{JOB_NAME_LABEL}={name}", _preload_content=False)).get("items", [])
        pods.sort(key=lambda p: ((p["metadata"].get("annotations") or {}).get(
            "batch.kubernetes.io/job-completion-index", "0"), p["metadata"].get("creationTimestamp", "")))
        for pod in pods:
            pname, phase = pod["metadata"]["name"], (pod.get("status") or {}).get("phase")
            if phase in ("Running", "Succeeded", "Failed") and pname not in streams \
                    and not any(t.is_alive() for t in streams.values()):
                t = threading.Thread(target=self._stream_log, args=(pname, relay, tail),
                                     name=f"log-{pname}", daemon=True)
                streams[pname] = t
                t.start()
            elif phase == "Pending" and pname not in reported and _age_s(pod) > PENDING_REPORT_S:
                reported.add(pname)
                events = self._json(self.core.list_namespaced_event(
                    ns, field_selector=f"involvedObject.name={pname}", _preload_content=False))
                for ev in (events.get("items") or [])[-3:]:
                    if ev.get("type") == "Warning":
                        relay.reporter.message(f"pod {pname} pending: {ev.get('reason')}: "
                                               f"{ev.get('message')}")

    def _stream_log(self, pod: str, relay: ProgressRelay, tail: deque[str]) -> None:
        try:
            resp = self.core.read_namespaced_pod_log(pod, self.cluster.namespace,
                                                     container=CONTAINER, follow=True,
                                                     _preload_content=False)
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    self._line(raw.decode(errors="replace"), relay, tail)
            if buf:
                self._line(buf.decode(errors="replace"), relay, tail)
        except Exception as err:  # a log stream is best effort: the Job's status decides
            log.warning("log stream of pod %s ended: %s", pod, err)

    def _line(self, line: str, relay: ProgressRelay, tail: deque[str]) -> None:
        if line.startswith(PROGRESS_PREFIX):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                relay.handle(json.loads(line[len(PROGRESS_PREFIX):]))
            return
        tail.append(line + "\n")
        if self.echo:
            sys.stderr.write(line + "\n")


def _age_s(pod: dict[str, Any]) -> float:
    import datetime as dt

    stamp = pod["metadata"].get("creationTimestamp")
    if not stamp:
        return 0.0
    return time.time() - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

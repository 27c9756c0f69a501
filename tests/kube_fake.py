"""A scripted Kubernetes API server on a free loopback port: the executor's real client talks
HTTP to it, and every request is recorded (method, path, query, JSON body) for the tests to
assert. Objects live in memory; a Job's status follows a script, one entry per read."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s

ROUTES = [  # (method, pattern, kind, verb)
    ("POST", r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs", "jobs", "create"),
    ("GET", r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)", "jobs", "get"),
    ("DELETE", r"/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)", "jobs", "delete"),
    ("POST", r"/api/v1/namespaces/(?P<ns>[^/]+)/services", "services", "create"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)", "services", "get"),
    ("DELETE", r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<name>[^/]+)", "services", "delete"),
    ("POST", r"/api/v1/namespaces/(?P<ns>[^/]+)/configmaps", "configmaps", "create"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)", "configmaps", "get"),
    ("DELETE", r"/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)", "configmaps",
     "delete"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods", "pods", "list"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log", "pods/log", "get"),
    ("GET", r"/api/v1/namespaces/(?P<ns>[^/]+)/events", "events", "list"),
    ("POST", r"/apis/trainer.kubeflow.org/v1alpha1/namespaces/(?P<ns>[^/]+)/trainjobs",
     "trainjobs", "create"),
    ("GET", r"/apis/trainer.kubeflow.org/v1alpha1/namespaces/(?P<ns>[^/]+)/trainjobs/(?P<name>[^/]+)",
     "trainjobs", "get"),
    ("DELETE",
     r"/apis/trainer.kubeflow.org/v1alpha1/namespaces/(?P<ns>[^/]+)/trainjobs/(?P<name>[^/]+)",
     "trainjobs", "delete"),
    ("GET", r"/apis/kueue.x-k8s.io/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/workloads",
     "workloads", "list"),
]
GROUPS = {"jobs": "batch", "trainjobs": "trainer.kubeflow.org", "workloads": "kueue.x-k8s.io"}
KINDS = {"jobs": "Job", "services": "Service", "configmaps": "ConfigMap", "trainjobs": "TrainJob"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    resource: str = ""
    verb: str = ""


@dataclass
class FakeKube:
    """The cluster's state and the requests it saw."""

    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, name)
    job_status: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # script per Job
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per Job name
    logs: dict[str, list[str]] = field(default_factory=dict)  # per pod
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per pod
    # Kueue Workloads per job uid; None: the workloads API of that version is not served
    workloads: dict[str, list[dict[str, Any]]] | None = field(default_factory=dict)
    kueue_version: str = "v1beta2"
    lock: threading.Lock = field(default_factory=threading.Lock)
    kubelet: Any = None  # a LocalKubelet runs the pods of Jobs as local processes

    def obj(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]

    def uid(self, kind: str, name: str) -> str:
        return str(self.objects[(kind, name)]["metadata"]["uid"])

    def set_suspend(self, kind: str, name: str, suspend: bool) -> None:
        """What Kueue does: admit (False) or evict (True) a workload."""
        with self.lock:
            self.objects[(kind, name)]["spec"]["suspend"] = suspend

    def verbs(self) -> set[tuple[str, str, str]]:
        """(apiGroup, resource, verb) of every request seen: what an RBAC Role must allow."""
        return {(GROUPS.get(r.resource, ""), r.resource, r.verb) for r in self.requests}

    def seen(self, method: str, resource: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.resource == resource]


def condition(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"conditions": [{"type": kind, "status": "True", "reason": reason,
                            "message": message}]}


def pod(name: str, phase: str, *, index: int = 0, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
            "status": {"phase": phase}}


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube

    def log_message(self, *a: Any) -> None:
        pass

    def _send(self, code: int, body: Any = None, *, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "code": code})

    def _handle(self) -> None:
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        req = Request(self.command, url.path, query, body)
        for method, pattern, resource, verb in ROUTES:
            m = re.fullmatch(pattern, url.path)
            if m and method == self.command:
                req.resource, req.verb = resource, verb
                break
        else:
            self.kube.requests.append(req)
            self._status(404, "NotFound")
            return
        self.kube.requests.append(req)
        k = self.kube
        kind = KINDS.get(resource)
        name = m.groupdict().get("name")
        if k.kubelet is not None and resource == "pods/log":
            k.kubelet.serve_log(self, name or "", query.get("follow") == "True")
            return
        with k.lock:
            if verb == "create" and kind:
                key = (kind, body["metadata"]["name"])
                if key in k.objects:
                    self._status(409, "AlreadyExists")
                    return
                obj = json.loads(json.dumps(body))
                obj["metadata"]["uid"] = str(uuid.uuid4())
                obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
                k.objects[key] = obj
                self._send(201, obj)
            elif verb == "get" and kind:
                obj = k.objects.get((kind, name or ""))
                if obj is None:
                    self._status(404, "NotFound")
                    return
                if kind in ("Job", "TrainJob"):
                    script = k.job_status.get(name or "", [])
                    if script:
                        obj["status"] = script.pop(0) if len(script) > 1 else script[0]
                    elif k.kubelet is not None:
                        obj["status"] = k.kubelet.status(name or "")
                self._send(200, obj)
            elif verb == "delete" and kind:
                if k.objects.pop((kind, name or ""), None) is None:
                    self._status(404, "NotFound")
                    return
                if kind in ("Job", "TrainJob"):
                    k.pods.pop(name or "", None)  # the garbage collector deletes its pods
                self._send(200, {"kind": "Status", "status": "Success"})
            elif resource == "pods":
                job = query.get("labelSelector", "").split("=", 1)[-1]
                items = k.kubelet.pods(job) if k.kubelet is not None else k.pods.get(job, [])
                self._send(200, {"kind": "PodList", "items": items})
            elif resource == "workloads":
                if k.workloads is None or m.group("version") != k.kueue_version:
                    self._status(404, "NotFound")
                    return
                uid = query.get("labelSelector", "").split("=", 1)[-1]
                self._send(200, {"kind": "WorkloadList", "items": k.workloads.get(uid, [])})
            elif resource == "pods/log":
                lines = k.logs.get(name or "", [])
                self._send(200, raw=("\n".join(lines) + "\n").encode())
            elif resource == "events":
                who = query.get("fieldSelector", "").split("=", 1)[-1]
                self._send(200, {"kind": "EventList", "items": k.events.get(who, [])})

    do_GET = do_POST = do_DELETE = _handle


class FakeKubeServer:
    """The fake API server in a thread; ``client()`` is a real kubernetes ApiClient for it."""

    def __init__(self) -> None:
        self.kube = FakeKube()
        handler = type("Handler", (_Handler,), {"kube": self.kube})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeKubeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def client(self) -> k8s.ApiClient:
        cfg = k8s.Configuration(host=f"http://127.0.0.1:{self.httpd.server_address[1]}")
        return k8s.ApiClient(cfg)


class LocalKubelet:
    """Runs the pods of the fake cluster's Jobs as local processes, the way a node would run
    the pod spec the operator built: its container's command (``python`` is this
    interpreter; torchrun's rendezvous host becomes 127.0.0.1 on a free port) and environment
    (``$(VAR)`` expanded, completion index 0, envFrom from ``env_from``, each volume mount a
    directory under ``root``, paths in values mapped with it). A Job that is not suspended gets
    a pod; suspending it (Kueue evicting it) sends the pod SIGTERM, as the Job controller does
    when it deletes the pods of a suspended Job, and its end is not a failure; a Job's status
    follows its pod: Complete on exit 0, Failed otherwise. Deleting a Job deletes its pod as
    the garbage collector does: SIGTERM, SIGKILL after the grace period, and the pod is no
    longer listed once its process has ended. Logs are served while they grow."""

    def __init__(self, kube: FakeKube, root: Any, env_from: dict[str, dict[str, str]] | None = None,
                 grace_s: float = 30.0) -> None:
        import subprocess

        self.kube, self.root, self.env_from, self.grace_s = kube, root, env_from or {}, grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # Job -> its current pod's process
        self.pod_of: dict[str, str] = {}  # Job -> current pod name
        self.logs: dict[str, list[str]] = {}  # pod -> lines so far
        self.ended: dict[str, int] = {}  # pod -> exit code
        self.outcome: dict[str, dict[str, Any]] = {}  # Job -> final status
        self.terminated: dict[str, float] = {}  # Job -> when SIGTERM was sent
        self.deleted: dict[str, float] = {}  # Job deleted -> when its pod got SIGTERM
        self.started = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="kubelet")
        kube.kubelet = self
        self.thread.start()

    # -- what the API server reports ------------------------------------------------------

    def status(self, job: str) -> dict[str, Any]:
        if job in self.outcome:
            return self.outcome[job]
        obj = self.kube.objects.get(("Job", job), {})
        if (obj.get("spec") or {}).get("suspend"):
            return {"active": 0, "conditions": [{"type": "Suspended", "status": "True",
                                                 "reason": "JobSuspended"}]}
        proc = self.procs.get(job)
        return {"active": int(proc is not None and proc.poll() is None)}

    def pods(self, job: str) -> list[dict[str, Any]]:
        name = self.pod_of.get(job)
        if name is None or (job in self.deleted and name in self.ended):
            return []
        phase = ("Running" if name not in self.ended
                 else "Succeeded" if self.ended[name] == 0 else "Failed")
        return [pod(name, phase)]

    def serve_log(self, handler: BaseHTTPRequestHandler, pod_name: str, follow: bool) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()  # HTTP/1.0: the body ends when the connection closes
        sent = 0
        while True:
            lines = self.logs.get(pod_name, [])
            while sent < len(lines):
                handler.wfile.write((lines[sent] + "\n").encode())
                sent += 1
            handler.wfile.flush()
            if not follow or pod_name in self.ended or self.stop.is_set():
                if sent >= len(self.logs.get(pod_name, [])):
                    return
            else:
                time.sleep(0.05)

    # -- the node ---------------------------------------------------------------------------

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def _loop(self) -> None:
        while not self.stop.is_set():
            with self.kube.lock:
                jobs = {name: obj for (kind, name), obj in self.kube.objects.items()
                        if kind == "Job"}
            for name, proc in list(self.procs.items()):
                if name not in jobs and proc.poll() is None:  # deleted: its pod goes too
                    if name not in self.deleted:
                        self.deleted[name] = time.monotonic()
                        proc.terminate()
                    elif time.monotonic() - self.deleted[name] > self.grace_s:
                        proc.kill()
            for name, obj in jobs.items():
                if name in self.outcome:
                    continue
                self._reconcile(name, obj)
            time.sleep(0.05)

    def _reconcile(self, name: str, obj: dict[str, Any]) -> None:
        import signal

        proc = self.procs.get(name)
        suspended = bool((obj.get("spec") or {}).get("suspend"))
        running = proc is not None and proc.poll() is None
        if suspended:
            if running and name not in self.terminated:
                self.terminated[name] = time.monotonic()
                proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            elif running and time.monotonic() - self.terminated[name] > self.grace_s:
                proc.kill()  # type: ignore[union-attr]
            return
        if proc is not None and not running and name not in self.terminated:
            code = proc.returncode
            self.outcome[name] = ({"succeeded": 1, "conditions": [
                {"type": "Complete", "status": "True", "reason": "", "message": ""}]}
                if code == 0 else {"failed": 1, "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                     "message": f"the pod exited with {code}"}]})
            return
        if not running:
            self.terminated.pop(name, None)
            self._start(name, obj)

    def _start(self, name: str, obj: dict[str, Any]) -> None:
        import os
        import socket
        import subprocess
        import sys
        from pathlib import Path

        spec = obj["spec"]["template"]["spec"]
        c = spec["containers"][0]
        mounts = {m["mountPath"]: str(Path(self.root) / name / m["name"])
                  for m in c.get("volumeMounts", []) if m["mountPath"] != "/dev/shm"}
        for d in mounts.values():
            Path(d).mkdir(parents=True, exist_ok=True)

        def local(value: str) -> str:
            for path, d in mounts.items():
                if value == path or value.startswith(path + "/"):
                    return d + value[len(path):]
            return value

        env = dict(os.environ)
        for ref in c.get("envFrom", []):
            src = ref.get("configMapRef") or ref.get("secretRef") or {}
            env.update(self.env_from.get(src.get("name", ""), {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = local(re.sub(r"\$\((\w+)\)", lambda mt: env.get(mt.group(1), ""),
                                              e["value"]))
            elif "job-completion-index" in json.dumps(e.get("valueFrom", {})):
                env[e["name"]] = "0"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = []
        for a in c["command"]:
            a = re.sub(r"\$\((\w+)\)", lambda mt: env.get(mt.group(1), ""), a)
            if a.startswith("--rdzv-endpoint="):
                a = f"--rdzv-endpoint=127.0.0.1:{port}"
            cmd.append(local(a))
        if cmd[0] == "python":
            cmd[0] = sys.executable
        self.started += 1
        self.deleted.pop(name, None)
        pod_name = f"{name}-0-{self.started:05d}"
        self.pod_of[name] = pod_name
        self.logs[pod_name] = []
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        threading.Thread(target=self._read, args=(pod_name, proc), daemon=True).start()

    def _read(self, pod_name: str, proc: Any) -> None:
        for raw in proc.stdout:
            self.logs[pod_name].append(raw.decode(errors="replace").rstrip("\n"))
        self.ended[pod_name] = proc.wait()

"""A scripted Kubernetes API server on a free loopback port: the executor's real client talks
HTTP to it, and every request is recorded (method, path, query, JSON body) for the tests to
assert. Objects live in memory; a Job's status follows a script, one entry per read."""

from __future__ import annotations

import json
import re
import threading
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
]
GROUPS = {"jobs": "batch"}


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
    lock: threading.Lock = field(default_factory=threading.Lock)

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
        kind = {"jobs": "Job", "services": "Service", "configmaps": "ConfigMap"}.get(resource)
        name = m.groupdict().get("name")
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
                if kind == "Job":
                    script = k.job_status.get(name or "", [])
                    if script:
                        obj["status"] = script.pop(0) if len(script) > 1 else script[0]
                self._send(200, obj)
            elif verb == "delete" and kind:
                if k.objects.pop((kind, name or ""), None) is None:
                    self._status(404, "NotFound")
                    return
                self._send(200, {"kind": "Status", "status": "Success"})
            elif resource == "pods":
                job = query.get("labelSelector", "").split("=", 1)[-1]
                self._send(200, {"kind": "PodList", "items": k.pods.get(job, [])})
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

"""The node agent: Kubernetes nodes without a container runtime. It registers Node objects (the
device pools' and the training pool's labels, taints and capacity, extended resources
included) on a real API server and runs the pods the real scheduler binds to them as local
processes, the way a kubelet runs containers:

- each node talks to the API server as itself (``system:node:<name>``, a client certificate),
  so the Node authorizer and NodeRestriction apply: it reads only the ConfigMaps, Secrets and
  ServiceAccount tokens of its own pods and writes only their status;
- a container's command and args, with ``$(VAR)`` expanded, its env (values, fieldRef,
  resourceFieldRef, configMapKeyRef, secretKeyRef) and envFrom, resolved through the API;
  ``python`` is this interpreter, and other commands (``celery``, ``uvicorn``) are looked up in
  its folder first, which stands for the image; an image is never pulled;
- volumes are directories under the agent's root: emptyDir (per pod), persistentVolumeClaim
  (the bound PersistentVolume's hostPath or local path, else one folder per claim), configMap,
  secret, downwardAPI and projected ones (the ServiceAccount token from the TokenRequest API);
  mount paths in command, args and env values are mapped onto them; a pod whose token is
  mounted gets ``KUBECONFIG`` naming that token, since the in-cluster path cannot be mounted;
- init containers one after another, then the containers; restartPolicy Never, OnFailure and
  Always (with backoff); readiness probes (exec, httpGet, tcpSocket);
- pod phase, conditions and container states with exit codes go to ``pods/status``;
- a deleted pod's processes get SIGTERM, SIGKILL after its grace period, then the pod is
  removed with grace 0, as the kubelet does;
- a Lease per node in ``kube-node-lease`` and the Ready condition keep nodes healthy;
- the kubelet's log endpoint (``/containerLogs/...``, TLS, the API server's client
  certificate required), so that ``pods/log`` through the API server works, follow included.

Not reproduced: images, securityContext (users, read-only roots), container isolation (every
pod shares this machine's network, PID and file namespaces; a pod's IP is the machine's primary
address), cgroup limits and OOM kills, liveness and startup probes, ``exec``, ``attach``,
``port-forward``, static pods, eviction on node pressure, volume plugins other than those above,
NetworkPolicies, Services (no kube-proxy) and DNS (a headless Service's pod hostnames in
torchrun's ``--rdzv-endpoint`` and in env values such as a JobSet's ``PET_MASTER_ADDR`` become
127.0.0.1, and the master port a port kept per subdomain).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("hurricane.nodeagent")
LEASE_S = 40
RENEW_S = 10.0
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "TZ",
            "OMP_NUM_THREADS")


def pod_ip() -> str:
    """This machine's primary IPv4 address: every pod's IP (pods share the machine's network;
    the API server refuses loopback addresses in Endpoints and EndpointSlices). 127.0.0.1 on
    a machine without another address."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the route
        return str(s.getsockname()[0])
    return "127.0.0.1"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeSpec:
    """A node to register: labels, taints and capacity (extended resources included)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    capacity: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NodeSpec:
        """``name:label=value,...:key=value:Effect,...:cpu=4,nvidia.com/gpu=1`` (CLI form), or
        JSON ``{"name": …, "labels": {…}, "taints": [...], "capacity": {…}}``."""
        if text.lstrip().startswith("{"):
            d = json.loads(text)
            return cls(d["name"], dict(d.get("labels", {})), tuple(d.get("taints", ())),
                       dict(d.get("capacity", {})))
        parts = [*text.split(":"), "", "", ""][:4]

        def pairs(s: str) -> dict[str, str]:
            return dict(kv.split("=", 1) for kv in s.split(",") if kv)

        labels, caps = pairs(parts[1]), pairs(parts[3])
        taints = []
        for t in filter(None, parts[2].split(",")):  # key~value=Effect
            kv, effect = t.rsplit("=", 1)
            key, _, value = kv.partition("~")
            taints.append({"key": key, "value": value, "effect": effect})
        return cls(parts[0], labels, tuple(taints), caps)

    def node(self, port: int) -> dict[str, Any]:
        cap = {"cpu": "4", "memory": "16Gi", "pods": "32", "ephemeral-storage": "100Gi",
               **self.capacity}
        labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", **self.labels}
        return {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": labels,
                             "annotations": {"hurricane.io/node-agent": "true"}},
                "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
                "status": {"capacity": cap, "allocatable": cap, **node_status(port)}}


def node_status(port: int) -> dict[str, Any]:
    t = now()
    return {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": socket.gethostname()}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"kubeletVersion": "hurricane-node-agent", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "hurricane://processes",
                         "osImage": "local processes", "kernelVersion": os.uname().release,
                         "machineID": "", "systemUUID": "", "bootID": ""},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "hurricane node agent is posting ready status",
                 "lastHeartbeatTime": t, "lastTransitionTime": t},
                *({"type": c, "status": "False", "reason": f"KubeletHas{r}",
                   "message": m, "lastHeartbeatTime": t, "lastTransitionTime": t}
                  for c, r, m in (("MemoryPressure", "SufficientMemory", "no memory pressure"),
                                  ("DiskPressure", "NoDiskPressure", "no disk pressure"),
                                  ("PIDPressure", "SufficientPID", "no PID pressure")))]}


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` references (unknown ones stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                  value)


# -- one container ------------------------------------------------------------------------------


@dataclass
class Container:
    name: str
    spec: dict[str, Any]
    init: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    restarts: int = 0
    last: dict[str, Any] | None = None  # lastState.terminated
    exit_code: int | None = None
    finished_at: str = ""
    ready: bool = False
    next_start: float = 0.0
    waiting: tuple[str, str] | None = None  # (reason, message)
    log: Path | None = None
    probe_at: float = 0.0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reason(self) -> str:
        """The terminated state's reason: StartError when the process never started (exit 128,
        as containerd reports it), else Completed or Error."""
        if self.proc is None and self.exit_code == 128:
            return "StartError"
        return "Completed" if self.exit_code == 0 else "Error"

    def status(self) -> dict[str, Any]:
        cid = f"hurricane://{self.proc.pid}" if self.proc is not None else ""
        st: dict[str, Any] = {"name": self.name, "image": self.spec.get("image", ""),
                              "imageID": "", "restartCount": self.restarts,
                              "ready": self.ready, "started": self.running()}
        if cid:
            st["containerID"] = cid
        if self.running():
            st["state"] = {"running": {"startedAt": self.started_at}}
        elif self.exit_code is not None:
            st["state"] = {"terminated": {
                "exitCode": self.exit_code, "startedAt": self.started_at or None,
                "finishedAt": self.finished_at, "reason": self.reason(), "containerID": cid}}
        else:
            reason, msg = self.waiting or ("ContainerCreating", "")
            st["state"] = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        if self.last:
            st["lastState"] = {"terminated": self.last}
        return st


# a Service's in-cluster name: <service>.<namespace>.svc[.cluster.local][:port]
SERVICE_HOST = re.compile(r"(?<![\w.-])(?P<svc>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\."
                          r"(?P<ns>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)\.svc(?:\.cluster\.local)?"
                          r"(?![\w-])(?::(?P<port>\d+))?")


class EnvError(Exception):
    """A container's configuration cannot be resolved yet (CreateContainerConfigError)."""


# -- one pod --------------------------------------------------------------------------------------


class Pod:
    """A pod bound to one of the agent's nodes, its containers as processes."""

    def __init__(self, agent: NodeAgent, node: str, obj: dict[str, Any]) -> None:
        self.agent, self.node, self.obj = agent, node, obj
        md = obj["metadata"]
        self.ns, self.name, self.uid = md["namespace"], md["name"], md["uid"]
        self.dir = agent.root / "pods" / self.uid
        spec = obj["spec"]
        self.init = [Container(c["name"], c, init=True) for c in spec.get("initContainers", [])]
        self.containers = [Container(c["name"], c) for c in spec.get("containers", [])]
        self.restart = spec.get("restartPolicy", "Always")
        self.mounts: dict[str, dict[str, str]] = {}  # container -> mountPath -> local dir
        self.prepared = False
        self.phase = "Pending"
        self.start_time = ""
        self.deleting_since: float | None = None
        self.killed = False
        self.done = False  # removed from the API server
        self.last_sent = ""
        self.status_retry_at, self.status_failures = 0.0, 0
        self.lock = threading.RLock()
        self.kubeconfig: Path | None = None

    @property
    def client(self) -> k8s.CoreV1Api:
        return self.agent.core[self.node]

    def key(self) -> str:
        return f"{self.ns}/{self.name}"

    # volumes and env --------------------------------------------------------------------------

    def _get(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        try:
            if kind == "configmap":
                obj = self.client.read_namespaced_config_map(name, self.ns)
                data = dict(obj.data or {})
                data.update({k: base64.b64decode(v).decode(errors="replace")
                             for k, v in (obj.binary_data or {}).items()})
                return data
            sec = self.client.read_namespaced_secret(name, self.ns)
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (sec.data or {}).items()}
        except ApiException as err:
            if err.status == 404 and optional:
                return None
            raise EnvError(f"{kind} {name!r} cannot be read: {err.status} {err.reason}") from err

    def _token(self, sa: str, audience: str | None, expiry: int) -> str:
        body = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(
            audiences=[audience] if audience else [], expiration_seconds=max(expiry, 600),
            bound_object_ref=k8s.V1BoundObjectReference(kind="Pod", api_version="v1",
                                                         name=self.name, uid=self.uid)))
        try:
            resp = self.client.create_namespaced_service_account_token(sa, self.ns, body)
        except ApiException as err:
            raise EnvError(f"a token for ServiceAccount {sa!r}: {err.status} {err.reason}") from err
        return str(resp.status.token)

    def _field(self, path: str) -> str:
        md, spec = self.obj["metadata"], self.obj["spec"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
        return str({"metadata.name": self.name, "metadata.namespace": self.ns,
                    "metadata.uid": self.uid, "spec.nodeName": self.node,
                    "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
                    "status.podIP": self.agent.pod_ip, "status.hostIP": "127.0.0.1",
                    "status.podIPs": self.agent.pod_ip, "status.hostIPs": "127.0.0.1"}.get(path, ""))

    def _write_files(self, d: Path, items: dict[str, str], mode: int = 0o644) -> None:
        d.mkdir(parents=True, exist_ok=True)
        for k, v in items.items():
            p = d / k
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(v)
            p.chmod(mode)

    def _source(self, src: dict[str, Any], kind: str) -> dict[str, str]:
        data = self._get(kind, src["name"], bool(src.get("optional"))) or {}
        if src.get("items"):
            return {i["path"]: data[i["key"]] for i in src["items"] if i["key"] in data}
        return data

    def _volumes(self) -> dict[str, Path]:
        vols: dict[str, Path] = {}
        for v in self.obj["spec"].get("volumes", []):
            name = v["name"]
            d = self.dir / "volumes" / name
            if "emptyDir" in v:
                d.mkdir(parents=True, exist_ok=True)
            elif "persistentVolumeClaim" in v:
                d = self.agent.claim_dir(self.node, self.ns, v["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in v:
                d = self.agent.root / "hostpath" / v["hostPath"]["path"].lstrip("/")
                d.mkdir(parents=True, exist_ok=True)
            elif "configMap" in v:
                self._write_files(d, self._source(v["configMap"], "configmap"))
            elif "secret" in v:
                s = dict(v["secret"])
                s["name"] = s.pop("secretName", "")
                self._write_files(d, self._source(s, "secret"), 0o600)
            elif "downwardAPI" in v:
                self._write_files(d, {i["path"]: self._field(i["fieldRef"]["fieldPath"])
                                      for i in v["downwardAPI"].get("items", []) if "fieldRef" in i})
            elif "projected" in v:
                files: dict[str, str] = {}
                for s in v["projected"].get("sources", []):
                    if "serviceAccountToken" in s:
                        t = s["serviceAccountToken"]
                        files[t["path"]] = self._token(
                            self.obj["spec"].get("serviceAccountName") or "default",
                            t.get("audience"), int(t.get("expirationSeconds", 3607)))
                    elif "configMap" in s:
                        files.update(self._source(s["configMap"], "configmap"))
                    elif "secret" in s:
                        files.update(self._source(s["secret"], "secret"))
                    elif "downwardAPI" in s:
                        files.update({i["path"]: self._field(i["fieldRef"]["fieldPath"])
                                      for i in s["downwardAPI"].get("items", []) if "fieldRef" in i})
                self._write_files(d, files, 0o600)
            else:
                raise EnvError(f"volume {name!r}: this node agent supports emptyDir, "
                               "persistentVolumeClaim, hostPath, configMap, secret, downwardAPI "
                               "and projected volumes")
            vols[name] = d
        return vols

    def _env(self, c: dict[str, Any], mounts: dict[str, str]) -> dict[str, str]:
        env = {k: os.environ[k] for k in (*PASS_ENV, *self.agent.pass_env) if k in os.environ}
        # the "image": the agent's Python environment, its scripts (celery, uvicorn) first
        env["PATH"] = os.pathsep.join(p for p in (str(Path(self.agent.python).parent),
                                                  env.get("PATH", os.defpath)) if p)
        env.update({"HOSTNAME": self.name, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                    "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
                    "PYTHONUNBUFFERED": "1"})
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        own: dict[str, str] = {}
        for ref in c.get("envFrom", []):
            if "configMapRef" in ref:
                data = self._get("configmap", ref["configMapRef"]["name"],
                                 bool(ref["configMapRef"].get("optional")))
            else:
                data = self._get("secret", ref["secretRef"]["name"],
                                 bool(ref["secretRef"].get("optional")))
            own.update({ref.get("prefix", "") + k: v for k, v in (data or {}).items()})
        for e in c.get("env", []):
            if "valueFrom" in e:
                vf = e["valueFrom"]
                value: str | None
                if "fieldRef" in vf:
                    value = self._field(vf["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in vf:
                    r = vf["resourceFieldRef"]["resource"]
                    kind, _, res = r.partition(".")
                    value = str((c.get("resources", {}).get(kind) or {}).get(res, "0"))
                else:
                    ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef") or {}
                    kind = "configmap" if "configMapKeyRef" in vf else "secret"
                    data = self._get(kind, ref["name"], bool(ref.get("optional")))
                    value = (data or {}).get(ref["key"])
                    if value is None and not ref.get("optional"):
                        raise EnvError(f"key {ref['key']!r} is not in {kind} {ref['name']!r}")
                if value is not None:
                    own[e["name"]] = value
            else:
                own[e["name"]] = expand(e.get("value", ""), {**env, **own})
        env.update({k: self._services(self._local(v, mounts)) for k, v in own.items()})
        sub = self.obj["spec"].get("subdomain")
        if sub:  # no DNS: a pod hostname of the pod's own subdomain (a JobSet's torchrun
            # master, PET_MASTER_ADDR) is this machine, on the port the agent keeps per subdomain
            for k, v in env.items():
                if re.fullmatch(rf"[a-z0-9-]+\.{re.escape(sub)}(\.[a-z0-9.-]+)?", v):
                    env[k] = "127.0.0.1"
            for k in ("PET_MASTER_PORT", "MASTER_PORT"):
                if k in env:
                    env[k] = str(self.agent.rdzv_port(self.ns, sub))
        return env

    def _services(self, value: str) -> str:
        """No DNS or kube-proxy: a Service's cluster name in a value (``svc.ns.svc[.cluster.local]``,
        with its port or not) becomes 127.0.0.1 and a port the agent forwards to the Service's
        pods (``ServiceProxy``, kube-proxy's part): it resolves the target at each connection,
        so a pod starts whether or not the Service has endpoints yet, as with a ClusterIP. A
        name that is not a Service of this cluster stays as written."""
        def one(m: re.Match[str]) -> str:
            name, ns, port = m["svc"], m["ns"], m["port"]
            try:
                svc = self.client.read_namespaced_service(name, ns)
            except ApiException as err:
                if err.status == 404:
                    return m[0]
                raise EnvError(f"Service {ns}/{name} cannot be read: {err.status} "
                               f"{err.reason}") from err
            ports = svc.spec.ports or []
            sp = next((p for p in ports if port is None or p.port == int(port)), None)
            if sp is None:
                return m[0]
            local = self.agent.proxy.port_for(ns, name, int(sp.port))
            return f"127.0.0.1:{local}" if port is not None or sp.port != local else "127.0.0.1"

        return SERVICE_HOST.sub(one, value)

    def _local(self, value: str, mounts: dict[str, str]) -> str:
        """A mount path in a value (or at its start after ``=``) mapped onto its folder."""
        for path in sorted(mounts, key=len, reverse=True):
            d = mounts[path]
            if value == path or value.startswith(path + "/"):
                return d + value[len(path):]
            m = re.match(r"^(--?[\w.-]+=)(.*)$", value)
            if m and (m.group(2) == path or m.group(2).startswith(path + "/")):
                return m.group(1) + d + m.group(2)[len(path):]
        return value

    def prepare(self) -> None:
        vols = self._volumes()
        sa = next((v for v in self.obj["spec"].get("volumes", [])
                   if "projected" in v and any("serviceAccountToken" in s
                                               for s in v["projected"].get("sources", []))), None)
        for c in (*self.init, *self.containers):
            m = {}
            for vm in c.spec.get("volumeMounts", []):
                d = vols.get(vm["name"])
                if d is None:
                    raise EnvError(f"volumeMount {vm['name']!r} names no volume of the pod")
                if vm.get("subPath"):
                    d = d / vm["subPath"]
                    d.mkdir(parents=True, exist_ok=True)
                m[vm["mountPath"]] = str(d)
                if sa is not None and vm["name"] == sa["name"] and vm["mountPath"] == SA_MOUNT:
                    self.kubeconfig = d / "kubeconfig"
                    token = next(s["serviceAccountToken"]["path"] for s in sa["projected"]["sources"]
                                 if "serviceAccountToken" in s)
                    self.kubeconfig.write_text(json.dumps(self.agent.pod_kubeconfig(
                        d / token, self.ns)))
            self.mounts[c.name] = m
        self.prepared = True

    # processes --------------------------------------------------------------------------------

    def _argv(self, c: Container, env: dict[str, str]) -> list[str]:
        spec = c.spec
        argv = list(spec.get("command") or []) + list(spec.get("args") or [])
        if not argv:
            raise EnvError(f"container {c.name!r} has no command: this node agent runs no images")

        argv = [self._local(expand(a, env), self.mounts[c.name]) for a in argv]
        sub = self.obj["spec"].get("subdomain")
        for i, a in enumerate(argv):
            m = re.match(r"^--rdzv[-_]endpoint=([^:]+):(\d+)$", a)
            if m and sub and m.group(1).endswith("." + sub):
                argv[i] = f"--rdzv-endpoint=127.0.0.1:{self.agent.rdzv_port(self.ns, sub)}"
        if argv[0] in ("python", "python3"):
            argv[0] = self.agent.python
        return argv

    def start(self, c: Container) -> None:
        try:
            env = self._env(c.spec, self.mounts[c.name])
            argv = self._argv(c, env)
        except EnvError as err:
            if c.waiting != ("CreateContainerConfigError", str(err)):
                self.agent.event(self, "Warning", "Failed", f"Error: {err}", c.name)
            c.waiting = ("CreateContainerConfigError", str(err))
            c.next_start = time.monotonic() + 2
            return
        c.log = self.dir / "logs" / f"{c.name}-{c.restarts}.log"
        c.log.parent.mkdir(parents=True, exist_ok=True)
        workdir = c.spec.get("workingDir")
        cwd = self._local(workdir, self.mounts[c.name]) if workdir else str(self.dir)
        if not Path(cwd).is_dir():
            cwd = str(self.dir)
        with open(c.log, "ab") as out:
            try:
                c.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            except OSError as err:
                c.waiting = ("RunContainerError", f"{argv[0]}: {err.strerror}")
                c.exit_code, c.finished_at = 128, now()
                return
        c.started_at, c.exit_code, c.waiting = now(), None, None
        c.ready = "readinessProbe" not in c.spec and not c.init
        self.agent.event(self, "Normal", "Started", f"Started container {c.name} "
                         f"(process {c.proc.pid})", c.name)
        log.info("%s: started %s (pid %d): %s", self.key(), c.name, c.proc.pid, " ".join(argv))

    def signal(self, sig: int) -> None:
        for c in (*self.init, *self.containers):
            if c.running():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(c.proc.pid, sig)  # type: ignore[union-attr]

    def _probe(self, c: Container) -> None:
        p = c.spec.get("readinessProbe")
        if not p or not c.running() or time.monotonic() < c.probe_at:
            return
        c.probe_at = time.monotonic() + float(p.get("periodSeconds", 10))
        ok = False
        with contextlib.suppress(Exception):
            if "httpGet" in p:
                g = p["httpGet"]
                port = self._port(c, g["port"])
                url = f"{g.get('scheme', 'HTTP').lower()}://127.0.0.1:{port}{g.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=float(p.get("timeoutSeconds", 1))) as r:
                    ok = 200 <= r.status < 400
            elif "tcpSocket" in p:
                with socket.create_connection(("127.0.0.1", self._port(c, p["tcpSocket"]["port"])),
                                              timeout=float(p.get("timeoutSeconds", 1))):
                    ok = True
            elif "exec" in p:
                env = self._env(c.spec, self.mounts[c.name])
                ok = subprocess.run(p["exec"]["command"], env=env, timeout=float(
                    p.get("timeoutSeconds", 1)), capture_output=True).returncode == 0
        c.ready = ok

    def _port(self, c: Container, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        return int(next(p["containerPort"] for p in c.spec.get("ports", []) if p.get("name") == port))

    def step(self) -> None:
        """Advances the pod one tick: start, restart, notice exits, probe, kill when deleted."""
        with self.lock:
            if self.done:
                return
            if self.deleting_since is not None:
                self._terminate()
                return
            if self.phase in ("Succeeded", "Failed"):
                return
            if not self.prepared:
                try:
                    self.prepare()
                except EnvError as err:
                    for c in self.containers:
                        c.waiting = ("CreateContainerConfigError", str(err))
                    return
                self.start_time = now()
            for c in self.init:  # one after another, each to success
                if c.exit_code == 0:
                    continue
                self._advance(c)
                return
            for c in self.containers:
                self._advance(c)
                self._probe(c)
            if all(c.exit_code is not None and not c.running() and
                   not self._restarts(c) for c in self.containers):
                self.phase = ("Succeeded" if all(c.exit_code == 0 for c in self.containers)
                              else "Failed")
            elif any(c.running() for c in self.containers):
                self.phase = "Running"

    def _restarts(self, c: Container) -> bool:
        if c.exit_code is None:
            return False
        return self.restart == "Always" or (self.restart == "OnFailure" and c.exit_code != 0)

    def _advance(self, c: Container) -> None:
        if c.proc is not None and not c.running() and c.exit_code is None:
            c.exit_code, c.finished_at, c.ready = c.proc.returncode, now(), False
            if c.exit_code < 0:
                c.exit_code = 128 - c.exit_code  # killed by signal N: 128+N, as a runtime says
            log.info("%s: %s exited with %d", self.key(), c.name, c.exit_code)
        if c.proc is None and c.exit_code is None and time.monotonic() >= c.next_start:
            self.start(c)
        elif c.exit_code is not None and (self._restarts(c) or (c.init and c.exit_code != 0
                                                                 and self.restart != "Never")):
            if c.next_start == 0.0 or c.next_start < time.monotonic() - 600:
                c.next_start = time.monotonic() + min(300.0, 1.0 * 2 ** min(c.restarts, 8))
                c.waiting = ("CrashLoopBackOff", f"back-off restarting {c.name}")
                self.agent.event(self, "Warning", "BackOff",
                                 f"Back-off restarting failed container {c.name}", c.name)
            elif time.monotonic() >= c.next_start:
                c.last = {"exitCode": c.exit_code, "startedAt": c.started_at or None,
                          "finishedAt": c.finished_at, "reason": c.reason()}
                c.restarts += 1
                c.proc, c.exit_code, c.next_start = None, None, 0.0
                self.start(c)
        elif c.init and c.exit_code not in (None, 0) and self.restart == "Never":
            self.phase = "Failed"

    def _terminate(self) -> None:
        assert self.deleting_since is not None
        grace = self.obj["metadata"].get("deletionGracePeriodSeconds")
        grace = 30 if grace is None else int(grace)
        if not self.killed:
            self.killed = True
            if any(c.running() for c in (*self.init, *self.containers)):
                self.agent.event(self, "Normal", "Killing", "Stopping the pod's containers "
                                 f"(SIGTERM, SIGKILL after {grace} s)")
            self.signal(signal.SIGTERM)
        elif time.monotonic() - self.deleting_since > grace:
            self.signal(signal.SIGKILL)
        for c in (*self.init, *self.containers):
            if c.proc is not None and not c.running() and c.exit_code is None:
                code = c.proc.returncode
                c.exit_code, c.finished_at, c.ready = 128 - code if code < 0 else code, now(), False
        if any(c.running() for c in (*self.init, *self.containers)):
            return
        if self.phase not in ("Succeeded", "Failed"):
            self.phase = "Failed" if any(c.exit_code not in (0, None) for c in self.containers) \
                else "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        self.agent.send_status(self)
        try:
            self.client.delete_namespaced_pod(self.name, self.ns, grace_period_seconds=0,
                                              body=k8s.V1DeleteOptions(
                                                  grace_period_seconds=0,
                                                  preconditions=k8s.V1Preconditions(uid=self.uid)))
        except ApiException as err:
            if err.status not in (404, 409):
                log.warning("%s: delete: %s %s", self.key(), err.status, err.reason)
                return
        self.done = True

    # status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.lock:
            all_ready = bool(self.containers) and all(c.ready for c in self.containers)
            inited = all(c.exit_code == 0 for c in self.init)
            t = now()
            conds = [{"type": "Initialized", "status": str(inited), "lastTransitionTime": t},
                     {"type": "ContainersReady", "status": str(all_ready), "lastTransitionTime": t},
                     {"type": "Ready", "status": str(all_ready), "lastTransitionTime": t}]
            st: dict[str, Any] = {
                "phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "conditions": conds,
                "containerStatuses": [c.status() for c in self.containers]}
            if self.init:
                st["initContainerStatuses"] = [c.status() for c in self.init]
            if self.start_time:
                st["startTime"] = self.start_time
            if self.phase != "Pending" or self.start_time:
                st["podIP"], st["podIPs"] = self.agent.pod_ip, [{"ip": self.agent.pod_ip}]
            return st


# -- the agent --------------------------------------------------------------------------------


class NodeAgent:
    """Registers ``nodes`` and runs their pods; one watch per node, one loop for all pods."""

    def __init__(self, server: str, ca: Path, kubeconfigs: dict[str, Path], nodes: list[NodeSpec],
                 root: Path, serving: tuple[Path, Path], *, python: str | None = None,
                 pass_env: tuple[str, ...] = (), log_port: int = 0) -> None:
        self.server, self.ca, self.nodes, self.root = server, ca, nodes, Path(root).resolve()
        self.api_port = int(urlsplit(server).port or 443)
        self.python = python or sys.executable
        self.pod_ip = pod_ip()
        self.pass_env = pass_env
        self.core = {n.name: k8s.CoreV1Api(k8s_config.new_client_from_config(str(kubeconfigs[n.name])))
                     for n in nodes}
        self.coord = {n.name: k8s.CoordinationV1Api(self.core[n.name].api_client) for n in nodes}
        self.pods: dict[str, Pod] = {}  # uid -> pod
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rdzv: dict[tuple[str, str], int] = {}
        self.logs = LogServer(self, serving, ca, log_port)
        self.proxy = ServiceProxy(self)
        self.threads: list[threading.Thread] = []

    # helpers --------------------------------------------------------------------------------

    def pod_kubeconfig(self, token_file: Path, namespace: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "pod",
                "clusters": [{"name": "local", "cluster": {"server": self.server,
                                                           "certificate-authority": str(self.ca)}}],
                "users": [{"name": "pod", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "pod", "context": {"cluster": "local", "user": "pod",
                                                         "namespace": namespace}}]}

    def any_core(self) -> k8s.CoreV1Api:
        """A node's client (reads Services: what a kubelet may read)."""
        return self.core[self.nodes[0].name]

    def rdzv_port(self, ns: str, sub: str) -> int:
        with self.lock:
            if (ns, sub) not in self.rdzv:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    self.rdzv[(ns, sub)] = s.getsockname()[1]
            return self.rdzv[(ns, sub)]

    def claim_dir(self, node: str, ns: str, claim: str) -> Path:
        """The folder of a claim: its bound PersistentVolume's hostPath/local path (under the
        agent's root), else one folder per claim."""
        path = None
        with contextlib.suppress(ApiException):
            pvc = self.core[node].read_namespaced_persistent_volume_claim(claim, ns)
            if pvc.spec.volume_name:
                pv = self.core[node].read_persistent_volume(pvc.spec.volume_name)
                src = pv.spec.host_path or pv.spec.local
                if src is not None:
                    path = self.root / "volumes" / src.path.lstrip("/")
        d = path or self.root / "claims" / ns / claim
        d.mkdir(parents=True, exist_ok=True)
        return d

    # nodes ----------------------------------------------------------------------------------

    def register(self) -> None:
        for n in self.nodes:
            body = n.node(self.logs.port)
            core = self.core[n.name]
            try:
                core.create_node(body)
            except ApiException as err:
                if err.status != 409:
                    raise
            core.patch_node_status(n.name, {"status": body["status"]})

    def heartbeat(self) -> None:
        last_status = 0.0
        while not self.stop.wait(RENEW_S if last_status else 0):
            for n in self.nodes:
                with contextlib.suppress(Exception):
                    self._renew(n.name)
            if time.monotonic() - last_status > 60:
                last_status = time.monotonic()
                for n in self.nodes:
                    with contextlib.suppress(Exception):
                        self.core[n.name].patch_node_status(
                            n.name, {"status": node_status(self.logs.port)})

    def _renew(self, node: str) -> None:
        t = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {"metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_S, "renewTime": t}}
        try:
            self.coord[node].patch_namespaced_lease(node, "kube-node-lease", body)
        except ApiException as err:
            if err.status != 404:
                raise
            self.coord[node].create_namespaced_lease("kube-node-lease", body)

    # pods -----------------------------------------------------------------------------------

    def watch_node(self, node: str) -> None:
        core = self.core[node]
        while not self.stop.is_set():
            try:
                lst = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}",
                                                       _preload_content=False)
                doc = json.loads(lst.data)
                seen = set()
                for obj in doc.get("items", []):
                    seen.add(obj["metadata"]["uid"])
                    self.observe(node, obj)
                with self.lock:
                    gone = [p for u, p in self.pods.items() if p.node == node and u not in seen]
                for p in gone:
                    self.forget(p)
                rv = doc["metadata"]["resourceVersion"]
                w = watch.Watch()
                for ev in w.stream(core.list_pod_for_all_namespaces,
                                   field_selector=f"spec.nodeName={node}", resource_version=rv,
                                   timeout_seconds=60, allow_watch_bookmarks=True):
                    if self.stop.is_set():
                        w.stop()
                        break
                    obj = ev["raw_object"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self.observe(node, obj)
                    elif ev["type"] == "DELETED":
                        with self.lock:
                            dead = self.pods.get(obj["metadata"]["uid"])
                        if dead is not None:
                            self.forget(dead)
            except Exception as err:  # a dropped watch or a 410: list again
                if not self.stop.is_set():
                    log.info("watch of node %s: %s; listing again", node, err)
                    self.stop.wait(1.0)

    def observe(self, node: str, obj: dict[str, Any]) -> None:
        uid = obj["metadata"]["uid"]
        with self.lock:
            p = self.pods.get(uid)
            if p is None:
                if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") \
                        and not obj["metadata"].get("deletionTimestamp"):
                    return  # finished before this agent started: nothing to run
                p = self.pods[uid] = Pod(self, node, obj)
        with p.lock:
            p.obj = obj
            if obj["metadata"].get("deletionTimestamp") and p.deleting_since is None:
                p.deleting_since = time.monotonic()

    def forget(self, p: Pod) -> None:
        """The pod is gone from the API server (deleted with grace 0 by someone): its processes
        are killed at once."""
        with p.lock:
            p.signal(signal.SIGKILL)
            p.done = True
        with self.lock:
            self.pods.pop(p.uid, None)

    def event(self, p: Pod, type_: str, reason: str, message: str, container: str = "") -> None:
        """A core/v1 Event on the pod, as the kubelet reports (best effort)."""
        ref: dict[str, Any] = {"kind": "Pod", "apiVersion": "v1", "namespace": p.ns,
                               "name": p.name, "uid": p.uid}
        if container:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        t = now()
        body = {"metadata": {"generateName": f"{p.name}.", "namespace": p.ns},
                "involvedObject": ref, "type": type_, "reason": reason, "message": message,
                "source": {"component": "kubelet", "host": p.node}, "firstTimestamp": t,
                "lastTimestamp": t, "count": 1, "reportingComponent": "kubelet",
                "reportingInstance": p.node}
        with contextlib.suppress(Exception):
            p.client.create_namespaced_event(p.ns, body)

    def send_status(self, p: Pod) -> None:
        st = p.status()
        text = json.dumps(st, sort_keys=True, default=str)
        stable = re.sub(r'"lastTransitionTime": "[^"]*"', "", text)
        if stable == p.last_sent or time.monotonic() < p.status_retry_at:
            return
        try:
            p.client.patch_namespaced_pod_status(p.name, p.ns, {"status": st})
            p.last_sent, p.status_failures = stable, 0
        except ApiException as err:
            if err.status == 404:
                p.done = True
                return
            # backs off (1 s doubling to 30 s) so that a refused status never floods the server
            p.status_failures += 1
            p.status_retry_at = time.monotonic() + min(30.0, 2.0 ** (p.status_failures - 1))
            log.warning("%s: status refused (%s %s): %s", p.key(), err.status, err.reason,
                        (err.body or "")[-400:])

    def loop(self) -> None:
        while not self.stop.wait(0.1):
            with self.lock:
                pods = list(self.pods.values())
            for p in pods:
                try:
                    p.step()
                    if not p.done:
                        self.send_status(p)
                except Exception:
                    log.exception("%s", p.key())
                if p.done:
                    with self.lock:
                        self.pods.pop(p.uid, None)
                    shutil.rmtree(p.dir / "volumes", ignore_errors=True)

    # the whole agent ----------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        self.logs.start()
        self.register()
        for n in self.nodes:
            self._renew(n.name)
        for target, name in ((self.heartbeat, "heartbeat"), (self.loop, "pods"),
                             *((lambda n=n.name: self.watch_node(n), f"watch-{n.name}")
                               for n in self.nodes)):
            t = threading.Thread(target=target, daemon=True, name=name)
            t.start()
            self.threads.append(t)
        return self

    def close(self, grace: float = 10.0) -> None:
        """Stops watching and kills every pod's processes (SIGTERM, SIGKILL after ``grace``)."""
        self.stop.set()
        with self.lock:
            pods = list(self.pods.values())
        for p in pods:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
                c.running() for p in pods for c in (*p.init, *p.containers)):
            time.sleep(0.05)
        for p in pods:
            p.signal(signal.SIGKILL)
        self.logs.close()
        self.proxy.close()


# -- kube-proxy's part: Service ports on loopback ---------------------------------------------


class ServiceProxy:
    """One loopback listener per (namespace, Service, port), forwarding each connection to the
    port the Service's pods listen on (its targetPort; a named one from the pods this agent
    runs, as a node's credentials list only its own pods). No endpoint yet: the connection is
    closed at once, as a ClusterIP without endpoints refuses it."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent
        self.lock = threading.Lock()
        self.listeners: dict[tuple[str, str, int], socket.socket] = {}
        self.closed = threading.Event()

    def port_for(self, ns: str, svc: str, port: int) -> int:
        with self.lock:
            key = (ns, svc, port)
            if key not in self.listeners:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 0))
                s.listen(64)
                self.listeners[key] = s
                threading.Thread(target=self._accept, args=(key, s), daemon=True,
                                 name=f"svc-{ns}-{svc}-{port}").start()
            return int(self.listeners[key].getsockname()[1])

    def target(self, ns: str, svc: str, port: int) -> int | None:
        try:
            obj = self.agent.any_core().read_namespaced_service(svc, ns)
        except ApiException:
            return None
        sp = next((p for p in obj.spec.ports or [] if p.port == port), None)
        if sp is None:
            return None
        t = sp.target_port if sp.target_port is not None else sp.port
        if isinstance(t, int) or str(t).isdigit():
            return int(t)
        selector = obj.spec.selector or {}
        with self.agent.lock:
            pods = [p.obj for p in self.agent.pods.values() if p.ns == ns and p.phase == "Running"]
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            for c in pod["spec"].get("containers") or []:
                for cp in c.get("ports") or []:
                    if cp.get("name") == t:
                        return int(cp["containerPort"])
        return None

    def _accept(self, key: tuple[str, str, int], listener: socket.socket) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(key, conn), daemon=True).start()

    def _forward(self, key: tuple[str, str, int], conn: socket.socket) -> None:
        port = self.target(*key)
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10) if port else None
        except OSError:
            upstream = None
        if upstream is None:
            conn.close()
            return
        upstream.settimeout(None)

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    b.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        t.start()
        pump(conn, upstream)
        t.join()
        conn.close()
        upstream.close()

    def close(self) -> None:
        self.closed.set()
        with self.lock:
            for s in self.listeners.values():
                with contextlib.suppress(OSError):
                    s.close()
            self.listeners.clear()


# -- the kubelet's log endpoint ---------------------------------------------------------------


class LogServer:
    """``GET /containerLogs/<ns>/<pod>/<container>`` over TLS, for the API server only (its
    kubelet client certificate, signed by the cluster CA, is required): follow, tailLines,
    limitBytes, previous."""

    def __init__(self, agent: NodeAgent, serving: tuple[Path, Path], ca: Path, port: int) -> None:
        agent_ref = agent

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                agent_ref.logs.serve(self)

        self.agent = agent
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(serving[0]), str(serving[1]))
        ctx.load_verify_locations(str(ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="logs")

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        m = re.fullmatch(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", url.path)
        if not m:
            h.send_error(404)
            return
        ns, name, cname = m.groups()
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.agent.lock:
            pod = next((p for p in self.agent.pods.values() if p.ns == ns and p.name == name), None)
        c = None if pod is None else next((c for c in (*pod.init, *pod.containers)
                                           if c.name == cname), None)
        if pod is None or c is None:
            h.send_error(404, f"container {cname} of pod {ns}/{name} is not on this node")
            return
        previous = q.get("previous") in ("true", "True", "1")
        n = c.restarts - 1 if previous else c.restarts
        path = pod.dir / "logs" / f"{cname}-{n}.log"
        if n < 0 or not path.is_file():
            h.send_error(400, f"no {'previous ' if previous else ''}log of container {cname}")
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        limit = int(q["limitBytes"]) if q.get("limitBytes", "").isdigit() else None
        sent = 0

        def write(data: bytes) -> bool:
            nonlocal sent
            if limit is not None:
                data = data[: max(0, limit - sent)]
            if data:
                h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                h.wfile.flush()
                sent += len(data)
            return limit is None or sent < limit

        try:
            with open(path, "rb") as f:
                data = f.read()
                if q.get("tailLines", "").isdigit():
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-int(q["tailLines"]):]) if int(q["tailLines"]) else b""
                go_on = write(data)
                follow = q.get("follow") in ("true", "True", "1") and not previous
                while follow and go_on and not self.agent.stop.is_set():
                    chunk = f.read()
                    if chunk:
                        go_on = write(chunk)
                    elif not c.running() and c.log == path:
                        break
                    elif c.log != path:  # restarted: this log is complete
                        go_on = write(f.read())
                        break
                    else:
                        time.sleep(0.1)
            h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass


# -- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """``python -m hurricane.operator.nodeagent --controlplane DIR --node SPEC ...``: the
    agent for the control plane of DIR (``hurricane.operator.controlplane``), registering a
    node identity (``system:node:<name>``) for each node."""
    from hurricane.operator.controlplane import ControlPlane

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--controlplane", type=Path, required=True)
    ap.add_argument("--node", action="append", default=[], type=NodeSpec.parse,
                    help="name:labels:taints:capacity, e.g. cpu-0:hurricane.io/device=cpu::cpu=4")
    ap.add_argument("--root", type=Path, help="pods' folders (default: <controlplane>/nodes)")
    ap.add_argument("--pass-env", action="append", default=[],
                    help="a variable of this environment every container gets")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    agent = agent_for(ControlPlane(args.controlplane), args.node, args.root,
                      pass_env=tuple(args.pass_env))
    agent.start()
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    print(json.dumps({"ready": True, "nodes": [n.name for n in args.node],
                      "log_port": agent.logs.port}), flush=True)
    stopped.wait()
    agent.close()


def agent_for(cp: Any, nodes: list[NodeSpec], root: Path | None = None, *,
              pass_env: tuple[str, ...] = ()) -> NodeAgent:
    """An agent for control plane ``cp``: one client certificate per node, a serving
    certificate for the log endpoint."""
    kubeconfigs = {n.name: cp.identity(f"node-{n.name}", f"system:node:{n.name}", ["system:nodes"])
                   for n in nodes}
    serving = cp.pki.cert("node-agent-serving", "hurricane-node-agent", server=True, client=False,
                          sans=["IP:127.0.0.1", "DNS:localhost"])
    return NodeAgent(cp.server, cp.pki.ca, kubeconfigs, nodes, root or cp.dir / "nodes", serving,
                     pass_env=pass_env)


if __name__ == "__main__":
    main()

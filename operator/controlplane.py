"""A real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler (and Kueue's manager) built from their Go modules at the releases pinned in
``controlplane/`` (``scripts/build_controlplane.sh``), started as processes on free loopback
ports with TLS, a certificate per identity, and the Node and RBAC authorizers.

Nodes have no container runtime: ``hurricane.operator.nodeagent`` registers them and runs the
pods the real scheduler binds to them as local processes.

``ControlPlane(dir).up()`` starts everything and waits until the API answers; ``down()`` stops
it; the state (certificates, kubeconfigs, logs, etcd's data, pids) lives in ``dir``. The
identities (``kubeconfig(name)``): ``admin`` (system:masters), the controller manager and the
scheduler (their built-in RBAC roles), one ``system:node:<name>`` per node, and the API
server's kubelet client. Service account tokens are signed with ``sa.key``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build_controlplane.sh"
SERVICE_CIDR = "10.96.0.0/24"
SERVICE_IP = "10.96.0.1"  # the kubernetes Service's ClusterIP (first of the range)
ISSUER = "https://kubernetes.default.svc.cluster.local"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class ControlPlaneError(RuntimeError):
    """A component is missing or did not become ready; the message names it and its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries(build: bool = True) -> Path:
    """The folder holding the pinned binaries (built once into the cache when missing)."""
    env = os.environ.get("HURRICANE_CONTROLPLANE_BIN")
    if env:
        return Path(env)
    args = [str(BUILD)] + ([] if build else ["--print"])
    out = subprocess.run(args, check=True, text=True, stdout=subprocess.PIPE).stdout
    return Path(out.strip().splitlines()[-1])


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent ends (Linux's PR_SET_PDEATHSIG), so
    a test session killed outright leaves no control plane behind."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# -- certificates (openssl) -----------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


class PKI:
    """A CA and the certificates signed by it, in ``dir`` (created once, reused)."""

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        dir.mkdir(parents=True, exist_ok=True)
        if not (dir / "ca.crt").is_file():
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                     "-out", "ca.crt", "-days", "3650", "-subj", "/CN=hurricane-local-ca",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                     cwd=dir)
        if not (dir / "sa.key").is_file():
            _openssl("genrsa", "-out", "sa.key", "2048", cwd=dir)
            _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=dir)

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str, cn: str, *, orgs: Iterable[str] = (), server: bool = False,
             client: bool = True, sans: Iterable[str] = ()) -> tuple[Path, Path]:
        """(cert, key) named ``name``: a client certificate (CN user, O groups) and/or a
        serving one (SANs ``IP:…``/``DNS:…``)."""
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        if crt.is_file() and key.is_file():
            return crt, key
        subj = "".join(f"/O={o}" for o in orgs) + f"/CN={cn}"
        usage = ",".join((["serverAuth"] if server else []) + (["clientAuth"] if client else []))
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={usage}"]
        sans = list(sans)
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key.name, "-out",
                 f"{name}.csr", "-subj", subj, cwd=self.dir)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", crt.name, "-days", "3650", "-extfile", ext.name,
                 cwd=self.dir)
        (self.dir / f"{name}.csr").unlink()
        ext.unlink()
        key.chmod(0o600)
        return crt, key


def kubeconfig(server: str, ca: Path, *, cert: Path | None = None, key: Path | None = None,
               token: str | None = None, user: str = "user", namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig for one identity (a client certificate or a bearer token)."""
    u: dict[str, Any] = {}
    if cert is not None and key is not None:
        u = {"client-certificate": str(cert), "client-key": str(key)}
    if token is not None:
        u = {"token": token}
    return {"apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {"server": server,
                                                       "certificate-authority": str(ca)}}],
            "users": [{"name": user, "user": u}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user,
                                                       "namespace": namespace}}]}


# -- the control plane ------------------------------------------------------------------------


@dataclass
class ControlPlane:
    """The control plane of one state directory."""

    dir: Path
    bin: Path | None = None
    extra_apiserver_args: list[str] = field(default_factory=list)
    die_with_parent: bool = False  # tests: the components end with the process that started them
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dir = Path(self.dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.dir / "controlplane.json"

    # state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    @property
    def server(self) -> str:
        return str(self.state()["server"])

    @property
    def pki(self) -> PKI:
        return PKI(self.dir / "pki")

    def kubeconfig(self, name: str) -> Path:
        """The kubeconfig file of identity ``name`` (written by ``up``)."""
        return self.dir / "kubeconfigs" / f"{name}.yaml"

    def identity(self, name: str, cn: str, orgs: Iterable[str] = ()) -> Path:
        """A client certificate for user ``cn`` in groups ``orgs`` and its kubeconfig file."""
        crt, key = self.pki.cert(f"user-{name}", cn, orgs=orgs)
        return self.write_kubeconfig(name, kubeconfig(self.server, self.pki.ca, cert=crt,
                                                      key=key, user=cn))

    def write_kubeconfig(self, name: str, cfg: dict[str, Any]) -> Path:
        path = self.kubeconfig(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
        path.chmod(0o600)
        return path

    # processes ----------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.dir,
                                                env={**os.environ, **env} if env else None,
                                                start_new_session=True,
                                                preexec_fn=_die_with_parent if self.die_with_parent
                                                else None)
        st = self.state()
        st.setdefault("pids", {})[name] = self.procs[name].pid
        self.state_file.write_text(json.dumps(st, indent=2))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / "logs" / f"{name}.log"
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, name: str, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n"
                                        f"{self.log_tail(name)}")
            with contextlib.suppress(OSError, urllib.error.URLError, ssl.SSLError):
                if ready():
                    return
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} was not ready after {timeout:.0f} s:\n{self.log_tail(name)}")

    def get(self, path: str, identity: str = "admin") -> Any:
        """GET ``path`` from the API server as ``identity`` (a client certificate)."""
        crt, key = self.pki.dir / f"user-{identity}.crt", self.pki.dir / f"user-{identity}.key"
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.load_cert_chain(str(crt), str(key))
        with urllib.request.urlopen(self.server + path, context=ctx, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()

    def up(self, timeout: float = 120.0) -> ControlPlane:
        """Starts etcd, the API server, the controller manager and the scheduler, and waits
        until the API server is healthy, the default ServiceAccount exists (the controllers
        run) and the scheduler holds no error."""
        bin_dir = self.bin or binaries()
        for c in COMPONENTS:
            if not (bin_dir / c).is_file():
                raise ControlPlaneError(f"{bin_dir / c} is missing: run scripts/build_controlplane.sh")
        pki = self.pki
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        server = f"https://127.0.0.1:{api_port}"
        st = {"server": server, "etcd": f"http://127.0.0.1:{etcd_port}", "bin": str(bin_dir),
              "pids": {}}
        self.state_file.write_text(json.dumps(st, indent=2))
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)  # a fresh cluster every time
        self._start("etcd", [
            str(bin_dir / "etcd"), "--name=local", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--quota-backend-bytes=4294967296", "--log-level=warn"])
        self._wait("etcd", lambda: b"true" in urllib.request.urlopen(
            f"http://127.0.0.1:{etcd_port}/health", timeout=2).read(), 30)

        serving, serving_key = pki.cert("apiserver", "kube-apiserver", server=True, client=False,
                                        sans=["IP:127.0.0.1", f"IP:{SERVICE_IP}", "DNS:localhost",
                                              "DNS:kubernetes", "DNS:kubernetes.default",
                                              "DNS:kubernetes.default.svc",
                                              "DNS:kubernetes.default.svc.cluster.local"])
        kclient, kclient_key = pki.cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                        orgs=["system:masters"])
        self._start("kube-apiserver", [
            str(bin_dir / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}", f"--cert-dir={self.dir / 'pki' / 'apiserver-certs'}",
            f"--tls-cert-file={serving}", f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={pki.ca}",
            f"--service-account-issuer={ISSUER}", f"--service-account-key-file={pki.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kclient}", f"--kubelet-client-key={kclient_key}",
            f"--kubelet-certificate-authority={pki.ca}",
            "--kubelet-preferred-address-types=InternalIP",
            "--endpoint-reconciler-type=none", "--profiling=false", "--v=1",
            *self.extra_apiserver_args])
        self.identity("admin", "hurricane-admin", ["system:masters"])
        self._wait("kube-apiserver", lambda: self.get("/readyz") == "ok", timeout)

        for comp, user in (("kube-controller-manager", "system:kube-controller-manager"),
                           ("kube-scheduler", "system:kube-scheduler")):
            self.identity(comp, user)
        cm_cfg = str(self.kubeconfig("kube-controller-manager"))
        self._start("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"), f"--kubeconfig={cm_cfg}",
            f"--authentication-kubeconfig={cm_cfg}", f"--authorization-kubeconfig={cm_cfg}",
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.dir / 'sa.key'}",
            f"--root-ca-file={pki.ca}", f"--cluster-signing-cert-file={pki.ca}",
            f"--cluster-signing-key-file={pki.dir / 'ca.key'}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,"
            "-node-route-controller,-persistentvolume-binder-controller,"
            "-persistentvolume-attach-detach-controller,-persistentvolume-expander-controller",
            # a loaded 2-core machine can hold the agent's heartbeat thread back: a node turns
            # NotReady (and tainted) only after two minutes without a lease renewal, not 50 s
            "--node-monitor-grace-period=120s",
            "--concurrent-job-syncs=5", "--v=1"])
        sch_cfg = str(self.kubeconfig("kube-scheduler"))
        self._start("kube-scheduler", [
            str(bin_dir / "kube-scheduler"), f"--kubeconfig={sch_cfg}",
            f"--authentication-kubeconfig={sch_cfg}", f"--authorization-kubeconfig={sch_cfg}",
            "--leader-elect=false", "--secure-port=0", "--v=1"])
        # the service account controller creates `default` in every namespace: the controller
        # manager is up and its clients are authorised
        self._wait("kube-controller-manager", lambda: bool(self.get(
            "/api/v1/namespaces/default/serviceaccounts/default")), timeout)
        return self

    # Kueue ------------------------------------------------------------------------------------

    def kueue_up(self, frameworks: Iterable[str] = ("batch/job",), timeout: float = 120.0,
                 extra_config: dict[str, Any] | None = None) -> None:
        """Kueue's manager from the pinned build: its CRDs (with the conversion webhook the
        release configures), its webhooks for the API groups of ``frameworks`` and Kueue's own,
        served on loopback with a certificate of this CA, its ClusterRole bound to its own
        identity. Waits until the manager is ready and its webhooks answer."""
        import yaml

        bin_dir = Path(self.state()["bin"])
        config = bin_dir.parent / "kueue-config" / "components"
        health, hook = free_port(), free_port()
        certs = self.dir / "kueue-certs"
        certs.mkdir(exist_ok=True)
        crt, key = self.pki.cert("kueue-webhook", "kueue-webhook", server=True, client=False,
                                 sans=["IP:127.0.0.1", "DNS:localhost"])
        shutil.copy(crt, certs / "tls.crt")
        shutil.copy(key, certs / "tls.key")
        ca_b64 = _b64(self.pki.ca.read_bytes())
        url = f"https://127.0.0.1:{hook}"
        converted = {"localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters"}
        docs: list[dict[str, Any]] = []
        for path in sorted((config / "crd" / "bases").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            if crd["spec"]["names"]["plural"] in converted:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "clientConfig": {"url": f"{url}/convert", "caBundle": ca_b64},
                    "conversionReviewVersions": ["v1"]}}
            docs.append(crd)
        groups = {"kueue.x-k8s.io"} | {f.split("/")[0] for f in frameworks}
        for doc in yaml.safe_load_all((config / "webhook" / "manifests.yaml").read_text()):
            if not doc:
                continue
            hooks = [h for h in doc["webhooks"]
                     if set(h["rules"][0]["apiGroups"]) & groups or
                     (h["rules"][0]["apiGroups"] == [""] and "pod" in frameworks)]
            for h in hooks:
                h["clientConfig"] = {"url": url + h["clientConfig"]["service"]["path"],
                                     "caBundle": ca_b64}
            doc["metadata"]["name"] = "kueue-" + doc["metadata"]["name"]
            doc["webhooks"] = hooks
            docs.append(doc)
        role = yaml.safe_load((config / "rbac" / "role.yaml").read_text())
        role["metadata"]["name"] = "kueue-manager-role"
        docs.append(role)
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": "kueue-manager-rolebinding"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "kueue-manager-role"},
                     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                   "name": "kueue-manager"}]})
        secrets = yaml.safe_load((config / "rbac" / "manager_secrets_role.yaml").read_text())
        secrets["metadata"] = {"name": "kueue-manager-secrets-role", "namespace": "kueue-system"}
        docs.append(secrets)
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "kueue-manager-secrets-rolebinding",
                                  "namespace": "kueue-system"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "kueue-manager-secrets-role"},
                     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                   "name": "kueue-manager"}]})
        self.apply([{"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": "kueue-system"}}])
        self.apply(docs)
        names = [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"]
        self._wait("kube-apiserver", lambda: all(any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
                      .get("status") or {}).get("conditions") or []) for n in names), timeout)
        cfg: dict[str, Any] = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
            "namespace": "kueue-system",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": hook, "host": "127.0.0.1", "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "integrations": {"frameworks": list(frameworks)},
            **(extra_config or {})}
        (self.dir / "kueue.yaml").write_text(yaml.safe_dump(cfg))
        # Kueue 0.17's manager, when it does not manage its own certificates, reads a metrics
        # certificate from this fixed path (its Deployment mounts one there) even with metrics
        # off: put one of this CA there (the same for every local cluster)
        metrics = Path(os.environ.get("HURRICANE_KUEUE_METRICS_CERTS", "/etc/kueue/metrics/certs"))
        try:
            metrics.mkdir(parents=True, exist_ok=True)
            for name in ("tls.crt", "tls.key"):
                if not (metrics / name).is_file():
                    shutil.copy(certs / name, metrics / name)
        except OSError as err:
            raise ControlPlaneError(f"Kueue needs its metrics certificate in {metrics}: {err} "
                                    "(run as root once, or create it)") from err
        kc = self.identity("kueue", "kueue-manager")
        self._start("kueue", [str(bin_dir / "kueue"), f"--config={self.dir / 'kueue.yaml'}",
                              f"--kubeconfig={kc}", "--zap-log-level=info",
                              # the on-demand visibility API would be an aggregated API server
                              "--feature-gates=VisibilityOnDemand=false"])
        self._wait("kueue", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{health}/readyz", timeout=2).status == 200, timeout)
        st = self.state()
        st["kueue"] = {"webhook": url, "health": health}
        self.state_file.write_text(json.dumps(st, indent=2))

    def kubectl(self, *args: str, identity: str = "admin", input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """This build's kubectl as ``identity``."""
        kubectl = Path(self.state()["bin"]) / "kubectl"
        r = subprocess.run([str(kubectl), f"--kubeconfig={self.kubeconfig(identity)}", *args],
                           input=input, text=True, capture_output=True)
        if check and r.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args[:2])} failed: {r.stderr.strip()}")
        return r

    # JobSet and Kubeflow Trainer ---------------------------------------------------------------

    def _webhooked(self, name: str, docs: Iterable[dict[str, Any]], url: str,
                   selectors: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Webhook configurations with each service reference replaced by ``url`` + its path
        and this CA; ``selectors`` adds objectSelectors by webhook name (what a release's
        kustomize patches add)."""
        out = []
        ca_b64 = _b64(self.pki.ca.read_bytes())
        for doc in docs:
            if not doc:
                continue
            for h in doc.get("webhooks", []):
                h["clientConfig"] = {"url": url + h["clientConfig"]["service"]["path"],
                                     "caBundle": ca_b64}
                if selectors and h["name"] in selectors:
                    h["objectSelector"] = selectors[h["name"]]
            doc["metadata"]["name"] = f"{name}-{doc['metadata']['name']}"
            out.append(doc)
        return out

    def _manager_rbac(self, role: dict[str, Any], name: str, user: str) -> list[dict[str, Any]]:
        role["metadata"] = {"name": name}
        return [role, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": {"name": name},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                   "kind": "ClusterRole", "name": name},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                     "name": user}]}]

    def _established(self, docs: list[dict[str, Any]], timeout: float) -> None:
        names = [d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"]
        self._wait("kube-apiserver", lambda: all(any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}")
                      .get("status") or {}).get("conditions") or []) for n in names), timeout)

    def training_up(self, timeout: float = 120.0) -> None:
        """JobSet's and Kubeflow Trainer's controller managers from the pinned build
        (``scripts/build_training_operators.sh``): their CRDs, webhooks (on loopback, this CA)
        and ClusterRoles bound to identities of their own; Trainer's ``torch-distributed``
        ClusterTrainingRuntime. Waits until both managers are ready."""
        import yaml

        out = Path(os.environ.get("HURRICANE_TRAINING_OPERATORS") or subprocess.run(
            [str(BUILD.parent / "build_training_operators.sh")], check=True, text=True,
            stdout=subprocess.PIPE).stdout.strip().splitlines()[-1])
        crt, key = self.pki.cert("training-webhooks", "training-webhooks", server=True,
                                 client=False, sans=["IP:127.0.0.1", "DNS:localhost"])

        def load(path: Path) -> list[dict[str, Any]]:
            return [d for d in yaml.safe_load_all(path.read_text()) if d]

        # JobSet: its pod webhooks only for JobSet's pods (the release's kustomize patch)
        cfg = out / "jobset-config" / "components"
        health, hook = free_port(), free_port()
        certs = self.dir / "jobset-certs"
        certs.mkdir(exist_ok=True)
        shutil.copy(crt, certs / "tls.crt")
        shutil.copy(key, certs / "tls.key")
        only_jobset_pods = {"matchExpressions": [{"key": "jobset.sigs.k8s.io/jobset-name",
                                                  "operator": "Exists"}]}
        docs = [d for p in sorted((cfg / "crd" / "bases").glob("*.yaml")) for d in load(p)]
        docs += self._webhooked("jobset", load(cfg / "webhook" / "manifests.yaml"),
                                f"https://127.0.0.1:{hook}",
                                {"mpod.kb.io": only_jobset_pods, "vpod.kb.io": only_jobset_pods})
        docs += self._manager_rbac(load(cfg / "rbac" / "role.yaml")[0], "jobset-manager-role",
                                   "jobset-manager")
        self.apply(docs)
        self._established(docs, timeout)
        (self.dir / "jobset.yaml").write_text(yaml.safe_dump({
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"port": hook, "host": "127.0.0.1", "certDir": str(certs)},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"}}))
        self._start("jobset", [str(out / "bin" / "jobset-manager"),
                               f"-config={self.dir / 'jobset.yaml'}",
                               f"-kubeconfig={self.identity('jobset', 'jobset-manager')}"])
        self._wait("jobset", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{health}/readyz", timeout=2).status == 200, timeout)

        # Trainer: its webhook server reads $TMPDIR/k8s-webhook-server/serving-certs
        man = out / "trainer-manifests" / "base"
        t_health, t_hook = free_port(), free_port()
        tmp = self.dir / "trainer-tmp"
        serving = tmp / "k8s-webhook-server" / "serving-certs"
        serving.mkdir(parents=True, exist_ok=True)
        shutil.copy(crt, serving / "tls.crt")
        shutil.copy(key, serving / "tls.key")
        docs = [d for p in sorted((man / "crds").glob("trainer.kubeflow.org_*.yaml"))
                for d in load(p)]
        docs += self._webhooked("trainer", load(man / "webhook" / "manifests.yaml"),
                                f"https://127.0.0.1:{t_hook}")
        docs += self._manager_rbac(load(man / "rbac" / "role.yaml")[0], "trainer-manager-role",
                                   "trainer-manager")
        self.apply(docs)
        self._established(docs, timeout)
        (self.dir / "trainer.yaml").write_text(yaml.safe_dump({
            "apiVersion": "config.trainer.kubeflow.org/v1alpha1", "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{t_health}",
                       "readinessEndpointName": "readyz", "livenessEndpointName": "healthz"},
            "metrics": {"bindAddress": "0", "secureServing": False},
            "webhook": {"port": t_hook, "host": "127.0.0.1"},
            "leaderElection": {"leaderElect": False},
            "certManagement": {"enable": False}}))
        self._start("trainer", [str(out / "bin" / "trainer-controller-manager"),
                                f"-config={self.dir / 'trainer.yaml'}",
                                f"-kubeconfig={self.identity('trainer', 'trainer-manager')}"],
                    env={"TMPDIR": str(tmp)})
        self._wait("trainer", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{t_health}/readyz", timeout=2).status == 200, timeout)
        # the runtime goes through Trainer's validating webhook: it answers once applied
        runtime = load(man / "runtimes" / "torch_distributed.yaml")
        self._wait("trainer", lambda: self.kubectl(
            "apply", "--server-side", "--field-manager=hurricane", "-f", "-",
            input=yaml.safe_dump_all(runtime), check=False).returncode == 0, timeout)
        st = self.state()
        st["training"] = {"jobset": f"https://127.0.0.1:{hook}",
                          "trainer": f"https://127.0.0.1:{t_hook}", "build": str(out)}
        self.state_file.write_text(json.dumps(st, indent=2))

    def apply(self, docs: Iterable[dict[str, Any]], identity: str = "admin", *,
              namespace: str | None = None, dry_run: bool = False) -> str:
        """Server-side apply of each document (field manager ``hurricane``) as ``identity``;
        ``dry_run``: the API server validates and admits everything but stores nothing."""
        import yaml

        args = ["apply", "--server-side", "--field-manager=hurricane", "--force-conflicts",
                *(["-n", namespace] if namespace else []),
                *(["--dry-run=server"] if dry_run else []), "-f", "-"]
        return self.kubectl(*args, identity=identity, input=yaml.safe_dump_all(list(docs))).stdout

    def down(self, timeout: float = 20.0) -> None:
        """Stops every component (SIGTERM, then SIGKILL), the API server's clients first."""
        pids = {n: p.pid for n, p in self.procs.items()} or self.state().get("pids", {})
        for name in reversed(list(pids)):
            pid = pids[name]
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            proc = self.procs.get(name)
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        break
                else:
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                if proc is not None:
                    proc.wait(10)
        self.procs.clear()
        st = self.state()
        st["pids"] = {}
        if st:
            self.state_file.write_text(json.dumps(st, indent=2))

    def __enter__(self) -> ControlPlane:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


# -- command line -----------------------------------------------------------------------------

DEFAULT_NODES = (
    "cpu-0:hurricane.io/device=cpu::cpu=4,memory=16Gi",
    "gpu-0:hurricane.io/device=gpu:nvidia.com/gpu=NoSchedule:cpu=8,nvidia.com/gpu=2",
    "dsp-0:hurricane.io/device=dsp:hurricane.io/device~dsp=NoSchedule:cpu=2,qualcomm.com/hexagon=1",
    "train-0:hurricane.io/pool=train::cpu=8,memory=32Gi",
)


def main(argv: list[str] | None = None) -> None:
    """``python -m hurricane.operator.controlplane up``: the control plane, Kueue and the node
    agent in the foreground until Ctrl-C; prints the admin kubeconfig for kubectl."""
    import argparse
    import threading

    ap = argparse.ArgumentParser(prog="python -m hurricane.operator.controlplane",
                                 description=main.__doc__)
    ap.add_argument("command", choices=["up"])
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get(
        "HURRICANE_CLUSTER_DIR", "~/.local/state/hurricane/cluster")).expanduser())
    ap.add_argument("--no-kueue", action="store_true")
    ap.add_argument("--node", action="append",
                    help="name:labels:taints:capacity (repeat); default: a CPU, a GPU, a DSP "
                         "and a training node")
    args = ap.parse_args(argv)
    from hurricane.operator.nodeagent import NodeSpec, agent_for

    cp = ControlPlane(args.dir)
    t0 = time.monotonic()
    print(f"starting the control plane in {cp.dir} (binaries: {binaries()})", flush=True)
    cp.up()
    if not args.no_kueue:
        cp.kueue_up()
    agent = agent_for(cp, [NodeSpec.parse(n) for n in args.node or DEFAULT_NODES],
                      pass_env=("PYTHONPATH",)).start()
    print(f"ready in {time.monotonic() - t0:.0f} s: {cp.server}\n"
          f"  export KUBECONFIG={cp.kubeconfig('admin')}\n  kubectl get nodes\n"
          "Ctrl-C stops everything.", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    agent.close()
    cp.down()


if __name__ == "__main__":
    main()

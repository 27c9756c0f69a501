"""`hurricane cluster up|down|status`: the Kubernetes mode on one machine, to try it without
Docker or a cloud account.

``up`` starts, in one background process that ``down`` stops:

- the control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and Kueue,
  built once from their pinned Go modules (``scripts/build_controlplane.sh``);
- the node agent with a CPU, a GPU, a DSP and a training node (``--node`` to change them);
- Redis (``redis-server``, with a password) and an S3 server (``minio`` when it is on PATH,
  else ``moto_server`` from the dev extra, in memory) as the release's external services;
- the Helm chart, rendered with real Helm and applied server-side into namespace
  ``hurricane``: the API, the control, train and profile workers and beat run as pods.

It prints the API's URL and a token (``HURRICANE_SERVER``/``HURRICANE_TOKEN``) and the admin
kubeconfig, so that ``hurricane submit`` and ``kubectl`` work against it. State, logs and
certificates live in ``--dir`` (default ``~/.local/state/hurricane/cluster``)."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from hurricane.machine import pid_alive

DEFAULT_DIR = Path(os.environ.get("HURRICANE_CLUSTER_DIR",
                                  "~/.local/state/hurricane/cluster")).expanduser()
NAMESPACE = RELEASE = "hurricane"
BUCKET = "hurricane"
START_S = 900.0  # a bound on `up` (a first run builds nothing: the binaries are built before)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ok: Any, what: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered HTTP
    except OSError:
        return False


class Services:
    """Redis and an S3 server on free loopback ports, as processes of this one."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis_password = secrets.token_urlsafe(24)
        self.access, self.secret = "hurricane", secrets.token_urlsafe(24)
        self.redis_url = self.s3_endpoint = ""

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        with open(self.dir / "logs" / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def up(self) -> Services:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        redis = shutil.which("redis-server")
        if redis is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        port = _free_port()
        proc = self._start("redis", [redis, "--bind", "127.0.0.1", "--port", str(port),
                                     "--save", "", "--appendonly", "no",
                                     "--requirepass", self.redis_password])
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        _wait(lambda: _port_open(port), "redis-server listening", 60, proc)
        port = _free_port()
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        minio = shutil.which("minio")
        moto = Path(sys.executable).parent / "moto_server"
        if minio:
            (self.dir / "s3").mkdir(exist_ok=True)
            proc = self._start("s3", [minio, "server", str(self.dir / "s3"), "--address",
                                      f"127.0.0.1:{port}"],
                               env={**os.environ, "MINIO_ROOT_USER": self.access,
                                    "MINIO_ROOT_PASSWORD": self.secret})
        elif moto.exists():
            proc = self._start("s3", [str(moto), "-H", "127.0.0.1", "-p", str(port)])
        else:
            raise RuntimeError("no S3 server: put a `minio` binary on PATH or install the dev "
                               "extra (moto[server])")
        _wait(lambda: _http_ok(self.s3_endpoint), "the S3 server answering", 60, proc)
        from minio import Minio

        Minio(self.s3_endpoint.removeprefix("http://"), access_key=self.access,
              secret_key=self.secret, secure=False, region="us-east-1").make_bucket(BUCKET)
        return self

    def down(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def release_values(svc: Services, api_port: int, token_sha256: str, user: str) -> dict[str, Any]:
    """The chart's values for this machine: the external Redis and S3, one API replica on
    ``api_port`` (pods share the machine's network), pools sized for the agent's nodes."""
    small = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    return {
        "api": {"replicas": 1, "workers": 1, "containerPort": api_port},
        "workers": {"control": {"concurrency": 2}, "train": {"concurrency": 4},
                    "profile": {"concurrency": 2}},
        "redis": {"enabled": False, "external": {"url": svc.redis_url}},
        "minio": {"enabled": False},
        "s3": {"endpoint": svc.s3_endpoint, "bucket": BUCKET, "accessKey": svc.access,
               "secretKey": svc.secret},
        "security": {"redis": {"existingSecret": "local-redis"},
                     "jobsS3": {"existingSecret": "local-s3-jobs"}},
        "auth": {"tokens": [{"user": user, "role": "admin", "sha256": token_sha256}]},
        "devicePools": [{"name": "cpu", "label": "cpu", "resources": small}],
        "training": {"nodeSelector": {"hurricane.io/pool": "train"}, "resources": small},
        # `kubectl apply` a HurricaneSearch: the CRD and one operator replica
        "operator": {"enabled": True, "replicas": 1, "resyncSeconds": 2},
    }


def serve(d: Path, nodes: list[str] | None, *, kueue: bool = True,
          values: dict[str, Any] | None = None, stop: threading.Event | None = None) -> None:
    """Brings everything up, writes ``cluster.json`` with ``state: ready``, and holds it until
    ``stop`` (SIGTERM/SIGINT when None), then takes it all down."""
    import yaml

    from hurricane.operator.chart import default_chart, merge_values, render_chart
    from hurricane.operator.controlplane import DEFAULT_NODES, ControlPlane
    from hurricane.operator.nodeagent import NodeSpec, agent_for

    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    state_file = d / "cluster.json"

    def note(**kw: Any) -> None:
        st = {"pid": os.getpid(), **kw}
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(st, indent=2))
        tmp.replace(state_file)

    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())  # type: ignore[union-attr]
    note(state="starting")
    cp = ControlPlane(d / "controlplane")
    svc = Services(d)
    agent = None
    t0 = time.monotonic()
    try:
        cp.up()
        if kueue:
            cp.kueue_up()
        agent = agent_for(cp, [NodeSpec.parse(n) for n in nodes or DEFAULT_NODES],
                          pass_env=("PYTHONPATH",)).start()
        svc.up()
        token = secrets.token_urlsafe(32)
        user = re.sub(r"[^a-z0-9_.-]", "-", getpass.getuser().lower()).strip("-._") or "local"
        api_port = _free_port()
        chart = default_chart()
        if chart is None:
            raise RuntimeError("no chart: run from a checkout (charts/hurricane)")
        digest = hashlib.sha256(token.encode()).hexdigest()  # what a tokens file holds
        objs = [o for o in render_chart(chart, merge_values(release_values(
                    svc, api_port, digest, user), values or {}),
                    release=RELEASE, namespace=NAMESPACE)
                if "helm.sh/hook" not in (o["metadata"].get("annotations") or {})]
        cp.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        secrets_yaml = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "local-redis"},
             "stringData": {"password": svc.redis_password}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "local-s3-jobs"},
             "stringData": {"HURRICANE_S3_ACCESS_KEY": svc.access,
                            "HURRICANE_S3_SECRET_KEY": svc.secret}}]
        cp.apply(secrets_yaml + objs, namespace=NAMESPACE)
        (d / "release.yaml").write_text(yaml.safe_dump_all(objs))

        def api_ip() -> str:
            pods = json.loads(cp.kubectl(
                "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=api",
                "-o", "json").stdout)["items"]
            for p in pods:
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p.get("status", {}).get("conditions", [])):
                    return str(p["status"]["podIP"])
            return ""

        _wait(lambda: bool(api_ip()) or stop.is_set(), "the API pod Ready", START_S)
        if stop.is_set():
            return
        url = f"http://{api_ip()}:{api_port}"
        (d / "token").write_text(token + "\n")
        (d / "token").chmod(0o600)
        note(state="ready", url=url, user=user, token_file=str(d / "token"),
             kubeconfig=str(cp.kubeconfig("admin")), namespace=NAMESPACE,
             redis=svc.redis_url, s3=svc.s3_endpoint, bucket=BUCKET,
             seconds=round(time.monotonic() - t0, 1))
        stop.wait()
    except BaseException as err:
        note(state="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        if agent is not None:
            agent.close()
        cp.down()
        svc.down()
        if json.loads(state_file.read_text()).get("state") != "failed":
            note(state="stopped")


def read_state(d: Path) -> dict[str, Any]:
    try:
        return json.loads((d / "cluster.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def alive(pid: int) -> bool:
    return pid > 0 and pid_alive(pid)


# -- the command line --------------------------------------------------------------------------

ClusterDir = Annotated[Path, typer.Option(
    "--dir", help="state directory (default: HURRICANE_CLUSTER_DIR or "
    "~/.local/state/hurricane/cluster)")]


def _exports(st: dict[str, Any]) -> str:
    token = Path(st["token_file"]).read_text().strip()
    return (f"  export HURRICANE_SERVER={st['url']} HURRICANE_TOKEN={token}\n"
            f"  export KUBECONFIG={st['kubeconfig']}\n"
            f"  kubectl get nodes; kubectl -n {st['namespace']} get pods\n"
            "  hurricane submit examples/digits-cpu.yaml")


def up_command(
    state_dir: ClusterDir = DEFAULT_DIR,
    node: Annotated[list[str] | None, typer.Option(
        help="name:labels:taints:capacity (repeat); default: a CPU, a GPU, a DSP and a "
        "training node")] = None,
    no_kueue: Annotated[bool, typer.Option("--no-kueue", help="leave Kueue out")] = False,
    foreground: Annotated[bool, typer.Option(help="run here until Ctrl-C")] = False,
) -> None:
    """A local Kubernetes with the chart installed: control plane, Kueue, node agent, Redis,
    S3 and the release's pods. Builds the control plane's binaries on first use (about 35
    minutes on 2 cores)."""
    from hurricane.operator.controlplane import binaries

    d = state_dir.expanduser().resolve()
    st = read_state(d)
    if st.get("state") in ("starting", "ready") and alive(int(st.get("pid", 0))):
        typer.echo(f"a local cluster already runs from {d} (pid {st['pid']}): "
                   "`hurricane cluster down` first", err=True)
        raise typer.Exit(1)
    typer.echo("the control plane's binaries (built once, cached): " + str(binaries()))
    argv = [sys.executable, "-m", "hurricane.operator.localcluster", "--dir", str(d),
            *(["--no-kueue"] if no_kueue else []), *(f"--node={n}" for n in node or [])]
    if foreground:
        os.execv(sys.executable, argv)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cluster.json").unlink(missing_ok=True)
    with open(d / "cluster.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_S
    while (st := read_state(d)).get("state") not in ("ready", "failed") or st.get("pid") != proc.pid:
        if proc.poll() is not None or time.monotonic() > deadline:
            typer.echo(f"the local cluster did not start; see {d / 'cluster.log'}:\n"
                       + (d / "cluster.log").read_text()[-3000:], err=True)
            raise typer.Exit(1)
        time.sleep(0.5)
    if st["state"] == "failed":
        typer.echo(f"the local cluster failed: {st.get('error')}; see {d / 'cluster.log'}",
                   err=True)
        raise typer.Exit(1)
    typer.echo(f"hurricane cluster up: ready in {st['seconds']:.0f} s, API {st['url']}\n"
               + _exports(st) + "\n  stop: hurricane cluster down")


def down_command(state_dir: ClusterDir = DEFAULT_DIR) -> None:
    """Stop the local cluster (the release's pods, the node agent, the control plane, Redis,
    S3)."""
    d = state_dir.expanduser().resolve()
    st = read_state(d)
    pid = int(st.get("pid", 0))
    if not pid or not alive(pid):
        typer.echo(f"no local cluster runs from {d}")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    typer.echo(f"hurricane cluster down: stopped (pid {pid})")


def status_command(state_dir: ClusterDir = DEFAULT_DIR) -> None:
    """Whether the local cluster runs, and how to reach it (exit 1 unless ready)."""
    d = state_dir.expanduser().resolve()
    st = read_state(d)
    if st.get("state") != "ready" or not alive(int(st.get("pid", 0))):
        typer.echo(f"not running ({st.get('state', 'never started')}) in {d}")
        raise typer.Exit(1)
    typer.echo(f"ready: API {st['url']} (pid {st['pid']})\n" + _exports(st))


def add_commands(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("status")(status_command)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import logging

    ap = argparse.ArgumentParser(prog="python -m hurricane.operator.localcluster")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--no-kueue", action="store_true")
    ap.add_argument("--node", action="append")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(args.dir.expanduser().resolve(), args.node, kueue=not args.no_kueue)


if __name__ == "__main__":
    main()

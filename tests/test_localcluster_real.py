"""`hurricane cluster up|status|down` as a user runs them: a local Kubernetes (the control plane
built from its pinned modules, Kueue, the node agent) with the chart installed against its own
Redis and S3; the API pod answers with the printed token, kubectl with the printed kubeconfig
sees the release's pods running, and `down` leaves no process and no open port behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "hurricane", "cluster"]


def _open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _processes_under(d: Path) -> list[str]:
    """Live processes of the cluster: their command line names ``d`` (the control plane's
    components) or they run in a folder under it (the pods' processes)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(p / "cwd")
            except OSError:
                continue
            if str(d) in cmd or cwd.startswith(str(d)):
                out.append(f"{p.name} in {cwd}: {cmd[:200]}")
    return out


def test_cluster_up_installs_the_chart_and_down_stops_everything(tmp_path: Path) -> None:
    d = tmp_path / "cluster"
    up = subprocess.run([*CLI, "up", "--dir", str(d)], capture_output=True, text=True,
                        cwd=ROOT, timeout=900)
    st = json.loads((d / "cluster.json").read_text()) if (d / "cluster.json").is_file() else {}
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert st["state"] == "ready" and f"API {st['url']}" in up.stdout
        token = Path(st["token_file"]).read_text().strip()
        assert f"HURRICANE_TOKEN={token}" in up.stdout and st["kubeconfig"] in up.stdout
        status = subprocess.run([*CLI, "status", "--dir", str(d)], capture_output=True,
                                text=True, cwd=ROOT, timeout=60)
        assert status.returncode == 0 and st["url"] in status.stdout

        # the API, a pod of the chart, answers the printed token (and refuses another)
        req = urllib.request.Request(st["url"] + "/v1/searches",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200 and json.loads(resp.read())["data"] == []
        bad = urllib.request.Request(st["url"] + "/v1/searches",
                                     headers={"Authorization": "Bearer not-the-token"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=30)
        assert info.value.code == 401

        # kubectl with the printed kubeconfig: the release's pods, running on the agent's nodes
        kubectl = Path(json.loads((d / "controlplane" / "controlplane.json").read_text())["bin"])

        def get(*args: str) -> dict[str, Any]:
            return json.loads(subprocess.run(  # type: ignore[no-any-return]
                [str(kubectl / "kubectl"), "--kubeconfig", st["kubeconfig"], "-n",
                 st["namespace"], "get", *args, "-o", "json"], capture_output=True, text=True,
                check=True, timeout=60).stdout)

        def running() -> dict[str, str]:
            return {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["nodeName"]
                    for p in get("pods")["items"] if p["status"]["phase"] == "Running"}

        # the operator starts once the API's Service has a pod to resolve to: wait for it
        comps = {"api", "worker-control", "worker-train", "worker-profile-cpu", "beat",
                 "operator"}
        on = wait_for(lambda: (lambda r: r if set(r) == comps else None)(running()), 300,
                      "the release's pods running, the operator's too")
        assert on["worker-profile-cpu"] == "cpu-0"  # the pool's node
        # the CRD is served: `kubectl get hurricanesearches` answers (none yet)
        assert get("hurricanesearches")["items"] == []
        assert st["redis"] and st["s3"]
    finally:
        down = subprocess.run([*CLI, "down", "--dir", str(d)], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        if down.returncode != 0 and st.get("pid"):
            os.killpg(int(st["pid"]), signal.SIGKILL)
    assert down.returncode == 0, down.stderr[-2000:]
    assert json.loads((d / "cluster.json").read_text())["state"] == "stopped"
    url = urlsplit(st["url"])
    assert not _open(url.hostname or "", url.port or 0)
    for endpoint in (st["redis"], st["s3"]):
        u = urlsplit(endpoint)
        assert not _open(u.hostname or "", u.port or 0), endpoint
    assert not _processes_under(d), _processes_under(d)

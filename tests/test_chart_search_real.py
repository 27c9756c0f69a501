"""A search through the chart on the real control plane (tests/realcluster.py): the release's
own Deployments (the API, the control, train and profile workers, beat) run as pods through
the node agent, with their ServiceAccount token, ConfigMap and Secrets resolved by the API
server; Redis (with a password) and the S3 server (moto) are external services, as
``redis.enabled=false`` and ``minio.enabled=false`` make them. A spec submitted with the CLI to
the API pod becomes Jobs that the workers create with the chart's Role, the real scheduler
binds to the pools' nodes and the node agent runs; the search ends succeeded and ``hurricane
fetch`` brings its checkpoint, ONNX model and report back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from hurricane.operator.controller import LEASE
from hurricane.operator.crd import GROUP, PLURAL, VERSION
from hurricane.service.tokens import hash_token
from tests.conftest import tiny_spec_dict
from tests.realcluster import RealCluster, explained, real_cluster  # noqa: F401
from tests.servers import MotoServer, RedisServer, free_port, wait_for
from tests.test_chart import _objects, chart_values, render_templates
from tests.test_chart_real import namespace
from tests.test_crd_real import installed  # noqa: F401

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
EVENT_S = 600  # bounds on events real processes must reach (pods importing torch): hang guards
SEARCH_S = 1800  # the whole search: a bound, not a target
BUCKET, ACCESS, SECRET = "hurricane-chart", "chart-access", "chart-secret-0123456789"
REDIS_PASSWORD = "redis-password-0123456789"
TOKEN = "alice-token-0123456789abcdef"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, MotoServer]]:
    d = tmp_path_factory.mktemp("external")
    with RedisServer(log=d / "redis.log", password=REDIS_PASSWORD) as redis, \
            MotoServer(log=d / "moto.log") as moto:
        from minio import Minio

        Minio(moto.endpoint.removeprefix("http://"), access_key=ACCESS, secret_key=SECRET,
              secure=False, region="us-east-1").make_bucket(BUCKET)
        yield redis, moto


def release_values(redis: RedisServer, moto: MotoServer, api_port: int) -> dict[str, Any]:
    """The values a user sets for a cluster with its own Redis and S3; sizes fit the test's
    nodes (cpu-0: 4 CPUs, train-0/1: 8)."""
    small = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    return {
        "api": {"replicas": 1, "workers": 1, "containerPort": api_port},
        "workers": {"control": {"concurrency": 2}, "train": {"concurrency": 4},
                    "profile": {"concurrency": 2}},
        "redis": {"enabled": False, "external": {"url": redis.url}},
        "minio": {"enabled": False},
        "s3": {"endpoint": moto.endpoint, "bucket": BUCKET, "prefix": "runs",
               "accessKey": ACCESS, "secretKey": SECRET},
        "security": {"redis": {"existingSecret": "external-redis"},
                     "jobsS3": {"existingSecret": "external-s3-jobs"}},
        "auth": {"tokens": [{"user": "alice", "role": "user", "sha256": hash_token(TOKEN)}]},
        "devicePools": [{"name": "cpu", "label": "cpu", "resources": small}],
        "training": {"nodeSelector": {"hurricane.io/pool": "train"}, "resources": small},
        "settings": {"HURRICANE_RECONCILE_INTERVAL_S": "5"},
        # the operator as the chart deploys it: two replicas, one leading; the CRD is the
        # cluster's already (tests/test_crd_real.py's fixture), as when GitOps owns it
        "operator": {"enabled": True, "installCRD": False, "replicas": 2, "resyncSeconds": 2},
    }


def _pods(rc: RealCluster, ns: str, component: str) -> list[Any]:
    return list(rc.core.list_namespaced_pod(
        ns, label_selector=f"app.kubernetes.io/component={component}").items)


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_a_search_runs_end_to_end_through_the_charts_deployments(
        installed, services, tmp_path: Path) -> None:  # noqa: F811
    rc = installed
    redis, moto = services
    ns = namespace(rc, "chart-search")
    rc.core.create_namespaced_secret(ns, {"metadata": {"name": "external-redis"},
                                          "stringData": {"password": REDIS_PASSWORD}})
    rc.core.create_namespaced_secret(ns, {"metadata": {"name": "external-s3-jobs"}, "stringData": {
        "HURRICANE_S3_ACCESS_KEY": ACCESS, "HURRICANE_S3_SECRET_KEY": SECRET}})
    api_port = free_port()
    values = release_values(redis, moto, api_port)
    values["operator"]["watchNamespace"] = ns  # not other tests' resources
    objs = [o for path, text in sorted(render_templates(
                chart_values(values), namespace=ns).items())
            if "/tests/" not in path for o in _objects({path: text})]
    # nothing of the bundled Redis and MinIO: the release uses the external ones
    assert not [o["metadata"]["name"] for o in objs if o["kind"] in ("Deployment", "StatefulSet")
                and any(w in o["metadata"]["name"] for w in ("redis", "minio"))]
    rc.cp.apply(objs, namespace=ns)
    try:
        with explained(rc, ns):
            api = wait_for(lambda: next((p for p in _pods(rc, ns, "api") if _ready(p)), None),
                           EVENT_S, "the API pod Ready (its readiness probe: Redis and S3)")
            deployments = k8s.AppsV1Api(rc.admin).list_namespaced_deployment(ns).items
            assert {d.metadata.name.removeprefix("hur-hurricane-") for d in deployments} == {
                "api", "control", "train", "profile-cpu", "beat", "operator"}
            wait_for(lambda: all(_pods(rc, ns, c) and all(p.status.phase == "Running"
                                                          for p in _pods(rc, ns, c))
                                 for c in ("worker-control", "worker-train",
                                           "worker-profile-cpu", "beat", "operator")),
                     EVENT_S, "the workers, beat and the operator running")
            # a HurricaneSearch in the release's namespace, beside the CLI's search: the
            # operator pod reaches the API through the Service's cluster name
            cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HurricaneSearch",
                  "metadata": {"name": "by-crd"}, "spec": tiny_spec_dict()}
            applied = rc.cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(cr),
                                    check=False)
            assert applied.returncode == 0, applied.stderr
            url = f"http://{api.status.pod_ip}:{api_port}"
            env = {**os.environ, "HURRICANE_SERVER": url, "HURRICANE_TOKEN": TOKEN}
            spec = tmp_path / "digits.yaml"
            spec.write_text(yaml.safe_dump(tiny_spec_dict()))
            cli = [sys.executable, "-m", "hurricane"]
            sub = subprocess.run([*cli, "submit", str(spec)], capture_output=True, text=True,
                                 env=env, cwd=ROOT, timeout=300)
            assert sub.returncode == 0, sub.stderr[-3000:]
            sid = sub.stdout.strip()
            watch = subprocess.run([*cli, "watch", sid], capture_output=True, text=True,
                                   env=env, cwd=ROOT, timeout=SEARCH_S)
            assert watch.returncode == 0 and f"{sid} succeeded" in watch.stdout, (
                watch.stdout[-2000:] + watch.stderr[-4000:])

            custom = k8s.CustomObjectsApi(rc.admin)

            def finished() -> dict[str, Any] | None:
                o = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "by-crd")
                conds = {c["type"]: c["status"] for c in (o.get("status") or {}).get(
                    "conditions") or []}
                return o if "True" in (conds.get("Succeeded"), conds.get("Failed")) else None

            done = wait_for(finished, SEARCH_S, "the HurricaneSearch finished")

        # the resource's search: run for its namespace, its winner and artifacts in .status
        st = done["status"]
        assert st["state"] == "succeeded" and st["owner"] == ns, st
        assert st["winners"]["cpu"]["arch"] and 0 < st["winners"]["cpu"]["top1"] <= 1
        assert st["searchId"] != sid and "stage1" in st["supernets"]
        # two operator pods, one leader: the Lease names one of them
        ops = _pods(rc, ns, "operator")
        lease = k8s.CoordinationV1Api(rc.admin).read_namespaced_lease(LEASE, ns)
        assert len(ops) == 2 and lease.spec.holder_identity.rsplit("-", 1)[0] in {
            p.metadata.name for p in ops}

        # every step ran as a Job the workers created, its pods on the pool's nodes
        jobs = [j for j in rc.batch.list_namespaced_job(ns).items
                if j.metadata.labels.get("hurricane.io/search-id") == sid]
        by_step: dict[str, list[str]] = {}
        for j in jobs:
            step = j.metadata.labels.get("hurricane.io/step", "")
            assert j.status.succeeded, (j.metadata.name, j.status)
            pods = rc.core.list_namespaced_pod(
                ns, label_selector=f"batch.kubernetes.io/job-name={j.metadata.name}").items
            by_step.setdefault(step, []).extend(p.spec.node_name for p in pods)
        assert {"profile", "stage1", "retrain"} <= set(by_step), by_step
        assert set(by_step["profile"]) == {"cpu-0"}
        assert set(by_step["stage1"]) <= {"train-0", "train-1"}
        assert set(by_step["retrain"]) <= {"train-0", "train-1"}

        out = tmp_path / "fetched"
        fetch = subprocess.run([*cli, "fetch", sid, "--device", "cpu", "--out", str(out)],
                               capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert fetch.returncode == 0, fetch.stderr[-2000:]
        files = {p.name for p in (out / sid).iterdir()}
        assert {"final.pt", "model.onnx", "arch.json", "report.json"} <= files
        report = json.loads((out / sid / "report.json").read_text())
        assert report["devices"]["cpu"]["arch"] == json.loads(
            (out / sid / "arch.json").read_text())["arch"]
        # the API pod's log came through pods/log (the node agent's log endpoint)
        log = rc.core.read_namespaced_pod_log(api.metadata.name, ns, container="api")
        assert f"/searches/{sid}" in log
    finally:
        rc.core.delete_namespace(ns)

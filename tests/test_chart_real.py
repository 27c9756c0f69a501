"""The Helm chart against the real control plane (tests/realcluster.py): everything Helm renders
(real Helm, helm-python-sdk) for each example values file passes the API server's own
validation and admission (server-side apply with ``--dry-run=server``); the default release
applied for real gives the workers a ServiceAccount whose token, under exactly the chart's
Role, makes every call the executor needs and no other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from hurricane.operator.executor import KubernetesExecutor, required_rules
from hurricane.operator.manifests import Cluster
from hurricane.runs.contract import JobInvalid, JobSpec
from hurricane.settings import Settings
from tests.realcluster import RealCluster, real_cluster  # noqa: F401
from tests.servers import wait_for
from tests.test_chart import GPU_VALUES, ROOT, _objects, chart_values, render_templates

pytestmark = pytest.mark.cluster
EXAMPLES = [None, GPU_VALUES, ROOT / "examples" / "values-shared-cluster.yaml"]


def render_into(ns: str, values_file: Path | None = None) -> list[dict[str, Any]]:
    """The release ``hur`` as ``helm template --namespace ns`` renders it."""
    return _objects(render_templates(chart_values(None, values_file), namespace=ns))


def namespace(rc: RealCluster, name: str) -> str:
    rc.core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: any(sa.metadata.name == "default"
                         for sa in rc.core.list_namespaced_service_account(name).items), 60)
    return name


@pytest.mark.parametrize("values_file", EXAMPLES, ids=lambda p: p.name if p else "defaults")
def test_every_rendered_object_passes_the_api_servers_dry_run(real_cluster, values_file) -> None:  # noqa: F811
    ns = namespace(real_cluster, f"dry-{(values_file.stem if values_file else 'defaults')}")
    objs = render_into(ns, values_file)
    if values_file is None:  # the defaults with the operator: its CRD, RBAC and Deployment too
        objs = _objects(render_templates(chart_values({"operator": {"enabled": True}}),
                                         namespace=ns))
        assert {"CustomResourceDefinition", "ClusterRole"} <= {o["kind"] for o in objs}
    out = real_cluster.cp.apply(objs, namespace=ns, dry_run=True)
    assert out.count("(server dry run)") == len(objs), out
    # nothing was stored
    assert not k8s.AppsV1Api(real_cluster.admin).list_namespaced_deployment(ns).items
    assert not k8s.RbacAuthorizationV1Api(real_cluster.admin).list_namespaced_role(ns).items


def _role_rules(role: Any) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role.rules for g in rule.api_groups or [""]
            for r in rule.resources for v in rule.verbs}


def test_the_applied_chart_gives_the_worker_exactly_the_executors_calls(
        real_cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The default release applied for real: the executor, with the settings the chart gives
    the workers (its ConfigMap) and the workers' ServiceAccount token (TokenRequest), creates
    and follows a Job whose pod reads the chart's ConfigMap and jobs' Secret, and is refused
    (403) every call outside the chart's Role."""
    rc = real_cluster
    ns = namespace(rc, "chart-applied")
    objs = render_into(ns)
    rc.cp.apply(objs, namespace=ns)
    cm = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith(
        "-settings"))
    for key, value in cm["data"].items():
        if key.startswith("HURRICANE_K8S_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.k8s_namespace == ns
    binding = next(o for o in objs if o["kind"] == "RoleBinding")
    sa = binding["subjects"][0]["name"]
    role = k8s.RbacAuthorizationV1Api(rc.admin).read_namespaced_role(
        binding["roleRef"]["name"], ns)
    assert _role_rules(role) == required_rules(Cluster.from_settings(settings))
    token = rc.core.create_namespaced_service_account_token(
        sa, ns, {"spec": {"expirationSeconds": 3600}}).status.token
    cfg = k8s.Configuration()
    cfg.host, cfg.ssl_ca_cert = rc.cp.server, str(rc.cp.pki.ca)
    cfg.api_key = {"authorization": f"Bearer {token}"}
    client = k8s.ApiClient(cfg)
    job = JobSpec("nosuch", "profile", f"file://{tmp_path / 'empty'}", device="cpu",
                  node_label="cpu")
    try:
        with pytest.raises(JobInvalid, match="refused the input"):
            KubernetesExecutor(settings=settings, api_client=client).run(job)
        core, batch = k8s.CoreV1Api(client), k8s.BatchV1Api(client)
        for call in (lambda: core.list_namespaced_secret(ns),
                     lambda: core.read_namespaced_secret(settings.k8s_s3_secret, ns),
                     lambda: batch.list_namespaced_job(ns),
                     lambda: k8s.AppsV1Api(client).list_namespaced_deployment(ns),
                     lambda: core.list_namespaced_pod("default")):
            with pytest.raises(ApiException) as info:
                call()
            assert info.value.status == 403
    finally:
        rc.core.delete_namespace(ns)

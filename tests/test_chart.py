"""The Helm chart (charts/hurricane) rendered by real Helm (helm-python-sdk, no helm binary):
lint, the Kubernetes 1.32 schema, the objects' structure, the settings round trip through
hurricane.settings, and values the chart must refuse.

``render()`` is the reusable entry point: ``from tests.test_chart import render``.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from hurricane import settings as settings_mod
from hurricane.operator.chart import merge_values

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "hurricane"
GPU_VALUES = ROOT / "examples" / "values-gpu-cluster.yaml"
BAD_VALUES = sorted((Path(__file__).parent / "chart_values").glob("*.yaml"))
RELEASE = "hur"
NAMESPACE = "nas-test"
FULLNAME = f"{RELEASE}-hurricane"
KUBE_VERSION = "1.32"
# The chart refuses to install without an S3 secret (values.yaml and NOTES say so); every
# render here starts from this override, which a values file or ``values`` may replace.
REQUIRED_VALUES: dict[str, Any] = {"s3": {"secretKey": "chart-test-secret-0123456789"}}

# The Kubernetes API calls of hurricane.operator's executor: the workers' Role, exactly.
EXECUTOR_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]
POD_KINDS = ("Deployment", "StatefulSet", "Pod")
LABELS = ("name", "instance", "version", "component", "managed-by", "part-of")


# -- rendering -------------------------------------------------------------------------------

_merge = merge_values  # Helm's coalescing of user values (the operator's own)


def chart_values(values: dict[str, Any] | None = None, values_file: Path | None = None) -> dict[str, Any]:
    """REQUIRED_VALUES, then the file (``helm -f``), then ``values`` (``--set``)."""
    merged = copy.deepcopy(REQUIRED_VALUES)
    if values_file is not None:
        merged = _merge(merged, yaml.safe_load(Path(values_file).read_text()) or {})
    return _merge(merged, values or {})


def render_templates(values: dict[str, Any] | None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """{template path: rendered text} for exactly these user values (no REQUIRED_VALUES)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=namespace)


def render(values: dict[str, Any] | None = None, values_file: Path | None = None) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks and the ``helm test`` pod included), parsed from
    YAML, for release ``hur`` in namespace ``nas-test``. Raises ``helm_python.HelmError`` (the
    message names the offending key) when the chart refuses the values."""
    return _objects(render_templates(chart_values(values, values_file)))


def _objects(templates: dict[str, str]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path, text in sorted(templates.items()):
        if path.endswith((".yaml", ".yml")):
            objs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objs


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} rendered; have " + ", ".join(
        f"{o['kind']}/{o['metadata']['name']}" for o in objs)
    return hits[0]


def of_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def settings_data(objs: list[dict[str, Any]]) -> dict[str, str]:
    """The HURRICANE_* settings every process and job of the release gets."""
    (cm,) = [o for o in of_kind(objs, "ConfigMap")
             if o["metadata"]["labels"]["app.kubernetes.io/component"] == "settings"]
    data: dict[str, str] = cm["data"]
    return data


def worker_queue(dep: dict[str, Any]) -> str:
    cmd = pod_spec(dep)["containers"][0]["command"]
    return str(cmd[cmd.index("-Q") + 1])


@pytest.fixture(scope="module")
def default_objs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def gpu_objs() -> list[dict[str, Any]]:
    return render(values_file=GPU_VALUES)


EXTERNAL = {"redis": {"enabled": False, "external": {"url": "rediss://redis.data.example.com:6380/2"}},
            "minio": {"enabled": False},
            "s3": {"endpoint": "https://s3.eu-west-1.amazonaws.com", "existingSecret": "team-s3",
                   "secretKey": ""},
            "security": {"jobsS3": {"existingSecret": "team-s3-jobs"}},
            "auth": {"existingSecret": "team-tokens", "existingSecretKey": "users.yaml"}}

CASES = {"default": (None, None), "gpu-example": (None, GPU_VALUES), "external": (EXTERNAL, None)}


# -- 1. renders, lints clean -----------------------------------------------------------------

@pytest.mark.parametrize("case", ["default", "gpu-example"])
def test_lint_is_clean(case: str) -> None:
    values, values_file = CASES[case]
    # strict: warnings are errors, and a template reading a value that does not exist fails
    report = helm.lint(CHART, chart_values(values, values_file), kube_version=f"v{KUBE_VERSION}.0",
                       namespace=NAMESPACE, strict=True)
    assert report["errors"] == []
    # severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_defaults_alone_refuse_an_empty_s3_secret() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"s3\.secretKey is empty"):
        render_templates(None)
    assert of_kind(render({"s3": {"existingSecret": "mine", "secretKey": ""}}), "ConfigMap")


def test_default_install_objects(default_objs: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name'].removeprefix(FULLNAME + '-')}" for o in default_objs)
    assert kinds == sorted([
        "ConfigMap/settings", "Secret/s3", "Secret/auth",
        "ServiceAccount/worker", "ServiceAccount/job", "Role/executor", "RoleBinding/executor",
        "Deployment/api", "Service/api",
        "Deployment/control", "Deployment/train", "Deployment/profile-cpu", "Deployment/beat",
        "StatefulSet/redis", "Service/redis", "Service/redis-headless",
        "StatefulSet/minio", "Service/minio", "Service/minio-headless",
        "Pod/test-readyz",
        # security (tests/test_chart_security.py)
        "Secret/redis-auth", "Secret/s3-jobs", "ConfigMap/s3-jobs-policy", "Job/s3-jobs-user",
        "NetworkPolicy/default-deny", "NetworkPolicy/api", "NetworkPolicy/redis",
        "NetworkPolicy/minio", "NetworkPolicy/jobs"])


# -- 2. the Kubernetes schema ----------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_every_object_validates_against_kubernetes(case: str) -> None:
    values, values_file = CASES[case]
    objs = render(values, values_file)
    assert any(o["kind"] == "Pod" for o in objs)  # the helm test pod is validated too
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")


# -- 3. structure ----------------------------------------------------------------------------

def test_one_profile_worker_per_device_pool(gpu_objs: list[dict[str, Any]]) -> None:
    pools = yaml.safe_load(GPU_VALUES.read_text())["devicePools"]
    assert [p["name"] for p in pools] == ["cpu", "dsp", "vpu"]
    profile = [d for d in of_kind(gpu_objs, "Deployment")
               if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("worker-profile-")]
    assert len(profile) == len(pools)
    for pool in pools:
        dep = find(gpu_objs, "Deployment", f"{FULLNAME}-profile-{pool['name']}")
        spec = pod_spec(dep)
        assert spec["nodeSelector"] == {"hurricane.io/device": pool["label"], **pool.get("nodeSelector", {})}
        assert spec.get("tolerations", []) == pool.get("tolerations", [])
        assert worker_queue(dep) == f"profile.{pool['label']}"
    # names and labels differ: two pools of one device kind share its queue and node label
    objs = render({"devicePools": [{"name": "edge-a", "label": "cpu"}, {"name": "edge-b", "label": "cpu"}]})
    for name in ("edge-a", "edge-b"):
        dep = find(objs, "Deployment", f"{FULLNAME}-profile-{name}")
        assert pod_spec(dep)["nodeSelector"] == {"hurricane.io/device": "cpu"}
        assert worker_queue(dep) == "profile.cpu"
    dsp = pod_spec(find(gpu_objs, "Deployment", f"{FULLNAME}-profile-dsp"))
    assert dsp["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert "-c" in dsp["containers"][0]["command"]
    assert dsp["containers"][0]["command"][dsp["containers"][0]["command"].index("-c") + 1] == "1"


def test_worker_commands_and_queues(default_objs: list[dict[str, Any]]) -> None:
    for name, queue in (("control", "control"), ("train", "train"), ("profile-cpu", "profile.cpu")):
        dep = find(default_objs, "Deployment", f"{FULLNAME}-{name}")
        spec = pod_spec(dep)
        cmd = spec["containers"][0]["command"]
        assert cmd[:4] == ["celery", "-A", "hurricane.workers.app", "worker"]
        assert worker_queue(dep) == queue
        assert cmd[cmd.index("-n") + 1] == f"{name}@%h"
        assert {"--without-gossip", "--without-mingle"} <= set(cmd)
        assert spec["serviceAccountName"] == f"{FULLNAME}-worker"
        assert spec["terminationGracePeriodSeconds"] >= 30
        assert spec.get("automountServiceAccountToken", True)  # the executor needs its token
    beat = find(default_objs, "Deployment", f"{FULLNAME}-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_spec(beat)["containers"][0]["command"] == [
        "celery", "-A", "hurricane.workers.app", "beat", "--loglevel", "INFO",
        "-s", "/tmp/celerybeat-schedule"]
    # the schedule file lives on a writable volume under a read-only root
    assert any(m["mountPath"] == "/tmp" for m in pod_spec(beat)["containers"][0]["volumeMounts"])


def test_role_rules_are_exactly_the_executor_calls(default_objs: list[dict[str, Any]]) -> None:
    roles = of_kind(default_objs, "Role")
    assert len(roles) == 1 and not of_kind(default_objs, "ClusterRole")
    assert roles[0]["rules"] == EXECUTOR_RULES
    (binding,) = of_kind(default_objs, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": roles[0]["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{FULLNAME}-worker",
                                    "namespace": NAMESPACE}]
    job_sa = find(default_objs, "ServiceAccount", f"{FULLNAME}-job")
    assert job_sa["automountServiceAccountToken"] is False
    assert settings_data(default_objs)["HURRICANE_K8S_JOB_SERVICE_ACCOUNT"] == f"{FULLNAME}-job"


def _settings(objs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
              secret: dict[str, str] | None = None) -> settings_mod.Settings:
    """hurricane.settings.Settings read from the environment a pod of the release gets."""
    env = dict(settings_data(objs))
    secrets = {s["metadata"]["name"]: s for s in of_kind(objs, "Secret")}
    (api,) = pod_spec(find(objs, "Deployment", f"{FULLNAME}-api"))["containers"]
    for ref in api["envFrom"]:  # the service's S3 Secret, as the API pod gets it
        found = secrets.get(ref.get("secretRef", {}).get("name", ""))
        if found:
            env.update({k: base64.b64decode(v).decode() for k, v in found["data"].items()})
    for e in api.get("env", []):  # single variables from Secrets (the Redis password)
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and ref["name"] in secrets:
            env[e["name"]] = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
    env.update(secret or {})
    for key in [k for k in os.environ if k.startswith("HURRICANE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings_mod.get_settings.cache_clear()
    try:
        return settings_mod.get_settings()
    finally:
        settings_mod.get_settings.cache_clear()


def test_settings_configmap_parses_with_the_defaults(default_objs: list[dict[str, Any]],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(default_objs, monkeypatch)
    assert s.executor == "kubernetes"
    assert s.store == "s3://hurricane"
    assert s.s3_endpoint == f"http://{FULLNAME}-minio.{NAMESPACE}.svc:9000"
    assert s.redis_url == f"redis://{FULLNAME}-redis.{NAMESPACE}.svc:6379/0"
    assert s.s3_secret_key.get_secret_value() == REQUIRED_VALUES["s3"]["secretKey"]
    assert (s.k8s_namespace, s.k8s_release) == (NAMESPACE, RELEASE)
    assert s.k8s_settings_configmap == f"{FULLNAME}-settings"
    assert s.k8s_s3_secret == f"{FULLNAME}-s3-jobs"  # job pods: scoped keys, never the root's
    assert [(p.name, p.label) for p in s.k8s_pools] == [("cpu", "cpu")]
    assert s.k8s_pools[0].resources.requests == {"cpu": "2", "memory": "4Gi"}
    assert s.k8s_training.gpus_per_node == 0
    assert s.k8s_data.pvc is None and s.k8s_data.cache_size == "20Gi"  # s3:// sources only
    assert (s.k8s_backoff_limit, s.k8s_active_deadline_s, s.k8s_ttl_after_finished_s) == (3, 172800, 86400)
    assert s.tokens_file == "/etc/hurricane/tokens/tokens.yaml"
    assert s.public_url is None and s.s3_public_endpoint is None
    # the images jobs run are named like the pods' images
    api_image = pod_spec(find(default_objs, "Deployment", f"{FULLNAME}-api"))["containers"][0]["image"]
    assert api_image == "hurricane-api:0.1.0"
    assert s.k8s_trainer_image == "hurricane-trainer:0.1.0"
    assert s.k8s_profiler_image == "hurricane-profiler:0.1.0"


def test_settings_configmap_parses_for_the_gpu_cluster(gpu_objs: list[dict[str, Any]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(gpu_objs, monkeypatch)
    assert s.executor == "kubernetes"
    assert s.store == "s3://hurricane-nas/prod"
    assert s.k8s_trainer_image == "registry.example.com/ml-platform/hurricane-trainer:0.1.0"
    pools = {p.name: p for p in s.k8s_pools}
    assert list(pools) == ["cpu", "dsp", "vpu"]
    dsp = pools["dsp"]
    assert dsp.label == "dsp"
    assert dsp.resources.limits["qualcomm.com/hexagon"] == "1"
    assert dsp.node_selector == {"kubernetes.io/arch": "arm64"}
    assert [(x.key, x.value, x.effect) for x in dsp.tolerations] == [
        ("hurricane.io/device", "dsp", "NoSchedule")]
    assert pools["vpu"].resources.requests["vpu.intel.com/hddl"] == "1"
    t = s.k8s_training
    assert t.gpus_per_node == 4
    assert t.resources.limits["nvidia.com/gpu"] == "4"
    assert t.node_selector == {"hurricane.io/device": "gpu"}
    assert [(x.key, x.operator, x.effect) for x in t.tolerations] == [
        ("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert t.shm_size == "16Gi"
    assert (s.k8s_data.pvc, s.k8s_data.mount_path, s.k8s_data.cache_size) == (
        "datasets", "/data", "200Gi")
    assert s.public_url == "https://hurricane.ml.example.com"
    assert s.s3_public_endpoint == "https://s3.ml.example.com"
    assert s.reconcile_interval_s == 30 and s.s3_part_size_mb == 64
    assert (s.k8s_backoff_limit, s.k8s_active_deadline_s) == (4, 259200)


def test_every_pod_runs_non_root_with_resources(gpu_objs: list[dict[str, Any]]) -> None:
    pods = [o for o in gpu_objs if o["kind"] in POD_KINDS]
    assert len(pods) >= 10
    for obj in pods:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        psc = pod_spec(obj)["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["fsGroup"], what
        assert pod_spec(obj).get("imagePullSecrets") == [{"name": "registry-example-com"}], what
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["capabilities"] == {"drop": ["ALL"]}, what
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc.get("runAsNonRoot", psc["runAsNonRoot"]) is True, what
            assert sc.get("runAsUser", psc["runAsUser"]) != 0, what
            assert c["resources"].get("requests"), what
            assert c["imagePullPolicy"] == "IfNotPresent", what
            assert ":" in c["image"] and not c["image"].endswith(":latest"), what


def test_hurricane_pods_take_settings_and_s3_secret(default_objs: list[dict[str, Any]]) -> None:
    hurricane_pods = of_kind(default_objs, "Deployment")
    assert len(hurricane_pods) == 5
    names = {(o["kind"], o["metadata"]["name"]) for o in default_objs}
    for dep in hurricane_pods:
        (c,) = pod_spec(dep)["containers"]
        refs = [next(iter(e.items())) for e in c["envFrom"]]
        assert refs == [("configMapRef", {"name": f"{FULLNAME}-settings"}),
                        ("secretRef", {"name": f"{FULLNAME}-s3"})]
        assert ("ConfigMap", refs[0][1]["name"]) in names and ("Secret", refs[1][1]["name"]) in names
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/settings", "checksum/s3"} <= set(annotations)


def test_api_deployment_service_and_probes(default_objs: list[dict[str, Any]]) -> None:
    api = find(default_objs, "Deployment", f"{FULLNAME}-api")
    assert api["spec"]["replicas"] == 2
    spec = pod_spec(api)
    (c,) = spec["containers"]
    assert c["command"] == ["uvicorn", "hurricane.api.app:app", "--host", "0.0.0.0", "--port", "8000",
                            "--workers", "2"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    # the tokens file the settings name is where the auth Secret is mounted
    tokens_file = settings_data(default_objs)["HURRICANE_TOKENS_FILE"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tokens"]
    assert tokens_file == mount["mountPath"] + "/tokens.yaml" and "subPath" not in mount
    (vol,) = [v for v in spec["volumes"] if v["name"] == "tokens"]
    assert vol["secret"] == {"secretName": f"{FULLNAME}-auth",
                             "items": [{"key": "tokens.yaml", "path": "tokens.yaml"}]}
    assert "checksum/auth" in api["spec"]["template"]["metadata"]["annotations"]
    assert spec["automountServiceAccountToken"] is False
    svc = find(default_objs, "Service", f"{FULLNAME}-api")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert not of_kind(default_objs, "Ingress") and not of_kind(default_objs, "PodDisruptionBudget")


def test_gpu_example_ingress_pdb_and_tokens(gpu_objs: list[dict[str, Any]]) -> None:
    (ing,) = of_kind(gpu_objs, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "hurricane.ml.example.com"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": f"{FULLNAME}-api", "port": {"name": "http"}}
    assert ing["spec"]["tls"] == [{"hosts": ["hurricane.ml.example.com"], "secretName": "hurricane-api-tls"}]
    (pdb,) = of_kind(gpu_objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    auth = find(gpu_objs, "Secret", f"{FULLNAME}-auth")
    entries = yaml.safe_load(base64.b64decode(auth["data"]["tokens.yaml"]))
    assert [(e["user"], e["role"]) for e in entries] == [("alice", "admin"), ("bob", "user")]
    from hurricane.service.tokens import parse_entries

    assert len(parse_entries(entries, "tokens.yaml")) == 2


def test_labels_and_selectors(gpu_objs: list[dict[str, Any]]) -> None:
    for obj in gpu_objs:
        labels = obj["metadata"]["labels"]
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        assert {f"app.kubernetes.io/{k}" for k in LABELS} <= set(labels), what
        assert labels["app.kubernetes.io/instance"] == RELEASE, what
        assert labels["app.kubernetes.io/part-of"] == "hurricane-nas", what
        assert "namespace" not in obj["metadata"], what  # helm install -n decides
        if obj["kind"] in ("Deployment", "StatefulSet"):
            selector = obj["spec"]["selector"]["matchLabels"]
            assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items(), what
    selectors = [tuple(sorted(o["spec"]["selector"]["matchLabels"].items()))
                 for o in gpu_objs if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(selectors) == len(set(selectors))  # no two workloads select each other's pods
    # nor the executor's job pods (same name/instance labels, components train/measure/search)
    for component in ("train", "measure", "search"):
        job_pod = {"app.kubernetes.io/name": "hurricane", "app.kubernetes.io/instance": RELEASE,
                   "app.kubernetes.io/component": component}
        assert not [s for s in selectors if dict(s).items() <= job_pod.items()], component


def test_settings_change_rolls_the_pods() -> None:
    def annotations(objs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("annotations", {})
                for o in objs if o["kind"] in ("Deployment", "StatefulSet")}

    base = annotations(render())
    changed = annotations(render({"settings": {"HURRICANE_RECONCILE_INTERVAL_S": "60"}}))
    rekeyed = annotations(render({"s3": {"secretKey": "another-secret-9876543210"}}))
    for name, ann in base.items():
        if "checksum/settings" in ann:
            assert changed[name]["checksum/settings"] != ann["checksum/settings"], name
        if "checksum/s3" in ann:
            assert rekeyed[name]["checksum/s3"] != ann["checksum/s3"], name
    assert "checksum/s3" in base[f"{FULLNAME}-minio"]  # MinIO's root password follows the Secret


def test_bundled_redis_and_minio_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render(EXTERNAL)
    assert not of_kind(objs, "StatefulSet")
    assert not [s for s in of_kind(objs, "Service") if "redis" in s["metadata"]["name"]
                or "minio" in s["metadata"]["name"]]
    data = settings_data(objs)
    assert data["HURRICANE_REDIS_URL"] == "rediss://redis.data.example.com:6380/2"
    assert data["HURRICANE_S3_ENDPOINT"] == "https://s3.eu-west-1.amazonaws.com"
    s = _settings(objs, monkeypatch, {"HURRICANE_S3_ACCESS_KEY": "AKIAEXAMPLE",
                                      "HURRICANE_S3_SECRET_KEY": "from-the-team-secret-123"})
    assert s.redis_url.startswith("rediss://") and s.s3_endpoint.startswith("https://")
    # each switches off alone, too
    only_redis = render({"redis": EXTERNAL["redis"]})
    assert [o["metadata"]["name"] for o in of_kind(only_redis, "StatefulSet")] == [f"{FULLNAME}-minio"]


def test_existing_secrets_replace_the_rendered_ones() -> None:
    objs = render(EXTERNAL)
    assert not of_kind(objs, "Secret")
    data = settings_data(objs)
    assert data["HURRICANE_K8S_S3_SECRET"] == "team-s3-jobs"
    api = pod_spec(find(objs, "Deployment", f"{FULLNAME}-api"))
    assert api["containers"][0]["envFrom"][1] == {"secretRef": {"name": "team-s3"}}
    (vol,) = [v for v in api["volumes"] if v["name"] == "tokens"]
    assert vol["secret"] == {"secretName": "team-tokens",
                             "items": [{"key": "users.yaml", "path": "tokens.yaml"}]}
    for dep in of_kind(objs, "Deployment"):
        assert pod_spec(dep)["containers"][0]["envFrom"][1] == {"secretRef": {"name": "team-s3"}}
    # with the bundled MinIO, its root credentials come from the existing Secret
    minio = pod_spec(find(render({"s3": {"existingSecret": "team-s3", "secretKey": ""}}),
                          "StatefulSet", f"{FULLNAME}-minio"))
    env = {e["name"]: e.get("valueFrom") for e in minio["containers"][0]["env"]}
    for var, key in (("MINIO_ROOT_USER", "HURRICANE_S3_ACCESS_KEY"),
                     ("MINIO_ROOT_PASSWORD", "HURRICANE_S3_SECRET_KEY")):
        assert env[var] == {"secretKeyRef": {"name": "team-s3", "key": key}}


def test_persistence_switches(default_objs: list[dict[str, Any]]) -> None:
    redis = find(default_objs, "StatefulSet", f"{FULLNAME}-redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "--appendonly" in pod_spec(redis)["containers"][0]["command"]
    objs = render({"redis": {"persistence": {"enabled": False}},
                   "minio": {"persistence": {"enabled": False, "size": "1Gi"}}})
    for name in ("redis", "minio"):
        sts = find(objs, "StatefulSet", f"{FULLNAME}-{name}")
        assert "volumeClaimTemplates" not in sts["spec"]
        (data,) = [v for v in pod_spec(sts)["volumes"] if v["name"] == "data"]
        assert data == {"name": "data", "emptyDir": {}}


def test_helm_test_pod_checks_readyz(default_objs: list[dict[str, Any]]) -> None:
    pod = find(default_objs, "Pod", f"{FULLNAME}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "docker.io/library/busybox:1.36.1"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["URL"] == f"http://{FULLNAME}-api:80/readyz"
    assert "200" in c["command"][-1] and "exit 1" in c["command"][-1]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_notes_tell_how_to_start() -> None:
    notes = render_templates(chart_values())["hurricane/templates/NOTES.txt"]
    assert f"port-forward service/{FULLNAME}-api 8080:80" in notes
    assert "hurricane token create" in notes and "auth.tokens" in notes and "existingSecret" in notes
    assert "HURRICANE_SERVER=http://127.0.0.1:8080" in notes
    assert "hurricane submit examples/digits-service.yaml --wait" in notes
    assert "hurricane fetch" in notes


def test_release_namespace_is_rendered_never_hard_coded() -> None:
    objs = _objects(render_templates(chart_values(), namespace="ml-team"))
    data = settings_data(objs)
    assert data["HURRICANE_K8S_NAMESPACE"] == "ml-team"
    assert data["HURRICANE_REDIS_URL"] == f"redis://{FULLNAME}-redis.ml-team.svc:6379/0"
    assert of_kind(objs, "RoleBinding")[0]["subjects"][0]["namespace"] == "ml-team"
    assert all("namespace" not in o["metadata"] for o in objs)


# -- 4. refused values -----------------------------------------------------------------------

def _expected_key(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# rejects: "), f"{path.name}: first line must be '# rejects: <key>'"
    return first.removeprefix("# rejects: ").strip()


def test_there_are_enough_bad_values_files() -> None:
    assert len(BAD_VALUES) >= 6


@pytest.mark.parametrize("path", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_bad_values_are_refused_naming_the_key(path: Path) -> None:
    key = _expected_key(path)
    with pytest.raises(helm.HelmError) as err:
        render(values_file=path)
    assert key in str(err.value), str(err.value)
    if isinstance(err.value, helm.HelmValuesError):
        # a schema violation: `helm lint` reports it too (template `fail`s are only warnings there)
        report = helm.lint(CHART, chart_values(values_file=path), kube_version=f"v{KUBE_VERSION}.0")
        assert any(key in e for e in report["errors"]), report

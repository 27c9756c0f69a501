"""What the chart locks down (issue 24), rendered by real Helm and validated strictly: the
bundled Redis's password (a real redis-server run with the rendered command refuses clients
without it; the settings' clients get in with it), the NetworkPolicies (whose selectors are
matched against the pods the chart and the operator really build), the job pods' S3 keys
(scoped, never the root keys, checked on every planned job of the example specs) and /metrics.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import redis

from hurricane.operator.plan import plan, release_env, settings_from_env
from hurricane.spec import read_spec_file
from tests.servers import free_port, wait_for_port
from tests.test_chart import (
    CHART,
    EXTERNAL,
    FULLNAME,
    GPU_VALUES,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    _settings,
    chart_values,
    find,
    of_kind,
    pod_spec,
    render,
    settings_data,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_VALUES = EXAMPLES / "values-shared-cluster.yaml"
ROOT_SECRET = f"{FULLNAME}-s3"
JOBS_SECRET = f"{FULLNAME}-s3-jobs"
SCOPED = {"s3": {"prefix": "prod"},
          "security": {"jobsS3": {"readOnly": ["datasets/imagenet-packed", "public-sets"]}}}
LOCKED_API = {"security": {"networkPolicy": {"api": {
    "ingressNamespaces": ["ingress-nginx"],
    "extraFrom": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]}}}}


# -- helpers ---------------------------------------------------------------------------------

def secrets_of(objs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
            for s in of_kind(objs, "Secret")}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists) on labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        op, key, values = e["operator"], e["key"], e.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def pod_templates(obj: Any) -> Iterator[dict[str, Any]]:
    """Every pod template in an object ({metadata, spec} whose spec has containers): a Job's,
    a Deployment's, a TrainJob's runtime patch, a bare Pod."""
    if isinstance(obj, dict):
        spec = obj.get("spec")
        if isinstance(spec, dict) and "containers" in spec and "metadata" in obj:
            yield obj
        for v in obj.values():
            yield from pod_templates(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from pod_templates(v)


def pod_labels(obj: dict[str, Any]) -> list[dict[str, str]]:
    return [t["metadata"].get("labels") or {} for t in pod_templates(obj)]


def secret_refs(obj: Any) -> set[str]:
    """Names of every Secret an object reads (envFrom secretRef, env secretKeyRef, volumes)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for key in ("secretRef", "secretKeyRef"):
            if isinstance(obj.get(key), dict):
                out.add(obj[key]["name"])
        if isinstance(obj.get("secret"), dict) and "secretName" in obj["secret"]:
            out.add(obj["secret"]["secretName"])
        for v in obj.values():
            out |= secret_refs(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= secret_refs(v)
    return out


def policies(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"].removeprefix(FULLNAME + "-"): o["spec"]
            for o in of_kind(objs, "NetworkPolicy")}


def planned_jobs(values_file: Path | None, values: dict[str, Any] | None = None,
                 spec: str = "digits-service.yaml") -> list[dict[str, Any]]:
    """Every object `hurricane cluster plan` lists for ``spec`` under these values (the
    operator's manifests functions, the settings the chart renders)."""
    objs = render(values, values_file)
    settings = settings_from_env(release_env(objs))
    s = read_spec_file(EXAMPLES / spec)
    return [dict(p.obj) for p in plan(s, settings, search_id=f"{s.name}-00000000")]


def chart_pods(objs: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [lab for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job", "Pod")
            for lab in pod_labels(o)]


# -- 1. strict schema and lint ---------------------------------------------------------------

VARIANTS: dict[str, tuple[dict[str, Any] | None, Path | None]] = {
    "default": (None, None), "gpu-example": (None, GPU_VALUES), "external": (EXTERNAL, None),
    "scoped-prefix": (SCOPED, None), "locked-api": (LOCKED_API, None),
    "metrics-token": ({"security": {"metrics": {"mode": "token", "tokenSha256": "a" * 64}}}, None),
    "existing-redis-secret": ({"security": {"redis": {"existingSecret": "team-redis",
                                                       "existingSecretKey": "pw"}}}, None),
}


@pytest.mark.parametrize("case", list(VARIANTS))
def test_security_objects_validate_strictly_and_lint_clean(case: str) -> None:
    values, values_file = VARIANTS[case]
    objs = render(values, values_file)
    kinds = {o["kind"] for o in objs}
    if case != "external":
        assert {"NetworkPolicy", "Secret", "Job"} <= kinds
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
    report = helm.lint(CHART, chart_values(values, values_file), kube_version=f"v{KUBE_VERSION}.0",
                       namespace=NAMESPACE, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# -- 2. Redis: a password from a Secret, protected mode --------------------------------------

def _expand(arg: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of a container command."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


def test_redis_refuses_clients_without_the_password_and_the_service_has_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render()
    secrets = secrets_of(objs)
    sts = pod_spec(find(objs, "StatefulSet", f"{FULLNAME}-redis"))
    (c,) = sts["containers"]
    env: dict[str, str] = {}
    for e in c["env"]:
        ref = e["valueFrom"]["secretKeyRef"]
        env[e["name"]] = secrets[ref["name"]][ref["key"]]
    password = env["REDIS_PASSWORD"]
    assert len(password) >= 32 and env["REDISCLI_AUTH"] == password
    assert password not in json.dumps(find(objs, "StatefulSet", f"{FULLNAME}-redis"))
    cmd = [_expand(a, env) for a in c["command"]]
    assert cmd[cmd.index("--protected-mode") + 1] == "yes"
    assert cmd[cmd.index("--requirepass") + 1] == password
    # the rendered command, run by a real redis-server (data dir and port of this machine)
    cmd[0] = shutil.which("redis-server") or "redis-server"
    cmd[cmd.index("--dir") + 1] = str(tmp_path)
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, 120)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, password="not-the-password").ping()
        # the readiness probe, as rendered, with its REDISCLI_AUTH
        probe = c["readinessProbe"]["exec"]["command"][-1].replace(
            "-h 127.0.0.1", f"-h 127.0.0.1 -p {port}")
        assert subprocess.run(["sh", "-c", probe], env={"PATH": "/usr/bin:/bin", **env},
                              timeout=30).returncode == 0
        assert subprocess.run(["sh", "-c", probe], env={"PATH": "/usr/bin:/bin"},
                              timeout=30).returncode != 0
        # the API's settings (its ConfigMap, S3 Secret, and the password variable)
        s = _settings(objs, monkeypatch)
        assert s.redis_password.get_secret_value() == password
        assert password not in s.redis_url  # the printable URL holds no password
        local = s.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0"})
        from hurricane.workers.app import create_app
        from hurricane.workers.dispatch import redis_client

        assert redis_client(local.redis_dsn).ping()
        with create_app(local).connection_for_write() as conn:
            conn.ensure_connection(max_retries=2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_every_redis_client_gets_the_password_and_no_job_pod_does() -> None:
    objs = render()
    redis_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in
                 pod_spec(find(objs, "StatefulSet", f"{FULLNAME}-redis"))["containers"][0]["env"]}
    deployments = of_kind(objs, "Deployment")
    assert len(deployments) == 5  # api, beat, control, train, profile-cpu
    for dep in deployments:
        (c,) = pod_spec(dep)["containers"]
        got = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in c["env"]}
        assert got["HURRICANE_REDIS_PASSWORD"] == redis_env["REDIS_PASSWORD"], dep["metadata"]["name"]
    assert "HURRICANE_REDIS_PASSWORD" not in settings_data(objs)  # never in the ConfigMap
    for obj in planned_jobs(None):
        assert "HURRICANE_REDIS_PASSWORD" not in json.dumps(obj)
        assert f"{FULLNAME}-redis-auth" not in secret_refs(obj)
    # an existing Secret (and an external Redis) instead of the generated one
    ext = render({"redis": {"enabled": False, "external": {"url": "redis://r.example:6379/0"}},
                  "security": {"redis": {"existingSecret": "team-redis",
                                         "existingSecretKey": "pw"}}})
    assert f"{FULLNAME}-redis-auth" not in secrets_of(ext)
    for dep in of_kind(ext, "Deployment"):
        (c,) = pod_spec(dep)["containers"]
        got = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in c["env"]}
        assert got["HURRICANE_REDIS_PASSWORD"] == {"name": "team-redis", "key": "pw"}


# -- 3. job pods: scoped S3 keys, never the root keys ---------------------------------------

@pytest.mark.parametrize("case", ["default", "gpu-example", "shared-cluster-trainjob"])
def test_no_job_pod_gets_the_root_s3_keys(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    values_file = {"default": None, "gpu-example": GPU_VALUES,
                   "shared-cluster-trainjob": SHARED_VALUES}[case]
    objs = render(None, values_file)
    secrets = secrets_of(objs)
    root = secrets[ROOT_SECRET]
    scoped = secrets[JOBS_SECRET]
    assert scoped["HURRICANE_S3_ACCESS_KEY"] == "hurricane-jobs"
    assert scoped["HURRICANE_S3_ACCESS_KEY"] != root["HURRICANE_S3_ACCESS_KEY"]
    assert scoped["HURRICANE_S3_SECRET_KEY"] != root["HURRICANE_S3_SECRET_KEY"]
    assert len(scoped["HURRICANE_S3_SECRET_KEY"]) >= 32
    spec = "cluster-gpu-search.yaml" if values_file == SHARED_VALUES else "digits-service.yaml"
    jobs = planned_jobs(values_file, spec=spec)
    kinds = {o["kind"] for o in jobs}
    assert "Job" in kinds and (values_file != SHARED_VALUES or "TrainJob" in kinds)
    pods = 0
    for obj in jobs:
        if obj["kind"] not in ("Job", "TrainJob"):
            continue
        refs = secret_refs(obj)
        assert refs == {JOBS_SECRET}, (obj["metadata"]["name"], refs)
        text = json.dumps(obj)
        for value in (root["HURRICANE_S3_SECRET_KEY"], scoped["HURRICANE_S3_SECRET_KEY"]):
            assert value not in text  # keys come from the Secret, never inline
        # the environment a job pod ends up with: every S3 key it reads is the scoped user's
        for ref in re.findall(r'"secretKeyRef": \{"name": "[^"]+", "key": "([^"]+)"', text):
            assert scoped[ref] != root.get(ref)
        pods += len(pod_labels(obj))
    assert pods >= 5
    # the chart's own pods keep the service's keys (they create the bucket, sign URLs)
    api = pod_spec(find(objs, "Deployment", f"{FULLNAME}-api"))["containers"][0]
    assert {"secretRef": {"name": ROOT_SECRET}} in api["envFrom"]
    s = _settings(objs, monkeypatch)
    assert s.k8s_s3_secret == JOBS_SECRET


def test_the_job_users_policy_reaches_only_the_bucket_and_prefix() -> None:
    objs = render(SCOPED)
    cm = find(objs, "ConfigMap", f"{FULLNAME}-s3-jobs-policy")
    pol = json.loads(cm["data"]["policy.json"])
    assert pol["Version"] == "2012-10-17"
    allowed: dict[str, set[str]] = {}
    for st in pol["Statement"]:
        assert st["Effect"] == "Allow"
        for res in st["Resource"]:
            for act in st["Action"]:
                key = res + (f" if {json.dumps(st['Condition'], sort_keys=True)}"
                             if "Condition" in st else "")
                allowed.setdefault(key, set()).add(act)
    write = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
             "s3:ListMultipartUploadParts"}
    assert allowed == {
        "arn:aws:s3:::hurricane": {"s3:GetBucketLocation", "s3:ListBucketMultipartUploads"},
        'arn:aws:s3:::hurricane if {"StringLike": {"s3:prefix": ["prod", "prod/*"]}}':
            {"s3:ListBucket"},
        "arn:aws:s3:::hurricane/prod/*": write,
        "arn:aws:s3:::datasets": {"s3:GetBucketLocation"},
        'arn:aws:s3:::datasets if {"StringLike": {"s3:prefix": ["imagenet-packed", '
        '"imagenet-packed/*"]}}': {"s3:ListBucket"},
        "arn:aws:s3:::datasets/imagenet-packed/*": {"s3:GetObject"},
        "arn:aws:s3:::public-sets": {"s3:GetBucketLocation", "s3:ListBucket"},
        "arn:aws:s3:::public-sets/*": {"s3:GetObject"},
    }
    # no admin action, no bucket creation or policy change, no wildcard resource
    text = json.dumps(pol)
    assert "s3:*" not in text and "admin:" not in text and '"*"' not in text
    assert "CreateBucket" not in text and "PutBucketPolicy" not in text
    # the hook applies it: root keys from the service's Secret (here only), the user's from
    # the jobs Secret; the script parses as POSIX sh
    job = find(objs, "Job", f"{FULLNAME}-s3-jobs-user")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (c,) = pod_spec(job)["containers"]
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") or e.get("value")
           for e in c["env"]}
    assert env["ROOT_USER"] == {"name": ROOT_SECRET, "key": "HURRICANE_S3_ACCESS_KEY"}
    assert env["ROOT_PASSWORD"] == {"name": ROOT_SECRET, "key": "HURRICANE_S3_SECRET_KEY"}
    assert env["JOB_USER"] == {"name": JOBS_SECRET, "key": "HURRICANE_S3_ACCESS_KEY"}
    assert env["JOB_PASSWORD"] == {"name": JOBS_SECRET, "key": "HURRICANE_S3_SECRET_KEY"}
    assert env["MINIO_URL"] == f"http://{FULLNAME}-minio:9000" and env["BUCKET"] == "hurricane"
    script = cm["data"]["apply.sh"]
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    for step in ('mc admin policy create hur "$POLICY" /etc/hurricane/s3-policy/policy.json',
                 'mc admin user add hur "$JOB_USER" "$JOB_PASSWORD"',
                 'mc admin policy attach hur "$POLICY" --user "$JOB_USER"'):
        assert step in script
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    (vol,) = [v for v in pod_spec(job)["volumes"] if v["name"] == mounts["/etc/hurricane/s3-policy"]]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]


def test_the_chart_refuses_to_give_jobs_the_root_keys() -> None:
    with pytest.raises(helm.HelmError, match=r"security\.jobsS3\.existingSecret is empty while "
                       r"minio\.enabled is false.*s3://hurricane"):
        render({**EXTERNAL, "security": {}})
    with pytest.raises(helm.HelmError, match=r"the service's S3 Secret: job pods would get the "
                       "root keys"):
        render({**EXTERNAL, "security": {"jobsS3": {"existingSecret": "team-s3"}}})
    with pytest.raises(helm.HelmError, match=r"security\.jobsS3\.accessKey \(hurricane\) equals "
                       r"s3\.accessKey"):
        render({"security": {"jobsS3": {"accessKey": "hurricane"}}})
    # external S3 with its scoped Secret: job pods read that Secret and nothing else
    ext = render(EXTERNAL)
    assert settings_data(ext)["HURRICANE_K8S_S3_SECRET"] == "team-s3-jobs"
    assert not of_kind(ext, "Job")  # no MinIO to administer


# -- 4. NetworkPolicies ----------------------------------------------------------------------

def test_network_policies_select_the_pods_they_mean() -> None:
    objs = render()
    nps = policies(objs)
    assert set(nps) == {"default-deny", "api", "redis", "minio", "jobs"}
    mine = chart_pods(objs)
    jobs = [lab for o in planned_jobs(None) for lab in pod_labels(o)]
    trainjobs = [lab for o in planned_jobs(SHARED_VALUES, spec="cluster-gpu-search.yaml")
                 if o["kind"] == "TrainJob" for lab in pod_labels(o)]
    assert len(mine) == 9 and len(jobs) >= 5 and trainjobs
    by_component = {lab["app.kubernetes.io/component"]: lab for lab in mine}
    # nothing reaches a pod of the chart unless a policy opens it
    assert nps["default-deny"]["policyTypes"] == ["Ingress"] and "ingress" not in nps["default-deny"]
    assert all(selects(nps["default-deny"]["podSelector"], lab) for lab in mine)
    # the job pods' policy selects every job pod (Jobs and TrainJobs), no pod of the chart
    jp = nps["jobs"]
    assert all(selects(jp["podSelector"], lab) for lab in jobs + trainjobs)
    assert not any(selects(jp["podSelector"], lab) for lab in mine)
    assert jp["policyTypes"] == ["Ingress", "Egress"]

    def peers_match(rule: dict[str, Any], lab: dict[str, str]) -> bool:
        return any(selects(p["podSelector"], lab) for p in rule.get("from", rule.get("to", []))
                   if set(p) == {"podSelector"})

    # Redis: the API, the workers and beat; not MinIO, the hook, the test pod, a job pod
    (rule,) = nps["redis"]["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert selects(nps["redis"]["podSelector"], by_component["redis"])
    for comp, lab in by_component.items():
        assert peers_match(rule, lab) == (comp in {"api", "beat", "worker-control", "worker-train",
                                                    "worker-profile-cpu"}), comp
    assert not any(peers_match(rule, lab) for lab in jobs + trainjobs)
    # MinIO: those, the hook that makes the job user, and the job pods
    (rule,) = nps["minio"]["ingress"]
    assert rule["ports"] == [{"port": "s3", "protocol": "TCP"}]
    for comp, lab in by_component.items():
        assert peers_match(rule, lab) == (comp not in {"redis", "minio", "test"}), comp
    assert all(peers_match(rule, lab) for lab in jobs + trainjobs)
    # job pods: in from and out to their own kind, DNS, MinIO; nothing else
    (ing,) = jp["ingress"]
    assert all(peers_match(ing, lab) for lab in jobs) and not any(peers_match(ing, lab) for lab in mine)
    egress = jp["egress"]
    assert len(egress) == 3
    assert "ports" not in egress[0] and all(peers_match(egress[0], lab) for lab in jobs)
    assert not any(peers_match(egress[0], lab) for lab in mine)
    assert egress[1] == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert egress[2]["ports"] == [{"port": 9000, "protocol": "TCP"}]
    assert [lab for lab in mine if peers_match(egress[2], lab)] == [by_component["minio"]]
    # the API: its HTTP port, from anywhere by default
    (rule,) = nps["api"]["ingress"]
    assert rule == {"ports": [{"port": "http", "protocol": "TCP"}]}
    assert selects(nps["api"]["podSelector"], by_component["api"])
    assert pod_spec(find(objs, "Deployment", f"{FULLNAME}-api"))["containers"][0]["ports"][0][
        "name"] == "http"


def test_network_policy_values_narrow_extend_or_switch_them_off() -> None:
    nps = policies(render(LOCKED_API))
    (rule,) = nps["api"]["ingress"]
    assert rule["from"][1:] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    assert selects(rule["from"][0]["podSelector"], {"app.kubernetes.io/instance": RELEASE,
                                                    "app.kubernetes.io/part-of": "hurricane-nas",
                                                    "app.kubernetes.io/component": "test"})
    # external S3: job pods reach the endpoint's port (and only the peers given)
    ext = policies(render(EXTERNAL))
    assert set(ext) == {"default-deny", "api", "jobs"}
    assert ext["jobs"]["egress"][2] == {"ports": [{"port": 443, "protocol": "TCP"}]}
    block = [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    ext = policies(render({**EXTERNAL, "s3": {**EXTERNAL["s3"], "endpoint": "http://s3.lan:9100"},
                           "security": {**EXTERNAL["security"], "networkPolicy": {"jobs": {
                               "s3To": block, "dnsTo": [{"namespaceSelector": {}}],
                               "extraEgress": [{"ports": [{"port": 3128}]}]}}}}))
    egress = ext["jobs"]["egress"]
    assert egress[1]["to"] == [{"namespaceSelector": {}}]
    assert egress[2] == {"ports": [{"port": 9100, "protocol": "TCP"}], "to": block}
    assert egress[3] == {"ports": [{"port": 3128}]}
    assert set(policies(render({"security": {"networkPolicy": {"jobs": {"enabled": False}}}}))) == {
        "default-deny", "api", "redis", "minio"}
    assert not policies(render({"security": {"networkPolicy": {"enabled": False}}}))


# -- 5. /metrics -----------------------------------------------------------------------------

def test_metrics_settings_are_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_data(render())["HURRICANE_METRICS"] == "disabled"
    digest = "b" * 64
    objs = render({"security": {"metrics": {"mode": "token", "tokenSha256": digest}}})
    s = _settings(objs, monkeypatch)
    assert (s.metrics, s.metrics_token_sha256) == ("token", digest)
    with pytest.raises(helm.HelmError, match=r"security\.metrics\.tokenSha256 is empty while "
                       r"security\.metrics\.mode is token"):
        render({"security": {"metrics": {"mode": "token"}}})


def test_the_redis_password_goes_into_the_client_url_quoted_and_only_once() -> None:
    from pydantic import ValidationError

    from hurricane.settings import Settings

    s = Settings(redis_url="redis://r.example:6379/0", redis_password="p@ss/w:rd")
    assert s.redis_dsn == "redis://:p%40ss%2Fw%3Ard@r.example:6379/0"
    assert redis.connection.parse_url(s.redis_dsn)["password"] == "p@ss/w:rd"
    assert "p@ss" not in repr(s) and s.redis_url == "redis://r.example:6379/0"
    acl = Settings(redis_url="rediss://svc@r.example:6380/2", redis_password="x")
    assert acl.redis_dsn == "rediss://svc:x@r.example:6380/2"
    assert Settings(redis_url="redis://r.example:6379/0").redis_dsn == "redis://r.example:6379/0"
    with pytest.raises(ValidationError, match="give the password once"):
        Settings(redis_url="redis://:a@r.example:6379/0", redis_password="b")


# -- 6. tokens with an expiry ----------------------------------------------------------------

def test_token_expiry_reaches_the_api_through_the_chart() -> None:
    from hurricane.service.tokens import hash_token, load_file

    tokens = [{"user": "ci", "sha256": hash_token("t-ci"), "expires": "2027-01-06T00:00:00Z"},
              {"user": "alice", "role": "admin", "sha256": hash_token("t-a")}]
    objs = render({"auth": {"tokens": tokens}})
    text = secrets_of(objs)[f"{FULLNAME}-auth"]["tokens.yaml"]

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "tokens.yaml"
        f.write_text(text)
        grants = load_file(f)
    import datetime as dt

    assert grants[hash_token("t-ci")].expires == dt.datetime(2027, 1, 6, tzinfo=dt.UTC).timestamp()
    assert grants[hash_token("t-a")].expires is None and grants[hash_token("t-a")].user.is_admin
    with pytest.raises(helm.HelmError, match="expires"):
        render({"auth": {"tokens": [{**tokens[0], "expires": "next week"}]}})


# -- 7. the job user's policy, enforced by an S3-protocol server -----------------------------

def _iam_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto_server with IAM enforcement: the first 3 requests (making an admin) go
    unauthenticated, every later one is checked against its user's policies."""
    from tests.servers import MotoServer

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "3")
    return MotoServer()


def _user_with_policy(iam: Any, name: str, policy: str) -> tuple[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.mark.parametrize("case", ["whole-bucket", "prefix-and-datasets"])
def test_job_keys_reach_only_what_the_rendered_policy_names(case: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy the chart renders, given to a user of an S3-protocol server that enforces
    IAM policies (moto): the job pod's store (its own S3Store, the job user's keys) reads and
    writes the searches location and nothing else, and never creates a bucket. (moto does not
    evaluate the s3:prefix condition of ListBucket, which MinIO does: listings are checked on
    the unprefixed case only.)"""
    import boto3
    from minio.error import S3Error

    from hurricane.storage.s3store import S3Store

    values = None if case == "whole-bucket" else SCOPED
    objs = render(values)
    policy = find(objs, "ConfigMap", f"{FULLNAME}-s3-jobs-policy")["data"]["policy.json"]
    prefix = "" if case == "whole-bucket" else "prod"
    with _iam_server(monkeypatch) as srv:
        def client(service: str, key: str = "bootstrap", secret: str = "bootstrap") -> Any:
            return boto3.client(service, endpoint_url=srv.endpoint, region_name="us-east-1",
                                aws_access_key_id=key, aws_secret_access_key=secret)

        admin = _user_with_policy(client("iam"), "admin", json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        iam, s3 = client("iam", *admin), client("s3", *admin)
        for bucket in ("hurricane", "other", "datasets", "public-sets"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="datasets", Key="imagenet-packed/index.json", Body=b"{}")
        s3.put_object(Bucket="datasets", Key="private/secret.json", Body=b"{}")
        s3.put_object(Bucket="hurricane", Key="prodx/other-release.json", Body=b"{}")
        job_key, job_secret = _user_with_policy(iam, "hurricane-jobs", policy)

        def store(bucket: str, where: str = "") -> S3Store:
            return S3Store(endpoint=srv.endpoint, access_key=job_key, secret_key=job_secret,
                           bucket=bucket, prefix=where, retry_s=0)

        job = store("hurricane", prefix)  # what a job pod opens
        job.put_bytes("searches/s1/stage1/train.json", b"{}")
        assert job.get_bytes("searches/s1/stage1/train.json") == b"{}"
        job.delete("searches/s1/stage1/train.json")
        assert not job.exists("searches/s1/stage1/train.json")
        if not prefix:
            job.put_bytes("searches/s1/a.json", b"1")
            assert job.list("searches/s1") == ["searches/s1/a.json"]
        denied = [lambda: store("other").put_bytes("x.json", b"1"),
                  lambda: store("other").get_bytes("x.json"),
                  lambda: store("made-by-a-job").put_bytes("x.json", b"1")]
        if prefix:  # outside the prefix, and a prefix that merely starts the same
            denied += [lambda: store("hurricane", "other").put_bytes("x.json", b"1"),
                       lambda: store("hurricane").get_bytes("prodx/other-release.json"),
                       lambda: store("datasets", "imagenet-packed").put_bytes("x.json", b"1"),
                       lambda: store("datasets").get_bytes("private/secret.json")]
            # read-only datasets: readable
            assert store("datasets", "imagenet-packed").get_bytes("index.json") == b"{}"
        for i, op in enumerate(denied):
            with pytest.raises(S3Error) as err:
                op()
            assert err.value.code in ("AccessDenied", "NoSuchBucket"), i
        # the job's keys never made a bucket (a store on a missing one only fails)
        assert "made-by-a-job" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}

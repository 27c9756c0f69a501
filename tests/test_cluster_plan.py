"""`hurricane cluster plan` (issue 17): every Kubernetes object a search would create under
chart values, for the example specs and values files and both training backends with and
without Kueue, validated: batch and core objects with kubernetes-validate (strict, 1.32);
TrainJobs against the TrainJob schema of the pinned Kubeflow Trainer API (kubeflow-trainer-api
2.3.0's typed model, made strict: no field it does not define) plus the CRD's own rules that a
JSON schema does not carry (RFC 1035 name, list-map keys, item limits, the node container's
env). The plan's objects are the ones the executor creates."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from hurricane.cli import app
from hurricane.operator.executor import KubernetesExecutor
from hurricane.operator.manifests import Cluster, trainjob_name
from hurricane.operator.plan import PLACEHOLDER_UID, release_env, render_chart, settings_from_env
from tests.kube_fake import FakeKubeServer, condition

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "hurricane"
EXAMPLES = ROOT / "examples"
SPECS = sorted(p for p in EXAMPLES.glob("*.yaml")
               if not p.name.startswith("values-") and not p.name.endswith("-cr.yaml"))
SECRET = ["--set", "s3.secretKey=plan-test-secret-0123456789"]
SHARED = ["-f", str(EXAMPLES / "values-shared-cluster.yaml")]
NO_KUEUE = ["--set", "kueue.queue=", "--set", "kueue.priorityClass="]
# (name, args, TrainJobs?, Kueue?): the example values files as they are, and the shared
# cluster's file under every training backend with and without Kueue
VALUES = {
    "defaults": ([], False, False),
    "gpu-cluster": (["-f", str(EXAMPLES / "values-gpu-cluster.yaml")], False, False),
    "shared-cluster": (SHARED, True, True),
    "shared-job-no-kueue": ([*SHARED, *NO_KUEUE, "--set", "training.backend=job"], False, False),
    "shared-job-kueue": ([*SHARED, "--set", "training.backend=job"], False, True),
    "shared-trainjob-no-kueue": ([*SHARED, *NO_KUEUE], True, False),
}
# the multi-device example needs gpu and dsp pools: the shared cluster's values have them
CASES = [(spec, v) for spec in SPECS for v in VALUES
         if spec.stem != "cluster-gpu-search" or v.startswith("shared")]
QUANTITY = (r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
            r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def plan_yaml(spec: Path, values: list[str], *extra: str) -> str:
    res = CliRunner().invoke(app, ["cluster", "plan", str(spec), *SECRET, *values, *extra])
    assert res.exit_code == 0, res.output
    return res.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@functools.cache
def trainjob_schema() -> dict[str, Any]:
    """TrainJob's schema from the pinned typed model, strict: an object may hold only the
    fields the API defines."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    schema = TrainerV1alpha1TrainJob.model_json_schema(by_alias=True)
    # The generated models wrap one-of types (a resource Quantity: number or string) in a
    # Python object; in JSON they are the value itself, as in the CRD (int-or-string, pattern).
    for name, d in schema["$defs"].items():
        if "actual_instance" in (d.get("properties") or {}):
            assert name == "IoK8sApimachineryPkgApiResourceQuantity", name
            schema["$defs"][name] = {"anyOf": [{"type": "integer"}, {"type": "string",
                                                                     "pattern": QUANTITY}]}

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                node.setdefault("additionalProperties", False)
            for v in node.values():
                strict(v)
        elif isinstance(node, list):
            for v in node:
                strict(v)

    strict(schema)
    return schema


def check_trainjob(obj: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(trainjob_schema()).validate(obj)
    # the CRD's rules beyond types (CEL and list-map markers of the Trainer's Go API)
    name = obj["metadata"]["name"]
    assert RFC1035.fullmatch(name) and len(name) <= 63, name
    spec = obj["spec"]
    assert spec["runtimeRef"]["name"] and spec["runtimeRef"]["apiGroup"] == "trainer.kubeflow.org"
    assert spec["runtimeRef"]["kind"] in ("ClusterTrainingRuntime", "TrainingRuntime")
    assert spec.get("activeDeadlineSeconds", 1) >= 1
    t = spec["trainer"]
    env = [e["name"] for e in t["env"]]
    assert len(env) == len(set(env)) and len(env) <= 128  # listType=map, maxItems
    assert len(t["command"]) <= 128 and t["numNodes"] >= 1 and t["numProcPerNode"] >= 1
    for e in t["env"]:
        assert ("value" in e) != ("valueFrom" in e), e
    patches = spec.get("runtimePatches") or []
    assert len(patches) <= 16 and len({p["manager"] for p in patches}) == len(patches)
    for p in patches:
        for rj in p["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]:
            pod = rj["template"]["spec"]["template"]["spec"]
            for c in pod.get("containers", []):
                assert not (c["name"] == "node" and "env" in c)  # only through trainer.env
            vols = [v["name"] for v in pod.get("volumes", [])]
            assert len(vols) == len(set(vols))
            mounts = {m["name"] for c in pod.get("containers", []) for m in c.get("volumeMounts", [])}
            assert mounts <= set(vols), (mounts, vols)


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] == "TrainJob":
        check_trainjob(obj)
    else:
        kubernetes_validate.validate(obj, "1.32", strict=True)


@pytest.mark.parametrize(("spec", "values"), CASES,
                         ids=[f"{spec.stem}-{v}" for spec, v in CASES])
def test_every_planned_object_is_valid(spec: Path, values: str) -> None:
    args, trainjob, kueue = VALUES[values]
    docs = documents(plan_yaml(spec, args))
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "ConfigMap" and kinds.count("ConfigMap") == 1
    assert ("TrainJob" in kinds) == trainjob and ("Service" in kinds) == (not trainjob)
    for d in docs:
        validate(d)
        if d["kind"] in ("Job", "TrainJob"):
            labels = d["metadata"]["labels"]
            assert (labels.get("kueue.x-k8s.io/queue-name") is not None) == kueue
            assert bool(d["spec"].get("suspend")) == kueue
            assert d["metadata"]["ownerReferences"][0]["uid"] == PLACEHOLDER_UID
    steps = {d["metadata"]["labels"].get("hurricane.io/step") for d in docs[1:]}
    assert {"stage1", "retrain", "export", "profile"} <= steps


def test_the_multi_device_example_plans_every_step_device_and_stage() -> None:
    text = plan_yaml(EXAMPLES / "cluster-gpu-search.yaml", SHARED)
    docs = documents(text)
    made = [(d["metadata"]["labels"]["hurricane.io/step"], d["metadata"]["labels"]["hurricane.io/device"],
             d["kind"]) for d in docs[1:]]
    assert made == [
        ("profile", "gpu", "Job"), ("profile", "cpu-ov", "Job"), ("profile", "dsp-qnn", "Job"),
        ("predictor", "gpu", "Job"), ("predictor", "cpu-ov", "Job"),
        ("stage1", "all", "TrainJob"), ("search1", "gpu", "Job"), ("search1", "cpu-ov", "Job"),
        ("stage2", "gpu", "TrainJob"), ("stage2", "cpu-ov", "TrainJob"),
        ("search2", "gpu", "Job"), ("search2", "cpu-ov", "Job"), ("transfer", "dsp-qnn", "Job"),
        ("retrain", "gpu", "TrainJob"), ("retrain", "cpu-ov", "TrainJob"),
        ("retrain", "dsp-qnn", "TrainJob"),
        ("export", "gpu", "Job"), ("export", "cpu-ov", "Job"), ("export", "dsp-qnn", "Job")]
    stage1 = docs[6]
    assert stage1["spec"]["trainer"]["numNodes"] == 2 and stage1["spec"]["trainer"]["numProcPerNode"] == 2
    dsp = docs[3]["spec"]["template"]["spec"]
    assert dsp["nodeSelector"]["hurricane.io/device"] == "dsp"
    assert text.startswith("# hurricane cluster plan: search vision-gpu-00000000")
    assert "# step stage2, unit cpu-ov: TrainJob" in text


def test_the_plan_is_what_the_executor_creates(tmp_path: Path) -> None:
    """The TrainJob the plan prints for stage1 is the body the executor POSTs under the same
    values (the owner's uid aside)."""
    values = yaml.safe_load((EXAMPLES / "values-shared-cluster.yaml").read_text())
    values["kueue"] = {"queue": "", "priorityClass": "", "apiVersion": "v1beta2"}
    s = settings_from_env(release_env(render_chart(CHART, values, release="hurricane",
                                                   namespace="hurricane")))
    docs = documents(plan_yaml(EXAMPLES / "digits-cpu.yaml", VALUES["shared-trainjob-no-kueue"][0]))
    planned = next(d for d in docs if d["kind"] == "TrainJob"
                   and d["metadata"]["labels"]["hurricane.io/step"] == "stage1")
    from hurricane.runs.pipeline import planned_jobs
    from hurricane.spec import read_spec_file
    from hurricane.storage.store import LocalStore

    jobs = planned_jobs(read_spec_file(EXAMPLES / "digits-cpu.yaml"), "digits-cpu-00000000",
                        LocalStore(tmp_path), store_url=s.store)
    (job,) = [j for step, _, j in jobs if step == "stage1"]
    assert job.max_restarts == 3  # the spec's training.max_restarts
    with FakeKubeServer() as srv:
        srv.kube.job_status[trainjob_name(job)] = [condition("Complete")]
        KubernetesExecutor(settings=s.model_copy(update={"k8s_poll_s": 0.05}),
                           api_client=srv.client()).run(job)
        (post,) = srv.kube.seen("POST", "trainjobs")
    body = copy.deepcopy(post.body)
    body["metadata"]["ownerReferences"][0]["uid"] = PLACEHOLDER_UID
    assert body == planned
    assert Cluster.from_settings(s).training_backend == "trainjob"


def test_the_trainjob_schema_check_catches_what_the_api_does_not_define() -> None:
    docs = documents(plan_yaml(EXAMPLES / "digits-cpu.yaml", SHARED))
    tj = next(d for d in docs if d["kind"] == "TrainJob")
    check_trainjob(tj)
    bad = copy.deepcopy(tj)
    bad["spec"]["trainer"]["envFrom"] = [{"configMapRef": {"name": "x"}}]  # not in the API
    with pytest.raises(jsonschema.ValidationError, match="envFrom"):
        check_trainjob(bad)
    bad = copy.deepcopy(tj)
    bad["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(jsonschema.ValidationError):
        check_trainjob(bad)
    bad = copy.deepcopy(tj)
    bad["metadata"]["name"] = "0-starts-with-a-digit"
    with pytest.raises(AssertionError):
        check_trainjob(bad)
    assert json.dumps(trainjob_schema()).count('"additionalProperties": false') > 50


def test_the_plan_refuses_a_search_the_values_cannot_run() -> None:
    res = CliRunner().invoke(app, ["cluster", "plan", str(EXAMPLES / "cluster-gpu-search.yaml"),
                                   *SECRET, *VALUES["gpu-cluster"][0]])
    assert res.exit_code == 2
    assert "step profile, unit gpu: no device pool for hurricane.io/device=gpu" in res.output
    res = CliRunner().invoke(app, ["cluster", "plan", str(EXAMPLES / "digits-cpu.yaml")])
    assert res.exit_code == 2 and "s3.secretKey is empty" in res.output
    res = CliRunner().invoke(app, ["cluster", "plan", str(EXAMPLES / "digits-cpu.yaml"), *SECRET,
                                   "--set", "kueue.priorityClass=high"])
    assert res.exit_code == 2 and "kueue.priorityClass is set without kueue.queue" in res.output

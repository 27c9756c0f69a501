"""Manifests of hurricane.operator: every Job it builds validates against the Kubernetes 1.32
schema in strict mode (unknown fields are errors), names are DNS-1123 and deterministic, and
the Jobs carry what a cluster needs (pool selection, extended resources, torchrun topology,
failure policy, owner, limits, non-root pods, settings and credentials by name)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from hurricane.latency.devices import DEVICES
from hurricane.operator.manifests import (
    JOB_NAME_MAX,
    Cluster,
    dns_name,
    job_name,
    manifests,
    owner_configmap,
)
from hurricane.runs.contract import EXIT_INVALID, JobSpec
from hurricane.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OWNER = {"metadata": {"name": "hurricane-search-s", "uid": "0f6a5c3e-1d2b-4c5d-9e8f-0a1b2c3d4e5f"}}

GPU_SETTINGS = Settings(
    k8s_namespace="nas", k8s_release="prod", k8s_trainer_image="reg.io/hurricane-trainer:0.1.0",
    k8s_profiler_image="reg.io/hurricane-profiler:0.1.0",
    k8s_pools=[  # type: ignore[arg-type]
        {"name": "cpu", "label": "cpu", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}},
        {"name": "dsp", "label": "dsp", "node_selector": {"kubernetes.io/arch": "arm64"},
         "tolerations": [{"key": "hurricane.io/dsp", "operator": "Exists", "effect": "NoSchedule"}]},
        {"name": "gpu", "label": "gpu"}],
    k8s_training={"node_selector": {"hurricane.io/device": "gpu"}, "gpus_per_node": 4,  # type: ignore[arg-type]
                  "shm_size": "16Gi",
                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}],
                  "resources": {"requests": {"cpu": "16", "memory": "64Gi"}}},
    k8s_data={"pvc": "imagenet", "mount_path": "/datasets", "cache_size": "100Gi"})  # type: ignore[arg-type]
CLUSTER = Cluster.from_settings(GPU_SETTINGS)


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, "1.32", strict=True)


def spec_of(device: str, step: str = "profile") -> JobSpec:
    prof = DEVICES.get(device)
    return JobSpec(search_id="digits-cpu-0a1b2c3d", step=step, store_url="s3://bucket/runs",
                   device=device, node_label=prof.node_label, resources=dict(prof.resources))


@pytest.mark.parametrize("device", ["cpu", "dsp-qnn", "gpu"])
def test_measuring_jobs_validate_and_select_their_pool(device: str) -> None:
    job = spec_of(device)
    (obj,) = manifests(job, CLUSTER, OWNER)
    validate(obj)
    pod = obj["spec"]["template"]["spec"]
    label = DEVICES.get(device).node_label
    assert pod["nodeSelector"]["hurricane.io/device"] == label
    c = pod["containers"][0]
    assert c["image"] == "reg.io/hurricane-profiler:0.1.0"
    assert c["command"] == job.command()  # the exact command the process executor runs
    for res, qty in DEVICES.get(device).resources.items():  # the device plugin's resource
        assert c["resources"]["limits"][res] == qty == c["resources"]["requests"][res]
    if device == "dsp-qnn":
        assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
        assert pod["tolerations"] == [{"key": "hurricane.io/dsp", "operator": "Exists",
                                       "effect": "NoSchedule"}]
        assert c["resources"]["limits"] == {"qualcomm.com/hexagon": "1"}
    if device == "gpu":
        assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_every_job_has_labels_owner_limits_policy_and_a_non_root_pod() -> None:
    jobs = [manifests(spec_of("cpu"), CLUSTER, OWNER)[0],
            manifests(JobSpec("s", "stage1", "s3://b", nodes=2, nprocs=4), CLUSTER, OWNER)[1],
            manifests(JobSpec("s", "search1", "s3://b", device="cpu"), CLUSTER, OWNER)[0]]
    for obj in jobs:
        validate(obj)
        md, spec = obj["metadata"], obj["spec"]
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                "app.kubernetes.io/component", "app.kubernetes.io/managed-by",
                "app.kubernetes.io/part-of", "hurricane.io/search-id", "hurricane.io/step",
                "hurricane.io/device"} <= set(md["labels"])
        assert md["labels"]["app.kubernetes.io/instance"] == "prod"
        assert md["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap",
                                          "name": "hurricane-search-s", "uid": OWNER["metadata"]["uid"]}]
        assert spec["backoffLimit"] == 3 and spec["activeDeadlineSeconds"] == 2 * 24 * 3600
        assert spec["ttlSecondsAfterFinished"] == 24 * 3600
        rules = spec["podFailurePolicy"]["rules"]
        assert rules[0] == {"action": "Ignore",
                            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
        assert rules[1]["action"] == "FailJob"
        assert rules[1]["onExitCodes"]["values"] == [EXIT_INVALID]
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == GPU_SETTINGS.k8s_job_service_account
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        c = pod["containers"][0]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["envFrom"] == [{"configMapRef": {"name": "hurricane-settings"}},
                                {"secretRef": {"name": "hurricane-s3"}}]
        assert {"name": "HURRICANE_PROGRESS", "value": "jsonl"} in c["env"]
        assert spec["template"]["metadata"]["labels"] == md["labels"]


def test_a_training_stage_is_an_indexed_job_with_a_headless_service() -> None:
    job = JobSpec(search_id="digits-cpu-0a1b2c3d", step="stage1", store_url="s3://b/runs",
                  nodes=3, nprocs=4, max_restarts=3)
    svc, obj = manifests(job, CLUSTER, OWNER)
    validate(svc)
    validate(obj)
    name = job_name(job)
    assert svc["kind"] == "Service" and svc["metadata"]["name"] == name
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    assert svc["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    spec = obj["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == name  # pods are <name>-<index>.<name>: pod 0 is stable
    c = pod["containers"][0]
    assert c["image"] == "reg.io/hurricane-trainer:0.1.0"
    assert c["command"][:3] == ["python", "-m", "torch.distributed.run"]
    assert "--nnodes=3" in c["command"] and "--nproc-per-node=4" in c["command"]
    assert "--max-restarts=3" in c["command"]
    assert "--node-rank=$(NODE_RANK)" in c["command"]
    assert f"--rdzv-endpoint={name}-0.{name}:29400" in c["command"]
    assert c["command"][c["command"].index("-m", 3):] == ["-m", *job.command()[2:]]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']")
    assert env["HURRICANE_DIST_BACKEND"]["value"] == "nccl"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert pod["nodeSelector"] == {"hurricane.io/device": "gpu"}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    cpu = Cluster.from_settings(Settings())
    _, obj = manifests(job, cpu, OWNER)
    env = {e["name"]: e for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HURRICANE_DIST_BACKEND"]["value"] == "gloo"  # no GPUs: gloo
    assert "nvidia.com/gpu" not in str(obj)


def test_evolution_runs_as_one_pod_on_the_training_pool() -> None:
    (obj,) = manifests(JobSpec("s", "search1", "s3://b", device="cpu"), CLUSTER, OWNER)
    validate(obj)
    pod = obj["spec"]["template"]["spec"]
    assert "completionMode" not in obj["spec"] and pod["nodeSelector"] == {"hurricane.io/device": "gpu"}
    assert pod["containers"][0]["command"][:4] == ["python", "-m", "hurricane", "job"]


@pytest.mark.parametrize("step", ["stage1", "search1", "retrain", "export", "profile"])
def test_steps_that_read_data_get_the_claim_and_the_shard_cache(step: str) -> None:
    device = None if step == "stage1" else "cpu"
    job = JobSpec("digits-cpu-0a1b2c3d", step, "s3://b/runs", device=device,
                  node_label="cpu" if step in ("export", "profile") else None)
    obj = manifests(job, CLUSTER, OWNER)[-1]
    validate(obj)
    pod = obj["spec"]["template"]["spec"]
    c = pod["containers"][0]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    env = {e["name"]: e.get("value") for e in c["env"]}
    if step == "profile":  # measuring latency reads no images
        assert "data" not in vols and "data-cache" not in vols
        assert "HURRICANE_DATA_CACHE_DIR" not in env
        return
    assert vols["data"]["persistentVolumeClaim"] == {"claimName": "imagenet", "readOnly": True}
    assert mounts["data"] == {"name": "data", "mountPath": "/datasets", "readOnly": True}
    assert vols["data-cache"]["emptyDir"] == {"sizeLimit": "100Gi"}
    assert env["HURRICANE_DATA_CACHE_DIR"] == mounts["data-cache"]["mountPath"]
    assert int(env["HURRICANE_DATA_CACHE_SIZE"]) == int(0.8 * (100 << 30))  # room for a fetch
    # without a claim (s3:// sources): only the cache
    plain = manifests(job, Cluster.from_settings(Settings()), OWNER)[-1]
    validate(plain)
    names = [v["name"] for v in plain["spec"]["template"]["spec"].get("volumes", [])]
    assert "data" not in names and "data-cache" in names


def test_owner_object_validates() -> None:
    obj = owner_configmap("digits-cpu-0a1b2c3d", CLUSTER)
    validate(obj)  # type: ignore[arg-type]
    assert obj["metadata"]["name"] == "hurricane-search-digits-cpu-0a1b2c3d"


def test_names_are_dns1123_bounded_deterministic_and_distinct() -> None:
    long_id = "a-very-long-search-name-for-the-imagenet-run-of-2026-0123abcd"
    names = set()
    for sid in ("s", long_id, long_id + "x"):
        for step, dev in (("profile", "cpu"), ("stage2", "dsp-qnn"), ("stage1", None)):
            job = JobSpec(search_id=sid, step=step, store_url="x", device=dev)
            n = job_name(job)
            assert DNS1123.match(n) and len(n) <= JOB_NAME_MAX, n
            assert n == job_name(job)  # deterministic
            names.add(n)
    assert len(names) == 9  # distinct work, distinct names (a hash suffix where shortened)
    assert job_name(JobSpec("s-1", "profile", "x", device="cpu")) == "s-1-profile-cpu"
    assert dns_name("Upper_Case") != dns_name("upper-case") and DNS1123.match(dns_name("Upper_Case"))
    assert len(dns_name("x" * 200)) == 63


def test_unknown_device_pool_is_a_clear_error() -> None:
    job = JobSpec("s", "profile", "x", device="vpu-ov", node_label="vpu")
    with pytest.raises(LookupError, match=re.escape("no device pool for hurricane.io/device=vpu; "
                                                    "pools: cpu, dsp, gpu")):
        manifests(job, CLUSTER, OWNER)


def test_golden_training_job() -> None:
    """The whole training Job as JSON (regenerate with HURRICANE_UPDATE_GOLDEN=1)."""
    job = JobSpec(search_id="digits-cpu-0a1b2c3d", step="stage2", store_url="s3://bucket/runs",
                  device="cpu", nodes=2, nprocs=4, max_restarts=3)
    got = manifests(job, CLUSTER, OWNER)
    path = GOLDEN / "training-job.json"
    if os.environ.get("HURRICANE_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text())

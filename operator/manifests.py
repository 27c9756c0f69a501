"""Kubernetes objects for a search's jobs, as pure functions returning dicts: names, labels,
the search's owner object, measuring Jobs on device pools, and the training of the supernet
stages and retraining as Indexed Jobs with a headless Service for torchrun's rendezvous or as
Kubeflow Trainer v2 TrainJobs (built from the typed ``kubeflow_trainer_api`` models). With
Kueue, every Job and TrainJob names the LocalQueue and is created suspended.

No ``__init__.py`` in this folder on purpose: a regular package named ``operator`` at the
repository root would shadow the standard library's ``operator`` for any Python started from
the root. The installed import name is ``hurricane.operator``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, TypedDict

from hurricane.latency.devices import NODE_LABEL
from hurricane.runs.contract import EXIT_INVALID, JobSpec
from hurricane.runs.steps.results import step_of
from hurricane.settings import (
    DataVolumes,
    DevicePool,
    Kueue,
    Resources,
    Settings,
    Toleration,
    TrainingPool,
    TrainJobRuntime,
)

PART_OF = "hurricane"
MANAGED_BY = "hurricane-operator"
CONTAINER = "job"
RDZV_PORT = 29400
CACHE_DIR = "/var/cache/hurricane-data"
CACHE_SHARE = 0.8  # of the emptyDir's sizeLimit: room for a shard being fetched
_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 1 << 10,
             "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
JOB_NAME_MAX = 52  # an Indexed Job's pod hostname is <name>-<index>: room for the index
# a TrainJob's pods are <name>-node-<job index>-<pod index>: room for JobSet's suffixes
TRAINJOB_NAME_MAX = 46
UID = 10001
POD_SECURITY: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                                "fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                      "capabilities": {"drop": ["ALL"]}}
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"
TRAINER_GROUP, TRAINER_VERSION, TRAINJOBS = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
TRAINER_NODE = "node"  # the trainer's replicated job and container in Trainer v2 runtimes
PATCH_MANAGER = "hurricane.io/operator"


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]


class Manifest(TypedDict):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label from ``parts``: lowercase alphanumerics and '-', at most ``limit``
    characters. Parts that are not already such a label, or too long, keep their cleaned start
    and end in a hash of the original (deterministic, and distinct for distinct parts)."""
    raw = "-".join(p for p in parts if p)
    if len(raw) <= limit and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", raw):
        return raw
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", raw.lower())).strip("-")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{name[:limit - 9].rstrip('-')}-{digest}".lstrip("-")


def job_name(job: JobSpec) -> str:
    return dns_name(job.search_id, job.step, (job.device or "").lower(), limit=JOB_NAME_MAX)


def trainjob_name(job: JobSpec) -> str:
    """A TrainJob's name: an RFC 1035 label (it starts with a letter), short enough for the
    pod names JobSet derives from it."""
    name = dns_name(job.search_id, job.step, (job.device or "").lower(), limit=TRAINJOB_NAME_MAX)
    if name[0].isalpha():
        return name
    return dns_name("t", job.search_id, job.step, (job.device or "").lower(),
                    limit=TRAINJOB_NAME_MAX)


def owner_name(search_id: str) -> str:
    return dns_name("hurricane-search", search_id)


@dataclass(frozen=True)
class Cluster:
    """What the operator needs of the settings (the chart renders every value)."""

    namespace: str
    release: str
    trainer_image: str
    profiler_image: str
    pull_policy: str
    service_account: str
    settings_configmap: str
    s3_secret: str
    pools: tuple[DevicePool, ...]
    training: TrainingPool
    backoff_limit: int
    active_deadline_s: int
    ttl_after_finished_s: int
    data: DataVolumes = field(default_factory=DataVolumes)
    kueue: Kueue = field(default_factory=Kueue)
    training_backend: str = "job"  # "job" (Indexed Job + headless Service) or "trainjob"
    trainjob: TrainJobRuntime = field(default_factory=TrainJobRuntime)
    settings_keys: tuple[str, ...] = ()  # HURRICANE_* keys of the settings ConfigMap

    @classmethod
    def from_settings(cls, s: Settings) -> Cluster:
        return cls(s.k8s_namespace, s.k8s_release, s.k8s_trainer_image, s.k8s_profiler_image,
                   s.k8s_image_pull_policy, s.k8s_job_service_account, s.k8s_settings_configmap,
                   s.k8s_s3_secret, s.k8s_pools, s.k8s_training, s.k8s_backoff_limit,
                   s.k8s_active_deadline_s, s.k8s_ttl_after_finished_s, s.k8s_data, s.k8s_kueue,
                   s.k8s_training_backend, s.k8s_trainjob, settings_env_keys())

    def pool(self, label: str) -> DevicePool:
        for p in self.pools:
            if p.label == label:
                return p
        raise LookupError(f"no device pool for hurricane.io/device={label}; pools: "
                          f"{', '.join(p.label for p in self.pools) or '(none)'} "
                          "(chart values devicePools)")


S3_SECRET_KEYS = ("HURRICANE_S3_ACCESS_KEY", "HURRICANE_S3_SECRET_KEY")


def settings_env_keys() -> tuple[str, ...]:
    """Every HURRICANE_* variable the settings read (the chart's ConfigMap holds a subset)."""
    return tuple(f"HURRICANE_{name.upper()}" for name in Settings.model_fields)


def labels(job: JobSpec, cluster: Cluster, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": PART_OF, "app.kubernetes.io/instance": cluster.release,
            "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "hurricane.io/search-id": job.search_id, "hurricane.io/step": job.step,
            "hurricane.io/device": (job.device or "all").lower()}


def kueue_labels(cluster: Cluster) -> dict[str, str]:
    """What makes Kueue manage a workload: its LocalQueue and, optionally, its priority."""
    k = cluster.kueue
    if not k.enabled:
        return {}
    out = {KUEUE_QUEUE: k.queue}
    if k.priority_class:
        out[KUEUE_PRIORITY] = k.priority_class
    return out


def owner_configmap(search_id: str, cluster: Cluster) -> Manifest:
    """The search's owner object: every Job of the search names it, so deleting it (a purge,
    or `kubectl delete configmap`) garbage-collects them all."""
    return {"apiVersion": "v1", "kind": "ConfigMap",  # type: ignore[typeddict-item]
            "metadata": {"name": owner_name(search_id), "namespace": cluster.namespace,
                         "labels": {"app.kubernetes.io/name": PART_OF,
                                    "app.kubernetes.io/instance": cluster.release,
                                    "app.kubernetes.io/component": "search",
                                    "app.kubernetes.io/managed-by": MANAGED_BY,
                                    "hurricane.io/search-id": search_id}},
            "data": {"search-id": search_id}}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"]}


def _resources(*parts: Resources | dict[str, str]) -> dict[str, dict[str, str]]:
    """Requests and limits merged; an extended resource (a bare dict) is a limit and a request
    (Kubernetes requires them equal)."""
    req: dict[str, str] = {}
    lim: dict[str, str] = {}
    for p in parts:
        if isinstance(p, Resources):
            req.update(p.requests)
            lim.update(p.limits)
        else:
            req.update(p)
            lim.update(p)
    return {k: v for k, v in (("requests", req), ("limits", lim)) if v}


def _tolerations(ts: tuple[Toleration, ...]) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in ts]


def _pod_spec(cluster: Cluster, image: str, command: list[str], *, env: list[dict[str, Any]],
              resources: dict[str, dict[str, str]], node_selector: dict[str, str],
              tolerations: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None,
              mounts: list[dict[str, Any]] | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER, "image": image, "imagePullPolicy": cluster.pull_policy,
        "command": command, "env": env,
        "envFrom": [{"configMapRef": {"name": cluster.settings_configmap}},
                    {"secretRef": {"name": cluster.s3_secret}}],
        "securityContext": dict(CONTAINER_SECURITY),
    }
    if resources:
        container["resources"] = resources
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # pod failures are the Job's to count (podFailurePolicy)
        "serviceAccountName": cluster.service_account,
        "automountServiceAccountToken": False,
        "securityContext": dict(POD_SECURITY),
        "containers": [container],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if volumes:
        spec["volumes"] = volumes
    spec.update(extra or {})
    return spec


def _job(job: JobSpec, cluster: Cluster, owner: dict[str, Any], component: str,
         pod: dict[str, Any], spec_extra: dict[str, Any] | None = None) -> Manifest:
    lab = labels(job, cluster, component)
    suspend = {"suspend": True} if cluster.kueue.enabled else {}  # Kueue admits (unsuspends)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(job), "namespace": cluster.namespace,
                     "labels": {**lab, **kueue_labels(cluster)},
                     "ownerReferences": [owner_reference(owner)]},
        "spec": {
            **suspend,
            "backoffLimit": cluster.backoff_limit,
            "activeDeadlineSeconds": cluster.active_deadline_s,
            "ttlSecondsAfterFinished": cluster.ttl_after_finished_s,
            "podFailurePolicy": {"rules": [
                # a node drained, preempted or lost: not the job's fault, not counted
                {"action": "Ignore",
                 "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                # the input cannot work (spec, budget, device): no retry can help
                {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER,
                                                      "operator": "In",
                                                      "values": [EXIT_INVALID]}},
            ]},
            **(spec_extra or {}),
            "template": {"metadata": {"labels": lab}, "spec": pod},
        },
    }


def _bytes(quantity: str) -> int:
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", quantity)
    if not m or m.group(2) not in _QUANTITY:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    return int(float(m.group(1)) * _QUANTITY[m.group(2)])


def data_volumes(job: JobSpec, cluster: Cluster) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """(volumes, mounts, env) that give a data-reading step its dataset: the claim of
    ``cluster.data.pvc`` read-only at its mount path (directory sources), and an emptyDir for
    the shard cache of streamed sets (``s3://`` sources use the S3 settings every pod has).
    Which steps read images is their trait (``Step.reads_images``)."""
    if not step_of(job.step).reads_images:
        return [], [], []
    d = cluster.data
    cache: dict[str, Any] = {"sizeLimit": d.cache_size}
    if d.cache_medium:
        cache["medium"] = d.cache_medium
    volumes: list[dict[str, Any]] = [{"name": "data-cache", "emptyDir": cache}]
    mounts: list[dict[str, Any]] = [{"name": "data-cache", "mountPath": CACHE_DIR}]
    if d.pvc:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": d.pvc,
                                                                  "readOnly": True}})
        mounts.append({"name": "data", "mountPath": d.mount_path, "readOnly": True})
    env = [{"name": "HURRICANE_DATA_CACHE_DIR", "value": CACHE_DIR},
           {"name": "HURRICANE_DATA_CACHE_SIZE",
            "value": str(int(_bytes(d.cache_size) * CACHE_SHARE))}]
    return volumes, mounts, env


def _env(job: JobSpec) -> list[dict[str, Any]]:
    base = {"HURRICANE_PROGRESS": "jsonl", "PYTHONUNBUFFERED": "1", **job.env}
    return [{"name": k, "value": v} for k, v in base.items()]


def measure_job(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> Manifest:
    """A Job on the device pool of ``job.node_label``: one pod on a node labelled
    hurricane.io/device=<label>, with the pool's tolerations and resources plus the extended
    resources the device profile names."""
    if job.node_label is None:
        raise ValueError(f"job {job.name} names no device pool")
    pool = cluster.pool(job.node_label)
    volumes, mounts, data_env = data_volumes(job, cluster)
    pod = _pod_spec(cluster, cluster.profiler_image, job.command(), env=_env(job) + data_env,
                    resources=_resources(pool.resources, job.resources),
                    node_selector={NODE_LABEL: pool.label, **pool.node_selector},
                    tolerations=_tolerations(pool.tolerations), volumes=volumes, mounts=mounts)
    return _job(job, cluster, owner, "measure", pod)


def training_service(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> Manifest:
    """The headless Service that gives the training pods stable DNS names
    (``<job>-<index>.<job>``): pod 0 hosts torchrun's rendezvous."""
    name = job_name(job)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": cluster.namespace,
                         "labels": labels(job, cluster, "train"),
                         "ownerReferences": [owner_reference(owner)]},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"batch.kubernetes.io/job-name": name},
                     "ports": [{"name": "rdzv", "port": RDZV_PORT, "targetPort": RDZV_PORT}]}}


@dataclass(frozen=True)
class TrainingPod:
    """What a training pod gets under either backend: its environment (without the settings
    ConfigMap and S3 Secret), resources, volumes and mounts, and where it may run."""

    env: list[dict[str, Any]]
    resources: dict[str, dict[str, str]]
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]


def training_pod(job: JobSpec, cluster: Cluster) -> TrainingPod:
    """The pod of a torchrun training (``job.nprocs`` processes per pod): NCCL when the
    training pool has GPUs (one ``nvidia.com/gpu`` each), gloo on CPU; /dev/shm in memory; the
    dataset's volumes."""
    t = cluster.training
    volumes, mounts, data_env = data_volumes(job, cluster)
    res = Resources(requests=dict(t.resources.requests), limits=dict(t.resources.limits))
    if t.gpus_per_node:
        res.limits.setdefault("nvidia.com/gpu", str(t.gpus_per_node))
    return TrainingPod(
        env=[*_env(job), *data_env,
             {"name": "HURRICANE_DIST_BACKEND", "value": "nccl" if t.gpus_per_node else "gloo"}],
        resources=_resources(res),
        volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": t.shm_size}},
                 *volumes],
        mounts=[{"name": "dshm", "mountPath": "/dev/shm"}, *mounts],
        node_selector=dict(t.node_selector), tolerations=_tolerations(t.tolerations))


def training_job(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> Manifest:
    """An Indexed Job of ``job.nodes`` pods (completions = parallelism), each running torchrun
    (``job.nprocs`` processes) with its node rank from the completion index and rendezvous on
    pod 0's DNS name. Under Kueue the Job is one workload: all its pods are admitted at once."""
    name = job_name(job)
    cmd = job.command()
    command = ["python", "-m", "torch.distributed.run", f"--nnodes={job.nodes}",
               f"--nproc-per-node={job.nprocs}", "--node-rank=$(NODE_RANK)",
               "--rdzv-backend=c10d", f"--rdzv-endpoint={name}-0.{name}:{RDZV_PORT}",
               f"--rdzv-id={name}", f"--max-restarts={job.max_restarts}", "-m", *cmd[2:]]
    tp = training_pod(job, cluster)
    env = [*tp.env,
           {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
               "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    pod = _pod_spec(cluster, cluster.trainer_image, command, env=env, resources=tp.resources,
                    node_selector=tp.node_selector, tolerations=tp.tolerations,
                    volumes=tp.volumes, mounts=tp.mounts, extra={"subdomain": name})
    pod["containers"][0]["ports"] = [{"name": "rdzv", "containerPort": RDZV_PORT}]
    return _job(job, cluster, owner, "train", pod, {
        "completionMode": "Indexed", "completions": job.nodes, "parallelism": job.nodes})


def settings_env(cluster: Cluster) -> list[dict[str, Any]]:
    """The settings ConfigMap and S3 Secret as single variables (a TrainJob's trainer takes
    ``env`` but no ``envFrom``): each HURRICANE_* key the settings read, optional, since the
    ConfigMap holds only those the chart renders; the S3 keys from the Secret."""
    out = []
    for key in cluster.settings_keys:
        if key in S3_SECRET_KEYS:
            out.append({"name": key, "valueFrom": {"secretKeyRef": {
                "name": cluster.s3_secret, "key": key}}})
        else:
            out.append({"name": key, "valueFrom": {"configMapKeyRef": {
                "name": cluster.settings_configmap, "key": key, "optional": True}}})
    return out


def _typed(cls: Any, value: dict[str, Any]) -> Any:
    """``value`` as the typed model ``cls``; the generated models drop fields they do not know
    without a word, so a value that does not survive the round trip is refused by name."""
    obj = cls.from_dict(value)
    back = obj.to_dict()
    if back != value:
        lost = sorted(set(value) - set(back)) or [k for k in value if value[k] != back.get(k)]
        raise ValueError(f"{cls.__name__} does not carry {value!r}: check {', '.join(lost)}")
    return obj


def train_job(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> Manifest:
    """A Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``) referencing the
    configured (Cluster)TrainingRuntime, built from the typed models of ``kubeflow_trainer_api``:
    the training Job's image, torchrun command (the runtime's torch plugin gives torchrun its
    nodes, processes, rank and master through PET_* variables), environment (the settings
    ConfigMap and S3 Secret key by key), resources per node, node selection, service account,
    security contexts, volumes and labels. Under Kueue it names the LocalQueue and is created
    suspended; it is one workload."""
    from kubeflow_trainer_api import models as m

    name = trainjob_name(job)
    lab = labels(job, cluster, "train")
    tp = training_pod(job, cluster)
    env: dict[str, dict[str, Any]] = {e["name"]: e for e in settings_env(cluster)}
    env.update({e["name"]: e for e in tp.env})  # the job's own values win over the settings
    command = ["python", "-m", "torch.distributed.run", f"--max-restarts={job.max_restarts}",
               "-m", *job.command()[2:]]
    meta = m.IoK8sApimachineryPkgApisMetaV1ObjectMeta
    container = m.TrainerV1alpha1ContainerPatch(
        name=TRAINER_NODE, volume_mounts=[_typed(m.IoK8sApiCoreV1VolumeMount, v)
                                          for v in tp.mounts],
        security_context=_typed(m.IoK8sApiCoreV1SecurityContext, CONTAINER_SECURITY))
    pod = m.TrainerV1alpha1PodSpecPatch(
        service_account_name=cluster.service_account,
        node_selector=tp.node_selector or None,
        tolerations=[_typed(m.IoK8sApiCoreV1Toleration, t) for t in tp.tolerations] or None,
        volumes=[_typed(m.IoK8sApiCoreV1Volume, v) for v in tp.volumes],
        security_context=_typed(m.IoK8sApiCoreV1PodSecurityContext, POD_SECURITY),
        containers=[container])
    patch = m.TrainerV1alpha1RuntimePatch(
        manager=PATCH_MANAGER,
        trainingRuntimeSpec=m.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=m.TrainerV1alpha1JobSetTemplatePatch(
                metadata=meta(labels=lab),
                spec=m.TrainerV1alpha1JobSetSpecPatch(replicatedJobs=[
                    m.TrainerV1alpha1ReplicatedJobPatch(
                        name=TRAINER_NODE,
                        template=m.TrainerV1alpha1JobTemplatePatch(
                            spec=m.TrainerV1alpha1JobSpecPatch(
                                template=m.TrainerV1alpha1PodTemplatePatch(
                                    metadata=meta(labels=lab), spec=pod))))]))))
    trainer = m.TrainerV1alpha1Trainer(
        image=cluster.trainer_image, command=command,
        env=[_typed(m.IoK8sApiCoreV1EnvVar, e) for e in env.values()],
        numNodes=job.nodes, numProcPerNode=job.nprocs,
        resourcesPerNode=(_typed(m.IoK8sApiCoreV1ResourceRequirements, tp.resources)
                          if tp.resources else None))
    spec = m.TrainerV1alpha1TrainJobSpec(
        runtimeRef=m.TrainerV1alpha1RuntimeRef(name=cluster.trainjob.name,
                                               kind=cluster.trainjob.kind, apiGroup=TRAINER_GROUP),
        trainer=trainer, runtimePatches=[patch],
        activeDeadlineSeconds=cluster.active_deadline_s,
        suspend=True if cluster.kueue.enabled else None)
    obj = m.TrainerV1alpha1TrainJob(
        apiVersion=f"{TRAINER_GROUP}/{TRAINER_VERSION}", kind="TrainJob",
        metadata=meta(name=name, namespace=cluster.namespace,
                      labels={**lab, **kueue_labels(cluster)},
                      ownerReferences=[_typed(m.IoK8sApimachineryPkgApisMetaV1OwnerReference,
                                              owner_reference(owner))]),
        spec=spec)
    return obj.to_dict()  # type: ignore[return-value]


def pool_job(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> Manifest:
    """A one-pod Job on the training pool for work that is not distributed (evolution,
    ProxylessNAS, one-proxy transfer without a device pool)."""
    t = cluster.training
    volumes, mounts, data_env = data_volumes(job, cluster)
    pod = _pod_spec(cluster, cluster.trainer_image, job.command(), env=_env(job) + data_env,
                    resources=_resources(t.resources), node_selector=dict(t.node_selector),
                    tolerations=_tolerations(t.tolerations), volumes=volumes, mounts=mounts)
    return _job(job, cluster, owner, "search", pod)


def manifests(job: JobSpec, cluster: Cluster, owner: dict[str, Any]) -> list[Manifest]:
    """Everything ``job`` needs, in creation order: a measuring Job on its device pool, the
    supernet stages and retraining (torchrun) as a training Job with its headless Service or a
    TrainJob (``training_backend``), or a one-pod Job on the training pool. The last object is
    the one whose status is the job's. Which steps torchrun launches is their trait
    (``Step.distributed``)."""
    if job.node_label is not None:
        return [measure_job(job, cluster, owner)]
    if step_of(job.step).distributed or job.nodes > 1 or job.nprocs > 1:
        if cluster.training_backend == "trainjob":
            return [train_job(job, cluster, owner)]
        return [training_service(job, cluster, owner), training_job(job, cluster, owner)]
    return [pool_job(job, cluster, owner)]

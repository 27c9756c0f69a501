"""Service settings (pydantic-settings, prefix ``HURRICANE_``): one object shared by the API,
the workers, the jobs and the operator; the Helm chart renders the same keys as environment."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Well-known defaults that must never reach a deployment that listens beyond loopback.
_DEFAULT_SECRETS = {"minioadmin", "changeme", "secret", "password", "admin"}


class Toleration(BaseModel):
    """A Kubernetes toleration (the fields the operator passes through)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # Kubernetes' own field name


class Resources(BaseModel):
    """Requests and limits: quantities by resource name, extended resources included
    (``nvidia.com/gpu``, a DSP/VPU device plugin's resource)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class DevicePool(BaseModel):
    """A node pool that measures one kind of device: its jobs (profile, predictor, transfer,
    export) run on nodes labelled ``hurricane.io/device=<label>``, consumed from the
    ``profile.<label>`` queue by that pool's worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")
    label: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$",
                       description="value of the node label hurricane.io/device")
    tolerations: tuple[Toleration, ...] = ()
    resources: Resources = Field(default_factory=Resources)
    node_selector: dict[str, str] = Field(default_factory=dict,
                                          description="more labels the nodes must carry")


class TrainingPool(BaseModel):
    """Where training jobs (supernet stages, evolution, retraining) run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    resources: Resources = Field(default_factory=Resources, description="per pod")
    gpus_per_node: int = Field(0, ge=0, le=16, description="0: CPU pods, gloo; else NCCL and "
                               "torchrun with one process per GPU")
    shm_size: str = Field("1Gi", description="/dev/shm (a memory emptyDir) per pod")


class DataVolumes(BaseModel):
    """How the jobs that read training data (supernet stages, evolution, retraining, export)
    reach it: an ``s3://`` source needs nothing more than the S3 settings; a directory
    source lives on a PersistentVolumeClaim mounted read-only at ``mount_path``; streamed
    shards are cached on an emptyDir of ``cache_size`` per pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pvc: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                            description="claim mounted read-only at mount_path (ReadOnlyMany "
                            "or ReadWriteMany when training spans nodes)")
    mount_path: str = Field("/data", pattern=r"^/[^:]*$", description="where the claim is "
                            "mounted: specs name dataset.path below it")
    cache_size: str = Field("20Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
                            description="emptyDir sizeLimit of the shard cache; the cache keeps "
                            "80% of it (a shard being fetched needs room too)")
    cache_medium: Literal["", "Memory"] = Field("", description="'' (node disk) or Memory")


_LABEL_VALUE = r"^([a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?)?$"
# a data root: an absolute directory, '{user}' standing for one path segment (the caller's name)
_ROOT = re.compile(r"^/([A-Za-z0-9._+=@-]+|\{user\})(/([A-Za-z0-9._+=@-]+|\{user\}))*$")
# an allowed bucket: a bucket name, optionally with a prefix ('{user}' as above)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/([A-Za-z0-9._=+-]+|\{user\}))*$")

StrList = Annotated[tuple[str, ...], NoDecode]


def _split_list(v: object) -> object:
    """A list setting from the environment: JSON (``["/data", "/mnt"]``) or comma-separated."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            import json

            return tuple(json.loads(text))
        return tuple(p.strip() for p in text.split(",") if p.strip())
    return v


class Kueue(BaseModel):
    """Admission through Kueue: every Job (and TrainJob) the operator creates names a
    LocalQueue and is created suspended; Kueue admits it (a multi-pod training job as one
    unit) when the queue's quota allows, and may evict it again (preemption)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field("", pattern=_LABEL_VALUE, description="LocalQueue in the jobs' "
                       "namespace (label kueue.x-k8s.io/queue-name); empty: Kueue is not used")
    priority_class: str = Field("", pattern=_LABEL_VALUE, description="WorkloadPriorityClass "
                                "(label kueue.x-k8s.io/priority-class); empty: the queue's "
                                "default")
    api_version: str = Field("v1beta2", pattern=r"^v[0-9]+((alpha|beta)[0-9]+)?$",
                             description="version of kueue.x-k8s.io Workloads read for the "
                             "reason a job waits or was evicted")

    @property
    def enabled(self) -> bool:
        return bool(self.queue)

    @model_validator(mode="after")
    def _priority_needs_queue(self) -> Kueue:
        if self.priority_class and not self.queue:
            raise ValueError("priority_class is set without a queue: Kueue only admits jobs "
                             "that name a LocalQueue")
        return self


class TrainJobRuntime(BaseModel):
    """The Kubeflow Trainer runtime TrainJobs reference (training backend ``trainjob``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("torch-distributed", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
                      description="the (Cluster)TrainingRuntime: torchrun with PET_* settings")
    kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"


class Settings(BaseSettings):
    """Everything a service process reads from its environment (``HURRICANE_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="HURRICANE_", extra="ignore", frozen=True)

    # artifacts
    store: str = Field("./runs", description="artifact store: a directory, file:// or "
                       "s3://bucket/prefix")
    s3_endpoint: str = Field("http://127.0.0.1:9000", description="S3/MinIO endpoint URL "
                             "(http:// or https://)")
    s3_public_endpoint: str | None = Field(
        None, description="endpoint presigned URLs are signed for, when clients reach the "
        "object store under another name than the services do (e.g. an ingress)")
    s3_access_key: str = Field("", description="S3 access key id")
    s3_secret_key: SecretStr = Field(SecretStr(""), description="S3 secret key")
    s3_region: str = Field("us-east-1", description="S3 region (MinIO ignores it)")
    s3_part_size_mb: int = Field(16, ge=5, le=5120, description="multipart upload part size")
    s3_timeout_s: float = Field(15.0, gt=0, description="connect/read timeout of one request")
    store_retry_s: float = Field(
        90.0, ge=0, description="how long a store operation keeps retrying while the object "
        "store is unreachable before it raises StoreUnavailable")
    presign_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600)

    # queue
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker and result "
                           "backend; also transient progress")
    visibility_timeout_s: int = Field(
        12 * 3600, ge=60, description="Redis redelivers an unacknowledged task after this; "
        "longer than any job, since an adopted job's lease makes a redelivery harmless anyway")
    reconcile_interval_s: float = Field(15.0, gt=0, description="how often a worker looks for "
                                        "searches whose tasks were lost")

    # jobs
    executor: Literal["process", "inline", "kubernetes"] = Field(
        "process", description="where jobs run: local processes, in the worker, or "
        "Kubernetes Jobs (hurricane.operator)")
    job_heartbeat_s: float = Field(5.0, gt=0, description="job lease heartbeat period")
    job_stale_s: float = Field(30.0, gt=0, description="a lease without heartbeat for this long "
                               "belongs to a dead job: the next task starts a new one")
    job_timeout_s: int = Field(7 * 24 * 3600, ge=60, description="hard limit of one job")
    cancel_poll_s: float = Field(1.0, gt=0, description="how often a running job checks for "
                                 "cancellation")
    cancel_grace_s: float = Field(5.0, ge=0, description="SIGTERM to SIGKILL on cancel")
    purge_wait_s: float = Field(20.0, ge=0, description="how long a purge waits for the "
                                "search's running work to stop before it deletes anyway (what "
                                "still runs then writes nothing: the search's tombstone)")
    stop_wait_s: float = Field(60.0, ge=0, description="how long a cancelled Kubernetes job's "
                               "pods may take to be gone before the cancel gives up waiting")

    # Kubernetes (executor = kubernetes; the Helm chart renders every one of these)
    k8s_namespace: str = Field("default", description="namespace of the jobs")
    k8s_release: str = Field("hurricane", description="app.kubernetes.io/instance of the jobs")
    k8s_trainer_image: str = Field("hurricane-trainer:latest", description="image of "
                                   "training jobs (stage1/2, search, retrain, proxyless)")
    k8s_profiler_image: str = Field("hurricane-profiler:latest", description="image of "
                                    "jobs on device pools (profile, predictor, transfer, export)")
    k8s_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    k8s_job_service_account: str = Field("hurricane-job", description="service account of "
                                         "job pods (no API permissions)")
    k8s_settings_configmap: str = Field("hurricane-settings", description="ConfigMap with "
                                        "these HURRICANE_* settings, given to every job")
    k8s_s3_secret: str = Field("hurricane-s3", description="Secret with HURRICANE_S3_ACCESS_KEY "
                               "and HURRICANE_S3_SECRET_KEY, given to every job (the chart "
                               "names keys scoped to the bucket and prefix, never the root's)")
    k8s_pools: tuple[DevicePool, ...] = Field(
        (DevicePool(name="cpu", label="cpu"),), description="device node pools (JSON)")
    k8s_training: TrainingPool = Field(default_factory=TrainingPool, description="(JSON)")
    k8s_data: DataVolumes = Field(default_factory=DataVolumes, description="(JSON) training "
                                  "data volumes and the shard cache")
    k8s_training_backend: Literal["job", "trainjob"] = Field(
        "job", description="how supernet stages and retraining run: an Indexed Job with a "
        "headless Service (torchrun), or a Kubeflow Trainer v2 TrainJob")
    k8s_trainjob: TrainJobRuntime = Field(default_factory=TrainJobRuntime,
                                          description="(JSON) the runtime TrainJobs reference")
    k8s_kueue: Kueue = Field(default_factory=Kueue, description="(JSON) Kueue admission: "
                             "LocalQueue, WorkloadPriorityClass")
    k8s_backoff_limit: int = Field(3, ge=0, le=100, description="pod retries of a job "
                                   "(node disruption and preemption never count)")
    k8s_active_deadline_s: int = Field(2 * 24 * 3600, ge=60, description="a job's deadline")
    k8s_ttl_after_finished_s: int = Field(24 * 3600, ge=0, description="finished jobs are "
                                          "removed after this")
    k8s_poll_s: float = Field(2.0, gt=0, description="how often a watched job is read")

    # API
    tokens_file: str | None = Field(None, description="YAML/JSON list of {user, role, "
                                    "sha256} (token hashes, never tokens)")
    tokens: str | None = Field(None, description="alternative to tokens_file: "
                               "'user:role:sha256,...'")
    signing_key: SecretStr = Field(SecretStr(""), description="HMAC key for download URLs the "
                                   "API serves itself (local-directory store)")
    public_url: str | None = Field(None, description="the API's URL as clients see it "
                                   "(download links); default: the request's own URL")
    max_spec_bytes: int = Field(1 << 20, ge=1024)
    max_table_bytes: int = Field(10 << 20, ge=1024)
    events_poll_s: float = Field(0.5, gt=0, description="event stream refresh period")
    status_cache_s: float = Field(0.5, ge=0, description="how long the API reuses a computed "
                                  "search status (0: never)")

    # ---- security (issue 24): Redis password, metrics access ------------------------------
    redis_password: SecretStr = Field(SecretStr(""), description="password of the Redis in "
                                      "redis_url (the chart passes it from a Secret, so the "
                                      "URL in the settings ConfigMap holds none)")
    metrics: Literal["disabled", "token", "open"] = Field(
        "disabled", description="/metrics: disabled (404), token (a bearer token whose SHA-256 "
        "is metrics_token_sha256), or open (anyone who reaches the API)")
    metrics_token_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the token Prometheus sends "
        "(`hurricane token create prometheus --metrics` prints both)")

    @property
    def redis_dsn(self) -> str:
        """``redis_url`` with ``redis_password`` in it: what clients connect with. Never log
        it; ``redis_url`` is the printable form."""
        pw = self.redis_password.get_secret_value()
        if not pw:
            return self.redis_url
        parts = urlsplit(self.redis_url)
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(pw, safe='')}@{host}"))

    @model_validator(mode="after")
    def _security(self) -> Settings:
        if self.redis_password.get_secret_value() and urlsplit(self.redis_url).password:
            raise ValueError("HURRICANE_REDIS_URL holds a password and HURRICANE_REDIS_PASSWORD "
                             "is set too: give the password once (HURRICANE_REDIS_PASSWORD keeps "
                             "it out of the URL)")
        if self.metrics == "token" and not self.metrics_token_sha256:
            raise ValueError("HURRICANE_METRICS=token needs HURRICANE_METRICS_TOKEN_SHA256 (the "
                             "SHA-256 of the token Prometheus sends; `hurricane token create "
                             "prometheus --metrics` prints both)")
        return self
    # ---- end of security block -------------------------------------------------------------

    # where training data may come from (README "Security"); bundled sets are always allowed
    data_roots: StrList = Field(
        (), description="directories (and everything below) that a search's dataset.path may "
        "name, comma-separated or JSON; '{user}' stands for the submitting user's name (e.g. "
        "/data/shared,/data/users/{user}). Empty: no directory is allowed through the service. "
        "Jobs also refuse to read data outside them (symlinks resolved) once set")
    data_buckets: StrList = Field(
        (), description="S3 buckets (BUCKET or BUCKET/PREFIX, '{user}' as in data_roots) that a "
        "packed dataset's s3:// path may name; such a bucket is read, never created. Empty: "
        "no s3:// dataset is allowed through the service")

    # admission: what one search and one user may ask for (README "Security")
    max_iterations: int = Field(1_000_000, ge=1, description="training iterations of one "
                                "stage (supernet, Stage 2, retrain, proxyless, finalists)")
    max_batch_size: int = Field(4096, ge=1, description="any batch size of a spec")
    max_world_size: int = Field(64, ge=1, description="training.nodes × "
                                "training.processes_per_node")
    max_input_layers: int = Field(16_384, ge=32, description="backbone.input_size × the "
                                  "number of learnable layers")
    max_evolution_evals: int = Field(100_000, ge=2, description="evolution.population × "
                                     "evolution.iterations")
    max_predictor_samples: int = Field(2_000, ge=10, description="architectures measured end "
                                       "to end per device (predictor.samples, "
                                       "one_proxy.samples)")
    max_active_searches: int = Field(10, ge=1, description="queued or running searches per "
                                     "user; one more is refused with 429")
    admins_exempt: bool = Field(True, description="admins' searches skip the limits above")

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if "://" in v and not v.startswith(("file://", "s3://")):
            raise ValueError(f"unsupported store {v.split('://', 1)[0]!r}://; allowed: a "
                             "directory, file://DIR or s3://BUCKET[/PREFIX]")
        return v

    @field_validator("data_roots", "data_buckets", mode="before")
    @classmethod
    def _lists(cls, v: object) -> object:
        return _split_list(v)

    @field_validator("data_roots")
    @classmethod
    def _roots(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for root in v:
            root = root.rstrip("/") or "/"
            if not _ROOT.match(root) or any(p in (".", "..") for p in root.split("/")):
                raise ValueError(f"data root {root!r}: an absolute directory ('/' excluded) of "
                                 "names of [A-Za-z0-9._+=@-] or '{user}', no '.' or '..'")
            out.append(root)
        return tuple(out)

    @field_validator("data_buckets")
    @classmethod
    def _buckets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for b in v:
            b = b.removeprefix("s3://").strip("/")
            if not _BUCKET.match(b) or any(p in (".", "..") for p in b.split("/")):
                raise ValueError(f"data bucket {b!r}: BUCKET or BUCKET/PREFIX (an S3 bucket "
                                 "name; prefix parts of [A-Za-z0-9._=+-] or '{user}')")
            out.append(b)
        return tuple(out)

    @field_validator("s3_endpoint", "s3_public_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"an endpoint is an http:// or https:// URL, got {v!r}")
        return v

    @model_validator(mode="after")
    def _no_default_secrets(self) -> Settings:
        if self.store.startswith("s3://"):
            if not self.s3_access_key or not self.s3_secret_key.get_secret_value():
                raise ValueError("an s3:// store needs HURRICANE_S3_ACCESS_KEY and "
                                 "HURRICANE_S3_SECRET_KEY")
            if (self.s3_secret_key.get_secret_value() in _DEFAULT_SECRETS
                    and not _loopback(self.s3_endpoint)):
                raise ValueError("HURRICANE_S3_SECRET_KEY is a well-known default; set a real "
                                 "secret for an object store that is not on loopback")
        if self.job_stale_s <= 2 * self.job_heartbeat_s:
            raise ValueError(f"job_stale_s ({self.job_stale_s}) must exceed twice "
                             f"job_heartbeat_s ({self.job_heartbeat_s})")
        return self


def _loopback(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]")


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment (tests clear the cache)."""
    return Settings()

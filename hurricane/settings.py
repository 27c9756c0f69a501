"""Service settings (pydantic-settings, prefix ``HURRICANE_``): one object shared by the API,
the workers, the jobs and the operator; the Helm chart renders the same keys as environment."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Well-known defaults that must never reach a deployment that listens beyond loopback.
_DEFAULT_SECRETS = {"minioadmin", "changeme", "secret", "password", "admin"}


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
    executor: Literal["process", "inline"] = Field("process", description="where jobs run")
    job_heartbeat_s: float = Field(5.0, gt=0, description="job lease heartbeat period")
    job_stale_s: float = Field(30.0, gt=0, description="a lease without heartbeat for this long "
                               "belongs to a dead job: the next task starts a new one")
    job_timeout_s: int = Field(7 * 24 * 3600, ge=60, description="hard limit of one job")
    cancel_poll_s: float = Field(1.0, gt=0, description="how often a running job checks for "
                                 "cancellation")
    cancel_grace_s: float = Field(5.0, ge=0, description="SIGTERM to SIGKILL on cancel")

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

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if "://" in v and not v.startswith(("file://", "s3://")):
            raise ValueError(f"unsupported store {v.split('://', 1)[0]!r}://; allowed: a "
                             "directory, file://DIR or s3://BUCKET[/PREFIX]")
        return v

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

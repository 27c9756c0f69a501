"""S3/MinIO artifact store on the minio SDK: streaming multipart puts, conditional writes, retries."""

from __future__ import annotations

import builtins
import hashlib
import http.client
import io
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import MAX_PART_SIZE, MIN_PART_SIZE, check_bucket_name

from hurricane.storage.store import (
    CHUNK,
    ArtifactNotFound,
    ArtifactStore,
    ObjectInfo,
    StoreUnavailable,
    check_folder,
    check_key,
    sha256_stream,
    temp_beside,
)

if TYPE_CHECKING:
    from hurricane.settings import Settings

log = logging.getLogger("hurricane.store")

T = TypeVar("T")

_META_SHA = "x-amz-meta-sha256"
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.2, 5.0
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request may carry
_MAX_PRESIGN_S = 7 * 24 * 3600
_FILENAME = re.compile(r"^[A-Za-z0-9._=+-]+$")
# A request that never got an answer, or got a "try again": worth another attempt.
_NETWORK_ERRORS = (
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,  # connect/read timeouts, refused connections (NewConnectionError)
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
_RETRY_STATUS = {500, 502, 503, 504}
_RETRY_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                "ConditionalRequestConflict"}


class BucketNotFound(ValueError):
    """A store opened to read (a dataset source) names a bucket that does not exist; it is
    never created."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, S3Error):
        return exc.code in _RETRY_CODES or exc.response.status in _RETRY_STATUS
    if isinstance(exc, ServerError):
        return exc.status_code in _RETRY_STATUS
    if isinstance(exc, InvalidResponseError):
        # e.g. an HTML 502/503 page from a proxy in front of the store; the status has no public accessor
        return getattr(exc, "_code", None) in _RETRY_STATUS
    return False


def _split_endpoint(endpoint: str, what: str) -> tuple[str, bool]:
    """``http(s)://host[:port]`` → (``host[:port]``, secure), as minio takes them."""
    parts = urlsplit(endpoint)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/")
            or parts.query or parts.username or parts.password):
        raise ValueError(f"{what} must be http(s)://HOST[:PORT] without path or credentials, "
                         f"got {endpoint!r}")
    return parts.netloc, parts.scheme == "https"


class S3Store(ArtifactStore):
    """Objects ``PREFIX/KEY`` in one bucket of an S3-protocol server (MinIO, AWS S3, moto).

    Every operation retries connection failures and 5xx answers with capped exponential backoff for
    ``retry_s`` seconds, then raises StoreUnavailable. Every object carries its sha256 as metadata.
    """

    def __init__(self, *, endpoint: str, access_key: str, secret_key: str, bucket: str, prefix: str = "",
                 region: str = "us-east-1", public_endpoint: str | None = None,
                 part_size: int = 16 << 20, timeout_s: float = 15.0, retry_s: float = 90.0,
                 create_bucket: bool = True) -> None:
        host, secure = _split_endpoint(endpoint, "the S3 endpoint")
        check_bucket_name(bucket)
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be within [{MIN_PART_SIZE}, {MAX_PART_SIZE}] bytes, "
                             f"got {part_size}")
        if timeout_s <= 0 or retry_s < 0:
            raise ValueError(f"need timeout_s > 0 and retry_s >= 0, got {timeout_s} and {retry_s}")
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = check_folder(prefix)
        self.part_size = part_size
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.create_bucket = create_bucket
        # minio's default pool waits 5 minutes per request and retries 5 times on its own; one request
        # here fails fast and the store's retry loop decides, with a budget the operator configured.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
            maxsize=32,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure,
                             region=region, http_client=self._http)
        self._presigner = self._client
        if public_endpoint:
            # with the region given, presigning is local arithmetic: this client never sends a request
            public_host, public_secure = _split_endpoint(public_endpoint, "the public S3 endpoint")
            self._presigner = Minio(public_host, access_key=access_key, secret_key=secret_key,
                                    secure=public_secure, region=region, http_client=self._http)
        self._retry(f"create bucket {bucket}", self._ensure_bucket)

    @classmethod
    def from_settings(cls, bucket: str, prefix: str, settings: Settings, *,
                      create_bucket: bool = True) -> S3Store:
        secret = settings.s3_secret_key.get_secret_value()
        if not settings.s3_access_key or not secret:
            raise ValueError("an s3:// store needs HURRICANE_S3_ACCESS_KEY and HURRICANE_S3_SECRET_KEY")
        return cls(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=secret,
                   bucket=bucket, prefix=prefix, region=settings.s3_region,
                   public_endpoint=settings.s3_public_endpoint,
                   part_size=settings.s3_part_size_mb << 20, timeout_s=settings.s3_timeout_s,
                   retry_s=settings.store_retry_s, create_bucket=create_bucket)

    # -- plumbing ------------------------------------------------------------------------------------

    def _ensure_bucket(self, attempt: int) -> None:
        try:
            if self._client.bucket_exists(self.bucket):
                return
        except S3Error as e:
            if e.code == "AccessDenied":
                # keys scoped to a prefix (a job pod's) may not look at the bucket itself; it
                # is whoever scoped them who made it (the chart's MinIO hook, the service)
                log.debug("s3 store %s: may not check bucket %s; assuming it exists",
                          self.endpoint, self.bucket)
                return
            raise
        if not self.create_bucket:
            raise BucketNotFound(f"no bucket {self.bucket!r}")
        try:
            self._client.make_bucket(self.bucket)
        except S3Error as e:
            if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise  # another process creating it at the same moment is fine; the rest is not

    def _retry(self, what: str, op: Callable[[int], T], *, key: str | None = None) -> T:
        """``op(attempt)`` until it succeeds, fails for good, or ``retry_s`` has passed."""
        start = time.monotonic()
        delay = _BACKOFF_FIRST_S
        for attempt in itertools.count():
            try:
                return op(attempt)
            except S3Error as e:
                if key is not None and e.code == "NoSuchKey":
                    raise ArtifactNotFound(key) from None
                if not _transient(e):
                    raise
                err: Exception = e
            except Exception as e:
                if not _transient(e):
                    raise
                err = e
            elapsed = time.monotonic() - start
            if elapsed + delay > self.retry_s:
                raise StoreUnavailable(
                    f"object store {self.endpoint} unavailable: {what} failed for {elapsed:.1f}s "
                    f"({attempt + 1} attempts, store_retry_s={self.retry_s:g}); last error: "
                    f"{type(err).__name__}: {err}") from err
            log.warning("object store %s: %s failed (%s: %s); attempt %d, retrying in %.1fs",
                        self.endpoint, what, type(err).__name__, err, attempt + 1, delay)
            time.sleep(delay)
            delay = min(2 * delay, _BACKOFF_MAX_S)
        raise AssertionError("unreachable")  # itertools.count() never ends

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _dir(self, prefix: str) -> str:
        """The object-name prefix of a folder: '' or ends with '/'."""
        folder = "/".join(p for p in (self.prefix, check_folder(prefix)) if p)
        return f"{folder}/" if folder else ""

    def _stored_sha256(self, name: str) -> str | None:
        try:
            st = self._client.stat_object(self.bucket, name)
        except S3Error as e:
            if e.code == "NoSuchKey":
                return None
            raise
        return st.metadata.get(_META_SHA) if st.metadata else None

    # -- writes --------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        name = self._name(key)
        digest = hashlib.sha256(data).hexdigest()

        def put(attempt: int) -> bool:
            if not if_absent:
                self._client.put_object(self.bucket, name, io.BytesIO(data), len(data),
                                        metadata={"sha256": digest}, part_size=self.part_size,
                                        num_parallel_uploads=1)
                return True
            headers: dict[str, str | list[str] | tuple[str]] = {
                "Content-Type": "application/octet-stream", _META_SHA: digest, "If-None-Match": "*"}
            try:
                # minio 7.2's put_object cannot send If-None-Match; _execute is the request primitive
                # under it (signs the request, maps error answers to S3Error).
                self._client._execute("PUT", self.bucket, name, body=data, headers=headers)
            except S3Error as e:
                if e.code != "PreconditionFailed":
                    raise
                if attempt == 0:
                    return False
                # An earlier attempt may have written the object and lost the answer: it is ours if it
                # holds our bytes (a writer of identical bytes could have won instead: same outcome).
                return self._stored_sha256(name) == digest
            return True

        return self._retry(f"put {key}", put)

    def put_file(self, key: str, path: str | Path) -> None:
        name = self._name(key)
        with open(path, "rb") as f:
            digest = sha256_stream(f)  # first pass: the hash goes into the object's metadata
            size = os.fstat(f.fileno()).st_size

            def put(attempt: int) -> None:
                f.seek(0)
                # a file larger than part_size goes up as a multipart upload; sequential parts keep
                # memory at about two parts (parallel uploads would hold one per thread on top)
                self._client.put_object(self.bucket, name, f, size, metadata={"sha256": digest},
                                        part_size=self.part_size, num_parallel_uploads=1)

            self._retry(f"put {key} from {path}", put)

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._retry(f"delete {key}", lambda attempt: self._client.remove_object(self.bucket, name))

    def delete_prefix(self, prefix: str) -> int:
        if not check_folder(prefix):
            raise ValueError("delete_prefix needs a folder; refusing to delete the whole store")
        names = self._objects(prefix, recursive=True)
        for i in range(0, len(names), _DELETE_BATCH):
            batch = names[i:i + _DELETE_BATCH]

            def remove(attempt: int, batch: list[str] = batch) -> None:
                errors = list(self._client.remove_objects(self.bucket, [DeleteObject(n) for n in batch]))
                if errors:
                    raise OSError(f"could not delete {len(errors)} objects under {prefix!r} in "
                                  f"{self.url}: {errors[0].code}: {errors[0].message} ({errors[0].name})")

            self._retry(f"delete {len(batch)} objects under {prefix}", remove)
        return len(names)

    # -- reads ---------------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        name = self._name(key)

        def get(attempt: int) -> bytes:
            resp = self._client.get_object(self.bucket, name)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._retry(f"get {key}", get, key=key)

    def get_file(self, key: str, path: str | Path) -> None:
        name = self._name(key)
        dest = Path(path)
        with temp_beside(dest) as tmp:

            def get(attempt: int) -> None:
                resp = self._client.get_object(self.bucket, name)
                try:
                    with tmp.open("wb") as f:  # truncates what a failed attempt left
                        for chunk in resp.stream(CHUNK):
                            f.write(chunk)
                finally:
                    resp.close()
                    resp.release_conn()

            self._retry(f"get {key} to {path}", get, key=key)
            os.replace(tmp, dest)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ArtifactNotFound:
            return False
        return True

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)

        def stat(attempt: int) -> ObjectInfo:
            st = self._client.stat_object(self.bucket, name)
            return ObjectInfo(key=key, size=st.size or 0,
                              sha256=st.metadata.get(_META_SHA) if st.metadata else None,
                              modified=st.last_modified.timestamp() if st.last_modified else 0.0)

        return self._retry(f"stat {key}", stat, key=key)

    def _objects(self, prefix: str, *, recursive: bool) -> builtins.list[str]:
        """Full object names under a folder; with ``recursive=False`` sub-folders too, ending in '/'."""
        start = self._dir(prefix)

        def names(attempt: int) -> builtins.list[str]:
            return [o.object_name or ""
                    for o in self._client.list_objects(self.bucket, prefix=start, recursive=recursive)]

        return self._retry(f"list {prefix or '/'}", names)

    def list(self, prefix: str) -> list[str]:
        skip = len(self._dir(""))
        return sorted(n[skip:] for n in self._objects(prefix, recursive=True)
                      if not n.rsplit("/", 1)[-1].startswith("."))

    def children(self, prefix: str) -> builtins.list[str]:
        skip = len(self._dir(prefix))
        names = {n[skip:].rstrip("/") for n in self._objects(prefix, recursive=False)}
        return sorted(n for n in names if n and not n.startswith("."))

    def presign_get(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        name = self._name(key)
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise ValueError(f"expires_s must be within [1, {_MAX_PRESIGN_S}] (S3's limit), got {expires_s}")
        headers: dict[str, str | list[str] | tuple[str]] | None = None
        if filename is not None:
            if not _FILENAME.match(filename):
                raise ValueError(f"invalid download filename {filename!r}: use [A-Za-z0-9._=+-]")
            headers = {"response-content-disposition": f'attachment; filename="{filename}"'}
        return self._presigner.presigned_get_object(self.bucket, name, expires=timedelta(seconds=expires_s),
                                                    response_headers=headers)

    # -- names ---------------------------------------------------------------------------------------

    def uri(self, key: str = "") -> str:
        return f"{self.url}/{check_key(key)}" if key else self.url

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint!r})"

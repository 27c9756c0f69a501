"""Opening an artifact store by URL: a directory, ``file://DIR`` or ``s3://BUCKET[/PREFIX]``."""

from __future__ import annotations

from hurricane.storage.store import ArtifactStore, LocalStore


def open_store(url: str, *, create: bool = True) -> ArtifactStore:
    """``s3://bucket[/prefix]`` → S3Store (endpoint and credentials from the settings; a
    missing bucket is created only with ``create``); ``file:///dir`` or a plain path →
    LocalStore."""
    if url.startswith("s3://"):
        from hurricane.settings import get_settings
        from hurricane.storage.s3store import S3Store  # lazy: local-only processes never load minio

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"an s3:// store URL names a bucket: s3://BUCKET[/PREFIX], got {url!r}")
        return S3Store.from_settings(bucket, prefix, get_settings(), create_bucket=create)
    if url.startswith("file://"):
        return LocalStore(url.removeprefix("file://"))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unsupported artifact store {scheme!r}; allowed: s3://BUCKET[/PREFIX], "
                         "file:// or a path")
    return LocalStore(url)

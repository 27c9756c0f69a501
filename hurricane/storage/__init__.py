"""The artifact store: one interface over a directory or an S3/MinIO bucket, opened by URL.

store    the interface, keys and the local-directory store
s3store  the S3/MinIO store (minio SDK: multipart puts, conditional writes, retries)
stores   open a store by URL: a directory, file://DIR or s3://BUCKET[/PREFIX]
torchio  torch objects (checkpoints) in a store, apart so that the API never loads torch

_PUBLIC names, by home module, what other packages use: the library imports them from
their modules (what the import contracts read); ``from hurricane.storage import NAME`` loads
a name's module on first use, so the package itself stays light.
"""

from __future__ import annotations

from hurricane import surface

_PUBLIC = {
    "store": ("ArtifactNotFound", "ArtifactStore", "check_folder", "check_key", "LocalStore",
              "ObjectInfo", "search_key", "sha256_stream", "StoreUnavailable"),
    "stores": ("open_store",),
    "torchio": ("load_torch", "save_torch"),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
__getattr__ = surface(__name__, _PUBLIC)

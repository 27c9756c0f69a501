"""Artifact store: one interface over a local directory or an S3/MinIO bucket; keys are '/'-paths."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_KEY = re.compile(r"^[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*$")
CHUNK = 1 << 20  # streaming copies and hashes move this much at a time


class ArtifactNotFound(KeyError):
    def __str__(self) -> str:
        return f"artifact not found: {self.args[0]}"


class StoreUnavailable(ConnectionError):
    """The object store did not answer for longer than the store's retry budget."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None  # None for an S3 object written by another tool
    modified: float  # epoch seconds


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise ValueError(f"invalid artifact key {key!r}: use '/'-separated names of [A-Za-z0-9._=+-]")
    return key


def check_folder(prefix: str) -> str:
    """A folder argument of list/children/delete_prefix: '' (the whole store) or a key, '/' ignored."""
    folder = prefix.rstrip("/")
    return check_key(folder) if prefix.strip("/") else ""


def search_key(search_id: str, *parts: str) -> str:
    """``searches/<search-id>/<step>/...``: where every artifact of a search lives."""
    return check_key("/".join(("searches", search_id, *parts)))


def sha256_stream(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


@contextmanager
def temp_beside(dest: Path) -> Iterator[Path]:
    """A temporary file next to ``dest`` (same file system: rename is atomic), removed unless renamed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


class ArtifactStore(ABC):
    """Bytes under keys. Writes are atomic: a reader sees the old object or the new, never half.

    Names starting with '.' are hidden from ``list`` and ``children`` (a LocalStore's temporary files).
    """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write ``data``; with ``if_absent`` only if ``key`` does not exist yet, atomically (of
        concurrent writers exactly one wins). False: the key existed and nothing was written."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def put_file(self, key: str, path: str | Path) -> None:
        """Stream a local file into ``key`` (never the whole file in memory)."""

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> None:
        """Stream ``key`` into a local file, atomically (temporary file renamed into place)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder), recursively, sorted."""

    @abstractmethod
    def children(self, prefix: str) -> builtins.list[str]:
        """Names directly under ``prefix`` (a folder): files and sub-folders, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove everything under ``prefix`` (a folder, never the whole store); how many objects."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """Where a person finds ``key`` (a path or URL)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """A URL that reopens this store in another process (``open_store``)."""

    def presign_get(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        """A URL anyone can download ``key`` from for ``expires_s`` seconds, or None when the store
        has no such URLs (the API then serves the file itself)."""
        check_key(key)
        return None

    def put_json(self, key: str, obj: Any, *, if_absent: bool = False) -> bool:
        data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
        return self.put_bytes(key, data, if_absent=if_absent)

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))



class LocalStore(ArtifactStore):
    """A directory; each write goes to a temporary file that is renamed (or linked) into place."""

    _SHA_CACHE_SIZE = 1024

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._sha_cache: dict[tuple[str, int, int], str] = {}
        self._sha_lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _folder(self, prefix: str) -> Path:
        folder = check_folder(prefix)
        return self.root / folder if folder else self.root

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> bool:
        dest = self.path(key)
        with temp_beside(dest) as tmp:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if not if_absent:
                os.replace(tmp, dest)
                return True
            try:
                # link() never replaces an existing name: the file system decides who was first
                os.link(tmp, dest)
            except FileExistsError:
                return False
            return True

    def put_file(self, key: str, path: str | Path) -> None:
        dest = self.path(key)
        with open(path, "rb") as src, temp_beside(dest) as tmp:
            with tmp.open("wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(key) from None

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as f:
            return f.read()

    def get_file(self, key: str, path: str | Path) -> None:
        dest = Path(path)
        with self._open(key) as src, temp_beside(dest) as tmp:
            with tmp.open("wb") as f:
                shutil.copyfileobj(src, f, CHUNK)
            os.replace(tmp, dest)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def stat(self, key: str) -> ObjectInfo:
        p = self.path(key)
        try:
            st = p.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ArtifactNotFound(key) from None
        if not p.is_file():
            raise ArtifactNotFound(key)
        cache_key = (str(p), st.st_size, st.st_mtime_ns)
        digest = self._sha_cache.get(cache_key)
        if digest is None:
            with self._open(key) as f:
                digest = sha256_stream(f)
            with self._sha_lock:
                while len(self._sha_cache) >= self._SHA_CACHE_SIZE:
                    self._sha_cache.pop(next(iter(self._sha_cache)))
                self._sha_cache[cache_key] = digest
        return ObjectInfo(key=key, size=st.st_size, sha256=digest, modified=st.st_mtime)

    def list(self, prefix: str) -> list[str]:
        base = self._folder(prefix)
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def children(self, prefix: str) -> builtins.list[str]:
        base = self._folder(prefix)
        if not base.is_dir():
            return []
        # a folder holding no file is not a folder of the store (an object store has no empty folders)
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".") and (
            p.is_file() or any(q.is_file() and not q.name.startswith(".") for q in p.rglob("*"))))

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = check_folder(prefix)
        if not folder:
            raise ValueError("delete_prefix needs a folder; refusing to delete the whole store")
        base = self.root / folder
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base, ignore_errors=True)
        return count

    def uri(self, key: str = "") -> str:
        return str(self.path(key)) if key else str(self.root)

    @property
    def url(self) -> str:
        return f"file://{self.root}"

"""Artifact store: one interface (local directory now, S3/MinIO later); keys are '/'-paths."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

_KEY = re.compile(r"^[A-Za-z0-9._=+-]+(/[A-Za-z0-9._=+-]+)*$")


class ArtifactNotFound(KeyError):
    def __str__(self) -> str:
        return f"artifact not found: {self.args[0]}"


def check_key(key: str) -> str:
    if not _KEY.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise ValueError(f"invalid artifact key {key!r}: use '/'-separated names of [A-Za-z0-9._=+-]")
    return key


def search_key(search_id: str, *parts: str) -> str:
    """``searches/<search-id>/<step>/...``: where every artifact of a search lives."""
    return check_key("/".join(("searches", search_id, *parts)))


class ArtifactStore(ABC):
    """Bytes under keys. Writes are atomic: a reader sees the old object or the new, never half."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """Where a person finds ``key`` (a path or URL)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """A URL that reopens this store in another process (``open_store``)."""

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: str | Path) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def put_torch(self, key: str, obj: Any) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        self.put_bytes(key, buf.getvalue())

    def get_torch(self, key: str) -> Any:
        import torch

        return torch.load(io.BytesIO(self.get_bytes(key)), map_location="cpu", weights_only=False)


class LocalStore(ArtifactStore):
    """A directory; each write goes to a temporary file that is renamed into place."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: str | Path) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def uri(self, key: str = "") -> str:
        return str(self.path(key)) if key else str(self.root)

    @property
    def url(self) -> str:
        return f"file://{self.root}"


def open_store(url: str) -> ArtifactStore:
    """``file:///dir`` or a plain path → LocalStore (s3:// arrives with the MinIO backend)."""
    if url.startswith("file://"):
        return LocalStore(url.removeprefix("file://"))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(f"unsupported artifact store {scheme!r}; allowed: file:// or a path")
    return LocalStore(url)

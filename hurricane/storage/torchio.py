"""Torch objects in the artifact store (kept out of hurricane.storage.store: the API never imports
torch, not even lazily)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from hurricane.storage.store import ArtifactStore, check_key


def save_torch(store: ArtifactStore, key: str, obj: Any) -> None:
    """torch.save into a temporary file, then a streamed upload (never one big bytes object)."""
    check_key(key)
    with tempfile.TemporaryDirectory(prefix="hurricane-") as d:
        tmp = Path(d) / "obj.pt"
        torch.save(obj, tmp)
        store.put_file(key, tmp)


def load_torch(store: ArtifactStore, key: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="hurricane-") as d:
        tmp = Path(d) / "obj.pt"
        store.get_file(key, tmp)
        return torch.load(tmp, map_location="cpu", weights_only=True)

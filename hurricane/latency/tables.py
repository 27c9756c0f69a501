"""Imported latency tables in the store: each belongs to the user who imported it, or is shared
by an admin; a search reads its owner's table of a device name, else the shared one."""

from __future__ import annotations

from typing import Any, Literal

from hurricane.storage.store import ArtifactNotFound, ArtifactStore

Scope = Literal["own", "shared"]
SHARED_PREFIX = "tables/shared"
USERS_PREFIX = "tables/users"


def table_prefix(owner: str | None, name: str) -> str:
    """Where a table lives: ``tables/users/<owner>/<name>`` or, shared, ``tables/shared/<name>``."""
    return f"{SHARED_PREFIX}/{name}" if owner is None else f"{USERS_PREFIX}/{owner}/{name}"


def table_key(owner: str | None, name: str, file: str = "table.json") -> str:
    return f"{table_prefix(owner, name)}/{file}"


def _legacy(store: ArtifactStore, owner: str, name: str) -> str | None:
    """A table imported before tables had owners (``devices/<name>/``) counts as its
    importer's own."""
    key = f"devices/{name}/table.json"
    try:
        by = store.get_json(f"devices/{name}/imported.json").get("by")
    except (ArtifactNotFound, ValueError, AttributeError):
        return None
    return key if by == owner and store.exists(key) else None


def resolve(store: ArtifactStore, owner: str, name: str) -> tuple[str, Scope] | None:
    """The key of the table a search of ``owner`` reads for device ``name`` and whose it is:
    the owner's own, else the shared one; None when neither exists."""
    own = table_key(owner, name)
    if store.exists(own):
        return own, "own"
    legacy = _legacy(store, owner, name)
    if legacy is not None:
        return legacy, "own"
    shared = table_key(None, name)
    if store.exists(shared):
        return shared, "shared"
    return None


def visible(store: ArtifactStore, owner: str) -> dict[str, Scope]:
    """Device names with a table ``owner``'s searches can read, and whose each is."""
    out: dict[str, Scope] = dict.fromkeys(store.children(SHARED_PREFIX), "shared")
    for name in store.children("devices"):
        if _legacy(store, owner, name):
            out[name] = "own"
    for name in store.children(f"{USERS_PREFIX}/{owner}"):
        out[name] = "own"
    return out


def write(store: ArtifactStore, owner: str | None, name: str, table: dict[str, Any],
          csv: str, record: dict[str, Any]) -> None:
    """Stores a table for ``owner`` (None: shared), replacing the one there."""
    store.put_json(table_key(owner, name), table)
    store.put_bytes(table_key(owner, name, "table.csv"), csv.encode())
    store.put_json(table_key(owner, name, "imported.json"), record)


def remove(store: ArtifactStore, owner: str | None, name: str) -> bool:
    """Deletes a table; False when there was none."""
    if owner is not None and _legacy(store, owner, name):
        store.delete_prefix(f"devices/{name}")
        return True
    if not store.exists(table_key(owner, name)):
        return False
    store.delete_prefix(table_prefix(owner, name))
    return True

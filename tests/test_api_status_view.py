"""The status view while the object store hangs: a read whose view is older than
status_cache_s gets the last view at once and a refresh runs in the background (one per
search); the refresh's result replaces it; a search purged elsewhere is forgotten (404 next).
The store is frozen on an event, as a SIGSTOPped S3 server hangs its clients."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from hurricane.api.service import SearchService
from hurricane.runs.records import SearchNotFound, meta_key, submit, write_unit_state
from hurricane.settings import Settings
from hurricane.storage.store import LocalStore

EVENT_S = 600.0


class FreezableStore(LocalStore):
    """A directory store whose reads hang while frozen (until thawed)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.thawed = threading.Event()
        self.thawed.set()
        self.blocked = threading.Event()  # a read hung on the frozen store

    def _wait(self) -> None:
        if not self.thawed.is_set():
            self.blocked.set()
            if not self.thawed.wait(EVENT_S):
                raise RuntimeError("never thawed")

    def get_bytes(self, key: str) -> bytes:
        self._wait()
        return super().get_bytes(key)

    def exists(self, key: str) -> bool:
        self._wait()
        return super().exists(key)

    def list(self, prefix: str) -> list[str]:
        self._wait()
        return super().list(prefix)

    def children(self, prefix: str) -> list[str]:
        self._wait()
        return super().children(prefix)


class NoProgress:
    def hgetall(self, key: str) -> dict[str, Any]:
        return {}


def test_a_frozen_store_delays_the_view_never_the_read(tmp_path, tiny_spec) -> None:  # type: ignore[no-untyped-def]
    store = FreezableStore(tmp_path / "store")
    plain = LocalStore(tmp_path / "store")  # the same directory, never frozen
    sid = submit(tiny_spec, store, "v", owner="alice")
    svc = SearchService(Settings(store=str(store.root), status_cache_s=0.5), store,
                        None, NoProgress())  # type: ignore[arg-type]
    first = svc.view(sid)
    assert first["state"] == "queued" and svc.meta(sid)["owner"] == "alice"
    store.thawed.clear()  # S3 stops answering
    write_unit_state(plain, sid, "profile", "cpu", "running", generation=0)
    svc._cache[sid].at -= 10  # older than status_cache_s, as time would make it
    assert svc.view(sid) is first  # answered from the last view, without a store read
    assert svc.view_json(sid) == svc.view_json(sid)
    assert svc.meta(sid)["owner"] == "alice"  # the creation record is kept
    assert store.blocked.wait(EVENT_S)  # the one refresh hangs on the store meanwhile
    refresh = svc._refreshing[sid]
    assert list(svc._refreshing) == [sid] and not refresh.done()
    store.thawed.set()
    refresh.result(EVENT_S)
    assert svc.view(sid)["state"] == "running" and not svc._refreshing

    plain.delete(meta_key(sid))  # purged by another API process
    svc._cache[sid].at -= 10
    store.blocked.clear()
    store.thawed.clear()
    assert svc.view(sid)["state"] == "running"  # the last view, once more
    assert store.blocked.wait(EVENT_S)
    gone = svc._refreshing[sid]
    store.thawed.set()
    with pytest.raises(SearchNotFound):
        gone.result(EVENT_S)
    with pytest.raises(SearchNotFound):
        svc.view(sid)  # forgotten: read at once, and gone

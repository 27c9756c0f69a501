"""Local artifact store: keys, atomic writes, listing."""

from __future__ import annotations

import pytest

from hurricane.store import ArtifactNotFound, LocalStore, open_store, search_key


def test_put_get_list_delete(store: LocalStore) -> None:
    k = search_key("s1", "stage1", "train.json")
    assert k == "searches/s1/stage1/train.json"
    store.put_json(k, {"a": 1})
    store.put_bytes(search_key("s1", "x.bin"), b"\x00\x01")
    assert store.get_json(k) == {"a": 1} and store.exists(k)
    assert store.list("searches/s1") == ["searches/s1/stage1/train.json", "searches/s1/x.bin"]
    store.delete(k)
    assert not store.exists(k)
    with pytest.raises(ArtifactNotFound, match="artifact not found"):
        store.get_bytes(k)


def test_rejects_path_escapes(store: LocalStore) -> None:
    for bad in ["../x", "a/../../b", "/abs", "a//b", "a b"]:
        with pytest.raises(ValueError, match="invalid artifact key"):
            store.put_bytes(bad, b"")


def test_overwrite_is_atomic_and_leaves_no_temp(store: LocalStore) -> None:
    for i in range(5):
        store.put_bytes("k/v", str(i).encode())
    assert store.get_bytes("k/v") == b"4"
    assert [p.name for p in (store.root / "k").iterdir()] == ["v"]


def test_open_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = open_store(f"file://{tmp_path}/a")
    assert isinstance(s, LocalStore) and open_store(s.url).root == s.root
    with pytest.raises(ValueError, match="unsupported artifact store 'gs'"):
        open_store("gs://bucket")

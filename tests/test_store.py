"""Artifact store contract: one suite run against LocalStore and against S3Store on a real S3-protocol
server (moto_server in a subprocess), plus the S3 store's retries when that server hangs or dies."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import urllib3

from hurricane.settings import get_settings
from hurricane.storage.s3store import S3Store
from hurricane.storage.store import (
    ArtifactNotFound,
    ArtifactStore,
    LocalStore,
    StoreUnavailable,
    search_key,
)
from hurricane.storage.stores import open_store
from hurricane.storage.torchio import load_torch, save_torch
from tests.servers import MotoServer

MiB = 1 << 20
PART = 5 * MiB  # the smallest part S3 accepts, so that a small file makes a multipart upload
SECRET = "s3cr3t-not-for-logs"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as srv:
        yield srv


def make_s3(endpoint: str, **overrides: Any) -> S3Store:
    """A store in a bucket of its own, under a prefix (every key path crosses the prefix logic)."""
    kw: dict[str, Any] = {
        "endpoint": endpoint, "access_key": "testing", "secret_key": SECRET,
        "bucket": f"t-{uuid.uuid4().hex[:16]}", "prefix": "runs/x", "region": "us-east-1",
        "part_size": PART, "timeout_s": 5.0, "retry_s": 10.0, **overrides,
    }
    return S3Store(**kw)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return make_s3(request.getfixturevalue("moto").endpoint)


@pytest.fixture
def s3(moto: MotoServer) -> S3Store:
    return make_s3(moto.endpoint)


def temps(store: ArtifactStore) -> list[str]:
    """Temporary files a LocalStore left behind (none may remain after any operation)."""
    if not isinstance(store, LocalStore):
        return []
    return [p.name for p in store.root.rglob("*") if p.name.endswith(".tmp")]


def random_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(0, size, MiB):
            chunk = os.urandom(min(MiB, size - f.tell()))
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


# -- the contract ----------------------------------------------------------------------------------------

def test_put_get_list_delete(store: ArtifactStore) -> None:
    k = search_key("s1", "stage1", "train.json")
    assert k == "searches/s1/stage1/train.json"
    assert store.put_json(k, {"a": 1}) is True
    assert store.put_bytes(search_key("s1", "x.bin"), b"\x00\x01") is True
    assert store.get_json(k) == {"a": 1} and store.exists(k)
    assert store.get_bytes("searches/s1/x.bin") == b"\x00\x01"
    assert store.list("searches/s1") == ["searches/s1/stage1/train.json", "searches/s1/x.bin"]
    store.delete(k)
    store.delete(k)  # a missing key is fine
    assert not store.exists(k) and store.list("searches/s1") == ["searches/s1/x.bin"]
    with pytest.raises(ArtifactNotFound, match="artifact not found"):
        store.get_bytes(k)
    assert store.put_bytes("empty", b"") and store.get_bytes("empty") == b""


def test_rejects_path_escapes(store: ArtifactStore, tmp_path: Path) -> None:
    for bad in ["../x", "a/../../b", "/abs", "a//b", "a b", "", "a/./b"]:
        with pytest.raises(ValueError, match="invalid artifact key"):
            store.put_bytes(bad, b"")
        with pytest.raises(ValueError, match="invalid artifact key"):
            store.get_bytes(bad)
        with pytest.raises(ValueError, match="invalid artifact key"):
            store.put_file(bad, __file__)
    for bad in ["../x", "a/..", "/abs"]:
        for op in (store.list, store.children, store.delete_prefix):
            with pytest.raises(ValueError, match="invalid artifact key"):
                op(bad)
    with pytest.raises(ValueError, match="refusing to delete the whole store"):
        store.delete_prefix("")


def test_overwrite_is_atomic_and_leaves_no_temp(store: ArtifactStore) -> None:
    for i in range(5):
        store.put_bytes("k/v", str(i).encode())
    assert store.get_bytes("k/v") == b"4"
    assert store.children("k") == ["v"] and not temps(store)
    # a reader racing a writer sees one whole version or the other, never a mix or a partial object
    versions = [bytes([c]) * (256 * 1024) for c in b"AB"]
    store.put_bytes("k/big", versions[0])
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(store.get_bytes("k/big"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            store.put_bytes("k/big", versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= set(versions) and not temps(store)


def test_if_absent_writes_once(store: ArtifactStore) -> None:
    assert store.put_bytes("once/k", b"first", if_absent=True) is True
    assert store.put_bytes("once/k", b"second", if_absent=True) is False
    assert store.get_bytes("once/k") == b"first"
    assert store.put_json("once/j", {"v": 1}, if_absent=True) is True
    assert store.put_json("once/j", {"v": 2}, if_absent=True) is False
    assert store.get_json("once/j") == {"v": 1}
    store.put_bytes("once/k", b"forced")  # a plain put still overwrites
    assert store.get_bytes("once/k") == b"forced" and not temps(store)


def test_if_absent_race_has_one_winner(store: ArtifactStore) -> None:
    n = 12
    for round_ in range(3):
        key = f"race/{round_}"
        start = threading.Barrier(n)
        won: list[int] = []

        def write(i: int, key: str = key, start: threading.Barrier = start, won: list[int] = won) -> None:
            start.wait()
            if store.put_bytes(key, f"writer {i}".encode() * 100, if_absent=True):
                won.append(i)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, f"round {round_}: winners {won}"
        assert store.get_bytes(key) == f"writer {won[0]}".encode() * 100
    assert not temps(store)


def test_list_and_children_are_folder_scoped(store: ArtifactStore) -> None:
    for k in ["a/b/x", "a/b/c/d", "a/bc/y", "a/z", "top", "a/b/.hidden"]:
        store.put_bytes(k, k.encode())
    assert store.list("a/b") == store.list("a/b/") == ["a/b/c/d", "a/b/x"]
    assert store.list("") == ["a/b/c/d", "a/b/x", "a/bc/y", "a/z", "top"]
    assert store.list("a/b/x") == [] and store.list("nope") == []
    assert store.children("") == ["a", "top"]
    assert store.children("a") == store.children("a/") == ["b", "bc", "z"]
    assert store.children("a/b") == ["c", "x"]
    assert store.children("a/b/x") == [] and store.children("nope") == []
    store.delete("a/b/c/d")  # a folder without objects is gone, as in an object store
    assert store.children("a/b") == ["x"]
    assert store.get_bytes("a/b/.hidden") == b"a/b/.hidden"  # hidden from listings, not from reads


def test_delete_prefix(store: ArtifactStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hurricane.storage.s3store._DELETE_BATCH", 2)  # several DeleteObjects requests
    keys = ["d/1", "d/2", "d/e/3", "d/e/f/4", "d/e/f/5"]
    for k in [*keys, "dx/keep", "keep"]:
        store.put_bytes(k, b"x")
    assert store.delete_prefix("d") == len(keys)
    assert store.list("") == ["dx/keep", "keep"] and store.children("") == ["dx", "keep"]
    assert store.delete_prefix("d") == 0 and store.delete_prefix("keep") == 0
    assert store.exists("keep")


def test_stat(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(3000)
    before = time.time()
    store.put_bytes("s/k", data)
    info = store.stat("s/k")
    assert (info.key, info.size, info.sha256) == ("s/k", 3000, hashlib.sha256(data).hexdigest())
    assert before - 2 <= info.modified <= time.time() + 2  # S3 dates have one-second resolution
    store.put_bytes("s/k", b"other")
    assert store.stat("s/k").sha256 == hashlib.sha256(b"other").hexdigest()  # no stale cache
    src = tmp_path / "f.bin"
    digest = random_file(src, 100_000)
    store.put_file("s/f", src)
    assert store.stat("s/f").sha256 == digest and store.stat("s/f").size == 100_000
    for missing in ["s/nope", "s"]:
        with pytest.raises(ArtifactNotFound):
            store.stat(missing)
        assert not store.exists(missing)


def test_file_round_trip_is_multipart(store: ArtifactStore, tmp_path: Path) -> None:
    size = 2 * PART + MiB + 123
    src = tmp_path / "big.bin"
    digest = random_file(src, size)
    store.put_file("files/big.bin", src)
    info = store.stat("files/big.bin")
    assert (info.size, info.sha256) == (size, digest)
    if isinstance(store, S3Store):
        etag = store._client.stat_object(store.bucket, "runs/x/files/big.bin").etag
        assert etag is not None and etag.endswith("-3"), f"not a 3-part upload: ETag {etag}"
    dest = tmp_path / "out" / "copy.bin"
    store.get_file("files/big.bin", dest)
    assert dest.stat().st_size == size and random_digest(dest) == digest
    with pytest.raises(ArtifactNotFound):
        store.get_file("files/nope", tmp_path / "out" / "nope.bin")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["copy.bin"]
    assert not temps(store)


def random_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def test_put_file_and_get_file_stream(store: ArtifactStore, tmp_path: Path) -> None:
    size = 6 * PART
    src = tmp_path / "big.bin"
    random_file(src, size)
    tracemalloc.start()
    try:
        store.put_file("stream/big", src)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.get_file("stream/big", tmp_path / "back.bin")
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # never the file: minio holds the part it sends, and the previous one while it reads the next
    assert put_peak < 2 * PART + MiB < size / 2, f"put_file peaked at {put_peak / MiB:.1f} MiB"
    assert get_peak < 4 * MiB, f"get_file peaked at {get_peak / MiB:.1f} MiB"
    assert store.stat("stream/big").size == size


def test_presign_get(store: ArtifactStore) -> None:
    data = os.urandom(10_000)
    store.put_bytes("dl/model.onnx", data)
    url = store.presign_get("dl/model.onnx", 600, filename="m.onnx")
    if isinstance(store, LocalStore):
        assert url is None  # the API serves local files itself
        return
    assert isinstance(store, S3Store)
    assert url is not None and url.startswith(store.endpoint) and "X-Amz-Signature=" in url
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200 and r.content == data
    assert 'filename="m.onnx"' in r.headers.get("content-disposition", "")
    with pytest.raises(ValueError, match="expires_s"):
        store.presign_get("dl/model.onnx", 0)
    with pytest.raises(ValueError, match="invalid download filename"):
        store.presign_get("dl/model.onnx", 60, filename='a"b')


def test_torch_round_trip(store: ArtifactStore) -> None:
    import torch

    obj: dict[str, Any] = {"w": torch.arange(12.0).reshape(3, 4), "step": 7}
    save_torch(store, "ckpt/model.pt", obj)
    back = load_torch(store, "ckpt/model.pt")
    assert back["step"] == 7 and torch.equal(back["w"], obj["w"])
    with pytest.raises(ArtifactNotFound):
        load_torch(store, "ckpt/nope.pt")
    assert not temps(store)


# -- addresses ------------------------------------------------------------------------------------------

def test_open_store_file(tmp_path: Path) -> None:
    s = open_store(f"file://{tmp_path}/a")
    assert isinstance(s, LocalStore) and open_store(s.url).root == s.root  # type: ignore[attr-defined]
    assert isinstance(open_store(str(tmp_path / "b")), LocalStore)
    with pytest.raises(ValueError, match=r"unsupported artifact store 'gs'.*s3://"):
        open_store("gs://bucket")


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_open_store_s3(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    for name, value in {"S3_ENDPOINT": moto.endpoint, "S3_ACCESS_KEY": "testing",
                        "S3_SECRET_KEY": SECRET, "S3_PUBLIC_ENDPOINT": "https://files.example.org",
                        "S3_PART_SIZE_MB": "5", "S3_TIMEOUT_S": "3", "STORE_RETRY_S": "4"}.items():
        monkeypatch.setenv(f"HURRICANE_{name}", value)
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s = open_store(f"s3://{bucket}/pre/fix")
    assert isinstance(s, S3Store) and s.url == f"s3://{bucket}/pre/fix"
    assert (s.part_size, s.timeout_s, s.retry_s) == (PART, 3.0, 4.0)
    assert s.uri("a/b") == f"s3://{bucket}/pre/fix/a/b" and s.uri() == s.url
    s.put_json("a/b", {"x": 1})
    again = open_store(s.url)
    assert again.get_json("a/b") == {"x": 1}
    whole = open_store(f"s3://{bucket}")
    assert whole.url == f"s3://{bucket}" and whole.list("") == ["pre/fix/a/b"]
    url = s.presign_get("a/b", 60)
    assert url is not None and url.startswith(f"https://files.example.org/{bucket}/pre/fix/a/b?")
    with pytest.raises(ValueError, match="names a bucket"):
        open_store("s3:///x")
    monkeypatch.setenv("HURRICANE_S3_ACCESS_KEY", "")
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="HURRICANE_S3_ACCESS_KEY"):
        open_store(f"s3://{bucket}")


def test_prefixes_isolate_stores(moto: MotoServer) -> None:
    a = make_s3(moto.endpoint, prefix="p")
    b = make_s3(moto.endpoint, bucket=a.bucket, prefix="pp")
    a.put_bytes("k", b"a")
    b.put_bytes("k", b"b")
    assert a.list("") == ["k"] and a.children("") == ["k"] and a.get_bytes("k") == b"a"
    assert b.delete_prefix("k") == 0 and a.exists("k")
    make_s3(moto.endpoint, bucket=a.bucket)  # the bucket exists already: fine
    with pytest.raises(ValueError, match="endpoint"):
        make_s3("127.0.0.1:9000")
    with pytest.raises(ValueError, match="part_size"):
        make_s3(moto.endpoint, part_size=MiB)


# -- resilience -----------------------------------------------------------------------------------------

def test_put_survives_a_paused_server(moto: MotoServer, caplog: pytest.LogCaptureFixture) -> None:
    s = make_s3(moto.endpoint, timeout_s=1.0, retry_s=20.0)
    caplog.set_level(logging.WARNING, logger="hurricane.store")
    resume = threading.Timer(3.0, moto.resume)
    moto.pause()
    try:
        resume.start()
        t0 = time.monotonic()
        # the first attempts reach the frozen server and time out; the server handles them once it
        # runs again, so a later attempt finds the object there: it is ours (same sha256)
        assert s.put_bytes("hang/k", b"payload", if_absent=True) is True
        assert time.monotonic() - t0 >= 2.5
    finally:
        resume.join()
        moto.resume()
    assert s.get_bytes("hang/k") == b"payload"
    assert s.put_bytes("hang/k", b"payload", if_absent=True) is False  # a fresh call is not a retry
    retries = [r for r in caplog.records if r.name == "hurricane.store" and r.levelno == logging.WARNING]
    assert retries and moto.endpoint in retries[0].getMessage()
    assert SECRET not in caplog.text and "testing" not in caplog.text


def test_lost_answer_of_a_conditional_put(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real = s3._client._execute
    faults: list[str] = []  # what the next PUT suffers: "answer" lost after it ran, "request" lost

    def flaky(method: str, *args: Any, **kwargs: Any) -> Any:
        fault = faults.pop() if method == "PUT" and faults else None
        if fault == "request":
            raise urllib3.exceptions.ConnectTimeoutError("connect timed out")
        resp = real(method, *args, **kwargs)
        if fault == "answer":
            raise urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")  # type: ignore[arg-type]
        return resp

    monkeypatch.setattr(s3._client, "_execute", flaky)
    faults.append("answer")  # written, answer lost; the retry meets our own object
    assert s3.put_bytes("lost/k", b"mine", if_absent=True) is True and not faults
    faults.append("request")  # never arrived; the retry meets someone else's object
    assert s3.put_bytes("lost/k", b"not mine", if_absent=True) is False and not faults
    assert s3.get_bytes("lost/k") == b"mine"


def test_unavailable_after_retry_budget(tmp_path: Path) -> None:
    with MotoServer() as srv:
        s = make_s3(srv.endpoint, timeout_s=1.0, retry_s=2.0)
        s.put_bytes("k", b"v")
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match=rf"{srv.endpoint}.*store_retry_s=2") as err:
        s.get_bytes("k")
    # the budget ends the retries: well before the default budget (90 s) would, however
    # loaded the machine (each attempt meets a refused connection at once)
    assert time.monotonic() - t0 < 45
    assert isinstance(err.value, ConnectionError)
    with pytest.raises(StoreUnavailable):
        s.put_file("k", __file__)
    with pytest.raises(StoreUnavailable):
        make_s3(srv.endpoint, retry_s=0.5)  # creating the bucket retries too

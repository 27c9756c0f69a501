"""Packed datasets: pack/inspect, streamed splits (order, ranks, workers, cache), object
storage against a real moto_server, a search from s3://, exact resume of a killed run, and
corrupt or missing data failing with a message that names what was looked for."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hurricane.cli import app
from hurricane.data.batching import IMAGENET_MEAN, IMAGENET_STD
from hurricane.data.datasets import DatasetError, load_data
from hurricane.data.packed import SPLITS, ShardCache, load_index, pack, parse_size
from hurricane.data.stream import StreamSplit
from hurricane.settings import get_settings
from hurricane.spec import DatasetSpec, SearchSpec
from tests.conftest import tiny_spec_dict
from tests.servers import MotoServer, wait_for

ROOT = Path(__file__).resolve().parents[1]
PER_CLASS = 24


def make_image_dir(root: Path, *, classes: int = 4, per_class: int = PER_CLASS) -> Path:
    """Class folders of small digit images (PNG and JPEG, different sizes)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(d.target == c)[:per_class]):
            g = (d.images[i] / 16 * 255).astype(np.uint8)
            im = Image.fromarray(np.stack([g, 255 - g, g], -1)).resize((20 + k % 5, 18 + k % 3))
            im.save(root / f"class{c}" / f"{k:03d}.{'png' if k % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_dir(tmp_path_factory.mktemp("images") / "set")


@pytest.fixture(scope="module")
def packed_dir(image_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("packed") / "set"
    pack(image_dir, str(dest), shard_bytes=1 << 16, val_fraction=0.2, test_fraction=0.25, seed=1)
    return dest


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as srv:
        yield srv


@pytest.fixture
def s3_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"HURRICANE_S3_ENDPOINT": moto.endpoint, "HURRICANE_S3_ACCESS_KEY": "testing",
           "HURRICANE_S3_SECRET_KEY": "testing-secret", "HURRICANE_STORE_RETRY_S": "5",
           "HURRICANE_DATA_CACHE_DIR": str(tmp_path / "cache")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _bucket() -> str:
    return f"data-{uuid.uuid4().hex[:12]}"


def test_pack_fixes_disjoint_splits_and_checksums(image_dir: Path, packed_dir: Path) -> None:
    idx = load_index(str(packed_dir))
    n = {s: idx.indices(s).size for s in SPLITS}
    assert sum(n.values()) == 4 * PER_CLASS and n["test"] == 4 * 6 and n["val"] == 4 * 4
    assert idx.classes == ("class0", "class1", "class2", "class3")
    assert len(idx.shards) > 3 and {s.split for s in idx.shards} == set(SPLITS)
    for k, sh in enumerate(idx.shards):  # a shard holds one split's images only
        assert set(idx.split[idx.shard == k].tolist()) == {SPLITS.index(sh.split)}
        assert hashlib.sha256((packed_dir / sh.name).read_bytes()).hexdigest() == sh.sha256
    # the tar members are the original files, byte for byte (WebDataset layout: KEY.EXT, KEY.cls)
    import tarfile

    with tarfile.open(packed_dir / idx.shards[0].name) as tar:
        names = tar.getnames()
    assert names[0].endswith((".png", ".jpg")) and names[1].endswith(".cls")
    originals = sorted(p.read_bytes() for p in image_dir.rglob("*.*"))
    reader = StreamSplit(idx, np.arange(idx.label.size), input_size=16, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, augment=False, flip=False).reader
    assert sorted(reader.read(i) for i in range(idx.label.size)) == originals


def test_cli_pack_and_inspect(image_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "p"
    r = CliRunner().invoke(app, ["dataset", "pack", str(image_dir), str(dest), "--shard-size",
                                 "100kB"])
    assert r.exit_code == 0, r.output
    assert "4 classes, 64 train / 12 val / 20 test images" in r.output
    r = CliRunner().invoke(app, ["dataset", "inspect", str(dest)])
    assert r.exit_code == 0 and "class3" in r.output and "train-00000.tar" in r.output
    info = json.loads(CliRunner().invoke(app, ["dataset", "inspect", str(dest), "--json"]).output)
    assert info["per_class"]["test"]["class0"] == 5 and info["packed"]["shard_bytes"] == 100_000
    again = CliRunner().invoke(app, ["dataset", "pack", str(image_dir), str(dest)])
    assert again.exit_code == 2 and "already holds a packed dataset" in again.output
    bad = CliRunner().invoke(app, ["dataset", "pack", str(image_dir), str(tmp_path / "q"),
                                   "--shard-size", "lots"])
    assert bad.exit_code == 2 and "--shard-size" in bad.output and "256MB" in bad.output
    missing = CliRunner().invoke(app, ["dataset", "inspect", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such directory" in missing.output
    empty = CliRunner().invoke(app, ["dataset", "inspect", str(tmp_path)])
    assert empty.exit_code == 2 and "has no index.json" in empty.output


def test_run_refuses_a_missing_packed_source_before_any_step(tmp_path: Path) -> None:
    import yaml

    spec = tiny_spec_dict(dataset={"name": "packed", "path": str(tmp_path / "gone")})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--store", str(tmp_path / "r"),
                                 "--executor", "inline"])
    assert r.exit_code == 2 and "gone: no such directory" in r.output
    assert not (tmp_path / "r" / "searches").exists()  # nothing was started


def test_sizes() -> None:
    assert parse_size("256MB") == 256_000_000 and parse_size("1GiB") == 1 << 30
    assert parse_size("500k") == 500_000 and parse_size(123) == 123
    with pytest.raises(ValueError, match="not a size"):
        parse_size("1 parsec")


def _split(packed: Path, **kw: object) -> StreamSplit:
    idx = load_index(str(packed))
    opts: dict[str, object] = {"input_size": 16, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                               "augment": True, "flip": True, **kw}
    return StreamSplit(idx, idx.indices("train"), **opts)  # type: ignore[arg-type]


def test_stream_order_is_a_pure_function_of_seed_and_epoch(packed_dir: Path) -> None:
    a, b = _split(packed_dir, window=2), _split(packed_dir, window=2)
    o = a.order(5, 0)
    assert sorted(o.tolist()) == sorted(a.rows.tolist())  # every image once per epoch
    assert np.array_equal(o, b.order(5, 0)) and not np.array_equal(o, a.order(5, 1))
    # windows: the first half-epoch draws from the shards of one window only
    shards = a.index.shard[o]
    first = set(shards[:np.flatnonzero(np.isin(shards, shards[0]))[0] + 1].tolist())
    assert len(first) <= 2
    x0, y0 = a.train_batch(3, 8, seed=5)
    x1, y1 = b.train_batch(3, 8, seed=5)
    assert torch.equal(x0, x1) and torch.equal(y0, y1) and x0.shape == (8, 3, 16, 16)
    # ranks take their rows of the global batch; together they are the global batch
    parts = [a.train_batch(3, 8, seed=5, shard=(r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), x0)
    assert torch.equal(torch.cat([p[1] for p in parts]), y0)


def test_loader_workers_give_the_same_batches(packed_dir: Path) -> None:
    inline = _split(packed_dir)
    workers = _split(packed_dir, workers=2)
    it = workers.train_batches(8, seed=1, start=4)
    for step in range(4, 12):  # crosses an epoch (56 images, 7 steps of 8)
        x, y = next(it)
        ex, ey = inline.train_batch(step, 8, seed=1)
        assert torch.equal(x, ex) and torch.equal(y, ey), step
    it.close()  # type: ignore[attr-defined]
    ev = [b for b in workers.eval_batches(16)]
    assert sum(len(y) for _, y in ev) == len(inline) and len(ev) == 4
    assert [torch.equal(a[0], b[0]) for a, b in zip(ev, inline.eval_batches(16), strict=True)] == [True] * 4


def test_a_packed_spec_loads_fixed_splits(packed_dir: Path) -> None:
    spec = DatasetSpec(name="packed", path=str(packed_dir), val_fraction=0.4)
    data = load_data(spec, input_size=16, seed=0, num_classes=4)
    assert (len(data.train), len(data.val), len(data.test)) == (56, 16, 24)  # not 0.4
    tv = data.trainval()
    assert len(tv) == 72 and set(tv.rows.tolist()) == set(data.train.rows.tolist()) | set(  # type: ignore[union-attr]
        data.val.rows.tolist())  # type: ignore[union-attr]
    assert data.info is not None and data.info["samples"] == {"train": 56, "val": 16, "test": 24}
    with pytest.raises(DatasetError, match="num_classes is 10 but dataset 'packed'"):
        load_data(spec, input_size=16, seed=0, num_classes=10)


def test_spec_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"dataset 'packed' needs 'path' \(a directory or s3://"):
        DatasetSpec(name="packed")
    with pytest.raises(ValueError, match=r"gs:// is not a source for dataset 'packed'; allowed: "
                                         r"a directory or s3://bucket/prefix"):
        DatasetSpec(name="packed", path="gs://b/x")
    with pytest.raises(ValueError, match=r"s3:// is not a source for dataset 'imagefolder'.*pack"):
        DatasetSpec(name="imagefolder", path="s3://b/x")
    with pytest.raises(ValueError, match="names no bucket"):
        DatasetSpec(name="packed", path="s3:///x")


def test_missing_and_corrupt_local_data_fail_clearly(packed_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset.path .*nope: no such directory"):
        load_index(str(tmp_path / "nope"))
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(packed_dir, broken)
    idx = load_index(str(broken))
    name = idx.shards[1].name
    raw = bytearray((broken / name).read_bytes())
    raw[700] ^= 0xFF
    (broken / name).write_bytes(bytes(raw))
    split = StreamSplit(idx, np.arange(idx.label.size), input_size=16, mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, augment=False, flip=False)
    with pytest.raises(DatasetError, match=rf"shard {name} of .*broken is corrupt: sha256"):
        list(split.eval_batches(8))


def test_s3_cache_downloads_once_verifies_and_stays_bounded(packed_dir: Path, s3_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    from hurricane.storage.stores import open_store

    url = f"s3://{_bucket()}/sets/digits"
    store = open_store(url)
    for f in sorted(packed_dir.iterdir()):
        store.put_file(f.name, f)
    idx = load_index(url)
    biggest = max(s.bytes for s in idx.shards)
    cache = ShardCache(idx, cache_dir=tmp_path / "c", max_bytes=2 * biggest)
    for k in range(len(idx.shards)):
        p = cache.path(k)
        assert p.read_bytes() == (packed_dir / idx.shards[k].name).read_bytes()
        assert cache.cached_bytes() <= 2 * biggest  # the cache, not the dataset, bounds disk
    assert cache.downloads == len(idx.shards)
    again = ShardCache(idx, cache_dir=tmp_path / "c", max_bytes=2 * biggest)
    again.path(len(idx.shards) - 1)  # still cached: another process of the node reuses it
    assert again.downloads == 0
    # a corrupt upload: the download is refused with the shard's name, nothing is cached
    name = idx.shards[0].name
    raw = bytearray((packed_dir / name).read_bytes())
    raw[-600] ^= 0x01
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    store.put_file(name, bad)
    fresh = ShardCache(idx, cache_dir=tmp_path / "d", max_bytes=1 << 30)
    with pytest.raises(DatasetError, match=rf"shard {name} of {url} is corrupt"):
        fresh.path(0)
    assert not list((tmp_path / "d").glob("*.tar"))
    store.delete(idx.shards[1].name)
    with pytest.raises(DatasetError, match=rf"shard {idx.shards[1].name} of {url} is missing"):
        fresh.path(1)
    with pytest.raises(DatasetError, match=r"has no index.json: not a packed dataset"):
        load_index(url.rsplit("/", 1)[0] + "/nothing")
    missing = _bucket()
    with pytest.raises(DatasetError, match=rf"no bucket '{missing}'"):  # and never created
        load_index(f"s3://{missing}/nothing")
    with pytest.raises(DatasetError, match=rf"no bucket '{missing}'"):
        load_index(f"s3://{missing}/nothing")


def test_tiny_search_from_s3(image_dir: Path, s3_env: dict[str, str], tmp_path: Path) -> None:
    from hurricane.runs.executor import InlineExecutor
    from hurricane.runs.pipeline import run_search
    from hurricane.storage.store import LocalStore, search_key

    url = f"s3://{_bucket()}/sets/digits"
    r = CliRunner().invoke(app, ["dataset", "pack", str(image_dir), url, "--shard-size", "64KiB"])
    assert r.exit_code == 0, r.output
    spec = SearchSpec.model_validate(tiny_spec_dict(
        dataset={"name": "packed", "path": url, "num_workers": 1},
        backbone={**tiny_spec_dict()["backbone"], "num_classes": 4}))
    store = LocalStore(tmp_path / "runs")
    sid, report = run_search(spec, store, InlineExecutor(), "s3data")
    d = report["devices"]["cpu"]
    assert 0.0 <= d["top1"] <= 1.0 and d["meets_budget"]
    info = store.get_json(search_key(sid, "dataset.json"))
    assert info["source"] == url and info["samples"] == {"train": 64, "val": 12, "test": 20}
    assert len(info["shards"]) == len(load_index(url).shards)
    assert list(Path(s3_env["HURRICANE_DATA_CACHE_DIR"]).glob("*.tar"))  # read via the cache


def _batches_log(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_killed_run_resumes_mid_epoch_with_identical_batches(image_dir: Path,
                                                               s3_env: dict[str, str],
                                                               tmp_path: Path) -> None:
    url = f"s3://{_bucket()}/sets/digits"
    pack(image_dir, url, shard_bytes=1 << 16, val_fraction=0.2, test_fraction=0.25, seed=1)
    env = {**os.environ, **s3_env, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(name: str, *, kill_at: int | None = None) -> list[str]:
        log = tmp_path / f"{name}.log"
        cmd = [sys.executable, str(ROOT / "tests" / "packed_train_worker.py"), url,
               str(tmp_path / name), str(log), *([] if kill_at is None else [str(kill_at - 1)])]
        with subprocess.Popen(cmd, env=env, cwd=ROOT) as p:
            if kill_at is not None:  # the worker holds at that batch until killed
                wait_for(lambda: len(_batches_log(log)) >= kill_at or p.poll() is not None, 600,
                         f"{kill_at} training steps")
                p.send_signal(signal.SIGKILL)
            assert p.wait(timeout=300) in ((-signal.SIGKILL,) if kill_at is not None else (0,))
        return _batches_log(log)

    straight = run("straight")  # start=0, 16 batches (56 images: 7 steps of 8 an epoch), weights
    assert len(straight) == 18 and straight[0] == "start=0" and straight[-1].startswith("weights=")
    first = run("resumed", kill_at=1 + 9)  # SIGKILL in the second epoch, before step 9
    assert len(first) == 10 and first == straight[:len(first)]
    rest = run("resumed")
    start = int(rest[0].split("=")[1])  # the newest checkpoint the restarted process found
    assert start == 6 and start % 7 != 0  # mid-epoch: 8 steps done, checkpoints every 3
    assert rest[1:] == straight[1 + start:]  # the same batches and, at the end, the same weights


def test_the_api_refuses_an_s3_source_that_is_not_a_packed_set(image_dir: Path, s3_env: dict[str, str],
                                                              service_env: dict[str, object],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from hurricane.api.app import create_app
    from hurricane.storage.stores import open_store

    bucket = _bucket()
    monkeypatch.setenv("HURRICANE_DATA_BUCKETS", bucket)  # the one bucket datasets may name
    get_settings.cache_clear()  # service_env's and s3_env's variables together
    tokens: dict[str, str] = service_env["tokens"]  # type: ignore[assignment]
    api = TestClient(create_app(), headers={"Authorization": f"Bearer {tokens['alice']}"})
    url = f"s3://{bucket}/sets/digits"

    def post(**over: object) -> tuple[int, str]:
        r = api.post("/v1/searches", json=tiny_spec_dict(**over))
        return r.status_code, r.text

    code, text = post(dataset={"name": "packed", "path": url})  # an allowed bucket, not there
    assert code == 422 and "dataset.path" in text and f"no bucket '{bucket}'" in text
    with pytest.raises(ValueError, match="no bucket"):  # and it was not created
        open_store(f"s3://{bucket}", create=False)
    code, text = post(dataset={"name": "packed", "path": f"s3://{_bucket()}/sets/digits"})
    assert code == 422 and "dataset.path" in text and f"packed sets in s3://{bucket}" in text
    pack(image_dir, f"s3://{bucket}/sets/other", shard_bytes=1 << 16)  # the bucket exists now
    code, text = post(dataset={"name": "packed", "path": url})
    assert code == 422 and "dataset.path" in text and "has no index.json" in text
    pack(image_dir, url, shard_bytes=1 << 16)
    code, text = post(dataset={"name": "packed", "path": url})  # 4 classes, backbone says 10
    assert code == 422 and "backbone.num_classes" in text and "has 4 classes" in text
    code, text = post(dataset={"name": "packed", "path": url},
                      backbone={**tiny_spec_dict()["backbone"], "num_classes": 4})
    assert code == 201, text


def test_two_ranks_stream_their_rows_and_train_like_one(packed_dir: Path, tmp_path: Path) -> None:
    """torchrun, 2 processes (gloo), each with 2 loader workers reading its half of every
    global batch from the packed set: the same weights as one process (float64)."""
    from tests.test_distributed import rel_diff, run_worker

    spec = tiny_spec_dict(backbone={**tiny_spec_dict()["backbone"], "num_classes": 4,
                                    "dropout": 0.0},
                          dataset={"name": "packed", "path": str(packed_dir), "num_workers": 2},
                          supernet={"batch_size": 16, "lr": 0.05, "threads": 1},
                          training={"sync_bn": True})
    one = run_worker(tmp_path, spec, 1, 10, "float64")  # 10 steps of 16: crosses an epoch (56)
    two = run_worker(tmp_path, spec, 2, 10, "float64")
    assert two["world_size"] == 2
    assert max(abs(a - b) for a, b in zip(one["history"], two["history"], strict=True)) < 1e-9
    assert rel_diff(one["model"], two["model"]) < 1e-8


def test_a_shard_evicted_by_another_process_is_fetched_again(packed_dir: Path,
                                                            s3_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    from hurricane.data.packed import SampleReader
    from hurricane.storage.stores import open_store

    url = f"s3://{_bucket()}/sets/digits"
    store = open_store(url)
    for f in sorted(packed_dir.iterdir()):
        store.put_file(f.name, f)
    idx = load_index(url)
    one = max(s.bytes for s in idx.shards)
    a = SampleReader(idx, cache_dir=tmp_path / "c", max_bytes=one)
    b = ShardCache(idx, cache_dir=tmp_path / "c", max_bytes=one)  # another process of the node
    first = int(np.flatnonzero(idx.shard == 0)[0])
    expect = a.read(first)
    a.close()
    b.path(1)
    b.path(2)  # evicts shard 0
    assert not (tmp_path / "c" / f"{idx.shards[0].sha256}.tar").exists()
    assert a.read(first) == expect and a.cache.downloads == 2
    a.close()
    # evicted between path() and open(): the reader asks again
    real = a.cache.path
    calls = []

    def racing(k: int) -> Path:
        p = real(k)
        if not calls:
            p.unlink()
        calls.append(k)
        return p

    a.cache.path = racing  # type: ignore[method-assign]
    assert a.read(int(np.flatnonzero(idx.shard == 3)[0]))
    assert len(calls) == 2


def test_a_streamed_split_pickles_for_spawned_loader_workers(packed_dir: Path) -> None:
    import functools
    import pickle

    from hurricane.data.stream import _train_item

    split = _split(packed_dir)
    x, y = split.train_batch(2, 8, seed=4)
    item = pickle.loads(pickle.dumps(functools.partial(_train_item, split, 8, 4, (0, 1))))
    x2, y2 = item(2)
    assert torch.equal(x, x2) and torch.equal(y, y2)

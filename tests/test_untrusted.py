"""Files a user or another process may have written are read without trusting them: a
checkpoint loads without pickle's code execution (torch.load weights_only), and a packed
set's index cannot name a shard outside its set (absolute paths, '..', URLs, odd names) or a
cache file outside the cache (its sha256)."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from hurricane.data.packed import INDEX, DatasetError, PackedIndex, Shard, ShardCache, load_index, pack, peek
from hurricane.nets.train import Checkpointer
from hurricane.storage.store import LocalStore
from hurricane.storage.torchio import load_torch, save_torch
from tests.test_packed import make_image_dir

MARKER = Path("/tmp/hurricane-untrusted-pickle-ran")  # what the payload would create


class _Payload:
    """Unpickling this runs ``open(MARKER, 'w')``: what a hostile checkpoint would do."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (open, (str(MARKER), "w"))


def test_a_pickled_payload_in_a_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    MARKER.unlink(missing_ok=True)
    store = LocalStore(tmp_path / "store")
    ckpt = Checkpointer(store, "searches/s/stage1/checkpoints")
    ckpt.save(10, {"step": 10, "model": {"w": torch.ones(2)}})
    # another writer of the store replaces the newest checkpoint with a crafted one
    buf = io.BytesIO()
    torch.save({"step": 20, "model": _Payload()}, buf)
    store.put_bytes(ckpt._key(20), buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        ckpt.latest()
    with pytest.raises(pickle.UnpicklingError):
        load_torch(store, ckpt._key(20))
    assert not MARKER.exists()
    assert torch.equal(ckpt.load(10)["model"]["w"], torch.ones(2))  # honest ones still load


def test_what_the_library_saves_loads_without_pickle(tmp_path: Path) -> None:
    """The shapes of every object the steps save (checkpoints with optimizer state, loss
    history tuples and monitor checks; supernet.pt; final.pt) round-trip with weights_only."""
    store = LocalStore(tmp_path / "store")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    objs = {
        "checkpoint.pt": {"step": 3, "model": net.state_dict(), "optimizer": opt.state_dict(),
                          "recent_losses": [0.5, 0.25], "history": [(1, 2.0), (2, 1.5)],
                          "pending_losses": [], "converged": False, "settled": True,
                          "monitor": {"checks": [{"step": 3, "scores": [0.1, 0.2],
                                                  "verdict": {"reliable": True, "srcc": 0.9}}]}},
        "supernet.pt": {"model": net.state_dict(), "space": {"choices": [["MB3_3", "SKIP"]]},
                        "sharing": "none"},
        "final.pt": {"arch": "MB3_3-SKIP", "backbone": {"name": "mobilenetv2", "width": 1.0},
                     "classes": ["a", "b"], "state_dict": net.state_dict()},
    }
    for key, obj in objs.items():
        save_torch(store, key, obj)
        back = load_torch(store, key)
        assert back.keys() == obj.keys(), key
    back = load_torch(store, "checkpoint.pt")
    restored = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    restored.load_state_dict(back["optimizer"])
    assert back["history"] == [(1, 2.0), (2, 1.5)] and back["monitor"] == objs["checkpoint.pt"]["monitor"]


# -- packed indexes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = make_image_dir(tmp_path_factory.mktemp("images") / "set", classes=2, per_class=12)
    dest = tmp_path_factory.mktemp("packed") / "set"
    pack(images, str(dest), shard_bytes=1 << 16, val_fraction=0.25, test_fraction=0.25, seed=0)
    return dest


def _tampered(packed: Path, tmp_path: Path, edit: Any) -> Path:
    d = tmp_path / "set"
    shutil.copytree(packed, d)
    meta = json.loads((d / INDEX).read_text())
    edit(meta)
    (d / INDEX).write_text(json.dumps(meta))
    return d


BAD_NAMES = ["../train-00000.tar", "/etc/passwd", "s3://other-bucket/train-00000.tar",
             "file:///etc/passwd", "https://example.com/train-00000.tar", "sub/train-00000.tar",
             "train-00000.tar/../../x", "..", "train-0.tar", "TRAIN-00000.tar", "train-00000.tar\n",
             "train-00000.tar\x00.png", "train-00000.zip", "val-00000.tar"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_an_index_naming_a_shard_outside_the_set_is_refused_before_any_read(
        packed: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def edit(meta: dict[str, Any]) -> None:
        first = next(s for s in meta["shards"] if s["split"] == "train")
        first["name"] = name

    d = _tampered(packed, tmp_path, edit)
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *a: Any, **kw: Any) -> Any:
        opened.append(str(self))
        return real_open(self, *a, **kw)

    monkeypatch.setattr(Path, "open", spy)
    for fn in (load_index, peek):
        with pytest.raises(DatasetError, match=r"shards\[\d+\]\.(name|split)"):
            fn(str(d))
    assert not [p for p in opened if p.endswith(".tar")]  # no shard was opened


@pytest.mark.parametrize("field,value,message", [
    ("sha256", "../../../../tmp/evil", r"\.sha256: expected 64 lowercase hex digits"),
    ("samples", -1, r"\.samples: -1 is not a count"),
    ("bytes", "1e9", r"\.bytes: '1e9' is not a count"),
    ("extra", "x", r"expected \{name, split, samples, bytes, sha256\}"),
])
def test_an_index_with_a_malformed_shard_entry_is_refused(packed: Path, tmp_path: Path, field: str,
                                                         value: Any, message: str) -> None:
    d = _tampered(packed, tmp_path, lambda meta: meta["shards"][0].__setitem__(field, value))
    with pytest.raises(DatasetError, match=message):
        load_index(str(d))


def test_duplicate_shards_and_out_of_range_samples_are_refused(packed: Path, tmp_path: Path) -> None:
    d = _tampered(packed, tmp_path, lambda m: m["shards"].append(copy.deepcopy(m["shards"][0])))
    with pytest.raises(DatasetError, match="is listed twice"):
        load_index(str(d))
    # a samples table pointing past the shard list (its checksum made to match)
    import numpy as np

    d2 = tmp_path / "two"
    shutil.copytree(packed, d2)
    arr = dict(np.load(d2 / "samples.npz"))
    arr["shard"] = arr["shard"].copy()
    arr["shard"][0] = 99
    buf = io.BytesIO()
    np.savez(buf, **arr)
    (d2 / "samples.npz").write_bytes(buf.getvalue())
    meta = json.loads((d2 / INDEX).read_text())
    meta["samples_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (d2 / INDEX).write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"column shard holds values outside \[0, "):
        load_index(str(d2))


def test_the_reader_refuses_an_index_it_did_not_load_itself(packed: Path, tmp_path: Path) -> None:
    idx = load_index(str(packed))
    assert ShardCache(idx, cache_dir=tmp_path / "cache").path(0).is_file()  # the honest one reads
    bad = PackedIndex(**{**idx.__dict__, "shards": (
        Shard("../../outside.tar", "train", 1, 1, "0" * 64), *idx.shards[1:])})
    with pytest.raises(DatasetError, match=r"shards\[0\]\.name: '../../outside.tar'"):
        ShardCache(bad, cache_dir=tmp_path / "cache")

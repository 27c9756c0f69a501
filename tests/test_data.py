"""Datasets: digits splits, CIFAR-10 python format, ImageFolder, step-indexed batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hurricane.data.datasets import DatasetError, load_data
from hurricane.spec import DatasetSpec


def test_digits_splits_are_disjoint_stratified_and_complete() -> None:
    d = load_data(DatasetSpec(name="digits"), input_size=32, seed=0, num_classes=10)
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.train.images.shape[1:] == (3, 32, 32)
    for split in (d.train, d.val, d.test):
        assert set(split.labels.tolist()) == set(range(10))
    # disjoint: no image of test appears in train
    tr = {t.numpy().tobytes() for t in d.train.images}
    assert not any(t.numpy().tobytes() in tr for t in d.test.images)
    with pytest.raises(DatasetError, match="num_classes is 3"):
        load_data(DatasetSpec(name="digits"), input_size=32, seed=0, num_classes=3)


def test_train_batches_depend_only_on_seed_and_step() -> None:
    d = load_data(DatasetSpec(name="digits"), input_size=32, seed=0)
    a = d.train.train_batch(17, 32, seed=5)
    b = d.train.train_batch(17, 32, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = d.train.train_batch(18, 32, seed=5)
    assert not torch.equal(a[0], c[0])
    # one epoch visits every training image once
    spe = d.train.steps_per_epoch(32)
    seen = torch.cat([d.train.train_batch(s, 32, seed=5)[1] for s in range(spe)])
    assert len(seen) == spe * 32
    stream = d.train.train_batches(32, seed=5, start=17)
    assert torch.equal(next(stream)[0], a[0])


def _fake_cifar(root: Path, n: int = 20) -> None:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(n)]
        with (root / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    with (root / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)


def test_cifar10_python_format(tmp_path: Path) -> None:
    _fake_cifar(tmp_path)
    d = load_data(DatasetSpec(name="cifar10", path=tmp_path), input_size=32, seed=0,
                  num_classes=10)
    assert len(d.test) == 20 and len(d.train) + len(d.val) == 100
    assert d.classes[3] == "c3"
    x, y = d.train.train_batch(0, 8, seed=0)
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    # a resized view for a bigger backbone input
    d64 = load_data(DatasetSpec(name="cifar10", path=tmp_path), input_size=64, seed=0)
    assert next(d64.test.eval_batches(4))[0].shape == (4, 3, 64, 64)


def test_cifar10_missing_files_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing .*data_batch_1"):
        load_data(DatasetSpec(name="cifar10", path=tmp_path), input_size=32, seed=0)


def test_imagefolder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog", "owl"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    d = load_data(DatasetSpec(name="imagefolder", path=tmp_path), input_size=32, seed=0,
                  num_classes=3)
    assert d.classes == ("cat", "dog", "owl") and len(d.test) == 6
    assert len(d.train) + len(d.val) == 18
    assert d.train.images.shape[1:] == (3, 32, 32) and d.train.images.dtype == torch.uint8
    with pytest.raises(DatasetError, match="num_classes is 5"):
        load_data(DatasetSpec(name="imagefolder", path=tmp_path), input_size=32, seed=0,
                  num_classes=5)
    with pytest.raises(DatasetError, match="no train/"):
        load_data(DatasetSpec(name="imagefolder", path=tmp_path / "test"), input_size=32, seed=0)


def test_cluttered_digits_are_generated_deterministically_from_disjoint_digits() -> None:
    from sklearn.datasets import load_digits

    from hurricane.data.datasets import clutter_images

    spec = DatasetSpec(name="cluttered-digits", copies=2)
    a = load_data(spec, input_size=32, seed=0, num_classes=10)
    b = load_data(spec, input_size=32, seed=0, num_classes=10)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert len(a.train) + len(a.val) + len(a.test) == 2 * 1797
    assert all(len(s) % 2 == 0 for s in (a.train, a.val, a.test))  # both renderings of a digit
    assert a.train.images.shape[1:] == (3, 32, 32) and a.train.images.dtype == torch.uint8
    assert a.train.flip is False and a.num_classes == 10
    d = load_digits()
    imgs, labels, src = clutter_images(d.images[:50] / 16.0, d.target[:50], copies=3, canvas=32)
    assert imgs.shape == (150, 32, 32) and (labels == d.target[:50][src]).all()
    again, _, _ = clutter_images(d.images[:50] / 16.0, d.target[:50], copies=3, canvas=32)
    assert np.array_equal(imgs, again)
    # the renderings differ: each copy puts the digit elsewhere among other clutter
    assert not np.array_equal(imgs[0], imgs[1])


def test_cluttered_digits_eval_copies_grow_validation_and_test_only() -> None:
    base = load_data(DatasetSpec(name="cluttered-digits", copies=2), input_size=32, seed=0,
                     num_classes=10)
    more = load_data(DatasetSpec(name="cluttered-digits", copies=2, eval_copies=5),
                     input_size=32, seed=0, num_classes=10)
    # the training images and their normalisation are those of `copies` alone
    assert torch.equal(more.train.images, base.train.images)
    assert torch.equal(more.train.mean, base.train.mean)
    for b, m in ((base.val, more.val), (base.test, more.test)):
        assert len(m) == len(b) // 2 * 5
        # the first renderings are kept, the extra ones are new images of the same digits
        assert torch.equal(m.images[:len(b)], b.images)
        assert torch.equal(m.labels[:len(b)], b.labels)
        assert torch.equal(torch.bincount(m.labels[len(b):]) * 2, torch.bincount(b.labels) * 3)
        assert not any(torch.equal(m.images[len(b)], b.images[i]) for i in range(len(b)))
    again = load_data(DatasetSpec(name="cluttered-digits", copies=2, eval_copies=5),
                      input_size=32, seed=0, num_classes=10)
    assert torch.equal(again.test.images, more.test.images)


@pytest.mark.parametrize(("fields", "needle"), [
    ({"name": "cluttered-digits", "copies": 4, "eval_copies": 3},
     "eval_copies 3 is below copies 4; allowed: 4 to 40"),
    ({"name": "digits", "eval_copies": 6}, "eval_copies applies to dataset 'cluttered-digits'"),
    ({"name": "cluttered-digits", "eval_copies": 41}, "eval_copies"),
])
def test_eval_copies_errors_name_the_field(fields, needle) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=needle):
        DatasetSpec.model_validate(fields)


def test_cluttered_digits_need_no_path() -> None:
    from hurricane.spec import SearchSpec

    spec = SearchSpec.model_validate({"dataset": {"name": "cluttered-digits"},
                                      "backbone": {"input_size": 32}})
    assert spec.backbone.num_classes == 10 and spec.dataset.copies == 3

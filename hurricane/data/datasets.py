"""Datasets (bundled digits, ImageFolder, CIFAR-10 python format) as step-indexed batch streams.

Training batches are a pure function of (seed, step): batch ``s`` of an epoch-wise shuffled
stream, augmented with a generator seeded by the step. So a run resumed at step ``k`` sees
exactly the batches a straight run would have seen, with no loader state to checkpoint.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hurricane.data.batching import IMAGENET_MEAN, IMAGENET_STD, Batch, augment, finish, rank_rows, square
from hurricane.data.batching import gen as _gen
from hurricane.data.packed import IMAGE_EXTS, DatasetError, load_index
from hurricane.data.stream import StreamSplit
from hurricane.spec import DatasetSpec

__all__ = ["AnySplit", "Batch", "Data", "DatasetError", "Split", "StreamSplit", "augment", "load_data"]


class Split:
    """Labelled images held in memory as an N×3×H×W tensor (uint8 or float in [0, 1])."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: bool,
        flip: bool,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()
        self.input_size = input_size
        self.mean = torch.tensor(mean, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
        self.augment = augment
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def _prepare(self, idx: torch.Tensor, gen: torch.Generator | None,
                 shard: tuple[int, int] = (0, 1)) -> Batch:
        rows = rank_rows(len(idx), shard)
        total, idx = len(idx), idx[rows]
        x = finish(self.images[idx], input_size=self.input_size, mean=self.mean, std=self.std,
                   g=gen if self.augment else None, flip=self.flip, part=(rows, total))
        return x, self.labels[idx]

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def train_batch(self, step: int, batch_size: int, *, seed: int,
                    shard: tuple[int, int] = (0, 1)) -> Batch:
        """Batch number ``step`` of the shuffled, augmented training stream; with ``shard =
        (rank, world)`` only that rank's equal share of it (the rest is never decoded)."""
        bs = min(batch_size, len(self))
        spe = self.steps_per_epoch(bs)
        epoch, i = divmod(step, spe)
        perm = torch.randperm(len(self), generator=_gen(seed, epoch))
        return self._prepare(perm[i * bs:(i + 1) * bs], _gen(seed, epoch, i + 1), shard)

    def train_batches(self, batch_size: int, *, seed: int, start: int = 0,
                      shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """``train_batch(start)``, ``train_batch(start + 1)``, …"""
        step = start
        while True:
            yield self.train_batch(step, batch_size, seed=seed, shard=shard)
            step += 1

    def eval_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """One ordered pass, no augmentation; at most ``limit`` batches."""
        n = len(self)
        for b, start in enumerate(range(0, n, batch_size)):
            if limit is not None and b >= limit:
                return
            yield self._prepare(torch.arange(start, min(n, start + batch_size)), None)

    def union(self, other: Split) -> Split:
        """This split's images followed by ``other``'s, with this one's settings."""
        return Split(torch.cat([self.images, other.images]),
                     torch.cat([self.labels, other.labels]), input_size=self.input_size,
                     mean=tuple(self.mean.flatten().tolist()),
                     std=tuple(self.std.flatten().tolist()), augment=self.augment, flip=self.flip)

    def subset(self, idx: np.ndarray | torch.Tensor) -> Split:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return Split(self.images[idx_t], self.labels[idx_t], input_size=self.input_size,
                     mean=tuple(self.mean.flatten().tolist()),
                     std=tuple(self.std.flatten().tolist()), augment=self.augment, flip=self.flip)


AnySplit = Split | StreamSplit  # what training and evaluation accept


@dataclass(frozen=True)
class Data:
    """train: supernet training; val: architecture scoring; test: held out for final accuracy."""

    train: Split | StreamSplit
    val: Split | StreamSplit
    test: Split | StreamSplit
    num_classes: int
    classes: tuple[str, ...]
    info: dict[str, object] | None = None  # a packed set's index summary (recorded per search)

    def trainval(self) -> Split | StreamSplit:
        return self.train.union(self.val)  # type: ignore[arg-type]


def _stratified(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: (kept, held out)."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        held.append(idx[: max(1, round(len(idx) * fraction))])
    out = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(len(labels)), out)
    return keep, out


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def _finish(
    images: torch.Tensor, labels: np.ndarray, test: tuple[torch.Tensor, np.ndarray] | None,
    spec: DatasetSpec, *, input_size: int, seed: int, flip: bool, classes: tuple[str, ...],
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
) -> Data:
    if test is None:
        keep, held = _stratified(labels, spec.test_fraction, seed)
        test = (images[held], labels[held])
        images, labels = images[keep], labels[keep]
    tr, va = _stratified(labels, spec.val_fraction, seed + 1)
    mean, std = stats or _channel_stats(images[tr])

    def mk(x: torch.Tensor, y: np.ndarray, aug: bool) -> Split:
        return Split(x, torch.as_tensor(y), input_size=input_size, mean=mean, std=std,
                     augment=aug and spec.augment, flip=flip)

    return Data(mk(images[tr], labels[tr], True), mk(images[va], labels[va], False),
                mk(test[0], test[1], False), len(classes), classes)


def load_digits_data(spec: DatasetSpec, *, input_size: int, seed: int) -> Data:
    """scikit-learn's bundled 8×8 digits (1,797 images), upsampled once to ``input_size``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).div_(16.0)[:, None].expand(-1, 3, -1, -1)
    x = F.interpolate(x.contiguous(), size=(input_size, input_size), mode="bilinear",
                      align_corners=False)
    return _finish(x, d.target.astype(np.int64), None, spec, input_size=input_size, seed=seed,
                   flip=False, classes=tuple(str(i) for i in range(10)))


CLUTTER_SEED = 20261125  # the generated set is the same on every machine and for every search


def _resized(img: np.ndarray, side: int) -> np.ndarray:
    t = torch.as_tensor(img, dtype=torch.float32)[None, None]
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()


def clutter_images(digits: np.ndarray, labels: np.ndarray, *, copies: int, canvas: int,
                   seed: int = CLUTTER_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluttered digits: each of ``copies`` renderings of every source digit (8×8 in [0, 1])
    draws it at a random scale (0.4-0.6 of the canvas) and place on a ``canvas``² field over
    2-4 fragments (random 2-4 pixel crops of other digits at 0.6-0.8 of the digit's scale,
    dimmed to 0.5-0.9), then adds Gaussian noise (σ 0.1) and clips to [0, 1]. Returns (images
    N×canvas×canvas uint8, labels, source index of each image): a pure function of the
    inputs and ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(digits)
    out = np.zeros((n * copies, canvas, canvas), np.float32)
    src = np.repeat(np.arange(n), copies)
    lo, hi = max(6, round(0.4 * canvas)), max(8, round(0.6 * canvas))
    for k, i in enumerate(src):
        field = out[k]
        side = int(rng.integers(lo, hi + 1))
        for _ in range(int(rng.integers(2, 5))):  # fragments of other digits first, under it
            j = int(rng.integers(n))
            fs = int(rng.integers(2, 5))
            r0, c0 = (int(v) for v in rng.integers(0, 8 - fs + 1, size=2))
            fside = max(2, round(fs * side * rng.uniform(0.6, 0.8) / 8))
            frag = _resized(digits[j, r0:r0 + fs, c0:c0 + fs], fside) * rng.uniform(0.5, 0.9)
            y, x = (int(v) for v in rng.integers(0, canvas - fside + 1, size=2))
            np.maximum(field[y:y + fside, x:x + fside], frag, out=field[y:y + fside, x:x + fside])
        glyph = _resized(digits[i], side)
        y, x = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
        np.maximum(field[y:y + side, x:x + side], glyph, out=field[y:y + side, x:x + side])
        field += rng.normal(0.0, 0.1, size=field.shape).astype(np.float32)
    images = (np.clip(out, 0.0, 1.0) * 255).round().astype(np.uint8)
    return images, labels[src].astype(np.int64), src


def load_cluttered_digits_data(spec: DatasetSpec, *, input_size: int, seed: int) -> Data:
    """The bundled digits made hard enough to rank architectures on a CPU: ``spec.copies``
    cluttered renderings of each of the 1,797 digits at ``input_size``² (see
    :func:`clutter_images`). Train, validation and test come from disjoint source digits, so
    no digit is seen in training and scored again in another rendering. ``spec.eval_copies``
    renders each validation and test digit that many times (the extra renderings drawn with
    their own seed), which steadies the scores without changing the training images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels, src = clutter_images(d.images / 16.0, d.target, copies=spec.copies,
                                         canvas=input_size)
    train_only = len(src)
    extra = (spec.eval_copies or spec.copies) - spec.copies
    if extra:  # drawn apart, so the training images are those of `copies` alone
        more = clutter_images(d.images / 16.0, d.target, copies=extra, canvas=input_size,
                              seed=CLUTTER_SEED + 1)
        images, labels, src = (np.concatenate(p) for p in zip((images, labels, src), more,
                                                              strict=True))
    keep, test_src = _stratified(d.target, spec.test_fraction, seed)
    tr_pos, va_pos = _stratified(d.target[keep], spec.val_fraction, seed + 1)
    x = torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous()

    def rows(sources: np.ndarray, upto: int | None = None) -> torch.Tensor:
        return torch.from_numpy(np.flatnonzero(np.isin(src[:upto], sources)))

    tr, va, te = rows(keep[tr_pos], train_only), rows(keep[va_pos]), rows(test_src)
    mean, std = _channel_stats(x[tr])

    def mk(idx: torch.Tensor, aug: bool) -> Split:
        return Split(x[idx], torch.as_tensor(labels)[idx], input_size=input_size, mean=mean,
                     std=std, augment=aug and spec.augment, flip=False)

    classes = tuple(str(c) for c in range(10))
    return Data(mk(tr, True), mk(va, False), mk(te, False), 10, classes)


def _unpickle(path: Path) -> dict[bytes, object]:
    with path.open("rb") as f:
        return pickle.load(f, encoding="bytes")


def load_cifar10_data(spec: DatasetSpec, *, input_size: int, seed: int) -> Data:
    """CIFAR-10's python format: data_batch_1..5 and test_batch in ``spec.path``."""
    root = Path(spec.path or ".")
    names = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in [*names, "test_batch"] if not (root / n).is_file()]
    if missing:
        raise DatasetError(
            f"dataset.path {root} is not a CIFAR-10 python directory: missing {missing} "
            "(expected the extracted cifar-10-batches-py folder)"
        )

    def read(files: list[str]) -> tuple[torch.Tensor, np.ndarray]:
        xs, ys = [], []
        for n in files:
            d = _unpickle(root / n)
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[b"labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)), np.concatenate(ys)

    meta = root / "batches.meta"
    classes = tuple(str(i) for i in range(10))
    if meta.is_file():
        raw = _unpickle(meta).get(b"label_names")
        if isinstance(raw, list):
            classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in raw)
    x, y = read(names)
    return _finish(x, y, read(["test_batch"]), spec, input_size=input_size, seed=seed,
                   flip=True, classes=classes,
                   stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))


def _read_folder(root: Path, classes: tuple[str, ...], input_size: int) -> tuple[torch.Tensor, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    for ci, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() not in IMAGE_EXTS:
                continue
            with Image.open(f) as raw:  # short side resized, centre crop
                xs.append(square(raw, input_size))
                ys.append(ci)
    if not xs:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    return torch.stack(xs), np.asarray(ys, dtype=np.int64)


def load_imagefolder_data(spec: DatasetSpec, *, input_size: int, seed: int) -> Data:
    """``path/train/<class>/*.jpg`` (and optional ``path/test`` or ``path/val``), decoded once.

    Images are resized (short side) and center-cropped to ``input_size`` and kept in memory
    as uint8, which suits the CPU-scale datasets this runner targets.
    """
    root = Path(spec.path or ".")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DatasetError(f"dataset.path {root} has no train/ directory of class folders")
    classes = tuple(sorted(p.name for p in train_dir.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DatasetError(f"{train_dir} needs at least 2 class folders, found {list(classes)}")
    x, y = _read_folder(train_dir, classes, input_size)
    test = None
    for name in ("test", "val"):
        d = root / name
        if d.is_dir():
            extra = sorted(p.name for p in d.iterdir() if p.is_dir() and p.name not in classes)
            if extra:
                raise DatasetError(f"{d} has classes not in train/: {extra}")
            test = _read_folder(d, tuple(c for c in classes if (d / c).is_dir()), input_size)
            # re-map indices of a test dir that lacks some classes
            present = [c for c in classes if (d / c).is_dir()]
            test = (test[0], np.asarray([classes.index(present[i]) for i in test[1]]))
            break
    return _finish(x, y, test, spec, input_size=input_size, seed=seed, flip=True, classes=classes,
                   stats=(IMAGENET_MEAN, IMAGENET_STD))


def load_packed_data(spec: DatasetSpec, *, input_size: int, seed: int) -> Data:
    """A packed set (``hurricane dataset pack``) in a directory, on a mounted volume or at
    ``s3://bucket/prefix``, streamed through the node's shard cache. Its train, validation
    and test splits are the index's (``spec.val_fraction``, ``test_fraction`` and ``seed``
    do not apply), so a search and its final test can never share an image."""
    index = load_index(str(spec.path))

    def mk(split: str, aug: bool) -> StreamSplit:
        return StreamSplit(index, index.indices(split), input_size=input_size,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=aug and spec.augment,
                           flip=True, workers=spec.num_workers, window=spec.shuffle_window)

    info = index.summary()
    info.pop("per_class")
    return Data(mk("train", True), mk("val", False), mk("test", False), len(index.classes),
                index.classes, info=info)


LOADERS = {
    "digits": load_digits_data,
    "cluttered-digits": load_cluttered_digits_data,
    "cifar10": load_cifar10_data,
    "imagefolder": load_imagefolder_data,
    "packed": load_packed_data,
}


def check_readable(spec: DatasetSpec) -> None:
    """Once an operator set data roots or buckets (``HURRICANE_DATA_ROOTS``/``_BUCKETS``), a
    job reads only inside them, symlinks resolved: CIFAR's pickles and image folders from
    elsewhere are never opened, whatever the stored spec says."""
    if spec.name in ("digits", "cluttered-digits") or spec.path is None:
        return
    from hurricane.data.sources import SourceNotAllowed, SourcePolicy
    from hurricane.settings import get_settings

    policy = SourcePolicy.from_settings(get_settings())
    try:
        if spec.path.startswith("s3://"):
            policy.check_bucket(spec.path)
        else:
            policy.check_local_read(spec.path)
    except SourceNotAllowed as err:
        raise DatasetError(str(err)) from None


def load_data(spec: DatasetSpec, *, input_size: int, seed: int, num_classes: int | None = None) -> Data:
    check_readable(spec)
    data = LOADERS[spec.name](spec, input_size=input_size, seed=seed)
    if num_classes is not None and data.num_classes != num_classes:
        raise DatasetError(
            f"backbone.num_classes is {num_classes} but dataset {spec.name!r} at "
            f"{spec.path} has {data.num_classes} classes"
        )
    return data

"""A split of a packed dataset, streamed: images are read from shards and decoded per batch.

The epoch's order is a pure function of (seed, epoch): the split's shards are shuffled, cut
into windows of ``window`` shards, and the images of each window shuffled among themselves.
So consecutive batches come from a few shards at a time (a node's cache holds a window, not
the dataset) and batch ``s`` is the same on every rank, in every process and after any
restart: rank ``r`` of ``w`` decodes only its rows of each global batch. With ``workers`` >
0, decoding and augmentation run in DataLoader worker processes, each making whole batches
by step number, so the result does not depend on how many workers there are.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import math
import signal
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from hurricane.data.batching import Batch, decode_square, finish, gen, rank_rows
from hurricane.data.packed import DatasetError, PackedIndex, SampleReader, is_remote

log = logging.getLogger("hurricane")
WINDOW_BYTES = 1 << 30  # a shuffle window spans about this many bytes of shards
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


class _Items(torch.utils.data.Dataset[Batch]):
    """Map-style view for the DataLoader: item ``i`` is a whole batch made by ``fn(i)``."""

    def __init__(self, fn: Callable[[int], Batch]) -> None:
        self.fn = fn

    def __getitem__(self, i: int) -> Batch:
        return self.fn(i)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    # a worker forked while training inherits its SIGTERM handler (stop after the step):
    # the worker itself just ends
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # glibc keeps freed batch-sized buffers (~0.5-5 MB) in its heap: a worker measured at
    # batch 16, 224² grew from 0.3 to 1.5 GB; returning blocks >= 1 MiB to the OS keeps it flat
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def _train_item(split: StreamSplit, batch_size: int, seed: int, shard: tuple[int, int],
                step: int) -> Batch:
    return split.train_batch(step, batch_size, seed=seed, shard=shard)


def _eval_item(split: StreamSplit, batch_size: int, b: int) -> Batch:
    return split._batch(split.rows[b * batch_size:(b + 1) * batch_size], None, (0, 1))


class StreamSplit:
    """Rows ``rows`` of a packed set, read through a node-local shard cache."""

    def __init__(self, index: PackedIndex, rows: np.ndarray, *, input_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...], augment: bool, flip: bool,
                 workers: int = 0, window: int | None = None, cache_dir: str | Path | None = None,
                 cache_bytes: int | None = None) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            raise DatasetError(f"{index.source}: a split of the packed dataset has no images")
        self.index = index
        self.rows = rows[np.lexsort((index.offset[rows], index.shard[rows]))]
        self.input_size = input_size
        self.mean = torch.tensor(mean, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.get_default_dtype()).view(1, -1, 1, 1)
        self.augment = augment
        self.flip = flip
        self.workers = workers
        self._cache_dir, self._cache_bytes = cache_dir, cache_bytes
        self.reader = SampleReader(index, cache_dir=cache_dir, max_bytes=cache_bytes)
        shard_of = index.shard[self.rows]
        self._shards, starts = np.unique(shard_of, return_index=True)
        self._bounds = np.append(starts, self.rows.size)
        if window is None:
            mean_bytes = float(np.mean([index.shards[k].bytes for k in self._shards]))
            window = max(1, math.floor(WINDOW_BYTES / max(1.0, mean_bytes)))
        self.window = int(window)
        need = 2 * self.window * max(index.shards[k].bytes for k in self._shards)
        if is_remote(index.source) and self.reader.cache.max_bytes < need:
            log.warning("the shard cache (%d MB) holds less than two shuffle windows of %d "
                        "shards (%d MB): shards will be downloaded again within an epoch; "
                        "raise HURRICANE_DATA_CACHE_SIZE or lower dataset.shuffle_window",
                        self.reader.cache.max_bytes >> 20, self.window, need >> 20)
        self._orders: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.labels = torch.as_tensor(index.label[self.rows])

    def __len__(self) -> int:
        return int(self.rows.size)

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's sample numbers, windows of shuffled shards, shuffled within each."""
        key = (seed, epoch)
        hit = self._orders.get(key)
        if hit is not None:
            return hit
        rng = np.random.default_rng([seed, epoch, 0x5EED])
        shards = rng.permutation(self._shards.size)
        parts = []
        for w0 in range(0, shards.size, self.window):
            members = np.concatenate([self.rows[self._bounds[k]:self._bounds[k + 1]]
                                      for k in shards[w0:w0 + self.window]])
            parts.append(members[np.random.default_rng([seed, epoch, w0 + 1]).permutation(
                members.size)])
        out = np.concatenate(parts)
        self._orders[key] = out
        while len(self._orders) > 2:
            self._orders.popitem(last=False)
        return out

    def _decode(self, samples: np.ndarray) -> torch.Tensor:
        if samples.size == 0:
            return torch.zeros((0, 3, self.input_size, self.input_size), dtype=torch.uint8)
        out = []
        for i in samples:
            data = self.reader.read(int(i))
            try:
                out.append(decode_square(data, self.input_size))
            except Exception as e:  # PIL's UnidentifiedImageError, truncated images, …
                k = int(self.index.shard[i])
                raise DatasetError(f"sample {int(i)} (shard {self.index.shards[k].name} of "
                                   f"{self.index.source}) does not decode: {e}") from None
        return torch.stack(out)

    def _batch(self, samples: np.ndarray, g: torch.Generator | None,
               shard: tuple[int, int]) -> Batch:
        rows = rank_rows(samples.size, shard)
        mine = samples[rows]
        x = finish(self._decode(mine), input_size=self.input_size, mean=self.mean, std=self.std,
                   g=g if self.augment else None, flip=self.flip, part=(rows, samples.size))
        return x, torch.as_tensor(self.index.label[mine])

    def train_batch(self, step: int, batch_size: int, *, seed: int,
                    shard: tuple[int, int] = (0, 1)) -> Batch:
        """Batch ``step`` of the shuffled, augmented stream (rank ``shard[0]``'s rows only)."""
        bs = min(batch_size, len(self))
        spe = self.steps_per_epoch(bs)
        epoch, i = divmod(step, spe)
        samples = self.order(seed, epoch)[i * bs:(i + 1) * bs]
        return self._batch(samples, gen(seed, epoch, i + 1), shard)

    def _loader(self, items: Iterable[int], fn: Callable[[int], Batch]) -> Iterator[Batch]:
        if self.workers == 0:
            yield from (fn(i) for i in items)
            return
        loader = torch.utils.data.DataLoader(
            _Items(fn), batch_size=None, sampler=items,  # type: ignore[arg-type]
            num_workers=self.workers, prefetch_factor=2, worker_init_fn=_worker_init)
        it = iter(loader)
        try:
            yield from it
        finally:
            shutdown = getattr(it, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def train_batches(self, batch_size: int, *, seed: int, start: int = 0,
                      shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
        """``train_batch(start)``, ``train_batch(start + 1)``, … made by the loader workers."""
        return self._loader(itertools.count(start),
                            functools.partial(_train_item, self, batch_size, seed, shard))

    def eval_batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """One ordered pass, no augmentation; at most ``limit`` batches."""
        n = math.ceil(len(self) / batch_size)
        n = n if limit is None else min(n, limit)
        return self._loader(range(n), functools.partial(_eval_item, self, batch_size))

    def union(self, other: StreamSplit) -> StreamSplit:
        """This split's rows and ``other``'s (same packed set), with this one's settings."""
        if other.index is not self.index and other.index.source != self.index.source:
            raise ValueError("cannot join splits of two different packed datasets")
        return StreamSplit(self.index, np.concatenate([self.rows, other.rows]),
                           input_size=self.input_size,
                           mean=tuple(self.mean.flatten().tolist()),
                           std=tuple(self.std.flatten().tolist()), augment=self.augment,
                           flip=self.flip, workers=self.workers, window=self.window,
                           cache_dir=self._cache_dir, cache_bytes=self._cache_bytes)

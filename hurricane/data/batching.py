"""What every dataset does to a batch once its images are chosen: scale to [0, 1], resize,
augment with generators seeded by (seed, epoch, step), normalise. In-memory splits and
streamed (packed) splits share it, so the same rows give the same tensors in both."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def gen(*key: int) -> torch.Generator:
    """A torch generator seeded by a tuple of ints (same on every machine)."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def rank_rows(total: int, shard: tuple[int, int]) -> slice:
    """The rows of a global batch of ``total`` that rank ``shard[0]`` of ``shard[1]`` takes."""
    rank, world = shard
    per = total // world
    return slice(rank * per, (rank + 1) * per) if world > 1 else slice(0, total)


def augment(x: torch.Tensor, g: torch.Generator, *, flip: bool,
            part: tuple[slice, int] | None = None) -> torch.Tensor:
    """Random translation (pad + crop, 1/8 of the side) and optional horizontal flip.
    ``part = (rows, n)``: ``x`` holds those rows of a batch of ``n``; the random draws are the
    whole batch's, so a shard is augmented exactly as in the whole batch."""
    n, _, h, w = x.shape
    rows_of, total = part if part is not None else (slice(0, n), n)
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (total,), generator=g)[rows_of]
    dy = torch.randint(0, 2 * pad + 1, (total,), generator=g)[rows_of]
    rows = (dy[:, None] + torch.arange(h)[None, :])  # n×h
    cols = (dx[:, None] + torch.arange(w)[None, :])  # n×w
    idx_n = torch.arange(n)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = torch.rand(total, generator=g)[rows_of] < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out.contiguous()


def finish(x: torch.Tensor, *, input_size: int, mean: torch.Tensor, std: torch.Tensor,
           g: torch.Generator | None, flip: bool, part: tuple[slice, int]) -> torch.Tensor:
    """uint8 (or float in [0, 1]) N×3×H×W rows → the model's input: float, ``input_size``²,
    augmented when ``g`` is given, normalised."""
    dtype = torch.get_default_dtype()  # float32 unless a test asks for float64
    x = x.to(dtype).div_(255) if x.dtype == torch.uint8 else x.to(dtype)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                          align_corners=False, antialias=x.shape[-1] > input_size)
    if g is not None:
        x = augment(x, g, flip=flip, part=part)
    return (x - mean) / std


def decode_square(data: bytes, input_size: int) -> torch.Tensor:
    """An encoded image → 3×S×S uint8: RGB, short side resized to S, centre crop."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as raw:
        return square(raw, input_size)


def square(raw: object, input_size: int) -> torch.Tensor:
    from PIL import Image

    assert isinstance(raw, Image.Image)
    im = raw.convert("RGB")
    scale = input_size / min(im.size)
    im = im.resize((max(input_size, round(im.width * scale)),
                    max(input_size, round(im.height * scale))), Image.Resampling.BILINEAR)
    left, top = (im.width - input_size) // 2, (im.height - input_size) // 2
    im = im.crop((left, top, left + input_size, top + input_size))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)

"""Data-parallel training across torchrun's processes: who this process is (rank, world, device),
the process group (gloo on CPU, NCCL on GPU), averaging the gradients of the active path, and
agreeing on one value. A process that torchrun did not start is rank 0 of a world of one and
touches no collective."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# torch.distributed.nn.functional.all_reduce (autograd through the collective) is "deprecated"
# in favour of _functional_collectives, which does not differentiate: keep it, quietly
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is "
                        "deprecated", category=FutureWarning)


@dataclass(frozen=True)
class Place:
    """This process in the training job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self) -> tuple[int, int]:
        return self.rank, self.world


def _device(kind: str, local_rank: int) -> torch.device:
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda" or torch.cuda.is_available():
        if not torch.cuda.is_available():
            raise RuntimeError("training.device = cuda, but this process sees no CUDA device")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def place(device: str = "auto") -> Place:
    """Rank, world size and device from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK);
    joins the process group once (HURRICANE_DIST_BACKEND, else NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = os.environ.get("HURRICANE_DIST_BACKEND") or ("nccl" if dev.type == "cuda"
                                                               else "gloo")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # torchrun's store outlives a restart of the ranks: keys of the failed round (peers'
        # old addresses) must not be read by the new one, so each round gets its own prefix
        store, _, _ = next(dist.rendezvous("env://"))
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                store=dist.PrefixStore(f"hurricane/round-{restart}", store))
    return Place(rank, world, local, dev)


def average_gradients(model: nn.Module, world: int, loss: torch.Tensor) -> float:
    """All-reduces the gradients that exist (the active path's: every rank trained the same
    path this step, so every rank holds the same set) and the loss, as one flat tensor, then
    divides by the world size; returns the mean loss (every rank gets the same one)."""
    if world <= 1:
        return float(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([*(g.reshape(-1) for g in grads), loss.reshape(1).to(grads[0].dtype
                                                                          if grads else loss.dtype)])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return float(flat[-1])


class GradSync:
    """Averages the active path's gradients across ranks while backward still runs: each
    parameter joins a bucket as soon as its gradient is accumulated (the same order on every
    rank: same path, same graph); a full bucket is all-reduced asynchronously, and ``wait``
    sends the last one with the loss, waits, and writes the means back."""

    def __init__(self, model: nn.Module, world: int, bucket_bytes: int = 2 << 20) -> None:
        self.world, self.bucket_bytes = world, bucket_bytes
        self.bucket: list[torch.Tensor] = []
        self.bytes = 0
        self.pending: list[tuple[Any, torch.Tensor, list[torch.Tensor]]] = []
        self.stop = False
        self.handles = [p.register_post_accumulate_grad_hook(self._ready)
                        for p in model.parameters() if p.requires_grad] if world > 1 else []

    def _ready(self, p: torch.Tensor) -> None:
        assert p.grad is not None
        self.bucket.append(p)
        self.bytes += p.grad.numel() * p.grad.element_size()
        if self.bytes >= self.bucket_bytes:
            self._send()

    def _send(self, extra: torch.Tensor | None = None) -> None:
        grads = [p.grad.reshape(-1) for p in self.bucket]  # type: ignore[union-attr]
        if extra is not None:
            grads.append(extra.reshape(-1).to(grads[0].dtype if grads else extra.dtype))
        if grads:
            flat = torch.cat(grads)
            self.pending.append((dist.all_reduce(flat, async_op=True), flat, self.bucket))
        self.bucket, self.bytes = [], 0

    def wait(self, loss: torch.Tensor, stop: bool = False) -> float:
        """After backward: the mean loss over ranks (every rank gets the same). ``stop`` (this
        rank was asked to stop) travels in the same all-reduce: afterwards ``self.stop`` says
        whether any rank was, so all stop after the same step."""
        if self.world <= 1:
            self.stop = stop
            return float(loss.detach())
        flag = torch.tensor([float(stop)], dtype=loss.dtype, device=loss.device)
        self._send(torch.cat([loss.detach().reshape(1), flag]))
        mean_loss = 0.0
        for work, flat, params in self.pending:
            work.wait()
            offset = 0
            for p in params:
                g = p.grad
                assert g is not None  # it was in the bucket because it had one
                g.copy_(flat[offset:offset + g.numel()].view_as(g) / self.world)
                offset += g.numel()
            if offset < flat.numel():
                mean_loss = float(flat[-2]) / self.world
                self.stop = float(flat[-1]) > 0
        self.pending = []
        return mean_loss

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def broadcast_model(model: nn.Module, world: int) -> None:
    """Rank 0's weights and buffers everywhere (identical seeds make them equal already; this
    makes it a guarantee)."""
    if world <= 1:
        return
    for kind in (list(model.parameters()), list(model.buffers())):
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in kind:
            by_dtype.setdefault(t.dtype, []).append(t.data)
        for ts in by_dtype.values():  # one collective per dtype, not one per tensor
            flat = torch.cat([t.reshape(-1) for t in ts])
            dist.broadcast(flat, src=0)
            offset = 0
            for t in ts:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def agree(value: int, world: int) -> int:
    """Rank 0's ``value`` on every rank."""
    if world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.long)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=0)
    return int(t.item())


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the whole global batch of every rank (on CPU too, where torch's own
    SyncBatchNorm refuses): per-channel sums are all-reduced with a differentiable all-reduce,
    so forward and backward equal one process training on the global batch. Same parameters
    and buffers as nn.BatchNorm2d (checkpoints do not change)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable all-reduce

        c = x.shape[1]
        n = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        # two passes (mean, then squared deviations): E[x²] − E[x]² cancels badly in float32
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), n]))
        count = stats[-1]
        mean = stats[:c] / count
        d = x - mean.view(1, c, 1, 1)
        var = all_reduce((d * d).sum((0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None \
                and self.running_var is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
        y = d * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def sync_batchnorm(model: nn.Module) -> int:
    """Makes every BatchNorm2d of ``model`` a SyncedBatchNorm2d (in place); returns how many."""
    n = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncedBatchNorm2d
            n += 1
    return n


def plain_batchnorm(model: nn.Module) -> None:
    """Undoes sync_batchnorm (the trained model is used in one process afterwards)."""
    for m in model.modules():
        if type(m) is SyncedBatchNorm2d:
            m.__class__ = nn.BatchNorm2d  # type: ignore[assignment]


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def finish() -> None:
    """Leaves the process group (at the end of a job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

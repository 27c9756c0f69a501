"""Iteration-based training with the SPOS recipe, atomic periodic checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from hurricane import progress
from hurricane.data.datasets import AnySplit
from hurricane.nets.distributed import (
    GradSync,
    Place,
    agree,
    barrier,
    broadcast_model,
    plain_batchnorm,
    sync_batchnorm,
)
from hurricane.storage.store import ArtifactStore
from hurricane.storage.torchio import load_torch, save_torch

ForwardFn = Callable[[nn.Module, torch.Tensor, int], torch.Tensor]
# (model, images, labels, step) -> (loss to backpropagate, loss to report)
StepLossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, int],
                      tuple[torch.Tensor, torch.Tensor]]


class Monitor(Protocol):
    """Watches a training (``steps.quality.RankMonitor``): ``stop(step, model)`` after each
    step may end it there; its state travels in the checkpoints."""

    def due(self, step: int) -> bool: ...  # the same on every rank: a check runs at step

    def stop(self, step: int, model: nn.Module) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    iterations: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    seed: int = 0
    threads: int | None = None
    stop_loss: float | None = None  # stop once the mean loss of the last stop_window steps is <=
    stop_window: int = 50
    log_every: int = 10
    bf16: bool = False  # autocast on CUDA
    channels_last: bool = False  # CUDA memory format
    sync_bn: bool = False  # distributed: BatchNorm statistics over the global batch


@dataclass(frozen=True)
class TrainResult:
    steps: int
    resumed_from: int
    final_loss: float
    seconds: float
    images_per_s: float
    converged: bool = False  # stopped early at cfg.stop_loss
    settled: bool = False  # stopped early: the monitor said so
    history: tuple[tuple[int, float], ...] = ()  # (step, mean loss since the previous entry)
    total: int = 0  # cfg.iterations
    world_size: int = 1  # training processes

    @property
    def complete(self) -> bool:
        """Ran to its end: all iterations, or converged at the stop loss."""
        return self.converged or self.settled or self.steps >= self.total


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A seed that depends only on (seed, step): resumed runs see the same randomness."""
    return int(np.random.SeedSequence([seed, step, salt]).generate_state(1, dtype=np.uint64)[0] >> 1)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """SPOS: weight decay on conv/linear weights only, none on BN parameters and biases."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def linear_lr(base: float, step: int, total: int) -> float:
    return base * max(0.0, 1.0 - step / total)


class Checkpointer:
    """Checkpoints under ``prefix/ckpt-<step>.pt``; the newest ``keep`` are kept."""

    def __init__(self, store: ArtifactStore, prefix: str, keep: int = 2) -> None:
        self.store, self.prefix, self.keep = store, prefix.rstrip("/"), keep

    def _key(self, step: int) -> str:
        return f"{self.prefix}/ckpt-{step:09d}.pt"

    def steps(self) -> list[int]:
        out = []
        for k in self.store.list(self.prefix):
            name = k.rsplit("/", 1)[-1]
            if name.startswith("ckpt-") and name.endswith(".pt"):
                out.append(int(name[5:-3]))
        return sorted(out)

    def save(self, step: int, state: dict[str, Any]) -> None:
        save_torch(self.store, self._key(step), state)
        for old in self.steps()[:-self.keep]:
            self.store.delete(self._key(old))

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        steps = self.steps()
        if not steps:
            return None
        return steps[-1], self.load(steps[-1])

    def load(self, step: int) -> dict[str, Any]:
        return load_torch(self.store, self._key(step))  # type: ignore[no-any-return]


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))


class _Silent:
    def advance(self, n: int = 1, **metrics: Any) -> None:
        pass


def _resume(checkpointer: Checkpointer | None, where: Place) -> tuple[int, dict[str, Any] | None]:
    """The newest checkpoint, as rank 0 sees it: every rank resumes from the same step."""
    if checkpointer is None:
        return 0, None
    steps = checkpointer.steps() if where.main else []
    step = agree(steps[-1] if steps else 0, where.world)
    return (step, checkpointer.load(step)) if step else (0, None)


class Preempted(Exception):
    """A training job was asked to stop (SIGTERM: Kueue evicting it, a node drain, a cancel)
    and stopped at a checkpoint of ``step``: running it again continues from there."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint written")
        self.step = step


class StopRequest:
    """SIGTERM during training asks for a stop after the current step (at a checkpoint) rather
    than killing the process: Kueue's eviction, a node drain and a cancel all send it, and the
    work since the last periodic checkpoint is kept. Installed only in the main thread and only
    while training; the previous handler comes back afterwards."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


@dataclass
class _Losses:
    """What a training carries from step to step and through its checkpoints: the recent
    losses (for ``stop_loss``), the logged history, and whether it converged or settled."""

    recent: deque[float]
    history: list[tuple[int, float]] = field(default_factory=list)
    pending: list[float] = field(default_factory=list)
    converged: bool = False
    settled: bool = False

    @classmethod
    def resumed(cls, cfg: TrainConfig, state: dict[str, Any] | None) -> _Losses:
        out = cls(recent=deque(maxlen=cfg.stop_window))
        if state is not None:
            out.recent.extend(state.get("recent_losses", []))
            out.history = [tuple(h) for h in state.get("history", [])]  # type: ignore[misc]
            out.pending = list(state.get("pending_losses", []))
            out.converged = bool(state.get("converged", False))
            out.settled = bool(state.get("settled", False))
        return out

    def record(self, done: int, loss: float, cfg: TrainConfig) -> None:
        self.recent.append(loss)
        self.pending.append(loss)
        if done % cfg.log_every == 0:
            self.history.append((done, sum(self.pending) / len(self.pending)))
            self.pending.clear()
        self.converged = (cfg.stop_loss is not None and len(self.recent) == cfg.stop_window
                          and sum(self.recent) / len(self.recent) <= cfg.stop_loss)

    def state(self) -> dict[str, Any]:
        return {"recent_losses": list(self.recent), "history": self.history,
                "pending_losses": self.pending, "converged": self.converged,
                "settled": self.settled}


def _plain_loss(forward: ForwardFn, loss_fn: nn.Module) -> StepLossFn:
    """One path's forward and the labels' loss, as a ``step_loss``."""
    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss = loss_fn(forward(model, x, step), y)
        return loss, loss
    return step_loss


def _backward(step_loss: StepLossFn, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              step: int, cfg: TrainConfig, *, bf16: bool) -> torch.Tensor:
    """The step's loss and its gradients (which travel to the other ranks while backward
    runs); returns the loss to report. Dropout masks depend only on (seed, step)."""
    torch.manual_seed(step_seed(cfg.seed, step, 1))
    with torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        loss, shown = step_loss(model, x, y, step)
    loss.backward()
    return shown


def _load(state: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer,
          monitor: Monitor | None) -> None:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if monitor is not None and "monitor" in state:
        monitor.load_state_dict(state["monitor"])


def _save(checkpointer: Checkpointer, done: int, model: nn.Module, opt: torch.optim.Optimizer,
          losses: _Losses, monitor: Monitor | None) -> None:
    checkpointer.save(done, {"step": done, "model": model.state_dict(),
                             "optimizer": opt.state_dict(), **losses.state(),
                             **({"monitor": monitor.state_dict()} if monitor is not None else {})})


def _place(model: nn.Module, cfg: TrainConfig, where: Place) -> bool:
    """Moves ``model`` where it trains, with every rank's copy equal to rank 0's; True on CUDA."""
    cuda = where.device.type == "cuda"
    model.to(where.device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    broadcast_model(model, where.world)
    if where.distributed and cfg.sync_bn:
        sync_batchnorm(model)
    return cuda


def _unplace(model: nn.Module) -> None:
    """Back to plain BatchNorm, the CPU and the default memory format."""
    plain_batchnorm(model)
    model.to("cpu")
    model.to(memory_format=torch.contiguous_format)


def _on_device(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
               where: Place) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.pin_memory().to(where.device, non_blocking=True)
    y = y.pin_memory().to(where.device, non_blocking=True)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def train(
    model: nn.Module,
    data: AnySplit,
    cfg: TrainConfig,
    *,
    forward: ForwardFn | None = None,
    step_loss: StepLossFn | None = None,
    monitor: Monitor | None = None,
    checkpointer: Checkpointer | None = None,
    description: str = "train",
    stop_after: int | None = None,
    where: Place | None = None,
) -> TrainResult:
    """Trains ``model`` for ``cfg.iterations`` steps, resuming from the newest checkpoint.

    ``forward(model, x, step)`` lets the supernet pick the path of each step; batches, paths
    and dropout masks depend only on (seed, step), so resuming reproduces a straight run
    exactly. ``step_loss(model, x, y, step)`` replaces forward and loss for steps that train
    several paths (``steps.oneshot.plan_loss``): it returns the summed loss to backpropagate
    (one backward, so each gradient is complete and all-reduced once) and the loss to report.
    ``monitor.stop(step, model)`` runs after every step on every rank (rank 0's answer counts)
    and may end the training there. ``cfg.stop_loss`` ends training once the mean loss of the
    last ``cfg.stop_window`` steps reaches it (the lr schedule still spans ``cfg.iterations``).
    ``stop_after`` ends the run after that step as if interrupted (used to test resumption).

    Distributed (``where`` from torchrun's environment): every rank takes the same path and its
    own equal share of each global batch of ``cfg.batch_size``; the active path's gradients and
    the loss are averaged across ranks, so every rank makes the same update and the same stop
    decision; only rank 0 reports progress and writes checkpoints. The model is returned on
    the CPU.
    """
    where = where or Place()
    set_threads(cfg.threads)
    cuda = _place(model, cfg, where)
    fwd = forward or (lambda m, x, _s: m(x))
    sync = GradSync(model, where.world)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                          momentum=cfg.momentum, nesterov=False)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start, state = _resume(checkpointer, where)
    losses = _Losses.resumed(cfg, state)
    if state is not None:
        _load(state, model, opt, monitor)
    model.train()
    t0 = time.perf_counter()
    loss_val = losses.recent[-1] if losses.recent else float("nan")
    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    if losses.converged or losses.settled:
        end = start
    bar_cm = (progress.task(description, total=cfg.iterations, completed=start) if where.main
              else contextlib.nullcontext(_Silent()))
    batches = data.train_batches(cfg.batch_size, seed=cfg.seed, start=start, shard=where.shard())
    preempted = False
    with StopRequest() as stop, bar_cm as bar, contextlib.closing(batches):  # type: ignore[type-var]
        for step in range(start, end):
            lr = linear_lr(cfg.lr, step, cfg.iterations)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = next(batches)
            if cuda:
                x, y = _on_device(x, y, cfg, where)
            opt.zero_grad(set_to_none=True)
            shown = _backward(step_loss or _plain_loss(fwd, loss_fn), model, x, y, step, cfg,
                              bf16=cuda and cfg.bf16)
            loss_val = sync.wait(shown, stop.requested)
            preempted = sync.stop  # any rank asked: every rank stops after this step
            opt.step()
            done = step + 1
            losses.record(done, loss_val, cfg)
            if monitor is not None and not losses.converged and monitor.due(done):
                losses.settled = bool(agree(int(monitor.stop(done, model)), where.world))
            stopping = losses.converged or losses.settled
            if where.main and checkpointer is not None and (
                    done % cfg.checkpoint_every == 0 or done == end or stopping or preempted):
                _save(checkpointer, done, model, opt, losses, monitor)
            bar.advance(1, loss=loss_val, lr=lr)
            if stopping:
                end = done
                break
            if preempted and done < end:
                progress.message(f"{description}: SIGTERM: stopped after step {done} "
                                 "(checkpoint written); a new run continues from it")
                break
    sync.close()
    if preempted and done < end:
        if where.distributed:
            barrier(where.world)  # rank 0's checkpoint is written before any rank exits
        raise Preempted(done)
    seconds = time.perf_counter() - t0
    images = max(0, end - start) * min(cfg.batch_size, len(data))
    _unplace(model)
    return TrainResult(steps=end, resumed_from=start, final_loss=loss_val, seconds=seconds,
                       images_per_s=images / seconds if seconds > 0 else 0.0,
                       converged=losses.converged, settled=losses.settled,
                       history=tuple(losses.history), total=cfg.iterations, world_size=where.world)


@torch.no_grad()
def evaluate(model: nn.Module, data: AnySplit, *, batch_size: int = 256, limit: int | None = None,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy (0..1) over ``data`` (or its first ``limit`` batches)."""
    model.eval()
    fwd = forward or model
    correct = total = 0
    for x, y in data.eval_batches(batch_size, limit):
        correct += int((fwd(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(1, total)

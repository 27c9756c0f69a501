"""ProxylessNAS baseline: binarised path gates trained with an expected-latency loss from a table.

Follows the official implementation (mit-han-lab/proxylessnas, ``MixedEdge`` and
``ArchSearchRunManager.gradient_step``) on the SPOS supernet of this package:

- Weight step (every iteration, training split): one path per active layer drawn from
  softmax(α) (uniform during warm-up), single-path forward, SGD with the SPOS recipe.
- Architecture step (every ``arch_update_every`` iterations after warm-up, validation split,
  as the official search holds a validation set out of the training images): per active
  layer the binary gates g are a one-hot over the *involved* candidates ("two" mode: two
  candidates drawn from softmax(α) without replacement, the active one drawn from the
  softmax over their two logits; "full" mode: all candidates). The layer output is
  Σ_j g_j·o_j with only the active o_j on the autograd path (the others are computed without
  a graph), so ∂L/∂g_j = <∂L/∂out, o_j>, and the BinaryConnect estimate
  ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j (δ_ij − p_i) with p the softmax over the involved logits.
  We get that estimate from autograd with a straight-through gate: g = onehot + p − p.detach()
  has the one-hot's value and p's derivative. The latency term uses the same p (the
  official ``current_prob_over_ops``); in "two" mode the two updated logits are then shifted
  so their log-sum-exp is unchanged, which leaves the other candidates' probabilities alone.
- Loss: "linear" CE + λ·(E[lat] − T)/T, or "mul" CE·(log E[lat] / log T)^β, with T the
  budget in ms and E[lat] = fixed + Σ_layers Σ_i p_i·LUT(layer, op_i).

The result is the argmax architecture; if it exceeds the budget under the caller's latency
model, a greedy fallback swaps layer choices until it fits (see ``derive_arch``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hurricane import progress
from hurricane.data.datasets import Data
from hurricane.latency.profiling import LatencyTable
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.supernet import Supernet
from hurricane.nets.train import (
    Checkpointer,
    TrainConfig,
    linear_lr,
    param_groups,
    set_threads,
    step_seed,
)
from hurricane.search.evolution import InfeasibleBudget

LatencyFn = Callable[[Arch], float]

# salts of step_seed: one independent random stream per use, each a function of (seed, step)
_DROPOUT, _PATHS, _GATES, _ARCH_DROPOUT = 1, 2, 4, 5


@dataclass(frozen=True)
class ProxylessConfig:
    """Search settings. ``weights`` is the SPOS weight recipe; its ``iterations`` count every
    step, warm-up included, and its checkpoint/seed/thread settings apply to the whole search."""

    weights: TrainConfig
    warmup_iterations: int = 0  # weights only, uniform paths (official: 40 of 160 epochs)
    arch_lr: float = 1e-3
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_eps: float = 1e-8
    arch_batch_size: int | None = None  # None: the weights' batch size (official default)
    arch_update_every: int = 5  # official search script: one arch step per 5 weight steps
    binary_mode: Literal["two", "full"] = "two"
    latency_loss: Literal["linear", "mul"] = "linear"
    latency_lambda: float = 0.1  # "linear"
    latency_beta: float = 0.3  # "mul" (official script's value)
    history_every: int = 10

    def __post_init__(self) -> None:
        w = self.weights
        if w.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {w.iterations}")
        if not 0 <= self.warmup_iterations <= w.iterations:
            raise ValueError(f"warmup_iterations must lie in [0, iterations={w.iterations}], "
                             f"got {self.warmup_iterations}")
        for name in ("arch_update_every", "history_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.arch_batch_size is not None and self.arch_batch_size < 1:
            raise ValueError(f"arch_batch_size must be >= 1, got {self.arch_batch_size}")
        if self.binary_mode not in ("two", "full"):
            raise ValueError(f"binary_mode must be 'two' or 'full', got {self.binary_mode!r}")
        if self.latency_loss not in ("linear", "mul"):
            raise ValueError(f"latency_loss must be 'linear' or 'mul', got {self.latency_loss!r}")
        if self.arch_lr <= 0:
            raise ValueError(f"arch_lr must be > 0, got {self.arch_lr}")

    @property
    def iterations(self) -> int:
        return self.weights.iterations

    @property
    def seed(self) -> int:
        return self.weights.seed

    def is_arch_step(self, step: int) -> bool:
        """Whether iteration ``step`` (0-based) ends with an architecture update."""
        k = step - self.warmup_iterations + 1
        return k > 0 and k % self.arch_update_every == 0

    def arch_update_index(self, step: int) -> int:
        """How many architecture updates came before the one of iteration ``step``."""
        return (step - self.warmup_iterations + 1) // self.arch_update_every - 1


class PathGates(nn.Module):
    """Architecture logits α of each active layer (a layer with one candidate has none)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.layers: tuple[int, ...] = space.active_layers
        # zeros: uniform paths at the start (the official code draws N(0, 1e-3))
        self.alpha = nn.ParameterList(nn.Parameter(torch.zeros(len(space.choices[i])))
                                      for i in self.layers)

    def probs(self) -> list[torch.Tensor]:
        return [F.softmax(a, dim=0) for a in self.alpha]

    @torch.no_grad()
    def sample(self, gen: torch.Generator, *, uniform: bool = False) -> Arch:
        """One path: each active layer's op drawn from softmax(α) (or uniformly)."""
        ops = [c[0] for c in self.space.choices]
        for i, p in zip(self.layers, self.probs(), strict=True):
            w = torch.ones_like(p) if uniform else p
            ops[i] = self.space.choices[i][int(torch.multinomial(w, 1, generator=gen))]
        return Arch(tuple(ops))

    @torch.no_grad()
    def argmax(self) -> Arch:
        ops = [c[0] for c in self.space.choices]
        for i, a in zip(self.layers, self.alpha, strict=True):
            ops[i] = self.space.choices[i][int(torch.argmax(a))]
        return Arch(tuple(ops))

    @torch.no_grad()
    def probabilities(self) -> dict[int, dict[str, float]]:
        return {i: dict(zip(self.space.choices[i], p.tolist(), strict=True))
                for i, p in zip(self.layers, self.probs(), strict=True)}


class ExpectedLatency:
    """E[lat] = fixed_ms + Σ_layers Σ_i p_i·LUT(layer, op_i); fixed layers add their one op."""

    def __init__(self, space: SearchSpace, table: LatencyTable) -> None:
        table.check_covers(space)
        active = set(space.active_layers)
        self.constant = table.fixed_ms + sum(table.layer_ms(i, c[0])
                                             for i, c in enumerate(space.choices) if i not in active)
        self.luts = [torch.tensor([table.layer_ms(i, op) for op in space.choices[i]],
                                  dtype=torch.float64) for i in space.active_layers]

    def __call__(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """``probs[k]``: a distribution over the candidates of the k-th active layer."""
        total = torch.tensor(self.constant, dtype=torch.float64)
        for p, lut in zip(probs, self.luts, strict=True):
            total = total + (p.to(torch.float64) * lut).sum()
        return total


def binary_gates(alpha: torch.Tensor, involved: Sequence[int],
                 active: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates over ``involved`` candidates: value one-hot at position ``active``, gradient that of
    p = softmax(α[involved]), so autograd yields ∂L/∂α_i = Σ_j ∂L/∂g_j p_j (δ_ij − p_i).
    Returns (gates, p)."""
    p = F.softmax(alpha[list(involved)], dim=0)
    onehot = torch.zeros_like(p)
    onehot[active] = 1.0
    return onehot + (p - p.detach()), p


def mix(gates: torch.Tensor, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_j g_j·o_j: the gated layer output (equal in value to the active candidate's)."""
    out = gates[0] * outputs[0]
    for g, o in zip(gates[1:], outputs[1:], strict=True):
        out = out + g * o
    return out


def latency_regularised(ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float,
                        cfg: ProxylessConfig) -> torch.Tensor:
    if cfg.latency_loss == "mul":
        ratio = torch.log(expected_ms) / math.log(target_ms)
        return ce * ratio.pow(cfg.latency_beta).to(ce.dtype)
    return ce + (cfg.latency_lambda * (expected_ms - target_ms) / target_ms).to(ce.dtype)


@dataclass
class GateDraw:
    """One active layer's gates for an architecture step."""

    involved: list[int]  # candidate indices taking part
    active: int  # position in ``involved`` of the candidate on the autograd path
    gates: torch.Tensor  # over ``involved``: one-hot value, softmax derivative
    probs: torch.Tensor  # over all the layer's candidates, zero outside ``involved``


def draw_gates(gates: PathGates, mode: str, gen: torch.Generator) -> list[GateDraw]:
    """Samples each active layer's involved candidates and active one (official ``binarize``)."""
    out = []
    for a in gates.alpha:
        n = len(a)
        with torch.no_grad():
            full = F.softmax(a, dim=0)
            if mode == "two":
                involved = torch.multinomial(full, 2, replacement=False, generator=gen).tolist()
                pair = F.softmax(a[involved], dim=0)
                active = int(torch.multinomial(pair, 1, generator=gen))
            else:
                involved = list(range(n))
                active = int(torch.multinomial(full, 1, generator=gen))
        g, p = binary_gates(a, involved, active)
        probs = torch.zeros(n, dtype=p.dtype).scatter(0, torch.tensor(involved), p)
        out.append(GateDraw(involved, active, g, probs))
    return out


def gate_update(gates: PathGates, opt: torch.optim.Optimizer,
                loss_of: Callable[[list[GateDraw]], torch.Tensor], *, mode: str,
                gen: torch.Generator) -> float:
    """One architecture update: draw gates, ``loss_of(draws)``, an optimizer step on α only,
    then (in "two" mode) the official rescaling of the two involved logits. Returns the loss."""
    draws = draw_gates(gates, mode, gen)
    loss = loss_of(draws)
    params = list(gates.alpha)
    grads = torch.autograd.grad(loss, params)  # weights get no gradient from this step
    old = [a.detach()[d.involved].clone() for a, d in zip(params, draws, strict=True)]
    for a, g in zip(params, grads, strict=True):
        a.grad = g
    opt.step()
    opt.zero_grad(set_to_none=True)
    if mode == "two":
        with torch.no_grad():
            for a, d, before in zip(params, draws, old, strict=True):
                idx = torch.tensor(d.involved)
                a[idx] -= torch.logsumexp(a[idx], 0) - torch.logsumexp(before, 0)
    return float(loss.detach())


def gated_forward(net: Supernet, x: torch.Tensor, draws: dict[int, GateDraw]) -> torch.Tensor:
    """Supernet forward with gated active layers (``draws`` by layer index)."""
    x = net.stem(x)
    for i, (layer, choices) in enumerate(zip(net.layers, net.space.choices, strict=True)):
        if i not in draws:
            x = layer[choices[0]](x)
            continue
        d = draws[i]
        outs = []
        for pos, j in enumerate(d.involved):
            if pos == d.active:
                outs.append(layer[choices[j]](x))
            else:  # only ∂L/∂g_j = <∂L/∂out, o_j> is needed from an inactive path: no graph
                with torch.no_grad():
                    outs.append(layer[choices[j]](x))
        x = mix(d.gates, outs)
    return net.head(x)


def _search_loss(draws: list[GateDraw], *, net: Supernet, layers: Sequence[int], x: torch.Tensor,
                 y: torch.Tensor, expected: ExpectedLatency, target_ms: float,
                 cfg: ProxylessConfig) -> torch.Tensor:
    logits = gated_forward(net, x, dict(zip(layers, draws, strict=True)))
    ce = F.cross_entropy(logits, y)  # plain CE, as in the official gradient step
    return latency_regularised(ce, expected([d.probs for d in draws]), target_ms, cfg)


def derive_arch(gates: PathGates, table: LatencyTable, *, budget_ms: float,
                latency: LatencyFn) -> tuple[Arch, bool]:
    """The argmax architecture, or, when ``latency`` puts it over ``budget_ms``, the fallback.

    Fallback: repeatedly make the single-layer swap to a candidate with a lower table latency
    that loses the least log-probability per ms saved (a gain in log-probability is taken
    first), until ``latency`` says the architecture fits. Every swap lowers the table latency
    of one layer, so at most Σ(candidates − 1) swaps happen. Returns (arch, fallback_used).
    Raises InfeasibleBudget when even the end of that walk does not fit.
    """
    arch = gates.argmax()
    if latency(arch) <= budget_ms:
        return arch, False
    space = gates.space
    logp = {i: torch.log_softmax(a.detach(), 0).tolist()
            for i, a in zip(gates.layers, gates.alpha, strict=True)}
    for _ in range(sum(len(c) - 1 for c in space.choices)):
        best: tuple[float, int, str] | None = None
        for i in gates.layers:
            c = space.choices[i]
            cur = c.index(arch[i])
            for j, op in enumerate(c):
                saving = table.layer_ms(i, arch[i]) - table.layer_ms(i, op)
                if saving <= 0:
                    continue
                cost = (logp[i][cur] - logp[i][j]) / saving
                if best is None or cost < best[0]:
                    best = (cost, i, op)
        if best is None:
            break
        arch = arch.replace(best[1], best[2])
        if latency(arch) <= budget_ms:
            return arch, True
    raise InfeasibleBudget(
        f"no architecture reached by the fallback meets the {budget_ms:.3f} ms budget: the last "
        f"one, {arch}, takes {latency(arch):.3f} ms; raise the budget")


@dataclass(frozen=True)
class ProxylessResult:
    arch: Arch
    argmax_arch: Arch
    fallback: bool
    latency_ms: float  # ``arch`` under the caller's latency model
    table_latency_ms: float
    expected_latency_ms: float  # E[lat] of the final distribution
    budget_ms: float
    probabilities: dict[int, dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    iterations: int = 0  # steps done (< config iterations when stopped early)
    resumed_from: int = 0
    arch_updates: int = 0
    seconds: float = 0.0  # wall time over every run of this search, resumed ones included

    def to_json(self) -> dict[str, Any]:
        return {"arch": str(self.arch), "argmax_arch": str(self.argmax_arch),
                "fallback": self.fallback, "latency_ms": self.latency_ms,
                "table_latency_ms": self.table_latency_ms,
                "expected_latency_ms": self.expected_latency_ms, "budget_ms": self.budget_ms,
                "probabilities": {str(k): v for k, v in self.probabilities.items()},
                "history": self.history, "iterations": self.iterations,
                "resumed_from": self.resumed_from, "arch_updates": self.arch_updates,
                "seconds": self.seconds}


def _check_budget(space: SearchSpace, table: LatencyTable, budget_ms: float,
                  config: ProxylessConfig) -> None:
    if budget_ms <= 0:
        raise ValueError(f"budget_ms must be > 0, got {budget_ms}")
    if config.latency_loss == "mul":
        lo = table.bounds(space)[0]
        if min(lo, budget_ms) <= 1.0:
            raise ValueError(
                f"latency_loss='mul' uses log(E[lat] in ms)/log(budget) and needs both above 1 ms "
                f"(fastest {lo:.3f} ms, budget {budget_ms:.3f} ms); use latency_loss='linear'")


def _resume(checkpointer: Checkpointer | None,
            modules: dict[str, Any]) -> tuple[int, list[dict[str, Any]], float, float | None]:
    """Loads the newest checkpoint into ``modules`` (anything with ``load_state_dict``); returns
    its step, the history, the seconds spent before and the last architecture loss (None until
    the first architecture update)."""
    if checkpointer is None or (found := checkpointer.latest()) is None:
        return 0, [], 0.0, None
    start, state = found
    for key, module in modules.items():
        module.load_state_dict(state[key])
    return start, list(state["history"]), float(state["seconds"]), state["arch_loss"]


def _weight_step(net: Supernet, gates: PathGates, opt: torch.optim.Optimizer, loss_fn: nn.Module,
                 data: Data, step: int, config: ProxylessConfig) -> float:
    """One update of the supernet's weights on a training batch, through a path the gates
    sample (uniformly during warm-up); returns the loss."""
    w = config.weights
    for g in opt.param_groups:
        g["lr"] = linear_lr(w.lr, step, config.iterations)
    x, y = data.train.train_batch(step, w.batch_size, seed=w.seed)
    arch = gates.sample(torch.Generator().manual_seed(step_seed(w.seed, step, _PATHS)),
                        uniform=step < config.warmup_iterations)
    torch.manual_seed(step_seed(w.seed, step, _DROPOUT))
    loss = loss_fn(net(x, arch), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def proxyless_search(
    layout: Layout,
    space: SearchSpace,
    data: Data,
    table: LatencyTable,
    budget_ms: float,
    config: ProxylessConfig,
    *,
    latency: LatencyFn | None = None,
    supernet: Supernet | None = None,
    checkpointer: Checkpointer | None = None,
    description: str = "proxyless",
    stop_after: int | None = None,
) -> ProxylessResult:
    """Trains supernet weights (``data.train``) and path gates (``data.val``) jointly and
    returns the derived architecture, which meets ``budget_ms`` under ``latency`` (default: the
    table sum). ``supernet`` (trained in place) defaults to a fresh one seeded by the config.
    Resumes from ``checkpointer``'s newest checkpoint; all randomness depends only on
    (seed, step), so a resumed run equals a straight one. ``stop_after`` ends after that step.
    """
    _check_budget(space, table, budget_ms, config)
    expected = ExpectedLatency(space, table)
    latency = latency or table.arch_latency
    w = config.weights
    set_threads(w.threads)
    if supernet is None:
        torch.manual_seed(w.seed)
        supernet = Supernet(layout, space)
    elif supernet.space != space:
        raise ValueError("the supernet was built for another search space")
    net = supernet
    gates = PathGates(space)
    opt = torch.optim.SGD(param_groups(net, w.weight_decay), lr=w.lr, momentum=w.momentum,
                          nesterov=False)
    arch_opt = torch.optim.Adam(gates.parameters(), lr=config.arch_lr, betas=config.arch_betas,
                                eps=config.arch_eps, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=w.label_smoothing)
    arch_bs = config.arch_batch_size or w.batch_size
    modules: dict[str, Any] = {"model": net, "optimizer": opt, "gates": gates,
                               "arch_optimizer": arch_opt}
    start, history, prior_s, arch_loss = _resume(checkpointer, modules)
    net.train()
    t0 = time.perf_counter()
    end = config.iterations if stop_after is None else min(config.iterations, stop_after)
    loss_val = float("nan")
    with progress.task(description, total=config.iterations, completed=start) as bar:
        for step in range(start, end):
            loss_val = _weight_step(net, gates, opt, loss_fn, data, step, config)
            if config.is_arch_step(step):
                xa, ya = data.val.train_batch(config.arch_update_index(step), arch_bs, seed=w.seed)
                torch.manual_seed(step_seed(w.seed, step, _ARCH_DROPOUT))
                loss_of = partial(_search_loss, net=net, layers=gates.layers, x=xa, y=ya,
                                  expected=expected, target_ms=budget_ms, cfg=config)
                arch_loss = gate_update(
                    gates, arch_opt, loss_of, mode=config.binary_mode,
                    gen=torch.Generator().manual_seed(step_seed(w.seed, step, _GATES)))
            done = step + 1
            with torch.no_grad():
                e_lat = float(expected(gates.probs()))
            if done % config.history_every == 0 or done == config.iterations:
                history.append({"step": done, "expected_latency_ms": e_lat, "loss": loss_val,
                                "arch_loss": arch_loss})
            if checkpointer is not None and (done % w.checkpoint_every == 0 or done == end):
                checkpointer.save(done, {
                    "step": done, **{k: m.state_dict() for k, m in modules.items()},
                    "history": history, "arch_loss": arch_loss,
                    "seconds": prior_s + time.perf_counter() - t0})
            bar.advance(1, loss=loss_val, exp_ms=e_lat)
    seconds = prior_s + time.perf_counter() - t0
    arch, fallback = derive_arch(gates, table, budget_ms=budget_ms, latency=latency)
    with torch.no_grad():
        e_final = float(expected(gates.probs()))
    n_updates = sum(config.is_arch_step(s) for s in range(end))
    return ProxylessResult(
        arch=arch, argmax_arch=gates.argmax(), fallback=fallback, latency_ms=float(latency(arch)),
        table_latency_ms=table.arch_latency(arch), expected_latency_ms=e_final,
        budget_ms=budget_ms, probabilities=gates.probabilities(), history=history,
        iterations=end, resumed_from=start, arch_updates=n_updates, seconds=seconds)

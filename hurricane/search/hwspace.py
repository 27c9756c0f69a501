"""HURRICANE's hardware-aware search space (Eq. 2): per layer, the top-p ops by
(FLOPs × Params)^α / latency on the target device, plus an exploring op in the last layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hurricane.latency.profiling import LatencyTable
from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.flops import op_cost

EXPLORE_RULES = ("bounded", "capacity", "next")


@dataclass(frozen=True)
class HardwareSpace:
    """The generated space with what it was made from (scores, capacities, choices)."""

    space: SearchSpace
    scores: dict[int, dict[str, float]]  # Eq. 2 per layer and op
    capacity: dict[int, dict[str, float]]  # FLOPs × Params per layer and op
    exploring: dict[int, str]  # layer -> the exploring op added there
    alpha: float
    device: str
    explore_rule: str = "bounded"

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "alpha": self.alpha, "explore_rule": self.explore_rule,
                **self.space.to_json(),
                "exploring": {str(k): v for k, v in self.exploring.items()},
                "scores": {str(k): v for k, v in self.scores.items()}}

    @property
    def a_win0(self) -> tuple[str, ...]:
        """Algorithm 1's start: the top-scored op of every layer."""
        return tuple(max(self.scores[i], key=self.scores[i].__getitem__)
                     for i in range(self.space.num_layers))


def layer_capacity(layout: Layout, ops: Sequence[str]) -> dict[int, dict[str, float]]:
    """FLOPs (multiply-adds) × parameters of each op at each layer's shape."""
    out: dict[int, dict[str, float]] = {}
    for s in layout.layers:
        out[s.index] = {}
        for op in ops:
            c = op_cost(op, s.cin, s.cout, s.stride, s.in_hw, s.shortcut)
            out[s.index][op] = float(c.macs) * float(c.params)
    return out


def eq2_scores(capacity: dict[int, dict[str, float]], table: LatencyTable,
               alpha: float) -> dict[int, dict[str, float]]:
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    return {i: {op: cap ** alpha / max(table.layer_ms(i, op), 1e-9) for op, cap in ops.items()}
            for i, ops in capacity.items()}


def exploring_op(rest: Sequence[str], chosen: Sequence[str], capacity: dict[str, float],
                 scores: dict[str, float], latency: dict[str, float], rule: str) -> str:
    """The exploring op of one layer, picked from the ops not in the top p.

    ``capacity``: the highest FLOPs × Params of the rest (METHOD.md's literal rule; on every
    backend measured here that is the slowest op, MB_7_6_SE). ``next``: the next-ranked op by
    Eq. 2. ``bounded`` (default): the highest FLOPs × Params among the rest that is no slower
    than the slowest op already chosen in that layer (the paper: "contribute small to the
    latency but impact largely on the accuracy"), else the next-ranked op.
    """
    if rule == "capacity":
        return max(rest, key=lambda o: (capacity[o], o))
    if rule == "next":
        return min(rest, key=lambda o: (-scores[o], o))
    if rule == "bounded":
        limit = max(latency[o] for o in chosen)
        fits = [o for o in rest if latency[o] <= limit]
        if fits:
            return max(fits, key=lambda o: (capacity[o], o))
        return min(rest, key=lambda o: (-scores[o], o))
    raise ValueError(f"explore_rule must be one of {', '.join(EXPLORE_RULES)}; got {rule!r}")


def hardware_space(layout: Layout, table: LatencyTable, ops: Sequence[str], *, alpha: float,
                   top_p: int = 4, explore_layers: int = 4,
                   explore_rule: str = "bounded") -> HardwareSpace:
    """Eq. 2 selection: top ``top_p`` per layer; in the last ``explore_layers`` layers one more
    op for accuracy, picked by ``explore_rule`` (see :func:`exploring_op`)."""
    if top_p < 1:
        raise ValueError(f"top_p must be at least 1, got {top_p}")
    if explore_rule not in EXPLORE_RULES:
        raise ValueError(f"explore_rule must be one of {', '.join(EXPLORE_RULES)}; "
                         f"got {explore_rule!r}")
    capacity = layer_capacity(layout, ops)
    scores = eq2_scores(capacity, table, alpha)
    n = layout.num_layers
    choices: list[tuple[str, ...]] = []
    exploring: dict[int, str] = {}
    for i in range(n):
        ranked = sorted(ops, key=lambda o, i=i: (-scores[i][o], o))  # type: ignore[misc]
        chosen = ranked[:top_p]
        rest = ranked[top_p:]
        if i >= n - explore_layers and rest:
            lat = {o: table.layer_ms(i, o) for o in ops}
            extra = exploring_op(rest, chosen, capacity[i], scores[i], lat, explore_rule)
            exploring[i] = extra
            chosen = [*chosen, extra]
        choices.append(tuple(chosen))
    return HardwareSpace(SearchSpace(tuple(choices)), scores, capacity, exploring, alpha,
                         table.device, explore_rule)


def plot_heatmap(hw: HardwareSpace, path: str | Path) -> Path:
    """Per-layer heatmap of Eq. 2 scores (normalised per layer), chosen ops boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ops = list(next(iter(hw.scores.values())))
    n = hw.space.num_layers
    grid = np.array([[hw.scores[i][o] for o in ops] for i in range(n)])
    grid = grid / grid.max(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(ops) + 2), max(3, 0.3 * n + 1.5)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    for i in range(n):
        for j, o in enumerate(ops):
            if o in hw.space.choices[i]:
                color = "red" if hw.exploring.get(i) == o else "white"
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec=color, lw=1.5))
    ax.set_xticks(range(len(ops)), ops, rotation=90, fontsize=7)
    ax.set_yticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
    ax.set_xlabel("operator")
    ax.set_ylabel("learnable layer")
    ax.set_title(f"Eq. 2 scores on {hw.device} (α={hw.alpha}); boxes: chosen, red: exploring")
    fig.colorbar(im, ax=ax, label="score / layer max")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

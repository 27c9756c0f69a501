"""One proxy device (Lu et al.): cross-device latency rank correlation, reuse-or-adapt, adapted predictor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import spearmanr

from hurricane.latency.predictor import FLOOR_FRACTION, LatencyPredictor, Predictor, measured_latencies

FORMAT = "hurricane.adapted-predictor/1"
MATRIX_FORMAT = "hurricane.latency-srcc/1"
MIN_COMMON = 3  # architectures two devices need in common for an SRCC


# ----- latency monotonicity -----
def srcc(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[float, int]:
    """Spearman rank correlation over the rows both measured (NaN = missing); NaN below 3 rows."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"latency vectors must be 1-D and aligned, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_COMMON or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), n
    return float(spearmanr(x[ok], y[ok]).statistic), n


def srcc_matrix(latencies: Mapping[str, Sequence[float] | np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Devices' names and their pairwise SRCC; rows of every vector are the same architectures."""
    names, m, _ = srcc_matrix_counts(latencies)
    return names, m


def srcc_matrix_counts(latencies: Mapping[str, Sequence[float] | np.ndarray]
                       ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``srcc_matrix`` plus how many architectures each pair had in common."""
    names = list(latencies)
    if len(names) < 2:
        raise ValueError(f"correlation needs at least 2 devices, got {len(names)}")
    cols = [np.asarray(latencies[d], dtype=float) for d in names]
    rows = {c.shape for c in cols}
    if len(rows) != 1 or next(iter(rows)) == () or len(next(iter(rows))) != 1:
        shown = ", ".join(f"{d}: {np.shape(c)}" for d, c in zip(names, cols, strict=True))
        raise ValueError(f"every device needs one latency per architecture (same rows); got {shown}")
    m, n = np.eye(len(names)), np.zeros((len(names), len(names)), dtype=np.int64)
    for i in range(len(names)):
        n[i, i] = int(np.isfinite(cols[i]).sum())
        for j in range(i + 1, len(names)):
            m[i, j], n[i, j] = srcc(cols[i], cols[j])
            m[j, i], n[j, i] = m[i, j], n[i, j]
    return names, m, n


@dataclass(frozen=True)
class Decision:
    """What to do for a target: reuse the proxy's Pareto architectures, or adapt its predictor."""

    action: Literal["reuse", "adapt"]
    srcc: float
    threshold: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "srcc": None if math.isnan(self.srcc) else self.srcc}


def choose_adaptation(srcc_value: float, threshold: float = 0.9) -> Decision:
    """Strong monotonicity (SRCC >= threshold) keeps the proxy's ranking; weaker adapts it."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    s = float(srcc_value)
    if math.isnan(s):
        return Decision("adapt", s, threshold, "no SRCC with the proxy (too few common "
                        "architectures or constant latencies): adapt the proxy predictor")
    if s >= threshold:
        return Decision("reuse", s, threshold, f"SRCC {s:.3f} >= {threshold}: strong latency "
                        "monotonicity, reuse the proxy's Pareto architectures (re-measure them here)")
    return Decision("adapt", s, threshold, f"SRCC {s:.3f} < {threshold}: weak latency "
                    "monotonicity, adapt the proxy predictor with target measurements")


def decide(proxy_ms: Sequence[float] | np.ndarray, target_ms: Sequence[float] | np.ndarray,
           threshold: float = 0.9) -> Decision:
    """``choose_adaptation`` on the SRCC of the same architectures on proxy and target."""
    return choose_adaptation(srcc(proxy_ms, target_ms)[0], threshold)


def proxy_decisions(names: Sequence[str], matrix: np.ndarray, proxy: str,
                    threshold: float = 0.9) -> dict[str, Decision]:
    """The decision for every other device of a correlation matrix, with ``proxy`` as the proxy."""
    names = list(names)
    if proxy not in names:
        raise ValueError(f"proxy {proxy!r} is not among the devices: {', '.join(names)}")
    p = names.index(proxy)
    return {d: choose_adaptation(float(matrix[p, j]), threshold)
            for j, d in enumerate(names) if j != p}



def matrix_json(names: Sequence[str], matrix: np.ndarray, counts: np.ndarray | None = None,
                **extra: Any) -> dict[str, Any]:
    """A correlation matrix as JSON (NaN -> null), rows and columns in ``names`` order."""
    def clean(v: float) -> float | None:
        return None if not math.isfinite(float(v)) else round(float(v), 6)

    out: dict[str, Any] = {"format": MATRIX_FORMAT, "devices": list(names),
                           "srcc": [[clean(v) for v in row] for row in np.asarray(matrix)]}
    if counts is not None:
        out["common_architectures"] = np.asarray(counts).astype(int).tolist()
    return {**out, **extra}


def draw_matrix(ax: Any, names: Sequence[str], matrix: np.ndarray, *, title: str,
                cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                xlabel: str = "", ylabel: str = "", label: str = "SRCC") -> Any:
    """One annotated heatmap on a matplotlib axis (rows: first device, columns: second)."""
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax)
    n = len(names)
    small = 8 if n <= 8 else 7 if n <= 14 else 6
    lo, hi = im.get_clim()
    for i in range(n):
        for j in range(m.shape[1]):
            v = m[i, j]
            if math.isfinite(v):
                light = (v - lo) / ((hi - lo) or 1.0) > 0.6 if cmap == "viridis" else abs(v) < 0.6 * hi
                text = f"{v:.2f}"
                if text.lstrip("-").startswith("0."):  # ".93": 18 columns still fit
                    text = text.replace("0.", ".", 1)
                ax.text(j, i, text, ha="center", va="center", fontsize=small - 1,
                        color="black" if light else "white")
    # names are shown as written: '$' never starts matplotlib's math text (which can fail)
    ax.set_xticks(range(m.shape[1]), list(names)[:m.shape[1]], rotation=90, fontsize=small + 1,
                  parse_math=False)
    ax.set_yticks(range(n), list(names), fontsize=small + 1, parse_math=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label=label)
    return im


def plot_srcc(names: Sequence[str], matrix: np.ndarray, path: str | Path, *,
              title: str = "Latency monotonicity: SRCC between devices") -> Path:
    """Writes a PNG heatmap of an SRCC matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.45 * n + 3), max(3.5, 0.45 * n + 2)))
    draw_matrix(ax, names, matrix, title=title, vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----- proxy adaptation -----
_BLOCKS = ("per_layer_op", "per_op", "onehot", "op_pairs")


@dataclass(frozen=True)
class AdaptConfig:
    """Which departures from the proxy model a target may take, and the penalties tried for each.

    The target model is ``c + a·g(x) + x·(w ⊙ b) + x·d + q(op counts)``: ``g`` the proxy
    predictor (log ms for a log-target proxy), ``w`` its (layer, op) weights, so the main
    weights become ``w ⊙ (a + b)`` as in the paper. ``a`` and ``c`` are free; ``b``, ``d`` and
    ``q`` have ridge penalties picked by leave-one-out error on the target samples (closed form),
    including an infinite one that switches a term off.
    """

    # b: every (layer, op) weight of the proxy re-scaled on its own (the paper's term)
    per_layer_op: bool = True
    # b shared by all layers of one op name: an op that is slow on the target is slow everywhere
    per_op: bool = True
    # d: additive (layer, op) corrections, for ops the proxy prices near zero
    onehot: bool = True
    # q: products of op counts (op-pair interactions; NB201 cells are far from additive)
    op_pairs: bool = True
    # How the proxy's (layer, op) weights are anchored before re-scaling: a one-hot model knows
    # them only up to a constant per layer. "fitted": as the ridge fit left them (about centred
    # per layer); "min": the cheapest op of a layer costs 0, closer to absolute op costs, which
    # is what a per-op slowdown scales (better on synthetic per-op slowdowns, a little worse on
    # NAS-Bench-201: bench/one_proxy_nb201.py --ablations).
    gauge: Literal["min", "fitted"] = "fitted"
    penalties: tuple[float, ...] = tuple(float(v) for v in np.logspace(-3, 3, 13))
    sweeps: int = 2

    def __post_init__(self) -> None:
        if not self.penalties or not all(math.isfinite(p) and p > 0 for p in self.penalties):
            raise ValueError(f"penalties must be finite and > 0, got {self.penalties}")
        if self.sweeps < 1:
            raise ValueError(f"sweeps must be >= 1, got {self.sweeps}")
        if self.gauge not in ("min", "fitted"):
            raise ValueError(f"gauge must be 'min' or 'fitted', got {self.gauge!r}")

    @property
    def blocks(self) -> tuple[str, ...]:
        return tuple(b for b in _BLOCKS if getattr(self, b))


def _loo_scores(U: np.ndarray, K: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean squared leave-one-out error of ``y = U·β + f + noise`` with ``f ~ N(0, K[g])``, per
    candidate ``g`` (closed form: residual_i / R_ii with R = (I - H))."""
    k = y.shape[0]
    A = K + np.eye(k)[None]
    Ai = np.linalg.inv(A)
    AiU = Ai @ U
    M = np.linalg.pinv(U.T[None] @ AiU)
    R = Ai - AiU @ M @ np.swapaxes(AiU, 1, 2)
    e = R @ y
    d = np.maximum(np.diagonal(R, axis1=1, axis2=2), 1e-12)
    return np.asarray(((e / d) ** 2).mean(axis=1))


class AdaptedPredictor(Predictor):
    """A fitted proxy ``LatencyPredictor`` re-weighted for a target from a few measurements.

    Same call shapes as ``LatencyPredictor`` (``fit``/``fit_indices``, ``predict``,
    ``predict_indices``, ``to_json``/``from_json``), so it plugs into evolution like any
    predictor. Works for any space of per-layer op choices: op names shared by layers are
    what ``per_op`` and ``op_pairs`` tie together.
    """

    def __init__(self, proxy: LatencyPredictor, *, config: AdaptConfig | None = None) -> None:
        if not proxy.fitted:
            raise ValueError("the proxy predictor is not fitted; fit it on the proxy's measurements first")
        self.proxy = proxy
        self.config = config or AdaptConfig()
        self.choices = proxy.choices
        self.num_layers = len(self.choices)
        self.log_target = bool(proxy.config.log_target)
        sizes = np.array([len(c) for c in self.choices], dtype=np.int64)
        self._off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._n_main = int(sizes.sum())
        self._w = np.asarray(proxy.to_json()["weights"]["main"], dtype=float)
        if self._w.shape != (self._n_main,):
            raise ValueError("the proxy's weights do not match its search space")
        if self.config.gauge == "min":
            self._w = self._w - np.repeat(np.minimum.reduceat(self._w, self._off), sizes)
        vocab: dict[str, int] = {}
        self._op_id = np.array([vocab.setdefault(op, len(vocab)) for c in self.choices for op in c],
                               dtype=np.int64)
        self.ops = tuple(vocab)
        # fitted state
        self.scale_ = 1.0  # a
        self.intercept_ = 0.0  # c
        self.b_: np.ndarray | None = None  # per (layer, op): target weight = w ⊙ (a + b)
        self._delta: np.ndarray | None = None  # all (layer, op) corrections: w ⊙ b + d
        self._pairs: np.ndarray | None = None  # (ops, ops) symmetric weights of count products
        self.penalties_: dict[str, float | None] = {}
        self.loo_rmse_: float | None = None
        self.n_train = 0
        self.floor_ms = 0.0

    # ----- features -----
    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self.proxy.encode(archs)

    def _proxy_out(self, idx: np.ndarray) -> np.ndarray:
        p = self.proxy.predict_indices(idx)  # also validates idx
        return np.log(p) if self.log_target else p

    def _onehot(self, idx: np.ndarray) -> np.ndarray:
        x = np.zeros((idx.shape[0], self._n_main))
        x[np.arange(idx.shape[0])[:, None], idx + self._off] = 1.0
        return x

    def _counts(self, idx: np.ndarray) -> np.ndarray:
        c = np.zeros((idx.shape[0], len(self.ops)))
        rows = np.arange(idx.shape[0])
        for layer in range(self.num_layers):
            c[rows, self._op_id[idx[:, layer] + self._off[layer]]] += 1.0
        return c

    def _pair_features(self, counts: np.ndarray) -> np.ndarray:
        v = counts.shape[1]
        a, b = np.triu_indices(v)
        q = counts[:, a] * counts[:, b]
        diag = a == b
        q[:, diag] = counts * (counts - 1) / 2  # pairs of layers with the same op
        return q

    def _raw_blocks(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        x = self._onehot(idx)
        out: dict[str, np.ndarray] = {}
        if self.config.per_layer_op:
            out["per_layer_op"] = x * self._w
        if self.config.per_op:
            out["per_op"] = (x * self._w) @ np.eye(len(self.ops))[self._op_id]
        if self.config.onehot:
            out["onehot"] = x
        if self.config.op_pairs:
            out["op_pairs"] = self._pair_features(self._counts(idx))
        return out

    # ----- fit -----
    def fit(self, archs: Sequence[Any], latencies_ms: Sequence[float] | np.ndarray) -> AdaptedPredictor:
        return self.fit_indices(self.encode(archs), latencies_ms)

    def fit_indices(self, idx: np.ndarray, latencies_ms: Sequence[float] | np.ndarray) -> AdaptedPredictor:
        """Fits a, c and the penalised terms on k target measurements of architectures ``idx``."""
        idx = np.asarray(idx)
        s = self._proxy_out(idx)
        idx = idx.astype(np.int64)
        y = measured_latencies(latencies_ms, idx.shape[0], 3,
                               "adaptation needs at least 3 target measurements")
        # as in LatencyPredictor: a raw-ms model must not extrapolate to <= 0 ms
        self.floor_ms = FLOOR_FRACTION * float(y.min())
        if self.log_target:
            y = np.log(y)
        sd = float(y.std()) or 1.0
        U = np.column_stack([np.ones_like(s), s])
        slope = float(np.linalg.lstsq(U, y, rcond=None)[0][1])
        # b is relative to the global scale: the scaled terms enter as a0·w·x
        a0 = slope if math.isfinite(slope) and slope > 0 else (sd / (float(s.std()) or 1.0))
        raw = self._raw_blocks(idx)
        factor: dict[str, float] = {}
        feats: dict[str, np.ndarray] = {}
        for name, f in raw.items():
            mult = (a0 if name in ("per_layer_op", "per_op") else 1.0) / sd
            unit = math.sqrt(float((f * mult).var(axis=0).sum())) or 1.0  # penalty 1 ~ variance of y
            factor[name] = mult / unit
            feats[name] = f * factor[name]
        names = list(feats)
        kern = {n: feats[n] @ feats[n].T for n in names}
        yn, Un = y / sd, U / sd
        cand = np.array([*self.config.penalties, np.inf])
        lam = {n: 1.0 for n in names}
        best = float("inf")
        for _ in range(self.config.sweeps):
            for n in names:
                rest = sum((kern[m] / lam[m] for m in names if m != n), np.zeros((y.size, y.size)))
                K = rest[None] + kern[n][None] / cand[:, None, None]
                scores = _loo_scores(Un, K, yn)
                j = int(np.argmin(scores))
                lam[n], best = float(cand[j]), float(scores[j])
        K = sum((kern[m] / lam[m] for m in names), np.zeros((y.size, y.size)))
        Ai = np.linalg.inv(K + np.eye(y.size))
        AiU = Ai @ Un
        beta = np.linalg.pinv(Un.T @ AiU) @ (AiU.T @ yn)
        alpha = Ai @ (yn - Un @ beta)
        theta = {n: sd * factor[n] * (feats[n].T @ alpha) / lam[n] for n in names}  # raw-feature coefs
        zero_main, zero_ops = np.zeros(self._n_main), np.zeros(len(self.ops))
        b = theta.get("per_layer_op", zero_main) + theta.get("per_op", zero_ops)[self._op_id]
        self.intercept_, self.scale_ = float(beta[0]), float(beta[1])
        self.b_ = b
        self._delta = self._w * b + theta.get("onehot", zero_main)
        v = len(self.ops)
        pairs = np.zeros((v, v))
        if "op_pairs" in theta:
            a_i, b_i = np.triu_indices(v)
            pairs[a_i, b_i] = theta["op_pairs"]
            pairs = pairs + np.triu(pairs, 1).T
        self._pairs = pairs
        self.penalties_ = {n: (None if math.isinf(lam[n]) else lam[n]) for n in names}
        self.loo_rmse_ = math.sqrt(best) * sd if math.isfinite(best) else None
        self.n_train = int(y.size)
        return self

    @property
    def fitted(self) -> bool:
        return self._delta is not None

    # ----- predict -----
    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Latency (ms) for an (n, layers) int matrix of op indices."""
        if self._delta is None or self._pairs is None:
            raise ValueError("the adapted predictor is not fitted; call fit() (or from_json()) first")
        idx = np.asarray(idx)
        out = self.intercept_ + self.scale_ * self._proxy_out(idx)
        idx = idx.astype(np.int64)
        out += self._delta[idx + self._off].sum(axis=1)
        if np.any(self._pairs):
            c = self._counts(idx)
            half = self._pairs / 2
            out += ((c @ half) * c).sum(axis=1) - c @ np.diag(half)
        out = np.exp(out) if self.log_target else out
        return np.maximum(out, self.floor_ms, out=out)

    # ----- persistence -----
    def to_json(self) -> dict[str, Any]:
        if self._delta is None or self._pairs is None or self.b_ is None:
            raise ValueError("the adapted predictor is not fitted; nothing to save")
        cfg = asdict(self.config)
        cfg["penalties"] = list(self.config.penalties)
        return {"format": FORMAT, "proxy": self.proxy.to_json(), "config": cfg,
                "weights": {"scale": self.scale_, "intercept": self.intercept_,
                            "b": self.b_.tolist(), "delta": self._delta.tolist(),
                            "op_pairs": self._pairs.tolist()},
                "ops": list(self.ops), "penalties": self.penalties_, "loo_rmse": self.loo_rmse_,
                "n_train": self.n_train, "floor_ms": self.floor_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AdaptedPredictor:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a saved adapted predictor (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        cfg = dict(d["config"])
        cfg["penalties"] = tuple(float(p) for p in cfg["penalties"])
        pred = cls(LatencyPredictor.from_json(d["proxy"]), config=AdaptConfig(**cfg))
        w = d["weights"]
        delta, b = np.asarray(w["delta"], dtype=float), np.asarray(w["b"], dtype=float)
        pairs = np.asarray(w["op_pairs"], dtype=float)
        v = len(pred.ops)
        if delta.shape != (pred._n_main,) or b.shape != (pred._n_main,) or pairs.shape != (v, v) \
                or list(d["ops"]) != list(pred.ops):
            raise ValueError("saved adaptation weights do not match the proxy's search space")
        pred._delta, pred.b_, pred._pairs = delta, b, pairs
        pred.scale_, pred.intercept_ = float(w["scale"]), float(w["intercept"])
        pred.penalties_ = dict(d.get("penalties", {}))
        pred.loo_rmse_ = d.get("loo_rmse")
        pred.n_train = int(d.get("n_train", 0))
        pred.floor_ms = float(d.get("floor_ms", 0.0))
        return pred

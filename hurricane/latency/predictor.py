"""Fast architecture-latency predictor: Bayesian ridge on (layer, op) one-hots, torch-free."""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

FORMAT = "hurricane.latency-predictor/2"
FLOOR_FRACTION = 0.25  # of the fastest measured latency
FORMATS = ("hurricane.latency-predictor/1", FORMAT)  # /1: a fixed configuration, no selection

# Scale given to the standardised table-sum feature: a large feature value means a small weight, so
# the single ridge prior (sized for the one-hot corrections) barely shrinks the table term.
_TABLE_SCALE = 10.0
# Interaction strengths tried when the configuration leaves it open (0: additive).
PAIR_SCALES = (0.0, 0.03, 0.1, 0.3)


@dataclass(frozen=True)
class PredictorConfig:
    """Model choices. ``None`` leaves a choice to the device's own samples: every candidate
    configuration is fitted and the one with the lowest leave-one-out MAPE is kept (exact
    leave-one-out for a ridge fit: one eigendecomposition per candidate kernel)."""

    # Fit log latency: layer costs then act multiplicatively, which matches devices whose per-layer
    # cost depends on the rest of the network, and relative (MAPE) errors are what we report.
    log_target: bool | None = None
    # Pairwise (layer i, op a) x (layer j, op b) one-hots, multiplied by this factor: the prior
    # scale of interactions relative to main effects. 0 gives the purely additive model. The
    # pairs are never materialised: the fit works on the n x n kernel they induce.
    pair_scale: float | None = None
    max_iter: int = 300
    # With a layer table: use its sum as an offset (the prior mean), so the one-hots learn only
    # corrections to it, or (False) as an ordinary standardised feature.
    table_offset: bool | None = None
    # Refit once without samples the timing protocol flagged (outlying repeats, wide IQR)
    # whose leave-one-out error is also an outlier (beyond ``flagged_z`` robust standard
    # deviations), at most ``max_dropped`` of them. ``outlier_z`` also drops unflagged
    # samples that far out (None: never; on noisy phones unusual samples are usually real:
    # dropping them cost up to 0.6 points of MAPE on NAS-Bench-201 at n = 50).
    robust: bool = True
    outlier_z: float | None = None
    flagged_z: float = 3.0
    max_dropped: float = 0.1
    # A configuration other than the plain one (additive, raw target, no table) replaces it
    # only when its leave-one-out errors are lower by at least ``min_t`` standard errors of
    # the per-sample difference (a paired test): small-sample selection noise must not make
    # the predictor worse than the plain baseline.
    min_t: float = 3.0
    # With a cell graph (``LatencyPredictor(graph=…)``): encode each architecture as the cell
    # the hardware computes, an edge whose input is dead or whose output is unused counting as
    # its "none" op (None: chosen per device like the rest; some toolchains prune such edges,
    # others compute them on zeros).
    prune: bool | None = None

    def __post_init__(self) -> None:
        if self.pair_scale is not None and (not math.isfinite(self.pair_scale)
                                            or self.pair_scale < 0):
            raise ValueError(f"pair_scale must be finite and >= 0, got {self.pair_scale}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        if not 0 <= self.max_dropped < 0.5:
            raise ValueError(f"max_dropped must be in [0, 0.5), got {self.max_dropped}")

    def candidates(self, with_table: bool,
                   with_graph: bool = False) -> list[tuple[bool, float, bool, bool]]:
        """(log_target, pair_scale, table_offset, prune) combinations to try."""
        logs = [self.log_target] if self.log_target is not None else [False, True]
        pairs = [self.pair_scale] if self.pair_scale is not None else list(PAIR_SCALES)
        offsets = ([self.table_offset] if self.table_offset is not None else [True, False]) \
            if with_table else [False]
        prunes = ([self.prune] if self.prune is not None else [False, True]) \
            if with_graph else [False]
        return [(lg, ps, off, pr) for pr in prunes for ps in pairs for off in offsets
                for lg in logs]


@dataclass(frozen=True)
class CellGraph:
    """The wiring of a cell search space (NAS-Bench-201-style): layer ``i`` of the space is the
    edge ``edges[i] = (src, dst)`` of a DAG whose node 0 is the cell's input and whose highest
    node is its output; ``none_op`` is the op that means "no edge". ``prune`` maps op indices
    to the cell the hardware computes: an edge is live when its op is not "none", its source
    is reachable from the input and its destination reaches the output; every other edge
    becomes "none" (architectures that differ only in dead edges compute the same cell)."""

    edges: tuple[tuple[int, int], ...]
    none_op: str = "none"

    def __post_init__(self) -> None:
        if not self.edges:
            raise ValueError("a cell graph needs at least one edge")
        for s_, d in self.edges:
            if not 0 <= s_ < d:
                raise ValueError(f"edge ({s_}, {d}): edges run from a lower to a higher node")

    def none_indices(self, choices: Sequence[Sequence[str]]) -> np.ndarray:
        if len(choices) != len(self.edges):
            raise ValueError(f"the cell graph has {len(self.edges)} edges; the space has "
                             f"{len(choices)} layers")
        out = []
        for i, layer in enumerate(choices):
            if self.none_op not in layer:
                raise ValueError(f"layer {i} (edge {self.edges[i]}) has no {self.none_op!r} op")
            out.append(list(layer).index(self.none_op))
        return np.array(out, dtype=np.int64)

    def prune(self, idx: np.ndarray, none: np.ndarray) -> np.ndarray:
        on = idx != none  # (n, edges)
        last = max(d for _, d in self.edges)
        reach = {0: np.ones(idx.shape[0], dtype=bool)}
        for j in range(1, last + 1):
            r = np.zeros(idx.shape[0], dtype=bool)
            for e, (s_, d) in enumerate(self.edges):
                if d == j and s_ in reach:
                    r |= on[:, e] & reach[s_]
            reach[j] = r
        used = {last: np.ones(idx.shape[0], dtype=bool)}
        for i in range(last - 1, -1, -1):
            u = np.zeros(idx.shape[0], dtype=bool)
            for e, (s_, d) in enumerate(self.edges):
                if s_ == i:
                    u |= on[:, e] & used.get(d, np.zeros(idx.shape[0], dtype=bool))
            used[i] = u
        live = np.stack([on[:, e] & reach[s_] & used[d]
                         for e, (s_, d) in enumerate(self.edges)], axis=1)
        return np.where(live, idx, none[None, :])


@dataclass
class _DualFit:
    """A Bayesian ridge fit in the dual: coefficients over the training samples."""

    a: np.ndarray  # dual coefficients (n,)
    y_mean: float
    alpha: float
    lam: float
    loo: np.ndarray  # leave-one-out residuals in target units (n,)


def _bayes_ridge_dual(eig: tuple[np.ndarray, np.ndarray], y: np.ndarray, max_iter: int) -> _DualFit:
    """scikit-learn's BayesianRidge (MacKay's evidence updates, same priors) solved with the
    n x n kernel X Xᵀ instead of X: cost n³ whatever the number of features. ``eig`` is the
    eigendecomposition of the centred kernel (``_centred_eig``), shared by every target
    fitted on it."""
    n = y.shape[0]
    e, u = eig
    y_mean = float(y.mean())
    uy = u.T @ (y - y_mean)
    eps = np.finfo(float).eps
    alpha, lam = 1.0 / (float(np.var(y)) + eps), 1.0
    prior = 1e-6  # alpha_1 = alpha_2 = lambda_1 = lambda_2 (scikit-learn's defaults)
    for _ in range(max_iter):
        au = uy / (e + lam / alpha)
        gamma = float(np.sum(alpha * e / (lam + alpha * e)))
        w2 = float(np.sum(e * au * au))
        rss = float(np.sum((uy - e * au) ** 2))
        lam_new = (gamma + 2 * prior) / (w2 + 2 * prior)
        alpha_new = (n - gamma + 2 * prior) / (rss + 2 * prior)
        done = abs(math.log(lam_new / lam)) + abs(math.log(alpha_new / alpha)) < 1e-10
        alpha, lam = alpha_new, lam_new
        if done:
            break
    shrink = e / (e + lam / alpha)
    au = uy / (e + lam / alpha)
    resid = u @ (uy - e * au)
    hat = (u * u) @ shrink + 1.0 / n  # the intercept's share of the hat matrix
    loo = resid / np.clip(1.0 - hat, 1e-9, None)
    return _DualFit(u @ au, y_mean, alpha, lam, loo)


def _centred_eig(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = kernel - kernel.mean(axis=0) - kernel.mean(axis=1)[:, None] + kernel.mean()
    e, u = np.linalg.eigh((k + k.T) / 2)
    return np.clip(e, 0.0, None), u


@dataclass(frozen=True)
class PredictorMetrics:
    """Held-out accuracy: MAPE in percent, share of predictions within ±10% (0..1), Spearman rho."""

    mape: float
    within_10pct: float
    srcc: float
    n: int
    max_ape: float = float("nan")  # largest absolute percentage error, percent


def metrics(pred: Sequence[float] | np.ndarray, true: Sequence[float] | np.ndarray) -> PredictorMetrics:
    """Compares predicted with measured latencies (both in ms, same order)."""
    p = np.asarray(pred, dtype=float).ravel()
    t = np.asarray(true, dtype=float).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} values but true has {t.size}")
    if t.size == 0:
        raise ValueError("metrics need at least one prediction")
    if np.any(t <= 0) or not np.all(np.isfinite(t)):
        raise ValueError("true latencies must be finite and > 0")
    rel = np.abs(p - t) / t
    srcc = float(spearmanr(p, t).statistic) if t.size > 1 else float("nan")
    return PredictorMetrics(mape=float(rel.mean() * 100), within_10pct=float((rel <= 0.10).mean()),
                            srcc=srcc, n=int(t.size), max_ape=float(rel.max() * 100))


def holdout_indices(n: int, holdout: float) -> set[int]:
    """Which of ``n`` measured architectures (in measuring order) are held out for the
    predictor's accuracy: every k-th, k = round(1 / holdout) (at least 2), so drift during the
    measurements hits both sides alike."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    return set(range(0, n, max(2, round(1 / holdout))))


def fit_points(archs: Sequence[Any], measured_ms: Sequence[float],
               predicted_ms: Sequence[float] | np.ndarray,
               table_ms: Sequence[float] | None, test: set[int]) -> list[dict[str, Any]]:
    """One entry per measured architecture: measured, predicted and table-sum latency (ms)
    and whether the predictor was fitted on it (``train``) or held it out (``test``)."""
    table = list(table_ms) if table_ms is not None else [None] * len(archs)
    return [{"arch": str(a), "measured_ms": float(y), "predicted_ms": float(p),
             "table_ms": None if t is None else float(t),
             "split": "test" if i in test else "train"}
            for i, (a, y, p, t) in enumerate(zip(archs, measured_ms, predicted_ms, table,
                                                 strict=True))]


def _choices_of(space: Any) -> tuple[tuple[str, ...], ...]:
    raw = space.choices if hasattr(space, "choices") else space
    choices = tuple(tuple(str(o) for o in layer) for layer in raw)
    if not choices:
        raise ValueError("the search space has no layers")
    for i, layer in enumerate(choices):
        if not layer:
            raise ValueError(f"layer {i} has no candidate operators")
        if len(set(layer)) != len(layer):
            raise ValueError(f"layer {i} repeats an operator: {list(layer)}")
    return choices


def measured_latencies(latencies_ms: Sequence[float] | np.ndarray, n: int, at_least: int,
                       too_few: str) -> np.ndarray:
    """Measured latencies to fit on, one per architecture: at least ``at_least`` of them
    (else ``too_few`` as the error), finite and positive."""
    y = np.asarray(latencies_ms, dtype=float).ravel()
    if y.shape[0] != n:
        raise ValueError(f"{n} architectures but {y.shape[0]} latencies")
    if y.shape[0] < at_least:
        raise ValueError(too_few)
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("latencies must be finite and > 0 ms")
    return y


class Predictor(ABC):
    """What evolution, the budget and the report call on any latency predictor: op indices of
    architectures (``encode``), vectorised predictions from them (``predict_indices``), and
    from these ``predict`` and ``evaluate``. ``LatencyPredictor`` and the one-proxy
    ``AdaptedPredictor`` are the two kinds."""

    floor_ms: float

    @abstractmethod
    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        """Op indices (n, layers) of architectures (objects with ``.ops`` or op-name sequences)."""

    @abstractmethod
    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predicted latency (ms) of each row of op indices."""

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        return self.predict_indices(self.encode(archs))

    def evaluate(self, archs: Sequence[Any], latencies: Sequence[float] | np.ndarray) -> PredictorMetrics:
        return metrics(self.predict(archs), latencies)


class LatencyPredictor(Predictor):
    """Predicts architecture latency (ms) from per-(layer, op) one-hots, their pairwise
    interactions, and optionally a layer table's sum (as an offset or a feature).

    The fit is a Bayesian ridge solved in the dual (the n x n kernel the one-hots and pairs
    induce: two architectures share as many pair features as C(m, 2) for m matching layers),
    so memory and time grow with the samples, not with the (layers x ops)² pair features.
    Open choices (target, interaction strength, table use) are decided per device by exact
    leave-one-out error; samples whose residual is an outlier are dropped once. Predictions
    are one vectorised gather-and-sum (``predict_indices``).
    """

    def __init__(self, choices: Any, *, layer_table: Any = None, fixed_ms: float = 0.0,
                 config: PredictorConfig | None = None, graph: CellGraph | None = None) -> None:
        self.choices = _choices_of(choices)
        self.config = config or PredictorConfig()
        self.graph = graph
        self._none = graph.none_indices(self.choices) if graph is not None else None
        self._prune = False
        if layer_table is not None and hasattr(layer_table, "ops"):  # a LatencyTable, duck-typed
            fixed_ms = float(fixed_ms or getattr(layer_table, "fixed_ms", 0.0))
            layer_table = layer_table.ops
        self.fixed_ms = float(fixed_ms)
        self.num_layers = len(self.choices)
        self._sizes = np.array([len(c) for c in self.choices], dtype=np.int64)
        self._index = [{op: k for k, op in enumerate(c)} for c in self.choices]
        self._main_off = np.concatenate([[0], np.cumsum(self._sizes)[:-1]]).astype(np.int64)
        self._pairs = np.array(list(itertools.combinations(range(self.num_layers), 2)),
                               dtype=np.int64).reshape(-1, 2)
        pair_sizes = self._sizes[self._pairs[:, 0]] * self._sizes[self._pairs[:, 1]]
        self._pair_off = np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]).astype(np.int64)
        self._n_main = int(self._sizes.sum())
        self._n_pair_all = int(pair_sizes.sum())
        self.layer_table: dict[int, dict[str, float]] | None = None
        self._table_flat: np.ndarray | None = None
        if layer_table is not None:
            self.layer_table = self._check_table(layer_table)
            self._table_flat = np.array([self.layer_table[i][op] for i, c in enumerate(self.choices)
                                         for op in c], dtype=float)
        # fitted state
        self.chosen: dict[str, Any] | None = None  # the configuration kept (and why)
        self._main_w: np.ndarray | None = None
        self._pair_w: np.ndarray | None = None
        self._log = bool(self.config.log_target) if self.config.log_target is not None else True
        self._offset = False
        self._table_w = 0.0
        self._table_mu = 0.0
        self._table_sd = 1.0
        self._intercept = 0.0
        self.alpha_: float | None = None
        self.lambda_: float | None = None
        self.n_train = 0
        self.floor_ms = 0.0  # predictions never go below this (see _set_weights)

    # ----- encoding -----
    def _check_table(self, table: Mapping[Any, Mapping[str, float]]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for i, layer in enumerate(self.choices):
            row = table.get(i, table.get(str(i)))  # type: ignore[call-overload]
            if row is None:
                raise ValueError(f"layer_table has no entry for layer {i}")
            missing = [op for op in layer if op not in row]
            if missing:
                raise ValueError(f"layer_table lacks op(s) {missing} at layer {i}")
            out[i] = {op: float(row[op]) for op in layer}
            if not all(math.isfinite(v) for v in out[i].values()):
                raise ValueError(f"layer_table has a non-finite latency at layer {i}")
        return out

    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        """Op indices (n, layers) of architectures given as objects with ``.ops`` or op-name sequences."""
        idx = np.empty((len(archs), self.num_layers), dtype=np.int64)
        for r, arch in enumerate(archs):
            ops = getattr(arch, "ops", arch)
            if isinstance(ops, str):
                raise ValueError(f"architecture {r} is a string; pass a sequence of op names or an Arch")
            ops = tuple(ops)
            if len(ops) != self.num_layers:
                raise ValueError(f"architecture {r} has {len(ops)} layers; the space has {self.num_layers}")
            for i, op in enumerate(ops):
                k = self._index[i].get(op)
                if k is None:
                    raise ValueError(f"architecture {r}: op {op!r} is not allowed at layer {i}; "
                                     f"allowed: {', '.join(self.choices[i])}")
                idx[r, i] = k
        return idx

    def _check_indices(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.ndim != 2 or idx.shape[1] != self.num_layers:
            raise ValueError(f"expected an (n, {self.num_layers}) op-index matrix, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"op indices must be integers, got dtype {idx.dtype}")
        bad = (idx < 0) | (idx >= self._sizes)
        if bad.any():
            r, i = map(int, np.argwhere(bad)[0])
            raise ValueError(f"row {r}: op index {int(idx[r, i])} out of range at layer {i}; "
                             f"allowed 0..{self._sizes[i] - 1} ({', '.join(self.choices[i])})")
        return idx.astype(np.int64, copy=False)

    def _table_raw(self, idx: np.ndarray, log: bool) -> np.ndarray:
        assert self._table_flat is not None
        s = self._table_flat[idx + self._main_off].sum(axis=1) + self.fixed_ms
        if log:
            if np.any(s <= 0):
                raise ValueError("the table sum plus fixed_ms must be > 0 for a log-latency model")
            return np.log(s)
        return s

    def _pair_cols(self, idx: np.ndarray) -> np.ndarray:
        i, j = self._pairs[:, 0], self._pairs[:, 1]
        return idx[:, i] * self._sizes[j] + idx[:, j] + self._pair_off

    def _table_feature(self, idx: np.ndarray, log: bool) -> np.ndarray:
        return (self._table_raw(idx, log) - self._table_mu) / self._table_sd * _TABLE_SCALE

    def features(self, idx: np.ndarray, *, log_target: bool, pair_scale: float,
                 table_offset: bool) -> np.ndarray:
        """The explicit design matrix of a configuration (what the kernel stands for; small
        spaces only: tests compare the dual fit against scikit-learn on it)."""
        idx = self._check_indices(idx)
        n = idx.shape[0]
        cols = [np.zeros((n, self._n_main))]
        cols[0][np.arange(n)[:, None], idx + self._main_off] = 1.0
        if pair_scale > 0:
            p = np.zeros((n, self._n_pair_all))
            p[np.arange(n)[:, None], self._pair_cols(idx)] = pair_scale
            cols.append(p)
        if self._table_flat is not None and not table_offset:
            cols.append(self._table_feature(idx, log_target)[:, None])
        return np.hstack(cols)

    def _kernel(self, idx: np.ndarray, pair_scale: float, table_feature: np.ndarray | None) -> np.ndarray:
        """X Xᵀ without X: m matching layers give m main and C(m, 2) pair matches."""
        m = np.zeros((idx.shape[0], idx.shape[0]))
        for i in range(self.num_layers):
            m += idx[:, i][:, None] == idx[:, i][None, :]
        k = m + (pair_scale ** 2) * m * (m - 1) / 2 if pair_scale > 0 else m.copy()
        if table_feature is not None:
            k += np.outer(table_feature, table_feature)
        return k

    # ----- fit / predict -----
    def fit(self, archs: Sequence[Any], latencies_ms: Sequence[float] | np.ndarray, *,
            flagged: Sequence[bool] | np.ndarray | None = None) -> LatencyPredictor:
        return self.fit_indices(self.encode(archs), latencies_ms, flagged=flagged)

    def fit_indices(self, idx: np.ndarray, latencies_ms: Sequence[float] | np.ndarray, *,
                    flagged: Sequence[bool] | np.ndarray | None = None) -> LatencyPredictor:
        """Fits every open configuration, keeps the one with the lowest leave-one-out MAPE
        (the plain additive raw-target model unless another beats it by ``margin``), drops
        outlying samples once (``flagged``: samples the timing protocol marked as noisy), and
        refits."""
        idx = self._check_indices(idx)
        y = measured_latencies(latencies_ms, idx.shape[0], 2,
                               "fit needs at least 2 measured architectures")
        flags = (np.zeros(y.shape[0], dtype=bool) if flagged is None
                 else np.asarray(flagged, dtype=bool).ravel())
        if flags.shape != y.shape:
            raise ValueError(f"flagged has {flags.size} entries for {y.size} latencies")
        cands = self.config.candidates(self._table_flat is not None, self.graph is not None)
        encodings = {False: idx}
        if any(pr for *_, pr in cands):
            encodings[True] = self._pruned(idx)
        apes: dict[tuple[bool, float, bool, bool], np.ndarray] = {}
        eig_cache: dict[tuple[float, bool, bool], tuple[np.ndarray, np.ndarray]] = {}
        last: tuple[float, bool] | None = None
        for log, ps, off, pr in cands:
            if last != (ps, pr):  # one pair scale and encoding at a time
                eig_cache, last = {}, (ps, pr)
            apes[(log, ps, off, pr)] = self._loo_ape(encodings[pr], y, log, ps, off, eig_cache)
        scores = {c: float(v.mean() * 100) for c, v in apes.items()}
        plain = (False, 0.0, False, False)
        best = min(scores, key=lambda c: scores[c])
        if plain in apes and best != plain:
            d = apes[plain] - apes[best]
            se = float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else math.inf
            if not (se > 0 and float(d.mean()) / se >= self.config.min_t):
                best = plain
        log, ps, off, pr = best
        enc = encodings[pr]
        keep = np.arange(y.shape[0])
        fit = self._fit_config(enc, y, log, ps, off, None)
        dropped: list[int] = []
        if self.config.robust and y.shape[0] >= 10:
            out = self._outliers(enc, apes[best], flags)
            if out.size:
                dropped = sorted(int(i) for i in out)
                keep = np.setdiff1d(keep, out)
                fit = self._fit_config(enc[keep], y[keep], log, ps, off, None)
        self._prune = pr
        self._set_weights(enc[keep], y[keep], log, ps, off, fit)
        graph = self.graph is not None
        self.chosen = {"log_target": log, "pair_scale": ps, "table_offset": off,
                       **({"prune": pr} if graph else {}),
                       "loo_mape": round(scores[best], 4),
                       "plain_loo_mape": round(scores[plain], 4) if plain in scores else None,
                       "candidates": {f"log={lg} pairs={p} offset={o}"
                                      + (f" prune={r}" if graph else ""): round(v, 4)
                                      for (lg, p, o, r), v in scores.items()},
                       "dropped": dropped, "flagged": int(flags.sum())}
        return self

    def _pruned(self, idx: np.ndarray) -> np.ndarray:
        assert self.graph is not None and self._none is not None
        return self.graph.prune(idx, self._none)

    def _outliers(self, idx: np.ndarray, ape: np.ndarray, flags: np.ndarray) -> np.ndarray:
        """Samples to drop: flagged by the timing protocol with a leave-one-out error beyond
        ``flagged_z`` robust standard deviations and above 5% (or, with ``outlier_z``, any
        sample that far out and above 25%), never one that holds the only example of a
        (layer, op), at most ``max_dropped`` of the samples."""
        c = self.config
        centre = float(np.median(ape))
        scale = 1.4826 * float(np.median(np.abs(ape - centre)))
        if scale <= 0:
            return np.zeros(0, dtype=np.int64)
        z = (ape - centre) / scale
        gross = ((z > c.outlier_z) & (ape > 0.25)) if c.outlier_z is not None else np.zeros_like(flags)
        cand = np.flatnonzero(gross | (flags & (z > c.flagged_z) & (ape > 0.05)))
        cand = cand[np.argsort(-z[cand])][:int(c.max_dropped * ape.size)]
        counts = np.bincount((idx + self._main_off).ravel(), minlength=self._n_main)
        out = []
        for i in cand:  # keep every (layer, op) observed at least once
            cols = idx[i] + self._main_off
            if np.all(counts[cols] > 1):
                counts[cols] -= 1
                out.append(int(i))
        return np.array(out, dtype=np.int64)

    def _target(self, idx: np.ndarray, y: np.ndarray, log: bool, off: bool) -> tuple[np.ndarray, np.ndarray]:
        """(target, offset) in the model's units for a configuration."""
        base = np.log(y) if log else y
        offset = (self._table_raw(idx, log) if (self._table_flat is not None and off)
                  else np.zeros_like(base))
        return base - offset, offset

    def _standardise_table(self, idx: np.ndarray, log: bool) -> None:
        if self._table_flat is not None:
            raw = self._table_raw(idx, log)
            self._table_mu = float(raw.mean())
            sd = float(raw.std())
            self._table_sd = sd if sd > 0 else 1.0

    def _fit_config(self, idx: np.ndarray, y: np.ndarray, log: bool, ps: float, off: bool,
                    eig_cache: dict[tuple[float, bool, bool], tuple[np.ndarray, np.ndarray]] | None
                    ) -> _DualFit:
        feature = self._table_flat is not None and not off
        self._standardise_table(idx, log)
        tf = self._table_feature(idx, log) if feature else None
        key = (ps, feature, log if feature else False)  # the table feature depends on the target
        eig = eig_cache.get(key) if eig_cache is not None else None
        if eig is None:
            eig = _centred_eig(self._kernel(idx, ps, tf))
            if eig_cache is not None:
                eig_cache[key] = eig
        target, _ = self._target(idx, y, log, off)
        return _bayes_ridge_dual(eig, target, self.config.max_iter)

    def _loo_ape(self, idx: np.ndarray, y: np.ndarray, log: bool, ps: float, off: bool,
                 eig_cache: dict[tuple[float, bool, bool], tuple[np.ndarray, np.ndarray]]
                 ) -> np.ndarray:
        """Each sample's absolute percentage error when left out of the fit (exact: the ridge
        hat matrix, not n refits)."""
        fit = self._fit_config(idx, y, log, ps, off, eig_cache)
        target, offset = self._target(idx, y, log, off)
        pred = target - fit.loo + offset
        lat = np.exp(pred) if log else pred
        return np.abs(lat - y) / y

    def _set_weights(self, idx: np.ndarray, y: np.ndarray, log: bool, ps: float, off: bool,
                     fit: _DualFit) -> None:
        """Primal weights from the dual coefficients: w = Xcᵀ a, gathered per (layer, op)."""
        n = idx.shape[0]
        a, total = fit.a, float(fit.a.sum())
        cols = (idx + self._main_off).ravel()
        rep = np.repeat(a, self.num_layers)
        main = (np.bincount(cols, weights=rep, minlength=self._n_main)
                - np.bincount(cols, minlength=self._n_main) / n * total)
        pair = np.zeros(0)
        if ps > 0:
            pcols = self._pair_cols(idx).ravel()
            prep = np.repeat(a, self._pairs.shape[0])
            pair = (ps ** 2) * (np.bincount(pcols, weights=prep, minlength=self._n_pair_all)
                                - np.bincount(pcols, minlength=self._n_pair_all) / n * total)
        self._log, self._offset = log, self._table_flat is not None and off
        self._main_w, self._pair_w = main, pair
        self._standardise_table(idx, log)
        self._table_w = 0.0
        if self._table_flat is not None and not off:
            f = self._table_feature(idx, log)
            wt = float(f @ a - f.mean() * total)
            self._table_w = wt * _TABLE_SCALE / self._table_sd
        # f(x) = ȳ + (x − μ)·w: every constant (the feature's centring included) cancels here
        self._intercept = fit.y_mean - float(self._raw_sum(idx).mean())
        self.alpha_, self.lambda_ = fit.alpha, fit.lam
        self.n_train = n
        # a raw-latency linear model extrapolates to <= 0 ms for the fastest corner of a big
        # space, which would make any budget look feasible: no network runs in less than its
        # fixed part, nor far below the fastest one measured
        self.floor_ms = max(self.fixed_ms, FLOOR_FRACTION * float(y.min()))

    def _raw_sum(self, idx: np.ndarray) -> np.ndarray:
        """The model's sum for op indices, in target units, before offset and intercept."""
        assert self._main_w is not None and self._pair_w is not None
        out = self._main_w[idx + self._main_off].sum(axis=1)
        if self._pair_w.size:
            out += self._pair_w[self._pair_cols(idx)].sum(axis=1)
        if self._table_w:
            out += self._table_w * self._table_raw(idx, self._log)
        return out

    @property
    def fitted(self) -> bool:
        return self._main_w is not None

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Latency (ms) for an (n, layers) int matrix of op indices: one gather-and-sum per
        term, in chunks (the pair gather of a big batch would not fit in memory at once)."""
        if self._main_w is None or self._pair_w is None:
            raise ValueError("the predictor is not fitted; call fit() (or from_json()) first")
        idx = self._check_indices(idx)
        if self._prune:
            idx = self._pruned(idx)
        out = np.empty(idx.shape[0])
        step = 1 << 16
        for s in range(0, idx.shape[0], step):
            chunk = idx[s:s + step]
            v = self._raw_sum(chunk) + self._intercept
            if self._offset:
                v += self._table_raw(chunk, self._log)
            out[s:s + step] = np.exp(v) if self._log else v
        return np.maximum(out, self.floor_ms, out=out)

    # ----- persistence -----
    def to_json(self) -> dict[str, Any]:
        if self._main_w is None or self._pair_w is None:
            raise ValueError("the predictor is not fitted; nothing to save")
        return {"format": FORMAT, "choices": [list(c) for c in self.choices],
                "config": asdict(self.config), "fixed_ms": self.fixed_ms,
                "layer_table": None if self.layer_table is None
                else {str(k): v for k, v in self.layer_table.items()},
                "chosen": self.chosen,
                "graph": None if self.graph is None else {
                    "edges": [list(e) for e in self.graph.edges], "none_op": self.graph.none_op},
                "model": {"log_target": self._log, "table_offset": self._offset,
                          "prune": self._prune},
                "weights": {"main": self._main_w.tolist(), "pair": self._pair_w.tolist(),
                            "table": self._table_w, "intercept": self._intercept},
                "alpha": self.alpha_, "lambda": self.lambda_, "n_train": self.n_train,
                "floor_ms": self.floor_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LatencyPredictor:
        if d.get("format") not in FORMATS:
            raise ValueError(f"not a saved latency predictor (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        table = d.get("layer_table")
        cfg = {k: v for k, v in d["config"].items() if k in PredictorConfig.__dataclass_fields__}
        g = d.get("graph")
        pred = cls(tuple(tuple(c) for c in d["choices"]), fixed_ms=float(d["fixed_ms"]),
                   layer_table=None if table is None else {int(k): v for k, v in table.items()},
                   config=PredictorConfig(**cfg),
                   graph=None if g is None else CellGraph(tuple(tuple(e) for e in g["edges"]),
                                                          g["none_op"]))
        model = d.get("model") or {"log_target": d["config"].get("log_target", True),
                                   "table_offset": table is not None
                                   and d["config"].get("table_offset", True)}
        pred._log, pred._offset = bool(model["log_target"]), bool(model["table_offset"])
        pred._prune = bool(model.get("prune", False)) and pred.graph is not None
        w = d["weights"]
        main, pair = np.asarray(w["main"], dtype=float), np.asarray(w["pair"], dtype=float)
        if main.shape != (pred._n_main,) or pair.shape not in ((0,), (pred._n_pair_all,)):
            raise ValueError("saved weights do not match the saved search space")
        pred._main_w, pred._pair_w = main, pair
        pred._table_w, pred._intercept = float(w["table"]), float(w["intercept"])
        pred.alpha_, pred.lambda_ = d.get("alpha"), d.get("lambda")
        pred.n_train = int(d.get("n_train", 0))
        pred.floor_ms = float(d.get("floor_ms", pred.fixed_ms))
        pred.chosen = d.get("chosen")
        return pred

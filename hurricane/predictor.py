"""Fast architecture-latency predictor: Bayesian ridge on (layer, op) one-hots, torch-free."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import BayesianRidge

FORMAT = "hurricane.latency-predictor/1"

# Scale given to the standardised table-sum feature: a large feature value means a small weight, so
# the single ridge prior (sized for the one-hot corrections) barely shrinks the table term.
_TABLE_SCALE = 10.0


@dataclass(frozen=True)
class PredictorConfig:
    """Model choices; the defaults were picked on real NAS-Bench-201 measurements (bench/)."""

    # Fit log latency: layer costs then act multiplicatively, which matches devices whose per-layer
    # cost depends on the rest of the network, and relative (MAPE) errors are what we report.
    log_target: bool = True
    # Pairwise (layer i, op a) x (layer j, op b) one-hots, multiplied by this factor. BayesianRidge
    # has one prior for all weights, so the factor is the prior scale of interactions relative to
    # main effects (small: interactions are corrections). 0 gives the purely additive model.
    pair_scale: float = 0.1
    max_iter: int = 300
    # With a layer table: use its sum as an offset (the prior mean), so the one-hots learn only
    # corrections to it and a model fitted on few measurements falls back to the table, scaled
    # by the fitted intercept (the per-network overhead), instead of to a flat mean. False
    # makes the table sum an ordinary standardised feature.
    table_offset: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.pair_scale) or self.pair_scale < 0:
            raise ValueError(f"pair_scale must be finite and >= 0, got {self.pair_scale}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")


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


class LatencyPredictor:
    """Predicts architecture latency (ms) from per-(layer, op) one-hots, optional table sum and pairs.

    ``layer_table`` maps layer -> {op: ms} (e.g. ``LatencyTable.ops``, or a ``LatencyTable`` itself);
    with it the table sum plus ``fixed_ms`` is a feature and the one-hots learn its corrections.
    All predictions go through one vectorised gather-and-sum (``predict_indices``).
    """

    def __init__(self, choices: Any, *, layer_table: Any = None, fixed_ms: float = 0.0,
                 config: PredictorConfig | None = None) -> None:
        self.choices = _choices_of(choices)
        self.config = config or PredictorConfig()
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
        self._n_pair = int(pair_sizes.sum()) if self.config.pair_scale > 0 else 0
        self.layer_table: dict[int, dict[str, float]] | None = None
        self._table_flat: np.ndarray | None = None
        if layer_table is not None:
            self.layer_table = self._check_table(layer_table)
            self._table_flat = np.array([self.layer_table[i][op] for i, c in enumerate(self.choices)
                                         for op in c], dtype=float)
        # fitted state
        self._main_w: np.ndarray | None = None
        self._pair_w: np.ndarray | None = None
        self._table_w = 0.0
        self._table_mu = 0.0
        self._table_sd = 1.0
        self._intercept = 0.0
        self.alpha_: float | None = None
        self.lambda_: float | None = None
        self.n_train = 0

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

    def _table_raw(self, table: np.ndarray, idx: np.ndarray) -> np.ndarray:
        s = table[idx + self._main_off].sum(axis=1) + self.fixed_ms
        if self.config.log_target:
            if np.any(s <= 0):
                raise ValueError("the table sum plus fixed_ms must be > 0 for a log-latency model")
            return np.log(s)
        return s

    def _pair_cols(self, idx: np.ndarray) -> np.ndarray:
        i, j = self._pairs[:, 0], self._pairs[:, 1]
        return idx[:, i] * self._sizes[j] + idx[:, j] + self._pair_off

    def features(self, idx: np.ndarray) -> np.ndarray:
        """Design matrix for op indices: one-hots, scaled pair one-hots, scaled table sum."""
        idx = self._check_indices(idx)
        n = idx.shape[0]
        cols = [np.zeros((n, self._n_main))]
        cols[0][np.arange(n)[:, None], idx + self._main_off] = 1.0
        if self._n_pair:
            p = np.zeros((n, self._n_pair))
            p[np.arange(n)[:, None], self._pair_cols(idx)] = self.config.pair_scale
            cols.append(p)
        if self._table_flat is not None and not self.config.table_offset:
            z = (self._table_raw(self._table_flat, idx) - self._table_mu) / self._table_sd
            cols.append((z * _TABLE_SCALE)[:, None])
        return np.hstack(cols)

    # ----- fit / predict -----
    def fit(self, archs: Sequence[Any], latencies_ms: Sequence[float] | np.ndarray) -> LatencyPredictor:
        return self.fit_indices(self.encode(archs), latencies_ms)

    def fit_indices(self, idx: np.ndarray, latencies_ms: Sequence[float] | np.ndarray) -> LatencyPredictor:
        idx = self._check_indices(idx)
        y = np.asarray(latencies_ms, dtype=float).ravel()
        if y.shape[0] != idx.shape[0]:
            raise ValueError(f"{idx.shape[0]} architectures but {y.shape[0]} latencies")
        if y.shape[0] < 2:
            raise ValueError("fit needs at least 2 measured architectures")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("latencies must be finite and > 0 ms")
        if self._table_flat is not None:
            raw = self._table_raw(self._table_flat, idx)
            self._table_mu = float(raw.mean())
            sd = float(raw.std())
            self._table_sd = sd if sd > 0 else 1.0
        target = np.log(y) if self.config.log_target else y
        offset = self._table_flat is not None and self.config.table_offset
        if offset:
            target = target - self._table_raw(self._table_flat, idx)  # type: ignore[arg-type]
        model = BayesianRidge(max_iter=self.config.max_iter)
        model.fit(self.features(idx), target)
        w = np.asarray(model.coef_, dtype=float)
        self._main_w = w[:self._n_main].copy()
        self._pair_w = w[self._n_main:self._n_main + self._n_pair] * self.config.pair_scale
        if offset:
            self._table_w = 1.0
            self._intercept = float(model.intercept_)
        else:
            self._table_w = (float(w[-1]) * _TABLE_SCALE / self._table_sd
                             if self._table_flat is not None else 0.0)
            self._intercept = float(model.intercept_) - self._table_w * self._table_mu
        self.alpha_, self.lambda_ = float(model.alpha_), float(model.lambda_)
        self.n_train = int(y.shape[0])
        return self

    @property
    def fitted(self) -> bool:
        return self._main_w is not None

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Latency (ms) for an (n, layers) int matrix of op indices: one gather-and-sum per term."""
        if self._main_w is None or self._pair_w is None:
            raise ValueError("the predictor is not fitted; call fit() (or from_json()) first")
        idx = self._check_indices(idx)
        out = self._main_w[idx + self._main_off].sum(axis=1) + self._intercept
        if self._pair_w.size:
            out += self._pair_w[self._pair_cols(idx)].sum(axis=1)
        if self._table_flat is not None:
            out += self._table_w * self._table_raw(self._table_flat, idx)
        return np.exp(out) if self.config.log_target else out

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        return self.predict_indices(self.encode(archs))

    def evaluate(self, archs: Sequence[Any], latencies: Sequence[float] | np.ndarray) -> PredictorMetrics:
        return metrics(self.predict(archs), latencies)

    # ----- persistence -----
    def to_json(self) -> dict[str, Any]:
        if self._main_w is None or self._pair_w is None:
            raise ValueError("the predictor is not fitted; nothing to save")
        return {"format": FORMAT, "choices": [list(c) for c in self.choices],
                "config": asdict(self.config), "fixed_ms": self.fixed_ms,
                "layer_table": None if self.layer_table is None
                else {str(k): v for k, v in self.layer_table.items()},
                "weights": {"main": self._main_w.tolist(), "pair": self._pair_w.tolist(),
                            "table": self._table_w, "intercept": self._intercept},
                "alpha": self.alpha_, "lambda": self.lambda_, "n_train": self.n_train}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LatencyPredictor:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a saved latency predictor (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        table = d.get("layer_table")
        pred = cls(tuple(tuple(c) for c in d["choices"]), fixed_ms=float(d["fixed_ms"]),
                   layer_table=None if table is None else {int(k): v for k, v in table.items()},
                   config=PredictorConfig(**d["config"]))
        w = d["weights"]
        main, pair = np.asarray(w["main"], dtype=float), np.asarray(w["pair"], dtype=float)
        if main.shape != (pred._n_main,) or pair.shape != (pred._n_pair,):
            raise ValueError("saved weights do not match the saved search space")
        pred._main_w, pred._pair_w = main, pair
        pred._table_w, pred._intercept = float(w["table"]), float(w["intercept"])
        pred.alpha_, pred.lambda_ = d.get("alpha"), d.get("lambda")
        pred.n_train = int(d.get("n_train", 0))
        return pred

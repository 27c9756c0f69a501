"""A new device from a few measurements: every known device's predictor as a prior, torch-free.

The known devices' predictors (``LatencyPredictor``, or any ``Predictor`` over the same
choices) give each architecture x a vector of predicted log latencies; standardised over a
reference set of architectures they are z_d(x), and their mean z̄(x) is the consensus ranking.
The target's log latency is modelled as a Gaussian process (a Bayesian linear model in the
prior devices' coordinates, the hierarchical view: a new device is a draw from the population
of known ones)::

    log y(x) = c + a·z̄(x) + Σ_d β_d·(z_d(x) − z̄(x)) + Σ_layers δ[layer, op] + ε

with c and a free (the device's speed and spread), β ~ N(0, v·w_d/D) (the spread of the known
devices around the consensus, each device's prior share w_d sharpened towards the devices that
fit the k samples best), δ ~ N(0, τ²) a per-(layer, op) correction and ε ~ N(0, σ²). Each
setting of v/σ², τ²/σ² and the sharpening is weighed by the k samples' restricted marginal
likelihood and the likely ones are averaged; σ² is profiled out (Student-t predictions, widened
when the samples' leave-one-out residuals say the model is overconfident), so every prediction
has an interval. ``choose_samples`` picks which k architectures to measure: greedy D-optimal
in the prior's feature space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import stdtr, stdtrit

from hurricane.latency.predictor import (
    FLOOR_FRACTION,
    FORMATS,
    LatencyPredictor,
    Predictor,
    measured_latencies,
)
from hurricane.latency.proxy import FORMAT as ADAPTED_FORMAT
from hurricane.latency.proxy import AdaptedPredictor

FORMAT = "hurricane.fewshot-predictor/1"


def is_fewshot(d: Mapping[str, Any]) -> bool:
    """Whether a saved predictor (its JSON) is a few-shot one."""
    return d.get("format") == FORMAT
PRIOR_FORMAT = "hurricane.fewshot-prior/1"
MIN_SAMPLES = 3  # two fixed effects (offset, consensus slope) and one degree of freedom left


@dataclass(frozen=True)
class FewShotConfig:
    """The hyperparameter grid the k samples weigh (restricted marginal likelihood).

    ``ratios``: prior variance of the device term, v/σ², tried; ``residual_ratios``: the same
    for the per-(layer, op) correction (0 switches it off); ``temperatures``: how sharply device
    similarity (each prior device's own fit to the k samples) reweights the prior, 0 = all
    devices alike; ``rank``: keep only the top principal directions of the known devices
    (None: all of them, the full empirical device covariance).
    """

    ratios: tuple[float, ...] = tuple(float(v) for v in np.logspace(-2, 3, 11))
    residual_ratios: tuple[float, ...] = (0.0, *(float(v) for v in np.logspace(-2, 3, 11)))
    temperatures: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    rank: int | None = None
    # the residual's interaction strength: pairs of (layer, op) choices with this prior scale
    # relative to the main effects (0: additive), as LatencyPredictor's pair_scale
    pair_scales: tuple[float, ...] = (0.0,)
    # Bayesian model averaging: the most likely settings, at most ``components`` of them,
    # within ``evidence_window`` nats of the best
    components: int = 16
    evidence_window: float = 7.0
    # prior probability that the per-(layer, op) residual is off (residual_ratios has 0)
    residual_off: float = 0.5

    def __post_init__(self) -> None:
        for name in ("ratios", "residual_ratios", "temperatures", "pair_scales"):
            vals = getattr(self, name)
            if not vals or not all(math.isfinite(v) and v >= 0 for v in vals):
                raise ValueError(f"{name} must be a non-empty tuple of finite values >= 0, got {vals}")
        if not all(v > 0 for v in self.ratios):
            raise ValueError(f"ratios must be > 0, got {self.ratios}")
        if not 0 < self.residual_off < 1:
            raise ValueError(f"residual_off must be in (0, 1), got {self.residual_off}")
        if self.components < 1 or not self.evidence_window > 0:
            raise ValueError("components must be >= 1 and evidence_window > 0")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be >= 1 or None, got {self.rank}")


def _encoder(choices: tuple[tuple[str, ...], ...]) -> LatencyPredictor:
    return LatencyPredictor(choices)  # unfitted: its encode and index checks only


def _load_predictor(d: Mapping[str, Any]) -> Predictor:
    if d.get("format") in FORMATS:
        return LatencyPredictor.from_json(d)
    if d.get("format") == ADAPTED_FORMAT:
        return AdaptedPredictor.from_json(d)
    raise ValueError(f"a prior device's predictor has an unknown format {d.get('format')!r}")


class Prior:
    """Known devices' fitted predictors over one search space, standardised on a reference set.

    ``reference``: op indices of architectures the standardisation (and ``rank``) is computed
    on; by default ``reference_size`` architectures drawn uniformly from the space (seeded), so
    the same prior gives the same features wherever it is built.
    """

    def __init__(self, predictors: Mapping[str, Predictor], *, reference: np.ndarray | None = None,
                 reference_size: int = 2000, seed: int = 0) -> None:
        if len(predictors) < 2:
            raise ValueError(f"a prior needs at least 2 known devices, got {len(predictors)}")
        self.names = [str(n) for n in predictors]
        self.predictors = dict(zip(self.names, predictors.values(), strict=True))
        spaces = {n: tuple(tuple(c) for c in getattr(p, "choices", ())) for n, p in self.predictors.items()}
        first = spaces[self.names[0]]
        if not first:
            raise ValueError(f"prior device {self.names[0]!r}: its predictor has no search space (choices)")
        odd = [n for n, c in spaces.items() if c != first]
        if odd:
            raise ValueError(f"prior devices {odd} predict over another search space than "
                             f"{self.names[0]!r}: every prior predictor needs the same choices")
        self.choices = first
        self._enc = _encoder(first)
        if reference is None:
            if reference_size < 10:
                raise ValueError(f"reference_size must be >= 10, got {reference_size}")
            rng = np.random.default_rng(seed)
            reference = np.column_stack([rng.integers(0, len(c), size=reference_size) for c in first])
        self.reference = self._enc._check_indices(np.asarray(reference))
        if self.reference.shape[0] < 10:
            raise ValueError("the reference set needs at least 10 architectures, "
                             f"got {self.reference.shape[0]}")
        z = self.log_predictions(self.reference)
        self.mu = z.mean(axis=0)
        sd = z.std(axis=0)
        flat = [n for n, s in zip(self.names, sd, strict=True) if not s > 0]
        if flat:
            raise ValueError(f"prior devices {flat} predict the same latency for every reference "
                             "architecture; they carry no ranking")
        self.sd = sd

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self._enc.encode(archs)

    def check_indices(self, idx: np.ndarray) -> np.ndarray:
        return self._enc._check_indices(np.asarray(idx))

    def log_predictions(self, idx: np.ndarray) -> np.ndarray:
        """(n, devices) log of each prior device's predicted latency (ms)."""
        idx = self.check_indices(idx)
        return np.column_stack([np.log(np.maximum(p.predict_indices(idx), 1e-12))
                                for p in self.predictors.values()])

    def standardised(self, idx: np.ndarray) -> np.ndarray:
        """(n, devices) z_d(x): log predictions standardised over the reference set."""
        return (self.log_predictions(idx) - self.mu) / self.sd

    def to_json(self) -> dict[str, Any]:
        return {"format": PRIOR_FORMAT, "devices": {n: p.to_json() for n, p in self.predictors.items()},  # type: ignore[attr-defined]
                "reference": self.reference.tolist()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Prior:
        if d.get("format") != PRIOR_FORMAT:
            raise ValueError(f"not a saved few-shot prior (format {d.get('format')!r}, "
                             f"expected {PRIOR_FORMAT!r})")
        return cls({n: _load_predictor(p) for n, p in d["devices"].items()},
                   reference=np.asarray(d["reference"], dtype=np.int64))


def _reml(kernels: np.ndarray, U: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Restricted log marginal likelihood (noise variance profiled out) of y = Uβ + f + ε for a
    batch of covariances ``kernels`` (g, k, k) in units of the noise variance (I included)."""
    k, p = U.shape
    out = np.full(kernels.shape[0], -np.inf)
    try:
        chol = np.linalg.cholesky(kernels)
    except np.linalg.LinAlgError:
        return out
    ki = np.linalg.inv(kernels)
    kiu = ki @ U
    a = U.T[None] @ kiu
    proj = ki - kiu @ np.linalg.solve(a, np.swapaxes(kiu, 1, 2))
    q = np.einsum("i,gij,j->g", y, proj, y)
    logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    ok = q > 0
    out[ok] = -0.5 * ((k - p) * np.log(q[ok]) + logdet[ok] + np.linalg.slogdet(a)[1][ok])
    return out


class FewShotPredictor(Predictor):
    """A target device's latency predictor from k measurements and a ``Prior`` of known devices.

    Same call shapes as the other predictors (``fit``/``fit_indices``, ``predict``,
    ``predict_indices``, ``to_json``/``from_json``); ``predict_interval`` adds a calibrated
    interval per architecture and ``weights`` says which known devices the target follows.
    """

    def __init__(self, prior: Prior, *, config: FewShotConfig | None = None) -> None:
        self.prior = prior
        self.config = config or FewShotConfig()
        if self.config.rank is not None and self.config.rank >= len(prior):
            raise ValueError(f"rank {self.config.rank} must be below the {len(prior)} prior devices")
        self.choices = prior.choices
        self.num_layers = len(self.choices)
        sizes = np.array([len(c) for c in self.choices], dtype=np.int64)
        self._off = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._n_main = int(sizes.sum())
        self.floor_ms = 0.0
        self.n_train = 0
        self.chosen: dict[str, Any] | None = None
        self._idx: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._parts: list[tuple[float, _Posterior]] = []
        self._sim = np.zeros(len(prior))
        self._device_coef = np.zeros(len(prior))

    # ----- features -----
    def encode(self, archs: Sequence[Any]) -> np.ndarray:
        return self.prior.encode(archs)

    def _matches(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)): how many layers two architectures share the op of."""
        m = np.zeros((a.shape[0], b.shape[0]))
        for i in range(self.num_layers):
            m += a[:, i][:, None] == b[:, i][None, :]
        return m

    def _device_map(self, temperature: float, loglik: np.ndarray) -> np.ndarray:
        """(devices, m): maps centred z-vectors to the device term's features."""
        d = len(self.prior)
        w = np.exp(temperature * (loglik - loglik.max()))
        scale = np.diag(np.sqrt(w / w.mean() / d))
        if self.config.rank is None:
            return scale
        zc = _centred(self.prior.standardised(self.prior.reference)) @ scale
        _, _, vt = np.linalg.svd(zc - zc.mean(axis=0), full_matrices=False)
        return np.asarray(scale @ vt[:self.config.rank].T)

    # ----- fit -----
    def fit(self, archs: Sequence[Any], latencies_ms: Sequence[float] | np.ndarray) -> FewShotPredictor:
        return self.fit_indices(self.encode(archs), latencies_ms)

    def fit_indices(self, idx: np.ndarray, latencies_ms: Sequence[float] | np.ndarray) -> FewShotPredictor:
        """Weighs every hyperparameter setting by the k samples' restricted marginal likelihood
        and fits the target's model for the likely ones (architectures ``idx``, measured
        ``latencies_ms``); predictions average them (Bayesian model averaging)."""
        idx = self.prior.check_indices(idx)
        y = measured_latencies(latencies_ms, idx.shape[0], MIN_SAMPLES,
                               f"a few-shot fit needs at least {MIN_SAMPLES} target measurements")
        logy = np.log(y)
        z = self.prior.standardised(idx)
        U = _design(z)
        if np.linalg.matrix_rank(U) < U.shape[1]:
            raise ValueError("the measured architectures all have the same consensus latency; "
                             "measure architectures that differ (see choose_samples)")
        sim = _similarity(z, logy)
        match = self._matches(idx, idx)
        cfg = self.config
        grid = list(itertools.product(cfg.ratios, cfg.residual_ratios))
        rd = np.array([g[0] for g in grid])[:, None, None]
        ro = np.array([g[1] for g in grid])[:, None, None]
        eye = np.eye(y.shape[0])[None]
        # the prior over the grid: the residual switched off with probability residual_off (when
        # the grid has 0), its other ratios sharing the rest: a correction the k samples must earn
        n_on = sum(1 for b in cfg.residual_ratios if b > 0)
        has_off = n_on < len(cfg.residual_ratios)
        log_prior = {b: math.log(cfg.residual_off if b == 0 else
                                 (1 - cfg.residual_off) / n_on if has_off else 1.0 / n_on)
                     for b in cfg.residual_ratios}
        # (log evidence + log prior, temperature, ratio, residual ratio, pair scale)
        settings: list[tuple[float, float, float, float, float]] = []
        for temp, ps in itertools.product(cfg.temperatures, cfg.pair_scales):
            f = _centred(z) @ self._device_map(temp, sim)
            kres = _residual_kernel(match, self.num_layers, ps)
            ll = _reml(eye + rd * (f @ f.T)[None] + ro * kres[None], U, logy)
            settings += [(float(v) + log_prior[b], float(temp), float(a), float(b), float(ps))
                         for v, (a, b) in zip(ll, grid, strict=True) if math.isfinite(v)]
        if not settings:
            raise ValueError("the target measurements are degenerate (identical after the fixed "
                             "effects); measure architectures that differ")
        settings.sort(key=lambda r: -r[0])
        top = settings[0][0]
        kept = [r for r in settings[:cfg.components] if r[0] - top > -cfg.evidence_window]
        w = np.exp(np.array([r[0] for r in kept]) - top)
        self._set(idx, y, sim, [(float(wi / w.sum()), *r[1:])
                                for wi, r in zip(w, kept, strict=True)])
        best = kept[0]
        self.chosen = {"temperature": best[1], "ratio": best[2], "residual_ratio": best[3],
                       "pair_scale": best[4],
                       "log_marginal_likelihood": round(best[0], 6), "components": len(kept),
                       "best_weight": round(float(w[0] / w.sum()), 4)}
        return self

    def _set(self, idx: np.ndarray, y: np.ndarray, sim: np.ndarray,
             mixture: list[tuple[float, float, float, float, float]]) -> None:
        """Solves each (weight, temperature, ratio, residual ratio, pair scale) of the mixture
        in closed form (what ``from_json`` re-runs)."""
        z = self.prior.standardised(idx)
        match = self._matches(idx, idx)
        self._parts = [(w, _Posterior.solve(z, match, np.log(y), self._device_map(t, sim),
                                            temperature=t, ratio=r, residual_ratio=q,
                                            pair_scale=ps, layers=self.num_layers))
                       for w, t, r, q, ps in mixture]
        self._sim = sim
        self._idx, self._y = idx.copy(), y.copy()
        self.n_train = int(y.shape[0])
        self.floor_ms = FLOOR_FRACTION * float(y.min())
        coef = sum(w * p.device_coef for w, p in self._parts)
        self._device_coef = np.asarray(coef)

    @property
    def fitted(self) -> bool:
        return self._y is not None

    # ----- predict -----
    def _moments(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per mixture component (n, c): mean and scale of log latency (a new measurement's,
        noise included) and the components' weights (c,)."""
        if self._y is None:
            raise ValueError("the few-shot predictor is not fitted; call fit() (or from_json()) first")
        idx = self.prior.check_indices(idx)
        assert self._idx is not None
        z = self.prior.standardised(idx)
        match = self._matches(idx, self._idx)
        ms = [p.moments(z, match) for _, p in self._parts]
        return (np.column_stack([m for m, _ in ms]), np.column_stack([np.sqrt(v) for _, v in ms]),
                np.array([w for w, _ in self._parts]))

    def _cdf(self, q: np.ndarray, mean: np.ndarray, scale: np.ndarray, w: np.ndarray) -> np.ndarray:
        dof = np.array([p.dof for _, p in self._parts])
        return np.asarray(stdtr(dof, (q[:, None] - mean) / scale) @ w)

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predicted latency (ms) per row of op indices: exp of the mixture's mean log latency."""
        mean, _, w = self._moments(idx)
        return np.maximum(np.exp(mean @ w), self.floor_ms)

    def predict_interval(self, idx: np.ndarray, confidence: float = 0.9
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, low, high) latency in ms: a central ``confidence`` interval for a new
        measurement of each architecture (a mixture of Student-t's on log latency)."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence}")
        mean, scale, w = self._moments(idx)
        dof = np.array([p.dof for _, p in self._parts], dtype=float)
        bounds = []
        for target in (0.5 - confidence / 2, 0.5 + confidence / 2):
            # the mixture's quantile lies between its components' quantiles: bisect there
            comp = mean + stdtrit(dof, target) * scale
            lo, hi = comp.min(axis=1), comp.max(axis=1)
            for _ in range(24):  # 1e-7 of the bracket: far below any latency's resolution
                mid = (lo + hi) / 2
                below = self._cdf(mid, mean, scale, w) < target
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            bounds.append(np.exp((lo + hi) / 2))
        med = np.maximum(np.exp(mean @ w), self.floor_ms)
        return med, bounds[0], np.maximum(bounds[1], self.floor_ms)

    def prob_within(self, idx: np.ndarray, budget_ms: float | np.ndarray) -> np.ndarray:
        """Probability that a measurement of each architecture comes in at or under
        ``budget_ms`` (one budget, or one per architecture: with measured latencies, the
        predictive CDF at them, whose spread checks calibration)."""
        b = np.asarray(budget_ms, dtype=float)
        if not (np.all(np.isfinite(b)) and np.all(b > 0)):
            raise ValueError("budget_ms must be finite and > 0")
        mean, scale, w = self._moments(idx)
        if b.ndim != 0 and b.shape != mean.shape[:1]:
            raise ValueError(f"budget_ms must be one value or one per architecture ({mean.shape[0]})")
        return self._cdf(np.log(np.broadcast_to(b, mean.shape[:1])), mean, scale, w)

    def weights(self) -> list[tuple[str, float]]:
        """Prior devices by how much the target's prediction follows them: each one's share of
        the absolute coefficients on the standardised prior predictions, largest first."""
        if self._y is None:
            raise ValueError("the few-shot predictor is not fitted; call fit() first")
        a = np.abs(self._device_coef)
        share = a / (a.sum() or 1.0)
        order = np.argsort(-share, kind="stable")
        return [(self.prior.names[i], float(share[i])) for i in order]

    # ----- persistence -----
    def to_json(self) -> dict[str, Any]:
        if self._idx is None or self._y is None:
            raise ValueError("the few-shot predictor is not fitted; nothing to save")
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
        return {"format": FORMAT, "prior": self.prior.to_json(), "config": cfg,
                "samples": {"indices": self._idx.tolist(), "latency_ms": self._y.tolist()},
                "similarity": self._sim.tolist(),
                "mixture": [{"weight": w, "temperature": p.temperature, "ratio": p.ratio,
                             "residual_ratio": p.residual_ratio, "pair_scale": p.pair_scale}
                            for w, p in self._parts],
                "chosen": self.chosen, "weights": [[n, w] for n, w in self.weights()],
                "n_train": self.n_train}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FewShotPredictor:
        if d.get("format") != FORMAT:
            raise ValueError(f"not a saved few-shot predictor (format {d.get('format')!r}, "
                             f"expected {FORMAT!r})")
        cfg: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                               for k, v in d["config"].items()
                               if k in FewShotConfig.__dataclass_fields__}
        pred = cls(Prior.from_json(d["prior"]), config=FewShotConfig(**cfg))
        sim = np.asarray(d["similarity"], dtype=float)
        if sim.shape != (len(pred.prior),):
            raise ValueError("the saved device similarities do not match the saved prior")
        idx = pred.prior.check_indices(np.asarray(d["samples"]["indices"], dtype=np.int64))
        y = measured_latencies(d["samples"]["latency_ms"], idx.shape[0], MIN_SAMPLES,
                               "the saved predictor has too few samples")
        mixture = [(float(m["weight"]), float(m["temperature"]), float(m["ratio"]),
                    float(m["residual_ratio"]), float(m["pair_scale"])) for m in d["mixture"]]
        if not mixture:
            raise ValueError("the saved predictor has no mixture components")
        pred._set(idx, y, sim, mixture)
        pred.chosen = d.get("chosen")
        return pred


@dataclass
class _Posterior:
    """The closed-form posterior for one hyperparameter setting, in the dual (over the k
    samples: any number of prior devices and residual features); σ² profiled: Student-t."""

    temperature: float
    ratio: float
    residual_ratio: float
    pair_scale: float
    layers: int
    map: np.ndarray  # (devices, m): centred z -> device features, sqrt(ratio) included
    feats: np.ndarray  # (k, m) the samples' device features
    beta: np.ndarray  # fixed effects (offset, consensus slope)
    alpha: np.ndarray  # K⁻¹ (y − Uβ)
    ki: np.ndarray  # K⁻¹ (noise units)
    kiu: np.ndarray  # K⁻¹ U
    fixed_cov: np.ndarray  # (Uᵀ K⁻¹ U)⁻¹ / σ²
    sigma2: float
    dof: int
    device_coef: np.ndarray  # the prediction's coefficients on the standardised z_d
    loo_z2: float

    def _cross(self, z: np.ndarray, match: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prior covariances (n, k) with the samples, and prior variances (n,), noise excluded."""
        f = _centred(z) @ self.map
        kst = f @ self.feats.T
        kss = (f * f).sum(axis=1)
        if self.residual_ratio > 0:
            kst = kst + self.residual_ratio * _residual_kernel(match, self.layers, self.pair_scale)
            kss = kss + self.residual_ratio
        return kst, kss

    @classmethod
    def solve(cls, z: np.ndarray, match: np.ndarray, logy: np.ndarray, device_map: np.ndarray, *,
              temperature: float, ratio: float, residual_ratio: float, pair_scale: float,
              layers: int) -> _Posterior:
        k = logy.shape[0]
        U = _design(z)
        dmap = device_map * math.sqrt(ratio)
        feats = _centred(z) @ dmap
        kern = np.eye(k) + feats @ feats.T
        if residual_ratio > 0:
            kern += residual_ratio * _residual_kernel(match, layers, pair_scale)
        ki = np.linalg.inv(kern)
        kiu = ki @ U
        fixed_cov = np.linalg.inv(U.T @ kiu)
        beta = fixed_cov @ (kiu.T @ logy)
        resid = logy - U @ beta
        alpha = ki @ resid
        dof = k - U.shape[1]
        sigma2 = float(resid @ alpha) / dof
        # leave-one-out check of the scale: standardised LOO residuals of a calibrated model
        # have mean square ~1; the k samples' own say widens (never narrows) the intervals
        proj = ki - kiu @ fixed_cov @ kiu.T
        d = np.clip(np.diag(proj), 1e-12, None)
        loo_z2 = float(np.mean((proj @ logy) ** 2 / d) / sigma2) if sigma2 > 0 else 1.0
        sigma2 *= max(1.0, loo_z2)
        # the prediction in the prior devices' z-units: a/D + c_d − mean(c)
        c = dmap @ (feats.T @ alpha)
        coef = beta[1] / z.shape[1] + c - c.mean()
        return cls(temperature, ratio, residual_ratio, pair_scale, layers, dmap, feats, beta,
                   alpha, ki, kiu, fixed_cov, sigma2, dof, coef, loo_z2)

    def moments(self, z: np.ndarray, match: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = _design(z)
        kst, kss = self._cross(z, match)
        mean = u @ self.beta + kst @ self.alpha
        r = u - kst @ self.kiu
        var = (1.0 + kss - ((kst @ self.ki) * kst).sum(axis=1)
               + ((r @ self.fixed_cov) * r).sum(axis=1))
        return mean, self.sigma2 * np.maximum(var, 1e-12)


def _residual_kernel(match: np.ndarray, layers: int, pair_scale: float) -> np.ndarray:
    """The per-(layer, op) residual's prior covariance from shared-op counts m: m main-effect
    and C(m, 2) pair matches (pairs scaled by ``pair_scale``), normalised to variance 1."""
    pairs = pair_scale ** 2 / 2
    return (match + pairs * match * (match - 1)) / (layers + pairs * layers * (layers - 1))


def _centred(z: np.ndarray) -> np.ndarray:
    return z - z.mean(axis=1, keepdims=True)


def _design(z: np.ndarray) -> np.ndarray:
    """Fixed effects: an offset (the device's speed) and a slope on the consensus z̄."""
    return np.column_stack([np.ones(z.shape[0]), z.mean(axis=1)])


def _similarity(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each prior device's profile log-likelihood of the k samples, fitted alone with the
    consensus (offset, z̄, z_d): how well it alone explains the target."""
    k = y.shape[0]
    out = np.empty(z.shape[1])
    zbar = z.mean(axis=1)
    for j in range(z.shape[1]):
        x = np.column_stack([np.ones(k), zbar, z[:, j]])
        r = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        out[j] = -0.5 * k * math.log(float(r @ r) + 1e-12 * k)
    return out


# ----- which architectures to measure -----
def choose_samples(prior: Prior, pool: np.ndarray, k: int, *,
                   method: Literal["doptimal", "quantile", "random"] = "doptimal",
                   seed: int = 0, ratio: float = 10.0, fixed_scale: float = 3.0) -> np.ndarray:
    """Which ``k`` rows of ``pool`` (op indices of candidate architectures) to measure on a new
    device, in picking order (positions in ``pool``).

    ``doptimal``: greedy maximum posterior variance (each pick the candidate the prior model is
    least sure of, given the picks so far: Bayesian D-optimal design on the prior's features,
    the offset and consensus slope with prior scale ``fixed_scale``, the device term with
    variance ``ratio`` relative to the noise); ``quantile``: spread evenly over the consensus
    predicted-latency range; ``random``: a seeded draw.
    """
    pool = prior.check_indices(pool)
    n = pool.shape[0]
    if not MIN_SAMPLES <= k <= n:
        raise ValueError(f"k must be in [{MIN_SAMPLES}, {n}] (the pool's size), got {k}")
    if method == "random":
        return np.random.default_rng(seed).choice(n, size=k, replace=False)
    z = prior.standardised(pool)
    zbar = z.mean(axis=1)
    if method == "quantile":
        order = np.argsort(zbar, kind="stable")
        return order[((np.arange(k) + 0.5) / k * n).astype(np.int64)]
    if method != "doptimal":
        raise ValueError(f"method must be 'doptimal', 'quantile' or 'random', got {method!r}")
    if not ratio > 0 or not fixed_scale > 0:
        raise ValueError("ratio and fixed_scale must be > 0")
    f = np.column_stack([np.full(n, fixed_scale), fixed_scale * zbar,
                         (z - zbar[:, None]) * math.sqrt(ratio / z.shape[1])])
    cov = np.eye(f.shape[1])
    var = ((f @ cov) * f).sum(axis=1)
    picked: list[int] = []
    for _ in range(k):
        var[picked] = -np.inf
        j = int(np.argmax(var))
        picked.append(j)
        g = cov @ f[j]
        cov -= np.outer(g, g) / (1.0 + f[j] @ g)
        var = ((f @ cov) * f).sum(axis=1)
    return np.array(picked, dtype=np.int64)

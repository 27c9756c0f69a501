"""Few-shot latency prediction: a prior of known devices, the k samples to measure, intervals, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from hurricane.latency.fewshot import FewShotConfig, FewShotPredictor, Prior, choose_samples
from hurricane.latency.predictor import LatencyPredictor, PredictorConfig

OPS = ("skip", "conv1", "conv3", "pool", "sep5")
LAYERS = 7
CHOICES = tuple(OPS for _ in range(LAYERS))
N_DEVICES = 8
SOURCES = ("dev2", "dev5")  # the synthetic target is a mixture of these two


def _costs(seed: int) -> np.ndarray:
    """(devices, layers, ops) per-op costs in ms: a shared op profile bent per device (an
    exponent and a per-op factor), so devices rank architectures differently."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 3.0, size=(LAYERS, len(OPS)))
    out = []
    for _ in range(N_DEVICES):
        bent = base ** rng.uniform(0.5, 1.8) * rng.uniform(0.3, 3.0, size=len(OPS))
        out.append(bent * rng.uniform(0.8, 1.25, size=(LAYERS, len(OPS))))
    return np.array(out)


COSTS = _costs(3)
ROWS = np.arange(LAYERS)


def _latency(dev: int, idx: np.ndarray) -> np.ndarray:
    return COSTS[dev][ROWS, idx].sum(axis=1) + 1.0


def _target(idx: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """A new device: 0.6 / 0.4 of the sources' log latencies, with log-normal timing noise."""
    log = 0.6 * np.log(_latency(2, idx)) + 0.4 * np.log(_latency(5, idx)) + 0.3
    return np.exp(log + np.random.default_rng(seed).normal(0, noise, size=idx.shape[0]))


def _archs(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(OPS), size=(n, LAYERS))


@pytest.fixture(scope="module")
def prior() -> Prior:
    train = _archs(150, seed=10)
    preds = {f"dev{d}": LatencyPredictor(CHOICES, config=PredictorConfig(pair_scale=0.0))
             .fit_indices(train, _latency(d, train)) for d in range(N_DEVICES)}
    return Prior(preds, reference_size=500)


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return _archs(400, seed=11)


@pytest.fixture(scope="module")
def test_archs() -> np.ndarray:
    return _archs(600, seed=12)


def test_beats_scratch_at_k10_and_weights_the_sources(prior: Prior, pool: np.ndarray,
                                                      test_archs: np.ndarray) -> None:
    y_test = _target(test_archs, 0.02, seed=1)
    few, scratch = [], []
    for seed in range(3):
        ks = pool[choose_samples(prior, pool, 10, method="random", seed=seed)]
        y = _target(ks, 0.02, seed=100 + seed)
        fp = FewShotPredictor(prior).fit_indices(ks, y)
        few.append(spearmanr(fp.predict_indices(test_archs), y_test).statistic)
        sc = LatencyPredictor(CHOICES).fit_indices(ks, y)
        scratch.append(spearmanr(sc.predict_indices(test_archs), y_test).statistic)
        top = [name for name, _ in fp.weights()[:2]]
        assert set(top) == set(SOURCES), fp.weights()
        shares = dict(fp.weights())
        assert shares["dev2"] > shares["dev5"]  # 0.6 vs 0.4 of the mixture
        assert sum(shares.values()) == pytest.approx(1.0)
    assert np.mean(few) > 0.95
    assert np.mean(few) > np.mean(scratch) + 0.1, (few, scratch)


def test_interval_covers_about_the_confidence(prior: Prior, pool: np.ndarray,
                                              test_archs: np.ndarray) -> None:
    covered, widths = [], []
    for seed in range(4):
        ks = pool[choose_samples(prior, pool, 20, method="random", seed=seed)]
        fp = FewShotPredictor(prior).fit_indices(ks, _target(ks, 0.05, seed=200 + seed))
        y_test = _target(test_archs, 0.05, seed=300 + seed)
        med, lo, hi = fp.predict_interval(test_archs, confidence=0.9)
        assert np.all(lo < med) and np.all(med < hi)
        inside = (y_test >= lo) & (y_test <= hi)
        covered.append(np.mean(inside))
        # the predictive CDF at the measured latencies says the same (the central 90%)
        pit = fp.prob_within(test_archs, y_test)
        assert np.mean(inside == ((pit >= 0.05) & (pit <= 0.95))) > 0.99
        widths.append(np.median(np.log(hi / lo)))
        narrow = fp.predict_interval(test_archs, confidence=0.5)
        assert np.all(narrow[2] - narrow[1] < hi - lo)
        # probability of meeting a budget agrees with the interval's ends
        p = fp.prob_within(test_archs[:50], float(np.median(med)))
        assert np.all((p >= 0) & (p <= 1))
        assert np.allclose(fp.prob_within(test_archs[:5], 1e9), 1.0)
    assert 0.8 <= float(np.mean(covered)) <= 0.98, covered
    # noise of 5% in log space: a 90% interval about ±1.645·0.05 wide, not vastly wider
    assert float(np.mean(widths)) < 4 * 2 * 1.645 * 0.05


def test_choice_spreads_over_the_predicted_range(prior: Prior, pool: np.ndarray) -> None:
    consensus = prior.standardised(pool).mean(axis=1)
    span = np.ptp(consensus)
    picked = choose_samples(prior, pool, 10)
    assert len(set(picked.tolist())) == 10
    assert np.ptp(consensus[picked]) > 0.7 * span
    # quantile: the (i + 0.5) / k quantiles of the pool's consensus latency, in order
    q = choose_samples(prior, pool, 10, method="quantile")
    assert len(set(q.tolist())) == 10
    assert np.all(np.diff(consensus[q]) > 0)
    np.testing.assert_allclose(consensus[q], np.quantile(consensus, (np.arange(10) + 0.5) / 10),
                               atol=0.02 * span)
    # the D-optimal picks are the extremes first: more spread than random picks of the same size
    d = choose_samples(prior, pool, 6)
    r = [np.ptp(consensus[choose_samples(prior, pool, 6, method="random", seed=s)]) for s in range(10)]
    assert np.ptp(consensus[d]) > np.mean(r)
    assert np.array_equal(choose_samples(prior, pool, 5, method="random", seed=4),
                          choose_samples(prior, pool, 5, method="random", seed=4))


def test_chosen_samples_help_at_small_k(prior: Prior, pool: np.ndarray, test_archs: np.ndarray) -> None:
    y_test = _target(test_archs, 0.02, seed=5)
    ks = pool[choose_samples(prior, pool, 5)]
    chosen = spearmanr(FewShotPredictor(prior).fit_indices(ks, _target(ks, 0.02, seed=6))
                       .predict_indices(test_archs), y_test).statistic
    rand = []
    for s in range(5):
        kr = pool[choose_samples(prior, pool, 5, method="random", seed=s)]
        rand.append(spearmanr(FewShotPredictor(prior).fit_indices(kr, _target(kr, 0.02, seed=7 + s))
                              .predict_indices(test_archs), y_test).statistic)
    assert chosen >= np.mean(rand) - 0.01, (chosen, rand)


def test_json_round_trip_predicts_the_same(prior: Prior, pool: np.ndarray, test_archs: np.ndarray) -> None:
    ks = pool[choose_samples(prior, pool, 12)]
    fp = FewShotPredictor(prior, config=FewShotConfig(pair_scales=(0.0, 0.3))).fit_indices(
        ks, _target(ks, 0.03, seed=9))
    doc = json.loads(json.dumps(fp.to_json()))
    back = FewShotPredictor.from_json(doc)
    assert back.prior.names == prior.names
    assert [n for n, _ in back.weights()] == [n for n, _ in fp.weights()]
    np.testing.assert_allclose([w for _, w in back.weights()], [w for _, w in fp.weights()], rtol=1e-10)
    for a, b in zip(fp.predict_interval(test_archs), back.predict_interval(test_archs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert back.chosen == fp.chosen
    # op names go through encode like any predictor
    arch = [[OPS[i] for i in row] for row in test_archs[:3]]
    np.testing.assert_allclose(back.predict(arch), fp.predict_indices(test_archs[:3]), rtol=1e-10)


def test_bad_input_names_the_problem(prior: Prior, pool: np.ndarray) -> None:
    ks = pool[:10]
    y = _target(ks, 0.02, seed=1)
    fp = FewShotPredictor(prior)
    with pytest.raises(ValueError, match="not fitted"):
        fp.predict_indices(ks)
    with pytest.raises(ValueError, match="10 architectures but 9 latencies"):
        fp.fit_indices(ks, y[:9])
    with pytest.raises(ValueError, match="at least 3"):
        fp.fit_indices(ks[:2], y[:2])
    with pytest.raises(ValueError, match="finite and > 0"):
        fp.fit_indices(ks, np.r_[y[:9], -1.0])
    with pytest.raises(ValueError, match="out of range at layer"):
        fp.fit_indices(np.r_[ks[:9], [[9] * LAYERS]], y)
    fp.fit_indices(ks, y)
    with pytest.raises(ValueError, match="confidence"):
        fp.predict_interval(ks, confidence=1.5)
    with pytest.raises(ValueError, match="k must be in"):
        choose_samples(prior, pool[:4], 5)
    with pytest.raises(ValueError, match="method"):
        choose_samples(prior, pool, 5, method="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 known devices"):
        Prior({"one": prior.predictors["dev0"]})
    other = LatencyPredictor(tuple(OPS[:4] for _ in range(LAYERS)), config=PredictorConfig(pair_scale=0.0))
    other.fit_indices(_archs(40, 1) % 4, _latency(0, _archs(40, 1) % 4))
    with pytest.raises(ValueError, match="another search space"):
        Prior({"a": prior.predictors["dev0"], "b": other})
    with pytest.raises(ValueError, match="rank 8 must be below"):
        FewShotPredictor(prior, config=FewShotConfig(rank=8))
    with pytest.raises(ValueError, match="ratios must be"):
        FewShotConfig(ratios=(0.0,))
    with pytest.raises(ValueError, match="not a saved few-shot predictor"):
        FewShotPredictor.from_json({"format": "hurricane.latency-predictor/2"})

"""Each forecaster beats last-value on a series it should; real statsmodels and torch."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mantra6g.orchestrator.forecast import (
    Arima, ForecastError, Holt, LastValue, Lstm, LstmConfig, Quantile, make_forecaster,
    sliding_windows,
)

W = 10


def _mse(model, series: list[np.ndarray]) -> float:
    x, y = sliding_windows(series, W, 1)
    return float(np.mean((model.predict(x, 1)[:, 0] - y[:, 0]) ** 2))


def _split(make, n_series: int = 6, n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    series = [make(rng, n) for _ in range(n_series)]
    return series[:4], series[4:]


def noisy_level(rng, n):  # a level with white noise: smoothing must beat copying
    return 5.0 + rng.normal(0, 0.5, n)


def noisy_trend(rng, n):
    return 5.0 + 0.02 * np.arange(n) + rng.normal(0, 0.3, n)


def ar2(rng, n):  # oscillating AR(2) around 10: mean reversion must beat copying
    y = np.zeros(n)
    e = rng.normal(0, 1.0, n)
    for t in range(2, n):
        y[t] = 0.3 * y[t - 1] - 0.4 * y[t - 2] + e[t]
    return 10.0 + y


def test_ewma_and_holt_beat_last_value_on_noise():
    train, test = _split(noisy_level)
    last = _mse(LastValue(W), test)
    ewma = Holt(W, trend=False)
    ewma.fit(train)
    assert ewma.beta == 0.0 and ewma.alpha < 0.5
    assert _mse(ewma, test) < 0.7 * last
    train, test = _split(noisy_trend)
    holt = Holt(W, trend=True)
    holt.fit(train)
    assert _mse(holt, test) < 0.8 * _mse(LastValue(W), test)


@pytest.mark.slow
def test_arima_fitted_by_statsmodels_beats_last_value_on_ar2():
    train, test = _split(ar2)
    model = Arima(W, (2, 0, 0))
    model.fit(train)
    # The pooled relative series is the AR(2) scaled by 1/10: the coefficients survive.
    np.testing.assert_allclose(model.ar, [0.3, -0.4], atol=0.08)
    assert _mse(model, test) < 0.6 * _mse(LastValue(W), test)
    two = model.predict(np.stack([t[-W:] for t in test]), 2)
    assert two.shape == (2, 2) and np.all(np.isfinite(two))


def test_arima_with_differencing_and_ma_terms_predicts_inline():
    train, test = _split(noisy_trend)
    model = Arima(W, (1, 1, 1))
    model.fit(train)
    assert len(model.ar) == 1 and len(model.ma) == 1
    assert _mse(model, test) < _mse(LastValue(W), test)
    with pytest.raises(ForecastError):
        Arima(W, (1, 2, 0))


@pytest.mark.slow
def test_lstm_beats_last_value_and_round_trips(tmp_path):
    train, test = _split(ar2, n_series=6, n=500)
    model = Lstm(LstmConfig(window=W, hidden=16, layers=1, epochs=8, samples=1500, seed=1))
    model.fit(train)
    assert _mse(model, test) < 0.8 * _mse(LastValue(W), test)
    batch = np.stack([s[i:i + W] for s in test for i in range(0, 100, 10)])  # 20 chains
    pred = model.predict(batch, 2)
    assert pred.shape == (20, 2)
    model.save(tmp_path / "lstm.pt")
    np.testing.assert_allclose(Lstm.load(tmp_path / "lstm.pt").predict(batch, 2), pred, rtol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict(batch, 2), pred, rtol=1e-6)
    with pytest.raises(ForecastError):
        model.predict(batch, 3)


def _pinball(q_pred: np.ndarray, y: np.ndarray, level: float) -> float:
    d = y - q_pred
    return float(np.mean(np.maximum(level * d, (level - 1) * d)))


def test_quantile_forecaster_is_calibrated_and_beats_last_value_pinball():
    train, test = _split(noisy_level, n_series=8, n=800)
    model = Quantile(Holt(W, trend=False), level=0.9)
    model.fit(train)
    x, y = sliding_windows(test, W, 1)
    q = model.predict(x, 1)[:, 0]
    coverage = float(np.mean(y[:, 0] <= q))
    assert 0.85 <= coverage <= 0.95
    assert _pinball(q, y[:, 0], 0.9) < _pinball(LastValue(W).predict(x, 1)[:, 0], y[:, 0], 0.9)
    # "How likely is a violation": decreasing in the threshold, and consistent with q.
    p_low, p_q, p_high = (model.violation_probability(x[:50], thr)[:, 0]
                          for thr in (4.0, q[:50], 8.0))
    assert np.all(p_low >= p_q) and np.all(p_q >= p_high)
    assert np.all(p_q <= 0.1 + 0.01) and np.all(p_high < 0.01)


def test_make_forecaster_names():
    for name in ("last", "ewma", "holt", "arima", "lstm", "quantile"):
        assert make_forecaster(name, W).name == name
    with pytest.raises(ForecastError, match="choose from"):
        make_forecaster("prophet")

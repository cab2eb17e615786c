"""Each forecaster beats last-value on a series it should; real statsmodels and torch; the
calibrated violation risk against the normal distribution (scipy) it must reproduce."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from scipy import stats

from mantra6g.orchestrator.features import FEATURES, ChainSeries
from mantra6g.orchestrator.forecast import (
    Arima, ForecastError, Holt, LastValue, Lstm, LstmConfig, ViolationRisk, make_forecaster,
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


def leading(rng, n):
    """Latency one step behind a context feature (a leading indicator): y[t+1] = 1 +
    0.8 u[t] + noise, u an AR(1) process the latency alone cannot anticipate."""
    u = np.zeros(n)
    for t in range(1, n):
        u[t] = 0.7 * u[t - 1] + rng.normal(0, 0.5)
    y = np.empty(n)
    y[0] = 1.0
    y[1:] = 2.0 + 0.8 * u[:-1] + rng.normal(0, 0.05, n - 1)
    context = np.zeros((n, len(FEATURES)))
    context[:, FEATURES.index("utilisation")] = u
    context[:, FEATURES.index("traffic")] = 1.0
    return ChainSeries(y, context, 3.0, "urllc")


@pytest.mark.slow
def test_lstm_uses_a_leading_indicator_in_its_context():
    rng = np.random.default_rng(3)
    train, test = [leading(rng, 600) for _ in range(4)], [leading(rng, 400) for _ in range(2)]
    cfg = LstmConfig(window=W, hidden=16, layers=1, epochs=10, samples=2000, seed=1)
    with_ctx, without = Lstm(cfg), Lstm(LstmConfig(**{**cfg.__dict__, "context": False}))
    with_ctx.fit(train)
    without.fit(train)
    from mantra6g.orchestrator.forecast import context_windows

    x, c, y, _ = context_windows(test, W, 1)
    err_with = float(np.mean((with_ctx.predict(x, 1, c)[:, 0] - y[:, 0]) ** 2))
    err_without = float(np.mean((without.predict(x, 1, c)[:, 0] - y[:, 0]) ** 2))
    # The indicator explains most of the next step: the model that sees it does far better.
    assert err_with < 0.5 * err_without


def _iid(rng, n):  # a stationary latency: N(5, 0.5) every step
    return ChainSeries.bare(5.0 + rng.normal(0, 0.5, n), sla_ms=6.0, slice_="urllc")


class Mean:
    """The forecaster that knows the process's mean (5 ms): its errors are the noise."""

    name, window = "mean", W

    def fit(self, series) -> None:
        pass

    def predict(self, windows, horizon=1, context=None):
        return np.full((len(windows), horizon), 5.0)


def test_violation_risk_matches_the_normal_distribution_it_is_calibrated_on():
    rng = np.random.default_rng(7)
    flat = Mean()
    risk = ViolationRisk(flat, horizon=2)
    risk.fit([_iid(rng, 4000) for _ in range(4)])
    test = [_iid(rng, 3000) for _ in range(2)]
    x, y = sliding_windows(test, W, 2)
    point = flat.predict(x, 2)
    sla = np.full(len(x), 6.0)
    p = risk.probabilities(point, sla, ["urllc"] * len(x))
    within = risk.within_horizon(point, sla, ["urllc"] * len(x))
    # Oracle: scipy's normal distribution. One step: P(N(5, 0.5) > 6); within two
    # independent steps: 1 - P(both below).
    one = stats.norm.sf(6.0, 5.0, 0.5)
    assert abs(float(p[:, 0].mean()) - one) < 0.004
    assert abs(float(within.mean()) - (1 - (1 - one) ** 2)) < 0.006
    # Reliable on held-out data: predicted and observed frequencies agree.
    observed = (y > 6.0).any(axis=1)
    assert abs(float(within.mean()) - float(observed.mean())) < 0.01
    # The band: the 95 % quantile sits 1.645 sigma above the forecast.
    band = risk.quantile(np.full((1, 2), 5.0), [6.0], ["urllc"], 0.95)
    assert band[0, 0] == pytest.approx(5.0 + stats.norm.ppf(0.95) * 0.5, abs=0.05)
    with pytest.raises(ForecastError, match="no calibration residuals"):
        risk.probabilities(point[:1], [6.0], ["embb"])


def test_violation_risk_is_calibrated_per_regime():
    """Near the SLA the errors are wider (a node close to saturation): a residual table
    per regime keeps the risk calibrated there, where one pooled table would not."""
    rng = np.random.default_rng(11)

    def hetero(n):
        level = np.where(rng.random(n // 100).repeat(100) < 0.5, 2.0, 8.5)  # calm, or close to SLA
        noise = np.where(level > 5, 1.0, 0.2)
        return ChainSeries.bare(level + rng.normal(0, 1, n) * noise, sla_ms=10.0, slice_="urllc")

    base = Holt(W, trend=False, alpha=0.3)
    risk = ViolationRisk(base, horizon=1)
    risk.fit([hetero(6000) for _ in range(4)])
    p = risk.probabilities(np.array([[8.5]]), [10.0], ["urllc"])[0, 0]
    # Oracle: in that regime the latency is N(8.5, 1) (plus the forecast's small error).
    assert abs(p - stats.norm.sf(10.0, 8.5, 1.0)) < 0.03
    calm = risk.probabilities(np.array([[2.0]]), [10.0], ["urllc"])[0, 0]
    assert calm < 1e-3


def test_make_forecaster_names():
    for name in ("last", "ewma", "holt", "arima", "lstm"):
        assert make_forecaster(name, W).name == name
    with pytest.raises(ForecastError, match="choose from"):
        make_forecaster("prophet")
    with pytest.raises(ForecastError, match="predictive/holt is the old"):
        make_forecaster("quantile")

"""Latency forecasters behind one interface: fit offline on history, predict online.

Every forecaster maps a batch of windows (one row per chain, the last ``window``
end-to-end latencies, oldest first) to the next ``horizon`` latencies. Chains differ in
scale by an order of magnitude (URLLC ~0.5 ms, eMBB ~10 ms), so the learned models work
on windows expressed relative to their own mean, ``z = x / mean(x) - 1``, and one model
serves every chain.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from mantra6g import output
from mantra6g.errors import MantraError


class ForecastError(MantraError):
    """A forecaster asked for something it cannot do (unknown name, unsupported order)."""


@runtime_checkable
class Forecaster(Protocol):
    """Fit on history offline; predict the next 1-2 steps online, batched over chains."""

    name: str
    window: int

    def fit(self, series: Sequence[np.ndarray]) -> None:
        """Learn from training series (each a 1-D array of one chain's latencies)."""
        ...

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        """``windows``: (batch, window) latencies, oldest first -> (batch, horizon) forecasts."""
        ...


def _relative(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows relative to their mean, and that mean (guarded against zero)."""
    m = np.maximum(np.abs(windows.mean(axis=1, keepdims=True)), 1e-9)
    return windows / m - 1.0, m


def sliding_windows(series: Sequence[np.ndarray], window: int, horizon: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next ``horizon`` values) pairs of the series: X (n, window), Y (n, horizon)."""
    xs, ys = [], []
    for s in series:
        s = np.asarray(s, dtype=float)
        n = len(s) - window - horizon + 1
        if n <= 0:
            continue
        idx = np.arange(n)[:, None]
        xs.append(s[idx + np.arange(window)])
        ys.append(s[idx + window + np.arange(horizon)])
    if not xs:
        raise ForecastError(f"training series are shorter than window + horizon ({window + horizon})")
    return np.concatenate(xs), np.concatenate(ys)


class LastValue:
    """Tomorrow equals today: the baseline every other forecaster must beat."""

    name = "last"

    def __init__(self, window: int = 10):
        self.window = window

    def fit(self, series: Sequence[np.ndarray]) -> None:
        pass  # nothing to learn

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        return np.repeat(windows[:, -1:], horizon, axis=1)


class Holt:
    """Holt's linear smoothing (level + damped trend); ``trend=False`` is plain EWMA.

    The smoothing constants are chosen on the training series by grid search on the
    one-step squared error; prediction re-runs the recursion over each window.
    """

    def __init__(self, window: int = 10, trend: bool = True, alpha: float | None = None,
                 beta: float | None = None, damping: float = 0.9):
        self.name = "holt" if trend else "ewma"
        self.window = window
        self.trend = trend
        self.alpha = alpha if alpha is not None else 0.5
        self.beta = (beta if beta is not None else 0.1) if trend else 0.0
        self.damping = damping
        self._fixed = alpha is not None

    def fit(self, series: Sequence[np.ndarray]) -> None:
        if self._fixed:
            return
        x, y = sliding_windows(series, self.window, 1)
        rng = np.random.default_rng(0)
        if len(x) > 5000:  # the grid search needs a sample, not every window
            keep = rng.choice(len(x), 5000, replace=False)
            x, y = x[keep], y[keep]
        betas = np.linspace(0.0, 0.5, 6) if self.trend else np.array([0.0])
        best = (math.inf, self.alpha, self.beta)
        for a in np.linspace(0.05, 1.0, 20):
            for b in betas:
                err = float(np.mean((self._run(x, a, b, 1)[:, 0] - y[:, 0]) ** 2))
                if err < best[0]:
                    best = (err, float(a), float(b))
        _, self.alpha, self.beta = best

    def _run(self, windows: np.ndarray, alpha: float, beta: float, horizon: int) -> np.ndarray:
        level = windows[:, 0].copy()
        slope = np.zeros_like(level)
        phi = self.damping
        for t in range(1, windows.shape[1]):
            prev = level
            level = alpha * windows[:, t] + (1 - alpha) * (prev + phi * slope)
            slope = beta * (level - prev) + (1 - beta) * phi * slope
        steps = np.cumsum(phi ** np.arange(1, horizon + 1))
        return level[:, None] + slope[:, None] * steps[None, :]

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        return self._run(np.asarray(windows, dtype=float), self.alpha, self.beta, horizon)


class Arima:
    """ARIMA(p, d, q) fitted with statsmodels, predicted inline from its coefficients.

    statsmodels fits once on the pooled relative training series; online prediction is a
    few vectorised recursions over each window (no statsmodels call per step), which is
    what makes it usable in a 100 ms control loop over 20 chains. ``d`` is 0 or 1.
    """

    name = "arima"

    def __init__(self, window: int = 10, order: tuple[int, int, int] = (3, 0, 0)):
        p, d, q = order
        if d not in (0, 1) or p < 0 or q < 0 or p + q == 0:
            raise ForecastError(f"ARIMA order {order} is not supported; use d in {{0, 1}} and p + q >= 1")
        if p + q + d >= window:
            raise ForecastError(f"ARIMA order {order} needs a window longer than {p + q + d}")
        self.window = window
        self.order = order
        self.ar = np.zeros(p)
        self.ma = np.zeros(q)

    def fit(self, series: Sequence[np.ndarray]) -> None:
        from statsmodels.tsa.arima.model import ARIMA

        # Each series relative to its own mean, then concatenated: one model for all scales.
        pooled = np.concatenate([np.asarray(s, float) / max(float(np.mean(s)), 1e-9) - 1.0
                                 for s in series])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the coefficients are checked below
            result = ARIMA(pooled, order=self.order, trend="n").fit()
        self.ar = np.asarray(result.arparams, dtype=float)
        self.ma = np.asarray(result.maparams, dtype=float)
        if not np.all(np.isfinite(self.ar)) or not np.all(np.isfinite(self.ma)):
            raise ForecastError("ARIMA fit did not converge; try a lower order")

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        z, m = _relative(np.asarray(windows, dtype=float))
        w = np.diff(z, axis=1) if self.order[1] == 1 else z
        p, q = len(self.ar), len(self.ma)
        n = w.shape[1]
        # Conditional residuals over the window (zero before the first full lag set).
        e = np.zeros_like(w)
        for t in range(p, n):
            pred = w[:, t - p:t][:, ::-1] @ self.ar if p else 0.0
            if q:
                lags = e[:, max(0, t - q):t][:, ::-1]
                pred = pred + lags @ self.ma[:lags.shape[1]]
            e[:, t] = w[:, t] - pred
        hist = list(w.T)
        errs = list(e.T)
        out = []
        for _ in range(horizon):
            val = np.zeros(w.shape[0])
            for i in range(p):
                val += self.ar[i] * hist[-1 - i]
            for j in range(q):
                val += self.ma[j] * errs[-1 - j]
            hist.append(val)
            errs.append(np.zeros_like(val))  # future shocks have mean zero
            out.append(val)
        fw = np.stack(out, axis=1)
        fz = z[:, -1:] + np.cumsum(fw, axis=1) if self.order[1] == 1 else fw
        return m * (1.0 + fz)


@dataclass(frozen=True)
class LstmConfig:
    window: int = 10
    hidden: int = 64
    layers: int = 2
    epochs: int = 30
    lr: float = 1e-3
    batch: int = 64
    samples: int = 5000  # training windows drawn from the history
    horizon: int = 2  # steps the output layer predicts
    seed: int = 0


class Lstm:
    """The reference design's LSTM: window 10, 2 x 64, Adam, MSE, on 5,000 samples.

    Input and target are relative to the window mean and divided by the training
    spread, so one network serves chains of any latency scale.
    """

    name = "lstm"

    def __init__(self, config: LstmConfig = LstmConfig()):
        self.config = config
        self.window = config.window
        self.scale = 1.0
        self.train_seconds = 0.0
        self._net = self._build()

    def _build(self):  # -> torch.nn.Module, typed loosely to keep torch imports lazy
        import torch

        cfg = self.config

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = torch.nn.LSTM(1, cfg.hidden, cfg.layers, batch_first=True)
                self.head = torch.nn.Linear(cfg.hidden, cfg.horizon)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out, _ = self.lstm(x)
                return self.head(out[:, -1, :])

        torch.manual_seed(cfg.seed)
        return Net()

    def fit(self, series: Sequence[np.ndarray]) -> None:
        import time

        import torch

        cfg = self.config
        x, y = sliding_windows(series, cfg.window, cfg.horizon)
        rng = np.random.default_rng(cfg.seed)
        keep = rng.choice(len(x), min(cfg.samples, len(x)), replace=False)
        x, y = x[keep], y[keep]
        z, m = _relative(x)
        target = y / m - 1.0
        self.scale = float(np.std(z)) or 1.0
        xt = torch.tensor(z / self.scale, dtype=torch.float32).unsqueeze(-1)
        yt = torch.tensor(target / self.scale, dtype=torch.float32)
        torch.manual_seed(cfg.seed)
        self._net = self._build()
        opt = torch.optim.Adam(self._net.parameters(), lr=cfg.lr)
        loss_fn = torch.nn.MSELoss()
        gen = torch.Generator().manual_seed(cfg.seed)
        start = time.perf_counter()
        self._net.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), cfg.batch):
                b = order[i:i + cfg.batch]
                opt.zero_grad()
                loss = loss_fn(self._net(xt[b]), yt[b])
                loss.backward()
                opt.step()
        self._net.eval()
        self.train_seconds = time.perf_counter() - start

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        import torch

        if horizon > self.config.horizon:
            raise ForecastError(f"this LSTM predicts {self.config.horizon} steps, not {horizon}")
        z, m = _relative(np.asarray(windows, dtype=float))
        with torch.inference_mode():
            out = self._net(torch.tensor(z / self.scale, dtype=torch.float32).unsqueeze(-1))
        return m * (1.0 + out.numpy()[:, :horizon].astype(float) * self.scale)

    def __getstate__(self) -> dict:
        # The network class is local to _build, so pickle (process pools) goes via bytes.
        buf = io.BytesIO()
        self._save(buf)
        return {"blob": buf.getvalue(), "train_seconds": self.train_seconds}

    def __setstate__(self, state: dict) -> None:
        other = Lstm._load(io.BytesIO(state["blob"]))
        self.__dict__.update(other.__dict__)
        self.train_seconds = state["train_seconds"]

    def _save(self, buf: io.BytesIO) -> None:
        import torch

        torch.save({"state": self._net.state_dict(), "scale": self.scale,
                    "config": self.config.__dict__}, buf)

    @classmethod
    def _load(cls, buf: io.BytesIO) -> Lstm:
        import torch

        data = torch.load(buf, weights_only=True)
        model = cls(LstmConfig(**data["config"]))
        model._net.load_state_dict(data["state"])
        model._net.eval()
        model.scale = float(data["scale"])
        return model

    def save(self, path: str | Path) -> None:
        """Write weights, normalisation and configuration to one file."""
        buf = io.BytesIO()
        self._save(buf)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(path, buf.getvalue())  # a run stopped mid-save leaves no half a model

    @classmethod
    def load(cls, path: str | Path) -> Lstm:
        """Read a file written by :meth:`save`."""
        return cls._load(io.BytesIO(Path(path).read_bytes()))


class Quantile:
    """A high percentile of next-step latency: a point forecaster plus calibrated errors.

    The base forecaster is fitted on the first part of the history; its errors on the
    rest, divided by each window's standard deviation (so a calm URLLC window and a
    volatile eMBB window share one error distribution), form the empirical predictive
    distribution. :meth:`predict` returns its ``level`` quantile and
    :meth:`violation_probability` answers "how likely is latency above a threshold".
    """

    name = "quantile"

    def __init__(self, base: Forecaster, level: float = 0.95, calibration: float = 0.3):
        if not 0.5 < level < 1:
            raise ForecastError(f"quantile level must be in (0.5, 1), not {level}")
        self.base = base
        self.window = base.window
        self.level = level
        self.calibration = calibration
        self.errors = np.zeros((1, 2))  # (n, horizon): standardised calibration errors

    def fit(self, series: Sequence[np.ndarray], horizon: int = 2) -> None:
        cut = [int(len(s) * (1 - self.calibration)) for s in series]
        self.base.fit([s[:c] for s, c in zip(series, cut)])
        x, y = sliding_windows([s[c:] for s, c in zip(series, cut)], self.window, horizon)
        self.errors = np.sort((y - self.base.predict(x, horizon)) / _spread(x), axis=0)

    def predict(self, windows: np.ndarray, horizon: int = 1) -> np.ndarray:
        windows = np.asarray(windows, dtype=float)
        q = np.quantile(self.errors[:, :horizon], self.level, axis=0)
        return self.base.predict(windows, horizon) + _spread(windows) * q[None, :]

    def violation_probability(self, windows: np.ndarray, threshold: float | np.ndarray,
                              horizon: int = 1) -> np.ndarray:
        """P(latency > threshold) at each of the next ``horizon`` steps: (batch, horizon)."""
        windows = np.asarray(windows, dtype=float)
        point = self.base.predict(windows, horizon)
        spread = _spread(windows)
        thr = np.broadcast_to(np.asarray(threshold, float).reshape(-1, 1), point.shape)
        # Error needed to cross the threshold, standardised like the calibration errors.
        need = (thr - point) / spread
        out = np.empty_like(point)
        for h in range(horizon):
            col = self.errors[:, h]
            out[:, h] = 1.0 - np.searchsorted(col, need[:, h], side="right") / len(col)
        return out


def _spread(windows: np.ndarray) -> np.ndarray:
    return np.maximum(windows.std(axis=1, ddof=1, keepdims=True), 1e-6)


FORECASTERS = ("last", "ewma", "holt", "arima", "lstm", "quantile")


def make_forecaster(name: str, window: int = 10, *, arima_order: tuple[int, int, int] = (3, 0, 0),
                    lstm: LstmConfig | None = None, quantile_level: float = 0.95,
                    quantile_base: str = "holt") -> Forecaster:
    """A fresh, unfitted forecaster by name (one of :data:`FORECASTERS`)."""
    if name == "last":
        return LastValue(window)
    if name == "ewma":
        return Holt(window, trend=False)
    if name == "holt":
        return Holt(window, trend=True)
    if name == "arima":
        return Arima(window, arima_order)
    if name == "lstm":
        cfg = lstm or LstmConfig()
        return Lstm(LstmConfig(**{**cfg.__dict__, "window": window}))
    if name == "quantile":
        if quantile_base == "quantile":
            raise ForecastError("the quantile forecaster's base cannot be itself")
        base = make_forecaster(quantile_base, window, arima_order=arima_order, lstm=lstm)
        return Quantile(base, quantile_level)
    raise ForecastError(f"unknown forecaster '{name}'; choose from {', '.join(FORECASTERS)}")

"""Latency forecasters behind one interface: fit offline on history, predict online;
and the calibrated violation risk every forecast policy acts on.

Every forecaster maps a batch of windows (one row per chain, the last ``window``
end-to-end latencies, oldest first, and optionally the same steps' context features,
:mod:`mantra6g.orchestrator.features`) to the next ``horizon`` latencies. Chains differ in
scale by an order of magnitude (URLLC ~0.5 ms, eMBB ~10 ms), so the learned models work
on windows expressed relative to their own mean, ``z = x / mean(x) - 1``, and one model
serves every chain. Only the LSTM uses the context; the others ignore it.

:class:`ViolationRisk` turns any fitted forecaster into calibrated probabilities of
breaking the SLA: split-conformal residuals on held-out calibration runs, per slice and
per regime (how close the forecast is to the SLA) and per forecast step.
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
from mantra6g.orchestrator.features import FEATURES, TRAFFIC, ChainSeries


class ForecastError(MantraError):
    """A forecaster asked for something it cannot do (unknown name, unsupported order)."""


@runtime_checkable
class Forecaster(Protocol):
    """Fit on history offline; predict the next 1-2 steps online, batched over chains."""

    name: str
    window: int

    def fit(self, series: Sequence[ChainSeries | np.ndarray]) -> None:
        """Learn from training series (one chain each: a :class:`ChainSeries`, or a 1-D
        array of latencies for models without context)."""
        ...

    def predict(self, windows: np.ndarray, horizon: int = 1, context: np.ndarray | None = None) -> np.ndarray:
        """``windows``: (batch, window) latencies, oldest first; ``context``: (batch,
        window, features) or None -> (batch, horizon) forecasts."""
        ...


def _series(series: Sequence[ChainSeries | np.ndarray]) -> list[ChainSeries]:
    return [s if isinstance(s, ChainSeries) else ChainSeries.bare(s) for s in series]


def _latencies(series: Sequence[ChainSeries | np.ndarray]) -> list[np.ndarray]:
    return [s.latency for s in _series(series)]


def _relative(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows relative to their mean, and that mean (guarded against zero)."""
    m = np.maximum(np.abs(windows.mean(axis=1, keepdims=True)), 1e-9)
    return windows / m - 1.0, m


def sliding_windows(series: Sequence[ChainSeries | np.ndarray], window: int, horizon: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """All (window, next ``horizon`` values) pairs of the series: X (n, window), Y (n, horizon)."""
    x, _, y, _ = context_windows(series, window, horizon)
    return x, y


def context_windows(series: Sequence[ChainSeries | np.ndarray], window: int, horizon: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """X (n, window), C (n, window, F), Y (n, horizon) and, per window, the index of the
    series it came from."""
    xs, cs, ys, origin = [], [], [], []
    for k, s in enumerate(_series(series)):
        lat = np.asarray(s.latency, dtype=float)
        n = len(lat) - window - horizon + 1
        if n <= 0:
            continue
        idx = np.arange(n)[:, None]
        xs.append(lat[idx + np.arange(window)])
        cs.append(s.context[idx + np.arange(window)])
        ys.append(lat[idx + window + np.arange(horizon)])
        origin += [k] * n
    if not xs:
        raise ForecastError(f"training series are shorter than window + horizon ({window + horizon})")
    return np.concatenate(xs), np.concatenate(cs), np.concatenate(ys), origin


class LastValue:
    """Tomorrow equals today: the baseline every other forecaster must beat."""

    name = "last"

    def __init__(self, window: int = 10):
        self.window = window

    def fit(self, series: Sequence[ChainSeries | np.ndarray]) -> None:
        pass  # nothing to learn

    def predict(self, windows: np.ndarray, horizon: int = 1, context: np.ndarray | None = None) -> np.ndarray:
        return np.repeat(np.asarray(windows, dtype=float)[:, -1:], horizon, axis=1)


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

    def fit(self, series: Sequence[ChainSeries | np.ndarray]) -> None:
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

    def predict(self, windows: np.ndarray, horizon: int = 1, context: np.ndarray | None = None) -> np.ndarray:
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

    def fit(self, series: Sequence[ChainSeries | np.ndarray]) -> None:
        from statsmodels.tsa.arima.model import ARIMA

        # Each series relative to its own mean, then concatenated: one model for all scales.
        pooled = np.concatenate([np.asarray(s, float) / max(float(np.mean(s)), 1e-9) - 1.0
                                 for s in _latencies(series)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the coefficients are checked below
            result = ARIMA(pooled, order=self.order, trend="n").fit()
        self.ar = np.asarray(result.arparams, dtype=float)
        self.ma = np.asarray(result.maparams, dtype=float)
        if not np.all(np.isfinite(self.ar)) or not np.all(np.isfinite(self.ma)):
            raise ForecastError("ARIMA fit did not converge; try a lower order")

    def predict(self, windows: np.ndarray, horizon: int = 1, context: np.ndarray | None = None) -> np.ndarray:
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
    context: bool = True  # feed the context features (False: latency only, the ablation)


def _lstm_inputs(windows: np.ndarray, context: np.ndarray | None, use_context: bool, scale: float,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The network's input (batch, window, 1 [+ F]) and the windows' means."""
    z, m = _relative(np.asarray(windows, dtype=float))
    parts = [z[:, :, None] / scale]
    if use_context:
        c = np.zeros(z.shape + (len(FEATURES),)) if context is None else np.array(context, dtype=float)
        # Traffic relative to its own window, like the latency: one model for all rates.
        t = c[:, :, TRAFFIC]
        c[:, :, TRAFFIC] = t / np.maximum(np.abs(t.mean(axis=1, keepdims=True)), 1e-9) - 1.0
        parts.append(np.nan_to_num(c))
    return np.concatenate(parts, axis=2), m


class Lstm:
    """The reference design's LSTM: window 10, 2 x 64, Adam, MSE, on 5,000 samples, with
    the context features the paper lists (traffic volume, VNF resource usage, time, recent
    migrations) beside the latency at every step.

    Input and target latency are relative to the window mean and divided by the training
    spread, so one network serves chains of any latency scale.
    """

    name = "lstm"

    def __init__(self, config: LstmConfig = LstmConfig()):
        self.config = config
        self.window = config.window
        self.scale = 1.0
        self.train_seconds = 0.0
        self._net = self._build()

    @property
    def inputs(self) -> int:
        return 1 + (len(FEATURES) if self.config.context else 0)

    def _build(self):  # -> torch.nn.Module, typed loosely to keep torch imports lazy
        import torch

        cfg = self.config
        inputs = self.inputs

        class Net(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = torch.nn.LSTM(inputs, cfg.hidden, cfg.layers, batch_first=True)
                self.head = torch.nn.Linear(cfg.hidden, cfg.horizon)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out, _ = self.lstm(x)
                return self.head(out[:, -1, :])

        torch.manual_seed(cfg.seed)
        return Net()

    def fit(self, series: Sequence[ChainSeries | np.ndarray]) -> None:
        import time

        import torch

        cfg = self.config
        x, c, y, _ = context_windows(series, cfg.window, cfg.horizon)
        rng = np.random.default_rng(cfg.seed)
        keep = rng.choice(len(x), min(cfg.samples, len(x)), replace=False)
        x, c, y = x[keep], c[keep], y[keep]
        z, m = _relative(x)
        target = y / m - 1.0
        self.scale = float(np.std(z)) or 1.0
        inputs, _ = _lstm_inputs(x, c, cfg.context, self.scale)
        xt = torch.tensor(inputs, dtype=torch.float32)
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

    def predict(self, windows: np.ndarray, horizon: int = 1, context: np.ndarray | None = None) -> np.ndarray:
        import torch

        if horizon > self.config.horizon:
            raise ForecastError(f"this LSTM predicts {self.config.horizon} steps, not {horizon}")
        inputs, m = _lstm_inputs(windows, context, self.config.context, self.scale)
        with torch.inference_mode():
            out = self._net(torch.tensor(inputs, dtype=torch.float32))
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
                    "config": self.config.__dict__, "name": self.name}, buf)

    @classmethod
    def _load(cls, buf: io.BytesIO) -> Lstm:
        import torch

        data = torch.load(buf, weights_only=True)
        model = cls(LstmConfig(**data["config"]))
        model._net.load_state_dict(data["state"])
        model._net.eval()
        model.scale = float(data["scale"])
        model.name = str(data.get("name", "lstm"))
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


# Regimes: where the point forecast sits relative to the SLA, and how loaded the chain's
# bottleneck is (its utilisation, a leading indicator). Forecast errors near the SLA or
# near saturation are wider and skewed; far below it and on an idle path they are jitter.
REGIME_EDGES = (0.4, 0.7, 1.0)  # forecast / SLA
LOAD_EDGES = (0.8, 0.95)  # bottleneck utilisation
MIN_STRATUM = 100  # the forecast band falls back to the next coarser table below this many
PRIOR_WEIGHT = 20.0  # a stratum's probability is shrunk towards its parent's, as this many residuals


def _regimes(forecast: np.ndarray, sla: np.ndarray, utilisation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.searchsorted(REGIME_EDGES, forecast / sla, side="right"),
            np.searchsorted(LOAD_EDGES, np.nan_to_num(utilisation), side="right"))


class ViolationRisk:
    """Calibrated probability that a chain breaks its SLA, on top of a fitted forecaster.

    Split conformal: the forecaster's errors on calibration runs it was not trained on,
    in units of the SLA, ``r = (y - forecast) / SLA``, are kept per slice, per forecast
    step and per regime - the forecast's level (:data:`REGIME_EDGES` of forecast / SLA)
    and the chain's bottleneck utilisation (:data:`LOAD_EDGES`; the context feature
    ``utilisation`` at the window's last step). The probability that step ``h`` exceeds
    the SLA is the share of those residuals above ``(SLA - forecast) / SLA``, shrunk
    towards the same share in the coarser table (the level alone, then the slice's pooled
    residuals) as if that table had given :data:`PRIOR_WEIGHT` of the stratum's residuals
    (a beta-binomial estimate: a small stratum - few calibration windows saw a loaded
    link - still counts, without a few residuals deciding). The same is kept for the maximum over the horizon ("a
    violation within the horizon", what the reliability diagram checks). Moves are
    assessed with the same tables, applied to the moved forecast at the utilisation the
    move leaves on the chain's path.
    """

    def __init__(self, base: Forecaster, horizon: int = 2):
        self.base = base
        self.window = base.window
        self.horizon = horizon
        self.name = base.name
        # (slice, step or "max", level regime or None, load regime or None) -> sorted residuals
        self.residuals: dict[tuple[str, object, int | None, int | None], np.ndarray] = {}

    def fit(self, calibration: Sequence[ChainSeries]) -> None:
        """Collect the base forecaster's residuals on ``calibration`` (held-out runs)."""
        h = self.horizon
        x, c, y, origin = context_windows(calibration, self.window, h)
        cal = _series(calibration)
        sla = np.array([cal[k].sla_ms for k in origin])
        slices = np.array([cal[k].slice for k in origin])
        load = c[:, -1, FEATURES.index("utilisation")]
        point = self.base.predict(x, h, c)
        groups: dict[tuple, list[np.ndarray]] = {}
        for step in list(range(h)) + ["max"]:
            f = point.max(axis=1) if step == "max" else point[:, step]
            obs = y.max(axis=1) if step == "max" else y[:, step]
            r = (obs - f) / sla
            level, busy = _regimes(f, sla, load)
            for kind in np.unique(slices):
                sel = slices == kind
                groups.setdefault((str(kind), step, None, None), []).append(r[sel])
                for g in range(len(REGIME_EDGES) + 1):
                    at = sel & (level == g)
                    groups.setdefault((str(kind), step, g, None), []).append(r[at])
                    for u in range(len(LOAD_EDGES) + 1):
                        groups.setdefault((str(kind), step, g, u), []).append(r[at & (busy == u)])
        self.residuals = {k: np.sort(np.concatenate(v)) for k, v in groups.items()}

    def _table(self, kind: str, step, level: int, busy: int) -> np.ndarray:
        for key in ((kind, step, level, busy), (kind, step, level, None), (kind, step, None, None)):
            r = self.residuals.get(key)
            if r is not None and (len(r) >= MIN_STRATUM or key[2] is None) and len(r):
                return r
        raise ForecastError(f"no calibration residuals for slice {kind}: calibrate on runs that have it")

    def _exceed(self, forecast: np.ndarray, sla: np.ndarray, slices: Sequence[str], load: np.ndarray,
                step) -> np.ndarray:
        need = (sla - forecast) / sla
        level, busy = _regimes(forecast, sla, load)
        out = np.empty(len(forecast))
        for i, kind in enumerate(slices):
            p = None
            for key in ((kind, step, None, None), (kind, step, int(level[i]), None),
                        (kind, step, int(level[i]), int(busy[i]))):
                r = self.residuals.get(key)
                if r is None or not len(r):
                    continue
                above = len(r) - np.searchsorted(r, need[i], side="right")
                p = above / len(r) if p is None else (above + PRIOR_WEIGHT * p) / (len(r) + PRIOR_WEIGHT)
            if p is None:
                raise ForecastError(f"no calibration residuals for slice {kind}: calibrate on runs that have it")
            out[i] = p
        return out

    @staticmethod
    def _load(load, n: int) -> np.ndarray:
        return np.zeros(n) if load is None else np.broadcast_to(np.asarray(load, dtype=float), (n,))

    def probabilities(self, point: np.ndarray, sla: Sequence[float], slices: Sequence[str],
                      load: np.ndarray | None = None) -> np.ndarray:
        """P(latency > SLA) at each forecast step, given point forecasts (chains, H) and
        the chains' bottleneck utilisation (None: idle)."""
        sla = np.asarray(sla, dtype=float)
        u = self._load(load, len(point))
        return np.stack([self._exceed(point[:, h], sla, slices, u, min(h, self.horizon - 1))
                         for h in range(point.shape[1])], axis=1)

    def within_horizon(self, point: np.ndarray, sla: Sequence[float], slices: Sequence[str],
                       load: np.ndarray | None = None) -> np.ndarray:
        """P(the maximum over the horizon > SLA): the event the reliability diagram checks."""
        return self._exceed(point.max(axis=1), np.asarray(sla, dtype=float), slices, self._load(load, len(point)), "max")

    def quantile(self, point: np.ndarray, sla: Sequence[float], slices: Sequence[str], level: float,
                 load: np.ndarray | None = None) -> np.ndarray:
        """The ``level`` quantile of latency at each step (the forecast band of the plots)."""
        sla = np.asarray(sla, dtype=float)
        u = self._load(load, len(point))
        out = np.empty_like(point, dtype=float)
        for h in range(point.shape[1]):
            lv, busy = _regimes(point[:, h], sla, u)
            for i, kind in enumerate(slices):
                r = self._table(kind, min(h, self.horizon - 1), int(lv[i]), int(busy[i]))
                out[i, h] = point[i, h] + sla[i] * r[min(len(r) - 1, int(level * len(r)))]
        return out


FORECASTERS = ("last", "ewma", "holt", "arima", "lstm", "lstm-nocontext")


def make_forecaster(name: str, window: int = 10, *, arima_order: tuple[int, int, int] = (3, 0, 0),
                    lstm: LstmConfig | None = None) -> Forecaster:
    """A fresh, unfitted forecaster by name (one of :data:`FORECASTERS`)."""
    if name == "last":
        return LastValue(window)
    if name == "ewma":
        return Holt(window, trend=False)
    if name == "holt":
        return Holt(window, trend=True)
    if name == "arima":
        return Arima(window, arima_order)
    if name in ("lstm", "lstm-nocontext"):
        cfg = lstm or LstmConfig()
        model = Lstm(LstmConfig(**{**cfg.__dict__, "window": window, "context": cfg.context and name == "lstm"}))
        model.name = name
        return model
    if name == "quantile":
        raise ForecastError("'quantile' is no longer a forecaster: every forecast policy now acts on a "
                            "calibrated violation risk over its forecaster (predictive/holt is the old "
                            "predictive/quantile); choose from " + ", ".join(FORECASTERS))
    raise ForecastError(f"unknown forecaster '{name}'; choose from {', '.join(FORECASTERS)}")

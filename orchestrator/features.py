"""Context features of a chain: the leading indicators and the other inputs the paper
gives its LSTM besides the latency itself (traffic volume, VNF resource usage, time,
recent migrations).

One place computes them, from what the telemetry store holds, for training (whole runs)
and for the control loop (the last ``window`` intervals) alike, so a model sees the same
inputs offline and online. Features are *raw* (traffic in kpps); scale-free models
normalise them per window (see :mod:`mantra6g.orchestrator.forecast`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FEATURES = (
    "traffic",  # the chain's offered traffic, kpps (normalised per window by the models)
    "utilisation",  # busiest resource on the chain's path (CPU partition / link), 0..2
    "queueing",  # queueing delay measured along the chain (qdisc backlog / M/M/1), / SLA
    "drops",  # packets dropped on the chain's path, log(1 + kpps)
    "time_sin",  # time of day (the scenario's day), sin and cos
    "time_cos",
    "migrated",  # exp(-time since the chain's last migration / MIGRATION_MEMORY_S)
)
TRAFFIC = 0  # index of the feature models normalise per window
MIGRATION_MEMORY_S = 1.0  # how long "recently migrated" lasts (seconds, e-folding)


@dataclass(frozen=True)
class ChainSeries:
    """One chain's telemetry over a run: what the forecasters are trained on."""

    latency: np.ndarray  # (T,) end-to-end latency, ms
    context: np.ndarray  # (T, len(FEATURES))
    sla_ms: float
    slice: str

    @staticmethod
    def bare(latency: np.ndarray, sla_ms: float = float("nan"), slice_: str = "") -> ChainSeries:
        """A latency series without context (zeros): for models that use none."""
        latency = np.asarray(latency, dtype=float)
        return ChainSeries(latency, np.zeros((len(latency), len(FEATURES))), sla_ms, slice_)


def context_features(window: Mapping[str, np.ndarray], sla_ms: Sequence[float], day_s: float,
                     last_migration_s: Sequence[float]) -> np.ndarray:
    """(chains, n, F) features from a :meth:`TelemetryStore.chain_window` result.

    ``last_migration_s``: each chain's latest migration time (``-inf``: never), either one
    per chain (window positions before it count as not migrated) or one per chain and
    position, shape (chains, n).
    """
    times = np.asarray(window["time"], dtype=float)
    sla = np.asarray(sla_ms, dtype=float)[:, None]
    phase = 2 * np.pi * times / max(day_s, 1e-9)
    chains, n = window["latency_ms"].shape
    out = np.zeros((chains, n, len(FEATURES)))
    out[:, :, 0] = np.nan_to_num(window["traffic_kpps"])
    out[:, :, 1] = np.clip(np.nan_to_num(window["utilisation"]), 0.0, 2.0)
    out[:, :, 2] = np.clip(np.nan_to_num(window["queueing_ms"]) / sla, 0.0, 5.0)
    out[:, :, 3] = np.log1p(np.maximum(np.nan_to_num(window["drops_kpps"]), 0.0))
    out[:, :, 4] = np.sin(phase)[None, :]
    out[:, :, 5] = np.cos(phase)[None, :]
    last = np.asarray(last_migration_s, dtype=float)
    since = times[None, :] - (last if last.ndim == 2 else last[:, None])
    out[:, :, 6] = np.where(np.isfinite(since) & (since >= 0), np.exp(-np.maximum(since, 0) / MIGRATION_MEMORY_S), 0.0)
    return out


def migration_times(times: np.ndarray, migrations: Sequence[float]) -> np.ndarray:
    """For each of ``times``, the latest of ``migrations`` at or before it (``-inf``: none)."""
    m = np.sort(np.asarray(list(migrations), dtype=float))
    idx = np.searchsorted(m, times, side="right") - 1
    return np.where(idx >= 0, m[np.maximum(idx, 0)] if len(m) else -np.inf, -np.inf)


def run_series(store, chains: Sequence, day_s: float) -> list[ChainSeries]:
    """Every chain's whole-run :class:`ChainSeries` from a run's telemetry store."""
    names = [c.name for c in chains]
    window = store.chain_window(names, 10**9)
    last = np.stack([migration_times(window["time"], [m[0] for m in store.migrations(c.name)]) for c in chains])
    feats = context_features(window, [c.sla_ms for c in chains], day_s, last)
    return [ChainSeries(np.nan_to_num(window["latency_ms"][i]), feats[i], c.sla_ms, c.slice.value)
            for i, c in enumerate(chains)]

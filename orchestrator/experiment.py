"""Runs of the simulator: training the forecasters, one run, many seeds in parallel.

Seeds: evaluation runs use seeds 1..N; forecasters are trained on a run of the static
policy with ``forecast.train_seed`` (default 900001, and a scenario may not set it
at or below 10000), so no evaluation workload is ever seen in training.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mantra6g.orchestrator.controller import FORECAST_POLICIES, Controller, run
from mantra6g.orchestrator.forecast import Forecaster, Lstm, LstmConfig, make_forecaster
from mantra6g.orchestrator.scenario import Scenario
from mantra6g.orchestrator.simulator import Simulator


@dataclass(frozen=True)
class RunResult:
    """Everything the report needs from one (policy, forecaster, seed) run."""

    policy: str
    forecaster: str | None
    seed: int
    chains: tuple[str, ...]
    slices: tuple[str, ...]
    sla_ms: tuple[float, ...]
    latency: np.ndarray  # (steps, chains), ground truth
    observed: np.ndarray  # (steps, chains), what the controller saw
    forecast: np.ndarray  # (steps, chains): one-step forecast made after step t, for t+1
    inference_s: np.ndarray  # forecaster time per step
    migrations: tuple[tuple[int, str, str, bool], ...]  # (step, chain, vnf, needed)
    interval_ms: float

    @property
    def label(self) -> str:
        return self.policy if self.forecaster is None else f"{self.policy}/{self.forecaster}"


def training_series(scenario: Scenario) -> list[np.ndarray]:
    """Per-chain latency series of static runs on training seeds, enough for the LSTM's samples."""
    series: list[np.ndarray] = []
    windows = 0
    seed = scenario.forecast.train_seed
    while windows < scenario.forecast.train_samples:
        sim = Simulator(scenario, seed)
        run(sim, Controller("static", scenario.policy, scenario.migration))
        series += [sim.truth.latency[:, c].copy() for c in range(sim.truth.latency.shape[1])]
        windows += sum(len(s) - scenario.forecast.window - 2 for s in series[-sim.truth.latency.shape[1]:])
        seed += 1
    return series


def lstm_config(scenario: Scenario) -> LstmConfig:
    f = scenario.forecast
    return LstmConfig(window=f.window, hidden=f.lstm_hidden, layers=f.lstm_layers,
                      epochs=f.lstm_epochs, lr=f.lstm_lr, samples=f.train_samples,
                      horizon=max(2, scenario.policy.horizon), seed=f.train_seed)


def train_forecaster(name: str, scenario: Scenario, cache_dir: Path | None = None,
                     series: Sequence[np.ndarray] | None = None) -> Forecaster:
    """A forecaster fitted on the training seeds; LSTM weights are cached in ``cache_dir``.

    The cache key hashes everything that shapes the training data and the network, so a
    changed scenario retrains instead of loading stale weights.
    """
    f = scenario.forecast
    cfg = lstm_config(scenario)
    model = make_forecaster(name, f.window, arima_order=f.arima_order, lstm=cfg,
                            quantile_level=f.quantile_level, quantile_base=f.quantile_base)
    path = None
    if cache_dir is not None and name == "lstm":
        key = hashlib.sha256(json.dumps([asdict(scenario), asdict(cfg)], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"lstm-{key}.pt"
        if path.exists():
            return Lstm.load(path)
    model.fit(series if series is not None else training_series(scenario))
    if path is not None:
        model.save(path)  # type: ignore[attr-defined]
    return model


def run_one(scenario: Scenario, policy: str, seed: int,
            forecaster: Forecaster | None = None, forecaster_name: str | None = None,
            ) -> RunResult:
    """One simulated run of ``policy`` on ``seed``."""
    sim = Simulator(scenario, seed)
    ctl = Controller(policy, scenario.policy, scenario.migration, forecaster)
    trace = run(sim, ctl)
    chains = sim.chains()
    forecast = np.array([f[:, 0] for f in trace.forecasts])
    return RunResult(
        policy=policy,
        forecaster=forecaster_name if policy in FORECAST_POLICIES else None,
        seed=seed,
        chains=tuple(c.name for c in chains),
        slices=tuple(c.slice.value for c in chains),
        sla_ms=tuple(c.sla_ms for c in chains),
        latency=sim.truth.latency,
        observed=np.array(trace.observed),
        forecast=forecast,
        inference_s=np.array(trace.inference_s),
        migrations=tuple((r.decided_step, r.plan.chain, r.plan.vnf, r.needed)
                         for r in sim.truth.migrations),
        interval_ms=scenario.interval_ms,
    )


# Worker state for the process pool: the scenario and fitted forecasters, sent once.
_WORKER: dict = {}


def _init_worker(scenario: Scenario, forecasters: dict[str, Forecaster]) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; nested threads only contend
    _WORKER["scenario"] = scenario
    _WORKER["forecasters"] = forecasters


def _run_job(job: tuple[str, str | None, int]) -> RunResult:
    policy, name, seed = job
    forecaster = _WORKER["forecasters"][name] if name else None
    return run_one(_WORKER["scenario"], policy, seed, forecaster, name)


def run_experiment(scenario: Scenario, policies: Sequence[str], forecasters: Sequence[str],
                   seeds: Sequence[int], jobs: int = 1, cache_dir: Path | None = None,
                   ) -> list[RunResult]:
    """Every policy (forecast policies once per forecaster) on every seed."""
    fitted: dict[str, Forecaster] = {}
    if any(p in FORECAST_POLICIES for p in policies):
        import torch

        # Small batches train no faster on two threads, and contend with other work.
        torch.set_num_threads(1)
        series = training_series(scenario)
        for name in forecasters:
            fitted[name] = train_forecaster(name, scenario, cache_dir, series)
    todo = [(p, n, s) for s in seeds for p in policies
            for n in (forecasters if p in FORECAST_POLICIES else [None])]
    if jobs <= 1:
        _init_worker(scenario, fitted)
        return [_run_job(j) for j in todo]
    ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe once it has threads
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(scenario, fitted)) as pool:
        return pool.map(_run_job, todo, chunksize=1)

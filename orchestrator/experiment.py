"""Runs of the simulator: training the forecasters, calibrating their risk, one run, many
seeds in parallel.

Seeds: evaluation runs use seeds ``first..first+N-1`` (``--first-seed``, default 1).
Forecasters are trained on runs of ``forecast.train_runs`` (static and reactive: no
forecaster is needed to run them) with ``forecast.train_seed`` and following seeds, and
their violation risk is calibrated on runs with ``forecast.calibration_seed`` and
following: both above 10000, so no evaluation workload is ever seen in training or
calibration.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mantra6g.orchestrator.controller import Controller, run
from mantra6g.orchestrator.features import ChainSeries, run_series
from mantra6g.orchestrator.forecast import Forecaster, Lstm, LstmConfig, ViolationRisk, make_forecaster
from mantra6g.orchestrator.placement import balanced_placement
from mantra6g.orchestrator.policy import PolicyEngine, PolicySpec
from mantra6g.orchestrator.scenario import Scenario
from mantra6g.orchestrator.simulator import Simulator


@dataclass(frozen=True)
class RunResult:
    """Everything the report needs from one (policy, forecaster, seed) run."""

    policy: str  # the policy spec as written (e.g. reactive@0.6)
    forecaster: str | None
    seed: int
    chains: tuple[str, ...]
    slices: tuple[str, ...]
    sla_ms: tuple[float, ...]
    latency: np.ndarray  # (steps, chains), ground truth
    floor: np.ndarray  # (steps, chains), the jitter floor (every VNF on one idle node)
    observed: np.ndarray  # (steps, chains), what the controller saw
    forecast: np.ndarray  # (steps, chains): one-step forecast made after step t, for t+1
    band: np.ndarray  # (steps, chains): its 95 % quantile (NaN without a risk model)
    risk: np.ndarray  # (steps, chains): P(violation within the horizon) made after step t
    inference_s: np.ndarray  # forecaster time per step
    migrations: tuple[tuple[int, str, str, bool], ...]  # (step, chain, vnf, needed)
    triggered: tuple[tuple[int, str], ...]  # (step, chain) the policy flagged
    interval_ms: float
    horizon: int

    @property
    def label(self) -> str:
        name = str(self.policy)
        if self.forecaster is None or not PolicySpec.parse(name).kind.needs_forecaster:
            return name
        base, _, value = name.partition("@")
        return f"{base}/{self.forecaster}" + (f"@{value}" if value else "")


@dataclass
class Models:
    """What the forecast policies of one experiment use, all fitted before any evaluation
    run: the forecasters and their calibrated risk."""

    forecasters: dict[str, Forecaster] = field(default_factory=dict)
    risks: dict[str, ViolationRisk] = field(default_factory=dict)


def day_s(scenario: Scenario) -> float:
    """The scenario's "day" (its diurnal period) in seconds: the time-of-day feature's period."""
    return scenario.traffic.period_steps * scenario.interval_ms / 1000.0


def _runs(scenario: Scenario, first_seed: int, windows_needed: int) -> list[ChainSeries]:
    """Chain series of ``forecast.train_runs`` runs from ``first_seed`` on, until they hold
    ``windows_needed`` windows."""
    series: list[ChainSeries] = []
    windows = 0
    seed = first_seed
    while windows < windows_needed:
        for policy in scenario.forecast.train_runs:
            sim = _simulator(scenario, seed, policy)
            ctl = Controller(policy, scenario.policy, scenario.migration, day_s=day_s(scenario))
            run(sim, ctl)
            got = run_series(ctl.store, sim.chains(), day_s(scenario))
            series += got
            windows += sum(len(s.latency) - scenario.forecast.window - 2 for s in got)
        seed += 1
    return series


def training_series(scenario: Scenario) -> list[ChainSeries]:
    """Per-chain telemetry of the training runs, enough for the LSTM's samples."""
    return _runs(scenario, scenario.forecast.train_seed, scenario.forecast.train_samples)


def calibration_series(scenario: Scenario) -> list[ChainSeries]:
    """Per-chain telemetry of the held-out calibration runs."""
    return _runs(scenario, scenario.forecast.calibration_seed, scenario.forecast.calibration_samples)


def lstm_config(scenario: Scenario) -> LstmConfig:
    f = scenario.forecast
    return LstmConfig(window=f.window, hidden=f.lstm_hidden, layers=f.lstm_layers,
                      epochs=f.lstm_epochs, lr=f.lstm_lr, samples=f.train_samples,
                      horizon=max(2, scenario.policy.horizon), seed=f.train_seed, context=f.lstm_context)


def train_forecaster(name: str, scenario: Scenario, cache_dir: Path | None = None,
                     series: Sequence[ChainSeries] | None = None) -> Forecaster:
    """A forecaster fitted on the training runs; LSTM weights are cached in ``cache_dir``.

    The cache key hashes everything that shapes the training data and the network, so a
    changed scenario retrains instead of loading stale weights.
    """
    f = scenario.forecast
    cfg = lstm_config(scenario)
    model = make_forecaster(name, f.window, arima_order=f.arima_order, lstm=cfg)
    path = None
    if cache_dir is not None and name.startswith("lstm"):
        key = hashlib.sha256(json.dumps([asdict(scenario), asdict(cfg), name, 2], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"{name}-{key}.pt"
        if path.exists():
            return Lstm.load(path)
    model.fit(series if series is not None else training_series(scenario))
    if path is not None:
        model.save(path)  # type: ignore[attr-defined]
    return model


def fit_models(scenario: Scenario, forecasters: Sequence[str], cache_dir: Path | None = None) -> Models:
    """Train every forecaster on the training runs and calibrate its risk on the
    calibration runs (never on evaluation seeds)."""
    import torch

    torch.set_num_threads(1)  # small batches train no faster on two threads
    models = Models()
    if not forecasters:
        return models
    train, cal = training_series(scenario), calibration_series(scenario)
    for name in forecasters:
        model = train_forecaster(name, scenario, cache_dir, train)
        risk = ViolationRisk(model, scenario.policy.horizon)
        risk.fit(cal)
        models.forecasters[name] = model
        models.risks[name] = risk
    return models


def _simulator(scenario: Scenario, seed: int, policy: str) -> Simulator:
    """The simulated site of one run, starting from the policy's placement: ``balanced``
    (and, with ``policy.start: balanced``, every policy) from the balanced static one."""
    sim = Simulator(scenario, seed)
    if PolicySpec.parse(policy).kind.placement == "balanced" or scenario.policy.start == "balanced":
        demand, exposure = sim.descriptor_load()
        start = balanced_placement(sim.nodes(), sim.chains(), PolicyEngine(scenario.policy), demand, exposure)
        sim = Simulator(scenario, seed, start)
    return sim


def run_one(scenario: Scenario, policy: str, seed: int, models: Models | None = None,
            forecaster_name: str | None = None) -> RunResult:
    """One simulated run of ``policy`` on ``seed``; with a forecaster, a static or
    balanced run records its risk forecasts without acting on them."""
    spec = PolicySpec.parse(policy)
    models = models or Models()
    sim = _simulator(scenario, seed, policy)
    forecaster = models.forecasters.get(forecaster_name) if forecaster_name else None
    risk = models.risks.get(forecaster_name) if forecaster_name else None
    if spec.kind.trigger == "forecast":
        risk_for = risk  # the paper's trigger uses the point forecast; the risk is only recorded
    else:
        risk_for = risk if forecaster is not None else None
    ctl = Controller(spec, scenario.policy, scenario.migration, forecaster, risk=risk_for, day_s=day_s(scenario))
    trace = run(sim, ctl)
    chains = sim.chains()
    return RunResult(
        policy=str(spec),
        forecaster=forecaster_name if forecaster is not None else None,
        seed=seed,
        chains=tuple(c.name for c in chains),
        slices=tuple(c.slice.value for c in chains),
        sla_ms=tuple(c.sla_ms for c in chains),
        latency=sim.truth.latency,
        floor=sim.truth.floor,
        observed=np.array(trace.observed),
        forecast=np.array([f[:, 0] for f in trace.forecasts]),
        band=np.array([b[:, 0] for b in trace.band]),
        risk=np.array(trace.risk),
        inference_s=np.array(trace.inference_s),
        migrations=tuple((r.decided_step, r.plan.chain, r.plan.vnf, r.needed)
                         for r in sim.truth.migrations),
        triggered=tuple(trace.triggered),
        interval_ms=scenario.interval_ms,
        horizon=scenario.policy.horizon,
    )


# Worker state for the process pool: the scenario and fitted models, sent once.
_WORKER: dict = {}


def _init_worker(scenario: Scenario, models: Models) -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; nested threads only contend
    _WORKER["scenario"] = scenario
    _WORKER["models"] = models


def _run_job(job: tuple[str, str | None, int]) -> RunResult:
    policy, name, seed = job
    return run_one(_WORKER["scenario"], policy, seed, _WORKER["models"], name)


def jobs_for(policies: Sequence[str], forecasters: Sequence[str], seeds: Sequence[int],
             shadow: str | None = None) -> list[tuple[str, str | None, int]]:
    """(policy, forecaster, seed) of every run: forecast policies once per forecaster;
    ``shadow``: the forecaster static runs record (open-loop calibration)."""
    out = []
    for s in seeds:
        for p in policies:
            kind = PolicySpec.parse(p).kind
            if kind.needs_forecaster:
                out += [(p, n, s) for n in forecasters]
            elif kind.name == "static" and shadow:
                out.append((p, shadow, s))
            else:
                out.append((p, None, s))
    return out


def run_experiment(scenario: Scenario, policies: Sequence[str], forecasters: Sequence[str],
                   seeds: Sequence[int], jobs: int = 1, cache_dir: Path | None = None,
                   models: Models | None = None) -> list[RunResult]:
    """Every policy (forecast policies once per forecaster) on every seed. When forecasters
    are trained anyway (a forecast policy is in the list), static runs carry the first
    forecaster's risk forecasts (recorded, not acted on: the open-loop calibration)."""
    kinds = [PolicySpec.parse(p).kind for p in policies]
    need = list(forecasters) if any(k.needs_forecaster for k in kinds) else []
    if models is None:
        models = fit_models(scenario, need, cache_dir)
    todo = jobs_for(policies, forecasters, seeds, shadow=forecasters[0] if forecasters and need else None)
    if jobs <= 1:
        _init_worker(scenario, models)
        return [_run_job(j) for j in todo]
    ctx = multiprocessing.get_context("spawn")  # torch is not fork-safe once it has threads
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(scenario, models)) as pool:
        return pool.map(_run_job, todo, chunksize=1)

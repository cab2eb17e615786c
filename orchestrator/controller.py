"""The control loop: observe -> store -> forecast -> policy -> placement -> act.

It talks to the world only through :class:`~mantra6g.orchestrator.infra.Infrastructure`,
so the same :class:`Controller` drives the simulator and the testbed.

Policies:

* ``static``     - place once (home nodes, URLLC pinned), never move;
* ``reactive``   - act after a violation is observed (last latency > SLA), Algorithm 1;
* ``predictive`` - act when the forecast of the next ``horizon`` steps exceeds
  SLA - epsilon, Algorithm 1;
* ``global``     - the same trigger, Algorithm 2 (cost-aware over all chains).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mantra6g.orchestrator.forecast import Forecaster, Quantile
from mantra6g.orchestrator.infra import Infrastructure, MigrationPlan, Observation
from mantra6g.orchestrator.placement import ClusterView, MigrationCost, algorithm1, algorithm2
from mantra6g.orchestrator.policy import PolicyConfig, PolicyEngine
from mantra6g.orchestrator.store import TelemetryStore

POLICIES = ("static", "reactive", "predictive", "global")
FORECAST_POLICIES = ("predictive", "global")


@dataclass
class ControlTrace:
    """What the controller saw, predicted and did, step by step."""

    observed: list[np.ndarray] = field(default_factory=list)  # per step: (chains,) latency
    forecasts: list[np.ndarray] = field(default_factory=list)  # per step: (chains, horizon), NaN if none
    inference_s: list[float] = field(default_factory=list)  # forecaster time per step
    migrations: list[tuple[int, MigrationPlan]] = field(default_factory=list)


class Controller:
    """One policy with its forecaster, placement algorithm and telemetry store."""

    def __init__(self, policy: str, config: PolicyConfig, migration: MigrationCost,
                 forecaster: Forecaster | None = None, store: TelemetryStore | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy}")
        if policy in FORECAST_POLICIES and forecaster is None:
            raise ValueError(f"policy {policy} needs a forecaster")
        self.policy = policy
        self.config = config
        self.migration = migration
        self.forecaster = forecaster if policy in FORECAST_POLICIES else None
        self.store = store or TelemetryStore()
        self.engine = PolicyEngine(config)
        self.trace = ControlTrace()
        self._step = 0
        self._window = forecaster.window if forecaster else 1

    def start(self, infra: Infrastructure) -> None:
        """Initial isolation: pin URLLC VNFs wherever the node supports it (every policy)."""
        nodes = {n.name: n for n in infra.nodes()}
        placement = infra.placement().as_dict()
        for chain in infra.chains():
            for vnf in chain.vnfs:
                if self.engine.pinned(vnf.slice, nodes[placement[vnf.name]]):
                    infra.isolate(vnf.name, True)

    def step(self, infra: Infrastructure, observation: Observation) -> list[MigrationPlan]:
        """Handle one interval's observation; returns the migrations started."""
        chains = list(infra.chains())
        names = [c.name for c in chains]
        self.store.append(observation)
        step = self._step
        self._step += 1
        horizon = self.config.horizon
        history = self.store.chain_latency(names, max(self._window, 1))
        last = history[:, -1]
        self.trace.observed.append(last.copy())
        forecast = np.full((len(chains), horizon), np.nan)

        if self.policy == "static":
            self.trace.forecasts.append(forecast)
            return []
        if self.forecaster is not None:
            if history.shape[1] < self._window or np.isnan(history).any():
                self.trace.forecasts.append(forecast)
                return []  # warming up: not enough history to forecast
            start = time.perf_counter()
            forecast = self.forecaster.predict(history, horizon)
            # A quantile forecast says *whether* to act (risk); the new-latency estimate
            # of a move must start from the expected latency, since jitter cannot be moved.
            point = (self.forecaster.base.predict(history, horizon)
                     if isinstance(self.forecaster, Quantile) else forecast)
            self.trace.inference_s.append(time.perf_counter() - start)
            signal = forecast.max(axis=1)
            level = point.max(axis=1)
            margin = self.config.epsilon_ms
        else:
            point = forecast
            signal = level = last
            margin = 0.0  # reactive: only an observed violation triggers
        self.trace.forecasts.append(point)  # point forecasts: RMSE/MAE are about the mean

        flagged = [c.name for c, s in zip(chains, signal)
                   if self.engine.triggered(c.name, float(s), c.sla_ms, step, margin)]
        budget = self.engine.budget_left(step)
        if not flagged or budget == 0:
            return []
        view = ClusterView.build(infra.nodes(), chains, infra.placement(), observation,
                                 infra.link_ms, infra.in_flight())
        by_name = {n: float(x) for n, x in zip(names, level)}
        choose = algorithm2 if self.policy == "global" else algorithm1
        plans = choose(view, self.engine, self.migration, flagged, by_name, budget)
        for plan in plans:
            infra.migrate(plan)
            self.engine.record(plan, step)
            self.trace.migrations.append((step, plan))
        return plans


def run(infra: Infrastructure, controller: Controller) -> ControlTrace:
    """Drive ``infra`` with ``controller`` until the infrastructure ends the run."""
    controller.start(infra)
    while (observation := infra.observe()) is not None:
        controller.step(infra, observation)
    return controller.trace

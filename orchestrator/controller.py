"""The control loop: observe -> store -> forecast -> policy -> placement -> act.

It talks to the world only through :class:`~mantra6g.orchestrator.infra.Infrastructure`,
so the same :class:`Controller` drives the simulator and the testbed. The policies are
listed in :data:`~mantra6g.orchestrator.policy.POLICY_KINDS`; every dynamic one waits the
same warm-up, uses the same migration cost model, budget, cooldown and feasibility rule:

* ``static`` / ``balanced`` - place once, never move;
* ``reactive[@f]`` - act after an observed latency above f x SLA (Algorithm 1), the move
  sized from that observation; ``reactive-smooth`` sizes it from the forecaster's point
  forecast, the same smoothed level the predictive policies size from;
* ``predictive[@c]`` - act when the calibrated expected number of SLA-violating steps
  over the action's horizon, minus what the best move leaves, exceeds the migration cost
  c (Algorithm 1, best move); ``global[@c]`` the same with Algorithm 2;
* ``predictive-paper`` / ``global-paper`` - the paper's Algorithms 1 and 2 as written
  (forecast > SLA - epsilon, first feasible; reactive, first fit within SLA + epsilon).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from mantra6g.orchestrator.features import context_features
from mantra6g.orchestrator.forecast import Forecaster, ViolationRisk
from mantra6g.orchestrator.infra import Infrastructure, MigrationPlan, Observation
from mantra6g.orchestrator.placement import PLACEMENTS, Assessment, ClusterView, MigrationCost
from mantra6g.orchestrator.policy import POLICY_KINDS, PolicyConfig, PolicyEngine, PolicyError, PolicySpec
from mantra6g.orchestrator.store import TelemetryStore

POLICIES = tuple(POLICY_KINDS)
FORECAST_POLICIES = tuple(k.name for k in POLICY_KINDS.values() if k.needs_forecaster)
DAY_S = 86_400.0  # the "time of day" feature's period unless the scenario states one


@dataclass
class ControlTrace:
    """What the controller saw, predicted and did, step by step."""

    observed: list[np.ndarray] = field(default_factory=list)  # per step: (chains,) latency
    forecasts: list[np.ndarray] = field(default_factory=list)  # per step: (chains, horizon) point, NaN if none
    band: list[np.ndarray] = field(default_factory=list)  # per step: (chains, horizon) 95 % quantile, NaN if none
    risk: list[np.ndarray] = field(default_factory=list)  # per step: (chains,) P(violation within horizon)
    expected: list[np.ndarray] = field(default_factory=list)  # per step: (chains,) expected violating steps
    triggered: list[tuple[int, str]] = field(default_factory=list)  # (step, chain) flagged
    inference_s: list[float] = field(default_factory=list)  # forecaster time per step
    decision_s: list[float] = field(default_factory=list)  # observation in -> decision made, every step
    migrations: list[tuple[int, MigrationPlan]] = field(default_factory=list)


class Controller:
    """One policy with its forecaster (and calibrated risk), placement algorithm and store.

    ``risk`` (a :class:`ViolationRisk` over ``forecaster``) is what the cost-aware
    policies act on; given to ``static`` or ``balanced`` it is computed and recorded but
    never acted on (the open-loop calibration check). ``day_s`` is the period of the
    time-of-day feature.
    """

    def __init__(self, policy: str | PolicySpec, config: PolicyConfig, migration: MigrationCost,
                 forecaster: Forecaster | None = None, store: TelemetryStore | None = None,
                 risk: ViolationRisk | None = None, day_s: float = DAY_S):
        spec = policy if isinstance(policy, PolicySpec) else PolicySpec.parse(policy)
        kind = spec.kind
        if risk is not None and forecaster is None:
            forecaster = risk.base
        if kind.needs_forecaster and forecaster is None:
            raise PolicyError(f"policy {kind.name} needs a forecaster")
        if kind.trigger == "risk" and risk is None:
            raise PolicyError(f"policy {kind.name} needs a calibrated risk model (ViolationRisk)")
        self.spec = spec
        self.policy = kind.name
        self.config = config
        self.migration = migration
        self.forecaster = forecaster
        self.risk = risk
        self.day_s = day_s
        self.store = store or TelemetryStore()
        self.engine = PolicyEngine(config)
        self.trace = ControlTrace()
        self._step = 0
        self._window = forecaster.window if forecaster else 1
        self._last_migration: dict[str, float] = {}

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
        received = time.perf_counter()
        try:
            return self._decide(infra, observation)
        finally:
            self.trace.decision_s.append(time.perf_counter() - received)

    def _decide(self, infra: Infrastructure, observation: Observation) -> list[MigrationPlan]:
        chains = list(infra.chains())
        names = [c.name for c in chains]
        sla = np.array([c.sla_ms for c in chains])
        slices = [c.slice.value for c in chains]
        self.store.append(observation)
        step = self._step
        self._step += 1
        cfg = self.config
        horizon = cfg.horizon
        window = self.store.chain_window(names, self._window)
        history = window["latency_ms"]
        last = history[:, -1]
        self.trace.observed.append(last.copy())
        nan = np.full((len(chains), horizon), np.nan)
        point, band, within, expected = nan, nan, np.full(len(chains), np.nan), np.full(len(chains), np.nan)
        load = np.nan_to_num(window["utilisation"][:, -1])  # the chains' bottlenecks now
        ready = history.shape[1] >= self._window and not np.isnan(history).any()
        if self.forecaster is not None and ready:
            started = time.perf_counter()
            context = context_features(window, sla, self.day_s,
                                       [self._last_migration.get(n, -math.inf) for n in names])
            w = self.forecaster.window
            point = self.forecaster.predict(history[:, -w:], horizon, context[:, -w:])
            if self.risk is not None:
                steps = self.risk.probabilities(point, sla, slices, load)
                within = self.risk.within_horizon(point, sla, slices, load)
                band = self.risk.quantile(point, sla, slices, 0.95, load)
                expected = self._expected(steps)
            self.trace.inference_s.append(time.perf_counter() - started)
        self.trace.forecasts.append(point)
        self.trace.band.append(band)
        self.trace.risk.append(within)
        self.trace.expected.append(expected)

        kind = self.spec.kind
        if kind.trigger == "none" or (kind.trigger in ("forecast", "risk") and not ready):
            return []
        # What triggers (signal against threshold) and the level a move is sized from.
        if kind.trigger == "observed":
            signal = last
            threshold = self.spec.threshold_fraction() * sla
            rearm = threshold - cfg.hysteresis_ms
            level = point.max(axis=1) if kind.name == "reactive-smooth" and ready else last
        elif kind.trigger == "forecast":
            signal = level = point.max(axis=1)
            threshold = sla - cfg.epsilon_ms
            rearm = threshold - cfg.hysteresis_ms
        else:  # risk: expected violating steps over the action's horizon vs the stated cost
            signal = expected
            cost = self.spec.migration_cost(cfg)
            threshold = np.full(len(chains), cost)
            # Re-armed once the risk has been below the cost again: the calm level of the
            # expected violations can sit close to a small cost, so no lower re-arm mark.
            rearm = threshold
            level = point.max(axis=1)
        flagged = [c.name for i, c in enumerate(chains)
                   if self.engine.crossed(c.name, float(signal[i]), float(threshold[i]), float(rearm[i]), step)]
        self.trace.triggered += [(step, c) for c in flagged]
        budget = self.engine.budget_left(step)
        if not flagged or budget == 0:
            return []
        view = ClusterView.build(infra.nodes(), chains, infra.placement(), observation,
                                 infra.link_ms, infra.in_flight())
        by_name = {n: float(x) for n, x in zip(names, level)}
        assess = self._assessment(kind.trigger, names, sla, slices, point, expected, flagged)
        plans = PLACEMENTS[kind.placement](view, self.engine, self.migration, flagged, by_name, budget, assess)
        for plan in plans:
            infra.migrate(plan)
            self.engine.record(plan, step)
            self.store.record_migration(observation.time, plan)
            self._last_migration[plan.chain] = observation.time
            self.trace.migrations.append((step, plan))
        return plans

    # -- the cost-benefit view of a decision ------------------------------------------

    def _expected(self, steps: np.ndarray) -> np.ndarray:
        """Expected SLA-violating steps over the action's horizon from per-step risks:
        the forecast steps, then the last one's risk held for the remaining steps."""
        extra = max(0, self.config.benefit_steps - steps.shape[1])
        return steps.sum(axis=1) + extra * steps[:, -1]

    def _assessment(self, trigger: str, names, sla, slices, point, expected, flagged) -> Assessment | None:
        """How the improved algorithms weigh a move (same cost for every policy)."""
        cfg = self.config
        cost = self.spec.migration_cost(cfg)
        index = {n: i for i, n in enumerate(names)}
        if trigger == "observed" and self.spec.kind.placement == "algorithm1":
            # Reactive: the violation it saw is taken to persist over the horizon; a move
            # that meets the feasibility rule ends it. It has no estimate for other chains.
            stay = {c: float(cfg.benefit_steps) for c in flagged}
            return Assessment(stay, lambda chain, ratio, delay, utilisation: 0.0, cost)
        if trigger != "risk":
            return None

        def after(chain: str, ratio: float, delay_ms: float, utilisation: float) -> float:
            i = index[chain]
            moved = point[i:i + 1] * ratio
            moved[0, 0] += delay_ms  # the switch step pays the migration delay
            p = self.risk.probabilities(moved, sla[i:i + 1], [slices[i]], np.array([utilisation]))
            return float(self._expected(p)[0])

        return Assessment({c: float(expected[i]) for c, i in index.items()}, after, cost)


def run(infra: Infrastructure, controller: Controller) -> ControlTrace:
    """Drive ``infra`` with ``controller`` until the infrastructure ends the run."""
    controller.start(infra)
    while (observation := infra.observe()) is not None:
        controller.step(infra, observation)
    return controller.trace

"""A discrete-time edge site that implements :class:`~mantra6g.orchestrator.infra.Infrastructure`.

One step is one control interval. Every random draw of a run (traffic, bursts, cross
traffic, jitter) is made up front from the seed, so two policies run on the same seed see
exactly the same workload and differ only by their actions.

Model, per step ``t``:

* chain traffic = base x season(t) x sessions(t) / sessions + bursts + flash crowds, with
  season(t) = 1 + amplitude sin(2 pi t / period + phase) + trend t / steps. Sessions are
  a Poisson count per step, or (``session_hold_steps`` > 0) a birth-death process whose
  sessions ramp up and down; bursts are compound Poisson (Poisson starts, exponential
  size, geometric duration), abrupt or ramped; flash crowds hit a share of a slice's
  chains at once and grow like TCP slow start. Each node also carries cross traffic of
  unmanaged tenants with its own seasonal swing and bursts;
* a VNF's load in cores = traffic (kpps) x cost (us / packet) / 1000;
* each node has a pinned partition (reserved cores, URLLC only) and a shared one; a
  partition's queueing delay is M/M/1, E[S] rho / (1 - rho), with E[S] its mean
  service time and rho its utilisation (capped at ``max_utilisation``);
* hop latency = processing + queueing + link to the next hop; a chain's latency is the
  sum of its hops plus Gaussian jitter (never below processing + links);
* a migration switches the VNF over after its delay and adds that delay to its chain's
  latency in the step it switches (packets buffered during the switch).

The *jitter floor* of a chain (:attr:`GroundTruth.floor`) is its latency with every VNF
on one idle node: processing + local hops + the same jitter. Its violations are the ones
no placement can avoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mantra6g.orchestrator.infra import (
    ChainSpec,
    InfraRejected,
    MigrationPlan,
    NodeSample,
    NodeSpec,
    Observation,
    Placement,
    SliceKind,
    TelemetrySample,
    VnfSpec,
)
from mantra6g.orchestrator.placement import initial_placement
from mantra6g.orchestrator.policy import PolicyEngine
from mantra6g.orchestrator.scenario import Scenario, TrafficConfig

BACKGROUND_COST_US = 100.0  # mean per-packet CPU time assumed for unmanaged cross traffic
UNNECESSARY_WINDOW = 5  # steps after a switch-over in which the unmoved chain must have violated


@dataclass
class MigrationRecord:
    """A migration as it happened, with the simulator's verdict on whether it was needed."""

    plan: MigrationPlan
    decided_step: int
    effect_step: int
    was_pinned: bool  # pinned on the source (for the counterfactual)
    needed: bool = False


@dataclass
class GroundTruth:
    """What really happened in a run (the orchestrator never reads this)."""

    latency: np.ndarray  # (steps, chains) end-to-end latency
    floor: np.ndarray  # (steps, chains) the jitter floor: every VNF on one idle node
    migrations: list[MigrationRecord] = field(default_factory=list)


def _ramped(length: int, ramp: float) -> np.ndarray:
    """A trapezoid of ``length`` steps at full height, with linear ramps of ``ramp`` steps
    before and after (none when ``ramp`` < 1)."""
    r = int(round(ramp))
    if r < 1:
        return np.ones(length)
    up = np.arange(1, r + 1) / (r + 1)
    return np.concatenate([up, np.ones(length), up[::-1]])


def _add(out: np.ndarray, start: int, shape: np.ndarray) -> None:
    end = min(len(out), start + len(shape))
    if end > start:
        out[start:end] += shape[:end - start]


def _bursts(rng: np.random.Generator, steps: int, rate: float, size: float, duration: float,
            ramp: float = 0.0) -> np.ndarray:
    """Compound-Poisson burst load (relative to base) over ``steps``; ramped if ``ramp``."""
    out = np.zeros(steps)
    starts = rng.poisson(rate, steps)
    for t in np.flatnonzero(starts):
        for _ in range(starts[t]):
            length = int(rng.geometric(1.0 / max(duration, 1.0)))
            _add(out, int(t), rng.exponential(size) * _ramped(length, ramp))
    return out


def _sessions(rng: np.random.Generator, season: np.ndarray, tr: TrafficConfig) -> np.ndarray:
    """Active sessions per step over the mean (``tr.sessions``): a Poisson count per step,
    or a birth-death process of ramped sessions that starts in its steady state."""
    steps = len(season)
    if tr.session_hold_steps <= 0:
        return rng.poisson(tr.sessions * np.maximum(season, 0.0)) / tr.sessions
    hold = tr.session_hold_steps
    warm = int(4 * hold)  # sessions begun before the run, so it starts in steady state
    # A session of mean length hold with its two ramps carries hold + ramp steps of load.
    ramp = float(int(round(tr.session_ramp_steps)))
    lam = np.concatenate([np.full(warm, max(season[0], 0.0)), np.maximum(season, 0.0)]) * \
        tr.sessions / (hold + ramp)
    out = np.zeros(warm + steps)
    for t, n in enumerate(rng.poisson(lam)):
        for _ in range(n):
            _add(out, t, _ramped(int(rng.geometric(1.0 / max(hold, 1.0))), tr.session_ramp_steps))
    return out[warm:] / tr.sessions


def _flash_shape(rng: np.random.Generator, tr: TrafficConfig) -> np.ndarray:
    """One flash crowd's load: doubling each step up to its size (TCP slow start through
    the bottleneck), an exponential stay, then leaving linearly."""
    r = max(int(round(tr.flash_ramp_steps)), 0)
    grow = 2.0 ** (np.arange(r) - r) if r else np.zeros(0)
    hold = np.ones(int(rng.geometric(1.0 / max(tr.flash_steps, 1.0))))
    leave = np.arange(max(r, 1), 0, -1) / (max(r, 1) + 1)
    return tr.flash_size * np.concatenate([grow, hold, leave])


class Simulator:
    """A simulated edge site; one :meth:`observe` call runs one step."""

    def __init__(self, scenario: Scenario, seed: int, placement: Placement | None = None):
        self.scenario = scenario
        self.seed = seed
        rng = np.random.default_rng(seed)
        sc = scenario
        steps = sc.steps
        self._nodes = [n.spec() for n in sc.nodes]
        self._node = {n.name: n for n in self._nodes}

        # Chains: slices drawn by share, VNF counts and costs uniform.
        kinds = [SliceKind(k) for k in sc.slices]
        shares = np.array([sc.slices[k.value].share for k in kinds], dtype=float)
        counts = np.floor(shares / shares.sum() * sc.chains.count).astype(int)
        while counts.sum() < sc.chains.count:  # largest remainder, deterministic
            counts[np.argmax(shares / shares.sum() * sc.chains.count - counts)] += 1
        chain_kinds = [k for k, n in zip(kinds, counts) for _ in range(n)]
        self._chains: list[ChainSpec] = []
        base_rate = []
        for i, kind in enumerate(chain_kinds):
            prof = sc.slices[kind.value]
            name = f"{kind.value}-{i:02d}"
            n_vnfs = int(rng.integers(sc.chains.vnfs[0], sc.chains.vnfs[1] + 1))
            vnfs = tuple(VnfSpec(f"{name}.v{j}", name, kind, float(rng.uniform(*prof.cost_us)),
                                 prof.memory_mb, prof.state_mb) for j in range(n_vnfs))
            self._chains.append(ChainSpec(name, kind, vnfs, prof.sla_ms))
            base_rate.append(float(rng.uniform(*prof.rate_kpps)))
        self._vnfs = [v for c in self._chains for v in c.vnfs]

        # Traffic (steps, chains): seasonal base x Poisson sessions + bursts. Chains of a
        # slice share a daily rhythm (phase per slice, small per-chain offset).
        tr = sc.traffic
        t = np.arange(steps)
        slice_phase = {k: rng.uniform(0, 2 * math.pi) for k in SliceKind}
        self.rates = np.empty((steps, len(self._chains)))
        for c, chain in enumerate(self._chains):
            phase = slice_phase[chain.slice] + rng.normal(0, 0.3)
            season = 1 + tr.amplitude * np.sin(2 * math.pi * t / tr.period_steps + phase) \
                + tr.trend * t / steps
            sessions = _sessions(rng, season, tr)
            bursts = _bursts(rng, steps, tr.burst_rate, tr.burst_size, tr.burst_steps, tr.burst_ramp_steps)
            self.rates[:, c] = base_rate[c] * (sessions + bursts)
        # Flash crowds: drawn after everything above, so a scenario without them keeps
        # exactly the workload of the same seed.
        if tr.flash_rate > 0:
            crowd_rng = np.random.default_rng([seed, 1])
            for kind in SliceKind:
                members = [c for c, ch in enumerate(self._chains) if ch.slice is kind]
                if not members:
                    continue
                for start in np.flatnonzero(crowd_rng.poisson(tr.flash_rate, steps)):
                    k = max(1, int(round(tr.flash_share * len(members))))
                    hit = crowd_rng.choice(members, k, replace=False)
                    shape = _flash_shape(crowd_rng, tr)
                    for c in hit:
                        extra = np.zeros(steps)
                        _add(extra, int(start), shape)
                        self.rates[:, c] += base_rate[c] * extra
        # Cross traffic (steps, nodes), in cores.
        self.background = np.empty((steps, len(self._nodes)))
        for n, node in enumerate(sc.nodes):
            season = 1 + tr.background_amplitude * np.sin(
                2 * math.pi * t / tr.background_period_steps + rng.uniform(0, 2 * math.pi))
            bursts = _bursts(rng, steps, tr.burst_rate, tr.burst_size, tr.burst_steps)
            self.background[:, n] = node.background_cores * (np.maximum(season, 0) + bursts)
        self.jitter = rng.normal(0.0, sc.latency.jitter_ms, (steps, len(self._chains)))
        self._base_rate = base_rate
        floor = np.array([sum(v.cost_us / 1000.0 for v in c.vnfs) + (len(c.vnfs) - 1) * sc.latency.local_ms
                          for c in self._chains])
        self._floor = floor[None, :] + self.jitter

        start = placement or initial_placement(self._nodes, self._chains, PolicyEngine(sc.policy))
        self._node_of = start.as_dict()
        self._pinned: set[str] = set()
        self._quota: dict[str, float] = {}
        self._pending: list[MigrationRecord] = []
        self._penalty = np.zeros(len(self._chains))
        self._chain_index = {c.name: i for i, c in enumerate(self._chains)}
        self.step = 0
        self.truth = GroundTruth(np.full((steps, len(self._chains)), np.nan), self._floor)

    # -- Infrastructure -------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        return self.scenario.interval_ms / 1000.0

    def nodes(self) -> Sequence[NodeSpec]:
        return list(self._nodes)

    def chains(self) -> Sequence[ChainSpec]:
        return list(self._chains)

    def placement(self) -> Placement:
        return Placement.of(self._node_of, self._pinned)

    def in_flight(self) -> Sequence[MigrationPlan]:
        return [r.plan for r in self._pending]

    def link_ms(self, a: str, b: str) -> float:
        lat = self.scenario.latency
        return lat.local_ms if a == b else lat.link_ms

    def migrate(self, plan: MigrationPlan) -> None:
        if plan.vnf not in self._node_of or plan.target not in self._node:
            raise InfraRejected(f"unknown VNF or node in {plan}")
        if self._node_of[plan.vnf] != plan.source:
            raise InfraRejected(f"{plan.vnf} is on {self._node_of[plan.vnf]}, not {plan.source}")
        if any(r.plan.vnf == plan.vnf for r in self._pending):
            raise InfraRejected(f"{plan.vnf} is already migrating")
        if plan.pinned and not self._node[plan.target].supports_pinning:
            raise InfraRejected(f"{plan.target} cannot pin {plan.vnf}")
        mem = self._memory_used(plan.target) + self._vnf(plan.vnf).memory_mb
        if mem > self._node[plan.target].memory_mb:
            raise InfraRejected(f"{plan.target} has no memory for {plan.vnf}")
        # The controller acts after step - 1; the switch completes `delay` into this step.
        effect = self.step + int(plan.delay.total_ms // self.scenario.interval_ms)
        self._pending.append(MigrationRecord(plan, self.step, effect, plan.vnf in self._pinned))

    def scale(self, vnf: str, cores: float) -> None:
        if vnf not in self._node_of or cores <= 0:
            raise InfraRejected(f"cannot scale {vnf} to {cores} cores")
        self._quota[vnf] = cores

    def isolate(self, vnf: str, pinned: bool) -> None:
        if vnf not in self._node_of:
            raise InfraRejected(f"unknown VNF {vnf}")
        if pinned and not self._node[self._node_of[vnf]].supports_pinning:
            raise InfraRejected(f"{self._node_of[vnf]} cannot pin {vnf}")
        (self._pinned.add if pinned else self._pinned.discard)(vnf)

    def observe(self) -> Observation | None:
        t = self.step
        if t >= self.scenario.steps:
            return None
        self._penalty[:] = 0.0
        for record in [r for r in self._pending if r.effect_step <= t]:
            self._pending.remove(record)
            plan = record.plan
            self._node_of[plan.vnf] = plan.target
            (self._pinned.add if plan.pinned else self._pinned.discard)(plan.vnf)
            self._penalty[self._chain_index[plan.chain]] += plan.delay.total_ms
            self.truth.migrations.append(record)

        hops, queue, loads, used, util = self._evaluate(t, self._node_of, self._pinned)
        time = (t + 1) * self.interval_s
        samples = []
        k = 0
        for c, chain in enumerate(self._chains):
            n = len(chain.vnfs)
            total, floor = self._chain_total(t, c, hops[k:k + n], chain, self._node_of)
            total += self._penalty[c]
            self.truth.latency[t, c] = total
            # Spread jitter and switch-over penalty evenly so the hops still sum to the total.
            extra = (total - float(np.sum(hops[k:k + n]))) / n
            for j, v in enumerate(chain.vnfs):
                samples.append(TelemetrySample(
                    time, chain.name, chain.slice, v.name, self._node_of[v.name],
                    float(hops[k + j] + extra), float(queue[k + j]), float(loads[k + j]),
                    v.memory_mb, float(self.rates[t, c]), float(util[k + j])))
            k += n
        self._judge_migrations(t)
        nodes = tuple(NodeSample(time, n.name, used[n.name][0], used[n.name][1],
                                 self._memory_used(n.name)) for n in self._nodes)
        self.step += 1
        return Observation(time, tuple(samples), nodes)

    # -- descriptors (what a static, risk-aware placement may know) -----------------------

    def descriptor_load(self) -> tuple[dict[str, float], dict[tuple[str, bool], float]]:
        """Expected peak demand of every VNF (cores) and expected peak background
        utilisation of every node partition, from the scenario's descriptors only: the
        slice's mean rate and the VNF's cost, scaled by the diurnal peak, the trend and
        the mean extra load of bursts and flash crowds; the nodes' cross traffic at its
        seasonal peak. Not the seed's traffic: a static placement cannot know that."""
        sc = self.scenario
        tr = sc.traffic
        extra = tr.burst_rate * tr.burst_steps * tr.burst_size + \
            tr.flash_rate * tr.flash_share * tr.flash_steps * tr.flash_size
        peak = 1.0 + tr.amplitude + max(tr.trend, 0.0) + extra
        demand = {}
        for c in self._chains:
            lo, hi = sc.slices[c.slice.value].rate_kpps
            for v in c.vnfs:
                demand[v.name] = (lo + hi) / 2 * peak * v.cost_us / 1000.0
        exposure = {}
        for n in sc.nodes:
            shared = n.cores - n.pinned_cores
            exposure[(n.name, False)] = n.background_cores * (1 + tr.background_amplitude) / shared if shared else 0.0
            exposure[(n.name, True)] = 0.0
        return demand, exposure

    # -- model ----------------------------------------------------------------------------

    def _vnf(self, name: str) -> VnfSpec:
        chain = self._chains[self._chain_index[name.rsplit(".", 1)[0]]]
        return next(v for v in chain.vnfs if v.name == name)

    def _memory_used(self, node: str) -> float:
        here = sum(v.memory_mb for v in self._vnfs if self._node_of[v.name] == node)
        return here + sum(self._vnf(r.plan.vnf).memory_mb for r in self._pending
                          if r.plan.target == node)

    def _evaluate(self, t: int, node_of: dict[str, str], pinned: set[str]):
        """Per-VNF hop latency without jitter, queueing, load; per-node busy cores."""
        cap = self.scenario.latency.max_utilisation
        rates = self.rates[t]
        loads = np.empty(len(self._vnfs))
        k = 0
        for c, chain in enumerate(self._chains):
            for v in chain.vnfs:
                loads[k] = rates[c] * v.cost_us / 1000.0
                k += 1
        # Busy cores and packet rate per partition (node, pinned?).
        busy: dict[tuple[str, bool], float] = {}
        pps: dict[tuple[str, bool], float] = {}
        for n, node in enumerate(self._nodes):
            bg = float(self.background[t, n])
            busy[(node.name, False)] = bg
            pps[(node.name, False)] = bg / BACKGROUND_COST_US
            busy[(node.name, True)] = 0.0
            pps[(node.name, True)] = 0.0
        for i, v in enumerate(self._vnfs):
            part = (node_of[v.name], v.name in pinned)
            busy[part] += loads[i]
            pps[part] += loads[i] / v.cost_us
        wait: dict[tuple[str, bool], float] = {}
        part_util: dict[tuple[str, bool], float] = {}
        for (name, pin), b in busy.items():
            spec = self._node[name]
            cores = spec.pinned_cores if pin else spec.cores - spec.pinned_cores
            part_util[(name, pin)] = b / cores if cores > 0 else 0.0
            if cores <= 0 or pps[(name, pin)] == 0:
                wait[(name, pin)] = 0.0
                continue
            mean_service = b / pps[(name, pin)]  # us per packet
            rho = min(b / cores, cap)
            wait[(name, pin)] = mean_service / 1000.0 * rho / (1.0 - rho)
        queue = np.empty(len(self._vnfs))
        hops = np.empty(len(self._vnfs))
        util = np.empty(len(self._vnfs))
        k = 0
        for chain in self._chains:
            for j, v in enumerate(chain.vnfs):
                node = node_of[v.name]
                w = wait[(node, v.name in pinned)]
                util[k] = part_util[(node, v.name in pinned)]
                quota = self._quota.get(v.name)
                if quota is not None:  # a CPU quota below the VNF's load queues it on its own
                    rho_v = min(loads[k] / quota, cap)
                    w = max(w, v.cost_us / 1000.0 * rho_v / (1.0 - rho_v))
                queue[k] = w
                nxt = chain.vnfs[j + 1].name if j + 1 < len(chain.vnfs) else None
                link = self.link_ms(node, node_of[nxt]) if nxt else 0.0
                hops[k] = v.cost_us / 1000.0 + w + link
                k += 1
        used = {n.name: (busy[(n.name, False)], busy[(n.name, True)]) for n in self._nodes}
        return hops, queue, loads, used, util

    def _chain_total(self, t: int, c: int, hops: np.ndarray, chain: ChainSpec,
                     node_of: dict[str, str]) -> tuple[float, float]:
        """End-to-end latency with jitter, floored at processing + links (physics)."""
        floor = sum(v.cost_us / 1000.0 for v in chain.vnfs) + sum(
            self.link_ms(node_of[a.name], node_of[b.name])
            for a, b in zip(chain.vnfs, chain.vnfs[1:]))
        return max(float(np.sum(hops)) + float(self.jitter[t, c]), floor), floor

    def _judge_migrations(self, t: int) -> None:
        """Mark a migration needed if, with the VNF left where it was, its chain would
        have broken its SLA within UNNECESSARY_WINDOW steps of the switch-over."""
        for record in self.truth.migrations:
            if record.needed or not record.effect_step <= t < record.effect_step + UNNECESSARY_WINDOW:
                continue
            plan = record.plan
            node_of = dict(self._node_of)
            node_of[plan.vnf] = plan.source
            pinned = set(self._pinned)
            pinned.discard(plan.vnf)
            if record.was_pinned:
                pinned.add(plan.vnf)
            hops = self._evaluate(t, node_of, pinned)[0]
            c = self._chain_index[plan.chain]
            start = sum(len(ch.vnfs) for ch in self._chains[:c])
            chain = self._chains[c]
            total, _ = self._chain_total(t, c, hops[start:start + len(chain.vnfs)], chain, node_of)
            if total > chain.sla_ms:
                record.needed = True

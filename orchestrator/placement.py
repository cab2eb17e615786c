"""Placement and migration: the reference design's Algorithms 1 and 2.

Both start from chains the policy engine flagged and a :class:`ClusterView` (what the
last interval's telemetry says about every node and VNF). A candidate move's effect is
estimated as ``signal x model after / model before``: the forecast (or observation)
supplies the level, an M/M/1 model of the affected nodes supplies the relative change, so
the estimate inherits the forecaster's lead time and the model's knowledge of where load
goes.

* :func:`initial_placement` - where every VNF starts: its slice's home role first, then
  any node the policy allows, with memory left for it.
* :func:`balanced_placement` - a static placement spread by the VNFs' expected peak
  demand over the nodes' expected peak background (from descriptors, not measurements).
* :func:`algorithm1` - per flagged chain: try moving each of its VNFs to each node the
  policy allows; among the moves with new path latency + migration delay <= SLA -
  epsilon, take the best (the largest expected benefit net of the migration cost, when
  the policy weighs one; else the lowest new latency).
* :func:`algorithm1_paper` - the same rule, the paper's way: the first feasible move.
* :func:`algorithm2` - cost-aware over all flagged chains, most urgent first: the
  candidates also include moving a *neighbour's* VNF off a shared partition; pick the
  lowest cost = new latency + alpha * migration delay under the resource limits, the
  neighbour's SLA and the budget.
* :func:`algorithm2_paper` - the paper's Algorithm 2: own and neighbour moves, first fit
  whose new latency + delay stays within SLA + epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mantra6g.orchestrator.infra import (
    ChainSpec,
    InfraRejected,
    MigrationDelay,
    MigrationPlan,
    NodeSpec,
    Observation,
    Placement,
    SliceKind,
    VnfSpec,
)
from mantra6g.orchestrator.policy import PolicyEngine, home_role


@dataclass(frozen=True)
class MigrationCost:
    """Parameters of the migration-delay model (the scenario's ``migration:`` section)."""

    bandwidth_gbps: float = 10.0
    restart_ms: float = 0.1
    rule_update_ms: float = 0.05


def migration_delay(vnf: VnfSpec, source: NodeSpec, target: NodeSpec,
                    cost: MigrationCost) -> MigrationDelay:
    """State size / bandwidth + restart + rule update; the slowest of the paths' links wins."""
    gbps = min(cost.bandwidth_gbps, source.bandwidth_gbps, target.bandwidth_gbps)
    # 1 Gbit/s moves 1 Mbit per millisecond.
    return MigrationDelay(vnf.state_mb * 8.0 / gbps, cost.restart_ms, cost.rule_update_ms)


def queueing_ms(service_us: float, utilisation: float, cap: float = 0.99) -> float:
    """M/M/1 waiting time: E[S] * rho / (1 - rho), rho capped below saturation."""
    rho = min(max(utilisation, 0.0), cap)
    return service_us / 1000.0 * rho / (1.0 - rho)


@dataclass
class ClusterView:
    """The controller's working picture of the cluster for one decision round.

    Built from one :class:`Observation`; :meth:`apply` updates it after each chosen move
    so later choices in the same round see the load already moved.
    """

    nodes: dict[str, NodeSpec]
    chains: dict[str, ChainSpec]
    vnfs: dict[str, VnfSpec]
    node_of: dict[str, str]
    pinned: set[str]
    load: dict[str, float]  # cores each VNF uses
    shared_used: dict[str, float]  # busy cores outside the pinned partition, all tenants
    pinned_used: dict[str, float]
    memory_used: dict[str, float]
    link_ms: Callable[[str, str], float]
    busy: set[str] = field(default_factory=set)  # VNFs with a migration in flight

    @staticmethod
    def build(nodes: Sequence[NodeSpec], chains: Sequence[ChainSpec], placement: Placement,
              observation: Observation, link_ms: Callable[[str, str], float],
              in_flight: Sequence[MigrationPlan] = ()) -> ClusterView:
        vnfs = {v.name: v for c in chains for v in c.vnfs}
        load = {s.vnf: s.cpu for s in observation.vnfs}
        view = ClusterView(
            nodes={n.name: n for n in nodes},
            chains={c.name: c for c in chains},
            vnfs=vnfs,
            node_of=placement.as_dict(),
            pinned=set(placement.pinned),
            load={v: load.get(v, 0.0) for v in vnfs},
            shared_used={n.name: 0.0 for n in nodes},
            pinned_used={n.name: 0.0 for n in nodes},
            memory_used={n.name: 0.0 for n in nodes},
            link_ms=link_ms,
        )
        for s in observation.nodes:
            view.shared_used[s.node] = s.cpu_used
            view.pinned_used[s.node] = s.pinned_used
            view.memory_used[s.node] = s.memory_used_mb
        # A VNF migrating is left alone; its target's memory is already in the node's
        # sample (the infrastructure reserves it when it accepts the migration).
        for plan in in_flight:
            view.busy.add(plan.vnf)
        return view

    def utilisation(self, node: str, pinned: bool) -> float:
        spec = self.nodes[node]
        if pinned:
            return self.pinned_used[node] / spec.pinned_cores
        return self.shared_used[node] / (spec.cores - spec.pinned_cores)

    def kinds_on(self, node: str, excluding: str | None = None) -> set[SliceKind]:
        return {self.vnfs[v].slice for v, n in self.node_of.items() if n == node and v != excluding}

    def chain_model_ms(self, chain: str, moved: Mapping[str, tuple[str, bool]] | None = None,
                       ) -> float:
        """Modelled latency of ``chain`` (processing + M/M/1 queueing + links).

        ``moved`` maps VNFs to (node, pinned) to evaluate a hypothetical placement: their
        load leaves the old partition and joins the new one.
        """
        moved = moved or {}
        delta: dict[tuple[str, bool], float] = {}
        for v, (node, pin) in moved.items():
            old = (self.node_of[v], v in self.pinned)
            delta[old] = delta.get(old, 0.0) - self.load[v]
            delta[(node, pin)] = delta.get((node, pin), 0.0) + self.load[v]
        total = 0.0
        prev: str | None = None
        for vnf in self.chains[chain].vnfs:
            node, pin = moved.get(vnf.name, (self.node_of[vnf.name], vnf.name in self.pinned))
            spec = self.nodes[node]
            used = (self.pinned_used if pin else self.shared_used)[node] + delta.get((node, pin), 0.0)
            cap = spec.pinned_cores if pin else spec.cores - spec.pinned_cores
            total += vnf.cost_us / 1000.0 + queueing_ms(vnf.cost_us, used / cap)
            if prev is not None:
                total += self.link_ms(prev, node)
            prev = node
        return total

    def path_utilisation(self, chain: str, moved: Mapping[str, tuple[str, bool]] | None = None) -> float:
        """The busiest partition ``chain``'s VNFs use (after ``moved``, as in
        :meth:`chain_model_ms`): the leading indicator its risk is conditioned on."""
        moved = moved or {}
        delta: dict[tuple[str, bool], float] = {}
        for v, (node, pin) in moved.items():
            old = (self.node_of[v], v in self.pinned)
            delta[old] = delta.get(old, 0.0) - self.load[v]
            delta[(node, pin)] = delta.get((node, pin), 0.0) + self.load[v]
        worst = 0.0
        for vnf in self.chains[chain].vnfs:
            node, pin = moved.get(vnf.name, (self.node_of[vnf.name], vnf.name in self.pinned))
            spec = self.nodes[node]
            cap = spec.pinned_cores if pin else spec.cores - spec.pinned_cores
            if cap > 0:
                used = (self.pinned_used if pin else self.shared_used)[node] + delta.get((node, pin), 0.0)
                worst = max(worst, used / cap)
        return worst

    def fits(self, vnf: str, node: str, pinned: bool, max_utilisation: float) -> bool:
        """Whether ``node`` has memory and CPU headroom for ``vnf``."""
        spec = self.nodes[node]
        if self.memory_used[node] + self.vnfs[vnf].memory_mb > spec.memory_mb:
            return False
        used = (self.pinned_used if pinned else self.shared_used)[node]
        cap = spec.pinned_cores if pinned else spec.cores - spec.pinned_cores
        return cap > 0 and (used + self.load[vnf]) / cap <= max_utilisation

    def apply(self, plan: MigrationPlan) -> None:
        """Account for a chosen move in this round's picture."""
        v = plan.vnf
        old_pin = v in self.pinned
        (self.pinned_used if old_pin else self.shared_used)[plan.source] -= self.load[v]
        (self.pinned_used if plan.pinned else self.shared_used)[plan.target] += self.load[v]
        # Make-before-break: the VNF holds its memory on the source until it switches over
        # (the infrastructure frees it then), so a later move in this round cannot use it.
        self.memory_used[plan.target] += self.vnfs[v].memory_mb
        self.node_of[v] = plan.target
        self.pinned.discard(v)
        if plan.pinned:
            self.pinned.add(v)
        self.busy.add(v)


def _estimate(view: ClusterView, chain: str, signal_ms: float,
              move: Mapping[str, tuple[str, bool]], before: float | None = None) -> float:
    """Latency of ``chain`` after ``move``: the signal scaled by the model's before/after ratio.

    A ratio rather than a difference: near saturation the M/M/1 model's absolute error is
    large, and a difference could predict a negative latency.
    """
    before = view.chain_model_ms(chain) if before is None else before
    return signal_ms * view.chain_model_ms(chain, move) / max(before, 1e-9)


def _harmless(view: ClusterView, engine: PolicyEngine, chain: str,
              move: Mapping[str, tuple[str, bool]], signal: Mapping[str, float],
              delay_ms: float, slack_ms: float | None = None) -> bool:
    """Do no harm: every other chain the move touches stays within SLA - epsilon.

    The moved VNF's own chain (when it is a neighbour) also pays the migration delay.
    """
    (v, (node, pin)), = move.items()
    touched = {view.node_of[v], node}
    for other, spec in view.chains.items():
        if other == chain or not any(view.node_of[x.name] in touched for x in spec.vnfs):
            continue
        new = _estimate(view, other, signal[other], move)
        paid = delay_ms if view.vnfs[v].chain == other else 0.0
        if not engine.feasible(new, paid, spec.sla_ms, slack_ms).ok:
            return False
    return True


@dataclass(frozen=True)
class Assessment:
    """What a cost-aware policy weighs: per chain, the expected SLA-violating steps over the
    action's horizon if nothing is done (``stay``; chains it has no estimate for are
    missing), the same after a move (``after(chain, ratio, delay_ms, utilisation)``: the
    chain's forecast scaled by the model's ratio, the switch step paying the migration
    delay, at the bottleneck utilisation the move leaves on the chain's path), and the
    stated cost of a migration. A move's net benefit is what it is expected to avoid over
    every chain it touches (the source and target partitions' chains) minus the cost."""

    stay: Mapping[str, float]
    after: Callable[[str, float, float, float], float]  # (chain, ratio, delay_ms, path utilisation)
    cost: float

    def net(self, view: ClusterView, move: Mapping[str, tuple[str, bool]], delay_ms: float) -> float:
        (v, (node, _)), = move.items()
        touched = {view.node_of[v], node}
        gain = 0.0
        for chain, spec in view.chains.items():
            if chain not in self.stay or not any(view.node_of[x.name] in touched for x in spec.vnfs):
                continue
            before = view.chain_model_ms(chain)
            ratio = view.chain_model_ms(chain, move) / max(before, 1e-9)
            paid = delay_ms if view.vnfs[v].chain == chain else 0.0
            gain += self.stay[chain] - self.after(chain, ratio, paid, view.path_utilisation(chain, move))
        return gain - self.cost


def _candidates(view: ClusterView, engine: PolicyEngine, cost: MigrationCost, chain: str,
                signal: Mapping[str, float], movers: Sequence[str], alpha: float,
                assess: Assessment | None = None, slack_ms: float | None = None,
                ) -> list[MigrationPlan]:
    """Every allowed, SLA-feasible move of one of ``movers`` that helps ``chain``, in
    mover order then node order.

    Feasible: new latency + (own) migration delay <= SLA - ``slack_ms`` (default epsilon;
    the paper's Algorithm 2 uses -epsilon, i.e. SLA + epsilon), and every other chain the
    move touches (including a neighbour mover's own chain, which pays the migration
    delay) stays within the same bound. With ``assess``, each plan carries its net
    expected benefit and only moves worth their cost are kept.
    """
    plans = []
    base = view.chain_model_ms(chain)
    sla = view.chains[chain].sla_ms
    for v in movers:
        if v in view.busy:
            continue
        spec = view.vnfs[v]
        src = view.node_of[v]
        for node in view.nodes.values():
            if node.name == src:
                continue
            if not engine.may_host(spec.slice, node, view.kinds_on(node.name, excluding=v)).ok:
                continue
            pin = engine.pinned(spec.slice, node)
            if not view.fits(v, node.name, pin, engine.config.max_utilisation):
                continue
            delay = migration_delay(spec, view.nodes[src], node, cost)
            move = {v: (node.name, pin)}
            new = _estimate(view, chain, signal[chain], move, base)
            if new >= signal[chain]:
                continue  # does not help the flagged chain
            own_delay = delay.total_ms if spec.chain == chain else 0.0
            if not engine.feasible(new, own_delay, sla, slack_ms).ok:
                continue
            if not _harmless(view, engine, chain, move, signal, delay.total_ms, slack_ms):
                continue
            benefit = math.nan
            if assess is not None:
                benefit = assess.net(view, move, delay.total_ms)
                if benefit <= 0:
                    continue  # not worth its cost
            plans.append(MigrationPlan(
                vnf=v, chain=spec.chain, source=src, target=node.name, delay=delay,
                predicted_latency_ms=new, cost=new + alpha * delay.total_ms,
                reason=f"{chain}: signal {signal[chain]:.3f} ms (SLA {sla:g} ms)",
                pinned=pin, benefit=benefit))
    return plans


def initial_placement(nodes: Sequence[NodeSpec], chains: Sequence[ChainSpec],
                      engine: PolicyEngine) -> Placement:
    """Where every VNF starts, chain by chain in order: on the first node of its slice's
    home role that has memory left for it, else the first other node the policy lets
    host it (a spare; the shared node for eMBB) next to what is already placed there.
    Isolation is the policy's (URLLC never next to best effort); pinning is not decided
    here (:meth:`Controller.start` isolates what the policy pins). Raises
    :class:`InfraRejected` when a VNF fits nowhere."""
    node_of: dict[str, str] = {}
    memory = {n.name: 0.0 for n in nodes}
    kinds: dict[str, list[SliceKind]] = {n.name: [] for n in nodes}
    for chain in chains:
        for vnf in chain.vnfs:
            home = home_role(vnf.slice)
            order = [n for n in nodes if n.role is home] + [n for n in nodes if n.role is not home]
            for n in order:
                if memory[n.name] + vnf.memory_mb <= n.memory_mb and \
                        engine.may_host(vnf.slice, n, kinds[n.name]).ok:
                    node_of[vnf.name] = n.name
                    memory[n.name] += vnf.memory_mb
                    kinds[n.name].append(vnf.slice)
                    break
            else:
                raise InfraRejected(f"no node may host {vnf.name} ({vnf.slice.value}, "
                                    f"{vnf.memory_mb:g} MB): add a {home.value} or spare node")
    return Placement.of(node_of)


def algorithm1(view: ClusterView, engine: PolicyEngine, cost: MigrationCost,
               flagged: Sequence[str], signal: Mapping[str, float], budget: int,
               assess: Assessment | None = None) -> list[MigrationPlan]:
    """Per flagged chain (in order): move one of its own VNFs, among the moves where new
    latency + migration delay <= SLA - epsilon, to the best node: the largest net expected
    benefit with ``assess`` (ties: the lower new latency), else the lowest new latency.

    The paper's Algorithm 1 takes the first feasible move (:func:`algorithm1_paper`):
    taking the best is our change, so a move is not wasted on a node that barely helps."""
    plans: list[MigrationPlan] = []
    for chain in flagged:
        if len(plans) >= budget:
            break
        own = [v.name for v in view.chains[chain].vnfs]
        options = _candidates(view, engine, cost, chain, signal, own, alpha=0.0, assess=assess)
        if options:
            if assess is not None:
                best = max(options, key=lambda p: (p.benefit, -p.predicted_latency_ms))
            else:
                best = min(options, key=lambda p: (p.predicted_latency_ms, p.delay.total_ms))
            view.apply(best)
            plans.append(best)
    return plans


def algorithm1_paper(view: ClusterView, engine: PolicyEngine, cost: MigrationCost,
                     flagged: Sequence[str], signal: Mapping[str, float], budget: int,
                     assess: Assessment | None = None) -> list[MigrationPlan]:
    """The paper's Algorithm 1: per flagged chain, its VNFs in chain order, the nodes in
    order; migrate on the first move with new latency + migration delay <= SLA - epsilon."""
    plans: list[MigrationPlan] = []
    for chain in flagged:
        if len(plans) >= budget:
            break
        own = [v.name for v in view.chains[chain].vnfs]
        options = _candidates(view, engine, cost, chain, signal, own, alpha=0.0)
        if options:
            view.apply(options[0])
            plans.append(options[0])
    return plans


def _neighbours(view: ClusterView, chain: str) -> tuple[list[str], list[str]]:
    own = [v.name for v in view.chains[chain].vnfs]
    partitions = {(view.node_of[v], v in view.pinned) for v in own}
    return own, [v for v in view.vnfs if v not in own and (view.node_of[v], v in view.pinned) in partitions]


def algorithm2(view: ClusterView, engine: PolicyEngine, cost: MigrationCost,
               flagged: Sequence[str], signal: Mapping[str, float], budget: int,
               assess: Assessment | None = None) -> list[MigrationPlan]:
    """Cost-aware heuristic over all flagged chains, most urgent (signal / SLA) first.

    For each, the candidate moves are its own VNFs and any VNF sharing a partition with
    one of them; the cheapest by new latency + alpha * migration delay wins, subject to
    resources, the neighbour's SLA, the budget and (with ``assess``) a positive net
    expected benefit.
    """
    plans: list[MigrationPlan] = []
    order = sorted(flagged, key=lambda c: signal[c] / view.chains[c].sla_ms, reverse=True)
    for chain in order:
        if len(plans) >= budget:
            break
        own, neighbours = _neighbours(view, chain)
        options = _candidates(view, engine, cost, chain, signal, own + neighbours,
                              alpha=engine.config.alpha, assess=assess)
        if options:
            best = min(options, key=lambda p: p.cost)
            view.apply(best)
            plans.append(best)
    return plans


def algorithm2_paper(view: ClusterView, engine: PolicyEngine, cost: MigrationCost,
                     flagged: Sequence[str], signal: Mapping[str, float], budget: int,
                     assess: Assessment | None = None) -> list[MigrationPlan]:
    """The paper's Algorithm 2: flagged chains (reactive: an observed violation) in order;
    own VNFs then neighbours, nodes in order; first fit whose new latency + delay stays
    within SLA + epsilon (for the moved VNF's chain and every chain the move touches)."""
    plans: list[MigrationPlan] = []
    for chain in flagged:
        if len(plans) >= budget:
            break
        own, neighbours = _neighbours(view, chain)
        options = _candidates(view, engine, cost, chain, signal, own + neighbours,
                              alpha=engine.config.alpha, slack_ms=-engine.config.epsilon_ms)
        if options:
            view.apply(options[0])
            plans.append(options[0])
    return plans


def balanced_placement(nodes: Sequence[NodeSpec], chains: Sequence[ChainSpec], engine: PolicyEngine,
                       demand: Mapping[str, float], exposure: Mapping[tuple[str, bool], float],
                       fixed: frozenset[str] = frozenset()) -> Placement:
    """A static, risk-aware placement of the URLLC VNFs from descriptors: by decreasing
    expected peak demand (cores), each onto the allowed partition (node, pinned or not)
    whose expected peak utilisation - its ``exposure`` (peak background load, e.g. cross
    traffic, or an eMBB link's peak over its capacity) plus the demand placed there - ends
    lowest, so URLLC is never put where the descriptors say the peak will not fit if
    another place has room. Other slices, and the VNFs in ``fixed`` (ones the
    infrastructure never moves, e.g. the testbed's ingress stage where the traffic enters),
    keep :func:`initial_placement`. Memory, roles and isolation as there; raises
    :class:`InfraRejected` when a VNF fits nowhere."""
    home = initial_placement(nodes, chains, engine).as_dict()
    urllc = sorted((v for c in chains for v in c.vnfs if v.slice is SliceKind.URLLC and v.name not in fixed),
                   key=lambda v: (-demand.get(v.name, 0.0), v.name))
    moving = {v.name for v in urllc}
    node_of = {v: n for v, n in home.items() if v not in moving}
    vnfs = {v.name: v for c in chains for v in c.vnfs}
    memory = {n.name: 0.0 for n in nodes}
    kinds: dict[str, list[SliceKind]] = {n.name: [] for n in nodes}
    for v, n in node_of.items():
        memory[n] += vnfs[v].memory_mb
        kinds[n].append(vnfs[v].slice)
    placed = {(n.name, pin): 0.0 for n in nodes for pin in (False, True)}
    by_name = {n.name: n for n in nodes}
    for v in fixed & set(node_of):
        if vnfs[v].slice is SliceKind.URLLC:
            n = by_name[node_of[v]]
            placed[(n.name, engine.pinned(SliceKind.URLLC, n))] += demand.get(v, 0.0)
    for vnf in urllc:
        best: tuple | None = None
        for n in nodes:
            if memory[n.name] + vnf.memory_mb > n.memory_mb or not engine.may_host(vnf.slice, n, kinds[n.name]).ok:
                continue
            pin = engine.pinned(vnf.slice, n)
            cap = n.pinned_cores if pin else n.cores - n.pinned_cores
            if cap <= 0:
                continue
            peak = exposure.get((n.name, pin), 0.0) + (placed[(n.name, pin)] + demand.get(vnf.name, 0.0)) / cap
            # Among equals the home role first, then node order (ties keep the usual placement).
            key = (round(peak, 9), 0 if n.role is home_role(vnf.slice) else 1, nodes.index(n))
            if best is None or key < best[0]:
                best = (key, n, pin)
        if best is None:
            raise InfraRejected(f"no node may host {vnf.name} ({vnf.slice.value}, {vnf.memory_mb:g} MB)")
        _, n, pin = best
        node_of[vnf.name] = n.name
        memory[n.name] += vnf.memory_mb
        placed[(n.name, pin)] += demand.get(vnf.name, 0.0)
        kinds[n.name].append(vnf.slice)
    return Placement.of(node_of)


PLACEMENTS: dict[str, Callable[..., list[MigrationPlan]]] = {
    "algorithm1": algorithm1,
    "algorithm1-paper": algorithm1_paper,
    "algorithm2": algorithm2,
    "algorithm2-paper": algorithm2_paper,
}

"""The testbed as the orchestrator's :class:`~mantra6g.orchestrator.infra.Infrastructure`:
the same policies that drive the simulator drive the real site.

The managed chain is the URLLC chain, two VNFs: ``urllc.ingress`` (monitor source,
firewall, router) and ``urllc.egress`` (load balancer, monitor sink, router). The eMBB
bulk is unmanaged cross traffic. Each interval the monitor's mean delay of the slice is
reported as the egress VNF's latency (the sink cannot split it per hop; the ingress
VNF reports 0), so the chain's end-to-end latency in the store is the monitor's reading.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mantra6g.orchestrator.infra import (
    ChainSpec,
    InfraRejected,
    MigrationPlan,
    NodeRole,
    NodeSample,
    NodeSpec,
    Observation,
    Placement,
    SliceKind,
    TelemetrySample,
    VnfSpec,
)
from mantra6g.testbed.chain import EGRESS, INGRESS
from mantra6g.testbed.site import IntervalStats, MigrationReport, Site

CHAIN = "urllc"
VNF_STAGE = {f"{CHAIN}.{INGRESS}": INGRESS, f"{CHAIN}.{EGRESS}": EGRESS}
SLA_MS = 1.0


class TestbedInfra:
    """An :class:`Infrastructure` over a running :class:`Site`; the run lasts ``duration_s``."""

    __test__ = False  # not a pytest class

    def __init__(self, site: Site, duration_s: float, interval_s: float = 0.5):
        self.site = site
        self._interval = interval_s
        self._start = time.monotonic()
        self._end = self._start + duration_s
        self._next = self._start + interval_s
        self._last_ms = 0.0
        self.pinned: set[str] = set()
        self._bytes: dict[str, int] = {}
        self.cores: dict[str, float] = {}
        self.last_interval: IntervalStats | None = None
        self.intervals: list[tuple[float, IntervalStats]] = []
        self.migrations: list[tuple[float, MigrationPlan, MigrationReport]] = []
        self.action_latency_s: list[float] = []  # observation returned -> action applied

    @property
    def interval_s(self) -> float:
        return self._interval

    def nodes(self) -> Sequence[NodeSpec]:
        # One core per node (the machine has two); nodes that can pin reserve it.
        return [NodeSpec(n.name, NodeRole(n.role), 1.0, 4096.0, n.link_mbit / 1000.0,
                         pinned_cores=1.0 if n.role in ("urllc", "spare") else 0.0)
                for n in self.site.config.nodes]

    def chains(self) -> Sequence[ChainSpec]:
        vnfs = tuple(VnfSpec(v, CHAIN, SliceKind.URLLC, cost_us=1.0, memory_mb=16.0, state_mb=0.05) for v in VNF_STAGE)
        return [ChainSpec(CHAIN, SliceKind.URLLC, vnfs, SLA_MS)]

    def placement(self) -> Placement:
        return Placement.of({v: self.site.placement[s] for v, s in VNF_STAGE.items()}, self.pinned)

    def in_flight(self) -> Sequence[MigrationPlan]:
        return []  # migrations complete inside migrate()

    def link_ms(self, a: str, b: str) -> float:
        return 0.0 if a == b else 0.01  # an idle veth + bridge hop, measured ~10 us

    def observe(self) -> Observation | None:
        """Wait for the interval's end (wall clock), then read monitor and ground truth."""
        if self._next > self._end + 1e-9:
            return None
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        st = self.site.interval()
        t = round(self._next - self._start, 6)
        self._next += self._interval
        if self._next < time.monotonic():  # an action overran the interval: skip, don't burst
            self._next = time.monotonic() + self._interval
        self.last_interval = st
        self.intervals.append((t, st))
        if st.monitor_mean_ms is not None:
            self._last_ms = st.monitor_mean_ms  # no probe in the interval: keep the last reading
        kpps = st.monitor_packets / self._interval / 1000.0
        samples = tuple(
            TelemetrySample(t, CHAIN, SliceKind.URLLC, v, self.site.placement[s],
                            self._last_ms if s == EGRESS else 0.0, self._last_ms if s == EGRESS else 0.0,
                            0.05, 16.0, kpps)
            for v, s in VNF_STAGE.items())
        # A node's load is its inbound link's utilisation (a node here is its NIC; XDP's
        # CPU time is spent in whichever core's softirq received the packet): this is
        # where queueing builds, so the placement model's M/M/1 term sees it.
        sent = self.site.link_bytes()
        nodes = tuple(
            NodeSample(t, n.name, min(0.99, (sent[n.name] - self._bytes.get(n.name, 0)) * 8 / self._interval / (n.link_mbit * 1e6)), 0.0, 0.0)
            for n in self.site.config.nodes)
        self._bytes = sent
        self._observed_at = time.monotonic()
        return Observation(t, samples, nodes)

    def migrate(self, plan: MigrationPlan) -> None:
        """Carry the migration out now (compile, start, copy state, switch, remove)."""
        stage = VNF_STAGE.get(plan.vnf)
        if stage is None or plan.target not in {n.name for n in self.site.config.nodes}:
            raise InfraRejected(f"cannot migrate {plan.vnf} to {plan.target}")
        report = self.site.migrate(stage, plan.target)
        self.action_latency_s.append(time.monotonic() - self._observed_at)
        self.migrations.append((time.monotonic() - self._start, plan, report))
        if plan.pinned:
            self.pinned.add(plan.vnf)

    def scale(self, vnf: str, cores: float) -> None:
        """Recorded only: an XDP program has no process whose CPU share could change."""
        self.cores[vnf] = cores

    def isolate(self, vnf: str, pinned: bool) -> None:
        """Recorded only (see docs/testbed.md: XDP runs in the receiving core's softirq)."""
        (self.pinned.add if pinned else self.pinned.discard)(vnf)

"""The testbed as the orchestrator's :class:`~mantra6g.orchestrator.infra.Infrastructure`:
the same policies that drive the simulator drive the real site.

The managed chain is the URLLC chain, two VNFs: ``urllc.ingress`` (monitor source,
firewall, router) and ``urllc.egress`` (load balancer, monitor sink, router). The eMBB
chain (policer, router: one stage on the eMBB node) is deployed but not managed: the
orchestrator sees its node as occupied and does not move it. Each interval the monitor's mean delay of the slice is
reported as the egress VNF's latency (the sink cannot split it per hop; the ingress
VNF reports 0), so the chain's end-to-end latency in the store is the monitor's reading.

What Algorithm 1 sees, and why (it estimates a move as signal x model after / model
before, the model being per-packet processing + M/M/1 CPU queueing + ``link_ms``):

* ``link_ms(a, b)`` is the *measured* one-way delay from node ``a`` into node ``b``: an
  idle hop (~10 us) plus the mean queueing delay over the last interval of every tbf on
  the way (``b``'s link, and its rack's uplink when ``a`` is outside that rack; each one's
  backlog, polled during the interval, over its rate). On this site delay is link
  queueing, not CPU: a VNF's XDP cost is ~1 us, so without this term every move looks
  useless.
* A node's load is the utilisation of the busiest link on its way in from the core (a
  node here is its NIC).
* Each node's interface carries one XDP program (one stage), so each node has room for
  one VNF: ``memory_mb`` is one VNF's and a node's used memory is that of the stage on
  it. This keeps placement from stacking both stages on one node, which the chain's
  build (one program per node interface) does not support.
* Migration is make-before-break (compile, attach, copy state while the old instance
  forwards, then one map update switches), so the delay a chain pays is the switch, not
  the copy: ``state_mb`` is the stage's real map state, the nodes' ``bandwidth_gbps`` is
  the path that state takes (``bpf()`` syscalls on one host, not a data link) and
  :data:`MIGRATION_COST` has no restart term.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mantra6g.errors import MantraError
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
from mantra6g.orchestrator.placement import MigrationCost, initial_placement
from mantra6g.orchestrator.policy import PolicyConfig, PolicyEngine
from mantra6g.testbed.chain import EGRESS, INGRESS
from mantra6g.testbed.site import ALL_CPUS, IntervalStats, MigrationReport, Site

CHAIN = "urllc"
VNF_STAGE = {f"{CHAIN}.{INGRESS}": INGRESS, f"{CHAIN}.{EGRESS}": EGRESS}
VNF_MEMORY_MB = 16.0  # one XDP stage; also a node's capacity (one program per interface)
IDLE_HOP_MS = 0.01  # an idle veth + bridge hop, measured ~10 us
STATE_PATH_GBPS = 10.0  # state is copied between pinned maps on one host, not over a link
SWITCH_MS = 0.05  # one map update (egress) or neighbour entry (ingress) switches traffic
MIGRATION_COST = MigrationCost(bandwidth_gbps=STATE_PATH_GBPS, restart_ms=0.0, rule_update_ms=SWITCH_MS)
POLL_S = 0.05  # link backlog poll period inside an interval


class TestbedInfra:
    """An :class:`Infrastructure` over a running :class:`Site`; the run lasts ``duration_s``."""

    __test__ = False  # not a pytest class

    def __init__(self, site: Site, duration_s: float, interval_s: float = 0.5):
        self.site = site
        self._interval = interval_s
        self._duration = duration_s
        self._start: float | None = None  # the first observe() starts the clock
        self._last_ms = 0.0
        self.pinned: set[str] = set()
        self._state_mb = {s: b / 1e6 for s, b in site.state_bytes().items()}
        self._bytes: dict[str, int] = {}
        self._backlog: dict[str, list[int]] = {}  # polled queue bytes per link, this interval
        self.queue_ms: dict[str, float] = {}  # per link (see SiteConfig.inbound), last interval
        self.cores: dict[str, float] = {}
        self.last_interval: IntervalStats | None = None
        self.intervals: list[tuple[float, IntervalStats]] = []
        self.migrations: list[tuple[float, MigrationPlan, MigrationReport]] = []
        self.action_latency_s: list[float] = []  # observation returned -> action applied

    def initial_placement(self, config: PolicyConfig) -> dict[str, str]:
        """Stage -> node, as the orchestrator places the chain (see
        :func:`~mantra6g.orchestrator.placement.initial_placement`)."""
        try:
            got = initial_placement(self.nodes(), self.chains(), PolicyEngine(config)).as_dict()
        except InfraRejected as exc:  # the scenario's nodes, not a bug: the user's to fix
            raise MantraError(f"the orchestrator cannot place the URLLC chain on this site: {exc} "
                              "(each node holds one stage; URLLC runs on urllc and spare nodes)") from None
        return {s: got[v] for v, s in VNF_STAGE.items()}

    @property
    def interval_s(self) -> float:
        return self._interval

    def nodes(self) -> Sequence[NodeSpec]:
        # The machine's cores; nodes that can pin reserve one (RESERVED_CPU, shared by all
        # nodes on this one machine).
        return [NodeSpec(n.name, NodeRole(n.role), float(len(ALL_CPUS)), VNF_MEMORY_MB, STATE_PATH_GBPS,
                         pinned_cores=1.0 if n.role in ("urllc", "spare") else 0.0)
                for n in self.site.config.nodes]

    def chains(self) -> Sequence[ChainSpec]:
        vnfs = tuple(VnfSpec(v, CHAIN, SliceKind.URLLC, cost_us=1.0, memory_mb=VNF_MEMORY_MB,
                             state_mb=self._state_mb[s])
                     for v, s in VNF_STAGE.items())
        return [ChainSpec(CHAIN, SliceKind.URLLC, vnfs, self.site.config.urllc_sla_ms)]

    def placement(self) -> Placement:
        return Placement.of({v: self.site.placement[s] for v, s in VNF_STAGE.items()}, self.pinned)

    def in_flight(self) -> Sequence[MigrationPlan]:
        return []  # migrations complete inside migrate()

    def link_ms(self, a: str, b: str) -> float:
        """The idle hop plus the measured queueing on the way from ``a`` into ``b``."""
        return 0.0 if a == b else IDLE_HOP_MS + self._queued_ms(b, a)

    def _queued_ms(self, node: str, source: str) -> float:
        return sum(self.queue_ms.get(link, 0.0) for link in self.site.config.inbound(node, source))

    def _poll_links(self) -> dict[str, int]:
        stats = self.site.link_stats()
        for link, (_, backlog) in stats.items():
            self._backlog.setdefault(link, []).append(backlog)
        return {link: sent for link, (sent, _) in stats.items()}

    def observe(self) -> Observation | None:
        """Wait for the interval's end (wall clock), then read monitor and ground truth."""
        if self._start is None:
            self._start = time.monotonic()
            self._next = self._start + self._interval
        if self._next > self._start + self._duration + 1e-9:
            return None
        # Poll the links' queues while waiting: their mean backlog is the interval's
        # queueing delay (one tc call per poll; a single end-of-interval sample would
        # miss bursts that ended just before it).
        while (delay := self._next - time.monotonic()) > 0:
            time.sleep(min(POLL_S, delay))
            if self._next - time.monotonic() > POLL_S / 2:
                self._poll_links()
        sent = self._poll_links()
        c = self.site.config
        self.queue_ms = {link: sum(b) / len(b) * 8 / (c.link_mbit(link) * 1e6) * 1e3 for link, b in self._backlog.items()}
        utilisation = {link: (sent[link] - self._bytes.get(link, 0)) * 8 / self._interval / (c.link_mbit(link) * 1e6)
                       for link in sent}
        self._backlog = {}
        self._bytes = sent
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
        place = self.site.placement
        source = {INGRESS: "gen", EGRESS: place[INGRESS]}
        samples = tuple(
            TelemetrySample(t, CHAIN, SliceKind.URLLC, v, place[s], self._last_ms if s == EGRESS else 0.0,
                            self._queued_ms(place[s], source[s]), 0.05, VNF_MEMORY_MB, kpps)
            for v, s in VNF_STAGE.items())
        # A node's load is its busiest inbound link's utilisation (see the module
        # docstring); its memory is the stage deployed on it.
        stages = list(place.values()) + ([self.site.embb_build.node] if self.site.embb_build else [])
        nodes = tuple(
            NodeSample(t, n.name, min(0.99, max(utilisation[link] for link in c.inbound(n.name))), 0.0,
                       VNF_MEMORY_MB * stages.count(n.name))
            for n in c.nodes)
        self._observed_at = time.monotonic()
        return Observation(t, samples, nodes)

    def migrate(self, plan: MigrationPlan) -> None:
        """Carry the migration out now (compile, start, copy state, switch, remove); the
        new instance runs pinned or not as the plan says."""
        stage = VNF_STAGE.get(plan.vnf)
        if stage is None or plan.target not in {n.name for n in self.site.config.nodes}:
            raise InfraRejected(f"cannot migrate {plan.vnf} to {plan.target}")
        if plan.pinned != (stage in self.site.isolated):
            self.isolate(plan.vnf, plan.pinned)
        report = self.site.migrate(stage, plan.target)
        self.action_latency_s.append(time.monotonic() - self._observed_at)
        self.migrations.append((time.monotonic() - self._start, plan, report))

    def scale(self, vnf: str, cores: float) -> None:
        """Recorded only: a stage is one NAPI thread (one veth queue), which cannot use
        more than one core; scaling out would need more queues (not built)."""
        self.cores[vnf] = cores

    def isolate(self, vnf: str, pinned: bool) -> None:
        """Pin the stage's NAPI thread to the reserved core at real-time priority and fence
        the noisy neighbours off that core (see :meth:`Site.isolate`)."""
        stage = VNF_STAGE.get(vnf)
        if stage is None:
            raise InfraRejected(f"unknown VNF {vnf}")
        self.site.isolate(stage, pinned)
        (self.pinned.add if pinned else self.pinned.discard)(vnf)

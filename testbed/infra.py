"""The testbed as the orchestrator's :class:`~mantra6g.orchestrator.infra.Infrastructure`:
the same policies that drive the simulator drive the real site.

The managed chain is the URLLC chain, two VNFs: ``urllc.ingress`` (monitor source,
firewall, router) and ``urllc.egress`` (load balancer, monitor sink, router). The eMBB
chains (policer, router: one stage per eMBB node) are deployed but not managed: the
orchestrator sees their nodes as occupied and does not move them. Each interval the
monitor's mean delay of the slice is reported as the egress VNF's latency (the sink
cannot split it per hop; the ingress VNF reports 0), so the chain's end-to-end latency in
the store is the monitor's reading.

Leading indicators, read from the kernel every interval and stored beside the latency:

* per link (:class:`~mantra6g.orchestrator.infra.LinkSample`): the tbf qdisc's bytes,
  backlog and drops (``tc -s``, polled every :data:`POLL_S` while the interval runs):
  utilisation, mean backlog, queueing delay, drops, offered load;
* per slice (:class:`~mantra6g.orchestrator.infra.SliceSample`): the veth driver's XDP
  verdict counters on each stage's node (packets that reached the program, forwarded,
  dropped: the eMBB policers' drops);
* per VNF: its node's NAPI thread CPU time (schedstat), and on its hop the busiest inbound
  link's utilisation and the drops there.

What Algorithm 1 sees, and why (it estimates a move as signal x model after / model
before, the model being per-packet processing + M/M/1 CPU queueing + ``link_ms``):

* ``link_ms(a, b)`` is the one-way delay from node ``a`` into node ``b``: an idle hop
  (~10 us) plus, for every tbf on the way (``b``'s link, and its rack's uplink when ``a``
  is outside that rack), the larger of the queueing measured over the last interval
  (backlog over rate) and the M/D/1 wait at the utilisation measured there. On this site
  delay is link queueing, not CPU (a VNF's XDP cost is ~1 us); the M/D/1 term lets a link
  that is filling count before its queue shows.
* A node's load is the utilisation of the busiest link on its way in from the core.
* Each node's interface carries one XDP program (one stage), so each node has room for one
  VNF: ``memory_mb`` is one VNF's and a node's used memory is that of the stage on it (a
  warm standby does not count: it is the site's, not a placement).
* Migration is make-before-break onto warm standbys (:mod:`mantra6g.testbed.migration`):
  the delay a chain pays is the switch (one map update), not the copy; ``state_mb`` is the
  stage's real map state and :data:`MIGRATION_COST` has no restart term.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mantra6g.errors import MantraError
from mantra6g.orchestrator.infra import (
    ChainSpec,
    InfraRejected,
    LinkSample,
    MigrationPlan,
    NodeRole,
    NodeSample,
    NodeSpec,
    Observation,
    Placement,
    SliceKind,
    SliceSample,
    TelemetrySample,
    VnfSpec,
)
from mantra6g.orchestrator.placement import MigrationCost, balanced_placement, initial_placement
from mantra6g.orchestrator.policy import PolicyConfig, PolicyEngine
from mantra6g.testbed.chain import EGRESS, INGRESS
from mantra6g.testbed.migration import MigrationReport
from mantra6g.testbed.site import ALL_CPUS, IntervalStats, Site

CHAIN = "urllc"
VNF_STAGE = {f"{CHAIN}.{INGRESS}": INGRESS, f"{CHAIN}.{EGRESS}": EGRESS}
VNF_MEMORY_MB = 16.0  # one XDP stage; also a node's capacity (one program per interface)
IDLE_HOP_MS = 0.01  # an idle veth + bridge hop, measured ~10 us
STATE_PATH_GBPS = 10.0  # state is copied between pinned maps on one host, not over a link
SWITCH_MS = 0.05  # one map update (egress) or neighbour entry (ingress) switches traffic
MIGRATION_COST = MigrationCost(bandwidth_gbps=STATE_PATH_GBPS, restart_ms=0.0, rule_update_ms=SWITCH_MS)
POLL_S = 0.05  # link backlog poll period inside an interval
RHO_CAP = 0.99  # M/D/1 waits are evaluated at min(utilisation, this)


@dataclass(frozen=True)
class ActionTiming:
    """One action through the control loop, on one clock (monotonic seconds): the
    observation's last sample taken, the controller's decision (the action issued), the
    action applied (traffic switched)."""

    sampled: float
    decided: float
    applied: float

    @property
    def decision_ms(self) -> float:
        return (self.decided - self.sampled) * 1e3

    @property
    def apply_ms(self) -> float:
        return (self.applied - self.decided) * 1e3

    @property
    def total_ms(self) -> float:
        """Sample -> decision -> applied action."""
        return (self.applied - self.sampled) * 1e3


def md1_wait_ms(utilisation: float, packet_bytes: float, mbit: float) -> float:
    """Mean M/D/1 wait: rho S / (2 (1 - rho)), S one packet's transmission time."""
    rho = min(max(utilisation, 0.0), RHO_CAP)
    service_ms = packet_bytes * 8 / (mbit * 1e6) * 1e3
    return rho * service_ms / (2 * (1 - rho))


class TestbedInfra:
    """An :class:`Infrastructure` over a running :class:`Site`; the run lasts ``duration_s``
    from the traffic's start (:meth:`Site.start_traffic`)."""

    __test__ = False  # not a pytest class

    def __init__(self, site: Site, duration_s: float, interval_s: float | None = None):
        self.site = site
        self._interval = interval_s if interval_s is not None else site.config.interval_s
        self._duration = duration_s
        self._start: float | None = None  # monotonic time of the traffic's start
        self._last_ms = 0.0
        self.pinned: set[str] = set()
        self._state_mb = {s: b / 1e6 for s, b in site.state_bytes().items()}
        self._counters: dict[str, tuple[int, int, int]] = {}  # link -> (bytes, drops, packets) so far
        self._backlog: dict[str, list[int]] = {}  # polled queue bytes per link, this interval
        self._xdp: dict[str, dict[str, int]] = {}
        self._cpu: dict[str, float] = {}
        self.queue_ms: dict[str, float] = {}  # per link (see SiteConfig.inbound), last interval
        self.utilisation: dict[str, float] = {}
        self.packet_bytes: dict[str, float] = {}
        self.cores: dict[str, float] = {}
        self.last_interval: IntervalStats | None = None
        self.intervals: list[tuple[float, IntervalStats]] = []
        self.migrations: list[tuple[float, MigrationPlan, MigrationReport]] = []
        self.timings: list[ActionTiming] = []
        self._sampled = 0.0

    def initial_placement(self, config: PolicyConfig, balanced: bool = False) -> dict[str, str]:
        """Stage -> node, as the orchestrator places the chain (see
        :func:`~mantra6g.orchestrator.placement.initial_placement`); ``balanced``: the
        risk-aware static placement, from the scenario's descriptors (every node's
        exposure: the eMBB peak on its inbound links over their capacity) of the egress
        stage, the one the policies move."""
        engine = PolicyEngine(config)
        try:
            if balanced:
                c = self.site.config
                peak = c.embb_peak_mbit()
                loaded = {link for n in c.embb_nodes for link in c.inbound(n)}  # the links eMBB crosses
                exposure = {}
                for n in c.nodes:
                    worst = max((peak / c.link_mbit(link) for link in c.inbound(n.name) if link in loaded), default=0.0)
                    exposure[(n.name, False)] = exposure[(n.name, True)] = worst
                # Only the stage the policies move is placed; the ingress stays where the
                # traffic enters (moved behind an uplink, it would take the queue out of
                # the monitor's span, not off the path).
                fixed = frozenset(v for v, stage in VNF_STAGE.items() if stage != EGRESS)
                got = balanced_placement(self.nodes(), self.chains(), engine, {}, exposure, fixed).as_dict()
            else:
                got = initial_placement(self.nodes(), self.chains(), engine).as_dict()
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
        return []  # migrations switch inside migrate()

    def link_ms(self, a: str, b: str) -> float:
        """The idle hop plus the queueing on the way from ``a`` into ``b``."""
        return 0.0 if a == b else IDLE_HOP_MS + self._queued_ms(b, a)

    def _queued_ms(self, node: str, source: str) -> float:
        c = self.site.config
        total = 0.0
        for link in c.inbound(node, source):
            model = md1_wait_ms(self.utilisation.get(link, 0.0), self.packet_bytes.get(link, 1200.0), c.link_mbit(link))
            total += max(self.queue_ms.get(link, 0.0), model)
        return total

    def _poll_links(self) -> dict[str, tuple[int, int, int, int]]:
        stats = self.site.link_stats()
        for link, (_, backlog, _, _) in stats.items():
            self._backlog.setdefault(link, []).append(backlog)
        return stats

    def observe(self) -> Observation | None:
        """Wait for the interval's end (wall clock), then read the monitor and the leading
        indicators; between intervals, bring the warm standbys up to date."""
        if self._start is None:
            begin = self.site.traffic_start if self.site.traffic_start is not None else time.time()
            self._start = time.monotonic() + max(0.0, begin - time.time())
            self._next = self._start + self._interval
            self._poll_links()
        if self._next > self._start + self._duration + 1e-9:
            return None
        self.site.migrator.sync(force=False)  # off the action's path: the standbys' incremental copy
        # Poll the links' queues while waiting: their mean backlog is the interval's
        # queueing delay (a single end-of-interval sample would miss bursts).
        while (delay := self._next - time.monotonic()) > 0:
            time.sleep(min(POLL_S, delay))
            if self._next - time.monotonic() > POLL_S / 2:
                self._poll_links()
        stats = self._poll_links()
        st = self.site.interval()
        self._sampled = time.monotonic()  # the last sample of this observation
        t = round(self._next - self._start, 6)
        interval = self._interval
        self._next += interval
        if self._next < time.monotonic():  # an action overran the interval: skip, don't burst
            self._next = time.monotonic() + interval
        c = self.site.config
        links = []
        for link, (sent, _, drops, packets) in stats.items():
            b0, d0, p0 = self._counters.get(link, (sent, drops, packets))
            mbit = c.link_mbit(link)
            backlog = self._backlog.get(link, [0])
            self.queue_ms[link] = sum(backlog) / len(backlog) * 8 / (mbit * 1e6) * 1e3
            self.utilisation[link] = (sent - b0) * 8 / interval / (mbit * 1e6)
            if packets > p0:
                self.packet_bytes[link] = (sent - b0) / (packets - p0)
            links.append(LinkSample(t, link, self.utilisation[link], sum(backlog) / len(backlog), self.queue_ms[link],
                                    drops - d0, (sent - b0) * 8 / interval / 1e6))
            self._counters[link] = (sent, drops, packets)
        self._backlog = {}
        self.last_interval = st
        self.intervals.append((t, st))
        if st.monitor_mean_ms is not None:
            self._last_ms = st.monitor_mean_ms  # no probe in the interval: keep the last reading
        drops_on = {x.link: x.drops / interval / 1000.0 for x in links}
        place = self.site.placement
        source = {INGRESS: "gen", EGRESS: place[INGRESS]}
        slices, rate = [], {}
        for node, kind in [(place[s], SliceKind.URLLC) for s in (INGRESS, EGRESS)] + \
                [(n, SliceKind.EMBB) for n in self.site.embb_builds]:
            now = self.site.xdp_counters(node)
            was = self._xdp.get(node, now)
            self._xdp[node] = now
            d = {k: (now[k] - was.get(k, now[k])) / interval / 1000.0 for k in now}
            rate[node] = d
            slices.append(SliceSample(t, kind, node, d["xdp_packets"], d["xdp_tx"], d["xdp_drops"]))
            cpu = self.site.napi_cpu_s(node)
            self.cores[node] = (cpu - self._cpu.get(node, cpu)) / interval
            self._cpu[node] = cpu
        samples = []
        for v, s in VNF_STAGE.items():
            node = place[s]
            inbound = c.inbound(node, source[s])
            samples.append(TelemetrySample(
                t, CHAIN, SliceKind.URLLC, v, node, self._last_ms if s == EGRESS else 0.0,
                self._queued_ms(node, source[s]), self.cores.get(node, 0.0), VNF_MEMORY_MB,
                rate[node]["xdp_packets"], max((self.utilisation.get(x, 0.0) for x in inbound), default=0.0),
                sum(drops_on.get(x, 0.0) for x in inbound) + rate[node]["xdp_drops"]))
        # A node's load is its busiest inbound link's utilisation (see the module
        # docstring), in both its partitions (a link is shared by whatever runs there);
        # its memory is the stage deployed on it.
        stages = list(place.values()) + list(self.site.embb_builds)
        specs = {n.name: n for n in self.nodes()}
        nodes = []
        for n in c.nodes:
            u = min(0.99, max(self.utilisation.get(x, 0.0) for x in c.inbound(n.name)))
            spec = specs[n.name]
            nodes.append(NodeSample(t, n.name, u * (spec.cores - spec.pinned_cores), u * spec.pinned_cores,
                                    VNF_MEMORY_MB * stages.count(n.name)))
        nodes = tuple(nodes)
        return Observation(t, tuple(samples), nodes, tuple(links), tuple(slices))

    def migrate(self, plan: MigrationPlan) -> None:
        """Carry the migration out now: onto the target's warm standby (one forwarding
        change), else the slow path; the new instance runs pinned or not as the plan says."""
        decided = time.monotonic()
        stage = VNF_STAGE.get(plan.vnf)
        if stage is None or plan.target not in {n.name for n in self.site.config.nodes}:
            raise InfraRejected(f"cannot migrate {plan.vnf} to {plan.target}")
        if plan.pinned != (stage in self.site.isolated):
            self.isolate(plan.vnf, plan.pinned)
        report = self.site.migrate(stage, plan.target)
        applied = time.monotonic() - (time.time() - report.switched)  # the switch, on this clock
        self.timings.append(ActionTiming(self._sampled, decided, applied))
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

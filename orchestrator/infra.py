"""The boundary between the orchestrator and the infrastructure it manages.

Everything the control loop knows about the world comes through :class:`Infrastructure`,
the small set of operations a VIM offers: describe nodes and chains, report telemetry for
one control interval, and place, migrate, scale or isolate VNFs. The discrete-time
simulator (:mod:`mantra6g.orchestrator.simulator`) and the Mininet testbed
(:mod:`mantra6g.testbed.infra`) implement it. The values exchanged across it are the frozen dataclasses
below, so an implementation never needs the orchestrator's internals.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class SliceKind(enum.Enum):
    """The service class of a chain; it selects the SLA and the isolation rules."""

    URLLC = "urllc"
    EMBB = "embb"
    BEST_EFFORT = "best_effort"


class NodeRole(enum.Enum):
    """What a node is provisioned for; placement only uses compatible roles (see policy)."""

    URLLC = "urllc"  # node A: low-latency, supports CPU pinning
    EMBB = "embb"  # node B
    SHARED = "shared"  # node C: shared best effort
    SPARE = "spare"  # idle capacity any slice may migrate to


@dataclass(frozen=True)
class NodeSpec:
    """A compute node (server, DPU, edge host) and its capacity."""

    name: str
    role: NodeRole
    cores: float
    memory_mb: float
    bandwidth_gbps: float
    # Cores reserved for pinned (isolated) VNFs; 0 means the node cannot pin.
    pinned_cores: float = 0.0

    @property
    def supports_pinning(self) -> bool:
        return self.pinned_cores > 0


@dataclass(frozen=True)
class VnfSpec:
    """One VNF instance of a chain; what placement needs to know about it."""

    name: str
    chain: str
    slice: SliceKind
    cost_us: float  # mean CPU time per packet on one core
    memory_mb: float
    state_mb: float  # state moved by a migration


@dataclass(frozen=True)
class ChainSpec:
    """A service function chain: an ordered list of VNFs serving one slice."""

    name: str
    slice: SliceKind
    vnfs: tuple[VnfSpec, ...]
    sla_ms: float


@dataclass(frozen=True)
class Placement:
    """Which node every VNF runs on (and which VNFs are pinned), at one instant."""

    assignments: tuple[tuple[str, str], ...]  # (vnf, node), sorted by vnf
    pinned: frozenset[str] = frozenset()

    @staticmethod
    def of(assignments: Mapping[str, str], pinned: Iterable[str] = ()) -> Placement:
        """Build a placement from a ``{vnf: node}`` mapping."""
        return Placement(tuple(sorted(assignments.items())), frozenset(pinned))

    def as_dict(self) -> dict[str, str]:
        return dict(self.assignments)

    def node_of(self, vnf: str) -> str:
        for name, node in self.assignments:
            if name == vnf:
                return node
        raise KeyError(vnf)

    def vnfs_on(self, node: str) -> list[str]:
        return [v for v, n in self.assignments if n == node]


@dataclass(frozen=True)
class MigrationDelay:
    """The reference design's migration delay: state transfer + restart + rule update."""

    transfer_ms: float
    restart_ms: float
    rule_update_ms: float

    @property
    def total_ms(self) -> float:
        return self.transfer_ms + self.restart_ms + self.rule_update_ms


@dataclass(frozen=True)
class MigrationPlan:
    """A decision to move one VNF; the infrastructure carries it out."""

    vnf: str
    chain: str
    source: str
    target: str
    delay: MigrationDelay
    predicted_latency_ms: float  # the chain's end-to-end latency expected after the move
    cost: float  # Algorithm 2's objective: new latency + alpha * migration delay
    reason: str
    pinned: bool = False  # run on the target's reserved (pinned) cores
    # Cost-aware policies: expected SLA-violating steps the move avoids, net of its cost
    benefit: float = float("nan")


@dataclass(frozen=True)
class TelemetrySample:
    """One VNF's measurements over one control interval.

    ``latency_ms`` is the hop's share of the chain's end-to-end latency (processing +
    queueing at the VNF + the link to the next hop), so a chain's end-to-end latency is
    the sum of its VNFs' samples at the same ``time``.
    """

    time: float  # seconds since the start of the run, end of the interval
    chain: str
    slice: SliceKind
    vnf: str
    node: str
    latency_ms: float
    queueing_ms: float
    cpu: float  # cores used by this VNF
    memory_mb: float
    traffic_kpps: float
    # Leading indicators: the utilisation (0..1, may exceed 1 when offered load is above
    # capacity) of the busiest resource this hop's traffic crosses (its CPU partition in
    # the simulator; its inbound links in the testbed), and the packets dropped on the way.
    utilisation: float = 0.0
    drops_kpps: float = 0.0


@dataclass(frozen=True)
class LinkSample:
    """One rate-limited link over one control interval, read from the kernel (testbed:
    the tbf qdisc's ``tc -s`` statistics)."""

    time: float
    link: str
    utilisation: float  # bytes sent over the interval / (rate x interval)
    backlog_bytes: float  # mean queue length over the interval's polls
    queueing_ms: float  # that backlog over the rate: the delay a packet waits
    drops: int  # packets the qdisc dropped in the interval
    offered_mbit: float  # sent + dropped, over the interval: the demand on the link


@dataclass(frozen=True)
class SliceSample:
    """One slice's traffic at one node over one control interval, from the data plane's
    own counters (testbed: the XDP verdicts of the slice's chain stage on that node)."""

    time: float
    slice: SliceKind
    node: str
    offered_kpps: float  # packets that reached the stage
    forwarded_kpps: float  # packets it sent on
    dropped_kpps: float  # packets it dropped (a policer's, a firewall's)


@dataclass(frozen=True)
class NodeSample:
    """One node's load over one control interval, all tenants included."""

    time: float
    node: str
    cpu_used: float  # cores busy outside the pinned partition (incl. cross traffic)
    pinned_used: float  # cores busy inside the pinned partition
    memory_used_mb: float  # including what accepted, not yet switched migrations hold here


@dataclass(frozen=True)
class Observation:
    """Everything measured over one control interval."""

    time: float
    vnfs: tuple[TelemetrySample, ...]
    nodes: tuple[NodeSample, ...]
    links: tuple[LinkSample, ...] = ()
    slices: tuple[SliceSample, ...] = ()


@runtime_checkable
class Infrastructure(Protocol):
    """What a VIM offers the orchestrator. The simulator and the testbed implement it.

    The control loop calls :meth:`observe` once per control interval and then issues
    zero or more actions; actions never block, they take effect when the infrastructure
    says so (a migration after its delay).
    """

    @property
    def interval_s(self) -> float:
        """Length of one control interval in seconds."""
        ...

    def nodes(self) -> Sequence[NodeSpec]:
        """All nodes, including spares, in a stable order."""
        ...

    def chains(self) -> Sequence[ChainSpec]:
        """All deployed chains, in a stable order."""
        ...

    def placement(self) -> Placement:
        """The placement in force now (migrations still in flight are not included)."""
        ...

    def in_flight(self) -> Sequence[MigrationPlan]:
        """Migrations accepted but not yet completed."""
        ...

    def link_ms(self, a: str, b: str) -> float:
        """One-way delay of the link from node ``a`` to node ``b`` (``a == b``: inside a node)."""
        ...

    def observe(self) -> Observation | None:
        """Telemetry of the next control interval: one sample per VNF and per node.

        Returns when the interval has ended (the simulator runs one step; the testbed
        waits for the wall clock). ``None`` means the run is over.
        """
        ...

    def migrate(self, plan: MigrationPlan) -> None:
        """Start moving ``plan.vnf`` to ``plan.target``; it switches over after ``plan.delay``."""
        ...

    def scale(self, vnf: str, cores: float) -> None:
        """Give ``vnf`` a CPU allocation of ``cores`` on its current node."""
        ...

    def isolate(self, vnf: str, pinned: bool) -> None:
        """Pin ``vnf`` to the node's reserved cores (or release it)."""
        ...


class InfraRejected(RuntimeError):
    """The infrastructure refused an action (unknown VNF/node, no capacity).

    The orchestrator checks capacity before acting, so this signals a bug or a race with
    another controller, not a user mistake.
    """

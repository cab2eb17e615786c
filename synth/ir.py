"""The ServiceGraph IR: checked, typed and resolved service graphs.

This is what synthesis and the orchestrator consume; nothing downstream re-reads the
``.sg`` text. Every value is in base units (ns, bps, bytes), every name is resolved,
and :func:`to_json` / :func:`from_json` round-trip it exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from mantra6g import serde
from mantra6g.source import Span
from mantra6g.synth.expr import Expr


class DeviceClass(str, Enum):
    """Where an NF may run: a programmable switch, a SmartNIC/DPU, or a server (XDP)."""

    PDP = "pdp"
    SMARTNIC = "smartnic"
    HOST = "host"


@dataclass(frozen=True)
class Sla:
    """A slice's service-level agreement; ``None`` means the slice sets no bound."""

    latency_ns: int | None = None  # upper bound on one-way delay
    jitter_ns: int | None = None  # upper bound on delay variation
    bandwidth_bps: int | None = None  # guaranteed rate
    reliability_pct: Decimal | None = None  # share of packets delivered within the latency bound
    priority: int = 0  # 0 (best effort) .. 7 (highest)


@dataclass(frozen=True)
class TenantSlice:
    """A slice of a tenant; ``id`` is its number within the tenant (1, 2, ...)."""

    name: str
    id: int
    sla: Sla
    span: Span | None = None


@dataclass(frozen=True)
class Tenant:
    name: str
    id: int
    slices: tuple[TenantSlice, ...]
    bandwidth_cap_bps: int | None = None  # the tenant's contracted total rate
    span: Span | None = None

    def slice(self, name: str) -> TenantSlice | None:
        return next((s for s in self.slices if s.name == name), None)


@dataclass(frozen=True)
class Placement:
    """A placement constraint: the NF runs on this class of device (at this site)."""

    device: DeviceClass
    site: str | None = None
    span: Span | None = None


@dataclass(frozen=True)
class NfInstance:
    """One network function of a graph. ``params`` and ``rules`` are the dataclasses
    its kind declares (see :mod:`mantra6g.synth.nf`)."""

    name: str
    kind: str
    params: Any
    rules: tuple[Any, ...] = ()
    placement: Placement | None = None
    span: Span | None = None


@dataclass(frozen=True)
class Edge:
    """``src -> dst``; with a condition, only packets matching it take this edge."""

    src: str
    dst: str
    condition: Expr | None = None
    span: Span | None = None


@dataclass(frozen=True)
class ServiceGraph:
    """A tenant slice's chain of NFs: a DAG entered at its classifier."""

    name: str
    tenant: str
    slice: str
    tenant_id: int
    slice_id: int
    entry: str
    nfs: tuple[NfInstance, ...]
    edges: tuple[Edge, ...]
    span: Span | None = None

    def nf(self, name: str) -> NfInstance:
        for n in self.nfs:
            if n.name == name:
                return n
        raise KeyError(name)

    def successors(self, name: str) -> tuple[Edge, ...]:
        """Edges out of ``name``, conditional ones first in written order, then the default."""
        out = [e for e in self.edges if e.src == name]
        return tuple([e for e in out if e.condition is not None] + [e for e in out if e.condition is None])

    def predecessors(self, name: str) -> tuple[str, ...]:
        return tuple(e.src for e in self.edges if e.dst == name)

    def upstream(self, name: str) -> set[str]:
        """Every NF from which ``name`` can be reached."""
        seen: set[str] = set()
        todo = list(self.predecessors(name))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.predecessors(n))
        return seen

    def downstream(self, name: str) -> set[str]:
        """Every NF reachable from ``name``."""
        seen: set[str] = set()
        todo = [e.dst for e in self.edges if e.src == name]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(e.dst for e in self.edges if e.src == n)
        return seen

    def topological_order(self) -> tuple[str, ...]:
        """NF names so that every edge goes forward, starting at the entry (written order
        breaks ties)."""
        indegree = {n.name: 0 for n in self.nfs}
        for e in self.edges:
            indegree[e.dst] += 1
        ready = [n.name for n in self.nfs if indegree[n.name] == 0]
        order: list[str] = []
        while ready:
            n = ready.pop(0)
            order.append(n)
            for e in self.edges:
                if e.src == n:
                    indegree[e.dst] -= 1
                    if indegree[e.dst] == 0:
                        ready.append(e.dst)
        return tuple(order)


UPLINK = "uplink"  # a port owner: the operator's uplinks, which every tenant may use


@dataclass(frozen=True)
class Flow:
    """An intended cross-tenant flow: packets of ``src`` may leave rewritten into traffic
    that ``dst`` claims (a UPF handing traffic to an MEC tenant's VIP). A slice of None
    means every slice of the tenant."""

    src_tenant: str
    dst_tenant: str
    src_slice: str | None = None
    dst_slice: str | None = None
    span: Span | None = None

    def allows(self, src: tuple[str, str], dst: tuple[str, str]) -> bool:
        return (src[0], dst[0]) == (self.src_tenant, self.dst_tenant) and self.src_slice in (None, src[1]) \
            and self.dst_slice in (None, dst[1])


@dataclass(frozen=True)
class DevicePlan:
    """The operator's plan for one device (not the tenants' programs'): which tenant owns
    which port (``UPLINK``: the operator's, for every tenant), and which cross-tenant
    flows are intended. The verifier checks isolation against it."""

    device: DeviceClass
    site: str | None
    ports: tuple[tuple[int, str], ...] = ()  # (port, owner)
    flows: tuple[Flow, ...] = ()
    span: Span | None = None

    @property
    def name(self) -> str:
        """The device program's name (as compose names it)."""
        return self.device.value if self.site is None else f"{self.device.value}_{self.site}"

    def owned_by(self, owner: str) -> frozenset[int]:
        return frozenset(p for p, o in self.ports if o == owner)


@dataclass(frozen=True)
class ServiceSpec:
    """Everything one ``.sg`` file declares."""

    source: str
    tenants: tuple[Tenant, ...]
    graphs: tuple[ServiceGraph, ...]
    devices: tuple[DevicePlan, ...] = ()

    def tenant(self, name: str) -> Tenant | None:
        return next((t for t in self.tenants if t.name == name), None)


def to_json(specs: ServiceSpec | list[ServiceSpec] | tuple[ServiceSpec, ...]) -> str:
    """The IR as indented JSON text."""
    return json.dumps(serde.to_json(specs), indent=2)


def from_json(text: str) -> ServiceSpec | tuple[ServiceSpec, ...]:
    """Read IR written by :func:`to_json` (one spec or a list of them)."""
    from mantra6g.synth import nf  # noqa: F401  registers the NF kinds' classes

    data = json.loads(text)
    if isinstance(data, list):
        return tuple(serde.from_json(ServiceSpec, d) for d in data)
    return serde.from_json(ServiceSpec, data)

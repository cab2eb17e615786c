"""load_balancer: a virtual IP spread over backends by consistent (Maglev) hashing.

Lowering: a hash of ``hash`` fields indexes a Maglev lookup table of ``table_size``
slots filled from the backends' permutations (weights give more slots), and the VIP is
rewritten to the chosen backend (DNAT) with the checksums updated. Adding a backend
moves only the flows whose slots change.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mantra6g.serde import tagged
from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.nf.base import HeaderFields, Int, Ipv4, NfKind, head, is_prime, option, param, param_span, source_span
from mantra6g.synth.values import Reporter

DEFAULT_HASH = ("ipv4.src", "ipv4.dst", "ipv4.proto")


@tagged("load_balancer.params")
@dataclass(frozen=True)
class LoadBalancerParams:
    vip: IPv4Address = param(Ipv4(), "the virtual IP clients address")
    hash: tuple[str, ...] = param(HeaderFields(), "fields that identify a flow", default=DEFAULT_HASH)
    table_size: int = param(Int(2, 65521), "Maglev lookup-table size: a prime, well above the number of backends", default=251)


@tagged("load_balancer.backend")
@dataclass(frozen=True)
class Backend:
    """``backend ADDRESS [weight N]``."""

    address: IPv4Address = head(Ipv4(), "the backend's real address")
    weight: int = option(Int(1, 100), "relative share of flows", default=1)
    span: Span | None = source_span()


def _check(params: LoadBalancerParams, rules: tuple[Backend, ...], decl: ast.NfDecl, report: Reporter) -> None:
    if not is_prime(params.table_size):
        report.error(
            param_span(decl, "table_size"),
            f"table_size {params.table_size} is not prime",
            "Maglev needs a prime table size so that every backend's permutation covers all slots (e.g. 251, 1021, 4093)",
        )
    if params.table_size < sum(b.weight for b in rules):
        report.error(param_span(decl, "table_size"), "table_size is smaller than the total backend weight")
    seen: dict[IPv4Address, Backend] = {}
    for b in rules:
        if b.address == params.vip:
            report.error(b.span, f"backend {b.address} is the VIP itself", "list the servers' real addresses")
        if b.address in seen:
            report.error(b.span, f"backend {b.address} is listed twice", "use 'weight N' to give it a larger share")
        seen.setdefault(b.address, b)


KIND = NfKind(
    name="load_balancer",
    summary="Consistent (Maglev) hashing of flows to backends with DNAT; flows keep their backend.",
    params=LoadBalancerParams,
    rules={"backend": Backend},
    min_rules=1,
    check=_check,
)

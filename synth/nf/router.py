"""router: IPv4 longest-prefix-match forwarding.

Lowering: an LPM table on ``ipv4.dst``; a hit rewrites the MAC addresses, decrements
the TTL (dropping packets whose TTL would reach 0; the checksum follows incrementally,
see :mod:`mantra6g.synth.checksums`) and sends the packet out of the route's port. A
miss drops the packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from mantra6g.serde import tagged
from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.dpir import (
    MAX_PORT,
    ActionCall,
    Apply,
    Assign,
    BinOp,
    Const,
    Drop,
    Entry,
    Forward,
    If,
    IsValid,
    Lpm,
    Ref,
    TableKey,
)
from mantra6g.synth.nf.base import Int, Ipv4Prefix, Mac, NfKind, head, option, param, source_span
from mantra6g.synth.values import MacAddress, Reporter

# Every target's port number: v1model's 9-bit egress_spec, less BMv2's drop port 511.
DEVICE_PORTS = Int(0, MAX_PORT)


@tagged("router.params")
@dataclass(frozen=True)
class RouterParams:
    mac: MacAddress = param(Mac(), "the router's own MAC: the source MAC of forwarded packets")


@tagged("router.route")
@dataclass(frozen=True)
class Route:
    """``route PREFIX via NEXT_HOP_MAC port PORT``."""

    prefix: IPv4Network = head(Ipv4Prefix(), "destination prefix")
    via: MacAddress = option(Mac(), "next hop's MAC address (the new destination MAC)")
    port: int = option(DEVICE_PORTS, "egress port")
    span: Span | None = source_span()


def _check(params: RouterParams, rules: tuple[Route, ...], decl: ast.NfDecl, report: Reporter) -> None:
    seen: dict[IPv4Network, Route] = {}
    for r in rules:
        if r.prefix in seen:
            first = seen[r.prefix]
            report.error(
                r.span,
                f"route {r.prefix} is listed twice",
                f"first at line {first.span.line}; longest-prefix match needs one next hop per prefix",
            )
        seen.setdefault(r.prefix, r)


def lower(nf, low) -> tuple:
    """LPM on ipv4.dst; a hit rewrites MACs, decrements the TTL and forwards; a miss, a
    non-IPv4 packet or a TTL that would reach 0 drops."""
    route = low.action(
        "route",
        params=(("next_hop", 48), ("port", 9)),
        body=(
            Assign("eth.src", Const(nf.params.mac.value, 48)),
            Assign("eth.dst", Ref("param.next_hop")),
            Assign("ipv4.ttl", BinOp("-", Ref("ipv4.ttl"), Const(1, 8))),
            Forward(Ref("param.port")),
        ),
    )
    drop = low.action("drop", body=(Drop(),))
    entries = tuple(
        Entry((Lpm(int(r.prefix.network_address), r.prefix.prefixlen),), ActionCall(route, (r.via.value, r.port)))
        for r in nf.rules
    )
    fib = low.table(
        "fib",
        keys=(TableKey("ipv4.dst", "lpm"),),
        actions=(route, drop),
        default=ActionCall(drop),
        size=max(64, len(entries)),
        entries=entries,
    )
    return (
        If(
            IsValid("ipv4"),
            (If(BinOp("<=", Ref("ipv4.ttl"), Const(1, 8)), (Drop(),), (Apply(fib),)),),
            (Drop(),),
        ),
    )


KIND = NfKind(
    name="router",
    summary="IPv4 LPM forwarding with MAC rewrite, TTL decrement and checksum update.",
    params=RouterParams,
    rules={"route": Route},
    min_rules=1,
    check=_check,
    lower=lower,
    forwards=True,
)

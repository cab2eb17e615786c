"""l2_forward: Ethernet forwarding by destination MAC, as a switch's static station table.

Lowering: an exact table on ``eth.dst``; a hit sends the frame out of the station's
port, unchanged. A miss (an unknown station, broadcast, multicast) drops the frame: there
is no learning and no flooding. A frame whose station sits behind the port it came in
on is dropped too, as a bridge does (no hairpin).
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.dpir import ActionCall, Apply, BinOp, Drop, Entry, Exact, Forward, If, Ref, TableKey
from mantra6g.synth.nf.base import Mac, NfKind, head, option, source_span
from mantra6g.synth.nf.router import DEVICE_PORTS
from mantra6g.synth.values import MacAddress, Reporter


@tagged("l2_forward.params")
@dataclass(frozen=True)
class L2ForwardParams:
    """No parameters: the stations are the rules."""


@tagged("l2_forward.station")
@dataclass(frozen=True)
class Station:
    """``station MAC port PORT``."""

    mac: MacAddress = head(Mac(), "a unicast destination MAC address")
    port: int = option(DEVICE_PORTS, "the port the station is reached through")
    span: Span | None = source_span()


def _check(params: L2ForwardParams, rules: tuple[Station, ...], decl: ast.NfDecl, report: Reporter) -> None:
    seen: dict[int, Station] = {}
    for r in rules:
        if r.mac.value >> 40 & 1:
            report.error(r.span, f"station {r.mac} is a group (multicast or broadcast) address",
                         "stations are unicast: the first octet's lowest bit must be 0")
        elif r.mac.value in seen:
            first = seen[r.mac.value]
            report.error(r.span, f"station {r.mac} is listed twice",
                         f"first at line {first.span.line}; a station is reached through one port")
        seen.setdefault(r.mac.value, r)


def lower(nf, low) -> tuple:
    """Exact match on eth.dst to a port; a miss, or the port the frame came in on, drops."""
    out = low.action("to_port", params=(("port", 9),), body=(Forward(Ref("param.port")),))
    drop = low.action("drop", body=(Drop(),))
    stations = low.table(
        "stations",
        keys=(TableKey("eth.dst", "exact"),),
        actions=(out, drop),
        default=ActionCall(drop),
        size=max(64, len(nf.rules)),
        entries=tuple(Entry((Exact(r.mac.value),), ActionCall(out, (r.port,))) for r in nf.rules),
    )
    return (
        Apply(stations),
        If(BinOp("==", Ref("std.egress_port"), Ref("std.ingress_port")), (Drop(),)),
    )


KIND = NfKind(
    name="l2_forward",
    summary="Ethernet forwarding by destination MAC from a static station table.",
    params=L2ForwardParams,
    rules={"station": Station},
    min_rules=1,
    check=_check,
    lower=lower,
    forwards=True,
)

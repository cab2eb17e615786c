"""tunnel: VXLAN or GTP-U encapsulation and decapsulation.

Lowering: encap pushes outer IPv4/UDP/(VXLAN|GTP-U) headers with correct lengths and
checksums from ``local`` to ``remote``; decap first checks that the packet is such a
tunnel packet (and, when given, that it carries this VNI/TEID) before removing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Const,
    CopyHeader,
    Drop,
    Hash,
    If,
    IsValid,
    Ref,
    SetInvalid,
    SetValid,
    UpdateChecksum,
)
from mantra6g.synth.compose import all_of, field_width
from mantra6g.synth.headers import ETHER_TYPES, UDP_PORTS
from mantra6g.synth.nf.base import Choice, Int, Ipv4, NfKind, param, param_span
from mantra6g.synth.values import Reporter


@tagged("tunnel.params")
@dataclass(frozen=True)
class TunnelParams:
    protocol: str = param(Choice(("vxlan", "gtpu")), "VXLAN (UDP 4789) or GTP-U (UDP 2152)")
    mode: str = param(Choice(("encap", "decap")), "add or remove the tunnel headers")
    vni: int | None = param(Int(0, (1 << 24) - 1), "VXLAN network identifier", default=None)
    teid: int | None = param(Int(0, (1 << 32) - 1), "GTP-U tunnel endpoint identifier", default=None)
    local: IPv4Address | None = param(Ipv4(), "outer source address (encap); expected outer destination (decap)", default=None)
    remote: IPv4Address | None = param(Ipv4(), "outer destination address (encap)", default=None)


def _check(params: TunnelParams, rules: tuple, decl: ast.NfDecl, report: Reporter) -> None:
    ident, other = ("vni", "teid") if params.protocol == "vxlan" else ("teid", "vni")
    if getattr(params, other) is not None:
        report.error(
            param_span(decl, other),
            f"'{other}' does not apply to a {params.protocol} tunnel",
            f"a {params.protocol} tunnel is identified by '{ident}'",
        )
    if params.mode == "encap":
        missing = [n for n in (ident, "local", "remote") if getattr(params, n) is None]
        if missing:
            report.error(
                decl.kind.span,
                f"a {params.protocol} encap tunnel needs {', '.join(repr(m) for m in missing)}",
                "encapsulation writes the outer addresses and the tunnel id",
            )
        elif params.local == params.remote:
            report.error(param_span(decl, "remote"), "the tunnel's remote address equals its local address")
    elif params.remote is not None:
        report.error(
            param_span(decl, "remote"),
            "'remote' does not apply to decap",
            "decap checks the outer destination against 'local'",
        )


# ---------------------------------------------------------------- lowering
#
# The chain keeps working on eth/ipv4/udp: encapsulation moves the packet's headers to
# the inner_* instances and writes the new outer ones in their place, so NFs after an
# encap see (and route on) the outer headers; decapsulation moves inner_* back.

# Bytes between the outer IPv4 header and the inner IPv4 packet: UDP length is the
# inner IPv4 length plus this, the outer IPv4 length 20 more.
VXLAN_OVERHEAD = 8 + 8 + 14  # UDP, VXLAN, inner Ethernet
GTPU_OVERHEAD = 8 + 8  # UDP, GTP-U
L4 = ("udp", "tcp", "icmp")


def _move(pairs: tuple[tuple[str, str], ...]) -> tuple:
    return tuple(CopyHeader(dst, src) for dst, src in pairs)


def _outer_ipv4(params: TunnelParams, overhead: int) -> tuple:
    """The outer IPv4 header: addresses from the NF, length from the inner packet."""
    fields = {
        "version": 4, "ihl": 5, "ecn": 0, "ident": 0, "flags": 2, "frag": 0, "ttl": 64, "proto": 17,
        "src": int(params.local), "dst": int(params.remote),
    }
    return (
        tuple(Assign(f"ipv4.{k}", Const(v, field_width(f"ipv4.{k}"))) for k, v in fields.items())
        + (
            Assign("ipv4.dscp", Ref("inner_ipv4.dscp")),  # keep the inner packet's class
            Assign("ipv4.len", BinOp("+", Ref("inner_ipv4.len"), Const(20 + overhead, 16))),
            UpdateChecksum("ipv4"),
        )
    )


def _encap(params: TunnelParams) -> tuple:
    vxlan = params.protocol == "vxlan"
    overhead = VXLAN_OVERHEAD if vxlan else GTPU_OVERHEAD
    moved = _move(tuple((f"inner_{h}", h) for h in ("ipv4",) + L4))
    body = (CopyHeader("inner_eth", "eth"),) if vxlan else ()
    body += moved + (SetInvalid("tcp"), SetInvalid("icmp"), SetValid("udp"))
    if vxlan:
        body += (
            Assign("inner_eth.type", Const(ETHER_TYPES["ipv4"], 16)),
            SetValid("vxlan"),
            Assign("vxlan.flags", Const(0x08, 8)),  # I flag: the VNI is valid
            Assign("vxlan.reserved", Const(0, 24)),
            Assign("vxlan.vni", Const(params.vni, 24)),
            Assign("vxlan.reserved2", Const(0, 8)),
            # RFC 7348: the source port carries entropy from the inner flow.
            Hash("udp.sport", (Ref("inner_ipv4.src"), Ref("inner_ipv4.dst"), Ref("inner_ipv4.proto")), 16384, 49152),
            Assign("udp.dport", Const(UDP_PORTS["vxlan"], 16)),
        )
    else:
        body += (
            SetValid("gtpu"),
            *(Assign(f"gtpu.{k}", Const(v, field_width(f"gtpu.{k}"))) for k, v in
              {"version": 1, "pt": 1, "spare": 0, "ext": 0, "seq_flag": 0, "npdu_flag": 0, "msg_type": 0xFF}.items()),
            Assign("gtpu.len", Ref("inner_ipv4.len")),
            Assign("gtpu.teid", Const(params.teid, 32)),
            Assign("udp.sport", Const(UDP_PORTS["gtpu"], 16)),
            Assign("udp.dport", Const(UDP_PORTS["gtpu"], 16)),
        )
    body += (
        Assign("udp.len", BinOp("+", Ref("inner_ipv4.len"), Const(overhead, 16))),
        Assign("udp.checksum", Const(0, 16)),  # RFC 7348 / TS 29.281: zero over IPv4
    ) + _outer_ipv4(params, overhead)
    # Only IPv4 packets are encapsulated; others continue unchanged.
    return (If(IsValid("ipv4"), body),)


def _set_type(value) -> tuple:
    """Point the header before the IP header (eth, or the VLAN tag / telemetry shim that
    follows it) at ``value``."""
    return (
        If(
            IsValid("mtel"),
            (Assign("mtel.type", value),),
            (If(IsValid("vlan"), (Assign("vlan.type", value),), (Assign("eth.type", value),)),),
        ),
    )


def _decap(params: TunnelParams) -> tuple:
    vxlan = params.protocol == "vxlan"
    tunnel = "vxlan" if vxlan else "gtpu"
    checks = [IsValid(tunnel), IsValid("ipv4")]
    if vxlan:
        checks += [IsValid("inner_eth"), BinOp("==", Ref("vxlan.flags"), Const(0x08, 8))]
        if params.vni is not None:
            checks.append(BinOp("==", Ref("vxlan.vni"), Const(params.vni, 24)))
    else:
        checks += [IsValid("inner_ipv4"), BinOp("==", Ref("inner_ipv4.version"), Const(4, 4))]
        if params.teid is not None:
            checks.append(BinOp("==", Ref("gtpu.teid"), Const(params.teid, 32)))
    if params.local is not None:
        checks.append(BinOp("==", Ref("ipv4.dst"), Const(int(params.local), 32)))
    if vxlan:
        # The inner frame replaces the outer one, keeping the outer VLAN tag and shim.
        body = (
            Assign("eth.dst", Ref("inner_eth.dst")),
            Assign("eth.src", Ref("inner_eth.src")),
        ) + _set_type(Ref("inner_eth.type"))
    else:
        body = _set_type(Const(ETHER_TYPES["ipv4"], 16))
    body += _move(tuple((h, f"inner_{h}") for h in ("ipv4",) + L4))
    body += (SetInvalid(tunnel), SetInvalid("inner_eth"), *(SetInvalid(f"inner_{h}") for h in ("ipv4",) + L4))
    # A packet that is not this tunnel's is not let through as if it were decapsulated.
    return (If(all_of(checks), body, (Drop(),)),)


def lower(nf, low) -> tuple:
    return _encap(nf.params) if nf.params.mode == "encap" else _decap(nf.params)


KIND = NfKind(
    name="tunnel",
    summary="VXLAN or GTP-U encap/decap with correct outer headers, lengths and checksums.",
    params=TunnelParams,
    check=_check,
    lower=lower,
)

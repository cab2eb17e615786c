"""tunnel: VXLAN or GTP-U encapsulation and decapsulation.

Lowering: encap pushes outer IPv4/UDP/(VXLAN|GTP-U) headers with correct lengths and
checksums from ``local`` to ``remote``; decap first checks that the packet is such a
tunnel packet (and, when given, that it carries this VNI/TEID) before removing them.
The inner packet's bytes, checksums included, are carried unchanged either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.checksums import header_checksum
from mantra6g.synth.compose import all_of, any_of, field_width, set_type_before
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Const,
    CopyHeader,
    Drop,
    Expr,
    Hash,
    If,
    IsValid,
    Ref,
    SetInvalid,
    SetValid,
)
from mantra6g.synth.headers import ETHER_TYPES, GTPU_PDU_SESSION, UDP_PORTS
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
    qfi: int | None = param(Int(0, 63), "GTP-U encap: add a PDU Session Container with this QoS flow id", default=None)
    pdu_type: str = param(Choice(("dl", "ul")), "GTP-U encap with qfi: downlink (a UPF's) or uplink (a gNB's)",
                          default="dl")


def _check(params: TunnelParams, rules: tuple, decl: ast.NfDecl, report: Reporter) -> None:
    ident, other = ("vni", "teid") if params.protocol == "vxlan" else ("teid", "vni")
    if getattr(params, other) is not None:
        report.error(
            param_span(decl, other),
            f"'{other}' does not apply to a {params.protocol} tunnel",
            f"a {params.protocol} tunnel is identified by '{ident}'",
        )
    if params.qfi is not None and (params.protocol, params.mode) != ("gtpu", "encap"):
        report.error(param_span(decl, "qfi"), "'qfi' applies to a gtpu encap tunnel only",
                     "a decap reads the QFI of what arrives: test gtpu_psc.qfi in a classifier or firewall")
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
# the inner_* instances and pushes new outer ones in their place, so NFs after an encap
# see (and route on) the outer headers; decapsulation moves inner_* back. The header
# stack holds one tunnel level: an encap drops a packet that already carries a parsed
# tunnel (its inner headers are in use).

# Bytes between the outer IPv4 header and the inner IPv4 packet: UDP length is the
# inner IPv4 length plus this, the outer IPv4 length 20 more.
VXLAN_OVERHEAD = 8 + 8 + 14  # UDP, VXLAN, inner Ethernet
GTPU_OVERHEAD = 8 + 8  # UDP, GTP-U
PSC_OVERHEAD = 4 + 4  # GTP-U optional fields, a PDU Session Container of one unit
PDU_TYPES = {"dl": 0, "ul": 1}
GTPU = ("gtpu", "gtpu_opt", "gtpu_psc")  # the GTP-U headers a decap removes
L4 = ("udp", "tcp", "icmp")
DF = 0b010  # IPv4 "don't fragment" flag
VXLAN_I_FLAG = 0x08  # RFC 7348: the VNI is valid; the other flag bits are ignored on receipt


def _move(pairs: tuple[tuple[str, str], ...]) -> tuple:
    return tuple(CopyHeader(dst, src) for dst, src in pairs)


def nests() -> Expr:
    """The packet already uses the inner header instances (a parsed VXLAN/GTP-U packet,
    or one an earlier NF encapsulated): it cannot be encapsulated again."""
    return any_of([IsValid(h) for h in ("vxlan", "gtpu", "inner_eth", "inner_ipv4")])


def push_outer_ipv4(src: Expr, dst: Expr, proto: int, overhead: int, df: Expr) -> tuple:
    """A fresh outer IPv4 header in front of the packet moved to ``inner_ipv4``: DSCP and
    ECN copied from the inner header (RFC 6040 normal mode), TTL 64, no options, the total
    length from the inner one (checked against the frame by the parser), checksum in full."""
    fixed = {"version": 4, "ihl": 5, "ident": 0, "frag": 0, "ttl": 64, "proto": proto}
    return (
        SetValid("ipv4"),
        *(Assign(f"ipv4.{k}", Const(v, field_width(f"ipv4.{k}"))) for k, v in fixed.items()),
        Assign("ipv4.dscp", Ref("inner_ipv4.dscp")),
        Assign("ipv4.ecn", Ref("inner_ipv4.ecn")),
        Assign("ipv4.flags", df),
        Assign("ipv4.len", BinOp("+", Ref("inner_ipv4.len"), Const(20 + overhead, 16))),
        Assign("ipv4.src", src),
        Assign("ipv4.dst", dst),
        header_checksum("ipv4"),
    )


def _encap(params: TunnelParams) -> tuple:
    vxlan = params.protocol == "vxlan"
    psc = params.qfi is not None
    overhead = VXLAN_OVERHEAD if vxlan else GTPU_OVERHEAD + PSC_OVERHEAD * psc
    moved = _move(tuple((f"inner_{h}", h) for h in ("ipv4",) + L4))
    body = (CopyHeader("inner_eth", "eth"),) if vxlan else ()
    body += moved + (SetInvalid("tcp"), SetInvalid("icmp"), SetValid("udp"))
    if vxlan:
        body += (
            Assign("inner_eth.type", Const(ETHER_TYPES["ipv4"], 16)),
            SetValid("vxlan"),
            Assign("vxlan.flags", Const(VXLAN_I_FLAG, 8)),
            Assign("vxlan.vni", Const(params.vni, 24)),
            # RFC 7348: the source port carries entropy from the inner flow.
            Hash("udp.sport", (Ref("inner_ipv4.src"), Ref("inner_ipv4.dst"), Ref("inner_ipv4.proto")), 16384, 49152),
            Assign("udp.dport", Const(UDP_PORTS["vxlan"], 16)),
        )
    else:
        body += (
            SetValid("gtpu"),
            *(Assign(f"gtpu.{k}", Const(v, field_width(f"gtpu.{k}"))) for k, v in
              {"version": 1, "pt": 1, "msg_type": 0xFF}.items()),
            Assign("gtpu.len", BinOp("+", Ref("inner_ipv4.len"), Const(PSC_OVERHEAD, 16)) if psc
                   else Ref("inner_ipv4.len")),
            Assign("gtpu.teid", Const(params.teid, 32)),
            Assign("udp.sport", Const(UDP_PORTS["gtpu"], 16)),
            Assign("udp.dport", Const(UDP_PORTS["gtpu"], 16)),
        )
        if psc:  # E flag, no sequence or N-PDU number, one PDU Session Container
            body += (
                Assign("gtpu.ext", Const(1, 1)),
                SetValid("gtpu_opt"),
                Assign("gtpu_opt.next_ext", Const(GTPU_PDU_SESSION, 8)),
                SetValid("gtpu_psc"),
                Assign("gtpu_psc.len", Const(1, 8)),
                Assign("gtpu_psc.pdu_type", Const(PDU_TYPES[params.pdu_type], 4)),
                Assign("gtpu_psc.qfi", Const(params.qfi, 6)),
            )
    body += (
        Assign("udp.len", BinOp("+", Ref("inner_ipv4.len"), Const(overhead, 16))),
        Assign("udp.checksum", Const(0, 16)),  # RFC 7348 / TS 29.281: zero over IPv4
    )
    body += push_outer_ipv4(Const(int(params.local), 32), Const(int(params.remote), 32), 17, overhead, Const(DF, 3))
    # Only IPv4 packets are encapsulated; others continue unchanged.
    return (If(IsValid("ipv4"), (If(nests(), (Drop(),), body),)),)


def _decap(params: TunnelParams) -> tuple:
    vxlan = params.protocol == "vxlan"
    tunnel = "vxlan" if vxlan else "gtpu"
    checks = [IsValid(tunnel), IsValid("ipv4")]
    if vxlan:
        flag = BinOp("&", Ref("vxlan.flags"), Const(VXLAN_I_FLAG, 8))
        checks += [IsValid("inner_eth"), BinOp("==", flag, Const(VXLAN_I_FLAG, 8))]
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
        ) + set_type_before("ip", Ref("inner_eth.type"))
    else:
        body = set_type_before("ip", Const(ETHER_TYPES["ipv4"], 16))
    body += _move(tuple((h, f"inner_{h}") for h in ("ipv4",) + L4))
    removed = ("vxlan",) if vxlan else GTPU
    body += (*map(SetInvalid, removed), SetInvalid("inner_eth"), *(SetInvalid(f"inner_{h}") for h in ("ipv4",) + L4))
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
    tunnels=lambda p: "push" if p.mode == "encap" else "pop",
)

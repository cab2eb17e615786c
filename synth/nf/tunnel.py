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


KIND = NfKind(
    name="tunnel",
    summary="VXLAN or GTP-U encap/decap with correct outer headers, lengths and checksums.",
    params=TunnelParams,
    check=_check,
)

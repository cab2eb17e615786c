"""load_balancer: a virtual IP spread over backends by consistent (Maglev) hashing.

Lowering: a hash of ``hash`` fields indexes a Maglev lookup table of ``table_size``
slots filled from the backends' permutations (weights give more slots). Adding a
backend moves only the flows whose slots change. The packet reaches the chosen backend
one of two ways, as real L4 load balancers do:

* ``mode: dsr`` (Katran's way): it is encapsulated in IPv4-in-IPv4 (RFC 2003) to the
  backend, which decapsulates it, answers from the VIP it holds on a loopback and
  returns straight to the client (direct server return). Nothing in the client's packet
  changes, so fragments and checksums need no care.
* ``mode: dnat``: the destination is rewritten to the backend, and on the way back a
  packet from a backend gets the VIP as its source again (stateless reverse NAT), so a
  TCP client sees its peer answer. Replies must cross this NF (route them through the
  device and let the classifier claim them). Fragments are dropped: their transport
  checksum (in the first fragment) cannot follow the rewrite.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address

from mantra6g.serde import tagged
from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.compose import all_of
from mantra6g.synth.dpir import (
    ActionCall,
    Apply,
    Assign,
    BinOp,
    Const,
    CopyHeader,
    Drop,
    Entry,
    Exact,
    Hash,
    If,
    IsValid,
    Ref,
    Register,
    RegisterRead,
    RegisterWrite,
    SetInvalid,
    TableKey,
)
from mantra6g.synth.nf.base import Choice, HeaderFields, Int, Ipv4, NfKind, head, is_prime, option, param, param_span, source_span
from mantra6g.synth.values import Reporter

DEFAULT_HASH = ("ipv4.src", "ipv4.dst", "ipv4.proto")
IPIP = 4  # IP protocol number of IPv4-in-IPv4 (RFC 2003)
MF = 0b001  # IPv4 "more fragments" flag


@tagged("load_balancer.params")
@dataclass(frozen=True)
class LoadBalancerParams:
    vip: IPv4Address = param(Ipv4(), "the virtual IP clients address")
    hash: tuple[str, ...] = param(HeaderFields(), "fields that identify a flow", default=DEFAULT_HASH)
    table_size: int = param(Int(2, 65521), "Maglev lookup-table size: a prime, well above the number of backends", default=251)
    mode: str = param(Choice(("dsr", "dnat")), "how packets reach a backend: IP-in-IP with direct server return, "
                      "or destination NAT with reverse NAT of the replies", default="dsr")
    source: IPv4Address | None = param(Ipv4(), "outer source address of the IP-in-IP packets (mode: dsr); "
                                       "default: the VIP", default=None)


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
    if len(rules) > MAX_BACKENDS:
        report.error(rules[MAX_BACKENDS].span, f"more than {MAX_BACKENDS} backends",
                     "the chosen backend is kept in 8 bits on every target; split the service over two VIPs")
    if params.source is not None and params.mode != "dsr":
        report.error(param_span(decl, "source"), "'source' only applies with mode: dsr",
                     "mode: dnat keeps the client's addresses")
    seen: dict[IPv4Address, Backend] = {}
    for b in rules:
        if b.address == params.vip:
            report.error(b.span, f"backend {b.address} is the VIP itself", "list the servers' real addresses")
        if b.address in seen:
            report.error(b.span, f"backend {b.address} is listed twice", "use 'weight N' to give it a larger share")
        seen.setdefault(b.address, b)




# ---------------------------------------------------------------- lowering

FLOW_SLOTS = 4096  # flow-affinity register: a flow keeps its backend while its slot does
MAX_BACKENDS = 255  # backend ids 1..255 (0: none yet) in an 8-bit register


def maglev_table(backends: tuple[Backend, ...], size: int) -> list[int]:
    """Maglev lookup table (Eisenbud et al., NSDI 2016): slot -> backend index.

    Each backend walks its own permutation of the slots (offset and skip from two
    CRC-32 hashes of its address) and claims the next free slot, ``weight`` times per
    round, until every slot is taken. Adding a backend moves few slots between the others.
    """
    perms = []
    for b in backends:
        key = b.address.packed
        offset = zlib.crc32(key) % size
        skip = zlib.crc32(key, 0x9E3779B9) % (size - 1) + 1
        perms.append((offset, skip))
    table = [-1] * size
    nxt = [0] * len(backends)
    filled = 0
    while True:
        for i, b in enumerate(backends):
            for _ in range(b.weight):
                offset, skip = perms[i]
                slot = (offset + nxt[i] * skip) % size
                while table[slot] >= 0:
                    nxt[i] += 1
                    slot = (offset + nxt[i] * skip) % size
                table[slot] = i
                nxt[i] += 1
                filled += 1
                if filled == size:
                    return table


def _hash_inputs(fields: tuple[str, ...]) -> tuple:
    """Hash inputs padded to whole bytes, as DP-IR's Hash requires."""
    from mantra6g.synth.compose import field_width

    bits = sum(field_width(f) for f in fields)
    pad = (-bits) % 8
    return ((Const(0, pad),) if pad else ()) + tuple(Ref(f) for f in fields)


def lower(nf, low) -> tuple:
    """VIP traffic: a flow's slot in the affinity register remembers its backend; a new
    flow takes the backend of its Maglev slot. Then IP-in-IP to it (``dsr``), or DNAT to
    it with reverse NAT of the replies (``dnat``)."""
    from mantra6g.synth.nf.tunnel import DF, nests, push_outer_ipv4

    p = nf.params
    slot = low.meta("slot", 16)
    flow = low.meta("flow", 12)
    backend, chosen = low.meta("backend", 8), low.meta("chosen", 8)
    flows = low.name("flows")
    low.registers.append(Register(flows, 8, FLOW_SLOTS))
    pick = low.action("pick", params=(("id", 8),), body=(Assign(chosen, Ref("param.id")),))
    none = low.action("no_backend", body=(Drop(),))
    unpicked = low.action("no_slot", body=(Assign(chosen, Const(0, 8)),))
    table = maglev_table(nf.rules, p.table_size)
    maglev = low.table(
        "maglev",
        keys=(TableKey(slot, "exact"),),
        actions=(pick, unpicked),
        default=ActionCall(unpicked),
        size=p.table_size,
        entries=tuple(Entry((Exact(s),), ActionCall(pick, (i + 1,))) for s, i in enumerate(table)),
    )
    vip = Const(int(p.vip), 32)
    if p.mode == "dsr":
        source = Const(int(p.source if p.source is not None else p.vip), 32)
        df = BinOp("&", Ref("inner_ipv4.flags"), Const(DF, 3))  # RFC 2003 §3.1: DF copied
        to = low.action(
            "to_backend",
            params=(("address", 32),),
            body=(
                *(CopyHeader(f"inner_{h}", h) for h in ("ipv4", "udp", "tcp", "icmp")),
                *(SetInvalid(h) for h in ("udp", "tcp", "icmp")),
                *push_outer_ipv4(source, Ref("param.address"), IPIP, 0, df),
            ),
        )
    else:
        to = low.action("dnat", params=(("address", 32),), body=(Assign("ipv4.dst", Ref("param.address")),))
    backends = low.table(
        "backends",
        keys=(TableKey(backend, "exact"),),
        actions=(to, none),
        default=ActionCall(none),
        size=max(16, len(nf.rules)),
        entries=tuple(Entry((Exact(i + 1),), ActionCall(to, (int(b.address),))) for i, b in enumerate(nf.rules)),
    )
    # Hash the configured fields when the packet has their headers, else its IPv4 ones
    # (so every fragment of a datagram, which carries no parsed transport header, hashes
    # alike). Only the hashing branches: each table is applied once (P4 requires it).
    headers = sorted({f.partition(".")[0] for f in p.hash} - {"ipv4"})
    ip_only = tuple(f for f in p.hash if f.startswith("ipv4.")) or ("ipv4.src", "ipv4.dst")

    def hashed(target: str, size: int) -> tuple:
        full = (Hash(target, _hash_inputs(p.hash), size),)
        if not headers:
            return full
        return (If(all_of([IsValid(h) for h in headers]), full, (Hash(target, _hash_inputs(ip_only), size),)),)

    # The Maglev slot is looked up for every packet, before the affinity slot is read,
    # so that the slot is read and (for a new flow) written in one access, as a switch
    # ALU must (Tofino: one RegisterAction per register per packet). Its backend 0 (no
    # slot) sends the packet to no backend (the `backends` table drops it).
    new_flow = BinOp("==", Ref(backend), Const(0, 8))
    hashing = (
        *hashed(slot, p.table_size),
        Apply(maglev),
        # apart from the slot's hash: two 32-bit hashes are more than one Tofino action takes
        *hashed(flow, FLOW_SLOTS),
        RegisterRead(backend, flows, Ref(flow)),
        If(new_flow, (RegisterWrite(flows, Ref(flow), Ref(chosen)), Assign(backend, Ref(chosen)))),
    )
    to_vip = BinOp("&&", IsValid("ipv4"), BinOp("==", Ref("ipv4.dst"), vip))
    if p.mode == "dsr":
        # One tunnel level: a packet already carrying one cannot be wrapped again.
        return (If(to_vip, (If(nests(), (Drop(),), (*hashing, Apply(backends))),)),)
    snat = low.action("from_vip", body=(Assign("ipv4.src", vip),))
    replies = low.table(
        "replies",
        keys=(TableKey("ipv4.src", "exact"),),
        actions=(snat, low.action("not_a_reply")),
        default=ActionCall(low.name("not_a_reply")),
        size=max(16, len(nf.rules)),
        entries=tuple(Entry((Exact(int(b.address)),), ActionCall(snat)) for b in dict.fromkeys(nf.rules)),
    )
    fragment = BinOp("||", BinOp("!=", BinOp("&", Ref("ipv4.flags"), Const(MF, 3)), Const(0, 3)),
                     BinOp("!=", Ref("ipv4.frag"), Const(0, 13)))
    # A rewrite would leave a fragmented datagram's transport checksum (in its first
    # fragment) stale, so fragments are dropped both ways.
    return (
        If(
            IsValid("ipv4"),
            (
                If(
                    BinOp("==", Ref("ipv4.dst"), vip),
                    (If(fragment, (Drop(),), (*hashing, Apply(backends))),),
                    (Apply(replies, on_hit=(If(fragment, (Drop(),)),)),),
                ),
            ),
        ),
    )


KIND = NfKind(
    name="load_balancer",
    summary="Consistent (Maglev) hashing of flows to backends with DNAT; flows keep their backend.",
    params=LoadBalancerParams,
    rules={"backend": Backend},
    min_rules=1,
    check=_check,
    lower=lower,
    tunnels=lambda p: "push" if p.mode == "dsr" else None,
)

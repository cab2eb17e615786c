"""Chain composition: ServiceGraph IR to one DP-IR program per device.

* **Split**: NFs are grouped by their placement (device class and site). An NF without
  a ``place`` runs where its nearest placed predecessor (else successor) runs; a graph
  with no placements at all is one program. The classifier is replicated into every
  program of its graph, since each device must recognise the slice's traffic itself.
* **Parser**: every program shares one standard parser (below), so programs of
  different graphs on one device compose and the verifier sees one shape.
* **Control**: the graphs on a device are classified in order of classifier priority
  (the first match sets ``meta.tenant``/``meta.slice``, later ones see it taken). Each
  graph's NFs then run in topological order, each guarded by a one-bit *visit* flag
  that its predecessors set when they pass the packet on (taking the first
  conditional edge that matches, else the unconditional one). Every table is thereby
  applied exactly once, which the P4 compilers require.
* **Egress**: a packet that reaches the end of its chain without an NF choosing a port
  (routers and l2_forward do: their kind ``forwards``) leaves through the port it came in on; a packet no classifier
  claims is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from ipaddress import IPv4Address, IPv6Address

from mantra6g.errors import MantraError
from mantra6g.source import shorten
from mantra6g.synth import dpir, expr as sx
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Cast,
    Const,
    Expr,
    Forward,
    HeaderInstance,
    If,
    IsValid,
    ParserCase,
    ParserState,
    Program,
    Ref,
    SetInvalid,
    SetValid,
    Stmt,
    UnOp,
)
from mantra6g.synth.dpir_check import validate
from mantra6g.synth.expr import render
from mantra6g.synth.headers import ETHER_TYPES, GTPU_PDU_SESSION, IP_PROTOCOLS, UDP_PORTS, lookup_field
from mantra6g.synth.ir import NfInstance, ServiceGraph, ServiceSpec
from mantra6g.synth.values import MacAddress

# ---------------------------------------------------------------- the standard parser

HEADER_INSTANCES = (
    HeaderInstance("eth", "eth"),
    HeaderInstance("vlan", "vlan"),
    HeaderInstance("chain", "chain"),
    HeaderInstance("mtel", "mtel"),
    HeaderInstance("ipv4", "ipv4"),
    HeaderInstance("ipv6", "ipv6"),
    HeaderInstance("udp", "udp"),
    HeaderInstance("tcp", "tcp"),
    HeaderInstance("icmp", "icmp"),
    HeaderInstance("vxlan", "vxlan"),
    HeaderInstance("gtpu", "gtpu"),
    HeaderInstance("gtpu_opt", "gtpu_opt"),
    HeaderInstance("gtpu_psc", "gtpu_psc"),
    HeaderInstance("inner_eth", "eth"),
    HeaderInstance("inner_ipv4", "ipv4"),
    HeaderInstance("inner_udp", "udp"),
    HeaderInstance("inner_tcp", "tcp"),
    HeaderInstance("inner_icmp", "icmp"),
)
DEPARSE = tuple(h.name for h in HEADER_INSTANCES)


def _l3(*more: ParserCase) -> tuple[ParserCase, ...]:
    return more + (
        ParserCase((ETHER_TYPES["ipv4"],), "ipv4"),
        ParserCase((ETHER_TYPES["ipv6"],), "ipv6"),
    )


MF = 0b001  # IPv4 "more fragments" flag


def _ipv4_cases(prefix: str) -> tuple[ParserCase, ...]:
    """Select on (version, ihl, flags, fragment offset, protocol): only an option-less,
    unfragmented IPv4 packet (no MF flag, offset 0) has a transport header to parse; with
    options or as a fragment it is accepted with the rest as payload."""
    return tuple(
        ParserCase((4, 5, 0, 0, IP_PROTOCOLS[name]), f"{prefix}{name}", (0xF, 0xF, MF, 0x1FFF, 0xFF))
        for name in ("udp", "tcp", "icmp")
    )


# Where a packet carries a transport header that the standard parser leaves unread:
# IPv4 with options or as a fragment (its protocol field names the transport), and IPv6
# whose next header is an extension header (IANA's "IPv6 Extension Header Types" less
# ESP, whose payload is encrypted: 0, 43-44, 51, 60, 135, 139-140, 253-254, as ranges).
# For each transport: (the IP header, its field, the values that say the transport may
# follow). VXLAN and GTP-U ride in UDP, so they are unread wherever UDP is.
IPV6_EXTENSION_HEADERS = ((0, 0), (43, 44), (51, 51), (60, 60), (135, 135), (139, 140), (253, 254))
UNREAD_TRANSPORT: dict[str, tuple[tuple[str, str, tuple[tuple[int, int], ...]], ...]] = {
    "tcp": (("ipv4", "ipv4.proto", ((6, 6),)), ("ipv6", "ipv6.next_header", IPV6_EXTENSION_HEADERS)),
    "udp": (("ipv4", "ipv4.proto", ((17, 17),)), ("ipv6", "ipv6.next_header", IPV6_EXTENSION_HEADERS)),
    "icmp": (("ipv4", "ipv4.proto", ((1, 1),)),),
}
CARRIED_IN = {"tcp": "tcp", "udp": "udp", "icmp": "icmp"} | {h: "udp" for h in ("vxlan", "gtpu", "gtpu_opt", "gtpu_psc")}


def bytes_before(prefix: str) -> Expr:
    """How many bytes precede the IPv4 header ``<prefix>ipv4`` in the packet as parsed:
    Ethernet, an optional VLAN tag, chain shim and telemetry shim, and for the inner header the outer
    IPv4 (no options: else nothing inner is parsed) or IPv6, UDP and the VXLAN (with inner
    Ethernet) or GTP-U header."""
    def sized(h: str, n: int) -> Expr:
        # n * valid(h), without a multiply: the sum of the valid bit shifted to n's set bits.
        bit = Cast(IsValid(h), 16)
        terms = [BinOp("<<", bit, Const(i, 4)) if i else bit for i in range(16) if n >> i & 1]
        out = terms[0]
        for t in terms[1:]:
            out = BinOp("+", out, t)
        return out

    total: Expr = Const(14, 16)
    parts = [("vlan", 4), ("chain", 8), ("mtel", 12)]
    if prefix:
        parts += [("ipv4", 20), ("ipv6", 40), ("udp", 8), ("vxlan", 8), ("inner_eth", 14), ("gtpu", 8),
                  ("gtpu_opt", 4), ("gtpu_psc", 4)]
    for h, n in parts:
        total = BinOp("+", total, sized(h, n))
    return total


def _ipv4_verify(h: str, prefix: str, any_version: bool = False) -> Expr:
    """RFC 1812 §5.2.2: version 4, a header of at least 5 words, a total length that covers
    the header (ihl * 4 bytes) and does not exceed the bytes that arrived; a packet failing
    it is dropped. Trailing bytes beyond the total length (Ethernet padding) are allowed
    and kept. With ``any_version`` only an IPv4 header (version 4) is held to it (a G-PDU
    may carry IPv6)."""
    header = BinOp("<<", Cast(Ref(f"{h}.ihl"), 16), Const(2, 2))
    # No underflow: the parser extracted this header, so the packet holds what precedes it.
    arrived = BinOp("-", Ref("std.pkt_len"), bytes_before(prefix))
    ok = all_of([
        BinOp("==", Ref(f"{h}.version"), Const(4, 4)),
        BinOp(">=", Ref(f"{h}.ihl"), Const(5, 4)),
        BinOp(">=", Ref(f"{h}.len"), header),
        BinOp("<=", Ref(f"{h}.len"), arrived),
    ])
    return BinOp("||", BinOp("!=", Ref(f"{h}.version"), Const(4, 4)), ok) if any_version else ok


def standard_parser() -> tuple[ParserState, ...]:
    """Ethernet, an optional 802.1Q tag, chain shim and telemetry shim, IPv4 (version 4 and IHL >= 5,
    else the packet is dropped; total length checked) or IPv6, then UDP/TCP/ICMP when the
    IPv4 packet has no options and is not a fragment; VXLAN (UDP 4789) with its inner
    Ethernet and, for an inner EtherType of IPv4, the inner IPv4 header (held to the same
    rules), or a GTP-U G-PDU (UDP 2152: plain, with optional fields, or with one PDU
    Session Container as its extension headers) with its inner IP packet's first 20 bytes
    (an IPv4 header if its version is 4, held to the rules then; else payload), and their
    transport headers. Nothing deeper (a tunnel in the tunnel) is parsed."""
    shim = lambda h: ParserCase((ETHER_TYPES[h],), h)  # noqa: E731
    ip_select = lambda h: (Ref(f"{h}.version"), Ref(f"{h}.ihl"), Ref(f"{h}.flags"), Ref(f"{h}.frag"), Ref(f"{h}.proto"))  # noqa: E731
    return (
        ParserState(
            "start",
            ("eth",),
            (Ref("eth.type"),),
            _l3(shim("vlan"), shim("chain"), shim("mtel")),
        ),
        ParserState("vlan", ("vlan",), (Ref("vlan.type"),), _l3(shim("chain"), shim("mtel"))),
        ParserState("chain", ("chain",), (Ref("chain.type"),), _l3(shim("mtel"))),
        ParserState("mtel", ("mtel",), (Ref("mtel.type"),), _l3()),
        ParserState("ipv4", ("ipv4",), ip_select("ipv4"), _ipv4_cases(""), verify=_ipv4_verify("ipv4", "")),
        ParserState(
            "ipv6",
            ("ipv6",),
            (Ref("ipv6.next_header"),),
            (ParserCase((IP_PROTOCOLS["udp"],), "udp"), ParserCase((IP_PROTOCOLS["tcp"],), "tcp")),
        ),
        ParserState(
            "udp",
            ("udp",),
            (Ref("udp.dport"),),
            (ParserCase((UDP_PORTS["vxlan"],), "vxlan"), ParserCase((UDP_PORTS["gtpu"],), "gtpu")),
        ),
        ParserState("tcp", ("tcp",)),
        ParserState("icmp", ("icmp",)),
        ParserState("vxlan", ("vxlan", "inner_eth"), (Ref("inner_eth.type"),), (ParserCase((ETHER_TYPES["ipv4"],), "inner_ipv4"),)),
        # G-PDUs (version 1) carry an IP packet we parse: plain ones, ones with optional
        # fields (S or PN flag) and, with the E flag, ones whose extension headers are
        # one PDU Session Container (TS 29.281 §5.1-5.2, TS 38.415); other extension
        # headers leave the inner packet unparsed.
        ParserState(
            "gtpu",
            ("gtpu",),
            (Ref("gtpu.version"), Ref("gtpu.ext"), Ref("gtpu.seq_flag"), Ref("gtpu.npdu_flag"), Ref("gtpu.msg_type")),
            (
                ParserCase((1, 0, 0, 0, 0xFF), "gpdu_ip"),
                ParserCase((1, 1, 0, 0, 0xFF), "gtpu_ext", (0x7, 1, 0, 0, 0xFF)),
                ParserCase((1, 0, 0, 0, 0xFF), "gtpu_opt", (0x7, 1, 0, 0, 0xFF)),
            ),
        ),
        ParserState("gtpu_opt", ("gtpu_opt",), default="gpdu_ip"),  # next_ext is read only with E
        ParserState(
            "gtpu_ext",
            ("gtpu_opt",),
            (Ref("gtpu_opt.next_ext"),),
            (ParserCase((0,), "gpdu_ip"), ParserCase((GTPU_PDU_SESSION,), "gtpu_psc")),
        ),
        ParserState(
            "gtpu_psc",
            ("gtpu_psc",),
            (Ref("gtpu_psc.len"), Ref("gtpu_psc.next_ext")),
            (ParserCase((1, 0), "gpdu_ip"),),
        ),
        ParserState("inner_ipv4", ("inner_ipv4",), ip_select("inner_ipv4"), _ipv4_cases("inner_"),
                    verify=_ipv4_verify("inner_ipv4", "inner_")),
        # A G-PDU may carry IPv6: its first 20 bytes land in inner_ipv4, unchecked.
        ParserState("gpdu_ip", ("inner_ipv4",), ip_select("inner_ipv4"), _ipv4_cases("inner_"),
                    verify=_ipv4_verify("inner_ipv4", "inner_", any_version=True)),
        ParserState("inner_udp", ("inner_udp",)),
        ParserState("inner_tcp", ("inner_tcp",)),
        ParserState("inner_icmp", ("inner_icmp",)),
    )


# ---------------------------------------------------------------- expressions


def literal(value) -> int:
    if isinstance(value, (IPv4Address, IPv6Address)):
        return int(value)
    if isinstance(value, MacAddress):
        return value.value
    return int(value)


def field_width(path: str) -> int:
    f = lookup_field(path)
    assert f is not None, path
    return f.width


def all_of(terms: list[Expr]) -> Expr:
    """The conjunction of ``terms`` (at least one)."""
    return _balanced("&&", terms)


def any_of(terms: list[Expr]) -> Expr:
    """The disjunction of ``terms`` (at least one)."""
    return _balanced("||", terms)


def _balanced(op: str, terms: list[Expr]) -> Expr:
    """``terms`` joined by the associative ``op`` as a balanced tree: 5000 or'ed tests
    are 13 levels deep, not 5000, for every pass that walks DP-IR recursively. Up to three
    terms the tree is the left-nested one, ``(a op b) op c``."""
    level = list(terms)
    while len(level) > 1:
        pairs = [BinOp(op, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + level[2 * len(pairs) :]  # an odd one out joins the next level
    return level[0]


# Every pass over DP-IR (checks, emitters, JSON, the interpreter, the Z3 encoding) walks
# expressions recursively, at two or three Python frames per level: a condition deeper
# than this would overflow Python's stack in one of them.
MAX_CONDITION_DEPTH = 128


class ConditionTooDeep(MantraError):
    """A match expression whose and/or groups nest too deeply once lowered."""


def condition(e: sx.Expr) -> Expr:
    """A match expression as a DP-IR condition. A test on a header the packet does not
    carry is false, so each field test is guarded by that header's validity.

    Source nesting is bounded by the parser; many tests in every one of many nested
    groups can still lower to a deep tree, which is refused (:data:`MAX_CONDITION_DEPTH`)."""
    c = _condition(e)
    depth = expr_depth(c)
    if depth > MAX_CONDITION_DEPTH:
        raise ConditionTooDeep(
            f"the condition '{shorten(render(e), 80)}' is too large to compile: it lowers to {depth} nested "
            f"levels of and/or, more than {MAX_CONDITION_DEPTH}; split it into several rules or branches")
    return c


def expr_depth(e: Expr) -> int:
    """How deeply a DP-IR expression nests (a leaf is 1), without recursion."""
    deepest, todo = 0, [(e, 1)]
    while todo:
        x, d = todo.pop()
        deepest = max(deepest, d)
        todo += [(c, d + 1) for c in (getattr(x, "left", None), getattr(x, "right", None), getattr(x, "operand", None)) if c is not None]
    return deepest


def _condition(e: sx.Expr) -> Expr:
    if isinstance(e, sx.AllOf):
        return all_of([_condition(t) for t in e.terms])
    if isinstance(e, sx.AnyOf):
        return any_of([_condition(t) for t in e.terms])
    if isinstance(e, sx.Not):
        return UnOp("!", _condition(e.term))
    header = e.field.partition(".")[0]
    w = field_width(e.field)
    ref = Ref(e.field)
    if isinstance(e, sx.Compare):
        test: Expr = BinOp(e.op, ref, Const(literal(e.value), w))
    elif isinstance(e, sx.InPrefix):
        mask = ((1 << e.prefix.prefixlen) - 1) << (w - e.prefix.prefixlen)
        test = BinOp("==", BinOp("&", ref, Const(mask, w)), Const(int(e.prefix.network_address), w))
    elif isinstance(e, sx.InRange):
        test = BinOp("&&", BinOp(">=", ref, Const(e.low, w)), BinOp("<=", ref, Const(e.high, w)))
    else:
        test = any_of([BinOp("==", ref, Const(literal(v), w)) for v in e.values])
    return BinOp("&&", IsValid(header), test)


# ---------------------------------------------------------------- rules as table entries


@dataclass(frozen=True)
class _Span:
    """The values a conjunction allows for one field: an inclusive range and, when it
    is exactly a prefix or a single value, the (value, mask) a ternary key can hold."""

    low: int
    high: int


def conjunctions(e: sx.Expr) -> list[list[sx.FieldTest]]:
    """Disjunctive normal form of a negation-free expression (``or`` and ``in [..]``
    split into alternatives)."""
    if isinstance(e, sx.AnyOf):
        return [c for t in e.terms for c in conjunctions(t)]
    if isinstance(e, sx.AllOf):
        out: list[list[sx.FieldTest]] = [[]]
        for t in e.terms:
            out = [a + b for a in out for b in conjunctions(t)]
        return out
    if isinstance(e, sx.InSet):
        return [[sx.Compare(e.field, "==", v)] for v in e.values]
    assert not isinstance(e, sx.Not), "negations are rejected by the checker for table rules"
    return [[e]]


def _span_of(t: sx.FieldTest, w: int) -> _Span:
    top = (1 << w) - 1
    if isinstance(t, sx.InPrefix):
        net = int(t.prefix.network_address)
        return _Span(net, net | (top >> t.prefix.prefixlen))
    if isinstance(t, sx.InRange):
        return _Span(t.low, t.high)
    v = literal(t.value)
    return {
        "==": _Span(v, v),
        "<": _Span(0, v - 1),
        "<=": _Span(0, v),
        ">": _Span(v + 1, top),
        ">=": _Span(v, top),
    }[t.op]


def _as_ternary(s: _Span, w: int) -> dpir.Ternary | None:
    """(value, mask) when the range is an aligned power-of-two block, else None."""
    size = s.high - s.low + 1
    if size & (size - 1) or s.low % size:
        return None
    return dpir.Ternary(s.low, ((1 << w) - 1) ^ (size - 1))


def unread_alternatives(conj: list[sx.FieldTest]) -> list[tuple[list[sx.FieldTest], str]]:
    """The packets on which ``conj`` cannot be decided because the transport header it
    tests was left unread (:data:`UNREAD_TRANSPORT`), as alternatives (``conj``'s tests
    on the headers the parser did read plus a test that the transport may follow the IP
    header; the transport header, which is invalid). None when ``conj`` tests no
    transport or tunnel field, or tests the other IP version's header."""
    behind = {t.field.partition(".")[0] for t in conj} & CARRIED_IN.keys()
    transports = {CARRIED_IN[h] for h in behind}
    if len(transports) != 1:
        return []  # nothing behind the IP header, or two transports (it matches nothing)
    (transport,) = transports
    read = [t for t in conj if t.field.partition(".")[0] not in behind]
    ips = {t.field.partition(".")[0] for t in read} & {"ipv4", "ipv6"}
    return [
        (read + [sx.InRange(field, low, high)], transport)
        for ip, field, spans in UNREAD_TRANSPORT[transport]
        if not ips - {ip}
        for low, high in spans
    ]


def rule_table(
    rules: list[tuple[sx.Expr, dpir.ActionCall, bool]],
) -> tuple[tuple[dpir.TableKey, ...], list[dpir.Entry]]:
    """Keys and prioritised entries of a first-match rule list (firewall-style).

    Each field any rule tests is a key — ``ternary`` when every test on it is a value or
    a prefix, ``range`` otherwise — preceded by the validity of each header involved.
    Earlier rules get higher priorities; a rule with ``or`` becomes several entries. A
    rule flagged ``fail_closed`` (the third element) also matches the packets whose
    transport header it tests the parser left unread, when its other tests hold
    (:func:`unread_alternatives`): a firewall's deny then sees TCP behind IPv4 options.
    An entry that matches what an earlier one matches is left out (it never wins): the
    deny rules ``tcp.dport == 22`` and ``tcp.dport == 23`` share their fail-closed entries.
    """
    # Each alternative: (its tests, the headers that must be invalid) and its rule.
    alternatives: list[tuple[int, list[sx.FieldTest], frozenset[str], dpir.ActionCall]] = []
    for rank, (e, action, fail_closed) in enumerate(rules):
        for conj in conjunctions(e):
            alternatives.append((rank, conj, frozenset(), action))
            if fail_closed:
                for tests, transport in unread_alternatives(conj):
                    alternatives.append((rank, tests, frozenset({transport}), action))
    fields: list[str] = []
    ranged: set[str] = set()
    for _, conj, _, _ in alternatives:
        for t in conj:
            if t.field not in fields:
                fields.append(t.field)
            if _as_ternary(_span_of(t, field_width(t.field)), field_width(t.field)) is None:
                ranged.add(t.field)
    unread = [h for _, _, invalid, _ in alternatives for h in invalid]
    headers = list(dict.fromkeys([f.partition(".")[0] for f in fields] + unread))
    keys = tuple(dpir.TableKey(f"{h}.$valid", "ternary") for h in headers) + tuple(
        dpir.TableKey(f, "range" if f in ranged else "ternary") for f in fields
    )
    entries: list[dpir.Entry] = []
    seen: set[tuple[dpir.KeyMatch, ...]] = set()
    for rank, conj, invalid, action in alternatives:
        spans: dict[str, _Span] = {}
        empty = False
        for t in conj:
            w = field_width(t.field)
            s = _span_of(t, w)
            if t.field in spans:
                s = _Span(max(s.low, spans[t.field].low), min(s.high, spans[t.field].high))
            empty |= s.low > s.high
            spans[t.field] = s
        if empty:
            continue  # the conjunction matches nothing
        used = {f.partition(".")[0] for f in spans}
        matches: list[dpir.KeyMatch] = [
            dpir.Ternary(0, 1) if h in invalid else dpir.Ternary(1, 1) if h in used else dpir.Ternary(0, 0)
            for h in headers
        ]
        for f in fields:
            w = field_width(f)
            s = spans.get(f, _Span(0, (1 << w) - 1))
            if f in ranged:
                matches.append(dpir.Range(s.low, s.high))
            else:
                matches.append(_as_ternary(s, w) if f in spans else dpir.Ternary(0, 0))
        if tuple(matches) in seen:
            continue  # an earlier entry matches the same packets: this one never wins
        seen.add(tuple(matches))
        entries.append(dpir.Entry(tuple(matches), action, len(rules) - rank))
    return keys, entries


# ---------------------------------------------------------------- building a program


@dataclass
class Lowering:
    """The program being built for one device; NF lowerings add their pieces here
    under names prefixed with their graph and NF (``motion_control_fw_acl``)."""

    graph: ServiceGraph
    nf: NfInstance | None = None
    metadata: list[dpir.MetaField] = field(default_factory=list)
    actions: list[dpir.Action] = field(default_factory=list)
    tables: list[dpir.Table] = field(default_factory=list)
    registers: list[dpir.Register] = field(default_factory=list)
    counters: list[dpir.Counter] = field(default_factory=list)
    meters: list[dpir.Meter] = field(default_factory=list)

    def name(self, local: str) -> str:
        return f"{self.graph.name}_{self.nf.name}_{local}" if self.nf else f"{self.graph.name}_{local}"

    def meta(self, local: str, width: int) -> str:
        """Declare (once) and return a metadata field of the current NF."""
        name = self.name(local)
        if all(m.name != name for m in self.metadata):
            self.metadata.append(dpir.MetaField(name, width))
        return f"meta.{name}"

    def shared_meta(self, name: str, width: int) -> str:
        if all(m.name != name for m in self.metadata):
            self.metadata.append(dpir.MetaField(name, width))
        return f"meta.{name}"

    def action(self, local: str, params=(), body=()) -> str:
        a = dpir.Action(self.name(local), tuple(dpir.ActionParam(n, w) for n, w in params), tuple(body))
        self.actions.append(a)
        return a.name

    def table(self, local: str, **kw) -> str:
        t = dpir.Table(self.name(local), **kw)
        self.tables.append(t)
        return t.name


@dataclass(frozen=True)
class DeviceProgram:
    """One device's program and what it carries. With several tenants, ``program`` is
    their merge (:func:`mantra6g.synth.merge.merge`): what ``mantra verify`` proves is
    what every target emits."""

    device: str  # "pdp" | "smartnic" | "host" | "any"
    site: str | None
    program: Program
    graphs: tuple[str, ...]
    nfs: tuple[str, ...]  # "graph.nf" for every NF placed here (classifiers included)
    merged: Any = field(default=None, compare=False)  # the MergedProgram (its tenants, names)
    # (name prefix, what, where) of each NF here: the tables, registers and metadata its
    # lowering declares start with the prefix (Lowering.name; a merge adds "tenant__")
    origins: tuple[tuple[str, str, Any], ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        return self.program.name

    def origin_of(self, message: str) -> str:
        """Where the names ``message`` quotes come from, as ``= note:`` lines to append
        ("" when it quotes none of the NFs' names): a target's refusal of a register or
        table points at the NF in the user's file."""
        found = []
        for quoted in re.findall(r"'(\w+)'", message):
            hits = [o for o in self.origins if quoted.startswith(o[0])]
            if hits:
                prefix, what, span = max(hits, key=lambda o: len(o[0]))
                clause = f"'{quoted}' belongs to {what}" + (f" ({span})" if span is not None else "")
                if clause not in found:
                    found.append(clause)
        return "".join(f"\n  = note: {c}" for c in found)

    @property
    def tenants(self) -> tuple:
        """Each tenant's program alone for this device (:class:`~mantra6g.synth.merge.TenantProgram`)."""
        return self.merged.tenants


TENANT, SLICE = "meta.tenant", "meta.slice"


def _device_of(g: ServiceGraph) -> dict[str, tuple[str, str | None]]:
    """Where each NF of ``g`` runs (classifier excluded)."""
    placed = {n.name: (n.placement.device.value, n.placement.site) for n in g.nfs if n.placement is not None}
    if not placed:
        return {n.name: ("any", None) for n in g.nfs if n.kind != "classifier"}
    order = g.topological_order()
    where: dict[str, tuple[str, str | None]] = {}
    for name in order:
        if g.nf(name).kind == "classifier":
            continue
        if name in placed:
            where[name] = placed[name]
            continue
        preds = [p for p in _all_upstream_in_order(g, name, order) if p in where]
        if preds:
            where[name] = where[preds[-1]]
    for name in reversed(order):  # no placed predecessor: follow the next placed NF
        if g.nf(name).kind == "classifier" or name in where:
            continue
        nxt = next((e.dst for e in g.successors(name) if e.dst in where), None)
        where[name] = where[nxt] if nxt else next(iter(placed.values()))
    return where


def graph_numbers(specs: list[ServiceSpec] | tuple[ServiceSpec, ...]) -> dict[str, int]:
    """The number each graph's chain shim carries between devices: its place in the
    site, from 1 (graph names are unique in a site; every device is compiled from it)."""
    return {g.name: i for i, g in enumerate((g for spec in specs for g in spec.graphs), start=1)}


def _position(g: ServiceGraph, name: str) -> int:
    """The NF's place in its graph's declaration, from 1: the shim's ``resume``."""
    return [n.name for n in g.nfs].index(name) + 1


def _starts(g: ServiceGraph, local: set[str]) -> bool:
    """Whether the graph's classifier claims packets here: an NF right after it runs here."""
    return any(e.dst in local for e in g.successors(g.entry))


def resumes(g: ServiceGraph, local: set[str]) -> list[str]:
    """The NFs here at which the chain resumes after another device: those with a
    predecessor elsewhere (the classifier counts as elsewhere when another device claims
    by it), in topological order."""
    others_classify = any(e.dst not in local for e in g.successors(g.entry))
    return [n for n in g.topological_order() if n in local and any(
        (p != g.entry and p not in local) or (p == g.entry and others_classify) for p in g.predecessors(n))]


def resumed_at(g: ServiceGraph, name: str, number: int) -> Expr:
    """The packets whose chain shim says: graph ``g`` (number ``number``), resume at ``name``."""
    return all_of([IsValid("chain"), BinOp("==", Ref("chain.tenant"), Const(g.tenant_id, 16)),
                   BinOp("==", Ref("chain.graph"), Const(number, 16)),
                   BinOp("==", Ref("chain.resume"), Const(_position(g, name), 16))])


def resumed_here(members: list[tuple[ServiceGraph, set[str]]], numbers: dict[str, int]) -> Expr | None:
    """The packets some graph resumes on the device of ``members`` (every tenant's), or
    None where none resumes: those are taken by their shims, never by a classifier."""
    terms = [resumed_at(g, n, numbers[g.name]) for g, local in members for n in resumes(g, local)]
    return any_of(terms) if terms else None


def claim_condition(g: ServiceGraph, local: set[str], number: int, resumed: Expr | None) -> Expr:
    """The packets the graph takes on a device running its ``local`` NFs: the shims
    handed over to each NF where it resumes here, and (if the chain starts here) what its
    classifier matches among the others (``resumed``: :func:`resumed_here`). A frame with
    a shim no graph here resumes is classified like any other, its shim left in place."""
    terms = [resumed_at(g, n, number) for n in resumes(g, local)]
    if _starts(g, local):
        terms.append(classified(g, resumed))
    return any_of(terms)


def classified(g: ServiceGraph, resumed: Expr | None) -> Expr:
    """The packets ``g``'s classifier claims on a device where ``resumed`` are the frames
    some graph resumes (:func:`resumed_here`)."""
    from mantra6g.synth.nf.classifier import match_condition

    match = match_condition(g.nf(g.entry))
    return match if resumed is None else all_of([UnOp("!", resumed), match])


# The headers between Ethernet and IP, in wire order (the deparse's): each one's ``type``
# names the header after it, Ethernet's the first of them.
SHIMS = ("vlan", "chain", "mtel")


def set_type_before(header: str, value: Expr) -> tuple[Stmt, ...]:
    """Set the EtherType that names ``header`` (a shim, or "ip" for the network header):
    that of the last shim before it in :data:`SHIMS` that is valid, else Ethernet's."""
    return _before(header, lambda field: (Assign(field, value),))


def copy_type_before(header: str, target: str) -> tuple[Stmt, ...]:
    """``target`` = the EtherType :func:`set_type_before` would set (what ``header``
    displaces when it is inserted)."""
    return _before(header, lambda field: (Assign(target, Ref(field)),))


def _before(header: str, do) -> tuple[Stmt, ...]:
    out: tuple[Stmt, ...] = do("eth.type")
    shims = SHIMS if header == "ip" else SHIMS[: SHIMS.index(header)]
    for h in shims:
        out = (If(IsValid(h), do(f"{h}.type"), out),)
    return out


def _hand_over(g: ServiceGraph, name: str, number: int) -> tuple[Stmt, ...]:
    """Push the chain shim that tells the next device to resume ``g`` at ``name`` (in
    place of one the packet carries already, which named this device's neighbour)."""
    ids = (
        Assign("chain.tenant", Const(g.tenant_id, 16)),
        Assign("chain.graph", Const(number, 16)),
        Assign("chain.resume", Const(_position(g, name), 16)),
    )
    push = (SetValid("chain"), *copy_type_before("chain", "chain.type"),
            *set_type_before("chain", Const(ETHER_TYPES["chain"], 16)), *ids)
    return (If(IsValid("chain"), ids, push),)


POP_CHAIN: tuple[Stmt, ...] = (*set_type_before("chain", Ref("chain.type")), SetInvalid("chain"))


def _all_upstream_in_order(g: ServiceGraph, name: str, order: tuple[str, ...]) -> list[str]:
    up = g.upstream(name)
    return [n for n in order if n in up]


UNCLAIMED = ("drop", "pass")


def _device_groups(specs) -> dict[tuple[str, str | None], list[tuple[ServiceGraph, set[str]]]]:
    """(device class, site) -> the graphs with NFs there, each with those NFs' names."""
    groups: dict[tuple[str, str | None], list[tuple[ServiceGraph, set[str]]]] = {}
    for spec in specs:
        for g in spec.graphs:
            where = _device_of(g)
            for dev in dict.fromkeys(where.values()):
                groups.setdefault(dev, []).append((g, {n for n, d in where.items() if d == dev}))
    return groups


def _device_name(device: str, site: str | None) -> str:
    return device if site is None else f"{device}_{site}"


def device_names(specs: list[ServiceSpec] | tuple[ServiceSpec, ...]) -> list[str]:
    """The names of the device programs :func:`compile_specs` makes, in its order, from
    the placements alone (nothing is lowered)."""
    return [_device_name(device, site) for device, site in _device_groups(specs)]


def compile_specs(specs: list[ServiceSpec] | tuple[ServiceSpec, ...], unclaimed: str = "drop") -> list[DeviceProgram]:
    """Every device program the site's graphs need, validated. ``unclaimed`` says what a
    device does with frames no classifier claims: ``drop`` them, or ``pass`` them to the
    host's own network stack (ARP, ND, management traffic; XDP only)."""
    groups = _device_groups(specs)
    numbers = graph_numbers(specs)
    from mantra6g.synth.merge import Claim, MergedProgram, TenantProgram, merge

    tenants = {t.name: t for spec in specs for t in spec.tenants}
    plans = {d.name: d for spec in specs for d in spec.devices}
    out = []
    for (device, site), members in groups.items():
        name = _device_name(device, site)
        owners = list(dict.fromkeys(g.tenant for g, _ in members))
        programs = []
        resumed = resumed_here(members, numbers)
        for owner in owners:  # each tenant's graphs alone, as if it had the device to itself
            mine = [(g, local) for g, local in members if g.tenant == owner]
            program = lower_device(name, mine, numbers, unclaimed, resumed)
            validate(program)
            claims = tuple(Claim(g.name, claim_condition(g, local, numbers[g.name], resumed), g.nf(g.entry).params.priority,
                                 [m for m, _ in members].index(g), g.slice) for g, local in mine)
            plan = plans.get(name)
            programs.append(TenantProgram(owner, tenants[owner].id if owner in tenants else mine[0][0].tenant_id,
                                          program, claims, plan.owned_by(owner) if plan else frozenset()))
        plan = plans.get(name)
        merged = MergedProgram.single(programs[0], plan, unclaimed) if len(programs) == 1 else merge(name, programs, unclaimed, plan)
        nfs = tuple(f"{g.name}.{n}" for g, local in members for n in [g.entry, *sorted(local, key=g.topological_order().index)])
        tenant = (lambda g: f"{g.tenant}__") if len(programs) > 1 else (lambda g: "")
        origins = tuple((f"{tenant(g)}{g.name}_{n}_", f"the {g.nf(n).kind} '{n}' of graph '{g.name}'", g.nf(n).span)
                        for g, local in members for n in [g.entry, *local])
        out.append(DeviceProgram(device, site, merged.program, tuple(g.name for g, _ in members), nfs, merged, origins))
    return out


def lower_device(name: str, members: list[tuple[ServiceGraph, set[str]]], numbers: dict[str, int],
                 unclaimed: str = "drop", resumed: Expr | None = None) -> Program:
    """One program running the ``local`` NFs of each graph, its checksums bound
    (:mod:`mantra6g.synth.checksums`). ``numbers`` are the site's graph numbers
    (:func:`graph_numbers`), which the chain shim carries between devices; ``resumed``
    the frames any graph on the device resumes (:func:`resumed_here`: other tenants'
    too), which no classifier claims."""
    from mantra6g.synth import checksums
    from mantra6g.synth.nf import KINDS

    acc = Lowering(members[0][0])
    acc.shared_meta("tenant", 16)
    acc.shared_meta("slice", 8)
    control: list[Stmt] = []
    # Highest classifier priority first: it claims overlapping traffic.
    ordered = sorted(members, key=lambda m: -m[0].nf(m[0].entry).params.priority)
    for g, local in ordered:
        acc.graph = g
        acc.nf = None
        # Topological order, not set order: the program must be the same in every run.
        order = [n for n in g.topological_order() if n in local]
        visit = {n: acc.shared_meta(f"{g.name}_{n}_visit", 1) for n in order}
        if any(KINDS[g.nf(n).kind].forwards for n in order):
            acc.shared_meta(f"{g.name}_routed", 1)
        number = numbers[g.name]
        claim = (Assign(TENANT, Const(g.tenant_id, 16)), Assign(SLICE, Const(g.slice_id, 8)))
        free = BinOp("==", Ref(TENANT), Const(0, 16))
        # A packet handed over by another device resumes where its chain shim says.
        for n in resumes(g, local):
            control.append(If(BinOp("&&", free, resumed_at(g, n, number)), (*claim, *POP_CHAIN, Assign(visit[n], Const(1, 1)))))
        if _starts(g, local):
            control.append(If(BinOp("&&", free, classified(g, resumed)), (*claim, *_pass_on(g, g.entry, visit, local, number))))
        for n in g.topological_order():
            if n not in local:
                continue
            nf = g.nf(n)
            acc.nf = nf
            body = list(KINDS[nf.kind].lower(nf, acc))
            body += _pass_on(g, n, visit, local, number)
            control.append(If(BinOp("==", Ref(visit[n]), Const(1, 1)), tuple(body)))
    if unclaimed == "pass":
        control.append(If(BinOp("==", Ref(TENANT), Const(0, 16)), (dpir.ToHost(),)))
    program = Program(
        name=name,
        headers=HEADER_INSTANCES,
        parser=standard_parser(),
        deparse=DEPARSE,
        metadata=tuple(acc.metadata),
        actions=tuple(acc.actions),
        tables=tuple(acc.tables),
        registers=tuple(acc.registers),
        counters=tuple(acc.counters),
        meters=tuple(acc.meters),
        control=tuple(control),
        doc="graphs: " + ", ".join(g.name for g, _ in members),
    )
    return checksums.bind(program)


def _pass_on(g: ServiceGraph, n: str, visit: dict[str, str], local: set[str], number: int) -> list[Stmt]:
    """After ``n``: mark the next NF (first matching conditional edge, else the
    unconditional one), hand the packet over to the device that runs it, or end the
    chain here."""
    # The packet leaves this device where it came in: at the end of its chain, or when
    # the next NF runs on another device (with a chain shim naming it), unless an NF that
    # forwards (router, l2_forward) chose the port on the way. Those drop what they cannot forward, so a packet that
    # got past one was forwarded; a flag records it where a path may or may not have.
    from mantra6g.synth.nf import KINDS

    forwards = KINDS[g.nf(n).kind].forwards
    before = {u for u in g.upstream(n) if u in local and KINDS[g.nf(u).kind].forwards}
    routed = Ref(f"meta.{g.name}_routed")
    if forwards:
        leave: tuple[Stmt, ...] = ()
    elif before:
        leave = (If(BinOp("==", routed, Const(0, 1)), (Forward(Ref("std.ingress_port")),)),)
    else:
        leave = (Forward(Ref("std.ingress_port")),)

    def step(dst: str) -> tuple[Stmt, ...]:
        return (Assign(visit[dst], Const(1, 1)),) if dst in local else _hand_over(g, dst, number) + leave

    edges = g.successors(n)  # conditional edges first, in written order
    default = next((e for e in edges if e.condition is None), None)
    chosen: tuple[Stmt, ...] = step(default.dst) if default else leave
    for e in reversed([e for e in edges if e.condition is not None]):
        chosen = (If(condition(e.condition), step(e.dst), chosen),)
    if forwards and any(KINDS[g.nf(d).kind].forwards is False for d in g.downstream(n) if d in local):
        chosen = (Assign(routed.path, Const(1, 1)),) + chosen
    return [If(BinOp("==", Ref("std.drop"), Const(0, 1)), chosen)] if chosen else []


__all__ = [
    "DEPARSE",
    "DeviceProgram",
    "HEADER_INSTANCES",
    "POP_CHAIN",
    "Lowering",
    "claim_condition",
    "compile_specs",
    "condition",
    "conjunctions",
    "graph_numbers",
    "lower_device",
    "copy_type_before",
    "resumes",
    "set_type_before",
    "rule_table",
    "standard_parser",
]

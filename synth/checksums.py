"""Checksum binding: the pass that keeps every checksum right, written once.

DP-IR has no deparse-time checksum magic: a checksum is an ordinary header field, and a
program keeps it right with explicit ``OnesSum`` arithmetic. This pass writes that
arithmetic for the NF lowerings, so no lowering can forget it and every consumer (the
interpreter, the Z3 encoder, BMv2, Tofino, XDP) sees the same statements:

* **Rewrites are incremental** (RFC 1624, eqn. 3): before a statement assigns a field of a
  header the packet arrived with, the checksums covering that field are updated from the
  field's old and new bits — the header's own (IPv4, UDP, TCP, ICMP) and, for the IPv4
  source, destination, protocol and length, the pseudo-header sum of the UDP/TCP header
  bound to it. Bytes the program never parsed (IPv4 options, the payload, Ethernet
  padding) are never read, so the result is right for them too, and an error in the
  arriving checksum is carried over rather than hidden.
* **A UDP checksum of 0 means "none"** (RFC 768) and stays 0; a computed 0 is sent as
  0xFFFF.
* **A checksum belongs to the header's contents**: it is a field, so ``CopyHeader``
  (encapsulation moving ``udp`` to ``inner_udp``, decapsulation moving it back) carries it
  along with the fields it covers.
* **A pushed header** (``SetValid``) is *fresh* until its checksum field is assigned:
  writes to it are not adjusted, and the lowering ends with :func:`header_checksum`
  (IPv4) or a constant (a tunnel's UDP checksum 0). A fresh header whose checksum is
  never set, or a write to a header that is fresh on one path and not on another, is a
  lowering bug reported by :func:`bind`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mantra6g.synth.dpir import (
    Action,
    Apply,
    Assign,
    BinOp,
    Call,
    Cast,
    Const,
    CopyHeader,
    Expr,
    Hash,
    If,
    IsValid,
    MeterExec,
    OnesSum,
    Program,
    ReadTimestamp,
    Ref,
    RegisterRead,
    SetInvalid,
    SetValid,
    Stmt,
    UnOp,
    walk_body,
)
from mantra6g.synth.dpir_check import DpirError
from mantra6g.synth.headers import HEADERS, HeaderType

# Header types with a checksum field; UDP's 0 means "no checksum".
CHECKSUMMED = ("ipv4", "udp", "tcp", "icmp")
L4_WITH_PSEUDO = ("udp", "tcp")
IP_TYPES = ("ipv4", "ipv6")
# IPv4 fields that the UDP/TCP pseudo-header repeats (RFC 768, RFC 793 §3.1).
PSEUDO_FIELDS = ("src", "dst", "proto", "len")


def _slot(ht: HeaderType, name: str) -> tuple[int, int]:
    """(bit offset from the header's start, width) of a field."""
    off = 0
    for f in ht.fields:
        if f.name == name:
            return off, f.width
        off += f.width
    raise KeyError(name)


def field_words(ht: HeaderType, name: str, value: Expr) -> list[Expr]:
    """``value``'s bits placed where field ``name`` sits in its 16-bit words, one term per
    word it touches (the other bits of each word zero: unchanged bits cancel out in an
    incremental update)."""
    off, w = _slot(ht, name)
    out: list[Expr] = []
    for k in range(off // 16, (off + w - 1) // 16 + 1):
        lo, hi = max(off, 16 * k), min(off + w, 16 * k + 16)
        part: Expr = value
        if off + w - hi:
            part = BinOp(">>", part, Const(off + w - hi, max(1, (off + w - hi).bit_length())))
        keep = hi - lo
        if w > keep and keep < 16:  # the field spans words: keep this word's bits only
            part = Cast(part, keep)
        if w != 16:
            part = Cast(part, 16)
        if 16 * k + 16 - hi:
            part = BinOp("<<", part, Const(16 * k + 16 - hi, 5))
        out.append(part)
    return out


def header_checksum(h: str, type_name: str = "ipv4") -> Assign:
    """``h.checksum = ~sum of its 16-bit words`` (the checksum word counted as zero): the
    full checksum of a header pushed by the program, which carries no options."""
    ht = HEADERS[type_name]
    words: list[Expr] = []
    for f in ht.fields:
        if f.name != "checksum":
            words += field_words(ht, f.name, Ref(f"{h}.{f.name}"))
    return Assign(f"{h}.checksum", UnOp("~", OnesSum(tuple(words))))


def adjusted(checksum: Expr, old: list[Expr], new: list[Expr]) -> Expr:
    """RFC 1624 eqn. 3: ``HC' = ~(~HC + ~m + m')`` over every changed word."""
    return UnOp("~", OnesSum((UnOp("~", checksum), *(UnOp("~", o) for o in old), *new)))


def pseudo_sources(p: Program, l4: str) -> list[str]:
    """The IP headers whose pseudo-header the checksum of ``l4`` (a UDP or TCP header) may
    cover, nearest first in the emitted order (the interpreter, P4 and XDP emit
    ``deparse`` in order): the nearest valid one is the source."""
    order = list(p.deparse)
    if l4 not in order:
        return []
    types = {h.name: h.type for h in p.headers}
    out = []
    for h in reversed(order[: order.index(l4)]):
        t = types[h]
        if t in IP_TYPES:
            out.append(h)
        elif t not in CHECKSUMMED:  # an Ethernet or tunnel header ends the search
            break
    return out


@dataclass(frozen=True)
class _Fresh:
    """Pushed headers whose checksum is not set yet: on every path, and on some path."""

    sure: frozenset[str] = frozenset()
    maybe: frozenset[str] = frozenset()

    def push(self, h: str) -> _Fresh:
        return _Fresh(self.sure | {h}, self.maybe | {h})

    def settle(self, h: str) -> _Fresh:
        return _Fresh(self.sure - {h}, self.maybe - {h})

    def join(self, other: _Fresh) -> _Fresh:
        return _Fresh(self.sure & other.sure, self.maybe | other.maybe)


class _Binder:
    def __init__(self, p: Program):
        self.p = p
        self.problems: list[str] = []
        self.types = {h.name: h.type for h in p.headers}
        self.pseudo = {h.name: pseudo_sources(p, h.name) for h in p.headers if h.type in L4_WITH_PSEUDO}

    # ------------------------------------------------------------ the rewrite
    def body(self, stmts: tuple[Stmt, ...], fresh: _Fresh, where: str) -> tuple[tuple[Stmt, ...], _Fresh]:
        out: list[Stmt] = []
        for s in stmts:
            new, fresh = self.stmt(s, fresh, where)
            out += new
        return tuple(out), fresh

    def stmt(self, s: Stmt, fresh: _Fresh, where: str) -> tuple[list[Stmt], _Fresh]:
        if isinstance(s, SetValid):
            return [s], fresh.push(s.header) if self.types[s.header] in CHECKSUMMED else fresh
        if isinstance(s, SetInvalid):
            return [s], fresh.settle(s.header)
        if isinstance(s, CopyHeader):
            moved = _Fresh(
                (fresh.sure - {s.dst}) | ({s.dst} if s.src in fresh.sure else set()),
                (fresh.maybe - {s.dst}) | ({s.dst} if s.src in fresh.maybe else set()),
            )
            return [s], moved
        if isinstance(s, Assign):
            return self.assign(s, fresh, where)
        if isinstance(s, (Hash, RegisterRead, MeterExec, ReadTimestamp)):
            self.unadjusted_write(s.target, fresh, where, type(s).__name__)
            return [s], fresh
        if isinstance(s, If):
            then, f1 = self.body(s.then, fresh, where)
            orelse, f2 = self.body(s.orelse, fresh, where)
            return [If(s.cond, then, orelse)], f1.join(f2)
        if isinstance(s, Apply):
            table = next((t for t in self.p.tables if t.name == s.table), None)  # else: the validator says so
            for name in table.actions if table is not None else ():
                self.check_action_site(name, fresh, where)
            hit, f1 = self.body(s.on_hit, fresh, where)
            miss, f2 = self.body(s.on_miss, fresh, where)
            return [Apply(s.table, hit, miss)], f1.join(f2)
        if isinstance(s, Call):
            self.check_action_site(s.action, fresh, where)
        return [s], fresh

    def assign(self, s: Assign, fresh: _Fresh, where: str) -> tuple[list[Stmt], _Fresh]:
        h, _, name = s.target.partition(".")
        t = self.types.get(h)
        if t is None or t not in CHECKSUMMED and not (t in IP_TYPES and name in PSEUDO_FIELDS):
            return [s], fresh
        if HEADERS[t].field(name) is None:
            return [s], fresh  # the validator reports it
        if name == "checksum":
            return [s], fresh.settle(h)  # the lowering set it: the header is settled
        if h in fresh.sure:
            return [s], fresh  # a pushed header: its checksum is computed when complete
        if h in fresh.maybe:
            self.problems.append(f"{where}: {s.target} is written where '{h}' is pushed on some paths only")
            return [s], fresh
        return self.adjustments(h, name, s.value) + [s], fresh

    def adjustments(self, h: str, name: str, value: Expr) -> list[Stmt]:
        """The checksum updates that writing ``value`` into ``h.name`` needs, to run
        before the write (they read the field's old value)."""
        t = self.types[h]
        ht = HEADERS[t]
        old, new = field_words(ht, name, Ref(f"{h}.{name}")), field_words(ht, name, value)
        out: list[Stmt] = []
        if t in CHECKSUMMED:
            out += self.update(h, old, new, guard=None)
        if t == "udp" and name == "len":  # the UDP length is in its pseudo-header too
            out = self.update(h, old + old, new + new, guard=None)
        if t in IP_TYPES and name in PSEUDO_FIELDS:
            pseudo_old, pseudo_new = old, new
            if t == "ipv4" and name == "len":
                # TCP's pseudo-header holds the segment length, total length - 4 * ihl.
                ihl4 = BinOp("<<", Cast(Ref(f"{h}.ihl"), 16), Const(2, 2))
                pseudo_old = [BinOp("-", Ref(f"{h}.len"), ihl4)]
                pseudo_new = [BinOp("-", Cast(value, 16), ihl4)]
            for l4, sources in self.pseudo.items():
                if h not in sources or (name == "len" and self.types[l4] != "tcp"):
                    continue
                nearer = sources[: sources.index(h)]
                guard: Expr = IsValid(h)
                for n in nearer:  # the nearest valid IP header is the pseudo-header's source
                    guard = BinOp("&&", guard, UnOp("!", IsValid(n)))
                out += self.update(l4, pseudo_old, pseudo_new, guard)
        return out

    def update(self, h: str, old: list[Expr], new: list[Expr], guard: Expr | None) -> list[Stmt]:
        """``h``'s checksum updated for words ``old`` becoming ``new``; ``guard`` (for an L4
        header reached through its pseudo-header) says when that header is the bound one."""
        csum = Ref(f"{h}.checksum")
        stmts: list[Stmt] = [Assign(csum.path, adjusted(csum, old, new))]
        conds: list[Expr] = [] if guard is None else [guard, IsValid(h)]
        if self.types[h] == "udp":
            # 0 means "no checksum" and stays 0; a computed 0 is sent as all ones.
            stmts.append(If(BinOp("==", csum, Const(0, 16)), (Assign(csum.path, Const(0xFFFF, 16)),)))
            conds.append(BinOp("!=", csum, Const(0, 16)))
        if not conds:
            return stmts
        cond = conds[0]
        for c in conds[1:]:
            cond = BinOp("&&", cond, c)
        return [If(cond, tuple(stmts))]

    def unadjusted_write(self, target: str, fresh: _Fresh, where: str, what: str) -> None:
        h, _, name = target.partition(".")
        t = self.types.get(h)
        covered = t in CHECKSUMMED or (t in IP_TYPES and name in PSEUDO_FIELDS)
        if covered and name != "checksum" and h not in fresh.sure:
            self.problems.append(f"{where}: {what} writes {target}, which a checksum covers; assign it instead")

    def check_action_site(self, name: str, fresh: _Fresh, where: str) -> None:
        action = next((a for a in self.p.actions if a.name == name), None)
        if action is None:
            return  # the validator reports it
        writes = {s.target.partition(".")[0] for s in walk_body(action.body) if isinstance(s, Assign)}
        if writes & fresh.maybe:
            self.problems.append(f"{where}: action '{name}' writes a pushed header ({', '.join(sorted(writes & fresh.maybe))})")

    def action(self, a: Action) -> Action:
        body, fresh = self.body(a.body, _Fresh(), f"action '{a.name}'")
        self.unsettled(fresh, f"action '{a.name}'")
        return replace(a, body=body)

    def unsettled(self, fresh: _Fresh, where: str) -> None:
        for h in sorted(fresh.maybe):
            self.problems.append(f"{where}: header '{h}' is pushed but its checksum is never set")


def bind(p: Program) -> Program:
    """``p`` with the checksum updates its field writes need (see the module docstring).
    Raises :class:`DpirError` for a pushed header left without a checksum."""
    b = _Binder(p)
    actions = tuple(b.action(a) for a in p.actions)
    control, fresh = b.body(p.control, _Fresh(), "control")
    b.unsettled(fresh, "control")
    if b.problems:
        raise DpirError(p.name, b.problems)
    return replace(p, actions=actions, control=control)


__all__ = ["CHECKSUMMED", "L4_WITH_PSEUDO", "adjusted", "bind", "field_words", "header_checksum", "pseudo_sources"]

"""The reference interpreter: DP-IR semantics on concrete packets.

    state = State.initial(program)
    result = run(program, packet_bytes, ingress_port=1, now_ns=0, state=state)
    result.outputs   # [(port, bytes)] — empty when the packet is dropped
    result.changes   # what the packet did to registers, counters and meters

It is the oracle that the XDP program in the kernel and the P4 program in BMv2 are
differential-tested against, so it states every choice DP-IR makes:

* parsing: a ``reject`` or a packet shorter than an extract drops the packet;
* the egress port: a packet that was never forwarded (or was dropped) is dropped, or
  handed to the host (``Result.to_host``) after ``ToHost``;
* checksums are fields like any other: the program keeps them right (``OnesSum``), and
  the deparser emits the valid headers in order, then the unparsed rest of the packet;
* a table's winner is the first matching entry in :func:`mantra6g.synth.dpir.ranked`;
* ``Hash``: ``base + zlib.crc32(inputs as big-endian bytes) % size``;
* meters: single-rate token buckets, full at start, refilled at ``rate_bps`` by ``now_ns``;
* arithmetic wraps at the width of the left operand / the target field.
"""

from __future__ import annotations

import copy
import functools
import operator
import zlib
from dataclasses import dataclass, field

from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    GREEN,
    RED,
    Apply,
    Assign,
    BinOp,
    Call,
    Cast,
    Const,
    CopyHeader,
    Count,
    Drop,
    Entry,
    Exact,
    Expr,
    Forward,
    Hash,
    If,
    IsValid,
    Lpm,
    MeterExec,
    OnesSum,
    Program,
    Range,
    ReadTimestamp,
    Ref,
    RegisterRead,
    RegisterWrite,
    SetInvalid,
    SetValid,
    Stmt,
    Ternary,
    ToHost,
    UnOp,
)
from mantra6g.synth.dpir_check import VALID_SUFFIX, width


@dataclass
class State:
    """Everything that outlives one packet: registers, counters, meters, table entries."""

    registers: dict[str, list[int]]
    counters: dict[str, list[tuple[int, int]]]  # (packets, bytes) per index
    meters: dict[str, list[tuple[int, int]]]  # (tokens in bit-ns, last refill ns) per index
    entries: dict[str, tuple[Entry, ...]]
    # Default actions a control plane set (P4Runtime's default entry); else the program's.
    defaults: dict[str, dpir.ActionCall] = field(default_factory=dict)

    @classmethod
    def initial(cls, p: Program) -> State:
        return cls(
            registers={r.name: [0] * r.size for r in p.registers},
            counters={c.name: [(0, 0)] * c.size for c in p.counters},
            meters={m.name: [(m.burst_bytes * TOKEN_SCALE, 0)] * m.size for m in p.meters},
            entries={t.name: t.entries for t in p.tables},
        )


@dataclass(frozen=True)
class Change:
    kind: str  # "register" | "counter" | "meter"
    name: str
    index: int
    before: object
    after: object


@dataclass
class Result:
    outputs: list[tuple[int, bytes]]
    changes: list[Change] = field(default_factory=list)
    # Where the packet went through the program, for diagnostics and tests.
    trace: list[str] = field(default_factory=list)
    # The packet as handed to the host's own stack (``ToHost``), if it was.
    to_host: bytes | None = None

    @property
    def dropped(self) -> bool:
        return not self.outputs and self.to_host is None


class _Drop(Exception):
    """The parser rejected the packet."""


@dataclass
class _Packet:
    headers: dict[str, dict[str, int]]  # valid headers' fields
    meta: dict[str, int]
    payload: bytes
    forwarded: bool = False
    to_host: bool = False


def run(p: Program, data: bytes, ingress_port: int, now_ns: int, state: State | None = None) -> Result:
    """Run one packet through ``p``; ``state`` (if given) is updated in place."""
    state = state if state is not None else State.initial(p)
    return _Run(p, state, now_ns).packet(data, ingress_port)


class _Run:
    def __init__(self, p: Program, state: State, now_ns: int):
        self.p = p
        self.state = state
        self.now = now_ns
        self.result = Result([])

    # ---------------------------------------------------------------- top level
    def packet(self, data: bytes, ingress_port: int) -> Result:
        meta = {f"meta.{m.name}": 0 for m in self.p.metadata}
        meta.update({f"std.{n}": 0 for n in dpir.STD_FIELDS})
        meta["std.ingress_port"] = ingress_port
        meta["std.pkt_len"] = len(data) & 0xFFFF
        self.pkt = _Packet({}, meta, b"")
        try:
            self.pkt.payload = self.parse(data)
        except _Drop as exc:
            self.result.trace.append(f"parser: {exc}")
            return self.result
        self.stmts(self.p.control, ())
        if self.pkt.meta["std.drop"]:
            self.result.trace.append("dropped")
        elif self.pkt.forwarded:
            self.result.outputs.append((self.pkt.meta["std.egress_port"], self.deparse()))
        elif self.pkt.to_host:
            self.result.trace.append("to the host")
            self.result.to_host = self.deparse()
        else:
            self.result.trace.append("no egress port: dropped")
        return self.result

    # ---------------------------------------------------------------- parser / deparser
    def parse(self, data: bytes) -> bytes:
        """Extract headers into the packet; returns the payload after them."""
        offset = 0
        name = "start"
        while name not in ("accept", "reject"):
            st = self.p.state(name)
            for h in st.extract:
                ht = self.p.header(h).header_type
                n = ht.width // 8
                if offset + n > len(data):
                    raise _Drop(f"packet too short to extract {h} in state {name}")
                self.pkt.headers[h] = unpack(ht, data[offset : offset + n])
                offset += n
            if st.verify is not None and not self.eval(st.verify, ()):
                raise _Drop(f"malformed packet (verify in state {name})")
            name = self.select(st)
        if name == "reject":
            raise _Drop("parser rejected the packet")
        return data[offset:]

    def select(self, st: dpir.ParserState) -> str:
        if not st.select:
            return st.default
        keys = [self.eval(e, ()) for e in st.select]
        for case in st.cases:
            masks = case.masks or tuple(-1 for _ in keys)
            if all(k & m == v & m for k, v, m in zip(keys, case.values, masks)):
                return case.next
        return st.default

    def deparse(self) -> bytes:
        """The valid headers in deparse order, then the rest of the packet as it came."""
        parts = [pack(self.p.header(h).header_type, self.pkt.headers[h]) for h in self.p.deparse if h in self.pkt.headers]
        return b"".join(parts) + self.pkt.payload

    # ---------------------------------------------------------------- control
    def stmts(self, body, params) -> None:
        for s in body:
            self.stmt(s, params)

    def stmt(self, s: Stmt, params) -> None:
        pkt = self.pkt
        if isinstance(s, Assign):
            self.write(s.target, self.eval(s.value, params), params)
        elif isinstance(s, SetValid):
            ht = self.p.header(s.header).header_type
            pkt.headers[s.header] = {f.name: 0 for f in ht.fields}
        elif isinstance(s, SetInvalid):
            pkt.headers.pop(s.header, None)
        elif isinstance(s, CopyHeader):
            if s.src in pkt.headers:
                pkt.headers[s.dst] = dict(pkt.headers[s.src])
            else:
                pkt.headers.pop(s.dst, None)
        elif isinstance(s, Drop):
            pkt.meta["std.drop"] = 1
        elif isinstance(s, Forward):
            pkt.meta["std.egress_port"] = self.eval(s.port, params) & 0x1FF
            pkt.forwarded = True
        elif isinstance(s, Hash):
            total = sum(width(self.p, e, params) for e in s.inputs)
            value = 0
            for e in s.inputs:
                value = (value << width(self.p, e, params)) | self.eval(e, params)
            digest = zlib.crc32(value.to_bytes(total // 8, "big"))
            self.write(s.target, s.base + digest % s.size, params)
        elif isinstance(s, RegisterRead):
            reg = self.state.registers[s.register]
            self.write(s.target, reg[self.eval(s.index, params) % len(reg)], params)
        elif isinstance(s, RegisterWrite):
            reg = self.state.registers[s.register]
            i = self.eval(s.index, params) % len(reg)
            new = self.eval(s.value, params) & ((1 << self.p.register(s.register).width) - 1)
            self.change("register", s.register, i, reg[i], new)
            reg[i] = new
        elif isinstance(s, Count):
            ctr = self.state.counters[s.counter]
            i = self.eval(s.index, params) % len(ctr)
            packets, nbytes = ctr[i]
            new = (packets + 1, nbytes + pkt.meta["std.pkt_len"])
            self.change("counter", s.counter, i, ctr[i], new)
            ctr[i] = new
        elif isinstance(s, MeterExec):
            m = self.p.meter(s.meter)
            buckets = self.state.meters[s.meter]
            i = self.eval(s.index, params) % len(buckets)
            tokens, last = buckets[i]
            tokens = refill(tokens, self.now - last, m)
            need = pkt.meta["std.pkt_len"] * TOKEN_SCALE
            colour = GREEN if tokens >= need else RED
            if colour == GREEN:
                tokens -= need
            self.change("meter", s.meter, i, buckets[i], (tokens, self.now))
            buckets[i] = (tokens, self.now)
            self.write(s.target, colour, params)
        elif isinstance(s, ReadTimestamp):
            self.write(s.target, self.now, params)
        elif isinstance(s, ToHost):
            pkt.to_host = True
        elif isinstance(s, If):
            self.stmts(s.then if self.eval(s.cond, params) else s.orelse, params)
        elif isinstance(s, Apply):
            hit = self.apply(self.p.table(s.table))
            self.stmts(s.on_hit if hit else s.on_miss, params)
        elif isinstance(s, Call):
            self.call(dpir.ActionCall(s.action, s.args))
        else:  # pragma: no cover
            raise TypeError(f"unknown statement {s!r}")

    def change(self, kind: str, name: str, index: int, before, after) -> None:
        self.result.changes.append(Change(kind, name, index, before, after))

    def call(self, call: dpir.ActionCall) -> None:
        a = self.p.action(call.action)
        params = tuple(zip(a.params, call.args))
        self.result.trace.append(f"action {a.name}{call.args if call.args else ''}")
        self.stmts(a.body, params)

    # ---------------------------------------------------------------- tables
    def apply(self, t: dpir.Table) -> bool:
        keys = [self.key_value(k.field) for k in t.keys]
        entries = self.state.entries[t.name]
        if all(k.match == "exact" for k in t.keys):
            hit = _exact_index(entries).get(tuple(keys))
            candidates = [hit] if hit is not None else []
        else:
            candidates = _ranked(t, entries)
        widths = [self.key_width(k.field) for k in t.keys]
        best = next((e for e in candidates if all(matches(m, v, w) for m, v, w in zip(e.matches, keys, widths))), None)
        if best is None:
            self.result.trace.append(f"table {t.name}: miss")
            self.call(self.state.defaults.get(t.name, t.default))
            return False
        self.result.trace.append(f"table {t.name}: hit")
        self.call(best.action)
        return True

    def key_value(self, path: str) -> int:
        if path.endswith("." + VALID_SUFFIX):
            return int(path[: -len(VALID_SUFFIX) - 1] in self.pkt.headers)
        return self.eval(Ref(path), ())

    def key_width(self, path: str) -> int:
        return 1 if path.endswith("." + VALID_SUFFIX) else self.p.width_of(path)

    # ---------------------------------------------------------------- expressions
    def write(self, path: str, value: int, params) -> None:
        w = self.p.width_of(path, tuple(prm for prm, _ in params))
        value &= (1 << w) - 1
        scope, _, name = path.partition(".")
        if scope in ("meta", "std"):
            self.pkt.meta[path] = value
        elif scope in self.pkt.headers:
            self.pkt.headers[scope][name] = value
        # Writing a field of an invalid header has no effect (as in P4).

    def eval(self, e: Expr, params) -> int:
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Ref):
            scope, _, name = e.path.partition(".")
            if scope == "param":
                return next(v for prm, v in params if prm.name == name)
            if scope in ("meta", "std"):
                return self.pkt.meta[e.path]
            hdr = self.pkt.headers.get(scope)
            return hdr[name] if hdr is not None else 0
        if isinstance(e, IsValid):
            return int(e.header in self.pkt.headers)
        if isinstance(e, Cast):
            return self.eval(e.operand, params) & ((1 << e.width) - 1)
        if isinstance(e, OnesSum):
            return ones_sum(self.eval(t, params) for t in e.terms)
        if isinstance(e, UnOp):
            v = self.eval(e.operand, params)
            if e.op == "!":
                return int(not v)
            return ~v & ((1 << width(self.p, e.operand, tuple(p for p, _ in params))) - 1)
        assert isinstance(e, BinOp)
        if e.op == "&&":
            return int(bool(self.eval(e.left, params)) and bool(self.eval(e.right, params)))
        if e.op == "||":
            return int(bool(self.eval(e.left, params)) or bool(self.eval(e.right, params)))
        a, b = self.eval(e.left, params), self.eval(e.right, params)
        if e.op in _COMPARE:
            return int(_COMPARE[e.op](a, b))
        w = width(self.p, e.left, tuple(p for p, _ in params))
        if e.op == "<<" and b >= w:
            return 0  # shifted out entirely (and no w+b-bit intermediate)
        return _ARITH[e.op](a, b) & ((1 << w) - 1)


# ---------------------------------------------------------------- helpers

# Meter tokens are kept in bit-nanoseconds (bytes x 8e9): a gap of g ns at r bit/s adds
# exactly g*r, so every target can do the same integer arithmetic in 64 bits.
TOKEN_SCALE = 8_000_000_000


def refill(tokens: int, gap_ns: int, m: dpir.Meter) -> int:
    full = m.burst_bytes * TOKEN_SCALE
    if gap_ns <= 0:
        return tokens
    rate = max(1, m.rate_bps)
    if gap_ns >= (full + rate - 1) // rate:  # a gap long enough to fill it (and no overflow)
        return full
    return min(full, tokens + gap_ns * m.rate_bps)

_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ARITH = {
    "+": operator.add,
    "-": operator.sub,
    "&": operator.and_,
    "|": operator.or_,
    "^": operator.xor,
    "<<": operator.lshift,
    ">>": operator.rshift,
}


@functools.lru_cache(maxsize=256)
def _exact_index(entries: tuple[Entry, ...]) -> dict[tuple[int, ...], Entry]:
    """Exact-match entries by key (the validator refuses duplicate keys; should a
    control plane install one, the first wins, as in :func:`dpir.ranked`)."""
    index: dict[tuple[int, ...], Entry] = {}
    for e in entries:
        index.setdefault(tuple(m.value for m in e.matches), e)
    return index


_RANKED: dict[int, tuple[tuple[Entry, ...], list[Entry]]] = {}


def _ranked(t: dpir.Table, entries: tuple[Entry, ...]) -> list[Entry]:
    """:func:`dpir.ranked`, computed once per entries tuple (it is sorted on every apply
    otherwise)."""
    hit = _RANKED.get(id(entries))
    if hit is None or hit[0] is not entries:
        if len(_RANKED) > 1024:
            _RANKED.clear()
        hit = _RANKED[id(entries)] = (entries, dpir.ranked(t, entries))
    return hit[1]


def ones_sum(terms) -> int:
    """16-bit one's-complement sum with end-around carry (DP-IR's ``OnesSum``)."""
    total = sum(terms)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def matches(m, value: int, w: int) -> bool:
    if isinstance(m, Exact):
        return value == m.value
    if isinstance(m, Lpm):
        shift = w - m.prefix_len
        return value >> shift == m.value >> shift
    if isinstance(m, Ternary):
        return value & m.mask == m.value & m.mask
    if isinstance(m, Range):
        return m.low <= value <= m.high
    raise TypeError(m)  # pragma: no cover


def unpack(ht, data: bytes) -> dict[str, int]:
    """Split a header's bytes into its fields (MSB first)."""
    bits = int.from_bytes(data, "big")
    out: dict[str, int] = {}
    shift = ht.width
    for f in ht.fields:
        shift -= f.width
        out[f.name] = (bits >> shift) & f.max_value
    return out


def pack(ht, fields: dict[str, int]) -> bytes:
    bits = 0
    for f in ht.fields:
        bits = (bits << f.width) | (fields.get(f.name, 0) & f.max_value)
    return bits.to_bytes(ht.width // 8, "big")


def run_many(p: Program, packets, state: State | None = None) -> tuple[list[Result], State]:
    """Run ``(bytes, ingress_port, now_ns)`` triples in order on one evolving state."""
    state = state if state is not None else State.initial(p)
    return [run(p, d, port, now, state) for d, port, now in packets], state


def snapshot(state: State) -> State:
    return copy.deepcopy(state)

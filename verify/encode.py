"""DP-IR to Z3: one packet through a program, as formulas.

    inputs = Inputs.for_programs([p])
    run = Encoder(p, inputs, entries="installed").run()
    run.forwarded, run.egress, run.fields["ipv4.ttl"], run.registers["r"], run.accesses

The semantics are the reference interpreter's (:mod:`mantra6g.synth.interp`), stated
over symbols:

* **Packet**: an array of symbolic bytes and a symbolic length, 14 bytes up to a
  jumbo frame (``MAX_FRAME``): every byte the program never reads is free, so a property
  holds for every length (an MTU check or a length-conditioned branch is seen). The
  parser is a DAG of fixed-size extracts, so it is encoded as a *bounded path formula*:
  each path from ``start`` to ``accept`` fixes every header's offset; a header's field is
  the bytes at its offset on whichever path was taken. A rejected or too-short packet is
  dropped.
* **Headers**: a validity bit and bit-vector fields; an invalid header's fields are 0
  (as the interpreter reads them), which every primitive preserves.
* **Tables**: with ``entries="installed"`` the program's entries decide, the first
  match in :func:`mantra6g.synth.dpir.ranked` winning. With ``entries="any"`` a table
  that is not ``const`` may hold *any* entries: hit or miss, the action and its
  arguments are free symbols, so a property proven holds for every entry a tenant may
  install.
* **State**: registers are arrays from an initial array shared by name (so two
  programs can start from one state); counters and meters are arrays of how often each
  cell was hit. A meter's colour is a free symbol, green only when the packet fits the
  bucket depth (any earlier traffic may have emptied it).
* **Hash**: CRC-32 is affine over GF(2) for a fixed input length, so it is encoded
  exactly as XORs of input bits (columns computed with :func:`zlib.crc32`).
* **Checksums** are fields the program computes itself (``OnesSum``, a 16-bit
  one's-complement sum: zero-extended, added and folded twice), so two runs with equal
  headers and payload emit equal bytes.

Every read or write of a header field, metadata, table, action, register, counter or
meter is recorded as an :class:`Access` with the condition under which it happens, for
the isolation and header-validity properties.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import z3

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
from mantra6g.synth.dpir_check import VALID_SUFFIX, parser_paths

MAX_FRAME = 9018  # a 9000-byte jumbo MTU plus Ethernet and a VLAN tag
INDEX = z3.BitVecSort(32)
COUNT = z3.BitVecSort(32)
BYTE_INDEX = z3.BitVecSort(16)


def header_bytes(p: Program) -> int:
    """The most header bytes any parser path extracts."""
    return max(
        (sum(p.header(h).header_type.width // 8 for st in path for h in p.state(st).extract) for path in parser_paths(p)),
        default=0,
    )


@dataclass
class Inputs:
    """What the environment chooses: the packet, its port and time, and the state
    before it. Two encoders given one ``Inputs`` see the same packet and state."""

    maxlen: int = MAX_FRAME
    tag: str = ""

    def __post_init__(self) -> None:
        t = self.tag
        self.packet = z3.Array(f"{t}packet", BYTE_INDEX, z3.BitVecSort(8))
        self.length = z3.BitVec(f"{t}length", 16)
        self.ingress = z3.BitVec(f"{t}ingress_port", 9)
        self.now = z3.BitVec(f"{t}now_ns", 64)
        self.registers: dict[str, z3.ArrayRef] = {}
        self.colours: dict[str, z3.FuncDeclRef] = {}

    @classmethod
    def for_programs(cls, programs: Sequence[Program], tag: str = "") -> Inputs:
        """Inputs for comparing ``programs`` on one packet (any length up to a jumbo frame)."""
        return cls(MAX_FRAME, tag)

    def register(self, key: str, width: int) -> z3.ArrayRef:
        """The initial contents of register ``key`` (shared by every encoder using it)."""
        if key not in self.registers:
            self.registers[key] = z3.Array(f"{self.tag}reg!{key}", INDEX, z3.BitVecSort(width))
        return self.registers[key]

    def colour(self, key: str) -> z3.FuncDeclRef:
        if key not in self.colours:
            self.colours[key] = z3.Function(f"{self.tag}colour!{key}", INDEX, z3.BitVecSort(2))
        return self.colours[key]

    def byte_range(self, offset: int, nbytes: int) -> z3.BitVecRef:
        return read_bytes(self.packet, offset, nbytes)

    def constraints(self) -> z3.BoolRef:
        return z3.And(z3.UGE(self.length, 14), z3.ULE(self.length, self.maxlen))

    def reading(self, packet: z3.ArrayRef, length: z3.BitVecRef) -> Inputs:
        """The same environment with other bytes on the wire (a packet a program emitted,
        parsed again)."""
        other = Inputs(self.maxlen, self.tag)
        other.packet, other.length, other.ingress, other.now = packet, length, self.ingress, self.now
        other.registers, other.colours = self.registers, self.colours
        return other


def read_bytes(packet, offset: int, nbytes: int) -> z3.BitVecRef:
    """``nbytes`` bytes of ``packet`` (an array, or bytes a program emitted) from
    ``offset``, big-endian."""
    if isinstance(packet, z3.ArrayRef):
        parts = [z3.Select(packet, z3.BitVecVal(offset + i, 16)) for i in range(nbytes)]
    else:
        parts = [packet.byte(offset + i) for i in range(nbytes)]
    return parts[0] if nbytes == 1 else z3.Concat(*parts)


@dataclass(frozen=True)
class Access:
    """One read or write the packet may do, and when."""

    kind: str  # "field" | "meta" | "table" | "action" | "register" | "counter" | "meter"
    name: str  # header field or meta path, or the object's name
    write: bool
    cond: z3.BoolRef
    # For header fields: the header's validity at that point (None when exempt, e.g. a
    # table key beside the header's $valid key).
    valid: z3.BoolRef | None = None
    where: str = ""  # the table/action/statement it happens in


@dataclass
class SymbolicTable:
    """A table applied with free entries: what a counterexample's entry must be."""

    table: str
    keys: tuple[z3.ExprRef, ...]
    hit: z3.BoolRef
    action: z3.BitVecRef
    args: dict[str, tuple[z3.BitVecRef, ...]]
    default: z3.BitVecRef | None = None  # which action a miss runs (the default entry)
    default_args: dict[str, tuple[z3.BitVecRef, ...]] = field(default_factory=dict)


@dataclass
class StateUse:
    """A register read or meter execution, for turning a model into a concrete state."""

    kind: str  # "register" | "meter"
    name: str
    key: str
    index: z3.BitVecRef
    value: z3.ExprRef | None  # the colour, for meters


@dataclass
class Env:
    """The symbolic packet and state at one program point."""

    fields: dict[str, z3.BitVecRef]  # "ipv4.ttl", "meta.x", "std.drop"
    valid: dict[str, z3.BoolRef]
    registers: dict[str, z3.ArrayRef]
    counters: dict[str, z3.ArrayRef]
    meters: dict[str, z3.ArrayRef]
    forwarded: z3.BoolRef
    to_host: z3.BoolRef = z3.BoolVal(False)

    def copy(self) -> Env:
        return Env(dict(self.fields), dict(self.valid), dict(self.registers), dict(self.counters), dict(self.meters),
                   self.forwarded, self.to_host)


def _merge(c: z3.BoolRef, a: dict, b: dict) -> dict:
    out = {}
    for k in a.keys() | b.keys():
        x, y = a[k], b[k]
        out[k] = x if x.eq(y) else z3.If(c, x, y)
    return out


def merge_envs(c: z3.BoolRef, a: Env, b: Env) -> Env:
    fw = a.forwarded if a.forwarded.eq(b.forwarded) else z3.If(c, a.forwarded, b.forwarded)
    host = a.to_host if a.to_host.eq(b.to_host) else z3.If(c, a.to_host, b.to_host)
    return Env(_merge(c, a.fields, b.fields), _merge(c, a.valid, b.valid), _merge(c, a.registers, b.registers),
               _merge(c, a.counters, b.counters), _merge(c, a.meters, b.meters), fw, host)


@dataclass
class Run:
    """The encoded packet run: the final state and what happened on the way."""

    parsed: z3.BoolRef  # the parser accepted the packet
    initial: Env
    final: Env
    accesses: list[Access] = field(default_factory=list)
    symbolic_tables: list[SymbolicTable] = field(default_factory=list)
    state_uses: list[StateUse] = field(default_factory=list)
    extra: list[z3.BoolRef] = field(default_factory=list)  # side constraints (colours, choices)
    header_len: z3.BitVecRef = z3.BitVecVal(0, 16)  # bytes the parser extracted

    @property
    def forwarded(self) -> z3.BoolRef:
        """The packet leaves: parsed, forwarded, not dropped."""
        return z3.And(self.parsed, self.final.forwarded, self.final.fields["std.drop"] == 0)

    @property
    def egress(self) -> z3.BitVecRef:
        return self.final.fields["std.egress_port"]


# ---------------------------------------------------------------- CRC-32 as XORs


@functools.lru_cache(maxsize=64)
def _crc_columns(nbytes: int) -> tuple[int, tuple[int, ...]]:
    """crc32(x) = c0 ^ XOR(col[i] for set bits i of x), bit i counted from the LSB."""
    c0 = zlib.crc32(bytes(nbytes))
    cols = tuple(zlib.crc32((1 << i).to_bytes(nbytes, "big")) ^ c0 for i in range(8 * nbytes))
    return c0, cols


def crc32(x: z3.BitVecRef) -> z3.BitVecRef:
    n = x.size()
    c0, cols = _crc_columns(n // 8)
    out_bits = []
    for j in range(31, -1, -1):
        terms = [z3.Extract(i, i, x) for i in range(n) if cols[i] >> j & 1]
        bit = z3.BitVecVal(c0 >> j & 1, 1)
        for t in terms:
            bit = bit ^ t
        out_bits.append(bit)
    return z3.simplify(z3.Concat(*out_bits))


# ---------------------------------------------------------------- the encoder


def _fit(v: z3.BitVecRef, w: int) -> z3.BitVecRef:
    """Zero-extend or truncate to ``w`` bits (what an assignment does)."""
    if v.size() == w:
        return v
    if v.size() < w:
        return z3.ZeroExt(w - v.size(), v)
    return z3.Extract(w - 1, 0, v)


def _bv(v) -> z3.BitVecRef:
    return z3.If(v, z3.BitVecVal(1, 1), z3.BitVecVal(0, 1)) if z3.is_bool(v) else v


def _bool(v) -> z3.BoolRef:
    return v if z3.is_bool(v) else v != 0


class Encoder:
    """Symbolic execution of one program on one packet (see the module docstring).

    ``keys`` maps the program's stateful names to the keys shared through ``inputs``
    (a tenant's register ``flows`` and the merged ``city__flows`` share one key), so
    two programs can be compared from one initial state.
    """

    def __init__(self, p: Program, inputs: Inputs, entries: str = "installed", keys: dict[str, str] | None = None,
                 tag: str = "", prune: z3.BoolRef | None = None):
        assert entries in ("installed", "any")
        self.p = p
        self.inputs = inputs
        self.entries = entries
        self.keys = keys or {}
        self.tag = tag or p.name
        self.accesses: list[Access] = []
        self.symbolic: list[SymbolicTable] = []
        self.uses: list[StateUse] = []
        self.extra: list[z3.BoolRef] = []
        self.fresh = 0
        # Branches infeasible under ``prune`` (e.g. "the packet is tenant t's") are not
        # encoded: a header-only condition is decided once, by the solver.
        self.prune = prune
        self._pruner: z3.Solver | None = None

    # ---------------------------------------------------------------- parser
    def parse(self) -> tuple[z3.BoolRef, Env]:
        parsed, values, valid, self.header_len = _parse(self.p, self.inputs)
        env = self._initial_env()
        env.fields.update(values)
        env.valid.update(valid)
        return parsed, env

    def _initial_env(self) -> Env:
        fields: dict[str, z3.BitVecRef] = {}
        for h in self.p.headers:
            for f in h.header_type.fields:
                fields[f"{h.name}.{f.name}"] = z3.BitVecVal(0, f.width)
        for m in self.p.metadata:
            fields[f"meta.{m.name}"] = z3.BitVecVal(0, m.width)
        for n, w in dpir.STD_FIELDS.items():
            fields[f"std.{n}"] = z3.BitVecVal(0, w)
        fields["std.ingress_port"] = self.inputs.ingress
        fields["std.pkt_len"] = self.inputs.length
        return Env(
            fields,
            {h.name: z3.BoolVal(False) for h in self.p.headers},
            {r.name: self.inputs.register(self.keys.get(r.name, r.name), r.width) for r in self.p.registers},
            {c.name: z3.K(INDEX, z3.BitVecVal(0, 32)) for c in self.p.counters},
            {m.name: z3.K(INDEX, z3.BitVecVal(0, 32)) for m in self.p.meters},
            z3.BoolVal(False),
        )

    # ---------------------------------------------------------------- top level
    def run(self) -> Run:
        parsed, env = self.parse()
        initial = env.copy()
        final = self.body(self.p.control, env, parsed, (), "control")
        return Run(parsed, initial, final, self.accesses, self.symbolic, self.uses, self.extra, self.header_len)

    def body(self, stmts: Sequence[Stmt], env: Env, pc: z3.BoolRef, params, where: str) -> Env:
        for s in stmts:
            env = self.stmt(s, env, pc, params, where)
        return env

    def _feasible(self, cond: z3.BoolRef) -> bool:
        if self._pruner is None:
            self._pruner = z3.Solver()
            self._pruner.add(self.inputs.constraints(), self.prune)
        return self._pruner.check(cond) != z3.unsat

    def stmt(self, s: Stmt, env: Env, pc: z3.BoolRef, params, where: str) -> Env:
        if isinstance(s, If):
            c = _bool(self.ev(s.cond, env, pc, params, where))
            c = z3.simplify(c)
            if z3.is_true(c):
                return self.body(s.then, env, pc, params, where)
            if z3.is_false(c):
                return self.body(s.orelse, env, pc, params, where)
            if self.prune is not None and _header_only(s.cond):
                then_ok = self._feasible(z3.And(pc, c))
                else_ok = self._feasible(z3.And(pc, z3.Not(c)))
                if then_ok and not else_ok:
                    return self.body(s.then, env, pc, params, where)
                if else_ok and not then_ok:
                    return self.body(s.orelse, env, pc, params, where)
            a = self.body(s.then, env.copy(), z3.And(pc, c), params, where)
            b = self.body(s.orelse, env.copy(), z3.And(pc, z3.Not(c)), params, where)
            return merge_envs(c, a, b)
        env = env.copy()
        if isinstance(s, Assign):
            self.write(s.target, self.ev(s.value, env, pc, params, where), env, pc, params, where)
        elif isinstance(s, SetValid):
            env.valid[s.header] = z3.BoolVal(True)
            for f in self.p.header(s.header).header_type.fields:
                env.fields[f"{s.header}.{f.name}"] = z3.BitVecVal(0, f.width)
        elif isinstance(s, SetInvalid):
            env.valid[s.header] = z3.BoolVal(False)
            for f in self.p.header(s.header).header_type.fields:
                env.fields[f"{s.header}.{f.name}"] = z3.BitVecVal(0, f.width)
        elif isinstance(s, CopyHeader):
            env.valid[s.dst] = env.valid[s.src]
            for f in self.p.header(s.dst).header_type.fields:
                env.fields[f"{s.dst}.{f.name}"] = env.fields[f"{s.src}.{f.name}"]
        elif isinstance(s, Drop):
            env.fields["std.drop"] = z3.BitVecVal(1, 1)
        elif isinstance(s, Forward):
            port = _fit(_bv(self.ev(s.port, env, pc, params, where)), 9)
            env.fields["std.egress_port"] = port
            env.forwarded = z3.BoolVal(True)
        elif isinstance(s, Hash):
            parts = [_bv(self.ev(e, env, pc, params, where)) for e in s.inputs]
            x = parts[0] if len(parts) == 1 else z3.Concat(*parts)
            digest = z3.ZeroExt(32, crc32(x))
            size = z3.BitVecVal(s.size, 64)
            value = z3.BitVecVal(s.base, 64) + (digest & (s.size - 1) if s.size & (s.size - 1) == 0 else z3.URem(digest, size))
            self.write(s.target, value, env, pc, params, where)
        elif isinstance(s, RegisterRead):
            idx = self.index(s.index, self.p.register(s.register).size, env, pc, params, where)
            self.access("register", s.register, False, pc, where)
            self.uses.append(StateUse("register", s.register, self.keys.get(s.register, s.register), idx, None))
            self.write(s.target, z3.Select(env.registers[s.register], idx), env, pc, params, where)
        elif isinstance(s, RegisterWrite):
            reg = self.p.register(s.register)
            idx = self.index(s.index, reg.size, env, pc, params, where)
            value = _fit(_bv(self.ev(s.value, env, pc, params, where)), reg.width)
            self.access("register", s.register, True, pc, where)
            env.registers[s.register] = z3.Store(env.registers[s.register], idx, value)
        elif isinstance(s, Count):
            idx = self.index(s.index, self.p.counter(s.counter).size, env, pc, params, where)
            self.access("counter", s.counter, True, pc, where)
            arr = env.counters[s.counter]
            env.counters[s.counter] = z3.Store(arr, idx, z3.Select(arr, idx) + 1)
        elif isinstance(s, MeterExec):
            m = self.p.meter(s.meter)
            idx = self.index(s.index, m.size, env, pc, params, where)
            self.access("meter", s.meter, True, pc, where)
            # Keyed by the meter's configuration too: two meters configured alike, fed alike,
            # colour alike; a merge that gives a tenant another configuration is seen.
            key = f"{self.keys.get(s.meter, s.meter)}@{m.rate_bps}bps/{m.burst_bytes}B/{m.size}"
            colour = self.inputs.colour(key)(idx)
            # Green needs the packet to fit the bucket; red is always possible.
            self.extra.append(z3.Or(colour == RED, z3.And(colour == GREEN, z3.ULE(env.fields["std.pkt_len"], m.burst_bytes))))
            self.uses.append(StateUse("meter", s.meter, self.keys.get(s.meter, s.meter), idx, colour))
            arr = env.meters[s.meter]
            env.meters[s.meter] = z3.Store(arr, idx, z3.Select(arr, idx) + 1)
            self.write(s.target, colour, env, pc, params, where)
        elif isinstance(s, ReadTimestamp):
            self.write(s.target, self.inputs.now, env, pc, params, where)
        elif isinstance(s, ToHost):
            env.to_host = z3.BoolVal(True)
        elif isinstance(s, Apply):
            return self.apply(s, env, pc, params, where)
        elif isinstance(s, Call):
            return self.call(s.action, tuple(z3.BitVecVal(v, prm.width) for v, prm in zip(s.args, self.p.action(s.action).params)), env, pc, where)
        else:  # pragma: no cover
            raise TypeError(f"unknown statement {s!r}")
        return env

    def index(self, e: Expr, size: int, env: Env, pc, params, where) -> z3.BitVecRef:
        v = _fit(_bv(self.ev(e, env, pc, params, where)), 64)
        mod = v & (size - 1) if size & (size - 1) == 0 else z3.URem(v, z3.BitVecVal(size, 64))
        return _fit(mod, 32)

    def access(self, kind: str, name: str, write: bool, cond, where: str, valid=None) -> None:
        self.accesses.append(Access(kind, name, write, cond, valid, where))

    # ---------------------------------------------------------------- actions and tables
    def call(self, action: str, args: tuple, env: Env, pc, where: str = "") -> Env:
        a = self.p.action(action)
        self.access("action", action, False, pc, where)
        params = tuple((prm.name, v) for prm, v in zip(a.params, args))
        return self.body(a.body, env, pc, params, f"action {action}")

    def apply(self, s: Apply, env: Env, pc, params, where: str) -> Env:
        t = self.p.table(s.table)
        self.access("table", t.name, False, pc, where)
        keys = []
        valid_keys = {k.field[: -len(VALID_SUFFIX) - 1] for k in t.keys if k.field.endswith(VALID_SUFFIX)}
        for k in t.keys:
            if k.field.endswith("." + VALID_SUFFIX):
                keys.append(_bv(env.valid[k.field.partition(".")[0]]))
            else:
                keys.append(self.read(k.field, env, pc, f"table {t.name}", exempt=k.field.partition(".")[0] in valid_keys))
        if self.entries == "any" and not t.const:
            hit, choices = self._any_entries(t, keys)
        else:
            hit, choices = self._installed(t, keys)
        # One run of each action, with its arguments chosen by the entry that won.
        out: Env | None = None
        for action, (cond, args) in reversed(list(choices.items())):
            cond = z3.simplify(cond)
            if z3.is_false(cond):
                continue
            branch = self.call(action, args, env.copy(), z3.And(pc, cond), f"table {t.name}")
            out = branch if out is None else merge_envs(cond, branch, out)
        env = out if out is not None else env
        if s.on_hit or s.on_miss:
            a = self.body(s.on_hit, env.copy(), z3.And(pc, hit), params, where)
            b = self.body(s.on_miss, env.copy(), z3.And(pc, z3.Not(hit)), params, where)
            env = merge_envs(hit, a, b)
        return env

    def _installed(self, t: dpir.Table, keys) -> tuple[z3.BoolRef, dict]:
        widths = [k.size() for k in keys]
        choices: dict[str, tuple[z3.BoolRef, tuple]] = {}
        earlier: list[z3.BoolRef] = []
        for e in dpir.ranked(t):
            m = z3.And([_match(mt, k, w) for mt, k, w in zip(e.matches, keys, widths)])
            won = z3.And(m, *[z3.Not(x) for x in earlier]) if earlier else m
            earlier.append(m)
            self._choose(choices, e.action, won)
        hit = z3.Or(earlier) if earlier else z3.BoolVal(False)
        self._choose(choices, t.default, z3.Not(hit))
        return hit, choices

    def _choose(self, choices: dict, call: dpir.ActionCall, cond: z3.BoolRef, vals: tuple | None = None) -> None:
        params = self.p.action(call.action).params
        if vals is None:
            vals = tuple(z3.BitVecVal(v, prm.width) for v, prm in zip(call.args, params))
        if call.action not in choices:
            choices[call.action] = (cond, vals)
            return
        old_cond, old_vals = choices[call.action]
        choices[call.action] = (z3.Or(old_cond, cond), tuple(z3.If(cond, v, o) for v, o in zip(vals, old_vals)))

    def _any_entries(self, t: dpir.Table, keys) -> tuple[z3.BoolRef, dict]:
        self.fresh += 1
        base = f"{self.tag}!{t.name}!{self.fresh}"
        hit = z3.Bool(f"{base}!hit")
        which = z3.BitVec(f"{base}!action", 8)
        self.extra.append(z3.ULT(which, len(t.actions)))
        choices: dict[str, tuple[z3.BoolRef, tuple]] = {}
        args: dict[str, tuple] = {}
        for i, a in enumerate(t.actions):
            vals = tuple(z3.BitVec(f"{base}!{a}!{prm.name}", prm.width) for prm in self.p.action(a).params)
            args[a] = vals
            choices[a] = (z3.And(hit, which == i), vals)
        # The control plane may also set the default action of a non-const table
        # (P4Runtime's default entry): on a miss, any of its actions with any arguments.
        default = z3.BitVec(f"{base}!default", 8)
        self.extra.append(z3.ULT(default, len(t.actions)))
        default_args = {}
        for i, a in enumerate(t.actions):
            vals = tuple(z3.BitVec(f"{base}!default!{a}!{prm.name}", prm.width) for prm in self.p.action(a).params)
            default_args[a] = vals
            self._choose(choices, dpir.ActionCall(a, ()), z3.And(z3.Not(hit), default == i), vals)
        self.symbolic.append(SymbolicTable(t.name, tuple(keys), hit, which, args, default, default_args))
        return hit, choices

    # ---------------------------------------------------------------- expressions
    def read(self, path: str, env: Env, pc, where: str, exempt: bool = False) -> z3.BitVecRef:
        scope = path.partition(".")[0]
        if scope in ("meta", "std"):
            self.access("meta", path, False, pc, where)
        else:
            self.access("field", path, False, pc, where, None if exempt else env.valid[scope])
        return env.fields[path]

    def write(self, path: str, value, env: Env, pc, params, where: str) -> None:
        scope = path.partition(".")[0]
        w = self.p.width_of(path)
        value = _fit(_bv(value), w)
        if scope in ("meta", "std"):
            self.access("meta", path, True, pc, where)
            env.fields[path] = value
        else:
            self.access("field", path, True, pc, where, env.valid[scope])
            # Writing a field of an invalid header has no effect (its fields stay 0).
            env.fields[path] = z3.If(env.valid[scope], value, env.fields[path])

    def ev(self, e: Expr, env: Env, pc, params, where: str):
        if isinstance(e, Const):
            return z3.BitVecVal(e.value, e.width)
        if isinstance(e, Ref):
            if e.path.startswith("param."):
                return dict(params)[e.path[len("param."):]]
            return self.read(e.path, env, pc, where)
        if isinstance(e, IsValid):
            return env.valid[e.header]
        if isinstance(e, Cast):
            return _fit(_bv(self.ev(e.operand, env, pc, params, where)), e.width)
        if isinstance(e, OnesSum):
            return ones_sum([_fit(_bv(self.ev(t, env, pc, params, where)), 16) for t in e.terms])
        if isinstance(e, UnOp):
            v = self.ev(e.operand, env, pc, params, where)
            return z3.Not(_bool(v)) if e.op == "!" else ~_bv(v)
        assert isinstance(e, BinOp)
        if e.op in ("&&", "||"):
            left = _bool(self.ev(e.left, env, pc, params, where))
            # Short-circuit: the right side is read only when it decides.
            guard = z3.And(pc, left) if e.op == "&&" else z3.And(pc, z3.Not(left))
            right = _bool(self.ev(e.right, env, guard, params, where))
            return z3.And(left, right) if e.op == "&&" else z3.Or(left, right)
        a = _bv(self.ev(e.left, env, pc, params, where))
        b = _bv(self.ev(e.right, env, pc, params, where))
        w = max(a.size(), b.size())
        a2, b2 = _fit(a, w), _fit(b, w)
        cmp = {"==": lambda: a2 == b2, "!=": lambda: a2 != b2, "<": lambda: z3.ULT(a2, b2), "<=": lambda: z3.ULE(a2, b2),
               ">": lambda: z3.UGT(a2, b2), ">=": lambda: z3.UGE(a2, b2)}
        if e.op in cmp:
            return cmp[e.op]()
        if e.op in ("<<", ">>"):
            # Shift at the wider width so a large right operand shifts everything out.
            wide = max(w, a.size() + 1)
            r = (_fit(a, wide) << _fit(b, wide)) if e.op == "<<" else z3.LShR(_fit(a, wide), _fit(b, wide))
            return _fit(r, a.size())
        ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "&": lambda x, y: x & y, "|": lambda x, y: x | y,
               "^": lambda x, y: x ^ y}
        return _fit(ops[e.op](a2, b2), a.size())


# ---------------------------------------------------------------- the parser

_PARSES: dict[tuple, tuple] = {}  # see _parse
_PARSES_KEPT = 32


def _parse(p: Program, inputs: Inputs
           ) -> tuple[z3.BoolRef, dict[str, z3.BitVecRef], dict[str, z3.BoolRef], z3.BitVecRef]:
    """``p``'s parser on ``inputs``' packet: whether it accepts, the value of every
    extracted field and the validity of every extracted header after the parse (fields
    of a header not extracted are 0), and how many bytes it extracted.

    Every property of a site parses the same packet with the same (standard) parser
    several times, so one parser on one packet's symbols is encoded once and the
    formulas are shared."""
    key = None
    if isinstance(inputs.packet, z3.ArrayRef):  # not bytes a program emitted
        key = (p.parser, p.headers, inputs.maxlen, inputs.packet.get_id(), inputs.length.get_id(), inputs.ingress.get_id())
        kept = _PARSES.get(key)
        if kept is not None and all(a.eq(b) for a, b in zip(kept[0], (inputs.packet, inputs.length, inputs.ingress))):
            return kept[1]
    result = _encode_parser(p, inputs)
    if key is not None:
        if len(_PARSES) >= _PARSES_KEPT:
            del _PARSES[next(iter(_PARSES))]
        _PARSES[key] = ((inputs.packet, inputs.length, inputs.ingress), result)
    return result


def _encode_parser(p: Program, inputs: Inputs):
    """The bounded path formula of the module docstring. Each path from ``start`` fixes
    every header's offset; paths that extracted the same headers at the same offsets end
    as one disjunct, and a field is a choice among the few offsets its header can have."""
    enc = Encoder(p, inputs)
    base = enc._initial_env()
    extracts: dict[tuple[str, int], dict[str, z3.BitVecRef]] = {}

    def fields_at(h: str, offset: int) -> dict[str, z3.BitVecRef]:
        if (h, offset) not in extracts:
            ht = p.header(h).header_type
            raw = inputs.byte_range(offset, ht.width // 8)
            out, shift = {}, ht.width
            for f in ht.fields:
                shift -= f.width
                out[f"{h}.{f.name}"] = z3.Extract(shift + f.width - 1, shift, raw)
            extracts[h, offset] = out
        return extracts[h, offset]

    def expr(e: Expr, local: dict[str, z3.BitVecRef], at: tuple[tuple[str, int], ...]):
        """A select key or verify condition over the headers extracted on this path (and
        the packet length), recording no accesses."""
        if isinstance(e, Ref) and e.path in local:
            return local[e.path]
        if isinstance(e, Const):
            return z3.BitVecVal(e.value, e.width)
        env = base.copy()
        env.fields.update(local)
        for h, _ in at:
            env.valid[h] = z3.BoolVal(True)
        seen = len(enc.accesses)
        value = enc.ev(e, env, z3.BoolVal(True), (), "parser")
        del enc.accesses[seen:]
        return value

    ends: dict[tuple, list[z3.BoolRef]] = {}  # (header, offset)s, bytes extracted -> conditions

    def walk(name: str, offset: int, cond: z3.BoolRef, at: tuple[tuple[str, int], ...]) -> None:
        if name == "reject":
            return
        if name == "accept":
            ends.setdefault((at, offset), []).append(cond)
            return
        st = p.state(name)
        for h in st.extract:
            n = p.header(h).header_type.width // 8
            if offset + n > inputs.maxlen:
                return
            # Too short for this extract: the interpreter drops the packet.
            cond = z3.And(cond, z3.UGE(inputs.length, offset + n))
            at = (*at, (h, offset))
            offset += n
        local: dict[str, z3.BitVecRef] = {}
        for h, o in at:
            local.update(fields_at(h, o))
        if st.verify is not None:  # a malformed packet is rejected
            cond = z3.And(cond, _bool(expr(st.verify, local, at)))
        keys = [expr(e, local, at) for e in st.select]
        taken: list[z3.BoolRef] = []
        for case in st.cases:
            masks = case.masks or tuple(-1 for _ in keys)
            m = z3.And([(k & (mk % (1 << k.size()))) == (v & mk) % (1 << k.size()) for k, v, mk in zip(keys, case.values, masks)])
            walk(case.next, offset, z3.And(cond, m, *[z3.Not(t) for t in taken]), at)
            taken.append(m)
        walk(st.default, offset, z3.And(cond, *[z3.Not(t) for t in taken]), at)

    walk("start", 0, z3.BoolVal(True), ())
    accepted: list[z3.BoolRef] = []
    where: dict[str, dict[int, list[z3.BoolRef]]] = {}  # header -> offset -> end conditions
    consumed: dict[int, list[z3.BoolRef]] = {}
    for (at, offset), conds in ends.items():
        cond = _any(conds)
        accepted.append(cond)
        consumed.setdefault(offset, []).append(cond)
        for h, o in at:
            where.setdefault(h, {}).setdefault(o, []).append(cond)
    values: dict[str, z3.BitVecRef] = {}
    valid: dict[str, z3.BoolRef] = {}
    for h, offsets in where.items():
        choices = [(_any(conds), o) for o, conds in offsets.items()]
        valid[h] = _any([c for c, _ in choices])
        for path, zero in ((path, base.fields[path]) for path in fields_at(h, choices[0][1])):
            v = zero
            for c, o in reversed(choices):
                v = z3.If(c, fields_at(h, o)[path], v)
            values[path] = v
    length = z3.BitVecVal(0, 16)
    for n, conds in reversed(list(consumed.items())):
        length = z3.If(_any(conds), z3.BitVecVal(n, 16), length)
    return _any(accepted) if accepted else z3.BoolVal(False), values, valid, length


def _any(conds: list[z3.BoolRef]) -> z3.BoolRef:
    return conds[0] if len(conds) == 1 else z3.Or(conds)


def ones_sum(terms: list[z3.BitVecRef]) -> z3.BitVecRef:
    """DP-IR's ``OnesSum``: add in 32 bits, fold the carries back in twice."""
    total = z3.BitVecVal(0, 32)
    for t in terms:
        total = total + z3.ZeroExt(16, t)
    for _ in range(2):
        total = (total & 0xFFFF) + z3.LShR(total, 16)
    return z3.Extract(15, 0, total)


def _match(m: dpir.KeyMatch, k: z3.BitVecRef, w: int) -> z3.BoolRef:
    if isinstance(m, Exact):
        return k == m.value % (1 << w)
    if isinstance(m, Lpm):
        if m.prefix_len == 0:
            return z3.BoolVal(True)
        return z3.Extract(w - 1, w - m.prefix_len, k) == (m.value >> (w - m.prefix_len)) % (1 << m.prefix_len)
    if isinstance(m, Ternary):
        return (k & m.mask % (1 << w)) == (m.value & m.mask) % (1 << w)
    assert isinstance(m, Range)
    return z3.And(z3.UGE(k, m.low), z3.ULE(k, m.high))


def _header_only(e: Expr) -> bool:
    """True when ``e`` reads only packet headers (no metadata or parameters)."""
    if isinstance(e, Ref):
        return not e.path.startswith(("meta.", "std.", "param."))
    return all(_header_only(x) for x in dpir.operands(e))


class Emitted:
    """The bytes a run sends, as the deparser writes them: the valid headers of the final
    state in deparse order, then the packet's bytes after the headers the parser
    extracted (as the interpreter's deparse does). Read at constant offsets (a parser
    does), each byte is a choice among the few headers and offsets it can belong to — no
    symbolic shifts."""

    def __init__(self, p: Program, run: Run, inputs: Inputs):
        self.source = inputs.packet
        self.header_len_in = run.header_len
        start = z3.BitVecVal(0, 16)
        starts = {0}  # the offsets the next header can start at
        self.layout = []
        for h in p.deparse:
            ht = p.header(h).header_type
            n = ht.width // 8
            valid = z3.simplify(run.final.valid[h])
            if z3.is_false(valid):
                continue
            fields = [run.final.fields[f"{h}.{f.name}"] for f in ht.fields]
            value = z3.Concat(*fields) if len(fields) > 1 else fields[0]
            self.layout.append((valid, start, n, value, frozenset(starts)))
            start = start + z3.If(valid, z3.BitVecVal(n, 16), z3.BitVecVal(0, 16))
            starts = {x + n for x in starts} | (set() if z3.is_true(valid) else starts)
        self.header_len = start
        self.length = inputs.length - run.header_len + start
        self._bytes: dict[int, z3.BitVecRef] = {}

    def byte(self, c: int) -> z3.BitVecRef:
        """Byte ``c``: byte ``c - s`` of the valid header that starts at an offset ``s``
        it can have, else the payload's."""
        if c in self._bytes:
            return self._bytes[c]
        at = z3.BitVecVal(c, 16)
        out = z3.Select(self.source, at - self.header_len + self.header_len_in)  # the payload, shifted
        for valid, start, n, value, starts in reversed(self.layout):
            for s in sorted(starts, reverse=True):
                k = c - s
                if 0 <= k < n:
                    bits = 8 * (n - k)
                    out = z3.If(z3.And(valid, start == s), z3.Extract(bits - 1, bits - 8, value), out)
        self._bytes[c] = out
        return out


def parse_preserving(p: Program) -> bool:
    """Whether every packet ``p`` sends parses again into exactly its final headers: the
    program pushes, pops and moves no header and writes no field a parser state selects
    on or verifies, so the parse takes the same path over the same offsets. (Then a
    property of the emitted packet can be read off the final state; else
    :func:`emitted` gives its bytes, to be parsed again.)"""
    steering = {
        e.path for st in p.parser for x in (*st.select, *((st.verify,) if st.verify is not None else ()))
        for e in _refs(x)
    }
    for s in _statements(p):
        if isinstance(s, (SetValid, SetInvalid, CopyHeader)):
            return False
        target = getattr(s, "target", None)
        if target is not None and target in steering:
            return False
    return True


def _refs(e: Expr):
    if isinstance(e, Ref):
        yield e
    for x in dpir.operands(e):
        yield from _refs(x)


_statements = dpir.walk


def reading_only(p: Program, headers: set[str]) -> Program:
    """``p`` with a parser that stops (accepts) wherever no state ahead extracts one of
    ``headers``, and checks nothing (no ``verify``): what deciding conditions over those
    headers needs. It accepts at least every packet ``p``'s parser accepts, with the
    same values for ``headers``, so a property "some packet is claimed" proven false on
    it is false on ``p``."""
    reach: dict[str, bool] = {}

    def needed(name: str) -> bool:
        if name in ("accept", "reject"):
            return False
        if name not in reach:
            st = p.state(name)
            reach[name] = False  # the parser is a DAG: no cycle reaches back here
            reach[name] = bool(set(st.extract) & headers) or any(needed(c.next) for c in st.cases) or needed(st.default)
        return reach[name]

    def keep(target: str) -> str:
        return target if target in ("accept", "reject") or needed(target) else "accept"

    states = tuple(
        dataclasses.replace(st, cases=tuple(dataclasses.replace(c, next=keep(c.next)) for c in st.cases),
                            default=keep(st.default), verify=None)
        for st in p.parser if needed(st.name) or st.name == "start"
    )
    return dataclasses.replace(p, parser=states)


def emitted(p: Program, run: Run, inputs: Inputs) -> tuple[Emitted, z3.BitVecRef]:
    """The bytes ``run`` sends (see :class:`Emitted`) and their length."""
    e = Emitted(p, run, inputs)
    return e, e.length


def condition(p: Program, e: Expr, env: Env, inputs: Inputs) -> z3.BoolRef:
    """``e`` (e.g. a classifier) evaluated on ``env``, without recording accesses."""
    enc = Encoder(p, inputs)
    return _bool(enc.ev(e, env, z3.BoolVal(True), (), ""))

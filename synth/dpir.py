"""DP-IR: the target-independent data-plane program, the waist of the toolkit.

A :class:`Program` is what every backend (v1model, TNA, XDP), the interpreter and the
Z3 encoder consume. It is deliberately small:

* **headers**: named instances of the header types of :mod:`mantra6g.synth.headers`
  (``eth``, ``ipv4``, ``outer_ipv4`` …) — field widths come from that one table;
* **metadata**: named bit fields, plus the fixed ``std.*`` fields every target has
  (``std.ingress_port``, ``std.egress_port``, ``std.drop``, ``std.pkt_len``);
* **parser**: states that extract headers and ``select`` on fields;
* **actions** built from a dozen primitives, **tables** with exact/lpm/ternary/range
  keys and entries, **registers/counters/meters**, and a **control** of table
  applies and conditionals;
* **deparse**: the order in which valid headers are emitted.

Semantics (the interpreter is the reference; backends emit what makes their target
agree with it): a packet whose egress port was never set is dropped (or handed to the
host after ``ToHost``); a parser ``reject`` or a packet too short for an extract drops
it; hashes are ``base + CRC-32 (big-endian concatenation of the inputs) mod size`` as
v1model's ``HashAlgorithm.crc32``; arithmetic wraps at the target field's width;
checksums are ordinary fields that the program keeps right itself (``OnesSum``,
written by :mod:`mantra6g.synth.checksums`), so nothing is recomputed at deparse time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from mantra6g import serde
from mantra6g.synth.headers import HEADERS, HeaderType

# ---------------------------------------------------------------- expressions


@serde.tagged("const")
@dataclass(frozen=True)
class Const:
    value: int
    width: int


@serde.tagged("ref")
@dataclass(frozen=True)
class Ref:
    """A field: ``header.field``, ``meta.name``, ``std.name``, or an action parameter
    ``param.name``."""

    path: str


@serde.tagged("binop")
@dataclass(frozen=True)
class BinOp:
    """``+ - & | ^ << >>`` (width of the left operand) or ``== != < <= > >= && ||`` (1 bit)."""

    op: str
    left: Expr
    right: Expr


@serde.tagged("unop")
@dataclass(frozen=True)
class UnOp:
    """``~`` (bitwise, same width) or ``!`` (logical, 1 bit)."""

    op: str
    operand: Expr


@serde.tagged("valid")
@dataclass(frozen=True)
class IsValid:
    header: str


@serde.tagged("cast")
@dataclass(frozen=True)
class Cast:
    """``(bit<width>) operand``: zero-extend or truncate."""

    operand: Expr
    width: int


@serde.tagged("ones_sum")
@dataclass(frozen=True)
class OnesSum:
    """The 16-bit one's-complement sum (RFC 1071) of 16-bit ``terms``, folded with
    end-around carry: ``~OnesSum(words)`` is an Internet checksum, and
    ``~OnesSum((~hc, ~old, new))`` its incremental update (RFC 1624, eqn. 3). A sum of
    terms that are not all zero is never 0x0000."""

    terms: tuple[Expr, ...]


Expr = Const | Ref | BinOp | UnOp | IsValid | Cast | OnesSum

def operands(e: Expr) -> tuple[Expr, ...]:
    """The expressions ``e`` is built from (none for a constant, a field or isValid())."""
    if isinstance(e, BinOp):
        return (e.left, e.right)
    if isinstance(e, (UnOp, Cast)):
        return (e.operand,)
    if isinstance(e, OnesSum):
        return e.terms
    return ()


def map_refs(e: Expr, fn) -> Expr:
    """``e`` with every field reference ``Ref(p)`` replaced by ``fn(p)`` (a path)."""
    if isinstance(e, Ref):
        return Ref(fn(e.path))
    if isinstance(e, BinOp):
        return BinOp(e.op, map_refs(e.left, fn), map_refs(e.right, fn))
    if isinstance(e, UnOp):
        return UnOp(e.op, map_refs(e.operand, fn))
    if isinstance(e, Cast):
        return Cast(map_refs(e.operand, fn), e.width)
    if isinstance(e, OnesSum):
        return OnesSum(tuple(map_refs(t, fn) for t in e.terms))
    return e  # Const, IsValid


ARITH_OPS = ("+", "-", "&", "|", "^", "<<", ">>")
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
LOGIC_OPS = ("&&", "||")

# ---------------------------------------------------------------- statements (primitives)


@serde.tagged("assign")
@dataclass(frozen=True)
class Assign:
    target: str
    value: Expr


@serde.tagged("set_valid")
@dataclass(frozen=True)
class SetValid:
    """Push a header: it becomes valid with every field zero (also when it was valid
    before: the old contents are gone) and is emitted."""

    header: str


@serde.tagged("set_invalid")
@dataclass(frozen=True)
class SetInvalid:
    """Pop a header: it is no longer emitted."""

    header: str


@serde.tagged("copy_header")
@dataclass(frozen=True)
class CopyHeader:
    """``dst = src`` for two instances of one header type, validity included."""

    dst: str
    src: str


@serde.tagged("drop")
@dataclass(frozen=True)
class Drop:
    pass


@serde.tagged("forward")
@dataclass(frozen=True)
class Forward:
    port: Expr


@serde.tagged("hash")
@dataclass(frozen=True)
class Hash:
    """``target = base + crc32(inputs) % size`` (v1model ``hash`` with ``HashAlgorithm.crc32``)."""

    target: str
    inputs: tuple[Expr, ...]
    size: int
    base: int = 0


@serde.tagged("register_read")
@dataclass(frozen=True)
class RegisterRead:
    target: str
    register: str
    index: Expr


@serde.tagged("register_write")
@dataclass(frozen=True)
class RegisterWrite:
    register: str
    index: Expr
    value: Expr


@serde.tagged("count")
@dataclass(frozen=True)
class Count:
    """Add one packet and the packet's bytes to ``counter[index]``."""

    counter: str
    index: Expr


GREEN, RED = 0, 2  # meter colours, as v1model's MeterColor_t numbers them


@serde.tagged("meter")
@dataclass(frozen=True)
class MeterExec:
    """Run ``meter[index]`` on this packet; ``target`` gets 0 (green) or 2 (red).

    The bucket holds ``burst_bytes`` and refills at ``rate_bps``, in integer
    bit-nanoseconds (see :func:`mantra6g.synth.interp.refill`), so that every target
    computes the same colour."""

    meter: str
    index: Expr
    target: str


@serde.tagged("timestamp")
@dataclass(frozen=True)
class ReadTimestamp:
    """``target`` = the packet's ingress time in ns (the interpreter's ``now``)."""

    target: str


@serde.tagged("to_host")
@dataclass(frozen=True)
class ToHost:
    """Hand the packet to the device's own network stack (XDP: ``XDP_PASS``) unless it
    is forwarded or dropped. Only hosts have one; P4 targets refuse it."""


@serde.tagged("if")
@dataclass(frozen=True)
class If:
    cond: Expr
    then: tuple[Stmt, ...] = ()
    orelse: tuple[Stmt, ...] = ()


@serde.tagged("apply")
@dataclass(frozen=True)
class Apply:
    """Apply a table; run ``on_hit`` or ``on_miss`` after its action."""

    table: str
    on_hit: tuple[Stmt, ...] = ()
    on_miss: tuple[Stmt, ...] = ()


@serde.tagged("call")
@dataclass(frozen=True)
class Call:
    """Run an action directly with constant arguments."""

    action: str
    args: tuple[int, ...] = ()


Stmt = (
    Assign
    | SetValid
    | SetInvalid
    | CopyHeader
    | Drop
    | Forward
    | Hash
    | RegisterRead
    | RegisterWrite
    | Count
    | MeterExec
    | ReadTimestamp
    | ToHost
    | If
    | Apply
    | Call
)

# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class HeaderInstance:
    name: str
    type: str  # a key of HEADERS

    @property
    def header_type(self) -> HeaderType:
        return HEADERS[self.type]


@dataclass(frozen=True)
class MetaField:
    name: str
    width: int


# Every target has these; backends map them to their own intrinsic metadata.
STD_FIELDS = {"ingress_port": 9, "egress_port": 9, "drop": 1, "pkt_len": 16}
# Port 511 is BMv2's drop port and outside XDP's port map: no program may send there.
MAX_PORT = 510


@dataclass(frozen=True)
class ParserCase:
    """Take ``next`` when every select key matches ``value`` under ``mask``."""

    values: tuple[int, ...]
    next: str
    masks: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ParserState:
    """Extract headers, check ``verify`` (reject the packet when it is false: P4's
    ``verify``; it may read the extracted fields and ``std.pkt_len``), then go to the
    first case whose values match the ``select`` keys, else to ``default``."""

    name: str
    extract: tuple[str, ...] = ()
    select: tuple[Expr, ...] = ()
    cases: tuple[ParserCase, ...] = ()
    default: str = "accept"  # a state name, "accept" or "reject"
    verify: Expr | None = None


@dataclass(frozen=True)
class ActionParam:
    name: str
    width: int


@dataclass(frozen=True)
class Action:
    name: str
    params: tuple[ActionParam, ...] = ()
    body: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class ActionCall:
    action: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class TableKey:
    field: str
    match: str  # "exact" | "lpm" | "ternary" | "range"


@serde.tagged("exact")
@dataclass(frozen=True)
class Exact:
    value: int


@serde.tagged("lpm")
@dataclass(frozen=True)
class Lpm:
    value: int
    prefix_len: int


@serde.tagged("ternary")
@dataclass(frozen=True)
class Ternary:
    value: int
    mask: int


@serde.tagged("range")
@dataclass(frozen=True)
class Range:
    low: int
    high: int


KeyMatch = Exact | Lpm | Ternary | Range


@dataclass(frozen=True)
class Entry:
    """A table entry; :func:`ranked` says which of several matching entries wins."""

    matches: tuple[KeyMatch, ...]
    action: ActionCall
    priority: int = 0


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[TableKey, ...]
    actions: tuple[str, ...]
    default: ActionCall
    size: int
    entries: tuple[Entry, ...] = ()
    # Entries fixed at compile time (P4 `const entries`); otherwise installed at run time.
    const: bool = False


def ranks_by_priority(t: Table) -> bool:
    """Whether ``t``'s entries are ranked by priority: a table with a ternary or range
    key, or with more than one LPM key (P4Runtime's rule, spec §9.1.1)."""
    kinds = [k.match for k in t.keys]
    return any(k in ("ternary", "range") for k in kinds) or kinds.count("lpm") > 1


def ranked(t: Table, entries: tuple[Entry, ...] | None = None) -> list[Entry]:
    """``t``'s entries (or ``entries`` for it) best first: the first that matches a
    packet wins. This is the one ranking rule that the interpreter, the Z3 encoder and
    every backend follow:

    * priority tables (:func:`ranks_by_priority`): the highest ``priority`` first; an LPM
      key among them is just a mask;
    * a table with one LPM key (and exact ones): the longest prefix first;
    * exact tables: each key once (the validator refuses duplicates);

    ties keep the entries' order. Targets that need distinct priorities get them from
    this order (the best entry the highest)."""
    entries = t.entries if entries is None else entries
    if ranks_by_priority(t):
        order = sorted(range(len(entries)), key=lambda i: -entries[i].priority)
    elif any(k.match == "lpm" for k in t.keys):
        def prefix(i: int) -> int:
            return sum(m.prefix_len for m in entries[i].matches if isinstance(m, Lpm))

        order = sorted(range(len(entries)), key=lambda i: -prefix(i))
    else:
        order = list(range(len(entries)))
    return [entries[i] for i in order]


@dataclass(frozen=True)
class Register:
    name: str
    width: int
    size: int


@dataclass(frozen=True)
class Counter:
    name: str
    size: int


@dataclass(frozen=True)
class Meter:
    """A single-rate token bucket: ``rate_bps`` with depth ``burst_bytes``."""

    name: str
    size: int
    rate_bps: int
    burst_bytes: int


@dataclass(frozen=True)
class Program:
    name: str
    headers: tuple[HeaderInstance, ...]
    parser: tuple[ParserState, ...]
    deparse: tuple[str, ...]
    metadata: tuple[MetaField, ...] = ()
    actions: tuple[Action, ...] = ()
    tables: tuple[Table, ...] = ()
    registers: tuple[Register, ...] = ()
    counters: tuple[Counter, ...] = ()
    meters: tuple[Meter, ...] = ()
    control: tuple[Stmt, ...] = ()
    doc: str = field(default="", compare=False)

    # -- lookups
    def header(self, name: str) -> HeaderInstance:
        return _find(self.headers, name, "header")

    def action(self, name: str) -> Action:
        return _find(self.actions, name, "action")

    def table(self, name: str) -> Table:
        return _find(self.tables, name, "table")

    def register(self, name: str) -> Register:
        return _find(self.registers, name, "register")

    def counter(self, name: str) -> Counter:
        return _find(self.counters, name, "counter")

    def meter(self, name: str) -> Meter:
        return _find(self.meters, name, "meter")

    def state(self, name: str) -> ParserState:
        return _find(self.parser, name, "parser state")

    def width_of(self, path: str, params: tuple[ActionParam, ...] = ()) -> int:
        """Width of a field path, or KeyError if the path names nothing."""
        scope, _, name = path.partition(".")
        if scope == "std" and name in STD_FIELDS:
            return STD_FIELDS[name]
        if scope == "meta":
            return _find(self.metadata, name, "metadata field").width
        if scope == "param":
            return _find(params, name, "action parameter").width
        f = self.header(scope).header_type.field(name)
        if f is None:
            raise KeyError(path)
        return f.width

    def to_json(self) -> str:
        return json.dumps(serde.to_json(self), indent=2)

    @staticmethod
    def from_json(text: str) -> Program:
        return serde.from_json(Program, json.loads(text))


def _find(items, name: str, what: str):
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"no {what} '{name}'")


# ---------------------------------------------------------------- text


def render_expr(e: Expr) -> str:
    if isinstance(e, Const):
        return f"{e.width}w{e.value:#x}" if e.width > 8 else f"{e.width}w{e.value}"
    if isinstance(e, Ref):
        return e.path
    if isinstance(e, IsValid):
        return f"{e.header}.isValid()"
    if isinstance(e, Cast):
        return f"(bit<{e.width}>) {render_expr(e.operand)}"
    if isinstance(e, OnesSum):
        return f"onesum({', '.join(render_expr(t) for t in e.terms)})"
    if isinstance(e, UnOp):
        return f"{e.op}({render_expr(e.operand)})"
    return f"({render_expr(e.left)} {e.op} {render_expr(e.right)})"


def _render_stmt(s: Stmt, depth: int) -> list[str]:
    pad = "    " * depth
    if isinstance(s, If):
        out = [f"{pad}if {render_expr(s.cond)} {{"]
        out += [ln for t in s.then for ln in _render_stmt(t, depth + 1)]
        if s.orelse:
            out.append(f"{pad}}} else {{")
            out += [ln for t in s.orelse for ln in _render_stmt(t, depth + 1)]
        return out + [f"{pad}}}"]
    if isinstance(s, Apply):
        head = f"{pad}apply {s.table}"
        if not s.on_hit and not s.on_miss:
            return [head]
        out = [f"{head} {{"]
        for label, body in (("hit", s.on_hit), ("miss", s.on_miss)):
            if body:
                out.append(f"{pad}  {label}:")
                out += [ln for t in body for ln in _render_stmt(t, depth + 1)]
        return out + [f"{pad}}}"]
    simple = {
        Assign: lambda s: f"{s.target} = {render_expr(s.value)}",
        SetValid: lambda s: f"push {s.header}",
        SetInvalid: lambda s: f"pop {s.header}",
        CopyHeader: lambda s: f"{s.dst} = {s.src}  (whole header)",
        Drop: lambda s: "drop",
        Forward: lambda s: f"forward {render_expr(s.port)}",
        Hash: lambda s: f"{s.target} = {s.base} + crc32({', '.join(render_expr(i) for i in s.inputs)}) % {s.size}",
        RegisterRead: lambda s: f"{s.target} = {s.register}[{render_expr(s.index)}]",
        RegisterWrite: lambda s: f"{s.register}[{render_expr(s.index)}] = {render_expr(s.value)}",
        Count: lambda s: f"count {s.counter}[{render_expr(s.index)}]",
        MeterExec: lambda s: f"{s.target} = meter {s.meter}[{render_expr(s.index)}]",
        ReadTimestamp: lambda s: f"{s.target} = now_ns",
        ToHost: lambda s: "to host",
        Call: lambda s: f"{s.action}({', '.join(map(str, s.args))})",
    }
    return [pad + simple[type(s)](s)]


def render_match(m: KeyMatch) -> str:
    if isinstance(m, Exact):
        return f"{m.value:#x}"
    if isinstance(m, Lpm):
        return f"{m.value:#x}/{m.prefix_len}"
    if isinstance(m, Ternary):
        return "_" if m.mask == 0 else f"{m.value:#x}&&&{m.mask:#x}"
    return f"{m.low}..{m.high}"


def pretty(p: Program) -> str:
    """The program as readable text (P4-like pseudocode), for people and diffs."""
    out = [f"program {p.name}" + (f"  // {p.doc}" if p.doc else "")]
    out.append("headers " + ", ".join(h.name if h.name == h.type else f"{h.name}: {h.type}" for h in p.headers))
    if p.metadata:
        out.append("metadata " + ", ".join(f"{m.name}: bit<{m.width}>" for m in p.metadata))
    for r in p.registers:
        out.append(f"register {r.name}: bit<{r.width}>[{r.size}]")
    for c in p.counters:
        out.append(f"counter {c.name}[{c.size}]")
    for m in p.meters:
        out.append(f"meter {m.name}[{m.size}] rate {m.rate_bps} bps burst {m.burst_bytes} B")
    out.append("parser {")
    for st in p.parser:
        sel = f" select ({', '.join(render_expr(e) for e in st.select)})" if st.select else ""
        out.append(f"    state {st.name}: extract {', '.join(st.extract) or '-'}{sel}")
        for c in st.cases:
            masks = f" &&& {c.masks}" if c.masks else ""
            out.append(f"        {', '.join(hex(v) for v in c.values)}{masks} -> {c.next}")
        out.append(f"        default -> {st.default}")
    out.append("}")
    for a in p.actions:
        params = ", ".join(f"{x.name}: bit<{x.width}>" for x in a.params)
        out.append(f"action {a.name}({params}) {{")
        out += [ln for s in a.body for ln in _render_stmt(s, 1)]
        out.append("}")
    for t in p.tables:
        keys = ", ".join(f"{k.field}: {k.match}" for k in t.keys)
        out.append(f"{'const ' if t.const else ''}table {t.name} [{keys}] size {t.size} default {t.default.action}{t.default.args or ''} {{")
        for e in t.entries:
            prio = f" @{e.priority}" if e.priority else ""
            out.append(f"    {', '.join(render_match(m) for m in e.matches)}{prio} -> {e.action.action}{e.action.args or ''}")
        out.append("}")
    out.append("control {")
    out += [ln for s in p.control for ln in _render_stmt(s, 1)]
    out.append("}")
    out.append("deparse " + ", ".join(p.deparse))
    return "\n".join(out) + "\n"


def walk_body(body) -> Iterator[Stmt]:
    """Every statement of ``body``, nested ones (in ``If`` and ``Apply``) included."""
    for s in body:
        yield s
        if isinstance(s, If):
            yield from walk_body(s.then)
            yield from walk_body(s.orelse)
        elif isinstance(s, Apply):
            yield from walk_body(s.on_hit)
            yield from walk_body(s.on_miss)


def walk(p: Program) -> Iterator[Stmt]:
    """Every statement of the control and the actions, nested ones included."""
    yield from walk_body(p.control)
    for a in p.actions:
        yield from walk_body(a.body)

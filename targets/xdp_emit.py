"""The XDP backend's C printer: one DP-IR program to one ``SEC("xdp")`` function.

The shape of what it prints (``docs/xdp.md`` has the reasons):

* **parse** with direct packet access: each parser state checks that its headers fit
  (``data + off + n > data_end``: too short, ``XDP_DROP``), records where they start and
  loads into local variables only the fields the program reads or writes;
* **control** on those locals: a field of an invalid header is 0 (the locals are zeroed
  whenever a header is invalid), metadata are locals too, tables that stay maps are
  looked up with keys built from the locals, actions are inlined where they run;
* **writes go to the packet at once** where the header still holds the bytes it
  arrived with (an in-place store, read-modify-write for sub-byte fields), so a packet
  whose headers did not move needs no deparse at all;
* **deparse** only where headers were pushed, popped or moved (:mod:`mantra6g.synth.layout`
  says which, per parse path): ``bpf_xdp_adjust_head`` by the size difference, the moved
  headers copied, the new ones written from their locals, the rest left where it is;
* the clock (``bpf_ktime_get_ns``) is read on the first use only, the ingress port on
  the first use only (a one-entry cache in front of the ``mantra_port_of`` hash).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Apply,
    Assign,
    BinOp,
    Call,
    Cast,
    Const,
    CopyHeader,
    Count,
    Drop,
    Expr,
    Forward,
    Hash,
    If,
    IsValid,
    MeterExec,
    OnesSum,
    Program,
    ReadTimestamp,
    Ref,
    RegisterRead,
    RegisterWrite,
    SetInvalid,
    SetValid,
    Stmt,
    Table,
    ToHost,
    UnOp,
)
from mantra6g.synth.dpir_check import VALID_SUFFIX, width
from mantra6g.synth.interp import TOKEN_SCALE
from mantra6g.synth.layout import FRESH, GONE, Layout, Tracker, join

HASH_MAX = 64  # bytes of hash input
INDENT = "    "
RELOAD = "/*reload*/"  # a placeholder line of Printer.control: reload this header's pointer
# The valid bits go through the per-CPU scratch map again before the deparse, which
# reads them: else what every test of a header's validity taught the verifier about the
# register keeps its states apart up to there (a pop before a scanned table multiplied
# them past the 1M-instruction limit); map contents it does not track.
VALID = "*(volatile __u32 *)&sc->valid"


class XdpBackendError(MantraError):
    """The DP-IR program uses something the XDP backend cannot express (yet)."""


# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class Part:
    """A field's local variable: all of it, or (wider than 64 bits) one 64-bit half."""

    cname: str
    bit_offset: int  # from the header's start
    width: int


def field_parts(p: Program, header: str, name: str) -> list[Part]:
    off = 0
    for f in p.header(header).header_type.fields:
        if f.name == name:
            base = f"{header}_{name}"
            if f.width <= 64:
                return [Part(base, off, f.width)]
            if f.width % 64 or off % 8:
                raise XdpBackendError(f"{header}.{name}: wide fields must be whole 64-bit words")
            return [Part(f"{base}_{i}", off + 64 * i, 64) for i in range(f.width // 64)]
        off += f.width
    raise XdpBackendError(f"no field {header}.{name}")


def _pieces(nbytes: int) -> list[tuple[int, int]]:
    """(byte offset, size) of the 8/4/2/1-byte accesses covering ``nbytes``."""
    out, off = [], 0
    for size in (8, 4, 2, 1):
        while nbytes - off >= size:
            out.append((off, size))
            off += size
    return out


def load(ptr: str, byte_off: int, nbytes: int) -> str:
    """``nbytes`` at ``ptr + byte_off`` as one big-endian number."""
    terms = []
    for off, size in _pieces(nbytes):
        shift = 8 * (nbytes - off - size)
        term = f"ld{8 * size}({ptr} + {byte_off + off})"
        terms.append(f"({term} << {shift})" if shift else term)
    return terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"


def store(ptr: str, byte_off: int, nbytes: int, value: str) -> list[str]:
    """Store the low ``8 * nbytes`` bits of ``value`` big-endian at ``ptr + byte_off``."""
    out = []
    for off, size in _pieces(nbytes):
        shift = 8 * (nbytes - off - size)
        v = f"({value}) >> {shift}" if shift else value
        out.append(f"st{8 * size}({ptr} + {byte_off + off}, {v});")
    return out


def load_part(ptr: str, part: Part) -> str:
    first, last = part.bit_offset // 8, (part.bit_offset + part.width - 1) // 8
    n = last - first + 1
    raw = load(ptr, first, n)
    shift = 8 * n - (part.bit_offset % 8) - part.width
    if shift == 0 and part.width == 8 * n:
        return raw
    if shift:
        raw = f"({raw} >> {shift})"
    return f"({raw} & {mask(part.width)})"


def store_part(ptr: str, part: Part, value: str) -> list[str]:
    """Write a field into the packet; a field that does not fill its bytes is merged
    into the bytes that hold it (read-modify-write)."""
    first, last = part.bit_offset // 8, (part.bit_offset + part.width - 1) // 8
    n = last - first + 1
    shift = 8 * n - (part.bit_offset % 8) - part.width
    if shift == 0 and part.width == 8 * n:
        return store(ptr, first, n, value)
    m = ((1 << part.width) - 1) << shift
    old = load(ptr, first, n)
    return store(ptr, first, n, f"({old} & {((1 << 8 * n) - 1) & ~m:#x}ULL) | ((({value}) << {shift}) & {m:#x}ULL)")


def mask(w: int) -> str:
    return f"{(1 << w) - 1:#x}ULL"


# ---------------------------------------------------------------- what the program uses


def _exprs_of(s: Stmt):
    if isinstance(s, Assign):
        yield s.value
    elif isinstance(s, Forward):
        yield s.port
    elif isinstance(s, Hash):
        yield from s.inputs
    elif isinstance(s, (RegisterRead, Count, MeterExec)):
        yield s.index
    elif isinstance(s, RegisterWrite):
        yield s.index
        yield s.value
    elif isinstance(s, If):
        yield s.cond


def _walk(body):
    for s in body:
        yield s
        if isinstance(s, If):
            yield from _walk(s.then)
            yield from _walk(s.orelse)
        elif isinstance(s, Apply):
            yield from _walk(s.on_hit)
            yield from _walk(s.on_miss)


def _refs(e: Expr):
    if isinstance(e, Ref):
        yield e.path
    for o in dpir.operands(e):
        yield from _refs(o)


def _target(s: Stmt) -> str | None:
    if isinstance(s, (Assign, Hash, RegisterRead, MeterExec, ReadTimestamp)):
        return s.target
    return None


@dataclass
class Usage:
    """Which fields of each header instance the program needs, and a few facts about it."""

    declared: dict[str, set[str]]  # fields that have a local variable
    read: dict[str, set[str]]  # fields read (in the parser, the control or a table key)
    copies: list[tuple[str, str]]  # (dst, src) of every CopyHeader
    reads_ingress_port: bool  # the ingress port's value is read (not just sent back to)
    reads_egress_port: bool
    hashes: bool
    layout_changes: bool


def _closure(sets: dict[str, set[str]], edges: list[tuple[str, str]]) -> None:
    """Grow ``sets`` until ``sets[b] <= sets[a]`` for every edge (a, b)."""
    changed = True
    while changed:
        changed = False
        for a, b in edges:
            if not sets[b] <= sets[a]:
                sets[a] |= sets[b]
                changed = True


def usage(p: Program) -> Usage:
    headers = [h.name for h in p.headers]
    read: dict[str, set[str]] = {h: set() for h in headers}
    written: dict[str, set[str]] = {h: set() for h in headers}
    stmts = list(_walk(p.control)) + [s for a in p.actions for s in _walk(a.body)]
    exprs = [e for s in stmts for e in _exprs_of(s)]
    for st in p.parser:
        exprs += list(st.select) + ([st.verify] if st.verify is not None else [])
    exprs += [Ref(k.field) for t in p.tables for k in t.keys if not k.field.endswith("." + VALID_SUFFIX)]
    for e in exprs:
        for path in _refs(e):
            scope, _, name = path.partition(".")
            if scope in read:
                read[scope].add(name)
    # Forward(std.ingress_port) needs no value: the packet goes back out with XDP_TX.
    value_exprs = [e for s in stmts for e in _exprs_of(s) if not (isinstance(s, Forward) and e == Ref("std.ingress_port"))]
    value_exprs += [Ref(k.field) for t in p.tables for k in t.keys]
    std_reads = {path for e in value_exprs for path in _refs(e) if path.startswith("std.")}
    for s in stmts:
        t = _target(s)
        if t is not None and t.partition(".")[0] in written:
            written[t.partition(".")[0]].add(t.partition(".")[2])
    copies = [(s.dst, s.src) for s in stmts if isinstance(s, CopyHeader)]
    # What a header's arriving bytes must give its locals: the fields read, and the
    # fields written (values travel with a copied header, so do its sources' writes).
    dirty = {h: set(written[h]) for h in headers}
    _closure(dirty, copies)
    loaded = {h: read[h] | dirty[h] for h in headers}
    _closure(loaded, [(s, d) for d, s in copies])
    # A pushed header is written whole from its locals: all its fields have one.
    pushed = {s.header for s in stmts if isinstance(s, SetValid)}
    changed = True
    while changed:
        changed = False
        for d, s in copies:
            if s in pushed and d not in pushed:
                pushed.add(d)
                changed = True
    declared = {h: set(loaded[h]) | ({f.name for f in p.header(h).header_type.fields} if h in pushed else set())
                for h in headers}
    _closure(declared, [(s, d) for d, s in copies])
    return Usage(
        declared=declared,
        read=read,
        copies=copies,
        reads_ingress_port="std.ingress_port" in std_reads,
        reads_egress_port="std.egress_port" in std_reads,
        hashes=any(isinstance(s, Hash) for s in stmts),
        layout_changes=any(isinstance(s, (SetValid, SetInvalid, CopyHeader)) for s in stmts),
    )


# ---------------------------------------------------------------- the printer


# A ternary/range table kept in a map is scanned in priority order: inline up to this
# many entries, beyond it in a bpf_loop callback (kernel 5.17+).
INLINE_SCAN = 256


@dataclass
class _Env:
    """What an action's parameters are where its body is inlined (C expressions)."""

    params: dict[str, str] = field(default_factory=dict)
    widths: tuple[dpir.ActionParam, ...] = ()
    # "tkey.N": (C name, width); a key wider than 64 bits names its words, space-separated
    keys: dict[str, tuple[str, int]] = field(default_factory=dict)


class Printer:
    def __init__(self, p: Program, test_hooks: bool, forms: dict[str, str] | None = None):
        self.p = p
        forms = forms or {}
        self.arrays = {t for t, f in forms.items() if f == "array"}  # const tables in read-only data
        self.trees = {t for t, f in forms.items() if f == "tree"}  # const tables as decision trees
        self.indexed = {t for t, f in forms.items() if f == "indexed"}  # updatable arrays indexed by the key
        self.test_hooks = test_hooks
        self.hidx = {h.name: i for i, h in enumerate(p.headers)}
        if len(p.headers) > 32:
            raise XdpBackendError("more than 32 header instances")
        self.use = usage(p)
        self.tracker = Tracker(p)
        self.layout_ids: dict[tuple[int, ...], int] = {}
        self.lazy: dict[str, set[str]] = {h.name: set() for h in p.headers}
        self.tmp = 0
        self.crc_bytes = 0  # longest hash input: the CRC tables needed
        self.tables = {t.name: t for t in p.tables}
        offsets: dict[str, set[int]] = {}
        for path in self.tracker.paths:
            for h, _ in path.extracts:
                offsets.setdefault(h, set()).add(path.offset(h))
        # Where a header always starts at the same place it is a constant, else a variable.
        self.fixed = {h: next(iter(o)) for h, o in offsets.items() if len(o) == 1}
        self.moving = sorted((h for h in offsets if h not in self.fixed), key=self.hidx.get)
        self.reached: set[str] = set()  # moving headers whose offset the control or deparse uses
        self.touched: set[str] = set()  # those the statement being printed reaches
        self.shortest = min((path.length for path in self.tracker.paths), default=0)

    def fresh(self, stem: str) -> str:
        self.tmp += 1
        return f"{stem}{self.tmp}"

    def off(self, h: str) -> str:
        """Where header ``h``'s arriving bytes start (bytes from the packet's start)."""
        return str(self.fixed[h]) if h in self.fixed else f"o_{h}"

    def ptr(self, h: str) -> str:
        """Header ``h``'s arriving bytes. A header that moves between parse paths is
        reached through one pointer, set once: a bounds check on it then covers every
        later access, however clang merges or reorders them (the verifier tracks a
        pointer's checked range by its identity, not by how it was computed)."""
        if h in self.fixed:
            return f"(data + {self.fixed[h]})"
        self.reached.add(h)
        self.touched.add(h)
        return f"p_{h}"

    def control(self, start) -> tuple[list[str], tuple[Layout, ...]]:
        """The control's statements (the classifier, then each NF in turn). Before one
        that reaches a header an earlier one reached too, that header's pointer is taken
        again from the scratch map: what the earlier statement's bounds checks proved
        differs between its paths (checked on one, not on another), and a pointer that
        carries it would have the verifier check what follows once per such path (a
        second load balancer after a first: twice the work). Each access has its own
        check (:meth:`bounds`), so nothing relies on an earlier one."""
        out, layouts, seen, env = [], start, set(), _Env()
        for s in self.p.control:
            self.touched = set()
            lines, layouts = self.stmts((s,), layouts, env)
            out += [f"{RELOAD}{h}" for h in sorted(self.touched & seen, key=self.hidx.get)] + lines
            seen |= self.touched
        return out, layouts

    def reloaded(self, lines: list[str]) -> list[str]:
        """``lines`` with each pointer reload of :meth:`control` written out (the scratch
        map's slots are known once everything is printed)."""
        slot = {h: i for i, h in enumerate(self.reached_offsets())}
        return [f"p_{x[len(RELOAD):]} = data + (*(volatile __u32 *)&sc->o[{slot[x[len(RELOAD):]]}] & 0x1ff);"
                if x.startswith(RELOAD) else x for x in lines]

    def bounds(self, h: str, end: int) -> list[str]:
        """The check that lets the verifier accept an access to bytes [0, end) of ``h``
        (the parser checked them; after :meth:`forget` the verifier no longer knows it).
        Not needed where every path parsed that far (the Ethernet header)."""
        if h in self.fixed and self.fixed[h] + end <= self.shortest:
            return []
        return [f"if ({self.ptr(h)} + {end} > data_end)", f"{INDENT}return XDP_ABORTED; /* cannot happen */"]

    def forget(self) -> list[str]:
        """After the parser: what differs between its paths (validity, offsets) goes
        through the per-CPU scratch map, so that the verifier checks the control once
        for all parse paths instead of once per path (it keeps no map contents)."""
        reached = self.reached_offsets()
        out = ["/* the verifier checks what follows once, not once per parse path: see mantra_scratch */",
               "sc->valid = valid;", "sc->off = off;"]
        out += [f"sc->o[{i}] = o_{h};" for i, h in enumerate(reached)]
        out += [f"valid = {VALID};", "off = *(volatile __u32 *)&sc->off & 0x1ff;"]
        out += [f"o_{h} = *(volatile __u32 *)&sc->o[{i}] & 0x1ff;" for i, h in enumerate(reached)]
        return out + [f"p_{h} = data + o_{h};" for h in reached]

    def reached_offsets(self) -> list[str]:
        """The moving headers whose offsets the program uses after the parser (known once
        the control and deparse are printed); the others' offsets are not kept."""
        return [h for h in self.moving if h in self.reached]

    def layout_id(self, content: tuple[int, ...]) -> int:
        return self.layout_ids.setdefault(content, len(self.layout_ids))

    # ------------------------------------------------------------ expressions
    def local(self, header: str, name: str) -> str:
        parts = field_parts(self.p, header, name)
        if len(parts) != 1:
            raise XdpBackendError(f"{header}.{name} is wider than 64 bits: the XDP backend only compares such "
                                  "fields with constants (a condition, or a const table's key)")
        return parts[0].cname

    def width(self, e: Expr, env: _Env) -> int:
        if isinstance(e, Ref) and e.path in env.keys:
            return env.keys[e.path][1]
        return width(self.p, e, env.widths)

    def valid(self, header: str) -> str:
        return f"((valid >> {self.hidx[header]}) & 1)"

    def expr(self, e: Expr, env: _Env) -> str:
        if isinstance(e, Const):
            if e.width > 64:
                raise XdpBackendError("constants wider than 64 bits appear only in wide comparisons")
            return f"{e.value}ULL"
        if isinstance(e, Ref):
            scope, _, name = e.path.partition(".")
            if scope == "param":
                return f"({env.params[name]})"
            if scope == "tkey":
                return env.keys[e.path][0]
            if scope == "meta":
                return f"m_{name}"
            if scope == "std":
                return "INGRESS_PORT()" if name == "ingress_port" else f"std_{name}"
            return self.local(scope, name)
        if isinstance(e, IsValid):
            return f"(__u64){self.valid(e.header)}"
        if isinstance(e, Cast):
            return f"(({self.expr(e.operand, env)}) & {mask(e.width)})"
        if isinstance(e, OnesSum):
            return f"ones_fold({' + '.join(f'(({self.expr(t, env)}) & 0xffff)' for t in e.terms)})"
        if isinstance(e, UnOp):
            inner = self.expr(e.operand, env)
            if e.op == "!":
                return f"(__u64)!({inner})"
            return f"(~({inner}) & {mask(self.width(e.operand, env))})"
        if e.op in dpir.COMPARE_OPS and self._wide(e, env):
            return self._wide_compare(e, env)
        if e.op == "&&":
            return f"(__u64)(({self.expr(e.left, env)}) && ({self.expr(e.right, env)}))"
        if e.op == "||":
            return f"(__u64)(({self.expr(e.left, env)}) || ({self.expr(e.right, env)}))"
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        if e.op in dpir.COMPARE_OPS:
            return f"(__u64)(({a}) {e.op} ({b}))"
        w = self.width(e.left, env)
        if e.op in ("<<", ">>"):
            return f"(({b}) >= {w} ? 0 : ((({a}) {e.op} ({b})) & {mask(w)}))"
        return f"((({a}) {e.op} ({b})) & {mask(w)})"

    def _words(self, e: Expr | None, env: _Env) -> list[str] | None:
        """The C names of the 64-bit words (most significant first) of a field or a
        tree's key copy wider than 64 bits; None for anything else."""
        if not isinstance(e, Ref):
            return None
        scope, _, name = e.path.partition(".")
        if scope == "tkey" and e.path in env.keys and env.keys[e.path][1] > 64:
            return env.keys[e.path][0].split()
        if scope in self.hidx and self.p.width_of(e.path) > 64:
            return [part.cname for part in field_parts(self.p, scope, name)]
        return None

    def _wide(self, e: BinOp, env: _Env) -> bool:
        return any(self._words(x, env) for x in (e.left, e.right, getattr(e.left, "left", None)))

    def _wide_compare(self, e: BinOp, env: _Env) -> str:
        """``ref OP C`` or ``(ref & M) ==/!= C`` on a field wider than 64 bits, word by
        word (an order compares the words lexicographically)."""
        left, right = e.left, e.right
        m = None
        if isinstance(left, BinOp) and left.op == "&" and isinstance(left.right, Const):
            left, m = left.left, left.right.value
        words = self._words(left, env)
        if words is None or not isinstance(right, Const) or (m is not None and e.op not in ("==", "!=")):
            raise XdpBackendError("fields wider than 64 bits are compared only with constants")
        n = len(words)
        top = (1 << 64) - 1
        value = [(right.value >> 64 * (n - 1 - i)) & top for i in range(n)]
        if e.op in ("==", "!="):
            full = (1 << 64 * n) - 1 if m is None else m
            mask = [(full >> 64 * (n - 1 - i)) & top for i in range(n)]
            terms = [f"(({w} & {pm:#x}ULL) == {pv & pm:#x}ULL)" for w, pm, pv in zip(words, mask, value) if pm]
            test = " && ".join(terms) or "1"
            return f"(__u64)({test})" if e.op == "==" else f"(__u64)!({test})"
        rel = e.op[0]  # < or >: strict on every word but the last
        test = f"{words[-1]} {e.op} {value[-1]:#x}ULL"
        for w, v in zip(reversed(words[:-1]), reversed(value[:-1])):
            test = f"({w} {rel} {v:#x}ULL || ({w} == {v:#x}ULL && {test}))"
        return f"(__u64)({test})"

    # ------------------------------------------------------------ statements
    def stmts(self, body, layouts, env: _Env) -> tuple[list[str], tuple[Layout, ...]]:
        out: list[str] = []
        for s in body:
            lines, layouts = self.stmt(s, layouts, env)
            out += lines
        return out, layouts

    def assign(self, target: str, value: str, layouts, w: int | None = None) -> list[str]:
        scope, _, name = target.partition(".")
        if scope == "meta":
            return [f"m_{name} = ({value}) & {mask(self.p.width_of(target))};"]
        if scope == "std":
            out = [f"std_{name} = ({value}) & {mask(self.p.width_of(target))};"]
            if name == "egress_port":
                out.append("to_ingress = 0;")
            return out
        known = self.tracker.decide(layouts, IsValid(scope))
        if known is False:
            return [f"/* {target}: the header is invalid here, the write has no effect */"]
        local = self.local(scope, name)
        body = [f"{local} = ({value}) & {mask(self.p.width_of(target))};"]
        src = self._sole_holder(layouts, scope)
        contents = {lay.content[self.hidx[scope]] for lay in layouts}
        if not layouts or contents == {FRESH}:
            pass  # dropped whatever follows, or a pushed header: written whole at the deparse
        elif src is not None:
            (part,) = field_parts(self.p, scope, name)
            body += self.bounds(src, (part.bit_offset + part.width + 7) // 8)
            body += store_part(self.ptr(src), part, local)
        else:
            self.lazy[scope].add(name)  # written back where the header leaves
        if known:
            return body
        return [f"if ({self.valid(scope)}) {{", *(INDENT + x for x in body), "}"]

    def _sole_holder(self, layouts, header: str) -> str | None:
        """The header whose arriving bytes ``header`` holds in every layout, when no other
        instance holds them too: a write can then go straight into the packet."""
        i = self.hidx[header]
        srcs = {lay.content[i] for lay in layouts}
        if len(srcs) != 1:
            return None
        (src,) = srcs
        if src < 0:
            return None
        if any(c == src for lay in layouts for j, c in enumerate(lay.content) if j != i):
            return None
        return self.p.headers[src].name

    def zero_fields(self, header: str) -> list[str]:
        out = []
        for name in sorted(self.use.declared[header]):
            out += [f"{part.cname} = 0;" for part in field_parts(self.p, header, name)]
        return out

    def layout_step(self, s: Stmt, layouts) -> tuple[list[str], tuple[Layout, ...]]:
        after = self.tracker.step(layouts, s)
        if not self.use.layout_changes or isinstance(s, Drop):
            return [], after
        moves = []
        for lay in layouts:
            (new,) = self.tracker.step((lay,), s)
            moves.append((self.layout_id(lay.content), self.layout_id(new.content)))
        moves = [(a, b) for a, b in moves if a != b]
        if not moves:
            return [], after
        if len(layouts) == 1:
            return [f"layout = {moves[0][1]};"], after
        out = ["switch (layout) {"] + [f"case {a}: layout = {b}; break;" for a, b in moves] + ["}"]
        return out, after

    def stmt(self, s: Stmt, layouts, env: _Env) -> tuple[list[str], tuple[Layout, ...]]:
        p = self.p
        if isinstance(s, Assign):
            return self.assign(s.target, self.expr(s.value, env), layouts), layouts
        if isinstance(s, SetValid):
            lines, after = self.layout_step(s, layouts)
            i = self.hidx[s.header]
            return [f"valid |= BIT({i}); /* push {s.header} */", *self.zero_fields(s.header), *lines], after
        if isinstance(s, SetInvalid):
            lines, after = self.layout_step(s, layouts)
            i = self.hidx[s.header]
            return [f"valid &= ~BIT({i}); /* pop {s.header} */", *self.zero_fields(s.header), *lines], after
        if isinstance(s, CopyHeader):
            lines, after = self.layout_step(s, layouts)
            d, r = self.hidx[s.dst], self.hidx[s.src]
            self.lazy[s.dst] |= self.lazy[s.src]  # values written before the copy travel with it
            out = [f"valid = (valid & ~BIT({d})) | (((valid >> {r}) & 1) << {d}); /* {s.dst} = {s.src} */"]
            for name in sorted(self.use.declared[s.dst]):
                for dp, sp in zip(field_parts(p, s.dst, name), field_parts(p, s.src, name)):
                    out.append(f"{dp.cname} = {sp.cname};")
            return out + lines, after
        if isinstance(s, Drop):
            return ["std_drop = 1;"], self.tracker.step(layouts, s)
        if isinstance(s, Forward):
            to_ingress = int(s.port == Ref("std.ingress_port"))
            # Back out of the ingress port: XDP_TX, the port's number only if someone reads it.
            needed = self.test_hooks or self.use.reads_egress_port
            port = "0" if to_ingress and not needed else self.expr(s.port, env)
            return [f"std_egress_port = ({port}) & 0x1ff;", "forwarded = 1;", f"to_ingress = {to_ingress};"], layouts
        if isinstance(s, Hash):
            return self.hash(s, layouts, env), layouts
        if isinstance(s, RegisterRead):
            reg = p.register(s.register)
            v, look = self.element("__u64", f"reg_{reg.name}", s.index, reg.size, env)
            return ["{", *look, *(INDENT + x for x in self.assign(s.target, f"({v} ? *{v} : 0)", layouts)), "}"], layouts
        if isinstance(s, RegisterWrite):
            reg = p.register(s.register)
            v, look = self.element("__u64", f"reg_{reg.name}", s.index, reg.size, env)
            value = f"({self.expr(s.value, env)}) & {mask(reg.width)}"
            return ["{", *look, f"{INDENT}if ({v})", f"{INDENT * 2}*{v} = {value};", "}"], layouts
        if isinstance(s, Count):
            c = p.counter(s.counter)
            v, look = self.element("struct counter", f"ctr_{c.name}", s.index, c.size, env)
            return ["{", *look, f"{INDENT}if ({v}) {{", f"{INDENT * 2}{v}->packets += 1;",
                    f"{INDENT * 2}{v}->bytes += std_pkt_len;", f"{INDENT}}}", "}"], layouts
        if isinstance(s, MeterExec):
            m = p.meter(s.meter)
            b, look = self.element("struct bucket", f"meter_{m.name}", s.index, m.size, env)
            col = self.fresh("colour")
            full = m.burst_bytes * TOKEN_SCALE
            fill = (full + max(1, m.rate_bps) - 1) // max(1, m.rate_bps)
            return [
                "{",
                *look,
                f"{INDENT}__u64 {col} = RED;",
                f"{INDENT}if ({b})",
                f"{INDENT * 2}{col} = meter_take({b}, NOW(), std_pkt_len, {m.rate_bps}ULL, {full}ULL, {fill}ULL);",
                *(INDENT + x for x in self.assign(s.target, col, layouts)),
                "}",
            ], layouts
        if isinstance(s, ReadTimestamp):
            return self.assign(s.target, "NOW()", layouts), layouts
        if isinstance(s, ToHost):
            return ["to_host = 1;"], layouts
        if isinstance(s, If):
            return self.if_(s.cond, s.then, s.orelse, layouts, env)
        if isinstance(s, Apply):
            return self.apply(self.tables[s.table], s, layouts, env)
        if isinstance(s, Call):
            a = p.action(s.action)
            inner = _Env({prm.name: f"{v}ULL" for prm, v in zip(a.params, s.args)}, a.params)
            body, after = self.stmts(a.body, layouts, inner)
            return [f"/* {s.action}({', '.join(map(str, s.args))}) */", *body], after
        raise XdpBackendError(f"unknown statement {s!r}")  # pragma: no cover

    def if_(self, cond: Expr, then, orelse, layouts, env: _Env):
        known = self.tracker.decide(layouts, cond)
        if known is not None:
            return self.stmts(then if known else orelse, layouts, env)
        t_lay, f_lay = self.tracker.split(layouts, cond)
        t, t_after = self.stmts(then, t_lay, env)
        f, f_after = self.stmts(orelse, f_lay, env)
        out = [f"if ({self.expr(cond, env)}) {{", *(INDENT + x for x in t)]
        if f:
            out += ["} else {", *(INDENT + x for x in f)]
        return out + ["}"], join(t_after + f_after)

    def element(self, ctype: str, map_name: str, index: Expr, size: int, env: _Env) -> tuple[str, list[str]]:
        """Lines that look up element ``index % size`` of an array map (as the interpreter
        wraps indices), and the pointer variable that holds it (NULL if absent)."""
        k, v = self.fresh("k"), self.fresh("e")
        return v, [
            f"{INDENT}__u32 {k} = ({self.expr(index, env)}) % {size};",
            f"{INDENT}{ctype} *{v} = bpf_map_lookup_elem(&{map_name}, &{k});",
        ]

    def hash(self, s: Hash, layouts, env: _Env) -> list[str]:
        widths = [width(self.p, e, env.widths) for e in s.inputs]
        total = sum(widths)
        if total % 8 or total // 8 > HASH_MAX:
            raise XdpBackendError(f"hash inputs of {total} bits (whole bytes, at most {HASH_MAX})")
        if any(w > 64 for w in widths):
            raise XdpBackendError("hash inputs wider than 64 bits")
        names = [self.fresh("in") for _ in s.inputs]
        lines = [f"__u64 {n} = {self.expr(e, env)};" for n, e in zip(names, s.inputs)]
        crc = self.fresh("crc")
        n = total // 8
        self.crc_bytes = max(self.crc_bytes, n)
        # CRC-32 of a fixed-length message is affine in its bytes: the CRC of n zero bytes,
        # xor each byte's own contribution (one lookup per byte, none waiting on another).
        terms = [f"{crc32_of_zeros(n):#010x}"]
        starts = [sum(widths[:i]) for i in range(len(widths))]
        for k in range(n):  # byte k of the big-endian concatenation of the inputs
            lo, hi = 8 * k, 8 * k + 8
            bits = []
            for name, st, w in zip(names, starts, widths):
                a, b = max(lo, st), min(hi, st + w)
                if a >= b:
                    continue
                piece = f"({name} >> {st + w - b})" if st + w - b else name
                piece = f"({piece} & {mask(b - a)})"
                bits.append(f"({piece} << {hi - b})" if hi - b else piece)
            terms.append(f"mantra_crc32_at[{n - 1 - k}][{' | '.join(bits)}]")
        lines.append(f"__u32 {crc} = " + f"\n{INDENT * 2}^ ".join(terms) + ";")
        value = f"{s.base}ULL + (__u64)({crc} % {s.size}U)"
        return ["{", *(INDENT + x for x in lines + self.assign(s.target, value, layouts)), "}"]

    # ------------------------------------------------------------ tables as maps
    def key_value(self, path: str) -> str:
        if path.endswith("." + VALID_SUFFIX):
            return f"(__u64){self.valid(path[: -len(VALID_SUFFIX) - 1])}"
        return self.expr(Ref(path), _Env())

    def key_width(self, path: str) -> int:
        return key_width(self.p, path)

    def table_decl(self, t: Table) -> list[str]:
        kinds = {k.match for k in t.keys}
        widths = [self.key_width(k.field) for k in t.keys]
        if t.name in self.trees:
            return []  # code: no map, nothing to fill
        self.narrow_keys(t)
        nargs = table_nargs(self.p, t)
        value = f"struct val_{t.name} {{ __u32 pad; __u32 action; __u64 args[{nargs}]; }};"
        if t.name in self.arrays:
            slots = max(e.matches[0].value for e in t.entries) + 1
            rows = []
            for e in t.entries:
                args = list(e.action.args) + [0] * (nargs - len(e.action.args))
                rows.append(f"{INDENT}[{e.matches[0].value}] = {{ 1, {t.actions.index(e.action.action)}, "
                            f"{{ {', '.join(f'{a:#x}' for a in args)} }} }},")
            return [f"/* table {t.name} (const, {len(t.entries)} entries): indexed by its key, "
                    "pad = 1 where an entry is */", value,
                    f"static const struct val_{t.name} tbl_{t.name}[{slots}] = {{", *rows, "};"]
        if t.name in self.indexed:
            return [f"/* table {t.name} (updatable): indexed by its key, pad = 1 where an entry is */", value,
                    *_map("BPF_MAP_TYPE_ARRAY", 1 << widths[0], "__u32", f"struct val_{t.name}", f"tbl_{t.name}")]
        if kinds <= {"exact"}:
            nb = sum((w + 7) // 8 for w in widths)
            return [f"struct key_{t.name} {{ __u8 b[{max(nb, 1)}]; }};", value,
                    *_map("BPF_MAP_TYPE_HASH", t.size, f"struct key_{t.name}", f"struct val_{t.name}", f"tbl_{t.name}")]
        if kinds == {"lpm"} and len(t.keys) == 1:
            if widths[0] % 8:
                raise XdpBackendError(f"table '{t.name}': LPM keys must be whole bytes")
            return [f"struct key_{t.name} {{ __u32 prefixlen; __u8 b[{widths[0] // 8}]; }};", value,
                    *_map("BPF_MAP_TYPE_LPM_TRIE", t.size, f"struct key_{t.name}", f"struct val_{t.name}", f"tbl_{t.name}",
                          "BPF_F_NO_PREALLOC")]
        nk = len(t.keys)
        out = [f"struct ent_{t.name} {{ __u32 used; __u32 action; __u64 args[{nargs}]; __u64 v[{nk}]; __u64 m[{nk}]; }};",
               *_map("BPF_MAP_TYPE_ARRAY", t.size, "__u32", f"struct ent_{t.name}", f"tbl_{t.name}")]
        keys = [f"x->k[{j}]" for j in range(nk)]
        if t.size <= INLINE_SCAN:
            # The scan is a global function, which the verifier checks once, for any
            # caller: inline, it would follow the loop entry by entry again for every
            # distinct state that reaches the table (the 5-NF chain: 127,000 -> 67,000).
            return out + [
                f"struct scan_{t.name} {{ __u64 k[{nk}]; }};",
                f"__attribute__((noinline)) __u32 scan_{t.name}(const struct scan_{t.name} *x)",
                "{",
                f"{INDENT}if (!x)",
                f"{INDENT * 2}return 0xffffffff;",
                f"{INDENT}for (__u32 i = 0; i < {t.size}; i++) {{",
                f"{INDENT * 2}__u32 idx = i;",
                f"{INDENT * 2}struct ent_{t.name} *e = bpf_map_lookup_elem(&tbl_{t.name}, &idx);",
                f"{INDENT * 2}if (!e || !e->used)",
                f"{INDENT * 3}break;",
                f"{INDENT * 2}if (!({self.misses(t, keys, 'e')}))",
                f"{INDENT * 3}return i;",
                f"{INDENT}}}",
                f"{INDENT}return 0xffffffff; /* no entry matches */",
                "}",
            ]
        # A long scan is a bpf_loop callback, which the verifier checks once, and not
        # entry by entry either (~200 instructions each, 1M at ~5,000 entries).
        return out + [
            f"struct scan_{t.name} {{ __u64 k[{nk}]; __u32 found; }};",
            f"static long scan_fn_{t.name}(__u64 i, void *c)",
            "{",
            f"{INDENT}struct scan_{t.name} *x = c;",
            f"{INDENT}__u32 idx = i;",
            f"{INDENT}struct ent_{t.name} *e = bpf_map_lookup_elem(&tbl_{t.name}, &idx);",
            f"{INDENT}if (!e || !e->used)",
            f"{INDENT * 2}return 1; /* past the last entry */",
            f"{INDENT}if ({self.misses(t, keys, 'e')})",
            f"{INDENT * 2}return 0; /* the next entry */",
            f"{INDENT}x->found = idx;",
            f"{INDENT}return 1;",
            "}",
        ]

    @staticmethod
    def misses(t: Table, keys: list[str], e: str) -> str:
        """The C test that scanned entry ``*e`` does not match ``keys`` (v/m: a range's
        bounds, or a value and mask)."""
        conds = []
        for j, (kn, k) in enumerate(zip(keys, t.keys)):
            if k.match == "range":
                conds.append(f"({kn} < {e}->v[{j}] || {kn} > {e}->m[{j}])")
            else:  # exact / ternary / lpm are all value & mask here
                conds.append(f"(({kn} ^ {e}->v[{j}]) & {e}->m[{j}])")
        return " | ".join(conds) or "0"

    def narrow_keys(self, t: Table) -> None:
        """Refuse a table kept in a map (or an array) whose key is wider than 64 bits."""
        wide = [k.field for k in t.keys if self.key_width(k.field) > 64]
        if wide:
            why = "it is updatable at run time" if not t.const else "its decision tree would be too large"
            raise XdpBackendError(
                f"table '{t.name}' has a key wider than 64 bits ({', '.join(wide)}); the XDP backend compiles such "
                f"a table into code, but keeps this one in a map, whose keys are at most 64 bits, because {why}"
            )

    def apply(self, t: Table, s: Apply, layouts, env: _Env):
        if t.name in self.trees:
            return self.tree(t, s, layouts, env)
        self.narrow_keys(t)
        kinds = {k.match for k in t.keys}
        widths = [self.key_width(k.field) for k in t.keys]
        val = self.fresh("val")
        out = [f"/* table {t.name} ({', '.join(f'{k.field}:{k.match}' for k in t.keys)}): a map */", "{"]
        if t.name in self.arrays:
            slots = max(e.matches[0].value for e in t.entries) + 1
            k = self.fresh("k")
            out = [f"/* table {t.name} ({t.keys[0].field}: exact, const): an array */", "{",
                   f"{INDENT}__u64 {k} = {self.key_value(t.keys[0].field)};",
                   f"{INDENT}barrier_var({k}); /* clang may know the bound; the verifier must see it */",
                   f"{INDENT}const struct val_{t.name} *{val} = {k} < {slots} ? &tbl_{t.name}[{k}] : 0;",
                   f"{INDENT}if ({val} && !{val}->pad)",
                   f"{INDENT * 2}{val} = 0;"]
        elif t.name in self.indexed:
            key = self.fresh("key")
            out = [f"/* table {t.name} ({t.keys[0].field}: exact): an array map indexed by the key */", "{",
                   f"{INDENT}__u32 {key} = {self.key_value(t.keys[0].field)};",
                   f"{INDENT}struct val_{t.name} *{val} = bpf_map_lookup_elem(&tbl_{t.name}, &{key});",
                   f"{INDENT}if ({val} && !{val}->pad)",
                   f"{INDENT * 2}{val} = 0;"]
        elif kinds <= {"exact"}:
            key = self.fresh("key")
            out.append(f"{INDENT}struct key_{t.name} {key} = {{}};")
            off = 0
            for k, w in zip(t.keys, widths):
                nb = (w + 7) // 8
                out += [INDENT + x for x in store(f"{key}.b", off, nb, self.key_value(k.field))]
                off += nb
            out.append(f"{INDENT}struct val_{t.name} *{val} = bpf_map_lookup_elem(&tbl_{t.name}, &{key});")
        elif kinds == {"lpm"} and len(t.keys) == 1:
            key = self.fresh("key")
            out.append(f"{INDENT}struct key_{t.name} {key} = {{ .prefixlen = {widths[0]} }};")
            out += [INDENT + x for x in store(f"{key}.b", 0, widths[0] // 8, self.key_value(t.keys[0].field))]
            out.append(f"{INDENT}struct val_{t.name} *{val} = bpf_map_lookup_elem(&tbl_{t.name}, &{key});")
        else:
            # Ternary/range (and mixed): entries in priority order, scanned; the first wins.
            ks = [self.fresh("k") for _ in t.keys]
            out += [f"{INDENT}__u64 {kn} = {self.key_value(k.field)};" for kn, k in zip(ks, t.keys)]
            if t.size > INLINE_SCAN:
                x = self.fresh("scan")
                out += [
                    f"{INDENT}struct scan_{t.name} {x} = {{ .k = {{ {', '.join(ks) or '0'} }}, .found = 0xffffffff }};",
                    f"{INDENT}bpf_loop({t.size}, scan_fn_{t.name}, &{x}, 0);",
                    f"{INDENT}struct ent_{t.name} *{val} = 0;",
                    f"{INDENT}if ({x}.found != 0xffffffff) {{",
                    f"{INDENT * 2}__u32 idx = {x}.found;",
                    f"{INDENT * 2}{val} = bpf_map_lookup_elem(&tbl_{t.name}, &idx);",
                    f"{INDENT}}}",
                ]
            else:
                x, found = self.fresh("scan"), self.fresh("found")
                out += [
                    f"{INDENT}struct scan_{t.name} {x} = {{ .k = {{ {', '.join(ks) or '0'} }} }};",
                    f"{INDENT}__u32 {found} = scan_{t.name}(&{x});",
                    f"{INDENT}struct ent_{t.name} *{val} = 0;",
                    f"{INDENT}if ({found} != 0xffffffff)",
                    f"{INDENT * 2}{val} = bpf_map_lookup_elem(&tbl_{t.name}, &{found});",
                ]
        cases, after = [], []
        for i, name in enumerate(t.actions):
            a = self.p.action(name)
            inner = _Env({prm.name: f"{val}->args[{j}]" for j, prm in enumerate(a.params)}, a.params)
            body, lay = self.stmts(a.body, layouts, inner)
            cases += [f"case {i}: /* {name} */", *(INDENT + x for x in body), f"{INDENT}break;"]
            after.append(lay)
        hit_lay = join(x for lay in after for x in lay)
        hit_body, hit_after = self.stmts(s.on_hit, hit_lay, env)
        d = self.p.action(t.default.action)
        miss_env = _Env({prm.name: f"{v}ULL" for prm, v in zip(d.params, t.default.args)}, d.params)
        miss, miss_lay = self.stmts(d.body, layouts, miss_env)
        miss_body, miss_after = self.stmts(s.on_miss, miss_lay, env)
        out += [f"{INDENT}if ({val}) {{", f"{INDENT * 2}switch ({val}->action) {{", *(INDENT * 2 + x for x in cases),
                f"{INDENT * 2}}}", *(INDENT * 2 + x for x in hit_body), f"{INDENT}}} else {{",
                f"{INDENT * 2}/* miss: {t.default.action}({', '.join(map(str, t.default.args))}) */",
                *(INDENT * 2 + x for x in miss + miss_body), f"{INDENT}}}", "}"]
        return out, join(hit_after + miss_after)

    def tree(self, t: Table, s: Apply, layouts, env: _Env):
        """A const table as its decision tree. The tree tests copies of the keys taken
        through the scratch map: what its branches prove about them stays with the
        copies, so the verifier sees the packet's fields alike on every leaf."""
        from mantra6g.synth.tables import decision_tree

        keys, lines = {}, []
        slot = 0
        for j, k in enumerate(t.keys):
            if k.field.endswith("." + VALID_SUFFIX):
                continue
            h, _, f = k.field.partition(".")
            wide = self.p.width_of(k.field) > 64
            values = [part.cname for part in field_parts(self.p, h, f)] if wide else [self.key_value(k.field)]
            names = []
            for v in values:  # a key wider than 64 bits takes a slot per word
                names.append(self.fresh("tk"))
                lines += [f"sc->k[{slot}] = {v};", f"__u64 {names[-1]} = *(volatile __u64 *)&sc->k[{slot}];"]
                slot += 1
            keys[f"tkey.{j}"] = (" ".join(names), self.p.width_of(k.field))
        tree = decision_tree(self.p, t, s.on_hit, s.on_miss, key_expr=lambda j: Ref(f"tkey.{j}"))
        inner = _Env(env.params, env.widths, {**env.keys, **keys})
        body, after = self.stmts(tree, layouts, inner)
        head = f"/* table {t.name} (const, {len(t.entries)} entries): a decision tree over " \
               f"{', '.join(k.field for k in t.keys)} */"
        return [head, "{", *(INDENT + x for x in lines + body), "}"], after

    # ------------------------------------------------------------ parser
    def loaded(self) -> dict[str, set[str]]:
        """Fields the parser loads: those read, and those written back from their locals
        at the deparse (a copy takes its source's). Known once the control is printed."""
        out = {h: self.use.read[h] | self.lazy[h] for h in self.use.read}
        _closure(out, [(s, d) for d, s in self.use.copies])
        return out

    def parser(self) -> list[str]:
        """The parser states as labels; call it after the control (see :meth:`loaded`)."""
        p = self.p
        loaded = self.loaded()
        out = ["goto st_start;"]
        for st in p.parser:
            out.append(f"st_{st.name}:")
            for h in st.extract:
                n = p.header(h).header_type.width // 8
                out += [
                    f"if (data + off + {n} > data_end)",
                    f"{INDENT}return XDP_DROP; /* too short for {h} */",
                    *([f"o_{h} = off;"] if h in self.reached else []),
                    f"valid |= BIT({self.hidx[h]});",
                ]
                for name in sorted(loaded[h]):
                    for part in field_parts(p, h, name):
                        out.append(f"{part.cname} = {load_part('(data + off)', part)};")
                out.append(f"off += {n};")
            if st.verify is not None:
                out += [f"if (!({self.expr(st.verify, _Env())}))", f"{INDENT}return XDP_DROP; /* malformed */"]
            if st.select:
                keys = [self.expr(e, _Env()) for e in st.select]
                for c in st.cases:
                    masks = c.masks or tuple((1 << 64) - 1 for _ in c.values)
                    conds = [
                        f"({k} & {m & ((1 << 64) - 1):#x}ULL) == {v & m & ((1 << 64) - 1):#x}ULL"
                        if (m & ((1 << 64) - 1)) != (1 << 64) - 1 else f"{k} == {v:#x}ULL"
                        for k, v, m in zip(keys, c.values, masks)
                        if m
                    ]
                    out += [f"if ({' && '.join(conds) or '1'})", f"{INDENT}goto st_{c.next};"]
            out.append(f"goto st_{st.default};")
        out += ["st_reject:", f"{INDENT}return XDP_DROP;", "st_accept:"]
        return out

    # ------------------------------------------------------------ deparse
    def deparse(self, layouts) -> list[str]:
        """Make the packet's headers what the program left them: nothing to do for headers
        still in their arriving bytes (their writes went there already), moved headers
        copied, pushed ones written whole, the head moved by the size difference."""
        if not layouts:
            return []
        forget = ["sc->valid = valid;", f"valid = {VALID};"]
        if len(layouts) == 1:
            body = self.deparse_layout(layouts[0])
            return [*forget, *body] if body else []
        out = [*forget, "switch (layout) {"]
        for lay in layouts:
            body = self.deparse_layout(lay)
            out += [f"case {self.layout_id(lay.content)}: {{", *(INDENT + x for x in body), f"{INDENT}break;", "}"]
        return out + ["}"]

    def deparse_layout(self, lay: Layout) -> list[str]:
        p, tr = self.p, self.tracker
        names = [h.name for h in p.headers]
        size = {h.name: h.header_type.width // 8 for h in p.headers}
        order = [h for h in p.deparse]
        plans = []  # per path: (out headers [(h, pos, kind)], delta)
        for i in sorted(lay.paths):
            path = tr.paths[i]
            pos, outs = 0, []
            for h in order:
                c = lay.content[self.hidx[h]]
                if c == GONE or (c >= 0 and names[c] not in path.headers):
                    continue
                outs.append((h, pos, c))
                pos += size[h]
            delta = path.length - pos
            plan = {}
            for h, hpos, c in outs:
                if c == FRESH:
                    kind = "fresh"
                elif path.offset(names[c]) == hpos + delta:
                    kind = "in place"
                else:
                    kind = "moved"
                plan[h] = (hpos, kind, c)
            plans.append((i, plan, delta, pos))
        deltas = {d for _, _, d, _ in plans}
        present = {h for _, plan, _, _ in plans for h in plan}
        lines: list[str] = []
        # 1. bytes of moved headers, saved before anything is written
        moved = []
        for h in order:
            if h not in present:
                continue
            kinds = {plan[h][1] for _, plan, _, _ in plans if h in plan}
            # in place on every path, or pushed; else copied (right wherever it lands)
            kind = kinds.pop() if len(kinds) == 1 and kinds != {"moved"} else "moved"
            always = all(h in plan for _, plan, _, _ in plans)
            moved.append((h, kind, always))
        if all(kind == "in place" for _, kind, _ in moved) and deltas == {0}:
            for h, _, always in moved:
                lines += self.lazy_writes(h, names[lay.content[self.hidx[h]]], always)
            return lines
        for h, kind, always in moved:
            if kind != "moved":
                continue
            src = names[lay.content[self.hidx[h]]]
            n = size[h]
            copy = [*self.bounds(src, n), f"__builtin_memcpy(sv_{h}, {self.ptr(src)}, {n});"]
            lines.append(f"__u8 sv_{h}[{n}];")
            lines += copy if always else [f"if ({self.valid(h)}) {{", *(INDENT + x for x in copy), "}"]
        # 2. writes into headers that stay where they are
        for h, kind, always in moved:
            if kind == "in place":
                lines += self.lazy_writes(h, names[lay.content[self.hidx[h]]], always)
        # 3. the head moves by the size difference
        if len(deltas) == 1:
            (delta,) = deltas
            delta_c = str(delta)
        else:
            delta_c = "(int)off - (int)(" + " + ".join(self.present_size(h, lay) for h in order if h in present) + ")"
        lines += [
            f"if (bpf_xdp_adjust_head(ctx, {delta_c}))",
            f"{INDENT}return XDP_DROP;",
            "data = (void *)(long)ctx->data;",
            "data_end = (void *)(long)ctx->data_end;",
        ]
        # 4. moved and pushed headers written at their new places
        for h, kind, always in moved:
            if kind == "in place":
                continue
            pos = self.position(h, lay, plans, order)
            n = size[h]
            body, ptr = [], f"(data + {pos})"
            if not pos.isdigit():  # one pointer, checked and then used (see ptr())
                body, ptr = [f"void *at_{h} = data + {pos};"], f"at_{h}"
            body += [f"if ({ptr} + {n} > data_end)", f"{INDENT}return XDP_DROP;"]
            if kind == "moved":
                body.append(f"__builtin_memcpy({ptr}, sv_{h}, {n});")
                body += self.lazy_writes(h, None, True, ptr)
            else:
                body += self.whole_header(h, ptr)
            lines += body if always else [f"if ({self.valid(h)}) {{", *(INDENT + x for x in body), "}"]
        return lines

    def present_size(self, h: str, lay: Layout) -> str:
        n = self.p.header(h).header_type.width // 8
        return str(n) if lay.content[self.hidx[h]] == FRESH else f"{self.valid(h)} * {n}"

    def position(self, h: str, lay: Layout, plans, order) -> str:
        """Where ``h`` starts after the head moved: a constant, or the arriving offset of
        a header parsed on every path (plus a constant), else summed at run time."""
        tr = self.tracker
        at = [(tr.paths[i], plan[h][0]) for i, plan, _, _ in plans if h in plan]
        if len({pos for _, pos in at}) == 1:
            return str(at[0][1])
        common = set.intersection(*(set(path.headers) for path, _ in at))
        for y in [h] + sorted(common):
            if y not in common:
                continue
            diffs = {pos - path.offset(y) for path, pos in at}
            if len(diffs) == 1:
                (c,) = diffs
                if y in self.fixed:
                    return str(self.fixed[y] + c)
                self.reached.add(y)
                if c < 0:  # never below 0 on a path that gets here; the mask lets the verifier see it
                    return f"((o_{y} - {-c}) & 0x1ff)"
                return f"o_{y}" + (f" + {c}" if c > 0 else "")
        before = order[: order.index(h)]
        return "(" + " + ".join(self.present_size(x, lay) for x in before if lay.content[self.hidx[x]] != GONE) + ")"

    def lazy_writes(self, h: str, src: str | None, always: bool, ptr: str | None = None) -> list[str]:
        """Store the fields of ``h`` written where no single header held its bytes, into
        the arriving bytes of ``src`` (or at ``ptr``, already checked)."""
        body = []
        for name in sorted(self.lazy[h]):
            for part in field_parts(self.p, h, name):
                body += store_part(ptr or self.ptr(src), part, part.cname)
        if not body:
            return []
        if ptr is None:
            body = self.bounds(src, self.p.header(h).header_type.width // 8) + body
        return body if always else [f"if ({self.valid(h)}) {{", *(INDENT + x for x in body), "}"]

    def whole_header(self, h: str, ptr: str) -> list[str]:
        """A pushed header from its locals: runs of fields that end on a byte boundary,
        each stored as one big-endian number."""
        ht = self.p.header(h).header_type
        out, run, start, bit = [], [], 0, 0
        for f in ht.fields:
            if not run:
                start = bit
            run.append(f)
            bit += f.width
            if bit % 8:
                continue
            nbits = bit - start
            if nbits > 64:  # a wide field (IPv6 address): its 64-bit words
                (only,) = run
                for part in field_parts(self.p, h, only.name):
                    out += store(ptr, part.bit_offset // 8, 8, part.cname)
            else:
                terms, left = [], nbits
                for g in run:
                    left -= g.width
                    local = self.local(h, g.name)
                    terms.append(f"({local} << {left})" if left else local)
                out += store(ptr, start // 8, nbits // 8, " | ".join(terms))
            run = []
        return out


def key_width(p: Program, path: str) -> int:
    """Bits of a key field (a validity key is one bit)."""
    return 1 if path.endswith("." + VALID_SUFFIX) else p.width_of(path)


def table_nargs(p: Program, t: Table) -> int:
    return max([len(p.action(a).params) for a in t.actions] + [1])


def _map(kind: str, size: int, key: str, value: str, name: str, flags: str | None = None) -> list[str]:
    out = ["struct {", f"{INDENT}__uint(type, {kind});"]
    if flags:
        out.append(f"{INDENT}__uint(map_flags, {flags});")
    return out + [f"{INDENT}__uint(max_entries, {size});", f"{INDENT}__type(key, {key});",
                  f"{INDENT}__type(value, {value});", f"}} {name} SEC(\".maps\");"]


def state_maps(p: Program) -> list[str]:
    out = []
    for r in p.registers:
        if r.width > 64:
            raise XdpBackendError(f"register '{r.name}' is wider than 64 bits")
        out += _map("BPF_MAP_TYPE_ARRAY", r.size, "__u32", "__u64", f"reg_{r.name}")
    for c in p.counters:
        out += _map("BPF_MAP_TYPE_PERCPU_ARRAY", c.size, "__u32", "struct counter", f"ctr_{c.name}")
    for m in p.meters:
        out += _map("BPF_MAP_TYPE_ARRAY", m.size, "__u32", "struct bucket", f"meter_{m.name}")
    return out


def crc32_of_zeros(n: int) -> int:
    return zlib.crc32(bytes(n))


def crc32_table(n: int) -> list[str]:
    """``mantra_crc32_at[d][b]``: what byte ``b`` followed by ``d`` more bytes adds (xor)
    to a message's CRC-32 (zlib's, v1model's crc32), for d < n. Exact because the CRC of
    a fixed-length message is an affine function of its bits."""
    table = [[zlib.crc32(bytes([b]) + bytes(d)) ^ zlib.crc32(bytes(d + 1)) for b in range(256)] for d in range(n)]
    rng = __import__("random").Random(n)
    for _ in range(16):  # the identity the program relies on
        msg = bytes(rng.randrange(256) for _ in range(n))
        x = crc32_of_zeros(n)
        for k, b in enumerate(msg):
            x ^= table[n - 1 - k][b]
        assert x == zlib.crc32(msg)
    out = [f"static const __u32 mantra_crc32_at[{n}][256] = {{"]
    for d, row in enumerate(table):
        out.append(f"{INDENT}{{ /* byte followed by {d} more */")
        out += [INDENT * 2 + ", ".join(f"0x{x:08x}" for x in row[i:i + 8]) + "," for i in range(0, 256, 8)]
        out.append(f"{INDENT}}},")
    return out + ["};"]


__all__ = ["Printer", "XdpBackendError", "crc32_table", "state_maps", "table_nargs", "usage"]

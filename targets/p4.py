"""P4-16 printing shared by the v1model (BMv2) and TNA (Tofino) backends.

A DP-IR :class:`~mantra6g.synth.dpir.Program` maps onto P4 the same way on both
targets, except for the externs; this module owns everything that is the same:

* names: DP-IR names become P4 identifiers (keywords such as ``type`` get a ``_``);
  header instance ``h`` of type ``t`` is ``hdr.h`` of type ``t_h``; DP-IR metadata
  ``meta.x`` is ``meta.x``; the fixed ``std.*`` fields live in ``meta.std``, a struct
  both backends fill from their intrinsic metadata, so reads and writes of
  ``std.egress_port`` behave as in the interpreter whatever the target calls it;
* expressions (``bit<W>`` vs ``bool`` contexts), statements, actions, tables and
  ``const entries``, parser states, header and struct declarations;
* control-plane entries in priority order (JSON, shared by both backends).

Target-specific statements (hash, registers, counters, meters, timestamps) are the
abstract methods of :class:`P4Printer`; each backend subclasses it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import jinja2

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.dpir import walk, walk_body  # noqa: F401  (one walker, the IR's)
from mantra6g.synth.dpir import (
    Action,
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
    Table,
    Ternary,
    ToHost,
    UnOp,
)
from mantra6g.synth.dpir_check import VALID_SUFFIX, width
from mantra6g.synth.headers import HEADERS

INDENT = "    "
INGRESS = "MantraIngress"  # the ingress control's name; tables are "MantraIngress.<table>"

# P4-16 keywords (spec §6.4 and the keywords p4c reserves) that DP-IR names may hit,
# e.g. the ``type`` field of Ethernet.
P4_KEYWORDS = frozenset(
    """abstract action apply bit bool const control default else entries enum error exit
    extern false header header_union if in inout int key list match_kind out package
    parser priority return select state string struct switch table this transition true
    tuple type typedef varbit verify void actions size default_action value_set""".split()
)


class P4BackendError(MantraError):
    """A DP-IR program uses something the chosen P4 target cannot express."""


@dataclass(frozen=True)
class TableSummary:
    name: str
    keys: tuple[str, ...]  # "field:match"
    size: int
    entries: int
    const: bool
    stage: int | None = None  # first MAU stage (tofino only)


@dataclass(frozen=True)
class Summary:
    """What a backend produced, for ``mantra compile`` to print."""

    target: str
    program: str
    tables: tuple[TableSummary, ...]
    entries: int
    registers: tuple[str, ...]
    counters: tuple[str, ...]
    meters: tuple[str, ...]
    stages: int | None = None  # MAU stages used (tofino only)
    # Where the P4 output knowingly differs from the interpreter, one line each.
    notes: tuple[str, ...] = ()

    @staticmethod
    def of(target: str, p: Program, notes: list[str], stage_of=None, stages: int | None = None) -> Summary:
        """The summary of ``p`` as emitted for ``target``; ``stage_of(table)`` gives a
        table's first MAU stage (None: unplaced) where the target has stages."""
        tables = tuple(
            TableSummary(t.name, tuple(f"{k.field}:{k.match}" for k in t.keys), t.size, len(t.entries), t.const,
                         stage=stage_of(t.name) if stage_of else None)
            for t in p.tables
        )
        return Summary(target, p.name, tables, sum(len(t.entries) for t in p.tables),
                       tuple(r.name for r in p.registers), tuple(c.name for c in p.counters),
                       tuple(m.name for m in p.meters), stages=stages, notes=tuple(dict.fromkeys(notes)))

    def render(self) -> str:
        lines = [f"{self.target}: program {self.program}"]
        for t in self.tables:
            where = f", stage {t.stage}" if t.stage is not None else ""
            kind = "const " if t.const else ""
            lines.append(f"  {kind}table {t.name} [{', '.join(t.keys)}] size {t.size}, {t.entries} entries{where}")
        lines.append(f"  {self.entries} entries, {len(self.registers)} registers, "
                     f"{len(self.counters)} counters, {len(self.meters)} meters")
        if self.stages is not None:
            lines.append(f"  {self.stages} of 12 MAU stages")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class P4Output:
    """A backend's result: file name -> text, and a summary."""

    files: Mapping[str, str]
    summary: Summary


# ---------------------------------------------------------------- names


def ident(name: str) -> str:
    """A DP-IR name as a P4 identifier."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if out[0].isdigit():
        out = "_" + out
    return out + "_" if out in P4_KEYWORDS else out


def header_type_name(type_name: str) -> str:
    return f"{ident(type_name)}_h"


def qualified(name: str) -> str:
    """The control-plane name of a table, action or extern declared in the ingress."""
    return f"{INGRESS}.{ident(name)}"


def lit(value: int, w: int, hexa: bool = False) -> str:
    """A width-annotated P4 integer literal: decimal for small numbers (ports, TTLs),
    hex for addresses, masks and (``hexa``) protocol numbers such as EtherTypes."""
    if value < 10 or (value < 10000 and w < 32 and not hexa):
        return f"{w}w{value}"
    return f"{w}w{value:#x}"


def field_ref(path: str) -> str:
    """The P4 l-value of a DP-IR field path (not ``param.*``)."""
    scope, _, name = path.partition(".")
    if scope == "std":
        return f"meta.std.{ident(name)}"
    if scope == "meta":
        return f"meta.{ident(name)}"
    if name == VALID_SUFFIX:
        return f"hdr.{ident(scope)}.isValid()"
    return f"hdr.{ident(scope)}.{ident(name)}"


def key_text(path: str, match: str = "exact") -> str:
    """A table key, with its control-plane name (:func:`key_name`) as ``@name``. A
    validity key is ``isValid()`` (a bool) when matched exactly; other match kinds need
    bits, so it is cast to ``bit<1>``."""
    name = f'@name("{key_name(path, match)}")'
    if path.endswith("." + VALID_SUFFIX) and match != "exact":
        return f"(bit<1>){field_ref(path)}: {match} {name}"
    return f"{field_ref(path)}: {match} {name}"


def key_name(path: str, match: str = "exact") -> str:
    """The control-plane (P4Info) name of a table key: the DP-IR path without dots
    (``ipv4_dst``, ``meta_class``, ``tcp_valid`` for a validity key), given to p4c with
    ``@name``. P4Runtime clients name a match field by its last dot-separated part
    (finsy refuses a P4Info where ``hdr.udp.sport`` and ``hdr.tcp.sport`` share a table),
    so the name has none."""
    scope, _, name = path.partition(".")
    return f"{ident(scope)}_{'valid' if name == VALID_SUFFIX else ident(name)}"


# ---------------------------------------------------------------- entries


def width_of_key(p: Program, path: str) -> int:
    return 1 if path.endswith("." + VALID_SUFFIX) else p.width_of(path)


def prefix_mask(prefix_len: int, w: int) -> int:
    return ((1 << prefix_len) - 1) << (w - prefix_len)


@dataclass(frozen=True)
class EntryRecord:
    """One runtime entry in target-neutral form (the entries JSON)."""

    table: str
    matches: tuple[dict, ...]
    action: str
    params: tuple[tuple[str, int], ...]
    priority: int | None  # higher wins (P4Runtime convention); None: table has none


def entry_records(p: Program, t: Table) -> list[EntryRecord]:
    """``t``'s entries, best first, with P4Runtime priorities (n for the best … 1)."""
    out = []
    entries = dpir.ranked(t)
    for i, e in enumerate(entries):
        matches = []
        for k, m in zip(t.keys, e.matches):
            f = key_name(k.field, k.match)
            if isinstance(m, Exact):
                matches.append({"field": f, "exact": m.value})
            elif isinstance(m, Lpm):
                matches.append({"field": f, "lpm": [m.value, m.prefix_len]})
            elif isinstance(m, Ternary) and k.match == "range":  # a wildcard: the full range
                matches.append({"field": f, "range": [0, (1 << width_of_key(p, k.field)) - 1]})
            elif isinstance(m, Ternary):
                matches.append({"field": f, "ternary": [m.value, m.mask]})
            else:
                matches.append({"field": f, "range": [m.low, m.high]})
        a = p.action(e.action.action)
        out.append(
            EntryRecord(
                qualified(t.name),
                tuple(matches),
                qualified(a.name),
                tuple((ident(prm.name), v) for prm, v in zip(a.params, e.action.args)),
                len(entries) - i if dpir.ranks_by_priority(t) else None,
            )
        )
    return out


def entries_json(p: Program, target: str, extra: Mapping[str, object] | None = None) -> str:
    """Every runtime (non-const) entry of ``p`` as JSON; const entries are in the P4."""
    tables = []
    for t in p.tables:
        if t.const or not t.entries:
            continue
        tables.append(
            {
                "table": qualified(t.name),
                "entries": [
                    {
                        "match": list(r.matches),
                        "action": r.action,
                        "params": dict(r.params),
                        **({"priority": r.priority} if r.priority is not None else {}),
                    }
                    for r in entry_records(p, t)
                ],
            }
        )
    doc = {"program": p.name, "target": target, "tables": tables, **(extra or {})}
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------- the printer


@dataclass
class _Ctx:
    """Where a statement is printed: inside an action (its parameters) or the control."""

    params: tuple[dpir.ActionParam, ...] = ()
    in_action: bool = False


@dataclass
class P4Printer:
    """Prints one DP-IR program as P4-16; backends override the extern hooks."""

    p: Program
    # Where the output knowingly differs from the interpreter (Summary.notes).
    notes: list[str] = field(default_factory=list)

    # -- target hooks ---------------------------------------------------------
    target = "p4"

    def hash_stmt(self, s: Hash, ctx: _Ctx) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def register_read(self, s: RegisterRead, ctx: _Ctx) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def register_write(self, s: RegisterWrite, ctx: _Ctx) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def count(self, s: Count, ctx: _Ctx) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def meter(self, s: MeterExec, ctx: _Ctx) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def timestamp(self, s: ReadTimestamp, ctx: _Ctx) -> list[str]:  # pragma: no cover
        raise NotImplementedError

    def reject_state(self) -> str:
        return "reject"

    def extra_std_fields(self) -> list[tuple[str, int]]:
        """Target-private fields of ``meta.std`` (temporaries for externs)."""
        return []

    # -- declarations ---------------------------------------------------------
    def std_fields(self) -> list[tuple[str, int]]:
        fields = list(dpir.STD_FIELDS.items())
        fields.append(("forwarded", 1))  # a Forward ran (DP-IR drops packets never forwarded)
        if any(isinstance(e, OnesSum) for e in walk_exprs(self.p)):
            fields.append(("csum", 32))  # one's-complement sums are added up here
        return fields + self.extra_std_fields()

    def header_types(self) -> str:
        used = []
        for h in self.p.headers:
            if h.type not in used:
                used.append(h.type)
        blocks = []
        for t in used:
            ht = HEADERS[t]
            body = "\n".join(f"{INDENT}bit<{f.width}> {ident(f.name)};" for f in ht.fields)
            blocks.append(f"// {ht.doc}\nheader {header_type_name(t)} {{\n{body}\n}}")
        return "\n\n".join(blocks)

    def structs(self) -> str:
        if any(m.name == "std" for m in self.p.metadata):
            raise P4BackendError(f"program '{self.p.name}': metadata field 'std' clashes with the std.* fields")
        hdrs = "\n".join(f"{INDENT}{header_type_name(h.type)} {ident(h.name)};" for h in self.p.headers)
        std = "\n".join(f"{INDENT}bit<{w}> {n};" for n, w in self.std_fields())
        user = "".join(f"{INDENT}bit<{m.width}> {ident(m.name)};\n" for m in self.p.metadata)
        return (
            f"struct headers_t {{\n{hdrs}\n}}\n\n"
            "// DP-IR's std.* fields, kept by the program itself so that every target\n"
            "// reads and writes them the same way (see the ingress prologue/epilogue).\n"
            f"struct std_meta_t {{\n{std}\n}}\n\n"
            f"struct metadata_t {{\n{INDENT}std_meta_t std;\n{user}}}"
        )

    # -- parser ---------------------------------------------------------------
    def state_name(self, name: str) -> str:
        if name == "accept":
            return "accept"
        if name == "reject":
            return self.reject_state()
        return f"parse_{ident(name)}"

    def after_extract(self, st: dpir.ParserState) -> list[str]:
        """Target statements that follow a state's extracts (Tofino's parser checksums)."""
        return []

    def parser_verify(self, st: dpir.ParserState) -> list[str]:
        """A state's ``verify``: P4's ``verify(cond, error)``, which ends parsing with that
        error (the ingress then drops the packet, as DP-IR does)."""
        return [f"verify({self.cond(st.verify, _Ctx())}, error.Malformed);"] if st.verify is not None else []

    def parser_states(self, pkt: str = "pkt") -> list[str]:
        out = []
        for st in self.p.parser:
            lines = [f"state {self.state_name(st.name)} {{"]
            lines += [f"{INDENT}{pkt}.extract(hdr.{ident(h)});" for h in st.extract]
            lines += [INDENT + line for line in self.after_extract(st) + self.parser_verify(st)]
            if not st.select:
                lines.append(f"{INDENT}transition {self.state_name(st.default)};")
            else:
                keys = [self.value(e, _Ctx()) for e in st.select]
                widths = [width(self.p, e) for e in st.select]
                lines.append(f"{INDENT}transition select({', '.join(keys)}) {{")
                for c in st.cases:
                    masks = c.masks or (None,) * len(c.values)
                    sets = [
                        lit(v, w, w >= 16) if m is None else f"{lit(v, w, True)} &&& {lit(m, w, True)}"
                        for v, m, w in zip(c.values, masks, widths)
                    ]
                    keyset = sets[0] if len(sets) == 1 else f"({', '.join(sets)})"
                    lines.append(f"{INDENT * 2}{keyset}: {self.state_name(c.next)};")
                lines.append(f"{INDENT * 2}default: {self.state_name(st.default)};")
                lines.append(f"{INDENT}}}")
            lines.append("}")
            out.append("\n".join(lines))
        return out

    # -- expressions ----------------------------------------------------------
    def ref(self, path: str, ctx: _Ctx) -> str:
        scope, _, name = path.partition(".")
        if scope == "param":
            return ident(name)
        return field_ref(path)

    def width(self, e: Expr, ctx: _Ctx) -> int:
        return width(self.p, e, ctx.params)

    @staticmethod
    def is_bool(e: Expr) -> bool:
        return isinstance(e, IsValid) or (
            isinstance(e, BinOp) and (e.op in dpir.COMPARE_OPS or e.op in dpir.LOGIC_OPS)
        ) or (isinstance(e, UnOp) and e.op == "!")

    def value(self, e: Expr, ctx: _Ctx, w: int | None = None) -> str:
        """``e`` as a ``bit<W>`` expression; ``w`` casts it to that width."""
        own = self.width(e, ctx)
        if isinstance(e, Const):
            return lit(e.value & ((1 << (w or own)) - 1), w or own)
        if self.is_bool(e):
            text = f"(bit<1>)({self.cond(e, ctx)})"
        elif isinstance(e, Ref):
            text = self.ref(e.path, ctx)
        elif isinstance(e, Cast):  # zero-extend or truncate, as P4's cast does
            text = self.value(e.operand, ctx, e.width)
        elif isinstance(e, OnesSum):  # added up just before (see sum_stmts)
            text = "(bit<16>)meta.std.csum"
        elif isinstance(e, UnOp):  # "~"
            text = f"~{self.atom(e.operand, ctx)}"
        else:
            assert isinstance(e, BinOp)
            lw = self.width(e.left, ctx)
            left = self.atom(e.left, ctx)
            # DP-IR arithmetic takes the left operand's width; P4 wants equal widths
            # except for shift amounts.
            right = self.atom(e.right, ctx, None if e.op in ("<<", ">>") else lw)
            text = f"{left} {e.op} {right}"
        if w is not None and w != own:
            return f"(bit<{w}>)({text})" if _spaced(text) else f"(bit<{w}>){text}"
        return text

    def atom(self, e: Expr, ctx: _Ctx, w: int | None = None) -> str:
        """``value`` in parentheses where an operator would otherwise bind into it."""
        text = self.value(e, ctx, w)
        return f"({text})" if _spaced(text) else text

    def cond(self, e: Expr, ctx: _Ctx) -> str:
        """``e`` as a ``bool`` expression."""
        if isinstance(e, IsValid):
            return f"hdr.{ident(e.header)}.isValid()"
        if isinstance(e, UnOp) and e.op == "!":
            return f"!{self.bool_atom(e.operand, ctx)}"
        if isinstance(e, BinOp) and e.op in dpir.LOGIC_OPS:
            return f"{self.bool_atom(e.left, ctx)} {e.op} {self.bool_atom(e.right, ctx)}"
        if isinstance(e, BinOp) and e.op in dpir.COMPARE_OPS:
            w = max(self.width(e.left, ctx), self.width(e.right, ctx))
            return f"{self.atom(e.left, ctx, w)} {e.op} {self.atom(e.right, ctx, w)}"
        return f"{self.atom(e, ctx)} != 0"

    def bool_atom(self, e: Expr, ctx: _Ctx) -> str:
        text = self.cond(e, ctx)
        return f"({text})" if _spaced(text) else text

    # -- statements -----------------------------------------------------------
    def stmts(self, body: Iterable[Stmt], ctx: _Ctx) -> list[str]:
        out: list[str] = []
        for s in body:
            out += self.stmt(s, ctx)
        return out

    def assign(self, target: str, e: Expr, ctx: _Ctx) -> str:
        w = self.p.width_of(target, ctx.params)
        return f"{self.ref(target, ctx)} = {self.value(e, ctx, w)};"

    def sum_stmts(self, e: Expr, ctx: _Ctx) -> list[str]:
        """``e``'s one's-complement sum, added up in ``meta.std.csum`` (32 bits, carries
        folded back in twice) before the statement that uses it: P4 has no such operator."""
        sums = [x for x in iter_exprs(e) if isinstance(x, OnesSum)]
        if not sums:
            return []
        if len(sums) > 1:
            raise P4BackendError(f"program '{self.p.name}': more than one one's-complement sum in one expression")
        acc = "meta.std.csum"
        total = " + ".join(self.atom(t, ctx, 32) for t in sums[0].terms)
        fold = f"{acc} = ({acc} & 32w0xffff) + ({acc} >> 16);"
        return [f"{acc} = {total};", fold, fold]

    def stmt(self, s: Stmt, ctx: _Ctx) -> list[str]:
        if isinstance(s, Assign):
            return self.sum_stmts(s.value, ctx) + [self.assign(s.target, s.value, ctx)]
        if isinstance(s, SetValid):
            h = ident(s.header)
            ht = self.p.header(s.header).header_type
            # DP-IR: a pushed header starts zeroed; P4 leaves its fields unspecified.
            return [f"hdr.{h}.setValid();"] + [f"hdr.{h}.{ident(f.name)} = 0;" for f in ht.fields]
        if isinstance(s, SetInvalid):
            return [f"hdr.{ident(s.header)}.setInvalid();"]
        if isinstance(s, CopyHeader):
            return [f"hdr.{ident(s.dst)} = hdr.{ident(s.src)};  // validity included"]
        if isinstance(s, Drop):
            return ["meta.std.drop = 1w1;"]
        if isinstance(s, Forward):
            return [self.assign("std.egress_port", s.port, ctx), "meta.std.forwarded = 1w1;"]
        if isinstance(s, ToHost):
            raise P4BackendError(
                f"program '{self.p.name}' hands unclaimed packets to the host (unclaimed: pass), but a "
                f"{self.target} switch has no host stack: compile it with unclaimed: drop"
            )
        if isinstance(s, Hash):
            return self.hash_stmt(s, ctx)
        if isinstance(s, RegisterRead):
            return self.register_read(s, ctx)
        if isinstance(s, RegisterWrite):
            return self.register_write(s, ctx)
        if isinstance(s, Count):
            return self.count(s, ctx)
        if isinstance(s, MeterExec):
            return self.meter(s, ctx)
        if isinstance(s, ReadTimestamp):
            return self.timestamp(s, ctx)
        if isinstance(s, If):
            return self.if_stmt(s, ctx, self.cond(s.cond, ctx))
        if isinstance(s, Apply):
            if ctx.in_action:
                raise P4BackendError(f"program '{self.p.name}': P4 cannot apply table '{s.table}' inside an action")
            t = ident(s.table)
            if not s.on_hit and not s.on_miss:
                return [f"{t}.apply();"]
            if not s.on_hit:
                return [f"if (!{t}.apply().hit) {{"] + _indent(self.stmts(s.on_miss, ctx)) + ["}"]
            out = [f"if ({t}.apply().hit) {{"] + _indent(self.stmts(s.on_hit, ctx))
            if s.on_miss:
                out += ["} else {"] + _indent(self.stmts(s.on_miss, ctx))
            return out + ["}"]
        if isinstance(s, Call):
            return [f"{ident(s.action)}({self.args(s.action, s.args)});"]
        raise TypeError(f"unknown statement {s!r}")  # pragma: no cover

    def if_stmt(self, s: If, ctx: _Ctx, cond: str) -> list[str]:
        """``s`` with its condition printed as ``cond``."""
        out = [f"if ({cond}) {{"] + _indent(self.stmts(s.then, ctx))
        if s.orelse:
            out += ["} else {"] + _indent(self.stmts(s.orelse, ctx))
        return out + ["}"]

    def args(self, action: str, args: tuple[int, ...]) -> str:
        a = self.p.action(action)
        return ", ".join(lit(v, prm.width) for prm, v in zip(a.params, args))

    # -- actions and tables ---------------------------------------------------
    def action_decl(self, a: Action) -> str:
        params = ", ".join(f"bit<{prm.width}> {ident(prm.name)}" for prm in a.params)
        body = _indent(self.stmts(a.body, _Ctx(a.params, in_action=True)))
        return "\n".join([f"action {ident(a.name)}({params}) {{", *body, "}"])

    def table_decl(self, t: Table) -> str:
        lines = [f"table {ident(t.name)} {{"]
        if t.keys:
            lines.append(f"{INDENT}key = {{")
            lines += [f"{INDENT * 2}{key_text(k.field, k.match)};" for k in t.keys]
            lines.append(f"{INDENT}}}")
        lines.append(f"{INDENT}actions = {{")
        lines += [f"{INDENT * 2}{ident(a)};" for a in t.actions]
        lines.append(f"{INDENT}}}")
        default = f"{ident(t.default.action)}({self.args(t.default.action, t.default.args)})"
        lines.append(f"{INDENT}{'const ' if t.const else ''}default_action = {default};")
        lines.append(f"{INDENT}size = {t.size};")
        if t.const and t.entries:
            # Without explicit priorities the first matching const entry wins (P4-16
            # §14.2.1.4), so list them best first as the interpreter ranks them.
            lines.append(f"{INDENT}const entries = {{")
            for e in dpir.ranked(t):
                sets = [self.keyset(k, m) for k, m in zip(t.keys, e.matches)]
                keyset = sets[0] if len(sets) == 1 else f"({', '.join(sets)})"
                call = f"{ident(e.action.action)}({self.args(e.action.action, e.action.args)})"
                lines.append(f"{INDENT * 2}{keyset}: {call};")
            lines.append(f"{INDENT}}}")
        lines.append("}")
        return "\n".join(lines)

    def keyset(self, k: dpir.TableKey, m: dpir.KeyMatch) -> str:
        valid = k.field.endswith("." + VALID_SUFFIX)
        if valid and k.match == "exact":
            assert isinstance(m, Exact)
            return "true" if m.value else "false"
        w = 1 if valid else self.p.width_of(k.field)
        if isinstance(m, Exact):
            return lit(m.value, w)
        if isinstance(m, Lpm):
            return f"{lit(m.value, w)} &&& {lit(prefix_mask(m.prefix_len, w), w)}"
        if isinstance(m, Ternary):
            return "_" if m.mask == 0 else f"{lit(m.value, w)} &&& {lit(m.mask, w)}"
        assert isinstance(m, Range)
        return f"{lit(m.low, w)} .. {lit(m.high, w)}"

    def control_body(self) -> list[str]:
        return self.stmts(self.p.control, _Ctx())

    def deparse_headers(self) -> list[str]:
        return [ident(h) for h in self.p.deparse]


# ---------------------------------------------------------------- helpers


def _spaced(text: str) -> bool:
    """Whether ``text`` has a space outside brackets (an operator at its top level)."""
    depth = 0
    for c in text:
        depth += c in "([{"
        depth -= c in ")]}"
        if c == " " and depth == 0:
            return True
    return False


def paren(text: str) -> str:
    """``text`` in parentheses when it has an operator at its top level."""
    return f"({text})" if _spaced(text) else text


def _indent(lines: list[str], n: int = 1) -> list[str]:
    return [INDENT * n + line if line else line for line in lines]


def indent_block(text: str, n: int) -> str:
    """``text`` indented by ``n`` levels (for templates)."""
    return "\n".join(INDENT * n + line if line else line for line in text.splitlines())


def iter_exprs(e: Expr) -> Iterable[Expr]:
    """``e`` and every expression inside it."""
    yield e
    for x in dpir.operands(e):
        yield from iter_exprs(x)


def walk_exprs(p: Program) -> Iterable[Expr]:
    """Every expression of the program's statements and parser."""
    for s in walk(p):
        for v in vars(s).values():
            for e in v if isinstance(v, tuple) else (v,):
                if isinstance(e, (Const, Ref, BinOp, UnOp, IsValid, Cast, OnesSum)):
                    yield from iter_exprs(e)
    for st in p.parser:
        for e in (*st.select, *((st.verify,) if st.verify is not None else ())):
            yield from iter_exprs(e)


# ---------------------------------------------------------------- templates


class _ResourceLoader(jinja2.BaseLoader):
    """Templates from the ``mantra6g.p4src`` package data (a wheel, a zip or a checkout)."""

    def get_source(self, environment, template):
        path = files("mantra6g.p4src").joinpath(template)
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        return path.read_text(encoding="utf-8"), None, lambda: True


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=_ResourceLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # P4 text, not HTML
    )


def template(name: str) -> jinja2.Template:
    """A template under ``p4src/``, e.g. ``"v1model/program.p4.j2"``."""
    return _env().get_template(name)

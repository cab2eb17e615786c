"""XDP/eBPF backend: one ``SEC("xdp")`` C program per DP-IR program.

The generated C follows DP-IR's semantics (``synth/interp.py`` is the reference):

* **parse**: the parser states become labelled blocks that copy each header out of the
  packet with ``bpf_xdp_load_bytes`` after checking it fits (too short: ``XDP_DROP``)
  into a per-CPU scratch area (``struct headers`` of byte arrays + a validity mask);
* **control**: tables are BPF maps — a hash map per exact table, an LPM trie per
  longest-prefix table, and an array scanned in priority order (bounded loop) per
  ternary/range table; actions are inline functions; registers are arrays, counters
  per-CPU arrays, meters token buckets in an array map (integer bit·ns arithmetic,
  as the interpreter); ``bpf_ktime_get_ns()`` is the clock;
* **deparse**: valid headers are serialised in deparse order, the packet head moves
  with ``bpf_xdp_adjust_head`` by the size difference (push/pop, encap/decap) and the
  header stack is written back with ``bpf_xdp_store_bytes``; checksums are fields the
  program already keeps right (``OnesSum`` arithmetic), so nothing is summed here;
* **verdict**: dropped or never forwarded → ``XDP_DROP`` (``XDP_PASS`` to the kernel
  after ``ToHost``); out of the ingress port → ``XDP_TX``; another port →
  ``bpf_redirect_map`` through the ``mantra_ports`` devmap (DP-IR port → ifindex, filled
  at deploy). The ingress port comes from ``mantra_port_of`` (ifindex → DP-IR port).

With ``test_hooks=True`` the program takes its clock and ingress port from the
``mantra_test`` map and records the egress port there instead of redirecting, so that
``BPF_PROG_TEST_RUN`` can replay exactly what the interpreter was given.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
from mantra6g.synth.dpir_check import VALID_SUFFIX, validate, width
from mantra6g.synth.interp import TOKEN_SCALE

OUT_MAX = 512  # bytes of headers the deparser can write
HASH_MAX = 64  # bytes of hash input
MAX_MAPS = 64  # the kernel's limit of maps one BPF program may use (MAX_USED_MAPS)
FIXED_MAPS = 4  # scratch, ports, port_of, test hooks


class XdpBackendError(MantraError):
    """The DP-IR program uses something the XDP backend cannot express (yet)."""


@dataclass(frozen=True)
class FieldSlot:
    header: str
    bit_offset: int
    width: int


@dataclass(frozen=True)
class XdpOutput:
    files: dict[str, str]  # "<name>.c", "<name>.maps.json"
    maps: tuple[str, ...]


# ---------------------------------------------------------------- layout


def _field(p: Program, path: str) -> FieldSlot:
    inst, _, name = path.partition(".")
    ht = p.header(inst).header_type
    off = 0
    for f in ht.fields:
        if f.name == name:
            return FieldSlot(inst, off, f.width)
        off += f.width
    raise XdpBackendError(f"no field {path}")


def _hbytes(p: Program, inst: str) -> int:
    return p.header(inst).header_type.width // 8


def _cname(path: str) -> str:
    scope, _, name = path.partition(".")
    return f"s->m.{name}" if scope == "meta" else f"s->m.std_{name}"


class _Printer:
    def __init__(self, p: Program, test_hooks: bool):
        self.p = p
        self.test_hooks = test_hooks
        self.hidx = {h.name: i for i, h in enumerate(p.headers)}
        if len(p.headers) > 32:
            raise XdpBackendError("more than 32 header instances")
        self.tmp = 0

    def fresh(self, stem: str) -> str:
        self.tmp += 1
        return f"{stem}{self.tmp}"

    # ------------------------------------------------------------ expressions
    def expr(self, e: Expr, params) -> str:
        if isinstance(e, Const):
            if e.width > 64:
                raise XdpBackendError("constants wider than 64 bits appear only in wide comparisons")
            return f"{e.value}ULL"
        if isinstance(e, Ref):
            scope, _, name = e.path.partition(".")
            if scope == "param":
                return f"p_{name}"
            if scope in ("meta", "std"):
                return _cname(e.path)
            f = _field(self.p, e.path)
            if f.width > 64:
                raise XdpBackendError(f"{e.path} is {f.width} bits; the XDP backend compares such fields only with == / != against constants")
            # An invalid header reads as 0; masked rather than branched, which keeps the
            # verifier from forking its state at every field read.
            return f"(get_bits(s->h.{scope}, {f.bit_offset}, {f.width}) & VALID_MASK({self.hidx[scope]}))"
        if isinstance(e, IsValid):
            return f"(__u64)VALID({self.hidx[e.header]})"
        if isinstance(e, Cast):
            return f"(({self.expr(e.operand, params)}) & MASK({e.width}))"
        if isinstance(e, OnesSum):
            return f"ones_fold({' + '.join(f'(({self.expr(t, params)}) & 0xffff)' for t in e.terms)})"
        if isinstance(e, UnOp):
            inner = self.expr(e.operand, params)
            if e.op == "!":
                return f"(__u64)!({inner})"
            return f"(~({inner}) & MASK({width(self.p, e.operand, tuple(params))}))"
        if e.op in ("==", "!=") and self._wide(e):
            return self._wide_compare(e)
        if e.op == "&&":
            return f"(__u64)(({self.expr(e.left, params)}) && ({self.expr(e.right, params)}))"
        if e.op == "||":
            return f"(__u64)(({self.expr(e.left, params)}) || ({self.expr(e.right, params)}))"
        a, b = self.expr(e.left, params), self.expr(e.right, params)
        if e.op in dpir.COMPARE_OPS:
            return f"(__u64)(({a}) {e.op} ({b}))"
        w = width(self.p, e.left, tuple(params))
        if e.op in ("<<", ">>"):
            return f"(({b}) >= {w} ? 0 : ((({a}) {e.op} ({b})) & MASK({w})))"
        return f"((({a}) {e.op} ({b})) & MASK({w}))"

    def _wide(self, e: BinOp) -> bool:
        refs = [x for x in (e.left, e.right, getattr(e.left, "left", None)) if isinstance(x, Ref)]
        return any(
            r.path.partition(".")[0] not in ("meta", "std", "param") and _field(self.p, r.path).width > 64 for r in refs
        )

    def _wide_compare(self, e: BinOp) -> str:
        """``ref == C`` or ``(ref & M) == C`` on a field wider than 64 bits, byte by byte."""
        left, right = e.left, e.right
        mask = None
        if isinstance(left, BinOp) and left.op == "&" and isinstance(left.left, Ref) and isinstance(left.right, Const):
            left, mask = left.left, left.right.value
        if not (isinstance(left, Ref) and isinstance(right, Const)):
            raise XdpBackendError("wide fields are only compared with constants")
        f = _field(self.p, left.path)
        if f.bit_offset % 8 or f.width % 8:
            raise XdpBackendError(f"{left.path} is not byte aligned")
        n = f.width // 8
        mask = (1 << f.width) - 1 if mask is None else mask
        mb, vb = mask.to_bytes(n, "big"), (right.value & mask).to_bytes(n, "big")
        start = f.bit_offset // 8
        terms = [f"((s->h.{f.header}[{start + i}] & {mb[i]}) == {vb[i]})" for i in range(n) if mb[i]] or ["1"]
        # An invalid header reads as 0.
        zero_matches = int(right.value & mask == 0)
        test = f"(VALID({self.hidx[f.header]}) ? ({' && '.join(terms)}) : {zero_matches})"
        return f"(__u64){test}" if e.op == "==" else f"(__u64)!{test}"

    # ------------------------------------------------------------ statements
    def assign(self, target: str, value: str, params) -> list[str]:
        scope, _, name = target.partition(".")
        if scope in ("meta", "std"):
            w = self.p.width_of(target)
            return [f"{_cname(target)} = ({value}) & MASK({w});"]
        f = _field(self.p, target)
        if f.width > 64:
            raise XdpBackendError(f"assigning the {f.width}-bit field {target}")
        # Writing a field of an invalid header has no effect (as in P4 and the interpreter).
        return [f"if (VALID({self.hidx[scope]})) set_bits(s->h.{scope}, {f.bit_offset}, {f.width}, {value});"]

    def stmts(self, body, params) -> list[str]:
        out: list[str] = []
        for s in body:
            out += self.stmt(s, params)
        return out

    def stmt(self, s: Stmt, params) -> list[str]:
        p = self.p
        if isinstance(s, Assign):
            return self.assign(s.target, self.expr(s.value, params), params)
        if isinstance(s, SetValid):
            i = self.hidx[s.header]
            return [f"__builtin_memset(s->h.{s.header}, 0, {_hbytes(p, s.header)}); s->valid |= BIT({i});"]
        if isinstance(s, SetInvalid):
            return [f"s->valid &= ~BIT({self.hidx[s.header]});"]
        if isinstance(s, CopyHeader):
            d, r = self.hidx[s.dst], self.hidx[s.src]
            return [
                f"if (VALID({r})) {{ __builtin_memcpy(s->h.{s.dst}, s->h.{s.src}, {_hbytes(p, s.dst)}); s->valid |= BIT({d}); }}",
                f"else {{ s->valid &= ~BIT({d}); }}",
            ]
        if isinstance(s, Drop):
            return ["s->m.std_drop = 1;"]
        if isinstance(s, Forward):
            return [f"s->m.std_egress_port = ({self.expr(s.port, params)}) & 0x1ff;", "s->m.forwarded = 1;"]
        if isinstance(s, Hash):
            total = sum(width(p, e, tuple(params)) for e in s.inputs)
            n = total // 8
            if n > HASH_MAX:
                raise XdpBackendError(f"hash inputs of {n} bytes (at most {HASH_MAX})")
            lines = [f"__builtin_memset(s->hash_in, 0, {HASH_MAX});"]
            off = 0
            for e in s.inputs:
                w = width(p, e, tuple(params))
                if w > 64:
                    raise XdpBackendError("hash inputs wider than 64 bits")
                lines.append(f"set_bits(s->hash_in, {off}, {w}, {self.expr(e, params)});")
                off += w
            value = f"{s.base}ULL + (__u64)(mantra_crc32({n}) % {s.size}U)"
            return ["{"] + ["    " + x for x in lines + self.assign(s.target, value, params)] + ["}"]
        if isinstance(s, RegisterRead):
            reg = p.register(s.register)
            v, look = self.element("__u64", f"reg_{reg.name}", s.index, reg.size, params)
            return ["{", *look, *("    " + x for x in self.assign(s.target, f"({v} ? *{v} : 0)", params)), "}"]
        if isinstance(s, RegisterWrite):
            reg = p.register(s.register)
            v, look = self.element("__u64", f"reg_{reg.name}", s.index, reg.size, params)
            value = f"({self.expr(s.value, params)}) & MASK({reg.width})"
            return ["{", *look, f"    if ({v}) *{v} = {value};", "}"]
        if isinstance(s, Count):
            c = p.counter(s.counter)
            v, look = self.element("struct counter", f"ctr_{c.name}", s.index, c.size, params)
            return ["{", *look, f"    if ({v}) {{ {v}->packets += 1; {v}->bytes += s->m.std_pkt_len; }}", "}"]
        if isinstance(s, MeterExec):
            m = p.meter(s.meter)
            b, look = self.element("struct bucket", f"meter_{m.name}", s.index, m.size, params)
            col = self.fresh("colour")
            return [
                "{",
                *look,
                f"    __u64 {col} = {dpir.RED};",
                f"    if ({b}) {col} = meter_take({b}, s->now, s->m.std_pkt_len, {m.rate_bps}ULL, {m.burst_bytes}ULL);",
                *("    " + x for x in self.assign(s.target, col, params)),
                "}",
            ]
        if isinstance(s, ReadTimestamp):
            return self.assign(s.target, "s->now", params)
        if isinstance(s, ToHost):
            return ["s->m.to_host = 1;"]
        if isinstance(s, If):
            out = [f"if ({self.expr(s.cond, params)}) {{"] + ["    " + x for x in self.stmts(s.then, params)]
            if s.orelse:
                out += ["} else {"] + ["    " + x for x in self.stmts(s.orelse, params)]
            return out + ["}"]
        if isinstance(s, Apply):
            out = [f"if (apply_{s.table}(s)) {{"] + ["    " + x for x in self.stmts(s.on_hit, params)]
            if s.on_miss:
                out += ["} else {"] + ["    " + x for x in self.stmts(s.on_miss, params)]
            return out + ["}"]
        if isinstance(s, Call):
            args = "".join(f", {a}ULL" for a in s.args)
            return [f"act_{s.action}(s{args});"]
        raise XdpBackendError(f"unknown statement {s!r}")  # pragma: no cover

    def element(self, ctype: str, map_name: str, index: Expr, size: int, params) -> tuple[str, list[str]]:
        """Lines that look up element ``index % size`` of an array map (as the interpreter
        wraps indices), and the pointer variable that holds it (NULL if absent)."""
        k, v = self.fresh("k"), self.fresh("e")
        return v, [
            f"    __u32 {k} = ({self.expr(index, params)}) % {size};",
            f"    {ctype} *{v} = bpf_map_lookup_elem(&{map_name}, &{k});",
        ]

    # ------------------------------------------------------------ program parts
    def action(self, a: dpir.Action) -> list[str]:
        params = "".join(f", __u64 p_{x.name}" for x in a.params)
        body = self.stmts(a.body, a.params)
        return [f"static __always_inline void act_{a.name}(struct scratch *s{params})", "{"] + [
            "    " + x for x in body
        ] + ["}"]

    def key_value(self, path: str) -> str:
        if path.endswith("." + VALID_SUFFIX):
            return f"(__u64)VALID({self.hidx[path[: -len(VALID_SUFFIX) - 1]]})"
        return self.expr(Ref(path), ())

    def key_width(self, path: str) -> int:
        return 1 if path.endswith("." + VALID_SUFFIX) else self.p.width_of(path)

    def table(self, t: Table) -> tuple[list[str], list[str]]:
        """(map declarations, apply function)."""
        kinds = {k.match for k in t.keys}
        nargs = max([len(self.p.action(a).params) for a in t.actions] + [1])
        widths = [self.key_width(k.field) for k in t.keys]
        if any(w > 64 for w in widths):
            raise XdpBackendError(f"table {t.name}: keys wider than 64 bits are not supported by the XDP backend")
        dispatch = ["    switch (val->action) {"]
        for i, a in enumerate(t.actions):
            n = len(self.p.action(a).params)
            args = "".join(f", val->args[{j}]" for j in range(n))
            dispatch.append(f"    case {i}: act_{a}(s{args}); break;")
        dispatch.append("    }")
        default_args = "".join(f", {x}ULL" for x in t.default.args)
        miss = [f"    act_{t.default.action}(s{default_args});", "    return 0;"]
        value_struct = f"struct val_{t.name} {{ __u32 pad; __u32 action; __u64 args[{nargs}]; }};"
        if kinds <= {"exact"}:
            nb = sum((w + 7) // 8 for w in widths)
            decl = [
                f"struct key_{t.name} {{ __u8 b[{max(nb, 1)}]; }};",
                value_struct,
                "struct {",
                "    __uint(type, BPF_MAP_TYPE_HASH);",
                f"    __uint(max_entries, {t.size});",
                f"    __type(key, struct key_{t.name});",
                f"    __type(value, struct val_{t.name});",
                f"}} tbl_{t.name} SEC(\".maps\");",
            ]
            fn = [f"static __always_inline int apply_{t.name}(struct scratch *s)", "{", f"    struct key_{t.name} key = {{}};"]
            off = 0
            for k, w in zip(t.keys, widths):
                slot = (w + 7) // 8 * 8
                fn.append(f"    set_bits(key.b, {off + slot - w}, {w}, {self.key_value(k.field)});")
                off += slot
            fn += [f"    struct val_{t.name} *val = bpf_map_lookup_elem(&tbl_{t.name}, &key);", "    if (!val) {", *("    " + x for x in miss), "    }"]
            fn += dispatch + ["    return 1;", "}"]
            return decl, fn
        if kinds == {"lpm"} and len(t.keys) == 1:
            w = widths[0]
            if w % 8:
                raise XdpBackendError(f"table {t.name}: LPM keys must be whole bytes")
            decl = [
                f"struct key_{t.name} {{ __u32 prefixlen; __u8 b[{w // 8}]; }};",
                value_struct,
                "struct {",
                "    __uint(type, BPF_MAP_TYPE_LPM_TRIE);",
                "    __uint(map_flags, BPF_F_NO_PREALLOC);",
                f"    __uint(max_entries, {t.size});",
                f"    __type(key, struct key_{t.name});",
                f"    __type(value, struct val_{t.name});",
                f"}} tbl_{t.name} SEC(\".maps\");",
            ]
            fn = [
                f"static __always_inline int apply_{t.name}(struct scratch *s)",
                "{",
                f"    struct key_{t.name} key = {{ .prefixlen = {w} }};",
                f"    set_bits(key.b, 0, {w}, {self.key_value(t.keys[0].field)});",
                f"    struct val_{t.name} *val = bpf_map_lookup_elem(&tbl_{t.name}, &key);",
                "    if (!val) {",
                *("    " + x for x in miss),
                "    }",
            ] + dispatch + ["    return 1;", "}"]
            return decl, fn
        # Ternary/range (and mixed): entries in priority order, scanned.
        nk = len(t.keys)
        decl = [
            f"struct ent_{t.name} {{ __u32 used; __u32 action; __u64 args[{nargs}]; __u64 v[{nk}]; __u64 m[{nk}]; }};",
            "struct {",
            "    __uint(type, BPF_MAP_TYPE_ARRAY);",
            f"    __uint(max_entries, {t.size});",
            "    __type(key, __u32);",
            f"    __type(value, struct ent_{t.name});",
            f"}} tbl_{t.name} SEC(\".maps\");",
        ]
        fn = [f"static __always_inline int apply_{t.name}(struct scratch *s)", "{"]
        for i, k in enumerate(t.keys):
            fn.append(f"    __u64 k{i} = {self.key_value(k.field)};")
        fn += [f"    struct ent_{t.name} *val = 0;", f"    for (__u32 i = 0; i < {t.size}; i++) {{", "        __u32 idx = i;",
               f"        struct ent_{t.name} *e = bpf_map_lookup_elem(&tbl_{t.name}, &idx);", "        if (!e || !e->used)", "            break;"]
        conds = []
        for i, k in enumerate(t.keys):
            if k.match == "range":
                conds.append(f"(k{i} >= e->v[{i}] && k{i} <= e->m[{i}])")
            else:  # exact / ternary / lpm are all value & mask here
                conds.append(f"((k{i} & e->m[{i}]) == (e->v[{i}] & e->m[{i}]))")
        fn += [f"        if ({' && '.join(conds) or '1'}) {{", "            val = e;", "            break;", "        }", "    }",
               "    if (!val) {", *("    " + x for x in miss), "    }"]
        fn += dispatch + ["    return 1;", "}"]
        return decl, fn

    def parser(self) -> list[str]:
        # The parse offset lives in the scratch map, so that after each header the
        # verifier sees one range-checked scalar instead of one constant per path.
        out = ["    s->parsed = 0;", "    goto st_start;"]
        for st in self.p.parser:
            out.append(f"st_{st.name}:")
            for h in st.extract:
                n = _hbytes(self.p, h)
                out += [
                    f"    if (RELOAD(s->parsed) + {n} > pkt_len)",
                    "        return XDP_DROP; /* too short for this header */",
                    f"    if (bpf_xdp_load_bytes(ctx, RELOAD(s->parsed), s->h.{h}, {n}) < 0)",
                    "        return XDP_DROP;",
                    f"    s->valid |= BIT({self.hidx[h]});",
                    f"    s->off[{self.hidx[h]}] = s->parsed;",
                    f"    s->parsed += {n};",
                ]
            if st.verify is not None:
                out += [f"    if (!({self.expr(st.verify, ())}))", "        return XDP_DROP; /* malformed */"]
            if st.select:
                for i, e in enumerate(st.select):
                    out.append(f"    __u64 sel_{st.name}_{i} = {self.expr(e, ())};")
                for c in st.cases:
                    masks = c.masks or tuple((1 << 64) - 1 for _ in c.values)
                    conds = [
                        f"(sel_{st.name}_{i} & {m & ((1 << 64) - 1)}ULL) == {v & m & ((1 << 64) - 1)}ULL"
                        for i, (v, m) in enumerate(zip(c.values, masks))
                    ]
                    out.append(f"    if ({' && '.join(conds)})")
                    out.append(f"        goto {self._state(c.next)};")
            out.append(f"    goto {self._state(st.default)};")
        out += ["st_reject:", "    return XDP_DROP;", "st_accept:", "    ;"]
        return out

    @staticmethod
    def _state(name: str) -> str:
        return f"st_{name}"


def _maps_for_state(p: Program) -> list[str]:
    out = []
    for r in p.registers:
        if r.width > 64:
            raise XdpBackendError(f"register {r.name} is wider than 64 bits")
        out += ["struct {", "    __uint(type, BPF_MAP_TYPE_ARRAY);", f"    __uint(max_entries, {r.size});",
                "    __type(key, __u32);", "    __type(value, __u64);", f"}} reg_{r.name} SEC(\".maps\");"]
    for c in p.counters:
        out += ["struct {", "    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);", f"    __uint(max_entries, {c.size});",
                "    __type(key, __u32);", "    __type(value, struct counter);", f"}} ctr_{c.name} SEC(\".maps\");"]
    for m in p.meters:
        out += ["struct {", "    __uint(type, BPF_MAP_TYPE_ARRAY);", f"    __uint(max_entries, {m.size});",
                "    __type(key, __u32);", "    __type(value, struct bucket);", f"}} meter_{m.name} SEC(\".maps\");"]
    return out


def emit_c(p: Program, test_hooks: bool = False) -> str:
    """The C source of ``p`` as an XDP program."""
    validate(p)
    maps = len(p.tables) + len(p.registers) + len(p.counters) + len(p.meters) + FIXED_MAPS
    if maps > MAX_MAPS:
        raise XdpBackendError(
            f"program '{p.name}' needs {maps} BPF maps (one per table, register, counter and meter, "
            f"plus {FIXED_MAPS}); the kernel allows {MAX_MAPS} per program: place fewer chains on this device"
        )
    pr = _Printer(p, test_hooks)
    header_struct = ["struct headers {"] + [f"    __u8 {h.name}[{_hbytes(p, h.name)}];" for h in p.headers] + ["};"]
    meta_struct = ["struct metadata {"] + [f"    __u64 {m.name};" for m in p.metadata] + [
        "    __u64 std_ingress_port;", "    __u64 std_egress_port;", "    __u64 std_drop;", "    __u64 std_pkt_len;",
        "    __u64 forwarded;", "    __u64 to_host;", "};"]
    tables_decl: list[str] = []
    tables_fn: list[str] = []
    for t in p.tables:
        d, f = pr.table(t)
        tables_decl += d + [""]
        tables_fn += f + [""]
    actions = []
    for a in p.actions:
        actions += pr.action(a) + [""]
    control = pr.stmts(p.control, ())
    deparse = []
    for h in p.deparse:
        i = pr.hidx[h]
        n = _hbytes(p, h)
        deparse += [
            f"    if (VALID({i})) {{",
            "        __u32 o = RELOAD(s->emitted);",
            f"        if (o > {OUT_MAX - n})",
            "            return XDP_DROP;",
            f"        s->off[{i}] = o;",
            f"        __builtin_memcpy(s->out + o, s->h.{h}, {n});",
            f"        s->emitted = o + {n};",
            "    }",
        ]
    template = resources.files("mantra6g.ebpf").joinpath("xdp_program.c.j2").read_text()
    import jinja2

    return jinja2.Template(template, keep_trailing_newline=True).render(
        name=p.name,
        doc=p.doc,
        test_hooks=test_hooks,
        header_struct="\n".join(header_struct),
        meta_struct="\n".join(meta_struct),
        nheaders=len(p.headers),
        state_maps="\n".join(_maps_for_state(p)),
        tables_decl="\n".join(tables_decl),
        actions="\n".join(actions),
        tables_fn="\n".join(tables_fn),
        parser="\n".join(pr.parser()),
        control="\n".join("    " + x for x in control),
        deparse="\n".join(deparse),
        token_scale=TOKEN_SCALE,
        out_max=OUT_MAX,
        hash_max=HASH_MAX,
    )


# ---------------------------------------------------------------- map entries


def _encode_action(t: Table, action: dpir.ActionCall, p: Program, first: int) -> bytes:
    """``{__u32 first; __u32 action; __u64 args[n]}``: ``first`` is the value struct's
    padding, or the scan entry's ``used`` flag."""
    nargs = max([len(p.action(a).params) for a in t.actions] + [1])
    args = list(action.args) + [0] * (nargs - len(action.args))
    return (
        first.to_bytes(4, "little")
        + t.actions.index(action.action).to_bytes(4, "little")
        + b"".join(a.to_bytes(8, "little") for a in args)
    )


def table_entries(p: Program, t: Table, entries=None) -> list[tuple[bytes, bytes]]:
    """(key, value) byte pairs for the table's BPF map, as the generated C lays them out."""
    entries = t.entries if entries is None else entries
    widths = [1 if k.field.endswith("." + VALID_SUFFIX) else p.width_of(k.field) for k in t.keys]
    kinds = {k.match for k in t.keys}
    out: list[tuple[bytes, bytes]] = []
    if kinds <= {"exact"}:
        seen = set()
        for e in entries:  # the first entry with a key wins, as in the interpreter
            key = b"".join(m.value.to_bytes((w + 7) // 8, "big") for m, w in zip(e.matches, widths)) or b"\0"
            if key not in seen:
                seen.add(key)
                out.append((key, _encode_action(t, e.action, p, 0)))
        return out
    if kinds == {"lpm"} and len(t.keys) == 1:
        w = widths[0]
        for e in entries:
            m = e.matches[0]
            key = m.prefix_len.to_bytes(4, "little") + m.value.to_bytes(w // 8, "big")
            out.append((key, _encode_action(t, e.action, p, 0)))
        return out
    for i, e in enumerate(dpir.ranked(t, tuple(entries))):
        vs, ms = [], []
        for m, w, k in zip(e.matches, widths, t.keys):
            top = (1 << w) - 1
            if isinstance(m, Range):
                vs.append(m.low)
                ms.append(m.high)
            elif isinstance(m, Ternary):
                vs.append(m.value)
                ms.append(m.mask)
            elif isinstance(m, Lpm):
                vs.append(m.value)
                ms.append((top >> (w - m.prefix_len)) << (w - m.prefix_len) if m.prefix_len else 0)
            else:
                vs.append(m.value)
                ms.append(top)
        value = _encode_action(t, e.action, p, 1)
        value += b"".join(v.to_bytes(8, "little") for v in vs) + b"".join(x.to_bytes(8, "little") for x in ms)
        out.append((i.to_bytes(4, "little"), value))
    return out


def entries_json(p: Program) -> str:
    """Every table's map entries (hex), for inspection and for loaders other than ours."""
    return json.dumps(
        {t.name: [{"key": k.hex(), "value": v.hex()} for k, v in table_entries(p, t)] for t in p.tables},
        indent=2,
    )


# ---------------------------------------------------------------- build


def clang() -> str:
    path = shutil.which("clang")
    if path is None:
        raise MantraError("clang not found: install it (make setup does) to build XDP programs")
    return path


def include_dirs() -> list[str]:
    """The helper header's folder and the multiarch include dir (for asm/types.h)."""
    ebpf = Path(str(resources.files("mantra6g.ebpf")))
    dirs = [str(ebpf)]
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True)
    arch = multiarch.stdout.strip() or "x86_64-linux-gnu"
    if Path(f"/usr/include/{arch}").is_dir():
        dirs.append(f"/usr/include/{arch}")
    return dirs


def build(c_file: Path, obj_file: Path) -> Path:
    """``clang -O2 -g -target bpf``; a compile error is a :class:`XdpBackendError` with clang's output."""
    cmd = [clang(), "-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-label"]
    cmd += [f"-I{d}" for d in include_dirs()] + ["-c", str(c_file), "-o", str(obj_file)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise XdpBackendError(f"clang failed on {c_file}:\n{r.stderr.strip()}")
    return obj_file


def emit(p: Program, test_hooks: bool = False) -> XdpOutput:
    """The C source and the map entries of ``p``."""
    c = emit_c(p, test_hooks)
    maps = tuple(f"tbl_{t.name}" for t in p.tables) + tuple(f"reg_{r.name}" for r in p.registers) + tuple(
        f"ctr_{c.name}" for c in p.counters
    ) + tuple(f"meter_{m.name}" for m in p.meters)
    return XdpOutput({f"{p.name}.c": c, f"{p.name}.maps.json": entries_json(p) + "\n"}, maps)


# ---------------------------------------------------------------- in the kernel


def map_fill(p: Program) -> list[tuple[str, bytes, bytes]]:
    """(map, key, value) for every table's entries and every meter bucket, full (as the
    interpreter starts them): what a loader writes before the program runs."""
    out = [(f"tbl_{t.name}", key, value) for t in p.tables for key, value in table_entries(p, t)]
    for m in p.meters:
        full = (m.burst_bytes * TOKEN_SCALE).to_bytes(8, "little") + bytes(8)
        out += [(f"meter_{m.name}", i.to_bytes(4, "little"), full) for i in range(m.size)]
    return out


def fill_maps(obj, p: Program) -> None:
    """Install :func:`map_fill` into a loaded object's maps."""
    for name, key, value in map_fill(p):
        obj.update(name, key, value)


class KernelProgram:
    """A DP-IR program compiled to XDP with test hooks and loaded, for running packets
    through ``BPF_PROG_TEST_RUN`` exactly as the interpreter runs them."""

    def __init__(self, p: Program, workdir: str | Path):
        from mantra6g.targets.bpf import BpfObject

        self.program = p
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        c_file, o_file = work / f"{p.name}.test.c", work / f"{p.name}.test.o"
        c_file.write_text(emit_c(p, test_hooks=True))
        build(c_file, o_file)
        self.obj = BpfObject.load(o_file)
        fill_maps(self.obj, p)

    def run(self, data: bytes, ingress_port: int, now_ns: int) -> list[tuple[int, bytes]]:
        """[(egress port, bytes)] like :attr:`Result.outputs` (empty when dropped)."""
        return self.run_full(data, ingress_port, now_ns)[0]

    def run_full(self, data: bytes, ingress_port: int, now_ns: int) -> tuple[list[tuple[int, bytes]], bytes | None]:
        """(outputs, bytes handed to the kernel's stack) like the interpreter's
        (:attr:`Result.outputs`, :attr:`Result.to_host`)."""
        from mantra6g.targets import bpf

        cfg = now_ns.to_bytes(8, "little") + ingress_port.to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little")
        self.obj.update("mantra_test", bytes(4), cfg)
        verdict, out, _ = self.obj.test_run(data)
        if verdict == bpf.XDP_DROP:
            return [], None
        if verdict == bpf.XDP_PASS:
            return [], out
        if verdict != bpf.XDP_TX:
            raise XdpBackendError(f"unexpected XDP verdict {verdict} (aborted?) for a {len(data)}-byte packet")
        egress = int.from_bytes(self.obj.lookup("mantra_test", bytes(4), 24)[16:24], "little")
        return [(egress, out)], None

    def close(self) -> None:
        self.obj.close()


# ---------------------------------------------------------------- compile, deploy

PIN_ROOT = Path("/sys/fs/bpf/mantra")


@dataclass(frozen=True)
class XdpBuild:
    """What ``mantra compile --target xdp`` made for one device program."""

    c_file: Path
    obj_file: Path
    maps: tuple[str, ...]
    instructions: int | None  # processed by the verifier (None: not loaded, no root)
    stack_depth: int | None
    note: str = ""

    def render(self) -> str:
        lines = [f"xdp: {self.c_file.name} -> {self.obj_file.name}", f"  maps: {', '.join(self.maps) or 'none'}"]
        if self.instructions is not None:
            lines.append(f"  verifier: {self.instructions} instructions processed, stack {self.stack_depth} bytes")
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def compile_to(p: Program, directory: Path) -> tuple[dict[str, str], XdpBuild]:
    """Write C, object and map entries; load the object once (as root) for the verifier's figures."""
    out = emit(p)
    for name, text in out.files.items():
        (directory / name).write_text(text)
    c_file, obj_file = directory / f"{p.name}.c", directory / f"{p.name}.o"
    build(c_file, obj_file)
    insns = stack = None
    note = ""
    if os.geteuid() == 0:
        from mantra6g.targets.bpf import BpfObject

        with BpfObject.load(obj_file) as obj:
            insns, stack = obj.stats.instructions, obj.stats.stack_depth
    else:
        note = "not loaded: the verifier's figures need root"
    return out.files, XdpBuild(c_file, obj_file, out.maps, insns, stack, note)


def _ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise MantraError(f"no interface '{iface}' (in this network namespace)") from None


def _in_netns(netns: str | None):
    """Enter ``netns`` for the rest of this process (deploy runs in a child process)."""
    if netns is None:
        return
    path = Path("/run/netns") / netns
    if not path.exists():
        raise MantraError(f"no network namespace '{netns}' (ip netns list shows them)")
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as f:
        if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
            raise MantraError(f"cannot enter network namespace '{netns}': {os.strerror(ctypes.get_errno())}")


def ensure_bpffs() -> None:
    """Mount the BPF filesystem at /sys/fs/bpf if it is not (as bpftool and ip do)."""
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(m.split()[1:3] == ["/sys/fs/bpf", "bpf"] for m in mounts if m):
        return
    r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True, text=True)
    if r.returncode != 0:
        raise MantraError(f"cannot mount the BPF filesystem on /sys/fs/bpf: {r.stderr.strip()}")


def pin_dir(iface: str, netns: str | None) -> Path:
    # bpffs refuses names with a dot (reserved): "eth0.100" is pinned as "eth0_100".
    return PIN_ROOT / (netns or "root").replace(".", "_") / iface.replace(".", "_")


def deploy(p: Program, obj_file: Path, iface: str, netns: str | None, ports: dict[int, str] | None = None) -> str:
    """Load ``obj_file``, fill its maps and attach it to ``iface`` (native XDP), atomically
    replacing the program there (``XDP_FLAGS_REPLACE`` against the one found: if another
    was attached meanwhile, nothing is replaced). Its maps are pinned only once it runs.
    On any failure the old program keeps running with its pinned maps as they were.
    ``ports`` maps DP-IR port numbers to interface names (default: ``iface`` is port 0)."""
    from mantra6g.targets import bpf
    from mantra6g.targets.bpf import BpfObject

    _in_netns(netns)
    ports = ports or {0: iface}
    ifindex = _ifindex(iface)
    indexes = {port: _ifindex(name) for port, name in ports.items()}
    obj = BpfObject.load(obj_file)  # raises with the verifier log; nothing attached yet
    old_id = bpf.attached_id(ifindex)
    old_fd = bpf.program_fd(old_id) if old_id else -1
    try:
        fill_maps(obj, p)
        for port, idx in indexes.items():
            obj.update("mantra_ports", port.to_bytes(4, "little"), idx.to_bytes(4, "little"))
            obj.update("mantra_port_of", idx.to_bytes(4, "little"), port.to_bytes(4, "little"))
        ensure_bpffs()
        pins = pin_dir(iface, netns)
        staging = pins.with_name(pins.name + "~new")
        _unpin(staging)
        obj.attach(ifindex, replacing=old_fd)
        try:
            obj.pin_maps(staging)
            _swap_pins(staging, pins)
        except Exception:
            # Put the old program back (it was replaced; its maps, still pinned, kept it).
            if old_fd >= 0:
                bpf.attach_fd(ifindex, old_fd, replacing=obj.fd)
            else:
                bpf.detach(ifindex)
            _unpin(staging)
            raise
    except OSError as exc:
        obj.close()
        raise MantraError(f"cannot pin the maps under {PIN_ROOT}: {exc.strerror} (is the BPF filesystem mounted "
                          "there? run mantra deploy --netns NS rather than inside ip netns exec)") from None
    except Exception:
        obj.close()
        raise
    finally:
        if old_fd >= 0:
            os.close(old_fd)
    return f"attached {p.name} to {iface}{' in ' + netns if netns else ''} (maps pinned in {pins})"


def _unpin(directory: Path) -> None:
    if directory.is_dir():
        for f in directory.iterdir():
            f.unlink()
        directory.rmdir()


def _swap_pins(new: Path, pins: Path) -> None:
    """Make ``new`` the pin directory ``pins`` (the old one's pins are removed)."""
    old = pins.with_name(pins.name + "~old")
    _unpin(old)
    if pins.is_dir():
        pins.rename(old)
    new.rename(pins)
    _unpin(old)


def undeploy(iface: str, netns: str | None) -> str:
    from mantra6g.targets import bpf

    _in_netns(netns)
    ifindex = _ifindex(iface)
    if bpf.attached_id(ifindex) == 0:
        raise MantraError(f"no XDP program is attached to {iface}")
    bpf.detach(ifindex)
    _unpin(pin_dir(iface, netns))
    return f"detached the XDP program from {iface}{' in ' + netns if netns else ''}"

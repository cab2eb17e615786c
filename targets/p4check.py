"""Check emitted P4 without p4c: the P4-16 grammar subset, name resolution, then the
width rules of P4-16's type system.

    check(text)   # raises P4CheckError naming the line, column and what is wrong

The grammar (``p4subset.lark``) follows the P4-16 specification's grammar for the
constructs Mantra's backends emit. Name resolution then checks what a parser alone
cannot: every header/struct field path (``hdr.ipv4.ttl``, ``meta.std.drop``) exists,
every transition names a declared state, every table lists and calls declared
actions, every ``t.apply()`` names a table and every ``x.method()`` a declared
instance or extern.

Types follow the specification (§7 "P4 data types", §8 "Expressions"). The type of every
expression is inferred: fields from the header and struct declarations and from the
architecture's intrinsic metadata, ``(bit<N>)`` casts, ``8w5`` literals, unsized
literals (``5``) taking the width of the other operand, comparisons giving ``bool``,
``a ++ b`` the sum of the widths, ``x[hi:lo]`` ``hi - lo + 1`` bits, extern methods
from their signatures in ``v1model.p4`` and ``tna.p4``. A problem is reported where p4c
refuses the program: binary operands of different widths, a value of one width assigned
(or passed) to another, a condition that is not a bool, ``&&`` on bits, ``++`` of an
unsized literal, a cast of a bool to more than one bit, a slice beyond its operand,
keysets of another width than their key, and ``%`` or ``/`` of a run-time value (p4c
computes them only at compile time, or by a power of two). What it cannot type
(architecture enums, extern methods it has no signature for) it does not check. p4c
remains the authority where installed: tests/targets/test_p4check.py runs ill-typed
and well-typed snippets through both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from mantra6g.errors import MantraError


@dataclass(frozen=True)
class P4Type:
    """What the checker knows of an expression's type."""

    kind: str  # "bit" | "int" (an unsized literal) | "bool" | "named" (header, struct, error, packet_in …)
    width: int = 0
    name: str = ""

    def __str__(self) -> str:
        return f"bit<{self.width}>" if self.kind == "bit" else self.name or self.kind


def bits(width: int) -> P4Type:
    return P4Type("bit", width)


BOOL, INT, ERROR = P4Type("bool"), P4Type("int"), P4Type("named", name="error")
APPLY_RESULT = P4Type("named", name="apply_result")  # t.apply(): .hit and .miss

# Functions and objects the architecture files declare (v1model.p4, tna.p4, core.p4).
ARCH_FUNCTIONS = frozenset(
    {"mark_to_drop", "hash", "update_checksum", "update_checksum_with_payload", "verify_checksum", "verify"}
)
ARCH_NAMES = frozenset(
    {
        "standard_metadata",
        "HashAlgorithm",
        "CounterType",
        "MeterType",
        "error",
        "HashAlgorithm_t",
        "CounterType_t",
        "MeterType_t",
        "MeterColor_t",
        "PORT_METADATA_SIZE",
    }
)
HEADER_METHODS = frozenset({"isValid", "setValid", "setInvalid"})
# Intrinsic metadata the backends read or write: field types from v1model.p4 and
# tofino1_base.p4 / tofino1_specs.p4 (PortId_t is bit<9>, QueueId_t bit<5> on Tofino-1).
# Where p4c is installed, a test reads them back from its architecture files.
ARCH_STRUCTS: dict[str, dict[str, P4Type]] = {
    "standard_metadata_t": {
        "ingress_port": bits(9), "egress_spec": bits(9), "egress_port": bits(9), "packet_length": bits(32),
        "ingress_global_timestamp": bits(48), "parser_error": ERROR, "mcast_grp": bits(16),
    },
    "ingress_intrinsic_metadata_t": {
        "resubmit_flag": bits(1), "packet_version": bits(2), "ingress_port": bits(9), "ingress_mac_tstamp": bits(48),
    },
    "ingress_intrinsic_metadata_from_parser_t": {"global_tstamp": bits(48), "global_ver": bits(32), "parser_err": bits(16)},
    "ingress_intrinsic_metadata_for_deparser_t": {
        "drop_ctl": bits(3), "digest_type": bits(3), "resubmit_type": bits(3), "mirror_type": bits(3),
    },
    "ingress_intrinsic_metadata_for_tm_t": {
        "ucast_egress_port": bits(9), "bypass_egress": bits(1), "qid": bits(5), "mcast_grp_a": bits(16),
    },
    "egress_intrinsic_metadata_t": {"egress_port": bits(9), "pkt_length": bits(16)},
    "egress_intrinsic_metadata_from_parser_t": {"global_tstamp": bits(48), "parser_err": bits(16)},
    "egress_intrinsic_metadata_for_deparser_t": {"drop_ctl": bits(3)},
    "egress_intrinsic_metadata_for_output_port_t": {"capture_tstamp_on_tx": bits(1)},
}
PACKET_METHODS = {"packet_in": {"extract", "advance", "lookahead"}, "packet_out": {"emit"}}
# Extern methods whose signatures the checker knows: (extern, method) -> (parameter
# types, result type). "T0", "T1", "T2" are the instance's type arguments (register<T>,
# RegisterAction<T, I, U>); None is generic or unknown (not checked). From v1model.p4
# and tofino1_base.p4; overloads with fewer parameters are covered by the first ones.
EXTERN_METHODS: dict[tuple[str, str], tuple[tuple[P4Type | str | None, ...], P4Type | str | None]] = {
    ("register", "read"): (("T0", bits(32)), None),
    ("register", "write"): ((bits(32), "T0"), None),
    ("counter", "count"): ((bits(32),), None),
    ("meter", "execute_meter"): ((bits(32), None), None),
    ("RegisterAction", "execute"): (("T1",), "T2"),
    ("Counter", "count"): (("T1",), None),
    ("Meter", "execute"): (("T0",), bits(8)),
    ("Hash", "get"): ((None,), "T0"),
}
ARITHMETIC = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "band": "&", "bor": "|", "bxor": "^"}
SHIFTS = {"shl": "<<", "shr": ">>"}
EQUALITY = {"eq": "==", "ne": "!="}
ORDERING = {"lt": "<", "gt": ">", "le": "<=", "ge": ">="}
LOGIC = {"and_": "&&", "or_": "||"}


class P4CheckError(MantraError):
    """Emitted P4 that does not parse, names something undeclared or is ill-typed (a
    backend bug)."""


@cache
def _parser() -> Lark:
    grammar = files("mantra6g.targets").joinpath("p4subset.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def parse(text: str) -> Tree:
    """Parse ``text`` with the P4-16 subset grammar; raise :class:`P4CheckError`."""
    try:
        return _parser().parse(text)
    except UnexpectedInput as exc:
        raise P4CheckError(
            f"P4 syntax error at line {exc.line}, column {exc.column}:\n{exc.get_context(text)}"
            f"{_expected(exc)}"
        ) from None


def _expected(exc: UnexpectedInput) -> str:
    expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
    return f"expected one of: {', '.join(sorted(expected)[:12])}" if expected else ""


def check(text: str) -> Tree:
    """Parse, resolve names and check types; returns the parse tree."""
    tree = parse(text)
    problems = _Checker(tree, text).run()
    if problems:
        raise P4CheckError("P4 check failed (line:column):\n  " + "\n  ".join(problems))
    return tree


# ---------------------------------------------------------------- helpers


def _name(t: Tree | Token) -> str:
    if isinstance(t, Token):
        return str(t)
    if t.data == "apply_name":
        return "apply"
    return str(t.children[0])


def _chain(t: Tree | Token) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything else (calls, slices …)."""
    if isinstance(t, Token):
        return [str(t)] if t.type == "NAME" else None
    if t.data == "name_ref":
        return [str(t.children[0])]
    if t.data == "member":
        head = _chain(t.children[0])
        return None if head is None else head + [_name(t.children[1])]
    return None


_LITERAL = re.compile(r"(?:([0-9]+)([ws]))?(.*)", re.S)


def _literal_type(text: str) -> P4Type | None:
    width, sign, _ = _LITERAL.fullmatch(text).groups()
    if width is None:
        return INT
    return bits(int(width)) if sign == "w" else None  # signed int<N>: not emitted, not checked


def _int_value(e: Tree | Token) -> int | None:
    """The value of an integer literal, or None for anything else."""
    if not (isinstance(e, Tree) and e.data == "integer"):
        return None
    digits = _LITERAL.fullmatch(str(e.children[0])).group(3).replace("_", "").lower()
    base = {"0x": 16, "0b": 2, "0o": 8}.get(digits[:2], 10)
    return int(digits[2:] if base != 10 else digits, base)


def _assignable(dst: P4Type | None, src: P4Type | None) -> bool:
    """Whether a value of type ``src`` may be stored in ``dst`` (unknown: yes)."""
    return dst is None or src is None or dst == src or (src == INT and dst.kind == "bit")


@dataclass
class _Scope:
    kind: str  # "parser" | "control"
    name: str
    params: dict[str, P4Type | None] = field(default_factory=dict)
    actions: dict[str, tuple[P4Type | None, ...]] = field(default_factory=dict)  # name -> parameter types
    tables: set[str] = field(default_factory=set)
    instances: dict[str, tuple[str, tuple[P4Type | None, ...]]] = field(default_factory=dict)  # type, type args
    states: set[str] = field(default_factory=set)
    locals: dict[str, P4Type | None] = field(default_factory=dict)  # action/function parameters, constants


class _Checker:
    def __init__(self, tree: Tree, source: str):
        self.tree = tree
        self.source = source
        self.types: dict[str, dict[str, P4Type | None]] = {}  # header/struct -> field -> type
        self.headers: set[str] = set()
        self.problems: list[str] = []
        self.declared: set[str] = set()  # parsers and controls
        self.constants: dict[str, P4Type | None] = {}

    def err(self, node: Tree | Token, msg: str) -> None:
        if isinstance(node, Tree):
            line, col = getattr(node.meta, "line", "?"), getattr(node.meta, "column", "?")
        else:
            line, col = getattr(node, "line", "?"), getattr(node, "column", "?")
        self.problems.append(f"{line}:{col}: {msg}")

    def text(self, node: Tree) -> str:
        """The source of ``node``, on one line."""
        start, end = getattr(node.meta, "start_pos", None), getattr(node.meta, "end_pos", None)
        return " ".join(self.source[start:end].split()) if start is not None else "?"

    def type_of(self, t: Tree | Token) -> P4Type | None:
        """A declared type (``type_ref``); None where the checker does not follow it
        (typedefs, extern types)."""
        if isinstance(t, Token):
            name = str(t)
        elif t.data == "bit_type":
            return bits(int(str(t.children[0]), 0))
        elif t.data == "bool_type":
            return BOOL
        elif t.data == "error_type":
            return ERROR
        elif t.data == "type_name":
            name = str(t.children[0])
        else:
            return None
        known = name in self.types or name in ARCH_STRUCTS or name in PACKET_METHODS
        return P4Type("named", name=name) if known else None

    def run(self) -> list[str]:
        decls = [d for d in self.tree.children if isinstance(d, Tree)]
        for d in decls:  # a control's annotations (bf-p4c's @pa_* pragmas) say nothing about types
            d.children = [c for c in d.children if not (isinstance(c, Tree) and c.data == "annotation")]
        for d in decls:
            if d.data in ("header_type_declaration", "struct_type_declaration"):
                self.types[str(d.children[0])] = {}
                if d.data == "header_type_declaration":
                    self.headers.add(str(d.children[0]))
            elif d.data in ("parser_declaration", "control_declaration"):
                self.declared.add(str(d.children[0]))
        for d in decls:
            if d.data in ("header_type_declaration", "struct_type_declaration"):
                self.types[str(d.children[0])] = {str(f.children[1]): self.type_of(f.children[0]) for f in d.children[1:]}
        for d in decls:
            if d.data == "constant_declaration":
                self.constant(self.constants, _Scope("global", ""), d)
            elif d.data == "parser_declaration":
                self.parser(d)
            elif d.data == "control_declaration":
                self.control(d)
            elif d.data == "instantiation":
                for call in d.find_data("call"):
                    ch = _chain(call.children[0])
                    if ch and len(ch) == 1 and ch[0] not in self.declared:
                        self.err(call, f"package argument {ch[0]}() is not a declared parser or control")
        return self.problems

    def params(self, plist: Tree) -> dict[str, P4Type | None]:
        return {str(prm.children[-1]): self.type_of(prm.children[-2]) for prm in plist.children}

    def constant(self, into: dict[str, P4Type | None], scope: _Scope, d: Tree) -> None:
        declared = self.type_of(d.children[0])
        value = self.expr(scope, d.children[2])
        if not _assignable(declared, value):
            self.err(d, f"constant {d.children[1]} of type {declared} is initialised with {value}")
        into[str(d.children[1])] = declared

    # -- declarations ---------------------------------------------------------
    def parser(self, d: Tree) -> None:
        scope = _Scope("parser", str(d.children[0]), params=self.params(d.children[1]), locals=dict(self.constants))
        for c in d.children[2:]:
            if c.data == "instantiation":
                self.instance(scope, c)
            elif c.data == "parser_state":
                scope.states.add(str(c.children[0]))
        for c in d.children[2:]:
            if c.data != "parser_state":
                continue
            for st in c.children[1:]:
                if st.data == "transition_statement":
                    self.transition(scope, st)
                else:
                    self.stmt(scope, st)

    def transition(self, scope: _Scope, st: Tree) -> None:
        target = st.children[0]
        if target.data == "goto_state":
            names = [target.children[0]]
        else:
            keys = [self.expr(scope, e) for e in target.children[0].children]
            for case in target.children[1:]:
                self.keyset(scope, case.children[0], keys)
            names = [case.children[-1] for case in target.children[1:]]
        for n in names:
            if str(n) not in scope.states | {"accept", "reject"}:
                self.err(st, f"transition to undeclared state '{n}'")

    def keyset(self, scope: _Scope, ks: Tree, keys: list[P4Type | None]) -> None:
        """A select case's or a const entry's keyset against the key types."""
        if ks.data in ("default_keyset", "dont_care_keyset"):
            return
        elems = ks.children if ks.data == "tuple_keyset_expression" else [ks]
        if len(elems) != len(keys):
            self.err(ks, f"keyset '{self.text(ks)}' has {len(elems)} values for {len(keys)} keys")
            return
        for elem, key in zip(elems, keys):
            if elem.data in ("default_keyset", "dont_care_keyset"):
                continue
            values = elem.children if elem.data in ("mask_keyset", "range_keyset") else [elem]
            for v in values:
                t = self.expr(scope, v)
                if not _assignable(key, t):
                    self.err(v, f"keyset value '{self.text(v)}' is {t}, its key {key}")

    def control(self, d: Tree) -> None:
        scope = _Scope("control", str(d.children[0]), params=self.params(d.children[1]), locals=dict(self.constants))
        locals_ = d.children[2:-1]
        for c in locals_:
            if c.data == "action_declaration":
                scope.actions[str(c.children[0])] = tuple(self.params(c.children[1]).values())
            elif c.data == "table_declaration":
                scope.tables.add(str(c.children[0]))
            elif c.data == "instantiation":
                self.instance(scope, c)
            elif c.data == "constant_declaration":
                self.constant(scope.locals, scope, c)
        for c in locals_:
            if c.data == "action_declaration":
                self.stmt(self.inner(scope, c.children[1]), c.children[2])
            elif c.data == "table_declaration":
                self.table(scope, c)
            elif c.data == "instantiation":
                for fn in c.find_data("function_declaration"):
                    self.stmt(self.inner(scope, fn.children[2]), fn.children[3])
        self.stmt(scope, d.children[-1])

    def inner(self, scope: _Scope, plist: Tree) -> _Scope:
        """The scope of an action's or a function's body: its parameters are locals."""
        return _Scope(**{**scope.__dict__, "locals": {**scope.locals, **self.params(plist)}})

    def instance(self, scope: _Scope, c: Tree) -> None:
        t = c.children[0]
        type_name = _type_name(t)
        args: tuple[P4Type | None, ...] = ()
        if isinstance(t, Tree) and t.data == "specialized_type":
            args = tuple(self.type_of(a) for a in t.children[1:])
        elif isinstance(t, Tree) and t.data == "specialized_type_shr":  # the last "bit<N>>"
            args = tuple(self.type_of(a) for a in t.children[1:-1]) + (bits(int(str(t.children[-1]), 0)),)
        scope.instances[str(c.children[2])] = (type_name, args)
        for a in c.children[1].children:
            self.expr(scope, a)

    def table(self, scope: _Scope, t: Tree) -> None:
        keys: list[P4Type | None] = []
        for prop in t.children[1:]:
            if prop.data == "key_property":
                keys = [self.expr(scope, k.children[0]) for k in prop.children]
            elif prop.data == "actions_property":
                for ref in prop.children:
                    self.action_ref(scope, ref)
            elif prop.data == "entries_property":
                for entry in prop.children:
                    if isinstance(entry, Tree) and entry.data == "entry":
                        self.keyset(scope, entry.children[0], keys)
                        self.action_ref(scope, entry.children[-1], with_args=True)
            elif prop.data == "simple_property" and _name(prop.children[-2]) == "default_action":
                call = prop.children[-1]
                ch = _chain(call.children[0]) if isinstance(call, Tree) and call.data == "call" else _chain(call)
                if not ch or ch[0] not in scope.actions:
                    self.err(prop, f"table {t.children[0]}: default_action is not a declared action")
                elif isinstance(call, Tree) and call.data == "call":
                    self.action_args(scope, call, ch[0], call.children[1].children if len(call.children) > 1 else [])

    def action_ref(self, scope: _Scope, ref: Tree, with_args: bool = False) -> None:
        name = str(ref.children[0])
        if name not in scope.actions:
            self.err(ref, f"undeclared action '{name}'")
        elif with_args:  # a const entry's action gets every parameter
            self.action_args(scope, ref, name, ref.children[1].children if len(ref.children) > 1 else [])

    def action_args(self, scope: _Scope, node: Tree, action: str, args: list) -> None:
        params = scope.actions[action]
        if len(args) != len(params):
            self.err(node, f"action {action} takes {len(params)} arguments, given {len(args)}")
        for a, want in zip(args, params):
            got = self.expr(scope, a)
            if not _assignable(want, got):
                self.err(a, f"argument '{self.text(a)}' of action {action} is {got}, the parameter {want}")

    # -- statements ---------------------------------------------------------------
    def stmt(self, scope: _Scope, s: Tree | Token) -> None:
        if not isinstance(s, Tree):
            return
        if s.data == "method_call_statement":
            self.call(scope, s, s.children[0], s.children[1].children, statement=True)
        elif s.data == "assignment":
            dst = self.expr(scope, s.children[0])
            src = self.expr(scope, s.children[1])
            if not _assignable(dst, src):
                self.err(s, f"assignment of {src} '{self.text(s.children[1])}' to '{self.text(s.children[0])}', "
                            f"which is {dst}")
        elif s.data == "conditional_statement":
            cond = self.expr(scope, s.children[0])
            if cond is not None and cond != BOOL:
                self.err(s.children[0], f"the condition '{self.text(s.children[0])}' is {cond}, not bool")
            for c in s.children[1:]:
                self.stmt(scope, c)
        else:  # block_statement, empty and return statements
            for c in s.children:
                self.stmt(scope, c)

    def call(self, scope: _Scope, node: Tree, target: Tree | Token, args: list, statement: bool) -> P4Type | None:
        """A call (statement or expression): names resolved, arguments checked where the
        signature is known; the result's type."""
        ch = _chain(target)
        if ch is None:
            self.expr(scope, target)
            self.exprs(scope, args)
            return None
        if len(ch) == 1:
            name = ch[0]
            if name in scope.actions:
                self.action_args(scope, node, name, args)
                return None
            if statement and name not in ARCH_FUNCTIONS:
                self.err(node, f"call of undeclared action or function '{name}'")
            elif not statement and name not in self.declared:
                self.err(node, f"call of undeclared '{name}'")
            types = self.exprs(scope, args)
            if name == "verify" and types and types[0] not in (None, BOOL):
                self.err(args[0], f"verify's condition '{self.text(args[0])}' is {types[0]}, not bool")
            return None
        head, method = ch[:-1], ch[-1]
        if len(head) == 1 and head[0] in scope.tables:
            if method != "apply":
                self.err(node, f"table {head[0]} has no method '{method}'")
            self.exprs(scope, args)
            return APPLY_RESULT
        if len(head) == 1 and head[0] in scope.instances:
            return self.extern_call(scope, node, scope.instances[head[0]], method, args)
        self.exprs(scope, args)
        if len(head) == 1 and head[0] in scope.params and scope.params[head[0]] is not None \
                and scope.params[head[0]].name in PACKET_METHODS:
            kind = scope.params[head[0]].name
            if method not in PACKET_METHODS[kind]:
                self.err(node, f"{kind} has no method '{method}'")
            return None
        t = self.path_type(scope, node, head)
        if t is not None and (t.name not in self.headers or method not in HEADER_METHODS):
            self.err(node, f"'{'.'.join(head)}' ({t}) has no method '{method}'")
        return BOOL if method == "isValid" else None

    def extern_call(self, scope: _Scope, node: Tree, instance: tuple[str, tuple[P4Type | None, ...]], method: str,
                    args: list) -> P4Type | None:
        """A method of an extern instance: its arguments against the known signature."""
        extern, type_args = instance
        types = self.exprs(scope, args)
        signature = EXTERN_METHODS.get((extern, method))
        if signature is None:
            return None

        def resolve(t: P4Type | str | None) -> P4Type | None:
            if isinstance(t, str):
                i = int(t[1:])
                return type_args[i] if i < len(type_args) else None
            return t

        params, result = signature
        for a, got, want in zip(args, types, params):
            want = resolve(want)
            if not _assignable(want, got):
                self.err(a, f"argument '{self.text(a)}' of {extern}.{method} is {got}, the parameter {want}")
        return resolve(result)

    def exprs(self, scope: _Scope, args: list) -> list[P4Type | None]:
        return [self.expr(scope, a.children[1] if a.data == "named_argument" else a) for a in args]

    def path_type(self, scope: _Scope, node: Tree, ch: list[str]) -> P4Type | None:
        """The type a field path names, or None (after reporting) if it names nothing."""
        root = ch[0]
        if root in scope.locals:
            return scope.locals[root] if len(ch) == 1 else None
        if root not in scope.params:
            if root not in ARCH_NAMES | scope.instances.keys() | scope.actions.keys() | scope.tables:
                self.err(node, f"undeclared name '{root}'")
            return None  # architecture enums and extern objects are not tracked
        t = scope.params[root]
        for i, f in enumerate(ch[1:], start=1):
            if t is None:
                return None
            if t.name in ARCH_STRUCTS and t.name not in self.types:
                if f not in ARCH_STRUCTS[t.name]:
                    self.err(node, f"{t} has no field '{f}'")
                    return None
                t = ARCH_STRUCTS[t.name][f]
                continue
            fields = self.types.get(t.name) if t.kind == "named" else None
            if fields is None or f not in fields:
                self.err(node, f"'{'.'.join(ch[: i + 1])}': {t} has no field '{f}'")
                return None
            t = fields[f]
        return t

    # -- expressions --------------------------------------------------------------
    def expr(self, scope: _Scope, e: Tree | Token) -> P4Type | None:
        """Resolve the names in ``e``, report its type errors, and return its type."""
        if not isinstance(e, Tree):
            return None
        d = e.data
        if d == "integer":
            return _literal_type(str(e.children[0]))
        if d in ("true", "false"):
            return BOOL
        if d == "error_member":
            return ERROR
        if d == "call":
            return self.call(scope, e, e.children[0], e.children[1].children if len(e.children) > 1 else [],
                             statement=False)
        if d in ("member", "name_ref"):
            ch = _chain(e)
            if ch is not None:
                if ch[-1] == "hit" and len(ch) == 1:
                    return None
                return self.path_type(scope, e, ch)
            inner = self.expr(scope, e.children[0])  # t.apply().hit: the call resolves the table
            return BOOL if inner == APPLY_RESULT and _name(e.children[1]) in ("hit", "miss") else None
        if d in ARITHMETIC or d in SHIFTS or d in EQUALITY or d in ORDERING or d in LOGIC or d == "concat":
            return self.binop(scope, e)
        if d == "cast":
            return self.cast(scope, e)
        if d == "not_":
            t = self.expr(scope, e.children[0])
            if t is not None and t != BOOL:
                self.err(e, f"'!' needs a bool: '{self.text(e.children[0])}' is {t}")
            return BOOL
        if d in ("complement", "negate"):
            t = self.expr(scope, e.children[0])
            if t is not None and t.kind != "bit" and t != INT:
                self.err(e, f"'{'~' if d == 'complement' else '-'}' needs bits: '{self.text(e.children[0])}' is {t}")
                return None
            return t
        if d == "conditional":
            return self.conditional(scope, e)
        if d == "slice":
            return self.slice(scope, e)
        for c in e.children:  # list expressions {a, b}: their elements
            if isinstance(c, Tree):
                for x in c.children if c.data == "expression_list" else [c]:
                    self.expr(scope, x)
        return None

    def binop(self, scope: _Scope, e: Tree) -> P4Type | None:
        left, right = e.children
        lt, rt = self.expr(scope, left), self.expr(scope, right)
        d = e.data
        op = {**ARITHMETIC, **SHIFTS, **EQUALITY, **ORDERING, **LOGIC, "concat": "++"}[d]
        if d in LOGIC:
            for side, t in ((left, lt), (right, rt)):
                if t is not None and t != BOOL:
                    self.err(e, f"'{self.text(e)}': '{op}' needs bool operands, '{self.text(side)}' is {t}")
            return BOOL
        if d in EQUALITY or d in ORDERING:
            if lt is not None and rt is not None and not (_assignable(lt, rt) or _assignable(rt, lt)):
                self.err(e, f"'{self.text(e)}': {lt} cannot be compared with {rt}")
            elif d in ORDERING and (lt in (BOOL, ERROR) or rt in (BOOL, ERROR)):
                self.err(e, f"'{self.text(e)}': '{op}' needs bits, not {lt if lt in (BOOL, ERROR) else rt}")
            return BOOL
        for side, t in ((left, lt), (right, rt)):
            if t is not None and t.kind != "bit" and t != INT:
                self.err(e, f"'{self.text(e)}': '{op}' needs bits, '{self.text(side)}' is {t}")
                return None
        if d in SHIFTS:  # the shift amount may have any width
            return lt
        if d == "concat":
            for side, t in ((left, lt), (right, rt)):
                if t == INT:
                    self.err(e, f"'{self.text(e)}': '++' needs operands of known width, "
                                f"'{self.text(side)}' is an unsized integer")
                    return None
            return bits(lt.width + rt.width) if lt is not None and rt is not None else None
        if lt is not None and rt is not None and lt.kind == rt.kind == "bit" and lt.width != rt.width:
            self.err(e, f"'{self.text(e)}': the operands of '{op}' have different widths, {lt} and {rt}")
            return None
        if d in ("mod", "div"):
            divisor = _int_value(right)
            constant = _int_value(left) is not None and divisor is not None
            if not constant and (divisor is None or divisor <= 0 or divisor & (divisor - 1)):
                self.err(e, f"'{self.text(e)}': p4c computes '{op}' of a run-time value only by a power of two")
        if lt is None or rt is None:
            return lt if lt is not None and lt.kind == "bit" else rt if rt is not None and rt.kind == "bit" else None
        return lt if lt.kind == "bit" else rt

    def cast(self, scope: _Scope, e: Tree) -> P4Type | None:
        target, operand = self.type_of(e.children[0]), self.expr(scope, e.children[1])
        if operand == BOOL and target is not None and target != bits(1) and target != BOOL:
            self.err(e, f"'{self.text(e)}': a bool casts to bit<1> only, not {target}")
        elif target == BOOL and operand is not None and operand not in (BOOL, INT, bits(1)):
            self.err(e, f"'{self.text(e)}': only bit<1> casts to bool, not {operand}")
        elif operand is not None and operand.kind == "named":
            self.err(e, f"'{self.text(e)}': {operand} cannot be cast to {target}")
        return target

    def conditional(self, scope: _Scope, e: Tree) -> P4Type | None:
        cond, a, b = e.children
        ct, at, bt = self.expr(scope, cond), self.expr(scope, a), self.expr(scope, b)
        if ct is not None and ct != BOOL:
            self.err(cond, f"the condition '{self.text(cond)}' is {ct}, not bool")
        if at == INT and bt == INT:
            self.err(e, f"'{self.text(e)}': a width must be given for at least one of the alternatives")
            return None
        if at is not None and bt is not None and not (_assignable(at, bt) or _assignable(bt, at)):
            self.err(e, f"'{self.text(e)}': the alternatives are {at} and {bt}")
            return None
        return at if at not in (None, INT) else bt

    def slice(self, scope: _Scope, e: Tree) -> P4Type | None:
        base, hi_e, lo_e = e.children
        t = self.expr(scope, base)
        hi, lo = _int_value(hi_e), _int_value(lo_e)
        self.expr(scope, hi_e)
        self.expr(scope, lo_e)
        if t is not None and t.kind != "bit" and t != INT:
            self.err(e, f"'{self.text(e)}': only bits can be sliced, '{self.text(base)}' is {t}")
            return None
        if hi is None or lo is None:
            return None
        if hi < lo or (t is not None and t.kind == "bit" and hi >= t.width):
            self.err(e, f"'{self.text(e)}': slice [{hi}:{lo}] of {t}")
            return None
        return bits(hi - lo + 1)


def _type_name(t: Tree | Token) -> str:
    if isinstance(t, Token):
        return str(t)
    if t.data in ("type_name", "specialized_type", "specialized_type_shr"):
        return str(t.children[0])
    return t.data

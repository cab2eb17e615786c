"""Check emitted P4 without p4c: the P4-16 grammar subset, then cheap name resolution.

    check(text)   # raises P4CheckError naming the line, column and what is wrong

The grammar (``p4subset.lark``) follows the P4-16 specification's grammar for the
constructs Mantra's backends emit. Name resolution then checks what a parser alone
cannot: every header/struct field path (``hdr.ipv4.ttl``, ``meta.std.drop``) exists,
every transition names a declared state, every table lists and calls declared
actions, every ``t.apply()`` names a table and every ``x.method()`` a declared
instance or extern. It is not a type checker; p4c remains the authority where
installed (see the tool-gated tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from mantra6g.errors import MantraError

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
ARCH_STRUCTS = {
    # Intrinsic metadata the backends read or write, field names from the arch files.
    "standard_metadata_t": {
        "ingress_port", "egress_spec", "egress_port", "packet_length",
        "ingress_global_timestamp", "parser_error", "mcast_grp",
    },
    "ingress_intrinsic_metadata_t": {"resubmit_flag", "packet_version", "ingress_port", "ingress_mac_tstamp"},
    "ingress_intrinsic_metadata_from_parser_t": {"global_tstamp", "global_ver", "parser_err"},
    "ingress_intrinsic_metadata_for_deparser_t": {"drop_ctl", "digest_type", "resubmit_type", "mirror_type"},
    "ingress_intrinsic_metadata_for_tm_t": {"ucast_egress_port", "bypass_egress", "qid", "mcast_grp_a"},
    "egress_intrinsic_metadata_t": {"egress_port", "pkt_length"},
    "egress_intrinsic_metadata_from_parser_t": {"global_tstamp", "parser_err"},
    "egress_intrinsic_metadata_for_deparser_t": {"drop_ctl"},
    "egress_intrinsic_metadata_for_output_port_t": {"capture_tstamp_on_tx"},
}
PACKET_METHODS = {"packet_in": {"extract", "advance", "lookahead"}, "packet_out": {"emit"}}


class P4CheckError(MantraError):
    """Emitted P4 that does not parse or names something undeclared (a backend bug)."""


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
    """Parse and resolve names; returns the parse tree."""
    tree = parse(text)
    problems = _Resolver(tree).run()
    if problems:
        raise P4CheckError("P4 name resolution failed:\n  " + "\n  ".join(problems))
    return tree


# ---------------------------------------------------------------- name resolution


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


@dataclass
class _Scope:
    kind: str  # "parser" | "control"
    name: str
    params: dict[str, str] = field(default_factory=dict)  # name -> type name
    actions: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    instances: dict[str, str] = field(default_factory=dict)  # name -> type name
    states: set[str] = field(default_factory=set)
    locals: set[str] = field(default_factory=set)  # action parameters, function params


class _Resolver:
    def __init__(self, tree: Tree):
        self.tree = tree
        self.types: dict[str, dict[str, str]] = {}  # header/struct -> field -> type name
        self.headers: set[str] = set()
        self.problems: list[str] = []
        self.declared: set[str] = set()  # parsers and controls

    def err(self, node: Tree, msg: str) -> None:
        line = getattr(node.meta, "line", "?") if isinstance(node, Tree) else getattr(node, "line", "?")
        self.problems.append(f"line {line}: {msg}")

    def run(self) -> list[str]:
        for d in self.tree.children:
            if isinstance(d, Tree) and d.data in ("header_type_declaration", "struct_type_declaration"):
                fields = {}
                for f in d.children[1:]:
                    fields[str(f.children[1])] = _type_name(f.children[0])
                self.types[str(d.children[0])] = fields
                if d.data == "header_type_declaration":
                    self.headers.add(str(d.children[0]))
            elif isinstance(d, Tree) and d.data in ("parser_declaration", "control_declaration"):
                self.declared.add(str(d.children[0]))
        for d in self.tree.children:
            if isinstance(d, Tree) and d.data == "parser_declaration":
                self.parser(d)
            elif isinstance(d, Tree) and d.data == "control_declaration":
                self.control(d)
            elif isinstance(d, Tree) and d.data == "instantiation":
                for call in d.find_data("call"):
                    ch = _chain(call.children[0])
                    if ch and len(ch) == 1 and ch[0] not in self.declared:
                        self.err(call, f"package argument {ch[0]}() is not a declared parser or control")
        return self.problems

    def params(self, scope: _Scope, plist: Tree) -> None:
        for prm in plist.children:
            scope.params[str(prm.children[-1])] = _type_name(prm.children[-2])

    # -- declarations ---------------------------------------------------------
    def parser(self, d: Tree) -> None:
        scope = _Scope("parser", str(d.children[0]))
        self.params(scope, d.children[1])
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
            for e in target.children[0].children:
                self.expr(scope, e)
            names = [case.children[-1] for case in target.children[1:]]
        for n in names:
            if str(n) not in scope.states | {"accept", "reject"}:
                self.err(st, f"transition to undeclared state '{n}'")

    def control(self, d: Tree) -> None:
        scope = _Scope("control", str(d.children[0]))
        self.params(scope, d.children[1])
        locals_ = d.children[2:-1]
        for c in locals_:
            if c.data == "action_declaration":
                scope.actions.add(str(c.children[0]))
            elif c.data == "table_declaration":
                scope.tables.add(str(c.children[0]))
            elif c.data == "instantiation":
                self.instance(scope, c)
        for c in locals_:
            if c.data == "action_declaration":
                inner = _Scope(**{**scope.__dict__, "locals": {str(p.children[-1]) for p in c.children[1].children}})
                self.stmt(inner, c.children[2])
            elif c.data == "table_declaration":
                self.table(scope, c)
            elif c.data == "instantiation":
                for fn in c.find_data("function_declaration"):
                    inner = _Scope(**{**scope.__dict__, "locals": {str(p.children[-1]) for p in fn.children[2].children}})
                    self.stmt(inner, fn.children[3])
        self.stmt(scope, d.children[-1])

    def instance(self, scope: _Scope, c: Tree) -> None:
        name = str(c.children[2])
        scope.instances[name] = _type_name(c.children[0])
        for a in c.children[1].children:
            self.expr(scope, a)

    def table(self, scope: _Scope, t: Tree) -> None:
        for prop in t.children[1:]:
            if prop.data == "key_property":
                for k in prop.children:
                    self.expr(scope, k.children[0])
            elif prop.data == "actions_property":
                for ref in prop.children:
                    self.action_ref(scope, ref)
            elif prop.data == "entries_property":
                for entry in prop.children:
                    if isinstance(entry, Tree) and entry.data == "entry":
                        self.action_ref(scope, entry.children[-1])
            elif prop.data == "simple_property" and _name(prop.children[-2]) == "default_action":
                call = prop.children[-1]
                ch = _chain(call.children[0]) if isinstance(call, Tree) and call.data == "call" else _chain(call)
                if not ch or ch[0] not in scope.actions:
                    self.err(prop, f"table {t.children[0]}: default_action is not a declared action")

    def action_ref(self, scope: _Scope, ref: Tree) -> None:
        if str(ref.children[0]) not in scope.actions:
            self.err(ref, f"undeclared action '{ref.children[0]}'")

    # -- statements and expressions ----------------------------------------------
    def stmt(self, scope: _Scope, s: Tree | Token) -> None:
        if not isinstance(s, Tree):
            return
        if s.data == "method_call_statement":
            self.callee(scope, s, s.children[0])
            for a in s.children[1].children:
                self.expr(scope, a)
        elif s.data == "assignment":
            self.expr(scope, s.children[0])
            self.expr(scope, s.children[1])
        else:
            for c in s.children:
                if isinstance(c, Tree) and c.data in ("method_call_statement", "assignment", "block_statement",
                                                      "conditional_statement"):
                    self.stmt(scope, c)
                else:
                    self.expr(scope, c)

    def callee(self, scope: _Scope, node: Tree, target: Tree | Token) -> None:
        ch = _chain(target)
        if ch is None:
            self.expr(scope, target)
            return
        if len(ch) == 1:
            if ch[0] not in scope.actions and ch[0] not in ARCH_FUNCTIONS:
                self.err(node, f"call of undeclared action or function '{ch[0]}'")
            return
        head, method = ch[:-1], ch[-1]
        if len(head) == 1 and head[0] in scope.tables:
            if method != "apply":
                self.err(node, f"table {head[0]} has no method '{method}'")
            return
        if len(head) == 1 and head[0] in scope.instances:
            return  # extern methods: their signatures live in the architecture file
        if len(head) == 1 and scope.params.get(head[0]) in PACKET_METHODS:
            if method not in PACKET_METHODS[scope.params[head[0]]]:
                self.err(node, f"{scope.params[head[0]]} has no method '{method}'")
            return
        t = self.path_type(scope, node, head)
        if t is not None and (t not in self.headers or method not in HEADER_METHODS):
            self.err(node, f"'{'.'.join(head)}' ({t}) has no method '{method}'")

    def path_type(self, scope: _Scope, node: Tree, ch: list[str]) -> str | None:
        """The type a field path names, or None (after reporting) if it names nothing."""
        root = ch[0]
        if root in scope.locals or root in ARCH_NAMES or root in scope.instances:
            return None  # locals and architecture enums are not tracked
        t = scope.params.get(root)
        if t is None:
            if root not in scope.actions | scope.tables:
                self.err(node, f"undeclared name '{root}'")
            return None
        for i, f in enumerate(ch[1:], start=1):
            fields = self.types.get(t)
            if fields is None and t in ARCH_STRUCTS:
                if f not in ARCH_STRUCTS[t]:
                    self.err(node, f"{t} has no field '{f}'")
                return None
            if fields is None or f not in fields:
                self.err(node, f"'{'.'.join(ch[: i + 1])}': {t} has no field '{f}'")
                return None
            t = fields[f]
        return t

    def expr(self, scope: _Scope, e: Tree | Token) -> None:
        if not isinstance(e, Tree):
            return
        if e.data == "call":
            target = e.children[0]
            ch = _chain(target)
            if ch is not None and len(ch) >= 2:
                self.callee(scope, e, target)
            elif ch is not None and len(ch) == 1 and ch[0] not in self.declared and ch[0] not in scope.actions:
                self.err(e, f"call of undeclared '{ch[0]}'")
            elif ch is None:
                self.expr(scope, target)
            for a in e.children[1].children if len(e.children) > 1 else ():
                self.expr(scope, a)
            return
        if e.data in ("member", "name_ref"):
            ch = _chain(e)
            if ch is not None:
                if ch[-1] == "hit" and len(ch) == 1:
                    return
                self.path_type(scope, e, ch)
                return
            # t.apply().hit: the call resolves the table
            self.expr(scope, e.children[0])
            return
        for c in e.children:
            self.expr(scope, c)


def _type_name(t: Tree | Token) -> str:
    if isinstance(t, Token):
        return str(t)
    if t.data == "type_name":
        return str(t.children[0])
    if t.data in ("specialized_type", "specialized_type_shr"):
        return str(t.children[0])
    return t.data

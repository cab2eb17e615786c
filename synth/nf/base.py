"""How an InfraNF kind declares itself.

A kind is a module of :mod:`mantra6g.synth.nf` that defines a parameters dataclass, a
dataclass per rule form, and an :class:`NfKind` tying them together. Fields are
declared with :func:`param`, :func:`head`, :func:`option` and :func:`keyword`, which
record the value type and the documentation; the checker, the JSON codec and the
reference docs all read that one declaration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.expr import check_expr, check_field, field_int
from mantra6g.synth.headers import lookup_field
from mantra6g.synth.values import (
    INVALID,
    Reporter,
    describe,
    did_you_mean,
    format_quantity,
    quantity,
    to_int,
    to_ipv4,
    to_mac,
    to_name,
    to_prefix,
)

if TYPE_CHECKING:
    from mantra6g.synth.ir import NfInstance, ServiceGraph, TenantSlice

# ---------------------------------------------------------------- value types


class ValueType:
    """What a parameter or rule part accepts, and how it is written in the docs."""

    syntax = "value"

    def convert(self, value: ast.Value | ast.Expr, report: Reporter, what: str) -> Any:
        raise NotImplementedError  # pragma: no cover - every concrete type overrides it

    def show(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Int(ValueType):
    lo: int
    hi: int

    @property
    def syntax(self) -> str:  # type: ignore[override]
        return f"integer {self.lo}..{self.hi}"

    def convert(self, value, report, what):
        return to_int(value, self.lo, self.hi, report, what)


@dataclass(frozen=True)
class Choice(ValueType):
    choices: tuple[str, ...]

    @property
    def syntax(self) -> str:  # type: ignore[override]
        return " \\| ".join(f"`{c}`" for c in self.choices)

    def convert(self, value, report, what):
        return to_name(value, self.choices, report, what)


@dataclass(frozen=True)
class FieldValue(ValueType):
    """A value for a header field: a number that fits it or one of its names (``dscp: ef``)."""

    path: str

    @property
    def syntax(self) -> str:  # type: ignore[override]
        f = lookup_field(self.path)
        names = f" or a name ({', '.join(n for n, _ in f.constants)})" if f.constants else ""
        return f"{f.width}-bit value of {self.path}{names}"

    def convert(self, value, report, what):
        return field_int(lookup_field(self.path), what, value, report)


class Ipv4(ValueType):
    syntax = "IPv4 address"

    def convert(self, value, report, what):
        return to_ipv4(value, report, what)


class Ipv4Prefix(ValueType):
    syntax = "IPv4 prefix"

    def convert(self, value, report, what):
        return to_prefix(value, report, what, version=4)


class Mac(ValueType):
    syntax = "MAC address"

    def convert(self, value, report, what):
        return to_mac(value, report, what)


@dataclass(frozen=True)
class Quantity(ValueType):
    """A number with a unit, stored in the base unit (ns, bps, bytes), at most ``hi``
    (what every target can hold)."""

    dimension: str
    hi: int | None = None

    @property
    def syntax(self) -> str:  # type: ignore[override]
        text = {"time": "duration (ns/us/ms/s)", "rate": "bandwidth (kbps/Mbps/Gbps)", "size": "size (B/KB/MB)"}[
            self.dimension
        ]
        return text if self.hi is None else f"{text}, at most {format_quantity(self.hi, self.dimension)}"

    def convert(self, value, report, what):
        v = quantity(value, self.dimension, report, what)
        if v is not INVALID and self.hi is not None and v > self.hi:
            report.error(value.span, f"{what} {format_quantity(v, self.dimension)} is more than "
                         f"{format_quantity(self.hi, self.dimension)}, the most every target can hold",
                         f"use at most {format_quantity(self.hi, self.dimension)}")
            return INVALID
        return v

    def show(self, value) -> str:
        return format_quantity(value, self.dimension)


class OneIn(ValueType):
    """A sampling ratio ``1/N`` with N a power of two; stored as N."""

    syntax = "ratio 1/N, N a power of two"

    def convert(self, value, report, what):
        if not isinstance(value, ast.RatioLit):
            report.error(value.span, f"{what} needs a ratio such as 1/16, not {describe(value)}")
            return INVALID
        num, den = int(value.numerator.text, 0), int(value.denominator.text, 0)
        if num != 1 or den < 1 or den & (den - 1) or den > 1 << 16:
            report.error(
                value.span,
                f"{what} {num}/{den} is not 1/N with N a power of two up to 65536",
                "sampling picks packets by hash bits, e.g. 1/1, 1/8, 1/1024",
            )
            return INVALID
        return den

    def show(self, value) -> str:
        return f"1/{value}"


class HeaderFields(ValueType):
    syntax = "list of header fields"

    def convert(self, value, report, what):
        if not isinstance(value, ast.ListLit) or not value.items:
            report.error(value.span, f"{what} needs a list of header fields such as [ipv4.src, ipv4.dst]")
            return INVALID
        out = []
        for item in value.items:
            if not isinstance(item, ast.FieldRef):
                report.error(item.span, f"{what} lists header fields, not {describe(item)}")
                return INVALID
            if check_field(item, report) is None:
                return INVALID
            if item.path in out:
                report.error(item.span, f"{item.path} is listed twice in {what}")
                return INVALID
            out.append(item.path)
        return tuple(out)

    def show(self, value) -> str:
        return "[" + ", ".join(value) + "]"


@dataclass(frozen=True)
class ListOf(ValueType):
    item: ValueType

    @property
    def syntax(self) -> str:  # type: ignore[override]
        return f"list of {self.item.syntax}"

    def convert(self, value, report, what):
        if not isinstance(value, ast.ListLit):
            report.error(value.span, f"{what} needs a list [..., ...], not {describe(value)}")
            return INVALID
        items = [self.item.convert(v, report, what) for v in value.items]
        return INVALID if any(i is INVALID for i in items) else tuple(items)

    def show(self, value) -> str:
        return "[" + ", ".join(self.item.show(v) for v in value) + "]"


@dataclass(frozen=True)
class Match(ValueType):
    """A match expression. ``ternary`` restricts it to what one ternary/range table can
    hold per rule: and/or over ``==``, ``in`` and ordering tests, no ``not``/``!=``."""

    ternary: bool = False

    @property
    def syntax(self) -> str:  # type: ignore[override]
        return "match expression" + (" (and/or of ==, <, >, in)" if self.ternary else "")

    def convert(self, value, report, what):
        if not isinstance(value, (ast.Compare, ast.AllOf, ast.AnyOf, ast.Negation)):
            report.error(value.span, f"{what} needs a match expression such as udp.dport == 53, not {describe(value)}")
            return INVALID
        expr = check_expr(value, report)
        if expr is None:
            return INVALID
        if self.ternary:
            bad = _negative_term(value)
            if bad is not None:
                report.error(
                    bad[1],
                    f"{what} cannot use '{bad[0]}': each rule becomes ternary table entries, which match "
                    "values but not their absence",
                    "state the traffic to act on, or put a narrower rule with the opposite action first",
                )
                return INVALID
        return expr

    def show(self, value) -> str:
        from mantra6g.synth.expr import render

        return render(value)


def _negative_term(node: ast.Expr) -> tuple[str, Span] | None:
    """The first ``not`` or ``!=`` in an expression as written, and where it is."""
    if isinstance(node, ast.Negation):
        return "not", node.span
    if isinstance(node, ast.Compare) and node.op == "!=":
        return "!=", node.span
    if isinstance(node, (ast.AllOf, ast.AnyOf)):
        for t in node.terms:
            found = _negative_term(t)
            if found:
                return found
    return None


# ---------------------------------------------------------------- declarations

_META = "mantra"


@dataclass(frozen=True)
class Part:
    """What a dataclass field of an NF declaration is: its role, value type and doc."""

    role: str  # "param" | "head" | "option" | "keyword" | "span"
    type: ValueType | None
    doc: str
    required: bool = False


def _decl(role: str, vtype: ValueType | None, doc: str, default: Any) -> Any:
    part = Part(role, vtype, doc, required=default is dataclasses.MISSING and role != "keyword")
    if default is dataclasses.MISSING:
        return field(metadata={_META: part})
    return field(default=default, metadata={_META: part})


def param(vtype: ValueType, doc: str, default: Any = dataclasses.MISSING) -> Any:
    """A parameter ``name: value`` of an NF; required unless it has a default."""
    return _decl("param", vtype, doc, default)


def head(vtype: ValueType, doc: str) -> Any:
    """The value right after a rule's keyword (``route 10.0.0.0/8 ...``)."""
    return _decl("head", vtype, doc, dataclasses.MISSING)


def option(vtype: ValueType, doc: str, default: Any = dataclasses.MISSING) -> Any:
    """A ``name value`` pair after a rule's head (``... via MAC port 2``)."""
    return _decl("option", vtype, doc, default)


def keyword(doc: str) -> Any:
    """The rule's keyword itself, for forms that share a class (``allow``/``deny``)."""
    return _decl("keyword", None, doc, dataclasses.MISSING)


def source_span() -> Any:
    """Where the rule was written; kept in the IR for later diagnostics."""
    return field(default=None, compare=True, metadata={_META: Part("span", None, "")})


def parts(cls: type) -> list[tuple[str, Part]]:
    return [(f.name, f.metadata[_META]) for f in dataclasses.fields(cls) if _META in f.metadata]


@dataclass(frozen=True)
class NfKind:
    """An InfraNF kind: its parameters, its rule forms and its own checks."""

    name: str
    summary: str
    params: type
    rules: Mapping[str, type] = field(default_factory=dict)
    min_rules: int = 0
    # Checks that involve several parameters or rules of one instance.
    check: Callable[[Any, tuple[Any, ...], ast.NfDecl, Reporter], None] | None = None
    # Checks that involve the graph or the slice the instance serves.
    check_in_graph: Callable[[NfInstance, ServiceGraph, TenantSlice, Reporter], None] | None = None
    # DP-IR lowering: adds the NF's tables/actions/state to the program being built
    # (a :class:`mantra6g.synth.compose.Lowering`) and returns the statements that run
    # the NF on a packet.
    lower: Callable[[NfInstance, Any], tuple] | None = None
    # Whether the NF chooses the egress port itself (else a chain ending in it, or
    # leaving the device after it, goes out of the port the packet came in on).
    forwards: bool = False
    # "push" if an instance (by its parameters) wraps the packet in an outer IPv4 header,
    # "pop" if it removes one; the header stack holds one such level (see check.py).
    tunnels: Callable[[Any], str | None] | None = None


# ---------------------------------------------------------------- building from the AST


def build(kind: NfKind, decl: ast.NfDecl, report: Reporter) -> tuple[Any, tuple[Any, ...]] | None:
    """Typed parameters and rules of an NF declaration, or None after reporting."""
    before = len(report.diagnostics)
    values = _fields_from(
        kind.params,
        {"param": [(p.name.name, p.value, p.span) for p in decl.params]},
        report,
        owner=f"{kind.name} '{decl.name.name}'",
        where=decl.kind.span,
        noun="parameter",
    )
    params = kind.params(**values) if values is not None else None

    rules: list[Any] = []
    if decl.rules and not kind.rules:
        report.error(decl.rules[0].span, f"a {kind.name} takes no rules", "remove the { ... } block")
    else:
        for r in decl.rules:
            built = _rule(kind, r, report)
            if built is not None:
                rules.append(built)
    if len(decl.rules) < kind.min_rules:
        forms = " or ".join(f"'{k}'" for k in kind.rules)
        report.error(
            decl.kind.span,
            f"{kind.name} '{decl.name.name}' needs at least {kind.min_rules} {forms} rule",
            f"add a block: {kind.name}(...) {{ {next(iter(kind.rules))} ... }}",
        )
    if len(report.diagnostics) > before or params is None:
        return None
    if kind.check is not None:
        kind.check(params, tuple(rules), decl, report)
        if len(report.diagnostics) > before:
            return None
    return params, tuple(rules)


def _rule(kind: NfKind, rule: ast.Rule, report: Reporter) -> Any:
    cls = kind.rules.get(rule.keyword.name)
    if cls is None:
        forms = ", ".join(kind.rules)
        report.error(
            rule.keyword.span,
            f"a {kind.name} has no '{rule.keyword.name}' rule",
            did_you_mean(rule.keyword.name, kind.rules) or f"{kind.name} rules: {forms}",
        )
        return None
    given: dict[str, list[tuple[str, Any, Span]]] = {
        "option": [(o.name.name, o.value, o.span) for o in rule.options],
    }
    head_fields = [n for n, p in parts(cls) if p.role == "head"]
    if rule.head is not None:
        if not head_fields:
            report.error(rule.head.span, f"'{rule.keyword.name}' takes no value here")
            return None
        given["head"] = [(head_fields[0], rule.head, rule.head.span)]
    values = _fields_from(
        cls, given, report, owner=f"'{rule.keyword.name}'", where=rule.keyword.span, noun="option"
    )
    if values is None:
        return None
    for name, part in parts(cls):
        if part.role == "keyword":
            values[name] = rule.keyword.name
        elif part.role == "span":
            values[name] = rule.span
    return cls(**values)


def _fields_from(
    cls: type,
    given: dict[str, list[tuple[str, Any, Span]]],
    report: Reporter,
    owner: str,
    where: Span,
    noun: str,
) -> dict[str, Any] | None:
    declared = dict(parts(cls))
    values: dict[str, Any] = {}
    ok = True
    for role, items in given.items():
        allowed = [n for n, p in declared.items() if p.role == role]
        seen: dict[str, Span] = {}
        for name, value, span in items:
            part = declared.get(name)
            if part is None or part.role != role:
                hint = did_you_mean(name, allowed) or (
                    f"{owner} takes: {', '.join(allowed)}" if allowed else f"{owner} takes no {noun}s"
                )
                report.error(span, f"{owner} has no {noun} '{name}'", hint)
                ok = False
                continue
            if name in seen:
                report.error(span, f"{noun} '{name}' is given twice", f"first given at line {seen[name].line}")
                ok = False
                continue
            seen[name] = span
            converted = part.type.convert(value, report, name)
            if converted is INVALID:
                ok = False
            else:
                values[name] = converted
    for name, part in declared.items():
        if part.required and name not in values and ok:
            what = "a value" if part.role == "head" else f"{noun} '{name}'"
            report.error(where, f"{owner} needs {what} ({part.type.syntax})", part.doc or None)
            ok = False
    return values if ok else None


def find_param(decl: ast.NfDecl, name: str) -> ast.Param | None:
    return next((p for p in decl.params if p.name.name == name), None)


def param_span(decl: ast.NfDecl, name: str) -> Span:
    p = find_param(decl, name)
    return p.span if p is not None else decl.kind.span


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


__all__ = [
    "Choice",
    "FieldValue",
    "HeaderFields",
    "Int",
    "Ipv4",
    "Ipv4Prefix",
    "ListOf",
    "Mac",
    "Match",
    "NfKind",
    "OneIn",
    "Quantity",
    "ValueType",
    "build",
    "head",
    "is_prime",
    "keyword",
    "option",
    "param",
    "param_span",
    "parts",
    "source_span",
]

"""Match expressions over header fields: classifiers, firewall rules, branch conditions.

The IR keeps the user's structure (and/or/not over field tests) with every field
resolved against :mod:`mantra6g.synth.headers` and every literal typed and range-checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.headers import HEADERS, FieldKind, HeaderField, lookup_field
from mantra6g.synth.values import (
    INVALID,
    MacAddress,
    Reporter,
    describe,
    did_you_mean,
    integer,
    to_ipv4,
    to_ipv6,
    to_mac,
    to_prefix,
)

FieldValue = int | IPv4Address | IPv6Address | MacAddress


@tagged("compare")
@dataclass(frozen=True)
class Compare:
    """``field OP value`` with OP one of ``== != < <= > >=``."""

    field: str
    op: str
    value: FieldValue


@tagged("in_prefix")
@dataclass(frozen=True)
class InPrefix:
    field: str
    prefix: IPv4Network | IPv6Network


@tagged("in_range")
@dataclass(frozen=True)
class InRange:
    """``low <= field <= high``."""

    field: str
    low: int
    high: int


@tagged("in_set")
@dataclass(frozen=True)
class InSet:
    field: str
    values: tuple[FieldValue, ...]


@tagged("all_of")
@dataclass(frozen=True)
class AllOf:
    terms: tuple[Expr, ...]


@tagged("any_of")
@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Expr, ...]


@tagged("not")
@dataclass(frozen=True)
class Not:
    term: Expr


FieldTest = Compare | InPrefix | InRange | InSet
Expr = Compare | InPrefix | InRange | InSet | AllOf | AnyOf | Not


def fields_of(expr: Expr) -> set[str]:
    """Every header field an expression reads."""
    if isinstance(expr, (AllOf, AnyOf)):
        return set().union(*(fields_of(t) for t in expr.terms))
    if isinstance(expr, Not):
        return fields_of(expr.term)
    return {expr.field}


def headers_of(expr: Expr) -> set[str]:
    return {f.partition(".")[0] for f in fields_of(expr)}


def render(expr: Expr) -> str:
    """The expression in the language's own syntax."""
    if isinstance(expr, AllOf):
        return " and ".join(_paren(t, AnyOf) for t in expr.terms)
    if isinstance(expr, AnyOf):
        return " or ".join(render(t) for t in expr.terms)
    if isinstance(expr, Not):
        return f"not {_paren(expr.term, (AllOf, AnyOf))}"
    if isinstance(expr, Compare):
        return f"{expr.field} {expr.op} {expr.value}"
    if isinstance(expr, InPrefix):
        return f"{expr.field} in {expr.prefix}"
    if isinstance(expr, InRange):
        return f"{expr.field} in {expr.low}..{expr.high}"
    return f"{expr.field} in [{', '.join(str(v) for v in expr.values)}]"


def _paren(expr: Expr, kinds) -> str:
    text = render(expr)
    return f"({text})" if isinstance(expr, kinds) else text


# ---------------------------------------------------------------- checking


def check_expr(node: ast.Expr, report: Reporter) -> Expr | None:
    """The IR of an AST expression, or None after reporting what is wrong."""
    if isinstance(node, ast.AllOf):
        terms = [check_expr(t, report) for t in node.terms]
        return AllOf(tuple(terms)) if all(t is not None for t in terms) else None
    if isinstance(node, ast.AnyOf):
        terms = [check_expr(t, report) for t in node.terms]
        return AnyOf(tuple(terms)) if all(t is not None for t in terms) else None
    if isinstance(node, ast.Negation):
        term = check_expr(node.term, report)
        return Not(term) if term is not None else None
    return _check_compare(node, report)


def check_field(ref: ast.FieldRef, report: Reporter) -> HeaderField | None:
    f = lookup_field(ref.path)
    if f is not None and ref.header == "chain":
        report.error(
            ref.span,
            "the chain shim is never seen by an NF: a device removes it before the chain resumes",
            "a graph's packets are its classifier's; test the headers the chain carries",
        )
        return None
    if f is not None:
        return f
    header = HEADERS.get(ref.header)
    if header is None:
        report.error(
            ref.span,
            f"unknown header '{ref.header}'",
            did_you_mean(ref.header, HEADERS) or f"headers: {', '.join(HEADERS)}",
        )
    else:
        names = [x.name for x in header.fields]
        report.error(
            ref.span,
            f"header '{ref.header}' has no field '{ref.field}'",
            did_you_mean(ref.field, names) or f"fields of {ref.header}: {', '.join(names)}",
        )
    return None


def _check_compare(node: ast.Compare, report: Reporter) -> Expr | None:
    f = check_field(node.field, report)
    if f is None:
        return None
    path = node.field.path
    value = node.value
    if node.op == "in":
        if isinstance(value, ast.RangeLit):
            if f.kind is not FieldKind.INT:
                report.error(node.span, f"{path} is {_kind_name(f)}; ranges apply to numeric fields", _membership_hint(f))
                return None
            low, high = field_int(f, path, value.low, report), field_int(f, path, value.high, report)
            if low is INVALID or high is INVALID:
                return None
            if low > high:
                report.error(value.span, f"empty range {value.low.text}..{value.high.text}", f"write {value.high.text}..{value.low.text}")
                return None
            return InRange(path, low, high)
        if isinstance(value, ast.ListLit):
            items = [_field_value(f, path, v, report) for v in value.items]
            if any(v is INVALID for v in items):
                return None
            if not items:
                report.error(value.span, f"{path} in [] matches nothing", "list at least one value")
                return None
            return InSet(path, tuple(items))
        if isinstance(value, ast.Literal) and value.kind in ("ipv4_prefix", "ipv6_prefix"):
            return _check_prefix(f, path, value, report)
        report.error(
            value.span,
            f"'{path} in' needs a prefix, a range or a list, not {describe(value)}",
            _membership_hint(f),
        )
        return None
    if node.op in ("<", "<=", ">", ">=") and f.kind is not FieldKind.INT:
        report.error(node.span, f"{path} is {_kind_name(f)} and cannot be ordered with '{node.op}'", _membership_hint(f))
        return None
    v = _field_value(f, path, value, report)
    if v is INVALID:
        return None
    return Compare(path, node.op, v)


def _check_prefix(f: HeaderField, path: str, lit: ast.Literal, report: Reporter) -> Expr | None:
    want = {FieldKind.IPV4: 4, FieldKind.IPV6: 6}.get(f.kind)
    if want is None:
        report.error(lit.span, f"{path} is {_kind_name(f)}; prefixes apply to address fields")
        return None
    prefix = to_prefix(lit, report, path, version=want)
    return None if prefix is INVALID else InPrefix(path, prefix)


def _field_value(f: HeaderField, path: str, value: ast.Value, report: Reporter):
    if f.kind is FieldKind.IPV4:
        return to_ipv4(value, report, path)
    if f.kind is FieldKind.IPV6:
        return to_ipv6(value, report, path)
    if f.kind is FieldKind.MAC:
        return to_mac(value, report, path)
    return field_int(f, path, value, report)


def field_int(f: HeaderField, path: str, value: ast.Value, report: Reporter):
    """A number (or one of the field's named constants) that fits the field."""
    if isinstance(value, ast.Literal) and value.kind == "name":
        n = f.constant(value.text)
        if n is None:
            known = [name for name, _ in f.constants]
            hint = (did_you_mean(value.text, known) or f"names for {path}: {', '.join(known)}") if known else f"{path} takes a number"
            report.error(value.span, f"'{value.text}' is not a known value of {path}", hint)
            return INVALID
        return n
    if not (isinstance(value, ast.Literal) and value.kind == "int"):
        report.error(value.span, f"{path} is a {f.width}-bit number; {describe(value)} does not fit it")
        return INVALID
    n = integer(value)
    if n > f.max_value:
        what = "port" if path.endswith(("sport", "dport")) else "value"
        report.error(value.span, f"{what} {value.text} does not fit {path} ({f.width} bits, at most {f.max_value})")
        return INVALID
    return n


def _kind_name(f: HeaderField) -> str:
    return {
        FieldKind.IPV4: "an IPv4 address",
        FieldKind.IPV6: "an IPv6 address",
        FieldKind.MAC: "a MAC address",
        FieldKind.INT: f"a {f.width}-bit number",
    }[f.kind]


def _membership_hint(f: HeaderField) -> str:
    if f.kind in (FieldKind.IPV4, FieldKind.IPV6):
        return "match addresses with '== ADDRESS' or 'in PREFIX'"
    if f.kind is FieldKind.MAC:
        return "match MAC addresses with '== MAC' or 'in [MAC, ...]'"
    return "match numbers with ==, <, in LOW..HIGH or in [A, B]"


"""Syntax tree of a ``.sg`` file: what the user wrote, with where they wrote it.

Nothing here is checked beyond the grammar; :mod:`mantra6g.synth.check` turns an AST
into the ServiceGraph IR or into diagnostics that point at these spans.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.source import Span

# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


@dataclass(frozen=True)
class Literal:
    """A literal as written. ``kind`` names its lexical form; ``text`` is the source text.

    Kinds: ``int``, ``float``, ``quantity`` (number and unit), ``string``, ``ipv4``,
    ``ipv4_prefix``, ``ipv6``, ``ipv6_prefix``, ``mac``, ``name``.
    """

    kind: str
    text: str
    span: Span


@dataclass(frozen=True)
class RangeLit:
    low: Literal
    high: Literal
    span: Span


@dataclass(frozen=True)
class RatioLit:
    numerator: Literal
    denominator: Literal
    span: Span


@dataclass(frozen=True)
class ListLit:
    items: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class FieldRef:
    header: str
    field: str
    span: Span

    @property
    def path(self) -> str:
        return f"{self.header}.{self.field}"


Value = Literal | RangeLit | RatioLit | ListLit | FieldRef

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Compare:
    """``field OP value``; OP is one of ``== != < <= > >= in``."""

    field: FieldRef
    op: str
    value: Value
    span: Span


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Negation:
    term: Expr
    span: Span


Expr = Compare | AllOf | AnyOf | Negation

# ---------------------------------------------------------------- declarations


@dataclass(frozen=True)
class SlaTerm:
    """``latency <= 1 ms``: a name, an optional comparator and a value."""

    name: Ident
    op: str | None
    value: Value
    span: Span


@dataclass(frozen=True)
class SliceDecl:
    name: Ident
    terms: tuple[SlaTerm, ...]
    span: Span


@dataclass(frozen=True)
class TenantDecl:
    name: Ident
    id: Literal
    slices: tuple[SliceDecl, ...]
    terms: tuple[SlaTerm, ...]
    span: Span


@dataclass(frozen=True)
class Param:
    name: Ident
    value: Value
    span: Span


@dataclass(frozen=True)
class RuleOption:
    name: Ident
    value: Value
    span: Span


@dataclass(frozen=True)
class Rule:
    """One line in an NF body: a keyword, an optional head (expression or literal), options."""

    keyword: Ident
    head: Expr | Value | None
    options: tuple[RuleOption, ...]
    span: Span


@dataclass(frozen=True)
class NfDecl:
    name: Ident
    kind: Ident
    params: tuple[Param, ...]
    rules: tuple[Rule, ...]
    span: Span


@dataclass(frozen=True)
class Hop:
    """``-> [condition] target`` in a chain."""

    target: Ident
    condition: Expr | None
    span: Span


@dataclass(frozen=True)
class ChainDecl:
    start: Ident
    hops: tuple[Hop, ...]
    span: Span


@dataclass(frozen=True)
class PlaceDecl:
    nfs: tuple[Ident, ...]
    device: Ident
    site: Ident | None
    span: Span


@dataclass(frozen=True)
class GraphDecl:
    name: Ident
    tenant: Ident
    slice: Ident
    nfs: tuple[NfDecl, ...]
    chains: tuple[ChainDecl, ...]
    placements: tuple[PlaceDecl, ...]
    span: Span


@dataclass(frozen=True)
class DeviceDecl:
    """``device CLASS [site S] { port … owner … | flow from … to … }``: the operator's plan."""

    device: Ident
    site: Ident | None
    rules: tuple[Rule, ...]
    span: Span


@dataclass(frozen=True)
class SpecFile:
    """A whole ``.sg`` file."""

    name: str
    tenants: tuple[TenantDecl, ...]
    graphs: tuple[GraphDecl, ...]
    devices: tuple[DeviceDecl, ...] = ()

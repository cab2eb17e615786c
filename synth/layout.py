"""Header layouts: where the bytes of every header instance come from, path by path.

A backend that rewrites packets in place (XDP) must know, when the packet leaves, which
headers are still the bytes that arrived (written back field by field, or not at all),
which were moved (an encapsulation puts the packet's ``ipv4`` into ``inner_ipv4``) and
which are new (``SetValid``). This module works that out from the DP-IR alone, so the
answer is the same for any backend that asks:

* :func:`parse_paths` enumerates the parser's paths to ``accept`` (the parser is acyclic):
  the headers each extracts and at which byte offset;
* a :class:`Layout` says, for every header instance, whose arriving bytes it holds now
  (``content[i] = j``: the bytes header ``j`` was parsed from), or that it was pushed
  (:data:`FRESH`) or removed (:data:`GONE`), together with the parse paths on which the
  program can be in this layout;
* :class:`Tracker` follows a program's statements over sets of layouts: pushes, pops and
  copies change them, a condition on header validity splits them path by path (so under
  ``if ipv4.isValid()`` only the paths that parsed IPv4 remain), a drop ends them, and
  branches join them again. :meth:`Tracker.decide` says when a condition's outcome
  follows from the layouts alone (a branch no packet can take).

It knows nothing about a target: it is an abstract interpretation of DP-IR's header
semantics (``synth/interp.py`` is the reference).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Const,
    CopyHeader,
    Drop,
    Expr,
    IsValid,
    Program,
    SetInvalid,
    SetValid,
    Stmt,
    UnOp,
)
from mantra6g.synth.dpir_check import parser_paths

FRESH = -1  # pushed by SetValid (its fields are all the program's own values)
GONE = -2  # removed by SetInvalid (or copied from a removed header)


@dataclass(frozen=True)
class ParsePath:
    """One way through the parser to ``accept``: the headers extracted, in order, each
    with its byte offset in the arriving frame."""

    states: tuple[str, ...]
    extracts: tuple[tuple[str, int], ...]
    length: int  # bytes of headers parsed; the payload starts here

    @property
    def headers(self) -> frozenset[str]:
        return frozenset(h for h, _ in self.extracts)

    def offset(self, header: str) -> int:
        """Where ``header``'s bytes start (its last extraction, whose values it holds)."""
        return [o for h, o in self.extracts if h == header][-1]


def parse_paths(p: Program) -> tuple[ParsePath, ...]:
    """Every path of the parser to ``accept``, with the offsets of what it extracts."""
    out = []
    for states in sorted(parser_paths(p)):  # a set inside: sorted, so every run agrees
        extracts, off = [], 0
        for name in states:
            for h in p.state(name).extract:
                extracts.append((h, off))
                off += p.header(h).header_type.width // 8
        out.append(ParsePath(states, tuple(extracts), off))
    return tuple(out)


@dataclass(frozen=True)
class Layout:
    """Per header instance (in ``Program.headers`` order): the index of the header whose
    arriving bytes it holds, :data:`FRESH` or :data:`GONE`; and the parse paths (indices
    into :attr:`Tracker.paths`) on which a packet can be in this layout here."""

    content: tuple[int, ...]
    paths: frozenset[int]


class Tracker:
    """Follows sets of :class:`Layout` through a program's statements."""

    def __init__(self, p: Program):
        self.p = p
        self.paths = parse_paths(p)
        self.index = {h.name: i for i, h in enumerate(p.headers)}
        self.names = [h.name for h in p.headers]
        # A drop is final unless the program can clear std.drop again.
        self.drop_is_final = not any(isinstance(s, Assign) and s.target == "std.drop" for s in _all_stmts(p))

    # ------------------------------------------------------------ layouts
    def start(self) -> tuple[Layout, ...]:
        """As parsed: every header holds its own bytes (valid where its path extracted it)."""
        if not self.paths:
            return ()
        return (Layout(tuple(range(len(self.names))), frozenset(range(len(self.paths)))),)

    def valid(self, layout: Layout, path: int, header: str) -> bool:
        c = layout.content[self.index[header]]
        return c == FRESH or (c >= 0 and self.names[c] in self.paths[path].headers)

    def step(self, layouts: tuple[Layout, ...], s: Stmt) -> tuple[Layout, ...]:
        """The layouts after a push, pop, copy or drop (any other statement: unchanged)."""
        if isinstance(s, Drop):
            return () if self.drop_is_final else layouts
        if not isinstance(s, (SetValid, SetInvalid, CopyHeader)):
            return layouts
        out = []
        for lay in layouts:
            content = list(lay.content)
            if isinstance(s, SetValid):
                content[self.index[s.header]] = FRESH
            elif isinstance(s, SetInvalid):
                content[self.index[s.header]] = GONE
            else:
                content[self.index[s.dst]] = content[self.index[s.src]]
            out.append(Layout(tuple(content), lay.paths))
        return join(out)

    # ------------------------------------------------------------ conditions
    def split(self, layouts: tuple[Layout, ...], cond: Expr) -> tuple[tuple[Layout, ...], tuple[Layout, ...]]:
        """(layouts where ``cond`` may hold, layouts where it may not), path by path."""
        then, orelse = [], []
        for lay in layouts:
            t, f = set(), set()
            for i in lay.paths:
                v = self._eval(cond, lay, i)
                if v is None or v:
                    t.add(i)
                if v is None or not v:
                    f.add(i)
            if t:
                then.append(Layout(lay.content, frozenset(t)))
            if f:
                orelse.append(Layout(lay.content, frozenset(f)))
        return tuple(then), tuple(orelse)

    def decide(self, layouts: tuple[Layout, ...], cond: Expr) -> bool | None:
        """True/False when ``cond`` has that outcome on every path of ``layouts`` (it then
        depends on header validity and constants only), else None."""
        then, orelse = self.split(layouts, cond)
        if layouts and not orelse:
            return True
        if layouts and not then:
            return False
        return None

    def _eval(self, e: Expr, lay: Layout, path: int) -> int | None:
        """``e`` on one path, or None where it depends on packet data."""
        if isinstance(e, Const):
            return e.value
        if isinstance(e, IsValid):
            return int(self.valid(lay, path, e.header))
        if isinstance(e, UnOp) and e.op == "!":
            v = self._eval(e.operand, lay, path)
            return None if v is None else int(not v)
        if isinstance(e, BinOp) and e.op in ("&&", "||"):
            a, b = self._eval(e.left, lay, path), self._eval(e.right, lay, path)
            if e.op == "&&":
                if a == 0 or b == 0:
                    return 0
                return 1 if a is not None and b is not None else None
            if (a is not None and a != 0) or (b is not None and b != 0):
                return 1
            return 0 if a is not None and b is not None else None
        if isinstance(e, BinOp) and e.op in ("==", "!="):
            a, b = self._eval(e.left, lay, path), self._eval(e.right, lay, path)
            if a is None or b is None:
                return None
            return int((a == b) == (e.op == "=="))
        return None


def join(groups: Iterable[Layout]) -> tuple[Layout, ...]:
    """One layout per distinct content, its paths the union (in first-seen order)."""
    merged: dict[tuple[int, ...], set[int]] = {}
    for lay in groups:
        merged.setdefault(lay.content, set()).update(lay.paths)
    return tuple(Layout(c, frozenset(ps)) for c, ps in merged.items())


_all_stmts = dpir.walk


__all__ = ["FRESH", "GONE", "Layout", "ParsePath", "Tracker", "join", "parse_paths"]

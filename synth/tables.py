"""Which tables stay updatable, and const tables compiled into code.

A table whose entries are fixed at compile time (``Table.const``, P4's ``const
entries``) needs no lookup structure at run time: :func:`inline_const_tables` replaces
every ``apply`` of one with a decision tree of ``if``s over its keys whose leaves run the
winning entry's action (``Call``), exactly as :func:`mantra6g.synth.dpir.ranked` says
the entries rank:

* one exact key, or one LPM key: the key's domain is cut into intervals, each with its
  winner (adjacent equal ones merged: a dense exact table becomes few intervals, a
  route set its elementary address ranges), found by binary search;
* anything else (ternary, range, several keys): the entries are split by ``key < c``
  tests chosen to halve the candidates on each side (a HiCuts-style tree); where few
  remain they are tested in rank order, each test leaving out what the path already
  proves. A test on a field of a header the table keys by validity is made only where
  the path proved the header valid (so the result is valid DP-IR; an invalid header's
  field is 0 as a key).

A table whose tree would be larger than ``max_nodes`` stays a table. The result is an
ordinary DP-IR program: the interpreter runs it, and the oracle tests judge it.

:func:`with_tables` sets the policy before any backend runs: ``declared`` (as the NF
lowerings declared them: a firewall's rules are const, routes and load-balancer slots
updatable), ``const`` (nothing changes at run time) or ``runtime`` (every table
updatable, e.g. to be driven by a control plane).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Apply,
    BinOp,
    Call,
    Const,
    Exact,
    Expr,
    If,
    IsValid,
    Lpm,
    Program,
    Range,
    Ref,
    Stmt,
    Table,
    Ternary,
    UnOp,
)
from mantra6g.synth.dpir_check import VALID_SUFFIX

TABLE_MODES = ("declared", "const", "runtime")
MAX_NODES = 600  # tests in one table's tree; a larger table stays a table
CHAIN = 3  # candidates tested one by one rather than cut further


def with_tables(p: Program, mode: str) -> Program:
    """``p`` with its tables' updatability set: as ``declared`` by the lowerings, all
    ``const``, or all updatable at ``runtime``."""
    if mode not in TABLE_MODES:
        raise ValueError(f"table mode {mode!r}: one of {', '.join(TABLE_MODES)}")
    if mode == "declared":
        return p
    return replace(p, tables=tuple(replace(t, const=mode == "const") for t in p.tables))


# ---------------------------------------------------------------- keys and matches


@dataclass(frozen=True)
class _Key:
    expr: Expr
    width: int
    header: str | None  # the header of a field key (None: a validity key)
    valid_key: int | None  # index of the table's validity key for that header


def _keys(p: Program, t: Table, key_expr: Callable[[int], Expr] | None) -> list[_Key]:
    valid_index = {k.field[: -len(VALID_SUFFIX) - 1]: i for i, k in enumerate(t.keys) if k.field.endswith(VALID_SUFFIX)}
    out = []
    for j, k in enumerate(t.keys):
        if k.field.endswith("." + VALID_SUFFIX):
            out.append(_Key(IsValid(k.field[: -len(VALID_SUFFIX) - 1]), 1, None, None))
        else:
            scope = k.field.partition(".")[0]
            header = scope if scope not in ("meta", "std") else None
            expr = key_expr(j) if key_expr is not None else Ref(k.field)
            out.append(_Key(expr, p.width_of(k.field), header, valid_index.get(header)))
    return out


@dataclass(frozen=True)
class _Match:
    """What one entry accepts on one key: an interval, and the (value, mask) when it is
    a ternary match that is not one."""

    lo: int
    hi: int
    value: int = 0
    mask: int = 0
    interval: bool = True


def _match(m, w: int) -> _Match:
    top = (1 << w) - 1
    if isinstance(m, Exact):
        return _Match(m.value, m.value)
    if isinstance(m, Range):
        return _Match(m.low, m.high)
    if isinstance(m, Lpm):
        span = top >> m.prefix_len if m.prefix_len < w else 0
        lo = m.value & ~span & top
        return _Match(lo, lo | span)
    assert isinstance(m, Ternary)
    mask, value = m.mask & top, m.value & m.mask & top
    free = top & ~mask
    if free & (free + 1) == 0:  # the mask is a prefix: an interval
        return _Match(value, value | free)
    return _Match(value, value | free, value, mask, interval=False)


# ---------------------------------------------------------------- the tree


class _TooBig(Exception):
    pass


class _Builder:
    def __init__(self, p: Program, t: Table, on_hit: tuple[Stmt, ...], on_miss: tuple[Stmt, ...], max_nodes: int,
                 key_expr: Callable[[int], Expr] | None = None):
        self.p, self.t = p, t
        self.keys = _keys(p, t, key_expr)
        entries = dpir.ranked(t)
        if all(k.match == "exact" for k in t.keys):  # the first entry with a key wins
            seen, kept = set(), []
            for e in entries:
                key = tuple(m.value for m in e.matches)
                if key not in seen:
                    seen.add(key)
                    kept.append(e)
            entries = kept
        self.entries = entries
        self.matches = [[_match(m, k.width) for m, k in zip(e.matches, self.keys)] for e in entries]
        self.on_hit, self.on_miss = on_hit, on_miss
        self.nodes, self.max_nodes = 0, max_nodes

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise _TooBig

    # -- leaves
    def leaf(self, i: int | None) -> tuple[Stmt, ...]:
        if i is None:
            d = self.t.default
            return (Call(d.action, d.args), *self.on_miss)
        a = self.entries[i].action
        return (Call(a.action, a.args), *self.on_hit)

    # -- boxes: per key, the interval the path has proved
    def full_box(self) -> list[tuple[int, int]]:
        return [(0, (1 << k.width) - 1) for k in self.keys]

    def effective(self, box: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """A field key of a header the path proved invalid is 0."""
        out = list(box)
        for j, k in enumerate(self.keys):
            if k.valid_key is not None and box[k.valid_key] == (0, 0):
                out[j] = (0, 0)
        return out

    def readable(self, j: int, box) -> bool:
        k = self.keys[j]
        return k.valid_key is None or box[k.valid_key] == (1, 1)

    def meets(self, i: int, box) -> bool:
        for m, (lo, hi) in zip(self.matches[i], self.effective(box)):
            if m.hi < lo or m.lo > hi:
                return False
            if not m.interval and lo == hi and lo & m.mask != m.value:
                return False
        return True

    def implied(self, i: int, box) -> bool:
        for m, (lo, hi) in zip(self.matches[i], self.effective(box)):
            if m.interval and not (m.lo <= lo and hi <= m.hi):
                return False
            if not m.interval and not (lo == hi and lo & m.mask == m.value):
                return False
        return True

    # -- the general (priority) tree
    def tree(self, cands: list[int], box) -> tuple[Stmt, ...]:
        cands = [i for i in cands if self.meets(i, box)]
        if not cands:
            return self.leaf(None)
        if self.implied(cands[0], box):
            return self.leaf(cands[0])
        cut = self.best_cut(cands, box) if len(cands) > CHAIN else None
        if cut is None:
            return self.check(cands, box)
        j, c = cut
        return self.split(j, c, cands, box)

    def split(self, j: int, c: int, cands, box) -> tuple[Stmt, ...]:
        self.count()
        lo, hi = box[j]
        left = list(box)
        left[j] = (lo, c - 1)
        right = list(box)
        right[j] = (c, hi)
        k = self.keys[j]
        if k.header is None and isinstance(k.expr, IsValid):
            return (If(k.expr, self.tree(cands, right), self.tree(cands, left)),)
        return (If(BinOp("<", k.expr, Const(c, k.width)), self.tree(cands, left), self.tree(cands, right)),)

    def best_cut(self, cands: list[int], box) -> tuple[int, int] | None:
        best, best_score = None, (len(cands), 0)
        eff = self.effective(box)
        for j, k in enumerate(self.keys):
            lo, hi = eff[j]
            if lo == hi or not self.readable(j, box):
                continue
            bounds = sorted({b for i in cands for b in (self.matches[i][j].lo, self.matches[i][j].hi + 1)
                             if lo < b <= hi})
            if len(bounds) > 16:  # a few quantiles are enough to find a good cut
                bounds = [bounds[len(bounds) * q // 16] for q in range(16)]
            for c in bounds:
                left = sum(1 for i in cands if self.matches[i][j].lo < c)
                right = sum(1 for i in cands if self.matches[i][j].hi >= c)
                score = (max(left, right), left + right)
                if score < best_score:
                    best, best_score = (j, c), score
        if best is None:
            # a validity key the fields wait for
            for j, k in enumerate(self.keys):
                if isinstance(k.expr, IsValid) and box[j] == (0, 1):
                    return j, 1
        return best

    def check(self, cands: list[int], box) -> tuple[Stmt, ...]:
        """Test the best candidate's remaining conditions; on failure, the next ones."""
        first = cands[0]
        for j in range(len(self.keys)):
            k = self.keys[j]
            if k.header is not None and not self.readable(j, box) and not self._free(first, j, box):
                return self.split(k.valid_key, 1, cands, box)
        self.count()
        cond = self.condition(first, box)
        return (If(cond, self.leaf(first), self.tree(cands[1:], box)),)

    def _free(self, i: int, j: int, box) -> bool:
        m, (lo, hi) = self.matches[i][j], self.effective(box)[j]
        return m.interval and m.lo <= lo and hi <= m.hi

    def condition(self, i: int, box) -> Expr:
        terms: list[Expr] = []
        eff = self.effective(box)
        order = sorted(range(len(self.keys)), key=lambda j: self.keys[j].header is not None)  # validity first
        for j in order:
            k, m, (lo, hi) = self.keys[j], self.matches[i][j], eff[j]
            if not m.interval:
                if not (lo == hi and lo & m.mask == m.value):
                    terms.append(BinOp("==", BinOp("&", k.expr, Const(m.mask, k.width)), Const(m.value, k.width)))
                continue
            if isinstance(k.expr, IsValid):
                if (m.lo, m.hi) == (1, 1) and (lo, hi) != (1, 1):
                    terms.append(k.expr)
                elif (m.lo, m.hi) == (0, 0) and (lo, hi) != (0, 0):
                    terms.append(UnOp("!", k.expr))
                continue
            if m.lo == m.hi and (lo, hi) != (m.lo, m.hi):
                terms.append(BinOp("==", k.expr, Const(m.lo, k.width)))
                continue
            size = m.hi - m.lo + 1
            if m.lo > lo and m.hi < hi and size & (size - 1) == 0 and m.lo % size == 0:
                # a prefix: one masked compare
                top = (1 << k.width) - 1
                terms.append(BinOp("==", BinOp("&", k.expr, Const(top & ~(size - 1), k.width)), Const(m.lo, k.width)))
                continue
            if m.lo > lo:
                terms.append(BinOp(">=", k.expr, Const(m.lo, k.width)))
            if m.hi < hi:
                terms.append(BinOp("<=", k.expr, Const(m.hi, k.width)))
        if not terms:
            return Const(1, 1)
        out = terms[0]
        for x in terms[1:]:
            out = BinOp("&&", out, x)
        return out

    # -- one key: intervals and binary search
    def intervals(self) -> list[tuple[int, int, int | None]]:
        """(lo, hi, winner) covering the key's domain, equal neighbours merged."""
        w = self.keys[0].width
        top = (1 << w) - 1
        if self.t.keys[0].match == "lpm":
            cuts = {0, top + 1}
            for (m,) in self.matches:
                cuts |= {m.lo, m.hi + 1}
            points = sorted(cuts)
            raw = []
            for a, b in zip(points, points[1:]):
                # the ranked entries are longest first: the first that covers a wins
                win = next((i for i, (m,) in enumerate(self.matches) if m.lo <= a and b - 1 <= m.hi), None)
                raw.append((a, b - 1, win))
        else:
            order = sorted(range(len(self.matches)), key=lambda i: self.matches[i][0].lo)
            raw, at = [], 0
            for i in order:
                v = self.matches[i][0].lo
                if v > at:
                    raw.append((at, v - 1, None))
                raw.append((v, v, i))
                at = v + 1
            if at <= top:
                raw.append((at, top, None))
        merged: list[list] = []
        for lo, hi, win in raw:
            same = merged and self._same(merged[-1][2], win)
            if same:
                merged[-1][1] = hi
            else:
                merged.append([lo, hi, win])
        return [tuple(x) for x in merged]

    def _same(self, a: int | None, b: int | None) -> bool:
        if a is None or b is None:
            return a is b
        return self.entries[a].action == self.entries[b].action

    def search(self, ivs: list[tuple[int, int, int | None]]) -> tuple[Stmt, ...]:
        if len(ivs) == 1:
            return self.leaf(ivs[0][2])
        self.count()
        mid = len(ivs) // 2
        k = self.keys[0]
        c = ivs[mid][0]
        return (If(BinOp("<", k.expr, Const(c, k.width)), self.search(ivs[:mid]), self.search(ivs[mid:])),)

    def build(self) -> tuple[Stmt, ...]:
        one = len(self.t.keys) == 1 and self.t.keys[0].match in ("exact", "lpm")
        if one:
            ivs = self.intervals()
            hits = [iv for iv in ivs if iv[2] is not None]
            if len(hits) <= CHAIN and all(self.matches[iv[2]][0].interval for iv in hits):
                # a handful of entries: test them in rank order (a /24 is one masked compare)
                return self.tree(list(range(len(self.entries))), self.full_box())
            return self.search(ivs)
        return self.tree(list(range(len(self.entries))), self.full_box())


def decision_tree(p: Program, t: Table, on_hit: tuple[Stmt, ...] = (), on_miss: tuple[Stmt, ...] = (),
                  max_nodes: int = MAX_NODES, key_expr: Callable[[int], Expr] | None = None) -> tuple[Stmt, ...] | None:
    """The statements that do what ``apply t { hit: on_hit; miss: on_miss }`` does, as
    ``if`` tests over the keys (None when more than ``max_nodes`` tests). ``key_expr(j)``
    is what the tests read for field key ``j`` (default: the field itself; a backend may
    read copies taken before the tree)."""
    b = _Builder(p, t, on_hit, on_miss, max_nodes, key_expr)
    try:
        return b.build()
    except _TooBig:
        return None


# ---------------------------------------------------------------- the pass


def dense(p: Program, t: Table, max_slots: int = 65536) -> bool:
    """Whether ``t`` is one exact key over a small range that its entries fill densely
    (a Maglev lookup table): a target that can index a constant array (XDP's read-only
    data) does better with one load than with a search."""
    if len(t.keys) != 1 or t.keys[0].match != "exact" or len(t.entries) <= CHAIN:
        return False
    slots = max(e.matches[0].value for e in t.entries) + 1
    return slots <= max_slots and slots <= 4 * len(t.entries) + 64


def inline_const_tables(p: Program, max_nodes: int = MAX_NODES) -> Program:
    """``p`` with every apply of a const table replaced by its decision tree; tables no
    longer applied anywhere are removed (the others stay tables: updatable ones, and
    those whose tree would be too large). The XDP backend prints the same trees where it
    prints an apply (``targets/xdp_emit.py``); this pass gives them to any DP-IR tool."""
    const = {t.name: t for t in p.tables if t.const}
    too_big = {name for name, t in const.items() if decision_tree(p, t, max_nodes=max_nodes) is None}
    inlined = set(const) - too_big

    def body(stmts: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        for s in stmts:
            if isinstance(s, If):
                out.append(If(s.cond, body(s.then), body(s.orelse)))
            elif isinstance(s, Apply):
                hit, miss = body(s.on_hit), body(s.on_miss)
                if s.table in inlined:
                    out += decision_tree(p, const[s.table], hit, miss, max_nodes)
                else:
                    out.append(Apply(s.table, hit, miss))
            else:
                out.append(s)
        return tuple(out)

    actions = tuple(replace(a, body=body(a.body)) for a in p.actions)
    return replace(p, actions=actions, control=body(p.control), tables=tuple(t for t in p.tables if t.name not in inlined))


__all__ = ["MAX_NODES", "TABLE_MODES", "decision_tree", "dense", "inline_const_tables", "with_tables"]

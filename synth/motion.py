"""Code motion of pure metadata computations: *sinking* into the one branch that reads
them (for a CPU, which pays for every statement it runs) and *hoisting* out of the
branches (for a pipeline, which runs a table in parallel with others as soon as its
inputs are ready, and where an ``if`` only delays what it guards).

Sinking. A lowering may compute a value on every packet that only one branch uses: the
load balancer looks its Maglev slot up before it reads the flow's affinity slot, because
a switch must read and write that slot in one access (Tofino's stateful ALU), though only
a new flow (``if (backend == 0)``) uses the result. A CPU target has no such rule, so
its backend moves such statements to the start of the branch that reads what they
write, and skips them for every other packet::

    p = sink(program)   # the same behaviour, less work on the paths that do not need it

A statement is moved only when it writes nothing but metadata (assignments, hashes,
ifs of those, tables whose actions only assign metadata), what it writes is read in
that branch (or by the statements moved with it) and nowhere else, and nothing between
it and the branch writes what it reads or writes, or changes a header.

Hoisting. On Tofino a statement under ``if (visit) { if (ipv4.dst == VIP) { ... } }``
waits in the pipeline for both conditions, though a hash of the 5-tuple could start in
the first stage: the load balancer's ``hash % size`` then Maglev lookup took 7 stages
from the classifier instead of 4. The TNA backend lifts such statements out::

    p = hoist(program)  # the same behaviour; guarded pure work starts earlier

A statement leaves an ``if`` branch (and then the enclosing ones, innermost first) when
it is pure as above, nothing before it in the branch touches what it reads or writes,
the condition does not read what it writes, and every read of what it writes is later in
that branch: on the other paths the value it computes is dead. It may then read a
header that is not valid on those paths (P4: an unspecified value, unused), which the
DP-IR validator refuses: the TNA backend hoists after validating, and nothing else
hoists.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from mantra6g.synth.dpir import (
    Apply,
    Assign,
    Call,
    Count,
    Drop,
    Expr,
    Forward,
    Hash,
    If,
    MeterExec,
    Program,
    ReadTimestamp,
    RegisterRead,
    RegisterWrite,
    Stmt,
    walk,
    walk_body,
)
from mantra6g.synth.dpir_check import expr_reads

UNKNOWN = "*"  # a write the pass does not follow: a header pushed, popped or copied


class _Motion:
    def __init__(self, p: Program):
        self.p = p
        # Statements are told apart by identity: one that occurs twice (a shared tuple)
        # is never moved nor moved into.
        self.twice = {k for k, n in Counter(id(s) for s in walk(p)).items() if n > 1}
        self.reads = self.control_reads(p.control)  # conserved by moving statements
        # Reads hoisting does not count (a shared action's, the parser's): a field read
        # there is never hoisted.
        self.opaque_reads = self._parserexpr_reads() | {
            f for a in p.actions for s in walk_body(a.body) for e in _exprs(s) for f in expr_reads(e)}

    # -- what a statement reads and writes ----------------------------------------
    def pure(self, s: Stmt) -> bool:
        """Writes only metadata, and nothing else happens (no drop, state, header)."""
        if isinstance(s, (Assign, Hash)):
            return s.target.startswith("meta.")
        if isinstance(s, If):
            return all(self.pure(x) for x in s.then + s.orelse)
        if isinstance(s, Apply) and not s.on_hit and not s.on_miss:
            t = self.p.table(s.table)
            names = set(t.actions) | {t.default.action}
            return all(isinstance(x, Assign) and x.target.startswith("meta.")
                       for a in names for x in self.p.action(a).body)
        return False

    def effects(self, body, skip: frozenset[int] = frozenset()) -> tuple[set[str], set[str]]:
        """(fields read, fields written) by ``body``, leaving out the statements whose
        ``id`` is in ``skip`` (for an ``If``: its ``then`` branch, ``-id``); a write the
        pass does not follow is :data:`UNKNOWN`."""
        reads: set[str] = set()
        writes: set[str] = set()
        for s in body:
            if id(s) in skip:
                continue
            for e in _exprs(s):
                reads |= expr_reads(e)
            if isinstance(s, (Assign, Hash)):
                writes.add(s.target)
            elif isinstance(s, If):
                for branch in ((s.then,) if -id(s) not in skip else ()) + (s.orelse,):
                    r, w = self.effects(branch, skip)
                    reads |= r
                    writes |= w
            elif isinstance(s, Apply):
                t = self.p.table(s.table)
                reads |= {k.field for k in t.keys}
                for a in set(t.actions) | {t.default.action}:
                    r, w = self.effects(self.p.action(a).body, skip)
                    reads |= r
                    writes |= w
                for branch in (s.on_hit, s.on_miss):
                    r, w = self.effects(branch, skip)
                    reads |= r
                    writes |= w
            elif isinstance(s, Call):
                r, w = self.effects(self.p.action(s.action).body, skip)
                reads |= r
                writes |= w
            elif isinstance(s, Drop):
                writes.add("std.drop")
            elif isinstance(s, Forward):
                writes |= {"std.egress_port", "std.forwarded"}
            elif isinstance(s, (RegisterRead, MeterExec, ReadTimestamp)):
                writes.add(s.target)
            elif not isinstance(s, (RegisterWrite, Count)):  # state, which no movable statement reads
                writes.add(UNKNOWN)  # a header pushed, popped or copied; a packet to the host
        return reads, writes

    # -- sinking ----------------------------------------------------------------
    def body(self, body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out = list(body)
        j = 0
        while j < len(out):
            s = out[j]
            if isinstance(s, If) and s.then and id(s) not in self.twice:
                moved, kept = self.movable(out[:j], s)
                if moved:
                    s = dataclasses.replace(s, then=tuple(moved) + s.then)
                    out = kept + [s] + out[j + 1:]
                    j = len(kept)
            j += 1
        return tuple(_within(s, self.body) for s in out)

    def movable(self, before: list[Stmt], target: If) -> tuple[list[Stmt], list[Stmt]]:
        """The statements of ``before`` that can move into ``target.then`` (in order),
        and those that stay."""
        moved: list[Stmt] = []
        kept = list(before)
        for m in range(len(before) - 1, -1, -1):
            s = before[m]
            if not self.pure(s) or any(id(x) in self.twice for x in walk_body((s,))):
                continue
            reads, writes = self.effects([s])
            b_reads, b_writes = self.effects(kept[m + 1:])
            if writes & b_reads or (reads | writes) & b_writes:
                continue
            if UNKNOWN in b_writes and any(not r.startswith("meta.") for r in reads):
                continue  # a header may change in between
            # read nowhere else: the program without this, what moves with it and the branch
            skip = frozenset({id(x) for x in moved} | {id(s), -id(target)})
            elsewhere, _ = self.effects(self.p.control, skip)
            if writes & (elsewhere | expr_reads(target.cond) | self._parserexpr_reads()):
                continue
            if not writes & self.effects(target.then + tuple(moved))[0]:
                continue  # nothing there reads it (a dead store stays where it is)
            moved.insert(0, s)
            kept.pop(m)
        return moved, kept

    def _parserexpr_reads(self) -> set[str]:
        out: set[str] = set()
        for st in self.p.parser:
            for e in (*st.select, *((st.verify,) if st.verify is not None else ())):
                out |= expr_reads(e)
        return out


    # -- hoisting ---------------------------------------------------------------
    def hoist_body(self, body: tuple[Stmt, ...]) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        for s in body:
            s = _within(s, self.hoist_body)  # innermost first: what leaves an inner if may leave this one
            if isinstance(s, If) and id(s) not in self.twice:
                for branch in ("then", "orelse"):
                    lifted, rest = self.liftable(s, getattr(s, branch))
                    if lifted:
                        out += lifted
                        s = dataclasses.replace(s, **{branch: rest})
            out.append(s)
        return tuple(out)

    def liftable(self, s: If, branch: tuple[Stmt, ...]) -> tuple[list[Stmt], tuple[Stmt, ...]]:
        """The statements of ``branch`` that can run before ``s`` (in order), and the
        branch without them."""
        lifted: list[Stmt] = []
        rest: list[Stmt] = []
        cond = expr_reads(s.cond)
        for k, x in enumerate(branch):
            if self.pure(x) and not any(id(y) in self.twice for y in walk_body((x,))):
                reads, writes = self.effects([x])
                b_reads, b_writes = self.effects(rest)
                later, own = self.control_reads(branch[k + 1:]), self.control_reads((x,))
                if (
                    not writes & (b_reads | b_writes | cond | self.opaque_reads)
                    and not reads & b_writes
                    and not (UNKNOWN in b_writes and any(not r.startswith("meta.") for r in reads))
                    and all(self.reads[w] == later[w] + own[w] for w in writes)
                    and any(later[w] for w in writes)  # a dead store stays where it is
                ):
                    lifted.append(x)
                    continue
            rest.append(x)
        return lifted, tuple(rest)

    def control_reads(self, body) -> Counter[str]:
        """For each field, how many statements of ``body`` (nested ones included) read it."""
        out: Counter[str] = Counter()
        for s in walk_body(body):
            fields: set[str] = set()
            for e in _exprs(s):
                fields |= expr_reads(e)
            if isinstance(s, Apply):
                fields |= {k.field for k in self.p.table(s.table).keys}
            out.update(fields)
        return out


def _within(s: Stmt, f) -> Stmt:
    """``s`` with ``f`` applied to each of its nested bodies (an ``If``'s branches, an
    ``Apply``'s hit and miss)."""
    if isinstance(s, If):
        return dataclasses.replace(s, then=f(s.then), orelse=f(s.orelse))
    if isinstance(s, Apply):
        return dataclasses.replace(s, on_hit=f(s.on_hit), on_miss=f(s.on_miss))
    return s


def _exprs(s: Stmt) -> list[Expr]:
    """The expressions a statement evaluates itself (not those of nested statements)."""
    if isinstance(s, Assign):
        return [s.value]
    if isinstance(s, Hash):
        return list(s.inputs)
    if isinstance(s, If):
        return [s.cond]
    return [v for v in (getattr(s, f, None) for f in ("index", "value", "port")) if isinstance(v, Expr)]


def sink(p: Program) -> Program:
    """``p`` with metadata computed only for one branch moved into it (module docstring)."""
    return dataclasses.replace(p, control=_Motion(p).body(p.control))


def hoist(p: Program) -> Program:
    """``p`` with pure metadata computations lifted out of the branches that guard them
    (module docstring)."""
    return dataclasses.replace(p, control=_Motion(p).hoist_body(p.control))

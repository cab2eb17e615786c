"""Reject ill-formed DP-IR before any backend sees it.

Checks: every name resolves (headers, fields, metadata, actions, tables, registers,
counters, meters, parser states); widths agree (assignments, operators, ports, hash
results, register values, action arguments, table entries); the parser is acyclic;
no two entries of an exact or LPM table match the same packets; and no field is read
from a header that may be invalid at that point. A header is known valid where the
parser extracted it on every path, after ``SetValid``, or under an ``If`` whose condition
requires ``isValid()``; validity is followed through actions, whether called or run by
a table (after an apply, only what every one of its actions leaves valid is known). A table may key on a field of a
possibly invalid header only if it also keys on that header's validity (``hdr.$valid``),
so its entries can tell the cases apart.

Errors here are bugs in a lowering (or in a hand-written program), reported with the
program, the construct and what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    ActionCall,
    ActionParam,
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
    Ternary,
    ToHost,
    UnOp,
)

VALID_SUFFIX = "$valid"
MATCH_KINDS = {"exact": Exact, "lpm": Lpm, "ternary": Ternary, "range": Range}


def expr_reads(e: dpir.Expr) -> set[str]:
    """The fields ``e`` reads (``h.$valid`` for a validity test; action parameters are
    not fields)."""
    if isinstance(e, dpir.Ref):
        return set() if e.path.startswith("param.") else {e.path}
    if isinstance(e, dpir.IsValid):
        return {f"{e.header}.{VALID_SUFFIX}"}
    return set().union(*(expr_reads(x) for x in dpir.operands(e)))


class DpirError(Exception):
    """An ill-formed DP-IR program (a bug in whatever produced it)."""

    def __init__(self, program: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"DP-IR program '{program}' is ill-formed:\n  " + "\n  ".join(problems))


def validate(p: Program) -> None:
    """Raise :class:`DpirError` listing every problem found in ``p``."""
    problems: list[str] = []
    _Checker(p, problems).run()
    if problems:
        raise DpirError(p.name, problems)


def parsed_headers(p: Program) -> frozenset[str]:
    """Headers the parser extracts on every path that reaches ``accept``."""
    result: frozenset[str] | None = None
    for path in parser_paths(p):
        hdrs = frozenset(h for state in path for h in p.state(state).extract)
        result = hdrs if result is None else result & hdrs
    return result or frozenset()


def parser_paths(p: Program) -> list[tuple[str, ...]]:
    """Every path of state names from ``start`` to ``accept`` (the parser is a DAG)."""
    paths: list[tuple[str, ...]] = []

    def walk(name: str, path: tuple[str, ...]) -> None:
        if name == "accept":
            paths.append(path)
            return
        if name == "reject" or name in path:
            return
        state = p.state(name)
        for nxt in {c.next for c in state.cases} | {state.default}:
            walk(nxt, path + (name,))

    walk("start", ())
    return paths


def width(p: Program, e: Expr, params: tuple[ActionParam, ...] = ()) -> int:
    """The bit width of an expression (KeyError for an undefined name)."""
    if isinstance(e, Const):
        return e.width
    if isinstance(e, Ref):
        return p.width_of(e.path, params)
    if isinstance(e, IsValid):
        return 1
    if isinstance(e, Cast):
        return e.width
    if isinstance(e, OnesSum):
        return 16
    if isinstance(e, UnOp):
        return 1 if e.op == "!" else width(p, e.operand, params)
    if e.op in dpir.COMPARE_OPS or e.op in dpir.LOGIC_OPS:
        return 1
    return width(p, e.left, params)


def valid_in(cond: Expr) -> set[str]:
    """Headers that ``cond`` being true proves valid."""
    if isinstance(cond, IsValid):
        return {cond.header}
    if isinstance(cond, BinOp) and cond.op == "&&":
        return valid_in(cond.left) | valid_in(cond.right)
    return set()


class _Checker:
    def __init__(self, p: Program, problems: list[str]):
        self.p = p
        self.problems = problems

    def err(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    # ---------------------------------------------------------------- top level
    def run(self) -> None:
        p = self.p
        for kind, items in (
            ("header", p.headers),
            ("metadata field", p.metadata),
            ("action", p.actions),
            ("table", p.tables),
            ("register", p.registers),
            ("counter", p.counters),
            ("meter", p.meters),
            ("parser state", p.parser),
        ):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    self.err(f"{kind} '{item.name}'", "declared twice")
                seen.add(item.name)
        for h in p.headers:
            if h.type not in dpir.HEADERS:
                self.err(f"header '{h.name}'", f"unknown header type '{h.type}'")
        if self.problems:
            return
        self.check_parser()
        for name in p.deparse:
            self.header_exists(name, "deparse")
        for a in p.actions:
            # Actions are checked for names and widths here; validity per apply site below.
            self.stmts(a.body, f"action '{a.name}'", a.params, valid=None)
        for t in p.tables:
            self.check_table(t)
        if not any(pr.startswith("parser") for pr in self.problems):
            self.stmts(p.control, "control", (), valid=set(parsed_headers(p)))

    def header_exists(self, name: str, where: str) -> bool:
        try:
            self.p.header(name)
            return True
        except KeyError:
            self.err(where, f"no header '{name}'")
            return False

    # ---------------------------------------------------------------- parser
    def check_parser(self) -> None:
        p = self.p
        names = {s.name for s in p.parser}
        if "start" not in names:
            self.err("parser", "no 'start' state")
            return
        for s in p.parser:
            where = f"parser state '{s.name}'"
            for h in s.extract:
                self.header_exists(h, where)
            for nxt in [c.next for c in s.cases] + [s.default]:
                if nxt not in names and nxt not in ("accept", "reject"):
                    self.err(where, f"goes to undefined state '{nxt}'")
            widths = []
            for e in s.select:
                w = self.expr(e, where, ())
                widths.append(w)
            if s.verify is not None:
                vw = self.expr(s.verify, where + " verify", ())
                if vw is not None and vw != 1:
                    self.err(where, f"verify is {vw} bits, not a boolean")
            for c in s.cases:
                if len(c.values) != len(s.select) or (c.masks is not None and len(c.masks) != len(s.select)):
                    self.err(where, f"case -> {c.next} has {len(c.values)} values for {len(s.select)} select keys")
                    continue
                for v, w in zip(c.values, widths):
                    if w is not None and not 0 <= v < 1 << w:
                        self.err(where, f"case value {v:#x} does not fit {w} bits")
        # cycles
        graph = {s.name: {c.next for c in s.cases} | {s.default} for s in p.parser}
        state: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            state[n] = 1
            for m in graph.get(n, ()):
                if m not in graph:
                    continue
                if state.get(m) == 1:
                    self.err("parser", "cycle: " + " -> ".join(path[path.index(m) :] + [m]))
                elif m not in state:
                    visit(m, path + [m])
            state[n] = 2

        visit("start", ["start"])

    # ---------------------------------------------------------------- tables
    def check_table(self, t: dpir.Table) -> None:
        where = f"table '{t.name}'"
        key_widths: list[int | None] = []
        for k in t.keys:
            if k.match not in MATCH_KINDS:
                self.err(where, f"key {k.field}: unknown match kind '{k.match}'")
            if k.field.endswith("." + VALID_SUFFIX):
                hdr = k.field[: -len(VALID_SUFFIX) - 1]
                key_widths.append(1 if self.header_exists(hdr, where) else None)
                continue
            try:
                key_widths.append(self.p.width_of(k.field))
            except KeyError:
                self.err(where, f"key reads undefined field '{k.field}'")
                key_widths.append(None)
        for name in t.actions:
            try:
                self.p.action(name)
            except KeyError:
                self.err(where, f"lists undefined action '{name}'")
        self.action_call(t.default, where + " default", allowed=t.actions)
        if len(t.entries) > t.size:
            self.err(where, f"{len(t.entries)} entries exceed its size {t.size}")
        for i, e in enumerate(t.entries):
            ew = f"{where} entry {i}"
            if len(e.matches) != len(t.keys):
                self.err(ew, f"has {len(e.matches)} matches for {len(t.keys)} keys")
                continue
            for m, k, w in zip(e.matches, t.keys, key_widths):
                expected = MATCH_KINDS.get(k.match)
                if expected is not None and not isinstance(m, expected) and not (
                    isinstance(m, Ternary) and k.match == "range" and m.mask == 0
                ):
                    self.err(ew, f"{type(m).__name__.lower()} match for {k.match} key {k.field}")
                    continue
                if w is None:
                    continue
                top = 1 << w
                values = {
                    Exact: lambda m: (m.value,),
                    Lpm: lambda m: (m.value,),
                    Ternary: lambda m: (m.value, m.mask),
                    Range: lambda m: (m.low, m.high),
                }[type(m)](m)
                if any(not 0 <= v < top for v in values):
                    self.err(ew, f"value does not fit {w}-bit key {k.field}")
                if isinstance(m, Lpm) and not 0 <= m.prefix_len <= w:
                    self.err(ew, f"prefix length {m.prefix_len} for {w}-bit key {k.field}")
                if isinstance(m, Range) and m.low > m.high:
                    self.err(ew, f"empty range {m.low}..{m.high} for key {k.field}")
            self.action_call(e.action, ew, allowed=t.actions)
        self.duplicate_keys(t, where)

    def duplicate_keys(self, t: dpir.Table, where: str) -> None:
        """Entries of an exact or LPM table that match exactly the same packets: which one
        wins would be the target's choice, so none may exist."""
        if dpir.ranks_by_priority(t):
            return
        seen: dict[tuple, int] = {}
        for i, e in enumerate(t.entries):
            key = tuple((m.value, m.prefix_len) if isinstance(m, Lpm) else m.value for m in e.matches)
            if key in seen:
                self.err(f"{where} entry {i}", f"matches the same packets as entry {seen[key]}")
            seen.setdefault(key, i)

    def action_call(self, call: ActionCall, where: str, allowed: Iterable[str] | None = None) -> None:
        try:
            a = self.p.action(call.action)
        except KeyError:
            self.err(where, f"calls undefined action '{call.action}'")
            return
        if allowed is not None and call.action not in allowed:
            self.err(where, f"action '{call.action}' is not among the table's actions")
        if len(call.args) != len(a.params):
            self.err(where, f"action '{a.name}' takes {len(a.params)} arguments, got {len(call.args)}")
            return
        for v, prm in zip(call.args, a.params):
            if not 0 <= v < 1 << prm.width:
                self.err(where, f"argument {prm.name}={v} does not fit {prm.width} bits")

    # ---------------------------------------------------------------- statements
    def stmts(self, body: Iterable[Stmt], where: str, params, valid: set[str] | None) -> set[str] | None:
        """Check statements in order; ``valid`` is the set of known-valid headers (None:
        not tracked). Returns the set after the statements."""
        for s in body:
            valid = self.stmt(s, where, params, valid)
        return valid

    def stmt(self, s: Stmt, where: str, params, valid: set[str] | None) -> set[str] | None:
        w = f"{where}: {type(s).__name__}"
        if isinstance(s, Assign):
            tw = self.target(s.target, w, params, valid, writing=True)
            vw = self.expr(s.value, w, params, valid)
            self.same_width(w, s.target, tw, s.value, vw)
        elif isinstance(s, SetValid):
            if self.header_exists(s.header, w) and valid is not None:
                valid = valid | {s.header}
        elif isinstance(s, SetInvalid):
            if self.header_exists(s.header, w) and valid is not None:
                valid = valid - {s.header}
        elif isinstance(s, CopyHeader):
            if self.header_exists(s.dst, w) and self.header_exists(s.src, w):
                if self.p.header(s.dst).type != self.p.header(s.src).type:
                    self.err(w, f"'{s.src}' and '{s.dst}' are different header types")
                elif valid is not None:
                    valid = (valid | {s.dst}) if s.src in valid else (valid - {s.dst})
        elif isinstance(s, Drop):
            pass
        elif isinstance(s, Forward):
            pw = self.expr(s.port, w, params, valid)
            if pw is not None and pw > dpir.STD_FIELDS["egress_port"] and not isinstance(s.port, Const):
                self.err(w, f"port expression is {pw} bits, wider than a port ({dpir.STD_FIELDS['egress_port']})")
            if isinstance(s.port, Const) and s.port.value > dpir.MAX_PORT:
                self.err(w, f"port {s.port.value} is above {dpir.MAX_PORT} (511 is BMv2's drop port)")
        elif isinstance(s, Hash):
            tw = self.target(s.target, w, params, valid, writing=True)
            total = 0
            for e in s.inputs:
                total += self.expr(e, w, params, valid) or 0
            if total % 8:
                self.err(w, f"hash inputs are {total} bits; they must fill whole bytes")
            if s.size < 1:
                self.err(w, "hash size must be at least 1")
            if tw is not None and s.base + s.size - 1 >= 1 << tw:
                self.err(w, f"results up to {s.base + s.size - 1} do not fit {s.target} ({tw} bits)")
        elif isinstance(s, RegisterRead):
            tw = self.target(s.target, w, params, valid, writing=True)
            self.expr(s.index, w, params, valid)
            reg = self.named(self.p.register, s.register, w)
            if reg is not None and tw is not None and tw != reg.width:
                self.err(w, f"{s.target} is {tw} bits, register '{reg.name}' holds {reg.width}")
        elif isinstance(s, RegisterWrite):
            self.expr(s.index, w, params, valid)
            vw = self.expr(s.value, w, params, valid)
            reg = self.named(self.p.register, s.register, w)
            if reg is not None and vw is not None and vw != reg.width and not isinstance(s.value, Const):
                self.err(w, f"value is {vw} bits, register '{reg.name}' holds {reg.width}")
        elif isinstance(s, Count):
            self.expr(s.index, w, params, valid)
            self.named(self.p.counter, s.counter, w)
        elif isinstance(s, MeterExec):
            self.expr(s.index, w, params, valid)
            self.named(self.p.meter, s.meter, w)
            tw = self.target(s.target, w, params, valid, writing=True)
            if tw is not None and tw < 2:
                self.err(w, f"meter colour needs at least 2 bits, {s.target} has {tw}")
        elif isinstance(s, ReadTimestamp):
            tw = self.target(s.target, w, params, valid, writing=True)
            if tw is not None and tw < 48:
                self.err(w, f"a timestamp needs at least 48 bits, {s.target} has {tw}")
        elif isinstance(s, ToHost):
            pass
        elif isinstance(s, If):
            cw = self.expr(s.cond, w, params, valid)
            if cw is not None and cw != 1:
                self.err(w, f"condition is {cw} bits, not a boolean")
            then_valid = None if valid is None else valid | valid_in(s.cond)
            after_then = self.stmts(s.then, where, params, then_valid)
            after_else = self.stmts(s.orelse, where, params, valid)
            valid = None if valid is None else (after_then & after_else)
        elif isinstance(s, Apply):
            t = self.named(self.p.table, s.table, w)
            after_hit = after_miss = valid
            if t is not None and valid is not None:
                self.keys_readable(t, valid)
                known = {x.name for x in self.p.actions}
                # Any of the table's actions may run (entries can change at run time):
                # what is known valid afterwards holds after every one of them.
                ran = {
                    name: self.stmts(self.p.action(name).body, f"action '{name}' (applied by table '{t.name}')",
                                     self.p.action(name).params, set(valid))
                    for name in dict.fromkeys((*t.actions, t.default.action)) if name in known
                }
                if ran:
                    after_hit = after_miss = set.intersection(*ran.values())
            hit = self.stmts(s.on_hit, where, params, after_hit)
            miss = self.stmts(s.on_miss, where, params, after_miss)
            valid = None if valid is None else (hit & miss)
        elif isinstance(s, Call):
            self.action_call(ActionCall(s.action, s.args), w)
            if valid is not None and s.action in {x.name for x in self.p.actions}:
                a = self.p.action(s.action)
                valid = self.stmts(a.body, f"action '{a.name}' (called)", a.params, valid)
        else:  # pragma: no cover - every statement type is handled above
            self.err(w, "unknown statement")
        return valid

    def keys_readable(self, t: dpir.Table, valid: set[str]) -> None:
        """Where ``t`` is applied, each key field's header is known valid, or the table
        also keys on that header's validity."""
        keyed_valid = {k.field[: -len(VALID_SUFFIX) - 1] for k in t.keys if k.field.endswith("." + VALID_SUFFIX)}
        for k in t.keys:
            hdr = k.field.partition(".")[0]
            if k.field.endswith("." + VALID_SUFFIX) or hdr in ("meta", "std") or hdr in valid | keyed_valid:
                continue
            self.err(
                f"table '{t.name}'",
                f"key reads {k.field}, but '{hdr}' may be invalid where it is applied; "
                f"apply it under {hdr}.isValid() or add the key {hdr}.{VALID_SUFFIX}",
            )

    def named(self, lookup, name: str, where: str):
        try:
            return lookup(name)
        except KeyError as exc:
            self.err(where, exc.args[0])
            return None

    def target(self, path: str, where: str, params, valid, writing: bool) -> int | None:
        if path.startswith("param."):
            self.err(where, f"cannot assign to action parameter '{path}'")
            return None
        return self.expr(Ref(path), where, params, valid, writing=writing)

    def same_width(self, where: str, target: str, tw, value: Expr, vw) -> None:
        if tw is None or vw is None:
            return
        if isinstance(value, Const):
            if value.value >= 1 << tw:
                self.err(where, f"constant {value.value} does not fit {target} ({tw} bits)")
        elif tw != vw:
            self.err(where, f"{target} is {tw} bits but the value is {vw} bits")

    def expr(self, e: Expr, where: str, params, valid: set[str] | None = None, writing: bool = False) -> int | None:
        if isinstance(e, Const):
            if not 0 <= e.value < 1 << e.width:
                self.err(where, f"constant {e.value} does not fit {e.width} bits")
            return e.width
        if isinstance(e, Ref):
            try:
                w = self.p.width_of(e.path, params)
            except KeyError:
                self.err(where, f"undefined field '{e.path}'")
                return None
            scope = e.path.partition(".")[0]
            if valid is not None and scope not in ("meta", "std", "param") and scope not in valid:
                verb = "writes" if writing else "reads"
                self.err(where, f"{verb} {e.path} where header '{scope}' may be invalid")
            return w
        if isinstance(e, IsValid):
            self.header_exists(e.header, where)
            return 1
        if isinstance(e, Cast):
            self.expr(e.operand, where, params, valid)
            if e.width < 1:
                self.err(where, f"cast to {e.width} bits")
            return e.width
        if isinstance(e, OnesSum):
            for t in e.terms:
                tw = self.expr(t, where, params, valid)
                if tw is not None and tw != 16:
                    self.err(where, f"one's-complement sum of a {tw}-bit term (terms are 16 bits)")
            if not e.terms:
                self.err(where, "one's-complement sum of no terms")
            return 16
        if isinstance(e, UnOp):
            w = self.expr(e.operand, where, params, valid)
            if e.op not in ("~", "!"):
                self.err(where, f"unknown operator '{e.op}'")
            return 1 if e.op == "!" else w
        if isinstance(e, BinOp):
            lw = self.expr(e.left, where, params, valid)
            # `a && b`: b is only evaluated when a holds.
            right_valid = valid if valid is None or e.op != "&&" else valid | valid_in(e.left)
            rw = self.expr(e.right, where, params, right_valid)
            if e.op in dpir.LOGIC_OPS:
                if (lw, rw) != (1, 1) and None not in (lw, rw):
                    self.err(where, f"'{e.op}' needs 1-bit operands, got {lw} and {rw}")
                return 1
            if e.op not in dpir.ARITH_OPS and e.op not in dpir.COMPARE_OPS:
                self.err(where, f"unknown operator '{e.op}'")
                return None
            if e.op not in ("<<", ">>") and None not in (lw, rw) and lw != rw:
                if not isinstance(e.right, Const) and not isinstance(e.left, Const):
                    self.err(where, f"'{e.op}' on {lw}-bit and {rw}-bit operands")
            return 1 if e.op in dpir.COMPARE_OPS else lw
        self.err(where, f"unknown expression {e!r}")  # pragma: no cover
        return None

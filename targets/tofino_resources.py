"""A resource model of the Tofino-1 match-action pipeline, for TNA programs made
from DP-IR: which stage each logical table lands in, and whether the program fits.

The model (docs/targets.md has the reasoning and the sources):

* **Logical tables** are the DP-IR tables where they are applied, plus one keyless
  "action table" for each run of primitive statements in the control (bf-p4c turns
  such statements into tables too), and the byte-residue tables the TNA backend adds
  for ``hash % size``.
* **Dependencies**: a table that matches on (or whose guard reads) a field an
  earlier table writes has a *match* dependency; one whose actions read or write a
  field an earlier table writes has an *action* dependency. Both put it at least one
  stage after that table. Statements under a table's hit/miss branch depend on it.
* **Stages**: tables are placed in program order, each in the earliest stage that
  satisfies its dependencies and has room; a table larger than a stage spreads over
  consecutive stages, and its dependents start after its last one.
* **Budgets** (public Tofino-1 figures, e.g. Bosshart et al., SIGCOMM 2013, and
  Intel's Tofino product brief): 12 MAU stages per pipe; per stage 16 logical table
  IDs, 80 SRAM blocks of 1K × 128 bit (128 Kbit) and 24 TCAM blocks of 512 × 44 bit.
* **Costs**: exact tables pack ``key + 4`` bits per entry into 128-bit SRAM words;
  ternary/LPM/range tables take ``ceil(key bits / 44)`` TCAM blocks per 512 entries,
  range key bits counted 4× (DirtCAM nibble encoding); action data takes SRAM words
  of its own; registers, counters (64 bit) and meters (128 bit) take SRAM for their
  cells in the stage of the table that uses them.

It is an estimate: bf-p4c also allocates PHV containers, crossbar bytes, hash bits,
VLIW slots and gateway resources, which this model does not track. A program it
rejects will not fit; one it accepts may still fail in bf-p4c.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Apply,
    Assign,
    Call,
    CopyHeader,
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
    SetInvalid,
    SetValid,
    Stmt,
)
from mantra6g.synth.dpir_check import VALID_SUFFIX, expr_reads

STAGES = 12
TABLES_PER_STAGE = 16
SRAM_PER_STAGE = 80  # blocks of 1024 words x 128 bits
TCAM_PER_STAGE = 24  # blocks of 512 words x 44 bits
SRAM_WORDS, SRAM_WIDTH = 1024, 128
TCAM_WORDS, TCAM_WIDTH = 512, 44
ENTRY_OVERHEAD_BITS = 4  # version/valid bits per exact-match entry
RANGE_FACTOR = 4
# A gateway (an `if` outside a table) compares at most 4 bytes + 12 bits of PHV (the
# bits: validity bits, as bf-p4c takes them); the TNA backend evaluates a condition
# reading more into flags first (one gateway each).
GATEWAY_BYTES_BITS, GATEWAY_SINGLE_BITS = 32, 12


class TofinoResourceError(MantraError):
    """The program does not fit Tofino-1's 12 MAU stages."""


@dataclass(frozen=True)
class LogicalTable:
    name: str
    kind: str  # "table" | "action" | "hash_mod"
    match_reads: frozenset[str]
    action_reads: frozenset[str]
    writes: frozenset[str]
    sram: int = 0
    tcam: int = 0
    after: frozenset[str] = frozenset()  # control dependencies (hit/miss branches)
    # The (if, branch) pairs it is nested in: tables in different branches of one
    # `if` never both run, so neither depends on the other.
    branches: tuple[tuple[int, int], ...] = ()

    def exclusive_with(self, other: LogicalTable) -> bool:
        mine = dict(self.branches)
        return any(i in mine and mine[i] != b for i, b in other.branches)


def _described(t: LogicalTable) -> str:
    """What an overflow message calls ``t``: a table by its name; statements outside any
    table (the MAU runs them as an action of their own) as such."""
    if t.kind == "action":
        return f"a block of statements outside any table ('{t.name}')"
    return f"table '{t.name}'" + (" (the backend's reduction of a hash modulo its size)" if t.kind == "hash_mod" else "")


@dataclass(frozen=True)
class Placement:
    table: str
    first_stage: int
    last_stage: int
    sram: int
    tcam: int
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class StageUsage:
    tables: int
    sram: int
    tcam: int


@dataclass(frozen=True)
class ResourceReport:
    placements: tuple[Placement, ...]
    stages: tuple[StageUsage, ...]

    @property
    def stages_used(self) -> int:
        return max((pl.last_stage + 1 for pl in self.placements), default=0)

    def stage_of(self, table: str) -> int:
        return next(pl.first_stage for pl in self.placements if pl.table == table)


# ---------------------------------------------------------------- costs


def _blocks(n: int, per: int) -> int:
    return max(1, math.ceil(n / per)) if n > 0 else 0


def sram_words_blocks(entries: int, bits: int) -> int:
    """SRAM blocks for ``entries`` of ``bits`` each, packed into 128-bit words."""
    if bits <= 0 or entries <= 0:
        return 0
    if bits <= SRAM_WIDTH:
        words = math.ceil(entries / (SRAM_WIDTH // bits))
    else:
        words = entries * math.ceil(bits / SRAM_WIDTH)
    return _blocks(words, SRAM_WORDS)


def key_bits(p: Program, t: dpir.Table) -> tuple[int, int]:
    """(exact-style bits, TCAM bits) of ``t``'s key."""
    bits = tcam = 0
    for k in t.keys:
        w = 1 if k.field.endswith("." + VALID_SUFFIX) else p.width_of(k.field)
        bits += w
        tcam += w * (RANGE_FACTOR if k.match == "range" else 1)
    return bits, tcam


def table_cost(p: Program, t: dpir.Table) -> tuple[int, int]:
    """(SRAM blocks, TCAM blocks) of one DP-IR table."""
    bits, tcam_bits = key_bits(p, t)
    action_bits = max((sum(prm.width for prm in p.action(a).params) for a in t.actions), default=0)
    sram = sram_words_blocks(t.size, action_bits)
    if all(k.match == "exact" for k in t.keys):
        return sram + (sram_words_blocks(t.size, bits + ENTRY_OVERHEAD_BITS) if t.keys else 0), 0
    tcam = math.ceil(tcam_bits / TCAM_WIDTH) * _blocks(t.size, TCAM_WORDS)
    return sram, tcam


def stateful_cost(p: Program, body: Iterable[Stmt]) -> int:
    """SRAM blocks of the registers, counters and meters ``body`` uses."""
    used: dict[str, int] = {}
    for s in _flatten(p, body):
        if isinstance(s, (RegisterRead, RegisterWrite)):
            r = p.register(s.register)
            used[r.name] = sram_words_blocks(r.size, max(8, r.width))
        elif isinstance(s, Count):
            used[s.counter] = sram_words_blocks(p.counter(s.counter).size, 64)
        elif isinstance(s, MeterExec):
            used[s.meter] = sram_words_blocks(p.meter(s.meter).size, 128)
    return sum(used.values())


# ---------------------------------------------------------------- reads and writes


def fits_gateway(p: Program, e: Expr, params: tuple[dpir.ActionParam, ...] = ()) -> bool:
    """Whether one gateway can evaluate condition ``e``: its distinct fields in 4 bytes;
    its validity bits and the fields it compares by order (``<``, ``>=``: a range, which
    bf-p4c's gateway takes only in its 12 single bits) in 12 (`ipv4.isValid() &&
    ipv4.dst == X` fits, `udp.dport >= 5000` does not: bf-p4c agrees)."""
    refs = expr_reads(e)
    ranged = _ranged(e)
    single = [r for r in refs if r.endswith("." + VALID_SUFFIX)]
    wide = sum(p.width_of(r, params) for r in refs if not r.endswith("." + VALID_SUFFIX) and r not in ranged)
    bits = len(single) + sum(p.width_of(r, params) for r in ranged)
    return wide <= GATEWAY_BYTES_BITS and bits <= GATEWAY_SINGLE_BITS


def _ranged(e: Expr) -> set[str]:
    """The fields ``e`` compares with ``<``, ``<=``, ``>`` or ``>=``."""
    if isinstance(e, dpir.BinOp):
        if e.op in ("<", "<=", ">", ">="):
            return expr_reads(e)
        return _ranged(e.left) | _ranged(e.right)
    if isinstance(e, dpir.UnOp):
        return _ranged(e.operand)
    return set()


def _flatten(p: Program, body: Iterable[Stmt]) -> Iterable[Stmt]:
    for s in body:
        yield s
        if isinstance(s, If):
            yield from _flatten(p, s.then + s.orelse)
        elif isinstance(s, Call):
            yield from _flatten(p, p.action(s.action).body)


def stmt_effects(p: Program, body: Iterable[Stmt]) -> tuple[set[str], set[str]]:
    """(fields read, fields written) by ``body`` (no table applies inside)."""
    reads: set[str] = set()
    writes: set[str] = set()
    for s in _flatten(p, body):
        if isinstance(s, Assign):
            writes.add(s.target)
            reads |= expr_reads(s.value)
        elif isinstance(s, (SetValid, SetInvalid)):
            writes |= {f"{s.header}.{VALID_SUFFIX}", f"{s.header}.*"}
        elif isinstance(s, CopyHeader):
            writes |= {f"{s.dst}.{VALID_SUFFIX}", f"{s.dst}.*"}
            reads |= {f"{s.src}.{VALID_SUFFIX}", f"{s.src}.*"}
        elif isinstance(s, Drop):
            writes.add("std.drop")
        elif isinstance(s, Forward):
            writes |= {"std.egress_port", "std.forwarded"}
            reads |= expr_reads(s.port)
        elif isinstance(s, Hash):
            writes.add(s.target)
            for e in s.inputs:
                reads |= expr_reads(e)
        elif isinstance(s, RegisterRead):
            writes.add(s.target)
            reads |= expr_reads(s.index)
        elif isinstance(s, RegisterWrite):
            reads |= expr_reads(s.index) | expr_reads(s.value)
        elif isinstance(s, Count):
            reads |= expr_reads(s.index)
        elif isinstance(s, MeterExec):
            writes.add(s.target)
            reads |= expr_reads(s.index)
        elif isinstance(s, ReadTimestamp):
            writes.add(s.target)
        elif isinstance(s, If):
            reads |= expr_reads(s.cond)
    return reads, writes


def _conflicts(writes: frozenset[str], reads: Iterable[str]) -> bool:
    for f in reads:
        scope = f.partition(".")[0]
        if f in writes or f"{scope}.*" in writes or (f.endswith("*") and any(w.startswith(scope + ".") for w in writes)):
            return True
    return False


# ---------------------------------------------------------------- the table graph


@dataclass
class _Builder:
    p: Program
    # Tables the backend adds after each control-level Hash whose size is not a
    # power of two (the modulo tables), in program order.
    extra: list[list[LogicalTable]]
    tables: list[LogicalTable] = field(default_factory=list)
    counter: int = 0
    ifs: int = 0
    branches: tuple[tuple[int, int], ...] = ()

    def add(self, t: LogicalTable) -> None:
        self.tables.append(dataclasses.replace(t, branches=self.branches))

    def body(self, body: Iterable[Stmt], guard: frozenset[str], after: frozenset[str]) -> None:
        run: list[Stmt] = []
        for s in body:
            # bf-p4c makes a table of each `if` (a gateway) and of each run of straight-line
            # statements between them: so does the model.
            if isinstance(s, (Apply, If)):
                self.flush(run, guard, after)
                run = []
                if isinstance(s, Apply):
                    self.apply(s, guard, after)
                else:
                    g = guard | frozenset(expr_reads(s.cond))
                    if not fits_gateway(self.p, s.cond):
                        # evaluated into flags first (TnaPrinter.split_condition)
                        self.counter += 1
                        flags = f"std.cond_flags_{self.counter}"
                        self.add(LogicalTable(f"statements {self.counter} (flags of a wide condition)", "action",
                                              g, frozenset(), frozenset({flags}), after=after))
                        g = guard | {flags}
                    self.ifs += 1
                    # Both branches carry this if's id (nested ifs increment the counter).
                    this_if = self.ifs
                    outer = self.branches
                    for branch, stmts in enumerate((s.then, s.orelse)):
                        self.branches = outer + ((this_if, branch),)
                        self.body(stmts, g, after)
                    self.branches = outer
            else:
                run.append(s)
                if isinstance(s, Hash) and s.size & (s.size - 1) and self.extra:
                    self.flush(run, guard, after)
                    run = []
                    for t in self.extra.pop(0):
                        self.add(t)
        self.flush(run, guard, after)

    def flush(self, run: list[Stmt], guard: frozenset[str], after: frozenset[str]) -> None:
        if not run:
            return
        reads, writes = stmt_effects(self.p, run)
        self.counter += 1
        # Named by what the statements write (metadata names carry their graph and NF),
        # so an overflow message points at something the user can find.
        shown = sorted(writes)[:2]
        label = ", ".join(shown) + (", ..." if len(writes) > 2 else "")
        self.add(
            LogicalTable(
                f"statements {self.counter} (writing {label})" if writes else f"statements {self.counter}",
                "action",
                guard,
                frozenset(reads),
                frozenset(writes),
                sram=stateful_cost(self.p, run),
                after=after,
            )
        )

    def apply(self, s: Apply, guard: frozenset[str], after: frozenset[str]) -> None:
        t = self.p.table(s.table)
        bodies = [self.p.action(a).body for a in t.actions]
        reads, writes = set(), set()
        for b in bodies:
            r, w = stmt_effects(self.p, b)
            reads |= r
            writes |= w
        keys = {k.field for k in t.keys}
        sram, tcam = table_cost(self.p, t)
        sram += stateful_cost(self.p, [st for b in bodies for st in b])
        self.add(
            LogicalTable(t.name, "table", guard | frozenset(keys), frozenset(reads), frozenset(writes), sram, tcam, after)
        )
        branch_after = after | {t.name}
        self.body(s.on_hit, guard, branch_after)
        self.body(s.on_miss, guard, branch_after)


def logical_tables(p: Program, extra: list[list[LogicalTable]] | None = None) -> list[LogicalTable]:
    """The program's logical tables in program order; ``extra`` as :class:`_Builder`'s."""
    b = _Builder(p, list(extra or []))
    b.body(p.control, frozenset(), frozenset())
    return b.tables


def _critical_chain(placed: dict[str, Placement], deps: list[str], kinds: dict[str, str]) -> str:
    """The DP-IR tables on the longest chain of dependencies that ends in ``deps``, first
    to last, with their stages (the statement and epilogue tables between are counted,
    not named)."""
    chain, step = [], deps
    while step:
        last = max(step, key=lambda d: placed[d].last_stage)
        chain.append(last)
        step = list(placed[last].depends_on)
    named = [f"'{n}' (stage {placed[n].first_stage})" for n in reversed(chain) if kinds.get(n) == "table"]
    return " -> ".join(named) if named else "of statements"


def place(tables: list[LogicalTable], stages: int = STAGES) -> ResourceReport:
    """Assign stages; raise :class:`TofinoResourceError` naming the table that overflows
    and how many stages the program would need."""
    usage = [[0, 0, 0] for _ in range(stages)]  # tables, sram, tcam
    kinds = {t.name: t.kind for t in tables}
    placed: dict[str, Placement] = {}
    order: list[Placement] = []
    for i, t in enumerate(tables):
        deps = []
        earliest = 0
        for prev in tables[:i]:
            pl = placed[prev.name]
            if t.exclusive_with(prev):
                continue
            if (
                prev.name in t.after
                or _conflicts(prev.writes, t.match_reads)
                or _conflicts(prev.writes, t.action_reads | t.writes)
            ):
                deps.append(prev.name)
                earliest = max(earliest, pl.last_stage + 1)
        stage = earliest
        sram, tcam = t.sram, t.tcam
        if sram > SRAM_PER_STAGE * STAGES or tcam > TCAM_PER_STAGE * STAGES:
            raise TofinoResourceError(
                f"{_described(t)} needs {sram} SRAM and {tcam} TCAM blocks, more than the whole "
                f"pipeline has ({SRAM_PER_STAGE * STAGES} and {TCAM_PER_STAGE * STAGES}); reduce its size"
            )
        # Find the first stage from `earliest` where the table starts, spreading what
        # does not fit into the following stages.
        while True:
            if stage >= stages:
                raise TofinoResourceError(
                    f"{_described(t)} does not fit in Tofino-1's {STAGES} MAU stages: the program needs "
                    f"{place(tables, 4 * len(tables) + STAGES).stages_used}, along the chain of dependent tables "
                    f"{_critical_chain(placed, deps, kinds)}; shorten it (fewer NFs on this device, or split the chain "
                    "over devices) or make tables smaller"
                )
            left_sram, left_tcam, s, first = sram, tcam, stage, None
            ok = True
            while left_sram > 0 or left_tcam > 0 or first is None:
                if s >= stages:
                    ok = False
                    break
                room_t = usage[s][0] < TABLES_PER_STAGE
                free_sram = SRAM_PER_STAGE - usage[s][1]
                free_tcam = TCAM_PER_STAGE - usage[s][2]
                if not room_t or (left_sram > 0 and free_sram == 0) or (left_tcam > 0 and free_tcam == 0):
                    if first is None:
                        break  # cannot start here
                    ok = False
                    break
                if first is None:
                    first = s
                left_sram -= min(left_sram, free_sram)
                left_tcam -= min(left_tcam, free_tcam)
                s += 1
            if first is None:
                stage += 1
                continue
            if not ok:
                stage += 1
                continue
            last = s - 1
            break
        # commit
        left_sram, left_tcam = sram, tcam
        for st in range(first, last + 1):
            usage[st][0] += 1
            take_s = min(left_sram, SRAM_PER_STAGE - usage[st][1])
            take_t = min(left_tcam, TCAM_PER_STAGE - usage[st][2])
            usage[st][1] += take_s
            usage[st][2] += take_t
            left_sram -= take_s
            left_tcam -= take_t
        pl = Placement(t.name, first, last, sram, tcam, tuple(deps))
        placed[t.name] = pl
        order.append(pl)
    return ResourceReport(tuple(order), tuple(StageUsage(*u) for u in usage))

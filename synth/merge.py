"""Tenant merge: several tenants' DP-IR programs for one device become one program.

    tenants = tenant_programs(specs)["smartnic_edge_b"]   # each tenant compiled alone
    merged = merge("smartnic_edge_b", tenants)
    merged.program                                          # ordinary DP-IR
    merged.translate_entry("city", "camera_uplink_lb_backends", entry)

The merged program is built so that each tenant's packet runs exactly that tenant's
program and nothing else:

* **Namespaces**: every metadata field, action, table, register, counter and meter of
  tenant ``t`` is renamed ``t__<name>``; headers are the packet's and are shared.
* **Parser**: the union of the tenants' parsers (states merged by name; identical
  states are kept once, states that differ only in their cases get the union of the
  cases). Deparse orders are merged into one order consistent with every tenant's.
* **Classification and dispatch**: the control first classifies by *graph*, exactly as
  :mod:`mantra6g.synth.compose` orders graphs on one device — an if/else chain over every
  graph's classifier, highest classifier priority first, the site's order among equals
  — writing the id of the graph's tenant into ``meta.tenant``; then dispatches on
  ``meta.tenant`` to the tenant's whole control, renamed. The tenant's own
  classification runs again inside (in its namespace), so the branch is the tenant's
  program unchanged. Branches are mutually exclusive, which lets the Tofino stage model
  overlap tenants' tables. A packet no classifier claims is dropped (or, with
  ``unclaimed="pass"``, handed to the host).
* **Entries**: a tenant keeps writing entries against its own program;
  :meth:`MergedProgram.translate_entry` maps them (table and action renamed, match and
  arguments unchanged, since the merged table has the tenant's keys).

The verifier (:mod:`mantra6g.verify`) proves that a merged program has these
properties; a hand-written or mutated merge is checked the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Action,
    ActionCall,
    Apply,
    Assign,
    Call,
    Const,
    Count,
    Entry,
    Expr,
    Forward,
    Hash,
    If,
    MeterExec,
    ParserState,
    Program,
    ReadTimestamp,
    Ref,
    RegisterRead,
    RegisterWrite,
    Stmt,
    map_refs,
)
from mantra6g.synth.ir import DevicePlan, ServiceSpec

TENANT_FIELD = "tenant"  # the merge's own metadata: the id of the tenant owning the packet
TENANT_WIDTH = 16
KINDS = ("meta", "action", "table", "register", "counter", "meter")


class MergeError(MantraError):
    """The tenants' programs cannot be merged (e.g. two parsers disagree)."""


@dataclass(frozen=True)
class Claim:
    """One graph's claim on a device's traffic: the packets its classifier matches, unless
    a claim earlier in the device's classification order matched first (higher
    ``priority``, then lower ``order``, the graph's position in the site)."""

    graph: str
    classifier: Expr  # DP-IR condition over the parsed headers
    priority: int = 0
    order: int = 0
    slice: str = ""  # the graph's slice (intended flows name slices)


@dataclass(frozen=True)
class TenantProgram:
    """One tenant's program for a device, compiled alone, and how to recognise its traffic."""

    tenant: str
    tenant_id: int
    program: Program
    claims: tuple[Claim, ...]  # the tenant's graphs on this device, in its own order
    # Egress ports the tenant owns (others' packets must not leave through them).
    ports: frozenset[int] = frozenset()

    @property
    def classifier(self) -> Expr:
        """The packets one of the tenant's graphs claims (before other tenants' claims)."""
        from mantra6g.synth.compose import any_of

        return any_of([c.classifier for c in self.claims])

    @property
    def priority(self) -> int:
        return max(c.priority for c in self.claims)


@dataclass(frozen=True)
class MergedProgram:
    """The merged program, its tenants and the name maps. ``order`` is the device's
    classification order: every tenant's claims, first come first served."""

    program: Program
    tenants: tuple[TenantProgram, ...]
    # tenant -> kind -> original name -> merged name
    names: Mapping[str, Mapping[str, Mapping[str, str]]] = field(hash=False, compare=False)
    order: tuple[tuple[Claim, str], ...] = ()
    plan: DevicePlan | None = None  # the operator's port plan and intended flows
    unclaimed: str = "drop"  # what the device does with packets no claim takes

    @staticmethod
    def single(t: TenantProgram, plan: DevicePlan | None = None, unclaimed: str = "drop") -> MergedProgram:
        """A device that runs one tenant's program alone (nothing renamed)."""
        names = {kind: {n: n for n in ns} for kind, ns in namespace(t.tenant, t.program).items()}
        return MergedProgram(t.program, (t,), {t.tenant: names}, tuple((c, t.tenant) for c in t.claims), plan, unclaimed)

    @property
    def alone(self) -> bool:
        """The device runs one tenant's program, unchanged."""
        return len(self.tenants) == 1 and self.program is self.tenants[0].program

    @property
    def tenant_field(self) -> str:
        return f"meta.{TENANT_FIELD}"

    def tenant(self, name: str) -> TenantProgram:
        for t in self.tenants:
            if t.tenant == name:
                return t
        raise KeyError(f"no tenant '{name}' on {self.program.name}")

    def merged_name(self, tenant: str, kind: str, name: str) -> str:
        return self.names[tenant][kind][name]

    def owner(self, kind: str, name: str) -> str | None:
        """The tenant that owns merged resource ``name`` (None: the merge's own, shared)."""
        owners = self.owners(kind, name)
        return next(iter(owners)) if len(owners) == 1 else None

    def owners(self, kind: str, name: str) -> frozenset[str]:
        """Every tenant whose resource maps to ``name`` (two or more: a shared name)."""
        return frozenset(t for t, kinds in self.names.items() if name in kinds.get(kind, {}).values())

    def translate_entry(self, tenant: str, table: str, entry: Entry) -> tuple[str, Entry]:
        """A tenant's entry for its own ``table`` as an entry of the merged program."""
        names = self.names[tenant]
        if table not in names["table"]:
            raise MergeError(f"tenant '{tenant}' has no table '{table}' on {self.program.name}")
        action = names["action"].get(entry.action.action)
        merged_table = self.program.table(names["table"][table])
        if action not in merged_table.actions:
            raise MergeError(f"table '{table}' of tenant '{tenant}' has no action '{entry.action.action}'")
        return merged_table.name, dataclasses.replace(entry, action=ActionCall(action, entry.action.args))

    def with_entries(self, tenant: str, table: str, entries: Iterable[Entry]) -> MergedProgram:
        """This merge with ``tenant``'s ``table`` holding ``entries`` (its own names)."""
        translated = [self.translate_entry(tenant, table, e) for e in entries]
        name = self.names[tenant]["table"][table]
        tables = tuple(
            dataclasses.replace(t, entries=tuple(e for _, e in translated)) if t.name == name else t
            for t in self.program.tables
        )
        return dataclasses.replace(self, program=dataclasses.replace(self.program, tables=tables))


# ---------------------------------------------------------------- renaming


@dataclass(frozen=True)
class Renamer:
    """Rename a program's metadata, actions, tables and stateful objects (one map per kind)."""

    maps: Mapping[str, Mapping[str, str]]

    def path(self, p: str) -> str:
        scope, _, name = p.partition(".")
        if scope == "meta":
            return f"meta.{self.maps['meta'].get(name, name)}"
        return p

    def expr(self, e: Expr) -> Expr:
        return map_refs(e, self.path)

    def name(self, kind: str, n: str) -> str:
        return self.maps[kind].get(n, n)

    def stmt(self, s: Stmt) -> Stmt:
        r = self
        if isinstance(s, Assign):
            return Assign(r.path(s.target), r.expr(s.value))
        if isinstance(s, Forward):
            return Forward(r.expr(s.port))
        if isinstance(s, Hash):
            return dataclasses.replace(s, target=r.path(s.target), inputs=tuple(r.expr(i) for i in s.inputs))
        if isinstance(s, RegisterRead):
            return RegisterRead(r.path(s.target), r.name("register", s.register), r.expr(s.index))
        if isinstance(s, RegisterWrite):
            return RegisterWrite(r.name("register", s.register), r.expr(s.index), r.expr(s.value))
        if isinstance(s, Count):
            return Count(r.name("counter", s.counter), r.expr(s.index))
        if isinstance(s, MeterExec):
            return MeterExec(r.name("meter", s.meter), r.expr(s.index), r.path(s.target))
        if isinstance(s, ReadTimestamp):
            return ReadTimestamp(r.path(s.target))
        if isinstance(s, If):
            return If(r.expr(s.cond), r.body(s.then), r.body(s.orelse))
        if isinstance(s, Apply):
            return Apply(r.name("table", s.table), r.body(s.on_hit), r.body(s.on_miss))
        if isinstance(s, Call):
            return Call(r.name("action", s.action), s.args)
        return s  # SetValid, SetInvalid, CopyHeader, Drop, ToHost: headers only

    def body(self, body: Sequence[Stmt]) -> tuple[Stmt, ...]:
        return tuple(self.stmt(s) for s in body)

    def call(self, c: ActionCall) -> ActionCall:
        return ActionCall(self.name("action", c.action), c.args)

    def program_parts(self, p: Program) -> dict[str, tuple]:
        """The renamed declarations and control of ``p``."""
        return {
            "metadata": tuple(dpir.MetaField(self.name("meta", m.name), m.width) for m in p.metadata),
            "actions": tuple(Action(self.name("action", a.name), a.params, self.body(a.body)) for a in p.actions),
            "tables": tuple(
                dataclasses.replace(
                    t,
                    name=self.name("table", t.name),
                    keys=tuple(dpir.TableKey(self.path(k.field), k.match) for k in t.keys),
                    actions=tuple(self.name("action", a) for a in t.actions),
                    default=self.call(t.default),
                    entries=tuple(dataclasses.replace(e, action=self.call(e.action)) for e in t.entries),
                )
                for t in p.tables
            ),
            "registers": tuple(dataclasses.replace(x, name=self.name("register", x.name)) for x in p.registers),
            "counters": tuple(dataclasses.replace(x, name=self.name("counter", x.name)) for x in p.counters),
            "meters": tuple(dataclasses.replace(x, name=self.name("meter", x.name)) for x in p.meters),
            "control": self.body(p.control),
        }


def namespace(tenant: str, p: Program) -> dict[str, dict[str, str]]:
    """``tenant__<name>`` for every name ``p`` declares, per kind."""
    declared = {
        "meta": [m.name for m in p.metadata],
        "action": [a.name for a in p.actions],
        "table": [t.name for t in p.tables],
        "register": [r.name for r in p.registers],
        "counter": [c.name for c in p.counters],
        "meter": [m.name for m in p.meters],
    }
    return {kind: {n: f"{tenant}__{n}" for n in names} for kind, names in declared.items()}


# ---------------------------------------------------------------- parser and deparser union


def union_parser(programs: Sequence[Program]) -> tuple[tuple[dpir.HeaderInstance, ...], tuple[ParserState, ...], tuple[str, ...]]:
    """Headers, parser states and deparse order covering every program's."""
    headers: dict[str, dpir.HeaderInstance] = {}
    for p in programs:
        for h in p.headers:
            if h.name in headers and headers[h.name].type != h.type:
                raise MergeError(
                    f"header '{h.name}' is a {headers[h.name].type} in one tenant's program and a {h.type} in "
                    f"{p.name}; rename one of them"
                )
            headers.setdefault(h.name, h)
    states: dict[str, ParserState] = {}
    for p in programs:
        for st in p.parser:
            have = states.get(st.name)
            if have is None or have == st:
                states.setdefault(st.name, st)
                continue
            if (have.extract, have.select, have.default) != (st.extract, st.select, st.default):
                raise MergeError(
                    f"parser state '{st.name}' extracts or selects differently in {p.name}; "
                    "tenants sharing a device must agree on how a header is parsed"
                )
            cases = list(have.cases)
            for c in st.cases:
                clash = next((d for d in cases if (d.values, d.masks) == (c.values, c.masks)), None)
                if clash is not None and clash.next != c.next:
                    raise MergeError(f"parser state '{st.name}': value {c.values} leads to '{clash.next}' and to '{c.next}'")
                if clash is None:
                    cases.append(c)
            states[st.name] = dataclasses.replace(have, cases=tuple(cases))
    return tuple(headers.values()), tuple(states.values()), merge_orders([p.deparse for p in programs])


def merge_orders(orders: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """One order containing every name, consistent with each given order (a stable
    topological sort); raises :class:`MergeError` when two orders disagree."""
    names = list(dict.fromkeys(n for o in orders for n in o))
    before: dict[str, set[str]] = {n: set() for n in names}
    for o in orders:
        for i, n in enumerate(o):
            before[n].update(o[:i])
    out: list[str] = []
    while names:
        ready = next((n for n in names if before[n] <= set(out)), None)
        if ready is None:
            raise MergeError(f"the tenants' deparse orders disagree about {', '.join(names)}")
        out.append(ready)
        names.remove(ready)
    return tuple(out)


# ---------------------------------------------------------------- merge


def classification_order(tenants: Sequence[TenantProgram]) -> tuple[tuple[Claim, str], ...]:
    """Every tenant's claims, highest priority first, the site's order among equals: the
    order :func:`mantra6g.synth.compose.lower_device` classifies graphs in."""
    claims = [(c, t.tenant) for t in tenants for c in t.claims]
    return tuple(sorted(claims, key=lambda ct: (-ct[0].priority, ct[0].order)))


def classification_chain(order: Sequence[tuple[Claim, str]], ids: Mapping[str, int]) -> tuple[Stmt, ...]:
    """The merged program's first statement: an else-chain over the claims in ``order``,
    the first that matches writing its owner's id (``ids``) into ``meta.tenant``. The
    verifier relies on a merged program beginning with exactly this."""
    tenant = f"meta.{TENANT_FIELD}"
    classify: tuple[Stmt, ...] = ()
    for claim, owner in reversed(order):  # from the last claim up
        classify = (If(claim.classifier, (Assign(tenant, Const(ids[owner], TENANT_WIDTH)),), classify),)
    return classify


def merge(name: str, tenants: Sequence[TenantProgram], unclaimed: str = "drop", plan: DevicePlan | None = None) -> MergedProgram:
    """One program for one device running each tenant's program on that tenant's traffic."""
    from mantra6g.synth.dpir_check import validate

    if not tenants:
        raise MergeError(f"no tenant programs to merge for {name}")
    seen: dict[object, str] = {}
    for t in tenants:
        for key in (("name", t.tenant), ("id", t.tenant_id)):
            if key in seen:
                raise MergeError(f"two tenants on {name} have the same {key[0]} '{key[1]}'")
            seen[key] = t.tenant
        if t.tenant_id == 0:
            raise MergeError(f"tenant '{t.tenant}' has id 0, which the merge reserves for 'no tenant'")
    order = classification_order(tenants)
    headers, parser, deparse = union_parser([t.program for t in tenants])
    names = {t.tenant: namespace(t.tenant, t.program) for t in tenants}
    parts = {k: [] for k in ("metadata", "actions", "tables", "registers", "counters", "meters")}
    parts["metadata"].append(dpir.MetaField(TENANT_FIELD, TENANT_WIDTH))
    bodies: dict[str, tuple[Stmt, ...]] = {}
    for t in tenants:
        renamed = Renamer(names[t.tenant]).program_parts(t.program)
        for k in parts:
            parts[k].extend(renamed[k])
        bodies[t.tenant] = renamed["control"]
    tenant = f"meta.{TENANT_FIELD}"
    classify = classification_chain(order, {t.tenant: t.tenant_id for t in tenants})
    dispatch: tuple[Stmt, ...] = (If(_is(tenant, 0), (dpir.ToHost(),)),) if unclaimed == "pass" else ()
    for t in reversed(tenants):
        dispatch = (If(_is(tenant, t.tenant_id), bodies[t.tenant], dispatch),)
    program = Program(
        name=name,
        headers=headers,
        parser=parser,
        deparse=deparse,
        metadata=tuple(parts["metadata"]),
        actions=tuple(parts["actions"]),
        tables=tuple(parts["tables"]),
        registers=tuple(parts["registers"]),
        counters=tuple(parts["counters"]),
        meters=tuple(parts["meters"]),
        control=classify + dispatch,
        doc="merged tenants: " + ", ".join(f"{t.tenant} ({t.tenant_id})" for t in tenants),
    )
    validate(program)
    return MergedProgram(program, tuple(tenants), names, order, plan, unclaimed)


def _is(path: str, value: int) -> Expr:
    return dpir.BinOp("==", Ref(path), Const(value, TENANT_WIDTH))


# ---------------------------------------------------------------- from service graphs


def forward_ports(p: Program) -> frozenset[int]:
    """Fixed egress ports ``p`` may choose: constant ``Forward`` ports and the port
    arguments of table entries and defaults (``Forward(param.x)``)."""
    ports: set[int] = set()
    by_param: dict[str, list[int]] = {}

    def walk(body: Sequence[Stmt], action: Action | None) -> None:
        for s in body:
            if isinstance(s, Forward):
                if isinstance(s.port, Const):
                    ports.add(s.port.value)
                elif isinstance(s.port, Ref) and s.port.path.startswith("param.") and action is not None:
                    names = [prm.name for prm in action.params]
                    by_param.setdefault(action.name, []).append(names.index(s.port.path[len("param."):]))
            elif isinstance(s, If):
                walk(s.then, action)
                walk(s.orelse, action)
            elif isinstance(s, Apply):
                walk(s.on_hit, action)
                walk(s.on_miss, action)

    walk(p.control, None)
    for a in p.actions:
        walk(a.body, a)
    for t in p.tables:
        for call in [t.default, *(e.action for e in t.entries)]:
            for i in by_param.get(call.action, []):
                if i < len(call.args):
                    ports.add(call.args[i])
    return frozenset(ports)


def tenant_programs(specs: Sequence[ServiceSpec]) -> dict[str, list[TenantProgram]]:
    """Each tenant's graphs compiled alone, per device program name (what
    :func:`mantra6g.synth.compose.compile_specs` merges)."""
    from mantra6g.synth.compose import compile_specs

    return {dp.name: list(dp.tenants) for dp in compile_specs(specs)}


def merge_site(specs: Sequence[ServiceSpec], unclaimed: str = "drop") -> list[MergedProgram]:
    """Every device program of the site, as ``mantra compile`` emits it, with its tenants."""
    from mantra6g.synth.compose import compile_specs

    return [dp.merged for dp in compile_specs(specs, unclaimed)]


__all__ = [
    "Claim",
    "MergeError",
    "MergedProgram",
    "Renamer",
    "TENANT_FIELD",
    "TenantProgram",
    "classification_chain",
    "classification_order",
    "forward_ports",
    "merge",
    "merge_orders",
    "merge_site",
    "namespace",
    "tenant_programs",
    "union_parser",
]

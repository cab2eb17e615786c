"""Hand-mutated merges: the composition bugs of the catalogue that a merge (not a
service graph) introduces. Each takes a correct :class:`MergedProgram` and returns a
buggy one; the tenants' own programs, classifiers and name maps stay correct, so the
verifier judges the buggy program against what the merge should have done."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mantra6g.synth.dpir import (
    ActionCall,
    Apply,
    Assign,
    BinOp,
    Const,
    Expr,
    If,
    IsValid,
    Program,
    Ref,
    RegisterWrite,
    Stmt,
)
from mantra6g.synth.merge import TENANT_FIELD, MergedProgram, Renamer

StmtMap = Callable[[Stmt], Stmt]


def _map(body: tuple[Stmt, ...], fn: StmtMap) -> tuple[Stmt, ...]:
    out = []
    for s in body:
        if isinstance(s, If):
            s = If(s.cond, _map(s.then, fn), _map(s.orelse, fn))
        elif isinstance(s, Apply):
            s = Apply(s.table, _map(s.on_hit, fn), _map(s.on_miss, fn))
        out.append(fn(s))
    return tuple(out)


def map_program(p: Program, fn: StmtMap) -> Program:
    return dataclasses.replace(
        p,
        control=_map(p.control, fn),
        actions=tuple(dataclasses.replace(a, body=_map(a.body, fn)) for a in p.actions),
    )


def _with(m: MergedProgram, p: Program) -> MergedProgram:
    return dataclasses.replace(m, program=p)


def write_foreign_register(m: MergedProgram, writer: str, mine_local: str, victim: str, theirs_local: str) -> MergedProgram:
    """``writer``'s writes to its register ``mine_local`` go to ``victim``'s ``theirs_local``
    (e.g. a merge that resolved a name clash to the wrong tenant)."""
    mine, theirs = m.names[writer]["register"][mine_local], m.names[victim]["register"][theirs_local]
    return _with(m, map_program(m.program, lambda s: RegisterWrite(theirs, s.index, s.value)
                                if isinstance(s, RegisterWrite) and s.register == mine else s))


def clobber_tenant_meta(m: MergedProgram, tenant: str) -> MergedProgram:
    """``tenant``'s own ``meta.tenant`` is not namespaced: it is the merge's field."""
    renamer = Renamer({"meta": {f"{tenant}__tenant": TENANT_FIELD}, "action": {}, "table": {}, "register": {},
                       "counter": {}, "meter": {}})
    p = m.program
    actions = tuple(dataclasses.replace(a, body=renamer.body(a.body)) if a.name.startswith(f"{tenant}__") else a
                    for a in p.actions)
    chain = p.control[0]

    def fix(node: Stmt) -> Stmt:
        assert isinstance(node, If)
        body = node.then
        if body[0] == Assign(f"meta.{TENANT_FIELD}", Const(m.tenant(tenant).tenant_id, 16)):
            body = body[:1] + renamer.body(body[1:])
        return If(node.cond, body, tuple(fix(x) for x in node.orelse))

    return _with(m, dataclasses.replace(p, actions=actions, control=(fix(chain),)))


def _without_validity(e: Expr) -> Expr:
    if isinstance(e, BinOp) and e.op == "&&":
        left, right = _without_validity(e.left), _without_validity(e.right)
        if isinstance(left, IsValid):
            return right
        if isinstance(right, IsValid):
            return left
        return BinOp("&&", left, right)
    return e


def strip_decap_checks(m: MergedProgram) -> MergedProgram:
    """The tunnel decap's ``isValid()`` tests are dropped (the VNI/address tests stay)."""
    def fn(s: Stmt) -> Stmt:
        if isinstance(s, If) and "vxlan.vni" in repr(s.cond):
            return If(_without_validity(s.cond), s.then, s.orelse)
        return s
    return _with(m, map_program(m.program, fn))


def default_route(m: MergedProgram, tenant: str, table: str, port: int) -> MergedProgram:
    """``tenant``'s FIB misses are routed out of ``port`` instead of dropped."""
    name = m.names[tenant]["table"][table]
    route = m.names[tenant]["action"][table.replace("_fib", "_route")]
    tables = tuple(dataclasses.replace(t, default=ActionCall(route, (0x020000000001, port))) if t.name == name else t
                   for t in m.program.tables)
    return _with(m, dataclasses.replace(m.program, tables=tables))


def drop_ttl_checksum(m: MergedProgram, tenant: str, action: str) -> MergedProgram:
    """``tenant``'s route action decrements the TTL but no longer updates the IPv4 checksum."""
    name = m.names[tenant]["action"][action]
    actions = tuple(
        dataclasses.replace(a, body=tuple(s for s in a.body if not (isinstance(s, Assign) and s.target == "ipv4.checksum")))
        if a.name == name else a
        for a in m.program.actions
    )
    return _with(m, dataclasses.replace(m.program, actions=actions))


def sequential(m: MergedProgram) -> MergedProgram:
    """Tenants run one after another under ``if meta.tenant == id`` (not one if/else
    chain): the stage model can no longer overlap them."""
    classify, node = m.program.control
    bodies = []
    for t in m.tenants:
        bodies.append(If(BinOp("==", Ref(f"meta.{TENANT_FIELD}"), Const(t.tenant_id, 16)), node.then))
        node = node.orelse[0] if node.orelse else None
    return _with(m, dataclasses.replace(m.program, control=(classify, *bodies)))

"""The properties of a tenant merge, each checkable alone.

* ``disjointness`` (per pair of tenants): no packet is claimed by two classifiers of
  equal priority (an overlap between different priorities is resolved explicitly and
  reported as a note).
* ``isolation`` (per tenant, for its traffic): the packet never reads or writes another
  tenant's tables, actions, registers, counters, meters or metadata, for *any* entries
  the tenants install; it never leaves through a port another tenant owns; and the
  packet it emits is never claimed by another tenant's classifier when the input was
  not (a rewrite such as DNAT or encapsulation leaking it into another tenant's
  traffic) — these two for the installed entries.
* ``equivalence`` (per tenant): on the tenant's traffic the merged program and the
  tenant's program alone, from one initial state and with the installed entries, agree
  on the verdict, egress port, every emitted header (validity and fields), which
  checksum fields included), and the final registers, counters and meters.
* ``validity`` (per tenant): no field of a header that may be invalid is read or
  written (p4v-style), for any entries.
* ``resources`` (per device): the target's budgets (see :mod:`mantra6g.verify.resources`).

A tenant's traffic is defined from the tenants' classifiers, not from the merged
program: the packets its classifier claims and no classifier earlier in the
classification order (higher priority) does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import z3

from mantra6g.synth.dpir import Program
from mantra6g.synth.ir import UPLINK
from mantra6g.synth.merge import MergedProgram, TenantProgram
from mantra6g.verify.counterexample import Counterexample, from_model
from mantra6g.verify.encode import Encoder, Env, Inputs, Run, _refs, condition, emitted, parse_preserving, reading_only

PROPERTIES = ("disjointness", "parsing", "isolation", "equivalence", "validity", "unclaimed", "resources")
KIND_OF_ACCESS = {"meta": "meta", "table": "table", "action": "action", "register": "register", "counter": "counter",
                  "meter": "meter"}


@dataclass(frozen=True)
class PropertyResult:
    """One property on one scope (a tenant, a pair ``a|b``, or the device)."""

    property: str
    scope: str
    status: str  # "proven" | "violated"
    seconds: float
    counterexample: Counterexample | None = None
    note: str = ""
    cached: bool = False

    @property
    def proven(self) -> bool:
        return self.status == "proven"

    def to_json(self) -> dict:
        return {
            "property": self.property,
            "scope": self.scope,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "cached": self.cached,
            "note": self.note,
            "counterexample": self.counterexample.to_json() if self.counterexample else None,
        }


# ---------------------------------------------------------------- shared pieces


def tenant_slice(m: MergedProgram, t: TenantProgram) -> Program | None:
    """The code a packet of ``t`` runs, when ``m`` has the shape :func:`merge` builds (a
    classification chain writing the tenant id, then an if/else chain dispatching on it);
    the program itself for a device that runs ``t`` alone; None for any other shape.

    The chain's semantics then give: a packet of ``t``'s traffic gets ``t``'s id from
    the classification and runs exactly ``t``'s branch."""
    from mantra6g.synth.dpir import Assign, BinOp, Const, If, Ref
    from mantra6g.synth.merge import classification_chain

    if m.alone:
        return m.program
    if len(m.program.control) != 2:
        return None
    # The classification must be the device's claims in order, as merge() writes it:
    # else the semantics below are not the program's (the solver then runs it whole).
    if m.program.control[:1] != classification_chain(m.order, {u.tenant: u.tenant_id for u in m.tenants}):
        return None
    stmts = (m.program.control[1],)
    for u in m.tenants:
        if len(stmts) != 1 or not isinstance(stmts[0], If):
            return None
        node = stmts[0]
        if node.cond != BinOp("==", Ref(m.tenant_field), Const(u.tenant_id, 16)):
            return None
        if u.tenant == t.tenant:
            return dataclasses.replace(m.program, control=(Assign(m.tenant_field, Const(u.tenant_id, 16)), *node.then))
        stmts = node.orelse
    return None


@dataclass
class TenantRun:
    inputs: Inputs
    run: Run
    traffic: z3.BoolRef  # the packet is the tenant's (and parsed)
    program: Program


def claimed(m: MergedProgram, env, inputs: Inputs) -> list[tuple[str, z3.BoolRef]]:
    """(tenant, "this claim wins") for each claim in the device's classification order:
    its classifier matches and no earlier claim's does."""
    out, earlier = [], []
    for claim, owner in m.order:
        c = condition(m.program, claim.classifier, env, inputs)
        out.append((owner, z3.And(c, *[z3.Not(e) for e in earlier])))
        earlier.append(c)
    return out


def own_parses(m: MergedProgram, inputs: Inputs) -> dict[str, tuple[z3.BoolRef, Env]]:
    """Each tenant's own parse of the packet; tenants with the same parser share one
    encoding (every program compose makes has the standard parser)."""
    by_parser: dict[tuple, tuple[z3.BoolRef, Env]] = {}
    out = {}
    for u in m.tenants:
        key = (u.program.parser, u.program.headers)
        if key not in by_parser:
            by_parser[key] = Encoder(u.program, inputs).parse()
        out[u.tenant] = by_parser[key]
    return out


def traffic_of(m: MergedProgram, t: TenantProgram, inputs: Inputs) -> z3.BoolRef:
    """The packets of ``t``, from the tenants' own programs (not the merge): ``t``'s own
    parser accepts the packet, and the first claim that matches it — each claim read
    by its tenant's own parser — is one of ``t``'s."""
    parses = own_parses(m, inputs)
    wins, earlier = [], []
    for claim, owner in m.order:
        parsed, env = parses[owner]
        c = z3.And(parsed, condition(by_name(m, owner).program, claim.classifier, env, inputs))
        if owner == t.tenant:
            wins.append(z3.And(c, *[z3.Not(e) for e in earlier]))
        earlier.append(c)
    return z3.And(parses[t.tenant][0], z3.Or(wins) if wins else z3.BoolVal(False))


def by_name(m: MergedProgram, tenant: str) -> TenantProgram:
    return next(u for u in m.tenants if u.tenant == tenant)


def encode_tenant(m: MergedProgram, t: TenantProgram, entries: str, monolithic: bool = False,
                  inputs: Inputs | None = None, keys: dict[str, str] | None = None) -> TenantRun:
    """The merged program on ``t``'s traffic: its slice when the merge has the
    standard shape, else the whole program with branches pruned by the solver
    (``monolithic``: the whole program, nothing pruned)."""
    inputs = inputs or Inputs.for_programs([m.program, t.program])
    traffic = traffic_of(m, t, inputs)
    program = None if monolithic else tenant_slice(m, t)
    if program is None:
        program = m.program
        enc = Encoder(program, inputs, entries, keys, tag="merged", prune=None if monolithic else traffic)
    else:
        enc = Encoder(program, inputs, entries, keys, tag="merged")
    return TenantRun(inputs, enc.run(), traffic, program)


def _solve(*constraints, short: z3.BitVecRef | None = None) -> z3.ModelRef | None:
    """A model of ``constraints``, or None; with ``short`` (a packet length), one with a
    short packet if there is one (counterexamples are easier to read)."""
    s = z3.Solver()
    s.add(*constraints)
    if s.check() != z3.sat:
        return None
    if short is not None:
        s.push()
        s.add(z3.ULE(short, 128))
        if s.check() == z3.sat:
            return s.model()
        s.pop()
        s.check()
    return s.model()


def _first_true(model: z3.ModelRef, labelled: list[tuple[object, z3.BoolRef]]):
    for label, cond in labelled:
        if z3.is_true(model.eval(cond, model_completion=True)):
            return label
    return None


def _timed(fn: Callable[[], tuple[str, Counterexample | None, str]], prop: str, scope: str) -> PropertyResult:
    start = time.perf_counter()
    status, cex, note = fn()
    return PropertyResult(prop, scope, status, time.perf_counter() - start, cex, note)


# ---------------------------------------------------------------- disjointness


def check_disjointness(m: MergedProgram) -> PropertyResult:
    """No packet is claimed by two tenants' classifiers of equal priority (claims of
    different priorities are ordered, the higher first). One query per priority level
    over every tenant at once — "some two of them claim the packet" — not one per pair."""

    def go():
        inputs = Inputs.for_programs([m.program])
        parses = own_parses(m, inputs)
        by_level: dict[int, dict[str, list[z3.BoolRef]]] = {}
        for c, owner in m.order:
            parsed, env = parses[owner]
            match = z3.And(parsed, condition(by_name(m, owner).program, c.classifier, env, inputs))
            by_level.setdefault(c.priority, {}).setdefault(owner, []).append(match)
        for level, tenants in sorted(by_level.items(), reverse=True):
            if len(tenants) < 2:
                continue
            names = list(tenants)
            claims = [z3.Or(tenants[n]) for n in names]
            model = _solve(inputs.constraints(), z3.AtLeast(*claims, 2), short=inputs.length)
            if model is None:
                continue
            a, b = [n for n, c in zip(names, claims) if z3.is_true(model.eval(c, model_completion=True))][:2]
            parsed, env = parses[a]
            cex = from_model(model, inputs, Run(parsed, env, env), m.program, "disjointness", a,
                             f"the packet matches the classifiers of {a} and {b}, both of priority {level}; give one "
                             "a higher classifier priority or make the matches disjoint", other=b)
            return "violated", cex, ""
        return "proven", None, "claims of different priorities are ordered: the higher takes an overlap"

    return _timed(go, "disjointness", m.program.name)


# ---------------------------------------------------------------- isolation


def allowed_ports(m: MergedProgram, t: TenantProgram) -> frozenset[int] | None:
    """The ports the operator's plan lets ``t``'s packets enter and leave by: its own and
    the uplinks (None: the device has no plan, so ports are not checked)."""
    if m.plan is None:
        return None
    return m.plan.owned_by(t.tenant) | m.plan.owned_by(UPLINK)


def port_owner(m: MergedProgram, port: int) -> str:
    owners = [o for p, o in (m.plan.ports if m.plan else ()) if p == port]
    return owners[0] if owners else "nobody (it is not in the device's port plan)"


ISOLATION_PARTS = ("resources", "ports")


def check_isolation(m: MergedProgram, t: TenantProgram, parts: tuple[str, ...] = ISOLATION_PARTS,
                    leak_into: list[TenantProgram] | None = None, monolithic: bool = False) -> PropertyResult:
    """Another tenant's resources (for any entries); ports and leaks into ``leak_into``'s
    traffic (default: every other tenant), for the installed entries. ``parts`` and
    ``leak_into`` let an incremental check run only what a new tenant can affect."""
    others = [u for u in m.tenants if u.tenant != t.tenant] if leak_into is None else leak_into

    def go():
        # 1. Another tenant's tables, actions, registers, counters, meters, metadata.
        tr = encode_tenant(m, t, "any", monolithic) if "resources" in parts else None
        labelled = []
        grouped: dict[tuple[str, str, bool], list] = {}
        for acc in tr.run.accesses if tr else ():
            kind = KIND_OF_ACCESS.get(acc.kind)
            if kind is None:
                continue
            name = acc.name[len("meta."):] if kind == "meta" else acc.name
            if kind == "meta" and not acc.name.startswith("meta."):
                continue
            owners = m.owners(kind, name)
            if owners and owners != {t.tenant}:
                grouped.setdefault((acc.kind, acc.name, acc.write), []).append(acc)
        for (kind, name, write), accs in grouped.items():
            labelled.append(((kind, name, write, accs[0].where), z3.Or([a.cond for a in accs])))
        if labelled:
            model = _solve(tr.inputs.constraints(), tr.traffic, *tr.run.extra, z3.Or([c for _, c in labelled]),
                           short=tr.inputs.length)
            if model is not None:
                kind, name, write, where = _first_true(model, labelled)
                short = name[len("meta."):] if name.startswith("meta.") else name
                owner = ", ".join(sorted(m.owners(KIND_OF_ACCESS[kind], short)))
                cex = from_model(model, tr.inputs, tr.run, tr.program, "isolation", t.tenant,
                                 f"a packet of {t.tenant} {'writes' if write else 'reads'} {kind} '{name}' of {owner} "
                                 f"(in {where})",
                                 table=where.removeprefix("table ") if where.startswith("table ") else None,
                                 field=name if kind == "meta" else None, other=owner)
                return "violated", cex, ""
        # 2. Ports and leaks, with the installed entries.
        allowed = allowed_ports(m, t)
        if ("ports" not in parts or allowed is None) and not others:
            return "proven", None, "" if allowed is not None else NO_PLAN
        tr = encode_tenant(m, t, "installed", monolithic)
        final, initial = tr.run.final, tr.run.initial
        base = [tr.inputs.constraints(), tr.traffic, *tr.run.extra]
        if "ports" in parts and allowed is not None:
            # The operator's plan: the tenant's packets enter on its own ports or the uplinks.
            inside = z3.Or([tr.inputs.ingress == p for p in allowed]) if allowed else z3.BoolVal(False)
            leaves = z3.And(tr.run.forwarded, z3.And([tr.run.egress != p for p in allowed]))
            model = _solve(*base, inside, leaves, short=tr.inputs.length)
            if model is not None:
                port = model.eval(tr.run.egress).as_long()
                owner = port_owner(m, port)
                cex = from_model(model, tr.inputs, tr.run, tr.program, "isolation", t.tenant,
                                 f"a packet of {t.tenant} leaves through port {port}, which {owner} owns"
                                 if owner in {u.tenant for u in m.tenants} else
                                 f"a packet of {t.tenant} leaves through port {port}, which belongs to {owner}",
                                 field="std.egress_port", other=owner if owner in {u.tenant for u in m.tenants} else None)
                return "violated", cex, ""
        if others:
            # The bytes that leave, parsed again by the device's parser and classified
            # again: a rewrite (DNAT, encap, decap) must not hand them to another tenant.
            mine = [(c, w) for (c, owner), (_, w) in zip(m.order, claimed(m, initial, tr.inputs)) if owner == t.tenant]
            flows = m.plan.flows if m.plan else ()
            into = {u.tenant for u in others}

            def query(again: Inputs, reparsed: z3.BoolRef, out_env: Env):
                wins_out = list(zip(m.order, claimed(m, out_env, again)))
                leaks: list[tuple[str, z3.BoolRef]] = []
                for (claim, owner), (_, win) in wins_out:
                    if owner not in into:
                        continue
                    # An intended flow is allowed exactly as declared: from that slice to that one.
                    intended = [w for c, w in mine if any(f.allows((t.tenant, c.slice), (owner, claim.slice)) for f in flows)]
                    leaks.append((owner, z3.And(win, z3.Not(z3.Or(intended))) if intended else win))
                # One query for every other tenant at once: does any of them take what leaves?
                model = _solve(*base, tr.run.forwarded, reparsed, z3.Or([w for _, w in leaks]),
                               short=tr.inputs.length) if leaks else None
                return model, leaks

            if parse_preserving(tr.program):  # the bytes parse again into the final headers
                model, leaks = query(tr.inputs, z3.BoolVal(True), final)
            else:
                out, out_len = emitted(tr.program, tr.run, tr.inputs)
                again = tr.inputs.reading(out, out_len)
                # Only what the claims read needs parsing: the pruned parser accepts a
                # superset of the packets, so no leak on it is no leak at all ...
                read = {e.path.partition(".")[0] for c, _ in m.order for e in _refs(c.classifier)}
                read |= {e.header for c, _ in m.order for e in _valids(c.classifier)}
                model, leaks = query(again, *Encoder(reading_only(m.program, read), again).parse())
                if model is not None:  # ... but a leak it finds is confirmed on the whole parser
                    model, leaks = query(again, *Encoder(m.program, again).parse())
            if model is not None:
                u = _first_true(model, leaks)
                cex = from_model(model, tr.inputs, tr.run, tr.program, "isolation", t.tenant,
                                 f"a packet of {t.tenant} leaves as traffic that {u} claims (parsed and "
                                 f"classified again: e.g. a DNAT, encap or decap into {u}'s traffic); "
                                 f"declare the flow if it is intended", other=u)
                return "violated", cex, ""
        if allowed is None:
            return "proven", None, NO_PLAN
        return "proven", None, f"leaves only by its ports and the uplinks: {sorted(allowed) or 'none'}"

    return _timed(go, "isolation", t.tenant)


def _valids(e):
    from mantra6g.synth.dpir import IsValid, operands

    if isinstance(e, IsValid):
        yield e
    for x in operands(e):
        yield from _valids(x)


NO_PLAN = "no port plan for this device: egress ports not checked (declare one, docs/verification.md)"


# ---------------------------------------------------------------- equivalence


def check_equivalence(m: MergedProgram, t: TenantProgram, monolithic: bool = False) -> PropertyResult:
    """Gauntlet-style translation validation of ``t``'s part of the merge."""

    def go():
        names = m.names[t.tenant]
        canon = {kind: {orig: f"{t.tenant}/{orig}" for orig in names[kind]} for kind in ("register", "meter")}
        alone_keys = {**canon["register"], **canon["meter"]}
        merged_keys = {names[k][orig]: key for k in ("register", "meter") for orig, key in canon[k].items()}
        inputs = Inputs.for_programs([m.program, t.program])
        tr = encode_tenant(m, t, "installed", monolithic, inputs, merged_keys)
        alone = Encoder(t.program, inputs, "installed", alone_keys, tag="alone").run()
        mine = [h for h in m.program.deparse if h in t.program.deparse]
        if tuple(mine) != t.program.deparse:
            return "violated", None, f"the merged deparse order {mine} differs from {t.tenant}'s {list(t.program.deparse)}"
        mf, af = tr.run.final, alone.final
        fwd_m, fwd_a = tr.run.forwarded, alone.forwarded
        diffs: list[tuple[tuple[str, str | None], z3.BoolRef]] = [
            (("verdict (forwarded or dropped)", None), fwd_m != fwd_a),
            (("verdict (handed to the host or not)", None),
             z3.And(z3.Not(fwd_a), z3.Not(fwd_m), tr.run.final.to_host != alone.final.to_host)),
            (("egress port", "std.egress_port"), z3.And(fwd_a, tr.run.egress != alone.egress)),
        ]
        both = z3.And(fwd_m, fwd_a)
        for h in t.program.deparse:
            diffs.append(((f"validity of {h}", None), z3.And(both, mf.valid[h] != af.valid[h])))
            for f in t.program.header(h).header_type.fields:
                path = f"{h}.{f.name}"
                diffs.append(((f"field {path}", path), z3.And(both, af.valid[h], mf.fields[path] != af.fields[path])))
        for h in m.program.deparse:
            if h not in t.program.deparse:
                diffs.append(((f"extra header {h}", None), z3.And(both, mf.valid[h])))
        for kind, attr in (("register", "registers"), ("counter", "counters"), ("meter", "meters")):
            for orig, merged in names[kind].items():
                diffs.append(((f"{kind} {orig}", None), z3.Not(getattr(mf, attr)[merged] == getattr(af, attr)[orig])))
        model = _solve(inputs.constraints(), tr.traffic, *tr.run.extra, *alone.extra, z3.Or([d for _, d in diffs]),
                       short=inputs.length)
        if model is None:
            return "proven", None, ""
        what, path = _first_true(model, diffs)
        table = None
        cex = from_model(model, inputs, tr.run, tr.program, "equivalence", t.tenant,
                         f"on this packet of {t.tenant} the merged program and {t.tenant}'s program alone differ in {what}",
                         table=table, field=path)
        return "violated", cex, ""

    return _timed(go, "equivalence", t.tenant)


def alone_counterexample(m: MergedProgram, t: TenantProgram, cex: Counterexample) -> Counterexample:
    """``cex`` with the merged program's names mapped back to ``t``'s own."""
    back = {kind: {v: k for k, v in m.names[t.tenant][kind].items()} for kind in ("register", "meter", "table")}
    return dataclasses.replace(
        cex,
        registers=tuple((back["register"].get(n, n), i, v) for n, i, v in cex.registers),
        red_meters=tuple((back["meter"].get(n, n), i) for n, i in cex.red_meters),
        entries=(),
    )


# ---------------------------------------------------------------- parsing


def check_parsing(m: MergedProgram, t: TenantProgram) -> PropertyResult:
    """The merged parser accepts every packet of ``t``'s traffic (which ``t``'s own parser
    defines) and reads it exactly as ``t``'s own parser does: header by header, validity
    and fields."""

    def go():
        if m.alone:
            return "proven", None, "the device runs the tenant's program itself"
        if set(m.program.parser) == set(t.program.parser) and set(t.program.headers) <= set(m.program.headers):
            return "proven", None, "the merged parser is the tenant's own"
        inputs = Inputs.for_programs([m.program, t.program])
        traffic = traffic_of(m, t, inputs)
        pm, em = Encoder(m.program, inputs).parse()
        pt, et = Encoder(t.program, inputs).parse()
        diffs = [(("accepts it", None), z3.Not(pm))]
        for h in t.program.headers:
            diffs.append(((f"validity of {h.name}", None), em.valid[h.name] != et.valid[h.name]))
            for f in h.header_type.fields:
                path = f"{h.name}.{f.name}"
                diffs.append(((f"field {path}", path), z3.And(et.valid[h.name], em.fields[path] != et.fields[path])))
        model = _solve(inputs.constraints(), traffic, z3.Or([d for _, d in diffs]), short=inputs.length)
        if model is None:
            return "proven", None, ""
        what, path = _first_true(model, diffs)
        cex = from_model(model, inputs, Run(pt, et, et), t.program, "parsing", t.tenant,
                         f"the merged parser differs from {t.tenant}'s own on this packet of its traffic: {what}",
                         field=path)
        return "violated", cex, ""

    return _timed(go, "parsing", t.tenant)


# ---------------------------------------------------------------- unclaimed traffic


def check_unclaimed(m: MergedProgram, unclaimed: str = "drop") -> PropertyResult:
    """A packet no tenant claims is dropped (``unclaimed="pass"``: handed to the host
    unchanged), whatever the tenants' tables hold."""

    def go():
        inputs = Inputs.for_programs([m.program])
        parses = own_parses(m, inputs)
        claims = [z3.And(parses[o][0], condition(by_name(m, o).program, c.classifier, parses[o][1], inputs))
                  for c, o in m.order]
        run = Encoder(m.program, inputs, "any", tag="merged").run()
        nobody = z3.And(run.parsed, *[z3.Not(c) for c in claims])
        if unclaimed == "pass":
            wrong = z3.Or(run.forwarded, z3.Not(run.final.to_host), run.final.fields["std.drop"] != 0)
            what = "is not handed to the host"
        else:
            wrong = z3.Or(run.forwarded, run.final.to_host)
            what = "is forwarded"
        model = _solve(inputs.constraints(), *run.extra, nobody, wrong, short=inputs.length)
        if model is None:
            return "proven", None, f"packets no tenant claims are {'handed to the host' if unclaimed == 'pass' else 'dropped'}"
        cex = from_model(model, inputs, run, m.program, "unclaimed", "(none)",
                         f"a packet no tenant claims {what} (the device's plan says {unclaimed})")
        return "violated", cex, ""

    return _timed(go, "unclaimed", m.program.name)


# ---------------------------------------------------------------- header validity


def check_validity(m: MergedProgram, t: TenantProgram, monolithic: bool = False) -> PropertyResult:
    """No read or write of a field of a header that may be invalid (any entries)."""

    def go():
        tr = encode_tenant(m, t, "any", monolithic)
        grouped: dict[tuple[str, bool, str], list] = {}
        for acc in tr.run.accesses:
            if acc.kind == "field" and acc.valid is not None:
                grouped.setdefault((acc.name, acc.write, acc.where), []).append(z3.And(acc.cond, z3.Not(acc.valid)))
        labelled = [(k, z3.Or(v)) for k, v in grouped.items()]
        if not labelled:
            return "proven", None, ""
        model = _solve(tr.inputs.constraints(), tr.traffic, *tr.run.extra, z3.Or([c for _, c in labelled]),
                           short=tr.inputs.length)
        if model is None:
            return "proven", None, ""
        name, write, where = _first_true(model, labelled)
        header = name.partition(".")[0]
        cex = from_model(model, tr.inputs, tr.run, tr.program, "validity", t.tenant,
                         f"{'writes' if write else 'reads'} {name} while {header} is invalid (in {where}); "
                         f"guard it with {header}.isValid()",
                         table=where.removeprefix("table ") if where.startswith("table ") else None, field=name)
        return "violated", cex, ""

    return _timed(go, "validity", t.tenant)


__all__ = [
    "PROPERTIES",
    "PropertyResult",
    "alone_counterexample",
    "check_disjointness",
    "check_equivalence",
    "check_isolation",
    "check_parsing",
    "check_unclaimed",
    "check_validity",
    "allowed_ports",
    "encode_tenant",
    "tenant_slice",
]

"""Semantic checks: AST to ServiceGraph IR.

Files checked together form one site: tenants are resolved across all of them, and
tenant names, tenant ids and graph names must be unique in it. Every independent
problem is reported (a problem only suppresses the checks that depend on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from mantra6g.source import Span
from mantra6g.synth import ast
from mantra6g.synth.expr import Expr, check_expr
from mantra6g.synth.dpir import MAX_PORT
from mantra6g.synth.ir import (
    UPLINK,
    DeviceClass,
    DevicePlan,
    Edge,
    Flow,
    NfInstance,
    Placement,
    ServiceGraph,
    ServiceSpec,
    Sla,
    Tenant,
    TenantSlice,
)
from mantra6g.synth.nf import KINDS, tunnel_effect
from mantra6g.synth.nf import base as nfbase
from mantra6g.synth.values import (
    DIMENSIONS,
    INVALID,
    Reporter,
    did_you_mean,
    format_quantity,
    quantity,
    split_quantity,
    to_int,
)

TENANT_IDS = (1, 65535)  # 0 means "no tenant" in the data plane's metadata
MAX_SLICES = 255  # slice ids 1..255: the data plane carries them in 8 bits (meta.slice, the shim)
# Branches from one NF lower to an if/else-if chain, one level deeper per branch, which
# every pass over DP-IR (and clang, at 256 brackets) walks recursively.
MAX_BRANCHES = 64
PRIORITIES = (0, 7)


@dataclass(frozen=True)
class _SlaTerm:
    """A term a slice or tenant may state: its dimension and the comparator it takes."""

    dimension: str | None  # None: a plain integer (priority)
    op: str | None  # "<=" for upper bounds, ">=" for guarantees, None for plain values
    meaning: str


SLICE_TERMS = {
    "latency": _SlaTerm("time", "<=", "an upper bound on one-way delay"),
    "jitter": _SlaTerm("time", "<=", "an upper bound on delay variation"),
    "bandwidth": _SlaTerm("rate", ">=", "a guaranteed rate"),
    "reliability": _SlaTerm("percent", ">=", "a lower bound on delivery within the latency bound"),
    "priority": _SlaTerm(None, None, f"a scheduling priority {PRIORITIES[0]}..{PRIORITIES[1]}"),
}
TENANT_TERMS = {"bandwidth": _SlaTerm("rate", "<=", "the tenant's contracted total rate")}


def check_site(files: Sequence[ast.SpecFile]) -> tuple[list[ServiceSpec], list]:
    """Check files as one site. Returns the IR of each file and the diagnostics found."""
    report = Reporter()
    tenants: dict[str, Tenant] = {}
    tenant_ids: dict[int, Tenant] = {}
    per_file_tenants: list[list[Tenant]] = []
    for f in files:
        mine = []
        for decl in f.tenants:
            t = _tenant(decl, report)
            if t is None:
                # Keep the name known so that its graphs are not reported as orphans.
                tenants.setdefault(decl.name.name, None)  # type: ignore[arg-type]
                continue
            if t.name in tenants:
                first = tenants[t.name]
                report.error(decl.name.span, f"tenant '{t.name}' is declared twice", _first_at(first.span if first else None))
                continue
            if t.id in tenant_ids:
                other = tenant_ids[t.id]
                report.error(
                    decl.id.span,
                    f"tenant id {t.id} is already used by tenant '{other.name}'",
                    "every tenant on a site needs its own id",
                )
                continue
            tenants[t.name] = t
            tenant_ids[t.id] = t
            mine.append(t)
        per_file_tenants.append(mine)

    specs: list[ServiceSpec] = []
    graph_names: dict[str, Span] = {}
    for f, mine in zip(files, per_file_tenants):
        graphs = []
        for decl in f.graphs:
            if decl.name.name in graph_names:
                report.error(decl.name.span, f"graph '{decl.name.name}' is declared twice", _first_at(graph_names[decl.name.name]))
                continue
            graph_names[decl.name.name] = decl.name.span
            g = _graph(decl, tenants, report)
            if g is not None:
                graphs.append(g)
        specs.append(ServiceSpec(f.name, tuple(mine), tuple(graphs)))
    placed = {_program_name(n.placement.device.value if n.placement else "any", n.placement.site if n.placement else None)
              for s in specs for g in s.graphs for n in g.nfs if n.kind != "classifier"}
    slices = {(t.name, sl.name) for t in tenants.values() if t is not None for sl in t.slices}
    plans: dict[str, Span] = {}
    for i, f in enumerate(files):
        devices = tuple(d for d in (_device(decl, tenants, slices, placed, plans, report) for decl in f.devices) if d)
        specs[i] = ServiceSpec(specs[i].source, specs[i].tenants, specs[i].graphs, devices)
    return specs, report.diagnostics


def _program_name(device: str, site: str | None) -> str:
    return device if site is None else f"{device}_{site}"


def _device(decl: ast.DeviceDecl, tenants: dict, slices: set, placed: set[str], plans: dict[str, Span],
            report: Reporter) -> DevicePlan | None:
    """The operator's plan for a device: port owners and intended cross-tenant flows."""
    before = len(report.diagnostics)
    kind = decl.device.name
    if kind not in {d.value for d in DeviceClass}:
        report.error(decl.device.span, f"unknown device class '{kind}'",
                     did_you_mean(kind, [d.value for d in DeviceClass]) or "device classes: pdp, smartnic, host")
        return None
    site = decl.site.name if decl.site else None
    name = _program_name(kind, site)
    if name in plans:
        report.error(decl.span, f"device {kind}{' site ' + site if site else ''} has two plans", _first_at(plans[name]))
        return None
    plans[name] = decl.span
    if name not in placed:
        near = did_you_mean(name, sorted(placed))
        report.error(decl.device.span, f"no graph places NFs on {kind}{' site ' + site if site else ''}",
                     f"{near} (as a device program name)" if near else
                     "a plan describes a device the site's graphs use (check the class and the site)")
    owners: dict[int, tuple[str, Span]] = {}
    flows: list[Flow] = []
    for r in decl.rules:
        if r.keyword.name == "port":
            opts = {o.name.name: o for o in r.options}
            unknown = [o for o in r.options if o.name.name != "owner"]
            if unknown or "owner" not in opts or r.head is None:
                report.error(unknown[0].span if unknown else r.span, "write a port plan as: port N owner TENANT",
                             "N is a port (0..510) or a list [1, 2]; the owner a tenant of the site, or uplink")
                continue
            owner = opts["owner"].value
            who = owner.text if isinstance(owner, ast.Literal) and owner.kind == "name" else None
            if who != UPLINK and who not in tenants:
                report.error(owner.span, f"'{who}' is neither a tenant of the site nor uplink",
                             did_you_mean(str(who), [*tenants, UPLINK]) or "the owner is a tenant, or uplink")
                continue
            items = r.head.items if isinstance(r.head, ast.ListLit) else (r.head,)
            for item in items:
                port = to_int(item, 0, MAX_PORT, report, "port")
                if port is INVALID:
                    continue
                if port in owners:
                    report.error(item.span, f"port {port} is given twice", f"first at line {owners[port][1].line}")
                    continue
                owners[port] = (who, item.span)
        elif r.keyword.name == "flow":
            opts = {o.name.name: o.value for o in r.options}
            if set(opts) != {"from", "to"} or r.head is not None:
                report.error(r.span, "write an intended flow as: flow from TENANT[.SLICE] to TENANT[.SLICE]")
                continue
            ends = [_flow_end(opts[k], tenants, slices, report) for k in ("from", "to")]
            if None in ends:
                continue
            (a, sa), (b, sb) = ends
            if a == b:
                report.error(r.span, "a flow names two tenants: a tenant's own traffic needs no declaration")
                continue
            flows.append(Flow(a, b, sa, sb, r.span))
        else:
            report.error(r.keyword.span, f"a device plan has no '{r.keyword.name}' statement",
                         did_you_mean(r.keyword.name, ["port", "flow"]) or "device statements: port, flow")
    if len(report.diagnostics) > before:
        return None
    return DevicePlan(DeviceClass(kind), site, tuple(sorted((p, o) for p, (o, _) in owners.items())), tuple(flows), decl.span)


def _flow_end(value, tenants: dict, slices: set, report: Reporter) -> tuple[str, str | None] | None:
    if isinstance(value, ast.Literal) and value.kind == "name":
        tenant, sl = value.text, None
    elif isinstance(value, ast.FieldRef):
        tenant, sl = value.header, value.field
    else:
        report.error(value.span, "a flow's end is a tenant or TENANT.SLICE")
        return None
    if tenant not in tenants:
        report.error(value.span, f"no tenant '{tenant}'", did_you_mean(tenant, list(tenants)))
        return None
    if sl is not None and (tenant, sl) not in slices:
        report.error(value.span, f"tenant '{tenant}' has no slice '{sl}'")
        return None
    return tenant, sl


def _first_at(span: Span | None) -> str | None:
    return f"first declared at {span}" if span else None


# ---------------------------------------------------------------- tenants and SLAs


def _tenant(decl: ast.TenantDecl, report: Reporter) -> Tenant | None:
    before = len(report.diagnostics)
    tid = to_int(decl.id, *TENANT_IDS, report, "tenant id")
    cap = _terms(decl.terms, TENANT_TERMS, report, f"tenant '{decl.name.name}'").get("bandwidth", (None,))[0]
    slices: list[TenantSlice] = []
    seen: dict[str, Span] = {}
    for i, s in enumerate(decl.slices, start=1):
        if i == MAX_SLICES + 1:
            report.error(s.name.span, f"tenant '{decl.name.name}' has more than {MAX_SLICES} slices",
                         "slice ids travel in 8 bits on every target: split the tenant in two")
        if s.name.name in seen:
            report.error(s.name.span, f"slice '{s.name.name}' is declared twice in tenant '{decl.name.name}'", _first_at(seen[s.name.name]))
            continue
        seen[s.name.name] = s.name.span
        sla = _slice_sla(s, report)
        if sla is not None:
            slices.append(TenantSlice(s.name.name, i, sla, s.span))
    if not decl.slices:
        report.error(decl.name.span, f"tenant '{decl.name.name}' has no slices", "add one: slice NAME { latency <= 10 ms }")
    if cap is not None:
        for s in slices:
            if s.sla.bandwidth_bps is not None and s.sla.bandwidth_bps > cap:
                report.error(
                    s.span,
                    f"slice '{s.name}' guarantees {format_quantity(s.sla.bandwidth_bps, 'rate')}, more than "
                    f"tenant '{decl.name.name}' may use ({format_quantity(cap, 'rate')})",
                )
        total = sum(s.sla.bandwidth_bps or 0 for s in slices)
        if total > cap and all((s.sla.bandwidth_bps or 0) <= cap for s in slices):
            report.error(
                decl.name.span,
                f"the slices of tenant '{decl.name.name}' guarantee {format_quantity(total, 'rate')} in all, "
                f"more than its {format_quantity(cap, 'rate')}",
                "lower the slices' bandwidth or raise the tenant's",
            )
    if len(report.diagnostics) > before or tid is INVALID:
        return None
    return Tenant(decl.name.name, tid, tuple(slices), cap, decl.span)


def _terms(terms: Sequence[ast.SlaTerm], allowed: dict[str, _SlaTerm], report: Reporter, owner: str) -> dict[str, tuple]:
    """The valid terms as ``{name: (value, term)}``; the term is kept for its span."""
    stated: dict[str, tuple] = {}
    seen: dict[str, ast.SlaTerm] = {}
    for t in terms:
        name = t.name.name
        spec = allowed.get(name)
        if spec is None:
            report.error(
                t.name.span,
                f"unknown term '{name}' for {owner}",
                did_you_mean(name, allowed) or f"{owner.split()[0]} terms: {', '.join(allowed)}",
            )
            continue
        if name in seen:
            report.error(t.span, f"'{name}' is given twice for {owner}", f"first at line {seen[name].span.line}")
            continue
        seen[name] = t
        if spec.op is None and t.op is not None:
            report.error(t.span, f"{name} takes a plain value", f"write: {name} {_value_for(t, spec)}")
            continue
        if spec.op is not None and t.op != spec.op:
            written = f"'{name} {t.op}'" if t.op else f"'{name}' without a comparator"
            report.error(t.span, f"{written}: {name} is {spec.meaning}", f"write: {name} {spec.op} {_value_for(t, spec)}")
            continue
        if spec.dimension is None:
            v = to_int(t.value, *PRIORITIES, report, name)
        else:
            v = quantity(t.value, spec.dimension, report, name)
        if v is not INVALID:
            stated[name] = (v, t)
    return stated


def _example(name: str) -> str:
    return {"latency": "1 ms", "jitter": "100 us", "bandwidth": "100 Mbps", "reliability": "99.999 %", "priority": "7"}[name]


def _value_for(t: ast.SlaTerm, spec: _SlaTerm) -> str:
    """The value for a hint that corrects ``t``'s comparator: the user's own when it is
    of the right kind (``latency >= 10 ms`` -> ``latency <= 10 ms``), else an example."""
    v = t.value
    if isinstance(v, ast.Literal):
        if spec.dimension is None and v.kind == "int":
            return v.text
        if spec.dimension is not None and v.kind == "quantity" and split_quantity(v.text)[1] in DIMENSIONS[spec.dimension].units:
            return v.text
    return _example(t.name.name)


def _slice_sla(decl: ast.SliceDecl, report: Reporter) -> Sla | None:
    before = len(report.diagnostics)
    owner = f"slice '{decl.name.name}'"
    stated = _terms(decl.terms, SLICE_TERMS, report, owner)

    def value(name: str):
        return stated[name][0] if name in stated else None

    def where(name: str) -> Span:
        return stated[name][1].span

    latency, jitter, bw, rel = value("latency"), value("jitter"), value("bandwidth"), value("reliability")
    if latency == 0:
        report.error(where("latency"), f"{owner}: a latency bound of 0 cannot be met", "give the bound you need, e.g. latency <= 1 ms")
    if jitter is not None and latency is not None and jitter >= latency:
        report.error(
            where("jitter"),
            f"{owner}: jitter bound {format_quantity(jitter, 'time')} is not below its latency bound "
            f"{format_quantity(latency, 'time')}",
            "delays that stay within the latency bound cannot vary by more than it",
        )
    if bw == 0:
        report.error(where("bandwidth"), f"{owner}: bandwidth >= 0 guarantees nothing", "remove it, or state the rate the slice needs")
    if rel is not None and not (Decimal(0) < rel <= Decimal(100)):
        report.error(where("reliability"), f"{owner}: reliability {rel}% is not a share of packets", "use a percentage above 0 and at most 100")
    if rel is not None and latency is None:
        report.error(
            where("reliability"),
            f"{owner}: reliability counts packets delivered within the latency bound, but the slice has none",
            "add latency <= ...",
        )
    if len(report.diagnostics) > before:
        return None
    return Sla(latency, jitter, bw, rel, value("priority") or 0)


# ---------------------------------------------------------------- graphs


def _graph(decl: ast.GraphDecl, tenants: dict[str, Tenant | None], report: Reporter) -> ServiceGraph | None:
    before = len(report.diagnostics)
    tenant_slice = _resolve_slice(decl, tenants, report)

    nfs: dict[str, NfInstance] = {}
    decls: dict[str, ast.NfDecl] = {}
    bad: set[str] = set()  # declared, but with errors: known names, no further checks
    for nd in decl.nfs:
        name = nd.name.name
        if name in decls or name in bad:
            first = decls.get(name)
            report.error(nd.name.span, f"NF '{name}' is declared twice in graph '{decl.name.name}'", _first_at(first.span if first else None))
            continue
        kind = KINDS.get(nd.kind.name)
        if kind is None:
            report.error(
                nd.kind.span,
                f"unknown NF kind '{nd.kind.name}'",
                did_you_mean(nd.kind.name, KINDS) or f"kinds: {', '.join(KINDS)}",
            )
            bad.add(name)
            continue
        built = nfbase.build(kind, nd, report)
        if built is None:
            bad.add(name)
            continue
        decls[name] = nd
        nfs[name] = NfInstance(name, kind.name, built[0], built[1], None, nd.span)
    known = set(nfs) | bad

    edges = _edges(decl, known, report)
    placements = _placements(decl, known, report)
    classifiers = [n for n in nfs.values() if n.kind == "classifier"]
    if not classifiers and not any(KINDS.get(d.kind.name) is KINDS["classifier"] for d in decl.nfs):
        report.error(
            decl.name.span,
            f"graph '{decl.name.name}' has no classifier",
            "every graph starts at one: nf cls = classifier() { match ... }",
        )
    elif len(classifiers) > 1:
        report.error(
            classifiers[1].span,
            f"graph '{decl.name.name}' has a second classifier '{classifiers[1].name}'",
            f"a graph has one entry; put all 'match' rules in '{classifiers[0].name}'",
        )
    if len(report.diagnostics) > before or tenant_slice is None or len(classifiers) != 1:
        return None

    entry = classifiers[0].name
    _check_structure(decl, entry, nfs, edges, report)
    if len(report.diagnostics) > before:
        return None
    tenant, slice_ = tenant_slice
    placed = [
        NfInstance(n.name, n.kind, n.params, n.rules, placements.get(n.name), n.span) for n in nfs.values()
    ]
    graph = ServiceGraph(
        decl.name.name, tenant.name, slice_.name, tenant.id, slice_.id, entry, tuple(placed), tuple(edges), decl.span
    )
    for n in graph.nfs:
        hook = KINDS[n.kind].check_in_graph
        if hook is not None:
            hook(n, graph, slice_, report)
    _one_tunnel_level(graph, report)
    return graph if len(report.diagnostics) == before else None


def _one_tunnel_level(g: ServiceGraph, report: Reporter) -> None:
    """No path wraps a packet in a second outer IPv4 header (a tunnel encap, or an IP-in-IP
    load balancer) before a decap removed the first: the header stack holds one level."""
    flagged: set[str] = set()
    seen: set[tuple[str, str | None]] = set()

    def walk(name: str, outer_by: str | None) -> None:
        if (name, outer_by) in seen:
            return
        seen.add((name, outer_by))
        nf = g.nf(name)
        effect = tunnel_effect(nf)
        if effect == "push":
            if outer_by is not None and name not in flagged:
                flagged.add(name)
                report.error(
                    nf.span,
                    f"'{name}' would wrap packets that '{outer_by}' already wrapped in an outer IPv4 header",
                    "Mantra carries one tunnel level: decapsulate in between",
                )
            outer_by = name
        elif effect == "pop":
            outer_by = None
        for e in g.successors(name):
            walk(e.dst, outer_by)

    walk(g.entry, None)


def _resolve_slice(decl: ast.GraphDecl, tenants: dict[str, Tenant | None], report: Reporter):
    name = decl.tenant.name
    if name not in tenants:
        report.error(
            decl.tenant.span,
            f"graph '{decl.name.name}' is for tenant '{name}', which is not declared",
            did_you_mean(name, tenants) or "declare it (tenant NAME id N { ... }) or check it together with the file that does",
        )
        return None
    tenant = tenants[name]
    if tenant is None:
        return None  # the tenant has errors of its own
    slice_ = tenant.slice(decl.slice.name)
    if slice_ is None:
        names = [s.name for s in tenant.slices]
        report.error(
            decl.slice.span,
            f"tenant '{name}' has no slice '{decl.slice.name}'",
            did_you_mean(decl.slice.name, names) or f"its slices: {', '.join(names) or 'none'}",
        )
        return None
    return tenant, slice_


def _edges(decl: ast.GraphDecl, known: set[str], report: Reporter) -> list[Edge]:
    edges: list[Edge] = []
    seen: dict[tuple[str, str], Edge] = {}
    for chain in decl.chains:
        src = chain.start
        _known(src, known, decl, report)
        for hop in chain.hops:
            ok = _known(src, known, decl, report, quiet=True) and _known(hop.target, known, decl, report)
            cond: Expr | None = None
            if hop.condition is not None:
                cond = check_expr(hop.condition, report)
                ok = ok and cond is not None
            if ok:
                key = (src.name, hop.target.name)
                if key in seen:
                    report.error(
                        hop.span,
                        f"edge {src.name} -> {hop.target.name} is written twice",
                        f"first at line {seen[key].span.line}; to send two kinds of traffic, join the conditions with 'or'",
                    )
                else:
                    edge = Edge(src.name, hop.target.name, cond, Span(hop.span.file, src.span.line, src.span.column, hop.span.end_line, hop.span.end_column))
                    seen[key] = edge
                    edges.append(edge)
            src = hop.target
    return edges


def _known(ident: ast.Ident, known: set[str], decl: ast.GraphDecl, report: Reporter, quiet: bool = False) -> bool:
    if ident.name in known:
        return True
    if not quiet:
        report.error(
            ident.span,
            f"no NF named '{ident.name}' in graph '{decl.name.name}'",
            did_you_mean(ident.name, known) or "declare it with: nf NAME = KIND(...)",
        )
    return False


def _placements(decl: ast.GraphDecl, known: set[str], report: Reporter) -> dict[str, Placement]:
    out: dict[str, Placement] = {}
    choices = [d.value for d in DeviceClass]
    for p in decl.placements:
        if p.device.name not in choices:
            report.error(
                p.device.span,
                f"unknown device class '{p.device.name}'",
                did_you_mean(p.device.name, choices) or f"place NFs on: {' | '.join(choices)}",
            )
            continue
        placement = Placement(DeviceClass(p.device.name), p.site.name if p.site else None, p.span)
        for ident in p.nfs:
            if not _known(ident, known, decl, report):
                continue
            if ident.name in out:
                report.error(
                    ident.span,
                    f"NF '{ident.name}' is placed twice",
                    f"first at line {out[ident.name].span.line}; an NF runs on one device",
                )
                continue
            out[ident.name] = placement
    return out


def _check_structure(
    decl: ast.GraphDecl, entry: str, nfs: dict[str, NfInstance], edges: list[Edge], report: Reporter
) -> None:
    into_entry = [e for e in edges if e.dst == entry]
    for e in into_entry:
        report.error(e.span, f"edge into the classifier '{entry}'", "the classifier is the graph's entry; nothing leads into it")
    if into_entry:
        return  # any cycle through the entry is this same mistake
    succ: dict[str, list[Edge]] = {n: [] for n in nfs}
    for e in edges:
        succ[e.src].append(e)
    for name, out in succ.items():
        conditional = [e for e in out if e.condition is not None]
        if len(conditional) > MAX_BRANCHES:
            report.error(
                conditional[MAX_BRANCHES].span,
                f"'{name}' has {len(conditional)} conditional next NFs, more than the {MAX_BRANCHES} an NF may have",
                "branch in two steps (to an NF that branches further), or join conditions for one NF with 'or'",
            )
        defaults = [e for e in out if e.condition is None]
        if len(defaults) > 1:
            report.error(
                defaults[1].span,
                f"'{name}' has more than one unconditional next NF ({', '.join(e.dst for e in defaults)})",
                "give all but one a condition: a -> [udp.dport == 53] b",
            )
    cycle = _find_cycle(nfs, succ)
    if cycle is not None:
        path, closing = cycle
        report.error(closing.span, f"cycle in graph '{decl.name.name}': {' -> '.join(path)}", "a service graph is acyclic; remove one of these edges")
        return
    reachable = {entry}
    todo = [entry]
    while todo:
        for e in succ[todo.pop()]:
            if e.dst not in reachable:
                reachable.add(e.dst)
                todo.append(e.dst)
    for name, n in nfs.items():
        if name not in reachable:
            report.error(
                n.span,
                f"NF '{name}' is not reachable from the classifier '{entry}'",
                f"connect it, e.g. {entry} -> {name}, or remove it",
            )


def _find_cycle(nfs: dict[str, NfInstance], succ: dict[str, list[Edge]]):
    """A cycle as (names along it, the edge that closes it), or None. Iterative DFS:
    generated graphs are thousands of NFs deep."""
    done: set[str] = set()
    for root in nfs:
        if root in done:
            continue
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(succ[root])]
        while stack:
            e = next(stack[-1], None)
            if e is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
                continue
            if e.dst in on_path:
                return path[path.index(e.dst) :] + [e.dst], e
            if e.dst not in done:
                path.append(e.dst)
                on_path.add(e.dst)
                stack.append(iter(succ[e.dst]))
    return None

"""Verify every merged device program of a site, incrementally.

    report = verify_merged(merged, "bmv2", cache=ProofCache(Path("out/verify/proofs.json")))

**Incremental and sound**: a proof is stored under a hash of everything it reads —
the verifier's own code (``VERSION``), the code the tenant's packets run (its slice of
the merge, with every declaration it names), its program alone, the parsers, the
operator's port plan and intended flows, and the claims that define the traffic:

* ``disjointness``, ``unclaimed`` — every claim (classifier, priority, slice, tenant and
  its parser): one query each over all tenants;
* ``parsing t``, ``equivalence t``, ``validity t``, ``isolation t`` (resources, ports) —
  ``t``'s slice and its *traffic*: ``t``'s own claims and, for each, the other tenants'
  claims before it;
* ``isolation t`` leaks into ``u`` — the same, and who takes what leaves: ``u``'s claims
  and the claims before each of them;
* ``resources`` — always re-checked (one pass over the whole program).

A proof holds for every packet of the traffic it was made for, so it also holds for
less: it is reused when the claims before each of the tenant's claims are a superset
of those it was proven with (adding a tenant of higher priority only takes traffic
away), and re-checked when one of them changes or goes (a higher-priority classifier
that narrows gives the tenant more traffic).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mantra6g import serde
from mantra6g.synth.dpir import Program
from mantra6g.synth.merge import MergedProgram, TenantProgram
from mantra6g.verify.properties import (
    PROPERTIES,
    PropertyResult,
    check_disjointness,
    check_equivalence,
    check_isolation,
    check_parsing,
    check_unclaimed,
    check_validity,
    allowed_ports,
    tenant_slice,
)
from mantra6g.verify.resources import check_resources

Progress = Callable[[str], None]
VERSION = ""  # set below, once the modules it hashes are loaded


def _verifier_version() -> str:
    """A hash of the verifier's own code and the semantics it encodes: a change to either
    invalidates every cached proof."""
    import mantra6g.synth.checksums
    import mantra6g.synth.dpir
    import mantra6g.synth.merge
    import mantra6g.verify.encode
    import mantra6g.verify.properties

    h = hashlib.sha256()
    for mod in (mantra6g.verify.encode, mantra6g.verify.properties, mantra6g.synth.dpir, mantra6g.synth.merge,
                mantra6g.synth.checksums):
        h.update(Path(mod.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=repr).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def program_digest(p: Program) -> str:
    """Hash of ``p`` that ignores the order of its metadata declarations (compose
    declares some in set order, which differs between Python processes)."""
    import dataclasses

    return digest(dataclasses.replace(p, metadata=tuple(sorted(p.metadata, key=lambda m: m.name))).to_json())


def _parser_digest(p: Program) -> str:
    return digest(serde.to_json(p.headers), serde.to_json(p.parser), list(p.deparse))


def slice_digest(m: MergedProgram, t: TenantProgram) -> str:
    """Hash of the code ``t``'s packets run and every declaration it names (the whole
    program when the merge does not have the standard shape)."""
    sliced = tenant_slice(m, t)
    if sliced is None:
        return program_digest(m.program)
    text = json.dumps(serde.to_json(sliced.control))
    decls = [*sliced.metadata, *sliced.actions, *sliced.tables, *sliced.registers, *sliced.counters, *sliced.meters]
    chosen: dict[str, object] = {}
    changed = True
    while changed:  # close over names: actions name tables' actions, registers, metadata …
        changed = False
        for d in decls:
            if d.name not in chosen and re.search(rf"\b{re.escape(d.name)}\b", text):
                chosen[d.name] = serde.to_json(d)
                text += json.dumps(chosen[d.name])
                changed = True
    return digest(serde.to_json(sliced.control), chosen, _parser_digest(m.program))


class ProofCache:
    """Proven results by key, in a JSON file (violations are never cached)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.proofs: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                self.proofs = json.loads(path.read_text())
            except (OSError, ValueError):
                self.proofs = {}  # a corrupt cache only costs a re-check

    def get(self, key: str, before: dict[str, set] | None = None) -> dict | None:
        """The proof under ``key``, if it still holds: with ``before`` (claim -> the claims
        that take traffic before it), only if each claim had at most those then."""
        hit = self.proofs.get(key)
        if hit is None or before is None:
            return hit
        then = {k: set(v) for k, v in hit.get("before", {}).items()}
        if then.keys() != before.keys() or any(not then[k] <= set(before[k]) for k in then):
            return None
        return hit

    def put(self, key: str, r: PropertyResult, before: dict[str, set] | None = None) -> None:
        if r.proven:
            self.proofs[key] = {"property": r.property, "scope": r.scope, "note": r.note, "seconds": r.seconds,
                                **({"before": {k: sorted(v) for k, v in before.items()}} if before else {})}

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.proofs, indent=1, sort_keys=True))


@dataclass(frozen=True)
class DeviceReport:
    device: str
    target: str
    tenants: tuple[str, ...]
    results: tuple[PropertyResult, ...]
    checked: tuple[str, ...] = ()  # "property scope" re-checked in this run
    reused: int = 0  # proofs taken from the cache

    @property
    def proven(self) -> bool:
        return all(r.proven for r in self.results)

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "target": self.target,
            "tenants": list(self.tenants),
            "proven": self.proven,
            "checked": list(self.checked),
            "reused_from_cache": self.reused,
            "results": [r.to_json() for r in self.results],
        }


@dataclass
class _Runner:
    m: MergedProgram
    target: str
    wanted: tuple[str, ...]
    cache: ProofCache
    progress: Progress
    monolithic: bool
    results: list[PropertyResult] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    reused: int = 0

    def record(self, key: str | None, r: PropertyResult) -> None:
        self.results.append(r)
        self.checked.append(f"{r.property} {r.scope}")
        if key is not None and not self.monolithic:
            self.cache.put(key, r)
        mark = "ok" if r.proven else "VIOLATED"
        self.progress(f"  {r.property:<12} {r.scope:<24} {mark:<8} {r.seconds:7.3f} s")

    def reuse(self, prop: str, scope: str, hit: dict) -> None:
        self.reused += 1
        self.results.append(PropertyResult(prop, scope, "proven", 0.0, None, hit.get("note", ""), cached=True))
        self.progress(f"  {prop:<12} {scope:<24} cached")

    def run(self) -> DeviceReport:
        m = self.m
        tenants = m.tenants
        every = [self.claim_id(c, o) for c, o in m.order]
        if "disjointness" in self.wanted:
            self.device(digest("disjointness", VERSION, every), "disjointness", lambda: check_disjointness(m))
        for t in tenants:
            sl = slice_digest(m, t)
            before = self.before(t.tenant)
            if "parsing" in self.wanted:
                key = digest("parsing", VERSION, _parser_digest(m.program), sorted(before))
                self.one(key, "parsing", t, lambda: check_parsing(m, t), before)
            if "isolation" in self.wanted:
                self.isolation(t, sl, before)
            if "equivalence" in self.wanted:
                key = digest("equivalence", VERSION, sl, program_digest(t.program), sorted(before))
                self.one(key, "equivalence", t, lambda: check_equivalence(m, t, self.monolithic), before)
            if "validity" in self.wanted:
                key = digest("validity", VERSION, sl, sorted(before))
                self.one(key, "validity", t, lambda: check_validity(m, t, self.monolithic), before)
        if "unclaimed" in self.wanted:
            key = digest("unclaimed", VERSION, program_digest(m.program), m.unclaimed, every)
            self.device(key, "unclaimed", lambda: check_unclaimed(m, m.unclaimed))
        if "resources" in self.wanted:
            self.progress(f"checking {self.target} resources …")
            self.record(None, check_resources(m.program, self.target))
        return DeviceReport(m.program.name, self.target, tuple(t.tenant for t in tenants), tuple(self.results),
                            tuple(self.checked), self.reused)

    def claim_id(self, c, owner: str) -> str:
        """A claim as what defines it: classifier, priority, slice, tenant, its parser."""
        t = next(u for u in self.m.tenants if u.tenant == owner)
        return digest(repr(c.classifier), c.priority, c.slice, owner, _parser_digest(t.program))

    def before(self, tenant: str) -> dict[str, set]:
        """Each of ``tenant``'s claims -> the other tenants' claims before it: what its
        traffic is (the claim's packets less theirs)."""
        out: dict[str, set] = {}
        earlier: set[str] = set()
        for c, owner in self.m.order:
            cid = self.claim_id(c, owner)
            if owner == tenant:
                out[cid] = set(earlier)
            else:
                earlier.add(cid)
        return out

    def device(self, key: str, prop: str, check: Callable[[], PropertyResult]) -> None:
        hit = self.cached(key)
        if hit:
            self.reuse(prop, self.m.program.name, hit)
            return
        self.progress(f"solving {prop} …")
        self.record(key, check())

    def cached(self, key: str, before: dict[str, set] | None = None) -> dict | None:
        return None if self.monolithic else self.cache.get(key, before)

    def one(self, key: str, prop: str, t: TenantProgram, check: Callable[[], PropertyResult],
            before: dict[str, set] | None = None) -> None:
        hit = self.cached(key, before)
        if hit:
            self.reuse(prop, t.tenant, hit)
            return
        self.progress(f"solving {prop} {t.tenant} …")
        r = check()
        self.record(None, r)
        if not self.monolithic:
            self.cache.put(key, r, before)

    def isolation(self, t: TenantProgram, sl: str, before: dict[str, set]) -> None:
        m = self.m
        keys = sorted(before)
        parts = {
            "resources": digest("isolation.resources", VERSION, sl, keys, {k: dict(v) for k, v in m.names[t.tenant].items()}),
            "ports": digest("isolation.ports", VERSION, sl, keys, sorted(allowed_ports(m, t) or ()), m.plan is None),
        }
        # A leak into u: u's claims and those before them decide who takes what leaves.
        flows = [serde.to_json(f) for f in m.plan.flows] if m.plan else []
        leak_before = {u.tenant: {**before, **{f"out:{k}": v for k, v in self.before(u.tenant).items()}}
                       for u in m.tenants if u.tenant != t.tenant}
        leaks = {u: digest("isolation.leak", VERSION, sl, _parser_digest(m.program), flows, sorted(b))
                 for u, b in leak_before.items()}
        todo = tuple(p for p, k in parts.items() if not self.cached(k, before))
        into = [u for u in m.tenants if u.tenant in leaks and not self.cached(leaks[u.tenant], leak_before[u.tenant])]
        if not todo and not into:
            self.reuse("isolation", t.tenant, {"note": "all parts cached"})
            return
        self.progress(f"solving isolation {t.tenant} ({', '.join(todo + tuple('leak→' + u.tenant for u in into))}) …")
        r = check_isolation(m, t, todo, into, self.monolithic)
        self.record(None, r)
        if r.proven and not self.monolithic:
            for p in todo:
                self.cache.put(parts[p], r, before)
            for u in into:
                self.cache.put(leaks[u.tenant], r, leak_before[u.tenant])


def verify_merged(m: MergedProgram, target: str, properties: Sequence[str] | None = None,
                  cache: ProofCache | None = None, progress: Progress | None = None,
                  monolithic: bool = False) -> DeviceReport:
    """Check ``properties`` (default: all) of merged program ``m`` for ``target``.

    ``monolithic`` encodes the whole merged program for every tenant (no slicing, no
    pruning, no cache): the baseline the incremental check is compared against."""
    wanted = tuple(properties or PROPERTIES)
    runner = _Runner(m, target, wanted, cache or ProofCache(None), progress or (lambda _: None), monolithic)
    report = runner.run()
    runner.cache.save()
    return report


VERSION = _verifier_version()

__all__ = ["DeviceReport", "ProofCache", "VERSION", "digest", "slice_digest", "verify_merged"]

"""Verify every merged device program of a site, incrementally.

    report = verify_merged(merged, "bmv2", cache=ProofCache(Path("out/verify/proofs.json")))

**Incremental**: a proof is stored under a hash of exactly what it depends on, so
adding a tenant re-checks only what that tenant can affect:

* ``disjointness a|b`` — the two classifiers, priorities and the parser: only the new
  tenant's pairs are new;
* ``isolation t`` — resources: ``t``'s slice of the merge (the code its packets run,
  with every declaration it names); ports: the slice and the ports other tenants own;
  leaks: one proof per ordered pair (slice of ``t``, classifier of ``u``);
* ``equivalence t`` — the slice, ``t``'s program alone and the parser;
* ``validity t`` — the slice and the parser;
* ``resources`` — always re-checked (one pass over the whole program).

Why a cached proof for ``t`` survives a new tenant ``u``: ``u`` only takes traffic away
from ``t`` (classifiers earlier in the order are excluded from ``t``'s traffic), and the
proofs hold for every packet of ``t``'s old traffic, so for the new, smaller one; the
code those packets run is unchanged because the slice hash is.
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

    def get(self, key: str) -> dict | None:
        return self.proofs.get(key)

    def put(self, key: str, r: PropertyResult) -> None:
        if r.proven:
            self.proofs[key] = {"property": r.property, "scope": r.scope, "note": r.note, "seconds": r.seconds}

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

    def cached(self, key: str) -> dict | None:
        return None if self.monolithic else self.cache.get(key)

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
        parser = _parser_digest(m.program)
        tenants = m.tenants
        if "disjointness" in self.wanted:
            for i, a in enumerate(tenants):
                for b in tenants[i + 1:]:
                    key = digest("disjointness", parser, repr(a.classifier), repr(b.classifier), a.priority, b.priority)
                    hit = self.cached(key)
                    if hit:
                        self.reuse("disjointness", f"{a.tenant}|{b.tenant}", hit)
                    else:
                        self.progress(f"solving disjointness {a.tenant}|{b.tenant} …")
                        self.record(key, check_disjointness(m, a, b))
        for t in tenants:
            sl = slice_digest(m, t)
            if "parsing" in self.wanted:
                key = digest("parsing", _parser_digest(m.program), _parser_digest(t.program))
                self.one(key, "parsing", t, lambda: check_parsing(m, t))
            if "isolation" in self.wanted:
                self.isolation(t, sl)
            if "equivalence" in self.wanted:
                key = digest("equivalence", sl, program_digest(t.program))
                self.one(key, "equivalence", t, lambda: check_equivalence(m, t, self.monolithic))
            if "validity" in self.wanted:
                key = digest("validity", sl)
                self.one(key, "validity", t, lambda: check_validity(m, t, self.monolithic))
        if "unclaimed" in self.wanted:
            key = digest("unclaimed", program_digest(m.program), m.unclaimed,
                         [(repr(c.classifier), o) for c, o in m.order])
            hit = self.cached(key)
            if hit:
                self.reuse("unclaimed", m.program.name, hit)
            else:
                self.progress("solving unclaimed …")
                self.record(key, check_unclaimed(m, m.unclaimed))
        if "resources" in self.wanted:
            self.progress(f"checking {self.target} resources …")
            self.record(None, check_resources(m.program, self.target))
        return DeviceReport(m.program.name, self.target, tuple(t.tenant for t in tenants), tuple(self.results),
                            tuple(self.checked), self.reused)

    def one(self, key: str, prop: str, t: TenantProgram, check: Callable[[], PropertyResult]) -> None:
        hit = self.cached(key)
        if hit:
            self.reuse(prop, t.tenant, hit)
            return
        self.progress(f"solving {prop} {t.tenant} …")
        self.record(key, check())

    def isolation(self, t: TenantProgram, sl: str) -> None:
        m = self.m
        parts = {
            "resources": digest("isolation.resources", sl, {k: dict(v) for k, v in m.names[t.tenant].items()}),
            "ports": digest("isolation.ports", sl, sorted(allowed_ports(m, t) or ()), m.plan is None),
        }
        leaks = {u.tenant: digest("isolation.leak", sl, repr(u.classifier)) for u in m.tenants if u.tenant != t.tenant}
        todo = tuple(p for p, k in parts.items() if not self.cached(k))
        into = [u for u in m.tenants if u.tenant in leaks and not self.cached(leaks[u.tenant])]
        if not todo and not into:
            self.reuse("isolation", t.tenant, {"note": "all parts cached"})
            return
        self.progress(f"solving isolation {t.tenant} ({', '.join(todo + tuple('leak→' + u.tenant for u in into))}) …")
        r = check_isolation(m, t, todo, into, self.monolithic)
        self.record(None, r)
        if r.proven and not self.monolithic:
            for p in todo:
                self.cache.put(parts[p], r)
            for u in into:
                self.cache.put(leaks[u.tenant], r)


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


__all__ = ["DeviceReport", "ProofCache", "digest", "slice_digest", "verify_merged"]

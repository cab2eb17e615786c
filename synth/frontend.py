"""The front end's public surface: ``.sg`` files in, ServiceGraph IR out.

    specs = load(["site.sg"])          # raises SpecError with every problem found

Files loaded together are one site (see :mod:`mantra6g.synth.check`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mantra6g.errors import Diagnostic, SpecError
from mantra6g.source import SourceFile, read_source
from mantra6g.synth import ast, ir
from mantra6g.synth.check import check_site
from mantra6g.synth.expr import render
from mantra6g.synth.nf import KINDS
from mantra6g.synth.nf.base import parts
from mantra6g.synth.parser import parse
from mantra6g.synth.values import format_quantity


def load_sources(sources: Sequence[SourceFile]) -> list[ir.ServiceSpec]:
    """Parse and check sources as one site; every problem in every file is reported."""
    diagnostics: list[Diagnostic] = []
    trees: list[ast.SpecFile] = []
    for src in sources:
        try:
            trees.append(parse(src.text, src.name))
        except SpecError as exc:
            diagnostics.extend(exc.diagnostics)
    by_name = {s.name: s for s in sources}
    if diagnostics:  # semantic checks of files that do not parse would mislead
        raise SpecError(diagnostics, by_name)
    specs, diagnostics = check_site(trees)
    if diagnostics:
        raise SpecError(diagnostics, by_name)
    return specs


def load(paths: Sequence[str | Path]) -> list[ir.ServiceSpec]:
    """Read, parse and check ``.sg`` files as one site."""
    return load_sources([read_source(p) for p in paths])


def loads(text: str, name: str = "<input>") -> ir.ServiceSpec:
    """Parse and check one service graph given as text."""
    return load_sources([SourceFile(name, text)])[0]


# ---------------------------------------------------------------- summary


def describe_sla(sla: ir.Sla) -> str:
    terms = []
    if sla.latency_ns is not None:
        terms.append(f"latency <= {format_quantity(sla.latency_ns, 'time')}")
    if sla.jitter_ns is not None:
        terms.append(f"jitter <= {format_quantity(sla.jitter_ns, 'time')}")
    if sla.bandwidth_bps is not None:
        terms.append(f"bandwidth >= {format_quantity(sla.bandwidth_bps, 'rate')}")
    if sla.reliability_pct is not None:
        terms.append(f"reliability >= {sla.reliability_pct}%")
    terms.append(f"priority {sla.priority}")
    return ", ".join(terms)


def describe_nf(nf: ir.NfInstance) -> str:
    """Parameters as written (defaults left out) and the rule count."""
    kind = KINDS[nf.kind]
    shown = []
    for f in dataclasses.fields(nf.params):
        part = dict(parts(kind.params))[f.name]
        value = getattr(nf.params, f.name)
        if value is None or (f.default is not dataclasses.MISSING and value == f.default):
            continue
        shown.append(f"{f.name}: {part.type.show(value)}")
    text = ", ".join(shown)
    if nf.rules:
        text += ("; " if text else "") + _count(nf.rules, "rule")
    return text


def _count(items: Sequence, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def summary(specs: Sequence[ir.ServiceSpec]) -> str:
    lines: list[str] = []
    for spec in specs:
        lines.append(f"{spec.source}: ok ({_count(spec.tenants, 'tenant')}, {_count(spec.graphs, 'graph')})")
        for t in spec.tenants:
            cap = f", bandwidth <= {format_quantity(t.bandwidth_cap_bps, 'rate')}" if t.bandwidth_cap_bps else ""
            lines.append(f"  tenant {t.name} (id {t.id}{cap})")
            for s in t.slices:
                lines.append(f"    slice {s.name} (id {s.id}): {describe_sla(s.sla)}")
        for g in spec.graphs:
            lines.append(
                f"  graph {g.name} for {g.tenant}.{g.slice} (tenant {g.tenant_id}, slice {g.slice_id}): "
                f"{_count(g.nfs, 'NF')}, {_count(g.edges, 'edge')}"
            )
            width = max(len(n.name) for n in g.nfs)
            for name in g.topological_order():
                n = g.nf(name)
                where = f"  [on {n.placement.device.value}{' site ' + n.placement.site if n.placement.site else ''}]" if n.placement else ""
                lines.append(f"    {n.name:<{width}}  {n.kind:<15} {describe_nf(n)}{where}".rstrip())
            for e in g.edges:
                cond = f"[{render(e.condition)}] " if e.condition is not None else ""
                lines.append(f"    {e.src} -> {cond}{e.dst}")
        for d in spec.devices:
            owners: dict[str, list[int]] = {}
            for port, owner in d.ports:
                owners.setdefault(owner, []).append(port)
            ports = "; ".join(f"{o} {', '.join(map(str, ps))}" for o, ps in owners.items()) or "none"
            lines.append(f"  device {d.device.value}{' site ' + d.site if d.site else ''}: ports {ports}")
            for f in d.flows:
                ends = [f"{t}.{s}" if s else t for t, s in ((f.src_tenant, f.src_slice), (f.dst_tenant, f.dst_slice))]
                lines.append(f"    flow {ends[0]} -> {ends[1]}")
    return "\n".join(lines)


def check_command(files: Sequence[str], as_json: bool, out: TextIO) -> int:
    """``mantra check``: exit 0 and a summary (or the IR as JSON), or raise SpecError."""
    specs = load(files)
    if as_json:
        out.write(ir.to_json(specs if len(specs) > 1 else specs[0]) + "\n")
    else:
        out.write(summary(specs) + "\n")
    return 0

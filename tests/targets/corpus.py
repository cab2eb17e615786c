"""Every program Mantra emits, by a stable name, as DP-IR: the corpus the real P4 tools
(p4test, p4c-bm2-ss, bf-p4c) compile and the grammar pre-check reads.

    programs = emitted_programs()           # name -> thunk building the Program
    p = programs["example:urllc_factory:host_factory_edge"]()

Listing the names costs only the front end of the .sg sources (their placements name
the devices); a program is lowered when its thunk is called, once per source, so tests
that skip for want of a tool build nothing. The names:

* ``dpir:<name>``: the hand-written programs that use every DP-IR construct
  (:data:`tests.targets.programs.PROGRAMS`);
* ``nf:<kind>``: every NF kind alone behind a classifier (the XDP differential's
  graphs, :data:`tests.targets.xdp_cases.GRAPHS`, and the parameter variants below);
* ``example:<file>:<device>``: every device program of ``examples/*.sg`` as ``mantra
  compile`` makes it (several tenants on one device: their merge);
* ``merged:<case>:<device>``: the verifier's multi-tenant sites
  (``tests/verify/cases/*.sg``), merged as ``mantra verify`` merges them;
* ``fabric:<scenario>:<core|rack>``: the testbed's BMv2 switch programs
  (:func:`mantra6g.testbed.fabric.fabric_program`) for ``examples/testbed/bmv2.yaml``;
* ``generated:20x5:<device>``: the 20-chain x 5-NF site of ``bench/compile.py``
  (:func:`mantra6g.synth.scale.chain_site`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs, device_names
from mantra6g.synth.dpir import Program
from mantra6g.synth.ir import ServiceSpec
from mantra6g.synth.scale import chain_site
from tests.conftest import EXAMPLES, ROOT

FABRIC_SCENARIO = ROOT / "examples" / "testbed" / "bmv2.yaml"
MERGE_CASES = sorted((ROOT / "tests" / "verify" / "cases").glob("*.sg"))
GENERATED_CHAINS = 20

# NF parameters the XDP graphs leave at one value: the other branch of each lowering.
NF_VARIANTS = {
    "firewall_default_allow": "nf fw = firewall(default: allow) {\n    deny ipv4.src in 192.0.2.0/24\n}\ncls -> fw",
    "load_balancer_dnat": """nf lb = load_balancer(vip: 10.0.0.100, mode: dnat) {
    backend 10.0.1.1
    backend 10.0.1.2 weight 3
}
cls -> lb""",
    "load_balancer_dsr_source": """nf lb = load_balancer(vip: 10.0.0.100, source: 192.0.2.1, hash: [ipv4.src, tcp.sport]) {
    backend 10.0.1.1
}
cls -> lb""",
    "policer_drop": "nf p = policer(rate: 10 Gbps, burst: 1 MB)\ncls -> p",
}


def emitted_programs() -> dict[str, Callable[[], Program]]:
    """Every program of the corpus by name (see the module docstring), in a stable order."""
    return dict(_thunks())


@cache
def _thunks() -> tuple[tuple[str, Callable[[], Program]], ...]:
    from tests.targets.programs import PROGRAMS
    from tests.targets.xdp_cases import GRAPHS

    out: list[tuple[str, Callable[[], Program]]] = [(f"dpir:{n}", f) for n, f in PROGRAMS.items()]
    nf_graphs = {**GRAPHS, **NF_VARIANTS}
    out += [(f"nf:{kind}", lambda kind=kind: _nf_program(nf_graphs[kind])) for kind in nf_graphs]
    for label in _sources():
        out += [(f"{label}:{device}", lambda label=label, device=device: _site(label)[device])
                for device in device_names(_specs(label))]
    out += [(f"fabric:{FABRIC_SCENARIO.stem}:{rack or 'core'}", lambda rack=rack: _fabric()[rack])
            for rack in _fabric_site()[1]]
    return tuple(out)


# ---------------------------------------------------------------- .sg sources


@cache
def _sources() -> dict[str, SourceFile]:
    """The .sg sources by label ("example:embb_video"), read once."""
    out = {}
    for kind, paths in (("example", EXAMPLES), ("merged", MERGE_CASES)):
        for path in paths:
            out[f"{kind}:{path.stem}"] = SourceFile(str(path), path.read_text())
    out[f"generated:{GENERATED_CHAINS}x5"] = SourceFile("generated.sg", chain_site(GENERATED_CHAINS))
    return out


@cache
def _specs(label: str) -> tuple[ServiceSpec, ...]:
    return tuple(frontend.load_sources([_sources()[label]]))


@cache
def _site(label: str) -> dict[str, Program]:
    """Every device program of one source, lowered (and merged) by ``compile_specs``."""
    return {dp.name: dp.program for dp in compile_specs(_specs(label))}


def _nf_program(body: str) -> Program:
    from tests.synth.helpers import graph, ok
    from tests.targets.xdp_cases import CLS, TENANT

    (dp,) = compile_specs([ok(graph(CLS + body, tenant=TENANT))])
    return dp.program


# ---------------------------------------------------------------- the testbed's fabric


def _fabric_site() -> tuple[object, tuple[str, ...]]:
    """The scenario's site and its racks ("" is the core switch)."""
    from mantra6g.testbed.scenario import parse_site
    from mantra6g.testbed.site import Site

    config = parse_site(FABRIC_SCENARIO.read_text(), str(FABRIC_SCENARIO))
    site = Site(config, Path(tempfile.gettempdir()))  # nothing is written before the site starts
    return site, ("", *(r.name for r in config.racks))


@cache
def _fabric() -> dict[str, Program]:
    """Each rack's switch program, named as the testbed names it when it builds the fabric."""
    from mantra6g.testbed.fabric import fabric_program

    site, racks = _fabric_site()
    return {rack: fabric_program(site.switch(rack).replace("-", "_"), site.fabric_stations(rack)) for rack in racks}

"""Oakestra (root and cluster orchestrators): the site as one application whose
microservices are the device programs, with each slice's SLA as latency constraints.

* the site is one application (``application_name`` from the files, the namespace from
  ``--namespace``); each device program is a microservice (a container that carries
  the program: ``code`` is ``--image``/``<program>:<tag>``, privileged, since it loads
  an XDP program), placed in the Oakestra cluster named like its Mantra site;
* a slice's latency bound becomes, on every microservice of its graph, a ``latency``
  constraint (``threshold`` in ms, ``rigidness`` the slice's reliability as a fraction,
  1 where it sets none, ``convergence_time`` 300 s) and, between consecutive programs
  of the chain, a ``connectivity`` latency constraint with the same numbers; a
  guaranteed bandwidth becomes ``bandwidth_in``/``bandwidth_out`` (kbit/s, summed over
  the slices a program carries) and a ``bandwidth`` connectivity constraint.

Oakestra accepts these constraints but its schedulers do not enforce them (see
docs/export.md); Mantra's orchestrator is what acts on the SLA.
"""

from __future__ import annotations

import json
from decimal import Decimal

from mantra6g.export.site import Bundle, ExportOptions, Site, alnum_name, check, unique
from mantra6g.synth.ir import Sla

SLA_VERSION = "v2.0"
CONVERGENCE_S = 300  # Oakestra's documented default


def latency_ms(ns: int) -> float | int:
    """A bound in ns as Oakestra's milliseconds, exactly (1 ms -> 1, 100 us -> 0.1)."""
    ms = Decimal(ns) / Decimal(1_000_000)
    return int(ms) if ms == ms.to_integral_value() else float(ms)


def rigidness(sla: Sla) -> float | int:
    """The share of requests that must meet the bound: the slice's reliability, else all."""
    if sla.reliability_pct is None:
        return 1
    return float(sla.reliability_pct / Decimal(100))


def latency_constraint(sla: Sla, area: str | None) -> dict:
    c: dict = {"type": "latency"}
    if area:
        c["area"] = area
    c |= {"threshold": latency_ms(sla.latency_ns), "rigidness": rigidness(sla), "convergence_time": CONVERGENCE_S}
    return c


def export(site: Site, options: ExportOptions) -> Bundle:
    names = {dp.name: alnum_name(dp.name) for dp in site.programs}
    unique(names, "microservice names")
    app = alnum_name(site.name)
    namespace = alnum_name(options.namespace)
    image = (options.image or "localhost/mantra").rstrip("/")
    services: dict[str, dict] = {}
    for dp in site.programs:
        ms: dict = {
            "microservice_name": names[dp.name],
            "microservice_namespace": namespace,
            "virtualization": "container",
            "code": f"{image}/{dp.name.replace('_', '-')}:{options.tag}",
            "privileged": True,  # it loads and attaches an XDP program
            "one_shot": False,
            "constraints": [],
            "connectivity": [],
        }
        if dp.site:
            ms["constraints"].append({"type": "clusters", "allowed": [dp.site]})
        services[dp.name] = ms
    bandwidth: dict[str, int] = {}
    summary = []
    for g in site.graphs:
        sla = site.slice_of(g).sla
        chain = site.chain(g)
        kept = []
        if sla.latency_ns is not None:
            for dp in chain:
                area = options.area or dp.site
                services[dp.name]["constraints"].append(latency_constraint(sla, area))
            kept.append(f"latency <= {latency_ms(sla.latency_ns)} ms at rigidness {rigidness(sla)}")
        if sla.bandwidth_bps is not None:
            for dp in chain:
                bandwidth[dp.name] = bandwidth.get(dp.name, 0) + sla.bandwidth_bps // 1000
            kept.append(f"bandwidth >= {sla.bandwidth_bps // 1000} kbit/s")
        for a, b in zip(chain, chain[1:]):
            cons = []
            if sla.latency_ns is not None:
                cons.append(latency_constraint(sla, None))  # a link has no area
            if sla.bandwidth_bps is not None:
                cons.append({"type": "bandwidth", "threshold": sla.bandwidth_bps // 1000, "rigidness": rigidness(sla),
                             "convergence_time": CONVERGENCE_S})
            if cons:
                # Oakestra's schema forbids microserviceID in an SLA (it assigns them), so
                # the target is named; it treats connectivity as bidirectional.
                services[a.name]["connectivity"].append({"target_microservice_id": names[b.name], "con_constraints": cons})
        dropped = [what for what, v in (("jitter", sla.jitter_ns), ("priority", sla.priority or None)) if v is not None]
        summary.append(f"graph {g.name}: " + ("; ".join(kept) or "no SLA bound")
                       + f" on {', '.join(names[dp.name] for dp in chain)}"
                       + (f" (not expressible in Oakestra: {', '.join(dropped)})" if dropped else ""))
    for name, kbit in bandwidth.items():
        services[name]["bandwidth_in"] = kbit
        services[name]["bandwidth_out"] = kbit
    sla_doc = {
        "sla_version": SLA_VERSION,
        "customerID": options.customer_id,
        "applications": [{
            "application_name": app,
            "application_namespace": namespace,
            "application_desc": f"Mantra site {site.name}: " + ", ".join(g.name for g in site.graphs),
            "microservices": list(services.values()),
        }],
    }
    check(sla_doc, "oakestra", f"Oakestra SLA for {site.name}", kubernetes=False)
    bundle = Bundle("oakestra", summary=[f"application {app}: microservices " + ", ".join(names.values()), *summary])
    bundle.files["sla.json"] = json.dumps(sla_doc, indent=2) + "\n"
    bundle.files["README.md"] = readme(site, app)
    return bundle


def readme(site: Site, app: str) -> str:
    return "\n".join([
        f"# {site.name}: Oakestra SLA (generated by `mantra export --to oakestra`)",
        "",
        "Deploy through the root orchestrator's API (a user token from `/api/auth/login`):",
        "",
        "```sh",
        "curl -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \\",
        "     --data @sla.json http://ROOT_ORCHESTRATOR:10000/api/application/",
        "```",
        "",
        f"`sla.json` is one application, `{app}`, with one microservice per device program.",
        "Each microservice's `code` names a container that loads its XDP program (build it",
        "from the object and map fill `mantra export --to bpfman` writes); it runs privileged.",
        "",
        "## What Oakestra does not do (see docs/export.md)",
        "",
        "* It accepts `latency` constraints and `connectivity` latency constraints but its",
        "  schedulers do not enforce them: nothing measures them or moves a service when they",
        "  are broken. Mantra's orchestrator does: it reads the in-network latency monitor and",
        "  migrates NFs before the SLA is violated (`mantra testbed`, docs/orchestrator.md).",
        "* It has no jitter bound and no slice priority; those SLA terms are left out.",
        "* `target_microservice_id` holds the target's name: Oakestra assigns the ids itself.",
        "",
    ])

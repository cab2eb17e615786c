"""MANTRA-6G's Infrastructure Management Layer (``mantra6g/iml``, Kubernetes CRDs of
``core.loom.io/v1alpha1`` and ``infra.loom.io/v1alpha1``).

How a site maps onto it (docs/export.md has the long form):

* each device program is one ``NetworkFunction``: its v1model P4 source in
  ``spec.p4File`` (base64, or a URL under ``--p4-url``; IML's BMv2 driver compiles it
  with p4c itself), ``spec.targetSelector: {p4target.loom.io/arch: v1model}``, labels
  naming the program, and ``spec.configRef`` to
* a ``NetworkFunctionConfig`` holding every runtime table's entries (those
  ``mantra compile`` writes to ``<name>.entries.json``; ``const`` tables are in the
  P4) and its default action, under P4Info names (``MantraIngress.<table>``,
  ``ipv4_dst``, ``MantraIngress.<action>``), values in the form the field holds
  (``ipv4Address``, ``macAddress``, ``int``; masks as hex);
* one ``BMv2Target`` per program (IML's BMv2 driver runs one pipeline per switch);
* per graph two ``Application`` objects, the slice's traffic sources and
  destinations (pods join them through the ``loom-cni`` Multus network), and a
  ``ServiceChain`` from one to the other through the graph's programs in chain order.
"""

from __future__ import annotations

import base64
import json
from ipaddress import IPv4Address, IPv6Address

from mantra6g.synth import dpir
from mantra6g.synth.dpir import Action, Assign, If, Program, Ref, Table
from mantra6g.synth.headers import FieldKind
from mantra6g.targets import bmv2, p4, p4info
from mantra6g.targets.p4 import ident, qualified
from mantra6g.export.site import Bundle, ExportError, ExportOptions, Site, check, dns_name, unique, yaml_docs

CORE = "core.loom.io/v1alpha1"
INFRA = "infra.loom.io/v1alpha1"
LABEL = "mantra6g.io/program"
ARCH_SELECTOR = {"p4target.loom.io/arch": "v1model"}
MATCH_TYPES = {"exact": "Exact", "lpm": "LPM", "ternary": "Ternary", "range": "Range"}  # IML's MatchFieldType
BMV2_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}


# ---------------------------------------------------------------- values


def field_kind(p: Program, path: str) -> FieldKind:
    """How a field's values are written: header fields say (addresses), the rest are ints."""
    scope, _, name = path.partition(".")
    if scope in ("meta", "std", "param") or name == "$valid":
        return FieldKind.INT
    f = p.header(scope).header_type.field(name)
    return f.kind if f is not None else FieldKind.INT


def param_kinds(p: Program, a: Action) -> dict[str, FieldKind]:
    """A parameter written straight into an address field is an address."""
    kinds = {prm.name: FieldKind.INT for prm in a.params}

    def walk(body) -> None:
        for s in body:
            if isinstance(s, Assign) and isinstance(s.value, Ref) and s.value.path.startswith("param."):
                kinds[s.value.path.split(".", 1)[1]] = field_kind(p, s.target)
            elif isinstance(s, If):
                walk(s.then)
                walk(s.orelse)

    walk(a.body)
    return kinds


def value(kind: FieldKind, v: int) -> dict[str, str]:
    """An IML ``ParametrizedValue``."""
    if kind is FieldKind.IPV4:
        return {"ipv4Address": str(IPv4Address(v))}
    if kind is FieldKind.IPV6:
        return {"ipv6Address": str(IPv6Address(v))}
    if kind is FieldKind.MAC:
        return {"macAddress": ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))}
    return {"int": str(v)}


def match_field(kind: FieldKind, match: dict) -> dict:
    """One key of an entries.json record as an IML ``MatchField``."""
    name = match["field"]
    if "exact" in match:
        return {"name": name, "type": "Exact", "exact": value(kind, match["exact"])}
    if "lpm" in match:
        v, n = match["lpm"]
        return {"name": name, "type": "LPM", "lpm": {"value": value(kind, v), "prefixLen": str(n)}}
    if "ternary" in match:
        v, m = match["ternary"]
        return {"name": name, "type": "Ternary", "ternary": {"value": value(kind, v), "mask": f"{m:#x}"}}
    lo, hi = match["range"]
    return {"name": name, "type": "Range", "range": {"low": value(kind, lo), "high": value(kind, hi)}}


def action_config(p: Program, action: str, args) -> dict:
    a = p.action(action)
    kinds = param_kinds(p, a)
    out: dict = {"name": qualified(a.name)}
    if a.params:
        out["parameters"] = [{"name": ident(prm.name), **value(kinds[prm.name], v)} for prm, v in zip(a.params, args)]
    return out


def table_config(p: Program, t: Table, where: str) -> dict:
    """``spec.tables.<table>``: the runtime entries, in the order entries.json lists them."""
    if dpir.ranks_by_priority(t) and t.entries:
        raise ExportError(
            f"{where}: spec.tables.{qualified(t.name)}.entries: table '{t.name}' matches "
            f"{'/'.join(k.match for k in t.keys)}, so its entries need priorities, and IML's "
            "NetworkFunctionConfig has no priority field"
        )
    kinds = [field_kind(p, k.field) for k in t.keys]
    entries = []
    for e, r in zip(dpir.ranked(t), p4.entry_records(p, t)):  # entry_records lists ranked(t)
        entries.append({
            "matchFields": [match_field(kind, m) for kind, m in zip(kinds, r.matches)],
            "action": action_config(p, e.action.action, e.action.args),
        })
    return {"entries": entries, "defaultAction": action_config(p, t.default.action, t.default.args)}


def network_function_config(p: Program) -> dict[str, dict]:
    """``spec.tables`` for every runtime (non-const) table of ``p``."""
    return {qualified(t.name): table_config(p, t, p.name) for t in p.tables if not t.const}


# ---------------------------------------------------------------- objects


def _meta(name: str, namespace: str | None, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def multus_annotation(app: str, namespace: str) -> str:
    """The pod annotation that puts a pod into an IML Application (loom-cni)."""
    return json.dumps([{
        "name": "loom-cni", "namespace": "loom-system",
        "cni-args": {"app_type": "application", "app_name": app, "app_namespace": namespace},
    }], indent=2)


def export(site: Site, options: ExportOptions) -> Bundle:
    ns = options.namespace
    nf_names = {dp.name: dns_name(dp.name) for dp in site.programs}
    unique(nf_names, "NetworkFunction names")
    graph_names = {g.name: dns_name(g.name) for g in site.graphs}
    unique(graph_names, "ServiceChain names")
    bundle = Bundle("iml")
    targets, configs, functions, apps, chains = [], [], [], [], []
    for dp in site.programs:
        nf = nf_names[dp.name]
        out = bmv2.emit(dp.program)
        stem = ident(dp.name)
        source = out.files[f"{stem}.p4"]
        info = p4info.p4info(dp.program)
        bundle.files[f"p4/{stem}.p4"] = source
        bundle.files[f"p4/{stem}.p4info.txtpb"] = p4info.text(info)
        bundle.files[f"p4/{stem}.p4info.bin"] = p4info.binary(info)
        labels = {LABEL: nf, "mantra6g.io/device-class": dp.device}
        if dp.site:
            labels["mantra6g.io/site"] = dns_name(dp.site)
        target = {"apiVersion": INFRA, "kind": "BMv2Target", "metadata": _meta(dns_name(nf, "bmv2"), None, labels),
                  "spec": {"resources": BMV2_RESOURCES}}
        spec: dict = {
            "p4File": f"{options.p4_url.rstrip('/')}/{stem}.p4" if options.p4_url
            else base64.b64encode(source.encode()).decode(),
            "targetSelector": dict(ARCH_SELECTOR),
        }
        tables = network_function_config(dp.program)
        if tables:
            config = {"apiVersion": CORE, "kind": "NetworkFunctionConfig",
                      "metadata": _meta(dns_name(nf, "config"), ns, labels), "spec": {"tables": tables}}
            check(config, "iml", f"NetworkFunctionConfig for {dp.name}")
            configs.append(config)
            spec["configRef"] = {"name": config["metadata"]["name"]}
        function = {"apiVersion": CORE, "kind": "NetworkFunction", "metadata": _meta(nf, ns, labels), "spec": spec}
        check(target, "iml", f"BMv2Target for {dp.name}")
        check(function, "iml", f"NetworkFunction for {dp.name}")
        targets.append(target)
        functions.append(function)
        n_entries = sum(len(t["entries"]) for t in tables.values())
        bundle.summary.append(f"{dp.name}: NetworkFunction {nf} ({len(tables)} runtime tables, {n_entries} entries)")
    for g in site.graphs:
        name = graph_names[g.name]
        ends = []
        for end in ("from", "to"):
            app = {"apiVersion": CORE, "kind": "Application", "metadata": _meta(dns_name(name, end), ns), "spec": {}}
            check(app, "iml", f"Application for graph {g.name}")
            apps.append(app)
            ends.append({"name": app["metadata"]["name"], "namespace": ns})
        chain = {
            "apiVersion": CORE, "kind": "ServiceChain",
            "metadata": _meta(name, ns, {"mantra6g.io/graph": name}),
            "spec": {"from": ends[0], "to": ends[1],
                     "functions": [{"matchLabels": {LABEL: nf_names[dp.name]}} for dp in site.chain(g)]},
        }
        check(chain, "iml", f"ServiceChain for graph {g.name}")
        chains.append(chain)
        bundle.summary.append(f"graph {g.name}: ServiceChain {name} through "
                              + ", ".join(nf_names[dp.name] for dp in site.chain(g)))
    # kubectl apply -f DIR/ applies the files in name order: what is referenced first.
    bundle.files["10-applications.yaml"] = yaml_docs(apps)
    bundle.files["20-bmv2targets.yaml"] = yaml_docs(targets)
    if configs:
        bundle.files["30-networkfunctionconfigs.yaml"] = yaml_docs(configs)
    bundle.files["40-networkfunctions.yaml"] = yaml_docs(functions)
    bundle.files["50-servicechains.yaml"] = yaml_docs(chains)
    bundle.files["README.md"] = readme(site, options, apps, graph_names)
    return bundle


def readme(site: Site, options: ExportOptions, apps: list[dict], graph_names: dict[str, str]) -> str:
    ns = options.namespace
    lines = [
        f"# {site.name}: IML manifests (generated by `mantra export --to iml`)",
        "",
        "Apply with `kubectl apply -f .` (files go in name order). The IML operator, its BMv2",
        "plugin and Multus must be installed (see IML's installation guide).",
        "",
        "| file | what |",
        "| --- | --- |",
        "| `10-applications.yaml` | per graph, the slice's traffic sources (`-from`) and destinations (`-to`) |",
        "| `20-bmv2targets.yaml` | one BMv2 software switch per device program |",
        "| `30-networkfunctionconfigs.yaml` | the runtime table entries, under P4Info names |",
        "| `40-networkfunctions.yaml` | one NF per device program, its P4 inlined (base64)"
        + (f" or at `{options.p4_url}`" if options.p4_url else "") + " |",
        "| `50-servicechains.yaml` | per graph, sources -> its programs in chain order -> destinations |",
        "| `p4/` | the P4 source and Mantra's P4Info (text and binary) of each program |",
        "",
        "## Putting pods into the Applications",
        "",
        "A pod joins an Application through the `loom-cni` network; add to its template:",
        "",
    ]
    for app in apps:
        name = app["metadata"]["name"]
        lines += [f"`{name}`:", "", "```yaml", "metadata:", "  annotations:",
                  "    k8s.v1.cni.cncf.io/networks: |"]
        lines += ["      " + ln for ln in multus_annotation(name, ns).splitlines()]
        lines += ["```", ""]
    lines += [
        "## What IML does not do (see docs/export.md)",
        "",
        "* Its targets are BMv2 only: Tofino programs and the XDP programs of hosts and",
        "  SmartNICs do not run here (`mantra export --to bpfman` covers XDP).",
        "* IML steers chain traffic to a NF inside SRv6 (outer IPv6 + SRH) and expects the NF",
        "  to apply SRv6 End and send the packet back where it came from; Mantra's programs",
        "  parse plain Ethernet/IPv4 and forward by their own ports, so chained traffic needs",
        "  that SRv6 adaptation before it matches a slice's classifier.",
        "* NetworkFunctionConfig entries carry no priority, so only exact and LPM runtime tables",
        "  are exported (Mantra's rule tables are `const`, inside the P4).",
        "* IML's BMv2 driver compiles URL sources itself and gets its own P4Info; a base64",
        "  `p4File` is taken as a precompiled BMv2 JSON by the current driver, so use",
        "  `--p4-url` and serve `p4/` where the driver can fetch it.",
    ]
    return "\n".join(lines) + "\n"

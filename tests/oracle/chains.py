"""Random service graphs: chains of 1–5 NFs of every kind on one device, written as
``.sg`` text the way a user writes them (the address plan of :mod:`tests.oracle.traffic`).

    rng = random.Random(seed)
    text, signature = random_graph(rng)      # signature: "fw>lb(dsr)>rt"

Parameters are drawn so that the traffic of :mod:`tests.oracle.traffic` exercises them:
routes cover its addresses, the load balancer's VIP is the one it sends to, the tunnels'
VNI/TEID and endpoints are the ones it encapsulates with (and others), and so on.
"""

from __future__ import annotations

import random

TENANT = "tenant acme id 1 {\n    slice gold {\n        latency <= 1 ms\n    }\n}\n"
CLASSIFIERS = (
    "ipv4.dst in 10.0.0.0/8 or udp.dport in [4789, 2152]",
    "ipv4.ttl >= 0 or ipv6.hop_limit >= 0",
    "ipv4.proto == udp or ipv4.proto == tcp or ipv4.proto == icmp",
    "eth.type == ipv4 or eth.type == vlan or eth.type == 0x88b5",
    "ipv4.src in 10.1.0.0/16 or ipv4.src == 192.0.2.1",
)
FIREWALL_TESTS = (
    "ipv4.src in 10.1.0.0/16", "ipv4.src in 10.1.3.0/24", "ipv4.dst == 10.9.0.100", "udp.dport in 5000..5010",
    "tcp.dport in [22, 80, 443]", "ipv4.proto == icmp", "ipv4.dscp == ef", "vlan.vid == 7", "udp.dport == 53",
    "tcp.dport == 53", "udp.sport > 1024", "ipv4.ttl < 5", "ipv4.dst in 192.0.2.0/24", "ipv6.next_header == udp",
    "tcp.flags == syn", "ipv4.flags == 1", "ipv6.hop_limit < 100", "icmp.type == 8", "vxlan.vni == 5001", "gtpu_psc.qfi == 9",
)
ROUTES = ("10.0.0.0/8", "10.2.0.0/16", "10.9.0.0/24", "192.0.2.0/24", "0.0.0.0/0", "10.2.0.11/32", "198.51.100.0/24")
MACS = ("02:00:00:00:00:aa", "02:00:00:00:00:bb", "02:00:00:00:00:cc", "02:00:00:00:00:fe", "02:00:00:00:00:11")
BACKENDS = ("10.2.0.11", "10.2.0.12", "10.2.0.13", "10.2.0.14")


def _firewall(rng: random.Random) -> tuple[str, str]:
    rules = []
    for _ in range(rng.randrange(1, 6)):
        terms = rng.sample(FIREWALL_TESTS, rng.choice((1, 1, 2)))
        joiner = rng.choice((" and ", " or "))
        rules.append(f"    {rng.choice(('allow', 'deny'))} {joiner.join(terms)}")
    default = rng.choice(("allow", "deny"))
    return f"firewall(default: {default}) {{\n" + "\n".join(rules) + "\n}", "fw"


def _router(rng: random.Random) -> tuple[str, str]:
    routes = rng.sample(ROUTES, rng.randrange(1, 5))
    body = "\n".join(f"    route {r} via {rng.choice(MACS)} port {rng.randrange(0, 5)}" for r in routes)
    return f"router(mac: 02:00:00:00:00:fe) {{\n{body}\n}}", "rt"


def _l2(rng: random.Random) -> tuple[str, str]:
    stations = rng.sample(MACS, rng.randrange(1, len(MACS) + 1))
    body = "\n".join(f"    station {m} port {rng.randrange(0, 5)}" for m in stations)
    return f"l2_forward() {{\n{body}\n}}", "l2"


def _lb(rng: random.Random) -> tuple[str, str]:
    mode = rng.choice(("dsr", "dnat"))
    backends = rng.sample(BACKENDS, rng.randrange(1, 5))
    body = "\n".join(f"    backend {b}" + (f" weight {rng.randrange(2, 4)}" if rng.random() < 0.3 else "") for b in backends)
    hash_ = rng.choice(("", ", hash: [ipv4.src, udp.sport]", ", hash: [ipv4.src, ipv4.dst, tcp.sport, tcp.dport]",
                        ", hash: [ipv4.src, ipv4.dst, ipv4.proto]"))
    source = ", source: 10.9.0.1" if mode == "dsr" and rng.random() < 0.3 else ""
    size = rng.choice((13, 251))
    return (f"load_balancer(vip: 10.9.0.100, mode: {mode}{hash_}{source}, table_size: {size}) {{\n{body}\n}}",
            f"lb({mode})")


# One tunnel of each kind (the per-kind corpus; chains draw theirs at random).
TUNNELS = (
    "tunnel(protocol: gtpu, mode: decap, teid: 4097, local: 192.0.2.2)",
    "tunnel(protocol: gtpu, mode: encap, teid: 4097, local: 192.0.2.1, remote: 192.0.2.2, qfi: 63, pdu_type: ul)",
    "tunnel(protocol: vxlan, mode: decap, vni: 5001)",
    "tunnel(protocol: gtpu, mode: encap, teid: 4097, local: 192.0.2.1, remote: 192.0.2.2)",
)


def _tunnel(rng: random.Random) -> tuple[str, str]:
    proto = rng.choice(("vxlan", "gtpu"))
    ident = "vni" if proto == "vxlan" else "teid"
    value = 5001 if proto == "vxlan" else 4097
    if rng.random() < 0.5:
        qfi = ""
        if proto == "gtpu" and rng.random() < 0.5:  # a PDU Session Container, as on N3
            qfi = rng.choice((", qfi: 9", ", qfi: 63, pdu_type: ul"))
        return (f"tunnel(protocol: {proto}, mode: encap, {ident}: {value}, local: 192.0.2.1, remote: 192.0.2.2{qfi})",
                f"{proto}-encap" + ("-qfi" if qfi else ""))
    extra = ""
    if rng.random() < 0.5:
        extra += f", {ident}: {value}"
    if rng.random() < 0.3:
        extra += ", local: 192.0.2.2"
    return f"tunnel(protocol: {proto}, mode: decap{extra})", f"{proto}-decap"


def _policer(rng: random.Random) -> tuple[str, str]:
    rate = rng.choice(("100 kbps", "1 Mbps", "20 Mbps", "1 Gbps"))
    burst = rng.choice(("2 KB", "3 KB", "64 KB"))
    if rng.random() < 0.5:
        return f"policer(rate: {rate}, burst: {burst}, exceed: drop)", "pol"
    return f"policer(rate: {rate}, burst: {burst}, exceed: remark, dscp: {rng.choice(('cs1', 'be', 'af11'))})", "pol(remark)"


def _source(rng: random.Random) -> tuple[str, str]:
    return f"latency_monitor(role: source, sample: 1/{rng.choice((1, 1, 2, 4))})", "mon>"


KINDS = {"firewall": _firewall, "router": _router, "l2_forward": _l2, "load_balancer": _lb, "tunnel": _tunnel,
         "policer": _policer, "latency_monitor": _source}


def random_graph(rng: random.Random, kinds: tuple[str, ...] | None = None, length: int | None = None) -> tuple[str, str]:
    """A tenant and a graph of ``length`` (1–5) NFs of ``kinds`` (default: all), linear
    or with one conditional branch; and the chain's signature."""
    kinds = kinds or tuple(KINDS)
    n = length or rng.randrange(1, 6)
    decls, names, sig = [], [], []
    has_source = False
    for i in range(n):
        kind = rng.choice(kinds)
        if kind == "latency_monitor" and has_source and rng.random() < 0.7:
            text, s = "latency_monitor(role: sink, buckets: [10us, 1ms])", ">mon"
        else:
            text, s = KINDS[kind](rng)
            has_source |= kind == "latency_monitor"
        names.append(f"n{i}")
        decls.append(f"nf n{i} = {text}")
        sig.append(s)
    edges = ["cls -> " + " -> ".join(names)]
    if n >= 3 and rng.random() < 0.3:
        # n0 -> [cond] n2 skips n1 for some packets
        cond = rng.choice(("udp.dport == 53", "ipv4.proto == tcp", "ipv4.dst == 10.9.0.100"))
        edges = [f"cls -> {names[0]}", f"{names[0]} -> [{cond}] {names[2]}", f"{names[0]} -> {names[1]}",
                 " -> ".join(names[1:])]
        sig.insert(1, "?")
    cls = f"nf cls = classifier() {{\n    match {rng.choice(CLASSIFIERS)}\n}}"
    body = "\n".join([cls, *decls, *edges])
    text = TENANT + "graph g for acme.gold {\n" + "\n".join("    " + line for line in body.splitlines()) + "\n}\n"
    return text, ">".join(sig)

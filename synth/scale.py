"""Generated service-graph sites for measuring scale, shared by the benchmarks and the
tests (one generator, so a benchmark and a test of "the 20-chain site" mean the same
site).

    text = chain_site(20)   # .sg source: 20 tenants, each a 5-NF chain, on one SmartNIC
"""

from __future__ import annotations


def chain_site(chains: int) -> str:
    """``chains`` tenants, each with one slice and a classifier followed by a 5-NF chain
    (firewall, policer, load balancer, latency-monitor source, router), all placed on
    one SmartNIC of site ``edge``: the .sg source."""
    out = []
    for i in range(1, chains + 1):
        out += [
            f"tenant t{i} id {i} {{",
            "    slice s {",
            "        latency <= 5 ms",
            "        bandwidth >= 10 Mbps",
            "    }",
            "}",
            f"graph g{i} for t{i}.s {{",
            "    nf cls = classifier() {",
            f"        match ipv4.dst in 10.{i}.0.0/16",
            "    }",
            "    nf fw = firewall(default: deny) {",
            f"        allow ipv4.src in 10.{i}.0.0/16 and udp.dport in 1000..2000",
            "        allow tcp.dport in [80, 443]",
            "    }",
            "    nf pol = policer(rate: 100 Mbps, burst: 64 KB)",
            f"    nf lb = load_balancer(vip: 10.{i}.255.1) {{",
            f"        backend 10.{i}.1.1",
            f"        backend 10.{i}.1.2 weight 2",
            "    }",
            "    nf mon = latency_monitor(role: source, sample: 1/8)",
            "    nf rt = router(mac: 02:00:00:00:00:fe) {",
            f"        route 10.{i}.0.0/16 via 02:00:00:00:00:01 port 1",
            "    }",
            "    cls -> fw -> pol -> lb -> mon -> rt",
            "    place fw, pol, lb, mon, rt on smartnic site edge",
            "}",
        ]
    return "\n".join(out) + "\n"

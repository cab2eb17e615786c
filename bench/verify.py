"""Verification time against the number of tenants on one device, per property, fresh
and incremental (the N-th tenant added to a verified N-1, proofs cached), measured in
the same run. Each tenant has a 10-rule firewall, a load balancer and a router on its
own /16, with its ports in the device's plan. Prints figures; asserts nothing about time.

    .venv/bin/python bench/verify.py [--tenants 2,4,8,16,32,64] [--target bmv2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.merge import merge_site
from mantra6g.verify.site import ProofCache, verify_merged


def site(n: int) -> str:
    """``n`` tenants on one SmartNIC, with the operator's port plan."""
    out = []
    for i in range(n):
        rules = "\n".join(f"        deny ipv4.src == 10.{i}.{r}.7 and udp.dport == {5000 + r}" for r in range(9))
        out.append(f"""
tenant t{i} id {100 + i} {{
    slice s {{ latency <= 5 ms }}
}}
graph g{i} for t{i}.s {{
    nf cls = classifier() {{ match ipv4.src in 10.{i}.0.0/16 }}
    nf fw = firewall(default: deny) {{
{rules}
        allow ipv4.proto == udp or ipv4.proto == tcp
    }}
    nf lb = load_balancer(vip: 10.{i}.255.1, table_size: 13) {{
        backend 10.{i}.254.1
        backend 10.{i}.254.2
    }}
    nf rt = router(mac: 02:00:00:00:{i % 256:02x}:fe) {{ route 10.{i}.0.0/16 via 02:00:00:00:{i % 256:02x}:01 port {1 + i} }}
    cls -> fw -> lb -> rt
    place fw, lb, rt on smartnic site edge
}}""")
    ports = "\n".join(f"    port {1 + i} owner t{i}" for i in range(n))
    out.append(f"\ndevice smartnic site edge {{\n    port 0 owner uplink\n{ports}\n}}\n")
    return "".join(out)


def device(n: int):
    (m,) = merge_site(frontend.load_sources([SourceFile(f"bench{n}.sg", site(n))]))
    return m


def per_property(report) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in report.results:
        out[r.property] += r.seconds
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", default="2,4,8,16,32,64")
    ap.add_argument("--target", default="bmv2")
    args = ap.parse_args()
    props = ("disjointness", "parsing", "isolation", "equivalence", "validity", "unclaimed")
    print(f"{'tenants':>7} {'fresh s':>8} {'s/tenant':>8} {'incremental s':>13} {'checked':>7} {'reused':>6}  "
          + " ".join(f"{p[:10]:>10}" for p in props))
    for n in (int(x) for x in args.tenants.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "proofs.json"
            start = time.perf_counter()
            fresh = verify_merged(device(n), args.target, cache=ProofCache(cache))
            t_fresh = time.perf_counter() - start
            if n > 1:  # the N-th tenant joins a verified N-1
                cache2 = Path(tmp) / "inc.json"
                verify_merged(device(n - 1), args.target, cache=ProofCache(cache2))
                start = time.perf_counter()
                inc = verify_merged(device(n), args.target, cache=ProofCache(cache2))
                t_inc = time.perf_counter() - start
            else:
                inc, t_inc = fresh, t_fresh
        assert fresh.proven and inc.proven, "the benchmark's sites are correct"
        cost = per_property(fresh)
        print(f"{n:>7} {t_fresh:>8.2f} {t_fresh / n:>8.2f} {t_inc:>13.2f} {len(inc.checked):>7} {inc.reused:>6}  "
              + " ".join(f"{cost.get(p, 0.0):>10.2f}" for p in props), flush=True)


if __name__ == "__main__":
    main()

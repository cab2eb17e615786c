"""Verification time vs number of tenants on one device: the incremental check
(adding the N-th tenant to a verified N-1, proofs cached) and the monolithic encoding
(every property of every tenant over the whole merged program, nothing cached),
measured in the same run. Prints figures; asserts nothing about time.

    .venv/bin/python bench/verify.py [--tenants 2,4,8,16,32] [--target bmv2]

Each tenant runs the single-tenant program of examples/embb_video.sg (policer and
router) on its own /16.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from ipaddress import IPv4Network
from pathlib import Path

from mantra6g.synth import expr as sx
from mantra6g.synth import frontend
from mantra6g.synth.compose import condition
from mantra6g.synth.merge import TenantProgram, merge, tenant_programs
from mantra6g.verify.site import ProofCache, verify_merged

ROOT = Path(__file__).resolve().parent.parent


def tenants(n: int) -> list[TenantProgram]:
    (base,) = next(iter(tenant_programs(frontend.load([str(ROOT / "examples" / "embb_video.sg")])).values()))
    return [
        dataclasses.replace(base, tenant=f"t{i}", tenant_id=100 + i, priority=0,
                            classifier=condition(sx.InPrefix("ipv4.dst", IPv4Network(f"10.{i}.0.0/16"))))
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", default="2,4,8,16,32")
    ap.add_argument("--target", default="bmv2")
    args = ap.parse_args()
    print(f"{'tenants':>7} {'incremental s':>14} {'checked':>8} {'reused':>7} {'monolithic s':>13} {'ratio':>6}")
    for n in (int(x) for x in args.tenants.split(",")):
        ts = tenants(n)
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "proofs.json"
            verify_merged(merge("dev", ts[:-1]), args.target, cache=ProofCache(cache))  # the verified N-1
            start = time.perf_counter()
            inc = verify_merged(merge("dev", ts), args.target, cache=ProofCache(cache))
            t_inc = time.perf_counter() - start
        start = time.perf_counter()
        mono = verify_merged(merge("dev", ts), args.target, monolithic=True)
        t_mono = time.perf_counter() - start
        assert inc.proven and mono.proven, "the benchmark's merges are correct"
        print(f"{n:>7} {t_inc:>14.2f} {len(inc.checked):>8} {inc.reused:>7} {t_mono:>13.2f} {t_mono / t_inc:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()

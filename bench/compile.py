"""Compile time per target: the examples and a generated 20-chain x 5-NF site.

    .venv/bin/python bench/compile.py [--chains 20] [--repeat 3]

For each input it prints the median time of each stage — front end (parse + check,
the baseline measured in the same run), lowering to DP-IR (with validation), and each
backend's emit — and each stage's ratio to the front end. A benchmark prints figures;
it never passes or fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from mantra6g.errors import MantraError
from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs
from mantra6g.targets import bmv2, tofino

ROOT = Path(__file__).resolve().parent.parent


def generate(chains: int) -> str:
    """``chains`` tenants, each with one slice and a 5-NF chain, all on one DPU."""
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


def median(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench(name: str, sources: list[SourceFile], repeat: int) -> None:
    front, specs = median(lambda: frontend.load_sources(sources), repeat)
    lower, programs = median(lambda: compile_specs(specs), repeat)
    nfs = sum(len(p.nfs) for p in programs)
    tables = sum(len(p.program.tables) for p in programs)
    row = [("front end (baseline)", front), ("lower to DP-IR", lower)]
    notes = []
    for target, emit in (("bmv2", bmv2.emit), ("tofino", tofino.emit)):
        def emit_all(emit=emit):
            return [emit(p.program) for p in programs]

        try:
            t, _ = median(emit_all, repeat)
            row.append((f"emit {target}", t))
        except MantraError as exc:
            notes.append(f"{target}: {str(exc).splitlines()[0]}")
    print(f"\n{name}: {len(programs)} device programs, {nfs} NFs, {tables} tables (median of {repeat})")
    for stage, t in row:
        print(f"  {stage:<22}{t * 1e3:>9.1f} ms{t / front:>8.2f}x")
    for n in notes:
        print(f"  not compiled: {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for path in sorted((ROOT / "examples").glob("*.sg")):
        bench(path.name, [SourceFile(str(path), path.read_text())], args.repeat)
    bench(f"generated {args.chains} chains x 5 NFs", [SourceFile("generated.sg", generate(args.chains))], args.repeat)


if __name__ == "__main__":
    main()

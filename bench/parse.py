"""Parse + check time of a generated service graph with 1000 NF instances.

    .venv/bin/python bench/parse.py [--nfs 1000] [--repeat 5]

Prints the median of several runs for each stage and, as baselines measured in the
same run on the same text, the time Lark takes only to tokenize it and to parse it in
one shot without error recovery. The ratios show what the front end adds on top of
the parser library (recovery checkpoints, AST building, semantic checks).
A benchmark prints figures; it never passes or fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.check import check_site
from mantra6g.synth.parser import _lark, parse


def generate(n_nfs: int) -> str:
    """A tenant and one graph: a classifier, then n-1 NFs of every kind in a chain,
    every tenth NF also reached through a conditional branch."""
    out = [
        "tenant bench id 1 {",
        "    slice s {",
        "        latency <= 10 ms",
        "        bandwidth >= 1 Mbps",
        "    }",
        "}",
        "graph big for bench.s {",
        "    nf nf0 = classifier() {",
        "        match ipv4.dst in 10.0.0.0/8 and udp.dport in 1000..2000",
        "    }",
    ]
    for i in range(1, n_nfs):
        k = i % 6
        if k == 0:
            out += [
                f"    nf nf{i} = firewall(default: deny) {{",
                f"        allow ipv4.src in 10.{i % 256}.0.0/16 and udp.dport == {1000 + i % 1000}",
                "        deny ipv4.proto == tcp or udp.dport in [53, 853]",
                "    }",
            ]
        elif k == 1:
            out += [
                f"    nf nf{i} = router(mac: 02:00:00:00:{i // 256 % 256:02x}:{i % 256:02x}) {{",
                f"        route 10.{i % 256}.0.0/16 via 02:00:00:00:00:01 port {i % 500}",
                f"        route 10.{i % 256}.1.0/24 via 02:00:00:00:00:02 port {(i + 1) % 500}",
                "    }",
            ]
        elif k == 2:
            out += [
                f"    nf nf{i} = load_balancer(vip: 10.200.{i // 256 % 256}.{i % 256}, hash: [ipv4.src, udp.sport]) {{",
                f"        backend 10.201.{i % 256}.1 weight 2",
                f"        backend 10.201.{i % 256}.2",
                "    }",
            ]
        elif k == 3:
            out.append(f"    nf nf{i} = tunnel(protocol: vxlan, mode: encap, vni: {i}, local: 192.0.2.1, remote: 192.0.2.2)")
        elif k == 4:
            out.append(f"    nf nf{i} = latency_monitor(role: source, sample: 1/16)")
        else:
            out.append(f"    nf nf{i} = policer(rate: 100 Mbps, burst: 64 KB, exceed: remark, dscp: af11)")
    for i in range(1, n_nfs):
        out.append(f"    nf{i - 1} -> nf{i}")
        if i % 10 == 0 and i + 5 < n_nfs:
            out.append(f"    nf{i} -> [udp.dport == {i % 65536}] nf{i + 5}")
    out.append("}")
    return "\n".join(out) + "\n"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nfs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    text = generate(args.nfs)
    lark = _lark()
    spec_ast = parse(text, "bench.sg")  # warms the grammar cache and checks the text parses
    specs = frontend.load_sources([SourceFile("bench.sg", text)])
    nfs = len(specs[0].graphs[0].nfs)

    lex = median_time(lambda: list(lark.lex(text)), args.repeat)
    plain = median_time(lambda: lark.parse(text), args.repeat)
    ours = median_time(lambda: parse(text, "bench.sg"), args.repeat)
    check = median_time(lambda: check_site([spec_ast]), args.repeat)
    total = median_time(lambda: frontend.load_sources([SourceFile("bench.sg", text)]), args.repeat)

    lines = text.count("\n")
    print(f"generated graph: {nfs} NFs, {lines} lines, {len(text) / 1024:.0f} KiB (median of {args.repeat} runs)")
    print(f"{'stage':<38}{'ms':>9}{'us/NF':>9}{'x lex':>8}")
    for name, t in [
        ("baseline: Lark tokenize only", lex),
        ("baseline: Lark one-shot LALR parse", plain),
        ("mantra parse (recovery, AST)", ours),
        ("mantra check (AST -> IR)", check),
        ("mantra parse + check", total),
    ]:
        print(f"{name:<38}{t * 1e3:>9.1f}{t / nfs * 1e6:>9.1f}{t / lex:>8.2f}")
    print(f"parse overhead over Lark's own parse: {ours / plain:.2f}x; check share of total: {check / total:.0%}")


if __name__ == "__main__":
    main()

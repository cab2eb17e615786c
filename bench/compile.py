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
from mantra6g.synth.scale import chain_site
from mantra6g.targets import bmv2, tofino

ROOT = Path(__file__).resolve().parent.parent


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
    bench(f"generated {args.chains} chains x 5 NFs", [SourceFile("generated.sg", chain_site(args.chains))], args.repeat)


if __name__ == "__main__":
    main()

"""Compile time per target: the examples and a generated 20-chain x 5-NF site, next to
the time the target's own compiler takes on the same emitted P4, in the same run.

    .venv/bin/python bench/compile.py [--chains 20] [--repeat 3] [--tool-repeat 1] [--kinds]
    PATH=/opt/p4tools/bin:$PATH .venv/bin/python bench/compile.py    # with p4c-bm2-ss, bf-p4c

For each input it prints the median time of each stage — front end (parse + check,
the baseline measured in the same run), lowering to DP-IR (with validation), and each
backend's emit — and each stage's ratio to the front end. Then, per target, Mantra's
synthesis time (front end + lowering + emit) next to the real compiler's time on the
emitted programs (``p4c-bm2-ss`` for BMv2, ``bf-p4c --target tofino --arch tna`` for
Tofino; found as ``targets/toolchain.py`` finds them: ``PATH`` or ``MANTRA_P4C``,
``MANTRA_BF_P4C``) and the ratio ours / theirs (issue 13's goal: at most 0.3). A tool
that is absent is named and skipped; a program it refuses is reported with the tool's
first error line instead of a time. ``--kinds`` adds every NF kind alone (the XDP
differential tests' graphs). A benchmark prints figures; it never passes or fails on
time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mantra6g.errors import MantraError
from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs
from mantra6g.synth.scale import chain_site
from mantra6g.targets import bmv2, tofino, toolchain
from mantra6g.targets.p4 import ident

ROOT = Path(__file__).resolve().parent.parent
GOAL = 0.3  # issue 13: our synthesis at most 0.3x the target compiler's time


def median(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


@dataclass(frozen=True)
class Backend:
    target: str
    emit: Callable
    tool: str  # the target's own compiler
    compile: Callable[[Path, Path], object]  # (P4 file, output directory), raises ToolFailed


BACKENDS = (
    Backend("bmv2", bmv2.emit, "p4c-bm2-ss", toolchain.compile_bmv2),
    Backend("tofino", tofino.emit, "bf-p4c", toolchain.compile_tofino),
)


@dataclass
class Totals:
    """Per target, over the inputs whose every emitted program the tool compiled."""

    ours: float = 0.0
    theirs: float = 0.0
    inputs: list[str] = field(default_factory=list)


def shorten(line: str, work: Path, limit: int = 200) -> str:
    line = line.replace(f"{work}/", "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def their_compile(backend: Backend, emitted: dict, work: Path, repeat: int) -> tuple[float, list[str], list[str]]:
    """The tool's median time per program, summed over the programs it compiled; the
    names of those; and "NAME: first error line" for those it refused."""
    total, compiled, refused = 0.0, [], []
    for name, out in emitted.items():
        d = work / backend.target / name
        d.mkdir(parents=True, exist_ok=True)
        for file, text in out.files.items():
            (d / file).write_text(text) if isinstance(text, str) else (d / file).write_bytes(text)
        p4 = d / f"{ident(name)}.p4"
        try:
            t, _ = median(lambda: backend.compile(p4, d / "build"), repeat)
        except toolchain.ToolFailed as exc:
            refused.append(f"{name}: {shorten(exc.first_error, d)}")
            continue
        except subprocess.TimeoutExpired as exc:
            refused.append(f"{name}: no answer within {exc.timeout:.0f} s")
            continue
        total += t
        compiled.append(name)
    return total, compiled, refused


def bench(name: str, sources: list[SourceFile], repeat: int, tool_repeat: int, work: Path,
          totals: dict[str, Totals]) -> None:
    front, specs = median(lambda: frontend.load_sources(sources), repeat)
    lower, programs = median(lambda: compile_specs(specs), repeat)
    nfs = sum(len(p.nfs) for p in programs)
    tables = sum(len(p.program.tables) for p in programs)
    row = [("front end (baseline)", front), ("lower to DP-IR", lower)]
    notes, versus = [], []
    for backend in BACKENDS:
        emitted = {}
        for p in programs:  # each device program on its own: one refused leaves the others
            try:
                emitted[p.program.name] = backend.emit(p.program)
            except MantraError as exc:
                notes.append(f"{backend.target}: {p.name}: {str(exc).splitlines()[0]}")
        if not emitted:
            versus.append(f"{backend.target:<8}Mantra emits none of the {len(programs)} programs (above)")
            continue
        accepted = [p.program for p in programs if p.program.name in emitted]
        t, _ = median(lambda: [backend.emit(q) for q in accepted], repeat)
        row.append((f"emit {backend.target}", t))
        ours = front + lower + t
        lead = f"{backend.target:<8}ours {ours * 1e3:>8.1f} ms   {backend.tool:<11}"
        if toolchain.find(backend.tool) is None:
            versus.append(f"{lead}not found: not timed (see the first line)")
            continue
        theirs, compiled, refused = their_compile(backend, emitted, work, tool_repeat)
        of = f"{len(compiled)} of {len(programs)} programs"
        if compiled:
            ratio = ours / theirs
            versus.append(f"{lead}{theirs * 1e3:>8.1f} ms ({of})   ours/theirs {ratio:.2g}x")
            if len(compiled) == len(programs):
                totals[backend.target].ours += ours
                totals[backend.target].theirs += theirs
                totals[backend.target].inputs.append(name)
        else:
            versus.append(f"{lead}compiled none ({of})")
        versus += [f"          refused {r}" for r in refused]
    print(f"\n{name}: {len(programs)} device programs, {nfs} NFs, {tables} tables (median of {repeat})")
    for stage, t in row:
        print(f"  {stage:<22}{t * 1e3:>9.1f} ms{t / front:>8.2f}x")
    for n in notes:
        print(f"  not compiled: {n}")
    print("  synthesis (front end + lower + emit) vs the target's compiler on the same P4"
          f" (median of {tool_repeat}):")
    for v in versus:
        print(f"    {v}")


def versions() -> str:
    out = []
    for backend in BACKENDS:
        path = toolchain.find(backend.tool)
        if path is None:
            out.append(str(toolchain.ToolNotFound(backend.tool)))
            continue
        try:
            said = toolchain.run([str(path), "--version"], timeout=60).strip().splitlines()
        except (MantraError, OSError):
            said = ["?"]
        out.append(f"{backend.tool} {said[-1].removeprefix('Version ')} ({path})")
    return "; ".join(out)


def kinds() -> list[tuple[str, str]]:
    """Every NF kind alone, as the XDP differential tests write them (name, .sg text)."""
    sys.path.insert(0, str(ROOT))
    from tests.synth.helpers import graph
    from tests.targets.xdp_cases import CLS, GRAPHS, TENANT

    return [(f"kind {k}", graph(CLS + g, tenant=TENANT)) for k, g in GRAPHS.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each of Mantra's stages (median)")
    ap.add_argument("--tool-repeat", type=int, default=1, help="runs of each target compiler per program (median)")
    ap.add_argument("--kinds", action="store_true", help="also every NF kind alone")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine); "
          f"{versions()}")
    inputs = [(path.name, path.read_text()) for path in sorted((ROOT / "examples").glob("*.sg"))]
    inputs.append((f"generated {args.chains} chains x 5 NFs", chain_site(args.chains)))
    if args.kinds:
        inputs += kinds()
    totals = {b.target: Totals() for b in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="mantra-bench-compile-") as tmp:
        for i, (name, text) in enumerate(inputs):
            file = name if name.endswith(".sg") else name.replace(" ", "_") + ".sg"
            bench(name, [SourceFile(file, text)], args.repeat, args.tool_repeat, Path(tmp) / f"input{i}", totals)
    print(f"\nover the inputs whose every program the target's compiler took (goal: ours <= {GOAL}x theirs):")
    for backend in BACKENDS:
        t = totals[backend.target]
        if t.inputs:
            print(f"  {backend.target:<8}{len(t.inputs):>3} inputs   ours {t.ours * 1e3:>8.1f} ms   {backend.tool:<11}"
                  f"{t.theirs * 1e3:>9.1f} ms   ours/theirs {t.ours / t.theirs:.2g}x")
        else:
            print(f"  {backend.target:<8}none ({backend.tool} absent, or it refused a program of every input)")


if __name__ == "__main__":
    main()

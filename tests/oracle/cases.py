"""The seeded corpora the targets are judged on: per NF kind, and over random chains.

    case = kind_cases()["router"][0]       # Case(name, text, frames)
    want = expected(case)                  # the reference model's verdicts, in order
    found = mismatches(case, want, run)    # run(data, port, now) -> (outputs, to_host)

Every case is one graph on one device; its packets run in order, with the clock and the
ingress port the same for the model and the target (state — LB affinity, meters,
monitor counters — carries over from packet to packet on both sides).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from mantra6g.errors import MantraError
from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs
from mantra6g.synth.dpir import Program
from mantra6g.synth.interp import State, run
from tests.oracle import chains
from tests.oracle.model import ChainModel
from tests.oracle.traffic import random_frame

PER_KIND = 10_000  # packets per NF kind, over its variants
CHAIN_PACKETS = 10_000  # packets over random chains
KIND_VARIANTS = 4
CHAIN_COUNT = 40

Verdict = tuple[list[tuple[int, bytes]], "bytes | None"]


@dataclass(eq=False)  # identity: the model's verdicts are cached per case
class Case:
    name: str  # the NF kind, or the chain's signature ("fw>lb(dsr)>rt")
    text: str  # the .sg file
    frames: list[tuple[str, bytes]]  # (class label, bytes)

    @functools.cached_property
    def spec(self):
        (spec,) = frontend.load_sources([SourceFile(f"{self.name}.sg", self.text)])
        return spec

    @functools.cached_property
    def program(self) -> Program:
        (dp,) = compile_specs([self.spec])
        return dp.program

    def running(self, program: Program) -> Case:
        """This case (its graph and frames, so the reference model's verdicts) run on
        ``program`` instead of the one it compiles to (a pass's output, other tables)."""
        other = Case(self.name, self.text, self.frames)
        other.__dict__["program"] = program  # the cached property, set
        return other


@functools.cache
def pool(tunnelled: float, size: int = 12_000) -> tuple[tuple[str, bytes], ...]:
    """Distinct random frames the cases draw from (scapy builds ~1000 frames/s: one pool
    for every case keeps the corpus large and the suite quick)."""
    rng = random.Random(f"oracle-pool-{tunnelled}")
    return tuple(random_frame(rng, tunnelled) for _ in range(size))


def draw(rng: random.Random, n: int, tunnelled: float = 0.13) -> list[tuple[str, bytes]]:
    return rng.choices(pool(tunnelled, 12_000 if tunnelled < 0.5 else 4_000), k=n)


def clock(i: int) -> tuple[int, int]:
    """(ingress port, now in ns) of a case's i-th packet."""
    return 1 + i % 3, 1_000_000 + i * 37_000


def graph_text(nfs: list[str], edges: str, classifier: str = chains.CLASSIFIERS[1]) -> str:
    body = "\n".join([f"nf cls = classifier() {{\n    match {classifier}\n}}", *nfs, edges])
    return chains.TENANT + "graph g for acme.gold {\n" + "\n".join("    " + ln for ln in body.splitlines()) + "\n}\n"


@functools.cache
def kind_cases() -> dict[str, list[Case]]:
    """``KIND_VARIANTS`` graphs per NF kind, each with its share of ``PER_KIND`` frames."""
    out: dict[str, list[Case]] = {}
    n = PER_KIND // KIND_VARIANTS
    for kind in ("classifier", *chains.KINDS):
        rng = random.Random(f"oracle-kind-{kind}")
        cases = []
        for v in range(KIND_VARIANTS):
            if kind == "classifier":
                text = graph_text(["nf n0 = firewall(default: allow)"], "cls -> n0",
                                  chains.CLASSIFIERS[v % len(chains.CLASSIFIERS)])
            elif kind == "tunnel":  # each protocol and direction, whatever the seed draws
                text = graph_text([f"nf n0 = {chains.TUNNELS[v]}"], "cls -> n0")
            elif kind == "latency_monitor":
                text = graph_text([f"nf n0 = latency_monitor(role: source, sample: 1/{1 << v})",
                                   "nf n1 = latency_monitor(role: sink, buckets: [10us, 1ms])"],
                                  "cls -> n0 -> n1" if v % 2 else "cls -> n0 -> [udp.dport == 53] n1")
            else:
                decl, _ = chains.KINDS[kind](rng)
                text = graph_text([f"nf n0 = {decl}"], "cls -> n0")
            frames = draw(rng, n, 0.6 if "decap" in text else 0.13)
            cases.append(Case(f"{kind}#{v}", text, frames))
        out[kind] = cases
    return out


@functools.cache
def chain_cases(kinds: tuple[str, ...] | None = None, count: int = CHAIN_COUNT) -> list[Case]:
    """``count`` random chains of 1–5 NFs of ``kinds`` (default: every kind) over
    ``CHAIN_PACKETS`` frames."""
    rng = random.Random("oracle-chains" + (f"-{'-'.join(kinds)}" if kinds else ""))
    out = []
    while len(out) < count:
        text, sig = chains.random_graph(rng, kinds)
        case = Case(sig, text, draw(rng, CHAIN_PACKETS // count))
        try:
            case.spec
        except MantraError:  # e.g. two encapsulations in a row: mantra check refuses it
            continue
        out.append(case)
    return out


@functools.cache
def _expected(case: Case) -> tuple[Verdict, ...]:
    model = ChainModel(case.spec.graphs[0])
    out = []
    for i, (_, data) in enumerate(case.frames):
        port, now = clock(i)
        out.append(model.run(data, port, now))
    return tuple(out)


def expected(case: Case) -> tuple[Verdict, ...]:
    """The reference model's verdict for every frame of ``case``, in order."""
    return _expected(case)


def mismatches(case: Case, run: Callable[[bytes, int, int], Verdict]) -> list[str]:
    """Every frame on which ``run`` (a target) disagrees with the reference model,
    described so that it can be replayed: the graph, the frame's class and bytes."""
    found = []
    for i, ((label, data), want) in enumerate(zip(case.frames, expected(case))):
        port, now = clock(i)
        got = run(data, port, now)
        if got != want:
            found.append(
                f"{case.name}, frame {i} ({label}), port {port}, now {now}:\n    {data.hex()}\n"
                f"    reference {_show(want)}\n    target    {_show(got)}"
            )
    return found


def _show(v: Verdict) -> str:
    outputs, host = v
    parts = [f"port {p}: {b.hex()}" for p, b in outputs] + ([f"host: {host.hex()}"] if host is not None else [])
    return "; ".join(parts) or "dropped"


def coverage(cases: list[Case]) -> set[tuple[str, str]]:
    """Distinct (chain, packet class) pairs the cases cover."""
    return {(c.name.partition("#")[0], label) for c in cases for label, _ in c.frames}


# ---------------------------------------------------------------- judging a target


def interpreter(case: Case):
    state = State.initial(case.program)

    def go(data: bytes, port: int, now: int):
        r = run(case.program, data, port, now, state)
        return r.outputs, r.to_host

    return go


def judge(cases: list[Case], target) -> None:
    """Every frame of ``cases`` through ``target(case)`` (a context manager that gives
    ``run(data, port, now) -> Verdict``: :class:`Interp`, :class:`Xdp`), against the
    reference model; fails listing the frames that differ."""
    found: list[str] = []
    for case in cases:
        with target(case) as go:
            bad = mismatches(case, go)
        if bad:
            found.append(f"{len(bad)} of {len(case.frames)} frames differ on\n{case.text}\n  " + "\n  ".join(bad[:3]))
    assert not found, "\n\n".join(found)


class Interp:
    """The interpreter (synth/interp.py), its state carried from frame to frame."""

    def __init__(self, case):
        self.go = interpreter(case)

    def __enter__(self):
        return self.go

    def __exit__(self, *exc):
        return False


class Xdp:
    """The case's program compiled with clang and run in the kernel (BPF_PROG_TEST_RUN)."""

    def __init__(self, case, work):
        from mantra6g.targets.xdp import KernelProgram

        self.k = KernelProgram(case.program, work / case.name.replace(">", "_").replace("#", "_"))

    def __enter__(self):
        return self.k.run_full

    def __exit__(self, *exc):
        self.k.close()
        return False

"""Every target that runs here, judged by the reference model (tests/oracle/model.py:
the RFCs and docs/nf/*.md with scapy doing parsing, lengths and checksums), not by
another implementation of Mantra's: the interpreter, XDP in the kernel through
BPF_PROG_TEST_RUN, and BMv2 (p4c-bm2-ss, simple_switch; tests/oracle/bmv2.py) where
it is installed.

≥10,000 frames per NF kind and ≥10,000 over random chains of 1–5 NFs, of the classes
real links carry (tests/oracle/traffic.py). A disagreement fails with the graph and the
frame printed; add it to tests/oracle/regressions.txt once understood.
"""

from __future__ import annotations

import pytest

from mantra6g.synth.motion import hoist
from tests.oracle import bmv2
from tests.oracle.cases import Case, Interp, Xdp, chain_cases, coverage, judge, kind_cases

KINDS = list(kind_cases())


@pytest.mark.parametrize("kind", KINDS)
def test_interpreter_agrees_with_the_reference_on_every_kind(kind):
    cases = kind_cases()[kind]
    assert sum(len(c.frames) for c in cases) >= 10_000
    judge(cases, Interp)


def test_interpreter_agrees_with_the_reference_on_random_chains():
    cases = chain_cases()
    covered = coverage(cases)
    print(f"\n{sum(len(c.frames) for c in cases)} frames over {len(cases)} chains: "
          f"{len(covered)} distinct (chain, frame class) combinations")
    judge(cases, Interp)


def hoisted(cases: list[Case]) -> list[Case]:
    """The cases whose program hoisting changes (synth/motion.py, which the TNA backend
    applies), running the hoisted program."""
    out = []
    for case in cases:
        program = hoist(case.program)
        if program != case.program:
            out.append(case.running(program))
    return out


def test_hoisted_programs_agree_with_the_reference():
    """Hoisting moves guarded work out of its ifs; the reference model judges the moved
    programs, run by the interpreter (TNA output cannot run here; a hoisted hash may read
    a header that is not valid, whose value nothing then uses, which the DP-IR validator,
    and so the BMv2 and XDP backends, refuse)."""
    cases = hoisted([c for k in KINDS for c in kind_cases()[k]] + chain_cases())
    assert any(c.name.startswith("load_balancer#") for c in cases), "hoisting no longer moves the load balancer's hashes"
    print(f"\n{sum(len(c.frames) for c in cases)} frames over {len(cases)} hoisted programs")
    judge(cases, Interp)


@pytest.mark.root
@pytest.mark.parametrize("kind", KINDS)
def test_xdp_in_the_kernel_agrees_with_the_reference_on_every_kind(kind, tmp_path):
    judge(kind_cases()[kind], lambda case: Xdp(case, tmp_path))


@pytest.mark.root
def test_xdp_in_the_kernel_agrees_with_the_reference_on_random_chains(tmp_path):
    judge(chain_cases(), lambda case: Xdp(case, tmp_path))


NO_BMV2 = bmv2.missing()
# BMv2's clock is the host's: the kinds whose output depends on time are judged on the
# interpreter and XDP above, with the model's clock.
TIMELESS_KINDS = [k for k in KINDS if k not in ("policer", "latency_monitor")]


@pytest.mark.skipif(NO_BMV2 is not None, reason=NO_BMV2 or "")
@pytest.mark.parametrize("kind", TIMELESS_KINDS)
def test_bmv2_agrees_with_the_reference_on_every_kind(kind, tmp_path):
    cases = kind_cases()[kind]
    assert all(bmv2.timeless(c.program) for c in cases)
    assert sum(len(c.frames) for c in cases) >= 10_000
    found = bmv2.judge(cases, tmp_path)
    assert not found, "\n".join(found[:5])


@pytest.mark.skipif(NO_BMV2 is not None, reason=NO_BMV2 or "")
def test_bmv2_agrees_with_the_reference_on_random_chains(tmp_path):
    # Chains of the timeless kinds: fewer, longer cases than the interpreter's corpus,
    # since each one is a p4c compile and a switch start.
    cases = chain_cases(tuple(TIMELESS_KINDS[1:]), count=20)  # [0] is the classifier, in every chain
    assert all(bmv2.timeless(c.program) for c in cases)
    print(f"\n{sum(len(c.frames) for c in cases)} frames over {len(cases)} chains: {len(coverage(cases))} "
          f"distinct (chain, frame class) combinations")
    found = bmv2.judge(cases, tmp_path)
    assert not found, "\n".join(found[:5])


NO_GRPC = NO_BMV2 or (None if bmv2.toolchain.find("simple_switch_grpc") else "simple_switch_grpc not found (BMv2 with PI)")


@pytest.mark.skipif(NO_GRPC is not None, reason=NO_GRPC or "")
@pytest.mark.parametrize("kind", ["router", "load_balancer"])
def test_bmv2_over_p4runtime_agrees_with_the_reference(kind, tmp_path):
    """The pipeline, entries and meter configs go in over P4Runtime (finsy, into
    simple_switch_grpc) instead of the CLI: the router's LPM and the load balancer's
    Maglev and backend tables, judged by the reference model."""
    found = bmv2.judge(kind_cases()[kind], tmp_path, p4runtime=True)
    assert not found, "\n".join(found[:5])

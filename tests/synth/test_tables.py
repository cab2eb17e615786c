"""Const tables compiled into decision trees (synth/tables.py).

Consistency: the interpreter gives the same outputs for a program and for the program
with its const tables replaced by their trees, on every NF kind's corpus and on mutated
packets. Correctness of the trees in the kernel is judged against the scapy reference
model in tests/targets/test_xdp.py and tests/oracle (every table mode)."""

from __future__ import annotations

import random

import pytest

from mantra6g.synth.interp import State, run
from mantra6g.synth.tables import TABLE_MODES, inline_const_tables, with_tables
from tests.targets.xdp_cases import GRAPHS, corpus, fuzz_base, mutate, program


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_decision_trees_do_what_the_tables_do(kind):
    p = with_tables(program(kind), "const")
    q = inline_const_tables(p)
    assert {t.name for t in q.tables} < {t.name for t in p.tables} or not p.tables
    rng = random.Random(f"trees-{kind}")
    packets = corpus() + [mutate(rng, fuzz_base(kind)) for _ in range(60)]
    sp, sq = State.initial(p), State.initial(q)
    for i, data in enumerate(packets):
        now, port = 1_000_000 + i * 50_000, 1 + i % 3
        assert run(p, data, port, now, sp).outputs == run(q, data, port, now, sq).outputs, data.hex()


def test_runtime_tables_stay_tables_and_the_mode_is_checked():
    p = with_tables(program("firewall"), "runtime")
    assert inline_const_tables(p) == p
    assert with_tables(p, "declared") == p and set(TABLE_MODES) == {"declared", "const", "runtime"}
    with pytest.raises(ValueError, match="table mode 'fast'"):
        with_tables(p, "fast")

"""Sinking metadata computations into the one branch that reads them (synth/sink.py),
which the XDP backend applies. Consistency checks of the transformation; that it keeps
behaviour is judged where it runs: the XDP programs in the kernel against the RFC
reference model (tests/oracle/test_targets.py, tests/targets/test_xdp.py)."""

from __future__ import annotations

from mantra6g.synth import dpir
from mantra6g.synth.dpir import Action, ActionCall, Apply, Assign, BinOp, Const, Hash, If, IsValid, MetaField, Ref, Table, TableKey
from mantra6g.synth.sink import sink
from tests.synth.test_dpir import router

META = (MetaField("slot", 8), MetaField("chosen", 8), MetaField("backend", 8), MetaField("dead", 8))


def program(*control):
    pick = Action("pick", (dpir.ActionParam("id", 8),), (Assign("meta.chosen", Ref("param.id")),))
    maglev = Table("maglev", (TableKey("meta.slot", "exact"),), ("pick",), ActionCall("pick", (0,)), 16)
    base = router()
    return router(name="sink", metadata=META, actions=(pick, *base.actions),
                  tables=(maglev, *base.tables), control=control)


SLOT = Hash("meta.slot", (Ref("ipv4.src"),), 13)
NEW = BinOp("==", Ref("meta.backend"), Const(0, 8))
USE = If(NEW, (Assign("meta.backend", Ref("meta.chosen")),))


def test_a_lookup_only_a_branch_reads_moves_into_it():
    p = program(SLOT, Apply("maglev"), Assign("meta.backend", Ref("ipv4.ttl")), USE, Apply("fib"))
    control = sink(p).control
    assert control[0] == Assign("meta.backend", Ref("ipv4.ttl"))
    assert control[1] == If(NEW, (SLOT, Apply("maglev"), USE.then[0]))


def test_what_is_read_elsewhere_or_changed_in_between_stays():
    read_later = program(SLOT, Apply("maglev"), USE, Assign("meta.dead", Ref("meta.chosen")), Apply("fib"))
    assert sink(read_later).control == read_later.control
    rewritten = program(SLOT, Apply("maglev"), Assign("ipv4.src", Const(1, 32)), USE, Apply("fib"))
    assert sink(rewritten).control[0] == SLOT  # the hash read ipv4.src before it changed
    popped = program(SLOT, Apply("maglev"), dpir.SetInvalid("udp"), USE, Apply("fib"))
    assert sink(popped).control[0] == SLOT  # a header change in between
    dead = program(Assign("meta.dead", Const(1, 8)), If(IsValid("ipv4"), (Apply("fib"),)))
    assert sink(dead).control == dead.control  # a store nothing reads is left alone

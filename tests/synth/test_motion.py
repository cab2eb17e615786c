"""Code motion (synth/motion.py): sinking metadata computations into the one branch that
reads them, which the XDP backend applies, and hoisting them out of the branches, which
the TNA backend applies. Consistency checks of the transformations; that they keep
behaviour is judged by the RFC reference model: the XDP programs in the kernel
(tests/oracle/test_targets.py, tests/targets/test_xdp.py), and the hoisted programs on
the interpreter (test_hoisted_programs_agree_with_the_reference)."""

from __future__ import annotations

from mantra6g.synth import dpir
from mantra6g.synth.dpir import Action, ActionCall, Apply, Assign, BinOp, Const, Hash, If, IsValid, MetaField, Ref, Table, TableKey
from mantra6g.synth.motion import hoist, sink
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


GUARD = BinOp("==", Ref("meta.backend"), Const(1, 8))
VALID = IsValid("ipv4")


def test_a_hash_and_lookup_under_nested_ifs_move_out_of_both():
    inner = If(VALID, (SLOT, Apply("maglev"), Assign("meta.backend", Ref("meta.chosen"))))
    p = program(If(GUARD, (inner,)), Apply("fib"))
    control = hoist(p).control
    assert control[:2] == (SLOT, Apply("maglev"))
    assert control[2] == If(GUARD, (If(VALID, (Assign("meta.backend", Ref("meta.chosen")),)),))


def test_what_the_other_paths_read_or_the_branch_changes_first_stays():
    read_after = program(If(VALID, (SLOT, Apply("maglev"))), Assign("meta.dead", Ref("meta.slot")), Apply("fib"))
    assert hoist(read_after).control == read_after.control
    input_set = program(If(VALID, (Assign("ipv4.src", Const(1, 32)), SLOT, Apply("maglev"))), Apply("fib"))
    assert hoist(input_set).control == input_set.control
    in_condition = program(If(BinOp("==", Ref("meta.slot"), Const(0, 8)), (SLOT, Apply("maglev"))), Apply("fib"))
    assert hoist(in_condition).control == in_condition.control
    dead = program(If(VALID, (Assign("meta.dead", Const(1, 8)),)), Apply("fib"))
    assert hoist(dead).control == dead.control  # nothing reads it: no reason to move

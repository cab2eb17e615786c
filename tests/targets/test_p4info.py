"""Our P4Info (targets/p4info.py) against p4c.

Oracles: p4c's own published P4Info outputs (the ids and aliases below are copied from
``testdata/p4_16_samples_outputs/flowlet_switching-bmv2.p4.p4info.txtpb`` of p4lang/p4c
v1.2.5.16, which p4c's CI regenerates with the real compiler), and, where it is
installed, ``p4c-bm2-ss --p4runtime-files`` on every example program and every
hand-written DP-IR program, compared field by field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs
from mantra6g.targets import bmv2, p4info, toolchain
from mantra6g.targets.p4 import ident
from tests.conftest import EXAMPLES
from tests.targets.programs import PROGRAMS

NO_P4C = "p4c-bm2-ss not on PATH (not installable here: build p4c outside the repository); set MANTRA_P4C to run"

# name -> id, from p4c's flowlet_switching-bmv2 P4Info (tables 0x02, actions 0x01, registers 0x16).
P4C_IDS = {
    (p4info.TABLE, "ingress.ecmp_group"): 38446407,
    (p4info.TABLE, "ingress.ecmp_nhop"): 41627831,
    (p4info.TABLE, "egress.send_frame"): 49367184,
    (p4info.ACTION, "NoAction"): 21257015,
    (p4info.ACTION, "ingress._drop"): 19344232,
    (p4info.ACTION, "ingress.set_nhop"): 29239084,
    (p4info.ACTION, "egress._drop"): 25850727,
    (p4info.REGISTER, "ingress.flowlet_id"): 384519412,
    (p4info.REGISTER, "ingress.flowlet_lasttime"): 375147533,
}


def test_ids_are_the_ones_p4c_assigns():
    symbols: dict[int, list[str]] = {}
    for prefix, name in P4C_IDS:
        symbols.setdefault(prefix, []).append(name)
    assert p4info.allocate_ids(symbols) == P4C_IDS


def test_aliases_are_the_shortest_unique_suffix_as_p4c_writes_them():
    # p4c: "ingress._drop" keeps its control because "egress._drop" exists too.
    got = p4info.aliases(name for _, name in P4C_IDS)
    assert got["ingress._drop"] == "ingress._drop" and got["egress._drop"] == "egress._drop"
    assert got["ingress.set_nhop"] == "set_nhop" and got["NoAction"] == "NoAction"


def test_colliding_hashes_probe_upwards_in_name_order():
    """Two names whose hashes agree in the low 24 bits: the one sorting first keeps its
    hash, the other takes the next free id (p4c's linear probing over sorted names)."""
    seen: dict[int, str] = {}
    for i in range(1 << 16):
        name = f"MantraIngress.t{i}"
        low = p4info.jenkins_hash(name) & 0xFFFFFF
        if low in seen:
            a, b = sorted((seen[low], name))
            break
        seen[low] = name
    else:  # pragma: no cover - 65536 names always collide in 24 bits
        pytest.fail("no collision found")
    ids = p4info.allocate_ids({p4info.TABLE: [b, a]})
    base = (p4info.TABLE << 24) | low
    assert ids[(p4info.TABLE, a)] == base and ids[(p4info.TABLE, b)] == base + 1


def test_an_id_annotation_gets_the_type_prefix_and_a_wrong_prefix_is_refused():
    ids = p4info.allocate_ids({p4info.TABLE: ["c.t", "c.u"]}, {"c.t": 7})
    assert ids[(p4info.TABLE, "c.t")] == 0x02000007
    with pytest.raises(p4info.P4InfoError, match="wrong 8-bit prefix"):
        p4info.allocate_ids({p4info.TABLE: ["c.t"]}, {"c.t": 0x01000007})
    with pytest.raises(p4info.P4InfoError, match="multiple declarations"):
        p4info.allocate_ids({p4info.TABLE: ["c.t", "c.u"]}, {"c.t": 1, "c.u": 0x02000001})


def example_programs():
    out = {}
    for path in EXAMPLES:
        for dp in compile_specs(frontend.load([path])):
            out[f"{path.stem}:{dp.name}"] = dp.program
    return out


ALL = {**example_programs(), **{name: make() for name, make in PROGRAMS.items()}}


@pytest.mark.parametrize("name", sorted(ALL))
def test_p4info_names_what_the_emitted_p4_declares(name):
    """Consistency: every table, action, extern and parameter in the P4Info is
    declared in the P4 the v1model backend prints, text and binary agree, and every
    runtime entry in entries.json resolves against it."""
    p = ALL[name]
    info = p4info.p4info(p)
    assert p4info.parse_text(p4info.text(info)) == info
    assert type(info).FromString(p4info.binary(info)) == info
    out = bmv2.emit(p).files
    assert p4info.parse_text(out[f"{ident(p.name)}.p4info.txtpb"]) == info
    p4 = out[f"{ident(p.name)}.p4"]
    for t in info.tables:
        assert re.search(rf"^\s*table {re.escape(t.preamble.alias)} {{", p4, re.M), t.preamble.name
    for a in info.actions:
        assert re.search(rf"^\s*action {re.escape(a.preamble.alias)}\(", p4, re.M), a.preamble.name
    for r in (*info.registers, *info.counters, *info.meters):
        assert re.search(rf"\) {re.escape(r.preamble.alias)};", p4), r.preamble.name
    ids = [e.preamble.id for kind in (info.tables, info.actions, info.registers, info.counters, info.meters) for e in kind]
    assert len(ids) == len(set(ids))
    tables = {t.preamble.name: t for t in info.tables}
    actions = {a.preamble.name: a for a in info.actions}
    for t in json.loads(out[f"{ident(p.name)}.entries.json"])["tables"]:
        fields = {m.name for m in tables[t["table"]].match_fields}
        refs = {r.id for r in tables[t["table"]].action_refs}
        for e in t["entries"]:
            assert {m["field"] for m in e["match"]} <= fields
            assert actions[e["action"]].preamble.id in refs
            assert set(e["params"]) == {prm.name for prm in actions[e["action"]].params}


def differences(ours, theirs) -> list[str]:
    """Field-by-field differences between two P4Info messages, entities matched by name."""
    out = []
    if ours.pkg_info != theirs.pkg_info:
        out.append(f"pkg_info: ours {ours.pkg_info} p4c {theirs.pkg_info}")
    for kind in ("tables", "actions", "counters", "meters", "registers", "direct_counters", "direct_meters",
                 "action_profiles", "digests", "value_sets", "controller_packet_metadata"):
        a = {e.preamble.name: e for e in getattr(ours, kind)}
        b = {e.preamble.name: e for e in getattr(theirs, kind)}
        for name in sorted(a.keys() | b.keys()):
            if name not in b:
                out.append(f"{kind} {name}: only in ours")
            elif name not in a:
                out.append(f"{kind} {name}: only in p4c's")
            elif a[name] != b[name]:
                out.append(f"{kind} {name}:\n--- ours\n{a[name]}--- p4c\n{b[name]}")
        if [e.preamble.name for e in getattr(ours, kind)] != [e.preamble.name for e in getattr(theirs, kind)] and not out:
            out.append(f"{kind}: same entries, different order")
    if ours.HasField("type_info") != theirs.HasField("type_info") or ours.type_info != theirs.type_info:
        out.append(f"type_info: ours {ours.HasField('type_info')} p4c {theirs.HasField('type_info')}")
    return out


@pytest.mark.skipif(toolchain.find("p4c-bm2-ss") is None, reason=NO_P4C)
@pytest.mark.parametrize("name", sorted(ALL))
def test_p4info_equals_p4c_bm2_ss_field_by_field(tmp_path: Path, name):
    p = ALL[name]
    stem = ident(p.name)
    for fname, data in bmv2.emit(p).files.items():
        (tmp_path / fname).write_text(data)
    build = toolchain.compile_bmv2(tmp_path / f"{stem}.p4", tmp_path / "p4c")
    theirs = p4info.parse_text(build.p4info.read_text())
    ours = p4info.p4info(p)
    assert differences(ours, theirs) == []
    assert p4info.binary(ours) == p4info.binary(theirs)  # same order too: byte for byte

"""v1model backend: every program parses and resolves, the DP-IR mappings are the
documented ones, and the control-plane files agree with the DP-IR entries."""

from __future__ import annotations

import json

import pytest

from mantra6g.synth import dpir
from mantra6g.synth.dpir import Apply, Program, Table
from mantra6g.targets import bmv2, p4check
from mantra6g.targets.p4 import P4BackendError, ident
from tests.targets.programs import PROGRAMS, acl, load_balancer, stateful, tunnel, wrapped


def p4_text(p: Program) -> str:
    return bmv2.emit(p).files[f"{ident(p.name)}.p4"]


def ingress_apply(text: str) -> str:
    return text[text.index("    apply {", text.index("control MantraIngress")) :]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_every_program_parses_and_resolves(name):
    out = bmv2.emit(PROGRAMS[name]())
    assert set(out.files) == {f"{name}.p4", f"{name}.p4info.txtpb", f"{name}.entries.json", f"{name}.commands.txt",
                              f"{name}.p4rt.py"}
    p4check.check(out.files[f"{name}.p4"])
    compile(out.files[f"{name}.p4rt.py"], f"{name}.p4rt.py", "exec")  # valid Python


def test_packets_never_forwarded_are_dropped_explicitly():
    text = ingress_apply(p4_text(PROGRAMS["router"]()))
    # the program runs only on well-parsed packets, then the epilogue decides
    assert "if (standard_metadata.parser_error == error.NoError) {" in text
    assert (
        "if (meta.std.drop == 1w1 || meta.std.forwarded == 1w0 || "
        "standard_metadata.parser_error != error.NoError) {\n            mark_to_drop(standard_metadata);"
    ) in text
    assert "standard_metadata.egress_spec = meta.std.egress_port;" in text


def test_hash_is_v1model_crc32_with_base_and_size():
    text = p4_text(load_balancer())
    assert (
        "hash(meta.bucket, HashAlgorithm.crc32, 9w1, {hdr.ipv4.src, hdr.ipv4.dst, hdr.ipv4.proto, "
        "hdr.udp.sport, hdr.udp.dport}, 32w7);"
    ) in text
    # a comparison assigned to a bit<1> field is cast; a 1-bit field in a condition is tested
    assert "meta.flag = (bit<1>)(hdr.udp.dport == 16w5000);" in text
    assert "if ((meta.flag != 0) || !hdr.tcp.isValid()) {" in text


def test_externs_registers_counters_meters_and_timestamps():
    text = p4_text(stateful())
    assert "register<bit<8>>(32w4) last_ttl;" in text
    assert "counter(32w4, CounterType.packets_and_bytes) pkts;" in text
    assert "meter(32w1, MeterType.bytes) m;" in text
    assert "pkts.count(32w2);" in text
    # a 9-bit index into 4 cells wraps as the interpreter does
    assert "last_ttl.write((bit<32>)meta.slot & 32w3, hdr.ipv4.ttl);" in text
    assert "port_of.read(meta.port, 32w1);" in text
    assert "m.execute_meter(32w0, meta.colour);" in text
    # µs on BMv2, ns in DP-IR
    assert "meta.ts = (bit<64>)standard_metadata.ingress_global_timestamp * 64w1000;" in text
    # an action named like a P4 keyword is renamed, in the P4 and the control plane
    assert "action out_(bit<9> port)" in text and "out_(9w1);" in text


def test_indices_wrap_into_externs_of_any_size_without_run_time_modulo():
    """p4c evaluates ``%`` only at compile time (p4test and p4c-bm2-ss refuse ``x % 32w7``):
    a wide index into a 7-cell register or a 6-cell counter wraps through BMv2's hash
    extern (identity, modulo the size). Tool-gated, BMv2 runs it like the interpreter
    (test_tools.py, ``wrapped``)."""
    text = p4_text(wrapped())
    assert " % " not in text
    assert ("hash(meta.std.index, HashAlgorithm.identity, 32w0, {(bit<32>)hdr.ipv4.ttl}, 32w7);\n"
            "                ttl_of.write(meta.std.index, hdr.ipv4.ttl);") in text
    assert "hash(meta.std.index, HashAlgorithm.identity, 32w0, {(bit<32>)hdr.udp.sport}, 32w6);" in text
    assert "bit<32> index;" in text and "bit<32> index;" not in p4_text(stateful())  # only where needed


def test_meters_are_configured_so_yellow_never_happens():
    out = bmv2.emit(stateful())
    # 8000 bit/s = 1000 B/s = 0.001 B/µs; CIR = PIR and CBS = PBS
    assert out.files["stateful.commands.txt"] == "meter_set_rates MantraIngress.m 0 0.001:100 0.001:100\n"
    script = out.files["stateful.p4rt.py"]
    assert "config=fy.P4MeterConfig(**{'cir': 1000, 'cburst': 100, 'pir': 1000, 'pburst': 100})" in script
    meters = json.loads(out.files["stateful.entries.json"])["meters"]
    assert meters == [{"meter": "MantraIngress.m", "index": 0, "rate_bps": 8000, "burst_bytes": 100}]


def test_checksums_are_ingress_arithmetic_and_nothing_is_summed_at_deparse():
    """Consistency: DP-IR's OnesSum is added up in 32 bits and folded twice, in the
    ingress, right before the checksum it makes; the compute-checksum control is empty
    (BMv2 in the loop is the correctness check, tests/targets/test_bmv2_run.py)."""
    text = p4_text(tunnel())
    compute = text[text.index("control MantraComputeChecksum") : text.index("control MantraDeparser")]
    assert "update_checksum" not in compute
    ingress = text[text.index("control MantraIngress") : text.index("control MantraEgress")]
    total = ingress.index("meta.std.csum = (bit<32>)")
    fold = "meta.std.csum = (meta.std.csum & 32w0xffff) + (meta.std.csum >> 16);"
    assert ingress.index(fold, total) < ingress.index("hdr.outer_ipv4.checksum = ~(bit<16>)meta.std.csum;", total)
    assert ingress.count(fold) == 2
    # pushes zero the new header; CopyHeader is a header assignment
    assert "hdr.outer_ipv4.setValid();\n        hdr.outer_ipv4.version = 0;" in text
    assert "hdr.outer_eth = hdr.eth;" in text
    assert "hdr.tcp.setInvalid();" in text
    # deparser emits in DP-IR's deparse order
    emits = [line.strip() for line in text.splitlines() if line.strip().startswith("pkt.emit(")]
    assert emits == [f"pkt.emit(hdr.{h});" for h in tunnel().deparse]


def test_const_entries_best_first_with_validity_and_range_keys():
    text = p4_text(acl())
    table = text[text.index("table acl {") :]
    table = table[: table.index("\n    }\n") + 6]
    assert "hdr.tcp.isValid(): exact @name(\"tcp_valid\");" in table
    assert "const default_action = deny();" in table
    entries = [line.strip() for line in table.splitlines() if line.strip().startswith("(")]
    assert entries == [
        "(true, 16w22 &&& 16w0xffff, _, _): deny();",
        "(true, _, 32w0xa090000 &&& 32w0xffff0000, 8w2 .. 8w255): allow(1w1);",
        "(false, _, _, 8w0 .. 8w255): allow(1w0);",
    ]


def test_runtime_entries_cli_p4runtime_and_json_agree():
    out = bmv2.emit(acl())
    cli = out.files["acl.commands.txt"].splitlines()
    # the LPM+exact table needs no priority; longest prefix first
    assert cli == [
        "table_add MantraIngress.fib MantraIngress.route 0xa020000/16 0x1 => 0x6",
        "table_add MantraIngress.fib MantraIngress.route 0xa000000/8 0x1 => 0x5",
        "table_add MantraIngress.fib MantraIngress.route 0x0/0 0x0 => 0x2",
    ]
    doc = json.loads(out.files["acl.entries.json"])
    (fib,) = doc["tables"]  # the const acl table is in the P4, not here
    assert fib["table"] == "MantraIngress.fib"
    assert fib["entries"][0] == {
        "match": [{"field": "ipv4_dst", "lpm": [0x0A020000, 16]}, {"field": "meta_class", "exact": 1}],
        "action": "MantraIngress.route",
        "params": {"port": 6},
    }
    script = out.files["acl.p4rt.py"]
    assert "match=fy.P4TableMatch({'ipv4_dst': (167903232, 16), 'meta_class': 1})" in script
    assert "priority=0)" in script and "priority=1" not in script  # LPM/exact: no priority


def test_runtime_ternary_entries_get_opposite_cli_and_p4runtime_priorities():
    p = acl()
    runtime_acl = Table(**{**p.table("acl").__dict__, "const": False})
    p = Program(**{**p.__dict__, "tables": (runtime_acl, p.table("fib"))})
    out = bmv2.emit(p)
    cli = [line for line in out.files["acl.commands.txt"].splitlines() if " MantraIngress.acl " in line]
    # BMv2's CLI: the smallest priority wins; best entry (DP-IR priority 20) gets 1
    assert cli[0] == "table_add MantraIngress.acl MantraIngress.deny 0x1 0x16&&&0xffff 0x0&&&0x0 0x0->0xff => 1"
    assert [line.rsplit(" ", 1)[1] for line in cli] == ["1", "2", "3"]
    doc = json.loads(out.files["acl.entries.json"])
    acl_entries = next(t for t in doc["tables"] if t["table"] == "MantraIngress.acl")["entries"]
    # P4Runtime: the highest priority wins
    assert [e["priority"] for e in acl_entries] == [3, 2, 1]
    assert [e["action"] for e in acl_entries] == ["MantraIngress.deny", "MantraIngress.allow", "MantraIngress.allow"]
    assert "action=fy.P4TableAction('MantraIngress.deny'), priority=3)" in out.files["acl.p4rt.py"]


def test_summary_counts_tables_entries_and_externs():
    s = bmv2.emit(stateful()).summary
    assert (s.target, s.tables, s.registers, s.counters, s.meters) == (
        "bmv2", (), ("last_ttl", "port_of", "last_seen"), ("pkts",), ("m",)
    )
    assert any("microseconds" in n for n in s.notes)
    s = bmv2.emit(acl()).summary
    assert [(t.name, t.entries, t.const) for t in s.tables] == [("acl", 3, True), ("fib", 3, False)]
    assert s.entries == 6
    assert "const table acl" in s.render()


def test_ill_formed_or_inexpressible_programs_are_rejected():
    p = acl()
    with pytest.raises(dpir_check_error()):
        bmv2.emit(Program(**{**p.__dict__, "control": (Apply("nope"),)}))
    inner_apply = dpir.Action("bad", (), (Apply("fib"),))
    with pytest.raises(P4BackendError, match="cannot apply table 'fib' inside an action"):
        bmv2.emit(Program(**{**p.__dict__, "actions": p.actions + (inner_apply,)}))


def dpir_check_error():
    from mantra6g.synth.dpir_check import DpirError

    return DpirError


def test_every_example_program_emits_parses_and_resolves():
    from tests.targets.programs import example_programs

    programs = example_programs()
    assert len(programs) >= 4  # every example file yields at least one device program
    for label, p in programs:
        out = bmv2.emit(p)
        try:
            p4check.check(out.files[f"{ident(p.name)}.p4"])
        except p4check.P4CheckError as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{label}: {exc}") from None
        json.loads(out.files[f"{ident(p.name)}.entries.json"])
        compile(out.files[f"{ident(p.name)}.p4rt.py"], label, "exec")

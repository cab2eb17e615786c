"""TNA backend and the Tofino-1 resource model."""

from __future__ import annotations

import random
import re
import zlib

import pytest

from mantra6g.synth import checksums, dpir
from mantra6g.synth.dpir import (
    Action,
    ActionCall,
    ActionParam,
    Apply,
    Assign,
    Cast,
    Const,
    IsValid,
    Program,
    Ref,
    RegisterWrite,
    Table,
    TableKey,
)
from mantra6g.targets import p4check, tofino
from mantra6g.targets.p4 import P4BackendError
from mantra6g.targets.tofino_resources import STAGES, TofinoResourceError
from tests.synth.test_dpir import router
from tests.targets.corpus import emitted_programs
from tests.targets.programs import PROGRAMS, example_programs, load_balancer, stateful


def stateful32() -> Program:
    """``stateful`` with its 64-bit register narrowed (Tofino cells are ≤ 32 bits)."""
    p = stateful()
    regs = tuple(dpir.Register(r.name, 32, r.size) if r.width == 64 else r for r in p.registers)
    control = tuple(
        RegisterWrite(s.register, s.index, Cast(s.value, 32)) if isinstance(s, RegisterWrite) and s.register == "last_seen" else s
        for s in p.control
    )
    return Program(**{**p.__dict__, "registers": regs, "control": control})


def text_of(p: Program) -> str:
    return tofino.emit(p).files[f"{p.name}.p4"]


@pytest.mark.parametrize("name", sorted(set(PROGRAMS) - {"stateful", "wrapped"}) + ["stateful32"])
def test_every_program_parses_and_resolves(name):
    p = stateful32() if name == "stateful32" else PROGRAMS[name]()
    out = tofino.emit(p)
    assert set(out.files) == {f"{p.name}.p4", f"{p.name}.entries.json"}
    p4check.check(out.files[f"{p.name}.p4"])
    assert 1 <= out.summary.stages <= STAGES


def test_example_programs_for_switches_fit_or_say_which_table_overflows():
    fitted = 0
    for label, p in example_programs():
        try:
            out = tofino.emit(p)
        except TofinoResourceError as exc:
            # named as what it is: a table, or statements outside any table
            assert re.search(r"(table '[^']+'|a block of statements outside any table \('[^']+'\)) does not fit",
                             str(exc)), label
            continue
        except P4BackendError as exc:  # e.g. std.pkt_len, which the Tofino ingress lacks
            assert "register" in str(exc) or "pkt_len" in str(exc), label
            continue
        p4check.check(out.files[f"{p.name}.p4"])
        fitted += 1
    # 6g_user_plane:smartnic_edge_a (11 stages), embb_video:pdp (8),
    # urllc_factory:smartnic_factory_edge (12) and its host program (12: the latency
    # monitor's 32-bit words); bf-p4c agrees within a stage on the first three
    # (test_tools.py). edge_site_two_tenants:smartnic_edge_b needs 13.
    assert fitted >= 4


def test_two_accesses_of_one_register_on_one_path_are_refused_by_name():
    # wrapped writes ttl_of[ttl] and reads ttl_of[ttl + 7]: two stateful-ALU accesses
    with pytest.raises(P4BackendError, match="accesses register 'ttl_of' more than once on one packet's path"):
        tofino.emit(PROGRAMS["wrapped"]())


def test_wide_registers_are_rejected_by_name():
    with pytest.raises(P4BackendError, match="register 'last_seen' holds 64 bits"):
        tofino.emit(stateful())


def test_ingress_parser_prologue_and_drop_epilogue():
    text = text_of(PROGRAMS["router"]())
    start = text[text.index("state start {") :]
    assert start.index("pkt.extract(ig_intr_md);") < start.index("pkt.advance(PORT_METADATA_SIZE);")
    assert "default: parse_reject;" in text and "meta.std.parser_reject = 1w1;" in text
    assert "ig_dprsr_md.drop_ctl = 3w1;" in text
    assert "ig_tm_md.ucast_egress_port = meta.std.egress_port;" in text
    assert "Pipeline(" in text and "Switch(pipe) main;" in text


def crc32_from(poly: int, init: int, xor: int, data: bytes) -> int:
    """A reflected CRC-32 with the CRCPolynomial parameters the backend declares."""
    rev = int(f"{poly:032b}"[::-1], 2)
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (rev if crc & 1 else 0)
    return crc ^ xor


def test_the_declared_crc_polynomial_is_zlibs_crc32():
    text = text_of(load_balancer())
    m = re.search(r"CRCPolynomial<bit<32>>\((32w0x[0-9a-f]+), true, false, false, (32w0x[0-9a-f]+), (32w0x[0-9a-f]+)\)", text)
    assert m, "CRCPolynomial declaration"
    poly, init, xor = (int(g.split("w")[1], 16) for g in m.groups())
    rng = random.Random(7)
    for n in (1, 6, 13):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc32_from(poly, init, xor, data) == zlib.crc32(data)


def residue_tables(text: str, name: str) -> tuple[list[dict[int, int]], list[tuple[int, int, int]]]:
    def num(tok: str) -> int:
        return int(tok.split("w")[1], 0)

    bytes_ = []
    for k in range(4):
        body = text[text.index(f"table {name}_byte{k} {{") :]
        body = body[: body.index("\n    }\n}")]
        bytes_.append({num(a): num(b) for a, b in re.findall(rf"(8w\w+): {name}_set_r{k}\((\w+)\);", body)})
    mod = text[text.index(f"table {name}_mod {{") :]
    ranges = [(num(lo), num(hi), num(m)) for lo, hi, m in re.findall(rf"(\w+) \.\. (\w+): {name}_reduce\((\w+)\);", mod)]
    return bytes_, ranges


def test_hash_modulo_tables_compute_exactly_crc_mod_size():
    text = text_of(load_balancer())  # size 7, base 1: not a power of two
    (name,) = set(re.findall(r"(hash_\d+)_mod\.apply\(\);", text))
    tables, ranges = residue_tables(text, name)
    assert all(len(t) == 256 for t in tables) and len(ranges) == 4
    # One addition per action (bf-p4c places an action in one stage): the odd bytes'
    # tables add to the even ones', then the two pairs, then the reduction adds a delta.
    assert f"meta.std.{name}_r01 = meta.std.{name}_r0 + r;" in text
    assert f"meta.std.{name}_sum = meta.std.{name}_r01 + meta.std.{name}_r23;" in text
    assert f"meta.bucket = (bit<9>)meta.std.{name}_sum + delta;" in text
    rng = random.Random(1)
    for h in [0, 1, 6, 7, 0xFFFFFFFF, *(rng.getrandbits(32) for _ in range(500))]:
        total = sum(tables[k][(h >> (8 * k)) & 0xFF] for k in range(4))
        (delta,) = [d for lo, hi, d in ranges if lo <= total <= hi]
        assert (total + delta) % 512 == 1 + h % 7  # base 1, a 9-bit target


def test_power_of_two_hash_is_a_mask():
    p = load_balancer()
    control = tuple(_resize_hashes(s, 8) for s in p.control)
    text = text_of(Program(**{**p.__dict__, "control": control}))
    assert re.search(r"meta\.bucket = 9w1 \+ \(bit<9>\)meta\.std\.hash_\d+\[2:0\];", text)  # % 8: the low 3 bits
    assert "_mod.apply()" not in text


def _resize_hashes(s, size):
    if isinstance(s, dpir.Hash):
        return dpir.Hash(s.target, s.inputs, size, s.base)
    if isinstance(s, dpir.If):
        return dpir.If(s.cond, tuple(_resize_hashes(x, size) for x in s.then), tuple(_resize_hashes(x, size) for x in s.orelse))
    return s


def test_registers_meters_counters_and_timestamps():
    text = text_of(stateful32())
    assert "Register<bit<8>, bit<32>>(32w4, 0) last_ttl;" in text
    assert "Register<bit<16>, bit<32>>(32w2, 0) port_of;" in text  # 9-bit cells stored in 16
    assert re.search(r"meta\.port = \(bit<9>\)port_of_read_\d+\.execute\(32w1\);", text)
    # an index that is not a field is computed first (bf-p4c: "the index is too complex")
    assert re.search(r"meta\.std\.(index_\d+) = \(bit<32>\)meta\.slot & 32w3;\n.*\n\s*last_ttl_write_\d+\.execute\(meta\.std\.\1\);",
                     text)
    assert "Meter<bit<32>>(32w1, MeterType_t.BYTES) m;" in text
    assert "meta.colour = (bit<2>)(m.execute(32w0) & 8w2);" in text
    assert "meta.ts = (bit<64>)ig_intr_md.ingress_mac_tstamp;" in text
    assert "Counter<bit<32>, bit<32>>(32w4, CounterType_t.PACKETS_AND_BYTES) pkts;" in text


def dnat() -> Program:
    """DNAT of UDP/TCP to a backend with a TTL decrement: every checksum kind the
    deparser computes (IPv4 over its header, UDP and TCP from the parser's residual)."""
    act = Action("dnat", (ActionParam("ip", 32), ActionParam("port", 16)), (
        Assign("ipv4.dst", Ref("param.ip")),
        Assign("ipv4.ttl", dpir.BinOp("-", Ref("ipv4.ttl"), Const(1, 8))),
        dpir.If(IsValid("udp"), (Assign("udp.dport", Ref("param.port")),),
                (dpir.If(IsValid("tcp"), (Assign("tcp.dport", Ref("param.port")),)),)),
        dpir.Forward(Const(1, 9)),
    ))
    table = Table("nat", (TableKey("ipv4.dst", "exact"),), ("dnat", "drop"), ActionCall("drop"), 16)
    return checksums.bind(router(name="dnat", actions=(act, Action("drop", (), (dpir.Drop(),))), tables=(table,),
                                 control=(dpir.If(IsValid("ipv4"), (Apply("nat"),)),)))


def _words(values: list[tuple[int, int]]) -> list[int]:
    """The 16-bit words of fields (value, width) laid end to end (byte aligned in all)."""
    bits = sum(w for _, w in values)
    assert bits % 16 == 0, "a Checksum field list must fill whole words"
    n = 0
    for v, w in values:
        n = n << w | v
    return [(n >> (bits - 16 * (k + 1))) & 0xFFFF for k in range(bits // 16)]


def _add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def test_deparser_checksums_are_rfc_checksums_of_the_rewritten_packet():
    """Oracle: scapy's IPv4/UDP/TCP checksums of the packet as rewritten. The field
    lists are read from the emitted P4 and summed as tna.p4 documents Tofino's Checksum
    unit: ``subtract`` adds the one's complement of each word, ``subtract_all_and_deposit``
    deposits the running sum, ``update`` is the complemented sum (``zeros_as_ones``:
    0 sent as 0xFFFF). bf-p4c compiling it is test_tools.py's."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    p = dnat()
    text = text_of(p)
    assert "OnesSum" not in text and "meta.std.csum =" not in text  # no checksum arithmetic in the MAU
    widths = {f"hdr.{h.name}.{f.name}": f.width for h in p.headers for f in h.header_type.fields}
    def value(pkt, ref: str) -> int:
        h, f = ref.split(".")[1:]
        layer = {"ipv4": IP, "udp": UDP, "tcp": TCP}[h]
        raw = bytes(pkt[layer])
        ht = p.header(h).header_type
        off = sum(x.width for x in ht.fields[: [x.name for x in ht.fields].index(f)])
        n = int.from_bytes(raw[: (off + widths[ref] + 7) // 8 + 1], "big")
        total = 8 * ((off + widths[ref] + 7) // 8 + 1)
        return (n >> (total - off - widths[ref])) & ((1 << widths[ref]) - 1)

    def fields(lst: str) -> list[str]:
        return [x.strip() for x in lst.split(",")]

    for l4, layer in (("udp", UDP(sport=5000, dport=53)), ("tcp", TCP(sport=5000, dport=80, flags="PA", seq=7))):
        before = Ether(bytes(Ether(dst="02:00:00:00:00:01") / IP(src="10.1.2.3", dst="192.0.2.1", ttl=9) / layer / (b"payload" * 3)))
        after = before.copy()
        after[IP].dst, after[IP].ttl = "10.9.9.9", 8
        after[{"udp": UDP, "tcp": TCP}[l4]].dport = 8080
        del after[IP].chksum
        del after[{"udp": UDP, "tcp": TCP}[l4]].chksum
        after = Ether(bytes(after))
        # the parser: the pseudo-header's addresses in parse_ipv4, the deposit in parse_<l4>
        acc = 0
        for state in ("parse_ipv4", f"parse_{l4}"):
            body = text[text.index(f"state {state} {{"):]
            body = body[: body.index("\n    }")]
            for call in re.finditer(rf"{l4}_residual_csum\.(subtract|subtract_all_and_deposit)\(\{{?([^}})]*)\}}?\);", body):
                if call.group(1) == "subtract_all_and_deposit":
                    assert call.group(2) == f"meta.std.{l4}_residual"
                    continue  # the deposit marks the end; the subtracts that follow still count
                refs = fields(call.group(2))
                for w in _words([(value(before, r), widths[r]) for r in refs]):
                    acc = _add(acc, ~w & 0xFFFF)
        residual = acc
        m = re.search(rf"hdr\.{l4}\.checksum = {l4}_csum\.update\(\{{([^}}]*)\}}(, true)?\);", text)
        assert m and (m.group(2) is not None) == (l4 == "udp")
        terms = fields(m.group(1))
        assert terms[-1] == f"meta.std.{l4}_residual"
        words = _words([(value(after, r), widths[r]) for r in terms[:-1]]) + [residual]
        total = 0
        for w in words:
            total = _add(total, w)
        got = ~total & 0xFFFF
        if l4 == "udp" and got == 0:
            got = 0xFFFF
        assert got == after[{"udp": UDP, "tcp": TCP}[l4]].chksum, l4
        m = re.search(r"hdr\.ipv4\.checksum = ipv4_csum\.update\(\{([^}]*)\}\);", text)
        total = 0
        for w in _words([(value(after, r), widths[r]) for r in fields(m.group(1))]):
            total = _add(total, w)
        assert ~total & 0xFFFF == after[IP].chksum


# ---------------------------------------------------------------- the resource model


def chain(n: int, **table_kw) -> Program:
    """``n`` tables, each keyed on the metadata field the previous one writes."""
    meta = tuple(dpir.MetaField(f"m{i}", 8) for i in range(n + 1))
    actions, tables = [], []
    for i in range(n):
        actions.append(Action(f"set{i}", (ActionParam("v", 8),), (Assign(f"meta.m{i + 1}", Ref("param.v")),)))
        tables.append(Table(f"t{i}", (TableKey(f"meta.m{i}", "exact"),), (f"set{i}",), ActionCall(f"set{i}", (0,)), 16, **table_kw))
    return router(
        name="chain",
        metadata=meta,
        actions=tuple(actions) + (Action("out", (), (dpir.Forward(Const(1, 9)),)),),
        tables=tuple(tables),
        control=tuple(Apply(t.name) for t in tables) + (dpir.Call("out"),),
    )


def test_dependent_tables_take_one_stage_each_up_to_twelve():
    out = tofino.emit(chain(11))
    assert [t.stage for t in out.summary.tables] == list(range(11))
    assert out.summary.stages == 11  # the final forward is independent of the chain
    with pytest.raises(TofinoResourceError, match=r"table 't12' does not fit in Tofino-1's 12 MAU stages"):
        tofino.emit(chain(13))


def test_independent_tables_share_stages_sixteen_at_a_time():
    p = chain(1)
    # no action writes anything, so none depends on another
    tables = tuple(Table(f"t{i}", (TableKey("ipv4.dst", "exact"),), ("nop",), ActionCall("nop"), 16) for i in range(17))
    actions = p.actions + (Action("nop"),)
    p = Program(**{**p.__dict__, "actions": actions, "tables": tables, "control": tuple(Apply(t.name) for t in tables)})
    stages = [t.stage for t in tofino.emit(p).summary.tables]
    assert stages == [0] * 16 + [1]


def test_large_tables_spread_over_stages_and_too_large_ones_fail():
    def one(size: int, match: str) -> Program:
        t = Table("big", (TableKey("ipv4.dst", match),), ("set0",), ActionCall("set0", (0,)), size)
        p = chain(1)
        return Program(**{**p.__dict__, "tables": (t,), "control": (Apply("big"),)})

    # exact, 32-bit key + 4 bits: 3 entries per 128-bit word; 8-bit action data: 16 per word
    out = tofino.emit(one(500_000, "exact"))
    assert out.summary.stages == 3  # 163 match + 31 action-data blocks = 194 > 2 x 80
    # ternary: one 44-bit TCAM block wide, 512 entries deep: 24 blocks per stage
    assert tofino.emit(one(512 * 30, "ternary")).summary.stages == 2
    with pytest.raises(TofinoResourceError, match="table 'big' needs .* more than the whole pipeline"):
        tofino.emit(one(512 * 24 * 12 + 1, "ternary"))


def test_conditions_wider_than_a_gateway_are_split_into_flags():
    """Consistency (bf-p4c refusing the unsplit condition, "condition too complex", is
    what test_tools.py's compile of the examples checks): a condition reading more than
    a gateway's 4 bytes is evaluated comparison by comparison into flags."""
    wide = dpir.BinOp("&&", IsValid("ipv4"), dpir.BinOp("&&", dpir.BinOp("==", Ref("ipv4.src"), Const(1, 32)),
                                                         dpir.BinOp("!=", Ref("ipv4.dst"), Const(2, 32))))
    narrow = dpir.BinOp("&&", IsValid("udp"), dpir.BinOp("==", Ref("udp.dport"), Const(53, 16)))
    p = router(name="conds", control=(dpir.If(wide, (dpir.Drop(),)), dpir.If(narrow, (dpir.Drop(),)), Apply("fib")))
    text = text_of(p)
    p4check.check(text)
    flags = re.findall(r"if \((hdr\.ipv4\.(?:src|dst) [!=]= 32w\d+)\) \{ meta\.std\.(cond_\d+) = 8w1; \}", text)
    assert [c for c, _ in flags] == ["hdr.ipv4.src == 32w1", "hdr.ipv4.dst != 32w2"]
    (a, b) = (f for _, f in flags)
    assert f"if (hdr.ipv4.isValid() && ((meta.std.{a} == 8w1) && (meta.std.{b} == 8w1))) {{" in text
    assert "if (hdr.udp.isValid() && (hdr.udp.dport == 16w53)) {" in text  # 17 bits: one gateway


def test_comparisons_no_gateway_can_make_are_one_entry_tables():
    """Consistency (bf-p4c refused `udp.dport >= 5000` in a gateway, "condition too
    complex, limit of 4 bytes + 12 bits": its gateway matches ranges only in its 12 single
    bits, gateway.cpp compute_offsets; test_tools.py compiles the factory's SmartNIC that
    has it): ranges on 16-bit fields, and an equality on 6 bytes, set their flags from
    a range and an exact table; an 8-bit range stays a gateway."""
    ports = dpir.BinOp("&&", IsValid("udp"), dpir.BinOp("&&", dpir.BinOp(">=", Ref("udp.dport"), Const(5000, 16)),
                                                        dpir.BinOp("<", Const(1, 16), Ref("udp.sport"))))
    mac = dpir.BinOp("&&", IsValid("eth"), dpir.BinOp("==", Ref("eth.dst"), Const(0x0200000000AA, 48)))
    ttl = dpir.BinOp("&&", IsValid("ipv4"), dpir.BinOp(">=", Ref("ipv4.ttl"), Const(100, 8)))
    p = router(name="ranges", control=(dpir.If(ports, (dpir.Drop(),)), dpir.If(mac, (dpir.Drop(),)),
                                       dpir.If(ttl, (dpir.Drop(),)), Apply("fib")))
    text = text_of(p)
    p4check.check(text)
    for key, entry in [("hdr.udp.dport: range;", "16w5000 .. 16w0xffff: cond_"),
                       ("hdr.udp.sport: range;", "16w2 .. 16w0xffff: cond_"),  # 1 < sport
                       ("hdr.eth.dst: exact;", "48w0x200000000aa: cond_")]:
        assert key in text and entry in text, key
    assert "if (hdr.ipv4.isValid() && (hdr.ipv4.ttl >= 8w100)) {" in text
    assert len(re.findall(r"cond_\d+_match\.apply\(\);", text)) == 3


def test_one_bit_metadata_gets_containers_of_its_own():
    """Consistency (bf-p4c put tables writing bits of one PHV container in successive
    stages: merged:tunnel 11 stages, 10 with this; test_tools.py measures the corpus)."""
    text = text_of(emitted_programs()["nf:load_balancer"]())
    for f in ("meta.std.drop", "meta.std.forwarded", "meta.g_lb_visit"):
        assert f'@pa_solitary("ingress", "{f}")' in text
    assert '@pa_solitary("ingress", "meta.g_lb_slot")' not in text


def test_a_pushed_header_is_not_zeroed_where_both_branches_set_it():
    """Consistency (a zeroing before the set cost bf-p4c a stage on the monitor's push):
    the stamp's type comes from the VLAN's or the Ethernet header's in both branches, and
    its timestamp from the clock, so neither is zeroed first; its other fields are."""
    text = text_of(emitted_programs()["example:urllc_factory:smartnic_factory_edge"]())  # mon_in stamps
    push = text[text.index("hdr.mtel.setValid();"):]
    push = push[:push.index("if (")]
    assert "hdr.mtel.slice = meta.slice;" in push and "hdr.mtel.flags = 8w0;" in push
    assert "hdr.mtel.type_ = 0;" not in push and "hdr.mtel.ts = 0;" not in push


def test_a_masked_copy_is_slices():
    """Consistency (bf-p4c refused the AND beside the other writes to the same PHV
    container: the load balancer's outer IPv4 flags): ``x = y & mask`` is printed as
    slice copies and zeroed slices, low bits first."""
    act = Action("df", (), (Assign("ipv4.flags", dpir.BinOp("&", Ref("ipv4.flags"), Const(2, 3))),
                            Assign("ipv4.ident", dpir.BinOp("&", Const(0xFF00, 16), Ref("ipv4.ident"))),
                            dpir.Forward(Const(1, 9))))
    p = router(name="masks", actions=(act,), tables=(),
               control=(dpir.If(IsValid("ipv4"), (dpir.Call("df"),)),))
    text = text_of(p)
    p4check.check(text)
    assert ("hdr.ipv4.flags[0:0] = 1w0; hdr.ipv4.flags[1:1] = hdr.ipv4.flags[1:1]; "
            "hdr.ipv4.flags[2:2] = 1w0;") in text
    assert "hdr.ipv4.ident[7:0] = 8w0; hdr.ipv4.ident[15:8] = hdr.ipv4.ident[15:8];" in text


def test_a_read_and_write_of_one_cell_is_one_register_action():
    """Consistency (bf-p4c refused the load balancer's read and later write of its flow
    slot: "not able to allocate ... in the same stage along with Register"): Tofino's
    stateful ALU reads and writes a register once per packet."""
    reg = dpir.Register("seq", 32, 4)
    control = (
        dpir.RegisterRead("meta.n", "seq", Const(1, 2)),
        dpir.RegisterWrite("seq", Const(1, 2), dpir.BinOp("+", Ref("meta.n"), Const(1, 32))),
        # another register, read on one path and written on the other: one access each
        dpir.If(dpir.IsValid("udp"), (dpir.RegisterRead("meta.m", "other", Const(2, 2)),),
                (dpir.RegisterWrite("other", Const(3, 2), Ref("meta.n")),)),
        Apply("fib"),
    )
    p = router(name="seq", registers=(reg, dpir.Register("other", 32, 4)),
               metadata=(dpir.MetaField("n", 32), dpir.MetaField("m", 32)), control=control)
    text = text_of(p)
    p4check.check(text)
    assert text.count("RegisterAction<") == 3
    assert re.search(r"\(seq\) (seq_update_\d+) = \{\n\s+void apply\(inout bit<32> value, out bit<32> rv\) \{\n"
                     r"\s+rv = value;\n\s+value = value \+ 32w1;\n", text)
    lb = text_of(emitted_programs()["nf:load_balancer"]())
    (action,) = re.findall(r"RegisterAction<bit<8>, bit<32>, bit<8>>\(g_lb_flows\) \w+ = \{.*?\n    \};", lb, re.S)
    assert "if (value == 8w0) { value = meta.g_lb_chosen; }\n            rv = value;" in action  # the new backend

"""DP-IR: the validator, the JSON round trip and the interpreter on real packets."""

from __future__ import annotations

import zlib

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from mantra6g.synth import dpir
from mantra6g.synth.dpir import (
    Action,
    ActionCall,
    ActionParam,
    Apply,
    Assign,
    BinOp,
    Const,
    Count,
    Drop,
    Entry,
    Exact,
    Forward,
    Hash,
    HeaderInstance,
    If,
    IsValid,
    Lpm,
    MeterExec,
    ParserCase,
    ParserState,
    Program,
    Ref,
    RegisterRead,
    RegisterWrite,
    Table,
    TableKey,
    Ternary,
)
from mantra6g.synth.dpir_check import DpirError, parsed_headers, validate
from mantra6g.synth import checksums
from mantra6g.synth.interp import State, ones_sum, run, run_many

ROUTER_MAC = 0x0200000000FE
NH1, NH2 = 0x020000000001, 0x020000000002


def parser() -> tuple[ParserState, ...]:
    return (
        ParserState("start", ("eth",), (Ref("eth.type"),), (ParserCase((0x0800,), "ipv4"),), "reject"),
        ParserState(
            "ipv4",
            ("ipv4",),
            (Ref("ipv4.proto"),),
            (ParserCase((17,), "udp"), ParserCase((6,), "tcp")),
            "accept",
        ),
        ParserState("udp", ("udp",)),
        ParserState("tcp", ("tcp",)),
    )


HEADERS = (
    HeaderInstance("eth", "eth"),
    HeaderInstance("ipv4", "ipv4"),
    HeaderInstance("udp", "udp"),
    HeaderInstance("tcp", "tcp"),
)


def router(entries=None, **extra) -> Program:
    """A hand-written IPv4 router: LPM on the destination, MAC rewrite, TTL, checksum."""
    route = Action(
        "route",
        (ActionParam("nh", 48), ActionParam("port", 9)),
        (
            Assign("eth.src", Const(ROUTER_MAC, 48)),
            Assign("eth.dst", Ref("param.nh")),
            Assign("ipv4.ttl", BinOp("-", Ref("ipv4.ttl"), Const(1, 8))),
            Forward(Ref("param.port")),
        ),
    )
    fib = Table(
        "fib",
        (TableKey("ipv4.dst", "lpm"),),
        ("route", "drop"),
        ActionCall("drop"),
        64,
        entries
        if entries is not None
        else (
            Entry((Lpm(0x0A000000, 8),), ActionCall("route", (NH1, 1))),
            Entry((Lpm(0x0A020000, 16),), ActionCall("route", (NH2, 2))),
        ),
    )
    control = (
        If(
            IsValid("ipv4"),
            (
                If(
                    BinOp("<=", Ref("ipv4.ttl"), Const(1, 8)),
                    (Drop(),),
                    (Apply("fib"),),
                ),
            ),
        ),
    )
    base = dict(
        name="router",
        headers=HEADERS,
        parser=parser(),
        deparse=("eth", "ipv4", "udp", "tcp"),
        actions=(route, Action("drop", (), (Drop(),))),
        tables=(fib,),
        control=control,
    )
    base.update(extra)
    return checksums.bind(Program(**base))


def pkt(dst="10.2.3.4", ttl=64, payload=b"hello", **kw) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:fe") / IP(src="10.9.0.1", dst=dst, ttl=ttl, **kw) / UDP(sport=1234, dport=5000) / payload)


# ---------------------------------------------------------------- interpreter


def test_router_forwards_with_longest_prefix_and_rewrites_the_packet():
    p = router()
    validate(p)
    sent = pkt("10.2.3.4")
    r = run(p, sent, ingress_port=0, now_ns=0)
    ((port, out),) = r.outputs
    assert port == 2  # 10.2.0.0/16 beats 10.0.0.0/8
    got = Ether(out)
    assert got.dst == "02:00:00:00:00:02" and got.src == "02:00:00:00:00:fe"
    assert got[IP].ttl == 63
    # the checksum is the one scapy computes for the rewritten header
    expected = Ether(out)
    del expected[IP].chksum
    assert got[IP].chksum == Ether(bytes(expected))[IP].chksum
    assert bytes(got[UDP].payload) == b"hello"

    ((port, _),) = run(p, pkt("10.7.0.1"), 0, 0).outputs
    assert port == 1


def test_router_drops_on_miss_ttl_and_non_ipv4():
    p = router()
    assert run(p, pkt("192.168.1.1"), 0, 0).dropped  # no route
    assert run(p, pkt(ttl=1), 0, 0).dropped  # TTL would reach 0
    arp = bytes(Ether(src="02:00:00:00:00:aa", dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"\0" * 28))
    r = run(p, arp, 0, 0)
    assert r.dropped and "rejected" in r.trace[0]


@pytest.mark.parametrize("cut", [0, 5, 13, 14, 20, 33])
def test_truncated_packets_are_dropped_by_the_parser(cut):
    r = run(router(), pkt()[:cut], 0, 0)
    assert r.dropped and "too short" in r.trace[0]


def test_a_packet_with_no_egress_port_is_dropped():
    p = router(control=())
    assert run(p, pkt(), 0, 0).dropped


def test_ipv4_and_udp_checksums_match_scapy():
    p = router(
        actions=(
            Action(
                "nat",
                (),
                (
                    Assign("ipv4.dst", Const(0x0A010101, 32)),
                    Forward(Const(3, 9)),
                ),
            ),
            Action("drop", (), (Drop(),)),
        ),
        tables=(),
        control=(If(IsValid("udp"), (dpir.Call("nat"),)),),
    )
    validate(p)
    ((port, out),) = run(p, pkt(payload=b"x" * 33), 0, 0).outputs
    got = Ether(out)
    assert port == 3 and got[IP].dst == "10.1.1.1"
    ref = Ether(out)
    del ref[IP].chksum
    del ref[UDP].chksum
    ref = Ether(bytes(ref))
    assert (got[IP].chksum, got[UDP].chksum) == (ref[IP].chksum, ref[UDP].chksum)


def test_ternary_priority_and_validity_key():
    fw = Table(
        "acl",
        (TableKey("tcp.$valid", "exact"), TableKey("tcp.dport", "ternary"), TableKey("ipv4.src", "ternary")),
        ("allow", "deny"),
        ActionCall("deny"),
        16,
        (
            Entry((Exact(1), Ternary(22, 0xFFFF), Ternary(0, 0)), ActionCall("deny"), priority=20),
            Entry((Exact(1), Ternary(0, 0), Ternary(0x0A090000, 0xFFFF0000)), ActionCall("allow"), priority=10),
        ),
    )
    p = router(
        actions=(Action("allow", (), (Forward(Const(5, 9)),)), Action("deny", (), (Drop(),))),
        tables=(fw,),
        control=(Apply("acl"),),
    )
    validate(p)
    tcp = lambda dport: bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="10.9.0.1", dst="10.0.0.1") / TCP(dport=dport))
    assert run(p, tcp(80), 0, 0).outputs[0][0] == 5
    assert run(p, tcp(22), 0, 0).dropped  # the higher-priority deny wins
    assert run(p, pkt(), 0, 0).dropped  # UDP: tcp invalid, default deny


def test_hash_is_crc32_of_the_big_endian_inputs():
    p = router(
        metadata=(dpir.MetaField("bucket", 9),),
        actions=(Action("fwd", (), (Forward(Ref("meta.bucket")),)),),
        tables=(),
        control=(
            If(
                IsValid("udp"),
                (
                    Hash("meta.bucket", (Ref("ipv4.src"), Ref("udp.sport")), size=7, base=1),
                    dpir.Call("fwd"),
                ),
            ),
        ),
    )
    validate(p)
    ((port, _),) = run(p, pkt(), 0, 0).outputs
    expected = 1 + zlib.crc32(bytes([10, 9, 0, 1]) + (1234).to_bytes(2, "big")) % 7
    assert port == expected


def test_counters_registers_and_meters_change_state():
    p = router(
        metadata=(dpir.MetaField("colour", 2),),
        registers=(dpir.Register("last_ttl", 8, 4),),
        counters=(dpir.Counter("pkts", 4),),
        meters=(dpir.Meter("m", 1, rate_bps=8_000, burst_bytes=100),),  # 1 byte per ms
        actions=(Action("out", (), (Forward(Const(1, 9)),)),),
        tables=(),
        control=(
            Count("pkts", Const(2, 2)),
            If(
                IsValid("ipv4"),
                (
                    RegisterWrite("last_ttl", Const(1, 2), Ref("ipv4.ttl")),
                    MeterExec("m", Const(0, 1), "meta.colour"),
                    If(BinOp("==", Ref("meta.colour"), Const(0, 2)), (dpir.Call("out"),)),
                ),
            ),
        ),
    )
    validate(p)
    small = pkt(payload=b"")  # 42 bytes
    results, state = run_many(p, [(small, 0, 0), (small, 0, 0), (small, 0, 0), (small, 0, 50_000_000)])
    # 100-byte bucket: two 42-byte packets pass, the third exceeds; 50 ms later 50 bytes refilled
    assert [r.dropped for r in results] == [False, False, True, False]
    assert state.counters["pkts"][2] == (4, 4 * 42)
    assert state.registers["last_ttl"][1] == 64
    kinds = {c.kind for c in results[0].changes}
    assert kinds == {"counter", "register", "meter"}


def test_register_read_into_metadata():
    p = router(
        metadata=(dpir.MetaField("port", 9),),
        registers=(dpir.Register("port_of", 9, 2),),
        actions=(),
        tables=(),
        control=(RegisterRead("meta.port", "port_of", Const(1, 1)), Forward(Ref("meta.port"))),
    )
    validate(p)
    state = State.initial(p)
    state.registers["port_of"][1] = 7
    assert run(p, pkt(), 0, 0, state).outputs[0][0] == 7


def test_ones_sum_gives_the_checksum_of_a_known_header():
    # The IPv4 header of Wikipedia's checksum article (its checksum, 0xB861, is zero here)
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    words = [int.from_bytes(hdr[i : i + 2], "big") for i in range(0, 20, 2)]
    assert ~ones_sum(words) & 0xFFFF == 0xB861
    assert ones_sum([0xFFFF, 0x0001]) == 0x0001  # end-around carry; never 0 unless all are


# ---------------------------------------------------------------- validator


def problems(p: Program) -> str:
    with pytest.raises(DpirError) as exc:
        validate(p)
    return str(exc.value)


def test_parsed_headers_are_those_on_every_path():
    # every path that accepts goes through eth and ipv4 (non-IPv4 is rejected); udp/tcp are optional
    assert parsed_headers(router()) == frozenset({"eth", "ipv4"})


def test_reading_a_maybe_invalid_header_is_rejected():
    p = router(control=(Assign("udp.dport", Const(1, 16)),))
    assert "writes udp.dport where header 'udp' may be invalid" in problems(p)
    p = router(control=(If(BinOp("==", Ref("tcp.dport"), Const(22, 16)), (Drop(),)),))
    assert "reads tcp.dport where header 'tcp' may be invalid" in problems(p)
    # guarded: fine
    validate(router(control=(If(BinOp("&&", IsValid("tcp"), BinOp("==", Ref("tcp.dport"), Const(22, 16))), (Drop(),)),)))


def test_table_key_on_maybe_invalid_header_needs_its_validity_key():
    t = Table("t", (TableKey("udp.dport", "exact"),), ("drop",), ActionCall("drop"), 4)
    assert "add the key udp.$valid" in problems(router(tables=(t,), control=(Apply("t"),)))
    # applied where udp is known valid: fine
    validate(router(tables=(t,), control=(If(IsValid("udp"), (Apply("t"),)),)))


def test_widths_names_and_parser_cycles_are_checked():
    bad = router(
        control=(
            Assign("eth.type", Ref("ipv4.src")),
            Assign("meta.nope", Const(1, 1)),
            Forward(Const(600, 10)),
            Apply("missing"),
        )
    )
    text = problems(bad)
    assert "eth.type is 16 bits but the value is 32 bits" in text
    assert "undefined field 'meta.nope'" in text
    assert "port 600 is above 510 (511 is BMv2's drop port)" in text
    assert "no table 'missing'" in text

    looping = router(parser=parser()[:3] + (ParserState("tcp", ("tcp",), (), (), "ipv4"),))
    assert "cycle: ipv4 -> tcp -> ipv4" in problems(looping)


def test_table_entries_are_checked_against_keys_and_actions():
    t = Table(
        "fib",
        (TableKey("ipv4.dst", "lpm"),),
        ("route", "drop"),
        ActionCall("drop"),
        1,
        (
            Entry((Lpm(1 << 32, 8),), ActionCall("route", (NH1,))),
            Entry((Exact(1),), ActionCall("nope")),
        ),
    )
    text = problems(router(tables=(t,)))
    assert "2 entries exceed its size 1" in text
    assert "value does not fit 32-bit key ipv4.dst" in text
    assert "action 'route' takes 2 arguments, got 1" in text
    assert "exact match for lpm key" in text
    assert "calls undefined action 'nope'" in text


def test_program_round_trips_through_json():
    p = router(
        metadata=(dpir.MetaField("x", 8),),
        registers=(dpir.Register("r", 8, 2),),
        meters=(dpir.Meter("m", 1, 1000, 2000),),
    )
    assert Program.from_json(p.to_json()) == p

"""Packet bugs that Mantra's interpreter and its XDP backend once shared, so that their
differential tests could not see them. Each is judged by scapy (RFC 791/768/793 lengths
and checksums) or by the DP-IR validator, never by comparing two of Mantra's own
implementations. The XDP half of each (in the kernel) is in tests/targets/test_xdp.py.
"""

from __future__ import annotations

import pytest
from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.l2 import Ether

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.compose import compile_specs
from mantra6g.synth.dpir import (
    Action,
    ActionCall,
    ActionParam,
    Apply,
    Assign,
    Const,
    Entry,
    Exact,
    Forward,
    If,
    IsValid,
    Lpm,
    Ref,
    SetInvalid,
    SetValid,
    Table,
    TableKey,
    Ternary,
)
from mantra6g.synth.dpir_check import DpirError, validate
from mantra6g.synth.interp import run
from tests.synth.helpers import graph, ok
from tests.synth.test_dpir import router as hand_router

CLS = "nf cls = classifier() {\n    match ipv4.dst in 10.0.0.0/8\n}\n"
MACS = dict(src="02:00:00:00:00:aa", dst="02:00:00:00:00:fe")


def program(nfs: str):
    (dp,) = compile_specs([ok(graph(CLS + nfs))])
    return dp.program


def right(ip: IP) -> IP:
    """``ip`` (up to its total length: no padding) with every checksum computed by scapy."""
    fresh = IP(bytes(ip)[: ip.len])
    for layer in (IP, UDP, TCP, ICMP):
        if layer in fresh:
            fresh[layer].chksum = None
    return IP(bytes(fresh))


def test_dnat_before_gtpu_encap_keeps_inner_checksums_right_and_the_outer_udp_checksum_zero():
    """The DNAT's checksum update used to follow the header's *name* (udp), which the
    encap then reused for the new outer header: the inner IPv4/UDP checksums were stale and
    the outer UDP checksum not the 0 that TS 29.281 and docs/nf/tunnel.md say."""
    p = program(
        "nf lb = load_balancer(vip: 10.0.0.100, mode: dnat) {\n    backend 10.2.0.11\n}\n"
        "nf t = tunnel(protocol: gtpu, mode: encap, teid: 4097, local: 192.0.2.1, remote: 192.0.2.2)\n"
        "cls -> lb -> t"
    )
    sent = Ether(**MACS) / IP(src="10.1.0.7", dst="10.0.0.100") / UDP(sport=4000, dport=53) / b"query"
    ((_, out),) = run(p, bytes(sent), 1, 0).outputs
    got = Ether(out)
    outer_udp = got[UDP]
    inner = got[GTP_U_Header].payload
    assert isinstance(inner, IP) and inner.dst == "10.2.0.11"
    assert outer_udp.chksum == 0
    assert got[IP].chksum == right(got[IP]).chksum
    assert (inner.chksum, inner[UDP].chksum) == (right(inner).chksum, right(inner)[UDP].chksum)


def test_a_router_alert_packet_leaves_the_router_with_a_right_header_checksum():
    """IPv4 with options: the checksum used to be recomputed over 20 bytes of a 24-byte
    header (RFC 791 sums the whole header, options included)."""
    p = program("nf rt = router(mac: 02:00:00:00:00:fe) {\n    route 10.0.0.0/8 via 02:00:00:00:00:01 port 2\n}\ncls -> rt")
    sent = Ether(**MACS) / IP(dst="10.2.3.4", ttl=9, options=[IPOption_Router_Alert()]) / UDP(dport=53) / b"x"
    ((port, out),) = run(p, bytes(sent), 1, 0).outputs
    got = Ether(out)
    assert port == 2 and got[IP].ihl == 6 and got[IP].ttl == 8
    assert got[IP].chksum == right(got[IP]).chksum
    assert bytes(got[IP].payload) == bytes(sent[IP].payload)  # the options' UDP is untouched


def test_dnat_of_a_padded_tcp_ack_checksums_the_segment_not_the_padding():
    """A 54-byte TCP ACK arrives padded to 60 bytes, as every NIC delivers it; the TCP
    checksum used to be computed over the padding too (RFC 793: the segment, whose length
    the IP total length gives)."""
    p = program("nf lb = load_balancer(vip: 10.0.0.100, mode: dnat) {\n    backend 10.2.0.11\n}\ncls -> lb")
    ack = bytes(Ether(**MACS) / IP(src="10.1.0.7", dst="10.0.0.100") / TCP(sport=40000, dport=80, flags="A"))
    padded = ack + bytes([0xA5] * (60 - len(ack)))
    ((_, out),) = run(p, padded, 1, 0).outputs
    assert len(out) == 60 and out[54:] == padded[54:]  # the padding is kept
    got = Ether(out)
    assert got[IP].dst == "10.2.0.11"
    assert (got[IP].chksum, got[TCP].chksum) == (right(got[IP]).chksum, right(got[IP])[TCP].chksum)


def test_all_fragments_of_a_datagram_reach_one_backend_unchanged():
    """A first fragment's transport header used to be parsed and hashed (and rewritten),
    later fragments hashed on other fields: one datagram's fragments reached different
    backends. Now no fragment has a parsed transport header, all hash on IPv4 fields."""
    p = program(
        "nf lb = load_balancer(vip: 10.0.0.100, hash: [ipv4.src, ipv4.dst, udp.sport, udp.dport]) {\n"
        "    backend 10.2.0.11\n    backend 10.2.0.12\n    backend 10.2.0.13\n    backend 10.2.0.14\n}\ncls -> lb"
    )
    datagram = IP(src="10.1.0.7", dst="10.0.0.100", id=77) / UDP(sport=4000, dport=53) / (b"d" * 64)
    frags = [bytes(Ether(**MACS) / f) for f in fragment(datagram, 24)]
    assert len(frags) >= 3
    outs = [run(p, f, 1, 0).outputs for f in frags]
    backends = {IP(out[14:]).dst for ((_, out),) in outs}
    assert len(backends) == 1
    for sent, ((_, out),) in zip(frags, outs):
        assert out[34:] == sent[14:]  # IP-in-IP: the fragment follows, byte for byte
        assert IP(out[14:]).chksum == right(IP(out[14:34])).chksum


def test_dnat_drops_fragments_it_could_not_keep_right():
    p = program("nf lb = load_balancer(vip: 10.0.0.100, mode: dnat) {\n    backend 10.2.0.11\n}\ncls -> lb")
    first = IP(src="10.1.0.7", dst="10.0.0.100", flags="MF") / UDP(sport=4000, dport=53) / (b"d" * 16)
    assert run(p, bytes(Ether(**MACS) / first), 1, 0).dropped


def fragment(pkt, size):
    from scapy.layers.inet import fragment as scapy_fragment

    return scapy_fragment(pkt, fragsize=size)


def test_a_first_fragment_is_routed_without_touching_its_transport_header():
    p = program("nf rt = router(mac: 02:00:00:00:00:fe) {\n    route 10.0.0.0/8 via 02:00:00:00:00:01 port 2\n}\ncls -> rt")
    first = Ether(**MACS) / IP(dst="10.2.3.4", flags="MF") / UDP(sport=1, dport=2, chksum=0x1234) / b"abcdefgh"
    ((_, out),) = run(p, bytes(first), 1, 0).outputs
    assert out[34:] == bytes(first)[34:]  # the UDP header and data, as they came
    assert IP(out[14:]).chksum == right(IP(out[14:])).chksum


# ---------------------------------------------------------------- ranking, validity, pushes


def test_an_lpm_key_in_a_priority_table_is_ranked_by_priority_not_prefix_length():
    """P4Runtime's rule (spec §9.1.1): a table with a ternary key ranks by priority; the
    interpreter used to prefer the longer prefix (XDP: priority), so they disagreed."""
    table = Table(
        "acl",
        (TableKey("ipv4.dst", "lpm"), TableKey("udp.dport", "ternary")),
        ("out",),
        ActionCall("out", (9,)),
        8,
        (
            Entry((Lpm(0x0A020304, 32), Ternary(0, 0)), ActionCall("out", (1,)), priority=1),
            Entry((Lpm(0x0A000000, 8), Ternary(5000, 0xFFFF)), ActionCall("out", (2,)), priority=5),
        ),
    )
    p = hand_router(
        name="ranking",
        actions=(Action("out", (ActionParam("port", 9),), (Forward(Ref("param.port")),)),),
        tables=(table,),
        control=(If(IsValid("udp"), (Apply("acl"),)),),
    )
    validate(p)
    assert [e.action.args for e in dpir.ranked(table)] == [(2,), (1,)]
    sent = Ether(**MACS) / IP(dst="10.2.3.4") / UDP(dport=5000)
    assert run(p, bytes(sent), 0, 0).outputs[0][0] == 2


def test_two_entries_with_the_same_exact_key_are_refused():
    table = Table("t", (TableKey("ipv4.dst", "exact"),), ("out",), ActionCall("out", (0,)), 8,
                  (Entry((Exact(1),), ActionCall("out", (1,))), Entry((Exact(1),), ActionCall("out", (2,)))))
    p = hand_router(actions=(Action("out", (ActionParam("port", 9),), (Forward(Ref("param.port")),)),),
                    tables=(table,), control=(If(IsValid("ipv4"), (Apply("t"),)),))
    with pytest.raises(DpirError, match="entry 1: matches the same packets as entry 0"):
        validate(p)


def test_a_header_a_table_action_invalidates_cannot_be_read_after_the_apply():
    """The validator followed validity through a called action but not through the
    actions a table runs."""
    pop = Action("pop", (), (SetInvalid("ipv4"),))
    t = Table("t", (TableKey("eth.type", "exact"),), ("pop",), ActionCall("pop"), 4)
    p = hand_router(name="popper", actions=(pop,), tables=(t,),
                    control=(If(IsValid("ipv4"), (Apply("t"), Assign("ipv4.ttl", Const(1, 8)))),))
    with pytest.raises(DpirError, match="writes ipv4.ttl where header 'ipv4' may be invalid"):
        validate(p)


def test_set_valid_on_a_valid_header_starts_it_afresh():
    """``SetValid`` zeroed the header in P4 but kept its fields in the interpreter and XDP."""
    p = hand_router(name="push", actions=(), tables=(),
                    control=(If(IsValid("udp"), (SetValid("udp"), Assign("udp.dport", Const(7, 16)),
                                                  Assign("udp.checksum", Const(0, 16)), Forward(Const(1, 9)))),))
    sent = Ether(**MACS) / IP(dst="10.2.3.4") / UDP(sport=1234, dport=5000)
    ((_, out),) = run(p, bytes(sent), 0, 0).outputs
    assert Ether(out)[UDP].fields == {"sport": 0, "dport": 7, "len": 0, "chksum": 0}


def test_a_pushed_ipv4_header_without_its_checksum_is_a_lowering_bug():
    with pytest.raises(DpirError, match="header 'ipv4' is pushed but its checksum is never set"):
        hand_router(name="push", actions=(), tables=(),  # binds its checksums
                    control=(If(IsValid("ipv4"), (SetValid("ipv4"), Assign("ipv4.ttl", Const(64, 8)))),))


# ---------------------------------------------------------------- what mantra check refuses


@pytest.mark.parametrize(
    "nfs, message",
    [
        ("nf rt = router(mac: 02:00:00:00:00:fe) {\n    route 10.0.0.0/8 via 02:00:00:00:00:01 port 511\n}\ncls -> rt",
         "port 511 is out of range"),
        ("nf p = policer(rate: 10 Mbps, burst: 3 GB)\ncls -> p", "burst 3 GB is more than 1 GB"),
        ("nf p = policer(rate: 3 Tbps, burst: 3 KB)\ncls -> p", "rate 3 Tbps is more than 1 Tbps"),
        ("nf a = tunnel(protocol: vxlan, mode: encap, vni: 1, local: 192.0.2.1, remote: 192.0.2.2)\n"
         "nf b = tunnel(protocol: gtpu, mode: encap, teid: 1, local: 192.0.2.1, remote: 192.0.2.2)\ncls -> a -> b",
         "'b' would wrap packets that 'a' already wrapped"),
    ],
)
def test_check_refuses_what_no_target_can_do(nfs, message):
    from mantra6g.source import SourceFile
    from mantra6g.synth import frontend

    with pytest.raises(MantraError, match=message):
        frontend.load_sources([SourceFile("g.sg", graph(CLS + nfs))])


def test_a_tenant_with_more_slices_than_the_data_plane_carries_is_refused():
    from mantra6g.source import SourceFile
    from mantra6g.synth import frontend

    slices = "".join(f"    slice s{i} {{\n        latency <= 1 ms\n    }}\n" for i in range(256))
    with pytest.raises(MantraError, match="more than 255 slices"):
        frontend.load_sources([SourceFile("t.sg", "tenant t id 1 {\n" + slices + "}\n")])


def test_icmp_through_a_router_keeps_its_own_checksum():
    p = program("nf rt = router(mac: 02:00:00:00:00:fe) {\n    route 10.0.0.0/8 via 02:00:00:00:00:01 port 2\n}\ncls -> rt")
    sent = Ether(**MACS) / IP(dst="10.2.3.4") / ICMP(id=7, seq=1) / b"ping"
    ((_, out),) = run(p, bytes(sent), 1, 0).outputs
    got = Ether(out)
    assert (got[IP].chksum, got[ICMP].chksum) == (right(got[IP]).chksum, right(got[IP])[ICMP].chksum)

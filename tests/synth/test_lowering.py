"""Every InfraNF kind lowered to DP-IR, run in the interpreter on scapy-built packets.

Expected outputs are derived independently of the lowering: scapy recomputes lengths
and checksums from the layers, and the rest is worked out by hand in each test.
"""

from __future__ import annotations

import pytest
from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from mantra6g.synth.compose import DeviceProgram, compile_specs
from mantra6g.synth.interp import State, run
from mantra6g.synth.nf.latency_monitor import delay_sum
from tests.synth.helpers import graph, ok

IN_PORT = 3


def device(body: str, tenant: str | None = None) -> DeviceProgram:
    text = graph(body) if tenant is None else graph(body, tenant=tenant)
    (dp,) = compile_specs([ok(text)])
    return dp


def send(dp: DeviceProgram, packet, now: int = 0, state: State | None = None, port: int = IN_PORT):
    return run(dp.program, bytes(packet), port, now, state)


def out(result) -> tuple[int, Ether]:
    ((port, data),) = result.outputs
    return port, Ether(data)


def rechecked(frame: Ether) -> Ether:
    """The same frame with every length and checksum recomputed by scapy."""
    f = frame.copy()
    for layer in (IP, UDP, TCP, ICMP):
        lay = f
        while lay is not None and lay.name != "NoPayload":
            if isinstance(lay, layer):
                for fld in ("chksum", "len"):
                    if fld in lay.fields and not (isinstance(lay, UDP) and lay.chksum == 0 and fld == "chksum"):
                        del lay.fields[fld]
            lay = lay.payload if lay.payload else None
    return Ether(bytes(f))


CLS = "nf cls = classifier() {\n    match ipv4.dst in 10.0.0.0/8\n}\n"


def udp(dst="10.1.2.3", src="192.0.2.9", sport=1111, dport=2222, payload=b"data", **ip):
    return Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / payload


def tcp(dst="10.1.2.3", src="192.0.2.9", sport=1111, dport=80, payload=b"data"):
    return Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport) / payload


# ---------------------------------------------------------------- classifier


def test_classifier_claims_matching_packets_and_drops_the_rest():
    dp = device(CLS + "nf fw = firewall(default: allow)\ncls -> fw")
    p = udp()
    port, frame = out(send(dp, p))
    assert port == IN_PORT and bytes(frame) == bytes(p)  # end of chain: out where it came in
    assert send(dp, udp(dst="192.168.0.1")).dropped
    assert send(dp, Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IPv6(dst="2001:db8::1") / UDP()).dropped  # ipv4.dst test on IPv6: false
    assert send(dp, Ether(src="02:00:00:00:00:aa", dst="ff:ff:ff:ff:ff:ff", type=0x0806) / (b"\0" * 28)).dropped  # ARP


@pytest.mark.parametrize("cut", [10, 14, 20, 33, 37])
def test_truncated_packets_are_dropped(cut):
    dp = device(CLS + "nf fw = firewall(default: allow)\ncls -> fw")
    assert send(dp, bytes(udp())[:cut]).dropped


# ---------------------------------------------------------------- firewall


def test_firewall_first_matching_rule_decides():
    dp = device(
        CLS
        + """
nf fw = firewall(default: deny) {
    deny ipv4.src == 192.0.2.66
    allow ipv4.src in 192.0.2.0/24 and udp.dport in 2000..2999
    allow tcp.dport in [22, 443] or udp.dport == 53
}
cls -> fw
"""
    )
    assert not send(dp, udp(src="192.0.2.9", dport=2500)).dropped
    assert send(dp, udp(src="192.0.2.66", dport=2500)).dropped  # the earlier deny wins
    assert send(dp, udp(src="198.51.100.1", dport=2500)).dropped  # no rule: default deny
    assert send(dp, udp(dport=3000)).dropped  # outside the range
    assert not send(dp, tcp(dport=443)).dropped
    assert not send(dp, tcp(dport=22)).dropped
    assert send(dp, tcp(dport=53)).dropped  # udp.dport == 53 does not match TCP
    assert not send(dp, udp(src="203.0.113.1", dport=53)).dropped
    (acl,) = dp.program.tables
    assert acl.const and {k.match for k in acl.keys} == {"ternary", "range"}
    assert len(acl.entries) == 5  # one per rule, but the or/list rule became three


def test_firewall_default_allow_and_ordering_comparisons():
    dp = device(CLS + "nf fw = firewall(default: allow) {\n    deny udp.dport < 1024\n}\ncls -> fw")
    assert send(dp, udp(dport=1023)).dropped
    assert not send(dp, udp(dport=1024)).dropped
    assert not send(dp, tcp(dport=80)).dropped  # not UDP: the rule does not apply


# ---------------------------------------------------------------- router

ROUTER = """
nf rt = router(mac: 02:00:00:00:00:fe) {
    route 10.0.0.0/8 via 02:00:00:00:00:01 port 1
    route 10.2.0.0/16 via 02:00:00:00:00:02 port 2
}
cls -> rt
"""


def test_router_longest_prefix_mac_rewrite_ttl_and_checksum():
    dp = device(CLS + ROUTER)
    port, frame = out(send(dp, udp(dst="10.2.9.9", ttl=30)))
    assert port == 2
    assert (frame.src, frame.dst, frame[IP].ttl) == ("02:00:00:00:00:fe", "02:00:00:00:00:02", 29)
    assert bytes(frame) == bytes(rechecked(frame))  # checksum is right
    port, _ = out(send(dp, udp(dst="10.7.0.1")))
    assert port == 1


def test_router_drops_expiring_ttl_and_misses():
    dp = device("nf cls = classifier() {\n    match ipv4.proto == udp\n}\n" + ROUTER)
    assert send(dp, udp(dst="10.2.0.1", ttl=1)).dropped
    assert send(dp, udp(dst="192.168.1.1")).dropped


# ---------------------------------------------------------------- l2_forward

L2 = """nf sw = l2_forward() {
    station 02:00:00:00:00:bb port 2
    station 02:00:00:00:00:cc port 3
}
cls -> sw"""


def test_l2_forward_sends_stations_out_of_their_port_unchanged():
    dp = device("nf cls = classifier() {\n    match eth.type in 0..0xffff\n}\n" + L2)
    frame = udp()
    port, got = out(send(dp, frame, port=1))
    assert port == 2 and bytes(got) == bytes(frame)  # not a byte changed (no TTL, no MAC rewrite)
    arp = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:cc", type=0x0806) / (b"\x00" * 28)
    port, got = out(send(dp, arp, port=1))
    assert port == 3 and bytes(got) == bytes(arp)


def test_l2_forward_drops_unknown_broadcast_and_hairpin_frames():
    dp = device("nf cls = classifier() {\n    match eth.type in 0..0xffff\n}\n" + L2)
    assert send(dp, Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:dd") / IP() / UDP(), port=1).dropped
    assert send(dp, Ether(src="02:00:00:00:00:aa", dst="ff:ff:ff:ff:ff:ff") / IP() / UDP(), port=1).dropped
    # a station behind the port the frame came in on: a bridge does not send it back
    assert send(dp, udp(), port=2).dropped


# ---------------------------------------------------------------- load balancer

LB = """
nf lb = load_balancer(vip: 10.0.0.100, hash: [ipv4.src, ipv4.dst, udp.sport, udp.dport], table_size: 251) {{
{backends}
}}
cls -> lb
"""


def lb_device(backends: list[str]) -> DeviceProgram:
    return device(CLS + LB.format(backends="\n".join(f"    backend {b}" for b in backends)))


def test_load_balancer_dnat_checksums_and_affinity():
    dp = lb_device(["10.0.1.1", "10.0.1.2", "10.0.1.3"])
    state = State.initial(dp.program)
    chosen = {}
    for sport in range(1000, 1300):
        _, frame = out(send(dp, udp(dst="10.0.0.100", sport=sport), state=state))
        assert frame[IP].dst in {"10.0.1.1", "10.0.1.2", "10.0.1.3"}
        assert bytes(frame) == bytes(rechecked(frame))  # IPv4 and UDP checksums updated
        chosen[sport] = frame[IP].dst
    # a flow keeps its backend
    for sport in (1000, 1100, 1299):
        _, frame = out(send(dp, udp(dst="10.0.0.100", sport=sport), state=state))
        assert frame[IP].dst == chosen[sport]
    # spread: each of 3 backends gets a fair share of 300 flows
    counts = {b: list(chosen.values()).count(b) for b in set(chosen.values())}
    assert len(counts) == 3 and min(counts.values()) > 60
    # traffic not for the VIP passes untouched
    p = udp(dst="10.0.0.7")
    assert bytes(out(send(dp, p, state=state))[1]) == bytes(p)


def test_load_balancer_tcp_dnat_updates_the_tcp_checksum():
    dp = device(CLS + "nf lb = load_balancer(vip: 10.0.0.100) {\n    backend 10.0.1.1\n}\ncls -> lb")
    _, frame = out(send(dp, tcp(dst="10.0.0.100", payload=b"GET / HTTP/1.0\r\n\r\n")))
    assert frame[IP].dst == "10.0.1.1" and bytes(frame) == bytes(rechecked(frame))


def test_existing_flows_keep_their_backend_when_a_backend_is_added():
    old = lb_device(["10.0.1.1", "10.0.1.2", "10.0.1.3"])
    state = State.initial(old.program)
    before = {}
    for sport in range(2000, 2200):
        before[sport] = out(send(old, udp(dst="10.0.0.100", sport=sport), state=state))[1][IP].dst
    new = lb_device(["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4"])
    # the control plane installs the new Maglev table; the flow register keeps its state
    state.entries = {t.name: t.entries for t in new.program.tables}
    for sport, backend in before.items():
        assert out(send(new, udp(dst="10.0.0.100", sport=sport), state=state))[1][IP].dst == backend
    fresh = [out(send(new, udp(dst="10.0.0.100", sport=s), state=state))[1][IP].dst for s in range(5000, 5400)]
    assert "10.0.1.4" in fresh  # new flows do use the new backend


# ---------------------------------------------------------------- tunnels


def test_vxlan_encap_builds_correct_outer_headers():
    dp = device(CLS + "nf vx = tunnel(protocol: vxlan, mode: encap, vni: 5001, local: 192.0.2.1, remote: 192.0.2.2)\ncls -> vx")
    inner = udp(payload=b"x" * 40)
    _, frame = out(send(dp, inner))
    assert frame[IP].src == "192.0.2.1" and frame[IP].dst == "192.0.2.2"
    assert frame[UDP].dport == 4789 and 49152 <= frame[UDP].sport <= 65535 and frame[UDP].chksum == 0
    assert frame[VXLAN].vni == 5001 and frame[VXLAN].flags == 0x08
    assert bytes(frame[VXLAN].payload) == bytes(inner)  # the whole original frame inside
    assert bytes(frame) == bytes(rechecked(frame))  # lengths and IPv4 checksum as scapy computes them


def test_vxlan_decap_checks_the_tunnel_first():
    dp = device(
        "nf cls = classifier() {\n    match udp.dport == 4789\n}\n"
        "nf vx = tunnel(protocol: vxlan, mode: decap, vni: 5001, local: 192.0.2.2)\ncls -> vx"
    )
    inner = udp(payload=b"hello")
    wrapped = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789) / VXLAN(vni=5001, flags=0x08) / inner
    _, frame = out(send(dp, wrapped))
    assert bytes(frame) == bytes(inner)
    wrong_vni = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / VXLAN(vni=7, flags=0x08) / inner
    assert send(dp, wrong_vni).dropped
    not_tunnel = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / b"short"
    assert send(dp, not_tunnel).dropped


def test_gtpu_encap_and_decap_round_trip():
    enc = device(CLS + "nf n3 = tunnel(protocol: gtpu, mode: encap, teid: 0x1001, local: 192.0.2.1, remote: 192.0.2.2)\ncls -> n3")
    inner = udp(payload=b"y" * 21)
    _, frame = out(send(enc, inner))
    assert frame[UDP].dport == 2152 and frame[GTP_U_Header].teid == 0x1001
    assert frame[GTP_U_Header].gtp_type == 0xFF and frame[GTP_U_Header].length == len(inner[IP])
    assert bytes(frame[GTP_U_Header].payload) == bytes(inner[IP])  # IP packet, no inner Ethernet
    assert bytes(frame) == bytes(rechecked(frame))

    dec = device(
        "nf cls = classifier() {\n    match udp.dport == 2152\n}\n"
        "nf n3 = tunnel(protocol: gtpu, mode: decap, teid: 0x1001, local: 192.0.2.2)\ncls -> n3"
    )
    _, back = out(send(dec, frame))
    assert bytes(back[IP]) == bytes(inner[IP]) and back.type == 0x0800
    other_teid = frame.copy()
    other_teid[GTP_U_Header].teid = 0x2002
    assert send(dec, other_teid).dropped


GNB = dict(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb")
N3 = "nf cls = classifier() {\n    match udp.dport == 2152\n}\n"


def _gpdu(*carried, **gtp) -> Ether:
    """A G-PDU from the gNB with ``carried`` (extension headers, the inner packet) after
    its GTP-U header."""
    frame = Ether(**GNB) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=2152, dport=2152) \
        / GTP_U_Header(teid=0x1001, gtp_type=0xFF, **gtp)
    for layer in carried:
        frame = frame / layer
    return frame


def test_gtpu_decap_takes_gpdus_as_gnbs_send_them():
    """What standalone gNBs put on N3 (TS 29.281 §5.1-5.2, TS 38.415 §5.5.2), built by
    scapy's own GTP-U layers: the E flag and a PDU Session Container (uplink or
    downlink, any QFI), or a sequence number; the inner IP packet comes out whole.
    An extension header Mantra does not parse, or a longer container, is dropped."""
    dec = device(N3 + "nf n3 = tunnel(protocol: gtpu, mode: decap, teid: 0x1001, local: 192.0.2.2)\ncls -> n3")
    inner = udp(payload=b"z" * 30)[IP]
    for pdu_type in (0, 1):
        for qfi in (1, 9, 63):
            _, back = out(send(dec, _gpdu(GTPPDUSessionContainer(type=pdu_type, QFI=qfi), inner, E=1, next_ex=0x85)))
            assert bytes(back[IP]) == bytes(inner) and back.type == 0x0800, (pdu_type, qfi)
    _, back = out(send(dec, _gpdu(inner, S=1, seq=77)))
    assert bytes(back[IP]) == bytes(inner)
    assert send(dec, _gpdu(Raw(b"\x01\x08\x68\x00"), inner, E=1, next_ex=0x40)).dropped  # UDP Port extension
    longer = GTPPDUSessionContainer(type=0, QFI=9, QMP=1, dlSendTime=5)
    assert send(dec, _gpdu(longer, inner, E=1, next_ex=0x85)).dropped


def test_gtpu_encap_with_qfi_adds_a_pdu_session_container():
    enc = device(CLS + "nf n3 = tunnel(protocol: gtpu, mode: encap, teid: 0x1001, local: 192.0.2.1, "
                       "remote: 192.0.2.2, qfi: 9, pdu_type: ul)\ncls -> n3")
    inner = udp(payload=b"y" * 21)
    _, frame = out(send(enc, inner))
    g = frame[GTP_U_Header]
    assert (g.E, g.S, g.PN, g.next_ex, g.teid) == (1, 0, 0, 0x85, 0x1001)
    psc = frame[GTPPDUSessionContainer]
    assert (psc.ExtHdrLen, psc.type, psc.QFI, psc.NextExtHdr) == (1, 1, 9, 0)
    assert g.length == 4 + 4 + len(inner[IP])  # TS 29.281: everything after the mandatory header
    assert bytes(psc.payload) == bytes(inner[IP])
    assert bytes(frame) == bytes(rechecked(frame))  # the outer lengths and checksum as scapy computes them


def test_a_classifier_tells_qos_flows_apart():
    dp = device("nf cls = classifier() {\n    match gtpu_psc.qfi == 9\n}\n"
                "nf n3 = tunnel(protocol: gtpu, mode: decap)\ncls -> n3")
    inner = udp()[IP]
    for qfi, claimed in ((9, True), (1, False)):
        frame = _gpdu(GTPPDUSessionContainer(QFI=qfi), inner, E=1, next_ex=0x85)
        assert send(dp, frame).dropped != claimed, qfi


# ---------------------------------------------------------------- latency monitor


def test_latency_monitor_source_stamps_and_sink_records():
    src = device(CLS + "nf m = latency_monitor(role: source)\ncls -> m")
    p = udp()
    _, stamped = out(send(src, p, now=1_000_000))
    raw = bytes(stamped)
    assert raw[12:14] == b"\x88\xb5"  # eth.type = mtel
    assert raw[14] == 1 and raw[16:18] == b"\x08\x00"  # slice 1, inner EtherType IPv4
    assert int.from_bytes(raw[18:26], "big") == 1_000_000  # the timestamp
    assert raw[:12] + raw[26:] == bytes(p)[:12] + bytes(p)[14:]  # shim inserted, nothing else changed

    sink = device(
        "nf cls = classifier() {\n    match eth.type == mtel\n}\n"
        "nf s = latency_monitor(role: source)\nnf k = latency_monitor(role: sink, buckets: [100us, 1ms])\ncls -> s -> k"
    )
    state = State.initial(sink.program)
    _, restored = out(send(sink, stamped, now=1_350_000, state=state))  # 350 us later
    assert bytes(restored) == bytes(p)  # the shim is gone
    reg = lambda suffix: next(v for k, v in state.registers.items() if k.endswith(suffix))  # noqa: E731
    assert delay_sum(lambda word: reg(word)[1]) == 350_000
    assert reg("delay_count")[1] == 1 and reg("delay_max")[1] == 350_000
    (hist,) = state.counters.values()
    assert hist[(1 << 4) | 1][0] == 1  # slice 1, bucket 1 (100 us < 350 us <= 1 ms)


def test_latency_monitor_samples_one_in_n():
    dp = device(CLS + "nf m = latency_monitor(role: source, sample: 1/4)\ncls -> m")
    state = State.initial(dp.program)
    stamped = [bytes(out(send(dp, udp(), state=state))[1])[12:14] == b"\x88\xb5" for _ in range(8)]
    assert stamped == [True, False, False, False, True, False, False, False]


# ---------------------------------------------------------------- policer


def test_policer_drops_above_the_burst_and_refills_at_the_rate():
    dp = device(CLS + "nf p = policer(rate: 8 Mbps, burst: 3000 B)\ncls -> p", tenant=TENANT_NO_BW)
    state = State.initial(dp.program)
    size = len(udp(payload=b"z" * 958))  # 1000 bytes on the wire
    verdicts = [send(dp, udp(payload=b"z" * 958), now=0, state=state).dropped for _ in range(4)]
    assert size == 1000 and verdicts == [False, False, False, True]
    # 8 Mbit/s = 1 byte/us: 1000 us later one more packet fits
    assert not send(dp, udp(payload=b"z" * 958), now=1_000_000, state=state).dropped


def test_policer_remark_sets_dscp_and_fixes_the_checksum():
    dp = device(CLS + "nf p = policer(rate: 1 Mbps, burst: 2 KB, exceed: remark, dscp: cs1)\ncls -> p", tenant=TENANT_NO_BW)
    state = State.initial(dp.program)
    frames = [out(send(dp, udp(payload=b"z" * 958, tos=46 << 2), state=state))[1] for _ in range(3)]
    assert [f[IP].tos >> 2 for f in frames] == [46, 46, 8]  # the third exceeds: re-marked CS1
    assert bytes(frames[2]) == bytes(rechecked(frames[2]))


TENANT_NO_BW = "tenant acme id 1 {\n    slice gold {\n        latency <= 1 ms\n    }\n}\n"


# ---------------------------------------------------------------- composition


def test_a_four_nf_chain_with_a_branch():
    dp = device(
        """
nf cls = classifier() {
    match ipv4.dst in 10.0.0.0/8 or ipv4.dst == 192.0.2.2
}
nf dx = tunnel(protocol: vxlan, mode: decap, local: 192.0.2.2)
nf fw = firewall(default: allow) {
    deny udp.dport == 9
}
nf lb = load_balancer(vip: 10.0.0.53) {
    backend 10.0.5.1
}
nf rt = router(mac: 02:00:00:00:00:fe) {
    route 10.0.0.0/8 via 02:00:00:00:00:01 port 7
}
cls -> dx -> fw -> [udp.dport == 53] lb -> rt
fw -> rt
"""
    )
    wrap = lambda inner: Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / VXLAN(vni=1, flags=0x08) / inner  # noqa: E731
    # DNS to the VIP: decapsulated, load-balanced, routed
    port, frame = out(send(dp, wrap(udp(dst="10.0.0.53", dport=53))))
    assert port == 7 and frame[IP].dst == "10.0.5.1" and frame[IP].ttl == 63
    assert bytes(frame) == bytes(rechecked(frame))
    # other traffic skips the load balancer
    port, frame = out(send(dp, wrap(udp(dst="10.0.0.53", dport=80))))
    assert port == 7 and frame[IP].dst == "10.0.0.53"
    # the firewall drops discard-protocol traffic before anything else sees it
    assert send(dp, wrap(udp(dport=9))).dropped
    # not a tunnel packet: decap refuses it
    assert send(dp, udp(dst="10.0.0.53", dport=53)).dropped


def test_vlan_tagged_traffic_is_parsed_and_kept():
    dp = device(CLS + "nf m = latency_monitor(role: source)\ncls -> m")
    p = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / Dot1Q(vlan=100) / IP(dst="10.1.1.1") / UDP() / b"v"
    _, frame = out(send(dp, p))
    raw = bytes(frame)
    assert raw[12:14] == b"\x81\x00" and raw[16:18] == b"\x88\xb5"  # VLAN tag, then the shim


def test_placement_splits_a_graph_into_device_programs():
    spec = ok(
        graph(
            CLS
            + """
nf fw = firewall(default: allow)
nf m1 = latency_monitor(role: source)
nf m2 = latency_monitor(role: sink)
cls -> fw -> m1 -> m2
place fw, m1 on smartnic site a
place m2 on host site b
"""
        )
    )
    dps = {dp.name: dp for dp in compile_specs([spec])}
    assert set(dps) == {"smartnic_a", "host_b"}
    assert dps["smartnic_a"].nfs == ("g.cls", "g.fw", "g.m1")
    assert dps["host_b"].nfs == ("g.cls", "g.m2")
    # the source on the SmartNIC stamps; the host's sink (whose predecessor ran
    # elsewhere) measures as soon as the packet is classified
    _, stamped = out(send(dps["smartnic_a"], udp(), now=10))
    state = State.initial(dps["host_b"].program)
    _, plain = out(send(dps["host_b"], stamped, now=510, state=state))
    assert bytes(plain) == bytes(udp())
    assert any(v[1] == 500 for k, v in state.registers.items() if k.endswith("delay_sum_lo"))


def test_two_tenants_on_one_device_stay_apart():
    from mantra6g.synth import frontend

    (dp,) = compile_specs(frontend.load(["examples/edge_site_two_tenants.sg"]))
    # hospital haptics: routed out of port 1
    port, _ = out(send(dp, udp(src="10.10.1.1", dst="10.10.100.5", dport=6000)))
    assert port == 1
    # city camera RTSP to the VIP: load-balanced to a camera server, back where it came in
    port, frame = out(send(dp, tcp(src="10.11.3.3", dst="10.11.200.1", dport=554)))
    assert port == IN_PORT and frame[IP].dst in {"10.11.200.11", "10.11.200.12"}
    # neither tenant's traffic: dropped
    assert send(dp, udp(src="10.12.0.1", dst="10.10.100.5", dport=6000)).dropped


def _applies(stmts, seen):
    from mantra6g.synth import dpir

    for s in stmts:
        if isinstance(s, dpir.Apply):
            seen.append(s.table)
            _applies(s.on_hit + s.on_miss, seen)
        elif isinstance(s, dpir.If):
            _applies(s.then + s.orelse, seen)
    return seen


def test_every_table_of_every_example_is_applied_exactly_once():
    """P4 compilers reject a table applied on two paths; the lowerings never do it."""
    from mantra6g.synth import frontend
    from tests.conftest import EXAMPLES

    for path in EXAMPLES:
        for dp in compile_specs(frontend.load([path])):
            applied = _applies(dp.program.control, [])
            assert sorted(applied) == sorted(t.name for t in dp.program.tables), (path.name, dp.name)


def test_compiled_programs_are_the_same_in_every_process():
    """Proof caches and diffs rely on it: no set or dict order may leak into a program."""
    import subprocess
    import sys

    code = (
        "import hashlib; from mantra6g.synth import frontend; from mantra6g.synth.compose import compile_specs;"
        "print(hashlib.sha256(''.join(d.program.to_json() for d in compile_specs(frontend.load("
        "['examples/urllc_factory.sg', 'examples/edge_site_two_tenants.sg']))).encode()).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": str(seed)}, timeout=120).stdout
        for seed in (1, 2, 3)
    }
    assert len(digests) == 1 and "" not in digests


# ---------------------------------------------------------------- chains split over devices


def test_the_factory_example_delivers_its_chain_from_the_smartnic_to_the_host():
    """examples/urllc_factory.sg: fw, mon_in, lb (dsr) on the SmartNIC, mon_out on the
    host. What the SmartNIC sends (IP-in-IP, which the graph's classifier no longer
    matches) must reach the host's sink by its chain shim, which the host removes.
    (A consistency check; the kernel and scapy judge the shim in tests/oracle/test_split.py.)"""
    from pathlib import Path

    from mantra6g.source import SourceFile
    from mantra6g.synth import frontend

    path = Path(__file__).resolve().parents[2] / "examples" / "urllc_factory.sg"
    dps = {d.name: d for d in compile_specs(frontend.load_sources([SourceFile(str(path), path.read_text())]))}
    nic, host = dps["smartnic_factory_edge"], dps["host_factory_edge"]
    frame = udp(dst="10.1.255.10", src="10.1.1.5", sport=4000, dport=5001)
    ((_, sent),) = send(nic, frame, now=1_000_000).outputs
    assert sent[12:14] == b"\x88\xb6"  # handed over with the chain shim
    state = State.initial(host.program)
    out = run(host.program, sent, IN_PORT, 1_200_000, state)
    assert sum(state.registers["motion_control_mon_out_delay_count"]) == 1
    ((_, left),) = out.outputs
    assert left[12:14] == b"\x08\x00"  # both shims removed: IPv4 (IP-in-IP) again

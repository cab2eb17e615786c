"""Programs and packets for the XDP differential tests: one small graph per NF kind (and
a 4-NF chain), and a corpus of valid, malformed, truncated and mutated packets."""

from __future__ import annotations

import random

from scapy.contrib.gtp import GTP_U_Header
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from mantra6g.synth.compose import compile_specs
from tests.synth.helpers import graph, ok

CLS = "nf cls = classifier() {\n    match ipv4.dst in 10.0.0.0/8 or udp.dport in [4789, 2152]\n}\n"
TENANT = "tenant acme id 1 {\n    slice gold {\n        latency <= 1 ms\n    }\n}\n"
MACS = dict(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb")

GRAPHS = {
    "classifier": "nf fw = firewall(default: allow)\ncls -> fw",
    "firewall": """nf fw = firewall(default: deny) {
    deny ipv4.src == 192.0.2.66
    allow ipv4.src in 192.0.2.0/24 and udp.dport in 2000..2999
    allow tcp.dport in [22, 443] or udp.dport == 53 or ipv4.proto == icmp
}
cls -> fw""",
    "router": """nf rt = router(mac: 02:00:00:00:00:fe) {
    route 10.0.0.0/8 via 02:00:00:00:00:01 port 1
    route 10.2.0.0/16 via 02:00:00:00:00:02 port 2
}
cls -> rt""",
    "l2_forward": """nf sw = l2_forward() {
    station 02:00:00:00:00:aa port 1
    station 02:00:00:00:00:bb port 2
    station 02:00:00:00:00:cc port 3
}
cls -> sw""",
    "load_balancer": """nf lb = load_balancer(vip: 10.0.0.100, hash: [ipv4.src, ipv4.dst, udp.sport, udp.dport], table_size: 13) {
    backend 10.0.1.1
    backend 10.0.1.2 weight 2
}
cls -> lb""",
    "tunnel_vxlan_encap": "nf t = tunnel(protocol: vxlan, mode: encap, vni: 5001, local: 192.0.2.1, remote: 192.0.2.2)\ncls -> t",
    "tunnel_vxlan_decap": "nf t = tunnel(protocol: vxlan, mode: decap, vni: 5001)\ncls -> t",
    "tunnel_gtpu_encap": "nf t = tunnel(protocol: gtpu, mode: encap, teid: 4097, local: 192.0.2.1, remote: 192.0.2.2)\ncls -> t",
    "tunnel_gtpu_decap": "nf t = tunnel(protocol: gtpu, mode: decap, teid: 4097)\ncls -> t",
    "latency_monitor": "nf s = latency_monitor(role: source, sample: 1/2)\nnf k = latency_monitor(role: sink, buckets: [1us, 100us])\ncls -> s -> k",
    "policer": "nf p = policer(rate: 1 Mbps, burst: 3 KB, exceed: remark, dscp: cs1)\ncls -> p",
    "chain": """nf dx = tunnel(protocol: vxlan, mode: decap)
nf fw = firewall(default: allow) {
    deny udp.dport == 9
}
nf lb = load_balancer(vip: 10.0.0.53) {
    backend 10.0.5.1
}
nf rt = router(mac: 02:00:00:00:00:fe) {
    route 10.0.0.0/8 via 02:00:00:00:00:01 port 2
}
cls -> dx -> fw -> [udp.dport == 53] lb -> rt
fw -> rt""",
}


def spec(kind: str):
    return ok(graph(CLS + GRAPHS[kind], tenant=TENANT))


def program(kind: str):
    (dp,) = compile_specs([spec(kind)])
    return dp.program


def corpus() -> list[bytes]:
    """Hand-made packets every program sees: the traffic each NF acts on and what it must
    leave alone or refuse."""
    inner = Ether(**MACS) / IP(src="192.0.2.9", dst="10.1.2.3") / UDP(sport=1111, dport=53) / b"dns?"
    frames = [
        inner,
        Ether(**MACS) / IP(src="192.0.2.9", dst="10.0.0.100", ttl=2) / UDP(sport=1234, dport=2500) / (b"p" * 37),
        Ether(**MACS) / IP(src="192.0.2.66", dst="10.2.0.9") / UDP(dport=2500) / b"x",
        Ether(**MACS) / IP(src="198.51.100.1", dst="10.2.3.4", ttl=1) / TCP(dport=443, flags="S") / b"hello",
        Ether(**MACS) / IP(src="192.0.2.9", dst="10.0.0.100") / TCP(sport=40000, dport=22) / (b"t" * 100),
        Ether(**MACS) / IP(dst="10.9.9.9") / ICMP() / b"ping",
        Ether(**MACS) / IP(dst="10.9.9.9", frag=5) / UDP() / b"fragment",
        Ether(**MACS) / IP(dst="10.9.9.9", ihl=6, options=b"\x01\x01\x01\x01") / UDP() / b"options",
        Ether(**MACS) / Dot1Q(vlan=7) / IP(dst="10.3.3.3") / UDP(dport=53) / b"tagged",
        Ether(**MACS) / IPv6(dst="2001:db8::1") / UDP(dport=53) / b"v6",
        Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789) / VXLAN(vni=5001, flags=0x08) / inner,
        Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / VXLAN(vni=7, flags=0x08) / inner,
        Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=2152) / GTP_U_Header(teid=4097, gtp_type=0xFF) / inner[IP],
        Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=2152) / GTP_U_Header(teid=99, gtp_type=0xFF) / inner[IP],
        Ether(**MACS, type=0x0806) / (b"\x00" * 28),
    ]
    raw = [bytes(f) for f in frames]
    # a packet that already carries the telemetry shim (for sinks)
    shimmed = raw[0][:12] + b"\x88\xb5\x01\x00\x08\x00" + (123).to_bytes(8, "big") + raw[0][14:]
    raw.append(shimmed)
    raw += [raw[0][:n] for n in (0, 13, 14, 20, 33, 34, 41)]  # truncated
    return raw


def mutate(rng: random.Random, base: list[bytes]) -> bytes:
    """A random packet: a corpus packet with bytes flipped, cut, extended — or pure noise."""
    choice = rng.random()
    if choice < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
    data = bytearray(rng.choice(base))
    if choice < 0.5 and len(data) > 50:
        # Keep the outer headers (Ethernet, IPv4, UDP, tunnel: 50 bytes) and vary what
        # follows, so that decapsulation and inner parsing see many different packets.
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(50, len(data))] = rng.getrandbits(8)
        return bytes(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        if op < 0.6 and data:
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        elif op < 0.8:
            del data[rng.randrange(len(data) + 1):]
        else:
            data += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 30)))
    return bytes(data)


def tunnel_corpus() -> list[bytes]:
    """Valid VXLAN and GTP-U packets around varied inner traffic (the decap kinds and the
    chain start from these, so that their inner paths are fuzzed too)."""
    inners = [
        IP(src="192.0.2.9", dst="10.1.2.3") / UDP(sport=1111, dport=53) / b"dns?",
        IP(src="192.0.2.9", dst="10.0.0.53") / UDP(sport=2222, dport=53) / (b"q" * 20),
        IP(src="192.0.2.9", dst="10.2.0.1") / TCP(dport=80) / b"GET /",
        IP(src="192.0.2.9", dst="10.2.0.1") / UDP(dport=9) / b"discard",
        IP(dst="10.3.0.1") / ICMP() / b"ping",
    ]
    out = []
    for inner in inners:
        out.append(bytes(
            Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789)
            / VXLAN(vni=5001, flags=0x08) / Ether(**MACS) / inner
        ))
        out.append(bytes(
            Ether(**MACS) / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=2152)
            / GTP_U_Header(teid=4097, gtp_type=0xFF) / inner
        ))
    return out


def fuzz_base(kind: str) -> list[bytes]:
    return tunnel_corpus() if kind in ("tunnel_vxlan_decap", "tunnel_gtpu_decap", "chain") else corpus()

"""Frames that real links carry, built with scapy, each labelled with its class.

The classes cover what the reference model has rules for: padded minimum-size frames,
IPv4 options, first/middle/last fragments, VLAN tags, the telemetry shim, UDP checksum 0,
wrong checksums, TCP options, ICMP, IPv6, ARP, IP-in-IP, VXLAN (with and without
reserved flag bits) and GTP-U (plain G-PDUs and ones with extension headers) around
inner traffic, malformed IPv4 (bad version, IHL, total length) and truncated headers.

    rng = random.Random(seed)
    label, data = random_frame(rng)

The address plan matches :mod:`tests.oracle.chains`: clients in 10.1.0.0/16, servers and
backends in 10.2.0.0/16, the VIP 10.9.0.100, tunnel endpoints 192.0.2.1 and .2.
"""

from __future__ import annotations

import random

from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from tests.oracle.frame import MTel

MACS = ("02:00:00:00:00:aa", "02:00:00:00:00:bb", "02:00:00:00:00:cc", "02:00:00:00:00:fe")
CLIENTS = ("10.1.0.7", "10.1.3.7", "10.1.200.9", "198.51.100.4")
SERVERS = ("10.2.0.11", "10.2.0.12", "10.2.3.4", "10.9.0.100", "10.9.0.100", "10.3.0.1", "192.0.2.2")
PORTS = (53, 80, 443, 2000, 5001, 5005, 40000, 4789, 2152)
VIP = "10.9.0.100"
TUNNEL_LOCAL, TUNNEL_REMOTE = "192.0.2.1", "192.0.2.2"


def _l4(rng: random.Random, proto: str, payload: bytes, no_checksum: bool = False):
    if proto == "udp":
        return UDP(sport=rng.choice(PORTS + (33333,)), dport=rng.choice(PORTS), chksum=0 if no_checksum else None) / payload
    if proto == "tcp":
        opts = [("MSS", 1460), ("NOP", None), ("WScale", 7)] if rng.random() < 0.3 else []
        return TCP(sport=rng.choice(PORTS + (33333,)), dport=rng.choice(PORTS), flags=rng.choice("SAPF"),
                   seq=rng.getrandbits(32), options=opts) / payload
    return ICMP(type=rng.choice((0, 8, 3)), id=rng.getrandbits(16), seq=rng.getrandbits(16)) / payload


def inner_ip(rng: random.Random, label: list[str]) -> IP:
    """An IPv4 packet of a random class (plain, options, fragment, checksum 0/bad)."""
    proto = rng.choice(("udp", "udp", "tcp", "icmp"))
    payload = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 1, 5, 18, 60, 300))))
    kw = dict(src=rng.choice(CLIENTS), dst=rng.choice(SERVERS), ttl=rng.choice((1, 2, 64, 255)),
              tos=rng.getrandbits(8), id=rng.getrandbits(16), flags=rng.choice((0, 2)))
    roll = rng.random()
    if roll < 0.12:
        kw["options"] = rng.choice(([IPOption_Router_Alert()], [IPOption_NOP()] * 4,
                                    [IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()]))
        label.append("ipv4-options")
    elif roll < 0.24:
        where = rng.choice(("first", "middle", "last"))
        kw["flags"] = 1 if where != "last" else 0
        kw["frag"] = 0 if where == "first" else rng.choice((1, 8, 185))
        label.append(f"fragment-{where}")
    no_checksum = proto == "udp" and rng.random() < 0.15
    pkt = IP(**kw) / _l4(rng, proto, payload, no_checksum)
    label.append(proto)
    if no_checksum:
        label.append("udp-checksum-0")
    if rng.random() < 0.08:
        raw = bytearray(bytes(pkt))
        raw[10] ^= 0x5A  # a wrong IPv4 header checksum
        pkt = IP(bytes(raw))
        label.append("bad-ip-checksum")
    return pkt


def random_frame(rng: random.Random, tunnelled: float = 0.13) -> tuple[str, bytes]:
    """A frame of a random class and its class label ("vlan+tcp+padded", …);
    ``tunnelled`` is the share of VXLAN and GTP-U frames."""
    label: list[str] = []
    eth = Ether(src=rng.choice(MACS), dst=rng.choice(MACS))
    roll = rng.random()
    if roll < 0.04:
        label.append("arp")
        frame = eth / ARP(psrc=rng.choice(CLIENTS), pdst=rng.choice(SERVERS))
    elif roll < 0.09:
        label.append("ipv6")
        l4 = _l4(rng, rng.choice(("udp", "tcp")), b"v6")
        if rng.random() < 0.4:  # extension headers before the transport (RFC 8200 §4)
            ext = rng.choice((IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment))
            l4 = ext() / l4
            label.append(ext.__name__)
        frame = eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / l4
    elif roll < 0.09 + tunnelled:
        outer = IP(src=TUNNEL_LOCAL, dst=rng.choice((TUNNEL_REMOTE, TUNNEL_REMOTE, "10.2.0.11")), ttl=64)
        inner = inner_ip(rng, label)
        if rng.random() < 0.5:
            flags = rng.choice((0x08, 0x08, 0x88, 0x0C, 0x00))
            label.insert(0, f"vxlan-{flags:#04x}")
            frame = eth / outer / UDP(sport=rng.getrandbits(16), dport=4789) / VXLAN(flags=flags, vni=rng.choice((5001, 7))) \
                / Ether(src=rng.choice(MACS), dst=rng.choice(MACS)) / inner
        else:
            teid = rng.choice((4097, 99))
            roll = rng.random()
            if roll < 0.25:  # what real gNBs and UPFs send: E flag, PDU Session Container (QFI)
                gtp = GTP_U_Header(teid=teid, gtp_type=0xFF, E=1, next_ex=0x85) \
                    / GTPPDUSessionContainer(type=rng.choice((0, 1)), QFI=rng.choice((9, 1, 63)))
                label.insert(0, "gtpu-psc")
            elif roll < 0.30:  # a sequence number (S flag), no extension header
                gtp = GTP_U_Header(teid=teid, gtp_type=0xFF, S=1, seq=rng.getrandbits(16))
                label.insert(0, "gtpu-seq")
            elif roll < 0.35:  # an extension header Mantra does not parse (UDP Port, 0x40)
                gtp = GTP_U_Header(teid=teid, gtp_type=0xFF, E=1, next_ex=0x40) / Raw(b"\x01\x08\x68\x00")
                label.insert(0, "gtpu-ext40")
            else:
                gtp = GTP_U_Header(teid=teid, gtp_type=0xFF)
                label.insert(0, "gtpu")
            frame = eth / outer / UDP(sport=2152, dport=2152) / gtp / inner
    elif roll < 0.12 + tunnelled:
        label.append("ipip")
        frame = eth / IP(src="10.2.0.1", dst="10.2.0.11", proto=4) / inner_ip(rng, label)
    else:
        frame = eth / inner_ip(rng, label)
    if rng.random() < 0.12 and "arp" not in label:
        label.insert(0, "vlan")
        frame = Ether(src=frame.src, dst=frame.dst) / Dot1Q(vlan=rng.choice((7, 100))) / frame.payload
    data = bytes(frame)
    if rng.random() < 0.06:  # the telemetry shim after Ethernet (and VLAN tag)
        at = 16 if label and label[0] == "vlan" else 12
        shim = bytes(MTel(slice=1, type=int.from_bytes(data[at : at + 2], "big"), ts=rng.getrandbits(40)))
        data = data[:at] + b"\x88\xb5" + shim + data[at + 2 :]
        label.insert(0, "shim")
    roll = rng.random()
    if len(data) < 60 and roll < 0.7:
        # what a NIC delivers: padded to the 60-byte minimum, zeros or junk
        pad = bytes(60 - len(data)) if rng.random() < 0.5 else bytes(rng.getrandbits(8) for _ in range(60 - len(data)))
        data += pad
        label.append("padded")
    elif roll < 0.06:
        cut = rng.randrange(14, len(data))
        data = data[:cut]
        label.append("truncated")
    elif roll < 0.10 and not label[0].startswith(("arp", "ipv6")):
        data = _malform(rng, data, label)
    return "+".join(label), data


def _malform(rng: random.Random, data: bytes, label: list[str]) -> bytes:
    """An IPv4 header that is not version 4, has an IHL below 5, or a total length that
    does not fit the frame."""
    at = data.find(b"\x45") if data[12:14] != b"\x08\x00" else 14
    if at < 14:
        return data
    raw = bytearray(data)
    what = rng.choice(("version", "ihl", "long", "short"))
    if what == "version":
        raw[at] = (6 << 4) | (raw[at] & 0xF)
    elif what == "ihl":
        raw[at] = (raw[at] & 0xF0) | rng.randrange(0, 5)
    elif what == "long":
        raw[at + 2 : at + 4] = (len(data) - at + rng.randrange(1, 40)).to_bytes(2, "big")
    else:
        raw[at + 2 : at + 4] = rng.randrange(0, 20).to_bytes(2, "big")
    label.append(f"malformed-{what}")
    return bytes(raw)


def frames(seed: str, n: int, tunnelled: float = 0.13) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [random_frame(rng, tunnelled) for _ in range(n)]


__all__ = ["frames", "inner_ip", "random_frame"]


def build_frame(
    l3: str = "ipv4",
    proto: str = "udp",
    payload: bytes = b"",
    vlan: bool = False,
    options: bool = False,
    fragment: str = "",
    udp_checksum_0: bool = False,
    tunnel: str = "",
    dst: str = VIP,
    pad: bool = True,
    cut: int = 0,
) -> bytes:
    """One frame from explicit choices (what a Hypothesis strategy draws, so that a failing
    frame shrinks to its essentials); ``cut`` drops that many bytes from the end."""
    if l3 == "arp":
        frame = Ether(src=MACS[0], dst=MACS[1]) / ARP(psrc=CLIENTS[0], pdst=SERVERS[0])
    elif l3 == "ipv6":
        frame = Ether(src=MACS[0], dst=MACS[1]) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=53) / payload
    else:
        kw = dict(src=CLIENTS[0], dst=dst, id=7)
        if options:
            kw["options"] = [IPOption_Router_Alert()]
        if fragment:
            kw["flags"] = 0 if fragment == "last" else 1
            kw["frag"] = 0 if fragment == "first" else 3
        l4 = {"udp": UDP(sport=4000, dport=53, chksum=0 if udp_checksum_0 else None), "tcp": TCP(sport=4000, dport=80),
              "icmp": ICMP()}[proto]
        ip = IP(**kw) / l4 / payload
        if tunnel == "vxlan":
            ip = IP(src=TUNNEL_LOCAL, dst=TUNNEL_REMOTE) / UDP(sport=1, dport=4789) / VXLAN(vni=5001) \
                / Ether(src=MACS[2], dst=MACS[3]) / ip
        elif tunnel == "gtpu":
            ip = IP(src=TUNNEL_LOCAL, dst=TUNNEL_REMOTE) / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=4097) / ip
        frame = Ether(src=MACS[0], dst=MACS[1]) / ip
    if vlan:
        frame = Ether(src=frame.src, dst=frame.dst) / Dot1Q(vlan=7) / frame.payload
    data = bytes(frame)
    if pad and len(data) < 60:
        data += bytes(60 - len(data))
    return data[: max(14, len(data) - cut)]

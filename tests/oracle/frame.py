"""How a frame is read: the parsing rules of docs/dpir.md ("Composition") and the RFCs,
with scapy's layers decoding every header.

Nothing here imports Mantra's parser, lowering or interpreter: this is the independent
side of the comparison. :func:`read` returns a :class:`Frame` — which headers the frame
carries and where — or ``None`` when the rules say the frame is dropped (a header the
rules read does not fit, an IPv4 header that is not version 4 with IHL >= 5, or whose
total length is shorter than its header or longer than what arrived).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.fields import ByteField, LongField, ShortField, XShortField
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_MTEL, ETH_CHAIN = 0x0800, 0x86DD, 0x8100, 0x88B5, 0x88B6
VXLAN_PORT, GTPU_PORT = 4789, 2152
SIZES = {"udp": 8, "tcp": 20, "icmp": 8}


class MTel(Packet):
    """Mantra's telemetry shim, as docs/nf/latency_monitor.md describes it: slice id (8),
    flags (8), the EtherType it displaced (16), the source's timestamp in ns (64)."""

    name = "MantraTelemetry"
    fields_desc = [ByteField("slice", 0), ByteField("flags", 0), XShortField("type", 0), LongField("ts", 0)]


class ChainShim(Packet):
    """Mantra's chain shim between the devices of a split chain, as docs/dpir.md
    describes it: tenant id (16), graph number (16), the position of the NF to resume at
    (16), the EtherType it displaced (16)."""

    name = "MantraChain"
    fields_desc = [ShortField("tenant", 0), ShortField("graph", 0), ShortField("resume", 0), XShortField("type", 0)]


@dataclass
class Layer:
    """One header: its scapy view (decoded from its own bytes) and where it starts."""

    kind: str  # "eth" "vlan" "mtel" "ipv4" "ipv6" "udp" "tcp" "icmp" "vxlan" "gtpu" "gtpu_opt" "gtpu_psc"
    at: int
    size: int
    pkt: Packet
    raw: bytes  # the header's bytes as they arrived

    @property
    def end(self) -> int:
        return self.at + self.size


@dataclass
class Frame:
    data: bytes
    outer: dict[str, Layer] = field(default_factory=dict)
    inner: dict[str, Layer] = field(default_factory=dict)  # behind a VXLAN / G-PDU

    def has(self, kind: str) -> bool:
        return kind in self.outer

    @property
    def l3_at(self) -> int:
        """Where the network layer starts (after Ethernet, VLAN tag and shim)."""
        return max(self.outer[k].end for k in ("eth", "vlan", "mtel") if k in self.outer)

    @property
    def l2_types(self) -> list[Layer]:
        return [self.outer[k] for k in ("eth", "vlan", "mtel") if k in self.outer]

    def tunnel(self) -> str | None:
        return next((k for k in ("vxlan", "gtpu") if k in self.outer), None)


def ethertype(p: Packet) -> int:
    """Ethernet II's type field; scapy decodes a value up to 1500 as an 802.3 length."""
    return p.type if "type" in p.fields else p.len


def _take(layers: dict, kind: str, cls, data: bytes, at: int, size: int) -> Packet | None:
    if at + size > len(data):
        return None
    raw = data[at : at + size]
    # scapy decodes optional parts (GTP-U's extension fields, TCP options, some ICMP
    # types' bodies, VXLAN-GPE/GBP layouts) when the header announces them; only the
    # fixed part is read here, so give it room.
    pkt = cls()
    pkt.do_dissect(raw + bytes(64))  # the header's fields only: no payload layers
    layers[kind] = Layer(kind, at, size, pkt, raw)
    return pkt


def _ipv4(layers: dict, data: bytes, at: int, any_version: bool = False) -> tuple[bool, bool]:
    """Read an IPv4 header at ``at``: (frame still good, transport header follows). With
    ``any_version`` (behind a G-PDU, which may carry IPv6) a version other than 4 makes
    the inner packet payload."""
    ip = _take(layers, "ipv4", IP, data, at, 20)
    if ip is None:
        return False, False
    if any_version and ip.version != 4:
        return True, False
    if ip.version != 4 or ip.ihl < 5:
        return False, False  # RFC 1812 §5.2.2: not an IPv4 header a router may forward
    if ip.len < 4 * ip.ihl or ip.len > len(data) - at:
        return False, False  # the total length does not fit what arrived
    unfragmented = not (ip.flags & 1) and ip.frag == 0  # MF clear, offset 0
    return True, ip.ihl == 5 and unfragmented and ip.proto in (1, 6, 17)


def _l4(layers: dict, data: bytes, at: int, proto: int) -> Packet | None | bool:
    kind = {17: "udp", 6: "tcp", 1: "icmp"}[proto]
    cls = {"udp": UDP, "tcp": TCP, "icmp": ICMP}[kind]
    pkt = _take(layers, kind, cls, data, at, SIZES[kind])
    return pkt if pkt is not None else False


def read(data: bytes, tunnels: bool = True, l2_only: tuple[str, ...] | None = None) -> Frame | None:
    """The frame's headers per the standard parser's rules, or None if it is dropped.

    After a decapsulation, the NFs that follow see the inner packet as the parser read it
    when the frame arrived (docs/dpir.md): its IP and transport headers, but no tunnel
    inside it (``tunnels=False``), and for an inner Ethernet frame that is not IPv4 only
    the outer frame's VLAN tag and shim after Ethernet (``l2_only``), nothing of the
    inner frame beyond its Ethernet header."""
    f = Frame(data)
    o = f.outer
    eth = _take(o, "eth", Ether, data, 0, 14)
    if eth is None:
        return None
    etype, at = ethertype(eth), 14
    if etype == ETH_VLAN and (l2_only is None or "vlan" in l2_only):
        tag = _take(o, "vlan", Dot1Q, data, at, 4)
        if tag is None:
            return None
        etype, at = tag.type, at + 4
    if etype == ETH_MTEL and (l2_only is None or "mtel" in l2_only):
        shim = _take(o, "mtel", MTel, data, at, 12)
        if shim is None:
            return None
        etype, at = shim.type, at + 12
    if l2_only is not None:
        return f
    if etype == ETH_IPV4:
        good, l4 = _ipv4(o, data, at)
        if not good:
            return None
        if not l4:
            return f
        proto, at = o["ipv4"].pkt.proto, at + 20
    elif etype == ETH_IPV6:
        ip6 = _take(o, "ipv6", IPv6, data, at, 40)
        if ip6 is None:
            return None
        if ip6.nh not in (6, 17):
            return f
        proto, at = ip6.nh, at + 40
    else:
        return f
    l4 = _l4(o, data, at, proto)
    if l4 is False:
        return None
    if proto != 17 or l4.dport not in (VXLAN_PORT, GTPU_PORT) or not tunnels:
        return f
    at += 8
    if l4.dport == VXLAN_PORT:
        if _take(o, "vxlan", VXLAN, data, at, 8) is None:
            return None
        inner_eth = _take(f.inner, "eth", Ether, data, at + 8, 14)
        if inner_eth is None:
            return None
        if ethertype(inner_eth) != ETH_IPV4:
            return f
        at += 22
    else:
        g = _take(o, "gtpu", GTP_U_Header, data, at, 8)
        if g is None:
            return None
        if g.version != 1 or g.gtp_type != 0xFF:
            return f  # not a G-PDU: no inner packet
        at += 8
        if g.E or g.S or g.PN:  # TS 29.281 §5.1: sequence number, N-PDU number, next extension type
            if at + 4 > len(data):
                return None
            opt = GTP_U_Header()  # scapy reads these 4 bytes as part of the GTP-U header
            opt.do_dissect(data[at - 8 : at + 4] + bytes(64))
            o["gtpu_opt"] = Layer("gtpu_opt", at, 4, opt, data[at : at + 4])
            at += 4
            if g.E and opt.next_ex == 0x85:  # a PDU Session Container (TS 38.415 §5.5.2)
                if _take(o, "gtpu_psc", GTPPDUSessionContainer, data, at, 4) is None:
                    return None
                if o["gtpu_psc"].raw[0] != 1 or o["gtpu_psc"].raw[3] != 0:
                    return f  # longer, or followed by another extension header: payload
                at += 4
            elif g.E and opt.next_ex != 0:
                return f  # another extension header: the inner packet is payload
    good, inner_l4 = _ipv4(f.inner, data, at, any_version=l4.dport == GTPU_PORT)
    if not good:
        return None
    if inner_l4:
        if _l4(f.inner, data, at + 20, f.inner["ipv4"].pkt.proto) is False:
            return None
    return f


# ---------------------------------------------------------------- fields as the spec names them


def _value(layer: Layer, name: str) -> int:
    """A header field by the name Mantra's language gives it (docs/language.md), read from
    scapy's decoding of that header."""
    p = layer.pkt
    k = layer.kind
    if k == "eth":
        return {"dst": _mac(p.dst), "src": _mac(p.src), "type": ethertype(p)}[name]
    if k == "vlan":
        return {"pcp": p.prio, "dei": p.dei, "vid": p.vlan, "type": p.type}[name]
    if k == "mtel":
        return int(getattr(p, name))
    if k == "ipv4":
        return {
            "version": p.version, "ihl": p.ihl, "dscp": p.tos >> 2, "ecn": p.tos & 3, "len": p.len,
            "ident": p.id, "flags": int(p.flags), "frag": p.frag, "ttl": p.ttl, "proto": p.proto,
            "checksum": p.chksum, "src": _ip(p.src), "dst": _ip(p.dst),
        }[name]
    if k == "ipv6":
        return {
            "version": p.version, "traffic_class": p.tc, "flow_label": p.fl, "payload_len": p.plen,
            "next_header": p.nh, "hop_limit": p.hlim, "src": _ip6(p.src), "dst": _ip6(p.dst),
        }[name]
    if k == "udp":
        return {"sport": p.sport, "dport": p.dport, "len": p.len, "checksum": p.chksum}[name]
    if k == "tcp":
        return {
            "sport": p.sport, "dport": p.dport, "seq": p.seq, "ack": p.ack, "data_offset": p.dataofs,
            "reserved": p.reserved, "flags": int(p.flags), "window": p.window, "checksum": p.chksum,
            "urgent": p.urgptr,
        }[name]
    if k == "icmp":
        raw = layer.raw
        return {"type": p.type, "code": p.code, "checksum": p.chksum, "rest": int.from_bytes(raw[4:8], "big")}[name]
    if k == "vxlan":
        raw = layer.raw
        # RFC 7348 §5's layout (scapy reads some flag combinations as VXLAN-GPE/GBP).
        return {"flags": raw[0], "reserved": int.from_bytes(raw[1:4], "big"), "vni": int.from_bytes(raw[4:7], "big"),
                "reserved2": raw[7]}[name]
    if k == "gtpu_opt":  # decoded by GTP_U_Header, of which these are bytes 8-11
        return {"seq": p.seq, "npdu": p.npdu, "next_ext": p.next_ex}[name]
    if k == "gtpu_psc":
        raw = layer.raw
        return {"len": p.ExtHdrLen, "pdu_type": p.type, "flags": raw[1] & 0xF, "flags2": raw[2] >> 6, "qfi": p.QFI,
                "next_ext": raw[3]}[name]
    if k == "gtpu":
        return {
            "version": p.version, "pt": p.PT, "spare": p.reserved, "ext": p.E, "seq_flag": p.S,
            "npdu_flag": p.PN, "msg_type": p.gtp_type, "len": p.length, "teid": p.teid,
        }[name]
    raise KeyError(k)


def value_of(frame: Frame, path: str) -> int | None:
    """``ipv4.dst`` etc. of the frame's outer headers; None when it lacks that header."""
    kind, _, name = path.partition(".")
    layer = frame.outer.get(kind)
    return None if layer is None else _value(layer, name)


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _ip6(text: str) -> int:
    import ipaddress

    return int(ipaddress.IPv6Address(text))

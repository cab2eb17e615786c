"""Packet headers, declared once.

Each header is a list of typed fields in wire order (as in scapy's ``fields_desc``).
The service-graph checker validates field references and literal widths against this
table; the DP-IR, the P4 and XDP backends, the interpreter and the scapy layers used by
the tests all derive their view of a header from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FieldKind(Enum):
    """How a field's values are written in a service graph."""

    INT = "int"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    MAC = "mac"


@dataclass(frozen=True)
class HeaderField:
    name: str
    width: int
    kind: FieldKind = FieldKind.INT
    # Named values a user may write instead of the number (``ipv4.proto == udp``).
    constants: tuple[tuple[str, int], ...] = ()

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1

    def constant(self, name: str) -> int | None:
        return dict(self.constants).get(name)


@dataclass(frozen=True)
class HeaderType:
    """A header: its name in service graphs and its fields in wire order."""

    name: str
    fields: tuple[HeaderField, ...]
    doc: str = ""

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)

    def field(self, name: str) -> HeaderField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def _f(name: str, width: int, kind: FieldKind = FieldKind.INT, **constants: int) -> HeaderField:
    return HeaderField(name, width, kind, tuple(constants.items()))


ETHER_TYPES = {"ipv4": 0x0800, "ipv6": 0x86DD, "vlan": 0x8100, "arp": 0x0806, "mtel": 0x88B5, "chain": 0x88B6}
IP_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
# RFC 4594 names: best effort, class selectors, assured forwarding, expedited forwarding.
DSCP_NAMES = (
    {"be": 0, "ef": 46}
    | {f"cs{i}": 8 * i for i in range(8)}
    | {f"af{c}{d}": 8 * c + 2 * d for c in range(1, 5) for d in range(1, 4)}
)

ETHERNET = HeaderType(
    "eth",
    (
        _f("dst", 48, FieldKind.MAC),
        _f("src", 48, FieldKind.MAC),
        _f("type", 16, **ETHER_TYPES),
    ),
    "Ethernet II",
)
VLAN = HeaderType(
    "vlan",
    (_f("pcp", 3), _f("dei", 1), _f("vid", 12), _f("type", 16, **ETHER_TYPES)),
    "IEEE 802.1Q tag",
)
IPV4 = HeaderType(
    "ipv4",
    (
        _f("version", 4),
        _f("ihl", 4),
        _f("dscp", 6, **DSCP_NAMES),
        _f("ecn", 2),
        _f("len", 16),
        _f("ident", 16),
        _f("flags", 3),
        _f("frag", 13),
        _f("ttl", 8),
        _f("proto", 8, **IP_PROTOCOLS),
        _f("checksum", 16),
        _f("src", 32, FieldKind.IPV4),
        _f("dst", 32, FieldKind.IPV4),
    ),
    "IPv4 without options",
)
IPV6 = HeaderType(
    "ipv6",
    (
        _f("version", 4),
        _f("traffic_class", 8),
        _f("flow_label", 20),
        _f("payload_len", 16),
        _f("next_header", 8, **IP_PROTOCOLS),
        _f("hop_limit", 8),
        _f("src", 128, FieldKind.IPV6),
        _f("dst", 128, FieldKind.IPV6),
    ),
    "IPv6 fixed header",
)
UDP = HeaderType(
    "udp",
    (_f("sport", 16), _f("dport", 16), _f("len", 16), _f("checksum", 16)),
    "UDP",
)
TCP = HeaderType(
    "tcp",
    (
        _f("sport", 16),
        _f("dport", 16),
        _f("seq", 32),
        _f("ack", 32),
        _f("data_offset", 4),
        _f("reserved", 4),
        _f("flags", 8, fin=0x01, syn=0x02, rst=0x04, psh=0x08, ack=0x10),
        _f("window", 16),
        _f("checksum", 16),
        _f("urgent", 16),
    ),
    "TCP without options",
)
ICMP = HeaderType(
    "icmp",
    (_f("type", 8, echo_reply=0, echo_request=8), _f("code", 8), _f("checksum", 16), _f("rest", 32)),
    "ICMP (type, code, checksum and the 4-byte rest of header)",
)
VXLAN = HeaderType(
    "vxlan",
    (_f("flags", 8), _f("reserved", 24), _f("vni", 24), _f("reserved2", 8)),
    "VXLAN (RFC 7348), carried in UDP port 4789",
)
GTPU = HeaderType(
    "gtpu",
    (
        _f("version", 3),
        _f("pt", 1),
        _f("spare", 1),
        _f("ext", 1),
        _f("seq_flag", 1),
        _f("npdu_flag", 1),
        _f("msg_type", 8, gpdu=0xFF, echo_request=1, echo_response=2),
        _f("len", 16),
        _f("teid", 32),
    ),
    "GTP-U v1 mandatory header (3GPP TS 29.281), carried in UDP port 2152",
)
# Present when any of the E, S, PN flags is set (TS 29.281 §5.1); the next extension
# header type is read only with the E flag.
GTPU_OPT = HeaderType(
    "gtpu_opt",
    (_f("seq", 16), _f("npdu", 8), _f("next_ext", 8, none=0, pdu_session=0x85)),
    "GTP-U optional fields: sequence number, N-PDU number, next extension header type",
)
# The PDU Session Container (TS 38.415 §5.5.2, TS 29.281 §5.2.2.7) of one 4-byte unit:
# what gNBs and UPFs put on every N3/N9 G-PDU (PDU type 0: downlink, 1: uplink).
GTPU_PSC = HeaderType(
    "gtpu_psc",
    (
        _f("len", 8),
        _f("pdu_type", 4, dl=0, ul=1),
        _f("flags", 4),
        _f("flags2", 2),
        _f("qfi", 6),
        _f("next_ext", 8, none=0),
    ),
    "GTP-U PDU Session Container (length 1): PDU type, the flags of TS 38.415, QoS flow id",
)
# Mantra's telemetry shim, inserted after Ethernet by a latency-monitor source and
# removed by the sink: EtherType 0x88B5 (IEEE local experimental 1).
MTEL = HeaderType(
    "mtel",
    (_f("slice", 8), _f("flags", 8), _f("type", 16, **ETHER_TYPES), _f("ts", 64)),
    "Mantra telemetry shim: slice id, flags, inner EtherType, ingress timestamp (ns)",
)

# Mantra's chain shim, pushed where a graph's chain passes to another device and popped
# by the device that resumes it: EtherType 0x88B6 (IEEE local experimental 2), after
# Ethernet and a VLAN tag, before a telemetry shim. ``graph`` numbers the site's graphs
# from 1 (compose.graph_numbers); ``resume`` is the position of the NF to run next in
# its graph's declaration, from 1.
CHAIN = HeaderType(
    "chain",
    (_f("tenant", 16), _f("graph", 16), _f("resume", 16), _f("type", 16, **ETHER_TYPES)),
    "Mantra chain shim: tenant id, graph number, the NF to resume at, inner EtherType",
)

HEADERS: dict[str, HeaderType] = {
    h.name: h for h in (ETHERNET, VLAN, IPV4, IPV6, UDP, TCP, ICMP, VXLAN, GTPU, GTPU_OPT, GTPU_PSC, MTEL, CHAIN)
}

UDP_PORTS = {"vxlan": 4789, "gtpu": 2152}
GTPU_PDU_SESSION = 0x85  # the next-extension-header type of a PDU Session Container


def lookup_field(path: str) -> HeaderField | None:
    """The field named by ``header.field`` (e.g. ``ipv4.dst``), or None."""
    header, _, name = path.partition(".")
    h = HEADERS.get(header)
    return h.field(name) if h else None


def all_field_paths() -> list[str]:
    return [f"{h.name}.{f.name}" for h in HEADERS.values() for f in h.fields]

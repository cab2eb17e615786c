"""What each NF kind does to a frame, written from docs/nf/*.md and the RFCs.

Scapy builds every new header and computes every length and checksum; the NF's
configuration comes from the parsed service graph (the user's spec), but nothing here
calls Mantra's lowering, DP-IR, interpreter or backends. A chain is the composition of
the per-kind models: each NF reads the bytes the previous one produced (see
:mod:`tests.oracle.frame`).

    model = ChainModel(graph)                 # one ServiceGraph (from the frontend)
    model.run(data, ingress_port, now_ns)     # -> [(port, bytes)] ([] = dropped)

Checksums of rewritten headers follow RFC 1624: the checksum of the output is the
correct checksum (scapy's) carried over with whatever error the arriving one had, so a
frame that arrives right leaves right, and one that arrives corrupt stays detectably so.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
from scapy.layers.inet import IP, UDP, in4_chksum
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import checksum

from mantra6g.synth import expr as sx
from mantra6g.synth.ir import ServiceGraph
from tests.oracle.frame import ETH_MTEL, ChainShim, Frame, Layer, MTel, ethertype, read, value_of

DROP = None

# ---------------------------------------------------------------- checksums (RFC 1071/1624)


def _add(a: int, b: int) -> int:
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def carried(arrived: int, right_before: int, right_after: int) -> int:
    """The checksum after a rewrite: ``right_after`` plus the error ``arrived`` had against
    ``right_before`` (one's-complement arithmetic: ~HC' = ~C' + ~HC - ~C)."""
    s = _add(_add(~right_after & 0xFFFF, ~arrived & 0xFFFF), right_before)
    return ~s & 0xFFFF


def ipv4_header_checksum(header: bytes) -> int:
    """RFC 791: the one's complement of the sum of the header's words, its checksum zero."""
    return checksum(header[:10] + b"\0\0" + header[12:])


def l4_checksum(proto: int, ip_header: bytes, segment: bytes) -> int:
    """RFC 768/793: over the IPv4 pseudo-header and ``segment`` (checksum field zeroed)."""
    at = 6 if proto == 17 else 16
    seg = segment[:at] + b"\0\0" + segment[at + 2 :]
    return in4_chksum(proto, IP(ip_header), seg)


# ---------------------------------------------------------------- match expressions


def holds(e: sx.Expr, f: Frame) -> bool:
    """A match expression on the frame's headers; a test on a header the frame does not
    carry is false (docs/language.md)."""
    if isinstance(e, sx.AllOf):
        return all(holds(t, f) for t in e.terms)
    if isinstance(e, sx.AnyOf):
        return any(holds(t, f) for t in e.terms)
    if isinstance(e, sx.Not):
        return not holds(e.term, f)
    v = value_of(f, e.field)
    if v is None:
        return False
    if isinstance(e, sx.InPrefix):
        net = e.prefix
        width = 32 if isinstance(net, IPv4Network) else 128
        return v >> (width - net.prefixlen) == int(net.network_address) >> (width - net.prefixlen)
    if isinstance(e, sx.InRange):
        return e.low <= v <= e.high
    if isinstance(e, sx.InSet):
        return any(v == _int(x) for x in e.values)
    want = _int(e.value)
    return {"==": v == want, "!=": v != want, "<": v < want, "<=": v <= want, ">": v > want, ">=": v >= want}[e.op]


# IANA "IPv6 Extension Header Types" (RFC 8200 §4 and later), less ESP (50), whose
# payload is encrypted: a transport header may follow any of them.
IPV6_EXTENSIONS = {0, 43, 44, 51, 60, 135, 139, 140, 253, 254}
IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def unread(kind: str, f: Frame) -> bool:
    """Whether the frame may carry header ``kind`` where the parsing rules do not read it
    (docs/nf/firewall.md): its transport (UDP for VXLAN and GTP-U) is named by the IPv4
    protocol of a header with options or of a fragment, or follows an IPv6 extension
    header."""
    transport = "udp" if kind in ("vxlan", "gtpu", "gtpu_opt", "gtpu_psc") else kind
    if transport not in IP_PROTO or f.has(transport):
        return False
    if f.has("ipv4"):
        return f.outer["ipv4"].pkt.proto == IP_PROTO[transport]
    return f.has("ipv6") and transport != "icmp" and f.outer["ipv6"].pkt.nh in IPV6_EXTENSIONS


def decides(e: sx.Expr, f: Frame) -> bool | None:
    """:func:`holds` in three values: None where a test reads a header the frame carries
    unread (:func:`unread`) and the rest does not decide without it."""
    if isinstance(e, (sx.AllOf, sx.AnyOf)):
        vs = [decides(t, f) for t in e.terms]
        stop = isinstance(e, sx.AnyOf)
        return stop if stop in vs else None if None in vs else not stop
    if isinstance(e, sx.Not):
        v = decides(e.term, f)
        return None if v is None else not v
    return None if unread(e.field.partition(".")[0], f) else holds(e, f)


def _int(value) -> int:
    if isinstance(value, (IPv4Address, IPv6Address)):
        return int(value)
    return getattr(value, "value", value)


# ---------------------------------------------------------------- the packet between NFs


@dataclass
class Packet:
    data: bytes
    port: int | None = None  # chosen by a forwarding NF (router, l2_forward)
    slice_id: int = 0
    arrived: int = 0  # the frame's length as it reached the device (meters count it)
    # How the NFs that follow read it (see tests.oracle.frame.read): after a decap, the
    # inner packet as the parser read it on arrival.
    tunnels: bool = True
    l2_only: tuple[str, ...] | None = None

    def but(self, data: bytes, port: int | None = None, **view) -> Packet:
        """This packet with new bytes (a new egress port, a new view)."""
        kw = {"tunnels": self.tunnels, "l2_only": self.l2_only} | view
        return Packet(data, self.port if port is None else port, self.slice_id, self.arrived, **kw)

    def read(self) -> Frame:
        return read(self.data, self.tunnels, self.l2_only)


def _rewrite_ipv4(data: bytes, ip: Layer, **changes) -> bytes:
    """Rewrite IPv4 header fields in place (scapy re-encodes the header), carrying the
    header checksum over; UDP/TCP checksums follow a changed address. ``changes`` are
    scapy field names (``ttl``, ``tos``, ``dst``, ``src``)."""
    old_header = data[ip.at : ip.at + 20]
    new = IP(old_header)
    for k, v in changes.items():
        setattr(new, k, v)
    new_header = bytes(new)[:20]
    arrived = int.from_bytes(old_header[10:12], "big")
    csum = carried(arrived, ipv4_header_checksum(old_header), ipv4_header_checksum(new_header))
    new_header = new_header[:10] + csum.to_bytes(2, "big") + new_header[12:]
    out = bytearray(data[: ip.at] + new_header + data[ip.at + 20 :])
    return bytes(out)


def _fix_l4(before: bytes, after: bytes, f: Frame) -> bytes:
    """After an address rewrite of the outer IPv4 header: carry the UDP/TCP checksum over
    (a UDP checksum 0 means none and stays 0; a computed 0 is sent as 0xFFFF)."""
    for kind, proto, at in (("udp", 17, 6), ("tcp", 6, 16)):
        if kind not in f.outer:
            continue
        l4 = f.outer[kind]
        ip = f.outer["ipv4"]
        end = ip.at + ip.pkt.len
        arrived = int.from_bytes(before[l4.at + at : l4.at + at + 2], "big")
        if kind == "udp" and arrived == 0:
            return after
        right_before = l4_checksum(proto, before[ip.at : ip.at + 20], before[l4.at : end])
        right_after = l4_checksum(proto, after[ip.at : ip.at + 20], after[l4.at : end])
        c = carried(arrived, right_before, right_after)
        if kind == "udp" and c == 0:
            c = 0xFFFF
        return after[: l4.at + at] + c.to_bytes(2, "big") + after[l4.at + at + 2 :]
    return after


def _set_ethertype(data: bytes, f: Frame, value: int) -> bytes:
    """Set the EtherType of the last L2 header (Ethernet, VLAN tag or shim)."""
    last = f.l2_types[-1]
    at = {"eth": 12, "vlan": last.at + 2, "mtel": last.at + 2}[last.kind]
    return data[:at] + value.to_bytes(2, "big") + data[at + 2 :]


# ---------------------------------------------------------------- the kinds


class Nf:
    """One NF's model: ``step`` returns the packet after it, or DROP."""

    def __init__(self, nf, graph: ServiceGraph):
        self.nf, self.graph = nf, graph

    def step(self, pkt: Packet, now: int) -> Packet | None:  # pragma: no cover - abstract
        raise NotImplementedError


class Firewall(Nf):
    """The first rule that matches decides; a rule that cannot be decided because the
    transport it tests is unread matches if it denies, not if it allows (fail closed)."""

    def step(self, pkt, now):
        f = pkt.read()
        for r in self.nf.rules:
            v = decides(r.match, f)
            if v or (v is None and r.action == "deny"):
                return pkt if r.action == "allow" else DROP
        return pkt if self.nf.params.default == "allow" else DROP


class Router(Nf):
    """RFC 1812: longest prefix match on the destination, TTL decremented (a TTL that
    would reach 0 drops), MACs rewritten, out of the route's port."""

    def step(self, pkt, now):
        f = pkt.read()
        if not f.has("ipv4"):
            return DROP
        ip = f.outer["ipv4"]
        if ip.pkt.ttl <= 1:
            return DROP
        dst = int(IPv4Address(ip.pkt.dst))
        best = None
        for r in self.nf.rules:
            if int(r.prefix.network_address) >> (32 - r.prefix.prefixlen) == dst >> (32 - r.prefix.prefixlen):
                if best is None or r.prefix.prefixlen > best.prefix.prefixlen:
                    best = r
        if best is None:
            return DROP
        data = _rewrite_ipv4(pkt.data, ip, ttl=ip.pkt.ttl - 1)
        eth = Ether(data[:14])
        eth.dst, eth.src = str(best.via), str(self.nf.params.mac)
        return pkt.but(bytes(eth)[:14] + data[14:], port=best.port)


class L2Forward(Nf):
    def step(self, pkt, now):
        f = pkt.read()
        dst = value_of(f, "eth.dst")
        station = next((s for s in self.nf.rules if s.mac.value == dst), None)
        if station is None or station.port == self.ingress:
            return DROP
        return pkt.but(pkt.data, port=station.port)


def _crc_of(values: list[tuple[int, int]]) -> int:
    """CRC-32 of (value, width) pairs concatenated big-endian, zero bits in front to fill
    whole bytes (docs/dpir.md: Hash)."""
    bits = sum(w for _, w in values)
    n = 0
    for v, w in values:
        n = n << w | v
    return zlib.crc32(n.to_bytes((bits + 7) // 8, "big"))


def maglev(backends, size: int) -> list[int]:
    """Maglev's lookup table (Eisenbud et al., NSDI 2016, §3.4), as docs/nf/load_balancer.md
    states it: offset = crc32(addr) mod M, skip = crc32(addr, start 0x9E3779B9) mod (M-1) + 1;
    backends take turns (``weight`` slots each per turn) claiming their next free slot."""
    perm = [(zlib.crc32(b.address.packed) % size, zlib.crc32(b.address.packed, 0x9E3779B9) % (size - 1) + 1)
            for b in backends]
    table = [None] * size
    nxt = [0] * len(backends)
    filled = 0
    while filled < size:
        for i, b in enumerate(backends):
            for _ in range(b.weight):
                if filled == size:
                    break
                offset, skip = perm[i]
                while table[(offset + nxt[i] * skip) % size] is not None:
                    nxt[i] += 1
                table[(offset + nxt[i] * skip) % size] = i
                nxt[i] += 1
                filled += 1
    return table


def _widths(path: str) -> int:
    from mantra6g.synth.headers import lookup_field

    return lookup_field(path).width


class LoadBalancer(Nf):
    """docs/nf/load_balancer.md: a flow-affinity table of 4096 slots (crc32 of the hash
    fields mod 4096) remembers a flow's backend; a new flow takes its Maglev slot's (crc32
    mod table_size). ``dsr``: IPv4-in-IPv4 to the backend (RFC 2003). ``dnat``: the
    destination rewritten, replies from a backend get the VIP back as source."""

    def __init__(self, nf, graph):
        super().__init__(nf, graph)
        self.flows = [None] * 4096
        self.table = maglev(nf.rules, nf.params.table_size)

    def backend(self, f: Frame):
        p = self.nf.params
        fields = list(p.hash)
        if not all(f.has(x.partition(".")[0]) for x in fields):
            fields = [x for x in fields if x.startswith("ipv4.")] or ["ipv4.src", "ipv4.dst"]
        crc = _crc_of([(value_of(f, x), _widths(x)) for x in fields])
        slot = crc % 4096
        if self.flows[slot] is None:
            self.flows[slot] = self.table[crc % p.table_size]
        return self.nf.rules[self.flows[slot]]

    def step(self, pkt, now):
        f = pkt.read()
        p = self.nf.params
        if not f.has("ipv4"):
            return pkt
        ip = f.outer["ipv4"]
        vip = ip.pkt.dst == str(p.vip)
        fragment = bool(ip.pkt.flags & 1) or ip.pkt.frag != 0
        if p.mode == "dsr":
            if not vip:
                return pkt
            if f.tunnel() or f.inner:
                return DROP  # one tunnel level
            b = self.backend(f)
            inner = pkt.data[ip.at :]
            outer = IP(
                version=4, ihl=5, tos=ip.pkt.tos, len=ip.pkt.len + 20, id=0, flags=int(ip.pkt.flags) & 2, frag=0,
                ttl=64, proto=4, src=str(p.source or p.vip), dst=str(b.address),
            )
            return pkt.but(pkt.data[: ip.at] + bytes(outer)[:20] + inner)
        if vip:
            if fragment:
                return DROP
            b = self.backend(f)
            return pkt.but(_fix_l4(pkt.data, _rewrite_ipv4(pkt.data, ip, dst=str(b.address)), f))
        if any(ip.pkt.src == str(b.address) for b in self.nf.rules):
            if fragment:
                return DROP
            return pkt.but(_fix_l4(pkt.data, _rewrite_ipv4(pkt.data, ip, src=str(p.vip)), f))
        return pkt


class Tunnel(Nf):
    """docs/nf/tunnel.md; VXLAN per RFC 7348, GTP-U per 3GPP TS 29.281."""

    def step(self, pkt, now):
        f = pkt.read()
        p = self.nf.params
        if p.mode == "encap":
            if not f.has("ipv4"):
                return pkt
            if f.tunnel() or f.inner:
                return DROP  # one tunnel level
            ip = f.outer["ipv4"]
            l3 = pkt.data[ip.at :]
            if p.protocol == "gtpu" and p.qfi is not None:  # TS 29.281 §5.2, TS 38.415 §5.5.2
                carried_ = GTP_U_Header(version=1, PT=1, E=1, S=0, PN=0, gtp_type=0xFF, length=ip.pkt.len + 8,
                                        teid=p.teid, next_ex=0x85) \
                    / GTPPDUSessionContainer(type={"dl": 0, "ul": 1}[p.pdu_type], QFI=p.qfi) / Raw(l3)
                sport, dport, overhead = 2152, 2152, 24
            elif p.protocol == "gtpu":
                carried_ = GTP_U_Header(version=1, PT=1, E=0, S=0, PN=0, gtp_type=0xFF, length=ip.pkt.len,
                                        teid=p.teid) / Raw(l3)
                sport, dport, overhead = 2152, 2152, 16
            else:
                eth = Ether(pkt.data[:14])
                inner = Ether(dst=eth.dst, src=eth.src, type=0x0800) / Raw(l3)
                sport = 49152 + _crc_of([(value_of(f, "ipv4.src"), 32), (value_of(f, "ipv4.dst"), 32),
                                         (value_of(f, "ipv4.proto"), 8)]) % 16384
                carried_ = VXLAN(flags=0x08, vni=p.vni) / inner
                dport, overhead = 4789, 30
            outer = (
                IP(version=4, ihl=5, tos=ip.pkt.tos, len=ip.pkt.len + 20 + overhead, id=0, flags=2, frag=0, ttl=64,
                   proto=17, src=str(p.local), dst=str(p.remote))
                / UDP(sport=sport, dport=dport, len=ip.pkt.len + overhead, chksum=0)
                / carried_
            )
            return pkt.but(pkt.data[: ip.at] + bytes(outer), tunnels=True, l2_only=None)
        # decap
        tunnel = "vxlan" if p.protocol == "vxlan" else "gtpu"
        if not (f.has(tunnel) and f.has("ipv4")):
            return DROP
        outer_ip = f.outer["ipv4"].pkt
        if p.local is not None and outer_ip.dst != str(p.local):
            return DROP
        t = f.outer[tunnel]
        if tunnel == "vxlan":
            if not t.raw[0] & 0x08 or (p.vni is not None and value_of(f, "vxlan.vni") != p.vni):
                return DROP
            inner_eth = f.inner["eth"]
            l2 = bytearray(pkt.data[: f.l3_at])
            l2[0:12] = pkt.data[inner_eth.at : inner_eth.at + 12]
            return pkt.but(_set_ethertype(bytes(l2), f, ethertype(inner_eth.pkt)) + pkt.data[inner_eth.end :],
                           tunnels=False, l2_only=None if ethertype(inner_eth.pkt) == 0x0800
                           else tuple(x.kind for x in f.l2_types[1:]))
        if "ipv4" not in f.inner or f.inner["ipv4"].pkt.version != 4 or (p.teid is not None and t.pkt.teid != p.teid):
            return DROP
        end = max(f.outer[k].end for k in ("gtpu", "gtpu_opt", "gtpu_psc") if k in f.outer)
        return pkt.but(_set_ethertype(pkt.data[: f.l3_at], f, 0x0800) + pkt.data[end:], tunnels=False)


class Policer(Nf):
    """A single-rate token bucket of ``burst`` bytes, full at start, refilled at ``rate``
    (exact rational arithmetic); the frame's length is what it takes."""

    def __init__(self, nf, graph):
        super().__init__(nf, graph)
        self.tokens = Fraction(nf.params.burst)
        self.last = 0

    def step(self, pkt, now):
        p = self.nf.params
        if now > self.last:
            self.tokens = min(Fraction(p.burst), self.tokens + Fraction((now - self.last) * p.rate, 8 * 10**9))
        self.last = now
        need = pkt.arrived
        if self.tokens >= need:
            self.tokens -= need
            return pkt
        if p.exceed == "drop":
            return DROP
        f = pkt.read()
        if not f.has("ipv4"):
            return pkt
        ip = f.outer["ipv4"]
        return pkt.but(_rewrite_ipv4(pkt.data, ip, tos=(p.dscp << 2) | (ip.pkt.tos & 3)))


class LatencyMonitor(Nf):
    """docs/nf/latency_monitor.md: a source inserts the shim after Ethernet (and a VLAN
    tag) into 1 in ``sample`` frames that lack one; a sink takes it out."""

    def __init__(self, nf, graph):
        super().__init__(nf, graph)
        self.seen = 0

    def step(self, pkt, now):
        f = pkt.read()
        if self.nf.params.role == "sink":
            if not f.has("mtel"):
                return pkt
            shim = f.outer["mtel"]
            data = pkt.data[: shim.at] + pkt.data[shim.end :]
            before = f.outer["vlan"] if f.has("vlan") else f.outer["eth"]
            at = 12 if before.kind == "eth" else before.at + 2
            data = data[:at] + shim.pkt.type.to_bytes(2, "big") + data[at + 2 :]
            return pkt.but(data)
        n, self.seen = self.seen, (self.seen + 1) % (1 << 32)
        if f.has("mtel") or n % self.nf.params.sample:
            return pkt
        before = f.outer["vlan"] if f.has("vlan") else f.outer["eth"]
        type_at = 12 if before.kind == "eth" else before.at + 2
        displaced = int.from_bytes(pkt.data[type_at : type_at + 2], "big")
        shim = bytes(MTel(slice=pkt.slice_id, flags=0, type=displaced, ts=now))
        data = pkt.data[:type_at] + ETH_MTEL.to_bytes(2, "big") + pkt.data[type_at + 2 : before.end] + shim + pkt.data[before.end :]
        return pkt.but(data)


KINDS = {
    "firewall": Firewall,
    "router": Router,
    "l2_forward": L2Forward,
    "load_balancer": LoadBalancer,
    "tunnel": Tunnel,
    "policer": Policer,
    "latency_monitor": LatencyMonitor,
}
FORWARDS = ("router", "l2_forward")


# ---------------------------------------------------------------- a chain


@dataclass
class ChainModel:
    """One graph: the classifier claims the frame, the NFs run along the edges (the first
    conditional edge that holds, else the unconditional one), and the frame leaves where
    a forwarding NF sent it, else where it came in.

    A graph whose NFs are placed on several devices (every NF placed) crosses a cable
    where an edge leads to another device (docs/dpir.md): the frame goes on as the last
    NF left it, and the next device reads its bytes afresh by the parsing rules (dropping
    what they drop; a tunnel inside is a tunnel again), its arrival length that of the
    frame with the chain shim. Both devices number ports alike."""

    graph: ServiceGraph
    unclaimed: str = "drop"
    nfs: dict[str, Nf] = field(default_factory=dict)

    def __post_init__(self):
        for n in self.graph.nfs:
            if n.kind != "classifier":
                self.nfs[n.name] = KINDS[n.kind](n, self.graph)

    def run(self, data: bytes, ingress: int, now: int) -> tuple[list[tuple[int, bytes]], bytes | None]:
        """(outputs, bytes handed to the host)."""
        f = read(data)
        if f is None:
            return [], None
        g = self.graph
        cls = g.nf(g.entry)
        if not any(holds(r.match, f) for r in cls.rules):
            return [], (data if self.unclaimed == "pass" else None)
        pkt = Packet(data, None, g.slice_id, len(data))
        name, here = g.entry, None
        placed = {n.name: n.placement.device for n in g.nfs if n.placement is not None}
        while True:
            nxt = None
            for e in g.successors(name):
                if e.condition is None or holds(e.condition, pkt.read()):
                    nxt = e.dst
                    break
            if nxt is None:
                break
            if here is not None and placed[nxt] != here:  # over the cable to the next device
                if read(pkt.data) is None:
                    return [], None
                pkt = Packet(pkt.data, pkt.port, g.slice_id, len(pkt.data) + len(ChainShim()))
            here = placed.get(nxt)
            model = self.nfs[nxt]
            model.ingress = ingress
            pkt = model.step(pkt, now)
            if pkt is DROP:
                return [], None
            name = nxt
        return [(pkt.port if pkt.port is not None else ingress, pkt.data)], None

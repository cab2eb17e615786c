"""Packet captures as the CLI reads and writes them: classic pcap and pcapng, Ethernet.

Mantra's programs take Ethernet frames, so a capture of anything else (raw IP, Linux
"cooked" captures from ``tcpdump -i any``, 802.11) is refused by its link type before a
packet is run, and a capture whose last record is cut short (a copy that did not finish,
a ``tcpdump`` killed mid-write) is an error naming the record, where scapy would only
warn and stop. Records are numbered from 1, as Wireshark and ``tcpdump -#`` number them.

    for rec in read_pcap("in.pcap"):    # CaptureError: not a capture, link type, truncation
        rec.number, rec.time_ns, rec.data
    write_pcap("out.pcap", [(time_ns, frame), ...], inputs)   # through mantra6g.output

The formats: https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/ (classic) and
https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/ (pcapng); link-type numbers
from https://www.tcpdump.org/linktypes.html.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from mantra6g.errors import MantraError
from mantra6g.output import Inputs, write_bytes

LINKTYPE_ETHERNET = 1
LINK_TYPES = {
    0: "BSD loopback",
    1: "Ethernet",
    9: "PPP",
    12: "raw IP",
    101: "raw IP",
    105: "IEEE 802.11",
    113: "Linux cooked capture",
    127: "IEEE 802.11 with radiotap",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked capture v2",
}
MAX_RECORD = 16 * 2**20  # bytes of one packet; more means a corrupt length field

_CLASSIC = {  # magic as read little-endian -> (byte order, units of the sub-second field)
    0xA1B2C3D4: ("<", 10**6),
    0xA1B23C4D: ("<", 10**9),
    0xD4C3B2A1: (">", 10**6),
    0x4D3CB2A1: (">", 10**9),
}
_PCAPNG_SHB = 0x0A0D0D0A


class CaptureError(MantraError):
    """A capture file that cannot be run: not a capture, not Ethernet, or cut short."""


@dataclass(frozen=True)
class Record:
    """One packet of a capture: its number (from 1), time and bytes as captured."""

    number: int
    time_ns: int
    data: bytes


def link_type_name(linktype: int) -> str:
    name = LINK_TYPES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)


def _not_ethernet(path: str, linktype: int, where: str = "") -> CaptureError:
    if linktype in (113, 276):
        how = "capture on one Ethernet interface (tcpdump -i eth0, not -i any)"
    elif linktype in (12, 101, 228, 229):
        how = "capture on an Ethernet interface, or give the packets Ethernet headers (tcprewrite --dlt=enet)"
    else:
        how = "capture on an Ethernet interface"
    return CaptureError(f"{path}: link type {link_type_name(linktype)}{where} is not Ethernet; "
                        f"mantra runs Ethernet frames (link type 1): {how}")


def read_pcap(path: str | os.PathLike[str]) -> Iterator[Record]:
    """The records of a classic pcap or pcapng file, checked as they are read.

    The file's header (and a classic pcap's link type) is checked when this is called,
    before the first record is asked for; a pcapng interface that is not Ethernet, and a
    truncated or corrupt record, raise when they are reached (before any output exists:
    the commands write theirs after the last record)."""
    name = str(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise CaptureError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{name}: is a directory; name a pcap file") from None
    except OSError as exc:
        raise CaptureError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        head = f.read(24)
        pcapng = len(head) >= 4 and struct.unpack("<I", head[:4])[0] == _PCAPNG_SHB
        records = (_PcapNg if pcapng else _Classic)(f, name, head)
    except BaseException:
        f.close()
        raise
    return _closing(f, records)


def _closing(f: BinaryIO, records: Iterable[Record]) -> Iterator[Record]:
    with f:
        yield from records


class _Classic:
    def __init__(self, f: BinaryIO, name: str, head: bytes):
        if len(head) < 24:
            raise CaptureError(f"{name}: not a pcap file: it is only {len(head)} bytes long")
        magic = struct.unpack("<I", head[:4])[0]
        if magic not in _CLASSIC:
            raise CaptureError(f"{name}: not a pcap file: it starts with bytes {head[:4].hex(' ')}, "
                               "where a pcap starts with d4 c3 b2 a1 (or a pcapng with 0a 0d 0d 0a)")
        self.f, self.name = f, name
        self.order, self.units = _CLASSIC[magic]
        linktype = struct.unpack(self.order + "I", head[20:24])[0] & 0xFFFF  # upper bits: FCS details
        if linktype != LINKTYPE_ETHERNET:
            raise _not_ethernet(name, linktype)

    def __iter__(self) -> Iterator[Record]:
        f, name = self.f, self.name
        number = 0
        while True:
            number += 1
            rec = f.read(16)
            if not rec:
                return
            if len(rec) < 16:
                raise CaptureError(f"{name}: record {number} is cut short: the file ends {len(rec)} bytes into "
                                   "its 16-byte header (an unfinished copy or capture?)")
            sec, frac, caplen, _wirelen = struct.unpack(self.order + "IIII", rec)
            if caplen > MAX_RECORD:
                raise CaptureError(f"{name}: record {number} claims {caplen} bytes of packet data: the file is corrupt")
            data = f.read(caplen)
            if len(data) < caplen:
                raise CaptureError(f"{name}: record {number} is cut short: it has {caplen} bytes of packet data, "
                                   f"the file ends after {len(data)} (an unfinished copy or capture?)")
            yield Record(number, sec * 10**9 + frac * (10**9 // self.units), data)


_BYTE_ORDER = {0x1A2B3C4D: "<", 0x4D3C2B1A: ">"}  # a section header's magic, read little-endian


class _PcapNg:
    def __init__(self, f: BinaryIO, name: str, head: bytes):
        head += f.read(max(0, 12 - len(head)))
        if len(head) < 12 or struct.unpack("<I", head[8:12])[0] not in _BYTE_ORDER:
            raise CaptureError(f"{name}: not a pcapng file: its section header is cut short or corrupt")
        self.f, self.name, self.pending = f, name, head

    def __iter__(self) -> Iterator[Record]:
        f, name = self.f, self.name
        order = "<"
        interfaces: list[int] = []  # timestamp units per second, by interface number
        number = 0
        while True:
            block = self.pending + f.read(max(0, 12 - len(self.pending)))
            self.pending = b""
            if not block:
                return
            where = f"record {number + 1}"
            if len(block) < 8:
                raise CaptureError(f"{name}: {where} is cut short: the file ends {len(block)} bytes into its block header")
            if struct.unpack("<I", block[:4])[0] == _PCAPNG_SHB and len(block) >= 12:
                order = _BYTE_ORDER.get(struct.unpack("<I", block[8:12])[0], order)
                interfaces = []  # each section numbers its interfaces afresh
            btype, length = struct.unpack(order + "II", block[:8])
            if length < 12 or length % 4 or length > MAX_RECORD:
                raise CaptureError(f"{name}: {where}: a block claims {length} bytes: the file is corrupt")
            if len(block) >= length:  # the first block may be shorter than what was read ahead
                rest, self.pending = block[8:length], block[length:]
            else:
                rest = block[8:] + f.read(length - len(block))
            if len(rest) < length - 8:
                raise CaptureError(f"{name}: {where} is cut short: its block has {length} bytes, "
                                   f"the file ends after {len(rest) + 8} (an unfinished copy or capture?)")
            body = rest[: length - 12]
            if btype == 1:  # interface description
                linktype = struct.unpack(order + "H", body[:2])[0]
                if linktype != LINKTYPE_ETHERNET:
                    raise _not_ethernet(name, linktype, f" (interface {len(interfaces)})")
                interfaces.append(_tsresol(body[8:], order))
            elif btype in (2, 3, 6):  # obsolete, simple and enhanced packet blocks
                number += 1
                yield _packet(name, number, btype, body, order, interfaces)


def _tsresol(options: bytes, order: str) -> int:
    """Timestamp units per second from an interface's options (default microseconds)."""
    i = 0
    while i + 4 <= len(options):
        code, size = struct.unpack(order + "HH", options[i : i + 4])
        if code == 0:
            break
        if code == 9 and size >= 1:  # if_tsresol
            v = options[i + 4]
            return 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        i += 4 + size + (-size % 4)
    return 10**6


def _packet(name: str, number: int, btype: int, body: bytes, order: str, interfaces: list[int]) -> Record:
    corrupt = CaptureError(f"{name}: record {number} is corrupt")
    if not interfaces:
        raise CaptureError(f"{name}: record {number} comes before any interface is described: the file is corrupt")
    if btype == 3:  # simple packet: interface 0, no timestamp
        if len(body) < 4:
            raise corrupt
        return Record(number, 0, body[4 : 4 + struct.unpack(order + "I", body[:4])[0]])
    if len(body) < 20:
        raise corrupt
    if btype == 6:
        iface, high, low, caplen, _wirelen = struct.unpack(order + "IIIII", body[:20])
    else:
        iface, _drops, high, low, caplen, _wirelen = struct.unpack(order + "HHIIII", body[:20])
    data = body[20 : 20 + caplen]
    if iface >= len(interfaces) or len(data) < caplen:
        raise corrupt
    return Record(number, ((high << 32) | low) * 10**9 // interfaces[iface], data)


def write_pcap(path: str | os.PathLike[str], packets: Iterable[tuple[int, bytes]], inputs: Inputs | None = None,
               what: str = "output") -> None:
    """Ethernet frames with their times (ns) as a classic pcap: microsecond timestamps
    when every time is a whole microsecond (the most widely read form), else nanosecond.
    Written whole or not at all, never over an input (:mod:`mantra6g.output`)."""
    packets = list(packets)
    ns = any(t % 1000 for t, _ in packets)
    magic, units = (0xA1B23C4D, 10**9) if ns else (0xA1B2C3D4, 10**6)
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, LINKTYPE_ETHERNET)]
    for t, data in packets:
        out.append(struct.pack("<IIII", t // 10**9, (t % 10**9) // (10**9 // units), len(data), len(data)) + data)
    write_bytes(path, b"".join(out), inputs, what)


__all__ = ["CaptureError", "LINK_TYPES", "Record", "link_type_name", "read_pcap", "write_pcap"]

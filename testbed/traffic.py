"""Traffic for the testbed: seeded URLLC Poisson probes, eMBB on/off bulk, a receiver.

Each runs as its own process inside a namespace (``python -m mantra6g.testbed.traffic``):

* ``urllc``: Poisson arrivals of small UDP packets over ``flows`` flows (source ports);
  the payload carries a sequence number, the flow and the send time (CLOCK_REALTIME ns).
* ``embb``: compound-Poisson on/off bulk: exponential on and off periods, during an on
  period 1200-byte packets at a constant rate; it congests the link it shares.
* ``rx``: receives URLLC packets and writes one record per packet (seq, flow, backend,
  sent ns, kernel receive ns from SO_TIMESTAMPNS) to a file: the ground truth.
* ``sink``: receives the eMBB bulk and counts it (what the eMBB chain delivered).
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROBE = struct.Struct("!QQH")  # seq, send time (ns, CLOCK_REALTIME), flow
RECORD = struct.Struct("<QQIHxxQ")  # seq, sent ns, backend IPv4, flow, received ns
PROBE_BYTES = 64
BULK_BYTES = 1200
SO_NO_CHECK = 11  # UDP checksum 0: no partial checksum offload for XDP to trip over
SO_TIMESTAMPNS = 35
FIRST_SPORT = 40000


@dataclass(frozen=True)
class GroundTruth:
    """One URLLC packet the receiver got."""

    seq: int
    sent_ns: int
    backend: str
    flow: int
    received_ns: int

    @property
    def delay_ms(self) -> float:
        return (self.received_ns - self.sent_ns) / 1e6


def read_records(path: Path, offset: int = 0) -> tuple[list[GroundTruth], int]:
    """Complete records of the receiver's file from byte ``offset``; returns the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    n = len(data) // RECORD.size
    out = []
    for i in range(n):
        seq, sent, ip, flow, recv = RECORD.unpack_from(data, i * RECORD.size)
        out.append(GroundTruth(seq, sent, str(ipaddress.IPv4Address(ip)), flow, recv))
    return out, offset + n * RECORD.size


def _pace(t_next: float) -> None:
    delay = t_next - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def urllc(dst: str, port: int, rate_pps: float, flows: int, duration: float, seed: int) -> int:
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    socks = []
    for f in range(flows):
        x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        x.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        x.bind(("0.0.0.0", FIRST_SPORT + f))
        socks.append(x)
    s.close()
    pad = b"\0" * (PROBE_BYTES - PROBE.size)
    end = time.monotonic() + duration
    t = time.monotonic()
    seq = 0
    while t < end:
        t += rng.expovariate(rate_pps)
        _pace(t)
        flow = rng.randrange(flows)
        socks[flow].sendto(PROBE.pack(seq, time.time_ns(), flow) + pad, (dst, port))
        seq += 1
    return seq


def embb(dst: str, port: int, rate_pps: float, on_s: float, off_s: float, duration: float, seed: int) -> int:
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    payload = b"\xee" * BULK_BYTES
    end = time.monotonic() + duration
    sent = 0
    t = time.monotonic() + rng.expovariate(1 / off_s)
    while t < end:
        burst_end = min(end, t + rng.expovariate(1 / on_s))
        while t < burst_end:
            _pace(t)
            try:
                s.sendto(payload, (dst, port))
                sent += 1
            except OSError:
                pass  # the local qdisc is full: the burst exceeds the link, as intended
            t += 1 / rate_pps
        t += rng.expovariate(1 / off_s)
    return sent


def rx(port: int, out: Path, duration: float) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_IP, 8, 1)  # IP_PKTINFO: which backend address it was sent to
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    end = time.monotonic() + duration
    n = 0
    with open(out, "ab", buffering=0) as f:
        batch = bytearray()
        last_flush = time.monotonic()
        while time.monotonic() < end:
            try:
                data, anc, _, _ = s.recvmsg(2048, 256)
            except socket.timeout:
                data = None
            if data is not None and len(data) >= PROBE.size:
                seq, sent, flow = PROBE.unpack_from(data)
                recv, dst = time.time_ns(), 0
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", value[:16])
                        recv = sec * 1_000_000_000 + nsec
                    elif level == socket.SOL_IP and kind == 8:
                        dst = struct.unpack_from("!I", value, 8)[0]  # in_pktinfo.ipi_addr
                batch += RECORD.pack(seq, sent, dst, flow, recv)
                n += 1
            if time.monotonic() - last_flush > 0.05 and batch:
                f.write(bytes(batch))
                batch.clear()
                last_flush = time.monotonic()
        f.write(bytes(batch))
    return n


def sink(port: int, duration: float) -> tuple[int, int]:
    """(packets, bytes) of UDP payload received on ``port`` for ``duration`` seconds."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    end = time.monotonic() + duration
    packets = octets = 0
    while time.monotonic() < end:
        try:
            octets += len(s.recv(2048))
            packets += 1
        except socket.timeout:
            pass
    return packets, octets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mantra6g.testbed.traffic")
    sub = ap.add_subparsers(dest="kind", required=True)
    u = sub.add_parser("urllc")
    u.add_argument("--dst"), u.add_argument("--port", type=int), u.add_argument("--rate", type=float)
    u.add_argument("--flows", type=int, default=8)
    e = sub.add_parser("embb")
    e.add_argument("--dst"), e.add_argument("--port", type=int), e.add_argument("--rate", type=float)
    e.add_argument("--on", type=float, default=1.0), e.add_argument("--off", type=float, default=1.0)
    r = sub.add_parser("rx")
    r.add_argument("--port", type=int), r.add_argument("--out", type=Path)
    k = sub.add_parser("sink")
    k.add_argument("--port", type=int)
    for p in (u, e, r, k):
        p.add_argument("--duration", type=float, required=True)
        p.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.kind == "urllc":
        n = urllc(a.dst, a.port, a.rate, a.flows, a.duration, a.seed)
    elif a.kind == "embb":
        n = embb(a.dst, a.port, a.rate, a.on, a.off, a.duration, a.seed)
    elif a.kind == "sink":
        print(*sink(a.port, a.duration), flush=True)
        return 0
    else:
        n = rx(a.port, a.out, a.duration)
    print(n, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

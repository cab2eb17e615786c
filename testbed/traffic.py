"""Traffic for the testbed: seeded URLLC probes, eMBB traffic with three kinds of onset,
and the receivers.

Each runs as its own process inside a namespace (``python -m mantra6g.testbed.traffic``).
Every process is given the same start time (``--start``, CLOCK_REALTIME seconds) and
duration, so they send over the same window however long each took to start:

* ``urllc``: Poisson arrivals of small UDP packets over ``flows`` flows (source ports);
  the payload carries a sequence number, the flow and the send time (CLOCK_REALTIME ns).
* ``gap``: a constant-rate probe stream (one flow, :data:`GAP_FLOW`) through the same
  chain: the delivery gap at a migration's switch is measured on it, not on the Poisson
  probes' inter-arrival times.
* ``embb`` (abrupt onset): compound-Poisson on/off bulk: exponential on and off periods,
  during an on period 1200-byte packets at a constant rate; it congests the link it shares.
* ``sessions`` (ramp onset): eMBB sessions arriving as a Poisson process whose rate follows
  a diurnal curve, each ramping its rate up, holding (exponential time) and ramping down;
  one paced UDP stream carries their sum.
* ``crowd`` (flash onset): flash crowds of TCP clients arriving over a few seconds, each
  an app-limited (paced) kernel TCP flow: slow start and congestion control through the
  bottleneck are the kernel's.
* ``rx``: receives URLLC packets and writes one record per packet (seq, flow, backend,
  sent ns, kernel receive ns from SO_TIMESTAMPNS) to a file: the ground truth.
* ``sink`` / ``tcpsink``: receive the eMBB traffic and count it (what the chain delivered).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import random
import selectors
import socket
import struct
import sys
import threading
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
GAP_FLOW = 0xFFFF  # the flow id of the constant-rate gap probes
GAP_SPORT = 41000
SESSION_BYTES = 1400  # payload of one eMBB session packet


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

    @property
    def gap_probe(self) -> bool:
        return self.flow == GAP_FLOW


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


def _monotonic_at(start: float) -> float:
    """The monotonic time at which CLOCK_REALTIME reads ``start`` (sleeping until then
    is how every process of a run begins at the same instant)."""
    return time.monotonic() + max(0.0, start - time.time())


def urllc(dst: str, port: int, rate_pps: float, flows: int, duration: float, seed: int, start: float) -> int:
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
    t = _monotonic_at(start)
    end = t + duration
    seq = 0
    while t < end:
        t += rng.expovariate(rate_pps)
        _pace(t)
        flow = rng.randrange(flows)
        socks[flow].sendto(PROBE.pack(seq, time.time_ns(), flow) + pad, (dst, port))
        seq += 1
    return seq


def gap(dst: str, port: int, rate_pps: float, duration: float, start: float) -> int:
    """Constant-rate probes on one flow (:data:`GAP_FLOW`); sequence numbers of their own."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    s.bind(("0.0.0.0", GAP_SPORT))
    pad = b"\0" * (PROBE_BYTES - PROBE.size)
    t = _monotonic_at(start)
    end = t + duration
    seq = 0
    while t < end:
        _pace(t)
        s.sendto(PROBE.pack(seq, time.time_ns(), GAP_FLOW) + pad, (dst, port))
        seq += 1
        t += 1.0 / rate_pps
    return seq


def embb(dst: str, port: int, rate_pps: float, on_s: float, off_s: float, duration: float, seed: int,
         start: float) -> int:
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    payload = b"\xee" * BULK_BYTES
    t0 = _monotonic_at(start)
    end = t0 + duration
    sent = 0
    t = t0 + rng.expovariate(1 / off_s)
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


@dataclass(frozen=True)
class Diurnal:
    """A rate following a compressed day: mean x (1 + amplitude sin(2 pi t / day + phase))."""

    mean: float
    amplitude: float
    day_s: float
    phase: float

    def at(self, t: float) -> float:
        return max(0.0, self.mean * (1 + self.amplitude * math.sin(2 * math.pi * t / self.day_s + self.phase)))

    @property
    def peak(self) -> float:
        return self.mean * (1 + abs(self.amplitude))


def session_schedule(rng: random.Random, arrivals: Diurnal, hold_s: float, ramp_s: float, duration: float,
                     ) -> list[tuple[float, float]]:
    """(start, end) of every session whose ramps reach into [0, duration]: Poisson arrivals
    at the diurnal rate (thinning), exponential holding times; sessions begun before 0
    (from -4 holding times on) are included, so the run starts in steady state."""
    out = []
    t = -4 * hold_s
    while True:
        t += rng.expovariate(arrivals.peak) if arrivals.peak > 0 else duration + 1
        if t > duration:
            return out
        hold = rng.expovariate(1 / hold_s)
        if rng.random() * arrivals.peak <= arrivals.at(t) and t + hold + 2 * ramp_s > 0:
            out.append((t, t + hold + 2 * ramp_s))


def session_rate(schedule: list[tuple[float, float]], t: float, mbit: float, ramp_s: float) -> float:
    """The sum of the active sessions' rates at ``t`` (Mbit/s): each ramps up linearly over
    ``ramp_s``, holds, and ramps down over ``ramp_s`` before its end."""
    total = 0.0
    for a, b in schedule:
        if a <= t < b:
            up = (t - a) / ramp_s if ramp_s > 0 else 1.0
            down = (b - t) / ramp_s if ramp_s > 0 else 1.0
            total += mbit * min(1.0, up, down)
    return total


def sessions(dst: str, port: int, mbit: float, arrivals: Diurnal, hold_s: float, ramp_s: float,
             duration: float, seed: int, start: float) -> int:
    """The sessions' sum as one paced UDP stream of :data:`SESSION_BYTES` packets."""
    rng = random.Random(seed)
    schedule = session_schedule(rng, arrivals, hold_s, ramp_s, duration)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    payload = b"\xee" * SESSION_BYTES
    t0 = _monotonic_at(start)
    t, sent = t0, 0
    bits = SESSION_BYTES * 8
    while t < t0 + duration:
        _pace(t)
        rate = session_rate(schedule, t - t0, mbit, ramp_s) * 1e6
        if rate <= 0:
            t += 0.01
            continue
        try:
            s.sendto(payload, (dst, port))
            sent += 1
        except OSError:
            pass  # the local qdisc is full
        t += bits / rate
    return sent


def crowd_schedule(rng: random.Random, rate_per_s: float, clients: int, ramp_s: float, hold_s: float,
                   duration: float) -> list[tuple[float, float]]:
    """(start, end) of every TCP client: crowds arrive as a Poisson process; a crowd's
    clients join over ``ramp_s`` (uniformly), each stays ~``hold_s`` (exponential, at
    least 1 s)."""
    out = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t > duration:
            return sorted(out)
        for _ in range(clients):
            a = t + rng.uniform(0, ramp_s)
            out.append((a, a + max(1.0, rng.expovariate(1 / hold_s))))


def _client(dst: str, port: int, mbit: float, a: float, b: float, t0: float, sent: list[int]) -> None:
    """One app-limited TCP client (a video stream): connect at ``a``, write a paced chunk
    every chunk-time until ``b``; what the network could not take in time is not sent
    later (no catch-up burst: the stream moves on)."""
    chunk = b"\xee" * 8192
    every = len(chunk) * 8 / (mbit * 1e6)
    _pace(t0 + a)
    try:
        c = socket.create_connection((dst, port), timeout=2.0)
    except OSError:
        return
    c.settimeout(1.0)
    t, n = t0 + a, 0
    try:
        while t < t0 + b:
            _pace(t)
            n += c.send(chunk)
            t = max(t + every, time.monotonic())
    except OSError:
        pass
    finally:
        c.close()
        sent.append(n)


def crowd(dst: str, port: int, mbit: float, rate_per_s: float, clients: int, ramp_s: float, hold_s: float,
          duration: float, seed: int, start: float) -> int:
    """Flash crowds of kernel TCP flows (one thread per client); returns the bytes sent."""
    rng = random.Random(seed)
    t0 = _monotonic_at(start)
    sent: list[int] = []
    threads = [threading.Thread(target=_client, args=(dst, port, mbit, a, min(b, duration), t0, sent), daemon=True)
               for a, b in crowd_schedule(rng, rate_per_s, clients, ramp_s, hold_s, duration)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(0.0, t0 + duration + 3 - time.monotonic()))
    return sum(sent)


def tcpsink(port: int, duration: float, start: float) -> tuple[int, int]:
    """(connections, bytes) received on ``port`` until the run's end."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(256)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    end = _monotonic_at(start) + duration
    conns = octets = 0
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.1):
            if key.fileobj is server:
                c, _ = server.accept()
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                conns += 1
                continue
            try:
                data = key.fileobj.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                octets += len(data)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
    return conns, octets


def rx(port: int, out: Path, duration: float, start: float) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_IP, 8, 1)  # IP_PKTINFO: which backend address it was sent to
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    end = _monotonic_at(start) + duration
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


def sink(port: int, duration: float, start: float) -> tuple[int, int]:
    """(packets, bytes) of UDP payload received on ``port`` until the run's end."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.1)
    end = _monotonic_at(start) + duration
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
    g = sub.add_parser("gap")
    g.add_argument("--dst"), g.add_argument("--port", type=int), g.add_argument("--rate", type=float)
    e = sub.add_parser("embb")
    e.add_argument("--dst"), e.add_argument("--port", type=int), e.add_argument("--rate", type=float)
    e.add_argument("--on", type=float, default=1.0), e.add_argument("--off", type=float, default=1.0)
    se = sub.add_parser("sessions")
    se.add_argument("--dst"), se.add_argument("--port", type=int), se.add_argument("--mbit", type=float)
    for q in (se,):
        q.add_argument("--arrivals", type=float), q.add_argument("--amplitude", type=float)
        q.add_argument("--day", type=float), q.add_argument("--phase", type=float)
        q.add_argument("--hold", type=float), q.add_argument("--ramp", type=float)
    cr = sub.add_parser("crowd")
    cr.add_argument("--dst"), cr.add_argument("--port", type=int), cr.add_argument("--mbit", type=float)
    cr.add_argument("--rate", type=float), cr.add_argument("--clients", type=int)
    cr.add_argument("--ramp", type=float), cr.add_argument("--hold", type=float)
    r = sub.add_parser("rx")
    r.add_argument("--port", type=int), r.add_argument("--out", type=Path)
    k = sub.add_parser("sink")
    k.add_argument("--port", type=int)
    t = sub.add_parser("tcpsink")
    t.add_argument("--port", type=int)
    for p in (u, g, e, se, cr, r, k, t):
        p.add_argument("--duration", type=float, required=True)
        p.add_argument("--start", type=float, default=0.0, help="CLOCK_REALTIME seconds to begin at")
        p.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.kind == "urllc":
        n = urllc(a.dst, a.port, a.rate, a.flows, a.duration, a.seed, a.start)
    elif a.kind == "gap":
        n = gap(a.dst, a.port, a.rate, a.duration, a.start)
    elif a.kind == "embb":
        n = embb(a.dst, a.port, a.rate, a.on, a.off, a.duration, a.seed, a.start)
    elif a.kind == "sessions":
        n = sessions(a.dst, a.port, a.mbit, Diurnal(a.arrivals, a.amplitude, a.day, a.phase), a.hold, a.ramp,
                     a.duration, a.seed, a.start)
    elif a.kind == "crowd":
        n = crowd(a.dst, a.port, a.mbit, a.rate, a.clients, a.ramp, a.hold, a.duration, a.seed, a.start)
    elif a.kind == "sink":
        print(*sink(a.port, a.duration, a.start), flush=True)
        return 0
    elif a.kind == "tcpsink":
        print(*tcpsink(a.port, a.duration, a.start), flush=True)
        return 0
    else:
        n = rx(a.port, a.out, a.duration, a.start)
    print(n, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

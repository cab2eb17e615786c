"""Kernel-timestamped packet taps on the site's switch ports: an oracle for what the
in-network monitor measures.

The monitor's span runs from the ingress stage's XDP stamp to the egress stage's XDP
sink. The Linux kernel timestamps every frame an ``AF_PACKET`` socket sees (``SO_TIMESTAMPNS``):
on the switch-side port of the ingress node, the frame leaving towards it (just before
its XDP program runs), and on the switch-side port of an egress node, the frame coming
back from it (just after its XDP program sent it). The difference is the span the monitor
claims to measure, from clocks and code we did not write, and independent of what
happens before the stamp (the sender's socket path, scheduling) or after the sink.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field

from mantra6g.testbed.traffic import GAP_FLOW, PROBE

SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4
URLLC_DPORT = b"\x13\x88"  # 5000


@dataclass
class Tap:
    """Every URLLC probe crossing one switch port in one direction: (flow, seq) -> kernel ns."""

    device: str
    outgoing: bool  # frames the switch sends towards the node (else: frames from the node)
    seen: dict[tuple[bool, int], int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Tap:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # FORCE (root) past net.core.rmem_max, which would cap it at ~200 KB: a loaded
        # machine's tap thread falls behind, and a full buffer drops frames.
        s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 24)
        s.bind((self.device, 0))
        s.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, args=(s,), daemon=True)
        self._thread.start()
        return self

    def _run(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _, addr = s.recvmsg(2048, 256)
            except socket.timeout:
                continue
            if (addr[2] == PACKET_OUTGOING) != self.outgoing:
                continue
            # The probe's UDP header wherever the telemetry shim put it: its payload follows.
            at = data.find(URLLC_DPORT, 14)
            if at < 0 or len(data) < at + 6 + PROBE.size:
                continue
            seq, _, flow = PROBE.unpack_from(data, at + 6)
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    self.seen[(flow == GAP_FLOW, seq)] = sec * 1_000_000_000 + nsec
        s.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

"""Network namespaces and veth pairs for tests and the testbed (needs root).

    with Lab("mt") as lab:                       # namespaces are named mt-<name>
        lab.link("h1", "h1-eth0", "dut", "dut-eth1")
        sock = lab.packet_socket("h1", "h1-eth0")   # AF_PACKET, bound in that namespace
        sock.send(frame)

Everything a lab creates is deleted when it exits, even on error; names carry the lab's
prefix so that a crashed run can be cleaned up with :func:`cleanup` before a new one.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import subprocess
from pathlib import Path

from mantra6g.errors import MantraError

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise MantraError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as f:
        if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            raise MantraError(f"setns {path}: {os.strerror(ctypes.get_errno())}")


def cleanup(prefix: str) -> None:
    """Delete every namespace named ``<prefix>-*`` (their veths go with them), first
    ending the processes still running in it (traffic generators of a crashed run)."""
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(prefix + "-"):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "delete", name, check=False)


class Lab:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.namespaces: list[str] = []

    def __enter__(self) -> Lab:
        cleanup(self.prefix)  # what a crashed earlier run left behind
        return self

    def __exit__(self, *exc) -> None:
        cleanup(self.prefix)

    def ns(self, name: str) -> str:
        """The full name of namespace ``name``, created on first use (loopback up)."""
        full = f"{self.prefix}-{name}"
        if full not in self.namespaces:
            _ip("netns", "add", full)
            self.namespaces.append(full)
            self.run(name, "ip", "link", "set", "lo", "up")
        return full

    def attach(self, name: str, pid: int) -> str:
        """Name the network namespace of process ``pid`` (a Mininet host's shell) as this
        lab's namespace ``name``: it is then reached, and cleaned up, like one it created."""
        full = f"{self.prefix}-{name}"
        _ip("netns", "attach", full, str(pid))
        self.namespaces.append(full)
        return full

    def run(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["ip", "netns", "exec", self.ns(name), *cmd], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise MantraError(f"{' '.join(cmd)} in {name}: {r.stderr.strip()}")
        return r

    def link(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        """A veth pair between two namespaces, both ends up, IPv6 off (no stray traffic)."""
        a, b = self.ns(ns_a), self.ns(ns_b)
        _ip("link", "add", if_a, "netns", a, "type", "veth", "peer", "name", if_b, "netns", b)
        for ns, iface in ((ns_a, if_a), (ns_b, if_b)):
            self.run(ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1")
            self.run(ns, "ip", "link", "set", iface, "up")

    def packet_socket(self, name: str, iface: str) -> PacketSocket:
        """A raw AF_PACKET socket bound to ``iface`` inside namespace ``name``; it stays in
        that namespace after this process returns to its own."""
        own = "/proc/self/ns/net"
        keep = os.open(own, os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.ns(name)}")
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.bind((iface, 0))
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(keep, CLONE_NEWNET)
            os.close(keep)
        return PacketSocket(s)

    def in_ns(self, name: str):
        """Context manager: this thread runs in namespace ``name`` meanwhile."""
        return _InNs(f"/run/netns/{self.ns(name)}")


class _InNs:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        self.keep = os.open("/proc/self/ns/net", os.O_RDONLY)
        _setns(self.path)
        return self

    def __exit__(self, *exc):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(self.keep, CLONE_NEWNET)
        os.close(self.keep)


class PacketSocket:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drain(self) -> None:
        while self.receive(timeout=0.0) is not None:
            pass

    def receive(self, timeout: float = 0.5) -> bytes | None:
        """The next frame that arrived on the interface (not one it sent), or None. A VLAN
        tag the driver stripped into metadata (VLAN offload) is put back, as on the wire."""
        while True:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None
            data, ancillary, _, addr = self.sock.recvmsg(65535, socket.CMSG_SPACE(20))
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, kind, aux in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 20:
                    status, tci, tpid = struct.unpack_from("<I", aux, 0)[0], *struct.unpack_from("<HH", aux, 16)
                    if status & TP_STATUS_VLAN_VALID:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            return data

    def close(self) -> None:
        self.sock.close()


SIOCETHTOOL = 0x8946
ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS, ETHTOOL_GSTATS = 0x37, 0x1B, 0x1D
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32


class EthtoolStats:
    """A device's driver statistics (what ``ethtool -S`` prints) through the SIOCETHTOOL
    ioctl, without a process per read. The socket is made in the caller's network
    namespace and keeps it: create it inside :meth:`Lab.in_ns`, read it from anywhere."""

    def __init__(self, iface: str):
        import fcntl  # noqa: F401  (ioctl below; imported here to keep the module light)

        self.iface = iface
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        info = self._call(struct.pack("<IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_STATS, 0), 20)
        (count,) = struct.unpack_from("<I", info, 16)
        raw = self._call(struct.pack("<III", ETHTOOL_GSTRINGS, ETH_SS_STATS, count) + bytes(count * ETH_GSTRING_LEN),
                         12 + count * ETH_GSTRING_LEN)
        self.names = [raw[12 + i * ETH_GSTRING_LEN:12 + (i + 1) * ETH_GSTRING_LEN].split(b"\0")[0].decode()
                      for i in range(count)]

    def _call(self, request: bytes, size: int) -> bytes:
        import fcntl

        buf = ctypes.create_string_buffer(request, max(size, len(request)))
        ifreq = struct.pack("16sP", self.iface.encode(), ctypes.addressof(buf)) + bytes(16)
        try:
            fcntl.ioctl(self._sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise MantraError(f"ethtool statistics of {self.iface}: {exc.strerror}") from None
        return buf.raw

    def read(self) -> dict[str, int]:
        n = len(self.names)
        raw = self._call(struct.pack("<II", ETHTOOL_GSTATS, n) + bytes(8 * n), 8 + 8 * n)
        return dict(zip(self.names, struct.unpack_from(f"<{n}Q", raw, 8)))

    def close(self) -> None:
        self._sock.close()


def pass_program(workdir: Path) -> Path:
    """A minimal XDP_PASS object: attached to the far end of a veth, it enables the NAPI
    path that XDP_TX/redirect into that veth needs."""
    from mantra6g.targets.xdp import build

    c = workdir / "xdp_pass.c"
    c.write_text(
        '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
        'SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    return build(c, workdir / "xdp_pass.o")


__all__ = ["EthtoolStats", "Lab", "PacketSocket", "cleanup", "pass_program"]

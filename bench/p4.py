"""Packets per second of the same program on BMv2 and on XDP, on veth, in one run.

    sudo PATH=/opt/p4tools/bin:$PATH .venv/bin/python bench/p4.py [--duration 3] [--rounds 3]
        [--programs router,acl,chain] [--sender xdp|packet] [--rate PPS] [--sender-cpu 0] [--dut-cpu 1]

Needs root, ``p4c-bm2-ss``, ``simple_switch`` and ``simple_switch_CLI`` (found as
``targets/toolchain.py`` finds them: ``PATH``, ``MANTRA_P4C``, ``MANTRA_SIMPLE_SWITCH``)
and clang; without root or without the BMv2 tools it says so and exits with status 1.

Each service graph — a router; a 32-rule ACL then the router; the ACL, a Maglev DNAT
load balancer and the router — is compiled to one DP-IR program and from it both ways:
``bmv2.emit`` and p4c-bm2-ss, run on the real ``simple_switch`` with its entries given
by ``simple_switch_CLI``; and ``mantra deploy`` (our XDP backend, natively attached).
The bench makes three network namespaces of its own (``mbp4<pid>-*``)::

    tx: b<n>s ===veth=== b<n>i (port 1)  dut  (port 2) b<n>o ===veth=== b<n>r :rx

and deletes them when it ends, also on an error, Ctrl-C or SIGTERM.

The sender runs in ``tx`` on ``--sender-cpu``. ``--sender xdp`` (the default) is the
kernel's own XDP traffic generator, the one xdp-trafficgen uses: ``BPF_PROG_RUN`` of an
``XDP_TX`` program with ``BPF_F_TEST_XDP_LIVE_FRAMES`` puts copies of the frame on the
wire of ``b<n>s`` (they reach the DUT as XDP frames, as from a NIC); ``--sender packet``
is an ``AF_PACKET`` socket (``PACKET_QDISC_BYPASS``, ``sendmmsg`` of 1024 frames a call;
they reach the DUT as socket buffers). The frame is one prebuilt 60-byte UDP/IPv4
frame. The DUT runs on ``--dut-cpu``: ``simple_switch`` pinned there (the kernel's
receive work for it stays on the sender's core, in BMv2's favour); for XDP, the
ingress veth's NAPI made a kernel thread and pinned there. An ``XDP_DROP`` program on
``b<n>r`` takes what arrives at the receiving veth.

Figures are the kernel's interface counters (``ip -s link``) over the timed window
after a warm-up: *offered* = what the sender put on its veth (transmitted + dropped
because the DUT's queue was full), *forwarded* = what the receiving veth received,
per second. Each round times, in turn, the sender's ceiling (``XDP_DROP`` on the DUT's
port, on the DUT's core) and every program on BMv2 and on XDP, so background load
hits them alike; figures are medians over rounds (with their range). An XDP figure
that forwards nearly all it is offered, or about what ``XDP_DROP`` at the port takes,
is marked as bounded by the sender (a lower bound). Before the first
round, three frames go through each target and what arrives is checked against the
interpreter. The ratio is XDP / BMv2 (issue 13's goal: at least 100). A benchmark
prints figures; it never passes or fails on time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testbed.netns (the namespaces)

from mantra6g.errors import MantraError  # noqa: E402
from mantra6g.source import SourceFile  # noqa: E402
from mantra6g.synth import frontend  # noqa: E402
from mantra6g.synth.compose import compile_specs  # noqa: E402
from mantra6g.synth.dpir import Program  # noqa: E402
from mantra6g.synth.interp import run  # noqa: E402
from mantra6g.targets import bmv2, toolchain  # noqa: E402
from mantra6g.targets.p4 import ident  # noqa: E402

from xdp import ACL, LB, graph  # noqa: E402  (bench/xdp.py: the same 32-rule ACL and Maglev LB)

TOOLS = ("p4c-bm2-ss", "simple_switch", "simple_switch_CLI")
SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BATCH = 1024  # frames per sendmmsg call
# Frames per BPF_PROG_RUN call of the XDP generator: each call costs ~25 ms of set-up
# and tear-down here, in which nothing is sent, so a call sends for about a second.
BURST = 1 << 22
ROUTER_MAC, SENDER_MAC, NEXT_HOP = "02:00:00:00:00:12", "02:00:00:00:00:11", "02:00:00:00:0a:02"
ROUTER = f"""router(mac: {ROUTER_MAC}) {{
        route 10.0.0.0/8 via 02:00:00:00:0a:01 port 1
        route 10.0.2.0/24 via {NEXT_HOP} port 2
        route 10.0.3.0/24 via {NEXT_HOP} port 2
    }}"""
PROGRAMS = {
    "router": ("router: LPM, MAC rewrite, TTL", graph([ROUTER])),
    "acl": ("ACL (32 rules) > router", graph([ACL, ROUTER])),
    "chain": ("ACL > LB (Maglev, DNAT) > router", graph([ACL, LB, ROUTER])),
}
XDP_C = '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nSEC("xdp") int xdp_{0}(struct xdp_md *ctx) {{ return XDP_{1}; }}\nchar LICENSE[] SEC("license") = "GPL";\n'  # noqa: E501
CEILING = ("sender", "XDP_DROP at port 1")


def frame() -> bytes:
    """The one 60-byte frame every program forwards to port 2 (64 on a wire, with FCS)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether(src=SENDER_MAC, dst=ROUTER_MAC) / IP(src="10.0.1.5", dst="10.0.2.1", ttl=64) / UDP(sport=1234, dport=5000)
    return bytes(pkt / (b"\0" * (60 - len(pkt))))


def program(name: str) -> Program:
    (dp,) = compile_specs(frontend.load_sources([SourceFile(f"{name}.sg", PROGRAMS[name][1])]))
    return dp.program


# ---------------------------------------------------------------- the namespaces


class Topology:
    """tx --veth-- dut --veth-- rx, with interface names short enough that the NAPI
    kernel thread's name (15 characters) still shows which veth it serves."""

    def __init__(self, lab, work: Path):
        from mantra6g.targets.xdp import build

        n = os.getpid() % 100000
        self.lab, self.work = lab, work
        self.tx, self.port1, self.port2, self.rx = f"b{n}s", f"b{n}i", f"b{n}o", f"b{n}r"
        lab.link("tx", self.tx, "dut", self.port1)
        lab.link("dut", self.port2, "rx", self.rx)
        # GRO gives port 1 a NAPI without an XDP program, so that frames the XDP generator
        # sends reach BMv2 too (veth takes XDP frames only into a NAPI).
        lab.run("dut", "ethtool", "-K", self.port1, "gro", "on")
        self.objects = {}
        for verdict in ("drop", "pass", "tx"):
            c = work / f"xdp_{verdict}.c"
            c.write_text(XDP_C.format(verdict, verdict.upper()))
            self.objects[verdict] = build(c, work / f"xdp_{verdict}.o")

    def attach(self, ns: str, iface: str, verdict: str) -> None:
        """Attach one of the one-verdict programs (replacing what is there); the
        attachment keeps it loaded."""
        from mantra6g.targets.bpf import BpfObject

        with self.lab.in_ns(ns), BpfObject.load(self.objects[verdict]) as obj:
            obj.attach(socket.if_nametoindex(iface))

    def detach(self, ns: str, iface: str) -> None:
        from mantra6g.targets import bpf

        with self.lab.in_ns(ns):
            bpf.detach(socket.if_nametoindex(iface))

    def counters(self, ns: str, iface: str) -> dict[str, dict[str, int]]:
        out = self.lab.run(ns, "ip", "-s", "-j", "link", "show", "dev", iface).stdout
        return json.loads(out)[0]["stats64"]

    def napi_on(self, cpu: int | None) -> None:
        """Port 1's NAPI as a kernel thread pinned to ``cpu`` (the DUT's core); None: as
        a softirq on the core that woke it (the sender's)."""
        path = f"/sys/class/net/{self.port1}/threaded"
        self.lab.run("dut", "sh", "-c", f"echo {0 if cpu is None else 1} > {path}")
        if cpu is None:
            return
        want, pinned = f"napi/{self.port1}-", 0
        for _ in range(100):  # every match: one of a NAPI just replaced may still be exiting
            for d in Path("/proc").iterdir():
                try:
                    if d.name.isdigit() and (d / "comm").read_text().startswith(want):
                        os.sched_setaffinity(int(d.name), {cpu})
                        pinned += 1
                except OSError:
                    continue
            if pinned:
                return
            time.sleep(0.02)
        raise MantraError(f"no NAPI thread for {self.port1} after making it threaded")


# ---------------------------------------------------------------- the senders


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


class _XdpMd(ctypes.Structure):
    _fields_ = [(f, ctypes.c_uint32) for f in
                ("data", "data_end", "data_meta", "ingress_ifindex", "rx_queue_index", "egress_ifindex")]


def _packet_burst(iface: str, data: bytes, rate: float):
    """``AF_PACKET`` sender: a function sending one burst, returning how many it sent.
    ENOBUFS means the DUT's queue is full; the kernel counts the frame as dropped."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: it only sends
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((iface, 0))
    batch = BATCH if not rate else max(1, min(BATCH, int(rate // 1000)))
    buf = ctypes.create_string_buffer(data, len(data))
    iov = _Iovec(ctypes.cast(buf, ctypes.c_void_p), len(data))
    msgs = (_Mmsghdr * batch)()
    for m in msgs:
        m.hdr.iov, m.hdr.iovlen = ctypes.pointer(iov), 1
    sendmmsg = ctypes.CDLL(None, use_errno=True).sendmmsg
    return lambda: max(sendmmsg(sock.fileno(), msgs, batch, 0), 0)


def _xdp_burst(iface: str, data: bytes, tx_object: Path):
    """The kernel's XDP traffic generator: ``BPF_PROG_RUN`` of an ``XDP_TX`` program in
    live-frames mode sends each of ``BURST`` copies of ``data`` out of ``iface``."""
    from mantra6g.targets import bpf
    from mantra6g.targets.bpf import BpfObject, _TestRunOpts

    obj = BpfObject.load(tx_object)
    ctx = _XdpMd(0, len(data), 0, socket.if_nametoindex(iface), 0, 0)
    din = ctypes.create_string_buffer(data, len(data))

    def burst() -> int:
        opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.cast(din, ctypes.c_void_p),
                            data_size_in=len(data), ctx_in=ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p),
                            ctx_size_in=ctypes.sizeof(ctx), repeat=BURST, flags=BPF_F_TEST_XDP_LIVE_FRAMES,
                            batch_size=64)
        ret = bpf.lib().bpf_prog_test_run_opts(obj.fd, ctypes.byref(opts))
        if ret != 0:
            raise MantraError(f"the XDP traffic generator failed: {os.strerror(-ret)} (needs Linux 5.18 or later)")
        return BURST

    return burst


def _send(kind: str, lab, iface: str, data: bytes, cpu: int, rate: float, tx_object: Path, stop, failed) -> None:
    """The sender process: pinned to ``cpu``, in ``tx``, bursts until told to stop."""
    os.sched_setaffinity(0, {cpu})
    try:
        # All of it inside ``tx``: the generator's ingress ifindex means the device of
        # that index in the namespace the BPF_PROG_RUN call is made from.
        with lab.in_ns("tx"):
            burst = _packet_burst(iface, data, rate) if kind == "packet" else _xdp_burst(iface, data, tx_object)
            sent, start = 0, time.monotonic()
            while not stop.is_set():
                sent += burst()
                if rate and (ahead := sent / rate - (time.monotonic() - start)) > 0:
                    time.sleep(ahead)
    except Exception as exc:  # the parent reports it
        failed.put(str(exc))


@dataclass(frozen=True)
class Sender:
    kind: str  # "xdp" or "packet"
    cpu: int
    rate: float  # pps, 0: flat out

    @contextmanager
    def sending(self, topo: Topology, data: bytes):
        ctx = multiprocessing.get_context("fork")
        stop, failed = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_send, daemon=True,
                           args=(self.kind, topo.lab, topo.tx, data, self.cpu, self.rate, topo.objects["tx"], stop, failed))
        proc.start()
        try:
            yield
        finally:
            stop.set()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if not failed.empty():
            raise MantraError(f"the sender failed: {failed.get()}")


@dataclass(frozen=True)
class Rates:
    offered: float  # pps the sender put on its veth (transmitted + dropped there)
    forwarded: float  # pps received where counted (the receiving veth)


def measure(topo: Topology, sender: Sender, data: bytes, seconds: float, warmup: float,
            at: tuple[str, str] | None = None) -> Rates:
    """Traffic for ``warmup`` + ``seconds``; the rates over the last ``seconds``. ``at``:
    where "forwarded" is counted (default the receiving veth)."""
    ns, iface = at or ("rx", topo.rx)
    with sender.sending(topo, data):
        time.sleep(warmup)
        t0, tx0, rx0 = time.monotonic(), topo.counters("tx", topo.tx), topo.counters(ns, iface)
        time.sleep(seconds)
        t1, tx1, rx1 = time.monotonic(), topo.counters("tx", topo.tx), topo.counters(ns, iface)
    dt = t1 - t0
    offered = sum(tx1["tx"][k] - tx0["tx"][k] for k in ("packets", "dropped"))
    return Rates(offered / dt, (rx1["rx"]["packets"] - rx0["rx"]["packets"]) / dt)


def check(topo: Topology, p: Program, data: bytes, target: str) -> None:
    """Three frames through the DUT: what reaches the receiving veth must be what the
    interpreter says the program sends out of port 2."""
    want = run(p, data, 1, 1_000_000).outputs
    if [port for port, _ in want] != [2]:
        raise MantraError(f"{p.name}: the interpreter sends the bench frame to {want}, not port 2: fix the graph")
    topo.attach("rx", topo.rx, "pass")  # frames go up to the packet socket
    sink, source = topo.lab.packet_socket("rx", topo.rx), topo.lab.packet_socket("tx", topo.tx)
    try:
        got = None
        for _ in range(3):
            source.send(data)
            got = sink.receive(timeout=2.0) or got
        if got != want[0][1]:
            raise MantraError(f"{p.name} on {target}: the receiving veth got {got.hex() if got else 'nothing'}, "
                              f"the interpreter says {want[0][1].hex()}")
    finally:
        sink.close()
        source.close()
    topo.attach("rx", topo.rx, "drop")  # counted and dropped: the cheapest receiver


# ---------------------------------------------------------------- the two targets


@dataclass(frozen=True)
class Bmv2Build:
    json: Path
    commands: str  # simple_switch_CLI input: the program's entries


def build_bmv2(topo: Topology, name: str, p: Program) -> Bmv2Build:
    work = topo.work / f"bmv2-{name}"
    work.mkdir()
    out = bmv2.emit(p)
    for file, text in out.files.items():
        (work / file).write_text(text) if isinstance(text, str) else (work / file).write_bytes(text)
    stem = ident(p.name)
    return Bmv2Build(toolchain.compile_bmv2(work / f"{stem}.p4", work).json, out.files[f"{stem}.commands.txt"])


@contextmanager
def on_bmv2(topo: Topology, built: Bmv2Build, cpu: int):
    """simple_switch in ``dut`` pinned to ``cpu``, its entries given by simple_switch_CLI."""
    ns, thrift = topo.lab.ns("dut"), 20000 + os.getpid() % 20000
    topo.napi_on(None)
    cmd = ["ip", "netns", "exec", ns, "taskset", "-c", str(cpu), str(toolchain.require("simple_switch")),
           "-i", f"1@{topo.port1}", "-i", f"2@{topo.port2}", "--thrift-port", str(thrift),
           "--device-id", str(os.getpid() % 1000), str(built.json)]
    log_file = built.json.parent / "switch.log"
    with open(log_file, "w") as log:
        switch = subprocess.Popen(cmd, cwd=built.json.parent, stdout=log, stderr=subprocess.STDOUT)
        try:
            toolchain.load_entries(built.commands, thrift, switch, log_file, prefix=("ip", "netns", "exec", ns))
            yield
        finally:
            switch.terminate()
            try:
                switch.wait(timeout=10)
            except subprocess.TimeoutExpired:
                switch.kill()
                switch.wait()


@contextmanager
def on_xdp(topo: Topology, name: str, cpu: int):
    """The graph deployed with ``mantra deploy`` (native XDP on port 1; DP-IR ports 1
    and 2), port 1's NAPI a thread on ``cpu``; detached (and its pins removed) after."""
    from mantra6g.targets import xdp

    sg = topo.work / f"{name}.sg"
    sg.write_text(PROGRAMS[name][1])
    ns = topo.lab.ns("dut")
    base = [sys.executable, "-m", "mantra6g", "deploy", str(sg), "--netns", ns, "--iface", topo.port1]
    try:
        r = subprocess.run([*base, "--port", f"1={topo.port1}", "--port", f"2={topo.port2}", "--unclaimed", "drop"],
                           capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise MantraError(f"mantra deploy failed:\n{r.stderr}")
        topo.napi_on(cpu)
        yield
    finally:
        subprocess.run([*base, "--detach"], capture_output=True, text=True, cwd=ROOT)
        pins = xdp.pin_dir(topo.port1, ns)  # the namespace's own folder: gone with a clean detach
        shutil.rmtree(pins.parent, ignore_errors=True)


# ---------------------------------------------------------------- main


def missing() -> str | None:
    """Why the bench cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP): sudo PATH=/opt/p4tools/bin:$PATH .venv/bin/python bench/p4.py"
    absent = [t for t in TOOLS if toolchain.find(t) is None]
    if absent:
        return f"{', '.join(absent)} not found: put p4c and BMv2 on PATH, or set MANTRA_P4C and MANTRA_SIMPLE_SWITCH"
    return None


def pps(value: float) -> str:
    return f"{value / 1e6:.3f} Mpps" if value >= 1e5 else f"{value / 1e3:.2f} kpps"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds timed per round (default 3)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of traffic before each timed window")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; figures are medians (default 3)")
    ap.add_argument("--programs", default=",".join(PROGRAMS), help=f"comma-separated, of {', '.join(PROGRAMS)}")
    ap.add_argument("--sender", choices=("xdp", "packet"), default="xdp",
                    help="xdp: the kernel's XDP traffic generator (default); packet: an AF_PACKET socket")
    ap.add_argument("--rate", type=float, default=0,
                    help="--sender packet: pace it to this many pps (default: flat out)")
    ap.add_argument("--sender-cpu", type=int, default=0)
    ap.add_argument("--dut-cpu", type=int, default=1)
    args = ap.parse_args()
    names = [n.strip() for n in args.programs.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROGRAMS]
    if unknown or not names:
        print(f"bench/p4.py: --programs {args.programs}: choose from {', '.join(PROGRAMS)}", file=sys.stderr)
        return 2
    if args.rate and args.sender != "packet":
        print("bench/p4.py: --rate paces the AF_PACKET sender only: add --sender packet", file=sys.stderr)
        return 2
    why = missing()
    if why:
        print(f"bench/p4.py: {why}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the namespaces are deleted
    try:
        results = bench(names, args)
    except MantraError as exc:
        print(f"bench/p4.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/p4.py: interrupted (its namespaces are deleted)", file=sys.stderr)
        return 130
    report(results, names)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


def bench(names: list[str], args) -> dict[tuple[str, str], list[Rates]]:
    from testbed.netns import Lab

    data = frame()
    sender = Sender(args.sender, args.sender_cpu, args.rate)
    load = os.getloadavg()
    version = subprocess.run([str(toolchain.require("simple_switch")), "--version"], capture_output=True, text=True)
    print(f"kernel {platform.release()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"(shared machine); simple_switch {version.stdout.strip()} ({toolchain.find('simple_switch')})")
    how = ("the kernel's XDP generator (BPF_PROG_RUN, live frames)" if sender.kind == "xdp"
           else f"AF_PACKET sendmmsg x{BATCH}")
    print(f"sender: {how}, one {len(data)}-byte UDP/IPv4 frame, on CPU {sender.cpu}"
          f"{f', paced to {sender.rate:.0f} pps' if sender.rate else ''}; DUT on CPU {args.dut_cpu}; "
          f"{args.rounds} rounds x {args.duration:g} s after {args.warmup:g} s of warm-up")
    results: dict[tuple[str, str], list[Rates]] = {}

    def timed(key: tuple[str, str], at: tuple[str, str] | None = None) -> None:
        r = measure(topo, sender, data, args.duration, args.warmup, at)
        results.setdefault(key, []).append(r)
        print(f"  {key[0]:<8}{key[1]:<20}offered {pps(r.offered):>12}  forwarded {pps(r.forwarded):>12}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="mantra-bench-p4-") as tmp, Lab(f"mbp4{os.getpid() % 100000}") as lab:
        topo = Topology(lab, Path(tmp))
        topo.attach("rx", topo.rx, "drop")
        programs = {name: program(name) for name in names}
        builds = {name: build_bmv2(topo, name, p) for name, p in programs.items()}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            topo.attach("dut", topo.port1, "drop")  # the sender's ceiling, on the DUT's core
            topo.napi_on(args.dut_cpu)
            timed(CEILING, at=("dut", topo.port1))
            topo.detach("dut", topo.port1)
            for name, p in programs.items():
                with on_bmv2(topo, builds[name], args.dut_cpu):
                    if r == 0:
                        check(topo, p, data, "bmv2")
                    timed((name, "bmv2"))
                with on_xdp(topo, name, args.dut_cpu):
                    if r == 0:
                        check(topo, p, data, "xdp")
                    timed((name, "xdp"))
    return results


def report(results: dict[tuple[str, str], list[Rates]], names: list[str]) -> None:
    def med(key: tuple[str, str], field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[key])

    rounds, ceiling = len(results[CEILING]), med(CEILING, "forwarded")
    print(f"\nmedians of {rounds} rounds; sender's ceiling (XDP_DROP at the DUT's port 1, its NAPI on the DUT's core): "
          f"offered {pps(med(CEILING, 'offered'))}, taken by the port {pps(ceiling)}")
    print(f"{'program':<34}{'target':<8}{'offered':>13}{'forwarded':>13}{'(rounds: min - max)':>29}{'of offered':>12}"
          f"{'XDP/BMv2':>10}")
    for name in names:
        fwd = {}
        for target in ("bmv2", "xdp"):
            key = (name, target)
            off, fwd[target] = med(key, "offered"), med(key, "forwarded")
            spread = [r.forwarded for r in results[key]]
            ratio = f"{fwd['xdp'] / fwd['bmv2']:>9.0f}x" if target == "xdp" and fwd["bmv2"] else ""
            # All it is offered, or about what a do-nothing program takes: the sender is the limit.
            bounded = fwd[target] >= 0.95 * off or fwd[target] >= 0.9 * ceiling
            bound = "  bounded by the sender: a lower bound" if target == "xdp" and bounded else ""
            print(f"{PROGRAMS[name][0] if target == 'bmv2' else '':<34}{target:<8}{pps(off):>13}{pps(fwd[target]):>13}"
                  f"{f'({pps(min(spread))} - {pps(max(spread))})':>29}{fwd[target] / off if off else 0:>12.1%}"
                  f"{ratio}{bound}")


if __name__ == "__main__":
    sys.exit(main())

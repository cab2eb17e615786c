"""Root: the bpfman export round trip. The exported object is loaded and its maps pinned
as bpfman loads and pins them, the exported ``fill-maps.sh`` fills them with the real
``bpftool`` (no Mantra code in that step), the program is attached as ``mantra deploy``
attaches it, and packets sent through veth pairs in namespaces this test creates come
out as the reference interpreter says.

Oracles: the Linux kernel (verifier, XDP, the maps as bpftool wrote them) and the
interpreter; the map contents are checked against what ``mantra deploy`` installs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from mantra6g.export import ExportOptions, export_site, write_folder
from mantra6g.export.site import Site
from mantra6g.synth.interp import State, run
from mantra6g.targets import xdp

pytestmark = pytest.mark.root

ETH = dict(src="02:00:00:00:00:aa", dst="02:00:00:00:00:fe")


def frame(src: str, dst: str, l4) -> bytes:
    return bytes(Ether(**ETH) / IP(src=src, dst=dst) / l4 / b"mantra-export-roundtrip")


# (example, device program, packets, whether outputs are timestamped)
CASES = {
    "embb_video": ("pdp", [
        frame("198.51.100.7", "10.20.1.1", UDP(sport=443, dport=40000)),  # route -> port 1 (back out)
        frame("198.51.100.7", "10.21.0.5", UDP(sport=443, dport=40000)),  # route -> port 2
        frame("198.51.100.9", "10.21.3.3", TCP(sport=443, dport=50000)),  # route -> port 2
        frame("198.51.100.7", "10.30.0.1", UDP(sport=443, dport=40000)),  # no route: dropped
        frame("203.0.113.1", "10.20.1.1", UDP(sport=443, dport=40000)),  # not the slice: dropped
    ], False),
    "urllc_factory": ("smartnic_factory_edge", [
        frame("10.1.5.5", "10.1.255.10", UDP(sport=1234, dport=5001)),  # firewall allows, LB picks a backend
        frame("10.1.6.9", "10.1.255.10", UDP(sport=999, dport=5010)),
        frame("10.1.3.7", "10.1.255.10", UDP(sport=1234, dport=5001)),  # the denied workstation
        frame("10.1.5.5", "10.1.255.10", UDP(sport=1234, dport=6000)),  # outside the slice
    ], True),  # the latency monitor stamps packets with the kernel clock
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """h1 --veth-- dut --veth-- h2; dut's ports: 1 (to h1) and 2 (to h2)."""
    from mantra6g.targets.bpf import BpfObject
    from testbed.netns import Lab, pass_program

    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed (make setup installs it)")
    work = tmp_path_factory.mktemp("bpfman-lab")
    with Lab(f"mbx{os.getpid() % 10000}") as lab:
        lab.link("h1", "h1-eth0", "dut", "dut-eth1")
        lab.link("h2", "h2-eth0", "dut", "dut-eth2")
        passes = []
        obj_file = pass_program(work)
        for ns, iface in (("h1", "h1-eth0"), ("h2", "h2-eth0")):
            with lab.in_ns(ns):
                o = BpfObject.load(obj_file)
                o.attach(socket.if_nametoindex(iface))
                passes.append(o)
        lab.work = work
        yield lab
        for o in passes:
            o.close()


def passes_like_the_interpreter(lab, p, packets: list[bytes], timed: bool) -> None:
    """Send each packet from h1 into dut's port 1; what comes out of h1 and h2 is what
    the interpreter outputs (only the ports where the program stamps the kernel clock)."""
    h1, h2 = lab.packet_socket("h1", "h1-eth0"), lab.packet_socket("h2", "h2-eth0")
    state = State.initial(p)
    try:
        seen = 0
        for data in packets:
            want = run(p, data, 1, time.monotonic_ns(), state).outputs
            h1.drain()
            h2.drain()
            h1.send(data)
            got = []
            for port, sock in ((1, h1), (2, h2)):
                f = sock.receive(timeout=0.5 if want and want[0][0] == port else 0.1)
                if f is not None:
                    got.append((port, f))
            seen += len(got)
            if timed:
                assert [x[0] for x in got] == [x[0] for x in want], data.hex()
            else:  # veth pads short frames: compare the bytes the program produced
                assert len(got) == len(want) and [(pt, f[: len(w)]) for (pt, f), (_, w) in zip(got, want)] == want, data.hex()
        assert seen >= 2  # traffic did pass, on the ports the interpreter chose
    finally:
        h1.close()
        h2.close()


@pytest.fixture
def bpffs():
    """A BPF filesystem of the test's own, as bpfman keeps one at /run/bpfman/fs
    (`ip netns exec` mounts a fresh /sys, so /sys/fs/bpf is not seen inside a namespace)."""
    fs = Path(f"/run/mantra-export-test-{os.getpid()}")
    fs.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "bpf", "bpf", str(fs)], check=True)
    yield fs
    subprocess.run(["umount", str(fs)], check=False)
    fs.rmdir()


@pytest.mark.parametrize("example", sorted(CASES))
def test_exported_object_and_map_fill_pass_traffic_as_the_interpreter_says(lab, bpffs, example):
    from mantra6g.targets import bpf

    device, packets, timed = CASES[example]
    folder = lab.work / example
    bundle = export_site([f"examples/{example}.sg"], "bpfman",
                         ExportOptions(interfaces=((1, "dut-eth1"), (2, "dut-eth2"))), device)
    write_folder(folder, bundle.files)
    p = Site.load([f"examples/{example}.sg"], device).programs[0].program

    # bpfman's part: load the object from the bundle and pin its maps.
    pins = bpffs / "maps" / device
    obj = bpf.BpfObject.load(folder / device / f"{device}.o")
    try:
        obj.pin_maps(pins)
        # The map fill's part: the exported script and the real bpftool, in dut's namespace.
        ns = lab.ns("dut")
        r = subprocess.run(["ip", "netns", "exec", ns, "sh", str(folder / device / "fill-maps.sh"), str(pins),
                            "1=dut-eth1", "2=dut-eth2"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        for name, key, value in xdp.map_fill(p):  # what `mantra deploy` would have installed
            assert obj.lookup(name, key, len(value)) == value, name
        with lab.in_ns("dut"):
            idx = {i: socket.if_nametoindex(f"dut-eth{i}") for i in (1, 2)}
            for port, ifindex in idx.items():
                assert obj.lookup("mantra_ports", port.to_bytes(4, "little"), 4) == ifindex.to_bytes(4, "little")
                assert obj.lookup("mantra_port_of", ifindex.to_bytes(4, "little"), 4) == port.to_bytes(4, "little")
            obj.attach(idx[1])  # as `mantra deploy --iface dut-eth1 --port 1=dut-eth1 --port 2=dut-eth2`
        try:
            passes_like_the_interpreter(lab, p, packets, timed)
        finally:
            with lab.in_ns("dut"):
                bpf.detach(socket.if_nametoindex("dut-eth1"))
    finally:
        obj.close()


def test_the_bundle_loads_by_hand_with_bpftool_alone(lab, bpffs):
    """The bundle README's path without Kubernetes: bpftool loads the object and pins its
    maps, the fill script fills them, bpftool attaches it; no Mantra code in between."""
    device, packets, timed = CASES["embb_video"]
    folder = lab.work / "by-hand"
    write_folder(folder, export_site(["examples/embb_video.sg"], "bpfman", ExportOptions(), device).files)
    p = Site.load(["examples/embb_video.sg"], device).programs[0].program
    ns = lab.ns("dut")

    def bpftool(*args: str) -> None:
        r = subprocess.run(["ip", "netns", "exec", ns, "bpftool", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    bpftool("prog", "load", str(folder / device / f"{device}.o"), str(bpffs / device), "pinmaps", str(bpffs / f"{device}-maps"))
    r = subprocess.run(["ip", "netns", "exec", ns, "sh", str(folder / device / "fill-maps.sh"), str(bpffs / f"{device}-maps"),
                        "1=dut-eth1", "2=dut-eth2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bpftool("net", "attach", "xdp", "pinned", str(bpffs / device), "dev", "dut-eth1")
    try:
        passes_like_the_interpreter(lab, p, packets, timed)
    finally:
        bpftool("net", "detach", "xdp", "dev", "dut-eth1")

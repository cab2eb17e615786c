"""XDP programs on real hosts' interfaces, judged by the Linux network stack itself: a
TCP client completes real handshakes through the load balancer to a backend in another
namespace (both modes); ARP and the host's own traffic keep working with
``unclaimed: pass``; a failed deploy leaves the running program and its pinned maps as
they were."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.compose import compile_specs
from mantra6g.synth.dpir import Lpm
from mantra6g.targets import xdp

pytestmark = pytest.mark.root

CLIENT, GATEWAY_IN, GATEWAY_OUT, BACKEND, VIP = "10.1.0.7", "10.1.0.1", "10.2.0.1", "10.2.0.11", "10.9.0.100"
TENANT = "tenant acme id 1 {\n    slice web {\n        latency <= 10 ms\n    }\n}\n"


@pytest.fixture()
def site(tmp_path):
    """client (h1) --veth-- dut (a router, XDP on its ports) --veth-- backend (h2)."""
    from mantra6g.targets.bpf import BpfObject
    from testbed.netns import Lab, pass_program

    with Lab(f"mxh{os.getpid() % 10000}") as lab:
        lab.link("h1", "h1-eth0", "dut", "dut-eth1")
        lab.link("h2", "h2-eth0", "dut", "dut-eth2")
        for ns, iface, addr, gw in (("h1", "h1-eth0", f"{CLIENT}/24", GATEWAY_IN), ("h2", "h2-eth0", f"{BACKEND}/24", GATEWAY_OUT)):
            lab.run(ns, "ip", "addr", "add", addr, "dev", iface)
            lab.run(ns, "ip", "route", "add", "default", "via", gw)
        lab.run("dut", "ip", "addr", "add", f"{GATEWAY_IN}/24", "dev", "dut-eth1")
        lab.run("dut", "ip", "addr", "add", f"{GATEWAY_OUT}/24", "dev", "dut-eth2")
        lab.run("dut", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # A veth hands TCP segments over with their checksum left to "the NIC" (offload);
        # a packet XDP rewrote loses that mark. Real wires carry full checksums: so here.
        for ns, iface in (("h1", "h1-eth0"), ("h2", "h2-eth0"), ("dut", "dut-eth1"), ("dut", "dut-eth2")):
            lab.run(ns, "ethtool", "-K", iface, "tx", "off")
        # XDP redirects into a veth need NAPI on its far end: a pass program gives it.
        obj_file = pass_program(tmp_path)
        passes = []
        for ns, iface in (("h1", "h1-eth0"), ("h2", "h2-eth0")):
            with lab.in_ns(ns):
                o = BpfObject.load(obj_file)
                o.attach(socket.if_nametoindex(iface))
                passes.append(o)
        lab.mac = {f"{ns}/{i}": _mac(lab, ns, i) for ns, i in (("h1", "h1-eth0"), ("h2", "h2-eth0"),
                                                                 ("dut", "dut-eth1"), ("dut", "dut-eth2"))}
        lab.work = tmp_path
        try:
            yield lab
        finally:
            for o in passes:
                o.close()
            # The dut's pinned maps outlive its namespace (bpffs is the host's): remove them.
            shutil.rmtree(xdp.PIN_ROOT / lab.ns("dut"), ignore_errors=True)


def _mac(lab, ns: str, iface: str) -> str:
    return json.loads(lab.run(ns, "ip", "-j", "link", "show", iface).stdout)[0]["address"]


def deploy(lab, text: str, iface: str, unclaimed: str = "pass") -> None:
    """``mantra deploy`` as a user runs it, inside the dut's namespace."""
    sg = lab.work / f"{iface}.sg"
    sg.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "mantra6g", "deploy", str(sg), "--netns", lab.ns("dut"), "--iface", iface,
         "--port", "1=dut-eth1", "--port", "2=dut-eth2", "--unclaimed", unclaimed],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr


SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 8080)); s.listen(1); s.settimeout(10)
    print("ready", flush=True)
    c, peer = s.accept(); data = c.recv(100); c.sendall(b"echo:" + data); c.close()
""")
CLIENT_CODE = textwrap.dedent("""
    import socket
    c = socket.create_connection((%r, 8080), timeout=5)
    c.sendall(b"hello"); print(c.recv(100).decode(), c.getpeername()[0])
""")


def handshake(lab, listen_on: str) -> str:
    """A TCP server in the backend's namespace and a client connecting to the VIP: what
    the client received and the peer address it saw."""
    server = subprocess.Popen(["ip", "netns", "exec", lab.ns("h2"), sys.executable, "-c", SERVER, listen_on],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        r = lab.run("h1", sys.executable, "-c", CLIENT_CODE % VIP, check=False)
        assert r.returncode == 0, f"the client's connection failed: {r.stderr.strip()}"
        return r.stdout.strip()
    finally:
        server.kill()
        server.wait()


# What the kernel's IP-in-IP endpoint (ipip/tunl0) does on receipt, for kernels built
# without CONFIG_NET_IPIP (ours): strip the outer IPv4 header, hand the rest to the stack.
IPIP_DECAP = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int ipip_decap(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    if ((void *)(ip + 1) > end || eth->h_proto != __constant_htons(ETH_P_IP) || ip->protocol != 4 || ip->ihl != 5)
        return XDP_PASS;
    struct ethhdr copy = *eth;
    if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr)))
        return XDP_DROP;
    data = (void *)(long)ctx->data; end = (void *)(long)ctx->data_end;
    eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_DROP;
    *eth = copy;
    return XDP_PASS;
}
char LICENSE[] SEC("license") = "GPL";
"""


def ipip_endpoint(lab) -> None:
    """The backend's IP-in-IP endpoint: the kernel's if it has one, else IPIP_DECAP."""
    if lab.run("h2", "ip", "link", "add", "ipip0", "type", "ipip", "local", BACKEND, check=False).returncode == 0:
        lab.run("h2", "ip", "link", "set", "ipip0", "up")
        for conf in ("all", "ipip0", "h2-eth0"):
            lab.run("h2", "sysctl", "-q", "-w", f"net.ipv4.conf.{conf}.rp_filter=0")
        return
    from mantra6g.targets.bpf import BpfObject, detach
    from mantra6g.targets.xdp import build

    c = lab.work / "ipip_decap.c"
    c.write_text(IPIP_DECAP)
    obj = BpfObject.load(build(c, lab.work / "ipip_decap.o"))
    with lab.in_ns("h2"):
        index = socket.if_nametoindex("h2-eth0")
        detach(index)  # the pass program; this one passes too
        obj.attach(index)
    lab.keep = obj


def test_a_tcp_client_completes_a_handshake_through_the_dsr_load_balancer(site):
    """DSR: the SYN arrives at the backend inside IP-in-IP; the backend, holding the VIP
    on its loopback, answers the client directly (the kernel forwards it back)."""
    lab = site
    lab.run("h2", "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
    ipip_endpoint(lab)
    deploy(lab, TENANT + f"""graph lb for acme.web {{
    nf cls = classifier() {{ match ipv4.dst == {VIP} }}
    nf lb = load_balancer(vip: {VIP}, source: {GATEWAY_OUT}) {{ backend {BACKEND} }}
    nf rt = router(mac: {lab.mac['dut/dut-eth2']}) {{ route 10.2.0.0/24 via {lab.mac['h2/h2-eth0']} port 2 }}
    cls -> lb -> rt
}}
""", "dut-eth1")
    assert handshake(lab, VIP) == f"echo:hello {VIP}"


def test_a_tcp_client_completes_a_handshake_through_the_dnat_load_balancer(site):
    """DNAT: the SYN reaches the backend's own address; its answer crosses the load
    balancer again, which gives it the VIP as source: the client sees the VIP answer."""
    lab = site
    text = TENANT + f"""graph lb for acme.web {{
    nf cls = classifier() {{ match ipv4.dst == {VIP} or ipv4.src == {BACKEND} }}
    nf lb = load_balancer(vip: {VIP}, mode: dnat) {{ backend {BACKEND} }}
    nf rt = router(mac: {lab.mac['dut/dut-eth1']}) {{
        route 10.2.0.0/24 via {lab.mac['h2/h2-eth0']} port 2
        route 10.1.0.0/24 via {lab.mac['h1/h1-eth0']} port 1
    }}
    cls -> lb -> rt
}}
"""
    deploy(lab, text, "dut-eth1")
    deploy(lab, text, "dut-eth2")
    assert handshake(lab, BACKEND) == f"echo:hello {VIP}"


@pytest.mark.parametrize("unclaimed, reachable", [("pass", True), ("drop", False)])
def test_unclaimed_frames_reach_the_host_stack_unless_told_to_drop(site, unclaimed, reachable):
    """ARP and the host's own traffic are not the slice's: with unclaimed pass (the
    default of mantra deploy) the host still answers its neighbour."""
    lab = site
    deploy(lab, TENANT + """graph only_udp for acme.web {
    nf cls = classifier() { match udp.dport == 5000 }
    nf fw = firewall(default: deny)
    cls -> fw
}
""", "dut-eth1", unclaimed)
    lab.run("h1", "ip", "neigh", "flush", "all")
    r = lab.run("h1", "ping", "-c", "1", "-W", "1", GATEWAY_IN, check=False)
    assert (r.returncode == 0) == reachable, r.stdout


def _pinned(lab, iface: str) -> dict[str, int]:
    pins = Path("/sys/fs/bpf/mantra") / lab.ns("dut") / iface
    out = {}
    for f in sorted(pins.iterdir()):
        info = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "pinned", str(f)], capture_output=True,
                                         text=True, check=True).stdout)
        out[f.name] = info["id"]
    return out


def test_a_failed_deploy_keeps_the_running_program_and_its_pinned_maps(site):
    """Maps are pinned only once the new program runs, and the attach replaces exactly the
    program found: a deploy that fails half way changes nothing."""
    from mantra6g.targets import bpf, xdp

    lab = site
    text = TENANT + f"""graph rt for acme.web {{
    nf cls = classifier() {{ match ipv4.dst in 10.2.0.0/16 }}
    nf rt = router(mac: {lab.mac['dut/dut-eth2']}) {{ route 10.2.0.0/24 via {lab.mac['h2/h2-eth0']} port 2 }}
    cls -> rt
}}
"""
    deploy(lab, text, "dut-eth1")
    with lab.in_ns("dut"):
        ifindex = socket.if_nametoindex("dut-eth1")
        before_id, before_maps = bpf.attached_id(ifindex), _pinned(lab, "dut-eth1")
        (dp,) = compile_specs(frontend.load_sources([SourceFile("rt.sg", text)]))
        _, built = xdp.compile_to(dp.program, lab.work)
        fib = dp.program.tables[0]
        # More routes than the compiled map holds: the map fill fails after the load.
        routes = tuple(dataclasses.replace(fib.entries[0], matches=(Lpm(0x0A020000 + i, 32),)) for i in range(80))
        too_many = dataclasses.replace(fib, entries=routes)
        bad = dataclasses.replace(dp.program, tables=(too_many,))
        with pytest.raises(bpf.BpfError, match="update failed"):
            xdp.deploy(bad, built.obj_file, "dut-eth1", lab.ns("dut"), {1: "dut-eth1", 2: "dut-eth2"})
        assert bpf.attached_id(ifindex) == before_id
        assert _pinned(lab, "dut-eth1") == before_maps
        prog_maps = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id", str(before_id)],
                                              capture_output=True, text=True, check=True).stdout)["map_ids"]
        assert set(before_maps.values()) <= set(prog_maps)  # the pins are the running program's
        # Replacing a program that is no longer the one attached is refused.
        stale = bpf.program_fd(before_id)
        try:
            deploy(lab, text, "dut-eth1")  # another program is attached meanwhile
            with pytest.raises(bpf.BpfError, match="another program was attached meanwhile"):
                bpf.attach_fd(ifindex, stale, replacing=stale)
        finally:
            os.close(stale)


# ---------------------------------------------------------------- a chain over two devices

RECEIVER = textwrap.dedent("""
    import json, select, socket, sys, time
    socks = {}
    for port in map(int, sys.argv[1:]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port)); socks[s] = port
    print("ready", flush=True)
    got = {p: [] for p in socks.values()}
    quiet = time.monotonic() + 3
    while time.monotonic() < quiet:
        for s in select.select(list(socks), [], [], 0.2)[0]:
            got[socks[s]].append(s.recv(2048).decode()); quiet = time.monotonic() + 1
    print(json.dumps(got))
""")


@pytest.fixture()
def two_devices(tmp_path):
    """gnb --veth-- upf (XDP, the SmartNIC) --veth-- edge (XDP, the host) --veth-- srv."""
    from mantra6g.targets.bpf import BpfObject
    from testbed.netns import Lab, pass_program

    with Lab(f"mx2{os.getpid() % 10000}") as lab:
        lab.link("gnb", "gnb-eth0", "upf", "upf-eth1")
        lab.link("upf", "upf-eth2", "edge", "edge-eth1")
        lab.link("edge", "edge-eth2", "srv", "srv-eth0")
        lab.run("srv", "ip", "addr", "add", f"{BACKEND}/24", "dev", "srv-eth0")
        lab.run("srv", "ip", "route", "add", "default", "dev", "srv-eth0")
        with lab.in_ns("srv"):
            keep = BpfObject.load(pass_program(tmp_path))  # NAPI for the redirect into srv-eth0
            keep.attach(socket.if_nametoindex("srv-eth0"))
        lab.mac = {i: _mac(lab, i.partition("-")[0], i) for i in ("gnb-eth0", "upf-eth1", "upf-eth2", "edge-eth1",
                                                                  "edge-eth2", "srv-eth0")}
        lab.work = tmp_path
        try:
            yield lab
        finally:
            keep.close()
            for ns in ("upf", "edge"):
                shutil.rmtree(xdp.PIN_ROOT / lab.ns(ns), ignore_errors=True)


def test_a_chain_split_over_two_devices_carries_real_n3_traffic(two_devices):
    """#18: a 5G N3 flow (G-PDUs with a PDU Session Container, as a gNB sends them, built
    by scapy's GTP-U layers) is decapsulated and routed on one XDP device, firewalled and
    routed on the next, which knows the packets by the chain shim — the decapsulated
    packet no longer matches the classifier (UDP 2152). Judged by the Linux stack: the
    server's UDP sockets receive every datagram the firewall allows (checksums and
    lengths as its kernel checks them), none it denies."""
    from scapy.contrib.gtp import GTP_U_Header, GTPPDUSessionContainer
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    lab = two_devices
    m = lab.mac
    sg = lab.work / "n3.sg"
    sg.write_text(TENANT + f"""graph n3 for acme.web {{
    nf cls = classifier() {{ match udp.dport == 2152 }}
    nf decap = tunnel(protocol: gtpu, mode: decap, teid: 4097, local: 192.0.2.2)
    nf rt1 = router(mac: {m['upf-eth2']}) {{ route 10.2.0.0/24 via {m['edge-eth1']} port 2 }}
    nf fw = firewall(default: allow) {{ deny udp.dport == 445 }}
    nf rt2 = router(mac: {m['edge-eth2']}) {{ route 10.2.0.0/24 via {m['srv-eth0']} port 2 }}
    cls -> decap -> rt1 -> fw -> rt2
    place decap, rt1 on smartnic
    place fw, rt2 on host
}}
""")
    for ns, device in (("upf", "smartnic"), ("edge", "host")):
        r = subprocess.run([sys.executable, "-m", "mantra6g", "deploy", str(sg), "--device", device, "--netns", lab.ns(ns),
                            "--iface", f"{ns}-eth1", "--port", f"1={ns}-eth1", "--port", f"2={ns}-eth2"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    server = subprocess.Popen(["ip", "netns", "exec", lab.ns("srv"), sys.executable, "-c", RECEIVER, "5001", "445"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        gnb = lab.packet_socket("gnb", "gnb-eth0")
        for i in range(40):
            inner = IP(src=CLIENT, dst=BACKEND, ttl=64) / UDP(sport=40000 + i, dport=445 if i % 2 else 5001) / f"pdu {i}"
            frame = (Ether(src=m["gnb-eth0"], dst=m["upf-eth1"]) / IP(src="192.0.2.1", dst="192.0.2.2") /
                     UDP(sport=2152, dport=2152) / GTP_U_Header(teid=4097, E=1, next_ex=0x85) /
                     GTPPDUSessionContainer(type=1, QFI=9) / inner)
            gnb.send(bytes(frame))
        gnb.close()
        out, err = server.communicate(timeout=30)
    finally:
        server.kill()
    got = json.loads(out.strip().splitlines()[-1])
    assert sorted(got["5001"]) == sorted(f"pdu {i}" for i in range(0, 40, 2)), err
    assert got["445"] == []

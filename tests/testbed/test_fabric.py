"""The site's BMv2 switches: the fabric programs synthesised from the forwarding plan are
checked against the interpreter (hop by hop across the core and the racks, everywhere);
the BMv2 nodes themselves run where BMv2 is installed and skip with the reason here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import permutations
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from mantra6g.errors import MantraError
from mantra6g.synth.interp import run
from mantra6g.targets import toolchain
from mantra6g.testbed.fabric import bmv2_command, fabric_program
from mantra6g.testbed.scenario import parse_site
from mantra6g.testbed.site import ENDPOINTS, NodeConfig, RackConfig, Site, SiteConfig
from tests.conftest import ROOT

TWO_RACKS = SiteConfig(
    nodes=(
        NodeConfig("A", "urllc"),
        NodeConfig("B", "embb", rack="r1"),
        NodeConfig("C", "shared", rack="r2"),
        NodeConfig("D", "spare", rack="r1"),
        NodeConfig("E", "spare", rack="r2"),
        NodeConfig("F", "spare"),
    ),
    racks=(RackConfig("r1"), RackConfig("r2", 20)),
)
NO_BMV2 = "simple_switch / p4c-bm2-ss not on PATH (BMv2 is not installable here); set MANTRA_SIMPLE_SWITCH and MANTRA_P4C to run"


def programs(site: Site) -> dict:
    return {rack: fabric_program(f"sw_{rack or 'core'}", site.fabric_stations(rack))
            for rack in [""] + [r.name for r in site.config.racks]}


def walk(site: Site, progs: dict, src: str, frame: bytes) -> tuple[str | None, int]:
    """Send ``frame`` from host ``src`` through the fabric, switch by switch, with the
    interpreter: (the host it reaches or None if a switch dropped it, switches crossed)."""
    rack = site.config.rack_of(src)
    port = site.stations(rack)[src]
    for hops in range(1, 5):
        result = run(progs[rack], frame, port, 0)
        if not result.outputs:
            return None, hops
        ((out, data),) = result.outputs
        assert data == frame  # a switch changes nothing
        _, peer = site.ports(rack)[out - 1]
        if not peer.startswith("^"):
            return peer, hops
        if peer == "^":  # up to the core, in on its port down to this rack
            port = site.port_number("", f"^{rack}")
            rack = ""
        else:  # down to a rack, in on its uplink
            rack = peer[1:]
            port = site.port_number(rack, "^")
    raise AssertionError(f"{src}: the frame loops")


@pytest.mark.parametrize("config", [SiteConfig(), TWO_RACKS], ids=["default", "two-racks"])
def test_every_host_reaches_every_host_through_the_synthesised_fabric(config, tmp_path):
    site = Site(config, tmp_path)
    progs = programs(site)
    hosts = list(ENDPOINTS) + [n.name for n in config.nodes]
    for src, dst in permutations(hosts, 2):
        frame = bytes(Ether(src=site.host_mac(src), dst=site.host_mac(dst)) / IP(dst="10.0.0.100") / UDP(dport=5000) / b"probe")
        reached, hops = walk(site, progs, src, frame)
        assert reached == dst, f"{src} -> {dst}: reached {reached}"
        # one switch within a rack or the core, two between the core and a rack, three between racks
        racks = {config.rack_of(src), config.rack_of(dst)}
        assert hops == (1 if len(racks) == 1 else 3 if "" not in racks else 2)


def test_the_fabric_drops_broadcast_unknown_and_hairpin_frames(tmp_path):
    site = Site(TWO_RACKS, tmp_path)
    progs = programs(site)
    for dst in ("ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "02:00:00:00:00:99"):
        frame = bytes(Ether(src=site.host_mac("gen"), dst=dst) / IP() / UDP())
        assert walk(site, progs, "gen", frame) == (None, 1)
    # a node's own frame sent back to it (one-armed XDP stages send to other nodes only)
    frame = bytes(Ether(src=site.host_mac("A"), dst=site.host_mac("A")) / IP() / UDP())
    assert walk(site, progs, "A", frame) == (None, 1)


def test_linux_bridges_and_bmv2_switches_forward_by_one_plan(tmp_path):
    site = Site(SiteConfig(), tmp_path)
    # the core: gen, rx, A, C, E on ports 1-5 and the rack's uplink on 6; the rack: up on 1
    assert site.ports("") == [("mtb-sgen", "gen"), ("mtb-srx", "rx"), ("mtb-sA", "A"), ("mtb-sC", "C"),
                              ("mtb-sE", "E"), ("mtb-sr1", "^r1")]
    assert site.stations("r1") == {"gen": 1, "rx": 1, "A": 1, "B": 2, "C": 1, "D": 3, "E": 1}
    assert site.fabric_stations("")[site.host_mac("D")] == 6


def test_the_switch_kind_is_checked_in_the_scenario():
    assert parse_site("switch: bmv2\n").switch == "bmv2"
    with pytest.raises(MantraError, match=r"t.yaml:2:1: switch 'ovs'; choose from linuxbridge, bmv2, bmv2_grpc"):
        parse_site("seed: 1\nswitch: ovs\n", "t.yaml")


# ---------------------------------------------------------------- the BMv2 nodes

def test_bmv2_command_lines_follow_simple_switch_usage():
    ports = {2: "mtb-srx", 1: "mtb-sgen"}
    assert bmv2_command(Path("/opt/bm/simple_switch"), ports, 3, 9091, Path("/w/core.json")) == [
        "/opt/bm/simple_switch", "-i", "1@mtb-sgen", "-i", "2@mtb-srx", "--device-id", "3", "--thrift-port", "9091",
        "/w/core.json",
    ]
    # simple_switch_grpc: no JSON (P4Runtime pushes the pipeline); target options after "--"
    assert bmv2_command(Path("simple_switch_grpc"), ports, 0, 9090, None, 50051)[-5:] == [
        "9090", "--no-p4", "--", "--grpc-server-addr", "127.0.0.1:50051",
    ]


@pytest.mark.root
def test_a_bmv2_node_in_mininet_gets_the_plans_port_numbers(tmp_path, monkeypatch):
    """The glue, without BMv2: Mininet builds the switch with the plan's port numbers, and
    its command line names each port device with its number (the binary is a stand-in
    that is never started)."""
    from mininet.net import Mininet

    from mantra6g.testbed.fabric import Bmv2Switch, FabricBuild

    fake = tmp_path / "simple_switch"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MANTRA_SIMPLE_SWITCH", str(fake))
    site = Site(SiteConfig(), tmp_path, prefix="mtbg")
    build = FabricBuild("core", tmp_path / "core.json", tmp_path / "core.p4info.txt", tmp_path / "c.txt", tmp_path / "c.py")
    net = Mininet(topo=None, controller=None, build=False, autoSetMacs=False, waitConnected=False)
    try:
        sw = net.addSwitch(site.switch(""), cls=Bmv2Switch, dpid="1", build=build, device_id=7)
        ports = site.ports("")
        for number, (dev, peer) in reversed(list(enumerate(ports, start=1))):  # any order
            net.addLink(net.addHost(peer.strip("^")), sw, port2=number, intfName1=f"mtbg-h{number}", intfName2=dev)
        net.build()
        cmd = sw.command()
    finally:
        net.stop()
    expected = [a for n, (dev, _) in enumerate(ports, start=1) for a in ("-i", f"{n}@{dev}")]
    assert cmd[0] == str(fake) and cmd[1:1 + len(expected)] == expected
    assert cmd[-1] == str(build.json) and "7" in cmd


def bmv2_missing() -> bool:
    return any(toolchain.find(t) is None for t in ("p4c-bm2-ss", "simple_switch", "simple_switch_CLI"))


@pytest.mark.root
@pytest.mark.skipif(not bmv2_missing(), reason="BMv2 is installed here: the missing-tool path cannot be shown")
def test_a_bmv2_site_without_bmv2_is_refused_before_anything_is_built(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MANTRA_P4C", "MANTRA_SIMPLE_SWITCH")}
    scenario = ROOT / "examples" / "testbed" / "bmv2.yaml"
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    r = subprocess.run([sys.executable, "-m", "mantra6g", "testbed", "run", str(scenario), "--duration", "2",
                        "--out", str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode != 0
    assert "not found" in r.stderr and ("MANTRA_P4C" in r.stderr or "MANTRA_SIMPLE_SWITCH" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    # nothing was built: no namespace appeared (compared with before, so a site another
    # process runs on this machine does not count)
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert not {n for n in after - before if n.startswith("mtbrun-")}


def carry_chain(tmp_path, switch: str) -> None:
    """A BMv2 site: the chain is deployed over it, probes cross it, the monitor reads them."""
    from mantra6g.testbed.chain import EGRESS, INGRESS

    config = SiteConfig(switch=switch, embb_rate_pps=0, urllc_rate_pps=200)
    with Site(config, tmp_path, prefix="mtbp4") as site:
        site.deploy_chain({INGRESS: "A", EGRESS: "D"})
        site.start_traffic(3.0, embb=False)
        time.sleep(4.5)
        site.interval()
        assert len(site.truth) > 300  # ~600 sent
        assert site.read_monitor().delay_count > 300
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mtbp4-" not in left


@pytest.mark.root
@pytest.mark.skipif(bmv2_missing(), reason=NO_BMV2)
def test_the_chain_runs_over_bmv2_switches_with_entries_from_the_cli(tmp_path):
    carry_chain(tmp_path, "bmv2")


@pytest.mark.root
@pytest.mark.skipif(toolchain.find("simple_switch_grpc") is None or toolchain.find("p4c-bm2-ss") is None,
                    reason="simple_switch_grpc / p4c-bm2-ss not found (BMv2 is not installable here)")
def test_the_chain_runs_over_bmv2_switches_with_entries_over_p4runtime(tmp_path):
    carry_chain(tmp_path, "bmv2_grpc")

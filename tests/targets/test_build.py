"""``mantra compile`` and ``mantra run`` as a user runs them."""

from __future__ import annotations

import json
import re

import pytest

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from mantra6g.synth import dpir
from mantra6g.synth.scale import chain_site
from tests.synth.test_cli import mantra

MACS = dict(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb")


def test_compile_bmv2_writes_every_device_program(tmp_path):
    r = mantra("compile", "examples/urllc_factory.sg", "--target", "bmv2", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for device in ("smartnic_factory_edge", "host_factory_edge"):
        for suffix in (".p4", ".entries.json", ".commands.txt", ".p4rt.py", ".dpir.json", ".dpir.txt"):
            assert (tmp_path / f"{device}{suffix}").is_file(), device + suffix
    assert "table motion_control_lb_maglev" in r.stdout and "251 entries" in r.stdout
    # the written DP-IR is the program, and reads back
    p = dpir.Program.from_json((tmp_path / "smartnic_factory_edge.dpir.json").read_text())
    assert {t.name for t in p.tables} == {"motion_control_fw_acl", "motion_control_lb_maglev", "motion_control_lb_backends"}
    assert "V1Switch(" in (tmp_path / "smartnic_factory_edge.p4").read_text()


def test_compile_tofino_reports_stages_and_refuses_what_it_cannot_hold(tmp_path):
    r = mantra("compile", "examples/6g_user_plane.sg", "-t", "tofino", "--device", "smartnic_edge_a", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "of 12 MAU stages" in r.stdout and "Pipeline(" in (tmp_path / "smartnic_edge_a.p4").read_text()
    # a chain of firewall, policer, load balancer, monitor and router needs more than 12
    # (bf-p4c agrees: nf:chain needs 15, docs/targets.md); the refusal names the NFs
    site = tmp_path / "chain.sg"
    site.write_text(chain_site(1))
    r = mantra("compile", str(site), "-t", "tofino", "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not fit in Tofino-1's 12 MAU stages" in r.stderr
    # the refusal names the NF the table comes from, where the user wrote it
    note = re.search(r"= note: 'g1_lb_backends' belongs to the load_balancer 'lb' of graph 'g1' \(.*chain\.sg:(\d+):\d+\)",
                     r.stderr)
    assert note, r.stderr
    assert site.read_text().splitlines()[int(note.group(1)) - 1].strip().startswith("nf lb = load_balancer(")
    # the latency monitor's sink keeps its state in 32-bit words: the host program fits
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "tofino", "--device", "host_factory_edge", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "Register<bit<32>, bit<32>>" in (tmp_path / "host_factory_edge.p4").read_text()


def test_each_device_class_gets_its_own_target(tmp_path):
    """The SmartNIC's program for BMv2 beside the host's as DP-IR, in one compile: a
    class (as ``place`` names it) or a device program picks its target, the more
    specific wins, and a device left without one is refused before anything is written.
    (The factory's SmartNIC chain needs more than Tofino-1's 12 stages; the Tofino
    target is test_compile_tofino_reports_stages_and_refuses_what_it_cannot_hold's.)"""
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "smartnic=bmv2", "-t", "host=dpir", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "V1Switch(" in (tmp_path / "smartnic_factory_edge.p4").read_text()
    assert not (tmp_path / "host_factory_edge.p4").exists() and (tmp_path / "host_factory_edge.dpir.json").is_file()
    out = tmp_path / "b"
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "dpir", "-t", "host_factory_edge=bmv2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "V1Switch(" in (out / "host_factory_edge.p4").read_text()
    assert not (out / "smartnic_factory_edge.p4").exists() and (out / "smartnic_factory_edge.dpir.json").is_file()
    for args, message in [
        (["-t", "switch=tofino", "-t", "bmv2"], "no device 'switch' on this site; it has: host, host_factory_edge, smartnic"),
        (["-t", "bmv2", "-t", "xdp"], "two defaults (bmv2, xdp)"),
        (["-t", "host=bmv2", "-t", "host=xdp", "-t", "bmv2"], "two targets for 'host' (bmv2, xdp)"),
    ]:
        r = mantra("compile", "examples/urllc_factory.sg", *args, "-o", str(tmp_path / "refused"))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "refused").exists()


def test_without_a_target_every_device_gets_its_class_default(tmp_path):
    """``mantra compile examples/*.sg``: a SmartNIC or a host is compiled for XDP (C and a
    BPF object clang built), an unplaced graph and a switch for BMv2."""
    from tests.conftest import EXAMPLES

    for path in EXAMPLES:
        out = tmp_path / path.stem
        r = mantra("compile", str(path), "-o", str(out))
        assert r.returncode == 0, r.stderr
        for dp in ("smartnic", "host"):
            for line in r.stdout.splitlines():
                if line.startswith(f"{dp}_") and f"({dp} site" in line:
                    name = line.split()[0]
                    assert (out / f"{name}.o").is_file() and not (out / f"{name}.p4").exists(), line


def test_compile_errors_are_clear(tmp_path):
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "bmv2", "--device", "nope", "-o", str(tmp_path))
    assert r.returncode == 2 and "no device program 'nope'; this site has: smartnic_factory_edge, host_factory_edge" in r.stderr
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "p4", "-o", str(tmp_path))
    assert r.returncode == 2 and "unknown target 'p4'; choose one of bmv2, tofino, xdp, dpir" in r.stderr
    r = mantra("compile", "examples/broken/typos.sg", "-t", "bmv2", "-o", str(tmp_path))
    assert r.returncode == 2 and "unknown NF kind 'firewal'" in r.stderr


def test_run_pushes_a_pcap_through_the_interpreter(tmp_path):
    packets = [
        Ether(**MACS) / IP(src="198.51.100.7", dst="10.21.9.1") / TCP(sport=443, dport=5555) / (b"x" * 100),
        Ether(**MACS) / IP(src="198.51.100.7", dst="10.20.1.1", ttl=9) / UDP(sport=443) / b"q",
        Ether(**MACS) / IP(src="203.0.113.1", dst="10.20.1.1") / UDP(sport=443) / b"q",  # not the slice's
    ]
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i / 1000
    wrpcap(str(tmp_path / "in.pcap"), packets)
    r = mantra("run", "examples/embb_video.sg", "--pcap", str(tmp_path / "in.pcap"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [p.get("out_port") for p in result["packets"]] == [3, 1, None]
    out = rdpcap(result["output"])
    assert len(out) == 2 and out[1][IP].ttl == 8 and out[0].dst == "02:00:00:00:21:81"


def test_run_needs_one_device_and_a_real_pcap(tmp_path):
    r = mantra("run", "examples/urllc_factory.sg", "--pcap", "x.pcap")
    assert r.returncode == 2 and "choose one with --device" in r.stderr
    r = mantra("run", "examples/embb_video.sg", "--pcap", "examples/embb_video.sg")
    assert r.returncode == 2 and "not a pcap file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.root
def test_compile_xdp_writes_c_object_and_entries_with_verifier_figures(tmp_path):
    r = mantra("compile", "examples/embb_video.sg", "-t", "xdp", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for suffix in (".c", ".o", ".maps.json", ".dpir.json"):
        assert (tmp_path / f"pdp{suffix}").is_file(), suffix
    assert 'SEC("xdp")' in (tmp_path / "pdp.c").read_text()
    entries = json.loads((tmp_path / "pdp.maps.json").read_text())
    assert len(entries["video_downlink_rt_fib"]) == 3
    assert "verifier:" in r.stdout and "instructions processed, stack" in r.stdout


def test_compile_xdp_tables_option_says_which_tables_are_maps(tmp_path):
    """``--tables``: the build lists which tables are compiled into code and which stay
    maps; libbpf, reading the object's ELF, finds exactly those maps in it."""
    from mantra6g.targets.bpf import inspect

    device = "smartnic_factory_edge"
    tables = {"motion_control_fw_acl", "motion_control_lb_maglev", "motion_control_lb_backends"}
    found = {}
    for mode in ("declared", "const", "runtime"):
        out = tmp_path / mode
        r = mantra("compile", "examples/urllc_factory.sg", "-t", "xdp", "--device", device, "--tables", mode,
                   "-o", str(out))
        assert r.returncode == 0, r.stderr
        in_maps = {m.removeprefix("tbl_") for m in inspect(out / f"{device}.o").maps if m.startswith("tbl_")}
        assert set(json.loads((out / f"{device}.maps.json").read_text())) == in_maps
        line = next(ln for ln in r.stdout.splitlines() if "tables in maps" in ln)
        assert set(line.split(": ", 1)[1].replace("none", "").replace("tbl_", "").split(", ")) - {""} == in_maps
        found[mode] = in_maps
    assert found["runtime"] == tables and found["const"] == set()
    assert found["declared"] == tables - {"motion_control_fw_acl"}  # the firewall's rules are const
    r = mantra("compile", "examples/urllc_factory.sg", "-t", "bmv2", "--tables", "const", "-o", str(tmp_path))
    assert r.returncode == 2 and "--tables const is for --target xdp" in r.stderr and "Traceback" not in r.stderr


def test_deploy_errors_are_clear():
    r = mantra("deploy", "examples/embb_video.sg", "--iface", "nope0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert ("no interface 'nope0'" in r.stderr) or ("needs root" in r.stderr)
    r = mantra("deploy", "examples/embb_video.sg", "--iface", "lo", "--port", "x")
    assert r.returncode == 2 and "--port x: write PORT=INTERFACE" in r.stderr
    r = mantra("deploy", "--iface", "lo", "--netns", "mantra-no-such-ns", "--detach")
    assert r.returncode == 2 and "no network namespace 'mantra-no-such-ns'" in r.stderr


def test_an_xdp_refusal_names_the_nf_where_the_user_wrote_it(tmp_path):
    """A firewall rule on IPv6 addresses is code by default; kept in a map (``--tables
    runtime``) its 128-bit key does not fit a BPF map's, and the refusal names the table,
    the field and the reason, and points at the NF's line in the user's file."""
    site = tmp_path / "v6.sg"
    site.write_text("tenant acme id 1 {\n    slice gold {\n        latency <= 1 ms\n    }\n}\n"
                    "graph g for acme.gold {\n"
                    "    nf cls = classifier() {\n        match ipv6.dst in 2001:db8::/32\n    }\n"
                    "    nf fw = firewall(default: allow) {\n        deny ipv6.src == 2001:db8::66\n    }\n"
                    "    cls -> fw\n}\n")
    assert mantra("compile", str(site), "-t", "xdp", "-o", str(tmp_path / "ok")).returncode == 0
    r = mantra("compile", str(site), "-t", "xdp", "--tables", "runtime", "-o", str(tmp_path / "out"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "table 'g_fw_acl' has a key wider than 64 bits (ipv6.src)" in r.stderr
    note = re.search(r"= note: 'g_fw_acl' belongs to the firewall 'fw' of graph 'g' \(.*v6\.sg:(\d+):\d+\)", r.stderr)
    assert note, r.stderr
    assert site.read_text().splitlines()[int(note.group(1)) - 1].strip().startswith("nf fw = firewall(")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

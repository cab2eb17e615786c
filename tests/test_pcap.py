"""mantra6g.pcap against tools we did not write: scapy writes the captures (classic in
microseconds and nanoseconds, pcapng, other link types), and libpcap's ``tcpdump -r``
says whether a capture is truncated and by how much."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap, wrpcapng

from mantra6g.pcap import CaptureError, read_pcap, write_pcap

FRAMES = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst="10.0.0.1") / UDP(dport=53) / (b"x" * i)
          for i in range(5)]
for _i, _p in enumerate(FRAMES):
    _p.time = 1_700_000_000 + _i / 1000


@pytest.mark.parametrize("writer", ["pcap", "pcap-ns", "pcapng"])
def test_records_are_what_scapy_reads(tmp_path, writer):
    path = tmp_path / "c"
    {"pcap": lambda: wrpcap(str(path), FRAMES), "pcap-ns": lambda: wrpcap(str(path), FRAMES, nano=True),
     "pcapng": lambda: wrpcapng(str(path), FRAMES)}[writer]()
    ours = list(read_pcap(path))
    theirs = rdpcap(str(path))
    assert [r.number for r in ours] == [1, 2, 3, 4, 5]
    assert [r.data for r in ours] == [bytes(p) for p in theirs]
    assert [abs(r.time_ns - int(p.time * 10**9)) < 1000 for r, p in zip(ours, theirs)] == [True] * 5


def test_what_we_write_is_what_scapy_and_tcpdump_read(tmp_path):
    path = tmp_path / "w.pcap"
    write_pcap(path, [(1_700_000_000_123_456_000, bytes(FRAMES[0])), (1_700_000_001_000_000_001, bytes(FRAMES[1]))])
    back = rdpcap(str(path))
    assert [bytes(p) for p in back] == [bytes(FRAMES[0]), bytes(FRAMES[1])]
    assert int(back[1].time * 10**9) // 1000 == 1_700_000_001_000_000  # nanosecond file: the odd ns kept
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 2 and "EN10MB" in r.stderr


@pytest.mark.parametrize("linktype, name", [(101, "raw IP"), (228, "raw IPv4"), (113, "Linux cooked capture"), (276, "Linux cooked capture v2")])
def test_a_capture_that_is_not_ethernet_is_refused_by_its_link_type(tmp_path, linktype, name):
    path = tmp_path / "x.pcap"
    wrpcap(str(path), [IP(dst="10.0.0.1") / UDP()], linktype=linktype)
    with pytest.raises(CaptureError, match=f"x.pcap: link type {linktype} \\({name}\\) is not Ethernet"):
        read_pcap(path)  # refused on opening, before any packet


def test_a_pcapng_interface_that_is_not_ethernet_is_refused(tmp_path):
    path = tmp_path / "x.pcapng"
    wrpcapng(str(path), [IP(dst="10.0.0.1") / UDP()])  # scapy picks the link type of an IP packet
    with pytest.raises(CaptureError, match="link type [0-9]+ \\(raw IP(v4)?\\) \\(interface 0\\) is not Ethernet"):
        list(read_pcap(path))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [1, 10, 40, 50])
def test_a_truncated_capture_names_the_record_libpcap_stops_at(tmp_path, fmt, cut):
    whole = tmp_path / "whole"
    (wrpcap if fmt == "pcap" else wrpcapng)(str(whole), FRAMES)
    data = whole.read_bytes()
    path = tmp_path / "cut"
    path.write_bytes(data[:-cut])
    with pytest.raises(CaptureError, match="cut short") as exc:
        list(read_pcap(path))
    assert "record 5 " in str(exc.value)  # every cut here falls in the last of the five
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, timeout=30)
        assert "truncated" in r.stderr and len(r.stdout.splitlines()) == 4  # libpcap: cut short after 4 whole records


@pytest.mark.parametrize("data, message", [
    (b"", "only 0 bytes long"),
    (b"tenant acme id 1 {\n  slice s { priority 1 }\n}\n", "starts with bytes 74 65 6e 61"),
    (b"\xd4\xc3\xb2\xa1" + bytes(16) + b"\x01\x00\x00\x00" + bytes(8) + b"\xff\xff\xff\xff" + bytes(4), "record 1 claims 4294967295 bytes"),
])
def test_a_file_that_is_not_a_capture_is_named(tmp_path, data, message):
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    with pytest.raises(CaptureError, match=message):
        list(read_pcap(path))

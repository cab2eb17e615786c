"""``mantra deploy --target bmv2 --p4runtime``: a live route change on a running
simple_switch_grpc, seen in its traffic, with the pipeline kept.

Oracle: the reference model of tests/oracle (the RFCs with scapy) says where each frame
must go under the old and the new routes; BMv2 (not Mantra) forwards them. The switch,
its veth ports, the deploys and the traffic all run inside a network namespace the test
creates (and removes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.targets import toolchain
from tests.oracle.chains import TENANT
from tests.oracle.model import ChainModel

NO_GRPC = next((f"{t} not found (p4c and BMv2 are not installable here); set MANTRA_P4C and MANTRA_SIMPLE_SWITCH"
                for t in ("p4c-bm2-ss", "simple_switch_grpc") if toolchain.find(t) is None), None)
ROOT = Path(__file__).resolve().parents[2]


def site(south_port: int) -> str:
    return TENANT + f"""graph g for acme.gold {{
    nf cls = classifier() {{
        match ipv4.dst in 10.0.0.0/8
    }}
    nf rt = router(mac: 02:00:00:00:00:fe) {{
        route 10.1.0.0/16 via 02:00:00:00:00:aa port 1
        route 10.2.0.0/16 via 02:00:00:00:00:bb port {south_port}
    }}
    cls -> rt
}}
"""


def frames() -> list[bytes]:
    out = []
    for i in range(40):
        dst = f"10.{1 + i % 2}.0.{1 + i}"
        out.append(bytes(Ether(src="02:00:00:00:00:11", dst="02:00:00:00:00:fe") / IP(src="192.0.2.9", dst=dst, ttl=64)
                         / UDP(sport=1000 + i, dport=5000) / (b"x" * 18)))
    return out


def expected(text: str, batch: list[bytes]) -> dict[int, list[bytes]]:
    (spec,) = frontend.load_sources([SourceFile("site.sg", text)])
    model = ChainModel(spec.graphs[0])
    out: dict[int, list[bytes]] = {}
    for i, data in enumerate(batch):
        for port, frame in model.run(data, 0, 1_000_000 + i)[0]:
            out.setdefault(port, []).append(frame)
    return out


SEND = """
import json, sys, time
from scapy.all import AsyncSniffer, sendp, conf
conf.verb = 0
frames = [bytes.fromhex(h) for h in json.loads(sys.argv[1])]
sniffers = {p: AsyncSniffer(iface=f"h{p}", store=True) for p in (1, 2, 3)}
for s in sniffers.values():
    s.start()
time.sleep(0.5)
for f in frames:
    sendp(f, iface="h0")
    time.sleep(0.005)
time.sleep(1.0)
print(json.dumps({p: [bytes(x).hex() for x in s.stop()] for p, s in sniffers.items()}))
"""


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, **kw)


def send(ns: str, batch: list[bytes]) -> dict[int, list[bytes]]:
    r = in_ns(ns, sys.executable, "-c", SEND, json.dumps([b.hex() for b in batch]), timeout=120)
    assert r.returncode == 0, r.stderr
    return {int(p): [bytes.fromhex(h) for h in hs] for p, hs in json.loads(r.stdout).items()}


def deploy(ns: str, text: str, tmp_path: Path, address: str) -> str:
    spec = tmp_path / "site.sg"
    spec.write_text(text)
    for _ in range(100):  # until the switch's gRPC server answers
        r = in_ns(ns, sys.executable, "-m", "mantra6g", "deploy", str(spec), "--target", "bmv2", "--p4runtime", address,
                  "--out", str(tmp_path / "deploy"), cwd=ROOT, timeout=120)
        if r.returncode == 0 or "no answer" not in r.stderr and "UNAVAILABLE" not in r.stderr:
            break
        time.sleep(0.2)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r.stdout


@pytest.mark.root
@pytest.mark.skipif(NO_GRPC is not None, reason=NO_GRPC or "")
def test_a_live_route_change_is_seen_in_traffic_and_keeps_the_pipeline(tmp_path):
    ns = f"mp4rt{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    switch = None
    try:
        for cmd in (["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ["ip", "link", "set", "lo", "up"],
                    *[c for p in range(4) for c in (["ip", "link", "add", f"sw{p}", "type", "veth", "peer", "name", f"h{p}"],
                                                     ["ip", "link", "set", f"sw{p}", "up"], ["ip", "link", "set", f"h{p}", "up"])]):
            assert in_ns(ns, *cmd).returncode == 0, cmd
        grpc = 50051
        switch = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(toolchain.require("simple_switch_grpc")), "--no-p4", "--device-id", "1",
             *[a for p in range(4) for a in ("-i", f"{p}@sw{p}")], "--", "--grpc-server-addr", f"127.0.0.1:{grpc}"],
            cwd=tmp_path, stdout=open(tmp_path / "switch.log", "w"), stderr=subprocess.STDOUT)
        address = f"127.0.0.1:{grpc}"
        batch = frames()
        first = deploy(ns, site(2), tmp_path, address)
        assert "pipeline loaded" in first and "2 inserted" in first, first
        got_before = send(ns, batch)
        second = deploy(ns, site(3), tmp_path, address)  # 10.2/16: port 2 -> port 3
        assert "pipeline kept" in second and "0 inserted, 1 modified, 0 deleted" in second, second
        got_after = send(ns, batch)
        # bad input: another device id is refused with the switch's reason, no traceback
        r = in_ns(ns, sys.executable, "-m", "mantra6g", "deploy", str(tmp_path / "site.sg"), "--target", "bmv2",
                  "--p4runtime", address, "--device-id", "7", "--out", str(tmp_path / "deploy"), cwd=ROOT, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "P4Runtime at 127.0.0.1" in r.stderr, r.stderr
    finally:
        if switch is not None:
            switch.terminate()
            switch.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns])
    want_before, want_after = expected(site(2), batch), expected(site(3), batch)
    assert set(want_before) == {1, 2} and set(want_after) == {1, 3}
    for port in (1, 2, 3):
        assert got_before.get(port, []) == want_before.get(port, []), f"port {port} before the update"
        assert got_after.get(port, []) == want_after.get(port, []), f"port {port} after the update"

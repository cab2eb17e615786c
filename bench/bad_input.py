"""Bad input, tried as a careless user would: how many attempts ``mantra`` handles well.

    .venv/bin/python bench/bad_input.py [-v] [--only NAME]

Each attempt is a malformed spec, a broken capture or a CLI misuse written from the
README and docs/language.md (not from the tests), run as a real ``mantra`` process in a
fresh temporary directory. It is *handled well* when, all at once:

* the exit code is the one a user expects (2 for their mistake, 0 when the input is
  fine), never 3 (a bug) or a signal;
* no traceback and no more than 20 KB of output;
* every file the attempt started with is byte-for-byte unchanged;
* the message contains what the attempt expects (the position, the words of a hint)
  and none of what it must not (a misleading hint).

Prints one line per attempt that is not handled well (all with ``-v``) and the figure
``handled well: N of M``. A benchmark prints figures; it never passes or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MAX_OUTPUT = 20_000

VIDEO = """\
tenant streamco id 2 {
    slice video {
        latency   <= 20 ms
        bandwidth >= 2 Gbps
    }
}

graph video_downlink for streamco.video {
    nf cls = classifier() {
        match ipv4.src in 198.51.100.0/24 and (tcp.sport == 443 or udp.sport == 443)
    }
    nf rt = router(mac: 02:00:00:00:02:fe) {
        route 10.20.0.0/16 via 02:00:00:00:20:01 port 1
    }
    cls -> rt
    place rt on pdp
}
"""

TENANT = "tenant acme id 1 {\n    slice gold {\n        latency <= 1 ms\n    }\n}\n"


def graph(body: str) -> str:
    """A file with the tenant above and one graph with ``body`` (already indented)."""
    return TENANT + "\ngraph g for acme.gold {\n" + body + "}\n"


CLS = "    nf cls = classifier() {\n        match udp.dport == 5000\n    }\n"


# ---------------------------------------------------------------- captures


def pcap(records: list[bytes], linktype: int = 1, cut: int = 0) -> bytes:
    """A classic little-endian pcap; ``cut`` bytes are removed from its end."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, data in enumerate(records):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(data), len(data)) + data
    return out[: len(out) - cut] if cut else out


def eth_udp(sport: int = 443, dst: bytes = bytes([10, 20, 1, 1])) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + 4, 1, 0, 64, 17, 0, bytes([198, 51, 100, 7]), dst)
    udp = struct.pack("!HHHH", sport, 5000, 12, 0) + b"abcd"
    return bytes.fromhex("0200000000bb0200000000aa0800") + ip + udp


def raw_ip() -> bytes:
    return eth_udp()[14:]


GOOD_PCAP = pcap([eth_udp(), eth_udp(sport=80)])


@dataclass
class Attempt:
    name: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    exit: tuple[int, ...] = (2,)
    want: tuple[str, ...] = ()  # substrings of stdout + stderr
    avoid: tuple[str, ...] = ()
    links: dict[str, str] = field(default_factory=dict)  # name -> target (symlink)
    hardlinks: dict[str, str] = field(default_factory=dict)


def _deep(n: int, open_: str, inner: str, close: str) -> str:
    return open_ * n + inner + close * n


ATTEMPTS: list[Attempt] = [
    # ---- statements written from memory
    Attempt("tenant without a name", ["check", "t.sg"], {"t.sg": "tenant {\n"},
            want=("t.sg:1:8",), avoid=("nf declaration",)),
    Attempt("tenant id inside the block", ["check", "t.sg"], {"t.sg": "tenant acme { id 1 }\n"},
            want=("t.sg:1:13", "id"), avoid=("nf declaration",)),
    Attempt("slice outside a tenant", ["check", "t.sg"], {"t.sg": "slice gold {\n    latency <= 1 ms\n}\n"},
            want=("t.sg:1:1",)),
    Attempt("graph without for", ["check", "t.sg"], {"t.sg": TENANT + "graph g {\n" + CLS + "}\n"},
            want=("t.sg:6:9", "'for'")),
    Attempt("nf without '='", ["check", "t.sg"], {"t.sg": graph("    nf cls classifier() {\n        match udp.dport == 1\n    }\n")},
            want=("t.sg:8:12", "'='")),
    Attempt("nf kind without parentheses", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall {\n        allow udp.dport == 1\n    }\n    cls -> fw\n")},
            want=("t.sg:11:22", "parentheses")),
    Attempt("semicolons", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall();\n    cls -> fw;\n")},
            want=("t.sg:11:23", "remove the ';'")),
    Attempt("C-style boolean operators", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport == 1 && ipv4.ttl == 3\n    }\n")},
            want=("t.sg:9:30", "'and'")),
    Attempt("single-quoted string", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport == 'dns'\n    }\n")},
            want=("t.sg:9:28", "double quotes")),
    Attempt("unterminated double-quoted string", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall(default: \"deny)\n    cls -> fw\n")},
            want=("t.sg:11:",)),
    Attempt("closing brace missing at the end", ["check", "t.sg"], {"t.sg": graph(CLS)[:-2]},
            want=("never closed",)),
    Attempt("one closing brace too many", ["check", "t.sg"], {"t.sg": graph(CLS) + "}\n"},
            want=("t.sg:12:1",)),
    # ---- SLA terms
    Attempt("latency with >=", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        latency >= 10 ms\n    }\n}\n"},
            want=("t.sg:3:9", "latency <= 10 ms")),
    Attempt("bandwidth with <=", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        bandwidth <= 5 Gbps\n    }\n}\n"},
            want=("t.sg:3:9", "bandwidth >= 5 Gbps")),
    Attempt("jitter with ==", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        latency <= 5 ms\n        jitter == 200 us\n    }\n}\n"},
            want=("t.sg:4:9", "jitter <= 200 us")),
    Attempt("priority with a comparator", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        priority >= 3\n    }\n}\n"},
            want=("t.sg:3:9", "priority 3")),
    Attempt("latency without a unit", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        latency <= 10\n    }\n}\n"},
            want=("t.sg:3:20", "unit")),
    Attempt("unit typo", ["check", "t.sg"], {"t.sg": "tenant a id 1 {\n    slice s {\n        latency <= 10 msec\n    }\n}\n"},
            want=("t.sg:3:23", "not a unit")),
    # ---- addresses
    Attempt("MAC with five bytes", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf rt = router(mac: 02:00:00:00:01) {\n        route 10.0.0.0/8 via 02:00:00:00:00:02 port 1\n    }\n    cls -> rt\n")},
            want=("t.sg:11:25", "not a MAC address")),
    Attempt("MAC with a non-hex digit", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf rt = router(mac: 02:00:00:00:00:0g) {\n        route 10.0.0.0/8 via 02:00:00:00:00:02 port 1\n    }\n    cls -> rt\n")},
            want=("t.sg:11:25", "not a MAC address")),
    Attempt("MAC with dashes", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf rt = router(mac: 02-00-00-00-00-01) {\n        route 10.0.0.0/8 via 02:00:00:00:00:02 port 1\n    }\n    cls -> rt\n")},
            want=("t.sg:11:25", "not a MAC address")),
    Attempt("MAC with one-digit bytes in a match", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match eth.src == 2:0:0:0:0:1\n    }\n")},
            want=("t.sg:9:26", "not a MAC address")),
    Attempt("IPv4 octet 300", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match ipv4.dst == 10.0.0.300\n    }\n")},
            want=("t.sg:9:27", "0 to 255")),
    # ---- positions
    Attempt("unclosed '(' in nf parameters", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall(default: deny\n    nf rt = router(mac: 02:00:00:00:00:01) {\n        route 10.0.0.0/8 via 02:00:00:00:00:02 port 1\n    }\n    cls -> fw -> rt\n")},
            want=("t.sg:11:21", "never closed", "t.sg:12:")),
    Attempt("unclosed '[' in a hash list", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf lb = load_balancer(vip: 10.0.0.1, hash: [ipv4.src, udp.sport) {\n        backend 10.0.0.2\n    }\n    cls -> lb\n")},
            want=("t.sg:11:48", "never closed")),
    Attempt("unclosed '[' in a branch", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall()\n    cls -> [udp.dport == 53 fw\n    place fw on host\n")},
            want=("t.sg:12:12", "never closed")),
    Attempt("unclosed '(' in a match", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match (udp.dport == 1 or udp.dport == 2\n    }\n")},
            want=("t.sg:9:15", "never closed")),
    Attempt("later and-test of a firewall rule uses '!='", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall() {\n        allow ipv4.src in 10.0.0.0/8 and udp.dport != 53\n    }\n    cls -> fw\n")},
            want=("t.sg:12:42",)),
    Attempt("later and-test of a firewall rule uses 'not'", ["check", "t.sg"], {"t.sg": graph(CLS + "    nf fw = firewall() {\n        deny udp.dport == 1 and ipv4.ttl == 3 and not ipv4.proto == udp\n    }\n    cls -> fw\n")},
            want=("t.sg:12:51",)),
    Attempt("value error in the third and-test", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport == 1 and ipv4.ttl == 3 and udp.sport == 70000\n    }\n")},
            want=("t.sg:9:65",)),
    # ---- encodings
    Attempt("UTF-8 byte-order mark", ["check", "t.sg"], {"t.sg": b"\xef\xbb\xbf" + graph(CLS).encode()}, exit=(0,)),
    Attempt("CRLF line ends", ["check", "t.sg"], {"t.sg": graph(CLS).replace("\n", "\r\n").encode()}, exit=(0,)),
    Attempt("Latin-1 byte in a comment", ["check", "t.sg"], {"t.sg": graph(CLS).replace("    }\n", "    }  # caf\xe9\n", 1).encode("latin-1")},
            want=("t.sg:4:13", "UTF-8")),
    Attempt("UTF-16 file from a Windows editor", ["check", "t.sg"], {"t.sg": graph(CLS).encode("utf-16")},
            want=("t.sg:1:1", "UTF-16")),
    Attempt("NUL byte in a spec", ["check", "t.sg"], {"t.sg": graph(CLS).replace("5000", "50\x0000").encode()},
            want=("t.sg:9:30",)),
    Attempt("a pcap given to check", ["check", "in.pcap"], {"in.pcap": GOOD_PCAP}, want=("in.pcap:1:",)),
    Attempt("empty file", ["check", "t.sg"], {"t.sg": ""}, exit=(0,)),
    # ---- sizes
    Attempt("1000 nested parentheses", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match " + _deep(1000, "(", "udp.dport == 1", ")") + "\n    }\n")},
            want=("t.sg:9:", "nest")),
    Attempt("1000 nots", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match " + "not " * 1000 + "udp.dport == 1\n    }\n")},
            want=("t.sg:9:", "nest")),
    Attempt("1000 nested lists", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport in " + _deep(1000, "[", "1", "]") + "\n    }\n")},
            want=("t.sg:9:", "nest")),
    Attempt("64 nested parentheses compile", ["compile", "t.sg", "-t", "bmv2", "-o", "out"], {"t.sg": graph("    nf cls = classifier() {\n        match " + _deep(64, "(", "udp.dport == 1", ")") + "\n    }\n    nf fw = firewall()\n    cls -> fw\n    place fw on host\n")},
            exit=(0,)),
    Attempt("5000 ors wrapped compile", ["compile", "t.sg", "-t", "bmv2", "-o", "out"], {"t.sg": graph("    nf cls = classifier() {\n        match (" + " or\n            ".join(f"udp.dport == {i}" for i in range(1, 5001)) + ")\n    }\n    nf fw = firewall()\n    cls -> fw\n    place fw on host\n")},
            exit=(0,)),
    Attempt("5000 ors on one line", ["compile", "t.sg", "-t", "dpir", "-o", "out"], {"t.sg": graph("    nf cls = classifier() {\n        match " + " or ".join(f"udp.dport == {i}" for i in range(1, 5001)) + "\n    }\n    nf fw = firewall()\n    cls -> fw\n    place fw on host\n")},
            want=("t.sg:9:10001", "wrap")),
    Attempt("error at the end of a 2 MB line", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport in [" + ", ".join(["1"] * 400_000) + ", ]]\n    }\n")},
            want=("t.sg:9:",)),
    Attempt("a 2 MB line", ["check", "t.sg"], {"t.sg": graph("    nf cls = classifier() {\n        match udp.dport == 1" + " " * 2_000_000 + "\n    }\n")},
            want=("t.sg:9:", "long")),
    # ---- files and directories
    Attempt("missing spec", ["check", "nope.sg"], want=("nope.sg",)),
    Attempt("directory as spec", ["check", "."], want=("directory",)),
    Attempt("run with -o = the input pcap", ["run", "v.sg", "--pcap", "in.pcap", "-o", "in.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            want=("in.pcap",)),
    Attempt("run with -o = the input through ./x/..", ["run", "v.sg", "--pcap", "in.pcap", "-o", "sub/../in.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP, "sub/keep": ""},
            want=("in.pcap",)),
    Attempt("run with -o = a symlink to the input", ["run", "v.sg", "--pcap", "in.pcap", "-o", "link.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            links={"link.pcap": "in.pcap"}, want=("link.pcap",)),
    Attempt("run with -o = a hard link to the input", ["run", "v.sg", "--pcap", "in.pcap", "-o", "hard.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            hardlinks={"hard.pcap": "in.pcap"}, want=("hard.pcap",)),
    Attempt("run with -o = the spec", ["run", "v.sg", "--pcap", "in.pcap", "-o", "v.sg"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            want=("v.sg",)),
    Attempt("run into a missing directory", ["run", "v.sg", "--pcap", "in.pcap", "-o", "no/such/dir/out.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            want=("no/such/dir",)),
    Attempt("run into /proc", ["run", "v.sg", "--pcap", "in.pcap", "-o", "/proc/out.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            want=("/proc/out.pcap",)),
    Attempt("run into a directory", ["run", "v.sg", "--pcap", "in.pcap", "-o", "sub"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP, "sub/keep": ""},
            want=("sub", "directory")),
    Attempt("run output under a file", ["run", "v.sg", "--pcap", "in.pcap", "-o", "v.sg/out.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            want=("v.sg",)),
    Attempt("run a good pcap", ["run", "v.sg", "--pcap", "in.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP},
            exit=(0,), want=("wrote out.pcap",)),
    Attempt("compile -o the spec file", ["compile", "v.sg", "-t", "bmv2", "-o", "v.sg"], {"v.sg": VIDEO}, want=("v.sg",)),
    Attempt("compile -o an existing file", ["compile", "v.sg", "-t", "bmv2", "-o", "notes.txt"], {"v.sg": VIDEO, "notes.txt": "mine\n"},
            want=("notes.txt",)),
    Attempt("compile over a spec named like an output", ["compile", "pdp.dpir.txt", "-t", "dpir", "-o", "."], {"pdp.dpir.txt": VIDEO},
            want=("pdp.dpir.txt",)),
    Attempt("compile into /proc", ["compile", "v.sg", "-t", "bmv2", "-o", "/proc/mantra"], {"v.sg": VIDEO}, want=("/proc/mantra",)),
    Attempt("verify -o the spec file", ["verify", "v.sg", "-t", "bmv2", "-o", "v.sg"], {"v.sg": VIDEO}, want=("v.sg",)),
    Attempt("verify into /proc", ["verify", "v.sg", "-t", "bmv2", "-o", "/proc/mantra"], {"v.sg": VIDEO}, want=("/proc/mantra",)),
    Attempt("simulate --out the scenario", ["simulate", "s.yaml", "--out", "s.yaml", "--steps", "40", "--seeds", "1", "--policy", "static"],
            {"s.yaml": "steps: 40\n"}, want=("s.yaml",)),
    Attempt("simulate --markdown the scenario", ["simulate", "s.yaml", "--markdown", "s.yaml", "--out", "o", "--steps", "40", "--seeds", "1", "--policy", "static"],
            {"s.yaml": "steps: 40\n"}, want=("s.yaml",)),
    Attempt("simulate a missing scenario", ["simulate", "nope.yaml"], want=("nope.yaml",)),
    Attempt("simulate a binary scenario", ["simulate", "in.pcap"], {"in.pcap": GOOD_PCAP}, want=("in.pcap",)),
    Attempt("export into the spec's own folder", ["export", "sub/v.sg", "--to", "iml", "-o", "sub"], {"sub/v.sg": VIDEO},
            want=("sub/v.sg",)),
    Attempt("export into the current directory", ["export", "v.sg", "--to", "bpfman", "-o", "."], {"v.sg": VIDEO, "notes.txt": "mine\n"},
            want=("--out .",)),
    Attempt("export over a folder of the user's", ["export", "v.sg", "--to", "oakestra", "-o", "mine"], {"v.sg": VIDEO, "mine/notes.txt": "mine\n"},
            want=("notes.txt",)),
    Attempt("export -o the spec", ["export", "v.sg", "--to", "iml", "-o", "v.sg"], {"v.sg": VIDEO}, want=("v.sg",)),
    Attempt("testbed --out the scenario", ["testbed", "run", "s.yaml", "--out", "s.yaml"], {"s.yaml": "seed: 1\n"}, want=("s.yaml",)),
    Attempt("testbed a missing scenario", ["testbed", "run", "nope.yaml"], want=("nope.yaml",)),
    # ---- captures
    Attempt("raw IP capture (DLT 101)", ["run", "v.sg", "--pcap", "raw.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "raw.pcap": pcap([raw_ip()], 101)},
            want=("raw.pcap", "101")),
    Attempt("raw IP capture (DLT 228)", ["run", "v.sg", "--pcap", "raw.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "raw.pcap": pcap([raw_ip()], 228)},
            want=("raw.pcap", "228")),
    Attempt("Linux cooked capture (tcpdump -i any)", ["run", "v.sg", "--pcap", "sll.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "sll.pcap": pcap([bytes(16) + raw_ip()], 113)},
            want=("sll.pcap", "113")),
    Attempt("truncated last record", ["run", "v.sg", "--pcap", "cut.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "cut.pcap": pcap([eth_udp(), eth_udp()], cut=10)},
            want=("cut.pcap", "record 2")),
    Attempt("truncated record header", ["run", "v.sg", "--pcap", "cut.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "cut.pcap": pcap([eth_udp()]) + b"\x01\x02\x03"},
            want=("cut.pcap", "record 2")),
    Attempt("empty capture file", ["run", "v.sg", "--pcap", "e.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "e.pcap": b""}, want=("e.pcap",)),
    Attempt("capture with no packets", ["run", "v.sg", "--pcap", "z.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "z.pcap": pcap([])}, exit=(0,)),
    Attempt("one-byte packet", ["run", "v.sg", "--pcap", "tiny.pcap", "-o", "out.pcap"], {"v.sg": VIDEO, "tiny.pcap": pcap([b"\x00"])}, exit=(0,)),
    Attempt("missing capture", ["run", "v.sg", "--pcap", "nope.pcap"], {"v.sg": VIDEO}, want=("nope.pcap",)),
    Attempt("spec given as the capture", ["run", "v.sg", "--pcap", "v.sg"], {"v.sg": VIDEO}, want=("v.sg", "pcap")),
    # ---- flags
    Attempt("no command", [], want=("usage",)),
    Attempt("compile without a target", ["compile", "v.sg"], {"v.sg": VIDEO}, want=("--target",)),
    Attempt("run with a negative port", ["run", "v.sg", "--pcap", "in.pcap", "--port", "-1"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP}, want=("--port",)),
    Attempt("run with port 600", ["run", "v.sg", "--pcap", "in.pcap", "--port", "600"], {"v.sg": VIDEO, "in.pcap": GOOD_PCAP}, want=("--port",)),
    Attempt("simulate --seeds 0", ["simulate", "--seeds", "0"], want=("--seeds",)),
    Attempt("simulate --policy typo", ["simulate", "--policy", "reactiv"], want=("reactiv",)),
    Attempt("verify with an unknown device program name", ["compile", "v.sg", "-t", "dpir", "--device", "nic", "-o", "out"], {"v.sg": VIDEO}, want=("nic",)),
]


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run(a: Attempt, exe: list[str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="mantra-bad-") as tmp:
        root = Path(tmp)
        for name, content in a.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        for name, target in a.links.items():
            (root / name).symlink_to(target)
        for name, target in a.hardlinks.items():
            os.link(root / target, root / name)
        before = _digest(root)
        r = subprocess.run(exe + a.argv, cwd=root, capture_output=True, timeout=300)
        after = _digest(root)
    text = (r.stdout + r.stderr).decode("utf-8", "replace")
    problems = []
    if r.returncode not in a.exit:
        problems.append(f"exit {r.returncode} (want {'/'.join(map(str, a.exit))})")
    if "Traceback" in text:
        problems.append("traceback")
    if len(text) > MAX_OUTPUT:
        problems.append(f"{len(text)} bytes of output")
    changed = [n for n in before if after.get(n) != before[n]]
    if changed:
        problems.append(f"changed {', '.join(changed)}")
    problems += [f"no {w!r}" for w in a.want if w not in text]
    problems += [f"says {w!r}" for w in a.avoid if w in text]
    first = next((ln for ln in text.splitlines() if "error" in ln), text[:200].replace("\n", " | "))
    return not problems, "; ".join(problems) + ("  — " + first[:160] if first else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", action="store_true", help="show every attempt")
    ap.add_argument("--only", help="only attempts whose name contains this")
    ap.add_argument("--skip", action="append", default=[], help="leave out attempts whose name contains this")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "mantra6g"]
    attempts = [a for a in ATTEMPTS if (not args.only or args.only in a.name) and not any(s in a.name for s in args.skip)]
    good = 0
    for a in attempts:
        ok, why = run(a, exe)
        good += ok
        if args.v or not ok:
            print(f"{'ok  ' if ok else 'BAD '} {a.name}: {why if not ok else ''}".rstrip())
    print(f"handled well: {good} of {len(attempts)}")


if __name__ == "__main__":
    main()

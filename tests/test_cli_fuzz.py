"""The CLI fuzzed (issue 17): random argument vectors over random files — specs mutated
from the examples, captures cut, corrupted or of other link types, scenarios — run in
this process. Whatever happens:

* the exit code is 0, 1 or 2 (3 is the CLI's "this is a bug" exit);
* no traceback is printed;
* no input changed, no file deleted: a file may be rewritten only when the command
  names it (or a directory holding it) as an output and does not name it, under any
  name (symlink, hard link, ``./``, ``dir/..``), as an input.

Seeded: example ``n`` is drawn from ``random.Random(n)``, the same on every run; a
failure names its seed, and ``fuzz_case(n)`` rebuilds it. The commands that would run
for minutes or touch the host (a full ``simulate``, the Mininet ``testbed``, attaching
XDP with ``deploy``) only get argument vectors they must refuse before starting;
``--target xdp`` (clang, seconds per program) is left out and ``verify`` proves only
its quick properties.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import tempfile
from pathlib import Path

from tests.conftest import ROOT, run_cli

EXAMPLES = 300  # about 10 s here; the distribution of outcomes is printed with -s
SPECS = {p.name: p.read_text() for p in sorted((ROOT / "examples").glob("*.sg"))}
SMALL = "embb_video.sg"  # the spec `verify` gets (one tenant, one device: quick proofs)
JUNK = ["(", ")", "[", "]", "{", "}", "not ", " and ", " or ", ":", ",", "->", "==", "..", "/", "\n", "\t", "#",
        "02:00:00:00:01", "10.0.0", "0x", "99999999999999999999", "ms", "Gbps", "%", "\"", "'", ";", "&&",
        "\ufeff", "é", "\x00", "tenant", "nf", "graph", "slice", "place", "id", "for", "on", "site", "in"]
OUTPUT_FLAGS = {"-o", "--out", "--markdown"}
FRAME = bytes.fromhex("0200000000bb0200000000aa0800" "450000200001000040110000c6336407" "0a140101" "01bb1388000c0000" "61626364")
SCENARIOS = [b"", b"steps: 40\n", b"steps: [\n", b"nodes: 7\n", b"\xff\xfe\x00s", b"seed: 1\ntypo_key: 3\n"]


def _pcap(records: list[bytes], linktype: int = 1, nano: bool = False) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, data in enumerate(records):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(data), len(data)) + data
    return out


def spec_text(rng: random.Random) -> bytes:
    """An example spec, often as written, else with a few careless edits."""
    text = rng.choice(sorted(SPECS.values()))
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 4])):
        at = rng.randrange(len(text) + 1)
        kind = rng.choice(["delete", "insert", "duplicate", "swap"])
        if kind == "delete":
            text = text[:at] + text[at + rng.randint(1, 40):]
        elif kind == "insert":
            text = text[:at] + rng.choice(JUNK) * rng.choice([1, 1, 2, 70, 1000]) + text[at:]
        elif kind == "duplicate":
            lines = text.split("\n")
            i = at % len(lines)
            text = "\n".join(lines[: i + 1] + lines[i:])
        else:
            text = text.replace(rng.choice(["<=", ">=", "(", ")", ":", "->", "{"]), rng.choice(JUNK), 1)
    return text.encode(rng.choice(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "latin-1"]), "replace")


def capture(rng: random.Random) -> bytes:
    good = _pcap([FRAME, FRAME[:-4] + b"wxyz", FRAME])
    kind = rng.choice(["good", "good", "good", "cut", "linktype", "random", "short-frames", "empty", "nano"])
    if kind == "good":
        return good
    if kind == "cut":
        return good[: rng.randrange(len(good))]
    if kind == "linktype":
        return _pcap([FRAME[14:]], rng.choice([0, 101, 113, 127, 228, 276, 65535]))
    if kind == "random":
        return rng.randbytes(rng.randrange(200))
    if kind == "short-frames":
        return _pcap([FRAME[: rng.randrange(60)] for _ in range(3)])
    return _pcap([FRAME], nano=True) if kind == "nano" else b""


def pool(root: Path, rng: random.Random) -> list[str]:
    """Input files in ``root``, with a symlink and a hard link; their names."""
    names = []
    for i in range(rng.randint(1, 3)):
        (root / f"s{i}.sg").write_bytes(spec_text(rng))
        names.append(f"s{i}.sg")
    (root / SMALL).write_text(SPECS[SMALL])
    (root / "pdp.dpir.txt").write_text(SPECS[SMALL])  # compiles to pdp.dpir.txt: itself
    for i in range(2):
        (root / f"c{i}.pcap").write_bytes(capture(rng))
    (root / "sc.yaml").write_bytes(rng.choice(SCENARIOS))
    (root / "dir").mkdir()
    (root / "proj").mkdir()  # a user's folder: a spec and notes
    (root / "proj" / "p.sg").write_text(SPECS[SMALL])
    (root / "proj" / "notes.txt").write_text("mine\n")
    (root / "link.pcap").symlink_to("c0.pcap")
    os.link(root / "s0.sg", root / "hard.sg")
    return names + [SMALL, "pdp.dpir.txt", "c0.pcap", "c1.pcap", "sc.yaml", "link.pcap", "hard.sg", "proj/p.sg",
                    "proj/notes.txt"]


def argv_for(rng: random.Random, files: list[str]) -> list[str]:
    """A command line: mostly what a user means (good files, a fresh output), with a
    misuse mixed in (a missing file, a directory, an input as output, a bad flag)."""
    specs_ = [f for f in files if f.endswith(".sg")]
    bad = files + ["dir", "missing.sg", "dir/../c0.pcap", "./s0.sg", "", "-", "sc.yaml/x"]
    aliases = {"c0.pcap": ["link.pcap", "dir/../c0.pcap", "./c0.pcap"], "s0.sg": ["hard.sg", "./s0.sg"]}

    def path(good: list[str]) -> str:
        return rng.choice(good) if rng.random() < 0.85 else rng.choice(bad)

    def specs() -> list[str]:
        return [rng.choice(specs_ + [SMALL] * 3)] if rng.random() < 0.85 else rng.sample(bad, rng.randint(1, 3))

    def output(fresh: list[str], inputs: list[str]) -> str:  # a new file, or an input under some name
        if rng.random() < 0.7:
            return path(fresh)
        return rng.choice(inputs + [a for i in inputs for a in aliases.get(i, [])])

    cmd = rng.choice(["check", "compile", "compile", "run", "run", "run", "verify", "export", "simulate", "testbed",
                      "deploy", "junk"])
    if cmd == "check":
        return ["check", *specs()] + rng.choice([[], ["--json"]])
    if cmd == "compile":
        given = specs() + rng.choice([[], [], ["pdp.dpir.txt"]])
        return (["compile", *given, "-t", rng.choice(["dpir", "bmv2", "bmv2", "tofino", "tofino", "p4"]),
                 "-o", output(["out", "out/x", "."], given)] + rng.choice([[], [], ["--device", "pdp"], ["--device", "nope"]]))
    if cmd == "run":
        given, pcap = specs(), path(["c0.pcap", "c1.pcap", "link.pcap"])
        argv = ["run", *given, "--pcap", pcap] + rng.choice([[], ["--json"], ["--port", str(rng.randint(-2, 600))], ["--device", "pdp"]])
        return argv + rng.choice([[], ["-o", output(["out.pcap", "o2.pcap", "dir/o.pcap"], [*given, pcap])]])
    if cmd == "verify":
        given = rng.choice([SMALL, SMALL, "missing.sg", "c0.pcap", "s0.sg"])
        return (["verify", given, "-t", rng.choice(["bmv2", "tofino", "xdp"]), "-o", output(["out", "v"], [given])]
                + ["--property", rng.choice(["disjointness", "resources"])] + rng.choice([[], ["--json"]]))  # the quick proofs
    if cmd == "export":  # replaces its folder whole: never "proj" (the user's), "." or "dir/.."
        given = specs() if rng.random() < 0.5 else ["proj/p.sg"]
        return ["export", *given, "--to", rng.choice(["iml", "oakestra", "oakestra", "bpfman"]),
                "-o", rng.choice(["exp", "exp", "dir", "proj", "proj", ".", "dir/..", rng.choice(files)])]
    if cmd == "simulate":  # only what must be refused before the (slow) runs start
        refuse = rng.choice([["--seeds", "0"], ["--policy", "nope"], ["--steps", "1"], ["--jobs", "0"],
                             ["--out", rng.choice(files)], ["--markdown", "sc.yaml"], ["--forecaster", ""]])
        return ["simulate", rng.choice(["sc.yaml", "missing.yaml", "dir", "c0.pcap"])] + refuse
    if cmd == "testbed":  # never a site: each vector ends in something refused up front
        refuse = rng.choice([["--duration", "0"], ["--duration", "-5"], ["--out", "sc.yaml"], ["--out", "c0.pcap"]])
        return ["testbed", rng.choice(["run", "compare"]), "sc.yaml"] + refuse
    if cmd == "deploy":
        return ["deploy", "--iface", f"mtfz{os.getpid() % 10000}x", "--detach"] + rng.choice(
            [[], ["--netns", f"mtfz-none-{os.getpid()}"]])
    return rng.sample(["check", "run", "-o", "--out", "--debug", "-t", "x", "--version"] + files, rng.randint(0, 4))


def _inode(p: Path) -> tuple[int, int] | None:
    try:
        s = p.stat()
    except OSError:
        return None
    return s.st_dev, s.st_ino


def _under_an_output(root: Path, name: str, outputs: set[str]) -> bool:
    """Whether the command was told it may write ``name``: it is an output, or inside
    an output directory (where a file of the same name is fair game, unless an input)."""
    real = os.path.realpath(root / name)
    for o in outputs:
        out = os.path.realpath(root / o)
        if real == out or (os.path.isdir(out) and os.path.commonpath([real, out]) == out):
            return True
    return False


def fuzz_case(seed: int) -> tuple[list[str], int, str, list[str]]:
    """Run example ``seed``: (argv, exit code, stdout + stderr, inputs that changed)."""
    rng = random.Random(seed)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="mantra-fuzz-") as tmp:
        root = Path(tmp)
        os.chdir(root)
        try:
            files = pool(root, rng)
            argv = argv_for(rng, files)
            before = {f: hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}
            code, out, err = run_cli(*argv)
        finally:
            os.chdir(cwd)
        outputs = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS}
        named_in = {_inode(root / a) for a in argv if a and a not in outputs} - {None}
        changed = [f for f, digest in before.items()  # deleted (never allowed), or rewritten where not allowed
                   if not (root / f).is_file()
                   or ((_inode(root / f) in named_in or not _under_an_output(root, f, outputs))
                       and hashlib.sha256((root / f).read_bytes()).hexdigest() != digest)]
    return argv, code, out + err, changed


def test_the_cli_never_tracebacks_and_never_changes_an_input():
    failures, outcomes = [], {}
    for seed in range(EXAMPLES):
        argv, code, text, changed = fuzz_case(seed)
        outcomes[(argv[0] if argv else "-", code)] = outcomes.get((argv[0] if argv else "-", code), 0) + 1
        if code not in (0, 1, 2) or "Traceback" in text or changed:
            failures.append(f"seed {seed}: mantra {' '.join(argv)} -> exit {code}, changed {changed}\n{text[-2000:]}")
    print("outcomes (command, exit): count", dict(sorted(outcomes.items())))
    assert not failures, "\n\n".join(failures[:3])
    # The fuzz means something only if commands also succeed, not just fail fast.
    assert sum(n for (cmd, code), n in outcomes.items() if code == 0 and cmd in ("compile", "run", "verify", "export")) >= 10

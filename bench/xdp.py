"""Generated XDP against hand-written XDP doing the same work, timed in one run.

    sudo .venv/bin/python bench/xdp.py [--repeat 200000] [--rounds 5] [--baselines DIR]

The hand-written libbpf programs of ``../shared/baselines/xdp/`` (their README; ``DIR``
or ``MANTRA_BASELINES`` to point elsewhere) are built from that folder with the flags it
states, loaded, and filled with its own map entries (``bench_helper.py``); Mantra
compiles service graphs that do the same work on the same 64-byte UDP/IPv4 frame: an LPM
router (MAC rewrite, TTL), a 32-rule 5-tuple ACL, a Maglev load balancer with DNAT, a
GTP-U encap, and the chain ACL -> latency stamp -> LB -> GTP-U encap. Each generated
program is built twice: with every table compiled into code (``--tables const``) and
with every table a BPF map updatable at run time (``--tables runtime``, what the
hand-written programs do).

``BPF_PROG_TEST_RUN`` with ``repeat`` reuses one buffer without restoring it, so every
program that rewrites the packet runs behind the baselines' reset harness
(``bench_reset.c``), whose own cost (reset -> ``bench_noop`` minus ``XDP_DROP``) is
measured in each round and subtracted; the programs are interleaved round by round so
background load hits them alike. Figures are medians over rounds, in ns over that round's
``XDP_DROP`` floor; "ratio" is generated / hand-written. Every program's verdict is
checked, and the generated ones' output bytes against the interpreter. Then, for every
program, the instructions it executes on the bench packet (``bench/xdp_count.py``, which
interprets the kernel's translation; needs ``bpftool``): a count that does not move
between runs. It also prints the verifier's instruction count and the compile time of
every generated program, including each NF kind and the examples. A benchmark prints
figures; it never passes or fails on time.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the NF graphs of the kernel tests

from mantra6g.source import SourceFile  # noqa: E402
from mantra6g.synth import frontend  # noqa: E402
from mantra6g.synth.compose import compile_specs  # noqa: E402
from mantra6g.synth.interp import run  # noqa: E402
from mantra6g.synth.tables import with_tables  # noqa: E402
from mantra6g.targets import bpf, xdp  # noqa: E402
from mantra6g.targets.bpf import BpfObject  # noqa: E402
from bench import xdp_count  # noqa: E402

BASELINES = Path(os.environ.get("MANTRA_BASELINES", ROOT.parent / "shared" / "baselines" / "xdp"))
CFLAGS = ["-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{platform.machine()}-linux-gnu"]

# Without the baselines folder: our own floor and reset step (bench/testbed.py uses them too).
HEADER = '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "mantra_xdp.h"\n'
DROP = HEADER + 'SEC("xdp") int drop(struct xdp_md *ctx) { return XDP_DROP; }\nchar LICENSE[] SEC("license") = "GPL";\n'
RESET = HEADER + """
struct pkt { __u32 len; __u8 data[256]; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct pkt); } orig SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u32); } next SEC(".maps");

/* Put the original packet back, then run the program under test. */
SEC("xdp") int reset(struct xdp_md *ctx)
{
    __u32 k = 0;
    struct pkt *o = bpf_map_lookup_elem(&orig, &k);
    if (!o)
        return XDP_ABORTED;
    int delta = (int)bpf_xdp_get_buff_len(ctx) - (int)o->len;
    if (delta && bpf_xdp_adjust_head(ctx, delta))
        return XDP_ABORTED;
    __u64 n = o->len;
    barrier_var(n);
    if (n < 14 || n > 256)
        return XDP_ABORTED;
    if (bpf_xdp_store_bytes(ctx, 0, o->data, n))
        return XDP_ABORTED;
    bpf_tail_call(ctx, &next, 0);
    return XDP_ABORTED;
}
char LICENSE[] SEC("license") = "GPL";
"""


def compiled(work: Path, name: str, source: str) -> BpfObject:
    c = work / f"{name}.c"
    c.write_text(source)
    return BpfObject.load(xdp.build(c, work / f"{name}.o"))


def timed(obj: BpfObject, packet: bytes, repeat: int, rounds: int) -> float:
    """Median over rounds of the kernel's mean ns per repetition."""
    return statistics.median(obj.test_run(packet, repeat)[2] for _ in range(rounds))


def behind_reset(reset: BpfObject, target_fd: int, packet: bytes, repeat: int, rounds: int) -> float:
    """Our own reset step (no baselines folder): restore ``packet``, tail-call the target."""
    reset.update("next", bytes(4), target_fd.to_bytes(4, "little"))
    reset.update("orig", bytes(4), len(packet).to_bytes(4, "little") + packet.ljust(256, b"\0"))
    verdict, _, _ = reset.test_run(packet, 1)
    if verdict == 0:
        raise SystemExit("the reset program aborted: packet longer than 256 bytes?")
    return timed(reset, packet, repeat, rounds)


# ---------------------------------------------------------------- the work, as service graphs

TENANT = "tenant bench id 1 {\n    slice s {\n        latency <= 1 ms\n    }\n}\n"
ACL_RULES = "\n".join(
    [f"        deny ipv4.src in 10.0.1.0/24 and ipv4.dst == 10.0.2.1 and ipv4.proto == udp and udp.dport == {1000 + i}"
     for i in range(31)] + ["        allow ipv4.src in 0.0.0.0/0"])
ACL = f"firewall(default: allow) {{\n{ACL_RULES}\n    }}"
LB = ("load_balancer(vip: 10.0.2.1, mode: dnat, hash: [ipv4.src, ipv4.dst, udp.sport, udp.dport, ipv4.proto]) {\n"
      + "".join(f"        backend 10.0.3.{i + 1}\n" for i in range(4)) + "    }")
ENCAP = "tunnel(protocol: gtpu, mode: encap, teid: 305419776, local: 172.16.0.1, remote: 172.16.1.1)"
ROUTER = """router(mac: 02:00:00:00:00:12) {
        route 10.0.0.0/8 via 02:00:00:00:0a:01 port 2
        route 10.0.2.0/24 via 02:00:00:00:0a:02 port 1
        route 10.0.2.128/25 via 02:00:00:00:0a:03 port 3
    }"""
INGRESS_PORT = 1  # the /24 route's port: the frame goes back out (XDP_TX, as the baselines)


def graph(nfs: list[str]) -> str:
    decls = "".join(f"    nf n{i} = {d}\n" for i, d in enumerate(nfs))
    return (TENANT + "graph g for bench.s {\n    nf cls = classifier() {\n        match ipv4.dst in 10.0.0.0/8\n    }\n"
            + decls + "    cls -> " + " -> ".join(f"n{i}" for i in range(len(nfs))) + "\n}\n")


@dataclass(frozen=True)
class Work:
    name: str
    baseline: str  # the hand-written program (its file name without .c)
    via_reset: bool  # the baseline rewrites the packet: timed behind the reset harness
    graph: str


WORKS = (
    Work("router: LPM, MAC rewrite, TTL", "xdp_fwd", True, graph([ROUTER])),
    Work("ACL: 5-tuple, 32 rules", "xdp_acl", False, graph([ACL])),
    Work("LB: Maglev, DNAT", "xdp_lb", False, graph([LB])),
    Work("GTP-U encap", "xdp_gtpu_encap", True, graph([ENCAP])),
    Work("chain: ACL > stamp > LB > encap", "xdp_chain4", True,
         graph([ACL, "latency_monitor(role: source)", LB, ENCAP])),
)


def program(text: str, name: str):
    (dp,) = compile_specs(frontend.load_sources([SourceFile(f"{name}.sg", text)]))
    return dp.program


# ---------------------------------------------------------------- loading


class Baselines:
    """The hand-written programs, built from their folder and filled with its entries."""

    def __init__(self, folder: Path, work: Path):
        spec = importlib.util.spec_from_file_location("bench_helper", folder / "bench_helper.py")
        self.helper = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.helper)
        self.packet = self.helper.PACKETS["pkt"]
        self.objs: dict[str, BpfObject] = {}
        for src in ("xdp_drop", "bench_reset", *(w.baseline for w in WORKS)):
            obj = work / f"{src}.o"
            r = subprocess.run(["clang", *CFLAGS, "-c", str(folder / f"{src}.c"), "-o", str(obj)],
                               capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"clang failed on {folder / src}.c:\n{r.stderr}")
            self.objs[src] = BpfObject.load(obj)
        # bench_helper prints `map update pinned PREFIX/bl_<prog>_maps/<map> key hex .. value hex ..`
        out = io.StringIO()
        with redirect_stdout(out):
            self.helper.cmd_maps("@")
        for line in out.getvalue().splitlines():
            words = line.split()
            where, key_at, value_at = words[3], words.index("key"), words.index("value")
            prog, name = where.split("/")[1][len("bl_"):-len("_maps")], where.split("/")[2]
            src = "bench_reset" if prog == "bench_reset" else f"xdp_{prog}"
            key = bytes(int(x, 16) for x in words[key_at + 2:value_at])
            value = bytes(int(x, 16) for x in words[value_at + 2:])
            if src in self.objs:
                self.objs[src].update(name, key, value)
        self.reset = self.objs["bench_reset"]
        self.noop_fd = self.reset.program_fd("bench_noop")
        self.drop = self.objs["xdp_drop"]

    def check(self, name: str) -> None:
        """The baseline's verdict and bytes on the timed packet, against its own model."""
        verdict, out, _ = self.objs[name].test_run(self.packet)
        if verdict != bpf.XDP_TX and name != "xdp_acl":
            raise SystemExit(f"{name}: verdict {verdict} on the bench packet")
        model = {"xdp_fwd": "fwd", "xdp_lb": "lb", "xdp_gtpu_encap": "gtpu_encap", "xdp_chain4": "chain4"}.get(name)
        if model and out != self.helper.model(model):
            raise SystemExit(f"{name}: output differs from bench_helper's model")


def point(reset: BpfObject, fd: int) -> None:
    reset.update("bench_nf", bytes(4), fd.to_bytes(4, "little"))


@dataclass
class Generated:
    name: str
    obj: BpfObject
    instructions: int
    compile_ms: float
    maps: tuple[str, ...]


def build_generated(p, work: Path, tag: str) -> Generated:
    d = work / tag
    d.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    out = xdp.emit(p)
    c = d / f"{p.name}.c"
    c.write_text(out.files[f"{p.name}.c"])
    xdp.build(c, d / f"{p.name}.o")
    ms = (time.perf_counter() - start) * 1e3
    obj = BpfObject.load(d / f"{p.name}.o")
    xdp.fill_maps(obj, p)
    # The frame arrives on DP-IR port 1 (BPF_PROG_TEST_RUN's ingress is the loopback device).
    obj.update("mantra_ingress", bytes(4), (1).to_bytes(4, "little") + INGRESS_PORT.to_bytes(4, "little"))
    return Generated(tag, obj, obj.stats.instructions, ms, out.maps)


def check_generated(p, g: Generated, packet: bytes, work: Path) -> None:
    """Verdict XDP_TX, and the bytes the interpreter (with a test-hook build) gives."""
    verdict, out, _ = g.obj.test_run(packet)
    if verdict != bpf.XDP_TX:
        raise SystemExit(f"{g.name}: verdict {verdict} on the bench packet, not XDP_TX")
    want = run(p, packet, INGRESS_PORT, 1_000_000).outputs
    k = xdp.KernelProgram(p, work / f"{g.name}-hooks")
    try:
        if k.run(packet, INGRESS_PORT, 1_000_000) != want or len(want) != 1:
            raise SystemExit(f"{g.name}: the XDP program and the interpreter disagree on the bench packet")
    finally:
        k.close()
    if len(out) != len(want[0][1]):
        raise SystemExit(f"{g.name}: {len(out)} bytes out, the interpreter says {len(want[0][1])}")


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baselines", type=Path, default=BASELINES, help="the hand-written programs' folder")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (BPF_PROG_TEST_RUN): sudo .venv/bin/python bench/xdp.py")
    work = Path(tempfile.mkdtemp(prefix="mantra-bench-xdp-"))
    load_before = os.getloadavg()
    print(f"kernel {platform.release()}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f} (other work on this machine shares the cores)")
    if not (args.baselines / "bench_reset.c").is_file():
        print(f"no hand-written baselines at {args.baselines}: generated programs only\n")
        return kinds_and_examples(work, None, args)
    base = Baselines(args.baselines, work)
    for w in WORKS:
        base.check(w.baseline)
    packet = base.packet

    gens: dict[tuple[str, str], Generated] = {}
    for w in WORKS:
        p = program(w.graph, w.baseline.removeprefix("xdp_"))
        for mode in ("const", "runtime"):
            q = with_tables(p, mode)
            g = build_generated(q, work, f"{w.baseline}-{mode}")
            check_generated(q, g, packet, work)
            gens[(w.name, mode)] = g

    reset, drop = base.reset, base.drop
    samples: dict[str, list[float]] = {}

    def sample(key: str, obj: BpfObject, fd: int | None = None) -> None:
        ns = (obj.test_run(packet, args.repeat) if fd is None else obj.test_run_fd(fd, packet, args.repeat))[2]
        samples.setdefault(key, []).append(ns)

    def via_reset(key: str, fd: int) -> None:
        point(reset, fd)
        verdict = reset.test_run(packet, 1)[0]
        if verdict != bpf.XDP_TX and "acl" not in key:
            raise SystemExit(f"{key}: verdict {verdict} through the reset harness")
        sample(key, reset)

    for r in range(args.rounds):
        sample("drop", drop)
        via_reset("noop", base.noop_fd)
        for w in WORKS:
            if w.via_reset:
                via_reset(w.baseline, base.objs[w.baseline].fd)
            else:
                sample(w.baseline, base.objs[w.baseline])
            for mode in ("const", "runtime"):
                via_reset(f"{w.baseline}-{mode}", gens[(w.name, mode)].obj.fd)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)

    # the harness's own cost, per round
    harness = [n - d for n, d in zip(samples["noop"], samples["drop"])]
    floor = statistics.median(samples["drop"])

    def per_round(key: str, reset_: bool) -> list[float]:
        """ns over that round's floor (and that round's harness, behind the reset)."""
        vals = [v - d for v, d in zip(samples[key], samples["drop"])]
        return [v - h for v, h in zip(vals, harness)] if reset_ else vals

    def over(key: str, reset_: bool) -> float:
        return statistics.median(per_round(key, reset_))

    def spread(key: str, hand_key: str, hand_reset: bool) -> str:
        """The range of the ratio over rounds, each round's generated / hand-written."""
        rs = [g / h for g, h in zip(per_round(key, True), per_round(hand_key, hand_reset)) if h > 0]
        return f"{min(rs):.2f}-{max(rs):.2f}" if rs else "-"

    print(f"\nBPF_PROG_TEST_RUN, {args.rounds} rounds x {args.repeat} repeats, 64-byte UDP/IPv4 frame "
          f"(bench_helper.py's); ns over the XDP_DROP floor ({floor:.0f} ns); reset harness "
          f"{statistics.median(harness):.0f} ns, subtracted")
    print("ratio = median generated / median hand-written; in brackets, the range of the ratio "
          "round by round (both timed in the same round)")
    print(f"{'work':<34}{'hand-written':>13}{'Mantra const':>14}{'ratio':>7}{'rounds':>12}{'Mantra runtime':>16}"
          f"{'ratio':>7}{'rounds':>12}{'verifier insns (const/runtime)':>32}")
    for w in WORKS:
        hand = over(w.baseline, w.via_reset)
        c, rt = over(f"{w.baseline}-const", True), over(f"{w.baseline}-runtime", True)
        gc, gr = gens[(w.name, "const")], gens[(w.name, "runtime")]
        sc = spread(f"{w.baseline}-const", w.baseline, w.via_reset)
        sr = spread(f"{w.baseline}-runtime", w.baseline, w.via_reset)
        print(f"{w.name:<34}{hand:>13.1f}{c:>14.1f}{c / hand:>7.2f}{f'[{sc}]':>12}{rt:>16.1f}{rt / hand:>7.2f}"
              f"{f'[{sr}]':>12}{f'{gc.instructions} / {gr.instructions}':>32}")
    print("\nmaps of the runtime builds (const builds: none but the LB's flow-affinity register):")
    for w in WORKS:
        print(f"  {w.name:<34}{', '.join(gens[(w.name, 'runtime')].maps)}")
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    executed(base, gens, packet)
    kinds_and_examples(work, gens, args)


def executed(base: Baselines, gens: dict[tuple[str, str], Generated], packet: bytes) -> None:
    """The instructions each program executes on the bench packet (bench/xdp_count.py):
    the same in every run, where the timings above move by a few ns. A count is printed
    only where the interpretation ends with the kernel's own verdict and bytes
    (:func:`xdp_count.agrees`)."""
    def one(obj: BpfObject) -> str:
        verdict, out, _ = obj.test_run(packet)
        try:
            c = xdp_count.count(xdp_count.prog_id(obj.fd), packet)
        except (xdp_count.Unmodelled, subprocess.CalledProcessError, FileNotFoundError) as e:
            return f"- ({e})"[:40]
        if not xdp_count.agrees(c, verdict, out, obj.test_run(packet)[1]):
            return "- (differs from the kernel)"
        calls = sum(c.calls.values())
        return f"{c.instructions}" + (f" +{calls} call{'s' * (calls > 1)}" if calls else "")

    print("\ninstructions executed on the bench packet (the kernel's translated program, "
          "interpreted; a helper call counts one, +N calls says how many; a flow the LB has seen)")
    print(f"{'work':<34}{'hand-written':>18}{'Mantra const':>18}{'Mantra runtime':>18}")
    for w in WORKS:
        print(f"{w.name:<34}{one(base.objs[w.baseline]):>18}{one(gens[(w.name, 'const')].obj):>18}"
              f"{one(gens[(w.name, 'runtime')].obj):>18}")


def kinds_and_examples(work: Path, gens, args) -> None:
    """Verifier instructions and compile time of every generated program."""
    from tests.targets.xdp_cases import GRAPHS
    from tests.targets.xdp_cases import program as kind_program

    rows = []
    if gens:
        rows += [(f"bench {g.name}", g.instructions, g.compile_ms) for g in gens.values()]
    for kind in GRAPHS:
        for mode in ("declared", "const", "runtime"):
            g = build_generated(with_tables(kind_program(kind), mode), work / "kinds", f"{kind}-{mode}")
            rows.append((f"kind {kind} ({mode})", g.instructions, g.compile_ms))
            g.obj.close()
    for path in sorted((ROOT / "examples").glob("*.sg")):
        for dp in compile_specs(frontend.load([str(path)])):
            g = build_generated(dp.program, work / "examples", f"{path.stem}-{dp.name}")
            rows.append((f"example {path.name}: {dp.name}", g.instructions, g.compile_ms))
            g.obj.close()
    print(f"\n{'generated program':<58}{'verifier insns':>15}{'compile ms':>12}")
    for name, insns, ms in rows:
        print(f"{name:<58}{insns:>15}{ms:>12.0f}")
    print(f"largest: {max(r[1] for r in rows)} instructions processed (the verifier's limit is 1,000,000)")


if __name__ == "__main__":
    main()

"""ns/packet of the generated XDP programs (BPF_PROG_TEST_RUN with repeat), per NF kind
and for a 4-NF chain, next to two hand-written baselines measured in the same run.

    sudo .venv/bin/python bench/xdp.py [--repeat 200000] [--rounds 5]

Test runs with ``repeat`` reuse one buffer without restoring it, so a program that
rewrites the packet would time its own output. Every generated program is therefore
timed behind a *reset* program that restores the original bytes (and length) and
tail-calls it; the reset's own cost (reset -> a program returning XDP_DROP) is measured
in the same run and subtracted. Baselines: an ``XDP_DROP`` program (the test-run floor)
and a hand-written forwarder (swap MACs, ``XDP_TX``). A benchmark prints figures; it
never passes or fails on time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the NF graphs and packets are the kernel tests' own

from mantra6g.synth.interp import run  # noqa: E402
from mantra6g.targets.bpf import BpfObject  # noqa: E402
from mantra6g.targets.xdp import KernelProgram, build  # noqa: E402
from tests.targets.xdp_cases import GRAPHS, corpus, fuzz_base, program  # noqa: E402

HEADER = '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "mantra_xdp.h"\n'
DROP = HEADER + 'SEC("xdp") int drop(struct xdp_md *ctx) { return XDP_DROP; }\nchar LICENSE[] SEC("license") = "GPL";\n'
FORWARD = HEADER + """
/* The minimal forwarder a person would write: bounds check, swap MACs, send back. */
SEC("xdp") int forward(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u8 *eth = data, tmp[6];
    if (data + 14 > end)
        return XDP_DROP;
    __builtin_memcpy(tmp, eth, 6);
    __builtin_memcpy(eth, eth + 6, 6);
    __builtin_memcpy(eth + 6, tmp, 6);
    return XDP_TX;
}
char LICENSE[] SEC("license") = "GPL";
"""
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
    return BpfObject.load(build(c, work / f"{name}.o"))


def timed(obj: BpfObject, packet: bytes, repeat: int, rounds: int) -> float:
    """Median over rounds of the kernel's mean ns per repetition."""
    return statistics.median(obj.test_run(packet, repeat)[2] for _ in range(rounds))


def behind_reset(reset: BpfObject, target_fd: int, packet: bytes, repeat: int, rounds: int) -> float:
    reset.update("next", bytes(4), target_fd.to_bytes(4, "little"))
    reset.update("orig", bytes(4), len(packet).to_bytes(4, "little") + packet.ljust(256, b"\0"))
    verdict, _, _ = reset.test_run(packet, 1)
    if verdict == 0:
        raise SystemExit("the reset program aborted: packet longer than 256 bytes?")
    return timed(reset, packet, repeat, rounds)


def sample_packet(kind: str, p) -> bytes:
    """The first test packet this program forwards (so the whole chain runs)."""
    for data in fuzz_base(kind) + corpus():
        if len(data) >= 14 and run(p, data, 1, 1_000_000).outputs:
            return data
    raise SystemExit(f"no corpus packet is forwarded by the {kind} program")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mantra-bench-xdp-"))
    probe = bytes(corpus()[0])
    drop, fwd, reset = compiled(work, "drop", DROP), compiled(work, "forward", FORWARD), compiled(work, "reset", RESET)
    t_drop = timed(drop, probe, args.repeat, args.rounds)
    t_fwd = timed(fwd, probe, args.repeat, args.rounds)
    t_reset = behind_reset(reset, drop.fd, probe, args.repeat, args.rounds) - t_drop
    fwd_net = t_fwd - t_drop
    print(f"BPF_PROG_TEST_RUN, repeat {args.repeat}, median of {args.rounds} rounds (ns/packet)")
    print(f"  baseline XDP_DROP (test-run floor)       {t_drop:7.1f}")
    print(f"  baseline hand-written forwarder (MAC swap, XDP_TX) {t_fwd:7.1f}  ({fwd_net:.1f} over the floor)")
    print(f"  reset step (restore bytes + tail call)   {t_reset:7.1f}  (subtracted below)")
    print()
    print(f"{'program':<22}{'bytes':>6}{'ns/pkt':>9}{'over floor':>12}{'x forwarder':>13}{'verifier insns':>16}")
    for kind in GRAPHS:
        p = program(kind)
        k = KernelProgram(p, work / kind)
        packet = sample_packet(kind, p)
        k.obj.update("mantra_test", bytes(4), (1_000_000).to_bytes(8, "little") + (1).to_bytes(8, "little") + bytes(8))
        t = behind_reset(reset, k.obj.fd, packet, args.repeat, args.rounds) - t_reset
        over = t - t_drop
        ratio = over / fwd_net if fwd_net > 0 else float("nan")
        print(f"{kind:<22}{len(packet):>6}{t:>9.1f}{over:>12.1f}{ratio:>13.1f}{k.obj.stats.instructions:>16}")
        k.close()


if __name__ == "__main__":
    main()

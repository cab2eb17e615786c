"""Testbed figures: the latency monitor's per-packet cost, the control-loop latency and
migration downtime. Prints figures; never passes or fails on time. Needs root.

    sudo .venv/bin/python bench/testbed.py [--repeat N] [--duration S]

* Monitor cost: each stage of the testbed's URLLC chain compiled twice, with and without
  its latency-monitor NF (source on the ingress stage, sink on the egress stage), timed
  with BPF_PROG_TEST_RUN behind bench/xdp.py's reset step (the stages rewrite the packet,
  so repetitions must start from the original bytes).
* Control loop and downtime: one short reactive run on the default site
  (``mantra6g.testbed.run.run_policy``): observation returned -> migration applied, and
  the probes lost / the longest delivery gap in the migration's window.
* CPU isolation: the chain (A -> E, no eMBB) next to 4 noisy neighbours, once with its
  NAPI threads unpinned (the baseline) and once isolated (``Site.isolate``): URLLC delay
  percentiles and the share of probes over the 1 ms SLA.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.xdp import DROP, RESET, behind_reset, compiled, timed  # noqa: E402
from mantra6g.synth.interp import run  # noqa: E402


def stage_programs(monitor: bool) -> dict[str, object]:
    """The chain's two stages (default site addressing), optionally without monitor NFs."""
    from mantra6g.synth.compose import compile_specs
    from mantra6g.synth.frontend import loads
    from mantra6g.testbed.chain import EGRESS, INGRESS, graph_text
    from mantra6g.testbed.site import Site, SiteConfig, mac

    a = Site(SiteConfig(), Path(tempfile.gettempdir())).chain_params()
    text = graph_text(a, {INGRESS: ("A", mac(0x10)), EGRESS: ("B", mac(0x11))})
    if not monitor:
        for nf in ("mon_in", "mon_out"):
            text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(f"nf {nf} "))
            text = text.replace(f"-> {nf} ", "").replace(f"{nf}, ", "")
    out = {}
    for dp in compile_specs([loads(text, "urllc.sg")]):
        out[INGRESS if dp.site == "A" else EGRESS] = dp.program
    return out


def probe() -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from mantra6g.testbed.site import GEN_IP, URLLC_PORT, VIP, mac

    return bytes(Ether(src=mac(1), dst=mac(0x10)) / IP(src=GEN_IP, dst=VIP) / UDP(sport=40000, dport=URLLC_PORT) / (b"\0" * 24))


def monitor_cost(repeat: int, rounds: int) -> None:
    from mantra6g.targets.xdp import KernelProgram

    work = Path(tempfile.mkdtemp(prefix="mantra-bench-testbed-"))
    drop, reset = compiled(work, "drop", DROP), compiled(work, "reset", RESET)
    t_drop = timed(drop, probe(), repeat, rounds)
    t_reset = behind_reset(reset, drop.fd, probe(), repeat, rounds) - t_drop
    print(f"BPF_PROG_TEST_RUN, repeat {repeat}, median of {rounds} rounds; floor (XDP_DROP) {t_drop:.1f} ns, "
          f"reset step {t_reset:.1f} ns subtracted")
    print(f"{'stage':<10}{'with monitor ns':>17}{'without ns':>12}{'monitor ns/pkt':>16}")
    for stage in ("ingress", "egress"):
        times = {}
        for monitor in (True, False):
            progs = stage_programs(monitor)
            packet = probe()
            if stage == "egress":  # what the ingress stage sends on
                packet = run(progs["ingress"], packet, 0, 1_000_000).outputs[0][1]
            p = progs[stage]
            if not run(p, packet, 0, 1_000_000).outputs:
                raise SystemExit(f"the {stage} stage drops the probe: bench packet is wrong")
            k = KernelProgram(p, work / f"{stage}-{monitor}")
            times[monitor] = behind_reset(reset, k.obj.fd, packet, repeat, rounds) - t_reset
            k.close()
        print(f"{stage:<10}{times[True]:>17.1f}{times[False]:>12.1f}{times[True] - times[False]:>16.1f}")


def control_loop(duration: float) -> None:
    from mantra6g.testbed.run import run_policy

    r = run_policy("reactive", duration, 1, Path(tempfile.mkdtemp(prefix="mantra-bench-loop-")), prefix="mtbbench")
    print(f"\nreactive run, {duration:g} s, seed 1: {r.migrations} migration(s)")
    print(f"  control loop (observation -> migration applied, mean): {r.control_loop_ms:.0f} ms")
    print(f"  migration window: {r.migration_lost} probes lost, {r.migration_lost_after_switch} of them sent after "
          f"the switch (the rest: drops on the old, congested path), "
          f"longest delivery gap {r.migration_gap_ms:.1f} ms (probes arrive every 3.3 ms on average)")


def isolation(duration: float, noisy: int = 4) -> None:
    import time

    import numpy as np

    from mantra6g.testbed.chain import EGRESS, INGRESS, STAGES
    from mantra6g.testbed.site import Site, SiteConfig

    print(f"\nURLLC chain A -> E next to {noisy} noisy neighbours, {duration:g} s each, no eMBB")
    print(f"{'stages':<12}{'P50 ms':>9}{'P99 ms':>9}{'max ms':>9}{'over 1 ms':>11}")
    rows = {}
    for isolated in (False, True):
        config = SiteConfig(embb_rate_pps=0.0, noisy_neighbours=noisy, seed=5)
        with Site(config, Path(tempfile.mkdtemp(prefix="mantra-bench-iso-")), prefix="mtbiso") as site:
            site.deploy_chain({INGRESS: "A", EGRESS: "E"})
            for stage in STAGES:
                site.isolate(stage, isolated)
            site.start_noise()
            site.start_traffic(duration, embb=False)
            time.sleep(duration + 1.5)
            site.interval()
        d = np.array([r.delay_ms for r in site.truth])
        rows[isolated] = over = float(np.mean(d > 1.0))
        print(f"{'isolated' if isolated else 'unpinned':<12}{np.percentile(d, 50):>9.3f}{np.percentile(d, 99):>9.3f}"
              f"{d.max():>9.3f}{over:>10.2%}")
    if rows[True] > 0:
        print(f"over-SLA share, unpinned / isolated: {rows[False] / rows[True]:.0f}x")
    else:
        print("over-SLA share isolated: 0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=10.0)
    args = ap.parse_args()
    monitor_cost(args.repeat, args.rounds)
    control_loop(args.duration)
    isolation(args.duration)


if __name__ == "__main__":
    main()

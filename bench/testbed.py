"""Testbed figures: the latency monitor's per-packet cost, the migration's switch (time,
delivery gap, loss), the control loop from sample to applied action, CPU isolation.
Prints figures; never passes or fails on time. Needs root.

    sudo .venv/bin/python bench/testbed.py [--repeat N] [--duration S] [--migrations N]

* Monitor cost: each stage of the testbed's URLLC chain compiled twice, with and without
  its latency-monitor NF (source on the ingress stage, sink on the egress stage), timed
  with BPF_PROG_TEST_RUN behind bench/xdp.py's reset step (the stages rewrite the packet,
  so repetitions must start from the original bytes).
* Migration switch: ``--migrations`` make-before-break moves of the egress stage between
  D and E (warm standbys) and 5 on the slow path, under Poisson probes and a 2 kpps
  constant-rate probe stream, no congestion: decision -> traffic switched, the delivery
  gap at the switch (on the constant-rate probes sent after it, beyond what the sender
  made the receiver wait; see mantra6g.testbed.migration.SwitchCost), probes lost after
  the switch; the same gap statistic at random instants without a migration as the
  machine's own baseline.
* Control loop: reactive runs on the default and the ramp site: per migration sample ->
  decision -> applied action; per control interval sample -> decision.
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


def _pcts(values: list[float]) -> str:
    import numpy as np

    if not values:
        return "n/a"
    v = np.array(values)
    return f"p50 {np.percentile(v, 50):.2f}  p99 {np.percentile(v, 99):.2f}  max {v.max():.2f}  (n={len(v)})"


def switch(migrations: int) -> None:
    import random
    import time

    from mantra6g.testbed.chain import EGRESS, INGRESS, STAGES
    from mantra6g.testbed.migration import MigrationReport, switch_cost
    from mantra6g.testbed.site import Site, SiteConfig

    config = SiteConfig(embb_rate_pps=0.0, seed=7)
    rng = random.Random(7)
    with Site(config, Path(tempfile.mkdtemp(prefix="mantra-bench-switch-")), prefix="mtbsw") as site:
        site.deploy_chain({INGRESS: "A", EGRESS: "D"})
        for stage in STAGES:
            site.isolate(stage, True)
        site.standby(EGRESS, ["E"])
        for node in ("D", "E"):  # the slow path's builds, so it does not wait for clang
            site.prebuild(EGRESS, [node])
        duration = 2.0 + migrations * 0.35 + 5 * 1.5 + 1.0
        start = site.start_traffic(duration, embb=False)
        time.sleep(max(0.0, start + 1.5 - time.time()))
        for _ in range(migrations):
            site.migrator.sync(force=False)
            site.migrate(EGRESS, "E" if site.placement[EGRESS] == "D" else "D")
            time.sleep(rng.uniform(0.25, 0.4))
        site.migrator.wait()
        for _ in range(5):  # the slow path: no standby there
            target = "E" if site.placement[EGRESS] == "D" else "D"
            site.migrator.drop(target)
            site.migrate(EGRESS, target)
            site.prebuild(EGRESS, [target])
            time.sleep(0.3)
        site.finish_traffic()
        reports = list(site.migrations)
    fast = [r for r in reports if r.standby]
    slow = [r for r in reports if not r.standby]
    cf, cs = [switch_cost(r, site.truth) for r in fast], [switch_cost(r, site.truth) for r in slow]
    # The same statistic at random instants at least 0.3 s from any migration.
    busy = [r.switched for r in reports]
    t0, t1 = start + 1.0, start + duration - 1.0
    base = []
    while len(base) < 200:
        t = rng.uniform(t0, t1)
        if all(abs(t - b) > 0.3 for b in busy):
            base.append(switch_cost(MigrationReport(EGRESS, "D", "D", t, t, t, 0, True), site.truth).gap_ms)
    print(f"\nmigration switch, egress stage D <-> E, {len(fast)} onto warm standbys + {len(slow)} on the slow path, "
          f"{config.gap_probe_pps:g} gap probes/s + {config.urllc_rate_pps:g} Poisson probes/s, no congestion")
    print(f"  standby: decision -> switched ms: {_pcts([r.switch_ms for r in fast])}")
    print(f"  standby: delivery gap at switch ms: {_pcts([c.gap_ms for c in cf])}")
    print(f"  standby: probes lost after the switch: {sum(c.lost_after_switch for c in cf)} "
          f"(of {sum(c.probes_sent for c in cf)} gap probes in the windows); lost in the windows: {sum(c.lost for c in cf)}")
    print(f"  slow path: decision -> switched ms: {_pcts([r.switch_ms for r in slow])}")
    print(f"  slow path: delivery gap at switch ms: {_pcts([c.gap_ms for c in cs])}; "
          f"lost after the switch: {sum(c.lost_after_switch for c in cs)}")
    print(f"  baseline, the same gap statistic at {len(base)} random instants without a migration: {_pcts(base)}")
    received, sent = len(site.truth), (site.sent_urllc() or 0) + int(site.traffic_output.get("gap", "0") or 0)
    print(f"  all probes: {sent} sent, {received} received")


def control_loop(duration: float) -> None:
    from mantra6g.testbed.run import run_policy
    from mantra6g.testbed.scenario import load_site

    root = Path(__file__).resolve().parents[1]
    loops, decisions, switches = [], [], []
    print("\ncontrol loop (reactive; sample -> decision -> applied action, one clock)")
    for name in ("default", "ramp"):
        config = load_site(root / "examples/testbed" / f"{name}.yaml")
        r = run_policy("reactive", duration, 100_001, Path(tempfile.mkdtemp(prefix="mantra-bench-loop-")),
                       config=config, prefix="mtbbench", scenario=name)
        loops += r.loop_ms
        switches += r.switch_ms
        decisions.append(r.decision_ms_p99)
        print(f"  {name}, {duration:g} s (validation seed 100001): {r.migrations} migration(s), loop ms "
              f"{[round(x, 2) for x in r.loop_ms]}, decision p99 over every interval {r.decision_ms_p99:.2f} ms, "
              f"{r.lost_after_switch} probes lost after the switches, gap at switch {r.gap_ms:.2f} ms")
    print(f"  all migrations: sample -> applied ms: {_pcts(loops)}; decision -> applied ms: {_pcts(switches)}")


def isolation(duration: float, noisy: int = 4) -> None:
    import numpy as np

    from mantra6g.testbed.chain import EGRESS, INGRESS, STAGES
    from mantra6g.testbed.site import Site, SiteConfig

    print(f"\nURLLC chain A -> E next to {noisy} noisy neighbours, {duration:g} s each, no eMBB")
    print(f"{'stages':<12}{'P50 ms':>9}{'P99 ms':>9}{'max ms':>9}{'over 1 ms':>11}")
    rows = {}
    for isolated in (False, True):
        config = SiteConfig(embb_rate_pps=0.0, noisy_neighbours=noisy, gap_probe_pps=0.0, seed=5)
        with Site(config, Path(tempfile.mkdtemp(prefix="mantra-bench-iso-")), prefix="mtbiso") as site:
            site.deploy_chain({INGRESS: "A", EGRESS: "E"})
            for stage in STAGES:
                site.isolate(stage, isolated)
            site.start_noise()
            site.start_traffic(duration, embb=False)
            site.finish_traffic()
        d = np.array([r.delay_ms for r in site.truth if not r.gap_probe])
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
    ap.add_argument("--migrations", type=int, default=40)
    args = ap.parse_args()
    monitor_cost(args.repeat, args.rounds)
    switch(args.migrations)
    control_loop(max(args.duration, 20.0))
    isolation(args.duration)


if __name__ == "__main__":
    main()

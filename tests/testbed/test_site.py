"""Short real testbed runs (root): the URLLC chain as XDP programs on the nodes of a
Mininet site (LinuxBridge switches), placed by the orchestrator; the in-network monitor
against kernel packet timestamps and the receivers' ground truth; make-before-break
migrations onto warm standbys that lose no packet and keep the NF state; the reactive
policy; CPU isolation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import pytest

from tests.testbed.taps import Tap

pytestmark = pytest.mark.root

# Stated bound: per 0.2 s interval, the monitor's mean delay (ingress XDP stamp to egress
# XDP sink) and the same span from the kernel's packet timestamps on the switch ports
# around it differ by at most SPAN_BOUND_MS + SPAN_SHARE of the delay: the kernel
# timestamps the frame just before the ingress node's NAPI thread wakes and just after
# the egress node's program sent it, a few tens of microseconds outside the monitor's
# span; the egress timestamp is taken in the switch port's softirq, which shares the
# reserved core with the congested uplink's tbf watchdog and lags with it (measured up
# to ~1 % of a 12 ms congested delay on the loaded machine; 0.2 % when it is quiet).
SPAN_BOUND_MS = 0.1
SPAN_SHARE = 0.02
SPAN_LAG_MS = 1.0  # the most one interval in twenty may lag (see the test)


@contextmanager
def cores_awake():
    """One SCHED_IDLE spinner per CPU for the duration: the kernel's timestamp on the
    ingress node's switch port is taken before that node's NAPI thread wakes, a hop
    outside the monitor's span. On this VM (no cpuidle driver) an idle vCPU halts, and
    the host takes 50-300 us to run it again (seen: the kernel span 0.06-0.33 ms above
    the monitor in 6 of 29 intervals on an idle machine, 15-20 us with the cores busy).
    A spinner yields at once to any other task, so it keeps the cores running, as on an
    edge node whose cores never sleep, without taking time from the site."""
    spin = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_the_monitor_measures_its_span_and_survives_a_migration(tmp_path):
    """Oracle: the kernel's packet timestamps on the switch ports around the monitored
    span (tests/testbed/taps.py), binned by when the frame left the egress stage between
    consecutive monitor readings. Every interval is compared, the ones with a migration
    too: the readings are consistent snapshots (count read before and after the sum) and
    an old instance still draining adds its share."""
    from mantra6g.orchestrator.controller import Controller
    from mantra6g.orchestrator.policy import PolicyConfig
    from mantra6g.orchestrator.store import TelemetryStore
    from mantra6g.testbed.chain import EGRESS, INGRESS
    from mantra6g.testbed.infra import MIGRATION_COST, TestbedInfra
    from mantra6g.testbed.site import Site, SiteConfig

    _root()
    config = SiteConfig(urllc_rate_pps=300.0, embb_on_s=0.8, embb_off_s=1.0, embb_limit_mbit=10.0, seed=3)
    with cores_awake(), Site(config, tmp_path, prefix=f"mtb{os.getpid() % 1000}") as site:
        infra = TestbedInfra(site, duration_s=6.0)
        # The orchestrator's initial placement: URLLC home node first, then a spare (never
        # the eMBB node B or the shared node C).
        placement = infra.initial_placement(PolicyConfig())
        assert placement == {INGRESS: "A", EGRESS: "D"}
        site.deploy_chain(placement)
        site.deploy_embb()  # the eMBB slice's chain on B: policer, router to the sink
        # The orchestrator's initial isolation (every policy): URLLC stages pinned.
        Controller("static", PolicyConfig(), MIGRATION_COST).start(infra)
        assert site.isolated == {INGRESS, EGRESS}
        site.standby(EGRESS, ["E"])
        taps = [Tap(site.port("A"), outgoing=True).start()] + [Tap(site.port(n), outgoing=False).start()
                                                                for n in ("D", "E")]
        store = TelemetryStore()
        site.start_traffic(6.0)
        before = report = None
        while (obs := infra.observe()) is not None:
            store.append(obs)
            if report is None and obs.time >= 2.5:
                before = site.read_monitor()
                report = site.migrate(EGRESS, "E")
        site.migrator.wait()
        site.finish_traffic()
        site.interval()
        after = site.read_monitor()
        for tap in taps:
            tap.stop()
        embb_sent, embb_got = site.embb_delivery()

    entered = taps[0].seen
    left = {**taps[1].seen, **taps[2].seen}
    span_of = {k: (left[k] - entered[k]) / 1e6 for k in left if k in entered}
    # Every probe the sink counted reached the receiver (asserted below); ranked by when
    # it left the egress stage, the k-th is the sink's k-th count, so an interval's probes
    # are those ranked between two readings' counts. (Binning by the readings' wall-clock
    # time instead misplaced the probes sent while a preempted reader's timestamp and its
    # bpf() reads were apart: the flaky failure on the loaded machine.) A tap on a loaded
    # machine can miss a frame: such a probe is ranked by when the receiver got it (the
    # same realtime clock, a link later) and only leaves the kernel's mean of its interval.
    ranked = [k for _, k in sorted((left.get(k, r.received_ns), k) for r in site.truth for k in [(r.gap_probe, r.seq)])]
    missed = sum(k not in span_of for k in ranked)
    assert missed <= 0.001 * len(ranked) + 3, f"the taps missed {missed} of {len(ranked)} probes"
    span_ms = np.array([span_of[k] for k in ranked if k in span_of])
    compared = []
    for prev, now in zip(site.readings, site.readings[1:]):
        n = now.delay_count - prev.delay_count
        spans = [span_of[k] for k in ranked[prev.delay_count:now.delay_count] if k in span_of]
        if n >= 20 and len(spans) >= n - 1:
            compared.append(((now.delay_sum_ns - prev.delay_sum_ns) / n / 1e6, float(np.mean(spans))))
    print(f"\nmonitor vs kernel span per interval (ms): {[(round(a, 3), round(b, 3)) for a, b in compared]}")
    print(f"migration {report.source} -> {report.target}: switched in {report.switch_ms:.2f} ms (standby), "
          f"merged {report.state_entries_copied} state entries")
    assert report.standby and site.placement[EGRESS] == "E"
    assert store.count() > 0 and len(compared) >= 20
    # One interval in twenty may lag by up to SPAN_LAG_MS: at a burst's onset the loaded
    # machine can defer the egress port's softirq, whose timestamp then trails the
    # program's (one interval of 29 off by 0.48 ms, at 1 ms of delay, in a full-suite run;
    # none when the test runs alone). A monitor that mismeasured would miss most.
    off = [(m, k) for m, k in compared if abs(m - k) > SPAN_BOUND_MS + SPAN_SHARE * k]
    assert len(off) <= len(compared) // 20 and all(abs(m - k) <= SPAN_LAG_MS for m, k in off), (off, compared)
    # Over the whole run, no binning at all: the monitor's mean against the kernel's.
    assert abs(after.delay_sum_ns / after.delay_count / 1e6 - float(span_ms.mean())) <= SPAN_BOUND_MS
    # The ground truth (sender's socket to receiver's kernel timestamp) covers more than
    # the span: the monitor never reads more delay than the packets had.
    for a in site.accuracy():
        assert a.truth_mean_ms >= a.monitor_mean_ms - 0.05, a
    # State preserved across the move: the sink counted every probe the receiver got
    # (Poisson and gap probes, all through the sink) - the old node's count plus the new one's.
    assert after.delay_count >= before.delay_count > 0
    assert after.delay_count == len(site.truth)
    # Flow affinity preserved: every flow kept its backend across the migration.
    backends = defaultdict(set)
    for r in site.truth:
        backends[r.flow].add(r.backend)
    assert all(len(b) == 1 for b in backends.values()), dict(backends)
    # The eMBB bulk crossed its own chain, and its policer held it to the slice's rate:
    # bursts arrive at up to 40 Mbit/s (the uplink), so a 10 Mbit/s policer passes about
    # a quarter of them (the uplink alone passes over 80 %).
    assert 0.1 * embb_sent < embb_got < 0.5 * embb_sent


def test_make_before_break_loses_no_packet_and_keeps_the_state(tmp_path):
    """Migrations back and forth onto warm standbys under a 2 kpps probe stream, then one
    on the slow path (build, attach, copy, switch, drain, merge, detach). Oracles: the
    receivers' records (every probe sent must arrive: the site has no congestion here)
    and the sink's own counters against them."""
    from mantra6g.testbed.chain import EGRESS, INGRESS, STAGES
    from mantra6g.testbed.migration import switch_cost
    from mantra6g.testbed.site import Site, SiteConfig

    _root()
    config = SiteConfig(embb_rate_pps=0.0, seed=4)
    with Site(config, tmp_path, prefix=f"mtm{os.getpid() % 1000}") as site:
        site.deploy_chain({INGRESS: "A", EGRESS: "D"})
        for stage in STAGES:
            site.isolate(stage, True)
        site.standby(EGRESS, ["E"])
        site.prebuild(EGRESS, ["E"])  # the slow path's build, so it does not wait for clang
        site.start_traffic(6.0, embb=False)
        time.sleep(1.0 + 1.0)
        for _ in range(4):
            site.migrator.sync()
            site.migrate(EGRESS, "E" if site.placement[EGRESS] == "D" else "D")
            time.sleep(0.4)
        # The slow path: E's standby is detached first, so the move has none.
        site.migrator.drop("E")
        site.migrate(EGRESS, "E")
        site.migrator.wait()
        site.finish_traffic()
        site.interval()
        final = site.read_monitor()
        with site.migrator.lock:
            buckets = sum(site.migrator.counter(EGRESS, "histogram", (site.slice_id << 4) | b)[0] for b in range(16))
            m = site.migrator.maps(site.placement[EGRESS])
            flows = m.dump(m.name_ending("lb_flows"))
        sent = site.sent_urllc() + int(site.traffic_output["gap"])
        reports = list(site.migrations)
        costs = [switch_cost(r, site.truth) for r in reports]

    print(f"\n{len(reports)} migrations: switch ms {[round(r.switch_ms, 2) for r in reports]}, "
          f"standby {[r.standby for r in reports]}, gap ms {[round(c.gap_ms, 2) for c in costs]}")
    assert [r.standby for r in reports] == [True] * 4 + [False]
    # No probe lost, at the switches or anywhere: make before break.
    assert len(site.truth) == sent
    assert all(c.lost_after_switch == 0 and c.lost == 0 and c.probes_sent > 100 for c in costs)
    # The NF state is whole after five moves and four merges: the sink's count and its
    # histogram each saw every probe once (the oracle: the receiver's records).
    assert final.delay_count == len(site.truth) == buckets
    # Flow affinity: every flow one backend, and the affinity register holds the flows.
    backends = defaultdict(set)
    for r in site.truth:
        backends[r.flow].add(r.backend)
    assert all(len(b) == 1 for b in backends.values())
    assert np.count_nonzero(np.frombuffer(flows, dtype="<u8")) >= len(backends) - 1


def test_reactive_policy_migrates_off_the_congested_node(tmp_path):
    """The orchestrator's reactive policy, unchanged, moves the egress stage off node D
    (behind the rack uplink the eMBB bursts queue) once the monitor reports a violation:
    the testbed's ``link_ms`` carries the measured queueing, so Algorithm 1 sees the gain."""
    from mantra6g.testbed.run import run_policy
    from mantra6g.testbed.site import SiteConfig

    _root()
    # Bursts from the start (seed 1's first on-period begins within the first seconds).
    r = run_policy("reactive", 10.0, 1, tmp_path, config=SiteConfig(embb_on_s=1.0, embb_off_s=1.0),
                   prefix=f"mtr{os.getpid() % 1000}")
    print(f"\n{r}")
    assert r.migrations >= 1
    assert r.received <= r.sent  # no duplicates (the bridge never floods a migration's target)
    assert r.received >= 0.8 * r.sent
    assert r.lost_after_switch == 0
    assert r.embb_offered_mbit > 0 and 0 < r.embb_delivered_mbit <= r.embb_offered_mbit


def test_noisy_neighbours_hurt_until_the_chain_is_isolated(tmp_path):
    """Each stage's XDP runs in its interface's NAPI kernel thread. CPU-bound neighbours
    on the shared node compete with it for the cores until :meth:`Site.isolate` pins it to
    the reserved core at real-time priority and fences the neighbours off that core."""
    from mantra6g.testbed.chain import EGRESS, INGRESS, STAGES
    from mantra6g.testbed.site import RESERVED_CPU, Site, SiteConfig

    _root()
    config = SiteConfig(embb_rate_pps=0.0, noisy_neighbours=4, gap_probe_pps=0.0, seed=5)
    with Site(config, tmp_path, prefix=f"mti{os.getpid() % 1000}") as site:
        site.deploy_chain({INGRESS: "A", EGRESS: "E"})
        site.start_noise()
        start = site.start_traffic(8.0, embb=False)
        time.sleep(max(0.0, start + 4.0 - time.time()))
        isolated_at = time.time_ns()
        for stage in STAGES:
            site.isolate(stage, True)
        threads = [pid for pids in site._napi.values() for pid in pids]
        assert len(threads) >= 2
        for pid in threads:
            assert os.sched_getaffinity(pid) == {RESERVED_CPU}
            assert os.sched_getscheduler(pid) == os.SCHED_FIFO
        assert all(RESERVED_CPU not in os.sched_getaffinity(p.pid) for p in site.noise)
        site.finish_traffic()

    def share_over_sla(records):
        return sum(r.delay_ms > 1.0 for r in records) / max(1, len(records))

    before = share_over_sla([r for r in site.truth if r.sent_ns < isolated_at - 100_000_000])
    after = share_over_sla([r for r in site.truth if r.sent_ns > isolated_at + 100_000_000])
    print(f"\nURLLC probes over 1 ms with 4 noisy neighbours: {before:.1%} before isolation, {after:.2%} after")
    # How much 4 neighbours hurt depends on what else the machine runs (3-10 % of the
    # probes here, less when other load already shares the cores); isolation must take
    # nearly all of it away.
    assert before > 0.01
    assert after < before / 5

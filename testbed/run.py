"""``mantra testbed run`` and ``mantra testbed compare``: the orchestrator's policies,
unchanged, driving the real site; a report of what the monitor and the receivers saw."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mantra6g import output
from mantra6g.errors import MantraError

POLICIES = ("static", "reactive", "predictive")


@dataclass(frozen=True)
class RunSummary:
    """One policy on one seed."""

    policy: str
    seed: int
    duration_s: float
    sla_ms: float  # the URLLC latency SLA the violations are counted against
    sent: int
    received: int
    violation_monitor: float  # share of intervals whose monitor mean exceeds the SLA
    violation_truth: float  # share of received packets above the SLA (ground truth)
    p50_ms: float
    p99_ms: float
    migrations: int
    migration_lost: int
    migration_lost_after_switch: int  # of those, sent after the switch (the move's own loss)
    migration_gap_ms: float  # longest delivery gap during a migration window
    monitor_error_ms: float  # mean |truth - monitor| per interval
    control_loop_ms: float  # observation -> migration applied (mean; 0 if none)
    embb_offered_mbit: float  # the eMBB bulk's payload sent, over the run
    embb_delivered_mbit: float  # what its chain (policer, router) delivered to the sink


def run_policy(policy: str, duration_s: float, seed: int, workdir: Path, interval_s: float = 0.5,
               config=None, prefix: str = "mtbrun") -> RunSummary:
    """Build the site, run ``policy`` for ``duration_s`` of traffic, tear everything down."""
    from mantra6g.orchestrator.controller import Controller, run
    from mantra6g.orchestrator.forecast import make_forecaster
    from mantra6g.orchestrator.policy import PolicyConfig
    from mantra6g.testbed.infra import MIGRATION_COST, TestbedInfra
    from mantra6g.testbed.chain import EGRESS
    from mantra6g.testbed.site import Site, SiteConfig
    from mantra6g.testbed.traffic import BULK_BYTES

    if policy not in POLICIES:
        raise MantraError(f"unknown policy '{policy}'; choose from {', '.join(POLICIES)}")
    if os.geteuid() != 0:
        raise MantraError("the testbed needs root (namespaces, XDP): run it with sudo")
    config = _with_seed(config or SiteConfig(), seed)
    # Short runs: a cooldown of a few intervals, the Holt forecaster with its default
    # smoothing (no training run on a live site).
    pc = PolicyConfig(cooldown=6, budget=1, budget_interval=6, epsilon_ms=0.2)
    forecaster = make_forecaster("holt", window=6) if policy == "predictive" else None
    ctl = Controller(policy, pc, MIGRATION_COST, forecaster)
    with Site(config, workdir, prefix=prefix) as site:
        infra = TestbedInfra(site, duration_s, interval_s)
        site.deploy_chain(infra.initial_placement(pc))  # where the orchestrator puts it
        site.deploy_embb()
        if policy != "static":  # the stage the policies move, on every other spare node
            site.prebuild(EGRESS, [n.name for n in config.nodes if n.role == "spare"])
        site.start_noise()
        site.start_traffic(duration_s)
        run(infra, ctl)
        time.sleep(1.5)
        site.interval()
        sent = site.sent_urllc() or 0
        bulk_sent, _, bulk_bytes = site.embb_delivery() or (0, 0, 0)
        losses = [site.migration_loss(r) for r in site.migrations]
        acc = site.accuracy()
        excluded = [(r.started, r.finished + interval_s) for r in site.migrations]
        errs = [abs(a.truth_mean_ms - a.monitor_mean_ms) for a in acc if not any(lo <= a.time <= hi for lo, hi in excluded)]
        delays = np.array([r.delay_ms for r in site.truth]) if site.truth else np.zeros(1)
        monitored = [st.monitor_mean_ms for _, st in infra.intervals if st.monitor_mean_ms is not None]
        return RunSummary(
            policy, seed, duration_s, config.urllc_sla_ms, sent, len(site.truth),
            float(np.mean([m > config.urllc_sla_ms for m in monitored])) if monitored else 0.0,
            float(np.mean(delays > config.urllc_sla_ms)),
            float(np.percentile(delays, 50)), float(np.percentile(delays, 99)),
            len(site.migrations), sum(x.lost for x in losses), sum(x.lost_after_switch for x in losses),
            max((x.gap_ms for x in losses), default=0.0),
            float(np.mean(errs)) if errs else float("nan"),
            float(np.mean(infra.action_latency_s) * 1e3) if infra.action_latency_s else 0.0,
            bulk_sent * BULK_BYTES * 8 / duration_s / 1e6, bulk_bytes * 8 / duration_s / 1e6,
        )


def _with_seed(config, seed: int):
    from dataclasses import replace

    return replace(config, seed=seed)


def table(rows: list[RunSummary]) -> str:
    """A Markdown table, one row per run."""
    head = ("| policy | seed | URLLC sent | received | violations (monitor, intervals) | violations (truth, packets) "
            "| P50 ms | P99 ms | migrations | lost in migrations | of those after switch | longest gap ms | monitor error ms | loop ms "
            "| eMBB Mbit/s offered → delivered |")
    lines = [head, "|" + " --- |" * 15]
    for r in rows:
        lines.append(f"| {r.policy} | {r.seed} | {r.sent} | {r.received} | {r.violation_monitor:.1%} | "
                     f"{r.violation_truth:.2%} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.migrations} | "
                     f"{r.migration_lost} | {r.migration_lost_after_switch} | {r.migration_gap_ms:.1f} | {r.monitor_error_ms:.3f} | {r.control_loop_ms:.0f} | "
                     f"{r.embb_offered_mbit:.1f} → {r.embb_delivered_mbit:.1f} |")
    return "\n".join(lines)


def compare(policies: list[str], seeds: list[int], duration_s: float, out: Path, config=None) -> list[RunSummary]:
    """Every policy on every seed (same seeded traffic per seed); JSON, Markdown and a plot in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in seeds:
        for policy in policies:
            rows.append(run_policy(policy, duration_s, seed, out / f"{policy}-{seed}", config=config))
            # Progress on stderr; the whole table is the command's output.
            print("done: " + table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    output.write_text(out / "results.json", json.dumps([asdict(r) for r in rows], indent=1))
    output.write_text(out / "results.md", table(rows) + "\n")
    with output.replacing(out / "violations.png") as tmp:
        _plot(rows, tmp)
    return rows


def _plot(rows: list[RunSummary], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = list(dict.fromkeys(r.policy for r in rows))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, key in enumerate(("violation_truth", "violation_monitor")):
        vals = [np.mean([getattr(r, key) for r in rows if r.policy == p]) for p in pols]
        ax.bar(np.arange(len(pols)) + i * 0.4, vals, 0.4, label=key.replace("_", " "))
    ax.set_xticks(np.arange(len(pols)) + 0.2, pols)
    ax.set_ylabel(f"URLLC SLA violations ({rows[0].sla_ms:g} ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

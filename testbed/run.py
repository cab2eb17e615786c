"""``mantra testbed run|compare|train``: the orchestrator's policies, unchanged, driving the
real site; a report of what the monitor and the receivers saw.

* :func:`run_policy` builds the site, runs one policy on one seed and returns a
  :class:`RunSummary` (and keeps the run's telemetry store and trace in its folder);
* :func:`train` runs the training policies (static, reactive) on training seeds and the
  calibration seeds, fits the forecasters on the former and their violation risk on the
  latter - never on evaluation seeds;
* :func:`compare` runs every policy on every scenario and seed and writes the report:
  per-run rows, per (scenario, policy) means with 95 % intervals, the unavoidable share
  (the floor) and the share of the achievable reduction, latency CDFs and time series.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from mantra6g import output
from mantra6g.errors import MantraError

TRAIN_SEED, CALIBRATION_SEED = 900_001, 950_001  # testbed training / calibration runs (never evaluated)
TRAIN_POLICIES = ("static", "reactive")
TESTBED_FORECASTERS = ("holt", "lstm", "lstm-nocontext")


def policy_config(config) -> "PolicyConfig":  # noqa: F821 - lazy import
    """The policy engine's knobs on the testbed (the same for every policy): a control
    interval of ``config.interval_s``; a chain moves at most once per 2 s; forecasts look
    two intervals ahead; a move's benefit is counted over 2 s; a migration costs 0.3
    violating intervals."""
    from mantra6g.orchestrator.policy import PolicyConfig

    per_s = 1.0 / config.interval_s
    # A migration here costs no probe and well under a millisecond (bench/testbed.py): the
    # stated cost (in violating intervals) only keeps the policy from moving on noise.
    return PolicyConfig(epsilon_ms=0.2, horizon=2, budget=1, budget_interval=int(round(2 * per_s)),
                        cooldown=int(round(2 * per_s)), warmup=10, benefit_steps=int(round(2 * per_s)),
                        migration_cost=0.3)


@dataclass(frozen=True)
class RunSummary:
    """One policy on one seed of one scenario."""

    scenario: str
    policy: str  # as the report labels it (e.g. predictive/lstm@2)
    seed: int
    duration_s: float
    sla_ms: float  # the URLLC latency SLA the violations are counted against
    sent: int  # Poisson probes
    received: int
    violation_monitor: float  # share of intervals whose monitor mean exceeds the SLA
    violation_truth: float  # share of received Poisson probes above the SLA (ground truth)
    floor_truth: float  # share of probes above the SLA no policy could avoid (warm-up; nowhere to go)
    p50_ms: float
    p99_ms: float
    migrations: int
    lost_after_switch: int  # probes (gap and Poisson) sent after a switch that never arrived
    lost_in_windows: int  # all probes of the migration windows that never arrived
    gap_ms: float  # longest network-caused delivery gap of the gap probes at a switch
    raw_gap_ms: float  # longest interval between gap-probe deliveries around a switch
    loop_ms: tuple[float, ...]  # per migration: sample -> decision -> applied action
    switch_ms: tuple[float, ...]  # per migration: decision -> traffic switched
    decision_ms_p99: float  # the controller's step (sample -> decision), every interval
    monitor_error_ms: float  # mean |truth - monitor| per interval
    embb_offered_mbit: float  # the eMBB senders' payload, over the run
    embb_delivered_mbit: float  # what the eMBB chains delivered to the sinks
    brier: float  # of the risk forecasts (NaN: none)
    standby: bool
    workdir: str = ""  # the run's folder (telemetry.sqlite, trace.json)

    @property
    def loop_ms_max(self) -> float:
        return max(self.loop_ms, default=0.0)


# ------------------------------------------------------------------ models


@dataclass
class TestbedModels:
    """The forecasters (fitted on training runs) and their calibrated risk (calibration runs)."""

    __test__ = False

    forecasters: dict = field(default_factory=dict)
    risks: dict = field(default_factory=dict)


def _key(configs: Sequence, duration_s: float, seeds: int) -> str:
    # The migration path does not change what the models learn from (the ablation reuses them).
    doc = [asdict(replace(c, seed=0, standby=True)) for c in configs] + [duration_s, seeds, TESTBED_FORECASTERS, 4]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train(configs: Sequence, out: Path, seeds: int = 2, duration_s: float = 40.0, log=sys.stderr) -> TestbedModels:
    """Training runs (static and reactive, ``seeds`` training seeds per scenario) and
    calibration runs (one seed fewer, at least one); their telemetry stores are kept in
    ``out/train`` and ``out/calibrate``; the fitted models in ``out/models-<hash>.pkl``."""
    from mantra6g.orchestrator.experiment import lstm_config
    from mantra6g.orchestrator.features import run_series
    from mantra6g.orchestrator.forecast import ViolationRisk, make_forecaster
    from mantra6g.orchestrator.scenario import Scenario
    from mantra6g.orchestrator.store import TelemetryStore

    import torch

    torch.set_num_threads(1)
    path = out / f"models-{_key(configs, duration_s, seeds)}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    series = {"train": [], "calibrate": []}
    for kind, first, n in (("train", TRAIN_SEED, seeds), ("calibrate", CALIBRATION_SEED, max(1, seeds - 1))):
        for ci, config in enumerate(configs):
            for seed in range(first, first + n):
                for policy in TRAIN_POLICIES:
                    work = out / kind / f"{ci}-{policy}-{seed}"
                    r = run_policy(policy, duration_s, seed, work, config=config, prefix="mtbtrain")
                    print(f"{kind}: scenario {ci} {policy} seed {seed}: {r.violation_truth:.2%} over SLA, "
                          f"{r.migrations} migration(s)", file=log, flush=True)
                    with TelemetryStore(work / "telemetry.sqlite") as store:
                        from mantra6g.testbed.infra import CHAIN

                        chains = [c for c in _chains(config) if c.name == CHAIN]
                        series[kind] += run_series(store, chains, config.day_s)
    sc = Scenario()
    cfg = lstm_config(sc)
    cfg = replace(cfg, samples=sum(len(s.latency) for s in series["train"]))
    models = TestbedModels()
    for name in TESTBED_FORECASTERS:
        model = make_forecaster(name, sc.forecast.window, lstm=cfg)
        model.fit(series["train"])
        risk = ViolationRisk(model, policy_config(configs[0]).horizon)
        risk.fit(series["calibrate"])
        models.forecasters[name], models.risks[name] = model, risk
    out.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(models))
    return models


def _chains(config):
    """The URLLC chain's spec as the testbed's infrastructure describes it (no site needed)."""
    from mantra6g.orchestrator.infra import ChainSpec, SliceKind, VnfSpec
    from mantra6g.testbed.infra import CHAIN, VNF_MEMORY_MB, VNF_STAGE

    vnfs = tuple(VnfSpec(v, CHAIN, SliceKind.URLLC, 1.0, VNF_MEMORY_MB, 0.0) for v in VNF_STAGE)
    return [ChainSpec(CHAIN, SliceKind.URLLC, vnfs, config.urllc_sla_ms)]


# ------------------------------------------------------------------ one run


def run_policy(policy: str, duration_s: float, seed: int, workdir: Path, config=None, prefix: str = "mtbrun",
               models: TestbedModels | None = None, forecaster: str | None = None,
               scenario: str = "") -> RunSummary:
    """Build the site, run ``policy`` for ``duration_s`` of traffic, tear everything down.
    The run's telemetry store (``telemetry.sqlite``) and trace (``trace.json``) stay in
    ``workdir``."""
    from mantra6g.orchestrator.controller import Controller, run
    from mantra6g.orchestrator.policy import PolicyError, PolicySpec
    from mantra6g.orchestrator.store import TelemetryStore
    from mantra6g.testbed.chain import EGRESS
    from mantra6g.testbed.infra import MIGRATION_COST, TestbedInfra
    from mantra6g.testbed.migration import switch_cost
    from mantra6g.testbed.site import Site, SiteConfig

    try:
        spec = PolicySpec.parse(policy)
    except PolicyError as exc:
        raise MantraError(str(exc)) from None
    if os.geteuid() != 0:
        raise MantraError("the testbed needs root (namespaces, XDP): run it with sudo")
    config = replace(config or SiteConfig(), seed=seed)
    pc = policy_config(config)
    kind = spec.kind
    risk = fc = None
    if kind.needs_forecaster:
        if models is None:
            raise MantraError(f"policy {spec} needs trained models (mantra testbed train)")
        name = forecaster or "lstm"
        if name not in models.forecasters:
            raise MantraError(f"no trained forecaster '{name}'; trained: {', '.join(models.forecasters)}")
        fc, risk = models.forecasters[name], models.risks[name]
    if fc is not None:
        import torch

        torch.set_num_threads(1)  # a forecast of one chain: more threads only contend (2 shared cores)
        fc.predict(np.ones((1, fc.window)), pc.horizon, None)  # warm up: the first call allocates
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "telemetry.sqlite").unlink(missing_ok=True)
    (workdir / "trace.json").unlink(missing_ok=True)  # written when the run is complete (--resume reads it)
    store = TelemetryStore(workdir / "telemetry.sqlite")
    ctl = Controller(spec, pc, MIGRATION_COST, fc, store=store, risk=risk if kind.trigger == "risk" else None,
                     day_s=config.day_s)
    dynamic = kind.trigger != "none"
    with Site(config, workdir, prefix=prefix) as site:
        infra = TestbedInfra(site, duration_s)
        site.deploy_chain(infra.initial_placement(pc, balanced=kind.placement == "balanced"))
        site.deploy_embb()
        if dynamic:  # the stage the policies move, on every other node that may take it
            spares = [n.name for n in config.nodes if n.role == "spare" and n.name not in site.placement.values()]
            if config.standby:
                site.standby(EGRESS, spares)
            else:
                site.prebuild(EGRESS, spares)
        site.start_noise()
        site.start_traffic(duration_s)
        trace = run(infra, ctl)
        site.migrator.wait()
        site.finish_traffic()
        site.interval()
        acc = site.accuracy()
        costs = [switch_cost(r, site.truth) for r in site.migrations]
        excluded = [(r.started, (r.finished or r.switched) + infra.interval_s) for r in site.migrations]
        errs = [abs(a.truth_mean_ms - a.monitor_mean_ms) for a in acc if not any(lo <= a.time <= hi for lo, hi in excluded)]
        probes = [r for r in site.truth if not r.gap_probe]
        delays = np.array([r.delay_ms for r in probes]) if probes else np.zeros(1)
        sla = config.urllc_sla_ms
        blocked = _nowhere_to_go(store, config, sla, pc.warmup * infra.interval_s, infra.interval_s)
        early = [r.delay_ms > sla for r in probes if _in(blocked, r.sent_ns / 1e9 - site.traffic_start)]
        monitored = [st.monitor_mean_ms for _, st in infra.intervals if st.monitor_mean_ms is not None]
        embb = site.embb_delivery() or (0.0, 0.0)
        label = str(spec) if fc is None else f"{spec.name}/{fc.name}" + (f"@{spec.value:g}" if spec.value else "")
        brier = _brier(trace, infra, sla, pc.horizon)
        summary = RunSummary(
            scenario, label, seed, duration_s, sla, site.sent_urllc() or 0, len(probes),
            float(np.mean([m > sla for m in monitored])) if monitored else 0.0,
            float(np.mean(delays > sla)), len([e for e in early if e]) / max(1, len(probes)),
            float(np.percentile(delays, 50)), float(np.percentile(delays, 99)),
            len(site.migrations), sum(c.lost_after_switch for c in costs), sum(c.lost for c in costs),
            max((c.gap_ms for c in costs), default=0.0), max((c.raw_gap_ms for c in costs), default=0.0),
            tuple(t.total_ms for t in infra.timings), tuple(t.apply_ms for t in infra.timings),
            float(np.percentile(trace.decision_s, 99) * 1e3) if trace.decision_s else 0.0,
            float(np.mean(errs)) if errs else float("nan"),
            embb[0] / duration_s, embb[1] / duration_s, brier, config.standby, str(workdir),
        )
        _write_trace(workdir / "trace.json", site, infra, trace, summary, config)
    store.close()
    return summary


def _nowhere_to_go(store, config, sla_ms: float, warmup_s: float, interval_s: float) -> list[tuple[float, float]]:
    """The time spans (seconds from the traffic's start) in which no policy could have
    kept the URLLC probes within the SLA: the warm-up (no dynamic policy may act yet; all
    start from the same placement), and every interval in which the path into *every*
    spare node (where the egress stage can go) had more than the SLA of queueing,
    measured by the kernel (the tbf backlog over the rate, the interval's mean)."""
    spans = [(-math.inf, warmup_s)]
    hosts = [n.name for n in config.nodes if n.role == "spare"]  # the ingress holds the urllc node
    ingress = next((n.name for n in config.nodes if n.role == "urllc"), "gen")
    by_time: dict[float, dict[str, float]] = {}
    for x in store.link_samples():
        by_time.setdefault(x.time, {})[x.link] = x.queueing_ms
    for t, q in sorted(by_time.items()):
        if hosts and all(sum(q.get(link, 0.0) for link in config.inbound(n, ingress)) > sla_ms for n in hosts):
            spans.append((t - interval_s, t))
    return spans


def _in(spans: list[tuple[float, float]], t: float) -> bool:
    return any(lo < t <= hi for lo, hi in spans)


def _brier(trace, infra, sla: float, horizon: int) -> float:
    """Brier score of the risk forecasts against whether an interval within the horizon
    broke the SLA (the monitor's interval means: what the controller acts on)."""
    doc = {"risk": [None if np.isnan(r[0]) else float(r[0]) for r in trace.risk],
           "monitor_ms": [st.monitor_mean_ms for _, st in infra.intervals]}
    pairs = _risk_pairs(doc, sla, horizon)
    return float(np.mean([(p - y) ** 2 for p, y in pairs])) if pairs else float("nan")


def _site_doc(config) -> dict:
    """The site a run ran on, as its trace records it (JSON values)."""
    return json.loads(json.dumps(asdict(config), default=str))


def _write_trace(path: Path, site, infra, trace, summary: RunSummary, config) -> None:
    """What the plots need: per interval the monitor's mean, the forecast and its band, the
    risk; the triggers and migrations; the probes' delays (thinned). Also the run's
    summary, the site and the machine's load when it ended (what ``--resume`` checks and
    reports)."""
    start = site.traffic_start
    t = [x for x, _ in infra.intervals]
    probes = [r for r in site.truth if not r.gap_probe]
    doc = {
        "summary": asdict(summary),
        "site": _site_doc(config),
        "machine": machine_load(),
        "interval_s": infra.interval_s,
        "t": t,
        "monitor_ms": [st.monitor_mean_ms for _, st in infra.intervals],
        "forecast_ms": [None if np.isnan(f[0, 0]) else float(f[0, 0]) for f in trace.forecasts],
        "band_ms": [None if np.isnan(b[0, 0]) else float(b[0, 0]) for b in trace.band],
        "risk": [None if np.isnan(r[0]) else float(r[0]) for r in trace.risk],
        "triggered": [t[s] for s, _ in trace.triggered if s < len(t)],
        "migrations": [{"t": m.switched - start, "source": m.source, "target": m.target, "standby": m.standby}
                       for m in site.migrations],
        "probes": [[(r.sent_ns / 1e9 - start), r.delay_ms] for r in probes],
    }
    path.write_text(json.dumps(doc))


# ------------------------------------------------------------------ many runs


def table(rows: list[RunSummary]) -> str:
    """A Markdown table, one row per run."""
    head = ("| scenario | policy | seed | URLLC sent | received | violations (monitor, intervals) | violations (truth, packets) "
            "| unavoidable | P50 ms | P99 ms | migrations | lost after switch | gap at switch ms | loop ms (max) "
            "| monitor error ms | Brier | eMBB Mbit/s offered → delivered |")
    lines = [head, "|" + " --- |" * 17]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.policy} | {r.seed} | {r.sent} | {r.received} | {r.violation_monitor:.1%} | "
                     f"{r.violation_truth:.2%} | {r.floor_truth:.2%} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.migrations} | "
                     f"{r.lost_after_switch} | {r.gap_ms:.2f} | {r.loop_ms_max:.1f} | {r.monitor_error_ms:.3f} | "
                     f"{r.brier:.3f} | {r.embb_offered_mbit:.1f} → {r.embb_delivered_mbit:.1f} |")
    return "\n".join(lines)


def _ci(values: Sequence[float]) -> tuple[float, float]:
    from scipy import stats

    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def _fmt(mean: float, half: float, scale: float = 1.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean * scale:.{digits}f}" + ("" if math.isnan(half) else f" ± {half * scale:.{digits}f}")


def summary_table(rows: list[RunSummary], baseline: str = "reactive") -> str:
    """Per scenario and policy, means over seeds with 95 % Student-t intervals; the
    per-seed reduction against ``baseline`` and the share of the achievable reduction
    (baseline - policy) / (baseline - unavoidable)."""
    head = ("| scenario | policy | seeds | violations (truth) % | unavoidable % | vs reactive % | of achievable % "
            "| P99 ms | migrations | lost after switch | gap at switch ms (max) | loop ms p99 | Brier |")
    lines = [head, "|" + " --- |" * 13]
    by = {}
    for r in rows:
        by.setdefault((r.scenario, r.policy), []).append(r)
    for (scenario, policy), rs in by.items():
        base = {r.seed: r for r in by.get((scenario, baseline), [])}
        red, share = [], []
        for r in rs:
            b = base.get(r.seed)
            if b is None or policy == baseline:
                continue
            if b.violation_truth > 0:
                red.append(100 * (1 - r.violation_truth / b.violation_truth))
            if b.violation_truth - b.floor_truth > 0:
                share.append(100 * (b.violation_truth - r.violation_truth) / (b.violation_truth - b.floor_truth))
        loops = [x for r in rs for x in r.loop_ms]
        cells = [scenario, policy, str(len(rs)), _fmt(*_ci([r.violation_truth for r in rs]), 100),
                 _fmt(*_ci([r.floor_truth for r in rs]), 100), _fmt(*_ci(red), 1, 0) if red else "—",
                 _fmt(*_ci(share), 1, 0) if share else "—", _fmt(*_ci([r.p99_ms for r in rs])),
                 _fmt(*_ci([r.migrations for r in rs]), 1, 1), str(sum(r.lost_after_switch for r in rs)),
                 f"{max(r.gap_ms for r in rs):.2f}" if loops else "—",
                 f"{np.percentile(loops, 99):.1f}" if loops else "—", _fmt(*_ci([r.brier for r in rs]), 1, 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Job:
    """One run of a comparison: a policy (with its forecaster) on one scenario and seed."""

    scenario: str
    config: object
    policy: str
    forecaster: str | None
    seed: int


def jobs(scenarios: Sequence[tuple[str, object]], policies: Sequence[str], forecasters: Sequence[str],
         seeds: Sequence[int]) -> list[Job]:
    from mantra6g.orchestrator.policy import PolicySpec

    out = []
    for name, config in scenarios:
        for seed in seeds:
            for p in policies:
                if PolicySpec.parse(p).kind.needs_forecaster:
                    out += [Job(name, config, p, f, seed) for f in forecasters]
                else:
                    out.append(Job(name, config, p, None, seed))
    return out


def finished_run(work: Path, job: Job, duration_s: float) -> RunSummary | None:
    """The summary of a complete earlier run of ``job`` in ``work`` (its ``trace.json``),
    or None when there is none or it ran on another site, seed, duration or migration
    path. A trace from before the site was recorded in it is checked on its summary only."""
    try:
        doc = json.loads((work / "trace.json").read_text())
        s = doc["summary"]
        ran = (s["scenario"], s["seed"], s["duration_s"], s["standby"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ran != (job.scenario, job.seed, duration_s, job.config.standby):
        return None
    if "site" in doc and doc["site"] != _site_doc(replace(job.config, seed=job.seed)):
        return None
    return RunSummary(**{**s, "loop_ms": tuple(s["loop_ms"]), "switch_ms": tuple(s["switch_ms"])})


def compare(scenarios: Sequence[tuple[str, object]], policies: list[str], seeds: list[int], duration_s: float,
            out: Path, forecasters: Sequence[str] = ("lstm",), train_seeds: int = 2, log=sys.stderr,
            resume: bool = False) -> list[RunSummary]:
    """Every policy on every scenario and seed (same seeded traffic per seed); JSON,
    Markdown and plots in ``out``. Models are trained first when a policy needs them.
    ``resume``: a job whose folder holds a complete run of it (:func:`finished_run`) is
    not run again; its summary is reused."""
    from mantra6g.orchestrator.policy import PolicySpec

    out.mkdir(parents=True, exist_ok=True)
    models = None
    if any(PolicySpec.parse(p).kind.needs_forecaster for p in policies):
        models = train([c for _, c in scenarios], out / "models", train_seeds, duration_s, log)
    rows = []
    started = time.monotonic()
    load = [machine_load()]
    todo = jobs(scenarios, policies, forecasters, seeds)
    reused = 0
    for i, job in enumerate(todo):
        work = out / job.scenario / f"{job.policy}{'-' + job.forecaster if job.forecaster else ''}-{job.seed}"
        done = finished_run(work, job, duration_s) if resume else None
        rows.append(done or run_policy(job.policy, duration_s, job.seed, work, config=job.config, models=models,
                                       forecaster=job.forecaster, scenario=job.scenario))
        if done:
            reused += 1
        # Progress on stderr; the tables are the command's output.
        print(f"[{i + 1}/{len(todo)}, {time.monotonic() - started:.0f} s] " + table(rows[-1:]).splitlines()[-1],
              file=log, flush=True)
    load.append(machine_load())
    elapsed = time.monotonic() - started
    output.write_text(out / "results.json", json.dumps({"machine": load, "elapsed_s": elapsed, "reused": reused,
                                                        "runs": [asdict(r) for r in rows]}, indent=1))
    output.write_text(out / "results.md", report(rows, load, elapsed, reused=reused))
    plot(rows, out)
    return rows


def machine_load() -> dict:
    """The machine's load when a comparison starts or ends (it is shared: the figures
    depend on it)."""
    one, five, fifteen = (float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "load_1m": one,
            "load_5m": five, "load_15m": fifteen}


def report(rows: list[RunSummary], load: list[dict], elapsed_s: float, command: str = "", reused: int = 0) -> str:
    """The comparison as Markdown: the command, the machine's load, the summary per
    scenario and policy, one row per run."""
    parts = []
    if command:
        parts += ["Generated by (from the repository root, after `make setup`, as root):", "", "```",
                  command, "```", ""]
    ended = [_run_load(r) for r in rows]
    ended = [x for x in ended if x is not None]
    parts += [f"* Machine: {load[0]['cpus']} CPUs, shared; load average (1 min / 5 min) "
              + ", ".join(f"{x['load_1m']:.1f} / {x['load_5m']:.1f} at {x['time']}" for x in load)
              + (f"; 1-min load at the end of each run {min(ended):.1f}–{max(ended):.1f} ({len(ended)} runs recorded it)"
                 if ended else "")
              + f"; wall time of this invocation {elapsed_s / 60:.0f} min"
              + (f"; {reused} of {len(rows)} runs reused from earlier invocations into the same folder (`--resume`; "
                 "the load range above covers every run that recorded it)" if reused else "") + ".", "",
              summary_table(rows), "", "Every run:", "", table(rows), ""]
    return "\n".join(parts)


def _run_load(r: RunSummary) -> float | None:
    """The 1-min load average when run ``r`` ended, if its trace recorded it."""
    try:
        return float(json.loads((Path(r.workdir) / "trace.json").read_text())["machine"]["load_1m"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot(rows: list[RunSummary], out: Path) -> list[Path]:
    """Per scenario: latency CCDFs of every policy (all seeds) and the first seed's time
    series (monitor, forecast and band, triggers, migrations) of every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario in dict.fromkeys(r.scenario for r in rows):
        mine = [r for r in rows if r.scenario == scenario]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for policy in dict.fromkeys(r.policy for r in mine):
            delays = []
            for r in mine:
                if r.policy == policy:
                    delays += [d for _, d in _trace(out, r)["probes"]]
            if delays:
                v = np.sort(delays)
                ax.plot(v, 1 - np.arange(len(v)) / len(v), lw=1, label=policy)
        ax.axvline(mine[0].sla_ms, color="red", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("URLLC one-way delay, ground truth (ms)")
        ax.set_ylabel("share of probes above")
        ax.set_title(f"{scenario}: URLLC delay CCDF, all seeds", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{scenario}-cdf.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        seed = min(r.seed for r in mine)
        first = [r for r in mine if r.seed == seed]
        fig, axes = plt.subplots(len(first), 1, figsize=(11, 2.3 * len(first)), sharex=True, squeeze=False)
        for ax, r in zip(axes[:, 0], first):
            tr = _trace(out, r)
            pts = np.array(tr["probes"]) if tr["probes"] else np.zeros((0, 2))
            ax.plot(pts[:, 0], pts[:, 1], ".", ms=1, color="grey", alpha=0.5, label="probes (truth)")
            ax.plot(tr["t"], [np.nan if m is None else m for m in tr["monitor_ms"]], lw=0.8, label="monitor")
            f = np.array([np.nan if x is None else x for x in tr["forecast_ms"]])
            b = np.array([np.nan if x is None else x for x in tr["band_ms"]])
            tt = np.array(tr["t"]) + tr["interval_s"]
            if not np.all(np.isnan(f)):
                ax.plot(tt, f, lw=0.8, color="purple", label="forecast")
            if not np.all(np.isnan(b)):
                ax.fill_between(tt, f, b, color="purple", alpha=0.2, lw=0, label="95 % band")
            ax.axhline(r.sla_ms, color="red", lw=0.8)
            if tr["triggered"]:
                ax.plot(tr["triggered"], [r.sla_ms * 5] * len(tr["triggered"]), "v", ms=4, color="black", label="trigger")
            for m in tr["migrations"]:
                ax.axvline(m["t"], color="green", lw=1, ls="--")
            ax.set_yscale("log")
            ax.set_ylim(0.005, 30)
            ax.set_ylabel("ms")
            ax.set_title(f"{r.policy}, seed {seed}: {r.violation_truth:.2%} of probes over {r.sla_ms:g} ms, "
                         f"{r.migrations} migration(s) (dashed)", fontsize=9)
        axes[0, 0].legend(fontsize=7, ncol=6, loc="upper left")
        axes[-1, 0].set_xlabel("s since the traffic's start")
        fig.tight_layout()
        path = out / f"{scenario}-timeseries.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        curves = {}
        for policy in dict.fromkeys(r.policy for r in mine):
            pairs = [p for r in mine if r.policy == policy for p in _risk_pairs(_trace(out, r), r.sla_ms)]
            if pairs:
                curves[policy] = _reliability(pairs)
        if curves:
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
            for policy, c in curves.items():
                ax.plot([a for a, _, _ in c], [b for _, b, _ in c], marker="o", ms=3, lw=1, label=policy)
            ax.set_xlabel("predicted P(an interval within the horizon breaks the SLA)")
            ax.set_ylabel("observed frequency (monitor)")
            ax.set_title(f"{scenario}: reliability of the risk forecasts (closed loop)", fontsize=9)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{scenario}-reliability.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def _risk_pairs(trace: dict, sla_ms: float, horizon: int = 2) -> list[tuple[float, float]]:
    """(predicted risk, whether one of the next ``horizon`` intervals broke the SLA)."""
    risk, seen = trace.get("risk", []), trace.get("monitor_ms", [])
    over = [m is not None and m > sla_ms for m in seen]
    return [(p, float(any(over[i + 1:i + 1 + horizon]))) for i, p in enumerate(risk[:-horizon]) if p is not None]


def _reliability(pairs: list[tuple[float, float]]) -> list[tuple[float, float, int]]:
    from mantra6g.orchestrator.report import RELIABILITY_BINS

    p, y = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    idx = np.digitize(p, RELIABILITY_BINS) - 1
    return [(float(p[idx == b].mean()), float(y[idx == b].mean()), int((idx == b).sum()))
            for b in range(len(RELIABILITY_BINS) - 1) if (idx == b).any()]


def _trace(out: Path, r: RunSummary) -> dict:
    path = Path(r.workdir) / "trace.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"probes": [], "t": [], "monitor_ms": [], "forecast_ms": [], "band_ms": [], "triggered": [],
            "migrations": [], "interval_s": 0.2}

"""The simulator behind the Infrastructure interface, the control loop and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mantra6g.cli import main
from mantra6g.orchestrator.controller import Controller, run
from mantra6g.orchestrator.experiment import run_experiment
from mantra6g.orchestrator.forecast import LastValue
from mantra6g.orchestrator.infra import InfraRejected, Infrastructure, SliceKind
from mantra6g.orchestrator.placement import queueing_ms
from mantra6g.orchestrator.report import aggregate, run_metrics
from mantra6g.orchestrator.scenario import Scenario, parse_scenario
from mantra6g.orchestrator.simulator import Simulator

SMALL = Scenario().replace(steps=120)


def test_simulator_implements_the_interface_and_is_deterministic():
    a, b = Simulator(SMALL, 3), Simulator(SMALL, 3)
    assert isinstance(a, Infrastructure)
    np.testing.assert_array_equal(a.rates, b.rates)
    assert not np.array_equal(a.rates, Simulator(SMALL, 4).rates)
    chains = a.chains()
    assert 10 <= len(chains) <= 20 and all(3 <= len(c.vnfs) <= 5 for c in chains)
    placement = a.placement().as_dict()
    for c in chains:  # everything starts on its home node
        home = {SliceKind.URLLC: "A", SliceKind.EMBB: "B", SliceKind.BEST_EFFORT: "C"}[c.slice]
        assert {placement[v.name] for v in c.vnfs} == {home}
    obs = a.observe()
    assert len(obs.vnfs) == sum(len(c.vnfs) for c in chains) and len(obs.nodes) == 5
    for i, c in enumerate(chains):  # hop latencies add up to the end-to-end truth
        total = sum(s.latency_ms for s in obs.vnfs if s.chain == c.name)
        assert total == pytest.approx(a.truth.latency[0, i])


def test_migration_switches_after_its_delay_and_costs_it():
    sc = SMALL.replace(interval_ms=0.1)  # 0.1 ms steps: a 0.19 ms migration spans 2 steps
    sim = Simulator(sc, 1)
    ctl = Controller("static", sc.policy, sc.migration)
    ctl.start(sim)
    sim.observe()
    chain = sim.chains()[0]
    vnf = chain.vnfs[0]
    from mantra6g.orchestrator.infra import MigrationDelay, MigrationPlan
    plan = MigrationPlan(vnf.name, chain.name, "A", "D", MigrationDelay(0.04, 0.1, 0.05),
                         0.5, 0.69, "test", pinned=True)
    sim.migrate(plan)
    with pytest.raises(InfraRejected):
        sim.migrate(plan)  # already in flight
    assert sim.in_flight() == [plan]
    sim.observe()
    assert sim.placement().node_of(vnf.name) == "A"  # 0.19 ms > one 0.1 ms step
    # The switch-over step carries the migration delay on top of the modelled latency.
    hops, *_ = sim._evaluate(2, sim._node_of | {vnf.name: "D"}, sim._pinned | {vnf.name})
    sim.observe()
    assert sim.placement().node_of(vnf.name) == "D" and vnf.name in sim.placement().pinned
    n = len(chain.vnfs)
    expected = max(hops[:n].sum() + sim.jitter[2, 0], 0) + 0.19
    assert sim.truth.latency[2, 0] == pytest.approx(expected)
    with pytest.raises(InfraRejected):
        sim.isolate(sim.chains()[-1].vnfs[0].name, True)  # node C cannot pin


def test_queueing_grows_with_load_and_is_capped():
    assert queueing_ms(100, 0.5) == pytest.approx(0.1)
    assert queueing_ms(100, 0.9) > 8 * queueing_ms(100, 0.5)
    assert queueing_ms(100, 5.0) == queueing_ms(100, 0.99)


QUICK_FIT = {"train_samples": 2000, "calibration_samples": 4000}  # a few short training runs


def test_policies_end_to_end_on_a_short_run():
    sc = SMALL.replace(steps=200, forecast=replace(SMALL.forecast, **QUICK_FIT))
    results = run_experiment(sc, ["static", "reactive", "predictive"], ["last"], [1], jobs=1)
    labels = [r.label for r in results]
    assert labels == ["static", "reactive", "predictive/last"]
    metrics = {r.label: run_metrics(r) for r in results}
    assert metrics["static"]["migrations"] == 0
    assert "forecast_rmse_ms" in metrics["predictive/last"]
    assert "forecast_rmse_ms" not in metrics["reactive"]
    # Static records the risk forecasts without acting on them (the open-loop check).
    assert "urllc_brier" in metrics["static"] and "urllc_brier" in metrics["predictive/last"]
    # Physics: no run is ever below its jitter floor (every VNF on one idle node).
    for r in results:
        assert np.all(r.latency >= r.floor - 1e-12)
    # Same seed, same workload: static and reactive agree until the first migration.
    first = min((m[0] for m in results[1].migrations), default=200)
    np.testing.assert_allclose(results[0].latency[:first], results[1].latency[:first])
    agg = aggregate(results)
    assert agg["static"]["urllc_violation_rate"].n == 1


def test_controller_budget_holds_in_a_run():
    sc = parse_scenario("steps: 300\npolicy: {budget: 1, budget_interval: 50, cooldown: 0}\n"
                        "traffic: {burst_rate: 0.05}\n")
    sim = Simulator(sc, 2)
    trace = run(sim, Controller("predictive-paper", sc.policy, sc.migration, LastValue(10)))
    steps = sorted(s for s, _ in trace.migrations)
    assert all(b - a >= 50 for a, b in zip(steps, steps[1:]))


def test_cli_simulate_writes_outputs(tmp_path, capsys):
    out = tmp_path / "out"
    md = tmp_path / "results.md"
    code = main(["simulate", "--seeds", "2", "--steps", "60", "--policy", "static,reactive,global",
                 "--forecaster", "ewma", "--jobs", "1", "--out", str(out), "--markdown", str(md)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "global/ewma" in printed and "reactive" in printed
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["runs"]) == 6 and doc["aggregate"]["static"]["migrations"]["n"] == 2
    assert (out / "latency.png").stat().st_size > 1000 and (out / "violations.png").exists()
    assert "mantra simulate --seeds 2" in md.read_text()


@pytest.mark.parametrize("args, words", [
    (["--policy", "magic"], "unknown policy 'magic'"),
    (["--forecaster", "lstm,prophet"], "unknown prophet"),
    (["--seeds", "0"], "at least 1 seed"),
    (["--steps", "3"], "--steps 3"),
])
def test_cli_bad_flags_exit_2_without_traceback(args, words, capsys, tmp_path):
    assert main(["simulate", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_cli_bad_scenario_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 100\npolicy:\n  budgett: 3\n")
    assert main(["simulate", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:3" in err and "did you mean 'budget'" in err


def test_the_risk_policy_acts_when_expected_violations_exceed_the_cost():
    """predictive: the calibrated expected number of violating steps over the action's
    horizon against the stated migration cost; moves sized from the point forecast."""
    from mantra6g.orchestrator.experiment import fit_models

    sc = SMALL.replace(steps=200, forecast=replace(SMALL.forecast, **QUICK_FIT))
    models = fit_models(sc, ["holt"])
    risk = models.risks["holt"]
    runs = {}
    for cost in (0.5, 50.0):
        sim = Simulator(sc, 1)
        ctl = Controller(f"predictive@{cost:g}", sc.policy, sc.migration, risk=risk)
        runs[cost] = run(sim, ctl)
    cheap, dear = runs[0.5], runs[50.0]
    # A cost above the action's horizon (10 steps) can never be earned back: no move.
    assert dear.migrations == [] and cheap.migrations
    for step, plan in cheap.migrations:
        assert step >= sc.policy.warmup
        assert cheap.expected[step][[c.name for c in Simulator(sc, 1).chains()].index(plan.chain)] > 0.5
        assert plan.benefit > 0
    # Algorithm 1's rule holds for every move it made: new latency + delay <= SLA - epsilon.
    sla = {c.name: c.sla_ms for c in Simulator(sc, 1).chains()}
    assert all(p.predicted_latency_ms + p.delay.total_ms <= sla[p.chain] - sc.policy.epsilon_ms + 1e-9
               for _, p in cheap.migrations)


def test_onsets_sessions_ramps_and_flash_crowds():
    """The realistic onsets: a birth-death session process (autocorrelated, mean ~1),
    ramped bursts and flash crowds growing like TCP slow start (doubling per step)."""
    from mantra6g.orchestrator.simulator import _flash_shape, _ramped, _sessions

    rng = np.random.default_rng(0)
    tr = parse_scenario("traffic: {session_hold_steps: 40, session_ramp_steps: 5}").traffic
    season = np.ones(4000)
    proc = _sessions(rng, season, tr)
    iid = _sessions(rng, season, Scenario().traffic)
    assert abs(proc.mean() - 1.0) < 0.05 and abs(iid.mean() - 1.0) < 0.02
    lag1 = lambda x: np.corrcoef(x[:-1], x[1:])[0, 1]  # noqa: E731
    assert lag1(proc) > 0.9 and abs(lag1(iid)) < 0.1  # a process has memory; the i.i.d. count none
    np.testing.assert_allclose(_ramped(3, 2), [1 / 3, 2 / 3, 1, 1, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(_ramped(2, 0), [1, 1])
    crowd = _flash_shape(np.random.default_rng(1), parse_scenario(
        "traffic: {flash_size: 2.0, flash_ramp_steps: 4}").traffic)
    np.testing.assert_allclose(crowd[:5], [2 / 16, 2 / 8, 2 / 4, 2 / 2, 2.0])
    # A scenario without the new onsets keeps the original workload of its seed.
    base = Simulator(SMALL, 5).rates
    assert np.array_equal(base, Simulator(SMALL.replace(traffic=replace(SMALL.traffic, flash_rate=0.0)), 5).rates)
    flashy = Simulator(SMALL.replace(traffic=replace(SMALL.traffic, flash_rate=0.05)), 5).rates
    assert np.all(flashy >= base) and np.any(flashy > base)


def test_cli_policy_specs_and_validation_seeds(tmp_path, capsys):
    assert main(["simulate", "--seeds", "1", "--steps", "40", "--policy", "reactive,reactive@0.7",
                 "--jobs", "1", "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "reactive@0.7" in printed and "of achievable %" in printed
    for args, words in ((["--first-seed", "20000"], "validation seeds"),
                        (["--first-seed", "899999", "--seeds", "5"], "below the training"),
                        (["--forecaster", "quantile", "--policy", "predictive"], "old predictive/quantile"),
                        (["--policy", "reactive@x"], "not a number")):
        assert main(["simulate", "--out", str(tmp_path), *args]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_scale_sets_a_cpu_quota_that_queues_an_overloaded_vnf():
    sim = Simulator(SMALL, 1)
    Controller("static", SMALL.policy, SMALL.migration).start(sim)  # URLLC pinned on A
    vnf = sim.chains()[0].vnfs[0]
    base = {s.vnf: s for s in sim.observe().vnfs}[vnf.name]
    sim.scale(vnf.name, base.cpu * 1.05)  # a quota just above its load: rho ~ 0.95
    after = {s.vnf: s for s in sim.observe().vnfs}[vnf.name]
    assert after.queueing_ms > 5 * base.queueing_ms
    with pytest.raises(InfraRejected):
        sim.scale(vnf.name, 0)


def test_markdown_report_keeps_hand_written_notes(tmp_path, capsys):
    from mantra6g.orchestrator.report import NOTES_MARKER

    md = tmp_path / "results.md"
    md.write_text(f"old table\n{NOTES_MARKER}\nmy notes\n")
    assert main(["simulate", "--seeds", "1", "--steps", "30", "--policy", "static", "--jobs",
                 "1", "--out", str(tmp_path / "o"), "--markdown", str(md)]) == 0
    text = md.read_text()
    assert "old table" not in text and text.rstrip().endswith("my notes")
    assert "| static |" in text


def test_generated_blocks_keep_what_people_wrote_around_them(tmp_path):
    from mantra6g.orchestrator.report import write_markdown

    doc = tmp_path / "results.md"
    write_markdown(doc, "simulate a", "table A v1")
    doc.write_text("# Results\nintro\n" + doc.read_text() + "\nwhat A means\n")
    write_markdown(doc, "simulate b", "table B v1")  # another command: appended
    write_markdown(doc, "simulate a", "table A v2")  # the same command: its block replaced
    text = doc.read_text()
    assert "table A v2" in text and "table A v1" not in text and "table B v1" in text
    assert text.startswith("# Results\nintro\n") and "what A means" in text
    assert text.index("what A means") < text.index("table B v1")
    assert text.count("<!-- generated: simulate a -->") == 1

"""``mantra simulate``: run policies over seeds and write the report."""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mantra6g import output
from mantra6g.orchestrator.experiment import RunResult, run_experiment
from mantra6g.orchestrator.forecast import FORECASTERS, ForecastError
from mantra6g.orchestrator.policy import PolicyError, PolicySpec
from mantra6g.orchestrator.report import (
    aggregate, plot, reliability, table, to_json, with_shares, write_markdown,
)
from mantra6g.orchestrator.scenario import Scenario, ScenarioError, load_scenario


VALIDATION_SEEDS = 100_000  # seeds from here (below training) are for tuning, never for the results


def _choices(value: str, allowed: Sequence[str], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ScenarioError(f"{flag} {value!r}: unknown {', '.join(bad) or 'empty list'}; "
                            f"use a comma-separated list of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _policies(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ScenarioError("--policy: empty list; give e.g. static,reactive,predictive")
    try:
        return list(dict.fromkeys(str(PolicySpec.parse(v)) for v in items))
    except PolicyError as exc:
        raise ScenarioError(f"--policy: {exc}") from None


def simulate_command(scenario_path: str | None, *, seeds: int, policies: str, forecasters: str,
                     out: str, jobs: int, steps: int | None, as_json: bool,
                     markdown: str | None, first_seed: int = 1, start: str | None = None,
                     stdout: TextIO | None = None) -> int:
    """Run every policy (forecast ones once per forecaster) on seeds ``first_seed``.. (``seeds`` of them)."""
    stdout = stdout or sys.stdout  # looked up per call: tests and callers may swap it
    if seeds < 1:
        raise ScenarioError(f"--seeds {seeds}: give at least 1 seed")
    if jobs < 1:
        raise ScenarioError(f"--jobs {jobs}: give at least 1 job")
    evaluation = 1 <= first_seed and first_seed + seeds - 1 <= 10_000
    if not evaluation and first_seed < VALIDATION_SEEDS:
        raise ScenarioError(f"--first-seed {first_seed}: evaluation seeds are 1..10000; validation "
                            f"seeds (for tuning) start at {VALIDATION_SEEDS}, below the training seeds")
    pols = _policies(policies)
    if "quantile" in [f.strip() for f in forecasters.split(",")]:
        raise ScenarioError("--forecaster quantile: " + str(_quantile_gone()))
    fcs = _choices(forecasters, FORECASTERS, "--forecaster")
    inputs = output.Inputs([scenario_path])
    output.check_dir(out, inputs, "--out")  # before the runs, not after them
    if markdown:
        output.check_file(markdown, inputs, "--markdown")
    scenario = load_scenario(scenario_path)
    if start is not None:
        scenario = scenario.replace(policy=dataclasses.replace(scenario.policy, start=start))
    if steps is not None:
        if steps < scenario.forecast.window + 2:
            raise ScenarioError(f"--steps {steps}: need at least {scenario.forecast.window + 2}")
        scenario = scenario.replace(steps=steps)
    if not evaluation and first_seed + seeds > min(scenario.forecast.train_seed, scenario.forecast.calibration_seed):
        raise ScenarioError(f"--first-seed {first_seed}: validation seeds must stay below the training "
                            f"({scenario.forecast.train_seed}) and calibration ({scenario.forecast.calibration_seed}) seeds")
    out_dir = Path(out)
    started = time.perf_counter()
    seed_list = list(range(first_seed, first_seed + seeds))
    results = run_experiment(scenario, pols, fcs, seed_list, jobs=jobs, cache_dir=out_dir / "models")
    elapsed = time.perf_counter() - started
    agg = with_shares(results, aggregate(results))
    with output.StagedDir(out_dir, inputs, "--out") as stage:
        stage.write_text("results.json", to_json(results, agg))
        pngs = [out_dir / p.name for p in plot(results, agg, stage.path)]
    if as_json:
        stdout.write(to_json(results, agg) + "\n")
    else:
        stdout.write(table(agg) + "\n")
        for line in _reductions(results, agg):
            stdout.write(line + "\n")
        stdout.write(f"{len(results)} runs, seeds {seed_list[0]}..{seed_list[-1]}, {elapsed:.0f} s; wrote "
                     f"{out_dir / 'results.json'}, {', '.join(str(p) for p in pngs)}\n")
    if markdown:
        # The command that reproduces this report, rebuilt from the effective options.
        args = ([scenario_path] if scenario_path else []) + [
            "--seeds", str(seeds), "--policy", ",".join(pols), "--forecaster", ",".join(fcs)]
        args += ["--first-seed", str(first_seed)] if first_seed != 1 else []
        args += ["--start", start] if start is not None else []
        args += ["--steps", str(steps)] if steps is not None else []
        args += ["--out", out, "--markdown", markdown]
        cmd = "mantra simulate " + " ".join(shlex.quote(a) for a in args)
        # Hand-written text around the generated block (or below the notes marker) survives.
        key = f"simulate {Path(scenario_path).stem if scenario_path else 'default'}" + (f" --start {start}" if start else "")
        write_markdown(Path(markdown), key,
                       _markdown(cmd, scenario_path, seed_list, scenario, results, agg, elapsed))
    return 0


def _quantile_gone() -> ForecastError:
    from mantra6g.orchestrator.forecast import make_forecaster

    try:
        make_forecaster("quantile")
    except ForecastError as exc:
        return exc
    raise AssertionError("quantile came back")


def _reductions(results: Sequence[RunResult], agg: dict) -> list[str]:
    """One line per policy: its per-seed reduction against reactive and its share of the
    achievable reduction (reactive minus the jitter floor)."""
    lines = []
    if "reactive" not in agg:
        return lines
    for label, m in agg.items():
        red, share = m.get("urllc_reduction_pct"), m.get("urllc_achievable_pct")
        if red is None:
            continue
        text = f"URLLC violations, {label} vs reactive: {red} % fewer (per-seed, mean ± 95 % CI, n={red.n})"
        if share is not None:
            text += f"; {share} % of the achievable reduction"
        lines.append(text)
    return lines


def _markdown(cmd: str, scenario_path: str | None, seeds: Sequence[int], scenario: Scenario,
              results: Sequence[RunResult], agg: dict, elapsed: float) -> str:
    f = scenario.forecast
    parts = [
        f"### Simulation: {scenario_path or 'the built-in default scenario'}"
        + (", every policy starting from the balanced placement" if scenario.policy.start == "balanced" else ""),
        "",
        "Generated by (from the repository root, after `make setup`):",
        "",
        "```",
        f".venv/bin/{cmd}",
        "```",
        "",
        f"* Scenario: {scenario_path or 'built-in defaults'} ({scenario.steps} steps of "
        f"{scenario.interval_ms:g} ms, {scenario.chains.count} chains); every policy starts from the "
        f"{'balanced static' if scenario.policy.start == 'balanced' else 'home'} placement.",
        f"* Evaluation seeds: {seeds[0]}..{seeds[-1]}. Forecasters are trained on {', '.join(f.train_runs)} runs with "
        f"seed {f.train_seed} and following (until {f.train_samples} windows), their risk is calibrated on "
        f"runs with seed {f.calibration_seed} and following; neither overlaps the evaluation seeds.",
        f"* Every cell is the mean over the {len(seeds)} seeds ± the half-width of a 95 % "
        "Student-t interval. Violation rates are the share of (step, chain) pairs over the "
        "slice's SLA. *Floor*: the share no placement can avoid (the chain's processing and "
        "local hops plus the same jitter). *vs reactive*: per-seed reduction of URLLC violations; "
        "*of achievable*: per-seed (reactive − policy) / (reactive − floor). *Unnecessary* migrations: "
        "with the VNF left where it was, its chain would not have broken its SLA within 5 steps of the "
        "switch-over. *Brier*: of the risk forecasts P(URLLC violation within the horizon) against what "
        "happened (static: recorded, not acted on). RMSE/MAE: one-step point forecast vs the next "
        "observed end-to-end latency; inference time per control step for all chains in one batch.",
        f"* Wall time of the command: {elapsed:.0f} s.",
        "",
        table(agg, markdown=True),
        "",
    ]
    red = _reductions(results, agg)
    if red:
        parts += ["#### URLLC violations relative to reactive", ""]
        parts += [f"* {line}" for line in red] + [""]
    curves = {l: reliability(results, l) for l in agg}
    curves = {l: c for l, c in curves.items() if c}
    if curves:
        parts += ["#### Reliability of the risk forecasts (URLLC, all seeds)", "",
                  "Predicted P(violation within the horizon) in bins against the observed frequency "
                  "(static: open loop, recorded but not acted on; the others: closed loop, where acting "
                  "on a high risk prevents some of the violations it predicted).", "",
                  "| policy | " + " | ".join("bin" for _ in range(1)) + " predicted → observed (n) |", "|---|---|"]
        for l, c in curves.items():
            cells = "; ".join(f"{a:.3f} → {b:.3f} ({n})" for a, b, n in c)
            parts.append(f"| {l} | {cells} |")
        parts.append("")
    return "\n".join(parts)

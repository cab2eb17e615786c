"""Scenario YAML: defaults, overrides, and errors that name file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from mantra6g.orchestrator.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

EXAMPLE = Path(__file__).parents[2] / "examples" / "scenarios" / "default.yaml"


def test_example_scenario_equals_the_built_in_defaults():
    assert load_scenario(EXAMPLE) == Scenario()
    assert load_scenario(None) == Scenario()


def test_overrides_keep_other_defaults():
    s = parse_scenario("steps: 200\ntraffic:\n  burst_rate: 0.05\npolicy: {budget: 1}\n")
    assert s.steps == 200 and s.traffic.burst_rate == 0.05 and s.policy.budget == 1
    assert s.traffic.amplitude == Scenario().traffic.amplitude
    assert s.nodes == Scenario().nodes


@pytest.mark.parametrize("text, where, words", [
    ("steps: 100\ntrafic:\n  sessions: 3\n", "s.yaml:2:1", "did you mean 'traffic'"),
    ("policy:\n  budget: two\n", "s.yaml:2:11", "must be an integer"),
    ("latency:\n  jitter_ms: [1, 2]\n", "s.yaml:2:14", "must be a number"),
    ("nodes:\n  - {name: A, role: urllc}\n", "s.yaml:2:5", "needs the key(s) cores"),
    ("steps: 100\n  bad: : x\n", "s.yaml:2:", "YAML syntax error"),
])
def test_errors_name_the_place_and_the_fix(text, where, words):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, "s.yaml")
    assert where in str(exc.value) and words in str(exc.value)


def test_semantic_errors():
    with pytest.raises(ScenarioError, match="train_seed"):
        parse_scenario("forecast: {train_seed: 5}\n")
    with pytest.raises(ScenarioError, match="role 'gpu'"):
        parse_scenario("nodes:\n  - {name: A, role: gpu, cores: 4}\n")
    with pytest.raises(ScenarioError, match="no node can host slice urllc"):
        parse_scenario("nodes:\n  - {name: B, role: embb, cores: 4}\n  - {name: C, role: shared, cores: 4}\n")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("/nonexistent/scenario.yaml")

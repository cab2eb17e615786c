"""Testbed scenario YAML (no root): the example equals the built-in defaults; bad keys
and values are reported with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mantra6g.orchestrator.scenario import ScenarioError
from mantra6g.testbed.scenario import load_site, parse_site
from mantra6g.testbed.site import SiteConfig

ROOT = Path(__file__).resolve().parents[2]


def test_default_example_is_the_builtin_site():
    assert load_site(ROOT / "examples/testbed/default.yaml") == SiteConfig()
    assert load_site(None) == SiteConfig()


def test_partial_scenario_keeps_defaults():
    c = parse_site("urllc_rate_pps: 200\nnodes:\n  - {name: A, role: urllc}\n  - {name: B, role: embb, link_mbit: 30, rack: r1}\n")
    assert c.urllc_rate_pps == 200 and c.node("B").link_mbit == 30 and c.embb_on_s == SiteConfig().embb_on_s
    assert c.racks == SiteConfig().racks and c.inbound("B") == ["B", "^r1"] and c.inbound("A") == ["A"]


@pytest.mark.parametrize("text, message", [
    ("seed: 1\nurlc_rate: 3\n", "f.yaml:2:1: unknown key 'urlc_rate' in scenario; did you mean 'urllc_rate_pps'?"),
    ("nodes:\n  - {name: A, rol: urllc}\n", "f.yaml:2:15: unknown key 'rol'"),
    ("seed: x\n", "f.yaml:1:7: scenario.seed must be an integer"),
    ("seed: 1\nembb_nodes: [Z]\n", "f.yaml:2:1: embb_nodes: 'Z' is not one of the nodes"),
    ("seed: 1\nembb_nodes: []\n", "f.yaml:2:1: embb_nodes must list one or more distinct nodes"),
    ("seed: 1\nonset: sudden\n", "f.yaml:2:1: onset 'sudden'; choose from abrupt, ramp, flash"),
    ("seed: 1\ninterval_s: 0\n", "f.yaml:2:1: interval_s must be > 0"),
    ("seed: 1\nurllc_sla_ms: 0\n", "f.yaml:2:1: urllc_sla_ms must be > 0"),
    ("seed: 1\nembb_nodes: [A]\n", "f.yaml:2:1: embb_nodes: 'A' has role urllc; an eMBB chain runs on a node of role embb"),
    ("nodes:\n  - {name: A, role: urllc, rack: r9}\n", "f.yaml:1:1: node A: rack 'r9' is not one of the racks ['r1']"),
    ("nodes:\n  - {name: gen, role: urllc}\n", "f.yaml:1:1: node names must be unique"),
    ("racks:\n  - {name: rack1}\n", "f.yaml:1:1: rack names must be unique, 1-2 letters"),
    ("nodes:\n  - {name: A, role: fast}\n", "f.yaml:1:1: node A: role 'fast'"),
    ("seed: [1\n", "f.yaml:2:1: YAML syntax error"),
])
def test_errors_name_file_and_line(text, message):
    with pytest.raises(ScenarioError) as e:
        parse_site(text, "f.yaml")
    assert message in str(e.value)


def test_a_site_the_orchestrator_cannot_place_the_chain_on_is_refused(tmp_path):
    from mantra6g.errors import MantraError
    from mantra6g.orchestrator.policy import PolicyConfig
    from mantra6g.testbed.infra import TestbedInfra
    from mantra6g.testbed.site import Site

    config = parse_site("nodes:\n  - {name: A, role: urllc}\n  - {name: B, role: embb}\nembb_nodes: [B]\nracks: []\n")
    with pytest.raises(MantraError, match="cannot place the URLLC chain on this site: no node may host urllc.egress"):
        TestbedInfra(Site(config, tmp_path), 1.0).initial_placement(PolicyConfig())


def test_the_urllc_sla_reaches_the_graph_and_the_orchestrator(tmp_path):
    from mantra6g.synth.frontend import loads
    from mantra6g.testbed.chain import EGRESS, INGRESS, graph_text
    from mantra6g.testbed.infra import TestbedInfra
    from mantra6g.testbed.site import Site

    site = Site(parse_site("urllc_sla_ms: 0.5\nembb_limit_mbit: 20\n"), tmp_path)
    params = site.chain_params()
    spec = loads(graph_text(params, {INGRESS: ("A", site.node_mac("A")), EGRESS: ("D", site.node_mac("D"))}), "u.sg")
    assert spec.tenants[0].slices[0].sla.latency_ns == 500_000
    assert (params.sla_ms, params.embb_limit_mbit) == (0.5, 20.0)
    assert TestbedInfra(site, 1.0).chains()[0].sla_ms == 0.5
    # the eMBB chain's policer runs at the slice's rate
    from mantra6g.synth.compose import compile_specs
    from mantra6g.testbed.chain import embb_graph_text

    (dp,) = compile_specs([loads(embb_graph_text(params, ("B", site.node_mac("B"))), "e.sg")])
    assert dp.site == "B" and [m.rate_bps for m in dp.program.meters] == [20_000_000]


def test_the_onset_scenarios_and_their_traffic_schedules():
    """The ramp and flash sites parse; their traffic schedules are what they say: Poisson
    session arrivals on the diurnal curve (mean sessions = rate x (hold + ramp)), ramps
    that rise linearly; crowds of clients joining over the ramp."""
    import random

    from mantra6g.testbed.scenario import load_site
    from mantra6g.testbed.traffic import Diurnal, crowd_schedule, session_rate, session_schedule

    ramp, flash = load_site(ROOT / "examples/testbed/ramp.yaml"), load_site(ROOT / "examples/testbed/flash.yaml")
    assert ramp.onset == "ramp" and flash.onset == "flash" and ramp.embb_nodes == ("B", "F")
    assert ramp.embb_sink("B") != ramp.embb_sink("F") and ramp.embb_port("B") != ramp.embb_port("F")
    flat = Diurnal(0.75, 0.0, 20.0, 0.0)
    sessions = session_schedule(random.Random(1), flat, 6.0, 2.0, 4000.0)
    t = [float(x) for x in range(100, 4000, 3)]
    mean = sum(sum(1 for a, b in sessions if a <= x < b) for x in t) / len(t)
    assert abs(mean - 0.75 * (6.0 + 2 * 2.0)) < 0.6  # Little's law: arrivals x time in the system
    one = [(0.0, 10.0)]
    assert [session_rate(one, x, 2.0, 2.0) for x in (0.0, 1.0, 2.0, 5.0, 9.0)] == [0.0, 1.0, 2.0, 2.0, 1.0]
    crowd = crowd_schedule(random.Random(2), 0.05, 12, 4.0, 10.0, 1000.0)
    assert len(crowd) % 12 == 0 and all(b - a >= 1.0 for a, b in crowd)

"""The proof cache cannot go stale: each input a proof reads, changed once, makes it
re-checked — and a change that breaks the site is found, not hidden behind a cached
PROVEN (the hole: a higher-priority classifier narrows, a lower tenant's traffic grows)."""

from __future__ import annotations

import dataclasses

import pytest

from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.ir import DeviceClass, DevicePlan, Flow
from mantra6g.synth.merge import merge_site
from mantra6g.verify import site
from mantra6g.verify.site import ProofCache, verify_merged

SITE = """
tenant alpha id 21 {{ slice s {{ latency <= 5 ms }} }}
tenant beta id 22 {{ slice s {{ latency <= 5 ms }} }}
graph alpha_up for alpha.s {{
    nf cls = classifier(priority: 6) {{ match ipv4.src in {alpha} }}
    nf rt = router(mac: 02:00:00:00:15:fe) {{ route 0.0.0.0/0 via 02:00:00:00:15:01 port 1 }}
    cls -> rt
    place rt on smartnic site edge
}}
graph beta_up for beta.s {{
    nf cls = classifier(priority: 5) {{ match ipv4.src in 10.0.0.0/8 }}
    # Packets from 10.21.128.0/17 would go out of alpha's port: alpha claims them first.
    nf odd = router(mac: 02:00:00:00:16:fe) {{ route 0.0.0.0/0 via 02:00:00:00:16:01 port 1 }}
    nf rt = router(mac: 02:00:00:00:16:fe) {{ route 0.0.0.0/0 via 02:00:00:00:16:01 port 2 }}
    cls -> [ipv4.src in 10.21.128.0/17] odd
    cls -> rt
    place odd, rt on smartnic site edge
}}
"""
PLAN = DevicePlan(DeviceClass.SMARTNIC, "edge", ((1, "alpha"), (2, "beta")))


GAMMA = """
tenant gamma id 23 { slice s { latency <= 5 ms } }
graph gamma_up for gamma.s {
    nf cls = classifier(priority: 9) { match ipv4.src in 10.30.0.0/16 }
    nf rt = router(mac: 02:00:00:00:17:fe) { route 0.0.0.0/0 via 02:00:00:00:17:01 port 3 }
    cls -> rt
    place rt on smartnic site edge
}
"""


def device(alpha: str = "10.21.0.0/16", plan: DevicePlan = PLAN, gamma: bool = False):
    text = SITE.format(alpha=alpha) + (GAMMA if gamma else "")
    (m,) = merge_site(frontend.load_sources([SourceFile("site.sg", text)]))
    return dataclasses.replace(m, plan=plan)


def checked(report) -> set[str]:
    return set(report.checked) - {"resources smartnic_edge"}


def test_a_narrowed_higher_priority_classifier_rechecks_the_tenant_below_and_finds_the_leak(tmp_path):
    cache = ProofCache(tmp_path / "proofs.json")
    first = verify_merged(device(), "bmv2", cache=cache)
    assert first.proven
    # alpha now claims less: beta's traffic grows by 10.21.128.0/17, which beta routes out
    # of alpha's port. A cached PROVEN for beta would hide it.
    second = verify_merged(device(alpha="10.21.0.0/17"), "bmv2", cache=ProofCache(tmp_path / "proofs.json"))
    assert {"isolation beta", "equivalence beta", "validity beta", "parsing beta"} <= checked(second)
    bad = [r for r in second.results if not r.proven]
    assert [(r.property, r.scope) for r in bad] == [("isolation", "beta")]
    c = bad[0].counterexample
    (port, _), = c.replay(device(alpha="10.21.0.0/17").program).result.outputs
    assert port == 1  # replayed through the deployed program: out of alpha's port


def test_a_higher_priority_tenant_that_only_takes_traffic_away_keeps_the_proofs(tmp_path):
    cache = tmp_path / "proofs.json"
    wanted = ["equivalence", "validity"]
    verify_merged(device(), "bmv2", cache=ProofCache(cache), properties=wanted)
    # gamma, of higher priority, can only take packets from alpha and beta: their proofs hold.
    again = verify_merged(device(gamma=True), "bmv2", cache=ProofCache(cache), properties=wanted)
    assert set(again.checked) == {"equivalence gamma", "validity gamma"} and again.reused == 4


@pytest.mark.parametrize("change, rechecked", [
    ("plan", {"isolation alpha", "isolation beta"}),
    ("flows", {"isolation alpha", "isolation beta"}),
    ("version", {"disjointness smartnic_edge", "parsing alpha", "isolation alpha", "equivalence alpha",
                 "validity alpha", "parsing beta", "isolation beta", "equivalence beta", "validity beta",
                 "unclaimed smartnic_edge"}),
])
def test_each_input_a_proof_reads_changed_once_rechecks_it(tmp_path, monkeypatch, change, rechecked):
    cache = tmp_path / "proofs.json"
    assert verify_merged(device(), "bmv2", cache=ProofCache(cache)).proven
    plan = PLAN
    if change == "plan":
        plan = DevicePlan(DeviceClass.SMARTNIC, "edge", ((1, "alpha"), (2, "beta"), (3, "uplink")))
    elif change == "flows":
        plan = dataclasses.replace(PLAN, flows=(Flow("alpha", "beta"),))
    elif change == "version":
        monkeypatch.setattr(site, "VERSION", "another verifier")
    second = verify_merged(device(plan=plan), "bmv2", cache=ProofCache(cache))
    assert rechecked <= checked(second)
    unchanged = verify_merged(device(plan=plan), "bmv2", cache=ProofCache(cache))
    assert checked(unchanged) == set()

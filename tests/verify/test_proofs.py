"""Correct merges are proven, with no false alarm; the CLI and the incremental cache."""

from __future__ import annotations

import json

import pytest

from mantra6g.cli import main
from mantra6g.synth import frontend
from mantra6g.synth.merge import merge, merge_site
from mantra6g.verify.site import ProofCache, verify_merged

from tests.verify.conftest import CASES, ROOT


@pytest.mark.parametrize("name", ["edge_site_two_tenants.sg", "6g_user_plane.sg", "embb_video.sg"])
def test_examples_are_proven(name):
    for m in merge_site(frontend.load([str(ROOT / "examples" / name)])):
        report = verify_merged(m, "bmv2")
        assert report.proven, [r for r in report.results if not r.proven]


def test_seeded_correct_cases_are_proven(lb_routers):
    assert verify_merged(lb_routers, "xdp").proven
    (m,) = merge_site(frontend.load([str(CASES / "tunnel.sg")]))
    assert verify_merged(m, "tofino").proven


def test_adding_a_tenant_rechecks_only_what_it_affects(tmp_path, lb_routers):
    cache = tmp_path / "proofs.json"
    alpha, beta = lb_routers.tenants
    first = verify_merged(merge("d", [alpha]), "bmv2", cache=ProofCache(cache))
    assert first.proven and first.reused == 0
    second = verify_merged(merge("d", [alpha, beta]), "bmv2", cache=ProofCache(cache))
    assert second.proven
    assert {"equivalence alpha", "validity alpha"}.isdisjoint(second.checked)
    assert {"disjointness d", "isolation alpha", "equivalence beta", "validity beta"} <= set(second.checked)
    third = verify_merged(merge("d", [alpha, beta]), "bmv2", cache=ProofCache(cache))
    assert third.checked == ("resources d",)


def test_cli_exit_codes_pcap_and_json(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["verify", str(ROOT / "examples" / "embb_video.sg"), "--target", "bmv2", "--out", str(out)]) == 0
    assert "PROVEN" in capsys.readouterr().out
    assert main(["verify", str(CASES / "overlap.sg"), "--target", "xdp", "--property", "disjointness",
                 "--json", "--out", str(out)]) == 1
    report = json.loads(capsys.readouterr().out)
    (res,) = report[0]["results"]
    assert res["status"] == "violated" and res["counterexample"]["other_tenant"] == "blue"
    assert (out / "smartnic_edge.counterexamples.pcap").stat().st_size > 0
    assert main(["verify", str(tmp_path / "missing.sg"), "--target", "bmv2", "--out", str(out)]) == 2

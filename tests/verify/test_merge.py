"""The merge itself: names, entries, parser union, and that every backend takes it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mantra6g.synth import frontend, interp
from mantra6g.synth.compose import condition
from mantra6g.synth.dpir import ActionCall, Entry, Lpm
from mantra6g.synth.dpir_check import validate
from mantra6g.synth.merge import Claim, MergeError, TenantProgram, merge, merge_orders, tenant_programs
from mantra6g.synth import expr as sx

from tests.verify.conftest import ROOT

EXAMPLES = ["edge_site_two_tenants.sg", "6g_user_plane.sg", "embb_video.sg", "urllc_factory.sg"]


def copies_of(path: Path, n: int):
    """``n`` tenants running the (single) tenant program of ``path``, each on its own /16."""
    from ipaddress import IPv4Network

    (t,) = next(iter(tenant_programs(frontend.load([str(path)])).values()))
    out = []
    for i in range(n):
        cls = condition(sx.InPrefix("ipv4.dst", IPv4Network(f"10.{100 + i}.0.0/16")))
        out.append(dataclasses.replace(t, tenant=f"t{i}", tenant_id=100 + i, claims=(Claim(f"g{i}", cls, 0, i),)))
    return merge("copies", out)


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_merge_validate_and_emit(name):
    from mantra6g.targets import bmv2
    for device, tenants in tenant_programs(frontend.load([str(ROOT / "examples" / name)])).items():
        m = merge(device, tenants)
        validate(m.program)
        assert bmv2.emit(m.program).files
        for t in tenants:
            assert {f"{t.tenant}__{x.name}" for x in t.program.tables} <= {x.name for x in m.program.tables}


def test_entries_translate_into_the_tenants_namespace(lb_routers):
    alpha = lb_routers.tenant("alpha")
    entry = Entry((Lpm(0x0A150000, 16),), ActionCall("alpha_up_rt_route", (0x020000000009, 1)))
    table, translated = lb_routers.translate_entry("alpha", "alpha_up_rt_fib", entry)
    assert table == "alpha__alpha_up_rt_fib" and translated.action.action == "alpha__alpha_up_rt_route"
    with pytest.raises(MergeError):
        lb_routers.translate_entry("beta", "alpha_up_rt_fib", entry)
    # The translated entry behaves in the merge as the original does in the tenant's program.
    m = lb_routers.with_entries("alpha", "alpha_up_rt_fib", [entry])
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    pkt = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.21.0.7", dst="10.21.3.3", ttl=9) / UDP())
    alone = dataclasses.replace(alpha.program, tables=tuple(
        dataclasses.replace(t, entries=(entry,)) if t.name == "alpha_up_rt_fib" else t for t in alpha.program.tables))
    assert interp.run(m.program, pkt, 5, 0).outputs == interp.run(alone, pkt, 5, 0).outputs
    assert interp.run(m.program, pkt, 5, 0).outputs[0][1][0:6] == bytes.fromhex("020000000009")  # next hop = eth.dst


def test_unclaimed_packets_are_dropped(two_tenants):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    pkt = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="10.10.100.1") / UDP(dport=6000))
    assert interp.run(two_tenants.program, pkt, 1, 0).dropped


def test_merge_rejects_clashing_tenants(two_tenants):
    t = two_tenants.tenants[0]
    with pytest.raises(MergeError, match="same id"):
        merge("d", [t, dataclasses.replace(t, tenant="other")])
    with pytest.raises(MergeError, match="disagree"):
        merge_orders([("a", "b"), ("b", "a")])
    assert merge_orders([("eth", "ipv4"), ("eth", "mtel", "ipv4")]) == ("eth", "mtel", "ipv4")


def test_classification_follows_priority(two_tenants):
    assert [t.tenant for t in two_tenants.tenants] == ["hospital", "city"]  # priorities 10 and 5
    assert isinstance(two_tenants.tenants[0], TenantProgram)

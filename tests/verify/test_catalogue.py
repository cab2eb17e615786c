"""The catalogue of seeded composition bugs: each is found by its property, with a
counterexample packet that reproduces the violation in the reference interpreter.

Seeded as service graphs (tests/verify/cases/*.sg): overlapping classifiers, a
load-balancer backend in another tenant's address space. Seeded as hand-mutated
merges (tests/verify/mutations.py): a register write into another tenant's register,
the tenant-id metadata not namespaced, a tunnel decap without validity checks, a
default route into another tenant's port, a route without the checksum update, and a
sequential merge that overflows Tofino's stages.
"""

from __future__ import annotations

from mantra6g.synth import interp
from mantra6g.verify.counterexample import classifies
from mantra6g.verify.properties import (
    alone_counterexample,
    check_disjointness,
    check_equivalence,
    check_isolation,
    check_validity,
)
from mantra6g.verify.resources import check_resources

from tests.verify import mutations
from tests.verify.conftest import CASES, merged


def test_overlapping_classifiers_of_equal_priority():
    m = merged(CASES / "overlap.sg")
    red, blue = m.tenants
    r = check_disjointness(m)  # one query over every tenant, not one per pair
    assert r.status == "violated" and r.property == "disjointness"
    c = r.counterexample
    assert {c.tenant, c.other} == {"red", "blue"}
    # Replay: the interpreter's parser and each classifier both claim the packet.
    assert classifies(m.program, red.classifier, c.packet) and classifies(m.program, blue.classifier, c.packet)


def test_tenant_writing_another_tenants_register(lb_routers):
    m = mutations.write_foreign_register(lb_routers, "beta", "beta_up_lb_flows", "alpha", "alpha_up_lb_flows")
    beta = m.tenant("beta")
    r = check_isolation(m, beta)
    assert r.status == "violated"
    c = r.counterexample
    assert c.other == "alpha" and "register 'alpha__alpha_up_lb_flows'" in c.detail
    replay = c.replay(m.program)
    assert replay.meta["meta.tenant"] == beta.tenant_id
    assert any(ch.kind == "register" and ch.name.startswith("alpha__") for ch in replay.result.changes)


def test_shared_tenant_metadata_clobbered(two_tenants):
    m = mutations.clobber_tenant_meta(two_tenants, "city")
    city = m.tenant("city")
    r = check_equivalence(m, city)
    assert r.status == "violated"
    c = r.counterexample
    merged_out = c.replay(m.program).result
    alone = alone_counterexample(m, city, c)
    alone_out = interp.run(city.program, alone.packet, alone.ingress_port, alone.now_ns, alone.state(city.program))
    assert merged_out.outputs != alone_out.outputs


def test_tunnel_decap_without_validity_check():
    m = mutations.strip_decap_checks(merged(CASES / "tunnel.sg"))
    r = check_validity(m, m.tenant("carrier"))
    assert r.status == "violated"
    c = r.counterexample
    assert c.field is not None and c.field.split(".")[0] in ("vxlan", "inner_eth", "inner_ipv4")
    bad = c.replay(m.program).invalid_accesses
    assert any(t.name.split(".")[0] in ("vxlan", "inner_eth", "inner_ipv4") for t in bad)


def test_default_action_forwarding_into_another_tenants_port(lb_routers):
    m = mutations.default_route(lb_routers, "alpha", "alpha_up_rt_fib", 2)
    r = check_isolation(m, m.tenant("alpha"), parts=("ports",), leak_into=[])
    assert r.status == "violated"
    c = r.counterexample
    assert c.other == "beta" and c.field == "std.egress_port"
    out = c.replay(m.program).result.outputs
    assert [port for port, _ in out] == [2]


def test_load_balancer_backend_in_another_tenants_address_space():
    m = merged(CASES / "lb_leak.sg")
    gamma, delta = m.tenant("gamma"), m.tenant("delta")
    assert check_isolation(m, gamma).proven
    r = check_isolation(m, delta)
    assert r.status == "violated" and r.counterexample.other == "gamma"
    c = r.counterexample
    assert not classifies(m.program, gamma.classifier, c.packet)
    ((_, emitted),) = c.replay(m.program).result.outputs
    assert classifies(m.program, gamma.classifier, emitted)


def test_ttl_without_checksum_update_differs_from_the_tenant_alone(lb_routers):
    m = mutations.drop_ttl_checksum(lb_routers, "alpha", "alpha_up_rt_route")
    alpha = m.tenant("alpha")
    r = check_equivalence(m, alpha)
    assert r.status == "violated" and "checksum" in r.counterexample.detail
    c = r.counterexample
    (( _, merged_bytes),) = c.replay(m.program).result.outputs
    alone = alone_counterexample(m, alpha, c)
    ((_, alone_bytes),) = interp.run(alpha.program, alone.packet, alone.ingress_port, alone.now_ns,
                                     alone.state(alpha.program)).outputs
    # Same TTL, same everything, except the two bytes of the IPv4 checksum.
    assert len(merged_bytes) == len(alone_bytes)
    differ = [i for i, (a, b) in enumerate(zip(merged_bytes, alone_bytes)) if a != b]
    assert differ and differ[-1] - differ[0] <= 1


def test_sequential_merge_overflows_tofino_stages():
    from tests.verify.test_merge import copies_of

    m = copies_of(CASES.parent.parent.parent / "examples" / "6g_user_plane.sg", 3)
    bad = mutations.sequential(m)
    r = check_resources(bad.program, "tofino")
    assert r.status == "violated" and "stages" in r.note
    # No packet shows a resource overflow: the report names the table that does not fit.
    assert r.counterexample is None and "table" in r.note

"""The holes a security review found in the verifier, one small site each: VIOLATED with a
counterexample packet that, replayed through the deployed program (the interpreter on
what `mantra compile` emits), shows the bug — and the same site fixed, PROVEN."""

from __future__ import annotations

import dataclasses

from mantra6g.source import SourceFile
from mantra6g.synth import frontend, interp
from mantra6g.synth.compose import compile_specs
from mantra6g.synth.dpir import Assign, BinOp, Const, Forward, If, Ref
from mantra6g.synth.merge import merge_site
from mantra6g.verify.counterexample import classifies
from mantra6g.verify.properties import check_equivalence, check_isolation, check_parsing, check_unclaimed
from mantra6g.verify.site import verify_merged
from tests.verify.conftest import CASES

TWO = """
tenant alpha id 21 {{ slice s {{ latency <= 5 ms }} }}
tenant beta id 22 {{ slice s {{ latency <= 5 ms }} }}
graph a for alpha.s {{
    nf cls = classifier(priority: 6) {{ match ipv4.src in 10.21.0.0/16 }}
    nf rt = router(mac: 02:00:00:00:15:fe) {{ route 0.0.0.0/0 via 02:00:00:00:15:01 port {alpha_port} }}
    cls -> rt
    place rt on smartnic site edge
}}
graph b for beta.s {{
    nf cls = classifier(priority: 5) {{ match ipv4.src in 10.22.0.0/16 }}
    nf rt = router(mac: 02:00:00:00:16:fe) {{ route 0.0.0.0/0 via 02:00:00:00:16:01 port 2 }}
    cls -> rt
    place rt on smartnic site edge
}}
device smartnic site edge {{
    port 1 owner alpha
    port 2 owner beta
}}
"""


def site(text: str):
    (m,) = merge_site(frontend.load_sources([SourceFile("site.sg", text)]))
    return m


def test_a_route_onto_another_tenants_port_is_found_by_the_operators_plan():
    """Hole 2: ports were "owned" by whoever's routes pointed at them, so alpha's own route
    onto beta's port defined that port as alpha's too."""
    m = site(TWO.format(alpha_port=2))
    r = check_isolation(m, m.tenant("alpha"), parts=("ports",), leak_into=[])
    assert r.status == "violated" and r.counterexample.other == "beta"
    (port, _), = r.counterexample.replay(m.program).result.outputs
    assert port == 2
    assert verify_merged(site(TWO.format(alpha_port=1)), "bmv2").proven


DECAP = (CASES / "tunnel.sg").read_text()
# The case before its fix: any frame to the carrier's address, and nothing after the decap.
LEAKY = DECAP.replace("match ipv4.dst == 10.50.0.1 and vlan.vid == 50", "match ipv4.dst == 10.50.0.1") \
    .replace("    nf own = firewall(default: deny) {\n        allow ipv4.dst in 10.51.0.0/16\n    }\n", "") \
    .replace("    cls -> dec -> own\n    place dec, own on smartnic site edge", "    cls -> dec\n    place dec on smartnic site edge")


def test_a_decap_into_another_tenants_traffic_is_found_by_parsing_what_leaves():
    """Hole 1: the leak check read the final headers, so an inner frame tagged VLAN 52,
    unparsed in the payload until the decap, left as the shop's traffic unseen."""
    m = site(LEAKY)
    r = check_isolation(m, m.tenant("carrier"), parts=(), leak_into=[m.tenant("shop")])
    assert r.status == "violated" and r.counterexample.other == "shop"
    c = r.counterexample
    ((_, out),) = c.replay(m.program).result.outputs
    carrier, shop = m.tenant("carrier").classifier, m.tenant("shop").classifier
    assert classifies(m.program, carrier, c.packet)  # the carrier's (its priority wins it) …
    assert classifies(m.program, shop, out) and not classifies(m.program, carrier, out)  # … leaves as the shop's
    assert verify_merged(site(DECAP), "bmv2", properties=["isolation"]).proven


def test_a_merged_parser_that_drops_a_tenants_packets_is_found():
    """Hole 4: the merged parser defined each tenant's traffic, so packets it rejects were
    no tenant's and a parser disagreement was never seen."""
    m = site(TWO.format(alpha_port=1))
    start = m.program.state("start")
    cut = dataclasses.replace(start, cases=tuple(c for c in start.cases if c.values != (0x8100,)))  # no VLAN
    bad = dataclasses.replace(m, program=dataclasses.replace(
        m.program, parser=tuple(cut if s.name == "start" else s for s in m.program.parser)))
    r = check_parsing(bad, bad.tenant("alpha"))
    assert r.status == "violated"
    c = r.counterexample
    alpha = bad.tenant("alpha")
    # alpha's own parser reads its packet and claims it; the merged one does not see it so.
    assert classifies(alpha.program, alpha.classifier, c.packet)
    assert not classifies(bad.program, alpha.classifier, c.packet)


def test_a_merge_that_gives_a_tenant_another_meters_configuration_is_found():
    """Hole 5: meters' rate and burst were not modelled: a different bucket was 'equivalent'."""
    text = TWO.format(alpha_port=1).replace(
        "nf rt = router(mac: 02:00:00:00:15:fe)", "nf pol = policer(rate: 1 Mbps, burst: 2000 B)\n    nf rt = router(mac: 02:00:00:00:15:fe)"
    ).replace("    cls -> rt\n    place rt on smartnic site edge\n}\ngraph b", "    cls -> pol -> rt\n    place pol, rt on smartnic site edge\n}\ngraph b")
    m = site(text)
    (meter,) = m.program.meters
    smaller = dataclasses.replace(meter, burst_bytes=1514)
    bad = dataclasses.replace(m, program=dataclasses.replace(m.program, meters=(smaller,)))
    assert check_equivalence(m, m.tenant("alpha")).proven
    r = check_equivalence(bad, bad.tenant("alpha"))
    assert r.status == "violated"
    # Replayed from full buckets: a 1800-byte packet fits alpha's 2000 B, not the merge's 1514 B.
    frame = _frame("10.21.0.7", 1800)
    assert interp.run(m.tenant("alpha").program, frame, 1, 0).outputs
    assert not interp.run(bad.program, frame, 1, 0).outputs


def _frame(src: str, size: int) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:15:fe") / IP(src=src, dst="10.9.9.9") / UDP(dport=9)
    return bytes(pkt / bytes(size - len(pkt)))


def test_a_length_conditioned_branch_beyond_the_headers_is_seen():
    """Hole 6: packets were bounded to the headers plus 8 bytes; a branch on the packet's
    length (an MTU punt) was never taken by the solver."""
    m = site(TWO.format(alpha_port=1))
    name = m.names["alpha"]["table"]
    punt = If(BinOp(">", Ref("std.pkt_len"), Const(1000, 16)), (Forward(Const(2, 9)),))
    control = list(m.program.control)
    dispatch = control[1]
    alpha_body = dispatch.then + (punt,)
    control[1] = dataclasses.replace(dispatch, then=alpha_body)
    bad = dataclasses.replace(m, program=dataclasses.replace(m.program, control=tuple(control)))
    assert name  # alpha's tables are renamed in the merge
    r = check_isolation(bad, bad.tenant("alpha"), parts=("ports",), leak_into=[])
    assert r.status == "violated" and len(r.counterexample.packet) > 1000
    c = r.counterexample
    (port, _), = c.replay(bad.program).result.outputs
    assert port == 2


def test_unclaimed_packets_forwarded_by_a_merge_are_found():
    """Hole 8: nothing said what happens to packets no tenant claims."""
    m = site(TWO.format(alpha_port=1))
    control = list(m.program.control)
    classify = control[0]
    leak = (Assign("meta.tenant", Const(0, 16)), Forward(Const(1, 9)))

    def last(node):
        if not node.orelse:
            return dataclasses.replace(node, orelse=leak)
        return dataclasses.replace(node, orelse=(last(node.orelse[0]),))

    bad = dataclasses.replace(m, program=dataclasses.replace(m.program, control=(last(classify), *control[1:])))
    assert check_unclaimed(m).proven
    r = check_unclaimed(bad)
    assert r.status == "violated"
    c = r.counterexample
    assert c.replay(bad.program).result.outputs and interp.run(m.program, c.packet, c.ingress_port, 0).dropped


MULTI = """
tenant a id 1 {{
    slice hi {{ latency <= 5 ms }}
    slice lo {{ latency <= 50 ms }}
}}
tenant b id 2 {{ slice s {{ latency <= 5 ms }} }}
graph a_hi for a.hi {{
    nf cls = classifier(priority: 9) {{ match udp.dport == 1000 }}
    nf rt = router(mac: 02:00:00:00:01:fe) {{ route 0.0.0.0/0 via 02:00:00:00:01:01 port 1 }}
    cls -> rt
    place rt on pdp
}}
graph a_lo for a.lo {{
    nf cls = classifier(priority: 1) {{ match ipv4.src in 10.0.0.0/8 }}
    nf rt = router(mac: 02:00:00:00:01:fe) {{ route 0.0.0.0/0 via 02:00:00:00:01:01 port 1 }}
    cls -> rt
    place rt on pdp
}}
graph b_mid for b.s {{
    nf cls = classifier(priority: 5) {{ match udp.dport == 2000 }}
    nf rt = router(mac: 02:00:00:00:02:fe) {{ route 0.0.0.0/0 via 02:00:00:00:02:01 port 2 }}
    cls -> rt
    place rt on pdp
}}
"""


def test_a_tenant_with_graphs_of_different_priorities_is_classified_graph_by_graph():
    """Hole 9: the merge classified a tenant as a whole (its highest priority), so a packet
    that b (5) takes from a's low graph (1) in compose went to a in what was verified."""
    text = MULTI.format()
    (dp,) = compile_specs(frontend.load_sources([SourceFile("multi.sg", text)]))
    frame = _udp("10.1.2.3", 2000)
    (port, _), = interp.run(dp.program, frame, 0, 0).outputs
    assert port == 2  # b's graph, of priority 5, beats a's priority-1 graph
    m = dp.merged
    assert m.program is dp.program  # what is verified is what is deployed
    assert verify_merged(m, "bmv2", properties=["disjointness", "equivalence"]).proven


def _udp(src: str, dport: int) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:01:fe") / IP(src=src, dst="10.9.9.9") / UDP(dport=dport))


def test_every_example_verifies_the_program_compile_emits():
    from tests.conftest import EXAMPLES

    for path in EXAMPLES:
        for dp in compile_specs(frontend.load([str(path)])):
            (m,) = [x for x in merge_site(frontend.load([str(path)])) if x.program.name == dp.name]
            assert m.program == dp.program, path.name


SPLIT = """
tenant alpha id 21 { slice s { latency <= 5 ms } }
tenant beta id 22 { slice s { latency <= 5 ms } }
graph a for alpha.s {
    nf cls = classifier(priority: 5) { match udp.dport == 2152 }
    nf dec = tunnel(protocol: gtpu, mode: decap)
    nf rt = router(mac: 02:00:00:00:15:fe) { route 0.0.0.0/0 via 02:00:00:00:15:01 port 1 }
    cls -> dec -> rt
    place dec on smartnic site edge
    place rt on host site edge
}
graph b for beta.s {
    nf cls = classifier(priority: 6) { match ipv4.dst in 10.0.0.0/8 }
    nf rt = router(mac: 02:00:00:00:16:fe) { route 0.0.0.0/0 via 02:00:00:00:16:01 port 2 }
    cls -> rt
    place rt on host site edge
}
device host site edge {
    port 1 owner alpha
    port 2 owner beta
    flow from alpha.s to beta.s # what alpha decapsulates may be beta's on the way back
}
"""


def test_a_chain_resumed_by_its_shim_is_proven_and_a_merge_that_lets_a_classifier_take_it_is_found():
    """#18: alpha's chain leaves the SmartNIC decapsulated, and its inner packets (to
    10.0.0.0/8) match beta's higher-priority classifier on the host: only the chain shim
    keeps them alpha's. The host's merge is proven; a merged program whose beta
    classifier does not leave resumed frames alone is found by equivalence (the
    verifier no longer takes a merged program's classification on trust), with a
    packet that, replayed, does not leave by alpha's port."""
    from mantra6g.synth.dpir import UnOp
    from mantra6g.synth.merge import merge

    (m,) = [x for x in merge_site(frontend.load_sources([SourceFile("site.sg", SPLIT)])) if x.program.name == "host_edge"]
    assert verify_merged(m, "bmv2", properties=["isolation", "equivalence"]).proven
    beta = m.tenant("beta")
    (claim,) = beta.claims
    assert isinstance(claim.classifier, BinOp) and isinstance(claim.classifier.left, UnOp)  # !resumed && match
    greedy = dataclasses.replace(beta, claims=(dataclasses.replace(claim, classifier=claim.classifier.right),))
    merged = merge(m.program.name, [greedy if t.tenant == "beta" else t for t in m.tenants], plan=m.plan)
    bad = dataclasses.replace(m, program=merged.program)
    r = check_equivalence(bad, bad.tenant("alpha"))
    assert r.status == "violated"
    # Replayed: the merge sends alpha's resumed packet out of alpha's port, the bad one not.
    assert [p for p, _ in r.counterexample.replay(m.program).result.outputs] == [1]
    assert 1 not in [p for p, _ in r.counterexample.replay(bad.program).result.outputs]

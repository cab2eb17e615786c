"""Every construct of the language parses to the AST (and IR) it should."""

from __future__ import annotations

from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from mantra6g.synth import ast
from mantra6g.synth.expr import AllOf, AnyOf, Compare, InPrefix, InRange, InSet, Not
from mantra6g.synth.ir import DeviceClass
from mantra6g.synth.parser import parse
from mantra6g.synth.values import MacAddress
from tests.synth.helpers import CLS, graph, ok


def test_tenant_slices_and_every_sla_term():
    spec = ok(
        """
        # leading comment
        tenant acme id 42 {
            bandwidth <= 10 Gbps         # tenant cap
            slice gold {
                latency <= 1.5 ms
                jitter <= 100us
                bandwidth >= 250 Mbps
                reliability >= 99.999 %
                priority 7
            }
            slice bronze { priority 0 }
        }
        """
    )
    (t,) = spec.tenants
    assert (t.name, t.id, t.bandwidth_cap_bps) == ("acme", 42, 10 * 10**9)
    gold, bronze = t.slices
    assert (gold.name, gold.id, bronze.id) == ("gold", 1, 2)
    assert gold.sla.latency_ns == 1_500_000
    assert gold.sla.jitter_ns == 100_000
    assert gold.sla.bandwidth_bps == 250_000_000
    assert gold.sla.reliability_pct == Decimal("99.999")
    assert gold.sla.priority == 7
    assert bronze.sla.latency_ns is None and bronze.sla.priority == 0


@pytest.mark.parametrize(
    "text,base",
    [
        ("latency <= 250 ns", 250),
        ("latency <= 250ns", 250),
        ("latency <= 20 us", 20_000),
        ("latency <= 2 s", 2 * 10**9),
        ("bandwidth >= 64 kbps", 64_000),
        ("bandwidth >= 64 Kbps", 64_000),
        ("bandwidth >= 1 Tbps", 10**12),
        ("bandwidth >= 1500 bps", 1500),
    ],
)
def test_units(text, base):
    spec = ok(f"tenant t id 1 {{\n slice s {{\n  {text}\n }}\n}}\n")
    sla = spec.tenants[0].slices[0].sla
    assert base in (sla.latency_ns, sla.bandwidth_bps)


def test_every_nf_kind_with_params_and_rules():
    spec = ok(
        graph(
            """
nf cls = classifier(priority: 3) {
    match ipv4.dst in 10.1.0.0/16
    match ipv6.dst in 2001:db8::/32
}
nf fw = firewall(default: allow) {
    deny ipv4.src == 10.1.3.7
    allow tcp.dport in [22, 443] or udp.dport < 1024
}
nf rt = router(mac: 02:00:00:00:00:fe) {
    route 10.2.0.0/16 via 02:00:00:00:00:01 port 3
}
nf lb = load_balancer(vip: 10.1.0.100, mode: dnat, hash: [ipv4.src, udp.sport], table_size: 1021) {
    backend 10.1.1.1 weight 3
    backend 10.1.1.2
}
nf vx = tunnel(protocol: vxlan, mode: encap, vni: 5001, local: 192.0.2.1, remote: 192.0.2.2)
nf gt = tunnel(protocol: gtpu, mode: decap, teid: 0xBEEF)
nf src = latency_monitor(role: source, sample: 1/16)
nf snk = latency_monitor(role: sink, buckets: [50us, 1ms])
nf pol = policer(rate: 100 Mbps, burst: 64 KB, exceed: remark, dscp: af11)
cls -> gt -> fw -> src -> pol -> lb -> snk -> vx -> rt
"""
        )
    )
    g = spec.graphs[0]
    nf = {n.name: n for n in g.nfs}
    assert nf["cls"].params.priority == 3
    assert [type(r.match) for r in nf["cls"].rules] == [InPrefix, InPrefix]
    assert nf["cls"].rules[1].match.prefix == IPv6Network("2001:db8::/32")
    assert nf["fw"].params.default == "allow"
    assert [r.action for r in nf["fw"].rules] == ["deny", "allow"]
    assert nf["fw"].rules[1].match == AnyOf(
        (InSet("tcp.dport", (22, 443)), Compare("udp.dport", "<", 1024))
    )
    (route,) = nf["rt"].rules
    assert (route.prefix, route.via, route.port) == (
        IPv4Network("10.2.0.0/16"),
        MacAddress.parse("02:00:00:00:00:01"),
        3,
    )
    assert nf["rt"].params.mac == MacAddress(0x0200000000FE)
    lb = nf["lb"]
    assert lb.params.vip == IPv4Address("10.1.0.100")
    assert lb.params.hash == ("ipv4.src", "udp.sport")
    assert lb.params.table_size == 1021
    assert [(str(b.address), b.weight) for b in lb.rules] == [("10.1.1.1", 3), ("10.1.1.2", 1)]
    assert (nf["vx"].params.protocol, nf["vx"].params.vni, nf["vx"].params.remote) == (
        "vxlan",
        5001,
        IPv4Address("192.0.2.2"),
    )
    assert (nf["gt"].params.mode, nf["gt"].params.teid) == ("decap", 0xBEEF)
    assert nf["src"].params.sample == 16
    assert nf["snk"].params.buckets == (50_000, 1_000_000)
    assert (nf["pol"].params.rate, nf["pol"].params.burst, nf["pol"].params.dscp) == (10**8, 64_000, 10)
    assert g.topological_order() == ("cls", "gt", "fw", "src", "pol", "lb", "snk", "vx", "rt")


def test_defaults_fill_in():
    g = ok(graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1) {\n backend 10.0.0.2\n}\nnf m = latency_monitor(role: source)\ncls -> m -> lb")).graphs[0]
    lb, m = g.nf("lb"), g.nf("m")
    assert lb.params.hash == ("ipv4.src", "ipv4.dst", "ipv4.proto") and lb.params.table_size == 251
    assert m.params.sample == 1 and m.params.buckets[-1] == 10_000_000
    assert g.nf("cls").params.priority == 0


def test_expressions_precedence_and_named_constants():
    g = ok(
        graph(
            """
nf cls = classifier() {
    match ipv4.proto == udp and not ipv4.src == 10.0.0.1 or (eth.type == ipv6 and ipv6.src == fe80::1)
}
nf fw = firewall() {
    allow eth.dst == 02:00:00:00:00:01 and ipv4.dscp in af41..ef and vlan.vid in 100..200
}
cls -> fw
"""
        )
    ).graphs[0]
    match = g.nf("cls").rules[0].match
    # 'and' binds tighter than 'or'; 'not' tighter than 'and'
    assert match == AnyOf(
        (
            AllOf((Compare("ipv4.proto", "==", 17), Not(Compare("ipv4.src", "==", IPv4Address("10.0.0.1"))))),
            AllOf((Compare("eth.type", "==", 0x86DD), Compare("ipv6.src", "==", IPv6Address("fe80::1")))),
        )
    )
    fw = g.nf("fw").rules[0].match
    assert fw.terms[0] == Compare("eth.dst", "==", MacAddress(0x020000000001))
    assert fw.terms[1] == InRange("ipv4.dscp", 34, 46)
    assert fw.terms[2] == InRange("vlan.vid", 100, 200)


def test_edges_branches_and_placement():
    g = ok(
        graph(
            CLS
            + """
nf fw = firewall() {
    allow udp.dport == 5000
}
nf dns = load_balancer(vip: 10.0.0.53) {
    backend 10.0.0.54
}
nf rt = router(mac: 02:00:00:00:00:01) {
    route 0.0.0.0/0 via 02:00:00:00:00:02 port 1
}
cls -> fw -> [udp.dport == 53] dns -> rt
fw -> rt
place fw, rt on pdp
place dns on host site edge7
"""
        )
    ).graphs[0]
    assert [(e.src, e.dst) for e in g.edges] == [("cls", "fw"), ("fw", "dns"), ("dns", "rt"), ("fw", "rt")]
    assert g.edges[1].condition == Compare("udp.dport", "==", 53)
    # the conditional edge is tried before the default one
    assert [e.dst for e in g.successors("fw")] == ["dns", "rt"]
    assert g.nf("fw").placement.device is DeviceClass.PDP and g.nf("fw").placement.site is None
    assert (g.nf("dns").placement.device, g.nf("dns").placement.site) == (DeviceClass.HOST, "edge7")
    assert g.nf("cls").placement is None


def test_newlines_inside_brackets_and_parentheses_wrap_lines():
    g = ok(
        graph(
            CLS
            + """
nf lb = load_balancer(
        vip: 10.0.0.1,
        hash: [ipv4.src,
               ipv4.dst],
    ) {
    backend 10.0.0.2
}
cls -> lb
"""
        )
    ).graphs[0]
    assert g.nf("lb").params.hash == ("ipv4.src", "ipv4.dst")


def test_ast_spans_point_at_source():
    text = "tenant acme id 7 {\n  slice s { priority 1 }\n}\n"
    f = parse(text, "x.sg")
    t = f.tenants[0]
    assert (t.name.span.line, t.name.span.column, t.name.span.end_column) == (1, 8, 12)
    assert (t.id.text, t.id.span.column) == ("7", 16)
    s = t.slices[0]
    assert (s.span.line, s.span.column) == (2, 3)
    assert isinstance(s.terms[0].value, ast.Literal) and s.terms[0].value.kind == "int"


def test_comments_blank_lines_and_crlf():
    text = "\r\n# c\r\n\r\ntenant t id 1 {   # trailing\r\n\r\n  slice s { priority 1 }\r\n}\r\n"
    assert ok(text).tenants[0].slices[0].sla.priority == 1


def test_empty_file_is_an_empty_site():
    spec = ok("# nothing here yet\n")
    assert spec.tenants == () and spec.graphs == ()

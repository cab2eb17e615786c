"""Every kind of user mistake: its message, its position, and its hint where one helps."""

from __future__ import annotations

import pytest

from mantra6g.errors import SpecError
from mantra6g.synth import frontend
from tests.synth.helpers import CLS, TENANT, errors, graph, line_of, one_error

LB = "nf lb = load_balancer(vip: 10.0.0.1) {\n    backend 10.0.0.2\n}\n"

# (id, file text, words the message must contain, text at the reported position,
#  which occurrence of that text, words the hint must contain or None)
CASES = [
    # ---- syntax
    ("syntax-missing-colon", graph("nf fw = firewall(default deny)\ncls -> fw\n" + CLS), "unexpected 'deny'; expected ':'", "deny)", 1, None),
    ("syntax-bad-unit", "tenant t id 1 {\n slice s {\n  latency <= 5 mss\n }\n}\n", "unexpected 'mss'", "mss", 1, "not a unit"),
    ("syntax-reserved-word", graph(CLS + "nf on = firewall()"), "unexpected 'on'", "on =", 1, "reserved word"),
    ("syntax-stray-char", graph(CLS + "nf fw = firewall() ; \ncls -> fw"), "unexpected character ';'", ";", 1, "remove the ';'"),
    ("syntax-unclosed-brace", "tenant t id 1 {\n slice s {\n  priority 1\n", "never closed", "{\n  priority", 1, "add a '}'"),
    ("syntax-missing-parens", graph("nf fw = firewall {\n    allow udp.dport == 1\n}\n"), "unexpected '{'", "{\n        allow", 1, "parentheses"),
    ("syntax-dangling-and", graph("nf cls = classifier() {\n    match udp.dport == 1 and\n}\n"), "unexpected end of line", "\n    }", 2, None),
    ("syntax-single-quote", graph("nf cls = classifier() {\n    match udp.dport == 'x'\n}\n"), "unexpected character \"'\"", "'x'", 1, "double quotes"),
    # ---- names
    ("unknown-nf-kind", graph(CLS + "nf fw = firewal()\ncls -> fw"), "unknown NF kind 'firewal'", "firewal(", 1, "did you mean 'firewall'"),
    ("unknown-parameter", graph(CLS + "nf fw = firewall(defualt: deny)\ncls -> fw"), "firewall 'fw' has no parameter 'defualt'", "defualt", 1, "did you mean 'default'"),
    ("duplicate-parameter", graph(CLS + "nf fw = firewall(default: deny, default: allow)\ncls -> fw"), "parameter 'default' is given twice", "default: allow", 1, None),
    ("missing-parameter", graph(CLS + "nf m = latency_monitor()\ncls -> m"), "needs parameter 'role'", "latency_monitor", 1, "source stamps"),
    ("unknown-rule", graph(CLS + "nf fw = firewall() {\n    permit udp.dport == 1\n}\ncls -> fw"), "a firewall has no 'permit' rule", "permit", 1, "allow, deny"),
    ("unknown-rule-option", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1) {\n    backend 10.0.0.2 wieght 2\n}\ncls -> lb"), "has no option 'wieght'", "wieght", 1, "did you mean 'weight'"),
    ("missing-rule-option", graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01) {\n    route 10.0.0.0/8 port 1\n}\ncls -> rt"), "'route' needs option 'via'", "route 10", 1, None),
    ("rules-on-ruleless-kind", graph(CLS + "nf m = latency_monitor(role: source) {\n    allow udp.dport == 1\n}\ncls -> m"), "a latency_monitor takes no rules", "allow", 1, None),
    ("no-rules", graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01)\ncls -> rt"), "needs at least 1 'route' rule", "router(", 1, None),
    ("duplicate-nf", graph(CLS + "nf fw = firewall()\nnf fw = firewall()\ncls -> fw"), "NF 'fw' is declared twice", "fw = firewall()", 2, "first declared at"),
    ("unknown-nf-in-edge", graph(CLS + "nf fw = firewall()\ncls -> fw -> lb"), "no NF named 'lb'", "lb", 1, None),
    ("unknown-nf-in-place", graph(CLS + "nf fw = firewall()\ncls -> fw\nplace fww on pdp"), "no NF named 'fww'", "fww", 1, "did you mean 'fw'"),
    ("unknown-device", graph(CLS + "nf fw = firewall()\ncls -> fw\nplace fw on smartnik"), "unknown device class 'smartnik'", "smartnik", 1, "did you mean 'smartnic'"),
    ("placed-twice", graph(CLS + "nf fw = firewall()\ncls -> fw\nplace fw on pdp\nplace fw on host"), "NF 'fw' is placed twice", "fw on host", 1, "one device"),
    ("unknown-header", graph("nf cls = classifier() {\n    match ipv5.dst == 1\n}\n"), "unknown header 'ipv5'", "ipv5.dst", 1, "did you mean 'ipv"),
    ("unknown-field", graph("nf cls = classifier() {\n    match udp.port == 1\n}\n"), "header 'udp' has no field 'port'", "udp.port", 1, "did you mean"),
    ("unknown-constant", graph("nf cls = classifier() {\n    match ipv4.proto == upd\n}\n"), "'upd' is not a known value of ipv4.proto", "upd", 1, "did you mean 'udp'"),
    ("duplicate-tenant", TENANT + TENANT.replace("id 1", "id 2"), "tenant 'acme' is declared twice", "acme", 2, "first declared at"),
    ("duplicate-tenant-id", TENANT + TENANT.replace("acme", "zeta"), "tenant id 1 is already used by tenant 'acme'", "1 {", 2, None),
    ("duplicate-slice", "tenant t id 1 {\n slice s { priority 1 }\n slice s { priority 2 }\n}\n", "slice 's' is declared twice", "s { priority 2", 1, None),
    ("duplicate-graph", graph(CLS) + "\ngraph g for acme.gold {\n    " + CLS.replace("\n", "\n    ") + "}\n", "graph 'g' is declared twice", "g for", 2, None),
    ("unknown-tenant", graph(CLS, header="graph g for acmee.gold"), "tenant 'acmee', which is not declared", "acmee", 1, "did you mean 'acme'"),
    ("unknown-slice", graph(CLS, header="graph g for acme.golf"), "tenant 'acme' has no slice 'golf'", "golf", 1, "did you mean 'gold'"),
    ("tenant-without-slices", "tenant t id 1 {\n}\n", "tenant 't' has no slices", "t id", 1, None),
    ("unknown-sla-term", "tenant t id 1 {\n slice s {\n  latncy <= 1 ms\n }\n}\n", "unknown term 'latncy'", "latncy", 1, "did you mean 'latency'"),
    ("duplicate-sla-term", "tenant t id 1 {\n slice s {\n  latency <= 1 ms\n  latency <= 2 ms\n }\n}\n", "'latency' is given twice", "latency <= 2", 1, None),
    # ---- types, units, ranges
    ("wrong-unit-dimension", "tenant t id 1 {\n slice s {\n  latency <= 1 Mbps\n }\n}\n", "latency needs a duration, but 'Mbps' is a unit of a bandwidth", "1 Mbps", 1, "ns, us, ms, s"),
    ("missing-unit", "tenant t id 1 {\n slice s {\n  latency <= 5\n }\n}\n", "latency needs a unit", "5\n", 1, None),
    ("fractional-base-unit", "tenant t id 1 {\n slice s {\n  latency <= 0.5 ns\n }\n}\n", "not a whole number of ns", "0.5 ns", 1, None),
    ("wrong-comparator", "tenant t id 1 {\n slice s {\n  latency >= 1 ms\n }\n}\n", "'latency >=': latency is an upper bound", "latency", 1, "latency <= 1 ms"),
    ("missing-comparator", "tenant t id 1 {\n slice s {\n  bandwidth 10 Mbps\n }\n}\n", "'bandwidth' without a comparator", "bandwidth", 1, "bandwidth >="),
    ("priority-out-of-range", "tenant t id 1 {\n slice s { priority 9 }\n}\n", "priority 9 is out of range", "9", 1, "0 to 7"),
    ("tenant-id-zero", "tenant t id 0 {\n slice s { priority 1 }\n}\n", "tenant id 0 is out of range", "0 {", 1, "1 to 65535"),
    ("wrong-param-type", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.0/24) {\n    backend 10.0.0.2\n}\ncls -> lb"), "vip needs an IPv4 address, not the IPv4 prefix 10.0.0.0/24", "10.0.0.0/24", 1, "drop the prefix length"),
    ("wrong-choice", graph(CLS + "nf fw = firewall(default: reject)\ncls -> fw"), "default must be one of allow | deny, not the name reject", "reject", 1, None),
    ("param-out-of-range", graph(CLS + "nf t = tunnel(protocol: vxlan, mode: decap, vni: 16777216)\ncls -> t"), "vni 16777216 is out of range", "16777216", 1, "0 to 16777215"),
    ("bad-ratio", graph(CLS + "nf m = latency_monitor(role: source, sample: 1/10)\ncls -> m"), "sample 1/10 is not 1/N with N a power of two", "1/10", 1, "hash bits"),
    ("bad-hash-field-list", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1, hash: [ipv4.src, 5]) {\n    backend 10.0.0.2\n}\ncls -> lb"), "hash lists header fields, not the number 5", "5]", 1, None),
    ("port-too-large", graph("nf cls = classifier() {\n    match udp.dport == 70000\n}\n"), "port 70000 does not fit udp.dport (16 bits, at most 65535)", "70000", 1, None),
    ("value-too-wide", graph("nf cls = classifier() {\n    match ipv4.dscp == 64\n}\n"), "value 64 does not fit ipv4.dscp (6 bits", "64", 1, None),
    ("octet-too-large", graph("nf cls = classifier() {\n    match ipv4.src == 10.0.0.256\n}\n"), "10.0.0.256 is not a valid IPv4 address", "10.0.0.256", 1, "0 to 255"),
    ("cidr-host-bits", graph("nf cls = classifier() {\n    match ipv4.src in 10.1.0.1/16\n}\n"), "10.1.0.1/16 has host bits set", "10.1.0.1/16", 1, "did you mean 10.1.0.0/16"),
    ("cidr-too-long", graph("nf cls = classifier() {\n    match ipv4.src in 10.1.0.0/33\n}\n"), "prefix length /33 is longer than 32 bits", "10.1.0.0/33", 1, None),
    ("prefix-on-number-field", graph("nf cls = classifier() {\n    match udp.dport in 10.0.0.0/8\n}\n"), "udp.dport is a 16-bit number; prefixes apply to address fields", "10.0.0.0/8", 1, None),
    ("address-version-mismatch", graph("nf cls = classifier() {\n    match ipv4.dst in 2001:db8::/32\n}\n"), "needs an IPv4 prefix", "2001:db8::/32", 1, None),
    ("ordering-an-address", graph("nf cls = classifier() {\n    match ipv4.dst < 10.0.0.1\n}\n"), "ipv4.dst is an IPv4 address and cannot be ordered", "ipv4.dst", 1, "in PREFIX"),
    ("empty-range", graph("nf cls = classifier() {\n    match udp.dport in 10..5\n}\n"), "empty range 10..5", "10..5", 1, "5..10"),
    ("firewall-negation", graph(CLS + "nf fw = firewall() {\n    allow not udp.dport == 53\n}\ncls -> fw"), "match cannot use 'not'", "not udp", 1, "narrower rule"),
    ("firewall-not-equal", graph(CLS + "nf fw = firewall() {\n    deny udp.dport != 53\n}\ncls -> fw"), "match cannot use '!='", "udp.dport != 53", 1, None),
    ("router-ipv6-route", graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01) {\n    route 2001:db8::/32 via 02:00:00:00:00:02 port 1\n}\ncls -> rt"), "needs an IPv4 prefix", "2001:db8::/32", 1, None),
    ("router-port-range", graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01) {\n    route 10.0.0.0/8 via 02:00:00:00:00:02 port 512\n}\ncls -> rt"), "port 512 is out of range", "512", 1, "0 to 510"),
    ("router-duplicate-route", graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01) {\n    route 10.0.0.0/8 via 02:00:00:00:00:02 port 1\n    route 10.0.0.0/8 via 02:00:00:00:00:03 port 2\n}\ncls -> rt"), "route 10.0.0.0/8 is listed twice", "route 10.0.0.0/8", 2, "first at line"),
    ("l2-group-station", graph(CLS + "nf sw = l2_forward() {\n    station ff:ff:ff:ff:ff:ff port 1\n}\ncls -> sw"), "station ff:ff:ff:ff:ff:ff is a group (multicast or broadcast) address", "station ff", 1, "unicast"),
    ("l2-duplicate-station", graph(CLS + "nf sw = l2_forward() {\n    station 02:00:00:00:00:01 port 1\n    station 02:00:00:00:00:01 port 2\n}\ncls -> sw"), "station 02:00:00:00:00:01 is listed twice", "station 02", 2, "one port"),
    ("l2-no-stations", graph(CLS + "nf sw = l2_forward()\ncls -> sw"), "needs at least 1 'station' rule", "l2_forward", 1, "station"),
    ("lb-table-not-prime", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1, table_size: 250) {\n    backend 10.0.0.2\n}\ncls -> lb"), "table_size 250 is not prime", "table_size", 1, "Maglev"),
    ("lb-backend-is-vip", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1) {\n    backend 10.0.0.1\n}\ncls -> lb"), "backend 10.0.0.1 is the VIP itself", "backend 10.0.0.1", 1, None),
    ("lb-duplicate-backend", graph(CLS + "nf lb = load_balancer(vip: 10.0.0.1) {\n    backend 10.0.0.2\n    backend 10.0.0.2\n}\ncls -> lb"), "backend 10.0.0.2 is listed twice", "backend 10.0.0.2", 2, "weight"),
    ("tunnel-wrong-id", graph(CLS + "nf t = tunnel(protocol: gtpu, mode: decap, vni: 5)\ncls -> t"), "'vni' does not apply to a gtpu tunnel", "vni: 5", 1, "'teid'"),
    ("tunnel-encap-incomplete", graph(CLS + "nf t = tunnel(protocol: vxlan, mode: encap, vni: 5)\ncls -> t"), "needs 'local', 'remote'", "tunnel(", 1, None),
    ("monitor-buckets-order", graph(CLS + "nf m = latency_monitor(role: source, buckets: [1ms, 500us])\ncls -> m"), "bucket bounds must increase strictly", "buckets", 1, None),
    ("monitor-buckets-too-long", graph(CLS + "nf m = latency_monitor(role: source, buckets: [1ms, 5s])\ncls -> m"), "bucket bounds must be below 4294967295 ns", "buckets", 1, "32 bits"),
    ("policer-remark-no-dscp", graph(CLS + "nf p = policer(rate: 1 Mbps, burst: 10 KB, exceed: remark)\ncls -> p"), "exceed: remark needs the DSCP", "exceed", 1, "dscp:"),
    ("policer-tiny-burst", graph(CLS + "nf p = policer(rate: 1 Mbps, burst: 100 B)\ncls -> p"), "smaller than one full-size frame", "burst", 1, "2 KB"),
    # ---- graph structure
    ("cycle", graph(CLS + "nf a = firewall()\nnf b = firewall()\ncls -> a -> b\nb -> a"), "cycle in graph 'g': a -> b -> a", "b -> a", 1, "acyclic"),
    ("self-loop", graph(CLS + "nf a = firewall()\ncls -> a\na -> a"), "cycle in graph 'g': a -> a", "a -> a", 1, None),
    ("unreachable", graph(CLS + "nf a = firewall()\nnf b = firewall()\ncls -> a"), "NF 'b' is not reachable from the classifier 'cls'", "nf b", 1, "cls -> b"),
    ("no-classifier", graph("nf a = firewall()\n"), "graph 'g' has no classifier", "g for", 1, "classifier()"),
    ("two-classifiers", graph(CLS + CLS.replace("cls", "cls2") + "nf a = firewall()\ncls -> a"), "second classifier 'cls2'", "nf cls2", 1, None),
    ("edge-into-classifier", graph(CLS + "nf a = firewall()\ncls -> a -> cls"), "edge into the classifier 'cls'", "a -> cls", 1, None),
    ("two-default-successors", graph(CLS + "nf a = firewall()\nnf b = firewall()\ncls -> a\ncls -> b"), "'cls' has more than one unconditional next NF", "cls -> b", 1, "give all but one a condition"),
    ("duplicate-edge", graph(CLS + "nf a = firewall()\ncls -> a\ncls -> a"), "edge cls -> a is written twice", "-> a", 2, "'or'"),
    ("monitor-sink-without-source", graph(CLS + "nf m = latency_monitor(role: sink)\ncls -> m"), "sink 'm' has no source upstream", "nf m", 1, "role: source"),
    # ---- SLA contradictions
    ("sla-jitter-above-latency", "tenant t id 1 {\n slice s {\n  latency <= 1 ms\n  jitter <= 2 ms\n }\n}\n", "jitter bound 2 ms is not below its latency bound 1 ms", "jitter", 1, "cannot vary"),
    ("sla-zero-latency", "tenant t id 1 {\n slice s {\n  latency <= 0 ms\n }\n}\n", "latency bound of 0 cannot be met", "latency", 1, None),
    ("sla-reliability-over-100", "tenant t id 1 {\n slice s {\n  latency <= 1 ms\n  reliability >= 100.5 %\n }\n}\n", "reliability 100.5% is not a share of packets", "reliability", 1, None),
    ("sla-reliability-without-latency", "tenant t id 1 {\n slice s {\n  reliability >= 99 %\n }\n}\n", "reliability counts packets delivered within the latency bound", "reliability", 1, "latency <="),
    ("sla-zero-bandwidth", "tenant t id 1 {\n slice s {\n  bandwidth >= 0 Mbps\n }\n}\n", "bandwidth >= 0 guarantees nothing", "bandwidth", 1, None),
    ("sla-slice-over-tenant-cap", "tenant t id 1 {\n bandwidth <= 1 Gbps\n slice s {\n  bandwidth >= 2 Gbps\n }\n}\n", "guarantees 2 Gbps, more than tenant 't' may use (1 Gbps)", "slice s", 1, None),
    ("sla-slices-sum-over-cap", "tenant t id 1 {\n bandwidth <= 1 Gbps\n slice a {\n  bandwidth >= 600 Mbps\n }\n slice b {\n  bandwidth >= 600 Mbps\n }\n}\n", "guarantee 1200 Mbps in all, more than its 1 Gbps", "t id", 1, "lower the slices"),
    ("sla-policer-below-guarantee", graph(CLS + "nf p = policer(rate: 5 Mbps, burst: 10 KB)\ncls -> p"), "limits slice 'acme.gold' to 5 Mbps, below the 10 Mbps its SLA guarantees", "nf p", 1, "raise the policer"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error(case):
    _, text, message, at, occurrence, hint = case
    d = one_error(text)
    assert message in d.message, d.render()
    assert (d.span.line, d.span.column) == line_of(text, at, occurrence), d.render()
    if hint is None:
        return
    assert d.hint is not None and hint in d.hint, d.render()


def test_several_independent_semantic_errors_are_all_reported():
    text = graph(
        CLS
        + """
nf fw = firewal()
nf lb = load_balancer(vip: 10.0.0.1, table_size: 100) {
    backend 10.0.0.2
}
nf p = policer(rate: 1 Gbps, burst: 1 MB, exceed: remark)
cls -> fw -> lb -> p
place lb on smartnik
""",
        header="graph g for acme.gold",
    ).replace("latency <= 1 ms", "latency <= 1 Gbps")
    found = errors(text)
    messages = " | ".join(d.message for d in found)
    for expected in ("unknown NF kind 'firewal'", "table_size 100 is not prime", "exceed: remark needs", "unknown device class", "latency needs a duration"):
        assert expected in messages
    assert [d.span.line for d in found] == sorted(d.span.line for d in found)


def test_several_syntax_errors_are_all_reported():
    text = (
        "tenant t id 1 {\n"
        "    slice s {\n"
        "        latency <= 1 Mbpz\n"  # line 3
        "    }\n"
        "}\n"
        "graph g for t.s {\n"
        "    nf fw = firewall(default deny) {\n"  # line 7
        "        allow udp.dport == 1\n"
        "    }\n"
        "    nf x = policer(rate 1 Gbps)\n"  # line 10
        "    cls -> fw\n"
        "}\n"
    )
    assert [d.span.line for d in errors(text)] == [3, 7, 10]


def test_errors_across_files_name_their_file():
    a = TENANT
    b = graph(CLS, tenant="").replace("acme.gold", "acme.silver")
    with pytest.raises(SpecError) as exc:
        frontend.load_sources([frontend.SourceFile("a.sg", a), frontend.SourceFile("b.sg", b)])
    (d,) = exc.value.diagnostics
    assert d.span.file == "b.sg" and "no slice 'silver'" in d.message


def test_graph_may_use_a_tenant_from_another_file_of_the_site():
    specs = frontend.load_sources(
        [frontend.SourceFile("tenants.sg", TENANT), frontend.SourceFile("graphs.sg", graph(CLS, tenant=""))]
    )
    assert specs[0].tenants[0].name == "acme" and specs[1].graphs[0].tenant_id == 1


def test_tenant_ids_clash_across_files():
    other = TENANT.replace("acme", "zeta")
    with pytest.raises(SpecError) as exc:
        frontend.load_sources([frontend.SourceFile("a.sg", TENANT), frontend.SourceFile("b.sg", other)])
    (d,) = exc.value.diagnostics
    assert d.span.file == "b.sg" and "tenant id 1 is already used by tenant 'acme'" in d.message


def test_rendered_error_has_location_source_line_and_caret():
    text = graph(CLS + "nf fw = firewal()\ncls -> fw")
    with pytest.raises(SpecError) as exc:
        frontend.loads(text, "site.sg")
    out = exc.value.render()
    line, col = line_of(text, "firewal(")
    assert out.splitlines()[0] == f"site.sg:{line}:{col}: error: unknown NF kind 'firewal'"
    assert "    nf fw = firewal()" in out
    caret_line = next(ln for ln in out.splitlines() if "^" in ln)
    assert caret_line.index("^") == out.splitlines()[2].index("firewal")
    assert caret_line.count("^") == len("firewal")
    assert "= hint: did you mean 'firewall'?" in out
    assert out.endswith("1 error found")


def test_rule_without_its_head_is_reported_not_misparsed():
    # Found by fuzzing: the options of a headless rule were taken for its head.
    text = graph(CLS + "nf rt = router(mac: 02:00:00:00:00:01) {\n    route via 02:00:00:00:00:02 port 2\n}\ncls -> rt")
    d = one_error(text)
    assert "'route' needs a value (IPv4 prefix)" in d.message
    assert (d.span.line, d.span.column) == line_of(text, "route via")

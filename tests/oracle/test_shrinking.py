"""Random chains and frames drawn by Hypothesis, the interpreter judged by the reference
model: a disagreement shrinks to a short chain and a plain frame (Hypothesis prints
both), which the seeded corpora of test_targets.py cannot do."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from mantra6g.errors import MantraError
from mantra6g.synth.interp import State, run
from tests.oracle import chains
from tests.oracle.cases import Case
from tests.oracle.model import ChainModel
from tests.oracle.traffic import build_frame

# One declaration per NF shape a user writes; Hypothesis shrinks towards the first ones.
NFS = (
    "firewall(default: allow) {\n    deny udp.dport == 53\n}",
    "router(mac: 02:00:00:00:00:fe) {\n    route 10.0.0.0/8 via 02:00:00:00:00:01 port 2\n    route 192.0.2.0/24 via 02:00:00:00:00:02 port 3\n}",
    "load_balancer(vip: 10.9.0.100, mode: dnat) {\n    backend 10.2.0.11\n    backend 10.2.0.12\n}",
    "load_balancer(vip: 10.9.0.100, hash: [ipv4.src, udp.sport]) {\n    backend 10.2.0.11\n    backend 10.2.0.12\n}",
    "tunnel(protocol: gtpu, mode: encap, teid: 9, local: 192.0.2.1, remote: 192.0.2.2)",
    "tunnel(protocol: vxlan, mode: encap, vni: 9, local: 192.0.2.1, remote: 192.0.2.2)",
    "tunnel(protocol: gtpu, mode: decap)",
    "tunnel(protocol: vxlan, mode: decap, vni: 5001)",
    "policer(rate: 1 Mbps, burst: 2 KB, exceed: remark, dscp: cs1)",
    "latency_monitor(role: source)",
    "l2_forward() {\n    station 02:00:00:00:00:bb port 4\n}",
)

frames = st.builds(
    build_frame,
    l3=st.sampled_from(("ipv4", "ipv4", "ipv6", "arp")),
    proto=st.sampled_from(("udp", "tcp", "icmp")),
    payload=st.binary(max_size=40),
    vlan=st.booleans(),
    options=st.booleans(),
    fragment=st.sampled_from(("", "", "first", "middle", "last")),
    udp_checksum_0=st.booleans(),
    tunnel=st.sampled_from(("", "", "vxlan", "gtpu")),
    dst=st.sampled_from(("10.9.0.100", "10.2.3.4", "192.0.2.9")),
    pad=st.booleans(),
    cut=st.sampled_from((0, 0, 0, 1, 9)),
)


def graph_text(picks: list[int]) -> str:
    nfs = [f"nf n{i} = {NFS[k]}" for i, k in enumerate(picks)]
    body = "\n".join([f"nf cls = classifier() {{\n    match {chains.CLASSIFIERS[1]}\n}}", *nfs,
                      "cls -> " + " -> ".join(f"n{i}" for i in range(len(picks)))])
    return chains.TENANT + "graph g for acme.gold {\n" + "\n".join("    " + ln for ln in body.splitlines()) + "\n}\n"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.integers(0, len(NFS) - 1), min_size=1, max_size=5),
       packets=st.lists(frames, min_size=1, max_size=6))
def test_the_interpreter_agrees_with_the_reference_on_drawn_chains(picks, packets):
    case = Case("drawn", graph_text(picks), [("drawn", p) for p in packets])
    try:
        program = case.program
    except MantraError:
        return  # a chain mantra check refuses (two encapsulations in a row)
    model, state = ChainModel(case.spec.graphs[0]), State.initial(program)
    for i, data in enumerate(packets):
        now = 1_000_000 + i * 37_000
        want = model.run(data, 1, now)
        r = run(program, data, 1, now, state)
        assert (r.outputs, r.to_host) == want, f"{case.text}\nframe {data.hex()}"

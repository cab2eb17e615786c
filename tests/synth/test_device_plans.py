"""The operator's device plan: `device CLASS [site S] { port … owner …; flow from … to … }`."""

from __future__ import annotations

import pytest

from mantra6g.errors import SpecError
from mantra6g.source import SourceFile
from mantra6g.synth import frontend
from mantra6g.synth.ir import DeviceClass, DevicePlan, Flow

SITE = """tenant alpha id 21 {
    slice s { latency <= 5 ms }
}
tenant beta id 22 {
    slice s { latency <= 5 ms }
}
graph a for alpha.s {
    nf cls = classifier() { match ipv4.src in 10.21.0.0/16 }
    nf fw = firewall(default: allow)
    cls -> fw
    place fw on smartnic site edge
}
"""


def load(plan: str):
    return frontend.load_sources([SourceFile("p.sg", SITE + plan)])


def test_a_plan_is_read_into_the_ir():
    (spec,) = load("device smartnic site edge {\n    port 0 owner uplink\n    port [1, 2] owner alpha\n"
                   "    port 3 owner beta\n    flow from alpha.s to beta\n}\n")
    assert spec.devices == (DevicePlan(DeviceClass.SMARTNIC, "edge", ((0, "uplink"), (1, "alpha"), (2, "alpha"),
                                                                          (3, "beta")),
                                       (Flow("alpha", "beta", "s", None, spec.devices[0].flows[0].span),),
                                       spec.devices[0].span),)
    assert spec.devices[0].owned_by("alpha") == {1, 2}
    assert "device smartnic site edge: ports uplink 0; alpha 1, 2; beta 3" in frontend.summary([spec])


@pytest.mark.parametrize("plan, message, at", [
    ("device smartnic site edg {\n    port 1 owner alpha\n}\n", "no graph places NFs on smartnic site edg", (13, 8)),
    ("device switch site edge {\n}\n", "unknown device class 'switch'", (13, 8)),
    ("device smartnic site edge {\n    port 1 owner alpah\n}\n", "'alpah' is neither a tenant of the site nor uplink", (14, 18)),
    ("device smartnic site edge {\n    port 511 owner alpha\n}\n", "port 511 is out of range", (14, 10)),
    ("device smartnic site edge {\n    port 1 owner alpha\n    port 1 owner beta\n}\n", "port 1 is given twice", (15, 10)),
    ("device smartnic site edge {\n    prot 1 owner alpha\n}\n", "a device plan has no 'prot' statement", (14, 5)),
    ("device smartnic site edge {\n    flow from alpha to gamma\n}\n", "no tenant 'gamma'", (14, 24)),
    ("device smartnic site edge {\n    flow from alpha.x to beta\n}\n", "tenant 'alpha' has no slice 'x'", (14, 15)),
    ("device smartnic site edge {\n    flow from alpha to alpha\n}\n", "a flow names two tenants", (14, 5)),
    ("device smartnic site edge {\n}\ndevice smartnic site edge {\n}\n", "has two plans", (15, 1)),
])
def test_plan_mistakes_are_reported_where_they_are(plan, message, at):
    with pytest.raises(SpecError) as exc:
        load(plan)
    d = next(d for d in exc.value.diagnostics if message in d.message)
    assert (d.span.line, d.span.column) == at

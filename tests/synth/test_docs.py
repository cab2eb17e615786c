"""The docs describe every kind, parameter, rule form and header field."""

from __future__ import annotations

import dataclasses

import pytest

from mantra6g.synth.headers import HEADERS
from mantra6g.synth.nf import KINDS
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "language.md").read_text()


def section(kind: str) -> str:
    page = ROOT / "docs" / "nf" / f"{kind}.md"
    assert page.is_file(), f"docs/nf/{kind}.md is missing"
    assert f"(nf/{kind}.md)" in DOC, f"docs/language.md does not link the {kind} page"
    return page.read_text()


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_parameter_and_rule_is_documented(kind):
    text = section(kind)
    for f in dataclasses.fields(KINDS[kind].params):
        assert f"| `{f.name}` |" in text, f"{kind}.{f.name} is not documented"
    for keyword in KINDS[kind].rules:
        assert f"`{keyword} " in text, f"{kind} rule '{keyword}' is not documented"


def test_every_header_field_is_documented():
    for h in HEADERS.values():
        row = next((ln for ln in DOC.splitlines() if ln.startswith(f"| `{h.name}` |")), None)
        assert row is not None, f"header {h.name} is not documented"
        for f in h.fields:
            assert f"`{f.name}`" in row, f"{h.name}.{f.name} is not documented"


UNCLOSED = """\
tenant acme id 1 {
    slice gold {
        latency <= 1 ms
    }
}

graph g for acme.gold {
    nf cls = classifier() {
        match udp.dport == 5000
    }
    nf fw = firewall(default: deny
    nf rt = router(mac: 02:00:00:00:00:01) {
        route 10.0.0.0/8 via 02:00:00:00:00:02 port 1
    }
    cls -> fw -> rt
}
"""


def test_the_unclosed_bracket_example_is_the_real_output():
    from mantra6g.errors import SpecError
    from mantra6g.synth import frontend

    try:
        frontend.loads(UNCLOSED, "t.sg")
    except SpecError as exc:
        shown = exc.render()
    else:
        raise AssertionError("the example checked clean")
    assert shown.removesuffix("\n\n1 error found") in DOC, "docs/language.md's error example is out of date"


def test_the_limits_table_states_the_limits_the_code_enforces():
    from mantra6g.source import MAX_FILE_BYTES
    from mantra6g.synth.check import MAX_BRANCHES
    from mantra6g.synth.compose import MAX_CONDITION_DEPTH
    from mantra6g.synth.parser import MAX_LINE, MAX_NESTING

    limits = DOC[DOC.index("## Limits"): DOC.index("## Errors")]
    assert f"| a file | {MAX_FILE_BYTES // 2**20} MiB |" in limits
    assert f"| a line | {MAX_LINE} characters |" in limits and f"column {MAX_LINE + 1}" in limits
    assert f"| nesting of an expression | {MAX_NESTING} levels" in limits and f"level {MAX_NESTING + 1}" in limits
    assert f"| conditional branches from one NF | {MAX_BRANCHES} " in limits
    assert f"{MAX_CONDITION_DEPTH} nested levels of and/or" in limits

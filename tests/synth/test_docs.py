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

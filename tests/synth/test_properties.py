"""Whatever text a user feeds the front end, it fails only with the project's own error."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mantra6g.errors import SpecError
from mantra6g.synth import frontend, ir
from tests.conftest import EXAMPLES

EXAMPLE_TEXTS = [p.read_text() for p in EXAMPLES]
# Pieces the language is made of, so that mutations reach deep into the checks.
VOCABULARY = [
    "tenant", "slice", "graph", "for", "nf", "place", "on", "site", "id", "match", "allow", "deny",
    "route", "via", "port", "backend", "weight", "and", "or", "not", "in", "->", "{", "}", "(", ")",
    "[", "]", ",", ":", ".", "..", "/", "=", "==", "!=", "<=", ">=", "\n", "#", "1", "0", "65536",
    "0x1F", "1.5", "1 ms", "10 Gbps", "64 KB", "99.9 %", "10.0.0.1", "10.0.0.0/8", "300.1.1.1",
    "10.1.0.1/16", "2001:db8::/32", "fe80::1", "02:00:00:00:00:01", "ipv4.dst", "udp.dport",
    "ipv4.proto", "udp", "firewall", "router", "classifier", "policer", "tunnel", "load_balancer",
    "latency_monitor", "latency", "jitter", "bandwidth", "reliability", "priority", '"s"', "1/16",
]


def _check(text: str) -> None:
    try:
        spec = frontend.loads(text, "fuzz.sg")
    except SpecError as exc:
        assert exc.diagnostics, "a SpecError always carries at least one diagnostic"
        rendered = exc.render()
        for d in exc.diagnostics:
            assert d.span is not None and d.span.line >= 1 and d.span.column >= 1
            assert f"fuzz.sg:{d.span.line}:{d.span.column}: error: " in rendered
        return
    # a text that checks clean has an IR that round-trips
    assert ir.from_json(ir.to_json(spec)) == spec


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_spec_error(text):
    _check(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60).map(" ".join))
def test_token_soup_raises_only_spec_error(text):
    _check(text)


@st.composite
def mutated_example(draw) -> str:
    text = draw(st.sampled_from(EXAMPLE_TEXTS))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(draw(st.integers(1, 4))):
        pos = rng.randrange(len(text) + 1)
        op = draw(st.sampled_from(["delete", "insert", "replace", "swap-lines", "truncate"]))
        if op == "delete":
            text = text[:pos] + text[pos + rng.randint(1, 12) :]
        elif op == "insert":
            text = text[:pos] + " " + draw(st.sampled_from(VOCABULARY)) + " " + text[pos:]
        elif op == "replace":
            word = draw(st.sampled_from(VOCABULARY))
            text = text[:pos] + word + text[pos + len(word) :]
        elif op == "swap-lines":
            lines = text.split("\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))  # split() gives at least one line
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            text = text[:pos]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutated_examples_raise_only_spec_error(text):
    _check(text)

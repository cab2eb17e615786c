"""The P4-16 subset grammar and the name resolver catch what p4c would."""

from __future__ import annotations

import pytest

from mantra6g.targets import bmv2, p4check
from mantra6g.targets.p4check import P4CheckError
from tests.synth.test_dpir import router


@pytest.fixture(scope="module")
def good() -> str:
    return bmv2.emit(router()).files["router.p4"]


def test_emitted_router_checks(good):
    tree = p4check.check(good)
    kinds = {t.data for t in tree.iter_subtrees()}
    assert {"parser_declaration", "control_declaration", "table_declaration", "select_expression"} <= kinds


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("hdr.ipv4.ttl - 8w1;", "hdr.ipv4.ttl - 8w1", "syntax error at line"),
        ("size = 64;", "size = 64", "syntax error"),
        ("16w0x800: parse_ipv4;", "16w0x800: parse_ipv6;", "transition to undeclared state 'parse_ipv6'"),
        ("            drop;\n        }", "            punt;\n        }", "undeclared action 'punt'"),
        ("default_action = drop();", "default_action = punt();", "default_action is not a declared action"),
        ("fib.apply();", "rib.apply();", "undeclared name 'rib'"),
        ("hdr.eth.dst = nh;", "hdr.eth.dest = nh;", "eth_h has no field 'dest'"),
        ("meta.std.drop = 1w1;", "meta.std.dropped = 1w1;", "std_meta_t has no field 'dropped'"),
        ("pkt.emit(hdr.udp);", "pkt.emit(hdr.sctp);", "headers_t has no field 'sctp'"),
        ("mark_to_drop(standard_metadata);", "mark_to_drop2(standard_metadata);", "undeclared action or function"),
        ("hdr.ipv4.isValid()", "hdr.ipv4.isVald()", "has no method 'isVald'"),
        ("MantraDeparser()\n) main;", "MantraDeparsr()\n) main;", "MantraDeparsr() is not a declared"),
    ],
)
def test_broken_programs_are_rejected_with_the_reason(good, old, new, message):
    assert old in good
    with pytest.raises(P4CheckError, match=message.replace("(", r"\(").replace(")", r"\)")):
        p4check.check(good.replace(old, new, 1))


def test_syntax_errors_show_the_line_and_a_caret(good):
    with pytest.raises(P4CheckError) as exc:
        p4check.check(good.replace("size = 64;", "size = = 64;"))
    text = str(exc.value)
    line = good[: good.index("size = 64;")].count("\n") + 1
    assert f"line {line}," in text and "^" in text

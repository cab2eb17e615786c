"""The P4-16 subset grammar, the name resolver and the type checker catch what p4c
would (p4test judges the type snippets where it is installed)."""

from __future__ import annotations

import re

import pytest

from mantra6g.errors import MantraError
from mantra6g.targets import bmv2, p4check, tofino, toolchain
from mantra6g.targets.p4 import ident
from mantra6g.targets.p4check import P4CheckError
from tests.synth.test_dpir import router
from tests.targets.corpus import emitted_programs
from tests.targets.test_tools import NO_P4C

CORPUS = emitted_programs()


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


# ---------------------------------------------------------------- types, judged by p4test

# A small v1model program with two holes: statements of an action (/*BODY*/) and cases of
# a parser select on the 16-bit hdr.h.c (/*CASES*/).
SNIPPET_PROGRAM = """\
#include <core.p4>
#include <v1model.p4>

header h_t {
    bit<8> a;
    bit<48> b;
    bit<16> c;
    bit<4> n;
    bit<4> m;
}

struct headers_t {
    h_t h;
}

struct meta_t {
    bit<8> x;
    bit<1> f;
    bit<32> w;
    bool ok;
}

parser P(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t standard_metadata) {
    state start {
        pkt.extract(hdr.h);
        transition select(hdr.h.c) {
            /*CASES*/
            default: accept;
        }
    }
}

control VC(inout headers_t hdr, inout meta_t meta) {
    apply { }
}

control I(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t standard_metadata) {
    register<bit<8>>(32w4) r;

    action set(bit<8> v) {
        meta.x = v;
    }

    action act(bit<16> p) {
        /*BODY*/
    }

    table t {
        key = {
            hdr.h.c: exact;
        }
        actions = {
            act;
            set;
        }
        default_action = set(8w0);
    }

    apply {
        act(16w1);
        t.apply();
    }
}

control E(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control CC(inout headers_t hdr, inout meta_t meta) {
    apply { }
}

control D(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.h);
    }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
"""


def snippet(body: str = "", cases: str = "") -> str:
    return SNIPPET_PROGRAM.replace("/*BODY*/", body).replace("/*CASES*/", cases)


# (action body or select cases, what p4check says); p4test refuses every one of them.
ILL_TYPED = [
    ("hdr.h.b = (bit<48>)(hdr.h.a - hdr.h.b);", "the operands of '-' have different widths, bit<8> and bit<48>"),
    ("hdr.h.b = meta.x;", "assignment of bit<8> 'meta.x' to 'hdr.h.b', which is bit<48>"),
    ("meta.w = hdr.h.a + 32w1000;", "the operands of '+' have different widths, bit<8> and bit<32>"),
    ("meta.f = (bit<1>)(hdr.h.a == hdr.h.c);", "bit<8> cannot be compared with bit<16>"),
    ("hdr.h.c = hdr.h.a ++ hdr.h.n;", "assignment of bit<12> 'hdr.h.a ++ hdr.h.n' to 'hdr.h.c', which is bit<16>"),
    ("hdr.h.c = hdr.h.a ++ 1;", "'++' needs operands of known width, '1' is an unsized integer"),
    ("meta.x = hdr.h.b[8:0];", "assignment of bit<9>"),
    ("meta.x = hdr.h.a[8:1];", "slice [8:1] of bit<8>"),
    ("meta.x = meta.ok ? hdr.h.a : hdr.h.c;", "the alternatives are bit<8> and bit<16>"),
    ("meta.x = meta.ok ? 1 : 2;", "a width must be given"),
    ("if (meta.f) { meta.x = 1; }", "the condition 'meta.f' is bit<1>, not bool"),
    ("meta.ok = meta.f == 1 && hdr.h.a;", "'&&' needs bool operands, 'hdr.h.a' is bit<8>"),
    ("meta.ok = 1;", "assignment of int '1' to 'meta.ok', which is bool"),
    ("meta.ok = !meta.f;", "'!' needs a bool: 'meta.f' is bit<1>"),
    ("meta.x = (bit<8>)meta.ok;", "a bool casts to bit<1> only, not bit<8>"),
    ("meta.x = p;", "assignment of bit<16> 'p' to 'meta.x', which is bit<8>"),
    ("standard_metadata.egress_spec = hdr.h.a;", "which is bit<9>"),
    ("r.write(32w1, hdr.h.c);", "argument 'hdr.h.c' of register.write is bit<16>, the parameter bit<8>"),
    ("r.write(8w1, hdr.h.a);", "argument '8w1' of register.write is bit<8>, the parameter bit<32>"),
    ("r.read(hdr.h.c, 32w0);", "argument 'hdr.h.c' of register.read is bit<16>, the parameter bit<8>"),
    ("set(16w1);", "argument '16w1' of action set is bit<16>, the parameter bit<8>"),
    ("meta.x = hdr.h.a % 3;", "p4c computes '%' of a run-time value only by a power of two"),
    ("meta.w = 32w10 / meta.w;", "p4c computes '/' of a run-time value only by a power of two"),
    ("meta.ok = meta.ok == 1;", "bool cannot be compared with int"),
    ({"cases": "8w1: accept;"}, "keyset value '8w1' is bit<8>, its key bit<16>"),
    ({"cases": "16w0x800 &&& 8w0xff: accept;"}, "keyset value '8w0xff' is bit<8>, its key bit<16>"),
]
WELL_TYPED = [
    "meta.x = hdr.h.a - 1;",  # an unsized literal takes the other operand's width
    "meta.x = 8w1 + 8w2 - 7;",
    "hdr.h.c = hdr.h.a ++ meta.x;",  # 8 + 8 bits
    "meta.x = hdr.h.n ++ hdr.h.m;",
    "meta.x = hdr.h.b[47:40] + hdr.h.a;",
    "meta.x = hdr.h.b[15:0][7:0];",
    "meta.x = hdr.h.a << hdr.h.c;",  # a shift amount of any width
    "meta.x = meta.ok ? hdr.h.a : 8w1;",
    "meta.x = meta.ok ? hdr.h.a : 1;",
    "meta.f = (bit<1>)meta.ok; meta.ok = (bool)meta.f;",
    "meta.f = (bit<1>)(hdr.h.a == 8w3);",
    "meta.ok = hdr.h.a < 200 && meta.f == 1;",
    "if (meta.f == 1) { meta.w = (bit<32>)hdr.h.a % 32w8; }",  # by a power of two
    "meta.w = meta.w / 32w4 + standard_metadata.packet_length;",
    "meta.x = 8w3 % 2;",  # computed at compile time
    "r.read(meta.x, 32w0); r.write((bit<32>)hdr.h.a & 32w3, meta.x + 1);",
    "set(8w1); set(2);",
    "standard_metadata.egress_spec = (bit<9>)hdr.h.a;",
    {"cases": "16w0x800: accept;\n16w0x8100 &&& 16w0xff00: accept;\n16w1 .. 16w7: accept;\n9: accept;"},
]


def _holes(case) -> dict:
    return case if isinstance(case, dict) else {"body": case}


def _id(case) -> str:
    return " ".join(str(v) for v in _holes(case).values())


def test_the_snippet_program_itself_is_well_typed():
    p4check.check(snippet())


@pytest.mark.parametrize("case, message", ILL_TYPED, ids=[_id(c) for c, _ in ILL_TYPED])
def test_ill_typed_p4_is_refused_with_line_and_column(case, message):
    with pytest.raises(P4CheckError) as exc:
        p4check.check(snippet(**_holes(case)))
    text = str(exc.value)
    assert message in text
    body = snippet(**_holes(case))
    where = body.index(next(v for v in _holes(case).values()).splitlines()[0])
    assert f"\n  {body[:where].count(chr(10)) + 1}:" in text  # the snippet's line, then its column


@pytest.mark.parametrize("case", WELL_TYPED, ids=[_id(c) for c in WELL_TYPED])
def test_well_typed_tricky_p4_is_accepted(case):
    p4check.check(snippet(**_holes(case)))


@pytest.mark.skipif(toolchain.find("p4test") is None, reason=NO_P4C)
@pytest.mark.parametrize("case, well_typed", [(c, False) for c, _ in ILL_TYPED] + [(c, True) for c in WELL_TYPED],
                         ids=[f"ill:{_id(c)}" for c, _ in ILL_TYPED] + [f"well:{_id(c)}" for c in WELL_TYPED])
def test_p4test_judges_the_snippets_as_p4check_does(tmp_path, case, well_typed):
    """Oracle: p4c's front and mid end (``p4test``, with the real ``v1model.p4``) refuses
    every ill-typed snippet p4check refuses, and accepts every well-typed one: p4check
    is no stricter than p4c, and as strict where it claims to be."""
    source = tmp_path / "snippet.p4"
    source.write_text(snippet(**_holes(case)))
    if well_typed:
        toolchain.p4test(source)
    else:
        with pytest.raises(toolchain.ToolFailed, match="error"):
            toolchain.p4test(source)


# ---------------------------------------------------------------- everything the backends emit


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_emitted_program_passes_the_check(name):
    """Consistency: the checker accepts every program of the corpus (tests/targets/corpus.py)
    as both P4 backends emit it (where the target takes it); test_tools.py has p4c judge
    the same programs."""
    program = CORPUS[name]()
    checked = 0
    for backend in (bmv2, tofino):
        try:
            text = backend.emit(program).files[f"{ident(program.name)}.p4"]
        except MantraError:  # e.g. a host program's 64-bit registers on Tofino
            continue
        p4check.check(text)
        checked += 1
    assert checked >= 1


@pytest.mark.skipif(toolchain.find("p4test") is None, reason=NO_P4C)
@pytest.mark.parametrize("struct", sorted(p4check.ARCH_STRUCTS))
def test_intrinsic_metadata_types_are_the_architecture_files(struct):
    """Oracle: p4c's own ``v1model.p4`` and ``tofino1_base.p4`` (with the widths of
    ``tofino1_specs.p4``): every intrinsic field the checker types has that type there."""
    include = toolchain.find("p4test").resolve().parent.parent / "share" / "p4c" / "p4include"
    files = [include / f for f in ("v1model.p4", "tofino1_specs.p4", "tofino1_base.p4")]
    text = "\n".join(f.read_text() for f in files if f.is_file())
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\d+)", text))
    typedefs = {name: int(defines.get(w, w)) for w, name in re.findall(r"typedef\s+bit<(\w+)>\s+(\w+)\s*;", text)}
    found = re.search(rf"(?:struct|header)\s+{struct}\s*\{{(.*?)\n\}}", text, re.S)
    missing = [f.name for f in files if not f.is_file()]
    if found is None and missing:  # a p4c built without its Tofino back end has no tofino1_*.p4
        pytest.skip(f"{struct} is declared in none of the files {include} has ({', '.join(missing)} missing)")
    body = found.group(1)
    body = re.sub(r"#else.*?#endif", "", body, flags=re.S)  # v1model: the current declarations
    declared = {}
    for kind, name in re.findall(r"^\s*(?:@\w+(?:\([^)]*\))?\s*)*(bit<\w+>|\w+)\s+(\w+)\s*;", body, re.M):
        m = re.fullmatch(r"bit<(\w+)>", kind)
        declared[name] = (f"bit<{int(defines.get(m.group(1), m.group(1)))}>" if m else
                          f"bit<{typedefs[kind]}>" if kind in typedefs else kind)
    for name, t in p4check.ARCH_STRUCTS[struct].items():
        assert declared.get(name) == str(t), f"{struct}.{name}"

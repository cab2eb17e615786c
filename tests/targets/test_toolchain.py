"""``ToolFailed.first_error``: the line a report shows for a refused program (bench/compile.py
prints it in place of a compile time). Oracle: real p4c-bm2-ss's own output where it is
installed; scripts standing in for a tool's exit where the point is how it ended."""

from __future__ import annotations

import pytest

from mantra6g.targets import toolchain
from tests.targets.test_tools import NO_P4C, fake_tool

# A v1model program with the type error of issue 13 (bit<8> - bit<48>), which p4c refuses.
MISMATCH = """#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<48> b; }
struct headers_t { h_t h; }
struct meta_t { }
parser P(packet_in pk, out headers_t hdr, inout meta_t m, inout standard_metadata_t s) {
    state start { pk.extract(hdr.h); transition accept; }
}
control VC(inout headers_t hdr, inout meta_t m) { apply { } }
control I(inout headers_t hdr, inout meta_t m, inout standard_metadata_t s) {
    apply { hdr.h.a = hdr.h.a - hdr.h.b; }
}
control E(inout headers_t hdr, inout meta_t m, inout standard_metadata_t s) { apply { } }
control CC(inout headers_t hdr, inout meta_t m) { apply { } }
control D(packet_out pk, in headers_t hdr) { apply { pk.emit(hdr.h); } }
V1Switch(P(), VC(), I(), E(), CC(), D()) main;
"""


@pytest.mark.skipif(toolchain.find("p4c-bm2-ss") is None, reason=NO_P4C)
def test_the_first_error_is_the_line_p4c_reports_not_its_source_excerpt(tmp_path):
    (tmp_path / "bad.p4").write_text(MISMATCH)
    with pytest.raises(toolchain.ToolFailed) as failed:
        toolchain.compile_bmv2(tmp_path / "bad.p4", tmp_path)
    first = failed.value.first_error
    assert first.startswith(f"{tmp_path}/bad.p4(11):") and "error:" in first, first
    assert "different widths 8 and 48" in first
    assert failed.value.returncode == 1


def test_warnings_before_the_error_are_passed_over(tmp_path):
    tool = fake_tool(tmp_path, "bf-p4c", 'echo "x.p4(3): [--Wwarn=unused] warning: t is unused" >&2\n'
                                         'echo "x.p4(9): [--Werror=unsupported] error: too wide" >&2; exit 1')
    with pytest.raises(toolchain.ToolFailed) as failed:
        toolchain.run([str(tool)])
    assert failed.value.first_error == "x.p4(9): [--Werror=unsupported] error: too wide"


def test_a_tool_that_dies_without_an_error_line_says_how_it_ended(tmp_path):
    killed = fake_tool(tmp_path, "killed", 'echo "x.p4(3): warning: w" >&2; kill -9 $$')
    with pytest.raises(toolchain.ToolFailed) as failed:
        toolchain.run([str(killed)])
    assert failed.value.first_error == "killed by signal 9, no error line; last: x.p4(3): warning: w"
    silent = fake_tool(tmp_path, "silent", "exit 3")
    with pytest.raises(toolchain.ToolFailed) as failed:
        toolchain.run([str(silent)])
    assert failed.value.first_error == "exit status 3, no error line; last: (no output)"

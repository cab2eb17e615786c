"""Building small service graphs and collecting their diagnostics in tests."""

from __future__ import annotations

from mantra6g.errors import Diagnostic, SpecError
from mantra6g.synth import frontend, ir

TENANT = """\
tenant acme id 1 {
    slice gold {
        latency <= 1 ms
        bandwidth >= 10 Mbps
    }
}
"""


def graph(body: str, tenant: str = TENANT, header: str = "graph g for acme.gold") -> str:
    """A file with one tenant and one graph whose statements are ``body``."""
    indented = "\n".join("    " + line if line.strip() else line for line in body.strip("\n").splitlines())
    return f"{tenant}\n{header} {{\n{indented}\n}}\n"


CLS = "nf cls = classifier() {\n    match udp.dport == 5000\n}\n"


def ok(text: str) -> ir.ServiceSpec:
    return frontend.loads(text, "t.sg")


def errors(text: str) -> list[Diagnostic]:
    try:
        frontend.loads(text, "t.sg")
    except SpecError as exc:
        return exc.diagnostics
    raise AssertionError("expected errors, the spec checked clean")


def one_error(text: str) -> Diagnostic:
    found = errors(text)
    assert len(found) == 1, "\n".join(d.render() for d in found)
    return found[0]


def line_of(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """(line, column) of the n-th occurrence of ``needle``, both from 1."""
    start = -1
    for _ in range(occurrence):
        start = text.index(needle, start + 1)
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return line, col

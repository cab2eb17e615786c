"""latency_monitor: in-network one-way delay of a slice.

Lowering: a ``source`` inserts the telemetry shim (``mtel``) with the ingress
timestamp into sampled packets; a ``sink`` computes now - timestamp, removes the shim
and records the delay per slice in registers (sum, count, max) and histogram buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.nf.base import Choice, ListOf, NfKind, OneIn, Quantity, param, param_span
from mantra6g.synth.values import Reporter

US = 1_000
MS = 1_000_000
DEFAULT_BUCKETS = (100 * US, 250 * US, 500 * US, 1 * MS, 2 * MS, 5 * MS, 10 * MS)
MAX_BUCKETS = 16


@tagged("latency_monitor.params")
@dataclass(frozen=True)
class LatencyMonitorParams:
    role: str = param(Choice(("source", "sink")), "source stamps, sink measures")
    sample: int = param(OneIn(), "share of packets stamped, as 1/N (stored as N)", default=1)
    buckets: tuple[int, ...] = param(
        ListOf(Quantity("time")), "upper bounds of the delay histogram's buckets (ns)", default=DEFAULT_BUCKETS
    )


def _check(params: LatencyMonitorParams, rules: tuple, decl: ast.NfDecl, report: Reporter) -> None:
    b = params.buckets
    if not b or len(b) > MAX_BUCKETS:
        report.error(param_span(decl, "buckets"), f"buckets needs 1 to {MAX_BUCKETS} bounds, got {len(b)}")
    elif any(x >= y for x, y in zip(b, b[1:])):
        report.error(param_span(decl, "buckets"), "bucket bounds must increase strictly", "e.g. [100us, 500us, 1ms]")


def _check_in_graph(nf, graph, slice_, report: Reporter) -> None:
    if nf.params.role != "sink":
        return
    sources = [n for n in graph.upstream(nf.name) if graph.nf(n).kind == "latency_monitor" and graph.nf(n).params.role == "source"]
    if not sources:
        report.error(
            nf.span,
            f"latency monitor sink '{nf.name}' has no source upstream of it",
            "add a latency_monitor(role: source) earlier in the chain",
        )


KIND = NfKind(
    name="latency_monitor",
    summary="In-network one-way delay: the source stamps, the sink measures and records per slice.",
    params=LatencyMonitorParams,
    check=_check,
    check_in_graph=_check_in_graph,
)

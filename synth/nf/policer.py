"""policer: a token bucket per slice; traffic above the rate is dropped or re-marked.

Lowering: a meter (or a token bucket in a register/map) of ``rate`` and ``burst``;
packets that exceed it are dropped, or have their DSCP set to ``dscp``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.dpir import RED, Assign, BinOp, Const, Drop, If, IsValid, Meter, MeterExec, Ref
from mantra6g.synth.nf.base import Choice, FieldValue, NfKind, Quantity, param, param_span
from mantra6g.synth.values import Reporter, format_quantity

MIN_BURST = 1514  # one full-size Ethernet frame
# Meters count tokens in bit-nanoseconds in 64 bits (bytes x 8e9): a full bucket plus one
# refill step must stay below 2^64 on every target.
MAX_BURST = 10**9  # 1 GB
MAX_RATE = 10**12  # 1 Tbps


@tagged("policer.params")
@dataclass(frozen=True)
class PolicerParams:
    rate: int = param(Quantity("rate", MAX_RATE), "committed rate (bps)")
    burst: int = param(Quantity("size", MAX_BURST), "bucket depth (bytes)")
    exceed: str = param(Choice(("drop", "remark")), "what happens to traffic above the rate", default="drop")
    dscp: int | None = param(FieldValue("ipv4.dscp"), "the DSCP written into excess packets (with exceed: remark)", default=None)


def _check(params: PolicerParams, rules: tuple, decl: ast.NfDecl, report: Reporter) -> None:
    if params.exceed == "remark" and params.dscp is None:
        report.error(param_span(decl, "exceed"), "exceed: remark needs the DSCP to write", "add dscp: 0 (best effort) or another class")
    if params.exceed == "drop" and params.dscp is not None:
        report.error(param_span(decl, "dscp"), "'dscp' only applies with exceed: remark")
    if params.rate == 0:
        report.error(param_span(decl, "rate"), "a rate of 0 drops everything")
    if params.burst < MIN_BURST:
        report.error(
            param_span(decl, "burst"),
            f"burst {format_quantity(params.burst, 'size')} is smaller than one full-size frame ({MIN_BURST} B)",
            "every large packet would exceed; use at least 2 KB",
        )


def _check_in_graph(nf, graph, slice_, report: Reporter) -> None:
    guaranteed = slice_.sla.bandwidth_bps
    if guaranteed is not None and nf.params.rate < guaranteed:
        report.error(
            nf.span,
            f"policer '{nf.name}' limits slice '{graph.tenant}.{graph.slice}' to "
            f"{format_quantity(nf.params.rate, 'rate')}, below the {format_quantity(guaranteed, 'rate')} its SLA guarantees",
            "raise the policer's rate or lower the slice's bandwidth",
        )


def lower(nf, low) -> tuple:
    """A meter of ``rate``/``burst``; a red packet is dropped or re-marked."""
    meter = f"{low.name('bucket')}"
    low.meters.append(Meter(meter, 1, nf.params.rate, nf.params.burst))
    colour = low.meta("colour", 2)
    if nf.params.exceed == "drop":
        exceed: tuple = (Drop(),)
    else:
        exceed = (If(IsValid("ipv4"), (Assign("ipv4.dscp", Const(nf.params.dscp, 6)),)),)
    return (MeterExec(meter, Const(0, 1), colour), If(BinOp("==", Ref(colour), Const(RED, 2)), exceed))


KIND = NfKind(
    name="policer",
    summary="Token bucket per slice: drop or re-mark DSCP when traffic exceeds the rate.",
    params=PolicerParams,
    check=_check,
    check_in_graph=_check_in_graph,
    lower=lower,
)

"""classifier: the entry of every graph; decides which packets belong to the slice.

Lowering (DP-IR) writes the tenant and slice ids into metadata for the packets that
match; every other NF of the graph is guarded by them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.synth import dpir
from mantra6g.source import Span
from mantra6g.synth.expr import Expr
from mantra6g.synth.nf.base import Int, Match, NfKind, head, param, source_span


@tagged("classifier.params")
@dataclass(frozen=True)
class ClassifierParams:
    priority: int = param(
        Int(0, 255),
        "tie-break when classifiers of tenants sharing a device overlap: the higher wins",
        default=0,
    )


@tagged("classifier.match")
@dataclass(frozen=True)
class ClassifierMatch:
    """``match EXPR``: packets matching any of the classifier's rules enter the graph."""

    match: Expr = head(Match(), "the traffic of this slice")
    span: Span | None = source_span()


def match_condition(nf) -> "dpir.Expr":
    """The DP-IR condition under which a packet belongs to the classifier's slice."""
    from mantra6g.synth.compose import any_of, condition

    return any_of([condition(r.match) for r in nf.rules])


KIND = NfKind(
    name="classifier",
    summary="Marks the slice's traffic: packets matching any 'match' rule enter the graph.",
    params=ClassifierParams,
    rules={"match": ClassifierMatch},
    min_rules=1,
)

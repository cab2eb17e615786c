"""firewall: ordered allow/deny rules; the first rule that matches decides.

Lowering: one ternary/range table whose entry priorities follow the written order
(a rule with ``or`` becomes several entries of the same priority). A deny rule on a
transport field also matches packets whose transport header the parser does not read
(IPv4 options, fragments, IPv6 extension headers) when its other tests hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.source import Span
from mantra6g.synth.compose import rule_table
from mantra6g.synth.dpir import ActionCall, Apply, Call, Drop
from mantra6g.synth.expr import Expr
from mantra6g.synth.nf.base import Choice, Match, NfKind, head, keyword, param, source_span


@tagged("firewall.params")
@dataclass(frozen=True)
class FirewallParams:
    default: str = param(Choice(("allow", "deny")), "what happens to packets no rule matches", default="deny")


@tagged("firewall.rule")
@dataclass(frozen=True)
class FirewallRule:
    action: str = keyword("allow or deny")
    match: Expr = head(Match(ternary=True), "the packets the rule applies to")
    span: Span | None = source_span()


def lower(nf, low) -> tuple:
    """One ternary/range table; the first matching rule (highest priority) decides."""
    bodies = {"allow": (), "deny": (Drop(),)}
    if not nf.rules:
        # No table: the default runs on every packet, and only its action is declared
        # (p4c warns about an action nothing uses, and leaves it out of the P4Info).
        return (Call(low.action(nf.params.default, body=bodies[nf.params.default])),)
    verdict = {v: low.action(v, body=body) for v, body in bodies.items()}
    default = ActionCall(verdict[nf.params.default])
    # A deny also matches what its transport tests cannot see (TCP behind IPv4 options, in
    # a fragment, behind IPv6 extension headers): a firewall never allows what it denies.
    keys, entries = rule_table([(r.match, ActionCall(verdict[r.action]), r.action == "deny") for r in nf.rules])
    acl = low.table(
        "acl",
        keys=keys,
        actions=tuple(verdict.values()),
        default=default,
        size=max(1, len(entries)),
        entries=tuple(entries),
        const=True,
    )
    return (Apply(acl),)


KIND = NfKind(
    name="firewall",
    summary="Ordered allow/deny rules over header fields; the first match decides, else the default.",
    params=FirewallParams,
    rules={"allow": FirewallRule, "deny": FirewallRule},
    lower=lower,
)

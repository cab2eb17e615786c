"""The InfraNF library: one module per kind, each owning its parameters, rule forms,
checks and (in later stages) its lowering to DP-IR."""

from __future__ import annotations

from mantra6g.synth.nf import (
    classifier,
    firewall,
    l2_forward,
    latency_monitor,
    load_balancer,
    policer,
    router,
    tunnel,
)
from mantra6g.synth.nf.base import NfKind

KINDS: dict[str, NfKind] = {
    m.KIND.name: m.KIND
    for m in (classifier, firewall, router, l2_forward, load_balancer, tunnel, latency_monitor, policer)
}



def tunnel_effect(nf) -> str | None:
    """"push" if the NF instance wraps the packet in an outer IPv4 header, "pop" if it
    removes one, else None (its kind's ``tunnels``, given its parameters)."""
    kind = KINDS[nf.kind]
    return kind.tunnels(nf.params) if kind.tunnels else None


__all__ = ["KINDS", "NfKind", "tunnel_effect"]

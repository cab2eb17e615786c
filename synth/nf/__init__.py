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

__all__ = ["KINDS", "NfKind"]

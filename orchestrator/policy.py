"""The policy engine: when to act, and which actions are allowed.

It owns the rules that do not depend on how a move is chosen: the policies and their
parameters (:class:`PolicySpec`), the warm-up every dynamic policy waits out, the trigger
(a signal against a threshold, with hysteresis and a per-chain cooldown), the migration
budget per interval, the SLA feasibility rule of Algorithm 1, the stated cost of a
migration, and the isolation rules (which node roles may host which slice; URLLC never
shares a node with best effort; URLLC is pinned where the node supports it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from mantra6g.errors import MantraError
from mantra6g.orchestrator.infra import MigrationPlan, NodeRole, NodeSpec, SliceKind


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the policy engine; the ``policy:`` section of a scenario."""

    epsilon_ms: float = 0.1  # slack: act when the signal exceeds SLA - epsilon
    horizon: int = 2  # forecast steps the predictive trigger looks ahead
    budget: int = 2  # migrations allowed per budget interval, over all chains
    budget_interval: int = 10  # steps
    cooldown: int = 20  # steps a chain waits after one of its migrations
    hysteresis_ms: float = 0.05  # re-arm a chain only once it is below SLA - epsilon - this
    alpha: float = 1.0  # Algorithm 2: weight of the migration delay in the cost
    max_utilisation: float = 0.85  # a move may not load the target partition beyond this
    isolation: bool = True  # URLLC never shares a node with best effort
    pin_urllc: bool = True  # pin URLLC VNFs where the node supports it
    # Every dynamic policy (reactive ones too) waits this many steps before its first
    # action, so no policy gets an earlier start than another.
    warmup: int = 10
    # The stated cost of one migration, in expected SLA-violating steps: the cost-aware
    # policies move only when the violations a move is expected to avoid exceed it.
    migration_cost: float = 1.0
    # Steps over which a move's benefit is counted (the action's horizon): risk beyond
    # the forecast horizon is taken to persist at its last forecast step's level.
    benefit_steps: int = 10
    # Where every policy starts: home (initial_placement) or balanced (the balanced static
    # placement; the dynamic policies then only handle what it cannot).
    start: str = "home"


class PolicyError(MantraError):
    """A policy name or parameter the user must fix."""


@dataclass(frozen=True)
class PolicyKind:
    """One policy: how it triggers, which placement algorithm it uses, what it needs."""

    name: str
    trigger: str  # none | observed | smoothed | forecast | risk
    placement: str  # none | balanced | algorithm1 | algorithm1-paper | algorithm2 | algorithm2-paper
    needs_forecaster: bool
    parameter: str  # what ``@value`` sets ("" if none)
    summary: str


POLICY_KINDS: dict[str, PolicyKind] = {k.name: k for k in (
    PolicyKind("static", "none", "none", False, "",
               "home placement (initial_placement), never moves"),
    PolicyKind("balanced", "none", "balanced", False, "",
               "risk-aware balanced placement from the slices' descriptors, never moves"),
    PolicyKind("reactive", "observed", "algorithm1", False, "threshold",
               "observed latency > threshold x SLA; moves sized from the observation"),
    PolicyKind("reactive-smooth", "observed", "algorithm1", True, "threshold",
               "observed latency > threshold x SLA; moves sized from the forecaster's level (the input "
               "predictive sizes from)"),
    PolicyKind("predictive", "risk", "algorithm1", True, "cost",
               "expected violations over the action's horizon > migration cost; best move"),
    PolicyKind("global", "risk", "algorithm2", True, "cost",
               "as predictive, Algorithm 2 (neighbours may move, cost-aware)"),
    PolicyKind("predictive-paper", "forecast", "algorithm1-paper", True, "",
               "the paper's Algorithm 1: forecast > SLA - epsilon; first feasible move"),
    PolicyKind("global-paper", "observed", "algorithm2-paper", False, "",
               "the paper's Algorithm 2: observed > SLA; first fit within SLA + epsilon"),
)}


@dataclass(frozen=True)
class PolicySpec:
    """A policy with its parameter: ``reactive@0.6`` triggers at 0.6 x SLA, ``predictive@2``
    states a migration cost of 2 violating steps. ``None``: the scenario's default."""

    kind: PolicyKind
    value: float | None = None

    @staticmethod
    def parse(text: str) -> PolicySpec:
        name, _, value = text.strip().partition("@")
        kind = POLICY_KINDS.get(name)
        if kind is None:
            raise PolicyError(f"unknown policy '{name}'; choose from {', '.join(POLICY_KINDS)}")
        if not value:
            return PolicySpec(kind)
        if not kind.parameter:
            raise PolicyError(f"policy {name} takes no parameter (drop '@{value}')")
        try:
            number = float(value)
        except ValueError:
            raise PolicyError(f"policy {text}: '{value}' is not a number ({name}@<{kind.parameter}>)") from None
        if number <= 0:
            raise PolicyError(f"policy {text}: the {kind.parameter} must be positive")
        return PolicySpec(kind, number)

    @property
    def name(self) -> str:
        return self.kind.name

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}@{self.value:g}"

    def threshold_fraction(self) -> float:
        """Reactive triggers: the observed latency must exceed this share of the SLA."""
        return 1.0 if self.value is None or self.kind.parameter != "threshold" else self.value

    def migration_cost(self, config: PolicyConfig) -> float:
        return config.migration_cost if self.value is None or self.kind.parameter != "cost" else self.value


def home_role(kind: SliceKind) -> NodeRole:
    """The node role a slice's VNFs start on."""
    return {SliceKind.URLLC: NodeRole.URLLC, SliceKind.EMBB: NodeRole.EMBB,
            SliceKind.BEST_EFFORT: NodeRole.SHARED}[kind]


def role_hosts(role: NodeRole, kind: SliceKind) -> bool:
    """Whether a node of ``role`` may host a VNF of slice ``kind`` at all.

    Home role and spares host anything provisioned for them; the shared node takes eMBB
    overflow but never URLLC (it exists for best effort).
    """
    return role in (home_role(kind), NodeRole.SPARE) or (
        role is NodeRole.SHARED and kind is not SliceKind.URLLC)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


class PolicyEngine:
    """Stateful per-run policy: triggers with hysteresis and cooldown, and the budget."""

    def __init__(self, config: PolicyConfig):
        self.config = config
        self._armed: dict[str, bool] = {}
        self._last_migration: dict[str, int] = {}
        self._recent: deque[int] = deque()  # steps of migrations inside the budget window

    # -- triggers ---------------------------------------------------------------------

    def threshold(self, sla_ms: float) -> float:
        return sla_ms - self.config.epsilon_ms

    def triggered(self, chain: str, signal_ms: float, sla_ms: float, step: int,
                  margin_ms: float | None = None) -> bool:
        """Whether ``chain`` asks for action now (latency signals).

        ``signal_ms`` is what the policy watches: a forecast (the paper's predictive) or
        the last observation (reactive). A chain that acted stays disarmed until its
        signal falls below the threshold - hysteresis, so one excursion causes one
        migration, not one per step; and it waits out its cooldown and the warm-up. The
        threshold is SLA - ``margin_ms`` (default epsilon; the reactive baseline uses 0).
        """
        threshold = sla_ms - (self.config.epsilon_ms if margin_ms is None else margin_ms)
        return self.crossed(chain, signal_ms, threshold, threshold - self.config.hysteresis_ms, step)

    def crossed(self, chain: str, signal: float, threshold: float, rearm: float, step: int) -> bool:
        """The trigger rule for any signal: above ``threshold``, armed (the signal went
        below ``rearm`` since the chain's last migration), out of cooldown and warm-up."""
        armed = self._armed.get(chain, True)
        if not armed and signal < rearm:
            self._armed[chain] = armed = True
        if not armed or signal <= threshold or step < self.config.warmup:
            return False
        last = self._last_migration.get(chain)
        return last is None or step - last >= self.config.cooldown

    # -- budget -----------------------------------------------------------------------

    def budget_left(self, step: int) -> int:
        """Migrations still allowed in the sliding window of ``budget_interval`` steps."""
        while self._recent and self._recent[0] <= step - self.config.budget_interval:
            self._recent.popleft()
        return max(0, self.config.budget - len(self._recent))

    def record(self, plan: MigrationPlan, step: int) -> None:
        """Account for an accepted migration: budget, cooldown and hysteresis."""
        if self.budget_left(step) <= 0:
            raise ValueError("migration recorded with no budget left")  # caller's bug
        self._recent.append(step)
        self._last_migration[plan.chain] = step
        self._armed[plan.chain] = False

    # -- feasibility and isolation ------------------------------------------------------

    def feasible(self, new_latency_ms: float, delay_ms: float, sla_ms: float,
                 slack_ms: float | None = None) -> Verdict:
        """Algorithm 1's rule: migrate only if new latency + migration delay <= SLA - epsilon
        (``slack_ms`` instead of epsilon: the paper's Algorithm 2 allows SLA + epsilon)."""
        limit = sla_ms - (self.config.epsilon_ms if slack_ms is None else slack_ms)
        if new_latency_ms + delay_ms <= limit:
            return Verdict(True)
        return Verdict(False, f"{new_latency_ms:.3f} + {delay_ms:.3f} ms > {limit:.3f} ms")

    def may_host(self, kind: SliceKind, node: NodeSpec, kinds_on_node: Iterable[SliceKind]) -> Verdict:
        """Whether a VNF of slice ``kind`` may run on ``node`` next to VNFs of ``kinds_on_node``."""
        if not role_hosts(node.role, kind):
            return Verdict(False, f"a {node.role.value} node does not host {kind.value}")
        if self.config.isolation:
            present = set(kinds_on_node)
            if kind is SliceKind.URLLC and SliceKind.BEST_EFFORT in present:
                return Verdict(False, f"{node.name} hosts best effort; URLLC must not share it")
            if kind is SliceKind.BEST_EFFORT and SliceKind.URLLC in present:
                return Verdict(False, f"{node.name} hosts URLLC; best effort must not share it")
        return Verdict(True)

    def pinned(self, kind: SliceKind, node: NodeSpec) -> bool:
        """Whether a VNF of ``kind`` runs on ``node``'s reserved (pinned) cores."""
        return self.config.pin_urllc and kind is SliceKind.URLLC and node.supports_pinning

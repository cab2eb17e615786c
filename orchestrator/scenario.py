"""Simulation scenarios: the defaults of the evaluation and their YAML form.

A scenario file holds any subset of the keys of :class:`Scenario` (nested as in
``examples/scenarios/default.yaml``); everything left out keeps its default. Unknown keys,
wrong types and YAML syntax errors are :class:`ScenarioError` naming ``file:line:col``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mantra6g.errors import MantraError, SpecError
from mantra6g.orchestrator.infra import NodeRole, NodeSpec, SliceKind
from mantra6g.orchestrator.placement import MigrationCost
from mantra6g.orchestrator.policy import PolicyConfig, home_role, role_hosts
from mantra6g.source import read_source


class ScenarioError(MantraError):
    """A scenario file or simulate flag the user must fix."""


@dataclass(frozen=True)
class SliceProfile:
    """What the VNFs and traffic of one slice look like, and its SLA."""

    sla_ms: float
    share: float  # fraction of chains in this slice
    rate_kpps: tuple[float, float]  # per-chain base traffic, drawn uniformly
    cost_us: tuple[float, float]  # per-packet CPU time of each VNF, drawn uniformly
    memory_mb: float
    state_mb: float


def _default_slices() -> dict[str, SliceProfile]:
    # Loads are chosen so that each home node runs at roughly 60-70 % on average and
    # the seasonal peaks plus bursts push it towards saturation (see docs/orchestrator.md).
    return {
        "urllc": SliceProfile(sla_ms=1.0, share=0.5, rate_kpps=(7.0, 10.0),
                              cost_us=(10.0, 16.0), memory_mb=256, state_mb=0.05),
        "embb": SliceProfile(sla_ms=15.0, share=0.3, rate_kpps=(2.5, 3.5),
                             cost_us=(150.0, 275.0), memory_mb=1024, state_mb=2.0),
        "best_effort": SliceProfile(sla_ms=50.0, share=0.2, rate_kpps=(1.75, 2.5),
                                    cost_us=(150.0, 300.0), memory_mb=512, state_mb=4.0),
    }


@dataclass(frozen=True)
class NodeConfig:
    """A node as written in a scenario (see :class:`~mantra6g.orchestrator.infra.NodeSpec`)."""

    name: str
    role: str
    cores: float
    memory_mb: float = 65536.0
    bandwidth_gbps: float = 10.0
    pinned_cores: float = 0.0
    # Cross traffic from tenants the orchestrator does not manage, in cores.
    background_cores: float = 0.0

    def spec(self) -> NodeSpec:
        return NodeSpec(self.name, NodeRole(self.role), self.cores, self.memory_mb,
                        self.bandwidth_gbps, self.pinned_cores)


def _default_nodes() -> list[NodeConfig]:
    return [
        NodeConfig("A", "urllc", cores=8, pinned_cores=6, background_cores=1.0),
        NodeConfig("B", "embb", cores=24, background_cores=2.0),
        NodeConfig("C", "shared", cores=16, background_cores=4.0),
        NodeConfig("D", "spare", cores=8, pinned_cores=4, background_cores=2.0),
        NodeConfig("E", "spare", cores=8, pinned_cores=4, background_cores=2.0),
    ]


@dataclass(frozen=True)
class ChainsConfig:
    count: int = 16
    vnfs: tuple[int, int] = (3, 5)  # VNFs per chain, drawn uniformly (inclusive)


@dataclass(frozen=True)
class TrafficConfig:
    """Per-chain traffic: a diurnal base x sessions + bursts + flash crowds.

    Onsets: with the defaults, sessions are an independent Poisson count every step and
    bursts switch on and off abruptly (the original scenario). ``session_hold_steps`` > 0
    makes sessions a birth-death process (Poisson arrivals following the diurnal base,
    exponential holding times), each ramping up and down over ``session_ramp_steps``;
    ``burst_ramp_steps`` > 0 ramps bursts up and down; flash crowds (``flash_rate`` > 0)
    hit a share of a slice's chains together and grow like TCP slow start, doubling every
    step until their size, then hold and leave.
    """

    sessions: float = 50.0  # mean concurrent sessions
    amplitude: float = 0.25  # relative amplitude of the sinusoidal (diurnal) base
    period_steps: float = 250.0  # the diurnal period (one simulated "day")
    trend: float = 0.10  # relative growth of the base over the whole run
    burst_rate: float = 0.01  # bursts per chain per step (Poisson)
    burst_size: float = 0.5  # mean extra load of a burst, relative to the base (exponential)
    burst_steps: float = 8.0  # mean burst duration in steps (geometric)
    burst_ramp_steps: float = 0.0  # 0: bursts switch on and off at once; else linear ramps
    session_hold_steps: float = 0.0  # 0: Poisson count per step; else mean session length
    session_ramp_steps: float = 0.0  # a session's rate ramps up (and down) over this
    flash_rate: float = 0.0  # flash crowds per slice per step (Poisson)
    flash_size: float = 1.0  # a crowd's extra load at its peak, relative to the base
    flash_share: float = 0.5  # share of the slice's chains a crowd hits
    flash_ramp_steps: float = 8.0  # slow start: the load doubles each step for this long
    flash_steps: float = 30.0  # mean time a crowd stays at its peak (exponential)
    background_amplitude: float = 0.3  # relative swing of each node's cross traffic
    background_period_steps: float = 400.0


@dataclass(frozen=True)
class LatencyConfig:
    jitter_ms: float = 0.3  # Gaussian jitter of a chain's end-to-end latency (sigma)
    link_ms: float = 0.02  # one hop between two nodes
    local_ms: float = 0.002  # one hop inside a node
    max_utilisation: float = 0.99  # M/M/1 queueing is evaluated at min(rho, this)


@dataclass(frozen=True)
class ForecastConfig:
    """Training of the forecasters. Training seeds never overlap evaluation seeds."""

    window: int = 10
    train_samples: int = 5000
    train_seed: int = 900_001  # evaluation uses seeds 1..N
    lstm_hidden: int = 64
    lstm_layers: int = 2
    lstm_epochs: int = 30
    lstm_lr: float = 1e-3
    arima_order: tuple[int, int, int] = (3, 0, 0)
    train_runs: tuple[str, ...] = ("static", "reactive")  # policies whose runs train the models
    calibration_seed: int = 950_001  # the risk model's held-out calibration runs
    calibration_samples: int = 20000  # residual windows collected for calibration
    lstm_context: bool = True  # the LSTM gets the context features (False: latency only)


@dataclass(frozen=True)
class Scenario:
    """Everything one simulation run needs except the seed and the policy."""

    steps: int = 1000
    interval_ms: float = 100.0
    chains: ChainsConfig = field(default_factory=ChainsConfig)
    slices: dict[str, SliceProfile] = field(default_factory=_default_slices)
    nodes: list[NodeConfig] = field(default_factory=_default_nodes)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    migration: MigrationCost = field(default_factory=MigrationCost)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)

    def sla_ms(self, kind: SliceKind) -> float:
        return self.slices[kind.value].sla_ms

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)


def load_scenario(path: str | Path | None) -> Scenario:
    """Read a scenario file (``None``: the built-in defaults) and validate it."""
    if path is None:
        return Scenario()
    return parse_scenario(read_scenario(path), str(path))


def read_scenario(path: str | Path) -> str:
    """A scenario file's text: UTF-8 (a BOM allowed), a bad byte reported at its
    line:col (:func:`mantra6g.source.read_source`); a file that cannot be read is a
    :class:`ScenarioError`."""
    try:
        return read_source(path).text
    except SpecError:
        raise
    except MantraError as exc:
        raise ScenarioError(f"cannot read scenario {exc}") from None


def parse_scenario(text: str, filename: str = "<scenario>") -> Scenario:
    """Parse scenario YAML text; errors name ``filename:line:col``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ScenarioError(f"{where}: YAML syntax error: {exc.problem}; fix the YAML syntax "
                            "(indentation, ':' after keys, matching brackets)") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{filename}: YAML error: {exc}") from None
    if node is None:
        return Scenario()
    scenario = _convert(node, Scenario, filename, "scenario")
    _check(scenario, filename)
    return scenario


def _where(node: yaml.Node, filename: str) -> str:
    m = node.start_mark
    return f"{filename}:{m.line + 1}:{m.column + 1}"


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(
        tp, str(tp))


def _convert(node: yaml.Node, tp: Any, filename: str, path: str) -> Any:
    """Convert a composed YAML node to ``tp``, reporting the node's position on mismatch."""
    where = _where(node, filename)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(node, yaml.MappingNode):
            raise ScenarioError(f"{where}: {path} must be a mapping of keys to values")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node)
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f"did you mean '{close[0]}'?" if close else \
                    f"expected one of: {', '.join(fields)}"
                raise ScenarioError(f"{_where(key_node, filename)}: unknown key '{key}' in "
                                    f"{path}; {hint}")
            values[key] = _convert(value_node, hints[key], filename, f"{path}.{key}")
        missing = [n for n, f in fields.items() if n not in values and
                   f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ScenarioError(f"{where}: {path} needs the key(s) {', '.join(missing)}")
        return tp(**values)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(node, yaml.SequenceNode):
            raise ScenarioError(f"{where}: {path} must be a list")
        return [_convert(n, item, filename, f"{path}[{i}]") for i, n in enumerate(node.value)]
    if origin is tuple and typing.get_args(tp)[-1] is Ellipsis:
        (item, _) = typing.get_args(tp)
        if not isinstance(node, yaml.SequenceNode):
            raise ScenarioError(f"{where}: {path} must be a list")
        return tuple(_convert(n, item, filename, f"{path}[{i}]") for i, n in enumerate(node.value))
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(node, yaml.SequenceNode) or len(node.value) != len(items):
            raise ScenarioError(f"{where}: {path} must be a list of {len(items)} values")
        return tuple(_convert(n, t, filename, f"{path}[{i}]")
                     for i, (n, t) in enumerate(zip(node.value, items)))
    if origin is dict:
        _, value_tp = typing.get_args(tp)
        if not isinstance(node, yaml.MappingNode):
            raise ScenarioError(f"{where}: {path} must be a mapping")
        out = {}
        for key_node, value_node in node.value:
            key = str(_construct(key_node))
            out[key] = _convert(value_node, value_tp, filename, f"{path}.{key}")
        return out
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"unsupported scenario type {tp}")  # no optional fields today
    if not isinstance(node, yaml.ScalarNode):
        raise ScenarioError(f"{where}: {path} must be {_type_name(tp)}")
    value = _construct(node)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (bool, str) and isinstance(value, tp):
        return value
    raise ScenarioError(f"{where}: {path} must be {_type_name(tp)}, not {value!r}")


def _check(s: Scenario, filename: str) -> None:
    """Semantic checks a type check cannot do; each message says what to change."""

    def bad(msg: str) -> ScenarioError:
        return ScenarioError(f"{filename}: {msg}")

    if s.steps < s.forecast.window + 2:
        raise bad(f"steps must be at least window + 2 = {s.forecast.window + 2}")
    if s.interval_ms <= 0:
        raise bad("interval_ms must be positive")
    lo, hi = s.chains.vnfs
    if s.chains.count < 1 or not 1 <= lo <= hi:
        raise bad("chains.count must be >= 1 and chains.vnfs must be [min, max] with 1 <= min <= max")
    kinds = {k.value for k in SliceKind}
    for name, profile in s.slices.items():
        if name not in kinds:
            raise bad(f"unknown slice '{name}'; slices are {', '.join(sorted(kinds))}")
        if profile.sla_ms <= 0 or profile.share < 0:
            raise bad(f"slices.{name}: sla_ms must be positive and share non-negative")
    if sum(p.share for p in s.slices.values()) <= 0:
        raise bad("at least one slice needs a positive share")
    roles = {r.value for r in NodeRole}
    names = set()
    for n in s.nodes:
        if n.role not in roles:
            raise bad(f"node {n.name}: role '{n.role}' is not one of {', '.join(sorted(roles))}")
        if n.name in names:
            raise bad(f"node name {n.name} is used twice; node names must be unique")
        names.add(n.name)
        if n.cores <= 0 or not 0 <= n.pinned_cores < n.cores:
            raise bad(f"node {n.name}: cores must be positive and 0 <= pinned_cores < cores")
    for kind in SliceKind:
        if s.slices.get(kind.value, None) and s.slices[kind.value].share > 0 and \
                not any(role_hosts(NodeRole(n.role), kind) for n in s.nodes):
            raise bad(f"no node can host slice {kind.value}; add a node with role "
                      f"{home_role(kind).value}")
    p = s.policy
    if p.epsilon_ms < 0 or p.horizon < 1 or p.budget < 0 or p.budget_interval < 1 or p.cooldown < 0:
        raise bad("policy: epsilon_ms >= 0, horizon >= 1, budget >= 0, budget_interval >= 1, "
                  "cooldown >= 0")
    f = s.forecast
    if f.window < 2 or f.train_samples < 100:
        raise bad("forecast.window must be >= 2 and forecast.train_samples >= 100")
    if f.train_seed <= 10_000 or f.calibration_seed <= 10_000:
        raise bad("forecast.train_seed and forecast.calibration_seed must be above 10000 so they "
                  "never overlap evaluation seeds")
    if f.calibration_seed == f.train_seed:
        raise bad("forecast.calibration_seed must differ from forecast.train_seed (calibrate on held-out runs)")
    for name in f.train_runs:
        if name not in ("static", "reactive", "balanced"):
            raise bad(f"forecast.train_runs: '{name}'; training runs use static, balanced or reactive "
                      "(no forecaster is needed to run them)")
    if p.start not in ("home", "balanced"):
        raise bad(f"policy.start: '{p.start}'; every policy starts from home or balanced")
    if p.warmup < 0 or p.migration_cost < 0 or p.benefit_steps < p.horizon:
        raise bad("policy: warmup >= 0, migration_cost >= 0 and benefit_steps >= horizon")
    t = s.traffic
    if min(t.session_hold_steps, t.session_ramp_steps, t.burst_ramp_steps, t.flash_rate) < 0 or \
            not 0 < t.flash_share <= 1 or t.flash_ramp_steps < 0 or t.flash_steps <= 0:
        raise bad("traffic: ramps, holding times and flash_rate must be >= 0, flash_share in (0, 1], "
                  "flash_steps > 0")


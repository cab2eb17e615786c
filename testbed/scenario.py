"""Testbed scenario YAML: the keys of :class:`~mantra6g.testbed.site.SiteConfig`, every one
optional (``examples/testbed/default.yaml`` spells out the defaults). Parsed with the
orchestrator scenario's converter, so unknown keys, wrong types and YAML syntax errors
name ``file:line:col``."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import yaml

from mantra6g.orchestrator.infra import NodeRole
from mantra6g.orchestrator.scenario import ScenarioError, _convert, _where, read_scenario
from mantra6g.testbed.fabric import SWITCH_KINDS
from mantra6g.testbed.site import ENDPOINTS, ONSETS, NodeConfig, RackConfig, SiteConfig


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,2}")


def _mirror() -> type:
    """SiteConfig with its variable-length tuples as lists (the converter's list rule)."""
    hints = typing.get_type_hints(SiteConfig)
    fields = []
    for f in dataclasses.fields(SiteConfig):
        tp = hints[f.name]
        if typing.get_origin(tp) is tuple and typing.get_args(tp)[-1] is Ellipsis:
            tp = list[typing.get_args(tp)[0]]
        fields.append((f.name, tp, dataclasses.field(default=None)))
    return dataclasses.make_dataclass("site", fields)


def parse_site(text: str, filename: str = "<scenario>") -> SiteConfig:
    """Parse testbed scenario text into a :class:`SiteConfig`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ScenarioError(f"{where}: YAML syntax error: {exc.problem}") from None
    if node is None:
        return SiteConfig()
    raw = _convert(node, _mirror(), filename, "scenario")
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in dataclasses.asdict(raw).items() if v is not None}
    for key, cls in (("nodes", NodeConfig), ("racks", RackConfig)):
        if key in given:
            given[key] = tuple(cls(**n) if isinstance(n, dict) else n for n in given[key])
    config = SiteConfig(**given)
    _check(config, f"{filename}:{node.start_mark.line + 1}" if node else filename, node, filename)
    return config


def _check(c: SiteConfig, where: str, node: yaml.Node, filename: str) -> None:
    """Cross-field rules, reported at the offending key's line."""
    lines = {_scalar(k): _where(k, filename) for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    names = [n.name for n in c.nodes]
    racks = [r.name for r in c.racks]
    roles = {r.value for r in NodeRole}
    at_nodes, at_racks = lines.get("nodes", where), lines.get("racks", where)
    # Names become interface names (<prefix>-<node>, <prefix>-r<rack><node>: 15 bytes at most).
    if len(set(names)) != len(names) or any(not _NAME.fullmatch(n) for n in names) or set(names) & set(ENDPOINTS):
        raise ScenarioError(f"{at_nodes}: node names must be unique, 1-3 letters or digits starting with a "
                            f"letter, and not {' or '.join(ENDPOINTS)}")
    if len(set(racks)) != len(racks) or any(not _NAME.fullmatch(r) or len(r) > 2 for r in racks) or set(racks) & set(names):
        raise ScenarioError(f"{at_racks}: rack names must be unique, 1-2 letters or digits starting with a letter, "
                            "and not a node's name")
    for n in c.nodes:
        if n.role not in roles:
            raise ScenarioError(f"{at_nodes}: node {n.name}: role '{n.role}'; choose from {', '.join(sorted(roles))}")
        if n.link_mbit <= 0:
            raise ScenarioError(f"{at_nodes}: node {n.name}: link_mbit must be > 0")
        if n.rack and n.rack not in racks:
            raise ScenarioError(f"{at_nodes}: node {n.name}: rack '{n.rack}' is not one of the racks {racks}")
    for r in c.racks:
        if r.uplink_mbit <= 0:
            raise ScenarioError(f"{at_racks}: rack {r.name}: uplink_mbit must be > 0")
    at = lines.get("embb_nodes", where)
    if not c.embb_nodes or len(set(c.embb_nodes)) != len(c.embb_nodes):
        raise ScenarioError(f"{at}: embb_nodes must list one or more distinct nodes of role embb")
    for node in c.embb_nodes:
        if node not in names:
            raise ScenarioError(f"{at}: embb_nodes: '{node}' is not one of the nodes {names}")
        if c.node(node).role != "embb":
            raise ScenarioError(f"{at}: embb_nodes: '{node}' has role {c.node(node).role}; an eMBB chain "
                                "runs on a node of role embb (URLLC never goes there)")
    if c.onset not in ONSETS:
        raise ScenarioError(f"{lines.get('onset', where)}: onset '{c.onset}'; choose from {', '.join(ONSETS)}")
    if c.switch not in SWITCH_KINDS:
        raise ScenarioError(f"{lines.get('switch', where)}: switch '{c.switch}'; choose from {', '.join(SWITCH_KINDS)}")
    for key in ("urllc_sla_ms", "embb_limit_mbit", "interval_s", "day_s", "session_mbit", "client_mbit",
                "session_hold_s", "crowd_hold_s"):
        if getattr(c, key) <= 0:
            raise ScenarioError(f"{lines.get(key, where)}: {key} must be > 0")
    for key in ("urllc_rate_pps", "embb_rate_pps", "embb_on_s", "embb_off_s", "tbf_latency_ms", "gap_probe_pps",
                "session_rate_per_s", "session_ramp_s", "crowd_rate_per_s", "crowd_clients", "crowd_ramp_s",
                "diurnal_amplitude"):
        if getattr(c, key) < 0:
            raise ScenarioError(f"{lines.get(key, where)}: {key} must be >= 0")


def _scalar(n: yaml.Node) -> str:
    return str(getattr(n, "value", ""))


def load_site(path: str | Path | None) -> SiteConfig:
    """Read a testbed scenario (``None``: the built-in defaults)."""
    if path is None:
        return SiteConfig()
    return parse_site(read_scenario(path), str(path))

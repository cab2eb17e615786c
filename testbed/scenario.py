"""Testbed scenario YAML: the keys of :class:`~mantra6g.testbed.site.SiteConfig`, every one
optional (``examples/testbed/default.yaml`` spells out the defaults). Parsed with the
orchestrator scenario's converter, so unknown keys, wrong types and YAML syntax errors
name ``file:line:col``."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from mantra6g.orchestrator.infra import NodeRole
from mantra6g.orchestrator.scenario import ScenarioError, _convert, _where
from mantra6g.testbed.site import NodeConfig, SiteConfig


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
    if "nodes" in given:
        given["nodes"] = tuple(NodeConfig(**n) if isinstance(n, dict) else n for n in given["nodes"])
    config = SiteConfig(**given)
    _check(config, f"{filename}:{node.start_mark.line + 1}" if node else filename, node, filename)
    return config


def _check(c: SiteConfig, where: str, node: yaml.Node, filename: str) -> None:
    """Cross-field rules, reported at the offending key's line."""
    lines = {_scalar(k): _where(k, filename) for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    names = [n.name for n in c.nodes]
    roles = {r.value for r in NodeRole}
    for n in c.nodes:
        if n.role not in roles:
            raise ScenarioError(f"{lines.get('nodes', where)}: node {n.name}: role '{n.role}'; choose from {', '.join(sorted(roles))}")
        if n.link_mbit <= 0:
            raise ScenarioError(f"{lines.get('nodes', where)}: node {n.name}: link_mbit must be > 0")
    if len(set(names)) != len(names) or any(len(n) > 3 for n in names):
        raise ScenarioError(f"{lines.get('nodes', where)}: node names must be unique and at most 3 characters (interface names)")
    for key in ("ingress_node", "egress_node", "embb_node"):
        if getattr(c, key) not in names:
            raise ScenarioError(f"{lines.get(key, where)}: {key} '{getattr(c, key)}' is not one of the nodes {names}")
    if c.ingress_node == c.egress_node:
        raise ScenarioError(f"{lines.get('egress_node', where)}: the two stages need two nodes (one XDP program per interface)")
    for key in ("urllc_rate_pps", "embb_rate_pps", "embb_on_s", "embb_off_s", "tbf_latency_ms"):
        if getattr(c, key) < 0:
            raise ScenarioError(f"{lines.get(key, where)}: {key} must be >= 0")


def _scalar(n: yaml.Node) -> str:
    return str(getattr(n, "value", ""))


def load_site(path: str | Path | None) -> SiteConfig:
    """Read a testbed scenario (``None``: the built-in defaults)."""
    if path is None:
        return SiteConfig()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
    return parse_site(text, str(path))

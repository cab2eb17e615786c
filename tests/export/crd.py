"""Validating a manifest against a Kubernetes CRD the way the API server does, with a
JSON-schema validator and a CEL evaluator instead of a cluster:

* the version's ``openAPIV3Schema`` is a structural schema: an object with
  ``properties`` and no ``additionalProperties`` (nor
  ``x-kubernetes-preserve-unknown-fields``) knows no other field, which kubectl's
  strict field validation (the default) rejects;
* ``x-kubernetes-int-or-string`` is an integer or a string; ``format: byte`` is base64;
* ``x-kubernetes-validations`` rules are CEL, evaluated with ``cel-python`` on the node
  they are attached to;
* ``metadata`` is ObjectMeta: its name is a DNS-1123 subdomain, which the API server checks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from pathlib import Path

import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def load_crds(folder: Path) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD version's openAPIV3Schema, for every CRD in ``folder``."""
    out = {}
    for f in sorted(folder.glob("*.yaml")):
        for crd in yaml.safe_load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def structural(schema: dict) -> dict:
    """The CRD schema as plain JSON Schema (the CEL rules are checked separately)."""
    s = copy.deepcopy(schema)

    def fix(node: dict) -> None:
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("format") == "byte":
            node["format"] = "k8s-byte"
        if "properties" in node and "additionalProperties" not in node and not node.get(
                "x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                fix(child)
        for key in ("items", "additionalProperties", "not"):
            if isinstance(node.get(key), dict):
                fix(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                fix(child)

    fix(s)
    return s


def _byte(value) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except binascii.Error:
        return False
    return True


def cel_problems(schema: dict, doc, path: str = "") -> list[str]:
    """Every ``x-kubernetes-validations`` rule ``doc`` breaks, with where and the rule's message."""
    import celpy

    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        result = env.program(env.compile(rule["rule"])).evaluate({"self": celpy.json_to_cel(doc)})
        if not bool(result):
            out.append(f"{path or '(root)'}: {rule.get('message', rule['rule'])}")
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in schema.get("properties", {}):
                out += cel_problems(schema["properties"][k], v, f"{path}.{k}" if path else k)
            elif isinstance(schema.get("additionalProperties"), dict):
                out += cel_problems(schema["additionalProperties"], v, f"{path}.{k}" if path else k)
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(doc):
            out += cel_problems(schema["items"], v, f"{path}[{i}]")
    return out


def problems(crds: dict[tuple[str, str], dict], doc: dict) -> list[str]:
    """Every reason the API server would refuse ``doc`` by its CRD."""
    from jsonschema import Draft202012Validator, FormatChecker

    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in crds:
        return [f"no CRD serves {key[1]} in {key[0]}"]
    checker = FormatChecker()
    checker.checks("k8s-byte")(_byte)
    schema = crds[key]
    v = Draft202012Validator(structural(schema), format_checker=checker)
    out = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in v.iter_errors(doc)]
    name = doc.get("metadata", {}).get("name", "")
    if not (DNS_SUBDOMAIN.match(name) and len(name) <= 253):
        out.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    return out + cel_problems(schema, doc)

"""What every engine's export shares: the site as ``mantra compile`` sees it, the
options, names each engine accepts, schema validation and the output folder.

An engine module (``iml``, ``bpfman``, ``oakestra``) turns a :class:`Site` and
:class:`ExportOptions` into a :class:`Bundle` (file name -> text or bytes) whose
manifests it has validated against its schema; :func:`write_folder` puts the bundle on
disk in one step.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path

import yaml

from mantra6g import output
from mantra6g.errors import MantraError
from mantra6g.synth import frontend
from mantra6g.synth.compose import DeviceProgram, compile_specs
from mantra6g.synth.ir import ServiceGraph, ServiceSpec, TenantSlice
from mantra6g.targets.build import choose

ENGINES = ("iml", "bpfman", "oakestra")
K8S_OBJECT_LIMIT = 1_572_864  # bytes: etcd's default request limit, hence the API server's


class ExportError(MantraError):
    """A manifest would be rejected by its engine, or the export cannot be written."""


@dataclass(frozen=True)
class ExportOptions:
    """What the user may set on the command line; each engine reads what it needs."""

    namespace: str = "default"  # Kubernetes namespace (IML, bpfman's map fill); Oakestra's application namespace
    node_selector: tuple[tuple[str, str], ...] = ()  # Kubernetes node labels (bpfman, IML control plane)
    interfaces: tuple[tuple[int, str], ...] = ()  # DP-IR port -> node interface (bpfman); none: the primary one
    image: str | None = None  # registry/repository for the images the export names
    tag: str = "latest"
    p4_url: str | None = None  # IML: serve the .p4 files here instead of inlining them (base64)
    customer_id: str = "mantra"  # Oakestra's customerID
    area: str | None = None  # Oakestra: the area a slice's latency bound holds in
    bytecode_path: str | None = None  # bpfman: the object is at this path on the nodes, not in an image


@dataclass(frozen=True)
class Site:
    """The site's service graphs and its device programs, exactly as ``mantra compile``
    lowers them (nothing here re-reads the ``.sg`` text)."""

    name: str
    specs: tuple[ServiceSpec, ...]
    programs: tuple[DeviceProgram, ...]

    @classmethod
    def load(cls, paths: Sequence[str], device: str | None = None) -> Site:
        specs = tuple(frontend.load(paths))
        programs = choose(compile_specs(specs), device)
        name = "-".join(Path(p).stem for p in paths)
        return cls(name, specs, tuple(programs))

    @property
    def graphs(self) -> tuple[ServiceGraph, ...]:
        """The graphs that run on the exported programs, in written order."""
        on = {g for dp in self.programs for g in dp.graphs}
        return tuple(g for s in self.specs for g in s.graphs if g.name in on)

    def slice_of(self, g: ServiceGraph) -> TenantSlice:
        for s in self.specs:
            t = s.tenant(g.tenant)
            if t is not None and t.slice(g.slice) is not None:
                return t.slice(g.slice)
        raise KeyError(f"{g.tenant}.{g.slice}")  # pragma: no cover - the checker resolved it

    def chain(self, g: ServiceGraph) -> list[DeviceProgram]:
        """The device programs ``g``'s packets cross, in chain order (by the first of
        its NFs, classifier aside, that each one runs)."""
        order = g.topological_order()

        def first(dp: DeviceProgram) -> int:
            local = [n.split(".", 1)[1] for n in dp.nfs if n.split(".", 1)[0] == g.name]
            nfs = [n for n in local if n != g.entry] or local
            return min(order.index(n) for n in nfs)

        return sorted((dp for dp in self.programs if g.name in dp.graphs), key=first)


@dataclass
class Bundle:
    """One engine's output folder: relative path -> text or bytes, plus what to print."""

    engine: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- names


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dns_name(*parts: str, limit: int = 63) -> str:
    """A Kubernetes object name (an RFC 1123 label) from Mantra names:
    ``smartnic_factory_edge`` -> ``smartnic-factory-edge``; too long ones keep a
    hash of the whole so that two names never merge."""
    text = "-".join(parts).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    text = re.sub(r"-{2,}", "-", text) or "x"
    if len(text) > limit:
        digest = hashlib.sha256("-".join(parts).encode()).hexdigest()[:8]
        text = text[: limit - 9].rstrip("-") + "-" + digest
    return text


def alnum_name(*parts: str, limit: int = 30) -> str:
    """An Oakestra name (``^[a-zA-Z0-9]{1,30}$``) in camel case (``motion_control`` ->
    ``motionControl``), a hash of the whole kept when it has to be cut."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", "_".join(parts)) if w]
    text = "".join(w if i == 0 else w[:1].upper() + w[1:] for i, w in enumerate(words)) or "x"
    if len(text) > limit:
        digest = hashlib.sha256("".join(parts).encode()).hexdigest()[:6]
        text = text[: limit - 6] + digest
    return text


def unique(names: Mapping[str, str], what: str) -> None:
    """Refuse two Mantra names that came out as one engine name."""
    seen: dict[str, str] = {}
    for ours, theirs in names.items():
        if theirs in seen and seen[theirs] != ours:
            raise ExportError(f"{what}: '{seen[theirs]}' and '{ours}' both become '{theirs}'; rename one of them")
        seen[theirs] = ours


# ---------------------------------------------------------------- schemas


@cache
def schema(name: str) -> dict:
    """A schema shipped in ``export/schemas/`` (JSON Schema 2020-12)."""
    return json.loads(files("mantra6g.export").joinpath("schemas", f"{name}.json").read_text())


def _path(error) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(the document)"


def problems(doc: object, schema_name: str) -> list[str]:
    """Every way ``doc`` breaks the schema, each as ``field: what is wrong``."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema(schema_name), format_checker=Draft202012Validator.FORMAT_CHECKER)
    found = []
    for e in sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        found.append(f"{_path(e)}: {e.message}")
    return found


def check(doc: dict, schema_name: str, where: str, kubernetes: bool = True) -> None:
    """Raise :class:`ExportError` naming every field of ``doc`` its engine would reject."""
    found = problems(doc, schema_name)
    if kubernetes:
        size = len(json.dumps(doc, separators=(",", ":")))
        if size > K8S_OBJECT_LIMIT:
            found.append(f"(the object): {size} bytes is over the API server's limit of {K8S_OBJECT_LIMIT}")
    if found:
        kind = doc.get("kind", schema_name) if isinstance(doc, dict) else schema_name
        raise ExportError(f"{where}: this {kind} would be rejected:\n" + "\n".join(f"  {p}" for p in found))


# ---------------------------------------------------------------- files


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:  # a shared dict is written out each time, not as &id001
        return True


def yaml_docs(docs: Sequence[dict]) -> str:
    """Kubernetes manifests as one multi-document YAML file."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def write_folder(target: Path, files_out: Mapping[str, str | bytes], inputs: output.Inputs | None = None) -> None:
    """Write a whole folder in one step (:class:`mantra6g.output.StagedDir`, ``whole``):
    staged beside ``target``, then swapped in. A failure leaves the old folder (if any)
    as it was; a folder that holds an input or files mantra did not write is refused."""
    with output.StagedDir(target, inputs, "--out", whole=True) as stage:
        try:
            for rel, data in files_out.items():
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    raise ExportError(f"{rel}: outside the output folder")
                if isinstance(data, bytes):
                    stage.write_bytes(rel, data)
                else:
                    stage.write_text(rel, data)
                if rel.endswith(".sh"):
                    stage.file(rel).chmod(0o755)
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
"""The exported manifests against the engines' own schemas, not ours.

* bpfman: its CRDs (``bpfman.io_clusterbpfapplications.yaml``, ``..._bpfapplications``)
  in ``../shared/schemas/bpfman/`` or ``$MANTRA_BPFMAN_CRDS``, with Kubernetes'
  structural-schema rules and the CRDs' CEL rules (tests/export/crd.py);
* IML: its CRDs (``operator/config/crd/bases/*.yaml`` of mantra6g/iml) in
  ``../shared/schemas/iml/`` or ``$MANTRA_IML_CRDS``;
* Oakestra: its SLA schema (``sla_schema`` of ``root_orchestrator/system-manager-python/
  sla/schema.py``, saved as JSON) at ``../shared/schemas/oakestra/sla_schema.json`` or
  ``$MANTRA_OAKESTRA_SLA_SCHEMA``, with the jsonschema validator Oakestra itself runs.

Each test skips, saying which folder or file it looked for, where that is absent.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from mantra6g.export import ENGINES, ExportOptions, export_site
from tests.conftest import EXAMPLES, ROOT
from tests.export import crd

SHARED = ROOT.parent / "shared" / "schemas"


def _where(env: str, default: Path) -> Path:
    return Path(os.environ.get(env) or default)


BPFMAN = _where("MANTRA_BPFMAN_CRDS", SHARED / "bpfman")
IML = _where("MANTRA_IML_CRDS", SHARED / "iml")
OAKESTRA = _where("MANTRA_OAKESTRA_SLA_SCHEMA", SHARED / "oakestra" / "sla_schema.json")


def manifests(engine: str, **options) -> list[tuple[str, dict]]:
    out = []
    for ex in EXAMPLES:
        b = export_site([str(ex)], engine, ExportOptions(**options))
        for name, text in b.files.items():
            if name.endswith(".yaml") and "/" not in name:
                out += [(f"{ex.stem}/{name}", d) for d in yaml.safe_load_all(text)]
    return out


@pytest.mark.skipif(not (BPFMAN / "bpfman.io_clusterbpfapplications.yaml").is_file(),
                    reason=f"bpfman's CRDs not found in {BPFMAN} (set MANTRA_BPFMAN_CRDS)")
@pytest.mark.parametrize("options", [{}, {"interfaces": ((1, "eth1"), (2, "eth2")), "node_selector": (("edge", "true"),)},
                                     {"bytecode_path": "/var/lib/mantra"}], ids=["default", "interfaces", "path"])
def test_bpfman_applications_pass_bpfman_s_own_crds(options):
    crds = crd.load_crds(BPFMAN)
    apps = [(w, d) for w, d in manifests("bpfman", **options) if d["kind"] == "ClusterBpfApplication"]
    assert len(apps) == sum(len(export_site([str(e)], "bpfman", ExportOptions()).summary) for e in EXAMPLES)
    for where, d in apps:
        assert crd.problems(crds, d) == [], where


@pytest.mark.skipif(not (BPFMAN / "bpfman.io_clusterbpfapplications.yaml").is_file(),
                    reason=f"bpfman's CRDs not found in {BPFMAN} (set MANTRA_BPFMAN_CRDS)")
def test_the_crd_check_itself_rejects_what_bpfman_would():
    """The checker is not vacuous: the CRD's CEL rule (type XDP needs xdp), an unknown
    field, a priority out of range and two byteCode sources are each refused."""
    crds = crd.load_crds(BPFMAN)
    _, app = next((w, d) for w, d in manifests("bpfman") if d["kind"] == "ClusterBpfApplication")
    bad = copy.deepcopy(app)
    del bad["spec"]["programs"][0]["xdp"]
    assert any("xdp configuration is required" in p for p in crd.problems(crds, bad))
    bad = copy.deepcopy(app)
    bad["spec"]["programs"][0]["xdp"]["links"][0]["speed"] = "fast"
    assert crd.problems(crds, bad)
    bad = copy.deepcopy(app)
    bad["spec"]["programs"][0]["xdp"]["links"][0]["priority"] = 5000
    assert crd.problems(crds, bad)
    bad = copy.deepcopy(app)
    bad["spec"]["byteCode"]["path"] = "/x.o"
    assert crd.problems(crds, bad)


@pytest.mark.skipif(not IML.is_dir() or not list(IML.glob("core.loom.io_*.yaml")),
                    reason=f"IML's CRDs not found in {IML} (set MANTRA_IML_CRDS to operator/config/crd/bases of mantra6g/iml)")
def test_iml_objects_pass_iml_s_own_crds():
    crds = crd.load_crds(IML)
    objs = manifests("iml") + manifests("iml", p4_url="https://nf.example/p4")
    assert {d["kind"] for _, d in objs} == {"Application", "BMv2Target", "NetworkFunction", "NetworkFunctionConfig",
                                           "ServiceChain"}
    for where, d in objs:
        assert crd.problems(crds, d) == [], where


@pytest.mark.skipif(not OAKESTRA.is_file(),
                    reason=f"Oakestra's SLA schema not found at {OAKESTRA} (set MANTRA_OAKESTRA_SLA_SCHEMA)")
def test_oakestra_slas_pass_oakestra_s_own_validator():
    """Oakestra's v2 validator is jsonschema.validate(instance, sla_schema); so is this."""
    import jsonschema

    schema = json.loads(OAKESTRA.read_text())
    for ex in EXAMPLES:
        sla = json.loads(export_site([str(ex)], "oakestra", ExportOptions()).files["sla.json"])
        jsonschema.validate(instance=sla, schema=schema)
        broken = copy.deepcopy(sla)
        del broken["applications"][0]["microservices"][0]["code"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(instance=broken, schema=schema)


def test_every_engine_is_covered_here():
    assert set(ENGINES) == {"iml", "bpfman", "oakestra"}

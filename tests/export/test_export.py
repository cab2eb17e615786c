"""`mantra export`: every example site to every engine, the schemas (each required field
and value form), and the mappings the manifests carry — table entries, SLAs, chains.

Oracles beyond our own code: Python's ``ipaddress`` decodes the addresses IML's driver
parses (Go's ``net.ParseIP``/``ParseMAC``) back to the numbers entries.json holds;
``llvm-readelf`` lists the maps the object really declares; ``shlex`` (POSIX quoting,
as Dockerfile LABEL values take it) reads the image labels back; the IML/Oakestra
rules the schemas encode are the engines' own (cited in each schema's description).
"""

from __future__ import annotations

import copy
import os
import json
import shlex
import shutil
import subprocess
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
import yaml

from mantra6g.cli import main
from mantra6g.export import ENGINES, ExportError, ExportOptions, export_site
from mantra6g.export.site import Site, dns_name, problems, write_folder
from mantra6g.targets import bmv2, xdp
from tests.conftest import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def bundles():
    return {(ex.stem, e): export_site([str(ex)], e, ExportOptions()) for ex in EXAMPLES for e in ENGINES}


def docs(bundle, suffix=".yaml") -> list[dict]:
    return [d for name, text in sorted(bundle.files.items()) if name.endswith(suffix) and "/" not in name
            for d in yaml.safe_load_all(text)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("example", [e.stem for e in EXAMPLES])
def test_every_example_site_exports_to_every_engine(tmp_path, capsys, example, engine):
    out = tmp_path / "out"
    assert main(["export", f"examples/{example}.sg", "--to", engine, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"to {out}/" in said
    assert (out / "README.md").is_file()
    manifests = sorted(out.glob("*.yaml")) + sorted(out.glob("*.json"))
    assert manifests
    for f in manifests:
        for d in (yaml.safe_load_all(f.read_text()) if f.suffix == ".yaml" else [json.loads(f.read_text())]):
            assert problems(d, engine) == [], f.name


# ---------------------------------------------------------------- IML


def records_from_config(nfc: dict) -> list[dict]:
    """IML NetworkFunctionConfig tables back to entries.json records (the test's decoder:
    the value forms read the way IML's BMv2 driver parses them, with ipaddress)."""

    def num(v: dict) -> int:
        ((form, text),) = v.items()
        if form == "int":
            return int(text, 10)
        if form == "rawHex":
            return int(text, 16)
        if form == "ipv4Address":
            return int(IPv4Address(text))
        if form == "ipv6Address":
            return int(IPv6Address(text))
        assert form == "macAddress"
        return int(text.replace(":", ""), 16)

    tables = []
    for table, cfg in nfc["spec"]["tables"].items():
        if not cfg["entries"]:
            continue
        entries = []
        for e in cfg["entries"]:
            match = []
            for m in e["matchFields"]:
                t = m["type"]
                if t == "Exact":
                    match.append({"field": m["name"], "exact": num(m["exact"])})
                elif t == "LPM":
                    match.append({"field": m["name"], "lpm": [num(m["lpm"]["value"]), int(m["lpm"]["prefixLen"])]})
                elif t == "Ternary":
                    match.append({"field": m["name"], "ternary": [num(m["ternary"]["value"]), int(m["ternary"]["mask"], 16)]})
                else:
                    match.append({"field": m["name"], "range": [num(m["range"]["low"]), num(m["range"]["high"])]})
            params = {p["name"]: num({k: v for k, v in p.items() if k != "name"}) for p in e["action"].get("parameters", [])}
            entries.append({"match": match, "action": e["action"]["name"], "params": params})
        tables.append({"table": table, "entries": entries})
    return tables


@pytest.mark.parametrize("example", [e.stem for e in EXAMPLES])
def test_iml_entries_translated_back_equal_what_mantra_compile_writes(bundles, example):
    site = Site.load([f"examples/{example}.sg"])
    configs = {d["metadata"]["labels"]["mantra6g.io/program"]: d for d in docs(bundles[(example, "iml")])
               if d["kind"] == "NetworkFunctionConfig"}
    for dp in site.programs:
        compiled = json.loads(bmv2.emit(dp.program).files[f"{dp.name}.entries.json"])
        want = compiled["tables"]
        got = records_from_config(configs[dns_name(dp.name)]) if dns_name(dp.name) in configs else []
        assert got == want, dp.name
        # default actions too: the program's, for every runtime table
        if dns_name(dp.name) in configs:
            for t in dp.program.tables:
                if not t.const:
                    cfg = configs[dns_name(dp.name)]["spec"]["tables"][f"MantraIngress.{t.name}"]
                    assert cfg["defaultAction"]["name"] == f"MantraIngress.{t.default.action}"


def test_iml_values_take_the_form_of_their_field(bundles):
    (nfc,) = [d for d in docs(bundles[("embb_video", "iml")]) if d["kind"] == "NetworkFunctionConfig"]
    entry = nfc["spec"]["tables"]["MantraIngress.video_downlink_rt_fib"]["entries"][0]
    assert entry["matchFields"][0] == {"name": "ipv4_dst", "type": "LPM",
                                       "lpm": {"value": {"ipv4Address": "10.21.8.0"}, "prefixLen": "22"}}
    assert entry["action"]["parameters"] == [{"name": "next_hop", "macAddress": "02:00:00:00:21:81"},
                                             {"name": "port", "int": "3"}]


def test_iml_has_a_function_per_program_and_a_chain_per_graph_in_chain_order(bundles):
    objs = docs(bundles[("urllc_factory", "iml")])
    kinds = [d["kind"] for d in objs]
    assert kinds.count("NetworkFunction") == 2 and kinds.count("BMv2Target") == 2 and kinds.count("Application") == 2
    (chain,) = [d for d in objs if d["kind"] == "ServiceChain"]
    assert chain["spec"]["functions"] == [{"matchLabels": {"mantra6g.io/program": "smartnic-factory-edge"}},
                                          {"matchLabels": {"mantra6g.io/program": "host-factory-edge"}}]
    assert {chain["spec"]["from"]["name"], chain["spec"]["to"]["name"]} == {"motion-control-from", "motion-control-to"}
    nf = next(d for d in objs if d["kind"] == "NetworkFunction" and d["metadata"]["name"] == "smartnic-factory-edge")
    import base64

    site = Site.load(["examples/urllc_factory.sg"])
    assert base64.b64decode(nf["spec"]["p4File"]).decode() == bmv2.emit(site.programs[0].program).files[
        "smartnic_factory_edge.p4"]
    assert nf["spec"]["targetSelector"] == {"p4target.loom.io/arch": "v1model"}
    two = docs(bundles[("edge_site_two_tenants", "iml")])
    assert [d["metadata"]["name"] for d in two if d["kind"] == "ServiceChain"] == ["haptic-loop", "camera-uplink"]


def test_iml_p4_url_replaces_the_inlined_source():
    b = export_site(["examples/embb_video.sg"], "iml", ExportOptions(p4_url="https://files.example/p4/"))
    (nf,) = [d for d in docs(b) if d["kind"] == "NetworkFunction"]
    assert nf["spec"]["p4File"] == "https://files.example/p4/pdp.p4"
    assert "p4/pdp.p4" in b.files and "p4/pdp.p4info.bin" in b.files


def valid_iml() -> dict[str, dict]:
    objs = docs(export_site(["examples/embb_video.sg"], "iml", ExportOptions()))
    return {d["kind"]: d for d in objs}


IML_REQUIRED = [
    ("NetworkFunction", ["spec", "p4File"]),
    ("NetworkFunction", ["metadata", "name"]),
    ("NetworkFunction", ["metadata", "namespace"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "matchFields"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "action"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "matchFields", 0, "type"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "matchFields", 0, "name"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "matchFields", 0, "lpm"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "matchFields", 0, "lpm", "prefixLen"]),
    ("NetworkFunctionConfig", ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0, "action", "name"]),
    ("ServiceChain", ["spec", "from"]),
    ("ServiceChain", ["spec", "to"]),
    ("ServiceChain", ["spec", "to", "namespace"]),
    ("Application", ["spec"]),
    ("BMv2Target", ["metadata", "name"]),
]


def _drop(doc: dict, path: list) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]
    return doc


def _set(doc: dict, path: list, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("kind,path", IML_REQUIRED, ids=lambda x: x if isinstance(x, str) else ".".join(map(str, x)))
def test_iml_schema_requires_each_required_field(kind, path):
    doc = valid_iml()[kind]
    assert problems(doc, "iml") == []
    found = problems(_drop(doc, path), "iml")
    assert found and any(repr(path[-1]) in p or str(path[-1]) in p for p in found), found


F0 = ["spec", "tables", "MantraIngress.video_downlink_rt_fib", "entries", 0]
IML_BAD_VALUES = [
    ("NetworkFunctionConfig", F0 + ["matchFields", 0, "type"], "Lpm"),  # IML spells it LPM
    ("NetworkFunctionConfig", F0 + ["matchFields", 0, "lpm", "value"], {"ipv4Address": "10.21.8.256"}),
    ("NetworkFunctionConfig", F0 + ["matchFields", 0, "lpm", "value"], {"int": "-4"}),
    ("NetworkFunctionConfig", F0 + ["matchFields", 0, "lpm", "value"], {"int": "1", "rawHex": "0x1"}),
    ("NetworkFunctionConfig", F0 + ["matchFields", 0, "lpm", "prefixLen"], 22),  # a string in IML
    ("NetworkFunctionConfig", F0 + ["action", "parameters", 0], {"name": "next_hop", "macAddress": "02:00:00:00:21"}),
    ("NetworkFunctionConfig", F0 + ["action", "parameters", 0], {"name": "next_hop"}),
    ("NetworkFunctionConfig", F0 + ["matchFields", 0], {"name": "ipv4_dst", "type": "Ternary",
                                                         "ternary": {"value": {"int": "1"}, "mask": "ff-ff"}}),
    ("NetworkFunction", ["spec", "p4File"], "not base64 or a URL!"),
    ("NetworkFunction", ["metadata", "name"], "Video_Downlink"),
    ("NetworkFunction", ["metadata", "labels"], {"mantra6g.io/program": "-bad-"}),
    ("BMv2Target", ["spec", "resources", "requests", "cpu"], "half a core"),
    ("ServiceChain", ["spec", "functions", 0], {}),
]


@pytest.mark.parametrize("kind,path,bad", IML_BAD_VALUES, ids=lambda x: None)
def test_iml_schema_rejects_each_bad_value_form(kind, path, bad):
    assert problems(_set(valid_iml()[kind], path, bad), "iml")


def test_a_manifest_that_would_be_rejected_is_an_error_naming_the_field(capsys, tmp_path):
    rc = main(["export", "examples/embb_video.sg", "--to", "iml", "--namespace", "Edge_1", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "metadata.namespace" in err and "Edge_1" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    rc = main(["export", "examples/embb_video.sg", "--to", "oakestra", "--customer-id", "", "-o", str(tmp_path / "y")])
    assert rc == 2 and "customerID" in capsys.readouterr().err


# ---------------------------------------------------------------- Oakestra


def test_oakestra_constraints_carry_each_slice_sla_with_the_same_numbers(bundles):
    """Oracle: the slices as the ServiceGraph IR holds them, in base units, converted by
    hand: 1 ms is 1 ms, 99.999 % is 0.99999, 50 Mbps is 50000 kbit/s."""
    sla = json.loads(bundles[("urllc_factory", "oakestra")].files["sla.json"])
    (app,) = sla["applications"]
    ms = {m["microservice_name"]: m for m in app["microservices"]}
    assert set(ms) == {"smartnicFactoryEdge", "hostFactoryEdge"}
    for m in ms.values():
        (lat,) = [c for c in m["constraints"] if c["type"] == "latency"]
        assert (lat["threshold"], lat["rigidness"], lat["convergence_time"]) == (1, 0.99999, 300)
        assert m["bandwidth_in"] == 50_000
        assert {"type": "clusters", "allowed": ["factory_edge"]} in m["constraints"]
    (link,) = ms["smartnicFactoryEdge"]["connectivity"]
    assert link["target_microservice_id"] == "hostFactoryEdge"
    assert {"type": "latency", "threshold": 1, "rigidness": 0.99999, "convergence_time": 300} in link["con_constraints"]
    two = json.loads(bundles[("edge_site_two_tenants", "oakestra")].files["sla.json"])
    (dpu,) = two["applications"][0]["microservices"]
    assert sorted(c["threshold"] for c in dpu["constraints"] if c["type"] == "latency") == [1, 15]
    assert dpu["bandwidth_in"] == 20_000 + 400_000
    site = Site.load(["examples/edge_site_two_tenants.sg"])
    for g in site.graphs:
        s = site.slice_of(g).sla
        assert Decimal(s.latency_ns) / 10**6 in {Decimal(str(c["threshold"])) for c in dpu["constraints"] if c["type"] == "latency"}


def valid_sla() -> dict:
    return json.loads(export_site(["examples/urllc_factory.sg"], "oakestra", ExportOptions()).files["sla.json"])


M0 = ["applications", 0, "microservices", 0]
OAK_REQUIRED = [["sla_version"], ["customerID"], ["applications"], ["applications", 0, "application_name"],
                ["applications", 0, "application_namespace"], ["applications", 0, "microservices"],
                M0 + ["microservice_name"], M0 + ["microservice_namespace"], M0 + ["virtualization"], M0 + ["code"],
                M0 + ["constraints", 0, "type"], M0 + ["connectivity", 0, "target_microservice_id"],
                M0 + ["connectivity", 0, "con_constraints"], M0 + ["connectivity", 0, "con_constraints", 0, "threshold"],
                M0 + ["connectivity", 0, "con_constraints", 0, "rigidness"],
                M0 + ["connectivity", 0, "con_constraints", 0, "convergence_time"],
                M0 + ["constraints", 1, "threshold"]]


@pytest.mark.parametrize("path", OAK_REQUIRED, ids=lambda p: ".".join(map(str, p)))
def test_oakestra_schema_requires_each_required_field(path):
    assert problems(valid_sla(), "oakestra") == []
    assert problems(_drop(valid_sla(), path), "oakestra")


OAK_BAD = [(["sla_version"], "v1.0"), (["applications", 0, "application_name"], "urllc_factory"),
           (["applications", 0, "application_namespace"], "x" * 31), (M0 + ["microservice_name"], "a-b"),
           (M0 + ["virtualization"], "docker"), (M0 + ["connectivity", 0, "con_constraints", 0, "rigidness"], 99.999),
           (M0 + ["connectivity", 0, "con_constraints", 0, "convergence_time"], 1.5),
           (M0 + ["connectivity", 0, "con_constraints", 0, "type"], "jitter"),
           (M0 + ["microserviceID"], "42"), (["applications"], [])]


@pytest.mark.parametrize("path,bad", OAK_BAD, ids=lambda x: None)
def test_oakestra_schema_rejects_each_bad_value_form(path, bad):
    assert problems(_set(valid_sla(), path, bad), "oakestra")


# ---------------------------------------------------------------- bpfman


def test_bpfman_object_is_what_mantra_compile_builds_and_its_labels_name_what_it_holds(tmp_path, bundles):
    """The exported object is `mantra compile --target xdp`'s (same C, same instructions); the
    Containerfile's labels, read back with POSIX quoting, list the program and exactly
    the maps llvm-readelf finds in the object's .maps section."""
    b = bundles[("urllc_factory", "bpfman")]
    assert main(["compile", "examples/urllc_factory.sg", "--target", "xdp", "-o", str(tmp_path)]) == 0
    readelf = shutil.which("llvm-readelf") or shutil.which("readelf")
    objcopy = shutil.which("llvm-objcopy") or shutil.which("objcopy")

    def code(obj: Path) -> bytes:  # the program's instructions (debug info names the build folder)
        subprocess.run([objcopy, "--dump-section", f"xdp={obj}.xdp", str(obj), str(tmp_path / "scratch.o")], check=True)
        return Path(f"{obj}.xdp").read_bytes()

    for stem in ("smartnic_factory_edge", "host_factory_edge"):
        assert b.files[f"{stem}/{stem}.c"] == (tmp_path / f"{stem}.c").read_text()
        (tmp_path / "x.o").write_bytes(b.files[f"{stem}/{stem}.o"])
        assert code(tmp_path / "x.o") == code(tmp_path / f"{stem}.o")
        labels = {}
        for line in b.files[f"{stem}/Containerfile"].splitlines():
            if line.startswith("LABEL "):
                key, _, value = shlex.split(line[len("LABEL "):])[0].partition("=")
                labels[key] = json.loads(value)
        assert labels["io.ebpf.programs"] == {"mantra_xdp": "xdp"}
        syms = subprocess.run([readelf, "-sW", "--section-headers", str(tmp_path / "x.o")], capture_output=True,
                              text=True, check=True).stdout
        sections = {ln.split("]")[1].split()[0]: ln.split("[")[1].split("]")[0].strip()
                    for ln in syms.splitlines() if ln.strip().startswith("[") and "]" in ln and ln.split("]")[1].split()}
        maps_ndx = sections[".maps"]
        in_maps = {ln.split()[-1] for ln in syms.splitlines()
                   if len(ln.split()) >= 8 and ln.split()[6] == maps_ndx and ln.split()[3] == "OBJECT"}
        assert set(labels["io.ebpf.maps"]) == in_maps
        assert labels["io.ebpf.maps"]["mantra_scratch"] == "per_cpu_array"  # bpfman's spelling
        assert "COPY " + f"{stem}.o /" in b.files[f"{stem}/Containerfile"]


def test_bpfman_fill_holds_every_entry_mantra_deploy_installs(bundles):
    site = Site.load(["examples/urllc_factory.sg"])
    b = bundles[("urllc_factory", "bpfman")]
    for dp in site.programs:
        lines = b.files[f"{dp.name}/maps.batch"].splitlines()
        want = [f"map update pinned @PIN@/{m} key hex {' '.join(f'{x:02x}' for x in k)} value hex "
                f"{' '.join(f'{x:02x}' for x in v)}" for m, k, v in xdp.map_fill(dp.program)]
        assert lines == want


def test_bpfman_options_reach_the_manifests():
    b = export_site(["examples/embb_video.sg"], "bpfman", ExportOptions(
        namespace="edge", node_selector=(("mantra6g.io/pdp", "true"),), interfaces=((1, "ens1"), (2, "ens2")),
        image="quay.io/acme/nf", tag="v3"))
    apps, fills = docs(b)[0:1], docs(b)[1:]
    spec = apps[0]["spec"]
    assert spec["nodeSelector"] == {"matchLabels": {"mantra6g.io/pdp": "true"}}
    assert spec["byteCode"]["image"]["url"] == "quay.io/acme/nf/pdp:v3"
    assert spec["programs"][0]["xdp"]["links"][0]["interfaceSelector"] == {"interfaces": ["ens1", "ens2"]}
    (fill,) = fills
    assert fill["metadata"]["namespace"] == "edge"
    assert fill["spec"]["template"]["spec"]["initContainers"][0]["args"] == ["/run/mantra/maps", "1=ens1", "2=ens2"]
    path = export_site(["examples/embb_video.sg"], "bpfman", ExportOptions(bytecode_path="/var/lib/mantra"))
    assert docs(path)[0]["spec"]["byteCode"] == {"path": "/var/lib/mantra/pdp.o"}


BPF_BAD = [(["spec", "programs", 0, "type"], "xdp"), (["spec", "programs", 0, "name"], "9lives"),
           (["spec", "programs", 0, "xdp", "links", 0, "priority"], 1001),
           (["spec", "byteCode"], {"image": {"url": "x/y"}, "path": "/x.o"}),
           (["spec", "byteCode", "path"], "relative/x.o"),
           (["spec", "programs", 0, "xdp", "links", 0, "interfaceSelector"], {"interfaces": ["eth0"], "primaryNodeInterface": True}),
           (["spec", "programs", 0, "xdp", "links", 0, "proceedOn"], ["Continue"])]


@pytest.mark.parametrize("path,bad", BPF_BAD, ids=lambda x: None)
def test_bpfman_schema_rejects_each_bad_value_form(path, bad):
    app = docs(export_site(["examples/embb_video.sg"], "bpfman", ExportOptions()))[0]
    assert problems(app, "bpfman") == []
    assert problems(_set(app, path, bad), "bpfman")
    for required in (["spec", "byteCode"], ["spec", "nodeSelector"], ["spec", "programs"], ["spec", "programs", 0, "xdp"]):
        assert problems(_drop(app, required), "bpfman")


# ---------------------------------------------------------------- shared


def test_the_output_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "iml"
    write_folder(target, {"a.yaml": "old\n", "sub/b.txt": "x"})
    write_folder(target, {"c.yaml": "new\n", "blob.bin": b"\x00\x01"})
    written = [".mantra-output", "blob.bin", "c.yaml"]  # the manifest: what a later run may replace
    assert sorted(p.name for p in target.rglob("*")) == written
    with pytest.raises(ExportError, match="cannot write"):
        write_folder(target, {"d.yaml": "x", "d.yaml/e": "y"})  # a file where a folder must go
    with pytest.raises(ExportError, match="outside the output folder"):
        write_folder(target, {"../escape": "x"})
    assert sorted(p.name for p in target.rglob("*")) == written
    assert [p.name for p in tmp_path.iterdir()] == ["iml"]  # no staging folder left behind


def test_a_folder_holding_the_users_files_or_an_input_is_not_replaced(tmp_path, monkeypatch):
    # `mantra export sub/site.sg -o sub` used to replace sub/ whole, the spec with it.
    monkeypatch.chdir(tmp_path)
    Path("sub").mkdir()
    Path("sub/site.sg").write_text(Path(ROOT / "examples/embb_video.sg").read_text())
    assert main(["export", "sub/site.sg", "--to", "iml", "-o", "sub"]) == 2
    assert main(["export", "sub/site.sg", "--to", "iml", "-o", "."]) == 2
    assert Path("sub/site.sg").is_file() and sorted(os.listdir("sub")) == ["site.sg"]
    assert main(["export", "sub/site.sg", "--to", "iml", "-o", "out"]) == 0
    Path("out/my-notes.txt").write_text("mine")  # the folder is no longer only mantra's
    assert main(["export", "sub/site.sg", "--to", "iml", "-o", "out"]) == 2
    assert Path("out/my-notes.txt").read_text() == "mine"


def test_names_become_kubernetes_names_and_never_merge():
    assert dns_name("smartnic_factory_edge") == "smartnic-factory-edge"
    long_a, long_b = dns_name("a" * 70 + "_x"), dns_name("a" * 70 + "_y")
    assert len(long_a) <= 63 and long_a != long_b


@pytest.mark.skipif(__import__("mantra6g.targets.toolchain", fromlist=["find"]).find("p4c-bm2-ss") is None,
                    reason="p4c-bm2-ss not on PATH (not installable here: build p4c outside the repository); set MANTRA_P4C")
@pytest.mark.parametrize("example", [e.stem for e in EXAMPLES])
def test_exported_p4_compiles_with_p4c_as_iml_s_driver_compiles_it(tmp_path, bundles, example):
    """IML's BMv2 driver runs p4c --target bmv2 --arch v1model --p4runtime-files; so does this
    (p4c-bm2-ss is that back end), on each exported source, and the P4Info equals ours."""
    from mantra6g.targets import p4info, toolchain

    b = bundles[(example, "iml")]
    for name, data in b.files.items():
        if name.startswith("p4/") and name.endswith(".p4"):
            src = tmp_path / Path(name).name
            src.write_text(data)
            build = toolchain.compile_bmv2(src, tmp_path / "build")
            theirs = p4info.parse_text(build.p4info.read_text())
            ours = type(theirs).FromString(b.files[name.replace(".p4", ".p4info.bin")])
            assert ours == theirs, name

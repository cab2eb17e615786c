"""The benchmarks run and say what they could not measure (they print figures and never
judge time; these tests check that they keep running, not how fast anything is)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from mantra6g.targets import toolchain
from tests.conftest import ROOT
from tests.targets.test_tools import fake_tool

TOOL_VARIABLES = ("MANTRA_P4C", "MANTRA_SIMPLE_SWITCH", "MANTRA_BF_P4C")


def bench(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=timeout)


def without_tools(tmp_path, **extra: str) -> dict[str, str]:
    """The environment with no P4 tool on PATH nor named by a variable."""
    env = {k: v for k, v in os.environ.items() if k not in TOOL_VARIABLES}
    return {**env, "PATH": str(tmp_path), **extra}


def test_the_compile_bench_names_each_absent_compiler_and_goes_on(tmp_path):
    r = bench("compile.py", "--chains", "1", "--repeat", "1", env=without_tools(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "'p4c-bm2-ss' not found" in r.stdout and "'bf-p4c' not found" in r.stdout
    assert r.stdout.count("p4c-bm2-ss not found: not timed") == r.stdout.count("synthesis (front end")
    assert "generated 1 chains x 5 NFs" in r.stdout
    assert "bmv2    none (p4c-bm2-ss absent" in r.stdout


def test_the_compile_bench_reports_a_refused_program_by_the_compilers_first_error(tmp_path):
    refuse = fake_tool(tmp_path, "bf-p4c", 'if [ "$1" = --version ]; then echo "p4c 0.0 (stand-in)"; exit 0; fi\n'
                                           'echo "x.p4(3): [--Wwarn=unused] warning: t is unused" >&2\n'
                                           'echo "x.p4(9): [--Werror=unsupported] error: too wide" >&2; exit 1')
    r = bench("compile.py", "--chains", "1", "--repeat", "1", env=without_tools(tmp_path, MANTRA_BF_P4C=str(refuse)))
    assert r.returncode == 0, r.stderr
    refused = [line for line in r.stdout.splitlines() if line.lstrip().startswith("refused ")]
    assert refused and all(line.endswith(": x.p4(9): [--Werror=unsupported] error: too wide") for line in refused)
    assert "warning: t is unused" not in r.stdout
    assert "tofino  none (bf-p4c absent, or it refused" in r.stdout


def test_the_p4_bench_without_its_tools_says_what_is_missing(tmp_path):
    r = bench("p4.py", env=without_tools(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    want = "needs root" if os.geteuid() != 0 else "p4c-bm2-ss, simple_switch, simple_switch_CLI not found"
    assert want in r.stderr, r.stderr


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(any(toolchain.find(t) is None for t in ("p4c-bm2-ss", "simple_switch", "simple_switch_CLI")),
                    reason="p4c-bm2-ss or simple_switch not on PATH; set MANTRA_P4C and MANTRA_SIMPLE_SWITCH")
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (the XDP build) not installed")
def test_the_p4_bench_forwards_on_both_targets(tmp_path):
    """One short round of the router: both targets forward the frame as the interpreter
    says (the bench checks three frames first) and a rate comes out for each."""
    r = bench("p4.py", "--rounds", "1", "--duration", "0.5", "--warmup", "0.3", "--programs", "router", timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if re.search(r"\s(bmv2|xdp)\s", line)]
    assert len(rows) == 2, r.stdout
    for row in rows:
        forwarded = re.findall(r"([\d.]+) ([kM])pps", row)[1]
        assert float(forwarded[0]) > 0, row
    assert re.search(r"\d+x", rows[1]), rows[1]
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith("mbp4")], "the bench left namespaces behind"


@pytest.mark.root
@pytest.mark.parametrize("mode", ("const", "runtime"))
def test_the_instruction_counter_ends_where_the_kernel_does(mode, tmp_path):
    """bench/xdp_count.py interprets the kernel's translated program; its oracle is the
    kernel: on every NF kind's program and a corpus of valid, malformed and tunnelled
    packets, the interpretation ends with BPF_PROG_TEST_RUN's verdict and bytes (a count
    from a run that went elsewhere would mean nothing)."""
    from bench import xdp_count
    from mantra6g.synth.tables import with_tables
    from mantra6g.targets import xdp
    from mantra6g.targets.bpf import BpfObject
    from tests.targets.xdp_cases import GRAPHS, corpus, program, tunnel_corpus

    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed (make setup installs it)")
    packets = [d for d in corpus()[:12] + tunnel_corpus()[:4] if len(d) >= 14]
    counted = 0
    for kind in GRAPHS:
        p = with_tables(program(kind), mode)
        c = tmp_path / f"{kind}.c"
        c.write_text(xdp.emit(p).files[f"{p.name}.c"])
        with BpfObject.load(xdp.build(c, tmp_path / f"{kind}.o")) as obj:
            xdp.fill_maps(obj, p)
            obj.update("mantra_ingress", bytes(4), (1).to_bytes(4, "little") + (1).to_bytes(4, "little"))
            for data in packets:
                verdict, before, _ = obj.test_run(data)  # first: a flow the LB has then seen
                got = xdp_count.count(xdp_count.prog_id(obj.fd), data)
                after = obj.test_run(data)[1]
                assert xdp_count.agrees(got, verdict, before, after), (
                    f"{kind}: packet {data.hex()}: kernel {verdict} {before.hex()}, "
                    f"interpreted {got.verdict} {got.packet.hex()}")
                assert got.instructions > 0
                counted += 1
    assert counted == len(GRAPHS) * len(packets)

"""The CLI misused as a careless user would (issue 17): no traceback, no lost file, an
error that names what to change. Each test is named after the bug it keeps fixed.

Commands run in this process (``run_cli``) except where a real process is the point.
Oracles: the kernel for "same file" (``stat``), scapy for writing captures of other
link types, SHA-256 of every file before and after for "nothing changed".
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from tests.conftest import EXAMPLES, ROOT, run_cli

VIDEO = (ROOT / "examples" / "embb_video.sg").read_text()
FACTORY = (ROOT / "examples" / "urllc_factory.sg").read_text()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A working directory with a spec and a good capture, as a user has them."""
    monkeypatch.chdir(tmp_path)
    Path("v.sg").write_text(VIDEO)
    frames = [Ether(src="02:00:00:00:00:aa", dst="02:00:00:00:00:bb") / IP(src="198.51.100.7", dst="10.20.1.1") / UDP(sport=443) / b"q"]
    wrpcap("in.pcap", frames)
    Path("sub").mkdir()
    return tmp_path


def assert_user_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


# ---------------------------------------------------------------- a user's file destroyed


@pytest.mark.parametrize("out", ["in.pcap", "./in.pcap", "sub/../in.pcap", "link.pcap", "hard.pcap", "v.sg"])
def test_run_refuses_an_output_that_is_one_of_its_inputs(site, out):
    Path("link.pcap").symlink_to("in.pcap")
    os.link("in.pcap", "hard.pcap")
    before = snapshot(site)
    code, _, err = run_cli("run", "v.sg", "--pcap", "in.pcap", "-o", out)
    assert_user_error(code, err, f"mantra run: error: --out {out} is also an input")
    assert snapshot(site) == before


@pytest.mark.parametrize("out, words", [
    ("no/such/dir/out.pcap", ("directory no/such/dir does not exist",)),
    ("/proc/mantra-out.pcap", ("/proc/mantra-out.pcap",)),
    ("sub", ("--out sub is a directory",)),
    ("v.sg/out.pcap", ("v.sg is a file, not a directory",)),
])
def test_run_into_a_place_it_cannot_write_is_an_error_not_a_traceback(site, out, words):
    before = snapshot(site)
    code, _, err = run_cli("run", "v.sg", "--pcap", "in.pcap", "-o", out)
    assert_user_error(code, err, "mantra run: error:", *words)
    assert snapshot(site) == before


def test_a_failed_run_keeps_the_previous_output(site):
    assert run_cli("run", "v.sg", "--pcap", "in.pcap", "-o", "out.pcap")[0] == 0
    Path("cut.pcap").write_bytes(Path("in.pcap").read_bytes()[:-5])
    before = snapshot(site)
    code, _, err = run_cli("run", "v.sg", "--pcap", "cut.pcap", "-o", "out.pcap")
    assert_user_error(code, err, "cut.pcap: record 1 is cut short")
    assert snapshot(site) == before and len(rdpcap("out.pcap")) == 1


def test_compile_of_a_site_is_all_or_nothing(tmp_path, monkeypatch):
    # urllc_factory with its load balancer moved to the host: two device programs, the
    # SmartNIC's goes to BMv2, the host's does not fit Tofino's 12 stages. The first
    # one's files must not be left behind, the old output must stay.
    monkeypatch.chdir(tmp_path)
    moved = FACTORY.replace("place fw, mon_in, lb on smartnic", "place fw, mon_in on smartnic")
    Path("f.sg").write_text(moved.replace("place mon_out on host", "place lb, mon_out on host"))
    assert run_cli("compile", "f.sg", "-t", "bmv2", "-o", "out")[0] == 0
    Path("out/notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, stdout, err = run_cli("compile", "f.sg", "-t", "smartnic=bmv2", "-t", "host=tofino", "-o", "out")
    assert_user_error(code, err, "device program 'host_factory_edge' (tofino)", "does not fit in Tofino-1's 12 MAU stages",
                      "a block of statements outside any table ('statements")  # not called a table
    assert "table 'statements" not in err
    assert snapshot(tmp_path) == before and stdout == ""
    assert sorted(p.name for p in Path("out").iterdir() if p.name.startswith(".")) == []  # no stage left
    code, _, err = run_cli("compile", "f.sg", "-t", "tofino", "-o", "fresh/out")
    assert code == 2 and not Path("fresh").exists()


def test_compile_refuses_to_write_over_its_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pdp.dpir.txt").write_text(VIDEO)  # a spec named like one of the outputs
    before = snapshot(tmp_path)
    code, _, err = run_cli("compile", "pdp.dpir.txt", "-t", "dpir", "-o", ".")
    assert_user_error(code, err, "output pdp.dpir.txt is also an input")
    code, _, err = run_cli("compile", "pdp.dpir.txt", "-t", "dpir", "-o", "pdp.dpir.txt")
    assert_user_error(code, err, "--out pdp.dpir.txt is also an input")
    assert snapshot(tmp_path) == before


def test_verify_refuses_its_input_as_output_directory(site):
    before = snapshot(site)
    assert_user_error(*run_cli("verify", "v.sg", "-t", "bmv2", "-o", "v.sg")[::2], "--out v.sg is also an input")
    assert snapshot(site) == before


@pytest.mark.parametrize("flag", ["--out", "--markdown"])
def test_simulate_refuses_its_scenario_as_output_before_running(site, flag):
    Path("s.yaml").write_text("steps: 40\n")
    before = snapshot(site)
    argv = ["simulate", "s.yaml", flag, "s.yaml", "--seeds", "1", "--policy", "static", "--steps", "40"]
    if flag == "--markdown":
        argv += ["--out", "o"]
    assert_user_error(*run_cli(*argv)[::2], f"{flag} s.yaml is also an input")
    assert snapshot(site) == before and not Path("o").exists()


@pytest.mark.parametrize("argv, words", [
    (["--out", "s.yaml"], ("--out s.yaml is also an input",)),
    (["--duration", "0"], ("--duration 0",)),
])
def test_testbed_refuses_bad_flags_before_building_the_site(site, argv, words):
    Path("s.yaml").write_text("seed: 1\n")
    before = snapshot(site)
    assert_user_error(*run_cli("testbed", "run", "s.yaml", *argv)[::2], *words)
    assert snapshot(site) == before


@pytest.mark.parametrize("pcap", ["", ".", "sub/.."])
def test_run_with_a_capture_name_that_names_no_file_is_an_error(site, pcap):
    # Found by the fuzz test: the default output name was derived from it (exit 3).
    before = snapshot(site)
    assert_user_error(*run_cli("run", "v.sg", "--pcap", pcap)[::2], "--pcap", "name a capture file")
    assert snapshot(site) == before


@pytest.mark.parametrize("out", ["sub", ".", "notes"])
def test_export_never_replaces_a_folder_holding_an_input_or_the_users_files(site, out):
    # `mantra export sub/v.sg -o sub` replaced sub/ whole, the spec in it too.
    Path("sub/v.sg").write_text(VIDEO)
    Path("notes").mkdir()
    Path("notes/todo.txt").write_text("mine")
    before = snapshot(site)
    code, _, err = run_cli("export", "sub/v.sg", "--to", "iml", "-o", out)
    assert_user_error(code, err, f"mantra export: error: --out {out} holds")
    assert snapshot(site) == before


# ---------------------------------------------------------------- captures


@pytest.mark.parametrize("linktype", [101, 228, 113])
def test_run_refuses_a_capture_that_is_not_ethernet(site, linktype):
    wrpcap("x.pcap", [IP(dst="10.20.1.1") / UDP(sport=443)], linktype=linktype)
    before = snapshot(site)
    code, stdout, err = run_cli("run", "v.sg", "--pcap", "x.pcap", "-o", "out.pcap")
    assert_user_error(code, err, f"mantra run: error: x.pcap: link type {linktype} (", "is not Ethernet")
    assert snapshot(site) == before and stdout == ""


def test_run_of_a_truncated_capture_names_the_file_and_the_record(site):
    wrpcap("two.pcap", list(rdpcap("in.pcap")) * 2)
    Path("cut.pcap").write_bytes(Path("two.pcap").read_bytes()[:-3])
    code, stdout, err = run_cli("run", "v.sg", "--pcap", "cut.pcap", "-o", "out.pcap")
    assert_user_error(code, err, "cut.pcap: record 2 is cut short")
    assert "WARNING" not in err and stdout == "" and not Path("out.pcap").exists()


# ---------------------------------------------------------------- the last resort


def test_an_unexpected_exception_is_a_short_report_with_exit_3(site, monkeypatch):
    from mantra6g.synth import frontend

    def broken(*args, **kwargs):  # fault injection: a bug somewhere below the CLI
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(frontend, "check_command", broken)
    code, _, err = run_cli("check", "v.sg")
    assert code == 3 and "Traceback" not in err
    assert err.splitlines()[0] == "mantra check: internal error: ZeroDivisionError: division by zero"
    assert "please report it" in err and "--debug" in err
    code, _, err = run_cli("check", "v.sg", "--debug")
    assert code == 3 and "Traceback (most recent call last)" in err and "please report it" in err


def test_a_file_the_system_refuses_is_exit_2_naming_it(site, monkeypatch):
    from mantra6g.synth import frontend

    def refused(*args, **kwargs):  # fault injection: an OSError no command turned into a message
        raise PermissionError(13, "Permission denied", "/srv/site.sg")

    monkeypatch.setattr(frontend, "check_command", refused)
    code, _, err = run_cli("check", "v.sg")
    assert (code, err.strip()) == (2, "mantra check: error: /srv/site.sg: Permission denied")


def test_deep_nesting_in_a_real_process_is_a_short_error(tmp_path):
    spec = tmp_path / "deep.sg"
    spec.write_text(VIDEO.replace("(tcp.sport == 443 or udp.sport == 443)", "(" * 1000 + "udp.sport == 443" + ")" * 1000))
    r = subprocess.run([sys.executable, "-m", "mantra6g", "check", str(spec)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr) < 2000
    assert "nested too deeply" in r.stderr


def test_every_example_still_runs_clean():
    code, out, err = run_cli("check", *map(str, EXAMPLES))
    assert (code, err) == (0, "") and out.count(": ok (") == len(EXAMPLES)

"""``mantra check`` as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mantra6g.synth import ir
from tests.conftest import EXAMPLES, ROOT
from tests.synth.helpers import CLS, graph


def mantra(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mantra6g", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_check_examples_prints_a_summary():
    r = mantra("check", *map(str, EXAMPLES))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "urllc_factory.sg: ok (1 tenant, 1 graph)" in out
    assert "slice motion (id 1): latency <= 1 ms, jitter <= 100 us, bandwidth >= 50 Mbps" in out
    assert "graph motion_control for acme_factory.motion (tenant 1, slice 1): 5 NFs, 4 edges" in out
    assert "lb -> mon_out" in out


def test_check_json_is_the_ir(tmp_path):
    path = EXAMPLES[0]
    r = mantra("check", "--json", str(path))
    assert r.returncode == 0, r.stderr
    spec = ir.from_json(r.stdout)
    assert isinstance(spec, ir.ServiceSpec) and spec.source == str(path)


def test_check_json_of_several_files_is_a_list():
    r = mantra("check", "--json", *map(str, EXAMPLES))
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == len(EXAMPLES)


def test_errors_exit_2_with_location_caret_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.sg"
    bad.write_text(graph(CLS + "nf fw = firewal()\nnf lb = load_balancer(vip: 10.0.0.1/8)\ncls -> fw -> lb"))
    r = mantra("check", str(bad))
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert f"{bad}:" in r.stderr and ": error: unknown NF kind 'firewal'" in r.stderr
    assert "vip needs an IPv4 address" in r.stderr
    assert "^^^^^^^" in r.stderr
    assert "needs at least 1 'backend' rule" in r.stderr
    assert r.stderr.rstrip().endswith("3 errors found")


def test_missing_file_and_directory_are_clear_errors(tmp_path):
    r = mantra("check", str(tmp_path / "nope.sg"))
    assert (r.returncode, "Traceback" in r.stderr) == (2, False)
    assert "nope.sg: no such file" in r.stderr
    r = mantra("check", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_binary_file_is_a_clear_error(tmp_path):
    f = tmp_path / "x.sg"
    f.write_bytes(b"tenant \xff\xfe")
    r = mantra("check", str(f))
    assert r.returncode == 2 and "not UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_bad_flag_is_a_usage_error():
    r = mantra("check", "--jsn", str(EXAMPLES[0]))
    assert r.returncode == 2 and "unrecognized arguments: --jsn" in r.stderr


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("mantra")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("mantra ")


def test_readme_shows_the_real_error_output():
    r = mantra("check", "examples/broken/typos.sg")
    assert r.returncode == 2
    readme = (ROOT / "README.md").read_text()
    assert r.stderr.rstrip("\n") in readme, "README's error example is out of date"

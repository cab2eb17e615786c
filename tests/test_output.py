"""mantra6g.output: outputs never overwrite inputs, appear whole or not at all, and a
staged directory appears together or not at all.

Oracle: the kernel. Whether two names are one file is what ``stat(2)`` says (device
and inode); an interrupted write is a real process killed with SIGKILL mid-write.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mantra6g import output
from mantra6g.output import Inputs, OutputError, StagedDir


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["in.pcap", "./in.pcap", "sub/../in.pcap", "link.pcap", "hard.pcap"])
def test_an_input_is_refused_under_any_name(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.pcap").write_bytes(b"precious")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pcap").symlink_to("in.pcap")
    os.link(tmp_path / "in.pcap", tmp_path / "hard.pcap")
    assert os.stat(name).st_ino == os.stat("in.pcap").st_ino  # the kernel: one file
    with pytest.raises(OutputError, match="is also an input"):
        output.write_bytes(name, b"", Inputs(["in.pcap"]), "--out")
    assert (tmp_path / "in.pcap").read_bytes() == b"precious"


def test_a_different_file_with_equal_content_is_not_an_input(tmp_path):
    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"same")
    output.write_bytes(tmp_path / "b", b"new", Inputs([tmp_path / "a"]))
    assert (tmp_path / "b").read_bytes() == b"new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.pcap"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with output.replacing(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the tool failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pcap"]


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    code = (
        "import os, signal, sys\n"
        "from mantra6g import output\n"
        "with output.replacing(sys.argv[1]) as tmp:\n"
        "    with open(tmp, 'wb') as f:\n"
        "        f.write(b'x' * 100000); f.flush()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old"


def test_replacing_keeps_the_mode_and_the_suffix_and_writes_through_a_symlink(tmp_path):
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    real.chmod(0o640)
    (tmp_path / "link.png").symlink_to("real.png")
    with output.replacing(tmp_path / "link.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # matplotlib picks the format by suffix
        tmp.write_bytes(b"new")
    assert (tmp_path / "link.png").is_symlink() and real.read_bytes() == b"new"
    assert real.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing/out.pcap", "directory .*missing does not exist"),
        ("dir", "is a directory"),
        ("file.txt/out.pcap", "file.txt is a file, not a directory"),
    ],
)
def test_a_file_output_that_cannot_be_written_is_refused_before_writing(tmp_path, name, message):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(OutputError, match=message):
        output.check_file(tmp_path / name)
    assert _tree(tmp_path) == {"file.txt": b"mine"}


def test_the_kernel_refusing_a_write_is_an_output_error(tmp_path):
    # /proc refuses new files even to root: the error comes from the kernel, not from a check.
    with pytest.raises(OutputError, match="/proc/mantra-out"):
        output.write_text("/proc/mantra-out", "x")


def test_staged_files_appear_together(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.p4").write_text("old a")
    (out / "unrelated.txt").write_text("mine")
    with StagedDir(out) as d:
        d.write_text("a.p4", "new a")
        d.write_text("b.p4", "new b")
        assert _tree(out) == {"a.p4": b"old a", "unrelated.txt": b"mine", **{f"{d.path.name}/{n}": v for n, v in _tree(d.path).items()}}
    assert _tree(out) == {"a.p4": b"new a", "b.p4": b"new b", "unrelated.txt": b"mine"}


def test_a_failure_leaves_the_directory_exactly_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.p4").write_text("old a")
    with pytest.raises(RuntimeError):
        with StagedDir(out) as d:
            d.write_text("a.p4", "new a")
            raise RuntimeError("device b failed")
    assert _tree(out) == {"a.p4": b"old a"} and list(out.iterdir()) == [out / "a.p4"]


def test_a_failure_creates_nothing_and_success_creates_the_directory(tmp_path):
    with pytest.raises(RuntimeError):
        with StagedDir(tmp_path / "new" / "out") as d:
            d.write_text("a", "x")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with StagedDir(tmp_path / "new" / "out") as d:
        d.write_text("a", "x")
    assert _tree(tmp_path) == {"new/out/a": b"x"}


def test_a_staged_file_that_is_an_input_stops_every_move(tmp_path):
    spec = tmp_path / "pdp.dpir.txt"
    spec.write_text("tenant ...")
    with pytest.raises(OutputError, match="is also an input"):
        with StagedDir(tmp_path, Inputs([spec])) as d:
            d.write_text("pdp.dpir.json", "{}")
            d.write_text("pdp.dpir.txt", "program")
    assert _tree(tmp_path) == {"pdp.dpir.txt": b"tenant ..."}


def test_an_output_directory_that_is_a_file_is_refused(tmp_path):
    spec = tmp_path / "v.sg"
    spec.write_text("x")
    with pytest.raises(OutputError, match="is also an input"):
        StagedDir(spec, Inputs([spec]), "--out")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        StagedDir(spec, Inputs(), "--out")
    with pytest.raises(OutputError, match="v.sg is a file"):
        StagedDir(spec / "sub", Inputs(), "--out")


def test_a_folder_replaced_whole_leaves_nothing_of_the_last_run_and_lists_what_it_wrote(tmp_path):
    out = tmp_path / "exp"
    with StagedDir(out, whole=True) as d:
        d.write_text("a.yaml", "1")
        d.write_text("p4/x.p4", "2")
    with StagedDir(out, whole=True) as d:
        d.write_text("b.yaml", "3")
    assert _tree(out) == {"b.yaml": b"3", output.MANIFEST: (out / output.MANIFEST).read_bytes()}
    assert "b.yaml" in (out / output.MANIFEST).read_text().splitlines()


def test_a_folder_with_the_users_files_or_an_input_is_never_replaced_whole(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds files mantra did not write there \(notes.txt\)"):
        StagedDir(mine, whole=True)
    spec = tmp_path / "proj" / "site.sg"
    spec.parent.mkdir()
    spec.write_text("x")
    with pytest.raises(OutputError, match="holds the input"):
        StagedDir(tmp_path / "proj", Inputs([spec]), whole=True)
    with pytest.raises(OutputError, match="holds the input"):
        StagedDir(tmp_path, Inputs([spec]), whole=True)  # its parent, too
    assert (mine / "notes.txt").read_text() == "mine" and spec.read_text() == "x"


def test_a_failed_whole_folder_write_leaves_the_old_folder(tmp_path):
    out = tmp_path / "exp"
    with StagedDir(out, whole=True) as d:
        d.write_text("a.yaml", "old")
    before = _tree(out)
    with pytest.raises(RuntimeError):
        with StagedDir(out, whole=True) as d:
            d.write_text("a.yaml", "new")
            raise RuntimeError
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["exp"]

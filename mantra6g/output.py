"""Writing what a command makes without ever losing what the user has.

Every command that writes files goes through this module, so that the same three
promises hold for all of them:

* **An output is never one of the inputs.** The same file reached through a symlink, a
  relative path (``sub/../in.pcap``) or a hard link counts. The command refuses before
  writing anything.
* **An output appears whole or not at all.** A file is written to a temporary file in
  its own directory and renamed over the old one when it is complete, so a failed or
  interrupted run leaves the previous file exactly as it was.
* **A set of outputs appears together.** Files that belong together in one directory
  (``mantra compile``'s device programs) are staged in a temporary directory and moved
  into place only when every one of them is written; one failing device program leaves
  no other device's files behind, and the directory as it was.

Use::

    from mantra6g import output

    inputs = output.Inputs(["site.sg", "in.pcap"])
    out = output.check_file("out.pcap", inputs, "--out")    # refuse early, before the work
    output.write_bytes(out, data, inputs)                   # temp file + rename
    with output.replacing(out, inputs) as tmp:              # for tools that want a path
        wrpcap(str(tmp), packets)

    with output.StagedDir("out/compile", inputs, "--out") as d:
        d.write_text("pdp.p4", text)                        # into the stage
        tool_writing_files_into(d.path)                     # the stage, for tools
    # left without an exception: moved into out/compile; with one: nothing changed

Every problem is an :class:`OutputError` naming the path and what to change. Files are
replaced, never written through: a symlinked output is resolved and the file it points
to is replaced, the link is kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mantra6g.errors import MantraError

PathLike = str | os.PathLike[str]


class OutputError(MantraError):
    """An output the command must not or cannot write; nothing has been written."""


class Inputs:
    """The files a command reads, to recognise them whatever path an output names them by."""

    def __init__(self, paths: Iterable[PathLike | None] = ()):
        self.paths = [Path(p) for p in paths if p is not None]

    def add(self, path: PathLike | None) -> None:
        if path is not None:
            self.paths.append(Path(path))

    def which(self, path: PathLike) -> Path | None:
        """The input that ``path`` is (the same file, however named), or None."""
        for p in self.paths:
            if _same_file(path, p):
                return p
        return None

    def refuse(self, path: PathLike, what: str) -> None:
        """Raise :class:`OutputError` when ``path`` is one of the inputs."""
        same = self.which(path)
        if same is not None:
            named = "" if os.path.normpath(same) == os.path.normpath(path) else f" ({same})"
            raise OutputError(f"{what} {path} is also an input{named}; "
                              "writing it would destroy it: choose another output")


def _same_file(a: PathLike, b: PathLike) -> bool:
    try:
        return os.path.samefile(a, b)  # device and inode: symlinks and hard links included
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------- one file


def check_file(path: PathLike, inputs: Inputs | None = None, what: str = "output") -> Path:
    """Refuse, before any work, a file output that cannot or must not be written: an
    input, a directory, a missing or unwritable directory. Returns the path to write
    (a symlink resolved to the file it points to)."""
    p = Path(path)
    if inputs is not None:
        inputs.refuse(path, what)
    if p.is_dir():
        raise OutputError(f"{what} {path} is a directory; name a file in it")
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    parent = target.parent
    if not parent.exists():
        raise OutputError(f"{what} {path}: directory {parent} does not exist; create it first")
    if not parent.is_dir():
        raise OutputError(f"{what} {path}: {_first_file(parent)} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: cannot write in directory {parent}: permission denied")
    return target


def _first_file(p: Path) -> Path:
    """The first component of ``p`` that exists and is not a directory."""
    for q in reversed((p, *p.parents)):
        if q.exists() and not q.is_dir():
            return q
    return p


@contextmanager
def replacing(path: PathLike, inputs: Inputs | None = None, what: str = "output") -> Iterator[Path]:
    """A temporary file beside ``path`` to write; renamed over ``path`` when the block
    ends without an exception, removed (``path`` untouched) when it raises.

    The temporary name keeps the file's suffix, for tools that pick a format by it."""
    target = check_file(path, inputs, what)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot write in {target.parent}: {_why(exc)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _settle(tmp, target)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{what} {path}: cannot write: {_why(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: PathLike, data: bytes, inputs: Inputs | None = None, what: str = "output") -> Path:
    """Write ``data`` to ``path`` whole or not at all; the path written."""
    with replacing(path, inputs, what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str, inputs: Inputs | None = None, what: str = "output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; the path written."""
    return write_bytes(path, text.encode("utf-8"), inputs, what)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _settle(tmp: Path, target: Path) -> None:
    """Make the finished temporary file durable, with the mode the target has (or a
    new file would get), before it replaces the target."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


# ---------------------------------------------------------------- a directory of files


def check_dir(path: PathLike, inputs: Inputs | None = None, what: str = "output directory") -> Path:
    """Refuse, before any work, an output directory that is a file (an input or not)
    or whose nearest existing ancestor cannot be written. It need not exist yet."""
    p = Path(path)
    if inputs is not None and p.exists() and not p.is_dir():
        inputs.refuse(path, what)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what} {path} is a file, not a directory; name a directory (it is created if missing)")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise OutputError(f"{what} {path}: {_first_file(p)} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: cannot write in {base}: permission denied")
    return p


def _existing_ancestor(p: Path) -> Path:
    for q in (p, *Path(os.path.abspath(p)).parents):
        if q.exists():
            return q
    return Path("/")  # pragma: no cover - the root always exists


MANIFEST = ".mantra-output"  # in a folder written whole: the files mantra put there


def check_replaceable(path: PathLike, inputs: Inputs | None = None, what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that must not be replaced whole: a file, one
    that holds an input, or one that holds files mantra did not write there (anything
    not listed in its :data:`MANIFEST`) — a user's folder is never deleted."""
    p = check_dir(path, inputs, what)
    if not p.is_dir():
        return p
    real = os.path.realpath(p)
    for i in (inputs.paths if inputs else []):
        if os.path.commonpath([real, os.path.realpath(i)]) == real:
            raise OutputError(f"{what} {path} holds the input {i}, and it is replaced whole: choose another folder")
    listed = set()
    if (p / MANIFEST).is_file():
        listed = {ln for ln in (p / MANIFEST).read_text(errors="replace").splitlines() if ln and not ln.startswith("#")}
    strangers = sorted(str(f.relative_to(p)) for f in p.rglob("*") if not f.is_dir() and f.name != MANIFEST
                       and str(f.relative_to(p)) not in listed)
    if strangers:
        shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
        raise OutputError(f"{what} {path} holds files mantra did not write there ({shown}), and it is replaced "
                          "whole: choose a new or empty folder, or move them away")
    return p


class StagedDir:
    """Files that appear in ``path`` together or not at all.

    Inside the ``with`` block, files go to :attr:`path`, a temporary directory: inside
    ``path`` when it exists (hidden, ``.mantra-stage-*``), else beside its nearest
    existing ancestor, so the final moves never cross file systems. When the block ends
    without an exception every staged file is checked (not an input, not in the way of
    a directory) and then moved into ``path``, replacing files of the same name and
    leaving other files there alone; when it raises, the stage is removed and ``path``
    is exactly as it was (not even created).

    With ``whole=True`` the folder is replaced whole instead (``mantra export``: no file
    of an earlier run lingers): the stage sits beside it and is swapped in by two
    renames, with a :data:`MANIFEST` of its files, and a folder holding anything else
    is refused up front (:func:`check_replaceable`).
    """

    def __init__(self, path: PathLike, inputs: Inputs | None = None, what: str = "output directory",
                 whole: bool = False):
        self.final = check_replaceable(path, inputs, what) if whole else check_dir(path, inputs, what)
        self.inputs = inputs or Inputs()
        self.what = what
        self.whole = whole
        self.path: Path = Path()
        self._fresh = False

    def __enter__(self) -> StagedDir:
        self._fresh = not self.final.exists()
        base = self.final if not (self._fresh or self.whole) else _existing_ancestor(self.final.parent)
        try:
            self.path = Path(tempfile.mkdtemp(dir=base, prefix=".mantra-stage-"))
        except OSError as exc:
            raise OutputError(f"{self.what} {self.final}: cannot write in {base}: {_why(exc)}") from None
        return self

    def file(self, name: str) -> Path:
        """Where to write the output ``name`` (a path relative to the directory)."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_text(self, name: str, text: str) -> None:
        self.file(name).write_text(text, encoding="utf-8")

    def write_bytes(self, name: str, data: bytes) -> None:
        self.file(name).write_bytes(data)

    def names(self) -> list[str]:
        """The staged files, relative to the directory, sorted."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if not p.is_dir())

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            self._commit()
        except OSError as e:
            raise OutputError(f"{self.what} {self.final}: cannot write: {_why(e)}") from None
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
        return False

    def _commit(self) -> None:
        names = self.names()
        # Everything that could refuse is checked before the first file moves (a folder
        # replaced whole was checked up front: nothing of it is kept).
        for name in [] if self.whole else names:
            dest = self.final / name
            self.inputs.refuse(dest, "output")
            if dest.is_dir() and not dest.is_symlink():
                raise OutputError(f"output {dest} is a directory; move it away or choose another {self.what}")
            for up in Path(name).parents:
                if (self.final / up).exists() and not (self.final / up).is_dir():
                    raise OutputError(f"output {dest}: {self.final / up} is a file, not a directory")
        for name in names:
            with open(self.path / name, "rb+") as f:
                os.fsync(f.fileno())
        if self.whole:
            (self.path / MANIFEST).write_text("# written by mantra; this folder is replaced whole on the next run\n"
                                              + "".join(n + "\n" for n in names))
        if (self._fresh or self.whole) and not self.final.exists():
            self.final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, 0o777 & ~_umask())  # mkdtemp's 0700 is for the stage only
            self.path.rename(self.final)
            return
        if self.whole:  # swap: the old folder out of the way, the stage in, the old one gone
            old = Path(tempfile.mkdtemp(dir=self.final.parent, prefix=".mantra-old-"))
            try:
                self.final.rename(old / "x")
                try:
                    os.chmod(self.path, 0o777 & ~_umask())
                    self.path.rename(self.final)
                except OSError:
                    (old / "x").rename(self.final)
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
            return
        for name in names:
            dest = self.final / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path / name, dest.stat().st_mode & 0o7777 if dest.exists() else 0o666 & ~_umask())
            os.replace(self.path / name, dest)


__all__ = ["MANIFEST", "Inputs", "OutputError", "StagedDir", "check_dir", "check_file", "check_replaceable", "replacing",
           "write_bytes", "write_text"]

"""Finding and running the P4 tools: p4c (``p4test``, ``p4c-bm2-ss``), BMv2
(``simple_switch``, ``simple_switch_CLI``, ``simple_switch_grpc``) and ``bf-p4c`` (Tofino).

A tool is taken from its environment variable when set, else from ``PATH``:

* ``MANTRA_P4C``: the ``p4c`` driver (or any p4c binary); ``p4test`` and
  ``p4c-bm2-ss`` are looked up beside it first;
* ``MANTRA_SIMPLE_SWITCH``: ``simple_switch``; ``simple_switch_CLI`` and
  ``simple_switch_grpc`` beside it first;
* ``MANTRA_BF_P4C``: ``bf-p4c`` (the Tofino compiler: p4c's open-source back end, or Intel P4 Studio's).

A missing tool is a :class:`ToolNotFound`, a failing one a :class:`ToolFailed` with
its output, both :class:`~mantra6g.errors.MantraError`.
"""

from __future__ import annotations

import json
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mantra6g.errors import MantraError

# tool -> (environment variable, whether the variable names this tool or a sibling)
_ENV = {
    "p4c": "MANTRA_P4C",
    "p4test": "MANTRA_P4C",
    "p4c-bm2-ss": "MANTRA_P4C",
    "simple_switch": "MANTRA_SIMPLE_SWITCH",
    "simple_switch_CLI": "MANTRA_SIMPLE_SWITCH",
    "simple_switch_grpc": "MANTRA_SIMPLE_SWITCH",
    "bf-p4c": "MANTRA_BF_P4C",
}


class ToolNotFound(MantraError):
    """A P4 tool is neither named by its environment variable nor on PATH."""

    def __init__(self, tool: str):
        env = _ENV.get(tool)
        hint = f" or set {env} to its path" if env else ""
        super().__init__(
            f"'{tool}' not found: install it (p4c and BMv2 come from p4lang; bf-p4c from p4c's Tofino back end or "
            f"Intel P4 Studio){hint}"
        )
        self.tool = tool


class ToolFailed(MantraError):
    """A P4 tool ran and reported errors."""

    def __init__(self, cmd: list[str], output: str, returncode: int | None = None):
        super().__init__(f"{' '.join(cmd)} failed:\n{output.strip()}")
        self.cmd = cmd
        self.output = output
        self.returncode = returncode

    @property
    def first_error(self) -> str:
        """The tool's first error line (p4c's ``file(line): [...] error: ...``), past its
        warnings; when no line says ``error``, how it ended and its last line."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        said = (line for line in lines if re.search(r"\berror\b|compiler bug", line, re.IGNORECASE))
        rc = self.returncode
        ended = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}"
        return next(said, f"{ended}, no error line; last: {lines[-1] if lines else '(no output)'}")


def find(tool: str) -> Path | None:
    """The path of ``tool``, or None: its environment variable (or a sibling of the
    binary it names) first, then PATH."""
    env = _ENV.get(tool)
    named = os.environ.get(env) if env else None
    if named:
        p = Path(named)
        if p.name == tool and os.access(p, os.X_OK):
            return p
        sibling = p.parent / tool
        if os.access(sibling, os.X_OK):
            return sibling
    found = shutil.which(tool)
    return Path(found) if found else None


def require(tool: str) -> Path:
    """Like :func:`find`, but a missing tool raises :class:`ToolNotFound`."""
    path = find(tool)
    if path is None:
        raise ToolNotFound(tool)
    return path


def cli_command(tool: str = "simple_switch_CLI") -> list[str]:
    """How to run BMv2's Python CLI: with this interpreter when it has ``thrift`` (the
    project's venv sees Debian's python3-thrift), since the script's ``#!/usr/bin/env
    python3`` may find a Python without it first on ``PATH``."""
    path = require(tool)
    if importlib.util.find_spec("thrift") is not None:
        return [sys.executable, str(path)]
    return [str(path)]


def load_entries(commands: str, thrift: int, switch: subprocess.Popen, log: Path,
                 prefix: Sequence[str] = (), timeout: float = 30) -> None:
    """Give a starting ``simple_switch`` its entries (``simple_switch_CLI`` commands),
    retrying until its Thrift server on port ``thrift`` answers; ``prefix`` runs the CLI
    elsewhere (``ip netns exec NS``). :class:`~mantra6g.errors.MantraError` when the CLI
    refuses an entry, or the switch exits or does not answer within ``timeout`` s (with
    its ``log``)."""
    started = time.monotonic()
    while True:
        done = subprocess.run([*prefix, *cli_command(), "--thrift-port", str(thrift)], input=commands,
                              capture_output=True, text=True)
        text = done.stdout + done.stderr
        if done.returncode == 0 and "Could not connect" not in text:
            if "Error" in text or "Invalid" in text:
                raise MantraError(f"simple_switch_CLI refused the entries:\n{text}")
            return
        if switch.poll() is not None or time.monotonic() - started > timeout:
            raise MantraError(f"simple_switch did not come up:\n{log.read_text()}\n{text}")
        time.sleep(0.05)


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    """Run a tool; its combined output, or :class:`ToolFailed`."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ToolFailed(cmd, output, proc.returncode)
    return output


@dataclass(frozen=True)
class Bmv2Build:
    json: Path  # the BMv2 JSON simple_switch loads
    p4info: Path  # p4c's P4Runtime P4Info (text format), beside Mantra's own <name>.p4info.txtpb
    output: str = ""  # what p4c-bm2-ss printed (its warnings)


def p4test(p4_file: Path) -> str:
    """Front/mid-end check of a P4 program with ``p4test`` (no target back end)."""
    return run([str(require("p4test")), str(p4_file)])


def compile_bmv2(p4_file: Path, out_dir: Path) -> Bmv2Build:
    """Compile a v1model program with ``p4c-bm2-ss`` into BMv2 JSON and P4Info."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = p4_file.stem
    # p4c picks the P4Info format by the suffix (".txt" is deprecated: ".txtpb").
    program_json, p4info = out_dir / f"{stem}.json", out_dir / f"{stem}.p4c.p4info.txtpb"
    output = run([str(require("p4c-bm2-ss")), "--p4runtime-files", str(p4info), "-o", str(program_json), str(p4_file)])
    return Bmv2Build(program_json, p4info, output)


def compile_tofino(p4_file: Path, out_dir: Path) -> Path:
    """Compile a TNA program with ``bf-p4c`` for Tofino 1; the output directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run([str(require("bf-p4c")), "--target", "tofino", "--arch", "tna", "-o", str(out_dir), str(p4_file)])
    return out_dir


def tofino_stages(out_dir: Path, gress: str = "ingress") -> int:
    """The MAU stages bf-p4c used for ``gress``: one more than the highest stage any of
    its tables (gateways included) was placed in, read from ``pipe/context.json``."""
    context = json.loads((out_dir / "pipe" / "context.json").read_text())

    def stages(node) -> Iterator[int]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "stage_number":
                    yield value
                else:
                    yield from stages(value)
        elif isinstance(node, list):
            for value in node:
                yield from stages(value)

    return 1 + max((s for t in context["tables"] if t.get("direction") == gress for s in stages(t)), default=-1)

"""The site's switches as P4 programs: BMv2 nodes running a synthesised fabric.

With ``switch: bmv2`` (or ``bmv2_grpc``) every switch of the site is a BMv2 process
instead of a Linux bridge. Its program is not hand-written: the site's forwarding plan
(which port reaches which host) becomes a service graph with one ``l2_forward`` NF,
compiled like any other graph (DP-IR → v1model P4 → ``p4c-bm2-ss``), and its station
entries are pushed at start

* ``bmv2``: to ``simple_switch`` through ``simple_switch_CLI`` (the emitted
  ``commands.txt``, over Thrift);
* ``bmv2_grpc``: to ``simple_switch_grpc`` over P4Runtime (the emitted ``p4rt.py``
  script, with finsy), which also pushes the pipeline.

BMv2 is not installable on our machines: the tools are looked up (``MANTRA_P4C``,
``MANTRA_SIMPLE_SWITCH`` or ``PATH``, see :mod:`mantra6g.targets.toolchain`) before the
site is built, and a missing one is a clear error. The fabric programs themselves are
checked against the interpreter everywhere (tests/testbed/test_fabric.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mininet.node import Switch

from mantra6g.errors import MantraError
from mantra6g.targets import toolchain

SWITCH_KINDS = ("linuxbridge", "bmv2", "bmv2_grpc")
BMV2_BINARIES = ("simple_switch", "simple_switch_grpc")
START_TIMEOUT_S = 10.0


def fabric_graph(name: str, stations: Mapping[str, int]) -> str:
    """The .sg source of one switch: every frame, forwarded by destination MAC to the port
    of ``stations[mac]``."""
    rules = "\n".join(f"        station {m} port {p}" for m, p in sorted(stations.items(), key=lambda s: (s[1], s[0])))
    return f"""\
tenant operator id 1 {{
    slice fabric {{}}
}}
graph {name} for operator.fabric {{
    nf cls = classifier() {{ match eth.type in 0x0000..0xffff }}
    nf fwd = l2_forward() {{
{rules}
    }}
    cls -> fwd
}}
"""


def fabric_program(name: str, stations: Mapping[str, int]):
    """The DP-IR program of one switch (a :class:`mantra6g.synth.dpir.Program`)."""
    from mantra6g.synth.compose import compile_specs
    from mantra6g.synth.frontend import loads

    (dp,) = compile_specs([loads(fabric_graph(name, stations), f"{name}.sg")])
    return dp.program


@dataclass(frozen=True)
class FabricBuild:
    """One switch's program, compiled for BMv2, with its control-plane files."""

    name: str
    json: Path
    p4info: Path
    commands: Path  # simple_switch_CLI input
    p4rt: Path  # finsy script (P4Runtime)


def require_tools(kind: str) -> None:
    """Raise :class:`~mantra6g.targets.toolchain.ToolNotFound` (or a MantraError) now, before
    anything is built, if a tool the ``kind`` of switch needs is missing."""
    if kind == "linuxbridge":
        return
    toolchain.require("p4c-bm2-ss")
    if kind == "bmv2":
        toolchain.require("simple_switch")
        toolchain.require("simple_switch_CLI")
    else:
        toolchain.require("simple_switch_grpc")


def build_fabric(name: str, stations: Mapping[str, int], workdir: Path) -> FabricBuild:
    """Emit the switch's v1model program and entries (its graph kept beside them), and
    compile it with ``p4c-bm2-ss``."""
    from mantra6g.targets import bmv2
    from mantra6g.targets.p4 import ident

    program = fabric_program(name, stations)
    out = workdir / f"fabric-{name}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.sg").write_text(fabric_graph(name, stations))
    for fname, text in bmv2.emit(program).files.items():
        (out / fname).write_text(text)
    stem = ident(program.name)
    built = toolchain.compile_bmv2(out / f"{stem}.p4", out)
    return FabricBuild(name, built.json, built.p4info, out / f"{stem}.commands.txt", out / f"{stem}.p4rt.py")


_PORTS_GIVEN: set[int] = set()


def _free_port() -> int:
    """A free local TCP port not handed out before in this process (the switches bind
    theirs only when they start, so the kernel could offer the same one twice)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def bmv2_command(binary: Path, ports: Mapping[int, str], device_id: int, thrift_port: int,
                 json: Path | None, grpc_port: int | None = None) -> list[str]:
    """The BMv2 command line: one ``-i PORT@IFACE`` per data port, the Thrift port (for
    ``simple_switch_CLI``), and either the JSON to run or, for ``simple_switch_grpc``,
    ``--no-p4`` and the P4Runtime server's address (the pipeline comes over P4Runtime)."""
    cmd = [str(binary)]
    for port, iface in sorted(ports.items()):
        cmd += ["-i", f"{port}@{iface}"]
    cmd += ["--device-id", str(device_id), "--thrift-port", str(thrift_port)]
    if grpc_port is not None:
        return cmd + ["--no-p4", "--", "--grpc-server-addr", f"127.0.0.1:{grpc_port}"]
    return cmd + [str(json)]


class Bmv2Switch(Switch):
    """A Mininet switch that is a BMv2 process in the root namespace, running a
    :class:`FabricBuild`; its ports are the Mininet port numbers of its interfaces."""

    def __init__(self, name, build: FabricBuild, grpc: bool = False, device_id: int = 0, **params):
        super().__init__(name, **params)
        self.build, self.grpc, self.device_id = build, grpc, device_id
        self.thrift_port = _free_port()
        self.grpc_port = _free_port() if grpc else None
        self.log = build.json.parent / "bmv2.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        ports = {port: intf.name for port, intf in self.intfs.items() if intf.name.startswith(self.name)}
        binary = toolchain.require("simple_switch_grpc" if self.grpc else "simple_switch")
        return bmv2_command(binary, ports, self.device_id, self.thrift_port,
                            None if self.grpc else self.build.json, self.grpc_port)

    def start(self, _controllers) -> None:
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        port = self.grpc_port or self.thrift_port
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise MantraError(f"BMv2 switch {self.name} did not start: {self._log_tail()}")
            time.sleep(0.1)
        self._push_entries()

    def _push_entries(self) -> None:
        b = self.build
        if self.grpc:
            cmd = [sys.executable, str(b.p4rt), "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
                   "--device-id", str(self.device_id), "--p4info", str(b.p4info), "--json", str(b.json)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            failed = r.returncode != 0
        else:
            cmd = [*toolchain.cli_command(), "--thrift-port", str(self.thrift_port)]
            with b.commands.open() as commands:
                r = subprocess.run(cmd, stdin=commands, capture_output=True, text=True, timeout=60)
            # the CLI exits 0 and reports a bad command on its output
            failed = r.returncode != 0 or "Error" in r.stdout or "Invalid" in r.stdout
        if failed:
            raise MantraError(f"BMv2 switch {self.name}: installing entries failed ({' '.join(cmd)}):\n"
                              f"{(r.stdout + r.stderr).strip()}")

    def _log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return "\n".join(lines[-10:]) or "no output"

    def stop(self, deleteIntfs: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        super().stop(deleteIntfs)


def kill_stale_switches(prefix: str) -> None:
    """BMv2 processes a crashed run with ``prefix`` left behind (they run in the root
    namespace: the namespace clean-up does not reach them), found by their ports."""
    mark = f"@{prefix}-"
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name in BMV2_BINARIES \
                and any(mark in a.decode(errors="replace") for a in argv):
            try:
                os.kill(int(d.name), signal.SIGKILL)
            except ProcessLookupError:
                pass

"""BMv2 as a target of the reference model: a case's program compiled by p4c-bm2-ss and
run on ``simple_switch --use-files`` (interface N reads ``pN_in.pcap`` and writes
``pN_out.pcap``), its entries installed with ``simple_switch_CLI`` or, into
``simple_switch_grpc``, over P4Runtime with finsy (``mantra6g.targets.p4runtime``).

    found = judge(cases, workdir)    # [] when BMv2 agrees with the reference model

BMv2 reads its input pcaps merged by timestamp, one frame after another, so the
frames go in in the case's order (their ingress ports as the model's clock gives them);
what is compared is, per egress port, the sequence of frames the model sends there
against the sequence BMv2 writes there, and the first difference names the input the
model made the frame from. BMv2's clock is the host's, so programs whose output depends
on time (meters, timestamps) are not judged here (:func:`timeless`); the interpreter and
XDP are judged on them with the model's clock (tests/oracle/test_targets.py).
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


from mantra6g.synth.dpir import Forward, MeterExec, Program, ReadTimestamp
from mantra6g.targets import bmv2, toolchain
from mantra6g.targets.p4 import ident, walk
from tests.oracle.cases import Case, _show, clock, expected

BMV2_TOOLS = ("p4c-bm2-ss", "simple_switch", "simple_switch_CLI")
PORTS = range(16)  # interfaces created: every port the oracle's graphs forward to


def missing() -> str | None:
    """Why BMv2 cannot be judged here, or None."""
    absent = [t for t in BMV2_TOOLS if toolchain.find(t) is None]
    if absent:
        return f"{', '.join(absent)} not found (p4c and BMv2 are not installable here); set MANTRA_P4C and MANTRA_SIMPLE_SWITCH"
    return None


def timeless(p: Program) -> bool:
    """Whether ``p``'s output is independent of the clock (BMv2 cannot take the model's)."""
    return not any(isinstance(s, (MeterExec, ReadTimestamp)) for s in walk(p))


def _ports(p: Program, case: Case) -> list[int]:
    ports = set(PORTS) | {port for outputs, _ in expected(case) for port, _ in outputs}
    ports |= {s.port.value for s in walk(p) if isinstance(s, Forward) and hasattr(s.port, "value")}
    return sorted(ports)


@dataclass(frozen=True)
class Built:
    case: Case
    work: Path
    json: Path
    p4info: Path
    commands: str  # simple_switch_CLI input: the queue depth, and the entries unless over P4Runtime
    p4runtime: bool  # entries and meter rates through finsy (targets/p4runtime.py) into simple_switch_grpc


def build(case: Case, work: Path, p4runtime: bool = False) -> Built:
    """The case's program emitted for v1model and compiled by p4c-bm2-ss into ``work``."""
    p = case.program
    work.mkdir(parents=True, exist_ok=True)
    out = bmv2.emit(p)
    for name, text in out.files.items():
        (work / name).write_text(text) if isinstance(text, str) else (work / name).write_bytes(text)
    stem = ident(p.name)
    compiled = toolchain.compile_bmv2(work / f"{stem}.p4", work)
    # Queues deep enough for the whole case: BMv2 drops what a full egress queue (64
    # packets by default) cannot take, which a loaded machine's slow egress threads hit.
    commands = f"set_queue_depth {len(case.frames) + 1}\n"
    if not p4runtime:
        commands += out.files[f"{stem}.commands.txt"]
    return Built(case, work, compiled.json, compiled.p4info, commands, p4runtime)


def run_built(b: Built) -> dict[int, list[bytes]]:
    """Every frame BMv2 writes, per egress port in order, after the case's frames."""
    case, work = b.case, b.work
    ports = _ports(case.program, case)
    by_port: dict[int, list[tuple[int, bytes]]] = {port: [] for port in ports}
    for i, (_, data) in enumerate(case.frames):
        by_port[clock(i)[0]].append((i, data))
    want = sum(len(outputs) for outputs, _ in expected(case))
    wait = 1
    while True:  # entries must be in before the switch starts reading (after ``wait`` s)
        for port in ports:
            _write(work / f"p{port}_in.pcap", by_port[port])
            (work / f"p{port}_out.pcap").unlink(missing_ok=True)
        got, late = _switch(b, ports, wait, want)
        if not late:
            return got
        wait *= 2


def _write(f: Path, frames: list[tuple[int, bytes]]) -> None:
    """A pcap of ``frames`` (index, bytes): BMv2 reads its inputs merged by timestamp (as
    fast as it can: --use-files does not replay in real time), so frame i is stamped
    i × 50 µs and the frames go in in the case's order."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, data in frames:
        us = 1_000_000 + i * 50
        out.append(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(data), len(data)) + data)
    f.write_bytes(b"".join(out))


def judge(cases: list[Case], work: Path, p4runtime: bool = False) -> list[str]:
    """:func:`mismatches` over ``cases``; p4c compiles the next cases while BMv2 runs one.
    ``p4runtime``: entries and meter rates go in over P4Runtime (finsy) instead of the CLI."""
    found = []
    with ThreadPoolExecutor(2) as pool:
        builds = [pool.submit(build, c, work / f"case{k}", p4runtime) for k, c in enumerate(cases)]
        for f in builds:
            found += mismatches(f.result())
    return found


def _switch(b: Built, ports: list[int], wait: int, want: int):
    work, commands = b.work, b.commands
    thrift, grpc = 20000 + os.getpid() % 20000, 40000 + os.getpid() % 20000
    binary = "simple_switch_grpc" if b.p4runtime else "simple_switch"
    cmd = [str(toolchain.require(binary)), "--use-files", str(wait), "--thrift-port", str(thrift),
           "--device-id", str(os.getpid() % 1000)]
    for port in ports:
        cmd += ["-i", f"{port}@p{port}"]
    cmd.append(str(b.json))
    if b.p4runtime:
        cmd += ["--", "--grpc-server-addr", f"127.0.0.1:{grpc}"]
    started = time.monotonic()
    log = open(work / "switch.log", "w")
    switch = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    try:
        toolchain.load_entries(commands, thrift, switch, work / "switch.log")
        if b.p4runtime:
            from mantra6g.targets import p4runtime

            p4runtime.deploy(f"127.0.0.1:{grpc}", b.case.program, b.p4info, b.json, device_id=os.getpid() % 1000)
        if time.monotonic() - started >= wait:
            return {}, True
        got: dict[int, list[bytes]] = {}
        last, stable = -1, 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until every expected frame is out, or none comes for 2 s
            time.sleep(0.2)
            got = {port: _read(work / f"p{port}_out.pcap") for port in ports}
            n = sum(map(len, got.values()))
            stable = stable + 1 if n == last else 0
            last = n
            if time.monotonic() - started > wait and (n >= want and stable >= 2 or stable >= 10):
                break
        return got, False
    finally:
        switch.terminate()
        switch.wait(timeout=10)
        log.close()


def _read(f: Path) -> list[bytes]:
    """The frames of a pcap BMv2 is writing (flushed per frame), without dissecting them."""
    if not f.exists() or f.stat().st_size <= 24:
        return []
    data = f.read_bytes()
    out, at = [], 24
    while at + 16 <= len(data):
        caplen = int.from_bytes(data[at + 8:at + 12], "little")
        if at + 16 + caplen > len(data):
            break  # a record being written
        out.append(data[at + 16:at + 16 + caplen])
        at += 16 + caplen
    return out


def mismatches(b: Built) -> list[str]:
    """The frames on which BMv2 and the reference model disagree: per egress port, the
    model's frames in order against BMv2's (see the module's doc)."""
    case, got = b.case, run_built(b)
    want: dict[int, list[tuple[int, bytes]]] = {}
    for i, (outputs, host) in enumerate(expected(case)):
        assert host is None, "a P4 program has no host stack: the oracle's graphs drop what they do not claim"
        for port, data in outputs:
            want.setdefault(port, []).append((i, data))
    found = []
    for port in sorted(set(want) | set(got)):
        w, g = want.get(port, []), got.get(port, [])
        for k in range(max(len(w), len(g))):
            if k < len(w) and k < len(g) and w[k][1] == g[k]:
                continue
            if k < len(w):
                i = w[k][0]
                seen = g[k].hex() if k < len(g) else "nothing"
                found.append(f"{case.name}, frame {i} ({case.frames[i][0]}), port {clock(i)[0]}, the {k}th on port {port}:"
                             f"\n    {case.frames[i][1].hex()}\n    reference {_show(expected(case)[i])}\n    bmv2      {seen}")
            else:
                found.append(f"{case.name}: BMv2 sent more on port {port} than the reference: {g[k].hex()}")
            break  # the rest of the port's sequence is shifted: the first difference says it
    return found

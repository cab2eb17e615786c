"""From ``.sg`` files to artefacts on disk (``mantra compile``) and through the
interpreter (``mantra run``)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from mantra6g import output
from mantra6g.errors import MantraError
from mantra6g.pcap import read_pcap, write_pcap
from mantra6g.synth import dpir, frontend
from mantra6g.synth.compose import DeviceProgram, compile_specs
from mantra6g.synth.interp import State, run

TARGETS = ("bmv2", "tofino", "xdp", "dpir")
# What a device class is compiled for when no --target names it: a programmable switch
# runs P4 (BMv2, the one that runs anywhere), a SmartNIC or a server runs XDP.
DEFAULT_TARGETS = {"pdp": "bmv2", "smartnic": "xdp", "host": "xdp", "any": "bmv2"}


def device_programs(files: Sequence[str], device: str | None = None, unclaimed: str = "drop",
                    tables: str = "declared") -> list[DeviceProgram]:
    """The site's device programs (all, or the one named ``device``); ``unclaimed``: what
    they do with frames no classifier claims (``drop``, or ``pass`` to the host);
    ``tables``: which tables are updatable at run time
    (:func:`mantra6g.synth.tables.with_tables`)."""
    from mantra6g.synth.tables import with_tables

    chosen = choose(compile_specs(frontend.load(files), unclaimed), device)
    return [replace(dp, program=with_tables(dp.program, tables)) for dp in chosen]


def choose(programs: list[DeviceProgram], device: str | None) -> list[DeviceProgram]:
    """All of a site's device programs, or the one named ``device``."""
    if not programs:
        raise MantraError("the files declare no graphs: nothing to compile")
    if device is None:
        return programs
    chosen = [p for p in programs if p.name == device]
    if not chosen:
        names = ", ".join(p.name for p in programs)
        raise MantraError(f"no device program '{device}'; this site has: {names}")
    return chosen


def _emitter(target: str) -> Callable:
    if target == "bmv2":
        from mantra6g.targets import bmv2

        return bmv2.emit
    if target == "tofino":
        from mantra6g.targets import tofino

        return tofino.emit
    return None


def targets_of(programs: Sequence[DeviceProgram], choices: str | Sequence[str]) -> dict[str, str]:
    """The target of each device program (by name) from ``--target`` values: ``TARGET``
    for every device, ``DEVICE=TARGET`` for the devices of a class (``smartnic``, as the
    graphs' ``place`` names it) or one device program (``smartnic_factory_edge``); the
    more specific wins, and a device no value names gets its class's default
    (:data:`DEFAULT_TARGETS`). An unknown device or target, or two targets for the same
    device, are refused with what to write."""
    default, by_device = None, {}
    for choice in [choices] if isinstance(choices, str) else choices:
        device, eq, target = choice.rpartition("=")
        if target not in TARGETS:
            raise MantraError(f"--target {choice}: unknown target '{target}'; choose one of {', '.join(TARGETS)}")
        if not eq:
            if default not in (None, target):
                raise MantraError(f"--target: two defaults ({default}, {target}); give one, and DEVICE=TARGET for the others")
            default = target
            continue
        known = {dp.device for dp in programs} | {dp.name for dp in programs}
        if device not in known:
            raise MantraError(f"--target {choice}: no device '{device}' on this site; it has: {', '.join(sorted(known))}")
        if by_device.get(device, target) != target:
            raise MantraError(f"--target: two targets for '{device}' ({by_device[device]}, {target})")
        by_device[device] = target
    out = {}
    for dp in programs:
        out[dp.name] = by_device.get(dp.name) or by_device.get(dp.device) or default or DEFAULT_TARGETS[dp.device]
    return out


def compile_command(files: Sequence[str], target: str | Sequence[str], out_dir: str, device: str | None, out: TextIO,
                    unclaimed: str = "drop", tables: str = "declared") -> int:
    """Write every device program's artefacts for its target (:func:`targets_of`) into
    ``out_dir`` and print what was made. The DP-IR (JSON and text) is always written
    beside them. The files of all device programs appear together: if one program
    fails, ``out_dir`` is left as it was (:class:`~mantra6g.output.StagedDir`).
    ``tables`` (XDP only): which tables stay updatable maps."""
    inputs = output.Inputs(files)
    output.check_dir(out_dir, inputs, "--out")
    programs = device_programs(files, device, unclaimed, tables)
    targets = targets_of(programs, target)
    if tables != "declared" and set(targets.values()) != {"xdp"}:
        raise MantraError(f"--tables {tables} is for --target xdp (the P4 targets keep the tables as declared)")
    with output.StagedDir(out_dir, inputs, "--out") as stage:
        made = _emit_all(programs, targets, stage, Path(out_dir))
    out.write(made)  # once every file is in place
    return 0


def _emit_all(programs: Sequence[DeviceProgram], targets: dict[str, str], stage: output.StagedDir,
              directory: Path) -> str:
    """Each program's files for its target, written into ``stage``; what was made, as
    ``mantra compile`` reports it (naming ``directory``, where the files end up)."""
    out = io.StringIO()
    for dp in programs:
        target = targets[dp.name]
        emit = _emitter(target)
        start = time.perf_counter()
        files_out = {
            f"{dp.name}.dpir.json": dp.program.to_json() + "\n",
            f"{dp.name}.dpir.txt": dpir.pretty(dp.program),
        }
        summary = None
        made: list[str] = []  # files a tool wrote itself (the XDP object)
        if target == "xdp":
            from mantra6g.targets import xdp

            try:
                written, built = xdp.compile_to(dp.program, stage.path)
            except MantraError as exc:
                raise MantraError(f"device program '{dp.name}' (xdp): {exc}{dp.origin_of(str(exc))}") from None
            made = list(written) + [built.obj_file.name]
            summary = built
        elif emit is not None:
            try:
                result = emit(dp.program)
            except MantraError as exc:
                raise MantraError(f"device program '{dp.name}' ({target}): {exc}{dp.origin_of(str(exc))}") from None
            files_out.update(result.files)
            summary = result.summary
        elapsed = time.perf_counter() - start
        for name, text in files_out.items():
            stage.write_text(name, text)
        where = dp.device + (f" site {dp.site}" if dp.site else "")
        out.write(f"{dp.name} ({where}): {', '.join(dp.nfs)}\n")
        if summary is not None:
            out.write("\n".join("  " + ln for ln in summary.render().splitlines()) + "\n")
        else:
            p = dp.program
            out.write(
                f"  dpir: {len(p.tables)} tables, {sum(len(t.entries) for t in p.tables)} entries, "
                f"{len(p.registers)} registers, {len(p.counters)} counters, {len(p.meters)} meters\n"
            )
        out.write(f"  wrote {', '.join(sorted([*files_out, *made]))} to {directory}/ in {elapsed * 1e3:.0f} ms\n")
    return out.getvalue()


def run_command(
    files: Sequence[str],
    pcap_in: str,
    pcap_out: str | None,
    device: str | None,
    port: int,
    as_json: bool,
    out: TextIO,
    unclaimed: str = "drop",
) -> int:
    """Push a pcap's packets through a device program in the interpreter; write the
    forwarded ones to a pcap and print where each packet went."""
    if not 0 <= port < 512:
        raise MantraError(f"--port {port}: a port is 0 to 511")
    if Path(pcap_in).name in ("", ".."):  # '', '.', 'dir/..': no file to read or to name the output after
        raise MantraError(f"--pcap {pcap_in!r}: name a capture file (.pcap or .pcapng)")
    inputs = output.Inputs([*files, pcap_in])
    target = pcap_out or str(Path(pcap_in).with_suffix("")) + ".out.pcap"
    output.check_file(target, inputs, "--out")  # before the work, not after it
    programs = device_programs(files, device, unclaimed)
    if len(programs) > 1:
        names = ", ".join(p.name for p in programs)
        raise MantraError(f"the site has several device programs ({names}); choose one with --device")
    program = programs[0].program
    state = State.initial(program)
    forwarded: list[tuple[int, bytes]] = []
    records = []
    for pkt in read_pcap(pcap_in):
        i = pkt.number
        result = run(program, pkt.data, port, pkt.time_ns, state)
        if result.to_host is not None:
            records.append({"packet": i, "in_port": port, "to_host": True, "bytes": len(result.to_host)})
            continue
        if result.dropped:
            reason = result.trace[-1] if result.trace else "dropped"
            records.append({"packet": i, "in_port": port, "dropped": True, "reason": reason})
            continue
        for out_port, data in result.outputs:
            forwarded.append((pkt.time_ns, data))
            records.append({"packet": i, "in_port": port, "out_port": out_port, "bytes": len(data)})
    write_pcap(target, forwarded, inputs, "--out")
    if as_json:
        out.write(json.dumps({"program": program.name, "output": target, "packets": records}, indent=2) + "\n")
        return 0
    for r in records:
        if r.get("to_host"):
            out.write(f"#{r['packet']}: port {r['in_port']} -> the host ({r['bytes']} bytes)\n")
        elif r.get("dropped"):
            out.write(f"#{r['packet']}: port {r['in_port']} -> dropped ({r['reason']})\n")
        else:
            out.write(f"#{r['packet']}: port {r['in_port']} -> port {r['out_port']} ({r['bytes']} bytes)\n")
    dropped = sum(1 for r in records if r.get("dropped"))
    host = sum(1 for r in records if r.get("to_host"))
    to_host = f", {host} to the host" if host else ""
    out.write(f"{len(records) - dropped - host} forwarded, {dropped} dropped{to_host}; wrote {target}\n")
    return 0


def deploy_command(
    files: Sequence[str],
    iface: str,
    netns: str | None,
    device: str | None,
    ports: Sequence[str],
    detach: bool,
    out: TextIO,
    unclaimed: str = "pass",
    tables: str = "declared",
) -> int:
    """``mantra deploy``: compile to XDP and attach to an interface, or detach. Frames no
    classifier claims go on to the host's stack (``unclaimed="pass"``, so ARP, ND and the
    host's own traffic keep working) or are dropped."""
    from mantra6g.targets import xdp

    if detach:
        out.write(xdp.undeploy(iface, netns) + "\n")
        return 0
    if os.geteuid() != 0:
        raise MantraError("deploying XDP programs needs root (CAP_BPF and CAP_NET_ADMIN)")
    programs = device_programs(files, device, unclaimed, tables)
    if len(programs) > 1:
        names = ", ".join(p.name for p in programs)
        raise MantraError(f"the site has several device programs ({names}); choose one with --device")
    port_map = _port_map(ports, iface)
    program = programs[0].program
    with tempfile.TemporaryDirectory() as tmp:
        _, built = xdp.compile_to(program, Path(tmp))
        out.write(built.render() + "\n")
        out.write(xdp.deploy(program, built.obj_file, iface, netns, port_map) + "\n")
    return 0


def p4runtime_deploy_command(files: Sequence[str], address: str, device: str | None, device_id: int, out_dir: str,
                             out: TextIO, unclaimed: str = "drop") -> int:
    """``mantra deploy --target bmv2 --p4runtime ADDR``: compile the device program for
    v1model (p4c-bm2-ss), then bring the P4Runtime switch at ``address`` to it —
    the pipeline loaded only if the switch runs another one, the runtime entries
    changed in place (:func:`mantra6g.targets.p4runtime.deploy`). The build is kept in
    ``out_dir`` (stable paths, so the same program gives the same pipeline cookie)."""
    from mantra6g.targets import bmv2, p4runtime, toolchain
    from mantra6g.targets.p4 import ident

    programs = device_programs(files, device, unclaimed)
    if len(programs) > 1:
        names = ", ".join(p.name for p in programs)
        raise MantraError(f"the site has several device programs ({names}); choose one with --device")
    dp = programs[0]
    try:
        emitted = bmv2.emit(dp.program)
    except MantraError as exc:
        raise MantraError(f"device program '{dp.name}' (bmv2): {exc}{dp.origin_of(str(exc))}") from None
    directory = Path(out_dir) / dp.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MantraError(f"--out {out_dir}: {exc.strerror}") from None
    for name, text in emitted.files.items():
        (directory / name).write_text(text)
    stem = ident(dp.program.name)
    built = toolchain.compile_bmv2(directory / f"{stem}.p4", directory)
    done = p4runtime.deploy(address, dp.program, directory / f"{stem}.p4info.txtpb", built.json, device_id)
    out.write(f"{dp.name} -> P4Runtime {address} (device {device_id}): {done.render()}\n")
    return 0


def _port_map(specs: Sequence[str], iface: str) -> dict[int, str]:
    """``--port 1=veth1`` flags as {1: "veth1"}; without any, the interface is port 0."""
    if not specs:
        return {0: iface}
    ports: dict[int, str] = {}
    for spec in specs:
        number, sep, name = spec.partition("=")
        if not sep or not number.isdigit() or not name or int(number) > dpir.MAX_PORT:
            raise MantraError(f"--port {spec}: write PORT=INTERFACE with PORT 0..{dpir.MAX_PORT}, e.g. --port 1=eth1")
        ports[int(number)] = name
    if iface not in ports.values():
        raise MantraError(f"--iface {iface} has no port number: add --port N={iface}")
    return ports

"""XDP/eBPF backend: one ``SEC("xdp")`` C program per DP-IR program.

The generated C follows DP-IR's semantics (``synth/interp.py`` is the reference) and is
specialised on what the compiler knows (``docs/xdp.md`` says what and why):

* **const tables are code** (:func:`table_form`): a table whose entries are fixed at
  compile time becomes a decision tree (:func:`mantra6g.synth.tables.decision_tree`), or
  a constant array in read-only data when it is one dense exact key (a Maglev slot
  table); tables updatable at run time stay BPF maps (a hash map per exact table, an LPM
  trie per longest-prefix table, an array scanned in priority order per ternary/range
  table), and so do registers (arrays), counters (per-CPU arrays) and meters (token
  buckets). Branches the header layouts decide (:mod:`mantra6g.synth.layout`) are not
  printed;
* **the packet is read and written in place** (direct packet access, bounds checks the
  verifier follows): the parser loads the fields the program uses into locals, writes
  go straight into the bytes of headers that did not move, and only pushed, popped or
  moved headers are deparsed (``bpf_xdp_adjust_head`` by the size difference; the C
  printer is :mod:`mantra6g.targets.xdp_emit`);
* **verdict**: dropped or never forwarded → ``XDP_DROP`` (``XDP_PASS`` to the kernel
  after ``ToHost``); out of the ingress port → ``XDP_TX``; another port →
  ``bpf_redirect_map`` through the ``mantra_ports`` devmap (DP-IR port → ifindex, filled
  at deploy). The ingress port comes from ``mantra_ingress`` (the attached interface)
  or else ``mantra_port_of`` (ifindex → DP-IR port), read only where it is needed, and
  so is the clock (``bpf_ktime_get_ns``).

With ``test_hooks=True`` the program takes its clock and ingress port from the
``mantra_test`` map and records the egress port there instead of redirecting, so that
``BPF_PROG_TEST_RUN`` can replay exactly what the interpreter was given.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mantra6g.errors import MantraError
from mantra6g.synth import dpir
from mantra6g.synth.dpir import Lpm, Program, Range, Table, Ternary
from mantra6g.synth.dpir_check import validate
from mantra6g.synth.interp import TOKEN_SCALE
from mantra6g.synth.motion import sink
from mantra6g.targets.xdp_emit import (
    Printer,
    XdpBackendError,
    crc32_table,
    field_parts,
    key_width,
    state_maps,
    table_nargs,
)

MAX_MAPS = 64  # the kernel's limit of maps one BPF program may use (MAX_USED_MAPS)
FIXED_MAPS = 6  # ports, port_of, ingress, scratch, test hooks, .rodata (const tables, CRC)
ARRAY_BYTES = 1 << 19  # largest table held as an array indexed by its key (read-only data, or a map)
MAP_FORMS = ("map", "indexed")  # table forms kept in BPF maps (table_form)


@dataclass(frozen=True)
class XdpOutput:
    files: dict[str, str]  # "<name>.c", "<name>.maps.json"
    maps: tuple[str, ...]
    code_tables: tuple[str, ...] = ()  # tables compiled into the program (no map)


# ---------------------------------------------------------------- specialisation


@functools.lru_cache(maxsize=256)
def table_form(p: Program, t: Table) -> str:
    """How the XDP program holds table ``t``: ``map`` (updatable at run time, or a const
    table too large for code), ``indexed`` (updatable, one exact key narrow enough
    that a slot per value fits :data:`ARRAY_BYTES`: a BPF array indexed by the key, which the kernel's
    verifier inlines, where a hash map hashes the key and walks a bucket: the load
    balancer's Maglev slot and backend id), ``array`` (a const exact table with dense
    keys, in read-only data: one load) or ``tree`` (a const table compiled into a
    decision tree, :func:`mantra6g.synth.tables.decision_tree`)."""
    from mantra6g.synth.tables import decision_tree, dense

    if not t.const:
        one_exact = len(t.keys) == 1 and t.keys[0].match == "exact"
        small = one_exact and (1 << key_width(p, t.keys[0].field)) * (8 + 8 * table_nargs(p, t)) <= ARRAY_BYTES
        return "indexed" if small else "map"
    if dense(p, t) and (max(e.matches[0].value for e in t.entries) + 1) * (8 + 8 * table_nargs(p, t)) <= ARRAY_BYTES:
        return "array"
    return "tree" if decision_tree(p, t) is not None else "map"


def code_tables(p: Program) -> tuple[str, ...]:
    """Tables of ``p`` that the XDP program holds as code or constant data (no map to
    fill or update)."""
    return tuple(t.name for t in p.tables if table_form(p, t) not in MAP_FORMS)


def map_tables(p: Program) -> tuple[Table, ...]:
    """Tables of ``p`` that the XDP program keeps in BPF maps (``tbl_<name>``)."""
    return tuple(t for t in p.tables if table_form(p, t) in MAP_FORMS)


# ---------------------------------------------------------------- C


def emit_c(p: Program, test_hooks: bool = False) -> str:
    """The C source of ``p`` as an XDP program."""
    validate(p)
    p = sink(p)  # what only one branch needs, computed there (synth/motion.py)
    maps = len(map_tables(p)) + len(p.registers) + len(p.counters) + len(p.meters) + FIXED_MAPS
    if maps > MAX_MAPS:
        raise XdpBackendError(
            f"program '{p.name}' needs {maps} BPF maps (one per table kept as a map, register, counter and "
            f"meter, plus {FIXED_MAPS}); the kernel allows {MAX_MAPS} per program: place fewer chains on this device"
        )
    pr = Printer(p, test_hooks, {t.name: table_form(p, t) for t in p.tables})
    start = pr.tracker.start()
    if start:
        pr.layout_id(start[0].content)
    control, end = pr.control(start)
    deparse = pr.deparse(end)
    parser = pr.parser()
    control = pr.reloaded(control)

    locals_ = []
    for h in p.headers:
        names = sorted(pr.use.declared[h.name])
        parts = [part.cname for n in names for part in field_parts(p, h.name, n)]
        if parts:
            locals_.append(f"__u64 {' = 0, '.join(parts)} = 0; /* {h.name} */")
    reached = pr.reached_offsets()
    if reached:
        locals_.append("__u32 " + ", ".join(f"o_{h} = 0" for h in reached) + "; /* where headers start */")
        locals_.append("void " + ", ".join(f"*p_{h} = 0" for h in reached) + "; /* and their bytes */")
    if p.metadata:
        locals_.append("__u64 " + ", ".join(f"m_{m.name} = 0" for m in p.metadata) + "; /* metadata */")
    locals_.append("__u64 std_egress_port = 0, std_drop = 0, std_pkt_len = (data_end - data) & 0xffff;")
    locals_.append("__u64 forwarded = 0, to_host = 0, to_ingress = 0;")
    if pr.use.layout_changes:
        locals_.append("__u32 layout = 0; /* which header layout the packet has (see the deparse) */")
    if not test_hooks:
        locals_.append("__u64 now = 0; /* the clock, read on first use */")

    kept = [t.name for t in map_tables(p)]
    inlined = code_tables(p)
    summary = [f"Tables compiled into code: {', '.join(inlined) or 'none'}.",
               f"Tables in maps (updatable at run time): {', '.join(kept) or 'none'}."]
    template = resources.files("mantra6g.ebpf").joinpath("xdp_program.c.j2").read_text()
    import jinja2

    def block(lines: list[str]) -> str:
        # parser states are labels, at the left margin
        return "\n".join(x if re.fullmatch(r"st_\w+:", x) else "    " + x for x in lines)

    return jinja2.Template(template, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True).render(
        name=p.name,
        doc=p.doc,
        summary=summary,
        test_hooks=test_hooks,
        header_bits="\n".join(f"/* {i:2}: {h.name} ({h.type}, {h.header_type.width // 8} bytes) */"
                              for i, h in enumerate(p.headers)),
        state_maps="\n".join(state_maps(p)),
        tables_decl="\n".join(x for t in p.tables for x in pr.table_decl(t) + [""]).rstrip(),
        crc_table="\n".join(crc32_table(pr.crc_bytes)) if pr.crc_bytes else "",
        locals=block(locals_),
        parser=block(parser),
        control=block(control),
        deparse=block(deparse) if deparse else "",
        forget=block(pr.forget()),
        moving=max(1, len(reached)),
        tree_keys=max([1] + [sum(-(-key_width(p, k.field) // 64) for k in t.keys) for t in p.tables
                             if table_form(p, t) == "tree"]),
    )


# ---------------------------------------------------------------- map entries


def _encode_action(t: Table, action: dpir.ActionCall, p: Program, first: int) -> bytes:
    """``{__u32 first; __u32 action; __u64 args[n]}``: ``first`` is the value struct's
    padding, or the scan entry's ``used`` flag."""
    nargs = max([len(p.action(a).params) for a in t.actions] + [1])
    args = list(action.args) + [0] * (nargs - len(action.args))
    return (
        first.to_bytes(4, "little")
        + t.actions.index(action.action).to_bytes(4, "little")
        + b"".join(a.to_bytes(8, "little") for a in args)
    )


def table_entries(p: Program, t: Table, entries=None) -> list[tuple[bytes, bytes]]:
    """(key, value) byte pairs for the table's BPF map, as the generated C lays them out."""
    entries = t.entries if entries is None else entries
    widths = [key_width(p, k.field) for k in t.keys]
    kinds = {k.match for k in t.keys}
    out: list[tuple[bytes, bytes]] = []
    if table_form(p, t) == "indexed":
        seen = set()
        for e in entries:  # the key is the slot; pad = 1 marks an entry (a zeroed slot is a miss)
            if e.matches[0].value not in seen:
                seen.add(e.matches[0].value)
                out.append((e.matches[0].value.to_bytes(4, "little"), _encode_action(t, e.action, p, 1)))
        return out
    if kinds <= {"exact"}:
        seen = set()
        for e in entries:  # the first entry with a key wins, as in the interpreter
            key = b"".join(m.value.to_bytes((w + 7) // 8, "big") for m, w in zip(e.matches, widths)) or b"\0"
            if key not in seen:
                seen.add(key)
                out.append((key, _encode_action(t, e.action, p, 0)))
        return out
    if kinds == {"lpm"} and len(t.keys) == 1:
        w = widths[0]
        for e in entries:
            m = e.matches[0]
            key = m.prefix_len.to_bytes(4, "little") + m.value.to_bytes(w // 8, "big")
            out.append((key, _encode_action(t, e.action, p, 0)))
        return out
    for i, e in enumerate(dpir.ranked(t, tuple(entries))):
        vs, ms = [], []
        for m, w, k in zip(e.matches, widths, t.keys):
            top = (1 << w) - 1
            if isinstance(m, Range):
                vs.append(m.low)
                ms.append(m.high)
            elif isinstance(m, Ternary):
                vs.append(m.value)
                ms.append(m.mask)
            elif isinstance(m, Lpm):
                vs.append(m.value)
                ms.append((top >> (w - m.prefix_len)) << (w - m.prefix_len) if m.prefix_len else 0)
            else:
                vs.append(m.value)
                ms.append(top)
        value = _encode_action(t, e.action, p, 1)
        value += b"".join(v.to_bytes(8, "little") for v in vs) + b"".join(x.to_bytes(8, "little") for x in ms)
        out.append((i.to_bytes(4, "little"), value))
    return out


def entries_json(p: Program) -> str:
    """The entries of every table kept as a map (hex), for inspection and for loaders
    other than ours (the other tables are in the code)."""
    return json.dumps(
        {t.name: [{"key": k.hex(), "value": v.hex()} for k, v in table_entries(p, t)] for t in map_tables(p)},
        indent=2,
    )


# ---------------------------------------------------------------- build


def clang() -> str:
    path = shutil.which("clang")
    if path is None:
        raise MantraError("clang not found: install it (make setup does) to build XDP programs")
    return path


def include_dirs() -> list[str]:
    """The helper header's folder and the multiarch include dir (for asm/types.h)."""
    ebpf = Path(str(resources.files("mantra6g.ebpf")))
    dirs = [str(ebpf)]
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True)
    arch = multiarch.stdout.strip() or "x86_64-linux-gnu"
    if Path(f"/usr/include/{arch}").is_dir():
        dirs.append(f"/usr/include/{arch}")
    return dirs


def build(c_file: Path, obj_file: Path) -> Path:
    """``clang -O2 -g -target bpf``; a compile error is a :class:`XdpBackendError` with clang's output."""
    cmd = [clang(), "-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-label"]
    cmd += [f"-I{d}" for d in include_dirs()] + ["-c", str(c_file), "-o", str(obj_file)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise XdpBackendError(f"clang failed on {c_file}:\n{r.stderr.strip()}")
    return obj_file


def emit(p: Program, test_hooks: bool = False) -> XdpOutput:
    """The C source and the map entries of ``p``."""
    c = emit_c(p, test_hooks)
    maps = tuple(f"tbl_{t.name}" for t in map_tables(p)) + tuple(f"reg_{r.name}" for r in p.registers) + tuple(
        f"ctr_{c.name}" for c in p.counters
    ) + tuple(f"meter_{m.name}" for m in p.meters)
    return XdpOutput({f"{p.name}.c": c, f"{p.name}.maps.json": entries_json(p) + "\n"}, maps, code_tables(p))


# ---------------------------------------------------------------- in the kernel


def map_fill(p: Program) -> list[tuple[str, bytes, bytes]]:
    """(map, key, value) for the entries of every table kept as a map and every meter
    bucket, full (as the interpreter starts them): what a loader writes before the
    program runs. This and :func:`table_entries` are the one place that knows the maps'
    layouts (``docs/xdp.md``)."""
    out = [(f"tbl_{t.name}", key, value) for t in map_tables(p) for key, value in table_entries(p, t)]
    for m in p.meters:
        full = (m.burst_bytes * TOKEN_SCALE).to_bytes(8, "little") + bytes(8)
        out += [(f"meter_{m.name}", i.to_bytes(4, "little"), full) for i in range(m.size)]
    return out


def fill_maps(obj, p: Program) -> None:
    """Install :func:`map_fill` into a loaded object's maps."""
    for name, key, value in map_fill(p):
        obj.update(name, key, value)


class KernelProgram:
    """A DP-IR program compiled to XDP with test hooks and loaded, for running packets
    through ``BPF_PROG_TEST_RUN`` exactly as the interpreter runs them."""

    def __init__(self, p: Program, workdir: str | Path):
        from mantra6g.targets.bpf import BpfObject

        self.program = p
        work = Path(workdir)
        work.mkdir(parents=True, exist_ok=True)
        c_file, o_file = work / f"{p.name}.test.c", work / f"{p.name}.test.o"
        c_file.write_text(emit_c(p, test_hooks=True))
        build(c_file, o_file)
        self.obj = BpfObject.load(o_file)
        fill_maps(self.obj, p)

    def run(self, data: bytes, ingress_port: int, now_ns: int) -> list[tuple[int, bytes]]:
        """[(egress port, bytes)] like :attr:`Result.outputs` (empty when dropped)."""
        return self.run_full(data, ingress_port, now_ns)[0]

    def run_full(self, data: bytes, ingress_port: int, now_ns: int) -> tuple[list[tuple[int, bytes]], bytes | None]:
        """(outputs, bytes handed to the kernel's stack) like the interpreter's
        (:attr:`Result.outputs`, :attr:`Result.to_host`)."""
        from mantra6g.targets import bpf

        cfg = now_ns.to_bytes(8, "little") + ingress_port.to_bytes(8, "little") + (2**64 - 1).to_bytes(8, "little")
        self.obj.update("mantra_test", bytes(4), cfg)
        verdict, out, _ = self.obj.test_run(data)
        if verdict == bpf.XDP_DROP:
            return [], None
        if verdict == bpf.XDP_PASS:
            return [], out
        if verdict != bpf.XDP_TX:
            raise XdpBackendError(f"unexpected XDP verdict {verdict} (aborted?) for a {len(data)}-byte packet")
        egress = int.from_bytes(self.obj.lookup("mantra_test", bytes(4), 24)[16:24], "little")
        return [(egress, out)], None

    def close(self) -> None:
        self.obj.close()


# ---------------------------------------------------------------- compile, deploy

PIN_ROOT = Path("/sys/fs/bpf/mantra")


@dataclass(frozen=True)
class XdpBuild:
    """What ``mantra compile --target xdp`` made for one device program."""

    c_file: Path
    obj_file: Path
    maps: tuple[str, ...]
    instructions: int | None  # processed by the verifier (None: not loaded, no root)
    stack_depth: int | None
    note: str = ""
    code_tables: tuple[str, ...] = ()  # tables compiled into the program
    compile_ms: float | None = None  # C emit and clang

    def render(self) -> str:
        lines = [f"xdp: {self.c_file.name} -> {self.obj_file.name}"]
        if self.code_tables:
            lines.append(f"  tables compiled into code: {', '.join(self.code_tables)}")
        tables = [m for m in self.maps if m.startswith("tbl_")]
        lines.append(f"  tables in maps (updatable at run time): {', '.join(tables) or 'none'}")
        state = [m for m in self.maps if not m.startswith("tbl_")]
        if state:
            lines.append(f"  state maps (registers, counters, meters): {', '.join(state)}")
        if self.compile_ms is not None:
            lines.append(f"  compiled in {self.compile_ms:.0f} ms (C and clang)")
        if self.instructions is not None:
            lines.append(f"  verifier: {self.instructions} instructions processed, stack {self.stack_depth} bytes")
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def compile_to(p: Program, directory: Path) -> tuple[dict[str, str], XdpBuild]:
    """Write C, object and map entries; load the object once (as root) for the verifier's figures."""
    start = time.perf_counter()
    out = emit(p)
    for name, text in out.files.items():
        (directory / name).write_text(text)
    c_file, obj_file = directory / f"{p.name}.c", directory / f"{p.name}.o"
    build(c_file, obj_file)
    elapsed = (time.perf_counter() - start) * 1e3
    insns = stack = None
    note = ""
    if os.geteuid() == 0:
        from mantra6g.targets.bpf import BpfObject

        with BpfObject.load(obj_file) as obj:
            insns, stack = obj.stats.instructions, obj.stats.stack_depth
    else:
        note = "not loaded: the verifier's figures need root"
    return out.files, XdpBuild(c_file, obj_file, out.maps, insns, stack, note, out.code_tables, elapsed)


def _ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise MantraError(f"no interface '{iface}' (in this network namespace)") from None


def _in_netns(netns: str | None):
    """Enter ``netns`` for the rest of this process (deploy runs in a child process)."""
    if netns is None:
        return
    path = Path("/run/netns") / netns
    if not path.exists():
        raise MantraError(f"no network namespace '{netns}' (ip netns list shows them)")
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as f:
        if libc.setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
            raise MantraError(f"cannot enter network namespace '{netns}': {os.strerror(ctypes.get_errno())}")


def ensure_bpffs() -> None:
    """Mount the BPF filesystem at /sys/fs/bpf if it is not (as bpftool and ip do)."""
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(m.split()[1:3] == ["/sys/fs/bpf", "bpf"] for m in mounts if m):
        return
    r = subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True, text=True)
    if r.returncode != 0:
        raise MantraError(f"cannot mount the BPF filesystem on /sys/fs/bpf: {r.stderr.strip()}")


def pin_dir(iface: str, netns: str | None) -> Path:
    # bpffs refuses names with a dot (reserved): "eth0.100" is pinned as "eth0_100".
    return PIN_ROOT / (netns or "root").replace(".", "_") / iface.replace(".", "_")


def deploy(p: Program, obj_file: Path, iface: str, netns: str | None, ports: dict[int, str] | None = None) -> str:
    """Load ``obj_file``, fill its maps and attach it to ``iface`` (native XDP), atomically
    replacing the program there (``XDP_FLAGS_REPLACE`` against the one found: if another
    was attached meanwhile, nothing is replaced). Its maps are pinned only once it runs.
    On any failure the old program keeps running with its pinned maps as they were.
    ``ports`` maps DP-IR port numbers to interface names (default: ``iface`` is port 0)."""
    from mantra6g.targets import bpf
    from mantra6g.targets.bpf import BpfObject

    _in_netns(netns)
    ports = ports or {0: iface}
    ifindex = _ifindex(iface)
    indexes = {port: _ifindex(name) for port, name in ports.items()}
    obj = BpfObject.load(obj_file)  # raises with the verifier log; nothing attached yet
    old_id = bpf.attached_id(ifindex)
    old_fd = bpf.program_fd(old_id) if old_id else -1
    try:
        fill_maps(obj, p)
        for port, idx in indexes.items():
            obj.update("mantra_ports", port.to_bytes(4, "little"), idx.to_bytes(4, "little"))
            obj.update("mantra_port_of", idx.to_bytes(4, "little"), port.to_bytes(4, "little"))
            if idx == ifindex:  # the interface it runs on: no hash lookup per packet
                obj.update("mantra_ingress", bytes(4), idx.to_bytes(4, "little") + port.to_bytes(4, "little"))
        ensure_bpffs()
        pins = pin_dir(iface, netns)
        staging = pins.with_name(pins.name + "~new")
        _unpin(staging)
        obj.attach(ifindex, replacing=old_fd)
        try:
            obj.pin_maps(staging)
            _swap_pins(staging, pins)
        except Exception:
            # Put the old program back (it was replaced; its maps, still pinned, kept it).
            if old_fd >= 0:
                bpf.attach_fd(ifindex, old_fd, replacing=obj.fd)
            else:
                bpf.detach(ifindex)
            _unpin(staging)
            raise
    except OSError as exc:
        obj.close()
        raise MantraError(f"cannot pin the maps under {PIN_ROOT}: {exc.strerror} (is the BPF filesystem mounted "
                          "there? run mantra deploy --netns NS rather than inside ip netns exec)") from None
    except Exception:
        obj.close()
        raise
    finally:
        if old_fd >= 0:
            os.close(old_fd)
    return f"attached {p.name} to {iface}{' in ' + netns if netns else ''} (maps pinned in {pins})"


def _unpin(directory: Path) -> None:
    if directory.is_dir():
        for f in directory.iterdir():
            f.unlink()
        directory.rmdir()


def _swap_pins(new: Path, pins: Path) -> None:
    """Make ``new`` the pin directory ``pins`` (the old one's pins are removed)."""
    old = pins.with_name(pins.name + "~old")
    _unpin(old)
    if pins.is_dir():
        pins.rename(old)
    new.rename(pins)
    _unpin(old)


def undeploy(iface: str, netns: str | None) -> str:
    from mantra6g.targets import bpf

    _in_netns(netns)
    ifindex = _ifindex(iface)
    if bpf.attached_id(ifindex) == 0:
        raise MantraError(f"no XDP program is attached to {iface}")
    bpf.detach(ifindex)
    _unpin(pin_dir(iface, netns))
    return f"detached the XDP program from {iface}{' in ' + netns if netns else ''}"

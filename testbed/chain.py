"""The testbed's service chain: its graph text, one XDP program per stage, map state.

A URLLC chain is split into two *stages*, each one XDP program on one node's single
interface (one-armed, as on a switch port): the ingress stage (monitor source, firewall,
a router towards the egress stage) and the egress stage (load balancer, monitor sink, a
router towards the receiver). Routers rewrite both MACs so the LinuxBridge between the
nodes forwards the packet to the next node; the packet leaves with ``XDP_TX``.
Migrating the egress stage = compiling it for another node, copying its map state, and
rewriting the ingress stage's route to the new node's MAC.

The eMBB slice has a chain too, one stage on each eMBB node: a policer holding the slice
to its rate and a router on to the receiver (:func:`embb_graph_text`), for UDP and TCP.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mantra6g.errors import MantraError
from mantra6g.synth.nf.latency_monitor import SUM_WORDS

INGRESS, EGRESS = "ingress", "egress"
STAGES = (INGRESS, EGRESS)  # the URLLC chain's
EMBB = "embb"  # the eMBB chain's one stage
NF_STAGE = {"mon_in": INGRESS, "fw": INGRESS, "to_egress": INGRESS, "lb": EGRESS, "mon_out": EGRESS, "to_rx": EGRESS}


@dataclass(frozen=True)
class ChainParams:
    """What the slices' graphs are written for: the addresses (one /24 shared by the whole
    site), the URLLC latency SLA and the eMBB slice's sink and rate."""

    subnet: str
    vip: str
    backends: tuple[str, ...]
    udp_port: int
    rx_mac: str
    sla_ms: float = 1.0
    embb_sink: str = ""
    embb_port: int = 0
    embb_limit_mbit: float = 0.0


def graph_text(a: ChainParams, nodes: dict[str, tuple[str, str]]) -> str:
    """The .sg source of the URLLC chain with each stage on ``nodes[stage] = (node, mac)``."""
    (n_in, mac_in), (n_out, mac_out) = nodes[INGRESS], nodes[EGRESS]
    backends = "\n".join(f"        backend {b}" for b in a.backends)
    return f"""\
tenant factory id 1 {{
    slice motion {{
        latency <= {a.sla_ms:g} ms
        priority 7
    }}
}}
graph urllc for factory.motion {{
    nf cls = classifier() {{ match ipv4.dst == {a.vip} and udp.dport == {a.udp_port} }}
    nf mon_in = latency_monitor(role: source)
    nf fw = firewall(default: deny) {{
        allow ipv4.src in {a.subnet} and ipv4.proto == udp
    }}
    nf to_egress = router(mac: {mac_in}) {{ route {a.subnet} via {mac_out} port 0 }}
    nf lb = load_balancer(vip: {a.vip}, mode: dnat, hash: [ipv4.src, ipv4.dst, udp.sport, udp.dport], table_size: 251) {{
{backends}
    }}
    nf mon_out = latency_monitor(role: sink, buckets: [100us, 250us, 500us, 1ms, 2ms, 5ms])
    nf to_rx = router(mac: {mac_out}) {{ route {a.subnet} via {a.rx_mac} port 0 }}
    cls -> mon_in -> fw -> to_egress -> lb -> mon_out -> to_rx
    place mon_in, fw, to_egress on host site {n_in}
    place lb, mon_out, to_rx on host site {n_out}
}}
"""


@dataclass(frozen=True)
class StageBuild:
    """One stage compiled for one node."""

    stage: str
    node: str
    program: object  # mantra6g.synth.dpir.Program
    obj_file: Path


def chain_programs(a: ChainParams, nodes: dict[str, tuple[str, str]]) -> dict[str, object]:
    """The DP-IR program of each stage for a placement (no C, no clang)."""
    from mantra6g.synth.compose import compile_specs
    from mantra6g.synth.frontend import loads

    spec = loads(graph_text(a, nodes), "urllc.sg")
    return {next(s for s in STAGES if dp.site == nodes[s][0]): dp.program for dp in compile_specs([spec])}


def compile_chain(a: ChainParams, nodes: dict[str, tuple[str, str]], workdir: Path) -> dict[str, StageBuild]:
    """Compile the chain for a placement (its graph is kept as ``workdir/urllc.sg``);
    returns the build of each stage."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "urllc.sg").write_text(graph_text(a, nodes))
    return {stage: _build(stage, nodes[stage][0], program, workdir)
            for stage, program in chain_programs(a, nodes).items()}


def compile_stage(a: ChainParams, stage: str, nodes: dict[str, tuple[str, str]], workdir: Path) -> StageBuild:
    """Compile one stage for a placement (a warm standby needs only its own program)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "urllc.sg").write_text(graph_text(a, nodes))
    return _build(stage, nodes[stage][0], chain_programs(a, nodes)[stage], workdir)


def egress_route(a: ChainParams, nodes: dict[str, tuple[str, str]]) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The ingress stage's route towards the egress stage of a placement: its table's map
    name and entries. Rewriting them in a running ingress stage moves the traffic (the
    switch of an egress migration), no clang needed."""
    from mantra6g.targets import xdp

    ingress = chain_programs(a, nodes)[INGRESS]
    table = next(t for t in ingress.tables if t.name.endswith("to_egress_fib"))
    return f"tbl_{table.name}", xdp.table_entries(ingress, table)


def embb_graph_text(a: ChainParams, node: tuple[str, str]) -> str:
    """The .sg source of the eMBB chain on ``node = (name, mac)``: the bulk (UDP) and the
    flash crowds (TCP) to the node's sink are policed to the slice's rate, then routed on
    to the receiver."""
    name, node_mac = node
    return f"""\
tenant media id 2 {{
    slice video {{
        bandwidth >= {a.embb_limit_mbit:g} Mbps
        priority 1
    }}
}}
graph embb for media.video {{
    nf cls = classifier() {{
        match ipv4.dst == {a.embb_sink} and udp.dport == {a.embb_port}
        match ipv4.dst == {a.embb_sink} and tcp.dport == {a.embb_port}
    }}
    nf pol = policer(rate: {a.embb_limit_mbit:g} Mbps, burst: 64 KB, exceed: drop)
    nf to_rx = router(mac: {node_mac}) {{ route {a.subnet} via {a.rx_mac} port 0 }}
    cls -> pol -> to_rx
    place pol, to_rx on host site {name}
}}
"""


def compile_embb(a: ChainParams, node: tuple[str, str], workdir: Path) -> StageBuild:
    """Compile the eMBB chain for its node (its graph is kept as ``workdir/embb.sg``)."""
    from mantra6g.synth.compose import compile_specs
    from mantra6g.synth.frontend import loads

    text = embb_graph_text(a, node)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "embb.sg").write_text(text)
    (dp,) = compile_specs([loads(text, "embb.sg")])
    return _build(EMBB, node[0], dp.program, workdir)


def _build(stage: str, node: str, program, workdir: Path) -> StageBuild:
    """Emit a stage's XDP C and build it with clang."""
    from mantra6g.targets import xdp

    d = workdir / f"{stage}-{node}"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in xdp.emit(program).files.items():
        (d / name).write_text(text)
    return StageBuild(stage, node, program, xdp.build(d / f"{program.name}.c", d / f"{program.name}.o"))


# ---------------------------------------------------------------- pinned maps


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return int(text.split("-")[-1]) + 1


_BATCH: ctypes.CDLL | None = None


def _batch_lib() -> ctypes.CDLL:
    """libbpf's batch and info calls (a handle of our own: targets.bpf binds what it uses)."""
    global _BATCH
    if _BATCH is None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, i, u32p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)
        lib.bpf_map_lookup_batch.argtypes = [i, vp, vp, vp, vp, u32p, vp]
        lib.bpf_map_lookup_batch.restype = i
        lib.bpf_map_update_batch.argtypes = [i, vp, vp, u32p, vp]
        lib.bpf_map_update_batch.restype = i
        lib.bpf_obj_get_info_by_fd.argtypes = [i, vp, u32p]
        lib.bpf_obj_get_info_by_fd.restype = i
        _BATCH = lib
    return _BATCH


@dataclass(frozen=True)
class MapShape:
    """An array map's layout as the batch calls see it: one element per index, each
    ``stride`` bytes (per-CPU maps: one 8-byte-aligned value per possible CPU)."""

    entries: int
    stride: int


class PinnedMaps:
    """The pinned maps of one deployed program, opened by path (readable from any netns)."""

    def __init__(self, directory: Path):
        from mantra6g.targets.bpf import lib

        self.directory = directory
        self._fds: dict[str, int] = {}
        self._shapes: dict[str, MapShape] = {}
        for f in sorted(directory.iterdir()):
            fd = lib().bpf_obj_get(str(f).encode())
            if fd < 0:
                raise MantraError(f"cannot open pinned map {f}")
            self._fds[f.name] = fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> PinnedMaps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def name_ending(self, suffix: str) -> str:
        names = [n for n in self._fds if n.endswith(suffix)]
        if len(names) != 1:
            raise MantraError(f"{self.directory}: expected one map ending in {suffix}, found {names}")
        return names[0]

    def lookup(self, name: str, key: bytes, value_size: int) -> bytes:
        from mantra6g.targets.bpf import lib

        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
        if lib().bpf_map_lookup_elem(self._fds[name], k, v) != 0:
            raise MantraError(f"{name}: no entry {key.hex()}")
        return v.raw

    def update(self, name: str, key: bytes, value: bytes) -> None:
        from mantra6g.targets.bpf import lib

        k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
        if lib().bpf_map_update_elem(self._fds[name], k, v, 0) != 0:
            raise MantraError(f"{name}: update of {key.hex()} failed")

    def register(self, name: str, index: int) -> int:
        return int.from_bytes(self.lookup(name, index.to_bytes(4, "little"), 8), "little")

    def set_register(self, name: str, index: int, value: int) -> None:
        self.update(name, index.to_bytes(4, "little"), value.to_bytes(8, "little"))

    def counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) summed over CPUs."""
        raw = self.lookup(name, index.to_bytes(4, "little"), 16 * _possible_cpus())
        pk = sum(int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 16))
        by = sum(int.from_bytes(raw[i + 8 : i + 16], "little") for i in range(0, len(raw), 16))
        return pk, by

    def counter_raw(self, name: str, index: int) -> bytes:
        return self.lookup(name, index.to_bytes(4, "little"), 16 * _possible_cpus())

    def set_counter_raw(self, name: str, index: int, raw: bytes) -> None:
        self.update(name, index.to_bytes(4, "little"), raw)

    # -- whole maps in one system call (BPF_MAP_*_BATCH): the standby's incremental copy

    def shape(self, name: str) -> MapShape:
        if name not in self._shapes:
            info = ctypes.create_string_buffer(128)
            size = ctypes.c_uint32(128)
            if _batch_lib().bpf_obj_get_info_by_fd(self._fds[name], info, ctypes.byref(size)) != 0:
                raise MantraError(f"{name}: cannot read the map's info: {os.strerror(ctypes.get_errno())}")
            kind, _, _, value_size, entries = np.frombuffer(info.raw[:20], dtype="<u4")
            percpu = int(kind) in (6, 10)  # BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY
            stride = ((int(value_size) + 7) // 8 * 8) * _possible_cpus() if percpu else int(value_size)
            self._shapes[name] = MapShape(int(entries), stride)
        return self._shapes[name]

    def dump(self, name: str) -> bytes:
        """Every value of an array map, in index order, read in one batch."""
        shape = self.shape(name)
        keys = (ctypes.c_uint32 * shape.entries)()
        values = ctypes.create_string_buffer(shape.entries * shape.stride)
        out_batch = ctypes.c_uint32(0)
        count = ctypes.c_uint32(shape.entries)
        ret = _batch_lib().bpf_map_lookup_batch(self._fds[name], None, ctypes.byref(out_batch), keys, values,
                                                ctypes.byref(count), None)
        # ENOENT with every entry returned is the normal end of an array map.
        if (ret != 0 and ctypes.get_errno() != 2) or count.value != shape.entries:
            raise MantraError(f"{name}: batch lookup got {count.value} of {shape.entries} entries "
                              f"({os.strerror(ctypes.get_errno())})")
        return values.raw

    def put(self, name: str, indexes: np.ndarray, values: bytes) -> None:
        """Write the elements at ``indexes`` (values concatenated, in that order) in one batch."""
        n = len(indexes)
        if not n:
            return
        keys = (ctypes.c_uint32 * n)(*[int(i) for i in indexes])
        buf = ctypes.create_string_buffer(values, len(values))
        count = ctypes.c_uint32(n)
        if _batch_lib().bpf_map_update_batch(self._fds[name], keys, buf, ctypes.byref(count), None) != 0 \
                or count.value != n:
            raise MantraError(f"{name}: batch update wrote {count.value} of {n} entries "
                              f"({os.strerror(ctypes.get_errno())})")


def state_maps(program) -> list[tuple[str, str, int]]:
    """(kind, map name, entries) of every register, counter and meter of a program: its NF state."""
    return [("reg", f"reg_{r.name}", r.size) for r in program.registers] + [
        ("ctr", f"ctr_{c.name}", c.size) for c in program.counters
    ] + [("meter", f"meter_{m.name}", m.size) for m in program.meters]


def state_bytes(program) -> int:
    """Bytes of NF state a migration of ``program`` copies at most: 8-byte registers,
    per-CPU (packets, bytes) counters and 16-byte meter buckets."""
    return sum(r.size * 8 for r in program.registers) + sum(c.size * 16 * _possible_cpus() for c in program.counters) \
        + sum(m.size * 16 for m in program.meters)


# How the state an old instance recorded after its successor's copy is folded in (see
# testbed/migration.py): a value that only grows (counters, sums, counts, sequence
# numbers) adds what the old one added (also both words of the latency monitor's sum:
# the low word wraps, but hi * 2^32 + lo adds up exactly); a maximum takes the larger; anything else (LB
# flow affinity) keeps the new instance's value where it has written one; a meter keeps
# the new instance's bucket (it polices the traffic that now flows through it). One place
# for this.
def added(now: np.ndarray, base: np.ndarray) -> np.ndarray:
    """What an instance added to each 64-bit word of a map since ``base``, signed: a word
    that wraps (the monitor's low sum word) adds a negative amount, which its high word's
    carry makes up (``merge_rule`` "add")."""
    return now.astype(np.int64) - base.astype(np.int64)


def merge_rule(map_name: str) -> str:
    if map_name.startswith("meter_"):
        return "keep"
    if map_name.startswith("ctr_") or map_name.endswith(("_sum", *SUM_WORDS, "_count", "_seq")):
        return "add"
    if map_name.endswith("_max"):
        return "max"
    return "fill"


StateImage = dict[str, bytes]  # map name -> every element, as PinnedMaps.dump returns it


def snapshot(program, maps: PinnedMaps) -> StateImage:
    """The whole NF state of a running instance (one batch read per map)."""
    return {name: maps.dump(name) for _, name, _ in state_maps(program)}


def _rows(image: bytes, stride: int) -> np.ndarray:
    return np.frombuffer(image, dtype=np.uint8).reshape(-1, stride)


def write_changes(maps: PinnedMaps, image: StateImage, base: StateImage | None) -> int:
    """Make ``maps`` hold ``image``, writing only the elements that differ from ``base``
    (what ``maps`` is known to hold; None: write every non-zero element). Returns the
    elements written."""
    written = 0
    for name, data in image.items():
        stride = maps.shape(name).stride
        rows = _rows(data, stride)
        old = _rows(base[name], stride) if base is not None and name in base else np.zeros_like(rows)
        changed = np.flatnonzero((rows != old).any(axis=1))
        if len(changed):
            maps.put(name, changed, rows[changed].tobytes())
            written += len(changed)
    return written

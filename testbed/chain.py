"""The testbed's service chain: its graph text, one XDP program per stage, map state.

A URLLC chain is split into two *stages*, each one XDP program on one node's single
interface (one-armed, as on a switch port): the ingress stage (monitor source, firewall,
a router towards the egress stage) and the egress stage (load balancer, monitor sink, a
router towards the receiver). Routers rewrite both MACs so the LinuxBridge between the
nodes forwards the packet to the next node; the packet leaves with ``XDP_TX``.
Migrating the egress stage = compiling it for another node, copying its map state, and
rewriting the ingress stage's route to the new node's MAC.

The eMBB slice has a chain too, one stage on the eMBB node: a policer holding the slice
to its rate and a router on to the receiver (:func:`embb_graph_text`).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

from mantra6g.errors import MantraError

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


def embb_graph_text(a: ChainParams, node: tuple[str, str]) -> str:
    """The .sg source of the eMBB chain on ``node = (name, mac)``: the bulk to the sink is
    policed to the slice's rate, then routed on to the receiver."""
    name, node_mac = node
    return f"""\
tenant media id 2 {{
    slice video {{
        bandwidth >= {a.embb_limit_mbit:g} Mbps
        priority 1
    }}
}}
graph embb for media.video {{
    nf cls = classifier() {{ match ipv4.dst == {a.embb_sink} and udp.dport == {a.embb_port} }}
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


class PinnedMaps:
    """The pinned maps of one deployed program, opened by path (readable from any netns)."""

    def __init__(self, directory: Path):
        from mantra6g.targets.bpf import lib

        self.directory = directory
        self._fds: dict[str, int] = {}
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


def state_maps(program) -> list[tuple[str, str, int]]:
    """(kind, map name, entries) of every register and counter of a program: its NF state."""
    return [("reg", f"reg_{r.name}", r.size) for r in program.registers] + [
        ("ctr", f"ctr_{c.name}", c.size) for c in program.counters
    ]


def state_bytes(program) -> int:
    """Bytes of NF state a migration of ``program`` copies at most: 8-byte registers and
    per-CPU (packets, bytes) counters."""
    return sum(r.size * 8 for r in program.registers) + sum(c.size * 16 * _possible_cpus() for c in program.counters)

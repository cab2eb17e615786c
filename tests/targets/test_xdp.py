"""The XDP backend in the kernel: every NF kind and a 4-NF chain agree with the reference
interpreter byte for byte, through BPF_PROG_TEST_RUN and through real veth interfaces."""

from __future__ import annotations

import os
import random
import re
import socket
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from mantra6g.synth.interp import State, run
from mantra6g.synth.tables import TABLE_MODES, with_tables
from tests.targets.xdp_cases import GRAPHS, MACS, corpus, fuzz_base, mutate, program

pytestmark = pytest.mark.root

REGRESSIONS = Path(__file__).with_name("xdp_regressions.txt")
FUZZ_PACKETS = 4_000


def kernel(p, tmp_path):
    from mantra6g.targets.xdp import KernelProgram

    return KernelProgram(p, tmp_path)


def differences(p, k, packets, start_ns: int = 1_000_000) -> list[str]:
    """Run packets through both, with the same clock and ingress port, and state
    carried across packets on both sides."""
    state = State.initial(p)
    found = []
    # The kernel neither receives nor test-runs frames shorter than an Ethernet header;
    # the interpreter's handling of those is tested in tests/synth.
    packets = [d for d in packets if len(d) >= 14]
    for i, data in enumerate(packets):
        now = start_ns + i * 50_000
        port = 1 + i % 3
        want = run(p, data, port, now, state).outputs
        got = k.run(data, port, now)
        if want != got:
            found.append(f"packet {data.hex()} port {port} now {now}: interpreter {want}, xdp {got}")
    return found


@pytest.mark.parametrize("mode", TABLE_MODES)
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_each_nf_kind_agrees_with_the_interpreter(kind, mode, tmp_path):
    """Tables as the NFs declare them, all const (decision trees, constant arrays in the
    code) and all runtime (BPF maps filled as at deploy)."""
    p = with_tables(program(kind), mode)
    k = kernel(p, tmp_path)
    try:
        assert differences(p, k, corpus() * 2) == []
        # A guard on the verifier's effort (limit 1,000,000): the largest, the 5-NF chain
        # with run-time tables, took ~127,000 while it scanned its firewall inline, ~67,000 since.
        assert k.obj.stats.instructions < 100_000
    finally:
        k.close()


@pytest.mark.parametrize("kind", ["router", "l2_forward", "firewall", "load_balancer"])
def test_runtime_tables_take_new_entries_in_their_maps(kind, tmp_path):
    """A build with runtime tables keeps them in maps: writing another program's entries
    (the same keys, each with the next entry's action) into the loaded maps, as a
    control plane would, makes the running program behave as that other program does
    in the interpreter, without reloading it. (The load balancer's Maglev and backend
    tables are array maps indexed by their key: ``table_form`` "indexed".)"""
    from dataclasses import replace

    from mantra6g.targets.xdp import code_tables, table_entries

    p = with_tables(program(kind), "runtime")
    assert code_tables(p) == ()

    def rotated(t):
        actions = [e.action for e in t.entries]
        return replace(t, entries=tuple(replace(e, action=a) for e, a in zip(t.entries, actions[1:] + actions[:1])))

    p2 = replace(p, tables=tuple(rotated(t) for t in p.tables))
    packets = corpus()
    assert any(run(p, d, 1, 0).outputs != run(p2, d, 1, 0).outputs for d in packets if len(d) >= 14)
    k = kernel(p, tmp_path)
    try:
        assert differences(p, k, packets) == []
        for t in p2.tables:
            for key, value in table_entries(p2, t):
                k.obj.update(f"tbl_{t.name}", key, value)
        assert differences(p2, k, packets) == []
    finally:
        k.close()


def test_regressions_stay_fixed(tmp_path):
    """Packets that once made XDP and the interpreter disagree (kind, hex per line)."""
    cases = [ln.split() for ln in REGRESSIONS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for kind, hexdata in cases:
        p = program(kind)
        k = kernel(p, tmp_path / kind)
        try:
            assert differences(p, k, [bytes.fromhex(hexdata)]) == [], kind
        finally:
            k.close()



def test_the_monitors_32_bit_words_carry_and_saturate_as_integers_do(tmp_path):
    """The sink's registers are 32-bit words (Tofino-1's cells hold no more): the sum's
    low word carries into its high word, and a delay of 2^32 - 1 ns or more is recorded
    as 2^32 - 1 and counted in the overflow bucket. Oracle: Python's integers — the sum
    the two words spell is the exact sum of what they held and the delays recorded — in
    the kernel (BPF_PROG_TEST_RUN) and on the interpreter."""
    from mantra6g.synth.nf.latency_monitor import SATURATED, delay_sum
    from mantra6g.testbed.chain import _possible_cpus
    from tests.oracle.frame import MTel

    p = program("latency_monitor")
    name = {suffix: next(r.name for r in p.registers if r.name.endswith(suffix))
            for suffix in ("delay_sum_lo", "delay_sum_hi", "delay_count", "delay_max")}
    (hist,) = p.counters
    slice_id, ts = 1, 10_000_000_000
    before = {"delay_sum_lo": 2**32 - 100, "delay_sum_hi": 7, "delay_count": 5, "delay_max": 10}
    delays = [350, 5_000_000_000]  # one carries the low word; one is longer than 32 bits hold
    frame = bytes(Ether(src=MACS["src"], dst=MACS["dst"], type=0x88B5) / MTel(slice=slice_id, type=0x0800, ts=ts)
                  / IP(src="192.0.2.9", dst="10.1.2.3") / UDP(sport=1111, dport=53) / b"dns?")
    k = kernel(p, tmp_path)
    state = State.initial(p)
    try:
        for suffix, value in before.items():
            state.registers[name[suffix]][slice_id] = value
            k.obj.update(f"reg_{name[suffix]}", slice_id.to_bytes(4, "little"), value.to_bytes(8, "little"))
        for d in delays:
            want = run(p, frame, 1, ts + d, state).outputs
            assert k.run(frame, 1, ts + d) == want and want, d
        kernel_regs = {s: int.from_bytes(k.obj.lookup(f"reg_{n}", slice_id.to_bytes(4, "little"), 8), "little")
                       for s, n in name.items()}
        raw = k.obj.lookup(f"ctr_{hist.name}", ((slice_id << 4) | 2).to_bytes(4, "little"), 16 * _possible_cpus())
        kernel_overflow = sum(int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 16))
    finally:
        k.close()
    recorded = [350, SATURATED]
    total = (before["delay_sum_hi"] << 32) + before["delay_sum_lo"] + sum(recorded)
    for regs in (kernel_regs, {s: state.registers[n][slice_id] for s, n in name.items()}):
        assert all(v < 2**32 for v in regs.values()), regs
        assert delay_sum(regs.__getitem__) == total, regs
        assert regs["delay_sum_hi"] == 7 + 2, regs  # both delays carried
        assert regs["delay_count"] == 5 + 2 and regs["delay_max"] == SATURATED, regs
    assert kernel_overflow == 1 and state.counters[hist.name][(slice_id << 4) | 2][0] == 1  # buckets [1us, 100us]

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["declared", "const"])
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_mutated_and_noise_packets_agree_with_the_reference_model(kind, mode, tmp_path):
    """Byte-flipped, cut, extended and random packets (what tests/oracle's realistic
    frames do not reach): XDP and the interpreter agree with the reference model
    (tests/oracle/model.py, scapy, which knows nothing of how tables are compiled), and
    hence with each other; with the tables as declared and all compiled into code."""
    from tests.oracle.model import ChainModel
    from tests.targets.xdp_cases import spec

    p = with_tables(program(kind), mode)
    model = ChainModel(spec(kind).graphs[0])
    k = kernel(p, tmp_path)
    rng = random.Random(f"xdp-fuzz-{kind}")
    base = fuzz_base(kind)
    packets = [d for d in (mutate(rng, base) for _ in range(FUZZ_PACKETS)) if len(d) >= 14]
    try:
        found = differences(p, k, packets)
        state = State.initial(p)
        for i, data in enumerate(packets):
            now, port = 1_000_000 + i * 50_000, 1 + i % 3
            want = model.run(data, port, now)[0]
            if want != run(p, data, port, now, state).outputs:
                found.append(f"packet {data.hex()} port {port} now {now}: reference {want}")
    finally:
        k.close()
    assert not found, f"{len(found)} mismatches; add them to {REGRESSIONS.name}:\n" + "\n".join(found[:5])


# ---------------------------------------------------------------- real interfaces


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """h1 --veth-- dut --veth-- h2; dut's ports: 1 (to h1) and 2 (to h2)."""
    from mantra6g.targets.bpf import BpfObject
    from testbed.netns import Lab, pass_program

    work = tmp_path_factory.mktemp("xdp-lab")
    with Lab(f"mxt{os.getpid() % 10000}") as lab:
        lab.link("h1", "h1-eth0", "dut", "dut-eth1")
        lab.link("h2", "h2-eth0", "dut", "dut-eth2")
        # XDP_TX/redirect into a veth needs NAPI on its far end: a pass program provides it.
        passes = []
        obj_file = pass_program(work)
        for ns, iface in (("h1", "h1-eth0"), ("h2", "h2-eth0")):
            with lab.in_ns(ns):
                o = BpfObject.load(obj_file)
                o.attach(socket.if_nametoindex(iface))
                passes.append(o)
        lab.work = work
        yield lab
        for o in passes:
            o.close()


def deploy_in(lab, p, obj_dir: Path):
    from mantra6g.targets import xdp

    obj_dir.mkdir(parents=True, exist_ok=True)
    _, built = xdp.compile_to(p, obj_dir)
    with lab.in_ns("dut"):
        xdp.deploy(p, built.obj_file, "dut-eth1", None, {1: "dut-eth1", 2: "dut-eth2"})


def undeploy_in(lab):
    from mantra6g.targets import xdp

    with lab.in_ns("dut"):
        xdp.undeploy("dut-eth1", None)


@pytest.mark.parametrize("kind", list(GRAPHS))
def test_packets_through_veth_come_out_as_the_interpreter_says(lab, kind):
    p = program(kind)
    deploy_in(lab, p, lab.work / kind)
    h1, h2 = lab.packet_socket("h1", "h1-eth0"), lab.packet_socket("h2", "h2-eth0")
    state = State.initial(p)
    # Only time-independent NFs are compared on their outputs' bytes here (the kernel
    # clock is real); the monitor's and policer's timing is covered by the test runs.
    timed = kind in ("latency_monitor", "policer")
    try:
        for data in corpus():
            if len(data) < 14:
                continue  # a veth does not carry frames shorter than an Ethernet header
            want = run(p, data, 1, time.monotonic_ns(), state).outputs
            h1.drain()
            h2.drain()
            h1.send(data)
            got = []
            for port, sock in ((1, h1), (2, h2)):
                frame = sock.receive(timeout=0.3 if want and want[0][0] == port else 0.05)
                if frame is not None:
                    got.append((port, frame))
            if timed:
                assert [x[0] for x in got] == [x[0] for x in want], data.hex()
            else:
                # veth pads frames below 60 bytes: compare the bytes the program produced
                assert [(pt, f[: len(w)]) for (pt, f), (_, w) in zip(got, want)] == want and len(got) == len(want), data.hex()
    finally:
        h1.close()
        h2.close()
        undeploy_in(lab)


def test_a_rejected_program_leaves_the_old_one_running(lab, tmp_path):
    from mantra6g.targets import bpf, xdp

    p = program("router")
    deploy_in(lab, p, tmp_path / "good")
    with lab.in_ns("dut"):
        before = bpf.attached_id(socket.if_nametoindex("dut-eth1"))
    bad = tmp_path / "bad.c"
    bad.write_text(
        '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
        'SEC("xdp") int bad(struct xdp_md *ctx) { return *(int *)(long)ctx->data; }\n'  # no bounds check
        'char LICENSE[] SEC("license") = "GPL";\n'
    )
    obj = xdp.build(bad, tmp_path / "bad.o")
    with lab.in_ns("dut"), pytest.raises(bpf.VerifierError) as exc:
        xdp.deploy(p, obj, "dut-eth1", None, {1: "dut-eth1", 2: "dut-eth2"})
    assert "invalid access to packet" in exc.value.log
    with lab.in_ns("dut"):
        assert bpf.attached_id(socket.if_nametoindex("dut-eth1")) == before
    undeploy_in(lab)


def test_a_device_that_needs_too_many_maps_is_refused_with_the_reason():
    from mantra6g.source import SourceFile
    from mantra6g.synth import frontend
    from mantra6g.synth.compose import compile_specs
    from mantra6g.synth.scale import chain_site
    from mantra6g.targets.xdp import XdpBackendError, emit_c

    (dp,) = compile_specs(frontend.load_sources([SourceFile("g.sg", chain_site(20))]))
    # 20 chains: their runtime tables, registers, counters and meters (const tables are code)
    with pytest.raises(XdpBackendError, match=r"needs (\d+) BPF maps .* the kernel allows 64 per program") as err:
        emit_c(dp.program)
    assert int(re.search(r"needs (\d+)", str(err.value)).group(1)) > 64


def test_a_wide_key_that_must_stay_in_a_map_is_refused_naming_table_field_and_reason():
    """Const tables with IPv6 keys are code (tests/oracle/test_firewall.py runs them in
    the kernel); the same table updatable at run time would be a map, and is refused."""
    from tests.oracle.test_firewall import CASES
    from mantra6g.targets.xdp import XdpBackendError, emit_c

    (case,) = [c for c in CASES if c.name == "firewall-v6-prefixes"]
    emit_c(case.program)
    with pytest.raises(XdpBackendError, match=r"table 'g_fw_acl' has a key wider than 64 bits \(ipv6\.src, ipv6\.dst\).*"
                                              r"because it is updatable at run time"):
        emit_c(with_tables(case.program, "runtime"))


def test_a_second_nf_is_not_verified_once_per_way_through_the_first(tmp_path):
    """Two DNAT load balancers with a monitor between them (a random chain of the oracle,
    tests/oracle/cases.py): the second balancer's header pointers are taken again from the
    scratch map, so the verifier does not check it once for each way through the first
    (102,953 instructions before, ~49,000 since; every program's guard is 100,000)."""
    from tests.oracle.cases import chain_cases

    (case,) = [c for c in chain_cases() if c.name == "lb(dnat)>mon>>lb(dnat)>>mon"]
    k = kernel(case.program, tmp_path)
    try:
        assert k.obj.stats.instructions < 100_000
        assert differences(case.program, k, [f for _, f in case.frames[:200]]) == []
    finally:
        k.close()

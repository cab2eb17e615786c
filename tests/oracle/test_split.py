"""Chains split over two devices, judged by the reference model (tests/oracle/model.py,
``ChainModel``): what leaves the second device is what the chain does to the frame, the
cable in between re-read by the parsing rules of docs/dpir.md. What the first device
sends goes into the second; the two share one numbering of ports (the one the graph's
rules use), so the host sees the frame on the port it came into the SmartNIC by, and
it leaves by the last port a router or l2_forward chose on either, else by that one.

Every random chain of tests/oracle/cases.py with two NFs or more, cut after a seeded
position, on the interpreter, XDP in the kernel (BPF_PROG_TEST_RUN) and, where it is
installed, two BMv2 switches; the frames the first device hands over are also read with
scapy against the chain shim's documented layout (docs/dpir.md). The root test that carries real traffic
between namespaces over two XDP devices is tests/targets/test_xdp_hosts.py's
``test_a_chain_split_over_two_devices_...``.
"""

from __future__ import annotations

import functools
import random
import re

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Dot1Q, Ether

from mantra6g.synth.compose import compile_specs
from mantra6g.synth.interp import State, run
from tests.oracle import bmv2
from tests.oracle.cases import Case, Verdict, chain_cases, clock, coverage, interpreter, judge
from tests.oracle.frame import ETH_CHAIN, ChainShim
from tests.oracle.model import ChainModel

FIRST, SECOND = "smartnic", "host"


@functools.cache
def split_cases() -> list[Case]:
    """Each random chain of two NFs or more, its first k NFs (in declaration order) on
    the SmartNIC and the others on the host."""
    rng = random.Random("oracle-split")
    out = []
    for case in chain_cases():
        names = re.findall(r"^    nf (n\d+) = ", case.text, re.M)
        if len(names) < 2:
            continue
        k = rng.randrange(1, len(names))
        forwarders = [n for n in names[k:] if re.search(rf"^    nf {n} = (router|l2_forward)\(", case.text, re.M)]
        if "-> [" in case.text and forwarders == ["n1"]:
            continue  # n1 is skipped on some paths: whether the host forwards depends on the path
        places = f"    place {', '.join(names[:k])} on {FIRST}\n    place {', '.join(names[k:])} on {SECOND}\n"
        assert case.text.endswith("\n}\n")
        out.append(Case(f"{case.name}@{k}", case.text[:-2] + places + "}\n", case.frames))
    return out


def host_forwards(case: Case) -> bool:
    """Whether an NF on the host chooses the egress port (a router or l2_forward)."""
    host = re.search(rf"place (.*) on {SECOND}", case.text).group(1).split(", ")
    return any(re.search(rf"^    nf {n} = (router|l2_forward)\(", case.text, re.M) for n in host)


def devices(case: Case):
    dps = {dp.device: dp for dp in compile_specs([case.spec])}
    assert sorted(dps) == sorted((FIRST, SECOND)), case.text
    return dps[FIRST].program, dps[SECOND].program


class Split:
    """Two targets in a row (``make(program)`` gives ``run(data, port, now) -> Verdict``)."""

    def __init__(self, case: Case, make):
        first, second = devices(case)
        self.first, self.second = make(first), make(second)
        self.forwards = host_forwards(case)
        self.handed: list[bytes] = []  # what the first device sent on

    def __call__(self, data: bytes, port: int, now: int) -> Verdict:
        outputs, host = self.first(data, port, now)
        assert host is None, "the oracle's graphs drop what they do not claim"
        final: list[tuple[int, bytes]] = []
        for out_port, sent in outputs:
            self.handed.append(sent)
            more, _ = self.second(sent, port, now)
            final += [(p if self.forwards else out_port, b) for p, b in more]
        return final, None


class InterpSplit:
    def __init__(self, case: Case):
        self.split = Split(case, lambda program: interpreter(case.running(program)))

    def __enter__(self):
        return self.split

    def __exit__(self, *exc):
        return False


class XdpSplit:
    """Each device's program compiled with clang and run in the kernel (BPF_PROG_TEST_RUN)."""

    def __init__(self, case: Case, work):
        from mantra6g.targets.xdp import KernelProgram

        self.kernel: list = []
        stem = re.sub(r"\W", "_", case.name)

        def make(program):
            k = KernelProgram(program, work / f"{stem}_{len(self.kernel)}")
            self.kernel.append(k)
            return k.run_full

        self.split = Split(case, make)

    def __enter__(self):
        return self.split

    def __exit__(self, *exc):
        for k in self.kernel:
            k.close()
        return False


def test_the_split_corpus_is_large_and_varied():
    cases = split_cases()
    assert len(cases) >= 20 and sum(len(c.frames) for c in cases) >= 5_000
    assert len({c.name.partition("#")[0] for c in cases}) >= 15
    print(f"\n{len(cases)} split chains, {len(coverage(cases))} (chain, frame class) combinations")


def test_interpreter_split_over_two_devices_agrees_with_the_reference():
    judge(split_cases(), InterpSplit)


def _shim(frame: bytes) -> tuple[int, ChainShim | None]:
    """Where the chain shim of a frame starts and the shim as scapy reads it from the
    documented layout (None: no shim there)."""
    eth = Ether(frame)
    at, kind = 14, eth.type
    if kind == 0x8100:
        at, kind = 18, Dot1Q(frame[14:18] + b"\0" * 42).type
    return at, (ChainShim(frame[at:at + 8]) if kind == ETH_CHAIN else None)


@pytest.mark.root
def test_xdp_split_over_two_devices_agrees_with_the_reference_and_hands_over_the_documented_shim(tmp_path):
    """Judged by the reference model, then what the SmartNIC handed over in the kernel's
    output read with scapy: every frame has the shim right after Ethernet (or the VLAN
    tag), naming tenant 1, the site's one graph and an NF placed on the host (its
    position in the graph, the classifier first), and what follows it is what its
    EtherType says (an IPv4 header where it says IPv4)."""
    runs = []

    def target(case):
        x = XdpSplit(case, tmp_path)
        runs.append((case, x.split))
        return x

    judge(split_cases(), target)
    seen = 0
    for case, split in runs:
        host = re.search(rf"place (.*) on {SECOND}", case.text).group(1).split(", ")
        declared = ["cls", *re.findall(r"^    nf (n\d+) = ", case.text, re.M)]
        for frame in split.handed:
            at, shim = _shim(frame)
            assert shim is not None, f"{case.name}: handed over without a shim: {frame.hex()}"
            assert (shim.tenant, shim.graph) == (1, 1)
            assert declared[shim.resume - 1] in host, (case.name, shim.resume)
            if shim.type == 0x0800:
                assert IP(frame[at + 8:]).version == 4, frame.hex()
            seen += 1
    assert seen >= 1_000


def test_a_device_that_resumes_a_chain_ignores_frames_without_its_shim():
    """The host resumes the graph only where the SmartNIC says: the same frames sent to
    it directly, or with a shim naming another tenant, graph or NF, are not its."""
    (case,) = [c for c in split_cases()[:1]]
    first, second = devices(case)
    go1 = interpreter(case.running(first))
    handed = [out for _, data in case.frames for _, out in go1(data, 1, 0)[0]]
    assert handed
    for frame in handed[:50]:
        at, shim = _shim(frame)
        inner = frame[:at - 2] + shim.type.to_bytes(2, "big") + frame[at + 8:]
        assert run(second, inner, 1, 0, State.initial(second)).outputs == []
        for field, value in (("tenant", 2), ("graph", 2), ("resume", 1)):
            forged = ChainShim(bytes(shim))
            setattr(forged, field, value)
            f = frame[:at] + bytes(forged) + frame[at + 8:]
            assert run(second, f, 1, 0, State.initial(second)).outputs == [], field
        assert run(second, frame, 1, 0, State.initial(second)).outputs, frame.hex()


NO_BMV2 = bmv2.missing()


def _on_bmv2(program, frames: list[bytes], work) -> dict[int, list[bytes]]:
    """What BMv2 writes per egress port for ``frames``, all sent into port 1, in order."""
    built = bmv2.build(Case(work.name, "", [("", f) for f in frames]).running(program), work)
    ports = sorted(set(bmv2.PORTS) | {1})
    wait = 1
    while True:
        bmv2._write(work / "p1_in.pcap", list(enumerate(frames)))
        for port in ports:
            if port != 1:
                bmv2._write(work / f"p{port}_in.pcap", [])
            (work / f"p{port}_out.pcap").unlink(missing_ok=True)
        got, late = bmv2._switch(built, ports, wait, len(frames))
        if not late:
            return got
        wait *= 2


@pytest.mark.skipif(NO_BMV2 is not None, reason=NO_BMV2 or "")
def test_bmv2_split_over_two_switches_agrees_with_the_reference(tmp_path):
    """The split chains of the timeless kinds (BMv2's clock is the host's) on two BMv2
    switches: every frame into the SmartNIC's port 1, what it sends on port p into the
    host's port 1 (the shared numbering), in the order it left by; per final port, the
    frames the reference model sends there (each frame on port 1), as multisets: the
    order between the SmartNIC's ports is the switch's."""
    from collections import Counter

    cases = [c for c in split_cases() if not re.search(r"= (policer|latency_monitor)\(", c.text)]
    assert len(cases) >= 8
    found, delivered = [], 0
    for k, case in enumerate(cases):
        frames = [data for _, data in case.frames]
        model = ChainModel(case.spec.graphs[0])
        want: Counter = Counter()
        for i, data in enumerate(frames):
            outputs, _ = model.run(data, 1, clock(i)[1])
            want.update(outputs)
        delivered += sum(want.values())
        first, second = devices(case)
        got: Counter = Counter()
        for port, sent in _on_bmv2(first, frames, tmp_path / f"c{k}a").items():
            if not sent:
                continue
            for final, out in _on_bmv2(second, sent, tmp_path / f"c{k}b{port}").items():
                got.update((final if host_forwards(case) else port, f) for f in out)
        if got != want:
            found.append(f"{case.name}: {sum((want - got).values())} frames the reference sends and BMv2 does not, "
                         f"{sum((got - want).values())} the other way; e.g. {list((want - got) or (got - want))[:1]}")
    assert not found, "\n".join(found)
    assert delivered >= 500, delivered  # what the reference delivers over the cable, compared

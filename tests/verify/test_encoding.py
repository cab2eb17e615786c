"""The Z3 encoding against the interpreter on concrete packets.

For every example site's device programs, 300 frames are substituted into the encoder's
formulas, which must then simplify to the interpreter's verdict, egress port and emitted
bytes. Half are the oracle's realistic classes (a fifth of them mutated), which the
examples' classifiers mostly drop; the other half are variants of packets the program
forwards (found by the solver, then rebuilt by scapy with other TTLs, identifiers, ports
and payloads and correct checksums), so that forwarding paths are compared too. This is a
consistency check between two of our implementations; the interpreter is itself judged
against the independent reference model in ``tests/oracle`` (scapy parsing, RFC rules),
so a difference here localises a bug in the encoder.
"""

from __future__ import annotations

import random

import pytest
import z3

from mantra6g.synth import frontend, interp
from mantra6g.synth.compose import compile_specs
from mantra6g.verify.encode import BYTE_INDEX, GREEN, RED, Encoder, Inputs, emitted
from tests.conftest import EXAMPLES
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.oracle.traffic import random_frame

PACKETS = 300  # per example site


class Concrete:
    """The encoder's inputs fixed to one frame, with the interpreter's initial state:
    zeroed registers and full meters (green unless the frame is longer than the burst)."""

    def __init__(self, inputs: Inputs, data: bytes, port: int, now: int, colour: int):
        arr = z3.K(BYTE_INDEX, z3.BitVecVal(0, 8))
        for i, b in enumerate(data):
            arr = z3.Store(arr, z3.BitVecVal(i, BYTE_INDEX.size()), z3.BitVecVal(b, 8))
        self.subs = [(inputs.packet, arr), (inputs.length, z3.BitVecVal(len(data), 16)),
                     (inputs.ingress, z3.BitVecVal(port, 9)), (inputs.now, z3.BitVecVal(now, 64))]
        self.subs += [(a, z3.K(a.sort().domain(), z3.BitVecVal(0, a.sort().range().size())))
                      for a in inputs.registers.values()]
        self.funs = [(f, z3.BitVecVal(colour, 2)) for f in inputs.colours.values()]

    def __call__(self, e: z3.ExprRef) -> z3.ExprRef:
        e = z3.substitute(e, *self.subs)
        if self.funs:
            e = z3.substitute_funs(e, *self.funs)
        return z3.simplify(e)


def forwarded_witnesses(run, inputs: Inputs, k: int = 6) -> list[bytes]:
    """Up to ``k`` short frames the program forwards, each leaving by another port or
    with another first 34 bytes than the ones before."""
    s = z3.Solver()
    fix = Concrete(inputs, b"", 0, 0, GREEN)
    fix.subs = fix.subs[4:]  # keep the packet, its length, port and time free
    s.add(inputs.constraints(), z3.ULE(inputs.length, 160), fix(run.forwarded), *[fix(e) for e in run.extra])
    out = []
    for _ in range(k):
        if s.check() != z3.sat:
            break
        m = s.model()
        n = m.eval(inputs.length).as_long()
        data = bytes(m.eval(z3.Select(inputs.packet, z3.BitVecVal(i, BYTE_INDEX.size())), model_completion=True).as_long()
                     for i in range(n))
        out.append(data)
        s.add(z3.Or(inputs.length != n, *[z3.Select(inputs.packet, z3.BitVecVal(i, BYTE_INDEX.size())) != data[i]
                                          for i in range(min(n, 34))]))
    return out


def variant(rng: random.Random, data: bytes) -> bytes:
    """``data`` with other IPv4 TTL/identifier, L4 ports and payload, checksums recomputed."""
    f = Ether(data)
    if IP in f and rng.random() < 0.7:
        f[IP].ttl, f[IP].id = rng.choice((0, 1, 2, 64, 255)), rng.randrange(1 << 16)
        del f[IP].chksum, f[IP].len
    for l4 in (TCP, UDP):
        if l4 in f and rng.random() < 0.5:
            setattr(f[l4], rng.choice(("sport", "dport")), rng.choice((53, 80, 443, 2152, 4789, rng.randrange(1 << 16))))
            del f[l4].chksum
            if l4 is UDP:
                del f[UDP].len
    if rng.random() < 0.5 and (IP in f):
        top = f[TCP] if TCP in f else f[UDP] if UDP in f else f[IP]
        top.remove_payload()
        top.add_payload(Raw(rng.randbytes(rng.randrange(0, 200))))
        for layer in (IP, UDP, TCP):
            if layer in f:
                for name in ("len", "chksum"):
                    if name in f[layer].fields:
                        delattr(f[layer], name)
    return bytes(f)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_encoding_agrees_with_the_interpreter_on_concrete_packets(path):
    devices = compile_specs(frontend.load([str(path)]))
    rng = random.Random(f"encoding-{path.name}")
    per_device = -(-PACKETS // len(devices))
    forwarded_seen = 0
    for dp in devices:
        p = dp.program
        inputs = Inputs.for_programs([p])
        run = Encoder(p, inputs, "installed").run()
        out, out_len = emitted(p, run, inputs)
        side = z3.And(*run.extra) if run.extra else z3.BoolVal(True)
        witnesses = forwarded_witnesses(run, inputs)
        for i in range(per_device):
            if i % 2 and witnesses:
                w = rng.choice(witnesses)
                data = w if rng.random() < 0.2 else variant(rng, w)
            else:
                _, data = random_frame(rng, 0.2)
            port, now = 1 + i % 3, 1_000_000 + i * 1000
            want = interp.run(p, data, port, now, interp.State.initial(p))
            ev = Concrete(inputs, data, port, now, GREEN)
            if z3.is_false(ev(side)):  # longer than a meter's burst: red from a full bucket
                ev = Concrete(inputs, data, port, now, RED)
            assert z3.is_true(ev(side)), f"{dp.name}: side constraints not concrete on {data.hex()}"
            forwarded = ev(run.forwarded)
            assert z3.is_bool(forwarded) and (z3.is_true(forwarded) or z3.is_false(forwarded)), \
                f"{dp.name}: verdict not concrete on {data.hex()}"
            assert z3.is_true(forwarded) == bool(want.outputs), \
                f"{dp.name}: verdict differs on {data.hex()}: interpreter {want.trace}"
            if want.outputs:
                forwarded_seen += 1
                (port_out, bytes_out), = want.outputs
                assert ev(run.egress).as_long() == port_out, f"{dp.name}: egress port differs on {data.hex()}"
                n = ev(out_len).as_long()
                # one substitution for the whole frame: shared subterms are rewritten once
                got = ev(z3.Concat(*[out.byte(c) for c in range(n)])).as_long().to_bytes(n, "big") if n > 1 else \
                    bytes(ev(out.byte(c)).as_long() for c in range(n))
                assert got == bytes_out, f"{dp.name}: emitted bytes differ on {data.hex()}:\n" \
                                         f"  encoder     {got.hex()}\n  interpreter {bytes_out.hex()}"
    assert forwarded_seen > 0, "no frame was forwarded: the comparison checked only drops"

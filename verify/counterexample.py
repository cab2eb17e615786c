"""Counterexamples: a Z3 model as a concrete packet, state and entries, and its replay
in the reference interpreter.

A counterexample carries everything the interpreter needs to reproduce the violation:
the packet bytes, ingress port and time; the register cells and meter colours the
packet read (the proof quantified over every initial state, so the model picked one);
and, for tables the property let hold *any* entries, the entry that the model chose.
:meth:`Counterexample.replay` runs it through the merged program with an interpreter
that also records what the packet read and wrote, so the violation is observable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import z3

from mantra6g.synth import interp
from mantra6g.synth.dpir import (
    ActionCall,
    Const,
    Count,
    Entry,
    Exact,
    Expr,
    Forward,
    If,
    Lpm,
    MeterExec,
    Program,
    Range,
    Ref,
    RegisterRead,
    RegisterWrite,
    Ternary,
)
from mantra6g.verify.encode import Inputs, Run


@dataclass(frozen=True)
class Counterexample:
    """A packet (and the state it meets) that violates ``property``."""

    property: str
    tenant: str
    packet: bytes
    ingress_port: int
    now_ns: int
    detail: str
    table: str | None = None
    field: str | None = None
    other: str | None = None  # the other tenant involved, if any
    registers: tuple[tuple[str, int, int], ...] = ()  # (register, index, value) before the packet
    red_meters: tuple[tuple[str, int], ...] = ()  # meter cells whose bucket is empty
    entries: tuple[tuple[str, tuple[Entry, ...]], ...] = ()  # table -> its entries for the replay
    defaults: tuple[tuple[str, ActionCall], ...] = ()  # table -> the default action set for the replay

    def state(self, p: Program) -> interp.State:
        """The interpreter state the packet meets in ``p`` (names as in ``p``)."""
        st = interp.State.initial(p)
        for name, index, value in self.registers:
            if name in st.registers:
                st.registers[name][index % len(st.registers[name])] = value
        for name, index in self.red_meters:
            if name in st.meters:
                st.meters[name][index % len(st.meters[name])] = (0.0, self.now_ns)
        for table, entries in self.entries:
            if table in st.entries:
                st.entries[table] = entries
        for table, call in self.defaults:
            if table in st.entries:
                st.defaults[table] = call
        return st

    def replay(self, p: Program) -> Replay:
        """Run the packet through ``p`` in the interpreter, recording its accesses."""
        run = _Tracing(p, self.state(p), self.now_ns)
        result = run.packet(self.packet, self.ingress_port)
        return Replay(result, run.touches, dict(run.pkt.meta))

    def summary(self) -> str:
        """The packet as scapy shows it (one line)."""
        from scapy.layers.l2 import Ether

        return Ether(self.packet).summary()

    def to_json(self) -> dict:
        return {
            "property": self.property,
            "tenant": self.tenant,
            "other_tenant": self.other,
            "table": self.table,
            "field": self.field,
            "detail": self.detail,
            "packet_hex": self.packet.hex(),
            "scapy": self.summary(),
            "ingress_port": self.ingress_port,
            "now_ns": self.now_ns,
            "registers": [list(r) for r in self.registers],
            "red_meters": [list(m) for m in self.red_meters],
            "entries": {t: [repr(e) for e in es] for t, es in self.entries},
        }


@dataclass(frozen=True)
class Touch:
    """One access the interpreter saw."""

    kind: str  # "field" | "meta" | "table" | "action" | "register" | "counter" | "meter"
    name: str
    write: bool
    valid: bool = True  # for header fields: was the header valid


@dataclass
class Replay:
    result: interp.Result
    touches: list[Touch]
    meta: dict[str, int]  # metadata and std fields at the end

    def touched(self, kind: str, name: str, write: bool | None = None) -> bool:
        return any(t.kind == kind and t.name == name and (write is None or t.write == write) for t in self.touches)

    @property
    def invalid_accesses(self) -> list[Touch]:
        return [t for t in self.touches if t.kind == "field" and not t.valid]


class _Tracing(interp._Run):
    """The reference interpreter, unchanged, plus a record of every access."""

    def __init__(self, p: Program, state: interp.State, now_ns: int):
        super().__init__(p, state, now_ns)
        self.touches: list[Touch] = []

    def _touch_path(self, path: str, write: bool) -> None:
        scope = path.partition(".")[0]
        if scope in ("meta", "std"):
            self.touches.append(Touch("meta", path, write))
        elif scope != "param":
            self.touches.append(Touch("field", path, write, scope in self.pkt.headers))

    def eval(self, e: Expr, params) -> int:
        if isinstance(e, Ref):
            self._touch_path(e.path, False)
        return super().eval(e, params)

    def write(self, path: str, value: int, params) -> None:
        self._touch_path(path, True)
        super().write(path, value, params)

    def key_value(self, path: str) -> int:
        if not path.endswith("$valid"):
            self._touch_path(path, False)
            return super().eval(Ref(path), ())  # not self.eval: the key read is recorded once
        return super().key_value(path)

    def apply(self, t) -> bool:
        self.touches.append(Touch("table", t.name, False))
        return super().apply(t)

    def call(self, call) -> None:
        self.touches.append(Touch("action", call.action, False))
        super().call(call)

    def stmt(self, s, params) -> None:
        if isinstance(s, RegisterRead):
            self.touches.append(Touch("register", s.register, False))
        elif isinstance(s, RegisterWrite):
            self.touches.append(Touch("register", s.register, True))
        elif isinstance(s, Count):
            self.touches.append(Touch("counter", s.counter, True))
        elif isinstance(s, MeterExec):
            self.touches.append(Touch("meter", s.meter, True))
        super().stmt(s, params)


# ---------------------------------------------------------------- from a model


def _int(model: z3.ModelRef, term) -> int:
    return model.eval(term, model_completion=True).as_long()


def packet_bytes(model: z3.ModelRef, packet: z3.ArrayRef, length: int) -> bytes:
    """The model's bytes of ``packet`` (an array of bytes), ``length`` of them."""
    return bytes(_int(model, z3.Select(packet, z3.BitVecVal(i, 16))) for i in range(length))


def _entry_for(table, keys: list[int], p: Program, model_args: tuple[int, ...], action: str, priority: int) -> Entry:
    """An entry matching exactly these key values (the one a tenant could install)."""
    matches = []
    for k, v in zip(table.keys, keys):
        w = 1 if k.field.endswith("$valid") else p.width_of(k.field)
        matches.append({"exact": lambda: Exact(v), "lpm": lambda: Lpm(v, w), "ternary": lambda: Ternary(v, (1 << w) - 1),
                        "range": lambda: Range(v, v)}[k.match]())
    return Entry(tuple(matches), ActionCall(action, model_args), priority)


def from_model(model: z3.ModelRef, inputs: Inputs, run: Run, p: Program, prop: str, tenant: str, detail: str,
               **where) -> Counterexample:
    """The concrete packet, state and entries of ``model`` for a run of ``p``."""
    length = _int(model, inputs.length)
    raw = packet_bytes(model, inputs.packet, length)
    regs: dict[tuple[str, int], int] = {}
    red: set[tuple[str, int]] = set()
    for u in run.state_uses:
        idx = _int(model, u.index)
        if u.kind == "register":
            regs[(u.name, idx)] = _int(model, z3.Select(inputs.register(u.key, p.register(u.name).width), idx))
        elif _int(model, u.value) != 0:
            red.add((u.name, idx))
    entries = []
    defaults = []
    for st in run.symbolic_tables:
        t = p.table(st.table)
        if st.default is not None:
            action = t.actions[_int(model, st.default)]
            defaults.append((t.name, ActionCall(action, tuple(_int(model, a) for a in st.default_args[action]))))
        if not z3.is_true(model.eval(st.hit, model_completion=True)):
            entries.append((t.name, ()))
            continue
        action = t.actions[_int(model, st.action)]
        args = tuple(_int(model, a) for a in st.args[action])
        keys = [_int(model, k) for k in st.keys]
        top = max((e.priority for e in t.entries), default=0) + 1
        entries.append((t.name, (_entry_for(t, keys, p, args, action, top),)))
    return Counterexample(
        property=prop,
        tenant=tenant,
        packet=raw,
        ingress_port=_int(model, inputs.ingress),
        now_ns=_int(model, inputs.now),
        detail=detail,
        registers=tuple((n, i, v) for (n, i), v in sorted(regs.items())),
        red_meters=tuple(sorted(red)),
        entries=tuple(entries),
        defaults=tuple(defaults),
        **where,
    )


def classifies(p: Program, classifier: Expr, packet: bytes, port: int = 0) -> bool:
    """Does ``classifier`` claim ``packet`` (parsed by ``p``'s parser)? Run in the
    interpreter as a one-statement program."""
    probe = dataclasses.replace(p, control=(If(classifier, (Forward(Const(0, 9)),)),), tables=(), actions=())
    return not interp.run(probe, packet, port, 0).dropped


def write_pcap(path: Path, cexs: list[Counterexample]) -> None:
    """The counterexample packets as a pcap (one frame each, in order)."""
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), [Ether(c.packet) for c in cexs])


__all__ = ["Counterexample", "Replay", "Touch", "classifies", "from_model", "write_pcap"]

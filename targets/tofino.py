"""TNA backend: DP-IR → one P4-16 program for Intel Tofino-1 (``tna.p4``), its
entries, and a stage-by-stage resource estimate.

    out = emit(program)       # raises TofinoResourceError if it cannot fit 12 stages
    out.files                 # {"<name>.p4", "<name>.entries.json"}
    out.summary.stages        # MAU stages used

How DP-IR's semantics map onto TNA (docs/targets.md has the long form):

* the ingress parser extracts ``ig_intr_md`` and skips the port metadata, as
  ``TofinoIngressParser`` does; a DP-IR ``reject`` goes to a state that flags the
  packet, and the ingress drops flagged packets and packets with a parser error
  (short packets), with ``ig_dprsr_md.drop_ctl``; so is a packet never forwarded;
* ``Hash``: a CRC-32 ``Hash<bit<32>>`` with the polynomial spelled out as
  ``CRCPolynomial`` (zlib's CRC-32: reflected 0x04C11DB7, init and xor all ones).
  ``% size`` is a mask for powers of two; otherwise (Tofino has no divider) four
  byte tables add up ``byte × 2^(8k) mod size`` and a range table subtracts the
  multiple of ``size``, which is exact;
* registers become ``Register`` + one ``RegisterAction`` per access; meters are
  ``Meter`` (byte, configured CIR = PIR so yellow never happens) whose colour
  ``GREEN=0``/``RED=3`` becomes DP-IR's 0/2 by masking bit 1;
* checksums are DP-IR fields the program keeps right itself (``OnesSum`` arithmetic in
  a 32-bit temporary);
* a parser ``verify`` that reads the packet length (IPv4 total length against the frame)
  is left out: the Tofino ingress has no packet length (a note says so);
* timestamps: ``ig_intr_md.ingress_mac_tstamp`` is already in ns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mantra6g.synth.dpir import (
    Count,
    Expr,
    Hash,
    MeterExec,
    Program,
    ReadTimestamp,
    RegisterRead,
    RegisterWrite,
)
from mantra6g.synth.dpir_check import validate
from mantra6g.targets import p4
from mantra6g.targets.p4 import INDENT, P4BackendError, P4Output, P4Printer, Summary, _Ctx, ident, lit
from mantra6g.targets.tofino_resources import LogicalTable, logical_tables, place

TARGET = "tofino"
REGISTER_WIDTHS = (8, 16, 32)  # Tofino-1 stateful ALU cell widths


def emit(program: Program) -> P4Output:
    """The TNA P4 program, entries and resource summary for ``program``.

    Raises :class:`~mantra6g.targets.tofino_resources.TofinoResourceError` when the
    program cannot fit Tofino-1's 12 stages, :class:`~mantra6g.targets.p4.P4BackendError`
    for what TNA cannot express.
    """
    validate(program)
    pr = TnaPrinter(program)
    text = pr.program_text()
    report = place(logical_tables(program, pr.resource_extras))
    name = ident(program.name)
    files = {
        f"{name}.p4": text,
        f"{name}.entries.json": p4.entries_json(program, TARGET, {"meters": _meters(program)}),
    }
    placed = {pl.table for pl in report.placements}
    summary = Summary.of(TARGET, program, pr.notes, stages=report.stages_used,
                         stage_of=lambda t: report.stage_of(t) if t in placed else None)
    return P4Output(files, summary)


def _meters(p: Program) -> list[dict]:
    # bfrt meter specs: CIR = PIR in kbit/s, CBS = PBS in bytes (see docs/targets.md)
    return [
        {"meter": p4.qualified(m.name), "index": i, "cir_kbps": m.rate_bps // 1000, "pir_kbps": m.rate_bps // 1000,
         "cbs_bytes": m.burst_bytes, "pbs_bytes": m.burst_bytes}
        for m in p.meters
        for i in range(m.size)
    ]


def _storage_width(name: str, w: int) -> int:
    for s in REGISTER_WIDTHS:
        if w <= s:
            return s
    raise P4BackendError(
        f"register '{name}' holds {w} bits; Tofino-1 register cells are at most 32 bits: compile this "
        f"device for another target (mantra compile -t CLASS=xdp|bmv2)"
    )


@dataclass
class TnaPrinter(P4Printer):
    target = TARGET
    externs: list[str] = field(default_factory=list)
    extra_actions: list[str] = field(default_factory=list)
    extra_tables: list[str] = field(default_factory=list)
    temps: list[tuple[str, int]] = field(default_factory=list)
    resource_extras: list[list[LogicalTable]] = field(default_factory=list)
    n: int = 0

    def assign(self, target: str, e, ctx) -> str:
        # bf-p4c refuses a comparison cast to bits as an assignment's source ("source of
        # modify_field invalid"): a condition selects the constant instead.
        if self.is_bool(e):
            ref = self.ref(target, ctx)
            return f"if ({self.cond(e, ctx)}) {{ {ref} = 1; }} else {{ {ref} = 0; }}"
        return super().assign(target, e, ctx)

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def reject_state(self) -> str:
        return "parse_reject"

    def extra_std_fields(self) -> list[tuple[str, int]]:
        return [("parser_reject", 1)] + self.temps

    def parser_verify(self, st) -> list[str]:
        if st.verify is not None and "std.pkt_len" in {e.path for e in p4.iter_exprs(st.verify) if isinstance(e, p4.Ref)}:
            self.notes.append("TNA: the IPv4 total length is not checked against the frame (no packet length in the ingress)")
            return []
        return super().parser_verify(st)

    def ref(self, path: str, ctx: _Ctx) -> str:
        if path == "std.pkt_len":
            raise P4BackendError(
                f"program '{self.p.name}' reads std.pkt_len: the Tofino ingress has no packet length"
            )
        return super().ref(path, ctx)

    def index(self, e: Expr, size: int, ctx: _Ctx) -> str:
        if isinstance(e, p4.Const):
            return lit(e.value % size, 32)
        w = self.width(e, ctx)
        text = self.value(e, ctx, 32)
        if (1 << w) <= size:
            return text
        if size & (size - 1) == 0:
            return f"{p4.paren(text)} & {lit(size - 1, 32)}"
        self.notes.append(f"an index wider than its {size}-cell extern is not wrapped on Tofino (the interpreter wraps)")
        return text

    # -- hash -----------------------------------------------------------------
    def hash_stmt(self, s: Hash, ctx: _Ctx) -> list[str]:
        name = self.fresh("hash")
        tw = self.p.width_of(s.target, ctx.params)
        self.externs.append(f"Hash<bit<32>>(HashAlgorithm_t.CUSTOM, crc32_poly) {name};")
        self.temps.append((name, 32))
        data = ", ".join(self.value(e, ctx) for e in s.inputs)
        out = [f"meta.std.{name} = {name}.get({{{data}}});"]
        target = self.ref(s.target, ctx)
        base = f"{lit(s.base, tw)} + " if s.base else ""
        if s.size & (s.size - 1) == 0:
            out.append(f"{target} = {base}(bit<{tw}>)(meta.std.{name} & {lit(s.size - 1, 32)});")
            return out
        if ctx.in_action:
            raise P4BackendError(
                f"program '{self.p.name}': hash modulo {s.size} inside an action; Tofino computes a "
                "modulo by a non power of two with tables, which an action cannot apply"
            )
        return out + self.hash_modulo(name, s, target, tw)

    def hash_modulo(self, name: str, s: Hash, target: str, tw: int) -> list[str]:
        """``target = base + hash % size`` without a divider: byte k of the hash
        contributes ``byte × 2^(8k) mod size`` (four exact tables), and a range table
        subtracts the multiple of ``size`` from their sum (< 4 × size)."""
        size = s.size
        rw = (size - 1).bit_length()
        sw = (4 * size - 1).bit_length()
        lines, extras = [], []
        for k in range(4):
            part = f"{name}_r{k}"
            self.temps.append((part, rw))
            self.extra_actions.append(f"action {name}_set_r{k}(bit<{rw}> r) {{\n{INDENT}meta.std.{part} = r;\n}}")
            entries = "\n".join(
                f"{INDENT * 2}{lit(b, 8)}: {name}_set_r{k}({lit((b << (8 * k)) % size, rw)});" for b in range(256)
            )
            self.extra_tables.append(
                f"// byte {k} of {name}: its contribution to {name} mod {size}\n"
                f"table {name}_byte{k} {{\n{INDENT}key = {{\n{INDENT * 2}meta.std.{name}[{8 * k + 7}:{8 * k}]: exact;\n"
                f"{INDENT}}}\n{INDENT}actions = {{\n{INDENT * 2}{name}_set_r{k};\n{INDENT}}}\n"
                f"{INDENT}size = 256;\n{INDENT}const entries = {{\n{entries}\n{INDENT}}}\n}}"
            )
            lines.append(f"{name}_byte{k}.apply();")
            extras.append(LogicalTable(f"{name}_byte{k}", "hash_mod", frozenset({f"std.{name}"}), frozenset(),
                                       frozenset({f"std.{part}"}), sram=2))
        self.temps.append((f"{name}_sum", sw))
        parts = " + ".join(f"(bit<{sw}>)meta.std.{name}_r{k}" for k in range(4))
        lines.append(f"meta.std.{name}_sum = {parts};")
        extras.append(LogicalTable(f"{name}_sum", "action", frozenset(),
                                   frozenset(f"std.{name}_r{k}" for k in range(4)), frozenset({f"std.{name}_sum"})))
        base = f"{lit(s.base, tw)} + " if s.base else ""
        self.extra_actions.append(
            f"action {name}_reduce(bit<{sw}> multiple) {{\n"
            f"{INDENT}{target} = {base}(bit<{tw}>)(meta.std.{name}_sum - multiple);\n}}"
        )
        entries = "\n".join(
            f"{INDENT * 2}{lit(j * size, sw)} .. {lit((j + 1) * size - 1, sw)}: {name}_reduce({lit(j * size, sw)});"
            for j in range(4)
        )
        self.extra_tables.append(
            f"table {name}_mod {{\n{INDENT}key = {{\n{INDENT * 2}meta.std.{name}_sum: range;\n{INDENT}}}\n"
            f"{INDENT}actions = {{\n{INDENT * 2}{name}_reduce;\n{INDENT}}}\n{INDENT}size = 4;\n"
            f"{INDENT}const entries = {{\n{entries}\n{INDENT}}}\n}}"
        )
        lines.append(f"{name}_mod.apply();")
        extras.append(LogicalTable(f"{name}_mod", "hash_mod", frozenset({f"std.{name}_sum"}), frozenset(),
                                   frozenset({s.target}), tcam=1))
        self.resource_extras.append(extras)
        return lines

    # -- registers, counters, meters, time -----------------------------------------
    def register_read(self, s: RegisterRead, ctx: _Ctx) -> list[str]:
        reg = self.p.register(s.register)
        sw = _storage_width(reg.name, reg.width)
        act = self.fresh(f"{ident(reg.name)}_read")
        self.externs.append(
            f"RegisterAction<bit<{sw}>, bit<32>, bit<{sw}>>({ident(reg.name)}) {act} = {{\n"
            f"{INDENT}void apply(inout bit<{sw}> value, out bit<{sw}> rv) {{\n{INDENT * 2}rv = value;\n{INDENT}}}\n}};"
        )
        value = f"{act}.execute({self.index(s.index, reg.size, ctx)})"
        if sw != reg.width:
            value = f"(bit<{reg.width}>){value}"
        return [f"{self.ref(s.target, ctx)} = {value};"]

    def register_write(self, s: RegisterWrite, ctx: _Ctx) -> list[str]:
        reg = self.p.register(s.register)
        sw = _storage_width(reg.name, reg.width)
        act = self.fresh(f"{ident(reg.name)}_write")
        # The value goes through metadata: a RegisterAction cannot see action parameters.
        temp = f"{act}_value"
        self.temps.append((temp, sw))
        self.externs.append(
            f"RegisterAction<bit<{sw}>, bit<32>, bit<{sw}>>({ident(reg.name)}) {act} = {{\n"
            f"{INDENT}void apply(inout bit<{sw}> value) {{\n{INDENT * 2}value = meta.std.{temp};\n{INDENT}}}\n}};"
        )
        return [
            f"meta.std.{temp} = {self.value(s.value, ctx, sw)};",
            f"{act}.execute({self.index(s.index, reg.size, ctx)});",
        ]

    def count(self, s: Count, ctx: _Ctx) -> list[str]:
        c = self.p.counter(s.counter)
        return [f"{ident(c.name)}.count({self.index(s.index, c.size, ctx)});"]

    def meter(self, s: MeterExec, ctx: _Ctx) -> list[str]:
        m = self.p.meter(s.meter)
        w = self.p.width_of(s.target, ctx.params)
        # MeterColor_t: GREEN = 0, YELLOW = 1, RED = 3; bit 1 gives DP-IR's 0 / 2.
        colour = f"{ident(m.name)}.execute({self.index(s.index, m.size, ctx)}) & 8w2"
        return [f"{self.ref(s.target, ctx)} = (bit<{w}>)({colour});"]

    def timestamp(self, s: ReadTimestamp, ctx: _Ctx) -> list[str]:
        w = self.p.width_of(s.target, ctx.params)
        return [f"{self.ref(s.target, ctx)} = (bit<{w}>)ig_intr_md.ingress_mac_tstamp;  // ns"]

    # -- whole program -----------------------------------------------------------
    def stateful_externs(self) -> list[str]:
        p = self.p
        out = [f"Register<bit<{_storage_width(r.name, r.width)}>, bit<32>>({lit(r.size, 32)}, 0) {ident(r.name)};"
               for r in p.registers]
        out += [f"Counter<bit<32>, bit<32>>({lit(c.size, 32)}, CounterType_t.PACKETS_AND_BYTES) {ident(c.name)};"
                for c in p.counters]
        out += [f"// {m.rate_bps} bit/s, burst {m.burst_bytes} B: configure CIR = PIR, CBS = PBS (entries.json)\n"
                f"Meter<bit<32>>({lit(m.size, 32)}, MeterType_t.BYTES) {ident(m.name)};" for m in p.meters]
        if any(isinstance(s, Hash) for s in p4.walk(p)):
            # zlib's CRC-32, the interpreter's: reflected, init and final xor all ones.
            out.insert(0, "CRCPolynomial<bit<32>>(32w0x04c11db7, true, false, false, 32w0xffffffff, 32w0xffffffff) crc32_poly;")
        return out

    def parser_text(self) -> str:
        out = self.parser_states()
        out.append(f"state parse_reject {{\n{INDENT}// DP-IR reject: flag it; the ingress drops it\n"
                   f"{INDENT}meta.std.parser_reject = 1w1;\n{INDENT}transition accept;\n}}")
        return "\n\n".join(out)

    def meta_init(self) -> list[str]:
        out = [f"meta.std.{n} = 0;" for n, _ in self.std_fields() if n not in ("ingress_port", "pkt_len")]
        out.append("meta.std.ingress_port = ig_intr_md.ingress_port;")
        return out + [f"meta.{ident(m.name)} = 0;" for m in self.p.metadata]

    def program_text(self) -> str:
        p = self.p
        body = self.control_body()  # first: it declares externs, temporaries, tables
        actions = [self.action_decl(a) for a in p.actions]  # may declare more externs
        parser = self.parser_text()
        return p4.template("tna/program.p4.j2").render(
            name=ident(p.name),
            doc=(p.doc or f"DP-IR program {p.name}").replace("*/", "* /").splitlines()[0],
            header_types=self.header_types(),
            structs=self.structs(),
            meta_init=p4.indent_block("\n".join(self.meta_init()), 2),
            states=p4.indent_block(parser, 1),
            externs=p4.indent_block("\n".join(self.stateful_externs() + self.externs), 1),
            actions=p4.indent_block("\n\n".join(actions + self.extra_actions), 1),
            tables=p4.indent_block("\n\n".join([self.table_decl(t) for t in p.tables] + self.extra_tables), 1),
            body=p4.indent_block("\n".join(body), 3),
            deparse=self.deparse_headers(),
        )

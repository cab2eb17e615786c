"""v1model backend: DP-IR → one P4-16 program for BMv2 ``simple_switch``, plus its
control-plane entries.

    out = emit(program)
    out.files    # {"<name>.p4", "<name>.p4info.txtpb", "<name>.entries.json",
                 #  "<name>.commands.txt", "<name>.p4rt.py"}
    out.summary

How DP-IR's semantics map onto v1model (docs/targets.md has the long form):

* drop-by-default: the ingress ends in ``mark_to_drop`` unless a ``Forward`` ran and no
  ``Drop`` did; parser errors (``reject``, short packets) skip the program and drop; a
  DP-IR ``reject`` is ``verify(false, error.NoMatch)``, since p4c-bm2-ss ignores an
  explicit ``transition reject``;
* ``Hash``: ``hash(t, HashAlgorithm.crc32, base, {inputs}, size)`` is BMv2's
  ``base + crc32 % size``, the interpreter's definition;
* checksums are DP-IR fields the program keeps right itself: a one's-complement sum
  (``OnesSum``) is added up in a 32-bit temporary and folded, in the ingress; the
  compute-checksum control has nothing left to do;
* a parser ``verify`` is P4's ``verify(cond, error.Malformed)``: the ingress sees the
  parser error and drops the packet, as DP-IR does;
* meters: v1model meters are two-rate three-colour (RFC 2698); configured with
  CIR = PIR and CBS = PBS both buckets agree, so yellow never happens and the colour
  is DP-IR's green (0) or red (2);
* timestamps: BMv2's ``ingress_global_timestamp`` counts µs; DP-IR wants ns, so the
  value is multiplied by 1000 (the resolution stays 1 µs).
"""

from __future__ import annotations

from dataclasses import dataclass
from mantra6g.synth.dpir import Count, Expr, Hash, MeterExec, Program, ReadTimestamp, RegisterRead, RegisterWrite
from mantra6g.synth.dpir_check import validate
from mantra6g.targets import p4, p4info
from mantra6g.targets.p4 import INDENT, P4Output, P4Printer, Summary, _Ctx, ident, lit

TARGET = "bmv2"


def emit(program: Program) -> P4Output:
    """The v1model P4 program and control-plane files for ``program``.

    Raises :class:`~mantra6g.synth.dpir_check.DpirError` for an ill-formed program and
    :class:`~mantra6g.targets.p4.P4BackendError` for one v1model cannot express.
    """
    validate(program)
    pr = V1modelPrinter(program)
    name = ident(program.name)
    files = {
        f"{name}.p4": pr.program_text(),
        f"{name}.p4info.txtpb": p4info.text(p4info.p4info(program)),
        f"{name}.entries.json": p4.entries_json(program, TARGET, {"meters": meter_configs(program)}),
        f"{name}.commands.txt": cli_commands(program),
        f"{name}.p4rt.py": p4runtime_script(program),
    }
    return P4Output(files, Summary.of(TARGET, program, pr.notes))


# ---------------------------------------------------------------- the P4 program


@dataclass
class V1modelPrinter(P4Printer):
    target = TARGET
    hashed_index: bool = False  # an extern index is wrapped by the hash extern (index)

    def hash_stmt(self, s: Hash, ctx: _Ctx) -> list[str]:
        tw = self.p.width_of(s.target, ctx.params)
        data = ", ".join(self.value(e, ctx) for e in s.inputs)
        return [
            f"hash({self.ref(s.target, ctx)}, HashAlgorithm.crc32, {lit(s.base, tw)}, "
            f"{{{data}}}, {lit(s.size, 32)});"
        ]

    def index(self, e: Expr, size: int, ctx: _Ctx) -> tuple[list[str], str]:
        """An extern index as ``bit<32>``, wrapped into ``size`` as the interpreter does
        (``index % size``; v1model would ignore an out-of-range index instead): the
        statements that compute it first, and the index. A power-of-two size is a mask;
        any other needs ``%`` of a run-time value, which p4c refuses ("could not evaluate
        expression at compilation time"), so BMv2's ``hash`` extern takes the remainder:
        the identity of the 32-bit index, modulo ``size``, into ``meta.std.index``."""
        if isinstance(e, p4.Const):
            return [], lit(e.value % size, 32)
        text = self.value(e, ctx, 32)
        if (1 << self.width(e, ctx)) <= size:
            return [], text
        if size & (size - 1) == 0:
            return [], f"{p4.paren(text)} & {lit(size - 1, 32)}"
        self.hashed_index = True
        return [f"hash(meta.std.index, HashAlgorithm.identity, 32w0, {{{text}}}, {lit(size, 32)});"], "meta.std.index"

    def register_read(self, s: RegisterRead, ctx: _Ctx) -> list[str]:
        reg = self.p.register(s.register)
        first, idx = self.index(s.index, reg.size, ctx)
        return first + [f"{ident(reg.name)}.read({self.ref(s.target, ctx)}, {idx});"]

    def register_write(self, s: RegisterWrite, ctx: _Ctx) -> list[str]:
        reg = self.p.register(s.register)
        first, idx = self.index(s.index, reg.size, ctx)
        return first + [f"{ident(reg.name)}.write({idx}, {self.value(s.value, ctx, reg.width)});"]

    def count(self, s: Count, ctx: _Ctx) -> list[str]:
        c = self.p.counter(s.counter)
        first, idx = self.index(s.index, c.size, ctx)
        return first + [f"{ident(c.name)}.count({idx});"]

    def meter(self, s: MeterExec, ctx: _Ctx) -> list[str]:
        m = self.p.meter(s.meter)
        first, idx = self.index(s.index, m.size, ctx)
        return first + [f"{ident(m.name)}.execute_meter({idx}, {self.ref(s.target, ctx)});"]

    def timestamp(self, s: ReadTimestamp, ctx: _Ctx) -> list[str]:
        w = self.p.width_of(s.target, ctx.params)
        self.notes.append("timestamps: BMv2 counts microseconds; the value is scaled to ns (1 µs resolution)")
        ns = "(bit<64>)standard_metadata.ingress_global_timestamp * 64w1000"
        value = ns if w == 64 else f"(bit<{w}>)({ns})"
        return [f"{self.ref(s.target, ctx)} = {value};  // BMv2 timestamps are in µs"]

    def extra_std_fields(self) -> list[tuple[str, int]]:
        return [("index", 32)] if self.hashed_index else []

    # -- whole program ----------------------------------------------------------
    def externs(self) -> list[str]:
        p = self.p
        out = [f"register<bit<{r.width}>>({lit(r.size, 32)}) {ident(r.name)};" for r in p.registers]
        out += [f"counter({lit(c.size, 32)}, CounterType.packets_and_bytes) {ident(c.name)};" for c in p.counters]
        out += [
            f"// {m.rate_bps} bit/s, burst {m.burst_bytes} B: configured as CIR = PIR, CBS = PBS (commands.txt)\n"
            f"meter({lit(m.size, 32)}, MeterType.bytes) {ident(m.name)};"
            for m in p.meters
        ]
        return out

    def meta_init(self) -> list[str]:
        # DP-IR metadata starts at zero on every packet.
        out = [f"meta.std.{n} = 0;" for n, _ in self.std_fields() if n not in ("ingress_port", "pkt_len")]
        return out + [f"meta.{ident(m.name)} = 0;" for m in self.p.metadata]

    def reject_state(self) -> str:
        # p4c-bm2-ss does not support an explicit ``transition reject`` (it warns, and
        # BMv2 then runs the ingress with no parser error: the packet goes on as if
        # accepted); ``verify(false, ...)`` sets the error the ingress checks.
        return "parse_reject"

    def parser_states(self, pkt: str = "pkt") -> list[str]:
        states = super().parser_states(pkt)
        if any("parse_reject" in st for st in states):
            states.append("state parse_reject {\n" + INDENT + "verify(false, error.NoMatch);  // DP-IR reject\n"
                          + INDENT + "transition accept;\n}")
        return states

    def program_text(self) -> str:
        p = self.p
        # Statements first: they may add notes and temporaries (std fields).
        body = self.control_body()
        actions = p4.indent_block("\n\n".join(self.action_decl(a) for a in p.actions), 1)
        return p4.template("v1model/program.p4.j2").render(
            name=ident(p.name),
            doc=(p.doc or f"DP-IR program {p.name}").replace("*/", "* /").splitlines()[0],
            header_types=self.header_types(),
            structs=self.structs(),
            meta_init=p4.indent_block("\n".join(self.meta_init()), 2),
            states=p4.indent_block("\n\n".join(self.parser_states()), 1),
            externs=p4.indent_block("\n".join(self.externs()), 1),
            actions=actions,
            tables=p4.indent_block("\n\n".join(self.table_decl(t) for t in p.tables), 1),
            body=p4.indent_block("\n".join(body), 3),
            deparse=self.deparse_headers(),
        )


# ---------------------------------------------------------------- control plane


def meter_configs(p: Program) -> list[dict]:
    """Every meter index's rates: CIR = PIR = the DP-IR rate, CBS = PBS = its burst."""
    return [
        {
            "meter": p4.qualified(m.name),
            "index": i,
            "rate_bps": m.rate_bps,
            "burst_bytes": m.burst_bytes,
        }
        for m in p.meters
        for i in range(m.size)
    ]


def _match(field: dict, cli: bool) -> str:
    """One key field of an entry as ``simple_switch_CLI`` (``cli``) or p4runtime-shell
    (text values) writes it; they differ only in exact values (hex vs decimal) and ranges."""
    if "exact" in field:
        return hex(field["exact"]) if cli else str(field["exact"])
    if "lpm" in field:
        v, n = field["lpm"]
        return f"{v:#x}/{n}"
    if "ternary" in field:
        v, m = field["ternary"]
        return f"{v:#x}&&&{m:#x}"
    lo, hi = field["range"]
    return f"{lo:#x}->{hi:#x}" if cli else f"{lo}..{hi}"


def cli_commands(p: Program) -> str:
    """``simple_switch_CLI < commands.txt``: runtime entries and meter rates.

    BMv2's CLI ranks ternary/range entries by the *smallest* priority value, the
    reverse of P4Runtime, so the best entry gets 1.
    """
    lines: list[str] = []  # the CLI has no comment syntax: commands only
    for t in p.tables:
        if t.const or not t.entries:
            continue
        records = p4.entry_records(p, t)
        for rank, r in enumerate(records, start=1):
            keys = " ".join(_match(m, cli=True) for m in r.matches)
            args = " ".join(hex(v) for _, v in r.params)
            prio = f" {rank}" if r.priority is not None else ""
            lines.append(f"table_add {r.table} {r.action} {keys} => {args}{prio}".replace("  ", " ").rstrip())
    for m in p.meters:
        # BMv2 byte meters take rates in bytes per microsecond and bursts in bytes.
        rate = m.rate_bps / 8 / 1e6
        for i in range(m.size):
            lines.append(
                f"meter_set_rates {p4.qualified(m.name)} {i} {rate:.9g}:{m.burst_bytes} {rate:.9g}:{m.burst_bytes}"
            )
    return "".join(line + "\n" for line in lines)


def p4runtime_script(p: Program) -> str:
    """A finsy script installing the pipeline, runtime entries and meter rates
    (:func:`mantra6g.targets.p4runtime.script`)."""
    from mantra6g.targets import p4runtime

    return p4runtime.script(p)

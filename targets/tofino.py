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
  ``% size`` is the low bits (a slice) for powers of two; otherwise (Tofino has no divider) four
  byte tables give ``byte × 2^(8k) mod size``, added up pairwise (one addition per
  stage: the odd bytes' tables add to the even ones'), and a range table subtracts the multiple of ``size``, which is exact;
* registers become ``Register`` + one ``RegisterAction`` per access; meters are
  ``Meter`` (byte, configured CIR = PIR so yellow never happens) whose colour
  ``GREEN=0``/``RED=3`` becomes DP-IR's 0/2 by masking bit 1;
* checksums: a chain of one's-complement additions does not fit one MAU stage, so
  the ingress only flags a header whose checksum DP-IR computes, and the deparser's
  ``Checksum`` extern computes it from the header's final fields, as Intel's switch.p4
  does: an IPv4 header's over its 20 bytes, a UDP/TCP/ICMP header's incrementally,
  from the residual the parser deposits (``subtract_all_and_deposit``: the arriving
  checksum less the fields the deparser adds back, the pseudo-header's addresses
  included);
* a parser ``verify`` that reads the packet length (IPv4 total length against the frame)
  is left out: the Tofino ingress has no packet length (a note says so);
* timestamps: ``ig_intr_md.ingress_mac_tstamp`` is already in ns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mantra6g.synth import dpir
from mantra6g.synth.checksums import pseudo_sources
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Const,
    CopyHeader,
    Count,
    Expr,
    Hash,
    If,
    MeterExec,
    OnesSum,
    Program,
    ReadTimestamp,
    Ref,
    RegisterRead,
    RegisterWrite,
    SetValid,
    Stmt,
)
from mantra6g.synth.dpir_check import validate
from mantra6g.synth.motion import hoist
from mantra6g.targets import p4
from mantra6g.targets.p4 import (
    INDENT,
    P4BackendError,
    P4Output,
    P4Printer,
    Summary,
    _Ctx,
    field_ref,
    ident,
    lit,
)
from mantra6g.targets.tofino_resources import LogicalTable, fits_gateway, logical_tables, place

TARGET = "tofino"
REGISTER_WIDTHS = (8, 16, 32)  # Tofino-1 stateful ALU cell widths
RESIDUAL_TYPES = ("udp", "tcp", "icmp")  # checksums that cover bytes the parser never reads


def emit(program: Program) -> P4Output:
    """The TNA P4 program, entries and resource summary for ``program``.

    Raises :class:`~mantra6g.targets.tofino_resources.TofinoResourceError` when the
    program cannot fit Tofino-1's 12 stages, :class:`~mantra6g.targets.p4.P4BackendError`
    for what TNA cannot express.
    """
    validate(program)
    _one_access_per_register(program)
    program = hoist(program)  # guarded pure work starts in the pipeline's first stages
    pr = TnaPrinter(program)
    text = pr.program_text()
    report = place(logical_tables(program, pr.resource_extras) + pr.epilogue_tables())
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
    # header -> its type, for headers whose checksum the deparser computes
    checksummed: dict[str, str] = field(default_factory=dict)
    # UDP/TCP/ICMP header -> the IP headers of its pseudo-header (none for ICMP)
    residual: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sums_in_mau: bool = False  # a one's-complement sum left to the ingress (not a checksum)
    salu_value: str | None = None  # the register value read, while a RegisterAction is printed

    def __post_init__(self) -> None:
        self.checksummed = _checksummed(self.p)
        for h, t in self.checksummed.items():
            if t in RESIDUAL_TYPES:
                self.residual[h] = self._pseudo_sources(h, t)
        if any(t not in RESIDUAL_TYPES for t in self.checksummed.values()):
            self.notes.append(
                "TNA: a rewritten IPv4 header's checksum is recomputed over its 20 bytes in the deparser: an "
                "arriving checksum error is corrected rather than carried over, and IPv4 options are not covered"
            )

    def _pseudo_sources(self, h: str, t: str) -> tuple[str, ...]:
        """The IP headers whose addresses ``h``'s checksum may cover, of which the parser
        extracts at most one (the deparser's checksum reads only valid headers' fields);
        refuses what the parser's residual cannot follow (a copied header, a rewritten
        length or protocol)."""
        sources = pseudo_sources(self.p, h) if t != "icmp" else []
        together = [(a, b) for a in sources for b in sources if a < b and _on_one_path(self.p, a, b)]
        if together:
            raise P4BackendError(
                f"program '{self.p.name}': the {t.upper()} checksum of '{h}' covers the pseudo-header of the "
                f"nearer of {' and '.join(together[0])}, which one packet may both carry; Tofino's deparser "
                "cannot choose: compile this device for bmv2 or xdp"
            )
        fixed = {f"{src}.{f}" for src in sources for f in ("proto", "len")} | ({f"{h}.len"} if t == "udp" else set())
        for s in dpir.walk(self.p):
            if isinstance(s, CopyHeader) and s.dst in (h, *sources):
                raise P4BackendError(
                    f"program '{self.p.name}' rewrites '{h}' after copying a header into '{s.dst}' (a "
                    "decapsulation): Tofino computes its checksum from what its parser read there; compile "
                    "this device for bmv2 or xdp"
                )
            if isinstance(s, Assign) and s.target in fixed:
                raise P4BackendError(
                    f"program '{self.p.name}' writes {s.target}, which the {t.upper()} checksum of '{h}' covers "
                    "and Tofino's deparser does not add back: compile this device for bmv2 or xdp"
                )
        return tuple(sources)

    def sum_stmts(self, e: Expr, ctx: _Ctx) -> list[str]:
        out = super().sum_stmts(e, ctx)
        self.sums_in_mau = self.sums_in_mau or bool(out)
        return out

    def std_fields(self) -> list[tuple[str, int]]:
        # printed after the control (program_text): the sum temporary only if still used
        return [f for f in super().std_fields() if f != ("csum", 32) or self.sums_in_mau]

    def checksums_only(self, body) -> bool:
        return all((_computes_checksum(x) and x.target.rpartition(".")[0] in self.checksummed)
                   or (isinstance(x, If) and (_zero_to_ones(x, self.checksummed)
                                              or (not x.orelse and self.checksums_only(x.then))))
                   for x in body)

    def control_body(self) -> list[str]:
        out = super().control_body()
        for h in (h for h, t in self.checksummed.items() if t == "udp"):
            out.append(f"if ({field_ref(h + '.checksum')} == 16w0) {{ {self.flag(h)} = 1w0; }}  // none (RFC 768)")
        return out

    def flag(self, h: str) -> str:
        return f"meta.std.{ident(h)}_checksum_update"

    def checksum_fields(self, h: str) -> list[str]:
        ht = self.p.header(h).header_type
        return [field_ref(f"{h}.{f.name}") for f in ht.fields if f.name != "checksum"]

    def stmt(self, s: Stmt, ctx: _Ctx) -> list[str]:
        if _computes_checksum(s) and s.target.rpartition(".")[0] in self.checksummed:
            return [f"{self.flag(s.target.rpartition('.')[0])} = 1w1;  // {s.target}: the deparser computes it"]
        if isinstance(s, If) and _zero_to_ones(s, self.checksummed):
            return []  # the deparser's zeros_as_ones
        if isinstance(s, If) and not s.orelse and self.checksums_only(s.then):
            # Guards of checksum updates (a UDP checksum of 0 stays 0; which IP header is
            # the pseudo-header's) are left out: Tofino takes no such condition in an
            # action, recomputing an unchanged header's checksum gives it back, and a UDP
            # checksum of 0 clears the flag at the end of the ingress (control_body).
            return self.stmts(s.then, ctx)
        if isinstance(s, If) and not ctx.in_action and not fits_gateway(self.p, s.cond, ctx.params):
            return self.split_condition(s, ctx)
        out = super().stmt(s, ctx)
        if isinstance(s, CopyHeader) and s.dst in self.checksummed:
            out.append(f"{self.flag(s.dst)} = {self.flag(s.src) if s.src in self.checksummed else '1w0'};")
        return out

    def split_condition(self, s: If, ctx: _Ctx) -> list[str]:
        """An ``if`` whose condition reads more than one gateway can: each comparison
        is evaluated first into a flag (its own gateway), and the ``if`` tests the
        flags. Conditions have no side effects, and a flag for a field of an invalid
        header is only read next to that header's validity, as the comparison was."""
        flags: dict[Expr, str] = {}
        out = []
        for atom in _comparisons(s.cond):
            if atom not in flags:
                flag = self.fresh("cond")
                # A byte each: bf-p4c puts tables writing bits of one PHV container in
                # successive stages (nf:classifier: 7 stages with 1-bit flags, 5 with bytes).
                self.temps.append((flag, 8))
                if fits_gateway(self.p, atom, ctx.params):
                    out.append(f"if ({self.cond(atom, ctx)}) {{ meta.std.{flag} = 8w1; }}")
                else:
                    out.append(self.atom_table(atom, flag, ctx))
                flags[atom] = f"meta.std.{flag} == 8w1"
        return out + self.if_stmt(s, ctx, self.flag_cond(s.cond, flags, ctx))

    def atom_table(self, atom: Expr, flag: str, ctx: _Ctx) -> str:
        """A comparison no gateway can make (a range on more than 12 bits, an equality on
        more than 4 bytes) as a one-entry table setting ``flag``: a range, exact or
        ternary match of the field against the constant."""
        rel = _field_relation(atom)
        if rel is None:
            raise P4BackendError(
                f"program '{self.p.name}': the condition {self.cond(atom, ctx)} compares more than a Tofino "
                "gateway can (4 bytes, 12 bits of ranges) and is not a field against a constant: compile this "
                "device for bmv2 or xdp"
            )
        path, mask, op, c = rel
        w = self.p.width_of(path, ctx.params)
        top = (1 << w) - 1
        mask = top if mask < 0 else mask & top
        key = self.ref(path, ctx)
        set_, none = f"{flag}_set", f"{flag}_keep"
        self.extra_actions.append(f"action {set_}() {{\n{INDENT}meta.std.{flag} = 8w1;\n}}")
        self.extra_actions.append(f"action {none}() {{\n}}")
        default = none
        if op in ("==", "!="):
            kind = "exact" if mask == top else "ternary"
            match = lit(c, w) if mask == top else f"{lit(c, w)} &&& {lit(mask, w)}"
            # a constant with bits outside the mask is never equal: no entry
            entries = [f"{match}: {none if op == '!=' else set_}();"] if not c & ~mask else []
            default = set_ if op == "!=" else none
        else:
            kind = "range"
            lo, hi = {"<": (0, c - 1), "<=": (0, c), ">": (c + 1, top), ">=": (c, top)}[op]
            entries = [f"{lit(lo, w)} .. {lit(hi, w)}: {set_}();"] if lo <= hi else []
        body = "\n".join(INDENT * 2 + e for e in entries)
        self.extra_tables.append(
            f"// {self.cond(atom, ctx)}\n"
            f"table {flag}_match {{\n{INDENT}key = {{\n{INDENT * 2}{key}: {kind};\n{INDENT}}}\n"
            f"{INDENT}actions = {{\n{INDENT * 2}{set_};\n{INDENT * 2}{none};\n{INDENT}}}\n"
            f"{INDENT}const default_action = {default}();\n{INDENT}size = 1;\n"
            f"{INDENT}const entries = {{\n{body}\n{INDENT}}}\n}}"
        )
        return f"{flag}_match.apply();"

    def flag_cond(self, e: Expr, flags: dict[Expr, str], ctx: _Ctx) -> str:
        if e in flags:
            return flags[e]
        if isinstance(e, dpir.UnOp) and e.op == "!":
            return f"!{p4.paren(self.flag_cond(e.operand, flags, ctx))}"
        if isinstance(e, BinOp) and e.op in dpir.LOGIC_OPS:
            return f"{p4.paren(self.flag_cond(e.left, flags, ctx))} {e.op} {p4.paren(self.flag_cond(e.right, flags, ctx))}"
        return self.cond(e, ctx)  # a validity bit

    def epilogue_tables(self) -> list[LogicalTable]:
        """What follows the program's tables, as bf-p4c (p4c 1.2.5.16) places it: the
        leave-or-drop gateway after the last table deciding it, its drop a stage later,
        and the deparser checksums' update conditions after that (measured on the test
        corpus, tests/targets/test_tools.py)."""
        fate = frozenset({"std.drop", "std.forwarded"})
        out = [LogicalTable("epilogue (leave or drop)", "action", fate, frozenset({"std.egress_port"}),
                            frozenset({"std.leave"})),
               LogicalTable("epilogue (drop)", "action", frozenset({"std.leave"}), frozenset(), frozenset({"std.drop_ctl"}))]
        if self.checksummed:
            flags = frozenset(f"{h}.checksum" for h in self.checksummed) | {"std.drop_ctl"}
            out.append(LogicalTable("deparser checksum conditions", "action", flags, frozenset(), frozenset()))
        return out

    def after_extract(self, st: dpir.ParserState) -> list[str]:
        out = []
        for h, sources in self.residual.items():
            ck = f"{ident(h)}_residual_csum"
            for src in (x for x in sources if x in st.extract):
                out.append(f"{ck}.subtract({{{field_ref(src + '.src')}, {field_ref(src + '.dst')}}});")
            if h in st.extract:
                out += [
                    f"{ck}.subtract_all_and_deposit(meta.std.{ident(h)}_residual);",
                    f"{ck}.subtract({{{field_ref(h + '.checksum')}}});",
                    f"{ck}.subtract({{{', '.join(self.checksum_fields(h))}}});",
                ]
        return out

    def parser_externs(self) -> list[str]:
        return [f"Checksum() {ident(h)}_residual_csum;" for h in self.residual]

    def deparser_checksums(self) -> tuple[list[str], list[str]]:
        """The deparser's ``Checksum`` declarations and updates, in deparse order."""
        decls, lines = [], []
        for h in [h for h in self.p.deparse if h in self.checksummed]:
            t, ck = self.checksummed[h], f"{ident(h)}_csum"
            data = self.checksum_fields(h)
            if h in self.residual:
                pseudo = [field_ref(f"{src}.{f}") for src in self.residual[h] for f in ("src", "dst")]
                data = pseudo + data + [f"meta.std.{ident(h)}_residual"]
            zeros = ", true" if t == "udp" else ""  # a computed 0 is sent as all ones (RFC 768)
            decls.append(f"Checksum() {ck};")
            lines.append(f"if ({self.flag(h)} == 1w1) {{\n{INDENT}{field_ref(h + '.checksum')} = "
                         f"{ck}.update({{{', '.join(data)}}}{zeros});\n}}")
        return decls, lines

    def assign(self, target: str, e, ctx) -> str:
        # bf-p4c refuses a comparison cast to bits as an assignment's source ("source of
        # modify_field invalid"): a condition selects the constant instead.
        if self.is_bool(e):
            ref = self.ref(target, ctx)
            return f"if ({self.cond(e, ctx)}) {{ {ref} = 1; }} else {{ {ref} = 0; }}"
        masked = _masked_field(e)
        w = self.p.width_of(target, ctx.params)
        if masked is not None and self.width(masked[0], ctx) == w:
            # `x = y & mask` as slice copies and zeroed slices: an AND beside the other
            # writes to the container is a second instruction on it, which bf-p4c refuses
            # (the load balancer's outer header: flags = inner flags & DF)
            ref, src = self.ref(target, ctx), self.ref(masked[0].path, ctx)
            return " ".join(f"{ref}[{hi}:{lo}] = {f'{src}[{hi}:{lo}]' if keep else lit(0, hi - lo + 1)};"
                            for lo, hi, keep in _runs(masked[1] & ((1 << w) - 1), w))
        return super().assign(target, e, ctx)

    def stmts(self, body, ctx: _Ctx) -> list[str]:
        out: list[str] = []
        skip = False
        for i, s in enumerate(body):
            if skip:
                skip = False  # the write fused into the read before it
            elif isinstance(s, SetValid):
                # DP-IR zeroes a pushed header; fields the body then sets are not zeroed
                # first (bf-p4c: "repeated lvalue", then no instruction for the slices)
                h = ident(s.header)
                later = _set_after(body[i + 1:], s.header)
                out.append(f"hdr.{h}.setValid();")
                out += [f"hdr.{h}.{ident(f.name)} = 0;" for f in self.p.header(s.header).header_type.fields
                        if f.name not in later]
                if s.header in self.checksummed:
                    out.append(f"{self.flag(s.header)} = 1w0;")
            elif isinstance(s, RegisterRead) and (
                    update := fusable(self.p, s, body[i + 1] if i + 1 < len(body) else None, ctx.params)):
                out += self.register_update(s, *update, ctx)
                skip = True
            else:
                out += self.stmt(s, ctx)
        return out

    def register_update(self, s: RegisterRead, cond: Expr | None, value: Expr, renew: bool, ctx: _Ctx) -> list[str]:
        """``target = r[i]; [if (cond)] { r[i] = value; [target = value;] }`` as one
        RegisterAction: the value read is the SALU's ``value`` (Tofino accesses a register
        once per packet), and it returns the old value or, with ``renew``, the new one."""
        reg = self.p.register(s.register)
        w = reg.width
        act = self.fresh(f"{ident(reg.name)}_update")
        self.salu_value = s.target
        try:
            write = f"value = {self.value(value, ctx, w)};"
            body = f"if ({self.cond(cond, ctx)}) {{ {write} }}" if cond is not None else write
        finally:
            self.salu_value = None
        self.externs.append(
            f"RegisterAction<bit<{w}>, bit<32>, bit<{w}>>({ident(reg.name)}) {act} = {{\n"
            f"{INDENT}void apply(inout bit<{w}> value, out bit<{w}> rv) {{\n"
            + (f"{INDENT * 2}{body}\n{INDENT * 2}rv = value;\n" if renew else f"{INDENT * 2}rv = value;\n{INDENT * 2}{body}\n")
            + f"{INDENT}}}\n}};"
        )
        first, index = self.index(s.index, reg.size, ctx)
        return first + [f"{self.ref(s.target, ctx)} = {act}.execute({index});"]

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def reject_state(self) -> str:
        return "parse_reject"

    def extra_std_fields(self) -> list[tuple[str, int]]:
        flags = [(f"{ident(h)}_checksum_update", 1) for h in self.checksummed]
        return [("parser_reject", 1)] + flags + [(f"{ident(h)}_residual", 16) for h in self.residual] + self.temps

    def parser_verify(self, st) -> list[str]:
        if st.verify is not None and "std.pkt_len" in {e.path for e in p4.iter_exprs(st.verify) if isinstance(e, p4.Ref)}:
            self.notes.append("TNA: the IPv4 total length is not checked against the frame (no packet length in the ingress)")
            return []
        return super().parser_verify(st)

    def ref(self, path: str, ctx: _Ctx) -> str:
        if path == self.salu_value:
            return "value"
        if path == "std.pkt_len":
            raise P4BackendError(
                f"program '{self.p.name}' reads std.pkt_len: the Tofino ingress has no packet length"
            )
        return super().ref(path, ctx)

    def index(self, e: Expr, size: int, ctx: _Ctx) -> tuple[list[str], str]:
        """(statements first, the index) of an extern access: bf-p4c takes a field (or a
        constant) as the index, so anything else is computed into a temporary first
        (dpir:wrapped: "the index is too complex")."""
        if isinstance(e, p4.Const):
            return [], lit(e.value % size, 32)
        w = self.width(e, ctx)
        text = self.value(e, ctx, 32)
        if (1 << w) > size:
            if size & (size - 1) == 0:
                text = f"{p4.paren(text)} & {lit(size - 1, 32)}"
            else:
                self.notes.append(f"an index wider than its {size}-cell extern is not wrapped on Tofino (the "
                                  "interpreter wraps)")
        if isinstance(e, Ref) and text == self.value(e, ctx, 32):
            return [], text
        temp = self.fresh("index")
        self.temps.append((temp, 32))
        return [f"meta.std.{temp} = {text};"], f"meta.std.{temp}"

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
        if s.size == 1:
            return out + [f"{target} = {lit(s.base, tw)};"]
        if s.size & (s.size - 1) == 0:
            # the hash's low bits as a slice: one addition in the action (a mask and an
            # addition would be two, which bf-p4c cannot place in one stage)
            out.append(f"{target} = {base}(bit<{tw}>)meta.std.{name}[{s.size.bit_length() - 2}:0];")
            return out
        if ctx.in_action:
            raise P4BackendError(
                f"program '{self.p.name}': hash modulo {s.size} inside an action; Tofino computes a "
                "modulo by a non power of two with tables, which an action cannot apply"
            )
        return out + self.hash_modulo(name, s, target, tw)

    def hash_modulo(self, name: str, s: Hash, target: str, tw: int) -> list[str]:
        """``target = base + hash % size`` without a divider: byte k of the hash
        contributes ``byte × 2^(8k) mod size`` (four exact tables), their sum (< 4 × size)
        is added up pairwise (one addition per MAU stage, the odd bytes' tables adding
        theirs to the even ones'), and a range table subtracts
        the multiple of ``size`` and adds ``base`` in one addition (modulo 2^width)."""
        size = s.size
        sw = (4 * size - 1).bit_length()
        lines, extras = [], []
        for k in range(4):
            # Odd bytes add their part to the even byte's (bf-p4c puts a table reading
            # another's result in a later stage): two tables' worth of additions.
            pair = f"{name}_r{k - 1}{k}"
            part, value = (pair, f"meta.std.{name}_r{k - 1} + r") if k % 2 else (f"{name}_r{k}", "r")
            self.temps.append((part, sw))
            self.extra_actions.append(f"action {name}_set_r{k}(bit<{sw}> r) {{\n{INDENT}meta.std.{part} = {value};\n}}")
            entries = "\n".join(
                f"{INDENT * 2}{lit(b, 8)}: {name}_set_r{k}({lit((b << (8 * k)) % size, sw)});" for b in range(256)
            )
            self.extra_tables.append(
                f"// byte {k} of {name}: its contribution to {name} mod {size}\n"
                f"table {name}_byte{k} {{\n{INDENT}key = {{\n{INDENT * 2}meta.std.{name}[{8 * k + 7}:{8 * k}]: exact;\n"
                f"{INDENT}}}\n{INDENT}actions = {{\n{INDENT * 2}{name}_set_r{k};\n{INDENT}}}\n"
                f"{INDENT}size = 256;\n{INDENT}const entries = {{\n{entries}\n{INDENT}}}\n}}"
            )
            lines.append(f"{name}_byte{k}.apply();")
            added = frozenset({f"std.{name}_r{k - 1}"} if k % 2 else set())
            extras.append(LogicalTable(f"{name}_byte{k}", "hash_mod", frozenset({f"std.{name}"}), added,
                                       frozenset({f"std.{part}"}), sram=2))
        self.temps.append((f"{name}_sum", sw))
        lines.append(f"meta.std.{name}_sum = meta.std.{name}_r01 + meta.std.{name}_r23;")
        extras.append(LogicalTable(f"{name}_sum", "action", frozenset(),
                                   frozenset({f"std.{name}_r01", f"std.{name}_r23"}), frozenset({f"std.{name}_sum"})))
        self.extra_actions.append(
            f"action {name}_reduce(bit<{tw}> delta) {{\n"
            f"{INDENT}{target} = (bit<{tw}>)meta.std.{name}_sum + delta;\n}}"
        )
        entries = "\n".join(
            f"{INDENT * 2}{lit(j * size, sw)} .. {lit((j + 1) * size - 1, sw)}: "
            f"{name}_reduce({lit((s.base - j * size) % (1 << tw), tw)});"
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
        first, index = self.index(s.index, reg.size, ctx)
        value = f"{act}.execute({index})"
        if sw != reg.width:
            value = f"(bit<{reg.width}>){value}"
        return first + [f"{self.ref(s.target, ctx)} = {value};"]

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
        first, index = self.index(s.index, reg.size, ctx)
        return first + [f"meta.std.{temp} = {self.value(s.value, ctx, sw)};", f"{act}.execute({index});"]

    def count(self, s: Count, ctx: _Ctx) -> list[str]:
        c = self.p.counter(s.counter)
        first, index = self.index(s.index, c.size, ctx)
        return first + [f"{ident(c.name)}.count({index});"]

    def meter(self, s: MeterExec, ctx: _Ctx) -> list[str]:
        m = self.p.meter(s.meter)
        w = self.p.width_of(s.target, ctx.params)
        # MeterColor_t: GREEN = 0, YELLOW = 1, RED = 3; bit 1 gives DP-IR's 0 / 2.
        first, index = self.index(s.index, m.size, ctx)
        colour = f"{ident(m.name)}.execute({index}) & 8w2"
        return first + [f"{self.ref(s.target, ctx)} = (bit<{w}>)({colour});"]

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

    def pragmas(self) -> list[str]:
        """bf-p4c packs 1-bit metadata (the NFs' visit flags, drop) into shared PHV
        containers, and tables writing bits of one container go to successive stages:
        each gets a container of its own (merged:tunnel: 11 stages, 10 with this)."""
        flags = [f"meta.std.{n}" for n, w in self.std_fields() if w == 1]
        flags += [f"meta.{ident(m.name)}" for m in self.p.metadata if m.width == 1]
        return [f'@pa_solitary("ingress", "{f}")' for f in flags]

    def program_text(self) -> str:
        p = self.p
        body = self.control_body()  # first: it declares externs, temporaries, tables
        actions = [self.action_decl(a) for a in p.actions]  # may declare more externs
        parser = self.parser_text()
        checksum_decls, checksums = self.deparser_checksums()
        return p4.template("tna/program.p4.j2").render(
            name=ident(p.name),
            doc=(p.doc or f"DP-IR program {p.name}").replace("*/", "* /").splitlines()[0],
            header_types=self.header_types(),
            structs=self.structs(),
            pragmas="".join(f"{x}\n" for x in self.pragmas()),
            meta_init=p4.indent_block("\n".join(self.meta_init()), 2),
            states=p4.indent_block(parser, 1),
            externs=p4.indent_block("\n".join(self.stateful_externs() + self.externs), 1),
            actions=p4.indent_block("\n\n".join(actions + self.extra_actions), 1),
            tables=p4.indent_block("\n\n".join([self.table_decl(t) for t in p.tables] + self.extra_tables), 1),
            body=p4.indent_block("\n".join(body), 3),
            deparse=self.deparse_headers(),
            parser_externs=p4.indent_block("\n".join(self.parser_externs()), 1),
            deparser_externs=p4.indent_block("\n".join(checksum_decls), 1),
            checksums=p4.indent_block("\n".join(checksums), 2),
        )


def _set_after(body, h: str) -> set[str]:
    """The fields of ``h`` that the leading statements of ``body`` set before anything
    reads them (whose zero nothing can see): assignments, timestamps, and ``if``s that
    set a field in both branches (the monitor's ``mtel.type_`` from the VLAN's or the
    Ethernet header's type; a zeroing first costs bf-p4c a stage)."""
    out, read = set(), set()

    def reads(e: Expr) -> set[str]:
        return {x.path[len(h) + 1:] for x in p4.iter_exprs(e) if isinstance(x, Ref) and x.path.startswith(h + ".")}

    for s in body:
        if isinstance(s, Assign):
            read |= reads(s.value) - out
            target = s.target
        elif isinstance(s, ReadTimestamp):
            target = s.target
        elif isinstance(s, If) and s.orelse:
            read |= reads(s.cond) - out
            both = _set_after(s.then, h) & _set_after(s.orelse, h)
            if not all(isinstance(x, (Assign, ReadTimestamp)) or (isinstance(x, If) and x.orelse)
                       for x in dpir.walk_body(s.then + s.orelse)):
                break  # a branch does more than set fields: stop here
            read |= {r for x in dpir.walk_body(s.then + s.orelse) if isinstance(x, Assign) for r in reads(x.value)} - out
            out |= both
            continue
        else:
            break
        if target.startswith(h + "."):
            out.add(target[len(h) + 1:])
    return out - read


def _masked_field(e: Expr) -> tuple[Ref, int] | None:
    """(field, mask) when ``e`` is ``field & constant``."""
    if isinstance(e, BinOp) and e.op == "&":
        for f, m in ((e.left, e.right), (e.right, e.left)):
            if isinstance(f, Ref) and isinstance(m, Const) and not f.path.startswith("param."):
                return f, m.value
    return None


def _runs(mask: int, w: int) -> list[tuple[int, int, bool]]:
    """The runs of equal bits of a ``w``-bit mask, low first: (lo, hi, bits set)."""
    out, lo = [], 0
    for i in range(1, w + 1):
        if i == w or (mask >> i & 1) != (mask >> lo & 1):
            out.append((lo, i - 1, bool(mask >> lo & 1)))
            lo = i
    return out


def _on_one_path(p: Program, a: str, b: str) -> bool:
    """Whether one walk through the parser can extract both headers."""
    states = {st.name: st for st in p.parser}

    def reach(name: str, seen: set[str]) -> set[str]:
        st = states.get(name)
        if st is not None and name not in seen:
            seen.add(name)
            for nxt in (*(c.next for c in st.cases), st.default):
                reach(nxt, seen)
        return seen

    def extracting(h: str) -> list[str]:
        return [st.name for st in p.parser if h in st.extract]

    return any(t in reach(s, set()) for x, y in ((a, b), (b, a)) for s in extracting(x) for t in extracting(y))


def _computes_checksum(s: Stmt) -> bool:
    """``h.checksum = ...`` from a one's-complement sum (synth/checksums.py writes these)."""
    return (isinstance(s, Assign) and s.target.endswith(".checksum")
            and any(isinstance(e, OnesSum) for e in p4.iter_exprs(s.value)))


def _checksummed(p: Program) -> dict[str, str]:
    return {s.target.rpartition(".")[0]: p.header(s.target.rpartition(".")[0]).type
            for s in dpir.walk(p) if _computes_checksum(s)}


def fusable(p: Program, read: RegisterRead, nxt: Stmt | None,
            params: tuple[dpir.ActionParam, ...] = ()) -> tuple[Expr | None, Expr, bool] | None:
    """(condition, value, whether the read target takes the new value) when ``nxt``
    writes the register ``read`` just read, at the same index, from the value read,
    fields and constants (``[if (c)] { r[i] = v; [t = v;] }``): one RegisterAction
    can do both (TnaPrinter.register_update), one stateful-ALU access."""
    write, cond, renew = nxt, None, False
    if isinstance(nxt, If) and not nxt.orelse and len(nxt.then) in (1, 2):
        write, cond = nxt.then[0], nxt.cond
        if len(nxt.then) == 2:
            if not (isinstance(write, RegisterWrite) and nxt.then[1] == Assign(read.target, write.value)):
                return None
            renew = True
    if not (isinstance(write, RegisterWrite) and write.register == read.register and write.index == read.index):
        return None
    reg = p.register(read.register)
    exprs = [write.value] + ([cond] if cond is not None else [])
    refs = {e.path for x in exprs for e in p4.iter_exprs(x) if isinstance(e, Ref)}
    if (_storage_width(reg.name, reg.width) != reg.width or p.width_of(read.target, params) != reg.width
            or any(r.startswith("param.") for r in refs)
            or read.target in {e.path for e in p4.iter_exprs(read.index) if isinstance(e, Ref)}):
        return None
    return cond, write.value, renew


def _one_access_per_register(p: Program) -> None:
    """Refuses a program that accesses one register twice on one packet's path: Tofino's
    stateful ALU reaches a register once per packet (a read and the write of the same
    cell just after it fuse into one ``RegisterAction``: :func:`fusable`)."""
    def path_max(body, params: tuple[dpir.ActionParam, ...] = ()) -> Counter:
        total: Counter = Counter()
        skip = False
        for i, s in enumerate(body):
            if skip:
                skip = False
                continue
            here: Counter = Counter()
            if isinstance(s, (RegisterRead, RegisterWrite)):
                here[s.register] = 1
                nxt = body[i + 1] if i + 1 < len(body) else None
                skip = isinstance(s, RegisterRead) and fusable(p, s, nxt, params) is not None
            elif isinstance(s, If):
                here = path_max(s.then, params) | path_max(s.orelse, params)
            elif isinstance(s, dpir.Apply):
                t = p.table(s.table)
                for a in map(p.action, {*t.actions, t.default.action}):
                    here |= path_max(a.body, a.params)
                here.update(path_max(s.on_hit) | path_max(s.on_miss))
            elif isinstance(s, dpir.Call):
                a = p.action(s.action)
                here = path_max(a.body, a.params)
            total.update(here)
        return total

    twice = [r for r, n in path_max(p.control).items() if n > 1]
    if twice:
        raise P4BackendError(
            f"program '{p.name}' accesses register '{twice[0]}' more than once on one packet's path; Tofino's "
            "stateful ALU reaches a register once per packet (a read and a write of the same cell just after it "
            "are one access): compile this device for bmv2 or xdp"
        )


def _field_relation(e: Expr) -> tuple[str, int, str, int] | None:
    """``(field, mask, op, constant)`` when ``e`` is ``field op c`` or ``(field & m) op c``
    (the constant on either side; a mask only with ``==``/``!=``)."""
    if not (isinstance(e, BinOp) and e.op in dpir.COMPARE_OPS):
        return None
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
    left, op, right = e.left, e.op, e.right
    if isinstance(left, Const):
        left, op, right = right, flip[op], left
    if not isinstance(right, Const):
        return None
    if isinstance(left, Ref):
        return left.path, -1, op, right.value
    if (isinstance(left, BinOp) and left.op == "&" and isinstance(left.left, Ref) and isinstance(left.right, Const)
            and op in ("==", "!=")):
        return left.left.path, left.right.value, op, right.value
    return None


def _comparisons(e: Expr) -> list[Expr]:
    """The operands of a condition's ``&&``, ``||`` and ``!`` that are not validity bits."""
    if isinstance(e, dpir.UnOp) and e.op == "!":
        return _comparisons(e.operand)
    if isinstance(e, BinOp) and e.op in dpir.LOGIC_OPS:
        return _comparisons(e.left) + _comparisons(e.right)
    return [] if isinstance(e, dpir.IsValid) else [e]


def _zero_to_ones(s: If, checksummed: dict[str, str]) -> bool:
    """``if (udp.checksum == 0) udp.checksum = 0xFFFF``: what ``zeros_as_ones`` does."""
    c = s.cond
    if not (isinstance(c, BinOp) and c.op == "==" and isinstance(c.left, Ref) and c.right == Const(0, 16)):
        return False
    h = c.left.path.rpartition(".")[0]
    return (checksummed.get(h) == "udp" and c.left.path == f"{h}.checksum" and not s.orelse
            and s.then == (Assign(c.left.path, Const(0xFFFF, 16)),))

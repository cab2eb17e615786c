"""latency_monitor: in-network one-way delay of a slice.

Lowering: a ``source`` inserts the telemetry shim (``mtel``) with the ingress
timestamp into sampled packets; a ``sink`` computes now - timestamp, removes the shim
and records the delay per slice in registers (sum, count, max) and histogram buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

from mantra6g.serde import tagged
from mantra6g.synth import ast
from mantra6g.synth.dpir import (
    Assign,
    BinOp,
    Cast,
    Const,
    Count,
    Counter,
    If,
    IsValid,
    ReadTimestamp,
    Ref,
    Register,
    RegisterRead,
    RegisterWrite,
    SetInvalid,
    SetValid,
    UnOp,
)
from mantra6g.synth.compose import copy_type_before, set_type_before
from mantra6g.synth.headers import ETHER_TYPES
from mantra6g.synth.nf.base import Choice, ListOf, NfKind, OneIn, Quantity, param, param_span
from mantra6g.synth.values import Reporter

US = 1_000
MS = 1_000_000
DEFAULT_BUCKETS = (100 * US, 250 * US, 500 * US, 1 * MS, 2 * MS, 5 * MS, 10 * MS)
MAX_BUCKETS = 15  # plus an overflow bucket: 16 fit the 4-bit histogram index
SATURATED = (1 << 32) - 1  # delays of 2^32 - 1 ns (4.29 s) or more are recorded as this


@tagged("latency_monitor.params")
@dataclass(frozen=True)
class LatencyMonitorParams:
    role: str = param(Choice(("source", "sink")), "source stamps, sink measures")
    sample: int = param(OneIn(), "share of packets stamped, as 1/N (stored as N)", default=1)
    buckets: tuple[int, ...] = param(
        ListOf(Quantity("time")), "upper bounds of the delay histogram's buckets (ns)", default=DEFAULT_BUCKETS
    )


def _check(params: LatencyMonitorParams, rules: tuple, decl: ast.NfDecl, report: Reporter) -> None:
    b = params.buckets
    if not b or len(b) > MAX_BUCKETS:
        report.error(param_span(decl, "buckets"), f"buckets needs 1 to {MAX_BUCKETS} bounds, got {len(b)}")
    elif any(x >= y for x, y in zip(b, b[1:])):
        report.error(param_span(decl, "buckets"), "bucket bounds must increase strictly", "e.g. [100us, 500us, 1ms]")
    elif b[-1] >= SATURATED:
        report.error(param_span(decl, "buckets"), f"bucket bounds must be below {SATURATED} ns (4.29 s)",
                     "delays are recorded in 32 bits; longer ones land in the overflow bucket")


def _check_in_graph(nf, graph, slice_, report: Reporter) -> None:
    if nf.params.role != "sink":
        return
    sources = [n for n in graph.upstream(nf.name) if graph.nf(n).kind == "latency_monitor" and graph.nf(n).params.role == "source"]
    if not sources:
        report.error(
            nf.span,
            f"latency monitor sink '{nf.name}' has no source upstream of it",
            "add a latency_monitor(role: source) earlier in the chain",
        )




# ---------------------------------------------------------------- lowering

SLICES = 256  # per-slice records are indexed by the 8-bit slice id carried in the shim
BUCKET_BITS = 4  # histogram index = slice << 4 | bucket (the last bucket counts overflow)


def _source(nf, low) -> tuple:
    stamp = (
        SetValid("mtel"),
        Assign("mtel.slice", Ref("meta.slice")),
        Assign("mtel.flags", Const(0, 8)),
        *copy_type_before("mtel", "mtel.type"),
        *set_type_before("mtel", Const(ETHER_TYPES["mtel"], 16)),
        ReadTimestamp("mtel.ts"),
    )
    if nf.params.sample == 1:
        return (If(UnOp("!", IsValid("mtel")), stamp),)
    # 1 in N: a packet counter per source; N is a power of two.
    seq = low.meta("seq", 32)
    reg = low.name("seq")
    low.registers.append(Register(reg, 32, 1))
    return (
        RegisterRead(seq, reg, Const(0, 1)),
        RegisterWrite(reg, Const(0, 1), BinOp("+", Ref(seq), Const(1, 32))),
        If(
            BinOp("&&", UnOp("!", IsValid("mtel")), BinOp("==", BinOp("&", Ref(seq), Const(nf.params.sample - 1, 32)), Const(0, 32))),
            stamp,
        ),
    )


SUM_WORDS = ("delay_sum_lo", "delay_sum_hi")  # the 64-bit sum as two 32-bit registers


def delay_sum(read) -> int:
    """The sink's sum of delays (ns) from its two 32-bit words; ``read(suffix)`` gives a
    register's value (as the controller holds it: a word that carried state across
    migrations may exceed 32 bits, and the sum is still exact)."""
    lo, hi = (read(w) for w in SUM_WORDS)
    return (hi << 32) + lo


def _sink(nf, low) -> tuple:
    """Every register is 32 bits wide, as Tofino-1's register cells are, so the program
    is the same on every target: the delay saturates at 2^32 - 1 ns, the sum is a
    low and a high word (the high word takes the low word's carry), and each register
    is read and written once per packet (one stateful-ALU access on Tofino)."""
    now, delay, high, d = low.meta("now", 64), low.meta("delay", 64), low.meta("delay_high", 32), low.meta("delay32", 32)
    lo, hi, room = low.meta("sum_lo", 32), low.meta("sum_hi", 32), low.meta("sum_room", 32)
    count, peak = low.meta("count", 32), low.meta("max", 32)
    bucket, index = low.meta("bucket", BUCKET_BITS), low.meta("hist_index", 8 + BUCKET_BITS)
    regs = {name: low.name(name) for name in (*SUM_WORDS, "delay_count", "delay_max")}
    low.registers += [Register(regs[name], 32, SLICES) for name in regs]
    hist = low.name("histogram")
    low.counters.append(Counter(hist, SLICES << BUCKET_BITS))
    slice_ = Ref("mtel.slice")
    buckets = nf.params.buckets
    # bucket = index of the first bound >= delay, else the overflow bucket len(buckets)
    choose: tuple = (Assign(bucket, Const(len(buckets), BUCKET_BITS)),)
    for i, bound in reversed(list(enumerate(buckets))):
        choose = (If(BinOp("<=", Ref(d), Const(bound, 32)), (Assign(bucket, Const(i, BUCKET_BITS)),), choose),)
    body = (
        ReadTimestamp(now),
        Assign(delay, BinOp("-", Ref(now), Ref("mtel.ts"))),
        Assign(high, Cast(BinOp(">>", Ref(delay), Const(32, 8)), 32)),
        If(BinOp("!=", Ref(high), Const(0, 32)), (Assign(d, Const(SATURATED, 32)),), (Assign(d, Cast(Ref(delay), 32)),)),
        # lo + d wraps exactly when lo > 2^32 - 1 - d (= ~d): carry into the high word.
        Assign(room, UnOp("~", Ref(d))),
        RegisterRead(lo, regs["delay_sum_lo"], slice_),
        RegisterWrite(regs["delay_sum_lo"], slice_, BinOp("+", Ref(lo), Ref(d))),
        RegisterRead(hi, regs["delay_sum_hi"], slice_),
        If(BinOp(">", Ref(lo), Ref(room)),
           (RegisterWrite(regs["delay_sum_hi"], slice_, BinOp("+", Ref(hi), Const(1, 32))),)),
        RegisterRead(count, regs["delay_count"], slice_),
        RegisterWrite(regs["delay_count"], slice_, BinOp("+", Ref(count), Const(1, 32))),
        RegisterRead(peak, regs["delay_max"], slice_),
        If(BinOp(">", Ref(d), Ref(peak)), (RegisterWrite(regs["delay_max"], slice_, Ref(d)),)),
        *choose,
        Assign(index, BinOp("|", BinOp("<<", Cast(slice_, 8 + BUCKET_BITS), Const(BUCKET_BITS, 8)), Cast(Ref(bucket), 8 + BUCKET_BITS))),
        Count(hist, Ref(index)),
        # Remove the shim: the packet leaves as it arrived at the source.
        *set_type_before("mtel", Ref("mtel.type")),
        SetInvalid("mtel"),
    )
    return (If(IsValid("mtel"), body),)


def lower(nf, low) -> tuple:
    return _source(nf, low) if nf.params.role == "source" else _sink(nf, low)


KIND = NfKind(
    name="latency_monitor",
    summary="In-network one-way delay: the source stamps, the sink measures and records per slice.",
    params=LatencyMonitorParams,
    check=_check,
    check_in_graph=_check_in_graph,
    lower=lower,
)

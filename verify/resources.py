"""Resource budgets of a merged program on its target.

* every target: no table holds more entries than its size;
* ``tofino``: the TNA backend's stage model (:mod:`mantra6g.targets.tofino_resources`:
  12 stages, 16 logical tables, 80 SRAM and 24 TCAM blocks per stage) must place
  every logical table, and what TNA cannot express (e.g. 64-bit registers) fails;
* ``xdp``: the program is built and loaded (as root): the kernel's verifier accepts it
  or not, and reports the instructions it processed (limit 1,000,000) and the stack
  (limit 512 bytes). Without root, an *estimate* from the DP-IR stands in and says so
  (see :func:`xdp_estimate` for its cost model);
* ``bmv2``: table sizes only (software switch).

A violated budget has no packet: the counterexample is the report of what overflows.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mantra6g.synth.dpir import (
    Apply,
    BinOp,
    Cast,
    Count,
    Expr,
    Hash,
    If,
    MeterExec,
    OnesSum,
    Program,
    RegisterRead,
    RegisterWrite,
    Stmt,
    UnOp,
    operands,
)
from mantra6g.verify.properties import PropertyResult

XDP_MAX_INSNS = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS (and the privileged program-size cap)
XDP_MAX_STACK = 512


@dataclass(frozen=True)
class XdpEstimate:
    instructions: int
    stack_bytes: int


def _c_bytes(width: int) -> int:
    """The C integer a field of ``width`` bits is held in (wider: byte array)."""
    for size in (1, 2, 4, 8):
        if width <= 8 * size:
            return size
    return (width + 7) // 8


def _expr_cost(e: Expr) -> int:
    ops = operands(e)
    if ops:  # an operator (a one's-complement sum: an add per term, two folds)
        return (len(ops) + 4 if isinstance(e, OnesSum) else 1) + sum(_expr_cost(x) for x in ops)
    return 2  # a load (with its bounds-checked pointer) or an immediate


def _stmt_cost(p: Program, s: Stmt) -> int:
    if isinstance(s, If):
        return 2 + _expr_cost(s.cond) + sum(_stmt_cost(p, x) for x in s.then + s.orelse)
    if isinstance(s, Apply):
        t = p.table(s.table)
        # key build, map lookup helper, null check, action dispatch (one call per action)
        return 12 + 4 * len(t.keys) + 6 * len(t.actions) + sum(_stmt_cost(p, x) for x in s.on_hit + s.on_miss)
    if isinstance(s, Hash):
        nbytes = sum(1 for _ in s.inputs) * 4
        return 20 + 12 * nbytes  # byte-wise CRC-32 with a table lookup per byte
    if isinstance(s, (RegisterRead, RegisterWrite, Count)):
        return 12  # bpf_map_lookup_elem + null check + load/store
    if isinstance(s, MeterExec):
        return 40  # token bucket arithmetic under a spin lock
    exprs = [v for v in vars(s).values() if isinstance(v, (BinOp, UnOp, Cast, OnesSum))]
    return 3 + sum(_expr_cost(e) for e in exprs)


def xdp_estimate(p: Program) -> XdpEstimate:
    """Static instructions and stack bytes of ``p`` as XDP C.

    Instructions: parser (bounds check and loads per extract, compare per select case)
    plus every statement once (actions once per table that can call them), with the
    per-primitive costs above. This is the program's *size*; the verifier's count of
    *verified* instructions can be larger (it walks paths, with state pruning), so the
    1M check is necessary, not sufficient. Stack: metadata in C integers, the largest
    table key, 64 bytes of locals (pointers, hash buffer)."""
    insns = 0
    for st in p.parser:
        insns += sum(6 + 2 * len(p.header(h).header_type.fields) for h in st.extract)
        insns += 3 * len(st.cases) + 2
    insns += sum(_stmt_cost(p, s) for s in p.control)
    insns += sum(_stmt_cost(p, s) for a in p.actions for s in a.body)
    insns += 20 * len(p.deparse)
    meta = sum(_c_bytes(m.width) for m in p.metadata) + 8 * 4  # std fields
    keys = max((sum(_c_bytes(1 if k.field.endswith("$valid") else p.width_of(k.field)) for k in t.keys) for t in p.tables), default=0)
    return XdpEstimate(insns, meta + keys + 64)


def check_resources(p: Program, target: str) -> PropertyResult:
    """The budgets of ``target`` (see the module docstring)."""
    start = time.perf_counter()
    problems: list[str] = []
    for t in p.tables:
        if len(t.entries) > t.size:
            problems.append(f"table '{t.name}' holds {len(t.entries)} entries but has size {t.size}")
    note = ""
    if target == "tofino":
        from mantra6g.errors import MantraError
        from mantra6g.targets import tofino

        try:
            note = f"{tofino.emit(p).summary.stages} of 12 Tofino stages"
        except MantraError as exc:
            problems.append(str(exc))
    elif target == "xdp" and os.geteuid() == 0:
        from mantra6g.errors import MantraError
        from mantra6g.targets import xdp

        with tempfile.TemporaryDirectory() as tmp:
            try:
                _, built = xdp.compile_to(p, Path(tmp))
                note = f"verifier: {built.instructions} instructions processed, stack {built.stack_depth} bytes"
            except MantraError as exc:
                problems.append(str(exc).splitlines()[0] + " (see mantra compile -t xdp for the verifier log)")
    elif target == "xdp":
        est = xdp_estimate(p)
        note = f"not root: estimated {est.instructions} instructions, {est.stack_bytes} stack bytes"
        if est.instructions > XDP_MAX_INSNS:
            problems.append(f"about {est.instructions} instructions, over the kernel's {XDP_MAX_INSNS}")
        if est.stack_bytes > XDP_MAX_STACK:
            problems.append(f"about {est.stack_bytes} stack bytes, over the kernel's {XDP_MAX_STACK}")
    status = "violated" if problems else "proven"
    return PropertyResult("resources", p.name, status, time.perf_counter() - start, None, "; ".join(problems) or note)


__all__ = ["XDP_MAX_INSNS", "XDP_MAX_STACK", "XdpEstimate", "check_resources", "xdp_estimate"]

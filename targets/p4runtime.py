"""P4Runtime through finsy: a program's pipeline, runtime entries and meter rates onto a
switch that speaks P4Runtime (``simple_switch_grpc``, or any P4Runtime server).

    install("127.0.0.1:9559", program, p4info=Path("x.p4info.txtpb"), p4blob=Path("x.json"))
    entities(program)    # the finsy updates install() writes, in order

The entries are the ones every backend installs (:func:`mantra6g.targets.p4.entry_records`:
best first, P4Runtime priorities with the higher value winning); "don't care" fields
are omitted as P4Runtime §9.1.1 requires (an LPM of length 0, a ternary mask of 0, a
range over the whole field). Meters get CIR = PIR = the DP-IR rate in bytes/s and
CBS = PBS = its burst, so the two-rate meter never says yellow.

finsy is asyncio; :func:`install` runs its own event loop, so the caller need not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import finsy as fy

from mantra6g.errors import MantraError
from mantra6g.synth.dpir import Program
from mantra6g.targets import p4
from mantra6g.targets.bmv2 import meter_configs


def entities(program: Program) -> list:
    """The P4Runtime updates that install ``program``'s runtime state: an insert per
    runtime entry, then a modify per meter index."""
    out = []
    for t in program.tables:
        if t.const or not t.entries:
            continue
        for r in p4.entry_records(program, t):
            match = fy.P4TableMatch()
            for m in r.matches:
                value = _field(program, t, m)
                if value is not None:
                    match[m["field"]] = value
            entry = fy.P4TableEntry(r.table, match=match, action=fy.P4TableAction(r.action, **dict(r.params)),
                                    priority=r.priority or 0)
            out.append(+entry)
    for c in meter_configs(program):
        rate = c["rate_bps"] // 8  # byte meters: bytes per second
        config = fy.P4MeterConfig(cir=rate, cburst=c["burst_bytes"], pir=rate, pburst=c["burst_bytes"])
        out.append(~fy.P4MeterEntry(c["meter"], index=c["index"], config=config))
    return out


def _field(program: Program, t, m: dict):
    """One match field as finsy takes it, or None for P4Runtime's "don't care"."""
    if "exact" in m:
        return m["exact"]
    if "lpm" in m:
        value, length = m["lpm"]
        return None if length == 0 else (value, length)
    if "ternary" in m:
        value, mask = m["ternary"]
        return None if mask == 0 else (value & mask, mask)
    low, high = m["range"]
    key = next(k for k in t.keys if p4.key_name(k.field, k.match) == m["field"])
    full = (1 << p4.width_of_key(program, key.field)) - 1
    return None if (low, high) == (0, full) else (low, high)


def install(address: str, program: Program, p4info: Path, p4blob: Path | None = None, device_id: int = 1,
            timeout: float = 30.0) -> int:
    """Connect to the P4Runtime server at ``address`` as the primary controller, load the
    pipeline (``p4info`` and, if given, the target's ``p4blob``: BMv2's JSON) and write
    the program's runtime entries and meter rates. Returns the number of updates
    written; raises :class:`MantraError` saying what the switch refused."""
    updates = entities(program)
    options = fy.SwitchOptions(p4info=p4info, p4blob=p4blob, device_id=device_id, p4force=p4blob is not None)

    async def go() -> None:
        async with fy.Switch(program.name, address, options) as sw:
            if updates:
                await sw.write(updates)

    try:
        asyncio.run(asyncio.wait_for(go(), timeout))
    except TimeoutError:
        raise MantraError(f"P4Runtime at {address}: no answer within {timeout:g} s (is the switch running?)") from None
    except fy.P4ClientError as exc:
        raise MantraError(f"P4Runtime at {address} refused the program's state: {exc}") from None
    except OSError as exc:
        raise MantraError(f"P4Runtime at {address}: {exc}") from None
    return len(updates)

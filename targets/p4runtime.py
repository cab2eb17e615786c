"""P4Runtime through finsy: a program's pipeline, runtime entries and meter rates onto a
switch that speaks P4Runtime (``simple_switch_grpc``, or any P4Runtime server).

    deploy("127.0.0.1:9559", program, p4info=Path("x.p4info.txtpb"), p4blob=Path("x.json"))
    script(program)      # those as a standalone finsy script (<name>.p4rt.py)

The entries are the ones every backend installs (:func:`mantra6g.targets.p4.entry_records`:
best first, P4Runtime priorities with the higher value winning); "don't care" fields
are omitted as P4Runtime §9.1.1 requires (an LPM of length 0, a ternary mask of 0, a
range over the whole field). Meters get CIR = PIR = the DP-IR rate in bytes/s and
CBS = PBS = its burst, so the two-rate meter never says yellow.

finsy is asyncio; :func:`deploy` runs its own event loop, so the caller need not.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import finsy as fy

from mantra6g.errors import MantraError
from mantra6g.synth.dpir import Program
from mantra6g.targets import p4
from mantra6g.targets.bmv2 import meter_configs
from mantra6g.targets.p4 import qualified


def _updates(program: Program) -> list[tuple[str, str, dict, dict, int]]:
    """("table", name, match, params, priority) per runtime entry, then ("meter", name,
    {"index": i}, {cir, cburst, pir, pburst}, 0) per meter index: plain values, from
    which :func:`entities` makes finsy objects and :func:`script` Python source."""
    out = []
    for t in program.tables:
        if t.const or not t.entries:
            continue
        for r in p4.entry_records(program, t):
            match = {m["field"]: v for m in r.matches if (v := _field(program, t, m)) is not None}
            out.append(("table", r.table, match, {"action": r.action, **dict(r.params)}, r.priority or 0))
    for c in meter_configs(program):
        rate = c["rate_bps"] // 8  # byte meters: bytes per second
        config = {"cir": rate, "cburst": c["burst_bytes"], "pir": rate, "pburst": c["burst_bytes"]}
        out.append(("meter", c["meter"], {"index": c["index"]}, config, 0))
    return out


def _entities(program: Program) -> tuple[list, list]:
    """``program``'s runtime table entries and meter entries, as finsy objects."""
    tables, meters = [], []
    for kind, name, match, data, priority in _updates(program):
        if kind == "table":
            params = dict(data)
            action = params.pop("action")
            tables.append(fy.P4TableEntry(name, match=fy.P4TableMatch(match),
                                          action=fy.P4TableAction(action, **params), priority=priority))
        else:
            meters.append(fy.P4MeterEntry(name, index=match["index"], config=fy.P4MeterConfig(**data)))
    return tables, meters


@dataclass(frozen=True)
class Deployed:
    """What :func:`deploy` did: whether the pipeline was (re)loaded, and the entry
    changes it wrote."""

    pipeline_loaded: bool
    inserted: int
    modified: int
    deleted: int
    meters: int

    def render(self) -> str:
        how = "pipeline loaded" if self.pipeline_loaded else "pipeline kept (same P4Info and JSON)"
        return (f"{how}; entries: {self.inserted} inserted, {self.modified} modified, {self.deleted} deleted; "
                f"{self.meters} meter cells configured")


def _key(schema, entry) -> tuple:
    msg = entry.encode(schema).table_entry
    return msg.table_id, msg.priority, tuple(sorted(f.SerializeToString(deterministic=True) for f in msg.match))


def _action(schema, entry) -> bytes:
    return entry.encode(schema).table_entry.action.SerializeToString(deterministic=True)


def deploy(address: str, program: Program, p4info: Path, p4blob: Path, device_id: int = 1,
           timeout: float = 30.0) -> Deployed:
    """Bring the switch at ``address`` to ``program``: load the pipeline only if the
    switch runs another one (finsy compares the pipeline cookie), then make its runtime
    entries those of ``program`` with the fewest writes — insert the new, modify those
    whose action or arguments changed, delete those ``program`` no longer has — so
    traffic and state (counters, registers, other entries) are undisturbed by an entry
    change. The updates go in one P4Runtime write (not atomic: P4Runtime applies what it
    can); a refused update raises :class:`MantraError` with the switch's reason."""
    tables, meters = _entities(program)
    runtime = {qualified(t.name) for t in program.tables if not t.const}
    options = fy.SwitchOptions(p4info=p4info, p4blob=p4blob, device_id=device_id)

    async def running_cookie() -> int | None:
        # A session without a pipeline of its own only reads the switch's. finsy (pinned)
        # has no public call for the cookie; this is the one its own p4force check uses.
        async with fy.Switch(program.name, address, fy.SwitchOptions(device_id=device_id)) as sw:
            try:
                reply = await sw._get_pipeline_config_request()
            except fy.P4ClientError as exc:
                if exc.is_pipeline_missing:
                    return None
                raise
            return reply.config.cookie.cookie if reply.config.HasField("cookie") else None

    async def go() -> Deployed:
        before = await running_cookie()
        async with fy.Switch(program.name, address, options) as sw:
            loaded = before != sw.p4info.p4cookie
            schema = sw.p4info
            have = {}
            async for e in sw.read(fy.P4TableEntry()):
                if schema.tables[e.table_id].name in runtime:
                    have[_key(schema, e)] = e
            want = {_key(schema, e): e for e in tables}
            inserts = [+e for k, e in want.items() if k not in have]
            modifies = [~e for k, e in want.items() if k in have and _action(schema, have[k]) != _action(schema, e)]
            deletes = [-e for k, e in have.items() if k not in want]
            updates = deletes + modifies + inserts + [~m for m in meters]
            if updates:
                await sw.write(updates)
            return Deployed(loaded, len(inserts), len(modifies), len(deletes), len(meters))

    return _run(address, go(), timeout)


class _LastError(logging.Handler):
    """finsy reports an error of its background session task in its log and cancels the
    caller: the last error logged is what the switch said."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage().splitlines()[0]
        if record.exc_info and record.exc_info[1] is not None:
            self.message = str(record.exc_info[1]).strip()


def _run(address: str, coroutine, timeout: float):
    finsy_log = logging.getLogger("finsy")
    last = _LastError()
    finsy_log.addHandler(last)
    try:
        return asyncio.run(asyncio.wait_for(coroutine, timeout))
    except asyncio.CancelledError:
        raise MantraError(f"P4Runtime at {address} ended the session: {last.message or 'no reason given'} "
                          f"(is --device-id the switch's?)") from None
    except TimeoutError:
        raise MantraError(f"P4Runtime at {address}: no answer within {timeout:g} s (is the switch running?)") from None
    except fy.P4ClientError as exc:
        raise MantraError(f"P4Runtime at {address} refused the program's state: {exc}") from None
    except OSError as exc:
        raise MantraError(f"P4Runtime at {address}: {exc}") from None
    finally:
        finsy_log.removeHandler(last)


def script(program: Program) -> str:
    """A standalone finsy script (``<name>.p4rt.py``) that loads the pipeline and writes
    the same updates as :func:`deploy` on an empty pipeline, for a switch without Mantra beside it."""
    name = p4.ident(program.name)
    lines = []
    for kind, table, match, data, priority in _updates(program):
        if kind == "table":
            params = dict(data)
            action = params.pop("action")
            args = "".join(f", {k}={v!r}" for k, v in params.items())
            lines.append(f"    +fy.P4TableEntry({table!r}, match=fy.P4TableMatch({match!r}), "
                         f"action=fy.P4TableAction({action!r}{args}), priority={priority}),")
        else:
            lines.append(f"    ~fy.P4MeterEntry({table!r}, index={match['index']}, config=fy.P4MeterConfig(**{data!r})),")
    return f'''"""Install {program.name}'s pipeline, runtime entries and meter rates over P4Runtime with finsy.

    p4c-bm2-ss --p4runtime-files {name}.p4info.txtpb -o {name}.json {name}.p4   (or Mantra's own {name}.p4info.txtpb)
    simple_switch_grpc --no-p4 -i 1@veth1 -i 2@veth2 -- --grpc-server-addr 127.0.0.1:9559
    python3 {name}.p4rt.py --grpc-addr 127.0.0.1:9559

Generated by Mantra (pip install finsy). Priorities follow P4Runtime: the higher value wins.
"""

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path

import finsy as fy

UPDATES = [
{chr(10).join(lines)}
]


async def install(address: str, p4info: Path, p4blob: Path, device_id: int) -> None:
    options = fy.SwitchOptions(p4info=p4info, p4blob=p4blob, device_id=device_id, p4force=True)
    async with fy.Switch({program.name!r}, address, options) as sw:
        if UPDATES:
            await sw.write(UPDATES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc-addr", default="127.0.0.1:9559")
    ap.add_argument("--device-id", type=int, default=1)
    ap.add_argument("--p4info", type=Path, default=Path("{name}.p4info.txtpb"))
    ap.add_argument("--json", type=Path, default=Path("{name}.json"))
    args = ap.parse_args()
    asyncio.run(install(args.grpc_addr, args.p4info, args.json, args.device_id))


if __name__ == "__main__":
    main()
'''


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

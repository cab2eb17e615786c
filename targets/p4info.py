"""P4Info from the DP-IR: the P4Runtime description of the v1model program that
:mod:`mantra6g.targets.bmv2` emits, made by our own code instead of by p4c.

    info = p4info(program)          # a p4.config.v1.P4Info message (finsy's protos)
    text(info), binary(info)        # the .p4info.txtpb and .p4info.bin files

It follows p4c's rules (``control-plane/p4RuntimeSerializer.cpp``,
``p4RuntimeSymbolTable.cpp``, ``p4RuntimeArchStandard.h``, v1.2.5.16) for the P4 text
our templates print, so that a P4Runtime controller can use it where p4c is absent
and ``p4c-bm2-ss --p4runtime-files`` gives the same message where it is present:

* **names** are the fully qualified control-plane names: ``MantraIngress.<table>``,
  ``MantraIngress.<action>`` and ``MantraIngress.<register|counter|meter>`` (p4c's
  ``HierarchicalNames``); an action parameter keeps its own name; a match field is
  named by the ``@name`` the printer gives every key (``ipv4_dst``, ``std_ingress_port``,
  ``tcp_valid``: :func:`mantra6g.targets.p4.key_name`). The
  ``alias`` is the shortest dot-separated suffix no other symbol shares.
* **ids**: ``(type prefix << 24) | (Jenkins one-at-a-time hash of the name & 0xffffff)``,
  names of one type taken in sorted order and a taken id probed linearly upwards; an
  ``@id`` fixes an id (given here as ``fixed_ids``), with its prefix forced to the
  type's. Match fields and action parameters are numbered 1, 2, … in order.
* **what is listed**: the actions some table lists or the control calls directly (p4c
  serialises the frontend's program, before the midend inlines direct calls), in
  declaration order; p4c's frontend drops declarations nothing uses, and an action only
  called directly has its parameters bound (no parameters listed). Every table is
  applied once by construction. Registers, counters and meters always appear.
* **tables**: ``size`` (1024 when unset), ``initial_default_action`` with its
  arguments as big-endian bytes padded to the parameter's width,
  ``const_default_action_id`` for a ``const default_action``, and ``is_const_table``
  / ``has_initial_entries`` for ``const entries``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import text_format

from mantra6g.errors import MantraError
from mantra6g.synth.dpir import Call, Program, Table
from mantra6g.synth.dpir_check import validate
from mantra6g.targets.p4 import ident, key_name, qualified, walk_body, width_of_key

from finsy.proto import p4i  # P4Runtime's generated protobuf classes, as finsy ships them

# p4.config.v1.P4Ids.Prefix
ACTION, TABLE = 0x01, 0x02
COUNTER, METER, REGISTER = 0x12, 0x14, 0x16
DEFAULT_TABLE_SIZE = 1024  # v1model's default when a table sets no size
ARCH = "v1model"

TEXT_HEADER = "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n"


class P4InfoError(MantraError):
    """Ids cannot be assigned as asked (an ``@id`` with the wrong prefix, or taken twice)."""


def jenkins_hash(name: str) -> int:
    """Bob Jenkins' one-at-a-time hash over the name's bytes, in 32 bits (p4c's
    ``P4RuntimeSymbolTable::jenkinsOneAtATimeHash``)."""
    h = 0
    for b in name.encode():
        h = (h + b) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    return (h + (h << 15)) & 0xFFFFFFFF


def allocate_ids(symbols: Mapping[int, Iterable[str]], fixed_ids: Mapping[str, int] | None = None) -> dict[tuple[int, str], int]:
    """Ids for the names of each type prefix, as p4c assigns them: fixed ids first
    (``@id``; a bare number gets the type's prefix), then every other name in sorted
    order from its hash, probing upwards past ids already taken by any type."""
    fixed_ids = fixed_ids or {}
    taken: set[int] = set()
    out: dict[tuple[int, str], int] = {}
    for prefix, names in symbols.items():
        for name in dict.fromkeys(names):
            if name not in fixed_ids:
                continue
            want = fixed_ids[name]
            if want >> 24 not in (0, prefix):
                raise P4InfoError(f"@id {want:#x} of '{name}' has the wrong 8-bit prefix (want {prefix:#04x})")
            want |= prefix << 24
            if want in taken:
                raise P4InfoError(f"@id {want:#x} is assigned to multiple declarations")
            taken.add(want)
            out[(prefix, name)] = want
    for prefix, names in symbols.items():
        for name in sorted(set(names) - set(fixed_ids)):
            start = jenkins_hash(name)
            value = start
            while (prefix << 24) | (value & 0xFFFFFF) in taken:
                value = (value + 1) & 0xFFFFFFFF
                if value == start:  # pragma: no cover - 2**24 symbols of one type
                    raise P4InfoError(f"no P4Runtime id is left for '{name}'")
            chosen = (prefix << 24) | (value & 0xFFFFFF)
            taken.add(chosen)
            out[(prefix, name)] = chosen
    return out


def aliases(names: Iterable[str]) -> dict[str, str]:
    """Each name's shortest dot-separated suffix that no other name ends with (p4c's
    ``P4SymbolSuffixSet::shortestUniqueSuffix``; one set over every symbol type)."""
    unique = list(dict.fromkeys(names))
    through: dict[tuple[str, ...], int] = {}
    for n in unique:
        parts = n.split(".")
        for k in range(1, len(parts) + 1):
            suffix = tuple(parts[-k:])
            through[suffix] = through.get(suffix, 0) + 1
    out = {}
    for n in unique:
        parts = n.split(".")
        k = 1
        while k < len(parts) and through[tuple(parts[-k:])] > 1:
            k += 1
        out[n] = ".".join(parts[-k:])
    return out


def _value_bytes(value: int, width: int) -> bytes:
    """A ``bit<W>`` value as P4Runtime bytes, padded to the width (as p4c writes them)."""
    return value.to_bytes((width + 7) // 8, "big")


def used_actions(p: Program) -> list[str]:
    """The actions p4c keeps, in declaration order: those a table lists or the control
    calls directly, and what those call in turn (an action nothing uses is dropped)."""

    def calls(body) -> set[str]:
        return {s.action for s in walk_body(body) if isinstance(s, Call)}

    used = {a for t in p.tables for a in t.actions} | calls(p.control)
    todo = list(used)
    while todo:
        for name in calls(p.action(todo.pop()).body) - used:
            used.add(name)
            todo.append(name)
    return [a.name for a in p.actions if a.name in used]


def p4info(p: Program, fixed_ids: Mapping[str, int] | None = None) -> p4i.P4Info:
    """The P4Info of ``p`` as emitted for BMv2 (v1model). ``fixed_ids`` maps control-plane
    names to ``@id`` values (none of Mantra's programs sets one)."""
    validate(p)
    actions = used_actions(p)
    listed = {a for t in p.tables for a in t.actions}
    symbols = {
        TABLE: [qualified(t.name) for t in p.tables],
        ACTION: [qualified(a) for a in actions],
        REGISTER: [qualified(r.name) for r in p.registers],
        COUNTER: [qualified(c.name) for c in p.counters],
        METER: [qualified(m.name) for m in p.meters],
    }
    ids = allocate_ids(symbols, fixed_ids)
    alias = aliases(n for names in symbols.values() for n in names)

    def preamble(msg, prefix: int, name: str) -> None:
        msg.preamble.id = ids[(prefix, name)]
        msg.preamble.name = name
        msg.preamble.alias = alias[name]

    info = p4i.P4Info()
    info.pkg_info.arch = ARCH
    for t in p.tables:
        _table(info.tables.add(), p, t, ids, preamble)
    for name in actions:
        a = p.action(name)
        msg = info.actions.add()
        preamble(msg, ACTION, qualified(a.name))
        # p4c's frontend (RemoveActionParameters) binds every parameter of an action
        # only the control calls directly: it has none left to list.
        params = a.params if a.name in listed else ()
        for i, prm in enumerate(params, start=1):
            param = msg.params.add()
            param.id, param.name, param.bitwidth = i, ident(prm.name), prm.width
    for c in p.counters:
        msg = info.counters.add()
        preamble(msg, COUNTER, qualified(c.name))
        msg.spec.unit = p4i.CounterSpec.BOTH  # CounterType.packets_and_bytes
        msg.size = c.size
    for m in p.meters:
        msg = info.meters.add()
        preamble(msg, METER, qualified(m.name))
        msg.spec.unit = p4i.MeterSpec.BYTES  # MeterType.bytes
        msg.size = m.size
    for r in p.registers:
        msg = info.registers.add()
        preamble(msg, REGISTER, qualified(r.name))
        msg.type_spec.bitstring.bit.bitwidth = r.width
        msg.size = r.size
    # p4c touches type_info for every table, action parameter and extern function call,
    # and the template's ingress always calls mark_to_drop(): it is always present (and
    # empty: DP-IR has no user-defined types).
    info.type_info.SetInParent()
    return info


def _table(msg: p4i.Table, p: Program, t: Table, ids, preamble) -> None:
    name = qualified(t.name)
    preamble(msg, TABLE, name)
    for i, k in enumerate(t.keys, start=1):
        mf = msg.match_fields.add()
        mf.id, mf.name = i, key_name(k.field, k.match)
        mf.bitwidth = width_of_key(p, k.field)
        mf.match_type = p4i.MatchField.MatchType.Value(k.match.upper())
    for a in t.actions:
        msg.action_refs.add().id = ids[(ACTION, qualified(a))]
    default = ids[(ACTION, qualified(t.default.action))]
    if t.const:  # the template prints `const default_action` for const tables
        msg.const_default_action_id = default
    msg.initial_default_action.action_id = default
    for i, (prm, value) in enumerate(zip(p.action(t.default.action).params, t.default.args), start=1):
        arg = msg.initial_default_action.arguments.add()
        arg.param_id, arg.value = i, _value_bytes(value, prm.width)
    msg.size = t.size or DEFAULT_TABLE_SIZE
    if t.const and t.entries:  # `const entries`
        msg.is_const_table = True
        msg.has_initial_entries = True


def text(info: p4i.P4Info) -> str:
    """The text format p4c writes for ``--p4runtime-files x.p4info.txtpb``."""
    return TEXT_HEADER + text_format.MessageToString(info)


def binary(info: p4i.P4Info) -> bytes:
    """The binary protobuf p4c writes for ``--p4runtime-files x.p4info.bin``."""
    return info.SerializeToString()


def parse_text(data: str) -> p4i.P4Info:
    """A P4Info from its text format (ours or p4c's)."""
    return text_format.Parse(data, p4i.P4Info())


def files(p: Program) -> dict[str, str | bytes]:
    """``<name>.p4info.txtpb`` and ``<name>.p4info.bin`` for ``p``."""
    info = p4info(p)
    name = ident(p.name)
    return {f"{name}.p4info.txtpb": text(info), f"{name}.p4info.bin": binary(info)}

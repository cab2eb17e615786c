"""JSON for the toolkit's IRs, derived from their dataclass declarations.

A dataclass becomes a JSON object of its fields. Where a field may hold one of several
classes (an expression, an NF kind's parameters), the classes are registered with
:func:`tagged` and carry ``"type": TAG``. Leaf types that JSON lacks (addresses,
prefixes, MACs, spans, decimals, enums) are written as strings. Decoding reads the
declared field types, so ``from_json(T, to_json(x)) == x`` for every IR value ``x``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from mantra6g.source import Span

T = TypeVar("T")
_TAGS: dict[str, type] = {}


def tagged(tag: str) -> Callable[[type[T]], type[T]]:
    """Register a dataclass under ``tag`` so it can stand where several classes may."""

    def register(cls: type[T]) -> type[T]:
        if _TAGS.get(tag, cls) is not cls:
            raise ValueError(f"serde tag {tag!r} is taken by {_TAGS[tag].__name__}")
        _TAGS[tag] = cls
        cls._serde_tag = tag  # type: ignore[attr-defined]
        return cls

    return register


def _span_text(s: Span) -> str:
    return f"{s.file}:{s.line}:{s.column}-{s.end_line}:{s.end_column}"


def _span_parse(text: str) -> Span:
    start, _, end = text.rpartition("-")
    file, line, col = start.rsplit(":", 2)
    end_line, end_col = end.split(":")
    return Span(file, int(line), int(col), int(end_line), int(end_col))


def _leaf_codecs() -> dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]]:
    from mantra6g.synth.values import MacAddress

    return {
        Span: (_span_text, _span_parse),
        ipaddress.IPv4Address: (str, ipaddress.IPv4Address),
        ipaddress.IPv6Address: (str, ipaddress.IPv6Address),
        ipaddress.IPv4Network: (str, ipaddress.IPv4Network),
        ipaddress.IPv6Network: (str, ipaddress.IPv6Network),
        MacAddress: (str, MacAddress.parse),
        Decimal: (str, Decimal),
    }


_codecs = functools.cache(_leaf_codecs)


def to_json(value: Any) -> Any:
    """Encode an IR value as plain JSON data (dicts, lists, strings, numbers, None)."""
    codec = _codecs().get(type(value))
    if codec is not None:
        return codec[0](value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        tag = getattr(type(value), "_serde_tag", None)
        if tag is not None:
            out["type"] = tag
        for f in dataclasses.fields(value):
            out[f.name] = to_json(getattr(value, f.name))
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(tp: Any, data: Any) -> Any:
    """Decode ``data`` (as made by :func:`to_json`) into a value of type ``tp``."""
    if tp is Any or tp is object:
        if isinstance(data, dict) and "type" in data:
            return from_json(_TAGS[data["type"]], data)
        if isinstance(data, list):
            return tuple(from_json(Any, d) for d in data)
        return data
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
        if data is None and type(None) in members:
            return None
        if isinstance(data, dict) and "type" in data:
            return from_json(_TAGS[data["type"]], data)
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return from_json(member, data)
            except (TypeError, ValueError, KeyError) as exc:
                errors.append(exc)
        raise ValueError(f"{data!r} is none of {members}: {errors}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], d) for d in data)
        return tuple(from_json(a, d) for a, d in zip(args, data, strict=True))
    if origin is list:
        return [from_json(typing.get_args(tp)[0], d) for d in data]
    if origin is dict:
        kt, vt = typing.get_args(tp)
        return {from_json(kt, k): from_json(vt, v) for k, v in data.items()}
    if origin is typing.Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{data!r} is not one of {typing.get_args(tp)}")
        return data
    if tp in _codecs():
        if not isinstance(data, str):
            raise TypeError(f"expected a string for {tp.__name__}, got {data!r}")
        return _codecs()[tp][1](data)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object for {tp.__name__}, got {data!r}")
        tag = getattr(tp, "_serde_tag", None)
        if tag is not None and data.get("type", tag) != tag:
            raise ValueError(f"expected type {tag!r}, got {data.get('type')!r}")
        hints = _hints(tp)
        kwargs = {f.name: from_json(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if tp is float and isinstance(data, (int, float)) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool) and type(data) is tp:
        return data
    if tp is type(None) and data is None:
        return None
    raise TypeError(f"expected {getattr(tp, '__name__', tp)}, got {data!r}")

"""Typed values of the language: numbers with units, addresses, and their conversion
from AST literals, reporting what is wrong and where."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from mantra6g.errors import Diagnostic
from mantra6g.source import Span
from mantra6g.synth import ast


class Reporter:
    """Collects diagnostics so that every independent problem in a file is reported."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, span: Span | None, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(message, span, hint))


class _Invalid:
    """The result of a conversion that failed and was reported."""

    def __repr__(self) -> str:
        return "INVALID"

    def __bool__(self) -> bool:
        return False


INVALID = _Invalid()


@dataclass(frozen=True, order=True)
class MacAddress:
    """A 48-bit Ethernet address."""

    value: int

    @classmethod
    def parse(cls, text: str) -> MacAddress:
        parts = text.split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise ValueError(f"{text!r} is not a MAC address")
        return cls(int("".join(parts), 16))

    def __str__(self) -> str:
        h = f"{self.value:012x}"
        return ":".join(h[i : i + 2] for i in range(0, 12, 2))


# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class Dimension:
    """What a quantity measures and the units it may be written in."""

    name: str  # how messages call it: "a duration"
    units: dict[str, int]  # unit -> multiplier to the base unit (the one with 1)
    shown: tuple[str, ...]  # units used when printing, smallest first
    example: str

    @property
    def base(self) -> str:
        return self.shown[0]


DIMENSIONS = {
    "time": Dimension("a duration", {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}, ("ns", "us", "ms", "s"), "1 ms"),
    "rate": Dimension(
        "a bandwidth",
        {"bps": 1, "kbps": 10**3, "Kbps": 10**3, "Mbps": 10**6, "Gbps": 10**9, "Tbps": 10**12},
        ("bps", "kbps", "Mbps", "Gbps", "Tbps"),
        "100 Mbps",
    ),
    "size": Dimension(
        "a size in bytes",
        {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30},
        ("B", "KB", "MB", "GB"),
        "64 KB",
    ),
    "percent": Dimension("a percentage", {"%": 1}, ("%",), "99.9 %"),
}
_UNIT_DIMENSION = {u: d for d in DIMENSIONS.values() for u in d.units}


def split_quantity(text: str) -> tuple[Decimal, str]:
    """``"1.5 ms"`` -> ``(Decimal("1.5"), "ms")``."""
    i = 0
    while i < len(text) and (text[i].isdigit() or text[i] == "."):
        i += 1
    return Decimal(text[:i]), text[i:].strip()


def quantity(value: ast.Value, dimension: str, report: Reporter, what: str) -> int | Decimal | _Invalid:
    """A quantity of ``dimension`` in its base unit: ns, bps, bytes (as int) or % (Decimal)."""
    dim = DIMENSIONS[dimension]
    if not (isinstance(value, ast.Literal) and value.kind == "quantity"):
        if isinstance(value, ast.Literal) and value.kind in ("int", "float"):
            report.error(value.span, f"{what} needs a unit", f"e.g. {dim.example} (units: {' '.join(dim.units)})")
        else:
            report.error(value.span, f"{what} needs {dim.name} such as {dim.example}, not {describe(value)}")
        return INVALID
    number, unit = split_quantity(value.text)
    if _UNIT_DIMENSION[unit] is not dim:
        report.error(
            value.span,
            f"{what} needs {dim.name}, but '{unit}' is a unit of {_UNIT_DIMENSION[unit].name}",
            f"write it in {', '.join(dim.shown)}",
        )
        return INVALID
    scaled = number * dim.units[unit]
    if dimension == "percent":
        return scaled
    if scaled != scaled.to_integral_value():
        report.error(value.span, f"{what} {value.text} is not a whole number of {dim.base}")
        return INVALID
    return int(scaled)


def format_quantity(base_value: int | Decimal, dimension: str) -> str:
    """``base_value`` in the largest unit that shows it exactly: 1000000 ns -> '1 ms'."""
    dim = DIMENSIONS[dimension]
    if dimension == "percent":
        return f"{base_value}%"
    unit = next(u for u in reversed(dim.shown) if base_value % dim.units[u] == 0)
    return f"{int(base_value) // dim.units[unit]} {unit}"


# ---------------------------------------------------------------- literals


def describe(value: ast.Value) -> str:
    """How a value is called in messages: ``the name 'deny'``, ``the IPv4 address 10.0.0.1``."""
    if isinstance(value, ast.Literal):
        kinds = {
            "int": "the number",
            "float": "the number",
            "quantity": "the quantity",
            "string": "the string",
            "ipv4": "the IPv4 address",
            "ipv4_prefix": "the IPv4 prefix",
            "ipv6": "the IPv6 address",
            "ipv6_prefix": "the IPv6 prefix",
            "mac": "the MAC address",
            "name": "the name",
        }
        return f"{kinds[value.kind]} {value.text}"
    if isinstance(value, ast.RangeLit):
        return f"the range {value.low.text}..{value.high.text}"
    if isinstance(value, ast.RatioLit):
        return f"the ratio {value.numerator.text}/{value.denominator.text}"
    if isinstance(value, ast.ListLit):
        return "a list"
    return f"the field {value.path}"


def integer(lit: ast.Literal) -> int:
    text = lit.text
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def to_int(value: ast.Value, lo: int, hi: int, report: Reporter, what: str) -> int | _Invalid:
    if not (isinstance(value, ast.Literal) and value.kind == "int"):
        report.error(value.span, f"{what} needs a whole number from {lo} to {hi}, not {describe(value)}")
        return INVALID
    n = integer(value)
    if not lo <= n <= hi:
        report.error(value.span, f"{what} {value.text} is out of range", f"use a number from {lo} to {hi}")
        return INVALID
    return n


def to_ipv4(value: ast.Value, report: Reporter, what: str) -> IPv4Address | _Invalid:
    if not (isinstance(value, ast.Literal) and value.kind == "ipv4"):
        hint = "drop the prefix length" if isinstance(value, ast.Literal) and value.kind == "ipv4_prefix" else None
        report.error(value.span, f"{what} needs an IPv4 address, not {describe(value)}", hint)
        return INVALID
    try:
        return IPv4Address(value.text)
    except ValueError:
        report.error(value.span, f"{value.text} is not a valid IPv4 address", "each of the four numbers is 0 to 255")
        return INVALID


def to_ipv6(value: ast.Value, report: Reporter, what: str) -> IPv6Address | _Invalid:
    if not (isinstance(value, ast.Literal) and value.kind == "ipv6"):
        report.error(value.span, f"{what} needs an IPv6 address, not {describe(value)}")
        return INVALID
    try:
        return IPv6Address(value.text)
    except ValueError:
        report.error(value.span, f"{value.text} is not a valid IPv6 address")
        return INVALID


def to_prefix(value: ast.Value, report: Reporter, what: str, version: int | None = None) -> IPv4Network | IPv6Network | _Invalid:
    """A CIDR prefix; host bits set, a bad length or a bad address are reported."""
    kinds = {4: ("ipv4_prefix",), 6: ("ipv6_prefix",), None: ("ipv4_prefix", "ipv6_prefix")}[version]
    if not (isinstance(value, ast.Literal) and value.kind in kinds):
        family = {4: "an IPv4", 6: "an IPv6", None: "an IP"}[version]
        hint = None
        if isinstance(value, ast.Literal) and value.kind in ("ipv4", "ipv6"):
            hint = f"for one host write {value.text}/{32 if value.kind == 'ipv4' else 128}"
        report.error(value.span, f"{what} needs {family} prefix (CIDR), not {describe(value)}", hint)
        return INVALID
    length = value.text.partition("/")[2]
    maxlen = 32 if value.kind == "ipv4_prefix" else 128
    if int(length) > maxlen:
        report.error(value.span, f"prefix length /{length} is longer than {maxlen} bits", f"use /0 to /{maxlen}")
        return INVALID
    try:
        return ipaddress.ip_network(value.text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value.text, strict=False)
        except ValueError:
            report.error(value.span, f"{value.text} is not a valid prefix: {exc}")
            return INVALID
        report.error(
            value.span,
            f"{value.text} has host bits set",
            f"did you mean {loose}?",
        )
        return INVALID


def to_mac(value: ast.Value, report: Reporter, what: str) -> MacAddress | _Invalid:
    if not (isinstance(value, ast.Literal) and value.kind == "mac"):
        report.error(value.span, f"{what} needs a MAC address such as 02:00:00:00:00:01, not {describe(value)}")
        return INVALID
    return MacAddress.parse(value.text)


def to_name(value: ast.Value, choices: tuple[str, ...], report: Reporter, what: str) -> str | _Invalid:
    if isinstance(value, ast.Literal) and value.kind == "name" and value.text in choices:
        return value.text
    shown = " | ".join(choices)
    found = describe(value)
    hint = None
    if isinstance(value, ast.Literal) and value.kind == "name":
        hint = did_you_mean(value.text, choices)
    report.error(value.span, f"{what} must be one of {shown}, not {found}", hint)
    return INVALID


def did_you_mean(word: str, choices) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None

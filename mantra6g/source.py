"""Source files and positions: what every user-facing diagnostic points at, and the
one place where text inputs are read (their encoding rules are in docs/language.md)."""

from __future__ import annotations

import codecs
import functools
import os
import re
from dataclasses import dataclass

from mantra6g.errors import Diagnostic, MantraError, SpecError


def shorten(text: str, width: int = 60) -> str:
    """``text``, cut in the middle with an ellipsis when it is longer than ``width``:
    messages quote what the user wrote, which may be a megabyte long."""
    if len(text) <= width:
        return text
    keep = max(1, width - 1)
    return text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]


@dataclass(frozen=True)
class Span:
    """A region of a source file; lines and columns count from 1, ``end_column`` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class SourceFile:
    """The text of one input, kept so that diagnostics can quote it."""

    name: str
    text: str

    @functools.cached_property
    def _line_starts(self) -> list[int]:
        # Lines end at "\n" only, as the lexer counts them (str.splitlines also splits
        # at form feeds and U+2028, which would shift every line after one).
        return [0] + [m.end() for m in re.finditer("\n", self.text)]

    def line_text(self, line: int) -> str:
        starts = self._line_starts
        if not 1 <= line <= len(starts):
            return ""
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[starts[line - 1] : end].removesuffix("\r")

    def excerpt(self, span: Span) -> str:
        """The span's first line with a caret row under it, in the ``NN | text`` style.
        A line longer than :data:`EXCERPT_WIDTH` is cut to a window around the caret."""
        text = "".join(" " if c == "\t" else c if c.isprintable() else "\ufffd" for c in self.line_text(span.line))
        gutter = str(span.line)
        if span.end_line == span.line and span.end_column > span.column:
            width = span.end_column - span.column
        else:
            width = 1
        col = span.column - 1  # from 0
        if len(text) > EXCERPT_WIDTH:
            start = max(0, min(col - EXCERPT_WIDTH // 3, len(text) - EXCERPT_WIDTH))
            end = start + EXCERPT_WIDTH
            lead, tail = ("…" if start > 0 else ""), ("…" if end < len(text) else "")
            text = lead + text[start:end] + tail
            width = min(width, end - col)
            col = col - start + len(lead)
        width = max(1, min(width, len(text) - col + 1))
        pad = " " * len(gutter)
        caret = " " * col + "^" * width
        return f" {pad} |\n {gutter} | {text}\n {pad} | {caret}"


# ---------------------------------------------------------------- reading inputs

MAX_FILE_BYTES = 16 * 2**20
EXCERPT_WIDTH = 100  # characters of a source line shown under an error

_OTHER_ENCODINGS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def read_source(path: str | os.PathLike[str]) -> SourceFile:
    """A text input (a ``.sg`` file, a scenario) by the encoding rules of
    docs/language.md: UTF-8, with or without a byte-order mark, at most
    :data:`MAX_FILE_BYTES`. A file that cannot be read is a :class:`MantraError`; one
    that is not UTF-8 a :class:`SpecError` at the line and column of the first bad byte."""
    if not str(path):
        raise MantraError("a file name is empty ('')")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise MantraError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MantraError(f"{path}: is a directory; name the files in it") from None
    except OSError as exc:
        raise MantraError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise MantraError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; is it the right file?")
    return decode(str(path), data)


def decode(name: str, data: bytes) -> SourceFile:
    """``data`` as the text of the input ``name`` (see :func:`read_source`)."""
    data = data.removeprefix(codecs.BOM_UTF8)  # Windows editors write one; it is not text
    for bom, encoding in _OTHER_ENCODINGS:
        if data.startswith(bom):
            raise _encoding_error(name, data, 0, f"this file is {encoding} text, not UTF-8",
                                  "save it as UTF-8 (in Notepad: Save As, Encoding: UTF-8)", quote=False)
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if nul >= 0:
            raise _binary_error(name, data, min(nul, exc.start)) from None
        byte = data[exc.start]
        legacy = bytes([byte]).decode("cp1252", "ignore") or bytes([byte]).decode("latin-1")
        hint = "save the file as UTF-8"
        if legacy.isprintable():  # what the user most likely typed, in the encoding they saved
            hint += f"; it looks like Latin-1 or Windows-1252 text, where this byte is {legacy!r}"
        raise _encoding_error(name, data, exc.start, f"not UTF-8 text: byte 0x{byte:02x} cannot be read as UTF-8 here",
                              hint) from None
    if nul >= 0:
        raise _binary_error(name, data, nul)
    return SourceFile(name, text)


def _binary_error(name: str, data: bytes, at: int):
    return _encoding_error(name, data, at, "this is a binary file (or UTF-16 text), not UTF-8 text",
                           "name a text file; save text as UTF-8", quote=False)


def _encoding_error(name: str, data: bytes, at: int, message: str, hint: str, quote: bool = True):
    """A :class:`SpecError` at byte ``at``; ``quote``: show the line (not for binary data)."""
    line = data.count(b"\n", 0, at) + 1
    line_start = data.rfind(b"\n", 0, at) + 1
    column = len(data[line_start:at].decode("utf-8", "replace")) + 1
    sources = {name: SourceFile(name, data.decode("utf-8", "replace"))} if quote else {}
    return SpecError([Diagnostic(message, Span(name, line, column, line, column + 1), hint)], sources)

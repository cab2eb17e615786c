"""Errors a user can cause. Each says what to change; tracebacks are for bugs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # source.py reads files and raises these errors; only the types are needed here
    from mantra6g.source import SourceFile, Span


class MantraError(Exception):
    """Base of every error caused by the user's input, flags or environment.

    The CLI prints :meth:`render` and exits with :attr:`exit_code`, without a traceback.
    """

    exit_code = 2

    def render(self) -> str:
        return f"error: {self}"


def os_error(exc: OSError) -> str:
    """An ``OSError`` as a user reads it: the file it is about, then what the system said."""
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return why
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {why}"


@dataclass(frozen=True)
class Note:
    """A second place a diagnostic points at (where an unclosed bracket was opened, where
    the parser gave up), shown under the error with its own excerpt."""

    message: str
    span: Span


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a source file: where, what, and (optionally) how to fix it."""

    message: str
    span: Span | None = None
    hint: str | None = None
    notes: tuple[Note, ...] = ()

    def render(self, source: SourceFile | None = None) -> str:
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}error: {self.message}"]
        if self.span is not None and source is not None and source.line_text(self.span.line):
            out.append(source.excerpt(self.span))
        for note in self.notes:
            out.append(f"{note.span}: note: {note.message}")
            if source is not None and source.line_text(note.span.line):
                out.append(source.excerpt(note.span))
        if self.hint:
            out.append(f"  = hint: {self.hint}")
        return "\n".join(out)


class SpecError(MantraError):
    """One or more problems found in service-graph files, all reported together."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, SourceFile] | None = None):
        self.diagnostics = sorted(
            diagnostics,
            key=lambda d: (d.span.file, d.span.line, d.span.column) if d.span else ("", 0, 0),
        )
        self.sources = sources or {}
        super().__init__("; ".join(d.message for d in self.diagnostics))

    def render(self) -> str:
        parts = [
            d.render(self.sources.get(d.span.file) if d.span else None) for d in self.diagnostics
        ]
        n = len(self.diagnostics)
        parts.append(f"{n} error{'s' if n != 1 else ''} found")
        return "\n\n".join(parts)

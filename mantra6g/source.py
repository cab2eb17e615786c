"""Source files and positions: what every user-facing diagnostic points at."""

from __future__ import annotations

from dataclasses import dataclass


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

    def line_text(self, line: int) -> str:
        lines = self.text.splitlines()
        return lines[line - 1] if 1 <= line <= len(lines) else ""

    def excerpt(self, span: Span) -> str:
        """The span's first line with a caret row under it, in the ``NN | text`` style."""
        text = self.line_text(span.line).replace("\t", " ")
        gutter = str(span.line)
        if span.end_line == span.line and span.end_column > span.column:
            width = span.end_column - span.column
        else:
            width = 1
        width = max(1, min(width, len(text) - span.column + 2))
        pad = " " * len(gutter)
        caret = " " * (span.column - 1) + "^" * width
        return f" {pad} |\n {gutter} | {text}\n {pad} | {caret}"

"""The errors users see: `path:line:col: error: message`, followed by the offending line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One problem in an input file; line and col are 1-based (0 = unknown)."""

    path: str
    line: int
    col: int
    message: str
    source_line: str | None = None

    def format(self) -> str:
        where = self.path
        if self.line:
            where += f":{self.line}:{self.col or 1}"
        text = f"{where}: error: {self.message}"
        if self.source_line is not None and self.source_line.strip():
            text += f"\n    {self.source_line.rstrip()}\n    {' ' * max(self.col - 1, 0)}^"
        return text


class CalmplaceError(Exception):
    """Bad input or a failed build: reported without a traceback, exit status 1."""


@dataclass
class ScriptErrors(CalmplaceError):
    """Every problem found in one or more input files."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.format() for p in self.problems)


class ProblemCollector:
    """Gathers problems for one source text, with the line text attached."""

    def __init__(self, path: Path | str, source: str | None = None):
        self.path = str(path)
        self.lines = source.splitlines() if source is not None else []
        self.problems: list[Problem] = []

    def add(self, message: str, line: int = 0, col: int = 0) -> None:
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        self.problems.append(Problem(self.path, line, col, message, src))

    def raise_if_any(self) -> None:
        if self.problems:  # in reading order, as a person fixes them
            raise ScriptErrors(sorted(self.problems, key=lambda p: (p.line, p.col)))

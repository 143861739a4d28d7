"""The errors users see: `path:line:col: error: message`, followed by the offending line."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

# The line breaks YAML (1.1, as PyYAML reads it) counts: CR LF, CR, LF, NEL, LS, PS. Positions and
# the quoted source lines follow the same breaks, so a file saved with old Mac (CR) endings or
# with U+2028 in it still gets the right line number.
LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def split_lines(text: str) -> list[str]:
    """The lines of a text, split at YAML's line breaks only (not at form feeds, as splitlines would)."""
    return LINE_BREAK.split(text)


def line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of a character offset, counting lines as YAML does."""
    line, line_start = 1, 0
    for m in LINE_BREAK.finditer(text, 0, index):
        line, line_start = line + 1, m.end()
    return line, index - line_start + 1


def display_path(path: Path | str) -> str:
    """A path as the user would type it: relative to the working folder where it can be."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def os_problem(exc: OSError, *, path: bool = True) -> str:
    """An OS error from writing a file, as a person reads it: "build/templates/en-GB: a file is in
    the way where a folder should be" (not "[Errno 20] Not a directory: 'build/templates/en-GB'");
    with `path=False` the reason alone, for a message that names the folder itself."""
    import errno
    import os

    reason = {errno.ENOTDIR: "a file is in the way where a folder should be",
              errno.EISDIR: "a folder is in the way where a file should be",
              errno.EEXIST: "a file is in the way where a folder should be",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.ENOSPC: "the disk is full", errno.EDQUOT: "over the disk quota",
              errno.EROFS: "the disk is read-only", errno.ENOENT: "no such folder"}.get(
        exc.errno, (exc.strerror or type(exc).__name__).rstrip(".").lower())
    if exc.errno == errno.ENOENT and exc.filename and Path(os.fsdecode(exc.filename)).parent.is_dir():
        # the folder is there but takes no new file (/proc, a vanished mount): name the folder, not
        # the temp file calmplace tried to make in it
        folder = Path(os.fsdecode(exc.filename)).parent
        return f"{display_path(folder)}: new files cannot be made there" if path else "new files cannot be made there"
    return f"{display_path(os.fsdecode(exc.filename))}: {reason}" if path and exc.filename else reason


def _shown_line(line: str) -> str:
    """The source line as printed: control characters (a bell, a form feed) shown as U+FFFD."""
    return "".join("\ufffd" if ch != "\t" and unicodedata.category(ch) == "Cc" else ch for ch in line)


def _caret_pad(line: str, col: int) -> str:
    """What goes before the caret so it sits under column `col` of `line` as a terminal shows it:
    the line's own tabs, two spaces under a wide (East Asian) character, none under a combining mark."""
    out = []
    for ch in line[: max(col - 1, 0)]:
        if ch == "\t":
            out.append("\t")
        elif unicodedata.combining(ch):
            continue
        else:
            out.append("  " if unicodedata.east_asian_width(ch) in ("W", "F") else " ")
    return "".join(out)


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
            text += f"\n    {_shown_line(self.source_line.rstrip())}\n    {_caret_pad(self.source_line, self.col)}^"
        return text


class CalmplaceError(Exception):
    """Bad input or a failed build: reported without a traceback, exit status 1."""


@dataclass
class ScriptErrors(CalmplaceError):
    """Every problem found in one or more input files."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(p.format() for p in self.problems)


class WordedErrors(CalmplaceError):
    """Problems already worded in full ("path:line:col: error: ..."), one a line: shown as they are,
    with no "error: " of the command's own before them."""


class ProblemCollector:
    """Gathers problems for one source text, with the line text attached."""

    def __init__(self, path: Path | str, source: str | None = None):
        self.path = str(path)
        self.lines = split_lines(source) if source is not None else []
        self.problems: list[Problem] = []

    def add(self, message: str, line: int = 0, col: int = 0) -> None:
        self.problems.append(Problem(self.path, line, col, message, self.line_text(line)))

    def line_text(self, line: int) -> str | None:
        """The text of 1-based `line`, or None past the text."""
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def raise_if_any(self) -> None:
        if self.problems:  # in reading order, as a person fixes them; a node shared by aliases once
            raise ScriptErrors(sorted(dict.fromkeys(self.problems), key=lambda p: (p.line, p.col)))

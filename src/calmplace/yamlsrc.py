"""YAML read as a node tree with source positions, so every problem can name its line and column.

`yaml.compose` builds nodes without constructing Python objects, so no tag can execute
anything (the safety of `yaml.safe_load`, and more: every non-standard tag is refused).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ProblemCollector

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
_STANDARD_TAGS = {STR, INT, FLOAT, BOOL, NULL, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class Invalid(Exception):
    """Raised inside a reader after its problem was recorded, to skip the rest of a value."""


@dataclass
class Source:
    """One YAML file: its text, its problems, and helpers that read nodes and report positions."""

    path: Path
    text: str
    problems: ProblemCollector

    @classmethod
    def read(cls, path: Path, *, display_path: str | None = None) -> tuple["Source", Node | None]:
        """Read and compose a file; problems (not UTF-8, broken YAML, tags) are recorded, not raised."""
        shown = display_path or str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            collector = ProblemCollector(shown)
            collector.add(f"cannot read file: {exc.strerror or exc}")
            return cls(path, "", collector), None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = raw[: exc.start].decode("utf-8", errors="replace")
            line = good.count("\n") + 1
            col = len(good) - (good.rfind("\n") + 1) + 1
            collector = ProblemCollector(shown, raw.decode("utf-8", errors="replace"))
            collector.add(f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line, col)
            return cls(path, "", collector), None
        if text.startswith("\ufeff"):
            text = text[1:]
        src = cls(path, text, ProblemCollector(shown, text))
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            src.error(f"invalid YAML: {message}", line=mark.line + 1 if mark else 0, col=mark.column + 1 if mark else 0)
            return src, None
        except yaml.YAMLError as exc:
            src.error(f"invalid YAML: {exc}")
            return src, None
        if node is not None:
            src._check_tags(node)
        return src, (None if src.problems.problems else node)

    # -- reporting -----------------------------------------------------------------------------

    def error(self, message: str, node: Node | None = None, *, line: int = 0, col: int = 0) -> None:
        if node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.problems.add(message, line, col)

    def error_at(self, message: str, position: tuple[int, int]) -> None:
        self.problems.add(message, *position)

    def fail(self, message: str, node: Node | None = None) -> Invalid:
        self.error(message, node)
        return Invalid(message)

    def position_of_index(self, index: int) -> tuple[int, int]:
        """1-based line and column of a character offset in the source text."""
        before = self.text[:index]
        line = before.count("\n") + 1
        return line, index - (before.rfind("\n") + 1) + 1

    def _check_tags(self, node: Node) -> None:
        if node.tag not in _STANDARD_TAGS:
            self.error(f"YAML tag {node.tag!r} is not allowed in calmplace files", node)
        if isinstance(node, MappingNode):
            for key, value in node.value:
                self._check_tags(key)
                self._check_tags(value)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self._check_tags(item)

    # -- typed readers ---------------------------------------------------------------------------

    def mapping(self, node: Node, *, what: str, allowed: dict[str, bool]) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key; unknown keys (with a did-you-mean), duplicates and
        missing required keys (allowed[key] is True) are problems."""
        if not isinstance(node, MappingNode):
            raise self.fail(f"{what} must be a mapping of keys to values", node)
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str) or key_node.tag not in (STR, INT, FLOAT, BOOL, NULL):
                self.error(f"keys of {what} must be plain names", key_node)
                continue
            if key in entries:
                self.error(f"duplicate key {key!r} in {what}", key_node)
                continue
            if key not in allowed:
                hint = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                extra = f"; did you mean {hint[0]!r}?" if hint else f" (known keys: {', '.join(allowed)})"
                self.error(f"unknown key {key!r} in {what}{extra}", key_node)
                continue
            entries[key] = (key_node, value_node)
        for key, required in allowed.items():
            if required and key not in entries:
                self.error(f"{what} needs the key {key!r}", node)
        return entries

    def string(self, node: Node, *, what: str, allow_empty: bool = False) -> str:
        if not isinstance(node, ScalarNode) or node.tag == NULL:
            raise self.fail(f"{what} must be text", node)
        if node.tag == BOOL:
            raise self.fail(f"{what} must be text, not {node.value!r} (quote it if you mean the word)", node)
        if not allow_empty and not node.value.strip():
            raise self.fail(f"{what} must not be empty", node)
        return node.value

    def number(self, node: Node, *, what: str, low: float | None = None, high: float | None = None) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (INT, FLOAT):
            raise self.fail(f"{what} must be a number", node)
        try:
            value = float(node.value.replace("_", ""))
        except ValueError:
            raise self.fail(f"{what} must be a number", node) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.fail(f"{what} must be between {low:g} and {high:g}, got {value:g}", node)
        return value

    def sequence(self, node: Node, *, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            raise self.fail(f"{what} must be a list", node)
        return list(node.value)

    def string_list(self, node: Node, *, what: str) -> list[str]:
        if isinstance(node, ScalarNode) and node.tag == STR:
            return [node.value]
        out = []
        for item in self.sequence(node, what=what):
            try:
                out.append(self.string(item, what=f"an entry of {what}"))
            except Invalid:
                pass
        return out

    def scalar_value(self, node: Node) -> object:
        """A scalar as YAML would construct it (str, int, float, bool, None)."""
        if not isinstance(node, ScalarNode):
            return node
        return _construct(node)


def _construct(node: ScalarNode) -> object:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()

"""YAML read as a node tree with source positions, so every problem can name its line and column.

`yaml.compose` builds nodes without constructing Python objects, so no tag can execute
anything (the safety of `yaml.safe_load`, and more: every non-standard tag is refused).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import LINE_BREAK, ProblemCollector, line_col

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
TIMESTAMP = "tag:yaml.org,2002:timestamp"  # `2024-01-01`: read as the text it is wherever text is expected
MERGE = "tag:yaml.org,2002:merge"
_STANDARD_TAGS = {STR, INT, FLOAT, BOOL, NULL, TIMESTAMP, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
_TEXT_TAGS = (STR, INT, FLOAT, TIMESTAMP)  # scalars whose source text is taken as text where text is expected


class _Loader(yaml.SafeLoader):
    """SafeLoader's composer, refusing an alias to a node that contains it (`&x [*x]`) at the alias.

    PyYAML would build a cyclic node graph there, and every walk over it would recurse forever.
    Such an alias becomes an empty placeholder node, remembered with the alias's position."""

    def __init__(self, stream):
        super().__init__(stream)
        self.open_anchors: set[str] = set()
        self.recursive: list[tuple[ScalarNode, str]] = []

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            if event.anchor in self.open_anchors:
                self.get_event()
                node = ScalarNode(NULL, "", event.start_mark, event.end_mark)
                self.recursive.append((node, event.anchor))
                return node
        return super().compose_node(parent, index)

    def compose_sequence_node(self, anchor):
        return self._composing(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor):
        return self._composing(anchor, super().compose_mapping_node)

    def _composing(self, anchor, compose):
        if anchor is None:
            return compose(anchor)
        self.open_anchors.add(anchor)
        try:
            return compose(anchor)
        finally:
            self.open_anchors.discard(anchor)


def _compose(text: str) -> tuple[Node | None, list[tuple[ScalarNode, str]]]:
    loader = _Loader(text)
    try:
        try:
            return loader.get_single_node(), loader.recursive
        except RecursionError:
            mark = loader.get_mark()
            raise yaml.MarkedYAMLError(problem="the YAML nests too deeply to read", problem_mark=mark) from None
    finally:
        loader.dispose()


class Invalid(Exception):
    """Raised inside a reader after its problem was recorded, to skip the rest of a value."""


@dataclass
class Source:
    """One YAML file: its text, its problems, and helpers that read nodes and report positions."""

    path: Path
    text: str
    problems: ProblemCollector
    _refused: set[int] = field(default_factory=set, repr=False)  # ids of nodes under a refused tag
    keys: frozenset[str] = frozenset()   # the keys this kind of file has (for the parser's hints)

    @classmethod
    def read(cls, path: Path, *, display_path: str | None = None,
             keys: frozenset[str] = frozenset()) -> tuple["Source", Node | None]:
        """Read and compose a file; problems (not UTF-8, broken YAML, tags) are recorded, not raised.
        `keys`: the keys such a file has, so that a line starting with one is named as a key."""
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
        src = cls(path, text, ProblemCollector(shown, text), keys=keys)
        try:
            node, recursive = _compose(text)
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, only an offset
            char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
            src.error_at(f"invalid YAML: the character {char!r} (U+{ord(char[:1] or ' '):04X}) is not allowed "
                         f"in a YAML file: remove it", src.position_of_index(exc.position))
            return src, None
        except yaml.MarkedYAMLError as exc:
            src._yaml_error(exc)
            return src, None
        except yaml.YAMLError as exc:
            src.error(f"invalid YAML: {exc}", line=1, col=1)
            return src, None
        for alias, anchor in recursive:
            src.error(f"the alias *{anchor} is used inside the node it names (&{anchor}): "
                      f"a value cannot contain itself", alias)
            src._refused.add(id(alias))
        if node is not None:
            src._check_tags(node)
        # Tag problems do not stop the reading: the nodes they name are skipped silently (see error).
        return src, node

    def _yaml_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        if "could not find expected ':'" in str(exc.problem or "") and exc.context_mark is not None:
            # a line read as the start of a key: where the key would start, not where YAML gave up
            # (QA: a text block's line moved back to the keys' column was reported at the next
            # section's dash, or past the file's end)
            mark = exc.context_mark
            if self._inside_block(mark):
                self.error("invalid YAML: this line is indented less than the first line of the text block above "
                           "it, as far as the keys around it, and has no ':' to be one: indent every line of a "
                           "`|` or `>` block at least as far as its first line",
                           line=mark.line + 1, col=mark.column + 1)
                return
            message = ("this line has no ':' to make it a key, and is not part of a text: to go on with the text "
                       "above, indent it further than that text's key (or write the text as a block, `text: |`)")
        if (exc.context_mark is not None and exc.context and exc.problem_mark is not None
                and "end of stream" in str(exc.problem)):
            # e.g. an unclosed quote: the end of the file says nothing; where the quote opens does
            what = str(exc.context).removeprefix("while scanning ").removeprefix("while parsing ")
            mark = exc.context_mark
            message = f"the file ends inside {what} that starts here (is a closing quote or bracket missing?)"
        quote = self._quote_ends_early(exc, mark) if mark is not None else None
        if quote is not None:   # at the quote that ends the text
            self.error(f"invalid YAML: {quote[0]}", line=mark.line + 1, col=quote[1] + 1)
            return
        hint = self._yaml_hint(exc, mark) if mark is not None else ""
        self.error(f"invalid YAML: {message}{hint}", line=mark.line + 1 if mark else 1,
                   col=mark.column + 1 if mark else 1)

    def _quote_ends_early(self, exc: yaml.MarkedYAMLError, mark) -> tuple[str, int] | None:
        """The message for a quoted text that a quote inside it ends early, the parser's words
        replaced (QA: 'It's fine' and "say "hello"" were called badly indented), and the column of
        that quote; else None."""
        problem = str(exc.problem or "")
        line = self.text[mark.index - mark.column:].split("\n", 1)[0]
        quoted = re.match(r"\s*(?:-\s+)?[\w-]+:\s*(['\"])", line)
        if not quoted or not ("expected <block end>" in problem or "expected key" in problem):
            return None
        q, opens = quoted.group(1), quoted.end()
        closes = line.find(q, opens)
        if not 0 <= closes < mark.column:
            return None
        lo = closes
        while lo > opens and not line[lo - 1].isspace():
            lo -= 1
        word = line[lo:].split()[0]
        inside = "double it inside single quotes ('')" if q == "'" else 'write it \\" inside double quotes'
        return (f"the {q} in {word} ends the quoted text there: {inside}, or write the text as a block "
                f"(`text: |`, then the text on the lines below, indented), where quotes need nothing"), closes

    def _yaml_hint(self, exc: yaml.MarkedYAMLError, mark) -> str:
        """What the parser's words usually mean in a script, for the mistakes authors make most
        (QA: `text: [pause 2s] Welcome` and `text: Notice one thing: your breath.` gave only the
        parser's jargon)."""
        problem = str(exc.problem or "")
        line = self.text[mark.index - mark.column:].split("\n", 1)[0]
        if "\t" in problem or "'\\t'" in problem:   # PyYAML names the tab, raw or escaped
            if line[:mark.column].strip(" \t-"):   # QA: a tab inside a one-line text was called indenting
                return ("; a tab inside an unquoted text: replace it with a space, or put the text in quotes "
                        "or a block (`text: |`)")
            return "; YAML does not allow tabs for indenting: indent with spaces"
        # a key only if it is one (QA: a text's later line `Remember: breathe.` was told to move left as a key)
        before = line[:mark.column].strip()
        if "mapping values are not allowed" in problem and before in self.keys:
            return ("; this line looks like a key, but it is indented further than the keys above it, so YAML "
                    "reads it as more of the text above: start it in the same column as those keys")
        if "mapping values are not allowed" in problem:
            return ("; a colon and a space inside an unquoted text start a new key: put the text in quotes, "
                    "or write it as a block (`text: |`, then the text on the lines below, indented)")
        value = re.match(r"\s*(?:-\s+)?[\w-]+:\s*([\[{])", line)
        if value and "expected <block end>" in problem or value and "flow" in str(exc.context or ""):
            return (f"; a value that starts with {value.group(1)} is read as a YAML "
                    f"{'list' if value.group(1) == '[' else 'mapping'}: put the whole text in quotes "
                    f"or write it as a block (`text: |`)")
        if "expected <block end>" in problem or "did not find expected key" in problem:
            word = re.match(r"[\w-]+(?=:)", line[mark.column:])
            if not (word and word.group(0) in self.keys) and self._inside_block(mark):
                # QA: a line of a `|` text indented less than its first line was told about keys
                return ("; this line is indented less than the first line of the text block above it: indent "
                        "every line of a `|` or `>` block at least as far as its first line")
            return ("; this line is not indented like the lines around it: keys of one mapping (a section's "
                    "title, text, pause_after) start in the same column")
        return ""

    def _inside_block(self, mark) -> bool:
        """Whether the line at `mark` falls just out of a `key: |` (or `>`) block above it: going up
        past the lines indented further than it (the block's text), the first line that is not
        is that key's."""
        for above in reversed(self.text.split("\n")[:mark.line]):
            if not above.strip() or above.lstrip().startswith("#"):
                continue
            if re.match(r"\s*(?:-\s+)?[\w-]+:\s*[|>][-+0-9]*\s*(?:#.*)?$", above):
                return True   # the block's own key line (its dash may reach past the line's column)
            if len(above) - len(above.lstrip(" ")) > mark.column:
                continue   # a line of the block's text
            return False
        return False

    # -- reporting -----------------------------------------------------------------------------

    def error(self, message: str, node: Node | None = None, *, line: int = 0, col: int = 0) -> None:
        if node is not None:
            if id(node) in self._refused:  # its tag (or recursive alias) was reported already
                return
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.problems.add(message, line, col)

    def refused(self, node: Node) -> bool:
        """A node whose tag was refused (or a recursive alias): already reported, to be skipped."""
        return id(node) in self._refused

    def error_at(self, message: str, position: tuple[int, int]) -> None:
        self.problems.add(message, *position)

    def fail(self, message: str, node: Node | None = None) -> Invalid:
        self.error(message, node)
        return Invalid(message)

    def position_of_index(self, index: int) -> tuple[int, int]:
        """1-based line and column of a character offset in the source text (YAML's line breaks)."""
        return line_col(self.text, index)

    def _check_tags(self, root: Node) -> None:
        """Refuse every non-standard tag and merge keys, each reported once at its node; the refused
        nodes and everything under them are skipped by the readers. Each node is visited once, however
        often aliases share it (a "billion laughs" file is a few hundred nodes, not 10^9)."""
        seen: set[int] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, MappingNode):
                for key, value in node.value:
                    if key.tag == MERGE:
                        self.error("merge keys (<<) are not supported: write the keys out", key)
                        self._refuse(key)
                        self._refuse(value)
                        continue
                    stack.extend((value, key))
            elif isinstance(node, SequenceNode):
                stack.extend(reversed(node.value))
            if node.tag not in _STANDARD_TAGS and id(node) not in self._refused:
                self.error(f"YAML tag {node.tag!r} is not allowed in calmplace files", node)
                self._refuse(node)

    def _refuse(self, root: Node) -> None:
        stack = [root]
        while stack:
            node = stack.pop()
            if id(node) in self._refused:
                continue
            self._refused.add(id(node))
            if isinstance(node, MappingNode):
                stack.extend(n for pair in node.value for n in pair)
            elif isinstance(node, SequenceNode):
                stack.extend(node.value)

    def scalar_text(self, node: Node) -> tuple[str, list[int]] | None:
        """A scalar's text as the author laid it out, with each character's offset in the source.

        A blank line, in every style (plain, quoted, literal, folded), is a blank line here ("\n\n"),
        where YAML's folding leaves a single "\n" of it in the value of all but literal scalars. A
        line break that folding turns into a space is a space (a literal scalar keeps its breaks);
        escapes of double-quoted scalars are decoded. Apart from line breaks and spaces, the text is
        the scalar's value (checked: None, for the caller to use the value, if it ever is not)."""
        if not isinstance(node, ScalarNode) or node.start_mark is None or node.end_mark is None:
            return None
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.text[start:end]
        chars: list[str] = []
        where: list[int] = []

        def verbatim(i: int, stop: int) -> None:
            """raw[i:stop], each line break one "\n" at the break's first character; a run of
            other characters at a time (a Python step per character was most of a script's load)."""
            for m in LINE_BREAK.finditer(raw, i, stop):
                chars.extend(raw[i:m.start()])
                where.extend(range(start + i, start + m.start()))
                chars.append("\n")
                where.append(start + m.start())
                i = m.end()
            chars.extend(raw[i:stop])
            where.extend(range(start + i, start + stop))

        style = node.style
        if style in ("|", ">"):
            header = LINE_BREAK.search(raw)
            if header is not None:
                verbatim(header.end(), len(raw))
        elif style is None:
            verbatim(0, len(raw))
        elif style == "'" and raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
            i = 1
            while i < len(raw) - 1:
                if raw.startswith("''", i):
                    chars.append("'")
                    where.append(start + i)
                    i += 2
                else:
                    m = LINE_BREAK.match(raw, i)
                    chars.append("\n" if m else raw[i])
                    where.append(start + i)
                    i = m.end() if m else i + 1
        elif style == '"' and raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            if not _decode_double_quoted(raw, start, chars, where):
                return None
        else:
            return None
        if style != "|":
            # a line break is folded into a space unless it is part of a blank line
            for k, ch in enumerate(chars):
                if ch == "\n" and not (_next_is_break(chars, k, -1) or _next_is_break(chars, k, +1)):
                    chars[k] = " "
        text = "".join(chars)
        if text.split() != node.value.split():
            return None
        return text, where

    # -- typed readers ---------------------------------------------------------------------------

    def mapping(self, node: Node, *, what: str, allowed: dict[str, bool],
                belongs: dict[str, str] | None = None) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key; unknown keys (with a did-you-mean, or where the key belongs:
        `belongs` maps keys of mappings inside this one to a hint), duplicates and missing
        required keys (allowed[key] is True) are problems."""
        if self.refused(node):
            raise Invalid(what)
        if not isinstance(node, MappingNode):
            raise self.fail(f"{what} must be a mapping of keys to values", node)
        entries: dict[str, tuple[Node, Node]] = {}
        meant: set[str] = set()   # keys an unknown key was taken for: not also "needs the key" (QA: `titel`)
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str) or key_node.tag not in (*_TEXT_TAGS, BOOL, NULL):
                self.error(f"keys of {what} must be plain names", key_node)
                continue
            if key in entries:
                self.error(f"duplicate key {key!r} in {what}", key_node)
                continue
            if key not in allowed:
                hint = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
                extra = f"; did you mean {hint[0]!r}?" if hint else f" (known keys: {', '.join(allowed)})"
                meant.update(hint)
                if belongs and key in belongs:   # QA: `sound: rain` in column 0 under `ambience:`
                    extra = f"; {belongs[key]}"
                self.error(f"unknown key {key!r} in {what}{extra}", key_node)
                continue
            entries[key] = (key_node, value_node)
        for key, required in allowed.items():
            if required and key not in entries and key not in meant:
                self.error(f"{what} needs the key {key!r}", node)
        return entries

    def string(self, node: Node, *, what: str, allow_empty: bool = False) -> str:
        if self.refused(node):
            raise Invalid(what)
        if isinstance(node, (SequenceNode, MappingNode)):   # QA: `text: [pause 2s]` was told only "must be text"
            kind, mark = ("list", "[") if isinstance(node, SequenceNode) else ("mapping", "{")
            block = " or write it as a block (`text: |`)" if what.startswith("text") else ""
            hint = (f": a value that starts with {mark} is read as a YAML {kind}; put the whole value in "
                    f"quotes{block}") if node.flow_style else ""
            raise self.fail(f"{what} must be text, not a {kind}{hint}", node)
        if not isinstance(node, ScalarNode):
            raise self.fail(f"{what} must be text", node)
        if node.tag == NULL and node.value in ("", "~"):   # `text:` with nothing after it
            raise self.fail(f"{what} is empty: write it after the colon, or as a block (`{what}: |`, then "
                            f"the lines below, indented)" if " " not in what else f"{what} must not be empty",
                            node)
        if node.tag in (NULL, BOOL):   # null, yes, off...
            raise self.fail(f"{what} must be text, not {node.value!r} (quote it if you mean the word)", node)
        if not allow_empty and not node.value.strip():
            raise self.fail(f"{what} must not be empty", node)
        return node.value

    def number(self, node: Node, *, what: str, low: float | None = None, high: float | None = None) -> float:
        if self.refused(node):
            raise Invalid(what)
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
        if self.refused(node):
            raise Invalid(what)
        if not isinstance(node, SequenceNode):
            hint = ": start each entry on a line of its own with a dash and a space (`- `)" \
                if isinstance(node, MappingNode) and not node.flow_style else ""
            raise self.fail(f"{what} must be a list{hint}", node)
        return list(node.value)

    def string_list(self, node: Node, *, what: str) -> list[str]:
        return [item.value for item in self.string_nodes(node, what=what)]

    def string_nodes(self, node: Node, *, what: str) -> list[Node]:
        """The nodes of a list of strings (or of one string given alone), each checked to be text;
        the ones that are not are reported and left out."""
        if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS and not self.refused(node):
            return [node]
        out = []
        for item in self.sequence(node, what=what):
            try:
                self.string(item, what=f"an entry of {what}")
                out.append(item)
            except Invalid:
                pass
        return out

    def scalar_value(self, node: Node) -> object:
        """A scalar as YAML would construct it (str, int, float, bool, None)."""
        if not isinstance(node, ScalarNode):
            return node
        return _construct(node)


def _next_is_break(chars: list[str], k: int, step: int) -> bool:
    """Whether the nearest character from chars[k] in direction `step`, past spaces and tabs, is a line break."""
    j = k + step
    while 0 <= j < len(chars) and chars[j] in " \t":
        j += step
    return 0 <= j < len(chars) and chars[j] == "\n"


_ESCAPES = yaml.scanner.Scanner.ESCAPE_REPLACEMENTS
_ESCAPE_CODES = yaml.scanner.Scanner.ESCAPE_CODES


def _decode_double_quoted(raw: str, start: int, chars: list[str], where: list[int]) -> bool:
    """A double-quoted scalar's characters (escapes decoded, raw line breaks kept as "\n")."""
    i, stop = 1, len(raw) - 1
    while i < stop:
        ch = raw[i]
        if ch == "\\":
            nxt = raw[i + 1] if i + 1 < stop else ""
            m = LINE_BREAK.match(raw, i + 1)
            if m:  # an escaped line break joins the lines, without a space
                i = m.end()
                while i < stop and raw[i] in " \t":
                    i += 1
                continue
            if nxt in _ESCAPES:
                chars.append(_ESCAPES[nxt])
                where.append(start + i)
                i += 2
                continue
            if nxt in _ESCAPE_CODES:
                n = _ESCAPE_CODES[nxt]
                try:
                    chars.append(chr(int(raw[i + 2:i + 2 + n], 16)))
                except ValueError:
                    return False
                where.append(start + i)
                i += 2 + n
                continue
            return False
        m = LINE_BREAK.match(raw, i)
        chars.append("\n" if m else ch)
        where.append(start + i)
        i = m.end() if m else i + 1
    return True


def _construct(node: ScalarNode) -> object:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()

"""Script stage: `scripts/<id>.yaml` → `Script`, every rule of the contract checked with its position.

All problems of a file are collected (never just the first) and raised together as
`ScriptErrors`, each as `path:line:col: error: message`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence, Union

from yaml.nodes import MappingNode, Node, ScalarNode

from .errors import CalmplaceError, Problem, ScriptErrors, display_path
from .pdf_glyphs import FONT_LABEL, describe_chars, unprintable
from .units import UNIT_WORDS, duration_hint, parse_duration
from .yamlsrc import BOOL, NULL, Invalid, Source

ID_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
LOCALE_PATTERN = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")

DEFAULT_PAUSE_S = 2.0          # `[pause]` (contract §2)
MAX_PAUSE_S = 600.0            # a single pause longer than 10 minutes is an error (contract §2)
MAX_TRACK_S = 3 * 3600.0       # a track longer than 3 hours is an error (contract §2)
DEFAULT_LEVEL_DB = -22.0
DEFAULT_DUCK_DB = 6.0
LEVEL_DB_RANGE = (-60.0, 0.0)  # a bed louder than the voice, or below -60 dB, is a mistake
DUCK_DB_RANGE = (0.0, 30.0)

_TOP_KEYS = {
    "title": True, "collection": False, "author": False, "description": False, "locales": True,
    "voice": False, "ambience": False, "lead_in": False, "tail": False, "paragraph_pause": False,
    "spelling": False, "sections": True, "references": False,
}
_SECTION_KEYS = {"title": False, "text": True, "pause_after": False, "ambience": False}
_AMBIENCE_KEYS = {"sound": True, "level_db": False, "duck_db": False, "fade_in": False, "fade_out": False}
# where a key of a mapping inside the script belongs, when it is found among the script's own keys
_BELONGS = {**{key: "it belongs in a section, under `sections:` (`  - text: ...`)"
               for key in _SECTION_KEYS if key not in _TOP_KEYS},
            **{key: "it belongs under `ambience:` (indent it below that line), or under a section's `ambience:`"
               for key in _AMBIENCE_KEYS}}

# Any bracketed marker; only `[pause]` and `[pause <duration>]` are known (contract §2). A marker
# sits on one line (of the text as laid out: folding styles join a wrapped line with a space).
_MARKER = re.compile(r"\[([^\[\]\n]*)\]")
_PAUSE_MARKER = re.compile(r"pause(?:\s+(\S+))?", re.IGNORECASE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n\s*")


# ------------------------------------------------------------------------------------------------
# The parsed script: plain frozen values, no YAML nodes.


@dataclass(frozen=True)
class Speech:
    """Words to be spoken, whitespace folded; spelling not yet applied."""

    text: str


@dataclass(frozen=True)
class Pause:
    """Silence of the voice: from markers (`cue`: printed as "pause, N seconds") and/or blank
    lines (`paragraph`: printed as a paragraph break)."""

    seconds: float
    paragraph: bool = False
    cue: bool = False


Segment = Union[Speech, Pause]


@dataclass(frozen=True)
class Ambience:
    sound: str
    level_db: float = DEFAULT_LEVEL_DB
    duck_db: float = DEFAULT_DUCK_DB
    fade_in_s: float = 4.0
    fade_out_s: float = 8.0


@dataclass(frozen=True)
class Section:
    title: Mapping[str, str] | None          # locale → title
    body: Mapping[str, tuple[Segment, ...]]  # locale → segments
    pause_after_s: float
    ambience: Ambience | None | str = "inherit"  # "inherit": the script's; None: silence
    pause_after_given: bool = True   # False: the default (paragraph_pause), which the last section does not add

    def pause_after_in(self, script: "Script") -> float:
        """The silence this section adds after itself: the last one's default is none, so the
        track ends with `tail` of ambience after the last word (contract §1), no more."""
        last = self is script.sections[-1]
        return 0.0 if last and not self.pause_after_given else self.pause_after_s


@dataclass(frozen=True)
class Script:
    id: str
    path: str
    title: Mapping[str, str]
    locales: tuple[str, ...]
    sections: tuple[Section, ...]
    collection: Mapping[str, str] | None = None
    author: Mapping[str, str] | None = None
    description: Mapping[str, str] | None = None
    voice: str = "narrator"
    ambience: Ambience | None = None
    lead_in_s: float = 3.0
    tail_s: float = 10.0
    paragraph_pause_s: float = 1.5
    spelling: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    references: tuple[str, ...] = ()
    # where each locale is written (the message left empty), for problems found after loading, such
    # as a locale no installed voice speaks (QA: that message had no line and column)
    locale_spots: Mapping[str, Problem] = field(default_factory=dict, compare=False, repr=False)

    def problem_at_locale(self, locale: str, message: str) -> str:
        """`message` as a problem at `locale` in the script (path:line:col, the line and a caret)."""
        spot = self.locale_spots.get(locale) or Problem(self.path, 0, 0, "")
        return replace(spot, message=message).format()

    def spell(self, text: str, locale: str) -> str:
        """Apply the locale's whole-word, case-keeping substitutions (contract §1 `spelling`)."""
        return apply_spelling(text, self.spelling.get(locale, {}))

    def localized(self, value: Mapping[str, str] | None, locale: str) -> str | None:
        return None if value is None else self.spell(value[locale], locale)


# region subtags people write that ISO 3166 does not assign (BCP 47 regions are ISO 3166-1 codes):
# no system voice matches them, so the build would fail later with no position
_NOT_REGIONS = {"UK": "the United Kingdom's code is GB", "EN": "a language code, not a country's"}


def apply_spelling(text: str, table: Mapping[str, str]) -> str:
    """Whole-word substitution that keeps the case of the original: Colour → Color, COLOUR → COLOR,
    and, for an entry written capitalised (`Gate: Gateway`), gate → gateway. A replacement whose
    capitals are its own (`tv: TV`, `ipad: iPad`) keeps them."""
    if not table:
        return text
    pattern, lookup, capitalised_entry = _spelling_matcher(tuple(table.items()))

    def replace(m: re.Match) -> str:
        word, new = m.group(0), lookup[m.group(0).lower()]
        if word.isupper() and len(word) > 1:
            return new.upper()
        if word[0].isupper():
            return new[0].upper() + new[1:]
        if capitalised_entry[word.lower()]:   # the capital was the table's way of writing, not the word's
            return new[0].lower() + new[1:]
        return new

    return pattern.sub(replace, text)


@lru_cache(maxsize=64)
def _spelling_matcher(items: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, str], dict[str, bool]]:
    """A spelling table's pattern and lookups, made once per table (a plan spells every take, title
    and cue: 2,360 times for a library of 20 scripts)."""
    table = dict(items)
    lookup = {k.lower(): v for k, v in table.items()}
    # an entry written capitalised, key and replacement alike (Gate: Gateway), is plain words: it
    # follows the text's case; one with capitals inside (McDonald: MacDonald) is a name, as written
    capitalised_entry = {k.lower(): k == k.capitalize() and v == v.capitalize() and k[:1].isupper()
                         for k, v in table.items()}
    # Not \b: a word that begins or ends with punctuation (`Mr.`) has no word boundary after the dot.
    # A match must not touch a word character on either side, so `colour` leaves `colourful` alone.
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(k) for k in sorted(lookup, key=len, reverse=True))
                         + r")(?!\w)", re.IGNORECASE)
    return pattern, lookup, capitalised_entry


# ------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Project:
    """Where a script's voices and ambience files live (the repository root by default)."""

    root: Path

    @property
    def scripts_dir(self) -> Path:
        return self.root / "scripts"

    @property
    def voices_dir(self) -> Path:
        return self.root / "voices"

    @property
    def ambience_dir(self) -> Path:
        return self.root / "ambience"


def find_project(here: Path, scripts: Sequence[str] = ()) -> Project:
    """The project in folder `here`. When `here` has neither scripts/ nor voices/ but a folder above
    it, or above a named script file, is a project (scripts/ with a script in it, or voices/ with a
    profile), say where to run instead (QA: run from scripts/, `check` looked for scripts/scripts;
    run elsewhere with a script's path, the build could not find the voices)."""
    if (here / "scripts").is_dir() or (here / "voices").is_dir():
        return Project(here)
    named = [Path(s).resolve() for s in scripts if str(s).endswith((".yaml", ".yml"))]
    for folder in [*(p.parent.parent for p in named), *here.resolve().parents]:
        if _looks_like_a_project(folder):
            then = [str(p.relative_to(folder)) for p in named if folder in p.parents and p.is_file()]
            also = f", where the script is {then[0]}" if len(then) == 1 and then[0] != scripts[0] else ""
            raise CalmplaceError(f"{here.resolve()} is not a calmplace project (it has no scripts/ or voices/ "
                                 f"folder): run calmplace in {folder}{also}")
    return Project(here)


def _looks_like_a_project(folder: Path) -> bool:
    def holds(sub: str, patterns: tuple[str, ...]) -> bool:
        try:
            return (folder / sub).is_dir() and any(next((folder / sub).glob(p), None) for p in patterns)
        except OSError:
            return False
    return holds("scripts", ("*.yaml", "*.yml")) or holds("voices", ("*.yaml",))


def load_script(path: Path, *, project: Project | None = None, display_path: str | None = None) -> Script:
    """Read and validate one script; raise ScriptErrors listing every problem in it."""
    path = Path(path)
    src, node = Source.read(path, display_path=display_path,
                            keys=frozenset(_TOP_KEYS) | frozenset(_SECTION_KEYS) | frozenset(_AMBIENCE_KEYS))
    script = None
    if node is not None or not src.problems.problems:  # unreadable or broken YAML: nothing more to check
        script = _Reader(src, project).script(node)
    src.problems.raise_if_any()
    assert script is not None
    return script


class _Reader:
    def __init__(self, src: Source, project: Project | None):
        self.src = src
        self.project = project
        self.locales: tuple[str, ...] = ()
        self.locale_spots: dict[str, Problem] = {}

    # -- top level ---------------------------------------------------------------------------

    def script(self, node: Node | None) -> Script | None:
        src = self.src
        script_id = src.path.stem
        if not ID_PATTERN.fullmatch(script_id):
            src.error(f"script id {script_id!r} (the file name) must match [a-z0-9]+(-[a-z0-9]+)*, "
                      f"e.g. {_suggest_id(script_id)!r}", line=1, col=1)
        if node is None:
            src.error("the script is empty: it needs title, locales and sections", line=1, col=1)
            return None
        try:
            entries = src.mapping(node, what="the script", allowed=_TOP_KEYS, belongs=_BELONGS)
        except Invalid:
            return None
        self.locales = self._locales(entries.get("locales"))
        values: dict[str, object] = {}

        def read(key: str, fn, *args, **kwargs):
            if key in entries:
                try:
                    values[key] = fn(entries[key][1], *args, **kwargs)
                except Invalid:
                    pass

        read("title", self.localized, what="title")
        read("collection", self.localized, what="collection")
        read("author", self.localized, what="author")
        read("description", self.localized, what="description", fold=True)
        read("voice", self.voice)
        read("ambience", self.ambience, what="ambience")
        for key in ("lead_in", "tail", "paragraph_pause"):
            read(key, self.duration, what=key)
        read("spelling", self.spelling)
        read("references", self.references)
        paragraph_s = values.get("paragraph_pause", 1.5)
        sections = []
        if "sections" in entries:
            try:
                items = src.sequence(entries["sections"][1], what="sections")
                if not items:
                    src.error("sections must list at least one section", entries["sections"][1])
                for item in items:
                    try:
                        sections.append(self.section(item, paragraph_pause_s=paragraph_s,
                                                     ambience=values.get("ambience")))
                    except Invalid:
                        pass
            except Invalid:
                pass
        if not src.problems.problems and "sections" in entries:
            for loc in self.locales:   # sections of pauses alone are fine, a script of nothing to say is not
                if not any(isinstance(seg, Speech) for sec in sections for seg in sec.body[loc]):
                    src.error(f"the script has no words to speak{f' in {loc}' if len(self.locales) > 1 else ''}",
                              entries["sections"][1])
                    break
        if src.problems.problems:
            return None
        script = Script(
            id=script_id, path=src.problems.path, title=values["title"], locales=self.locales,
            sections=tuple(sections), collection=values.get("collection"), author=values.get("author"),
            description=values.get("description"), voice=values.get("voice", "narrator"),
            ambience=values.get("ambience"), lead_in_s=values.get("lead_in", 3.0), tail_s=values.get("tail", 10.0),
            paragraph_pause_s=paragraph_s, spelling=values.get("spelling", {}),
            references=tuple(values.get("references", ())), locale_spots=self.locale_spots,
        )
        # every locale: a locale map may give one locale's text far longer pauses than another's
        silence_s = {loc: script.lead_in_s + script.tail_s + sum(
            s.pause_after_in(script) + sum(seg.seconds for seg in s.body[loc] if isinstance(seg, Pause))
            for s in script.sections) for loc in self.locales}
        over = [loc for loc in self.locales if silence_s[loc] > MAX_TRACK_S]
        if over:
            longest = max(silence_s[loc] for loc in over)
            where = f" in {', '.join(over)}" if len(over) < len(self.locales) else ""
            src.error(f"the pauses alone last {longest / 3600:.1f} hours{where}; a track may last at most 3 hours",
                      node)
        return script

    def _locales(self, entry: tuple[Node, Node] | None) -> tuple[str, ...]:
        if entry is None:
            return ()
        try:
            nodes = self.src.string_nodes(entry[1], what="locales")
        except Invalid:
            return ()
        if not nodes:
            self.src.error("locales must list at least one locale, e.g. [en-GB, en-US]", entry[1])
        seen: list[str] = []
        for tag_node in nodes:  # each problem at its own tag
            tag = tag_node.value
            if not LOCALE_PATTERN.fullmatch(tag):
                fixed = tag.strip().replace("_", "-")
                hint = f"; did you mean {fixed!r}?" if fixed != tag and LOCALE_PATTERN.fullmatch(fixed) else ""
                self.src.error(f"{tag!r} is not a BCP 47 language tag such as en-GB{hint}", tag_node)
            elif "-" in tag and tag.rsplit("-", 1)[1].upper() in _NOT_REGIONS:
                head, region = tag.rsplit("-", 1)
                guess = {"UK": "GB", "EN": "GB" if head.lower() == "en" else None}[region.upper()]
                hint = f"; did you mean {head + '-' + guess!r}?" if guess else ""
                self.src.error(f"{tag!r}: {region} is not a region code ({_NOT_REGIONS[region.upper()]}){hint}",
                               tag_node)
            elif tag.lower() in (loc.lower() for loc in seen):
                first = next(loc for loc in seen if loc.lower() == tag.lower())
                again = "" if first == tag else \
                    f" (as {first!r}: language tags ignore case, and so do some file systems)"
                self.src.error(f"locale {tag!r} is listed twice{again}", tag_node)
            else:
                seen.append(tag)
                line, col = tag_node.start_mark.line + 1, tag_node.start_mark.column + 1
                self.locale_spots[tag] = Problem(self.src.problems.path, line, col, "",
                                                 self.src.problems.line_text(line))
        return tuple(seen)

    def _same_locale_hint(self, tag: object) -> str:
        """'; did you mean 'en-US'?' for 'en-us': BCP 47 tags are case-insensitive, but a locale
        map's keys must be written as `locales` lists them."""
        if not isinstance(tag, str):
            return ""
        same = [loc for loc in self.locales if loc.lower() == tag.lower()]
        return f"; did you mean {same[0]!r} (written as in locales)?" if same else ""

    # -- values ----------------------------------------------------------------------------------

    def localized(self, node: Node, *, what: str, fold: bool = False) -> dict[str, str]:
        """A string, or a map with exactly one string per locale (contract §1 locale map).
        `fold`: paragraphs (blank lines, in any scalar style) kept, the lines inside each joined."""
        if self.src.refused(node):
            raise Invalid(what)
        if isinstance(node, MappingNode):
            entries = self._locale_map(node, what=what)
            return {loc: self._string(v, what=f"{what} ({loc})", fold=fold) for loc, v in entries.items()}
        text = self._string(node, what=what, fold=fold)
        return {loc: text for loc in self.locales}

    def references(self, node: Node) -> list[str]:
        nodes = self.src.string_nodes(node, what="references")
        for ref_node in nodes:
            self._printable(ref_node, ref_node.value, what="a reference")
        return [n.value for n in nodes]

    def _printable(self, node: Node, value: str, *, what: str) -> None:
        """Report what the PDFs cannot print in a printed text (pdf_glyphs.unprintable: a table of
        the font's characters, so the font itself is not loaded), at the first such character."""
        bad = unprintable(value)
        if not bad:
            return
        position = (node.start_mark.line + 1, node.start_mark.column + 1)
        laid = self.src.scalar_text(node)
        if laid is not None and bad[0] in laid[0]:
            position = self.src.position_of_index(laid[1][laid[0].index(bad[0])])
        shown = describe_chars(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        self.src.error_at(f"{what}: the PDF script cannot print {shown}: leave {'it' if len(bad) == 1 else 'them'} "
                          f"out (its font, {FONT_LABEL}, prints Latin, Greek and Cyrillic, left to right; not "
                          f"CJK, most emoji or right-to-left scripts)", position)

    def _string(self, node: Node, *, what: str, fold: bool) -> str:
        text = self.src.string(node, what=what)
        self._printable(node, text, what=what)
        if not fold:
            return text.strip()
        laid = self.src.scalar_text(node)  # a `>` scalar's blank line is a single "\n" in its value
        return _fold(laid[0] if laid is not None else text)

    def _locale_map(self, node: MappingNode, *, what: str) -> dict[str, Node]:
        if self.src.refused(node):
            raise Invalid(what)
        entries: dict[str, Node] = {}
        hinted: set[str] = set()   # locales a miscased key was said to mean: not "missing" as well
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in self.locales:
                known = ", ".join(self.locales) or "none"
                self.src.error(f"{what} has locale {key!r}, which is not in locales ({known})"
                               f"{self._same_locale_hint(key)}", key_node)
                hinted |= {loc for loc in self.locales if isinstance(key, str) and loc.lower() == key.lower()}
            elif key in entries:
                self.src.error(f"{what} gives locale {key!r} twice", key_node)
            else:
                entries[key] = value_node
        missing = [loc for loc in self.locales if loc not in entries and loc not in hinted]
        if missing:
            self.src.error(f"{what} is missing locale{'s' if len(missing) > 1 else ''} {', '.join(missing)}", node)
        if missing or len(entries) != len(node.value):
            raise Invalid(what)
        return entries

    def duration(self, node: Node, *, what: str, limit_s: float = MAX_PAUSE_S) -> float:
        if self.src.refused(node):
            raise Invalid(what)
        if not isinstance(node, ScalarNode) or node.tag == NULL:
            raise self.src.fail(f"{what} must be a duration such as 3s, 500ms or 1m30s", node)
        # Read from the text as written, not as YAML 1.1 would construct it: `010` is 10 s (as in
        # [pause 010]), not octal 8; `0b11`, `0x10`, `1:30` and `.nan` are refused with a reason.
        if node.tag == BOOL:   # QA: `pause_after: yes` was told "got True"
            raise self.src.fail(f"{what}: {node.value!r} is not a duration: use e.g. 3s, 1.5s, 500ms, 2m or 1m30s",
                                node)
        value = node.value
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.src.fail(f"{what}: {exc}", node) from None
        if seconds > limit_s:
            raise self.src.fail(f"{what} of {value} is longer than the 10-minute limit for a single pause", node)
        return seconds

    def voice(self, node: Node) -> str:
        name = self.src.string(node, what="voice").strip()
        if not valid_voice_name(name):
            raise self.src.fail(f"voice {name!r} must be a profile name such as 'narrator'", node)
        if self.project is not None and not (self.project.voices_dir / f"{name}.yaml").is_file():
            known = sorted(p.stem for p in self.project.voices_dir.glob("*.yaml"))
            raise self.src.fail(f"unknown voice {name!r}: there is no voices/{name}.yaml "
                                f"(available: {', '.join(known) or 'none'})", node)
        return name

    def ambience(self, node: Node, *, what: str, base: Ambience | None = None) -> Ambience | None:
        """An `ambience:` value. `base`: the script's, whose level, duck and fades a section's own
        ambience keeps unless it sets them (it changes the scene, not the mix)."""
        src = self.src
        if src.refused(node):
            raise Invalid(what)
        if isinstance(node, ScalarNode) and (node.tag == NULL or node.value.strip().lower() == "none"):
            return None
        if isinstance(node, ScalarNode):  # shorthand: `ambience: stream`
            sound = src.string(node, what=f"{what} sound").strip()
            self._check_sound(sound, node)
            return Ambience(sound=sound) if base is None else replace(base, sound=sound)
        entries = src.mapping(node, what=what, allowed=_AMBIENCE_KEYS)
        values: dict[str, object] = {}
        ok = True
        for key, reader in (("level_db", lambda n: src.number(n, what=f"{what} level_db", low=LEVEL_DB_RANGE[0],
                                                               high=LEVEL_DB_RANGE[1])),
                            ("duck_db", lambda n: src.number(n, what=f"{what} duck_db", low=DUCK_DB_RANGE[0],
                                                              high=DUCK_DB_RANGE[1])),
                            ("fade_in", lambda n: self.duration(n, what=f"{what} fade_in")),
                            ("fade_out", lambda n: self.duration(n, what=f"{what} fade_out")),
                            ("sound", lambda n: src.string(n, what=f"{what} sound").strip())):
            if key in entries:
                try:
                    values[key] = reader(entries[key][1])
                except Invalid:
                    ok = False
        if "sound" not in values:
            raise Invalid(what)
        if str(values["sound"]).lower() == "none":
            return None
        self._check_sound(str(values["sound"]), entries["sound"][1])
        if not ok:
            raise Invalid(what)
        default = base or Ambience(sound="")
        return Ambience(sound=str(values["sound"]), level_db=values.get("level_db", default.level_db),
                        duck_db=values.get("duck_db", default.duck_db),
                        fade_in_s=values.get("fade_in", default.fade_in_s),
                        fade_out_s=values.get("fade_out", default.fade_out_s))

    def _check_sound(self, sound: str, node: Node) -> None:
        if self.project is None:
            return
        from .ambience import validate_sound

        message = validate_sound(sound, ambience_dir=self.project.ambience_dir)
        if message:
            raise self.src.fail(message, node)

    def spelling(self, node: Node) -> dict[str, dict[str, str]]:
        src = self.src
        if src.refused(node):
            raise Invalid("spelling")
        if not isinstance(node, MappingNode):
            raise src.fail("spelling must map locales to word substitutions, e.g. en-US: {colour: color}", node)
        out: dict[str, dict[str, str]] = {}
        for key_node, value_node in node.value:
            locale = key_node.value if isinstance(key_node, ScalarNode) else None
            if src.refused(key_node) or src.refused(value_node):
                continue
            if locale not in self.locales:
                src.error(f"spelling names locale {locale!r}, which is not in locales "
                          f"({', '.join(self.locales) or 'none'}){self._same_locale_hint(locale)}", key_node)
                continue
            if locale in out:  # a second table would silently replace the first
                src.error(f"spelling gives locale {locale!r} twice: put all its words in one table", key_node)
                continue
            if not isinstance(value_node, MappingNode):
                src.error(f"spelling for {locale} must map words to words, e.g. {{colour: color}}", value_node)
                continue
            table: dict[str, str] = {}
            seen: dict[str, str] = {}  # lower case → as first written: matching ignores case
            for word_node, repl_node in value_node.value:
                try:
                    word = src.string(word_node, what="a spelling word").strip()
                    if word.lower() in seen:
                        first = seen[word.lower()]
                        same = "" if first == word else f" (as {first!r}; spelling ignores case)"
                        src.error(f"the word {word!r} is in the spelling for {locale} twice{same}", word_node)
                        continue
                    seen[word.lower()] = word
                    table[word] = src.string(repl_node, what=f"the spelling of {word!r}").strip()
                    self._printable(repl_node, table[word], what=f"the spelling of {word!r}")
                except Invalid:
                    pass
            out[locale] = table
        return out

    def section(self, node: Node, *, paragraph_pause_s: float, ambience: Ambience | None = None) -> Section:
        if self.src.refused(node):
            raise Invalid("section")
        entries = self.src.mapping(node, what="a section", allowed=_SECTION_KEYS)
        title = body = None
        pause_after_s = paragraph_pause_s
        base = ambience
        ambience: Ambience | None | str = "inherit"   # the section's own, or the script's
        ok = "text" in entries
        for key in entries:
            value_node = entries[key][1]
            try:
                if key == "title":
                    title = self.localized(value_node, what="section title")
                elif key == "text":
                    body = self.text(value_node, paragraph_pause_s=paragraph_pause_s)
                elif key == "pause_after":
                    pause_after_s = self.duration(value_node, what="pause_after")
                elif key == "ambience":
                    ambience = self.ambience(value_node, what="section ambience", base=base)
            except Invalid:
                ok = False
        if not ok or body is None:
            raise Invalid("section")
        return Section(title=title, body=body, pause_after_s=pause_after_s, ambience=ambience,
                       pause_after_given="pause_after" in entries)

    def _comment_after(self, node: Node) -> bool:
        """False (and an error) when an unquoted text is followed on its line by ` #`: YAML reads
        the rest of the line as a comment, and the words there would be dropped without a word
        (QA: `text: Count to ten #slowly [pause 5s] then stop.` spoke only "Count to ten")."""
        if not isinstance(node, ScalarNode) or node.style is not None:   # quoted or a block: '#' is text
            return True
        at = node.end_mark.index
        rest = re.match(r"[^\r\n\x85\u2028\u2029]*", self.src.text[at:]).group(0)   # to the line's end
        m = re.match(r"[ \t]+#", rest)
        if not m:
            return True
        dropped = rest[m.end() - 1:].strip()
        self.src.error_at(f"the text stops at this ' #', which starts a YAML comment, so {dropped!r} is left "
                          f"out: quote the text (or write it as a block, `text: |`) if it belongs to it, or put "
                          f"the comment on a line of its own", self.src.position_of_index(at + m.end() - 1))
        return False

    def text(self, node: Node, *, paragraph_pause_s: float) -> dict[str, tuple[Segment, ...]]:
        if self.src.refused(node):
            raise Invalid("text")
        shared = not isinstance(node, MappingNode)
        # One string shared by every locale is parsed (and its problems reported) once.
        entries = {self.locales[0] if self.locales else "": node} if shared else self._locale_map(node, what="text")
        out: dict[str, tuple[Segment, ...]] = {}
        failed = False
        for loc, value_node in entries.items():
            try:
                text = self.src.string(value_node, what="text")
            except Invalid:
                failed = True
                continue
            self._printable(value_node, text, what="text")
            if not self._comment_after(value_node):
                failed = True
                continue
            segments = self._segments(text, value_node, paragraph_pause_s=paragraph_pause_s)
            if segments is None:
                failed = True
            elif not any(isinstance(s, (Speech, Pause)) for s in segments):
                # a text of pauses alone is a silent part (a chapter of quiet practice); one of nothing
                # or of punctuation alone has nothing to speak or to wait for
                self.src.error("text has no words to speak (a silent part is written as a pause: [pause 1m])",
                               value_node)
                failed = True
            else:
                out[loc] = segments
        if failed:
            raise Invalid("text")
        return {loc: next(iter(out.values())) for loc in self.locales} if shared else out

    def _segments(self, value: str, node: Node, *, paragraph_pause_s: float) -> tuple[Segment, ...] | None:
        """Split a text into speech and pauses; every problem is reported at its line and column.

        The text is read as laid out in the source (Source.scalar_text), so a blank line is a
        paragraph pause in every scalar style and each character has its exact position. Blank
        lines before the first word or after the last (e.g. `|+`) are not pauses."""
        laid = self.src.scalar_text(node)
        if laid is not None:
            text, offsets = laid

            def where(i: int) -> tuple[int, int]:
                return self.src.position_of_index(offsets[i])
        else:  # not expected; the value, with markers located by counting brackets
            text, where = value, self._char_positions(value, node)
        lo, hi = len(text) - len(text.lstrip()), len(text.rstrip())
        segments: list[Segment] = []
        ok = True

        def add_words(start: int, stop: int) -> bool:
            good = True
            for m in _BRACKET.finditer(text, start, stop):  # every stray bracket, not only the first
                what = "'[' is not closed on its line" if m.group() == "[" else "']' is not part of a marker"
                self.src.error_at(f"{what}: a marker looks like [pause] or [pause 5s]", where(m.start()))
                good = False
            for m in _ROUND_PAUSE.finditer(text, start, stop):   # QA: copied from the PDF, and spoken
                guess = _guess_marker(m.group(1)) or "[pause 5s]"
                self.src.error_at(f"{m.group(0)} would be read aloud: a pause is written in square brackets, "
                                  f"as {guess}", where(m.start()))
                good = False
            cannot_print = set(unprintable(text[start:stop]))   # reported already (_printable)
            named: set[str] = set()
            for m in _NAMED_SYMBOL.finditer(text, start, stop):
                ch = m.group()
                if ch not in named and ch not in cannot_print:
                    named.add(ch)
                    self.src.error_at(f"{ch!r} would be read aloud by its name ({unicodedata.name(ch, '?').lower()}): "
                                      f"leave it out of the text", where(m.start()))
                    good = False
            if not good:
                return False
            pos = start
            for m in [*_BLANK_LINE.finditer(text, start, stop), None]:
                stop_here = m.start() if m else stop
                words = " ".join(text[pos:stop_here].split())
                if words:
                    segments.append(Speech(words))
                if m:
                    segments.append(Pause(paragraph_pause_s, paragraph=True))
                    pos = m.end()
            return good

        pos = lo
        for m in _MARKER.finditer(text, lo, hi):
            ok &= add_words(pos, m.start())
            pos = m.end()
            marker = m.group(0)
            pm = _PAUSE_MARKER.fullmatch(m.group(1).strip())
            seconds = DEFAULT_PAUSE_S
            message = None
            if pm is None:
                guess = _guess_marker(m.group(1))
                message = f"unknown marker {marker}" + (
                    f"; did you mean {guess}?" if guess and guess != marker
                    else _ONE_DURATION if _several_durations(m.group(1))
                    else "; the only marker is [pause] or [pause 5s]")
            elif pm.group(1):
                try:
                    seconds = parse_duration(pm.group(1))
                except ValueError:
                    message = f"bad duration in {marker}: " + (
                        duration_hint(pm.group(1))
                        or "use e.g. [pause 3s], [pause 1.5s], [pause 500ms], [pause 2m] or [pause 1m30s]")
            if message is None and seconds > MAX_PAUSE_S:
                message = f"{marker} is longer than the 10-minute limit for a single pause"
            if message:
                ok = False
                self.src.error_at(message, where(m.start()))
            else:   # [pause 0] (any duration, contract §2) ends a take without silence, and has no cue to print
                segments.append(Pause(seconds, cue=seconds > 0))
        ok &= add_words(pos, hi)
        return tuple(_merge_pauses(_attach_punctuation(segments))) if ok else None

    def _char_positions(self, text: str, node: Node):
        """A function from the offset of a '[' or ']' in a scalar's value to (line, col) in the source.

        The n-th bracket of the value is the n-th bracket of the scalar's source text for every
        scalar style (plain, quoted, literal, folded), so markers in block scalars are located
        exactly; anything else falls back to the scalar's own position."""
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.src.text[start:end]
        in_source = [start + i for i, ch in enumerate(raw) if ch in "[]"]
        in_value = [i for i, ch in enumerate(text) if ch in "[]"]
        fallback = (node.start_mark.line + 1, node.start_mark.column + 1)

        def position(offset: int) -> tuple[int, int]:
            if len(in_source) != len(in_value) or offset not in in_value:
                return fallback
            return self.src.position_of_index(in_source[in_value.index(offset)])

        return position


# closing punctuation at the start of the words after a marker belongs to the words before it
_CLOSING = re.compile(r"""[.,;:!?…)\]"'”’»]+(?=\s|$)""")


def _attach_punctuation(segments: list[Segment]) -> list[Segment]:
    """Punctuation that a pause marker cut off its words joins them again: `Relax [pause 2s].` and
    `Relax [pause 2s]. Breathe in.` say "Relax." and then pause. Speech that is only punctuation
    joins the words before it in the same text, or else the words after it. Left alone, a lone '.'
    was a take with nothing to say and a caption of its own, which made the captions after it lag
    a sentence."""
    out: list[Segment] = []
    pending = ""   # punctuation before the first words, for the words after it

    def previous() -> int | None:
        return next((i for i in range(len(out) - 1, -1, -1) if isinstance(out[i], Speech)), None)

    def attach(index: int, punctuation: str) -> None:
        prev = out[index].text
        out[index] = Speech(prev + ("" if prev[-1].isalnum() else " ") + punctuation)

    for seg in segments:
        if isinstance(seg, Speech):
            if not any(ch.isalnum() for ch in seg.text):
                before = previous()
                if before is None:
                    pending = f"{pending} {seg.text}".strip()
                else:
                    attach(before, seg.text)
                continue
            closing, before = _CLOSING.match(seg.text), previous()
            if closing and before is not None:
                attach(before, closing.group(0))
                seg = Speech(seg.text[closing.end():].strip())
            if pending:
                seg, pending = Speech(f"{pending} {seg.text}"), ""
        out.append(seg)
    return out


def _merge_pauses(segments: list[Segment]) -> list[Segment]:
    """Consecutive pauses add up (contract §2), remembering a paragraph break or a cue among them."""
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, Pause) and out and isinstance(out[-1], Pause):
            prev = out[-1]
            out[-1] = Pause(prev.seconds + seg.seconds, paragraph=prev.paragraph or seg.paragraph,
                            cue=prev.cue or seg.cue)
        else:
            out.append(seg)
    return out


def _fold(text: str) -> str:
    """Paragraphs kept, lines inside a paragraph joined (for descriptions)."""
    return "\n\n".join(" ".join(p.split()) for p in _BLANK_LINE.split(text.strip()) if p.strip())


_ONE_DURATION = "; a marker takes one duration, e.g. [pause 3s] (consecutive markers add up)"


def _several_durations(inner: str) -> bool:
    """`pause 3s 2s`: more than one duration, each fine alone."""
    m = re.fullmatch(r"\s*pause\s+(\S+(?:\s+\S+)+)\s*", inner, re.IGNORECASE)
    if not m:
        return False
    try:
        for part in m.group(1).split():
            parse_duration(part)
    except ValueError:
        return False
    return True


# "(pause 5s)", "(Pause, 5 seconds)": a marker in round brackets (as the PDF prints pauses), spoken
_ROUND_PAUSE = re.compile(r"\((\s*pause\b[^()\n]*)\)", re.IGNORECASE)
# emoji, pictographs, dingbats and arrows: a synthetic voice reads each by its name ("smiling face
# with smiling eyes", "right arrow"; QA). Signs a voice reads as words a text means (°, ©, %) are not here
_NAMED_SYMBOLS = ((0x2190, 0x21FF), (0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))


# one of them, found by the regex engine rather than a Python loop over every character (a text's
# characters were the largest cost of loading a script)
_NAMED_SYMBOL = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _NAMED_SYMBOLS) + "]")
_BRACKET = re.compile(r"[\[\]]")


def _guess_marker(inner: str) -> str | None:
    """The marker probably meant, as a valid `[pause ...]`, or None when there is no good guess:
    `[paws 3s]`, `[pause3s]`, `[pause 3 s]`, `[pause 1m 30s]`, `[pause 2 minutes]` → [pause 3s]..."""
    import difflib

    # "pause, 5 seconds": as the PDF prints it
    m = re.fullmatch(r"\s*([^\W\d_]*)\s*[,;:]?\s*(.*?)\s*", inner, re.DOTALL)
    head, tail = (m.group(1), m.group(2)) if m else (inner.strip(), "")
    if difflib.SequenceMatcher(None, head.lower(), "pause").ratio() < 0.6:
        return None
    if not tail:
        return "[pause]"
    if _several_durations(f"pause {tail}") and not _decreasing_units(tail):
        return None  # `[pause 3s 2s]`: which one was meant is not ours to guess
    joined = "".join(tail.split())
    fixed = re.sub(r"^(\d+(?:\.\d+)?|\.\d+)([a-z]+)$", lambda m: m.group(1) + _closest_unit(m.group(2)), joined,
                   flags=re.IGNORECASE)
    for candidate in (joined, fixed):
        try:
            parse_duration(candidate)
        except ValueError:
            continue
        return f"[pause {candidate}]"
    return None


def _decreasing_units(tail: str) -> bool:
    """`1m 30s`, `1min 500ms`: parts in decreasing units, one duration written with spaces."""
    order = {"min": 0, "m": 0, "s": 1, "ms": 2}
    units = [m.group(1).lower() for m in re.finditer(r"[\d.]+\s*([a-z]+)", tail, re.IGNORECASE)]
    ranks = [order.get(u, -1) for u in units]
    return len(ranks) > 1 and -1 not in ranks and all(a < b for a, b in zip(ranks, ranks[1:]))


def _closest_unit(unit: str) -> str:
    import difflib

    word = unit.lower()
    if word in UNIT_WORDS:   # QA: "500 milliseconds" was guessed as 500min
        return UNIT_WORDS[word]
    hit = difflib.get_close_matches(word, ["ms", "s", "m", "min"], n=1, cutoff=0.3)
    return hit[0] if hit else "s"


def valid_voice_name(name: str) -> bool:
    """A voice profile's name: voices/<name>.yaml, and the folder of its takes (lower-case letters,
    digits, '-' and '_'; no spaces, no path)."""
    return bool(ID_PATTERN.fullmatch(name.replace("_", "-")))


def voice_name_hint(name: str) -> str:
    """Why a --voice name cannot be one, with a name that can (QA: `--voice "Maria Smith"` made a
    template whose commands did not work, and `--voice ../evil` one for voices/../evil.yaml)."""
    return (f"{name!r} cannot name a voice: a voice's name is that of its file, voices/NAME.yaml, in letters, "
            f"digits and '-' (e.g. {_suggest_id(name).replace('my-script', 'maria')!r})")


def _suggest_id(stem: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", stem.lower())).strip("-") or "my-script"


def load_scripts(paths: list[Path], *, project: Project | None = None) -> tuple[list[Script], list]:
    """Load many scripts; return the good ones and every problem of the bad ones."""
    scripts, problems = [], []
    for path in paths:
        try:
            scripts.append(load_script(path, project=project, display_path=display_path(path)))
        except ScriptErrors as exc:
            problems.extend(exc.problems)
    return scripts, problems

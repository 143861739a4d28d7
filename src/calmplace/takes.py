"""Takes stage: `Script` × locale → the numbered takes and the order of speech and silence.

A take is a stretch of speech between two pauses (markers, blank lines, section boundaries);
takes are numbered per script and locale from 001 (contract §3). Spelling is applied here,
so everything downstream (speech, PDF, captions) sees the locale's words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .script import Ambience, Pause, Script, Speech


@dataclass(frozen=True)
class Take:
    number: int          # 1-based, per script and locale
    section: int         # 0-based section index
    text: str            # what is spoken, in the locale's spelling
    pause_before_s: float
    pause_after_s: float

    @property
    def name(self) -> str:
        """`001`: the file stem a recorded take goes into (contract §4)."""
        return f"{self.number:03d}"


@dataclass(frozen=True)
class Gap:
    """Silence of the voice (the ambience plays on)."""

    seconds: float
    cue: bool = False        # an explicit [pause] marker is part of it
    paragraph: bool = False  # a blank line is part of it
    kind: str = "text"       # "lead_in" | "text" | "section" | "tail"


@dataclass(frozen=True)
class SectionStart:
    index: int
    title: str | None
    ambience: Ambience | None


Event = Union[Gap, Take, SectionStart]


@dataclass(frozen=True)
class Plan:
    """Everything about one script in one locale that does not depend on how the takes sound."""

    script_id: str
    locale: str
    title: str
    collection: str | None
    author: str | None
    description: str | None
    references: tuple[str, ...]
    events: tuple[Event, ...]

    @property
    def takes(self) -> tuple[Take, ...]:
        return tuple(e for e in self.events if isinstance(e, Take))

    @property
    def sections(self) -> tuple[SectionStart, ...]:
        return tuple(e for e in self.events if isinstance(e, SectionStart))


def plan(script: Script, locale: str) -> Plan:
    """Lay out lead-in, sections (their speech and pauses, then pause_after) and tail, in order."""
    if locale not in script.locales:
        raise ValueError(f"{script.id} has no locale {locale!r} (it has {', '.join(script.locales)})")
    raw: list[Event] = [Gap(script.lead_in_s, kind="lead_in")]
    for index, section in enumerate(script.sections):
        ambience = script.ambience if section.ambience == "inherit" else section.ambience
        title = script.localized(section.title, locale) if section.title else None
        raw.append(SectionStart(index, title, ambience))
        for seg in section.body[locale]:
            if isinstance(seg, Pause):
                raw.append(Gap(seg.seconds, cue=seg.cue, paragraph=seg.paragraph))
            elif isinstance(seg, Speech):
                raw.append(Take(0, index, script.spell(seg.text, locale), 0.0, 0.0))
        raw.append(Gap(section.pause_after_in(script), kind="section"))
    raw.append(Gap(script.tail_s, kind="tail"))
    events = _number_takes(raw)
    return Plan(
        script_id=script.id, locale=locale, title=script.localized(script.title, locale),
        collection=script.localized(script.collection, locale), author=script.localized(script.author, locale),
        description=script.localized(script.description, locale),
        references=tuple(script.spell(r, locale) for r in script.references), events=tuple(events),
    )


def _number_takes(raw: list[Event]) -> list[Event]:
    """Number takes in order and record the silence on either side of each."""
    out: list[Event] = []
    number = 0
    for i, event in enumerate(raw):
        if isinstance(event, Take):
            number += 1
            before = _silence_around(raw, i, step=-1)
            after = _silence_around(raw, i, step=+1)
            event = Take(number, event.section, event.text, before, after)
        out.append(event)
    return out


def _silence_around(events: list[Event], i: int, *, step: int) -> float:
    total = 0.0
    j = i + step
    while 0 <= j < len(events) and not isinstance(events[j], Take):
        if isinstance(events[j], Gap):
            total += events[j].seconds
        j += step
    return total

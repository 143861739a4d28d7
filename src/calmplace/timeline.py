"""Timeline stage: a `Plan` plus the length of each spoken take → sample offsets for everything.

Pure integer arithmetic: each gap is rounded to whole samples on its own, so a `[pause 10s]`
is exactly 441 000 samples at 44.1 kHz wherever it falls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .errors import CalmplaceError
from .script import MAX_TRACK_S, Ambience
from .takes import Gap, Plan, SectionStart, Take
from .units import seconds_to_samples


@dataclass(frozen=True)
class TakeSpan:
    take: Take
    start: int  # first sample of the voice
    end: int    # one past the last sample


@dataclass(frozen=True)
class SectionSpan:
    index: int
    title: str | None
    ambience: Ambience | None
    start: int  # the chapter start: where the section's first event begins
    end: int


@dataclass(frozen=True)
class Timeline:
    sr: int
    n_samples: int
    takes: tuple[TakeSpan, ...]
    sections: tuple[SectionSpan, ...]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sr

    def speech_spans(self) -> list[tuple[int, int]]:
        return [(t.start, t.end) for t in self.takes]


def build_timeline(plan: Plan, take_lengths: Sequence[int], *, sr: int) -> Timeline:
    """Place every take and gap end to end. `take_lengths[i]` is take i+1's length in samples."""
    takes = plan.takes
    if len(take_lengths) != len(takes):
        raise ValueError(f"{len(takes)} takes but {len(take_lengths)} lengths")
    pos = 0
    spans: list[TakeSpan] = []
    sections: list[tuple[SectionStart, int]] = []
    for event in plan.events:
        if isinstance(event, Gap):
            pos += seconds_to_samples(event.seconds, sr=sr)
        elif isinstance(event, SectionStart):
            sections.append((event, pos))
        elif isinstance(event, Take):
            n = int(take_lengths[event.number - 1])
            spans.append(TakeSpan(event, pos, pos + n))
            pos += n
    section_spans = tuple(
        SectionSpan(s.index, s.title, s.ambience, 0 if i == 0 else start,
                    sections[i + 1][1] if i + 1 < len(sections) else pos)
        for i, (s, start) in enumerate(sections))
    if pos > MAX_TRACK_S * sr:
        raise CalmplaceError(f"{plan.script_id} ({plan.locale}) would last {pos / sr / 3600:.2f} hours; "
                             f"a track may last at most 3 hours")
    return Timeline(sr=sr, n_samples=pos, takes=tuple(spans), sections=section_spans)

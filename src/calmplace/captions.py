"""Captions stage: a `Plan` and its `Timeline` → WebVTT, one cue per sentence, timed to the speech.

Each take's span in the timeline is the real speech in the track; its sentences share that span in
proportion to their length in characters (a good proxy for speaking time at a steady pace), and
where the take's audio is given, each boundary then moves to the pause in the speech that fits it
(`speech_gaps`), so a cue starts as its words do.
Cue text follows the BBC and Netflix subtitle guidance: at most two lines of about 42 characters,
so a long sentence becomes several cues, split at commas or between words.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .takes import Plan
from .timeline import Timeline

LINE_CHARS = 42  # BBC subtitle guidelines / Netflix timed text style guide: 42 characters per line
MAX_LINES = 2    # ... and never more than two lines on screen

# A sentence ends at . ! ? or … (possibly several, possibly followed by a closing quote or bracket)
# followed by whitespace.
_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
# Words whose trailing full stop does not end a sentence ("Mr. Jones", "e.g. a beach").
_ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "mx", "dr", "prof", "st", "sr", "jr", "rev", "fr", "vs", "etc", "cf", "approx",
    "ca", "no", "nos", "fig", "vol", "ed", "eds", "al", "e.g", "i.e", "a.m", "p.m",
})
# Clause punctuation a long sentence is best split after, and words it is best split before.
_CLAUSE_END = (",", ";", ":", "—", "–", ")")
_CLAUSE_START = frozenset({"and", "but", "or", "nor", "so", "yet", "as", "when", "while", "because", "until",
                           "where", "which", "who", "that", "if", "then", "with"})


def split_sentences(text: str) -> list[str]:
    """Split text into sentences on . ! ? … followed by a space, keeping abbreviations and initials whole."""
    text = " ".join(text.split())
    out: list[str] = []
    start = 0
    for m in _END.finditer(text):
        before = text[start:m.start()].split()
        word = before[-1].lstrip("(\"'“‘") if before else ""
        rest = text[m.end():].lstrip()
        if m.group(0).startswith(".") and len(m.group(0).rstrip("\"'”’»)]")) == 1:
            if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isalpha() and word.isupper()):
                continue  # "Dr. Lee", "e.g. the sea", "P. Gilbert"
        if rest and rest[0].islower():
            continue  # "Slowly… and gently": the thought goes on
        out.append(text[start:m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


_BINDING = frozenset("×x+=÷/&%")   # a sign between two words or numbers ("3 × 4"): no line break beside it


def wrap(text: str, *, width: int = LINE_CHARS) -> list[str]:
    """Lines for one cue: one line if it fits, else the most even two-line split that fits, else
    greedy lines (more than two: the caller splits such text into several cues first)."""
    if len(text) <= width:
        return [text]
    best: tuple[tuple[int, int, int], int] | None = None
    for i, ch in enumerate(text):
        if ch != " ":
            continue
        top, bottom = text[:i], text[i + 1:]
        if len(top) > width or len(bottom) > width:
            continue
        # never between a number and the sign that binds it to the next (QA: "...½ a breath, 3" /
        # "× 4 – simple"); then most even; among equals prefer a break after clause punctuation
        binds = top.rsplit(" ", 1)[-1] in _BINDING or bottom.split(" ", 1)[0] in _BINDING
        score = (int(binds), abs(len(top) - len(bottom)), 0 if top.endswith(_CLAUSE_END) else 1)
        if best is None or score < best[0]:
            best = (score, i)
    if best is not None:
        return [text[:best[1]], text[best[1] + 1:]]
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _fits(text: str) -> bool:
    return len(wrap(text)) <= MAX_LINES


def split_cues(sentence: str) -> list[str]:
    """A sentence as one cue, or (when it will not fit two lines) as the fewest cues that do,
    preferring breaks after commas and other clause punctuation, then even lengths."""
    if _fits(sentence):
        return [sentence]
    words = sentence.split(" ")
    n = len(words)
    limit = MAX_LINES * (LINE_CHARS + 1)
    # best[j]: (cues, breaks not at clause punctuation, sum of squared lengths) for words[:j]
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)
    back = [0] * (n + 1)
    best[0] = (0, 0, 0)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            chunk = " ".join(words[i:j])
            if len(chunk) > limit and j - i > 1:
                break
            if best[i] is None or (j - i > 1 and not _fits(chunk)):
                continue  # a single over-long word is allowed through: nothing else can be done
            natural = j == n or words[j - 1].endswith(_CLAUSE_END) or words[j].lower() in _CLAUSE_START
            awkward = 0 if natural else 1
            prev = best[i]
            cost = (prev[0] + 1, prev[1] + awkward, prev[2] + len(chunk) ** 2)
            if best[j] is None or cost < best[j]:
                best[j], back[j] = cost, i
    chunks: list[str] = []
    j = n
    while j > 0:
        chunks.append(" ".join(words[back[j]:j]))
        j = back[j]
    return chunks[::-1]


def _ms(sample: int, sr: int) -> int:
    """Samples → whole milliseconds, rounded half up in integers (no float drift over an hour)."""
    return (sample * 1000 + sr // 2) // sr


def format_timestamp(ms: int) -> str:
    """WebVTT time: HH:MM:SS.mmm."""
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{milli:03d}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Pauses inside a take: 10 ms frames 35 dB under the take's loudest frame, for 120 ms or more.
# espeak-ng pauses 0.42-0.48 s at a full stop and 0.21-0.26 s at a comma (measured on the shipped
# script), while the closure of a stop consonant lasts under 0.1 s; a reader's own pauses are longer.
_GAP_FRAME_S = 0.01
_GAP_BELOW_DB = 35.0
_GAP_MIN_S = 0.12
# A boundary moves to a pause no further than this from where the characters put it, and prefers a
# longer pause: each second of pause counts as this many seconds nearer (a full stop's 0.45 s pause
# beats a comma's 0.2 s one up to 0.5 s further away).
_GAP_REACH_S = 1.2
_GAP_LENGTH_WEIGHT = 2.0


def speech_gaps(clip: np.ndarray, *, sr: int) -> list[tuple[int, int]]:
    """The pauses inside a take's audio (mono), as [start, end) samples from its start: not before
    the first sound or after the last."""
    frame = max(1, int(round(_GAP_FRAME_S * sr)))
    n = clip.size // frame
    if n < 3:
        return []
    energy = np.square(clip[:n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return []
    quiet = energy < peak * 10.0 ** (-_GAP_BELOW_DB / 10.0)
    edges = np.flatnonzero(np.diff(np.r_[0, quiet.astype(np.int8), 0]))   # run starts and ends, in turn
    min_frames = int(round(_GAP_MIN_S / _GAP_FRAME_S))
    return [(int(a) * frame, int(b) * frame) for a, b in zip(edges[::2], edges[1::2])
            if a > 0 and b < n and b - a >= min_frames]


def _snap(bounds: list[int], gaps: Sequence[tuple[int, int]], *, sr: int) -> list[int]:
    """Inner `bounds` (samples from the take's start, increasing) moved to the ends of pauses, in
    order, each pause used once, by the least total cost: distance from the estimate minus the
    pause's length times `_GAP_LENGTH_WEIGHT`; a bound with no pause within `_GAP_REACH_S` stays."""
    k, m = len(bounds), len(gaps)
    if not k or not m:
        return bounds
    reach = _GAP_REACH_S * sr

    def cost(i: int, j: int) -> float | None:
        a, b = gaps[j]
        distance = abs((a + b) / 2 - bounds[i])
        return None if distance > reach else (distance - _GAP_LENGTH_WEIGHT * (b - a)) / sr

    # best[i][j]: least cost of bounds[:i] using gaps[:j]; a bound left where it is costs its reach
    inf = float("inf")
    best = [[0.0] * (m + 1)] + [[inf] * (m + 1) for _ in range(k)]
    choice: dict[tuple[int, int], int] = {}
    for i in range(1, k + 1):
        for j in range(0, m + 1):
            options = [(best[i - 1][j] + _GAP_REACH_S, -1)]             # bound i-1 stays
            if j:
                options.append((best[i][j - 1], -2))                     # gap j-1 unused
                c = cost(i - 1, j - 1)
                if c is not None:
                    options.append((best[i - 1][j - 1] + c, j - 1))      # bound i-1 moves to gap j-1
            best[i][j], choice[i, j] = min(options)
    out = list(bounds)
    i, j = k, m
    while i:
        how = choice[i, j]
        if how == -2:
            j -= 1
            continue
        if how >= 0:
            out[i - 1] = gaps[how][1]
            j -= 1
        i -= 1
    for i in range(1, k):   # an unmoved bound between moved ones keeps the order
        out[i] = max(out[i], out[i - 1])
    return out


def _with_words(units: list[str]) -> list[str]:
    """Units that are only punctuation ('.', '…') join the one before (or, first, the one after):
    a cue of its own would show nothing to read and, timed by the take's pauses, push the cues
    after it a sentence late."""
    out: list[str] = []
    pending = ""
    for unit in units:
        if not any(ch.isalnum() for ch in unit):
            if out:
                out[-1] = f"{out[-1]} {unit}"
            else:
                pending = f"{pending} {unit}".strip()
            continue
        out.append(f"{pending} {unit}".strip())
        pending = ""
    return out or ([pending] if pending else [])


def cues(plan: Plan, timeline: Timeline, *, gaps: Sequence[Sequence[tuple[int, int]]] | None = None,
         ) -> list[tuple[int, int, str]]:
    """(start_ms, end_ms, text) for every cue, in order; text is one line, not yet wrapped. `gaps`:
    each take's pauses (`speech_gaps`), in timeline order, to time the cues inside a take by."""
    out: list[tuple[int, int, str]] = []
    sr = timeline.sr
    for index, span in enumerate(timeline.takes):
        units = _with_words([c for s in split_sentences(span.take.text) for c in split_cues(s)])
        if not units:
            continue
        total = sum(len(u) for u in units)
        length = span.end - span.start
        inner, acc = [], 0
        for u in units[:-1]:
            acc += len(u)
            inner.append(length * acc // total)
        if gaps is not None:
            inner = _snap(inner, gaps[index], sr=sr)
        bounds = [span.start] + [span.start + b for b in inner] + [span.end]
        ms = [_ms(b, sr) for b in bounds]
        take_cues: list[tuple[int, int, str]] = []
        text, start = "", None
        for k, unit in enumerate(units):
            start = ms[k] if start is None else start
            text = f"{text} {unit}".strip()
            if ms[k + 1] > start:  # a unit that rounds to no time at all (a take of a few ms) joins the next
                take_cues.append((start, ms[k + 1], text))
                text, start = "", None
        if text and take_cues:  # ... or, at the end of the take, the one before
            s0, e0, t0 = take_cues[-1]
            take_cues[-1] = (s0, e0, f"{t0} {text}")
        # a take shorter than a millisecond has nothing to show
        out.extend(take_cues)
    return out


def webvtt(plan: Plan, timeline: Timeline, *, gaps: Sequence[Sequence[tuple[int, int]]] | None = None) -> str:
    """WebVTT captions for one track: a NOTE with the title, then one cue per sentence (or part of
    one); `gaps` as for `cues`."""
    title = " ".join(plan.title.split()).replace("-->", "→")  # "-->" may not appear in a NOTE
    blocks = ["WEBVTT", f"NOTE {title} ({plan.locale}), captions by calmplace"]
    for start, end, text in cues(plan, timeline, gaps=gaps):
        lines = wrap(text)
        blocks.append(f"{format_timestamp(start)} --> {format_timestamp(end)}\n"
                      + "\n".join(_escape(line) for line in lines))
    return "\n\n".join(blocks) + "\n"


# ------------------------------------------------------------------------------------------------
# Reading


_TIMING = re.compile(r"^\s*((?:\d+:)?\d{2}:\d{2}\.\d{3})\s+-->\s+((?:\d+:)?\d{2}:\d{2}\.\d{3})")


def _parse_time(value: str) -> float:
    parts = value.split(":")
    seconds = float(parts[-1])
    minutes = int(parts[-2])
    hours = int(parts[-3]) if len(parts) == 3 else 0
    return hours * 3600 + minutes * 60 + seconds


def _unescape(text: str) -> str:
    text = re.sub(r"<[^>]*>", "", text)  # cue tags such as <i> or <v Narrator>
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u00a0")
            .replace("&lrm;", "\u200e").replace("&rlm;", "\u200f").replace("&amp;", "&"))


def parse_webvtt(text: str) -> list[tuple[float, float, str]]:
    """(start_s, end_s, text) for every cue of a WebVTT file; lines of a cue joined with "\\n".

    A small reader: NOTE, STYLE and REGION blocks and cue identifiers are skipped, cue settings
    after the timing are ignored, tags are removed and character references decoded."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n{2,}", text.strip("\n"))
    if not blocks or not blocks[0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT file: it must start with WEBVTT")
    out: list[tuple[float, float, str]] = []
    for block in blocks[1:]:
        lines = block.split("\n")
        for i, line in enumerate(lines[:2]):  # the timing is the first line, or the second after an id
            m = _TIMING.match(line)
            if m:
                out.append((_parse_time(m.group(1)), _parse_time(m.group(2)),
                            "\n".join(_unescape(x) for x in lines[i + 1:])))
                break
    return out


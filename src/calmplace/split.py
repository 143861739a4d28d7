"""One continuous recording (take after take, silence between) → the numbered take files.

1. Speech is found with thresholds relative to the recording's own noise floor and speech level
   (20 ms frames; a chunk starts above the "on" level and lasts while frames stay above the
   lower "off" level, hysteresis that keeps soft word endings; a silence of 0.7 s or more ends
   it). A reader who pauses inside a take leaves two chunks for that take.
2. Chunks are assigned to takes, in order, by dynamic programming over the takes' expected
   lengths (from the synthetic voice, scaled to the reader's own pace): every take gets one or
   more consecutive chunks, a short stray sound (a cough, a click, a spoken take number) may be
   left out, and a take read again after a false start keeps its last reading. The cost is the
   squared log-ratio of each take's length to its expected length, plus the pauses joined inside
   takes (relative to the typical pause between takes), plus a fixed cost per sound left out and
   per reading given up. Speech before the first take or after the last may be left out too (a
   remark, a take read again out of order), at a higher cost than a retake.
3. Every reading given up must sound like the reading kept for its take (log band energies
   aligned in time): more like it than like any other take's reading, and the kept reading more
   like it than like any other take's. Otherwise the assignment is made again without that
   retake, so a remark after the last take, or another take read again, never replaces the real
   reading. A false start (under half the kept reading) need only sound nearer to its take than
   to any other. Where lengths cannot tell a second reading of one take from a false start of the
   next, the same comparison decides.
4. A take that still looks far too long or short (outside 0.6-1.6x), or unusually long or short
   and sounding like another take's reading (one take skipped, another read twice), or that would
   hold a pause as long as those between takes (2 s or more: a false start or a remark joined on), is reported
   with where it is in the recording, and nothing is written (unless the caller accepts odd
   lengths). Otherwise each take is cut with a short margin of room tone and written
   at the recording's own rate and channels (WAV or FLAC, 24-bit); the build trims and matches
   the takes like any others. All files are written to temporary names first and then moved in;
   on any failure what this run wrote is removed again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CalmplaceError
from .fsio import sha256_bytes
from .speech.recorded import (RECORD_FILE, clipping, encode_take, frame_db, highpass, levels, load_record,
                              mono_mix, noise_floor_dbfs, NOISE_WARN_DBFS, quiet_note, record_bytes, record_entry,
                              shown, take_files)
from .takes import Take

FRAME_S = 0.02             # 20 ms: finer than any syllable, coarse enough to be steady in room noise
MIN_SILENCE_S = (0.7, 0.5, 0.35)  # a silence this long ends a chunk; shorter ones are tried when chunks < takes
MIN_CHUNK_S = 0.08         # a burst shorter than this is a click, not a word
MIN_RANGE_DB = 15.0        # speech at least this far above the room's floor, or the recording is "silence"
CUT_BEFORE_S = 0.3         # room tone kept before a take's first sound ...
CUT_AFTER_S = 0.4          # ... and after its last (a word's decay), each at most 45% of the silence there
MAX_CHUNKS_PER_TAKE = 8    # a take read with more than seven pauses in it is not one take
W_LENGTH = 4.0             # weight of (log actual/expected length)^2: twice as long costs 4 * 0.48 = 1.9
W_GAP = 2.0                # weight of a pause joined inside a take, per typical pause between takes
GAP_CREDIT_S = 0.3         # a pause inside a take counts towards its length up to this (a comma's breath)
SKIP_MAX_S = 0.6           # only sounds shorter than this may be left out (a cough, a click, a breath) ...
SKIP_COST = 0.25           # ... at this cost, plus SKIP_PER_S a second. Dropping a short real take is still
SKIP_PER_S = 1.5           # dear: its neighbours then shift onto chunks of the wrong lengths
RETAKE_COST = 1.0          # a take read again, the earlier reading given up: as dear as a take 1.65x (or
                           # 0.6x) its expected length (W_LENGTH * ln(1.65)^2 = 1.0), or as joining a pause
                           # half as long as the typical one between takes; and only where the reading kept
                           # is 0.6-1.6x (RATIO_OK) and the two sound alike (_unlike_retakes)
RETAKE_MAX = 1.5           # the reading given up is at most 1.5x the take's expected length (a false start,
                           # or one whole reading a little slower)
EXTRA_COST = 0.8           # speech before the first take or after the last, left out (plus EXTRA_PER_S a
EXTRA_PER_S = 0.1          # second): cheaper than joining a take across a pause as long as those between
                           # takes; such speech that sounds like the take next to it is a retake instead
SAME_WORDS = 0.5           # two readings whose sound distance is under half the median distance between
                           # different takes' readings say the same words (measured on espeak-ng readings
                           # at two rates and pitches: same text 2.5-5.7, different texts 8.5-19)
RETAKE_ALIKE = 0.65        # a retake's two readings must be at least this much closer than different takes
                           # (the same measurements: 0.2-0.55 of the median for the same text)
FALSE_START = 0.5          # a reading given up under half the kept one's length is a false start ...
FALSE_START_ALIKE = 0.8    # ... and need only be this much closer than different takes (few frames to compare)
LONG_PAUSE_S = 2.0         # a pause inside a take this long, and at least 0.8x those between takes, is
LONG_PAUSE_OF_GAPS = 0.8   # suspect: the take may hold a false start or part of another take
RATIO_OK = (0.6, 1.6)      # a take outside 0.6-1.6x its (pace-scaled) expected length is an error ...
RATIO_USUAL = (0.7, 1.45)  # ... outside 0.7-1.45x a warning: people linger on some lines, not by half again


@dataclass(frozen=True)
class Chunk:
    start: int  # samples at the recording's rate
    end: int


@dataclass(frozen=True)
class Cut:
    take: Take
    start: int           # the file: speech with its margins
    end: int
    speech_start: int    # the speech inside it
    speech_end: int
    chunks: tuple[int, ...]
    length_s: float      # speech plus the pauses inside it (each counted up to GAP_CREDIT_S)
    expected_s: float    # expected length at the reader's pace


@dataclass
class SplitPlan:
    path: Path
    sr: int
    chunks: list[Chunk]
    cuts: list[Cut]
    skipped: list[int]
    tempo: float                    # the reader's length / the synthetic voice's
    dropped: dict[int, tuple[int, int]] = field(default_factory=dict)  # take index → readings given up
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def detect_chunks(mono: np.ndarray, *, sr: int, min_silence_s: float) -> list[Chunk]:
    frame = max(1, int(round(FRAME_S * sr)))
    db = frame_db(mono, frame)
    lv = levels(db)
    on = max(lv.floor_db + 12.0, lv.top_db - 35.0)   # clearly speech: a vowel, well above the room
    off = max(lv.floor_db + 6.0, lv.top_db - 45.0)   # still speech: a fading consonant, above the room
    above = db > off
    join = max(1, int(round(min_silence_s / FRAME_S)))
    idx = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(np.int8), [0]])))
    runs: list[list[int]] = []
    for a, b in zip(idx[::2].tolist(), idx[1::2].tolist()):
        if runs and a - runs[-1][1] < join:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    min_frames = MIN_CHUNK_S / FRAME_S
    return [Chunk(a * frame, min(mono.size, b * frame)) for a, b in runs
            if b - a >= min_frames and db[a:b].max() > on]


def _assign(chunks: list[Chunk], expected: list[float], *, sr: int, tempo: float,
            forbid: frozenset[tuple[int, int]] = frozenset()):
    """Best assignment of chunks to len(expected) takes, in order.

    Each take gets a group of consecutive chunks; a short chunk between takes may be left out (a
    cough, a click, a spoken take number); and a take may be read more than once, the last reading
    kept (a false start or a whole reading, then the take again: "If a take goes wrong, read it
    again; keep the last good reading", as the recording template advises).

    Speech before the first take or after the last may be left out whatever its length (a remark,
    a take read again out of order). `forbid` holds (take index, first chunk) retakes that did not
    sound like the take, and (-1, chunk) for speech at the edges that did (see `_unlike_retakes`).

    Returns (groups as (first, last+1) chunk indices, skipped chunk indices, discarded readings as
    {take index: (first, last+1)}, lengths, chunk indices left out before the first take or after
    the last), or None when there are too few chunks."""
    m, n = len(chunks), len(expected)
    dur = [(c.end - c.start) / sr for c in chunks]
    gaps = [(chunks[i + 1].start - chunks[i].end) / sr for i in range(m - 1)]
    ref_gap = max(1.0, float(np.median(gaps))) if gaps else 1.0
    inf = math.inf

    def groups_from(i: int):
        """(k, length, pause cost) for the groups of chunks i..k-1."""
        speech, credit, joined = 0.0, 0.0, 0.0
        for k in range(i + 1, min(m, i + MAX_CHUNKS_PER_TAKE) + 1):
            speech += dur[k - 1]
            if k - 1 > i:
                credit += min(gaps[k - 2], GAP_CREDIT_S)
                joined += gaps[k - 2]
            yield k, speech + credit, W_GAP * joined / ref_gap

    best = [[inf] * (n + 1) for _ in range(m + 1)]
    back: list[list[tuple | None]] = [[None] * (n + 1) for _ in range(m + 1)]
    best[0][0] = 0.0
    for i in range(m + 1):
        for j in range(n + 1):
            here = best[i][j]
            if here == inf or i == m:
                continue
            if dur[i] < SKIP_MAX_S:  # leave chunk i out
                cost = here + SKIP_COST + SKIP_PER_S * dur[i]
                if cost < best[i + 1][j]:
                    best[i + 1][j], back[i + 1][j] = cost, ("skip", i, j, None)
            if (j == 0 or j == n) and (-1, i) not in forbid:  # before the first take or after the last
                cost = here + EXTRA_COST + EXTRA_PER_S * dur[i]
                if cost < best[i + 1][j]:
                    best[i + 1][j], back[i + 1][j] = cost, ("extra", i, j, None)
            if j == n:
                continue
            want = tempo * expected[j]
            for k, length, pauses in groups_from(i):  # chunks i..k-1 are take j
                cost = here + W_LENGTH * math.log(length / want) ** 2 + pauses
                if cost < best[k][j + 1]:
                    best[k][j + 1], back[k][j + 1] = cost, ("take", i, j, None)
            if (j, i) in forbid:
                continue
            for r, dropped, _ in groups_from(i):  # chunks i..r-1 a reading given up, then r..k-1 take j
                if dropped > RETAKE_MAX * want:
                    break
                for k, length, pauses in groups_from(r):
                    if not RATIO_OK[0] <= length / want <= RATIO_OK[1]:
                        continue  # the reading kept must itself look like this take
                    cost = here + RETAKE_COST + W_LENGTH * math.log(length / want) ** 2 + pauses
                    if cost < best[k][j + 1]:
                        best[k][j + 1], back[k][j + 1] = cost, ("retake", i, j, r)
    if best[m][n] == inf:
        return None
    groups: list[tuple[int, int]] = []
    skipped: list[int] = []
    extra: list[int] = []
    dropped_readings: dict[int, tuple[int, int]] = {}
    i, j = m, n
    while i > 0 or j > 0:
        kind, pi, pj, r = back[i][j]  # type: ignore[misc]
        if kind == "skip":
            skipped.append(pi)
        elif kind == "extra":
            extra.append(pi)
        elif kind == "take":
            groups.append((pi, i))
        else:
            groups.append((r, i))
            dropped_readings[pj] = (pi, r)
        i, j = pi, pj
    groups.reverse()
    skipped.reverse()
    extra.reverse()
    lengths = [sum(dur[a:b]) + sum(min(g, GAP_CREDIT_S) for g in gaps[a:b - 1]) for a, b in groups]
    return groups, skipped, dropped_readings, lengths, extra


def assign(chunks: list[Chunk], expected: list[float], *, sr: int,
           forbid: frozenset[tuple[int, int]] = frozenset()):
    """`_assign` at the reader's own pace: start from total speech / total expected, then refine
    from the assignment itself (a reader 20% slower than the synthetic voice is not a mismatch)."""
    if not chunks:
        return None
    total_speech = sum((c.end - c.start) / sr for c in chunks)
    tempo = min(2.5, max(0.4, total_speech / sum(expected)))
    result = None
    for _ in range(3):
        result = _assign(chunks, expected, sr=sr, tempo=tempo, forbid=forbid)
        if result is None:
            return None
        new = min(2.5, max(0.4, sum(result[3]) / sum(expected)))
        if abs(new - tempo) < 0.01 * tempo:
            break
        tempo = new
    return (*result, tempo)


def _band_energies(x: np.ndarray, *, sr: int) -> np.ndarray | None:
    """Log energies in 16 bands from 100 Hz to 5 kHz, every 40 ms; None under two frames."""
    win = int(0.04 * sr)
    n = x.size // win
    if n < 2:
        return None
    frames = x[: n * win].reshape(n, win) * np.hanning(win)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1 / sr)
    edges = np.geomspace(100, min(5000, sr / 2 - 1), 17)
    bands = np.stack([spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges, edges[1:])], axis=1)
    return np.log(bands + 1e-10)


def _normalised(energies: np.ndarray | None) -> np.ndarray:
    if energies is None or energies.shape[0] < 2:
        return np.zeros((1, 16))
    return energies - energies.mean()


def _features(x: np.ndarray, *, sr: int) -> np.ndarray:
    """Log energies in 16 bands from 100 Hz to 5 kHz, every 40 ms, less their overall mean (how
    loud), as a rough fingerprint of which words are said. The bands' colour is kept: readings
    compared come from one recording (one room, one microphone), and a steady vowel is told from
    another by its colour alone."""
    return _normalised(_band_energies(x, sr=sr))


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Mean frame distance along the best time alignment of two feature sequences.

    The accumulated cost is filled an anti-diagonal at a time (each cell needs only the two
    diagonals before it), in numpy: the same sums and minima as cell by cell, so the same result,
    about 40x faster (QA: 173 comparisons took 1.6 s of a 44-take session's 3.7 s split)."""
    step = max(1, int(np.ceil(np.sqrt(a.shape[0] * b.shape[0] / 40000))))  # long takes: coarser, same shape
    a, b = a[::step], b[::step]
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    n, m = cost.shape
    # diagonal d holds the cells (i, d - i), indexed by i; skewed[d, i] = cost[i - 1, d - i - 1]
    d_idx, i_idx = np.meshgrid(np.arange(n + m + 1), np.arange(n + 1), indexing="ij")
    j_idx = d_idx - i_idx
    inside = (i_idx >= 1) & (j_idx >= 1) & (j_idx <= m)
    skewed = np.full((n + m + 1, n + 1), np.inf)
    skewed[inside] = cost[i_idx[inside] - 1, j_idx[inside] - 1]
    before, last = np.full(n + 1, np.inf), np.full(n + 1, np.inf)  # diagonals d - 2 and d - 1
    before[0] = 0.0  # acc[0, 0]
    for d in range(2, n + m + 1):
        lo, hi = max(1, d - m), min(n, d - 1)
        here = np.full(n + 1, np.inf)
        # acc[i, j] = cost + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
        here[lo:hi + 1] = skewed[d, lo:hi + 1] + np.minimum(np.minimum(last[lo - 1:hi], last[lo:hi + 1]),
                                                            before[lo - 1:hi])
        before, last = last, here
    return float(last[n] / (n + m))


class _Sounds:
    """What readings sound like, to tell one take from another: `_features` aligned by `_dtw`."""

    def __init__(self, mono: np.ndarray, sr: int, chunks: list[Chunk]):
        self.mono, self.sr, self.chunks = mono, sr, chunks
        self._cache: dict[tuple, float] = {}
        self._energies: dict[tuple, np.ndarray | None] = {}

    def long(self, a: int, b: int) -> list[int]:
        """Chunks a..b-1 that may be words (a breath, a click, a take's number said are shorter)."""
        return [i for i in range(a, b) if (self.chunks[i].end - self.chunks[i].start) / self.sr >= SKIP_MAX_S]

    def audio(self, a: int, b: int) -> np.ndarray:
        c = self.chunks
        return np.concatenate([self.mono[c[i].start:c[i].end] for i in self.long(a, b)]
                              or [self.mono[c[a].start:c[b - 1].end]])

    def distance(self, x: tuple[int, int], y: tuple[int, int]) -> float:
        """How unlike two stretches of chunks sound: the shorter against the start of the longer (up to
        1.25x its length), since a false start is the beginning of its take."""
        key = (min(x, y), max(x, y))
        if key not in self._cache:
            if self.size(*x) > self.size(*y):
                x, y = y, x
            # the longer one's first 1.25x: its band energies are the first frames of the whole
            # stretch's (computed once per stretch), less their own mean
            frames = (int(1.25 * self.size(*x)) + 1) // int(0.04 * self.sr)
            ey = self.energies(*y)
            self._cache[key] = _dtw(_normalised(self.energies(*x)),
                                    _normalised(None if ey is None else ey[:frames]))
        return self._cache[key]

    def size(self, a: int, b: int) -> int:
        c = self.chunks
        return sum(c[i].end - c[i].start for i in self.long(a, b)) or c[b - 1].end - c[a].start

    def energies(self, a: int, b: int) -> np.ndarray | None:
        if (a, b) not in self._energies:
            self._energies[(a, b)] = _band_energies(self.audio(a, b), sr=self.sr)
        return self._energies[(a, b)]

    def like(self, piece: tuple[int, int], groups: list[tuple[int, int]], *, but: int | None = None):
        """(distance, take index) of the take reading `piece` sounds most like, and the median distance
        to the takes' readings; None with fewer than three readings to compare with."""
        found = sorted((self.distance(piece, g), k) for k, g in enumerate(groups) if k != but and g != piece)
        if len(found) < 2:
            return None
        return found[0], float(np.median([d for d, _ in found]))


def _alike(sounds: _Sounds, x: tuple[int, int], y: tuple[int, int], groups: list[tuple[int, int]], j: int,
           *, false_start: bool = False) -> bool:
    """Do x and y sound like two readings of take j? Nothing else (another take's reading) sounds
    more like either, and they are clearly alike: under RETAKE_ALIKE x the median distance from
    them to the other takes' readings; a `false_start` (x under FALSE_START of y's length) under
    FALSE_START_ALIKE x: a second or two of speech is compared on few frames (QA: a 1.5 s false
    start of a 4.6 s take was 0.72 of the median, not under 0.65, and was joined to the take
    before it instead)."""
    others = [k for k in range(len(groups)) if k != j]
    if not others:
        return True  # one take: nothing to tell it from
    same = sounds.distance(x, y)
    to_x = [sounds.distance(x, groups[k]) for k in others]
    to_y = [sounds.distance(y, groups[k]) for k in others]
    limit = FALSE_START_ALIKE if false_start else RETAKE_ALIKE
    return same < min(to_x) and same < min(to_y) and same < limit * float(np.median(to_x + to_y))


def _unlike_retakes(sounds: _Sounds, groups: list[tuple[int, int]],
                    dropped: dict[int, tuple[int, int]], extra: Sequence[int] = ()) -> set[tuple[int, int]]:
    """Readings given up, as (take index, first chunk), that do not sound like the reading kept for
    that take: another take's reading sounds more like either of them, or the two are not clearly
    alike (under RETAKE_ALIKE x the median distance to the other takes' readings; FALSE_START_ALIKE
    for a false start, `_alike`). A reading given up that is only short sounds cannot be compared
    and is accepted, as before."""
    bad = set()
    for j, (a, r) in dropped.items():
        main = sounds.long(a, r)
        partial = sounds.size(a, r) < FALSE_START * sounds.size(*groups[j])
        if main and not _alike(sounds, (main[0], r), groups[j], groups, j, false_start=partial):
            bad.add((j, a))
    for i in extra:  # speech left out at an edge that sounds like the take beside it: read again
        j = 0 if i < groups[0][0] else len(groups) - 1
        if sounds.long(i, i + 1) and _alike(sounds, (i, i + 1), groups[j], groups, j):
            bad.add((-1, i))
    return bad


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


def _how_long(ratio: float) -> str:
    if ratio >= 1.0:
        if 1.8 <= ratio < 2.3:
            return "twice as long"
        return f"{ratio:.1f} times as long"
    if 0.45 < ratio <= 0.55:
        return "half as long"
    return f"only {ratio * 100:.0f}% as long"


SWAP_OFF = math.log(1.2)    # two neighbours, one at least 1.2x (or 1/1.2x) off its expected length, ...
SWAP_FIT = 0.25             # ... that fit each other's this much better (squared log ratios) look swapped;
                            # lengths 1.2x apart or more (a reader's pace varies by 10-15 % from take to take)


def _swapped(cuts: list[Cut]) -> list[str]:
    """Neighbouring takes read in each other's place: each as long as the other is expected to be,
    and both off their own (QA: 011 and 012 read the wrong way round were written, each within
    the usual range of lengths, and the track said the wrong sentences). Lengths are all there is
    to go on, so only takes whose expected lengths differ are told apart."""
    out = []
    for x, y in zip(cuts, cuts[1:]):
        own = [math.log(x.length_s / x.expected_s), math.log(y.length_s / y.expected_s)]
        other = [math.log(x.length_s / y.expected_s), math.log(y.length_s / x.expected_s)]
        if (max(map(abs, own)) >= SWAP_OFF and abs(math.log(x.expected_s / y.expected_s)) >= SWAP_OFF
                and sum(v * v for v in other) < SWAP_FIT * sum(v * v for v in own)):
            out.append(f"takes {x.take.name} and {y.take.name} look read in each other's place: {x.take.name} is "
                       f"{x.length_s:.1f} s, as {y.take.name} is expected to be ({y.expected_s:.1f} s), and "
                       f"{y.take.name} is {y.length_s:.1f} s, as {x.take.name} is expected to be "
                       f"({x.expected_s:.1f} s); read in that order, each file would hold the other's words")
    return out


def plan_split(path: Path, data: np.ndarray, sr: int, takes: Sequence[Take], expected_s: Sequence[float], *,
               accept_lengths: bool = False) -> SplitPlan:
    """Where each take is in the recording; a CalmplaceError (naming the file) when that is unclear.

    `accept_lengths`: takes far from their expected length (or sounding like another take) are
    warned about instead of refused: the reader knows the takes are right."""
    takes, expected = list(takes), [max(0.2, float(e)) for e in expected_s]
    if len(expected) != len(takes):
        raise ValueError(f"{len(takes)} takes but {len(expected)} expected lengths")
    where = shown(path)
    if float(np.max(np.abs(data))) == 0.0:
        raise CalmplaceError(f"{where}: the recording is silent (every sample is zero)")
    mixed, channel_note = mono_mix(data, sr=sr)
    mono = highpass(mixed, sr=sr)
    lv = levels(frame_db(mono, max(1, int(round(FRAME_S * sr)))))
    if lv.range_db < MIN_RANGE_DB:
        raise CalmplaceError(f"{where}: no speech found: the recording seems to be silence or steady noise "
                             f"(its loudest moments are only {lv.range_db:.0f} dB above its quietest)")
    chunks: list[Chunk] = []
    for min_silence in MIN_SILENCE_S:
        chunks = detect_chunks(mono, sr=sr, min_silence_s=min_silence)
        if len(chunks) >= len(takes):
            break
    n, m = len(takes), len(chunks)
    found = f"found {m} speech chunk{'s' if m != 1 else ''} for {n} take{'s' if n != 1 else ''}"
    sounds = _Sounds(mono, sr, chunks)
    forbid: frozenset[tuple[int, int]] = frozenset()
    unlike: list[str] = []  # retakes refused by their sound, for the message when nothing else fits
    result = assign(chunks, expected, sr=sr) if m >= n else None
    for _ in range(4 * n + 4):
        if result is None:
            break
        groups, skipped, dropped, lengths, extra, tempo = result
        bad = _unlike_retakes(sounds, groups, dropped, extra)
        if not bad:
            break
        unlike += [f"the speech at {_clock(chunks[sounds.long(*dropped[j])[0]].start / sr)} and at "
                   f"{_clock(chunks[groups[j][0]].start / sr)} do not sound like the same take"
                   for j, _ in sorted(bad) if j >= 0]
        forbid |= bad
        result = assign(chunks, expected, sr=sr, forbid=forbid)
    if result is None:
        raise CalmplaceError(
            f"{where}: {found}: some takes are missing, or were read without a pause between them"
            + (f" ({'; '.join(unlike)})" if unlike else "") + ". Leave at "
            f"least 1.5 s of silence between takes (chunks found at "
            f"{', '.join(_clock(c.start / sr) for c in chunks[:20])}{' ...' if m > 20 else ''})")
    cuts: list[Cut] = []
    bad: list[str] = []
    unusual: list[str] = []
    last_odd = ""   # the last take, when it is of unusual length: what is odd about it
    between = [chunks[nxt[0]].start - chunks[b - 1].end for (_, b), nxt in zip(groups, groups[1:])]
    ref_gap = float(np.median(between)) / sr if between else 0.0   # 0: one take, nothing to compare
    for take, (a, b), length, e in zip(takes, groups, lengths, expected):
        s0, s1 = chunks[a].start, chunks[b - 1].end
        prev_end = chunks[a - 1].end if a > 0 else 0
        next_start = chunks[b].start if b < m else mono.size
        before = min(int(CUT_BEFORE_S * sr), int(0.45 * (s0 - prev_end)) if a > 0 else s0)
        after = min(int(CUT_AFTER_S * sr), int(0.45 * (next_start - s1)) if b < m else mono.size - s1)
        cut = Cut(take, s0 - before, s1 + after, s0, s1, tuple(range(a, b)), length, tempo * e)
        cuts.append(cut)
        ratio = length / cut.expected_s
        where_s = f"{length:.1f} s at {_clock(s0 / sr)} in the recording; expected about {cut.expected_s:.1f} s"
        inside = [(chunks[k + 1].start - chunks[k].end, chunks[k].end) for k in range(a, b - 1)]
        pause, at = max(inside) if inside else (0, 0)
        if ref_gap and pause / sr >= max(LONG_PAUSE_S, LONG_PAUSE_OF_GAPS * ref_gap):
            # QA: a false start of the next take, joined on across a pause as long as those between
            # takes, went into this take's file unremarked (its length was within the usual range)
            bad.append(f"take {take.name} holds a pause of {pause / sr:.1f} s (at {_clock(at / sr)}), as long "
                       f"as those between takes: it may hold a false start or part of another take ({where_s})")
        elif not RATIO_OK[0] <= ratio <= RATIO_OK[1]:
            bad.append(f"take {take.name} looks {_how_long(ratio)} as expected ({where_s})")
        elif not RATIO_USUAL[0] <= ratio <= RATIO_USUAL[1]:
            twin = sounds.like((a, b), groups, but=len(cuts) - 1)
            if twin and twin[0][0] < SAME_WORDS * twin[1]:  # one take skipped and another read twice?
                k = twin[0][1]
                bad.append(f"take {take.name} is {_how_long(ratio)} as expected ({where_s}) and sounds like "
                           f"take {takes[k].name} (at {_clock(chunks[groups[k][0]].start / sr)}): the same words "
                           f"read twice (a take skipped, or read out of order)")
            else:
                odd = f"take {take.name} is {_how_long(ratio)} as expected ({where_s})"
                advice = ("it may hold a false start or part of another take" if ratio > 1
                          else "part of it may have gone into another take")
                unusual.append(f"{odd}: listen to it; {advice}")
                if len(cuts) == len(takes):
                    last_odd = odd
    bad += _swapped(cuts)
    # speech left over after the last take, in stretches apart as takes are (a remark's phrases,
    # closer together, are one stretch)
    stretches: list[list[int]] = []
    apart_s = max(1.5, LONG_PAUSE_OF_GAPS * ref_gap)
    for i in (i for i in extra if chunks[i].start > chunks[groups[-1][0]].start):
        if stretches and (chunks[i].start - chunks[stretches[-1][-1]].end) / sr < apart_s:
            stretches[-1].append(i)
        else:
            stretches.append([i])
    take_long = [st for st in stretches
                 if (chunks[st[-1]].end - chunks[st[0]].start) / sr >= 0.5 * tempo * expected[-1]]
    if len(take_long) > 1 or (take_long and last_odd):
        # a remark between two takes can only be taken for a take: every take after it then holds
        # the reading before its own, the last take is odd, and the last reading, or readings, are
        # "left over" (speech can only be left out at the session's ends: that is how a skipped
        # take looks). Readings left over, or one with the last take odd, stop the split
        c = chunks[take_long[0][0]]
        also = f", and {last_odd}" if last_odd else ""
        bad.append(f"{len(take_long)} stretch{'es' if len(take_long) > 1 else ''} of speech after the last take "
                   f"(from {_clock(c.start / sr)}) as long as a take{also}: a remark between two takes shifts every "
                   f"take after it onto the reading before its own; cut the remark out of the recording")
        unusual = unusual[:-1] if last_odd else unusual
    if bad and not accept_lengths:
        # QA: with take 030 left out, the message named takes 024, 026 and 028: every take after a
        # skipped one is matched to the reading after its own, and the odd lengths show up earlier
        shifted = (" A take left out, or two read without a pause between them, shifts the takes around it: "
                   "the takes named may not be the ones that went wrong, so listen around them too."
                   if m <= n else "")
        raise CalmplaceError(
            f"{where}: {found}; " + "; ".join(bad) + f".{shifted} Nothing was written. "
            "Check that every take was read once, "
            "in order, with a clear pause (1.5 s or more) between takes; or record the takes as separate files; "
            "or, if you have listened and the takes are right, split again with --accept-lengths")
    unusual = [f"{u} (accepted with --accept-lengths)" for u in bad] + unusual
    plan = SplitPlan(Path(path), sr, chunks, cuts, skipped, tempo, dropped)
    for i in extra:
        c = chunks[i]
        first = i < groups[0][0]
        twin = sounds.like((i, i + 1), groups)
        if twin and twin[0][0] < RETAKE_ALIKE * twin[1]:  # only a description: as for a retake
            k = twin[0][1]
            part = (c.end - c.start) / sr < 0.7 * lengths[k]
            what = (f"it sounds like {'the start of ' if part else ''}take {takes[k].name} read again out of order; "
                    f"if that reading is the better one, record take {takes[k].name} as its own file")
        else:
            what = "it matches no take (a remark?)"
        plan.warnings.append(f"{where}: left out {(c.end - c.start) / sr:.1f} s of speech "
                             f"{'before the first take' if first else 'after the last take'} "
                             f"(at {_clock(c.start / sr)}-{_clock(c.end / sr)}): {what}")
    joined = [c.take.name for c in cuts if len(c.chunks) > 1]
    if m != n and not (joined or skipped or dropped):
        pass  # only speech left out before or after the takes: its warning says so
    elif m != n or joined or skipped or dropped:
        note = found
        if joined:
            note += f": joined the pauses inside take{'s' if len(joined) > 1 else ''} {', '.join(joined)}"
        if skipped:
            note += (f"{';' if joined else ':'} left out {len(skipped)} short sound{'s' if len(skipped) > 1 else ''} "
                     f"between takes (at {', '.join(_clock(chunks[i].start / sr) for i in skipped)})")
        for j, (a, b) in sorted(dropped.items()):
            note += (f"{';' if note != found else ':'} take {takes[j].name} was read more than once: kept the last "
                     f"reading (at {_clock(chunks[groups[j][0]].start / sr)}), left out "
                     f"{_clock(chunks[a].start / sr)}-{_clock(chunks[b - 1].end / sr)}")
        plan.notes.append(note)
    plan.warnings.extend(f"{where}: {found}; {u}" for u in unusual)
    if channel_note:
        plan.warnings.append(f"{where}: {channel_note} to find the takes (check the microphone's or interface's "
                             f"phase or polarity setting); the take files keep both channels, and the build "
                             f"reads each with its better channel")
    quiet = quiet_note(float(20 * np.log10(np.max(np.abs(data)) + 1e-12)))
    if quiet:
        plan.warnings.append(f"{where}: {quiet}")
    floor = noise_floor_dbfs(mono, sr=sr)
    if floor > NOISE_WARN_DBFS:
        plan.warnings.append(f"{where}: noisy: the room is at {floor:.1f} dBFS between takes (above "
                             f"{NOISE_WARN_DBFS:.0f} dBFS a hiss or hum can be heard)")
    for cut in cuts:
        runs, first = clipping(data[cut.start:cut.end], sr=sr)
        if runs:
            plan.warnings.append(f"take {cut.take.name} is clipped: {runs} run{'s' if runs != 1 else ''} of "
                                 f"full-scale samples, the first at {_clock(cut.start / sr + first)} in the "
                                 f"recording; record it again with the input level lower")
    return plan


def write_split(plan: SplitPlan, data: np.ndarray, *, folder: Path, script_id: str, locale: str,
                fmt: str = "wav", force: bool = False) -> tuple[list[Path], list[Path]]:
    """Write every take file and takes.json, all or nothing.

    Every destination is checked first; all files are encoded in memory and written to temporary
    names in the folder, then moved into place; on any failure, what this run moved in is removed
    and files it replaced are put back. Without `force`, existing take files are never replaced:
    nothing is written and the error lists them. With it, the files replaced, and other files of
    the same takes (003.mp3 beside a new 003.wav, so each take has one file), are moved to
    replaced/<date>-<time>-.../ in the take folder. Returns (written, kept there)."""
    import os
    import tempfile

    fmt = fmt.lower()
    if fmt not in ("wav", "flac"):
        raise CalmplaceError(f"cannot write takes as {fmt!r}: use wav or flac")
    existing = [p for cut in plan.cuts for p in take_files(folder, cut.take)]
    if existing and not force:
        listing = "\n".join(f"  {shown(p)}" for p in existing)
        raise CalmplaceError(f"{len(existing)} take file{'s' if len(existing) != 1 else ''} already exist; "
                             f"nothing was written. Use --force to replace them:\n{listing}")
    targets = [folder / f"{cut.take.name}.{fmt}" for cut in plan.cuts]
    in_the_way = [t for t in targets + [folder / RECORD_FILE] if os.path.lexists(t) and not t.is_file()]
    if in_the_way:
        raise CalmplaceError("nothing was written: " + "; ".join(
            f"{shown(t)} is {'a folder' if t.is_dir() else 'not a regular file'}" for t in in_the_way))
    payloads = [encode_take(data[cut.start:cut.end], plan.sr, fmt=fmt) for cut in plan.cuts]
    record = load_record(folder)
    record.update({cut.take.name: record_entry(cut.take, t, sha256=sha256_bytes(b))
                   for cut, t, b in zip(plan.cuts, targets, payloads)})
    targets.append(folder / RECORD_FILE)
    payloads.append(record_bytes(record, script_id=script_id, locale=locale))
    temps: list[str] = []
    moved: list[Path] = []
    backups: dict[Path, str] = {}   # a file replaced (--force) → where it waits until all is in place
    current = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for target, payload in zip(targets, payloads):
            current = target
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
        for target, tmp in zip(targets, temps):
            current = target
            if target.exists():
                fd, keep = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".old")
                os.close(fd)
                os.replace(target, keep)
                backups[target] = keep
            os.replace(tmp, target)
            moved.append(target)
    except OSError as exc:
        for tmp in temps:
            _unlink(tmp)
        for target in moved:
            _unlink(target)
        for target, keep in backups.items():
            try:
                os.replace(keep, target)
            except OSError:
                pass
        raise CalmplaceError(f"cannot write {shown(current)}: {exc.strerror or type(exc).__name__}; nothing was "
                             f"written") from None
    written, kept = targets[:-1], []
    kept_dir: Path | None = None   # the takes replaced are kept (QA: --force deleted them for good)
    for target, keep in backups.items():
        if target.name == RECORD_FILE:
            _unlink(keep)   # merged into the new one
            continue
        kept_dir = kept_dir or _replaced_folder(folder)
        os.replace(keep, kept_dir / target.name)
        kept.append(kept_dir / target.name)
    for p in existing:
        if p not in written and p.exists():   # another file of a take written now (003.mp3 beside 003.wav)
            kept_dir = kept_dir or _replaced_folder(folder)
            os.replace(p, kept_dir / p.name)
            kept.append(kept_dir / p.name)
    return written, kept


REPLACED = "replaced"   # takes split --force keeps the takes it replaces in <takes>/replaced/<when>/


def _replaced_folder(folder: Path) -> Path:
    """A new folder for the takes one split replaces: replaced/<date>-<time>-<random>/ (no take:
    status and the build look at the take folder's own files only)."""
    import tempfile
    import time

    (folder / REPLACED).mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(dir=folder / REPLACED, prefix=time.strftime("%Y%m%d-%H%M%S-")))


def _unlink(path) -> None:
    try:
        Path(path).unlink()
    except OSError:
        pass

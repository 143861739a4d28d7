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
   per reading given up. Where lengths cannot tell a second reading of one take from a false
   start of the next, the sound decides (the reading given up is compared with both takes).
3. A take that still looks far too long or short is reported, with where it is in the recording,
   and nothing is written. Otherwise each take is cut with a short margin of room tone and written
   at the recording's own rate and channels (WAV or FLAC, 24-bit); the build trims and matches
   the takes like any others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CalmplaceError
from .fsio import atomic_write, sha256_bytes
from .speech.recorded import (clipping, encode_take, frame_db, highpass, levels, noise_floor_dbfs, NOISE_WARN_DBFS,
                              record_entry, save_record, shown, take_files, to_mono)
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
RETAKE_COST = 1.0          # a take read again, the earlier reading given up: dearer than a pause joined
RETAKE_MAX = 1.5           # inside a take, cheaper than a take half as long again; the reading given up
                           # is at most 1.5x the take (a false start, or one whole reading)
RATIO_OK = (0.55, 1.8)     # a take outside 0.55-1.8x its (pace-scaled) expected length is an error ...
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


def _assign(chunks: list[Chunk], expected: list[float], *, sr: int, tempo: float):
    """Best assignment of chunks to len(expected) takes, in order.

    Each take gets a group of consecutive chunks; a short chunk between takes may be left out (a
    cough, a click, a spoken take number); and a take may be read more than once, the last reading
    kept (a false start or a whole reading, then the take again: "If a take goes wrong, read it
    again; keep the last good reading", as the recording template advises).

    Returns (groups as (first, last+1) chunk indices, skipped chunk indices, discarded readings as
    {take index: (first, last+1)}, lengths), or None when there are too few chunks."""
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
            if j == n:
                continue
            want = tempo * expected[j]
            for k, length, pauses in groups_from(i):  # chunks i..k-1 are take j
                cost = here + W_LENGTH * math.log(length / want) ** 2 + pauses
                if cost < best[k][j + 1]:
                    best[k][j + 1], back[k][j + 1] = cost, ("take", i, j, None)
            for r, dropped, _ in groups_from(i):  # chunks i..r-1 a reading given up, then r..k-1 take j
                if dropped > RETAKE_MAX * want:
                    break
                for k, length, pauses in groups_from(r):
                    cost = here + RETAKE_COST + W_LENGTH * math.log(length / want) ** 2 + pauses
                    if cost < best[k][j + 1]:
                        best[k][j + 1], back[k][j + 1] = cost, ("retake", i, j, r)
    if best[m][n] == inf:
        return None
    groups: list[tuple[int, int]] = []
    skipped: list[int] = []
    dropped_readings: dict[int, tuple[int, int]] = {}
    i, j = m, n
    while i > 0 or j > 0:
        kind, pi, pj, r = back[i][j]  # type: ignore[misc]
        if kind == "skip":
            skipped.append(pi)
        elif kind == "take":
            groups.append((pi, i))
        else:
            groups.append((r, i))
            dropped_readings[pj] = (pi, r)
        i, j = pi, pj
    groups.reverse()
    skipped.reverse()
    lengths = [sum(dur[a:b]) + sum(min(g, GAP_CREDIT_S) for g in gaps[a:b - 1]) for a, b in groups]
    return groups, skipped, dropped_readings, lengths


def assign(chunks: list[Chunk], expected: list[float], *, sr: int):
    """`_assign` at the reader's own pace: start from total speech / total expected, then refine
    from the assignment itself (a reader 20% slower than the synthetic voice is not a mismatch)."""
    if not chunks:
        return None
    total_speech = sum((c.end - c.start) / sr for c in chunks)
    tempo = min(2.5, max(0.4, total_speech / sum(expected)))
    result = None
    for _ in range(3):
        result = _assign(chunks, expected, sr=sr, tempo=tempo)
        if result is None:
            return None
        new = min(2.5, max(0.4, sum(result[3]) / sum(expected)))
        if abs(new - tempo) < 0.01 * tempo:
            break
        tempo = new
    return (*result, tempo)


def _group_length(chunks: list[Chunk], a: int, b: int, *, sr: int) -> float:
    speech = sum(c.end - c.start for c in chunks[a:b]) / sr
    return speech + sum(min((chunks[i + 1].start - chunks[i].end) / sr, GAP_CREDIT_S) for i in range(a, b - 1))


def _features(x: np.ndarray, *, sr: int) -> np.ndarray:
    """Log energies in 16 bands from 100 Hz to 5 kHz, every 40 ms, each band's mean removed (the
    room and the microphone), as a rough fingerprint of which words are said."""
    win = int(0.04 * sr)
    n = x.size // win
    if n < 2:
        return np.zeros((1, 16))
    frames = x[: n * win].reshape(n, win) * np.hanning(win)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1 / sr)
    edges = np.geomspace(100, min(5000, sr / 2 - 1), 17)
    bands = np.stack([spec[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges, edges[1:])], axis=1)
    feats = np.log(bands + 1e-10)
    return feats - feats.mean(axis=0)


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Mean frame distance along the best time alignment of two feature sequences."""
    step = max(1, int(np.ceil(np.sqrt(a.shape[0] * b.shape[0] / 40000))))  # long takes: coarser, same shape
    a, b = a[::step], b[::step]
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    acc = np.full((a.shape[0] + 1, b.shape[0] + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, a.shape[0] + 1):
        for j in range(1, b.shape[0] + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[-1, -1] / (a.shape[0] + b.shape[0]))


def attribute_retakes(mono: np.ndarray, sr: int, chunks: list[Chunk], groups: list[tuple[int, int]],
                      dropped: dict[int, tuple[int, int]]):
    """Lengths alone cannot tell "take 4 read twice" from "a false start of take 5" when the two
    takes are about as long: the reading given up sounds like the take it belongs to, so compare
    it (by its sound, aligned in time) with the kept readings of this take and of the one before."""
    groups, dropped = list(groups), dict(dropped)

    def audio(a: int, b: int) -> np.ndarray:
        return np.concatenate([mono[c.start:c.end] for c in chunks[a:b] if (c.end - c.start) / sr >= SKIP_MAX_S]
                              or [mono[chunks[a].start:chunks[b - 1].end]])

    for j, (a, r) in sorted(dropped.items()):
        if j == 0 or j - 1 in dropped:
            continue
        main = [i for i in range(a, r) if (chunks[i].end - chunks[i].start) / sr >= SKIP_MAX_S]
        if not main:
            continue  # only short sounds were given up: nothing to compare
        given_up = _features(audio(main[0], r), sr=sr)
        this = _dtw(given_up, _features(audio(*groups[j]), sr=sr))
        before = _dtw(given_up, _features(audio(*groups[j - 1]), sr=sr))
        if before < this:  # it was the take before, read again: keep that reading for it instead
            prev_start = groups[j - 1][0]
            groups[j - 1] = (main[0], r)
            dropped[j - 1] = (prev_start, main[0])
            groups[j] = (r, groups[j][1])
            del dropped[j]
    return groups, dropped


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


def plan_split(path: Path, data: np.ndarray, sr: int, takes: Sequence[Take], expected_s: Sequence[float]) -> SplitPlan:
    """Where each take is in the recording; a CalmplaceError (naming the file) when that is unclear."""
    takes, expected = list(takes), [max(0.2, float(e)) for e in expected_s]
    if len(expected) != len(takes):
        raise ValueError(f"{len(takes)} takes but {len(expected)} expected lengths")
    where = shown(path)
    if float(np.max(np.abs(data))) == 0.0:
        raise CalmplaceError(f"{where}: the recording is silent (every sample is zero)")
    mono = highpass(to_mono(data), sr=sr)
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
    result = assign(chunks, expected, sr=sr) if m >= n else None
    if result is None:
        raise CalmplaceError(
            f"{where}: {found}: some takes are missing, or were read without a pause between them. Leave at "
            f"least 1.5 s of silence between takes (chunks found at "
            f"{', '.join(_clock(c.start / sr) for c in chunks[:20])}{' ...' if m > 20 else ''})")
    groups, skipped, dropped, lengths, tempo = result
    if dropped:
        groups, dropped = attribute_retakes(mono, sr, chunks, groups, dropped)
        lengths = [_group_length(chunks, a, b, sr=sr) for a, b in groups]
    cuts: list[Cut] = []
    bad: list[str] = []
    unusual: list[str] = []
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
        if not RATIO_OK[0] <= ratio <= RATIO_OK[1]:
            bad.append(f"take {take.name} looks {_how_long(ratio)} as expected ({where_s})")
        elif not RATIO_USUAL[0] <= ratio <= RATIO_USUAL[1]:
            unusual.append(f"take {take.name} is {_how_long(ratio)} as expected ({where_s}): listen to it; "
                           + ("it may hold a false start or part of another take" if ratio > 1
                              else "part of it may have gone into another take"))
    if bad:
        raise CalmplaceError(
            f"{where}: {found}; " + "; ".join(bad) + ". Check that every take was read once, in order, with a "
            "clear pause (1.5 s or more) between takes; or record the takes as separate files")
    plan = SplitPlan(Path(path), sr, chunks, cuts, skipped, tempo, dropped)
    joined = [c.take.name for c in cuts if len(c.chunks) > 1]
    if m != n or joined or skipped or dropped:
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
    floor = noise_floor_dbfs(mono, sr=sr)
    if floor > NOISE_WARN_DBFS:
        plan.warnings.append(f"{where}: noisy: the room is at {floor:.0f} dBFS between takes (above "
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
    """Write every take file (all encoded in memory first, each written atomically) and takes.json.

    Without `force`, existing take files are never replaced: nothing is written and the error lists
    them. With it, other files of the same takes (003.mp3 beside a new 003.wav) are removed, so each
    take has one file. Returns (written, removed)."""
    fmt = fmt.lower()
    if fmt not in ("wav", "flac"):
        raise CalmplaceError(f"cannot write takes as {fmt!r}: use wav or flac")
    existing = [p for cut in plan.cuts for p in take_files(folder, cut.take)]
    if existing and not force:
        listing = "\n".join(f"  {shown(p)}" for p in existing)
        raise CalmplaceError(f"{len(existing)} take file{'s' if len(existing) != 1 else ''} already exist; "
                             f"nothing was written. Use --force to replace them:\n{listing}")
    encoded = [(folder / f"{cut.take.name}.{fmt}", encode_take(data[cut.start:cut.end], plan.sr, fmt=fmt), cut)
               for cut in plan.cuts]
    written, removed = [], []
    for target, payload, _ in encoded:
        atomic_write(target, payload)
        written.append(target)
    for p in existing:
        if p not in written and p.exists():
            p.unlink()
            removed.append(p)
    save_record(folder, {cut.take.name: record_entry(cut.take, target, sha256=sha256_bytes(payload))
                         for target, payload, cut in encoded}, script_id=script_id, locale=locale)
    return written, removed

"""Mix stage: timeline + speech clips + ambience beds → one stereo track, block by block.

The voice sits in the centre at a fixed reference loudness; each section's bed plays under it
at `level_db` relative to the voice, dipping by `duck_db` while the voice speaks. Because the
speech spans are known in advance, the dip is computed ahead of time (no envelope follower):
it starts before the first word (look-ahead) and releases slowly into the pause, and stays down
through pauses too short for the bed to come up and settle before the voice returns.
Beds are rendered and added one block at a time; only the output array is held whole, and, for
a track whose first bed is generated ahead while its takes are spoken (`BedPrefetch`), up to that
much bed again.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import SR
from .ambience import REFERENCE_LUFS  # EBU R128 programme level: the voice is set to it, beds under it
from .script import Ambience
from .timeline import Timeline
from .units import db_to_gain, seconds_to_samples

DUCK_LOOKAHEAD_S = 0.3     # the dip is complete when the first word starts
DUCK_RELEASE_S = 1.5       # and swells back slowly into the pause
# speech back within 3 s (3 s included, the length of a `[pause 3s]`): the bed stays down. In such
# a gap a 1.5 s release and a 0.3 s dip leave the bed at most 1.2 s at full level (a 2 s pause: a
# 6 dB swell and a dip back within 0.5 s, which QA heard as pumping); a bed that moves only for
# real pauses sounds calm
DUCK_HOLD_S = 3.0
EDGE_FADE_MIN_S = 1.0      # the shortest fade in or out of the track's bed
CROSSFADE_S = 3.0          # between two sections' different ambiences, ending where the new section starts
BLOCK = 1 << 16            # samples per block: ~1.5 s, small enough to stream an hour


@dataclass(frozen=True)
class BedRun:
    """One ambience playing over [start, end) of the track, with its own envelope edges."""

    ambience: Ambience
    start: int
    end: int
    fade_in: int   # samples of fade at the start
    fade_out: int  # samples of fade at the end
    seed: int
    # what each edge fades from / to: another bed ("cross": equal-power, so the two beds keep their
    # summed power) or silence ("silence": a raised cosine, which starts and ends gently where
    # the equal-power sine reaches -20 dB in the first 6 % of the fade and seems to switch on)
    fade_in_from: str = "silence"
    fade_out_to: str = "silence"


# BS.1770 sums the channels' energies (weight 1 for left and right): the mono voice laid in both
# channels measures 10 log10(2) = 3.01 dB louder than the clip alone, with the same gating
DUAL_MONO_DB = 10.0 * np.log10(2.0)


def levels_voice(clips: Sequence[np.ndarray], *, sr: int) -> bool:
    """Whether there is enough speech for `speech_gain` to level: half a second (under the 0.4 s
    of one gating block or so the measurement is meaningless, and the voice is left as spoken)."""
    return sum(c.size for c in clips) >= sr // 2


def speech_gain(clips: Sequence[np.ndarray], *, sr: int, target_lufs: float = REFERENCE_LUFS) -> float:
    """One gain for the whole voice so its integrated loudness (BS.1770), as laid in the mix (the
    same in both channels), is the reference the beds are rendered at (they are measured in
    stereo too), so a bed's `level_db` is its level relative to the voice as heard."""
    from .master import integrated_lufs_joined

    if not levels_voice(clips, sr=sr):
        return 1.0
    loudness = integrated_lufs_joined([c for c in clips if c.size], sr=sr) + DUAL_MONO_DB
    if not np.isfinite(loudness):
        return 1.0
    return float(db_to_gain(target_lufs - loudness))


def duck_spans(spans: Sequence[tuple[int, int]], *, sr: int, hold_s: float) -> list[tuple[int, int]]:
    """The stretches the bed is ducked under: the speech spans, each joined to the next where the
    voice returns at most `hold_s` after it stops."""
    hold = seconds_to_samples(hold_s, sr=sr)
    out: list[tuple[int, int]] = []
    for s0, s1 in spans:
        if out and s0 - out[-1][1] <= hold:
            out[-1] = (out[-1][0], max(out[-1][1], s1))
        else:
            out.append((s0, s1))
    return out


def duck_amount(spans: Sequence[tuple[int, int]], *, start: int, stop: int, sr: int,
                lookahead_s: float = DUCK_LOOKAHEAD_S, release_s: float = DUCK_RELEASE_S) -> np.ndarray:
    """How far the bed is ducked over samples [start, stop): 0 = not at all, 1 = by the full duck_db.

    Each speech span contributes a raised-cosine rise over the look-ahead before it, 1 during it,
    and a raised-cosine fall over the release after it; overlapping contributions take the max,
    so the curve is continuous and free of steps (no zipper noise). Only the samples a span
    reaches are computed."""
    la = seconds_to_samples(lookahead_s, sr=sr)
    rel = seconds_to_samples(release_s, sr=sr)
    curves = dict(zip(("rise", "fall"), _duck_curves(la, rel)))
    amount = np.zeros(stop - start, dtype=np.float64)
    for a, b, part, offset in _span_parts(spans, start=start, stop=stop, la=la, rel=rel):
        if part == "hold":
            amount[a - start:b - start] = 1.0
        else:
            np.maximum(amount[a - start:b - start], curves[part][offset:offset + b - a], out=amount[a - start:b - start])
    return amount


def _span_parts(spans: Sequence[tuple[int, int]], *, start: int, stop: int, la: int, rel: int):
    """Each speech span's rise over [s0 - la, s0), hold over [s0, s1) and fall over [s1, s1 + rel),
    clipped to [start, stop): (a, b, "rise" | "hold" | "fall", offset of sample a into the part)."""
    for s0, s1 in spans:
        if s1 + rel <= start or s0 - la >= stop:
            continue
        for part, p0, p1 in (("rise", s0 - la, s0), ("hold", s0, s1), ("fall", s1, s1 + rel)):
            a, b = max(start, p0), min(stop, p1)
            if b > a:
                yield a, b, part, a - p0


@functools.lru_cache(maxsize=8)
def _duck_curves(la: int, rel: int) -> tuple[np.ndarray, np.ndarray]:
    """The raised-cosine rise over `la` samples and fall over `rel`, by sample offset into each:
    the same float64 arithmetic for every span, so worked out once (read-only)."""
    t = np.arange(la, dtype=np.float64)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / max(la, 1), 0.0, 1.0))
    t = np.arange(rel, dtype=np.float64)
    fall = 0.5 - 0.5 * np.cos(np.pi * np.clip(1.0 - t / max(rel, 1), 0.0, 1.0))
    rise.setflags(write=False)
    fall.setflags(write=False)
    return rise, fall


def bed_runs(timeline: Timeline, *, seed_base: str) -> list[BedRun]:
    """Group consecutive sections with the same ambience; crossfade where it changes, over the
    CROSSFADE_S before the new section starts (in the pause before it, usually), so the new
    scene is whole under its first words and at its chapter mark."""
    runs: list[tuple[Ambience | None, int, int]] = []
    for section in timeline.sections:
        if runs and runs[-1][0] == section.ambience:
            runs[-1] = (runs[-1][0], runs[-1][1], section.end)
        else:
            runs.append((section.ambience, section.start, section.end))
    n, sr = timeline.n_samples, timeline.sr
    cross = seconds_to_samples(CROSSFADE_S, sr=sr)
    # the track's fade in is whole before the bed first dips for the voice, and its fade out starts
    # once the bed is back up after the last words (QA: a 5 s fade in over a 4 s lead-in rose to
    # 1.5 dB under its level, dipped 6 dB for the first word and went on rising under the voice);
    # never shorter than EDGE_FADE_MIN_S, so a bed never switches on
    spans = timeline.speech_spans()
    la, rel, least = (seconds_to_samples(x, sr=sr) for x in (DUCK_LOOKAHEAD_S, DUCK_RELEASE_S, EDGE_FADE_MIN_S))
    first_dip = spans[0][0] - la if spans else n
    last_rise = spans[-1][1] + rel if spans else 0
    out = []
    for i, (ambience, start, end) in enumerate(runs):
        if ambience is None:
            continue
        first, last = start == 0, end >= n
        s = 0 if first else max(0, start - cross)
        e = n if last else end
        fade_in = min(seconds_to_samples(ambience.fade_in_s, sr=sr), max(first_dip, least)) if first else start - s
        fade_out = min(seconds_to_samples(ambience.fade_out_s, sr=sr), max(n - last_rise, least)) if last \
            else end - max(0, end - cross)
        beside = ("cross" if i > 0 and runs[i - 1][0] is not None else "silence",
                  "cross" if i + 1 < len(runs) and runs[i + 1][0] is not None else "silence")
        out.append(BedRun(ambience, s, e, min(fade_in, e - s), min(fade_out, e - s),
                          bed_seed(seed_base, i, ambience.sound), *beside))
    return out


def bed_seed(seed_base: str, run_index: int, sound: str) -> int:
    """The seed of the run_index-th bed run (counting runs without ambience too)."""
    digest = hashlib.sha256(f"{seed_base}|{run_index}|{sound}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _edge_envelope(run: BedRun, *, start: int, stop: int) -> np.ndarray:
    """The fade in at the run's start and out at its end, over [start, stop): equal-power (sine)
    where another bed crosses it, a raised cosine from and to silence."""
    env = np.ones(stop - start)
    for fade, edge, sign, other in ((run.fade_in, run.start, 1, run.fade_in_from),
                                    (run.fade_out, run.end, -1, run.fade_out_to)):
        if not fade:
            continue
        # the fade covers [edge, edge + fade) going in, [edge - fade, edge) going out
        a, b = (max(start, edge), min(stop, edge + fade)) if sign > 0 else (max(start, edge - fade), min(stop, edge))
        if b > a:
            t = np.arange(a, b, dtype=np.float64)
            x = np.clip(sign * (t - edge) / fade, 0.0, 1.0)
            env[a - start:b - start] *= np.sin(0.5 * np.pi * x) if other == "cross" else 0.5 - 0.5 * np.cos(np.pi * x)
        outside = (start, min(stop, edge)) if sign > 0 else (max(start, edge), stop)
        if outside[1] > outside[0]:
            env[outside[0] - start:outside[1] - start] = 0.0
    return env


def bed_gain_db(timeline: Timeline, run: BedRun, *, start: int, stop: int) -> np.ndarray:
    """The bed's gain relative to the reference over [start, stop): level, duck and fades, in dB."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(bed_gain(timeline, run, start=start, stop=stop).astype(np.float64))


def bed_gain(timeline: Timeline, run: BedRun, *, start: int, stop: int) -> np.ndarray:
    """`bed_gain_db` as a linear float32 gain, computed only where the duck or a fade moves it.

    Each sample is level x float32(exp(duck x k)), from the float64 curve `duck_amount` gives for
    the `duck_spans` (speech, and the pauses of at most DUCK_HOLD_S between). Away from them the
    duck is 0 (gain = level); under them exactly 1 (one value). A rise or
    fall that no other span's overlaps is the same curve for every span, so its gains come from
    a table; only where ramps overlap (max of the two) are exps worked out here."""
    sr = timeline.sr
    spans = duck_spans(timeline.speech_spans(), sr=sr, hold_s=DUCK_HOLD_S)
    level_db, duck_db = run.ambience.level_db, run.ambience.duck_db
    la, rel = seconds_to_samples(DUCK_LOOKAHEAD_S, sr=sr), seconds_to_samples(DUCK_RELEASE_S, sr=sr)
    gain = np.full(stop - start, np.float32(db_to_gain(level_db)), dtype=np.float32)
    moving, holding = _duck_parts(spans, start=start, stop=stop, la=la, rel=rel)
    if moving or holding:
        rise, fall, held = _duck_gains(la, rel, level_db=level_db, duck_db=duck_db)
        for a, b, curve, offset in moving:
            if curve is not None:
                gain[a - start:b - start] = (rise if curve == "rise" else fall)[offset:offset + b - a]
            else:
                duck = duck_amount(spans, start=a, stop=b, sr=sr)
                gain[a - start:b - start] *= np.exp(duck * _per_duck(duck_db)).astype(np.float32)
        for a, b in holding:
            gain[a - start:b - start] = held
    if run.fade_in and start < run.start + run.fade_in or run.fade_out and stop > run.end - run.fade_out:
        gain *= _edge_envelope(run, start=start, stop=stop).astype(np.float32)
    return gain


def _per_duck(duck_db: float) -> float:
    """k in exp(duck x k): the natural-log gain of a full duck."""
    return -duck_db * np.log(10.0) / 20.0


@functools.lru_cache(maxsize=16)
def _duck_gains(la: int, rel: int, *, level_db: float, duck_db: float) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """(rise, fall, held): the float32 bed gain along a lone rise and fall, by sample offset, and
    under speech; the same arithmetic `bed_gain` does per sample, worked out once (read-only)."""
    rise_duck, fall_duck = _duck_curves(la, rel)
    level = np.float32(db_to_gain(level_db))
    rise, fall, held = (np.full(d.size, level, dtype=np.float32) * np.exp(d * _per_duck(duck_db)).astype(np.float32)
                        for d in (rise_duck, fall_duck, np.ones(1)))
    rise.setflags(write=False)
    fall.setflags(write=False)
    return rise, fall, held[0]


def _duck_parts(spans: Sequence[tuple[int, int]], *, start: int, stop: int, la: int, rel: int,
                ) -> tuple[list[tuple[int, int, str | None, int]], list[tuple[int, int]]]:
    """Where the duck is not 0 within [start, stop): (moving, holding). `moving` are the rises and
    falls, merged where they overlap, as (a, b, curve, offset): a lone one names its curve
    ("rise" or "fall") and the offset of sample a into it; merged ones have curve None. `holding`
    are the spans themselves, where the duck is exactly 1 (whatever ramps lie there too)."""
    ramps: list[tuple[int, int, str, int]] = []
    holding: list[tuple[int, int]] = []
    for a, b, part, offset in _span_parts(spans, start=start, stop=stop, la=la, rel=rel):
        if part == "hold":
            holding.append((a, b))
        else:
            ramps.append((a, b, part, offset))
    moving: list[tuple[int, int, str | None, int]] = []
    for ramp in sorted(ramps):
        if moving and ramp[0] < moving[-1][1]:
            moving[-1] = (moving[-1][0], max(moving[-1][1], ramp[1]), None, 0)
        else:
            moving.append(ramp)
    return moving, holding


def speech_hops(timeline: Timeline) -> np.ndarray:
    """Which 100 ms hops of the track (BS.1770's, from its start) hold some of a take: (n_hops,) bool."""
    hop = int(round(0.1 * timeline.sr))
    out = np.zeros(-(-timeline.n_samples // hop), dtype=bool)
    for span in timeline.takes:
        out[span.start // hop: -(-span.end // hop)] = True
    return out


def mix(timeline: Timeline, clips: Sequence[np.ndarray], *, open_bed: Callable[..., object], seed_base: str,
        block: int = BLOCK, on_ready: Callable[[np.ndarray, int], None] | None = None,
        bed_trim_db: float = 0.0) -> np.ndarray:
    """The full track, (2, n_samples) float32, voice at REFERENCE_LUFS and beds under it.

    `open_bed(sound, seed=..., n_samples_hint=...)` returns a source whose `read(n)` gives the
    next (2, n) block of that bed at REFERENCE_LUFS. `on_ready(out, k)` hears, as the beds are
    laid in, that samples before k are final (for a meter that measures as the track is made).
    `bed_trim_db` lowers every bed by that much beyond its level_db (master.bed_trim_db)."""
    sr = timeline.sr
    trim = np.float32(db_to_gain(bed_trim_db)) if bed_trim_db else None
    out = np.zeros((2, timeline.n_samples), dtype=np.float32)
    gain = speech_gain(clips, sr=sr)
    for span, clip in zip(timeline.takes, clips, strict=True):
        if clip.size != span.end - span.start:
            raise ValueError(f"take {span.take.name}: clip has {clip.size} samples, timeline {span.end - span.start}")
    lay = _VoiceLayer(out, list(zip(timeline.takes, clips)), gain=gain)
    runs = bed_runs(timeline, seed_base=seed_base)
    # runs are in order of their starts (a run after a section shorter than a crossfade may overlap
    # more than its neighbour): what lies before the next run's start is final once this run has
    # passed it, as no later run reaches back before that
    starts = [run.start for run in runs[1:]] + [timeline.n_samples]
    first_ready = runs[0].start if runs else timeline.n_samples
    lay(first_ready)
    if on_ready:
        on_ready(out, first_ready)
    for run, next_start in zip(runs, starts):
        source = open_bed(run.ambience.sound, seed=run.seed, n_samples_hint=run.end - run.start)
        for b0 in range(run.start, run.end, block):
            b1 = min(b0 + block, run.end)
            lay(b1)   # the voice first, then the bed: each sample adds up in the same order
            gain_b = bed_gain(timeline, run, start=b0, stop=b1)
            if trim is not None:
                gain_b = gain_b * trim
            out[:, b0:b1] += source.read(b1 - b0) * gain_b[np.newaxis, :]
            if on_ready:
                on_ready(out, min(b1, next_start))
        lay(next_start)
        if on_ready:
            on_ready(out, next_start)
    lay(timeline.n_samples)
    return out


class _VoiceLayer:
    """Adds the takes (times one gain; in timeline order, end to end) to `out` front to back, as
    far as it is asked: the mix lays each block's voice just before its bed, so its first bed
    block (and the meter) need not wait until the whole voice is in (0.2 s for the shipped track,
    as its 240 MB of output is touched for the first time). Every sample gets the same sums, in
    the same order, as laying it all first: zero, plus each take over it in turn, then the beds."""

    def __init__(self, out: np.ndarray, takes: list, *, gain: float):
        self.out, self.takes, self.gain = out, takes, gain
        self.done = 0    # samples before this are laid
        self.first = 0   # takes before this end at or before `done`

    def __call__(self, through: int) -> None:
        if through <= self.done:
            return
        lo = self.done
        for k in range(self.first, len(self.takes)):
            span, clip = self.takes[k]
            if span.start >= through:
                break
            a, b = max(span.start, lo), min(span.end, through)
            if b > a:
                self.out[:, a:b] += (clip[a - span.start:b - span.start] * self.gain)[np.newaxis, :]
        self.done = through
        while self.first < len(self.takes) and self.takes[self.first][0].end <= through:
            self.first += 1


def bed_opener(ambience_dir: Path, *, sr: int, ready: "BedPrefetch | None" = None):
    """Bind the ambience library to a project folder, for `mix(open_bed=...)`; a `ready` prefetch
    serves the first opening of its own (sound, seed)."""
    from .ambience import open_bed

    def _open(sound: str, *, seed: int, n_samples_hint: int):
        nonlocal ready
        if ready is not None and ready.key == (sound, seed):
            source, ready = ready, None
            source.expect(n_samples_hint)
            return source
        return open_bed(sound, sr=sr, seed=seed, ambience_dir=ambience_dir, n_samples_hint=n_samples_hint)

    return _open


class BedPrefetch:
    """A bed source read ahead, `BLOCK` samples at a time, by a background thread: the track's
    first bed can be generated while its takes are still being spoken (the speech runs in other
    processes, so this process would otherwise wait). Reads give exactly what the source would
    (beds join block reads seamlessly).

    It generates until `ahead_blocks` blocks are waiting (default: 30 minutes of bed, 0.6 GB at
    44.1 kHz; an 11-minute bed is made in about 2 s here, so a smaller bound stalled it while the
    takes were spoken, and the mix waited for it afterwards), and no more than the mix says it
    needs (`expect`); until the mix says so, no more than `likely_samples` (a generous guess,
    from the script, of how long the bed will be read), and then it waits to be told."""

    def __init__(self, open_source: Callable[[], object], *, key: tuple[str, int],
                 ahead_blocks: int = -(-30 * 60 * SR // BLOCK), likely_samples: int | None = None):
        import queue
        import threading

        self.key = key
        self._queue: "queue.Queue[np.ndarray | BaseException]" = queue.Queue(maxsize=ahead_blocks)
        self._stop = threading.Event()
        self._likely_blocks = None if likely_samples is None else -(-likely_samples // BLOCK)
        self._wanted_blocks: int | None = None   # None: not known yet
        self._told = threading.Event()           # set with _wanted_blocks
        self._buf = np.zeros((2, 0), dtype=np.float32)
        self._thread = threading.Thread(target=self._run, args=(open_source,), daemon=True,
                                        name="calmplace-bed-prefetch")
        self._thread.start()

    def _run(self, open_source) -> None:
        try:
            source = open_source()
            made = 0
            while not self._stop.is_set():
                if self._told.is_set():
                    if made >= self._wanted_blocks:
                        return
                elif self._likely_blocks is not None and made >= self._likely_blocks:
                    self._told.wait(0.1)   # as far as the guess goes: wait for the real length
                    continue
                self._put(source.read(BLOCK))
                made += 1
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)

    def _put(self, item: "np.ndarray | BaseException") -> None:
        """Queue an item, waiting while the queue is full, unless the prefetch is being closed."""
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def expect(self, n_samples: int) -> None:
        """The bed will be read for n_samples in all: generate that much, and no more."""
        self._wanted_blocks = -(-n_samples // BLOCK)
        self._told.set()

    def read(self, n_samples: int) -> np.ndarray:
        """The next (2, n_samples); a read of exactly one queued block hands it over uncopied."""
        have = self._buf.shape[1]
        pieces = [self._buf] if have else []
        while have < n_samples:
            block = self._queue.get()
            if isinstance(block, BaseException):
                raise block
            pieces.append(block)
            have += block.shape[1]
        whole = pieces[0] if len(pieces) == 1 else np.concatenate(pieces or [self._buf], axis=1)
        self._buf = whole[:, n_samples:]
        return whole[:, :n_samples]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

"""Mix stage: timeline + speech clips + ambience beds → one stereo track, block by block.

The voice sits in the centre at a fixed reference loudness; each section's bed plays under it
at `level_db` relative to the voice, dipping by `duck_db` while the voice speaks. Because the
speech spans are known in advance, the dip is computed ahead of time (no envelope follower):
it starts before the first word (look-ahead) and releases slowly into the pause.
Only the output array is held whole; beds are rendered and added one block at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyloudnorm

from .ambience import REFERENCE_LUFS  # EBU R128 programme level: the voice is set to it, beds under it
from .script import Ambience
from .timeline import Timeline
from .units import db_to_gain, seconds_to_samples

DUCK_LOOKAHEAD_S = 0.15    # the dip is complete when the first word starts
DUCK_RELEASE_S = 1.5       # and swells back slowly into the pause
CROSSFADE_S = 3.0          # between two sections' different ambiences
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


def speech_gain(clips: Sequence[np.ndarray], *, sr: int, target_lufs: float = REFERENCE_LUFS) -> float:
    """One gain for the whole voice so its integrated loudness (BS.1770) is the reference."""
    voiced = np.concatenate([c for c in clips if c.size]) if clips else np.zeros(0, np.float32)
    if voiced.size < sr // 2:  # under 0.4 s of gating blocks the measurement is meaningless
        return 1.0
    loudness = pyloudnorm.Meter(sr).integrated_loudness(voiced.astype(np.float64))
    if not np.isfinite(loudness):
        return 1.0
    return float(db_to_gain(target_lufs - loudness))


def duck_amount(spans: Sequence[tuple[int, int]], *, start: int, stop: int, sr: int,
                lookahead_s: float = DUCK_LOOKAHEAD_S, release_s: float = DUCK_RELEASE_S) -> np.ndarray:
    """How far the bed is ducked over samples [start, stop): 0 = not at all, 1 = by the full duck_db.

    Each speech span contributes a raised-cosine rise over the look-ahead before it, 1 during it,
    and a raised-cosine fall over the release after it; overlapping contributions take the max,
    so the curve is continuous and free of steps (no zipper noise)."""
    la = seconds_to_samples(lookahead_s, sr=sr)
    rel = seconds_to_samples(release_s, sr=sr)
    t = np.arange(start, stop, dtype=np.float64)
    amount = np.zeros(stop - start, dtype=np.float64)
    for s0, s1 in spans:
        if s1 + rel <= start or s0 - la >= stop:
            continue
        rise = np.clip((t - (s0 - la)) / max(la, 1), 0.0, 1.0)
        fall = np.clip(1.0 - (t - s1) / max(rel, 1), 0.0, 1.0)
        shape = np.where(t < s0, 0.5 - 0.5 * np.cos(np.pi * rise), np.where(t < s1, 1.0, 0.5 - 0.5 * np.cos(np.pi * fall)))
        np.maximum(amount, shape, out=amount)
    return amount


def bed_runs(timeline: Timeline, *, seed_base: str) -> list[BedRun]:
    """Group consecutive sections with the same ambience; crossfade where it changes."""
    runs: list[tuple[Ambience | None, int, int]] = []
    for section in timeline.sections:
        if runs and runs[-1][0] == section.ambience:
            runs[-1] = (runs[-1][0], runs[-1][1], section.end)
        else:
            runs.append((section.ambience, section.start, section.end))
    n = timeline.n_samples
    half = seconds_to_samples(CROSSFADE_S / 2, sr=timeline.sr)
    out = []
    for i, (ambience, start, end) in enumerate(runs):
        if ambience is None:
            continue
        first, last = start == 0, end >= n
        s = 0 if first else max(0, start - half)
        e = n if last else min(n, end + half)
        fade_in = seconds_to_samples(ambience.fade_in_s, sr=timeline.sr) if first else start - s + min(half, start)
        fade_out = seconds_to_samples(ambience.fade_out_s, sr=timeline.sr) if last else e - end + min(half, n - end)
        digest = hashlib.sha256(f"{seed_base}|{i}|{ambience.sound}".encode()).digest()
        out.append(BedRun(ambience, s, e, min(fade_in, e - s), min(fade_out, e - s), int.from_bytes(digest[:4], "little")))
    return out


def _edge_envelope(run: BedRun, *, start: int, stop: int) -> np.ndarray:
    """Equal-power (sine) fade in at the run's start and out at its end, over [start, stop)."""
    t = np.arange(start, stop, dtype=np.float64)
    env = np.ones(stop - start)
    if run.fade_in:
        x = np.clip((t - run.start) / run.fade_in, 0.0, 1.0)
        env *= np.sin(0.5 * np.pi * x)
    if run.fade_out:
        x = np.clip((run.end - t) / run.fade_out, 0.0, 1.0)
        env *= np.sin(0.5 * np.pi * x)
    return env


def bed_gain_db(timeline: Timeline, run: BedRun, *, start: int, stop: int) -> np.ndarray:
    """The bed's gain relative to the reference over [start, stop): level, duck and fades, in dB."""
    duck = duck_amount(timeline.speech_spans(), start=start, stop=stop, sr=timeline.sr)
    env = _edge_envelope(run, start=start, stop=stop)
    with np.errstate(divide="ignore"):
        return run.ambience.level_db - run.ambience.duck_db * duck + 20.0 * np.log10(env)


def mix(timeline: Timeline, clips: Sequence[np.ndarray], *, open_bed: Callable[..., object], seed_base: str,
        block: int = BLOCK) -> np.ndarray:
    """The full track, (2, n_samples) float32, voice at REFERENCE_LUFS and beds under it.

    `open_bed(sound, seed=..., n_samples_hint=...)` returns a source whose `read(n)` gives the
    next (2, n) block of that bed at REFERENCE_LUFS."""
    sr = timeline.sr
    out = np.zeros((2, timeline.n_samples), dtype=np.float32)
    gain = speech_gain(clips, sr=sr)
    for span, clip in zip(timeline.takes, clips, strict=True):
        if clip.size != span.end - span.start:
            raise ValueError(f"take {span.take.name}: clip has {clip.size} samples, timeline {span.end - span.start}")
        out[:, span.start:span.end] += (clip * gain)[np.newaxis, :]
    for run in bed_runs(timeline, seed_base=seed_base):
        source = open_bed(run.ambience.sound, seed=run.seed, n_samples_hint=run.end - run.start)
        for b0 in range(run.start, run.end, block):
            b1 = min(b0 + block, run.end)
            g = db_to_gain(bed_gain_db(timeline, run, start=b0, stop=b1)).astype(np.float32)
            out[:, b0:b1] += source.read(b1 - b0) * g[np.newaxis, :]
    return out


def bed_opener(ambience_dir: Path, *, sr: int):
    """Bind the ambience library to a project folder, for `mix(open_bed=...)`."""
    from .ambience import open_bed

    def _open(sound: str, *, seed: int, n_samples_hint: int):
        return open_bed(sound, sr=sr, seed=seed, ambience_dir=ambience_dir, n_samples_hint=n_samples_hint)

    return _open

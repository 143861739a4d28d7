"""A person's own voice: takes read from `voices/<name>/<script-id>/<locale>/<NNN>.<ext>` (contract §4).

Each take file is prepared the same way, so takes recorded on different days, devices and rooms
sit together in one track:

1. decoded to float (wav, flac, ogg, mp3 through libsndfile; m4a and aac through pydub and ffmpeg),
2. mono: the average of its channels (or, when one channel is phase-inverted and the average
   cancels, the better single channel),
3. DC removed, then a gentle high-pass (2nd-order Butterworth at 70 Hz run forward and backward:
   zero phase, so nothing moves in time; -12 dB at 35 Hz, under 1 dB at 100 Hz) to take out
   rumble, handling noise and mains hum's lowest partial without thinning the voice,
4. resampled to the library rate,
5. leading and trailing silence cut to a short natural margin, where "silence" is judged against
   the take's own noise floor (room tone differs from room to room and from phone to microphone,
   so no fixed threshold fits them all),
6. loudness-matched: every take to the same speech loudness (BS.1770, gated), so no take jumps
   out; the mix then sets the voice as a whole to its reference level.

The reader's own pauses before and after a take are cut away: the script's pauses, placed by the
timeline, set the rhythm, exactly as for the synthetic voice.

Which text each take was recorded for is remembered in `takes.json` next to the takes (written by
`calmplace takes split` and `calmplace takes status --accept`), so a take whose script text has
changed since is reported as stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..ambience import AUDIO_SUFFIXES
from ..errors import CalmplaceError, display_path, os_problem
from ..fsio import atomic_write, sha256_file
from ..takes import Take
from ..units import db_to_gain, seconds_to_samples
from ..voices import VoiceProfile
from . import take_label
from .clips import resample

PREP_VERSION = "recorded-prep v2"  # bump when prepare() changes: every recorded take is prepared again

# Extensions read through libsndfile (python-soundfile; the ambience files' list: wav, flac, ogg,
# oga, mp3, aif, aiff; and opus, Ogg Opus, as phones save voice memos), then through pydub + ffmpeg.
# TAKE_EXTS is the one list of take files: what status, build, split and every hint accept.
SOUNDFILE_EXTS = tuple(s.lstrip(".") for s in AUDIO_SUFFIXES) + ("opus",)
# through ffmpeg: phones' and browsers' recorders (QA: .webm, .caf, .3gp and .wma takes showed as missing)
FFMPEG_EXTS = ("m4a", "aac", "mp4", "3gp", "caf", "webm", "wma")
TAKE_EXTS = SOUNDFILE_EXTS + FFMPEG_EXTS
RECORD_FILE = "takes.json"

MIN_RATE = 8000             # telephone band: below it consonants are gone
HIGHPASS_HZ = 70.0          # under the lowest fundamental of a deep voice (~80-85 Hz)
LEAD_MARGIN_S = 0.10        # room kept before the first sound: a soft onset ("h", "f") the detector missed
TAIL_MARGIN_S = 0.15        # and after the last: a word's decay and the room's short reverb
FADE_FRACTION = 0.5         # the outer half of each margin fades in/out, so room tone never starts with a step
TAKE_LUFS = -23.0           # every take's speech loudness (EBU R128's programme level, as the mix uses)
NOISE_WARN_DBFS = -60.0     # a noise floor above this is audible under quiet speech and in the margins
CLIP_LEVEL = 0.999          # |sample| at or above this counts as full scale (decoders round ±1.0 a little)
CLIP_RUN = 3                # three full-scale samples in a row: the converter ran out of headroom


# ------------------------------------------------------------------------------------------------
# Reading audio


def _one_of(names: Sequence[str]) -> str:
    """The names as one phrase, "a, b or c": the lists of take formats in hints."""
    return ", ".join(names[:-1]) + f" or {names[-1]}"


def take_exts() -> str:
    """Every take extension, for hints: ".wav, .flac, ... or .aac"."""
    return _one_of([f".{e}" for e in TAKE_EXTS])


def other_exts() -> str:
    """The take extensions besides .wav, for hints: ".flac, .ogg, ... or .aac"."""
    return _one_of([f".{e}" for e in TAKE_EXTS if e != "wav"])


def take_formats() -> str:
    """The take formats, for hints: "WAV, FLAC, OGG, OGA, MP3, AIF, AIFF, OPUS, M4A or AAC"."""
    return _one_of([e.upper() for e in TAKE_EXTS])


# What a file holds, from its first bytes, for a take saved or renamed with the wrong extension
# (an iPhone's .m4a renamed to .mp3): (magic test, the format's name, the extensions it goes by)
_MAGIC = (
    (lambda b: b[4:8] == b"ftyp", "MP4/M4A (AAC)", ("m4a", "mp4", "3gp")),
    (lambda b: b[:4] == b"caff", "CAF (Core Audio)", ("caf",)),
    (lambda b: b[:4] == b"\x1a\x45\xdf\xa3", "WebM", ("webm",)),
    (lambda b: b[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "WMA", ("wma",)),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE", "WAV", ("wav",)),
    (lambda b: b[:4] == b"fLaC", "FLAC", ("flac",)),
    (lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:64], "Ogg Opus", ("opus", "ogg", "oga")),
    (lambda b: b[:4] == b"OggS", "Ogg", ("ogg", "oga", "opus")),
    (lambda b: b[:4] == b"FORM" and b[8:12] in (b"AIFF", b"AIFC"), "AIFF", ("aif", "aiff")),
    # ADTS AAC: a 12-bit sync and layer 00 (an MPEG audio frame's layer is never 00)
    (lambda b: len(b) > 1 and b[0] == 0xFF and (b[1] & 0xF6) == 0xF0, "AAC (ADTS)", ("aac",)),
    (lambda b: b[:3] == b"ID3" or (len(b) > 1 and b[0] == 0xFF and (b[1] & 0xE0) == 0xE0), "MP3", ("mp3",)),
)


def sniff(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(format name, its extensions) of what the file holds, from its first bytes; None when unknown."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    for test, name, exts in _MAGIC:
        if test(head):
            return name, exts
    return None


def _renamed(path: Path, shown_as: str) -> CalmplaceError | None:
    """The error for a file that plainly holds another format than its extension says, or None."""
    ext = path.suffix.lower().lstrip(".")
    found = sniff(path)
    if found and ext not in found[1]:
        name, exts = found
        return CalmplaceError(f"{shown_as}: not a valid {ext.upper()} file: it holds {name} audio under the wrong "
                              f"extension; rename it to {path.stem}.{exts[0]}")
    return None


def _wrong_extension(path: Path, shown_as: str) -> None:
    """Before decoding: an M4A or AAC file under a libsndfile extension (an .m4a renamed .mp3) is
    refused, since libsndfile cannot read it at all (and its MP3 decoder would print its complaints
    to stderr). Other mismatches are left to the decoders, which read WAV, FLAC, Ogg, AIFF and MP3
    (libsndfile) and anything (ffmpeg) by their content, whatever the name."""
    ext = path.suffix.lower().lstrip(".")
    found = sniff(path)
    if ext in SOUNDFILE_EXTS and found and set(found[1]) <= set(FFMPEG_EXTS):
        raise _renamed(path, shown_as) or CalmplaceError(f"{shown_as}: not a valid {ext.upper()} file")


def _not_audio(shown_as: str, path: Path, exc: Exception) -> CalmplaceError:
    ext = path.suffix.lower().lstrip(".")
    renamed = _renamed(path, shown_as)
    if renamed:
        return renamed
    if ext == "mp3":  # libmpg123's failures come out as "File does not exist or is not a regular file"
        return CalmplaceError(f"{shown_as}: not a valid MP3 file (damaged, or another format with the wrong "
                              f"extension); use {take_formats()}")
    found = sniff(path)
    if found and ext in found[1]:   # QA: a damaged FLAC was told to use FLAC
        return CalmplaceError(f"{shown_as}: a damaged {found[0]} file ({_reason(exc)}): cut off or spoilt while "
                              f"saved or copied; save, copy or record the take again")
    return CalmplaceError(f"{shown_as}: not an audio file calmplace can read ({_reason(exc)}); "
                          f"use {take_formats()}")


_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def _decoder_chatter_hidden(path: Path):
    """libmpg123 (inside libsndfile) prints "Note: Illegal Audio-MPEG-Header ... Trying to resync"
    straight to the C-level stderr (fd 2) on a damaged MP3. Around an MP3's read, fd 2 goes to a
    temporary file (a file, not a pipe: no reader needed, so it can never fill up and block); it is
    put back in `finally`, and what else was written to stderr meanwhile (another thread's warning,
    a progress bar) is written out again, so only the decoder's notes are lost. One MP3 read at a
    time holds the swap (a lock); other formats are read without it."""
    if path.suffix.lower() != ".mp3":
        yield
        return
    with _FD2_LOCK:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to hide
            yield
            return
        sink = tempfile.TemporaryFile()
        try:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
            sink.seek(0)
            other = [line for line in sink.read().splitlines(keepends=True)
                     if not line.startswith((b"Note: ", b"Warning: ", b"[src/libmpg123", b"[../src/libmpg123"))]
            if other:
                os.write(2, b"".join(other))
        finally:
            os.close(saved)
            sink.close()


def read_audio(path: Path, *, shown_as: str | None = None) -> tuple[np.ndarray, int]:
    """(n, channels) float32 and the file's own rate; a CalmplaceError naming the file otherwise
    (as `shown_as` says, by default its path as given)."""
    path = Path(path)
    name = shown_as or str(path)
    ext = path.suffix.lower().lstrip(".")
    if not path.is_file():
        raise CalmplaceError(f"{name}: cannot read the file: {'it is a folder' if path.is_dir() else 'no such file'}")
    if path.stat().st_size == 0:
        raise CalmplaceError(f"{name}: the file is empty (0 bytes): record or copy it again")
    _wrong_extension(path, name)
    if ext in FFMPEG_EXTS:
        data, sr = _read_ffmpeg(path, name)
    else:
        import soundfile as sf

        try:
            with _decoder_chatter_hidden(path):
                data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except OSError as exc:  # LibsndfileError is a RuntimeError; OSError: missing, no permission
            raise CalmplaceError(f"{name}: cannot read the file: {exc.strerror or exc}") from None
        except (RuntimeError, ValueError, TypeError) as exc:
            raise _not_audio(name, path, exc) from None
    if data.size == 0 or data.shape[0] == 0:
        raise CalmplaceError(f"{name}: the file holds no audio (0 samples)")
    if sr < MIN_RATE:
        raise CalmplaceError(f"{name}: the sample rate is {sr} Hz; record at {MIN_RATE} Hz or more "
                             f"(44100 or 48000 Hz is best)")
    if not np.all(np.isfinite(data)):
        raise CalmplaceError(f"{name}: the file holds invalid samples (not finite numbers)")
    return data, int(sr)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    # libsndfile's message repeats the path: "Error opening '<path>': Format not recognised."
    if ": " in text and text.startswith("Error opening"):
        text = text.split(": ", 1)[1]
    return text.rstrip(".") or type(exc).__name__


def _read_ffmpeg(path: Path, name: str) -> tuple[np.ndarray, int]:
    try:
        from pydub import AudioSegment  # only here: it needs ffmpeg, and warns at import without it
        from pydub.exceptions import CouldntDecodeError
    except ImportError:
        raise CalmplaceError(f"{name}: reading .{path.suffix.lstrip('.')} files needs pydub "
                             f"(pip install pydub) and ffmpeg; or save the take as WAV or FLAC") from None
    try:
        seg = AudioSegment.from_file(str(path))
    except FileNotFoundError:
        raise CalmplaceError(f"{name}: reading .{path.suffix.lstrip('.')} files needs ffmpeg "
                             f"(apt-get install ffmpeg, brew install ffmpeg); or save the take as WAV or FLAC") from None
    except (CouldntDecodeError, OSError, IndexError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CalmplaceError(f"{name}: not an audio file calmplace can read ({first})") from None
    raw = np.array(seg.get_array_of_samples())
    data = (raw.reshape(-1, seg.channels).astype(np.float32) / float(1 << (8 * seg.sample_width - 1)))
    return data, int(seg.frame_rate)


# ------------------------------------------------------------------------------------------------
# Levels and speech detection, shared with `split`


def to_mono(data: np.ndarray) -> np.ndarray:
    """The average of the channels, float64, with DC removed."""
    mono = data.astype(np.float64).mean(axis=1) if data.ndim == 2 else data.astype(np.float64)
    return mono - mono.mean()


OUT_OF_PHASE_CORR = -0.5  # channels this anti-correlated carry one signal with one of them inverted ...
OUT_OF_PHASE_DROP_DB = 6.0  # ... and their average is this far under the louder channel. Two equal
                            # channels with correlation r average to (1 + r) / 2 of their power: -3 dB
                            # for unrelated channels (true stereo), -6 dB at r = -0.5, nothing at -1


def mono_mix(data: np.ndarray, *, sr: int) -> tuple[np.ndarray, str | None]:
    """`to_mono`, unless the channels cancel: some USB microphones and interfaces send one channel
    phase-inverted, and their average is then near silence. Then the better single channel (the
    most speech above its own noise floor; the first of equals), with a note saying so."""
    if data.ndim != 2 or data.shape[1] < 2:
        return to_mono(data), None
    x = data.astype(np.float64)
    x = x - x.mean(axis=0)
    power = np.mean(x ** 2, axis=0)
    mono = x.mean(axis=1)
    loud = float(power.max())
    if loud <= 0.0 or np.mean(mono ** 2) > loud * 10 ** (-OUT_OF_PHASE_DROP_DB / 10):
        return mono, None
    cov = x.T @ x
    norm = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(norm > 0, cov / np.where(norm > 0, norm, 1.0), 0.0)
    if corr.min() >= OUT_OF_PHASE_CORR:
        return mono, None
    ranges = [levels(frame_db(highpass(x[:, c], sr=sr), max(1, sr // 100))).range_db if power[c] > 0 else -np.inf
              for c in range(x.shape[1])]
    best = int(np.argmax(np.round(ranges, 0)))  # within 0.5 dB counts as equal: the first wins
    name = ("left", "right")[best] if x.shape[1] == 2 else f"channel {best + 1}"
    return x[:, best], f"channels are out of phase: using the {name} channel"


def highpass(mono: np.ndarray, *, sr: int, cutoff_hz: float = HIGHPASS_HZ) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    if mono.size < 64:  # too short to filter (sosfiltfilt pads by ~3x the filter length)
        return mono
    sos = butter(2, cutoff_hz, btype="highpass", fs=sr, output="sos")
    return sosfiltfilt(sos, mono)


def frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS level of each whole frame of `frame` samples, dBFS (digital silence: -120)."""
    n = x.size // frame
    if n == 0:
        return np.full(1, 10 * np.log10(np.mean(x ** 2) + 1e-12)) if x.size else np.full(1, -120.0)
    power = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    return 10 * np.log10(power + 1e-12)


def noise_floor_dbfs(x: np.ndarray, *, sr: int) -> float:
    """Mean power of the quietest 10% of 50 ms frames: the room when nobody speaks."""
    db = frame_db(x, max(1, sr // 20))
    quiet = np.sort(db)[: max(1, db.size // 10)]
    return float(10 * np.log10(np.mean(10 ** (quiet / 10)) + 1e-12))


@dataclass(frozen=True)
class Levels:
    """How loud a recording's silence and speech are, from 10 ms frames."""

    floor_db: float   # 10th percentile: the room tone (a take is at least that much silence or word gaps)
    top_db: float     # 99th percentile: the loud vowels, not a single click

    @property
    def range_db(self) -> float:
        return self.top_db - self.floor_db


def levels(db: np.ndarray) -> Levels:
    return Levels(float(np.percentile(db, 10)), float(np.percentile(db, 99)))


MIN_SPEECH_RANGE_DB = 10.0  # speech stands at least this far above the room, or there is none


def speech_span(x: np.ndarray, *, sr: int) -> tuple[int, int] | None:
    """First and one-past-last sample of the speech in a take, or None when there is none.

    A 10 ms frame is speech when it stands clear of the take's own noise floor (12 dB, or half
    the floor-to-speech range when that is small) and is within 45 dB of its loud vowels (the
    same depth as the synthetic voice's trimming: soft consonants, not room reverb). Sounds
    closer than 0.25 s belong together; a burst under 50 ms (a click, a tap on the microphone),
    or under 0.15 s with more than 0.5 s of quiet on either side (a knock, the chair, a page
    turned: the shortest word, with its consonants, lasts longer, and a reader's words are closer
    together than that), is not speech unless it is all there is."""
    return _span(_speech_runs(x, sr=sr), n=x.size, sr=sr)


def _span(runs: list[tuple[int, int]], *, n: int, sr: int) -> tuple[int, int] | None:
    """`speech_span` from the runs of frames `_speech_runs` found in an n-sample take."""
    if not runs:
        return None
    frame = max(1, sr // 100)
    return runs[0][0] * frame, min(n, runs[-1][1] * frame)


def _speech_runs(x: np.ndarray, *, sr: int) -> list[tuple[int, int]]:
    """The runs of 10 ms frames `speech_span` counts as speech, in order."""
    frame = max(1, sr // 100)
    db = frame_db(x, frame)
    lv = levels(db)
    if lv.range_db < MIN_SPEECH_RANGE_DB:
        return []
    threshold = max(lv.floor_db + min(12.0, lv.range_db / 2), lv.top_db - 45.0)
    runs = _runs(db > threshold, join=int(0.25 * 100))
    long_runs = [r for r in runs if r[1] - r[0] >= 5] or runs
    isolated = [r for i, r in enumerate(long_runs) if r[1] - r[0] < 15
                and (i == 0 or r[0] - long_runs[i - 1][1] > 50)
                and (i == len(long_runs) - 1 or long_runs[i + 1][0] - r[1] > 50)]
    return [r for r in long_runs if r not in isolated] or long_runs


STRAY_MAX_S, STRAY_GAP_S = 0.5, 1.0   # a sound this short, this far before or after the rest: a cough?


def stray_sounds(x: np.ndarray, *, sr: int, runs: list[tuple[int, int]] | None = None) -> list[tuple[float, float]]:
    """Short sounds kept in a take, well apart from the rest of its speech (under STRAY_MAX_S, more
    than STRAY_GAP_S of quiet away on each side: a cough, a sniff, a word to oneself),
    as (where, how far from the rest) in seconds. They are kept (a reader may pause that long
    before a last word), but said (QA: a cough 1.7 s after a take's words was heard in the track,
    louder than the speech, and lowered the take's level by 2.3 LU). `runs`: x's `_speech_runs`,
    when already found."""
    runs = _speech_runs(x, sr=sr) if runs is None else runs
    out = []
    short, gap, frame = int(STRAY_MAX_S * 100), int(STRAY_GAP_S * 100), max(1, sr // 100)

    def stray(run: tuple[int, int]) -> bool:   # a voiced sound is a word said after a pause, not a cough
        return run[1] - run[0] < short and not _voiced(x[run[0] * frame:run[1] * frame], sr=sr)

    if len(runs) > 1 and runs[1][0] - runs[0][1] > gap and stray(runs[0]):
        out.append((runs[0][0] / 100, (runs[1][0] - runs[0][1]) / 100))
    for before, run, after in zip(runs, runs[1:-1], runs[2:]):   # QA: a cough between two phrases went unsaid
        apart = min(run[0] - before[1], after[0] - run[1])
        if apart > gap and stray(run):
            out.append((run[0] / 100, apart / 100))
    if len(runs) > 1 and runs[-1][0] - runs[-2][1] > gap and stray(runs[-1]):
        out.append((runs[-1][0] / 100, (runs[-1][0] - runs[-2][1]) / 100))
    return out


VOICED_CORR = 0.6   # a 40 ms window this self-similar at a pitch period (70-400 Hz) is voiced


def _voiced(seg: np.ndarray, *, sr: int) -> bool:
    """Whether a sound is voice (periodic, as a vowel is) rather than noise (a cough, a sniff, a
    knock): a third of its 40 ms windows repeat at some pitch period with a correlation over
    VOICED_CORR (regression QA: a last word after a thoughtful pause was called a cough)."""
    win, lo, hi = int(0.04 * sr), int(sr / 400), int(sr / 70)
    starts = range(0, seg.size - win - hi, win // 2)
    if not starts:
        return False
    voiced = 0
    for a in starts:
        ref, span = seg[a:a + win], seg[a:a + win + hi]
        num = np.correlate(span, ref, mode="valid")[lo:hi + 1]
        power = np.cumsum(np.concatenate([[0.0], span * span]))
        energy = (power[win:] - power[:-win])[lo:hi + 1]
        denom = np.sqrt(np.maximum(energy * np.dot(ref, ref), 1e-30))
        voiced += float(np.max(num / denom)) > VOICED_CORR
    return voiced >= len(starts) / 3


def _runs(mask: np.ndarray, *, join: int) -> list[tuple[int, int]]:
    """[start, end) runs of True, joining runs separated by fewer than `join` False frames."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    runs = list(zip(idx[::2].tolist(), idx[1::2].tolist()))
    out: list[tuple[int, int]] = []
    for a, b in runs:
        if out and a - out[-1][1] < join:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def clipping(data: np.ndarray, *, sr: int) -> tuple[int, float | None]:
    """Runs of at least CLIP_RUN full-scale samples in any channel: (how many, first at seconds)."""
    full = np.abs(data) >= CLIP_LEVEL
    if data.ndim == 1:
        full = full[:, np.newaxis]
    count, first = 0, None
    for ch in range(full.shape[1]):
        runs = [(a, b) for a, b in _runs(full[:, ch], join=1) if b - a >= CLIP_RUN]
        count += len(runs)
        if runs and (first is None or runs[0][0] / sr < first):
            first = runs[0][0] / sr
    return count, first


@dataclass(frozen=True)
class Analysis:
    duration_s: float
    sr: int
    channels: int
    peak_dbfs: float
    noise_floor_dbfs: float
    clipped_runs: int
    clipped_at_s: float | None
    speech: bool
    speech_s: float = 0.0     # from the first sound of speech to the last
    channel_note: str | None = None  # channels out of phase: which one is used (`mono_mix`)
    strays: tuple[tuple[float, float], ...] = ()   # `stray_sounds`
    restarts: tuple[tuple[float, float, float], ...] = ()   # `long_pauses`

    def warnings(self, *, expected_s: float | None = None) -> list[str]:
        out = [self.channel_note] if self.channel_note else []
        for at_s, apart_s in self.strays:
            out.append(f"a short sound at {at_s:.1f} s, {apart_s:.1f} s away from the rest of the speech, is kept "
                       f"as part of the take: if it is no part of the reading (a cough, a sniff), cut it out or record "
                       f"the take again")
        note = restart_note(self.speech_s, self.restarts, expected_s) if self.speech and expected_s else None
        note = note or (length_note(self.speech_s, expected_s) if self.speech and expected_s else None)
        if note:
            out.append(note)
        if self.clipped_runs:
            out.append(f"clipped: {self.clipped_runs} run{'s' if self.clipped_runs != 1 else ''} of full-scale "
                       f"samples, the first at {self.clipped_at_s:.2f} s; record it again a little further from "
                       f"the microphone or with the input level lower")
        elif self.peak_dbfs > -0.5:
            out.append(f"peaks at {self.peak_dbfs:.1f} dBFS, at the edge of clipping; leave some headroom")
        note = quiet_note(self.peak_dbfs)
        if note:
            out.append(note)
        if self.noise_floor_dbfs > NOISE_WARN_DBFS:
            # one decimal: -59.6 printed as -60 read as "at -60, above -60" (QA)
            out.append(f"noisy: the room is at {self.noise_floor_dbfs:.1f} dBFS between words (above "
                       f"{NOISE_WARN_DBFS:.0f} dBFS a hiss or hum can be heard); a quieter room or a closer "
                       f"microphone helps")
        if not self.speech:
            out.append("no speech found: the file seems to be silence or steady noise")
        return out


QUIET_PEAK_DBFS = -40.0  # a take peaking under this is "very quiet". Preparing a take sets its speech to
# TAKE_LUFS (-23), where speech peaks at about -9 dBFS (its crest, ~14 dB over its loudness), so a
# take peaking at -40 dBFS is raised by ~31 dB, and everything under the speech with it: a 16-bit
# file's quantisation noise (-101 dBFS) comes up to -70 dBFS, and an interface's own hiss at a low
# input gain (-95 to -100 dBFS) to -64..-69 dBFS, just under NOISE_WARN_DBFS, where a room counts as
# noisy. Any quieter, and the gain alone makes the take hiss (at -47 dBFS: 38 dB, hiss at -57..-62),
# with soft consonants coarsened by the few quantisation steps they used. Well-set levels peak at
# -12 to -6 dBFS; a soft voice a little far from the microphone, 10-20 dB under that, is not warned.


def quiet_note(peak_dbfs: float) -> str | None:
    """A warning for a recording whose loudest sample is under QUIET_PEAK_DBFS (digital silence is
    told apart: it has no speech at all)."""
    if -200.0 < peak_dbfs < QUIET_PEAK_DBFS:
        return f"very quiet (peak {peak_dbfs:.1f} dBFS): raise the input level and record again"   # as status has it
    return None


def analyse(data: np.ndarray, sr: int) -> Analysis:
    """What `takes status` reports of a take file (and the build warns of when it prepares one)."""
    mixed, channel_note = mono_mix(data, sr=sr)
    mono = highpass(mixed, sr=sr)
    return _analysis(data, sr, mono=mono, runs=_speech_runs(mono, sr=sr), channel_note=channel_note)


def _analysis(data: np.ndarray, sr: int, *, mono: np.ndarray, runs: list[tuple[int, int]],
              channel_note: str | None) -> Analysis:
    """`analyse` from the take's mono mix and the runs of speech found in it (found once, for the
    span and the stray sounds alike)."""
    span = _span(runs, n=mono.size, sr=sr)
    peak = float(np.max(np.abs(data)))
    clipped, first = clipping(data, sr=sr)
    return Analysis(duration_s=data.shape[0] / sr, sr=sr, channels=data.shape[1] if data.ndim == 2 else 1,
                    peak_dbfs=float(20 * np.log10(peak + 1e-12)), noise_floor_dbfs=noise_floor_dbfs(mono, sr=sr),
                    clipped_runs=clipped, clipped_at_s=first, speech=span is not None,
                    speech_s=(span[1] - span[0]) / sr if span else 0.0, channel_note=channel_note,
                    strays=tuple(stray_sounds(mono, sr=sr, runs=runs)) if span else (),
                    restarts=long_pauses(runs))


RESTART_PAUSE_S = 1.5   # a pause this long inside one take's file: the reader may have started again


def long_pauses(runs: list[tuple[int, int]]) -> tuple[tuple[float, float, float], ...]:
    """The pauses of RESTART_PAUSE_S or more between runs of speech (10 ms frames), as (where the
    pause starts, how long it is, how much speech follows it to the end), in seconds."""
    long = int(RESTART_PAUSE_S * 100)
    return tuple((a[1] / 100, (b[0] - a[1]) / 100, (runs[-1][1] - b[0]) / 100)
                 for a, b in zip(runs, runs[1:]) if b[0] - a[1] >= long)


RESTART_AFTER = 0.7   # after the pause, at least this share of the take's expected length ...
RESTART_TOTAL = 1.3   # ... and in all, at least this much more than it: the take, read again


def restart_note(speech_s: float, restarts, expected_s: float | None) -> str | None:
    """A warning when a take's file holds a long pause followed by about the whole take, and more
    speech than the take before it: a false start or a first reading, kept in the file (QA: the
    template said "the last reading is kept", true only of `takes split`; a false start 2 s before
    the take went into the track with no word, its speech just under twice the expected length)."""
    if not expected_s or speech_s < RESTART_TOTAL * expected_s:
        return None
    for at_s, pause_s, after_s in reversed(restarts):   # the last reading
        if after_s >= RESTART_AFTER * expected_s:
            return (f"{speech_s:.1f} s of speech, expected about {expected_s:.1f} s, with a pause of {pause_s:.1f} s "
                    f"at {at_s:.1f} s and about the whole take after it: a false start, or the take read twice? "
                    f"A take's file is used whole: cut it down to the last reading, or record the take again")
    return None


LENGTH_ODD = (0.5, 2.0)  # speech under half its expected length is cut off (or the wrong take); over twice,
                         # more than the take (two takes, a false start). The expectation (a synthetic voice,
                         # or words at a rate) is rough, and people read a line up to 1.5x slower or faster


def length_note(speech_s: float, expected_s: float | None) -> str | None:
    """A warning when a take's speech is far from its expected length, else None."""
    if not expected_s or expected_s <= 0:
        return None
    ratio = speech_s / expected_s
    if ratio < LENGTH_ODD[0]:
        return f"{speech_s:.1f} s of speech, expected about {expected_s:.1f} s: cut off, or the wrong take?"
    if ratio > LENGTH_ODD[1]:
        return (f"{speech_s:.1f} s of speech, expected about {expected_s:.1f} s: more than this take "
                f"(a false start, or another take too)?")
    return None


def words_s(take: Take, rate_wpm: float) -> float:
    """A take's expected length from its words at a speaking rate (as the template falls back to)."""
    return len(take.text.split()) / rate_wpm * 60.0


def damage(path: Path) -> str | None:
    """What libsndfile can tell of a damaged file (a WAV or AIFF whose data stops short of what its
    header says: cut off while copied or saved), or None. Such a file is unreadable to takes status
    and the build: what it holds is part of a take."""
    import soundfile as sf

    try:
        with _decoder_chatter_hidden(path):
            info = sf.info(str(path))
    except (RuntimeError, ValueError, TypeError, OSError):
        return None
    return _truncation(info)


# a data size a streaming writer (ffmpeg to a pipe, a live recorder) puts in the header because it
# cannot know the length: "as much as follows", not a promise (regression QA: such a take was refused)
_STREAMING_SIZES = (0xFFFFFFFF, 0xFFFFFFFF - 8, 0x7FFFFFFF, 0)


def _truncation(info) -> str | None:
    """`damage` from a file's soundfile.info: its header promises more audio than it holds."""
    m = re.search(r"(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "")
    if not m or int(m.group(2)) >= int(m.group(1)):
        return None
    if int(m.group(1)) in _STREAMING_SIZES:   # written by a recorder that could not go back to the header
        return None
    promised = int(m.group(1)) / max(1, int(info.samplerate * info.channels * _bytes_per_sample(info.subtype)))
    return (f"the file is truncated: its header promises {promised:.1f} s of audio, it holds "
            f"{info.duration:.2f} s (cut off while being copied or saved?)")


def _bytes_per_sample(subtype: str) -> int:
    return {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}.get(subtype, 2)


# ------------------------------------------------------------------------------------------------
# Preparing a take


def speech_loudness(clip: np.ndarray, *, sr: int) -> float | None:
    """Gated BS.1770 loudness of a clip, LUFS; short clips with shorter gating blocks."""
    import pyloudnorm

    x = clip.astype(np.float64)
    duration = x.size / sr
    if duration >= 0.2:
        # 400 ms blocks as BS.1770 says; a take under 0.8 s gets blocks half its length, so that
        # several (overlapping) blocks still measure it
        meter = pyloudnorm.Meter(sr, block_size=min(0.4, duration / 2))
        loudness = meter.integrated_loudness(x)
        if np.isfinite(loudness):
            return float(loudness)
    # very short or very quiet: the mean power of the frames within 20 dB of the loudest
    db = frame_db(x, max(1, sr // 100))
    voiced = db[db > db.max() - 20]
    if voiced.size == 0 or voiced.max() <= -110:
        return None
    return float(10 * np.log10(np.mean(10 ** (voiced / 10))) - 0.691)


def match_loudness(clip: np.ndarray, *, sr: int, target_lufs: float = TAKE_LUFS) -> np.ndarray:
    loudness = speech_loudness(clip, sr=sr)
    if loudness is None:
        return clip.astype(np.float32)
    return (clip * db_to_gain(target_lufs - loudness)).astype(np.float32)


def prepare(data: np.ndarray, sr_in: int, *, sr: int, what: str) -> np.ndarray:
    """A take file's samples → a mono float32 clip at `sr`, trimmed and loudness-matched."""
    return prepare_measured(data, sr_in, sr=sr, what=what)[0]


def prepare_file(path: Path, *, sr: int) -> tuple[np.ndarray, Analysis]:
    """`prepare_measured` of a take file, read as messages name it."""
    data, sr_in = read_audio(path, shown_as=shown(path))
    return prepare_measured(data, sr_in, sr=sr, what=shown(path))


def prepare_measured(data: np.ndarray, sr_in: int, *, sr: int, what: str) -> tuple[np.ndarray, Analysis]:
    """`prepare`'s clip, and the file's `analyse` (from the same mono mix and speech span), whose
    warnings the build repeats: a therapist who never ran `takes status` still hears that a take
    is very quiet, clipped or out of phase. The clip's margins are shorter than LEAD_MARGIN_S and
    TAIL_MARGIN_S where the file ends sooner."""
    mixed, channel_note = mono_mix(data, sr=sr_in)
    mono = highpass(mixed, sr=sr_in)
    speech_runs = _speech_runs(mono, sr=sr_in)
    span = _span(speech_runs, n=mono.size, sr=sr_in)
    if span is None:
        raise CalmplaceError(f"{what}: no speech found: the file seems to be silence or steady noise "
                             f"(loudest moments only {levels(frame_db(mono, max(1, sr_in // 100))).range_db:.0f} dB "
                             f"above the quietest)")
    start = max(0, span[0] - seconds_to_samples(LEAD_MARGIN_S, sr=sr_in))
    end = min(mono.size, span[1] + seconds_to_samples(TAIL_MARGIN_S, sr=sr_in))
    clip = resample(mono[start:end], sr_in=sr_in, sr_out=sr).astype(np.float64)
    lead = min(seconds_to_samples(LEAD_MARGIN_S * FADE_FRACTION, sr=sr), clip.size // 2)
    tail = min(seconds_to_samples(TAIL_MARGIN_S * FADE_FRACTION, sr=sr), clip.size // 2)
    if lead:
        clip[:lead] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, lead))
    if tail:
        clip[-tail:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, tail))
    return match_loudness(clip, sr=sr), _analysis(data, sr_in, mono=mono, runs=speech_runs, channel_note=channel_note)


# ------------------------------------------------------------------------------------------------
# Where takes live, and what they were recorded for


def take_dir(voices_dir: Path, voice: str, script_id: str, locale: str) -> Path:
    return Path(voices_dir) / voice / script_id / locale


def take_files(folder: Path, take: Take) -> list[Path]:
    """Every audio file in `folder` named exactly for this take: NNN.ext (001.wav, 001.FLAC, ...);
    004.old.wav, a backup, is not one."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{take.name}.*")
                  if p.is_file() and p.stem == take.name and p.suffix.lower().lstrip(".") in TAKE_EXTS)


def in_the_way(folder: Path, take: Take) -> str:
    """' (a folder named 006.wav is in the way)' when a folder has a take file's name (QA: it
    showed as a plain missing take), else ''."""
    if not folder.is_dir():
        return ""
    dirs = sorted(p.name for p in folder.glob(f"{take.name}.*")
                  if p.is_dir() and p.stem == take.name and p.suffix.lower().lstrip(".") in TAKE_EXTS)
    return f" (a folder named {dirs[0]} is in the way)" if dirs else ""


def stray_files(folder: Path, takes: Sequence[Take]) -> list[Path]:
    """Audio files in the folder that are no take of this script (012.wav when there are 11 takes,
    a backup 004.old.wav, 1.wav)."""
    if not folder.is_dir():
        return []
    names = {t.name for t in takes}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in TAKE_EXTS
                  and p.stem not in names)


NOISY_TOGETHER = 3   # noisy takes from this many on are one warning for the session


def _ranges(numbers: list[int]) -> str:
    """'001-004, 007' for [1, 2, 3, 4, 7]."""
    out, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            out.append(f"{start:03d}" if start == n else f"{start:03d}-{n:03d}")
            start = None
    return ", ".join(out)


def is_backup(path: Path, takes: Sequence[Take]) -> bool:
    """A copy kept beside a take's own file, named after it: 004.old.wav, 004.v1.flac (`takes status`
    still lists it)."""
    m = re.fullmatch(r"(\d{3})\..+", path.stem)
    take = next((t for t in takes if t.name == m.group(1)), None) if m else None
    return take is not None and bool(take_files(path.parent, take))


def stray_note(path: Path, takes: Sequence[Take]) -> str:
    """Why a stray file is not used, and what to do: "rename 1.wav to 001.wav" when its number is a
    take's and that take has no file yet (QA: `take_003.wav`, `003-retake.wav` and `041 (1).wav`
    were called no take of the script, and `3.m4a` was to be renamed beside an existing 003.flac)."""
    by_number = {t.number: t for t in takes}
    # a number of three digits ("v2_take_003"), else the only number in the name ("Take 3"); a
    # name with several ("session 2024-06-01") names no take
    three = re.findall(r"(?<!\d)\d{3}(?!\d)", path.stem)
    numbers = three if len(three) == 1 else re.findall(r"\d+", path.stem)
    take = by_number.get(int(numbers[0])) if len(numbers) == 1 else None
    if take is None:
        last = max(by_number, default=0)
        return f"{path.name} is not a take of this script (its takes are 001 to {last:03d}); it is not used"
    existing = take_files(path.parent, take)
    if existing:
        return (f"{path.name} is not used: take {take.name} is {existing[0].name} (if {path.name} is the better "
                f"reading, put it in that file's place as {take.name}{path.suffix})")
    if path.stem.isdigit():
        return f"{path.name} is not used: take files are named with three digits: rename {path.name} to " \
               f"{take.name}{path.suffix}"
    return (f"{path.name} is not used: take files are named with three digits and the extension alone: if it "
            f"is take {take.name}, rename it to {take.name}{path.suffix}")


def load_record(folder: Path) -> dict[str, dict]:
    """`takes.json`: take name → {"text", "sha256", "file"}; absent → empty. A damaged one is an
    error (QA: read as empty, it let a build put 41 renumbered takes on the wrong sentences, and
    `--accept` would have written over it)."""
    path = folder / RECORD_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CalmplaceError(f"cannot read {shown(path)}: {os_problem(exc, path=False)}") from None
    try:
        takes = json.loads(raw.decode("utf-8")).get("takes", {})
        return {str(k): v for k, v in takes.items() if isinstance(v, dict)}
    except (ValueError, AttributeError):
        raise CalmplaceError(
            f"{shown(path)} is damaged (not the JSON calmplace writes). It remembers which text each take "
            f"was recorded for, so that edits to the script show which takes to record again: put back a "
            f"copy of it, or delete it to have every take taken as recorded for the text the script has "
            f"now") from None


def save_record(folder: Path, entries: dict[str, dict], *, script_id: str, locale: str) -> None:
    """Merge `entries` into `takes.json` and write it atomically."""
    record = load_record(folder)
    record.update(entries)
    atomic_write(folder / RECORD_FILE, record_bytes(record, script_id=script_id, locale=locale))


def record_bytes(record: dict[str, dict], *, script_id: str, locale: str) -> bytes:
    """`takes.json`'s contents for these entries."""
    payload = {"about": "which script text each take was recorded for (written by calmplace takes)",
               "script": script_id, "locale": locale, "version": 1,
               "takes": {k: record[k] for k in sorted(record)}}
    return (json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def record_entry(take: Take, path: Path, *, sha256: str | None = None) -> dict:
    return {"text": take.text, "sha256": sha256 or sha256_file(path), "file": path.name}


@dataclass(frozen=True)
class TakeState:
    take: Take
    state: str                     # "ok" | "missing" | "stale" | "duplicate" | "new"
    path: Path | None = None       # the take's file (the first, for duplicates)
    others: tuple[Path, ...] = ()  # further files for the same take
    recorded_text: str | None = None
    sha256: str | None = None
    accepted: bool = False         # takes.json records this very file for this very text
    now_take: str | None = None    # stale: the take whose text this file was recorded for (renumbered)

    @property
    def renumbered(self) -> bool:
        return self.state == "stale" and self.now_take is not None and self.now_take != self.take.name


def take_states(folder: Path, takes: Sequence[Take]) -> list[TakeState]:
    """Each take as ok / missing / stale / duplicate / new.

    Stale: takes.json says this same file (same sha256) was recorded for a different text; when
    that text is another take's now (a sentence inserted or removed renumbered the takes), `now_take`
    names it. A file takes.json knows under another number (renamed as that said) is judged by the
    text it was recorded for. New: takes.json has an entry for this take but for another file
    (recorded again since): it is taken to be of the current text, but is not tracked until
    accepted (`takes status --accept`), so a later edit of the text could not show it as stale."""
    record = load_record(folder)
    now = realigned(record, takes)
    # a file takes.json knows under another number was moved there: renamed as `renumbered` says
    by_sha = {e.get("sha256"): (name, e) for name, e in record.items() if isinstance(e, dict) and e.get("sha256")}
    out = []
    for take in takes:
        files = take_files(folder, take)
        if not files:
            out.append(TakeState(take, "missing"))
            continue
        if len(files) > 1:
            out.append(TakeState(take, "duplicate", files[0], tuple(files[1:])))
            continue
        sha = sha256_file(files[0])
        entry, entry_name = record.get(take.name), take.name
        same_file = bool(entry) and entry.get("sha256") == sha
        if not same_file and sha in by_sha:   # known under another number: its text decides
            (entry_name, entry), same_file = by_sha[sha], True
        if same_file and entry.get("text") != take.text:
            out.append(TakeState(take, "stale", files[0], recorded_text=entry.get("text"), sha256=sha,
                                 now_take=now.get(entry_name)))
        elif entry and not same_file:
            out.append(TakeState(take, "new", files[0], recorded_text=entry.get("text"), sha256=sha))
        else:
            out.append(TakeState(take, "ok", files[0], sha256=sha, accepted=same_file))
    return out


def realigned(record: dict[str, dict], takes: Sequence[Take]) -> dict[str, str]:
    """Which take each recorded one (takes.json: number -> the text it was recorded for) is now,
    for those whose text is still in the script: the recorded texts, in their order, aligned with
    the script's (difflib's longest matching runs), so that after a sentence is added or removed a
    text said twice ("Breathe in.") maps to the right one of its places (regression QA: the first
    place was always taken); a text left over from the alignment that the script has exactly once
    maps there."""
    import difflib

    old = sorted((name for name, e in record.items() if isinstance(e.get("text"), str) and name.isdigit()), key=int)
    old_texts, new_texts = [record[name]["text"] for name in old], [t.text for t in takes]
    out: dict[str, str] = {}
    matcher = difflib.SequenceMatcher(a=old_texts, b=new_texts, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        out.update((old[a + k], takes[b + k].name) for k in range(size))
    taken = set(out.values())
    for name, text in zip(old, old_texts):
        places = [t.name for t in takes if t.text == text]
        if name not in out and len(places) == 1 and places[0] not in taken:
            out[name] = places[0]
    return out


def moved_off_the_end(folder: Path, takes: Sequence[Take]) -> list[TakeState]:
    """Take files numbered past the script's last take (a sentence was removed) that takes.json
    says were recorded for a text the script still has: as renumbered TakeStates, to be renamed
    like the others (regression QA: the last one only showed as 'not a take of this script')."""
    record = load_record(folder)
    now = realigned(record, takes)
    out = []
    for path in stray_files(folder, takes):
        entry = record.get(path.stem)
        if not (path.stem.isdigit() and len(path.stem) == 3 and entry and path.stem in now):
            continue
        if entry.get("sha256") != sha256_file(path):
            continue
        gone = Take(int(path.stem), -1, entry.get("text", ""), 0.0, 0.0)
        out.append(TakeState(gone, "stale", path, recorded_text=entry.get("text"), sha256=entry.get("sha256"),
                             now_take=now[path.stem]))
    return out


def expected_name(folder: Path, take: Take) -> Path:
    return folder / f"{take.name}.wav"


def shown(path: Path) -> str:
    """A path as the person knows it: relative to the working folder when inside it."""
    return display_path(path)


# ------------------------------------------------------------------------------------------------
# The engine


class RecordedEngine:
    """The Engine protocol (speech/__init__.py) over a person's take files.

    `fallback_tts`: missing takes are spoken by the synthetic voice named by the profile's
    `fallback:` (default `narrator`) instead of failing the build. Warnings (stale takes, takes
    filled in by the synthetic voice, stray files) are collected in `warnings` and passed to
    `on_warning` as they arise."""

    def __init__(self, profile: VoiceProfile, *, voices_dir: Path, fallback_tts: bool = False,
                 fallback_engine=None, on_warning: Callable[[str], None] | None = None):
        self.profile = profile
        self.voices_dir = Path(voices_dir)
        self.fallback_tts = fallback_tts
        self._fallback = fallback_engine
        self.on_warning = on_warning
        self.warnings: list[str] = []

    # -- helpers

    def folder(self, script_id: str, locale: str) -> Path:
        return take_dir(self.voices_dir, self.profile.name, script_id, locale)

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        if self.on_warning:
            self.on_warning(message)

    def fallback_engine(self):
        if self._fallback is None:
            from ..voices import load_fallback
            from .tts import TtsEngine

            # as status and template word it (QA: the build said "unknown voice 'ghost'", not that
            # ghost was maria's fallback, and listed recorded voices as if they could stand in)
            profile, why = load_fallback(self.profile, voices_dir=self.voices_dir)
            if profile is None:
                raise CalmplaceError(f"{why}; --fallback-tts speaks missing takes with it: name a text-to-speech "
                                     f"voice as `fallback:` in that file")
            self._fallback = TtsEngine(profile)
        return self._fallback

    # -- the protocol

    def identity(self, *, locale: str) -> str:
        return f"recorded:{self.profile.name}"

    def take_keys(self, takes: Sequence[Take], *, script_id: str, locale: str, sr: int) -> list[str]:
        folder = self.folder(script_id, locale)
        states = take_states(folder, takes)
        label = f"{script_id} ({locale})"
        problems: list[str] = []  # every kind at once, as takes status lists them
        dups = [s for s in states if s.state == "duplicate"]
        if dups:
            problems.append(f"voice {self.profile.name!r}: more than one file for the same take; keep one of each:\n"
                            + "\n".join("  " + ", ".join(shown(p) for p in (s.path, *s.others)) for s in dups))
        bad: dict[int, str] = {}
        for i, s in enumerate(states):
            if s.state not in ("missing", "duplicate"):
                try:
                    _check_header(s.path)
                except CalmplaceError as exc:
                    bad[i] = str(exc)
        if bad:   # the build stops here: what only decoding finds in the others, too (QA: a
            for i, s in enumerate(states):   # second build named three more files, one at a time)
                if s.state not in ("missing", "duplicate") and i not in bad:
                    try:
                        prepare_file(s.path, sr=sr)
                    except CalmplaceError as exc:
                        bad[i] = str(exc)
        unreadable = [bad[i] for i in sorted(bad)]
        if unreadable:
            problems.append(f"voice {self.profile.name!r}: {len(unreadable)} take file"
                            f"{'s' if len(unreadable) != 1 else ''} of {label} cannot be read:\n"
                            + "\n".join(f"  {u}" for u in unreadable))
        renumbered = [s for s in states if s.renumbered] + moved_off_the_end(folder, takes)
        if renumbered:  # used as they are, every one would be spoken one place off: never built
            problems.append(_renumbered_problem(self.profile.name, label, renumbered, folder, takes)
                            + f"\n(calmplace takes rename {script_id} --voice {self.profile.name} --locale {locale} "
                              f"does this for you.) Then check with: calmplace takes status {script_id} --voice "
                              f"{self.profile.name} --locale {locale}")
        refilled = {s.now_take for s in renumbered}  # a take that renaming fills is not one to record
        missing = [s for s in states if s.state == "missing"]
        to_record = [s for s in missing if s.take.name not in refilled]
        if to_record and not self.fallback_tts and len(to_record) == len(takes) and len(takes) > 1:
            # nothing recorded for this locale: one line, not every file (QA: 44 paths and 44 numbers)
            problems.append(
                f"voice {self.profile.name!r}: nothing is recorded for {label} yet (the takes go in "
                f"{shown(folder)}/). Record them: calmplace template {script_id} --voice {self.profile.name} "
                f"--locale {locale} lists every take; build the locales recorded with --locale; or build "
                f"with --fallback-tts to speak every take with the synthetic voice")
        elif to_record and not self.fallback_tts:
            lines = "\n".join(f"  {shown(expected_name(folder, s.take))}{in_the_way(folder, s.take)}"
                              for s in to_record)
            problems.append(
                f"voice {self.profile.name!r}: {len(to_record)} of {len(takes)} takes of {label} "
                f"{'is' if len(to_record) == 1 else 'are'} missing:\n{lines}\n"
                f"({other_exts()} work as well as .wav). Record them: calmplace template {script_id} --voice "
                f"{self.profile.name} --locale {locale} lists every take's text "
                f"(build/templates/{locale}/{script_id}-recording.pdf; these are take"
                f"{'s' if len(to_record) != 1 else ''} {', '.join(s.take.name for s in to_record)}); or build "
                f"with --fallback-tts to speak them with the synthetic voice")
        if problems:
            raise CalmplaceError("\n".join(problems))
        for s in states:
            if s.state == "stale":
                self._warn(f"{label} take {s.take.name} is stale: {shown(s.path)} was recorded for "
                           f"\u201c{s.recorded_text}\u201d but the script now says \u201c{s.take.text}\u201d; record it "
                           f"again, or keep it with: calmplace takes status {script_id} --voice {self.profile.name} "
                           f"--locale {locale} --accept")
        new = [s for s in states if s.state == "new"]
        if new:  # as takes status shows them: usable, but not tracked until accepted
            self._warn(f"{label}: {len(new)} new recording{'s' if len(new) != 1 else ''}, not yet accepted "
                       f"({', '.join(shown(s.path) for s in new)}): used as they are; run calmplace takes status "
                       f"{script_id} --voice {self.profile.name} --locale {locale} --accept to remember they were "
                       f"recorded for the current text (so that later edits show them as stale)")
        for p in stray_files(folder, takes):
            if not is_backup(p, takes):   # left alone, as the README says, and not warned of at every build (QA)
                self._warn(f"{label}: {shown(p.parent)}/{stray_note(p, takes)}")
        keys: list[str | None] = [None] * len(takes)
        for i, s in enumerate(states):
            if s.state != "missing":
                h = hashlib.sha256()
                h.update(f"{PREP_VERSION}\x00{sr}\x00".encode())
                with open(s.path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                keys[i] = h.hexdigest()
        if missing:
            engine = self.fallback_engine()
            tts_keys = engine.take_keys([s.take for s in missing], script_id=script_id, locale=locale, sr=sr)
            for i, k in zip([i for i, s in enumerate(states) if s.state == "missing"], tts_keys):
                keys[i] = _fallback_key(k)
            self._warn(f"{label}: {len(missing)} missing take{'s' if len(missing) != 1 else ''} "
                       f"({', '.join(s.take.name for s in missing)}) spoken by the synthetic voice "
                       f"{getattr(getattr(engine, 'profile', None), 'name', 'fallback')!r}")
        assert all(k is not None for k in keys)
        return keys  # type: ignore[return-value]

    def speak(self, takes: Sequence[Take], *, script_id: str, locale: str, sr: int, jobs: int = 1,
              on_done: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Every take prepared from its file (missing ones, with `fallback_tts`, spoken by the
        fallback voice). A take that cannot be used does not stop the others: one CalmplaceError
        names them all, in take order, each by its file, as take_keys names those it sees."""
        folder = self.folder(script_id, locale)
        states = take_states(folder, takes)
        clips: list[np.ndarray | None] = [None] * len(takes)
        missing = [i for i, s in enumerate(states) if s.state == "missing"]
        problems: dict[int, str] = {}  # take index → what is wrong with its file
        if not self.fallback_tts:  # take_keys said so already, unless a file vanished since
            for i in missing:
                problems[i] = (f"{shown(expected_name(folder, takes[i]))}: the take is missing "
                               f"(removed during the build?)")
        present = [i for i, s in enumerate(states) if s.state != "missing"]

        analysed: dict[int, Analysis] = {}

        def one(i: int) -> np.ndarray:
            s = states[i]
            if s.state == "duplicate":
                raise CalmplaceError(f"{shown(s.path)}: more than one file for take {s.take.name}")
            hurt = damage(s.path)  # take_keys said so already, unless the file changed since
            if hurt:
                raise CalmplaceError(f"{shown(s.path)}: {hurt}; record it again or copy it anew")
            clip, analysed[i] = prepare_file(s.path, sr=sr)
            return clip

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(present) or 1))) as pool:
            futures = {i: pool.submit(one, i) for i in present}
            for i in present:
                try:
                    clips[i] = futures[i].result()
                except CalmplaceError as exc:
                    problems[i] = str(exc)
                    continue
                if on_done:
                    on_done(i)
        rate = self.profile.rate_wpm
        noisy = [i for i in present if i in analysed and analysed[i].noise_floor_dbfs > NOISE_WARN_DBFS]
        together = len(noisy) >= NOISY_TOGETHER   # one room for the session: said once (QA: 44 times)
        for i in present:   # what takes status would say of each file, in take order
            if i in analysed:
                for note in analysed[i].warnings(expected_s=words_s(takes[i], rate)):
                    if together and note.startswith("noisy:"):
                        continue
                    self._warn(f"{take_label(script_id, locale, takes[i])}: {shown(states[i].path)}: {note}")
        if together:
            lo, hi = (f"{f:.1f}" for f in (min(analysed[i].noise_floor_dbfs for i in noisy),
                                            max(analysed[i].noise_floor_dbfs for i in noisy)))
            self._warn(f"{script_id} ({locale}): {len(noisy)} of the {len(present)} takes read are noisy: the room "
                       f"is at {lo if lo == hi else f'{lo} to {hi}'} dBFS between words (above "
                       f"{NOISE_WARN_DBFS:.0f} dBFS a hiss or hum can be heard); a quieter room or a closer "
                       f"microphone helps (takes {_ranges([takes[i].number for i in noisy])})")
        if problems:
            n = len(problems)
            raise CalmplaceError(f"voice {self.profile.name!r}: {n} take file{'s' if n != 1 else ''} of "
                                 f"{script_id} ({locale}) cannot be used:\n"
                                 + "\n".join(f"  {problems[i]}" for i in sorted(problems)))
        if missing:
            spoken = self.fallback_engine().speak([takes[i] for i in missing], script_id=script_id, locale=locale,
                                                  sr=sr, jobs=jobs)
            for i, clip in zip(missing, spoken):
                clips[i] = match_loudness(clip, sr=sr)
                if on_done:
                    on_done(i)
        return clips  # type: ignore[return-value]


def _rename_order(renumbered: Sequence[TakeState], by_name: dict[str, Take]) -> list[TakeState]:
    """Renumbered take files in an order in which no rename overwrites a file still to be renamed:
    those moved up, the highest number first; then those moved down, the lowest first."""
    up = sorted((s for s in renumbered if by_name[s.now_take].number > s.take.number),
                key=lambda s: s.take.number, reverse=True)
    down = sorted((s for s in renumbered if by_name[s.now_take].number < s.take.number), key=lambda s: s.take.number)
    return up + down


def _renumbered_problem(voice: str, label: str, renumbered: Sequence[TakeState], folder: Path,
                        takes: Sequence[Take]) -> str:
    """The build's error for take files recorded for what is now another take's text (a sentence
    added or removed renumbered the takes after it): each file and the name to give it, in an order
    in which no rename overwrites a file still to be renamed (moved up: the highest number first;
    moved down: the lowest first)."""
    by_name = {t.name: t for t in takes}
    moving = {s.path for s in renumbered}
    still_there = set(moving)
    lines = []
    for s in _rename_order(renumbered, by_name):
        target = s.path.with_name(f"{s.now_take}{s.path.suffix}")
        line = (f"  {shown(s.path)} was recorded for what is now take {s.now_take}: "
                f"rename {s.path.name} to {target.name}")
        in_way = [p.name for p in take_files(folder, by_name[s.now_take]) if p not in moving]
        if in_way:  # a file for the target take that is not itself renamed (its text was removed?)
            line += f" (move {', '.join(in_way)} out of the way first)"
        elif target in still_there:   # two takes trade places (sentences swapped): no order is safe
            line += f" ({target.name} is still there: give it a temporary name first)"
        still_there.discard(s.path)
        lines.append(line)
    n = len(renumbered)
    return (f"voice {voice!r}: {n} take file{'s' if n != 1 else ''} of {label} {'were' if n != 1 else 'was'} "
            f"recorded for what is now another take (a sentence was added or removed, and the takes after it "
            f"were renumbered); used as {'they are' if n != 1 else 'it is'}, the track would say the wrong "
            f"sentences. Rename {'them, in this order' if n != 1 else 'it'}:\n" + "\n".join(lines))


@dataclass(frozen=True)
class Rename:
    """One take file to move to the number of the take whose text it was recorded for."""
    source: Path
    target: Path
    state: TakeState


def rename_plan(folder: Path, takes: Sequence[Take]) -> list[Rename]:
    """The renames that put take files recorded for what is now another take (a sentence was added
    or removed, `TakeState.renumbered`, `moved_off_the_end`) under that take's number, in the order
    `_renumbered_problem` lists them. Raises CalmplaceError, naming each, when a rename would land on
    a file that is not itself moved (recorded for a removed sentence?) or two on the same take:
    those are the person's to decide."""
    by_name = {t.name: t for t in takes}
    renumbered = [s for s in take_states(folder, takes) if s.renumbered] + moved_off_the_end(folder, takes)
    plan = [Rename(s.path, folder / f"{s.now_take}{s.path.suffix}", s) for s in _rename_order(renumbered, by_name)]
    moving = {r.source for r in plan}
    problems = []
    for r in plan:
        in_way = [p for p in take_files(folder, by_name[r.state.now_take]) if p not in moving]
        if in_way:
            problems.append(f"  {r.source.name} was recorded for take {r.state.now_take}, but "
                            f"{', '.join(p.name for p in in_way)} {'is' if len(in_way) == 1 else 'are'} there: "
                            f"move {'it' if len(in_way) == 1 else 'them'} out of the way (or delete "
                            f"{'it' if len(in_way) == 1 else 'them'}) if {r.source.name} is the one to keep")
    for target in sorted({r.state.now_take for r in plan}):
        sources = [r.source.name for r in plan if r.state.now_take == target]
        if len(sources) > 1:
            problems.append(f"  {' and '.join(sources)} were both recorded for take {target}: keep one")
    if problems:
        raise CalmplaceError(f"{shown(folder)}/: nothing renamed:\n" + "\n".join(problems))
    return plan


def apply_renames(folder: Path, plan: Sequence[Rename], *, script_id: str, locale: str,
                  on_rename: Callable[[Rename], None] | None = None) -> None:
    """Move each file of `rename_plan` to its target, then re-key `takes.json` to the new numbers.

    Each move is one rename(2), so a file is always whole under one name or the other. A target
    still held by a file that moves on later is renamed first; takes that trade places (two
    sentences swapped) go through a temporary name, `NNN.renaming.ext` (were the run killed then,
    `takes status` names it as a file no take uses). The files are judged by content (takes.json
    knows them by sha256), so a run stopped half-way is finished by running it again, and its
    entries are re-keyed then too."""
    pending = {r.source: r for r in plan}
    while pending:
        free = [r for r in pending.values() if r.target not in pending]
        if not free:   # a cycle: park one of its files under a temporary name
            r = next(iter(pending.values()))
            park = r.source.with_name(f"{r.source.stem}.renaming{r.source.suffix}")
            os.rename(r.source, park)
            del pending[r.source]
            pending[park] = Rename(park, r.target, r.state)
            continue
        for r in free:
            os.rename(r.source, r.target)
            del pending[r.source]
            if on_rename:
                on_rename(r)
    # re-key by content: every take file takes.json knows under another number (renamed now, by
    # an earlier run stopped half-way, or by hand) gets its entry under the number it has now
    record = load_record(folder)
    key_of = {e.get("sha256"): k for k, e in record.items() if e.get("sha256")}
    moved = {}
    for path in sorted(folder.iterdir()):
        if re.fullmatch(r"\d{3}", path.stem) and path.suffix.lower().lstrip(".") in TAKE_EXTS and path.is_file():
            key = key_of.get(sha256_file(path))
            if key is not None and key != path.stem:
                moved[key] = path
    entries = {key: record.pop(key) for key in moved}
    for key, path in moved.items():
        record[path.stem] = {**entries[key], "file": path.name}
    atomic_write(folder / RECORD_FILE, record_bytes(record, script_id=script_id, locale=locale))


def _fallback_key(tts_key: str) -> str:
    """A synthetic take matched to the recorded takes' loudness: not the plain synthetic clip."""
    return hashlib.sha256(f"fallback\x00{PREP_VERSION}\x00{tts_key}".encode()).hexdigest()


def _check_header(path: Path) -> None:
    """Fail before anything is spoken when a take file is not audio at all (cheap: the header only)."""
    if path.suffix.lower().lstrip(".") not in SOUNDFILE_EXTS:
        return
    import soundfile as sf

    if path.stat().st_size == 0:
        raise CalmplaceError(f"{shown(path)}: the file is empty (0 bytes): record or copy it again")
    _wrong_extension(path, shown(path))
    try:
        with _decoder_chatter_hidden(path):
            info = sf.info(str(path))
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise _not_audio(shown(path), path, exc) from None
    hurt = _truncation(info)
    if hurt:  # decoded, it would be part of a take: a sentence cut off in the track
        raise CalmplaceError(f"{shown(path)}: {hurt}; record it again or copy it anew")
    if info.frames == 0:
        raise CalmplaceError(f"{shown(path)}: the file holds no audio (0 samples)")


def encode_take(data: np.ndarray, sr: int, *, fmt: str = "wav") -> bytes:
    """Samples → WAV (PCM 24-bit) or FLAC (24-bit) bytes, at the recording's own rate and channels."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt.upper(), subtype="PCM_24")
    return buf.getvalue()


__all__ = ["RecordedEngine", "read_audio", "prepare", "analyse", "take_states", "take_dir", "save_record",
           "load_record", "record_entry", "encode_take", "rename_plan", "apply_renames", "Rename", "TAKE_EXTS",
           "PREP_VERSION"]

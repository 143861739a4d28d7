"""User recordings from the ambience folder, looped seamlessly.

The file is read once (soundfile: wav, flac, ogg, mp3, ...; at most its first 5 minutes), converted to
stereo at the render rate, and turned into a loop body whose end runs straight into its beginning: the
last seconds are crossfaded into the first ones, so the wrap-around joins samples that were neighbours in
the recording. Playback starts at a seeded offset into the loop and is normalised to REFERENCE_LUFS.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from ..errors import CalmplaceError
from .engine import seed_words
from .filecheck import MIN_FILE_S, check_file
from .loudness import gain_to_reference

MAX_FILE_S = 300.0      # longer files loop over their first 5 minutes (106 MB as stereo float32 at 44.1 kHz)
CROSSFADE_S = 2.0       # the seam crossfade, or a quarter of the file if that is shorter
SEAM_SEARCH_S = 0.05    # how far the seam may move to line up with the head (a 20 Hz period)
_SALT = 21


def to_stereo(audio: np.ndarray) -> np.ndarray:
    """(channels, n) -> (2, n). Mono is duplicated; more channels follow the WAV order
    (FL FR FC LFE BL BR SL SR ...): centre to both at -3 dB, LFE dropped, the rest alternately to L and R
    at -3 dB (ITU-R BS.775 downmix coefficients)."""
    ch = audio.shape[0]
    if ch == 1:
        return np.vstack([audio, audio])
    if ch == 2:
        return audio
    k = float(np.sqrt(0.5))   # a Python float keeps float32 audio float32
    left, right = audio[0].copy(), audio[1].copy()
    if ch >= 3:
        left += k * audio[2]
        right += k * audio[2]
    for i in range(4, ch):  # channel 3 is the LFE
        (left if i % 2 == 0 else right)[:] += k * audio[i]
    return np.vstack([left, right])


def resample(audio: np.ndarray, *, from_sr: int, to_sr: int) -> np.ndarray:
    """Polyphase resampling by the nearest ratio with terms <= 1000 (44.1 <-> 48 kHz is exact: 147/160)."""
    if from_sr == to_sr:
        return audio
    ratio = Fraction(to_sr, from_sr).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    out = np.empty((audio.shape[0], -(-audio.shape[1] * up // down)), dtype=np.float32)
    for c, channel in enumerate(audio):   # one channel at a time: half the peak memory
        out[c] = signal.resample_poly(channel, up, down)
    return out


def _decorrelate(stereo: np.ndarray, *, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Slightly widen a dual-mono loop: opposite random all-pass phase in each ear above 300 Hz.

    The inter-ear phase wanders smoothly (knots every 40 Hz, within +-1.1 rad), so the ears stay coherent
    on average (~0.8) with no echo; applied as circular convolution, so the loop still wraps seamlessly.
    """
    n_fir = 2048
    if stereo.shape[1] < 2 * n_fir:
        return stereo
    freqs = np.fft.rfftfreq(n_fir, 1.0 / sr)
    knots_hz = np.arange(0.0, sr / 2 + 40.0, 40.0)
    phi = np.interp(freqs, knots_hz, rng.uniform(-1.1, 1.1, len(knots_hz)))
    phi *= np.clip((freqs - 300.0) / 300.0, 0.0, 1.0)   # bass stays centred
    out = np.empty_like(stereo)
    for c, sign in enumerate((1.0, -1.0)):
        h = np.fft.irfft(np.exp(1j * sign * phi / 2), n_fir)
        h = (np.roll(h, n_fir // 2) * np.hanning(n_fir)).astype(stereo.dtype)
        # periodic extension in front, then 'valid': circular convolution of the loop
        x = np.concatenate([stereo[c, -(n_fir - 1):], stereo[c]])
        out[c] = signal.oaconvolve(x, h, mode="valid")
    return out


def make_loop(audio: np.ndarray, *, sr: int) -> np.ndarray:
    """(2, n) recording -> (2, p) loop body whose last sample runs into its first without a seam.

    Works in place: the result is a view of `audio`, whose first seconds are overwritten.

    The tail x[p:p+X] is crossfaded into the head x[0:X]; then body[p-1] = x[p-1] is followed, on
    wrapping, by body[0] = x[p]: neighbours in the recording. The seam p is chosen within 50 ms to best
    line up tail and head, and the fade gains keep power constant for each ear's head/tail correlation
    r (r = 0: sin/cos equal-power; r = 1: equal-gain), worked out apart for what lines up at the seam
    and what does not (`_alike_filter`), so neither noise nor tones swell or dip.
    """
    n = audio.shape[1]
    x_len = min(int(round(CROSSFADE_S * sr)), n // 4)
    margin = min(64, n // 64)                      # keep clear of the resampler's edge transient
    search = min(int(round(SEAM_SEARCH_S * sr)), n // 8)
    mono = audio.sum(axis=0)
    head = mono[:x_len].astype(np.float64)
    lo = n - x_len - margin - search
    region = mono[lo: n - margin].astype(np.float64)
    # normalised cross-correlation of the head against every candidate tail start in [lo, lo + search]
    num = signal.correlate(region, head, mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(region * region)])
    tail_energy = energy[x_len:] - energy[:-x_len]
    denom = np.sqrt(np.maximum(tail_energy * np.dot(head, head), 1e-30))
    r_all = num / denom
    p = lo + int(np.argmax(r_all))
    tail, head2 = audio[:, p: p + x_len].astype(np.float64), audio[:, :x_len].astype(np.float64)
    # What lines up at the seam (a hum, a drone) and what does not (the noise around it) need different
    # fade laws, and one correlation for the whole file fits neither (audio QA: noise plus a tone
    # dipped 2.2 dB in the noise, once a loop). So both are split by how alike tail and head are at
    # each frequency, and each part is faded with its own per-ear correlation. The parts add up to
    # tail and head exactly, so the seam still starts on the tail and ends on the head.
    alike = _alike_filter(tail.sum(axis=0), head2.sum(axis=0), sr=sr)
    body = audio[:, :p]            # in place: the caller's recording becomes the loop (no second copy)
    if alike is None:
        body[:, :x_len] = _fade(tail, head2)
        return body
    tail_alike = signal.fftconvolve(tail, alike[None, :], mode="same", axes=1)
    head_alike = signal.fftconvolve(head2, alike[None, :], mode="same", axes=1)
    body[:, :x_len] = _fade(tail_alike, head_alike) + _fade(tail - tail_alike, head2 - head_alike)
    return body


ALIKE_TAPS = 4097   # the split filter: ~11 Hz resolution at 44.1 kHz, enough to part a hum from its noise


def _alike_filter(tail: np.ndarray, head: np.ndarray, *, sr: int) -> np.ndarray | None:
    """A zero-phase FIR whose gain at each frequency is how alike (correlated, 0..1) tail and head
    are there; None when the crossfade is too short to tell."""
    n = min(ALIKE_TAPS, tail.size // 4 | 1)
    if n < 257:
        return None
    f, cross = signal.csd(tail, head, fs=sr, nperseg=n - 1)
    _, p_tail = signal.welch(tail, fs=sr, nperseg=n - 1)
    _, p_head = signal.welch(head, fs=sr, nperseg=n - 1)
    alike = np.clip(cross.real / np.sqrt(np.maximum(p_tail * p_head, 1e-30)), 0.0, 1.0)
    return signal.firwin2(n, f, alike, fs=sr, window="hann")


def _fade(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """tail faded out and head faded in, power kept for each ear's correlation r between them
    (r = 0: sin/cos equal power; r = 1: equal gain; negative: plain equal power, never boosted)."""
    r = np.sum(tail * head, axis=1) / np.sqrt(np.maximum(np.sum(tail ** 2, axis=1) * np.sum(head ** 2, axis=1),
                                                         1e-30))
    r = np.clip(r, 0.0, 1.0)[:, None]
    t = np.arange(tail.shape[1]) / tail.shape[1]
    fade_out, fade_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
    return (tail * fade_out + head * fade_in) / np.sqrt(1.0 + 2.0 * r * fade_out * fade_in)


class LoopBed:
    """A `BedSource` playing a loop body from a seeded offset, forever."""

    def __init__(self, loop: np.ndarray, *, sr: int, seed: int):
        self.sr = int(sr)
        self.loop = np.asarray(loop, dtype=np.float32)
        self.pos = int(np.random.default_rng([*seed_words(seed, _SALT)]).integers(self.loop.shape[1]))

    def read(self, n_samples: int) -> np.ndarray:
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        p = self.loop.shape[1]
        pieces, need = [], n_samples
        while need > 0:
            take = min(need, p - self.pos)
            pieces.append(self.loop[:, self.pos: self.pos + take])
            self.pos = (self.pos + take) % p
            need -= take
        if not pieces:
            return np.zeros((2, 0), dtype=np.float32)
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0].copy()


def open_file(path: Path, *, shown: str, sr: int, seed: int) -> LoopBed:
    """Read, convert, loop and loudness-normalise a user recording."""
    message = check_file(path, shown=shown)
    if message:
        raise CalmplaceError(message)
    try:
        with sf.SoundFile(str(path)) as f:
            file_sr = f.samplerate
            data = f.read(frames=int(MAX_FILE_S * file_sr), dtype="float32", always_2d=True)
    except Exception as exc:
        raise CalmplaceError(f"ambience file {shown} could not be decoded ({exc})") from None
    if data.shape[0] < MIN_FILE_S * file_sr:  # headers of some formats (mp3) only estimate the length
        raise CalmplaceError(f"ambience file {shown} is only {data.shape[0] / file_sr:.2f} s long: "
                             f"a loop needs at least {MIN_FILE_S:g} s")
    mono = data.shape[1] == 1
    audio = resample(to_stereo(data.T), from_sr=file_sr, to_sr=sr)   # may still be a view of `data`
    del data
    rng = np.random.default_rng([*seed_words(seed, _SALT), 1])
    loop = make_loop(audio, sr=sr)
    if mono:
        loop = _decorrelate(loop, sr=sr, rng=rng)
    gain = gain_to_reference(loop, sr=sr)
    if not np.isfinite(gain):
        raise CalmplaceError(f"ambience file {shown} is silent")
    loop *= np.float32(gain)
    return LoopBed(loop, sr=sr, seed=seed)

"""Helpers shared by every engine: trimming, resampling, validation at the boundary."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..units import db_to_gain, seconds_to_samples

EDGE_MARGIN_S = 0.05       # silence kept before and after the words: enough for soft consonants
SILENCE_REL_DB = -45.0     # below the clip's peak by this much counts as silence at the edges


def resample(samples: np.ndarray, *, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with scipy's Kaiser-windowed anti-alias filter (time on the last axis);
    mono float32 up by 2 (espeak-ng's 22.05 kHz to 44.1 kHz) takes the same arithmetic in numpy."""
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    if sr_out == 2 * sr_in and samples.ndim == 1 and samples.dtype == np.float32:
        return _upsample2(samples)
    from scipy.signal import resample_poly  # imported here: a no-op build never needs it
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


# resample_poly's filter for up=2: firwin(41, 0.5, window=("kaiser", 5.0)) in float32, times 2
# (tests/test_tts_workers.py checks these against scipy)
_X2_TAPS = np.array([float.fromhex(h) for h in (
    "-0x1.a6975p-60", "-0x1.13a234p-9", "0x1.11a578p-58", "0x1.48daf4p-8", "-0x1.01d28ap-57",
    "-0x1.40c9b2p-7", "0x1.9daedep-57", "0x1.18619ep-6", "-0x1.2a8176p-56", "-0x1.ca6c66p-6",
    "0x1.8dc0eap-56", "0x1.68d3aap-5", "-0x1.f0931p-56", "-0x1.195094p-4", "0x1.2504e8p-55",
    "0x1.c4ebfp-4", "-0x1.48b98cp-55", "-0x1.9d68fcp-3", "0x1.5fc436p-55", "0x1.444d18p-1",
    "0x1.0021eap+0",
)], dtype=np.float32)
_X2_TAPS = np.concatenate((_X2_TAPS, _X2_TAPS[-2::-1]))  # symmetric: 41 taps, centre 20


def _upsample2(x: np.ndarray) -> np.ndarray:
    """`resample_poly(x, 2, 1)` for mono float32 x, bit for bit, in numpy: about twice as fast
    (0.13 s against 0.26 s for the 44 takes of the shipped script), and without importing
    scipy.signal (1.3-1.7 s here) in a process that needs nothing else from it.

    For float32 input resample_poly filters in float32 (scipy's upfirdn): output 2j + p is
    0.0 + x[j + p + k - 10] * g_p[k] + ... for k = 0..20 in turn, each product and sum
    rounded to float32, where g_0 and g_1 are the odd and the even taps of [0, h...],
    reversed, and samples outside x count as zeros. Here the same products are added in the same
    order, a tap at a time over all outputs: numpy rounds each float32 multiply and add as
    scipy's compiled loop does where that loop is built without fused multiply-add (the
    x86-64 wheels: tests/test_tts_workers.py compares). A scipy built with fused multiply-add
    would round some samples differently in the last bit: clips made by it (and cached) and
    clips made here could differ by that much."""
    n = x.size
    padded = np.concatenate((np.zeros(1, np.float32), _X2_TAPS))
    phases = (padded[1::2][::-1], padded[0::2][::-1])  # even outputs, odd outputs
    xp = np.zeros(n + 21, np.float32)
    xp[10:10 + n] = x  # xp[t] = x[t - 10]
    out = np.empty((n, 2), np.float32)
    acc, product = np.empty(n, np.float32), np.empty(n, np.float32)
    with np.errstate(all="ignore"):  # as quiet as scipy's loop about overflow
        for p, taps in enumerate(phases):
            acc.fill(0.0)
            for k, tap in enumerate(taps):
                np.multiply(xp[p + k:p + k + n], tap, out=product)
                np.add(acc, product, out=acc)
            out[:, p] = acc
    return out.reshape(-1)


END_FADE_S = 0.02          # espeak-ng stops a word dead (QA: 27 of 44 takes still -18..-30 dB under
                           # their peak in the last 10 ms before its digital zeros): the last 20 ms of
                           # sound fade out along a raised cosine, as a voice dies away


def trim_silence(clip: np.ndarray, *, sr: int, margin_s: float = EDGE_MARGIN_S,
                 threshold_rel_db: float = SILENCE_REL_DB) -> np.ndarray:
    """Cut leading and trailing silence, keeping `margin_s` of it (made up with digital silence
    where the engine left less: espeak-ng starts a take on its first sample); mono (n,) in, mono
    out. The sound's first 5 ms fade in, so a cut never clicks, and its last END_FADE_S fade out."""
    if clip.size == 0:
        return clip
    peak = float(np.max(np.abs(clip)))
    if peak == 0.0:
        return clip[:0]
    # 10 ms frames: a consonant's onset is never shorter than that
    frame = max(1, sr // 100)
    n_frames = int(np.ceil(clip.size / frame))
    padded = np.zeros(n_frames * frame, dtype=np.float32)
    padded[: clip.size] = np.abs(clip)
    loud = np.flatnonzero(padded.reshape(n_frames, frame).max(axis=1) > peak * db_to_gain(threshold_rel_db))
    margin = seconds_to_samples(margin_s, sr=sr)
    start = max(0, loud[0] * frame - margin)
    end = min(clip.size, (loud[-1] + 1) * frame + margin)
    sound = np.flatnonzero(clip[start:end])   # where the engine's samples are not digital silence
    first, last = int(sound[0]), int(sound[-1]) + 1
    out = clip[start:end].astype(np.float32, copy=True)
    ramp = min((last - first) // 2, seconds_to_samples(0.005, sr=sr))
    if ramp:
        out[first:first + ramp] *= 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp, dtype=np.float32))
    fade = min((last - first) // 2, seconds_to_samples(END_FADE_S, sr=sr))
    if fade:
        out[last - fade:last] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, fade, dtype=np.float32))
    lead = max(0, margin - (loud[0] * frame - start))       # the margin the clip lacked before its sound
    tail = max(0, margin - (end - (loud[-1] + 1) * frame))  # and after
    if lead or tail:
        out = np.concatenate([np.zeros(lead, np.float32), out, np.zeros(tail, np.float32)])
    return out


def check_clip(clip: np.ndarray, *, what: str) -> np.ndarray:
    """Validate audio at the boundary: mono, finite float32, not empty."""
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 1:
        raise ValueError(f"{what}: expected mono samples, got shape {clip.shape}")
    if clip.size == 0:
        raise ValueError(f"{what}: the engine produced no sound")
    if not np.all(np.isfinite(clip)):
        raise ValueError(f"{what}: the engine produced non-finite samples")
    return clip

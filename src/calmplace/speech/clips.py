"""Helpers shared by every engine: trimming, resampling, validation at the boundary."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..units import db_to_gain, seconds_to_samples

EDGE_MARGIN_S = 0.05       # silence kept before and after the words: enough for soft consonants
SILENCE_REL_DB = -45.0     # below the clip's peak by this much counts as silence at the edges


def resample(samples: np.ndarray, *, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with scipy's Kaiser-windowed anti-alias filter (time on the last axis)."""
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported here: a no-op build never needs it
    ratio = Fraction(sr_out, sr_in).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def trim_silence(clip: np.ndarray, *, sr: int, margin_s: float = EDGE_MARGIN_S,
                 threshold_rel_db: float = SILENCE_REL_DB) -> np.ndarray:
    """Cut leading and trailing silence, keeping `margin_s` of it; mono (n,) in, mono out."""
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
    out = clip[start:end].astype(np.float32, copy=True)
    # 5 ms raised-cosine edges so a cut never clicks
    ramp = min(out.size // 2, seconds_to_samples(0.005, sr=sr))
    if ramp:
        window = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp, dtype=np.float32))
        out[:ramp] *= window
        out[-ramp:] *= window[::-1]
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

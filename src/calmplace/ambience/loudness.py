"""Loudness calibration: every bed leaves the ambience stage at one integrated loudness."""

from __future__ import annotations

import numpy as np
import pyloudnorm
from scipy import signal

# every bed is rendered at this integrated loudness (EBU R128 programme level); the mixer applies level_db on top
from . import REFERENCE_LUFS  # noqa: E402  (one definition, in the package)

# seconds measured per generator and seed: at least five 8-14 s ocean swells and ~20 wind gusts, so the
# level found holds for later minutes too (their 60 s loudness wanders by ~0.3 LU s.d. around it)
CALIBRATION_S = 60.0


def _k_weighting(sr: int) -> tuple[np.ndarray, float] | None:
    """pyloudnorm's K-weighting filters at this rate as one SOS cascade and gain (None if unavailable)."""
    stages = getattr(pyloudnorm.Meter(sr), "_filters", None)
    if not stages:  # pragma: no cover - another pyloudnorm layout
        return None
    sos = np.vstack([signal.tf2sos(stage.b, stage.a) for stage in stages.values()])
    return sos, float(np.prod([stage.passband_gain for stage in stages.values()]))


_PIECE_HOPS = 256  # hops filtered at a time (25.6 s): memory stays bounded for hour-long files


def integrated_lufs(audio: np.ndarray, *, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4 / EBU R128) of a (channels, n) array; -inf for silence.

    pyloudnorm's Meter(sr).integrated_loudness (same K-weighting filters, 400 ms blocks every 100 ms,
    -70 LUFS absolute and -10 LU relative gates, channel weights), computed piecewise with carried
    filter state: several times faster and with bounded memory, which matters as every bed is
    calibrated when it is opened. Agrees with pyloudnorm to float rounding (tested).
    """
    x = np.atleast_2d(np.asarray(audio))
    if not np.any(x):
        return float("-inf")
    meter = pyloudnorm.Meter(sr)
    hop_f = meter.block_size * (1.0 - meter.overlap) * sr
    per_block = int(round(1.0 / (1.0 - meter.overlap)))
    k = _k_weighting(sr)
    if k is None or x.shape[0] > 5 or not float(hop_f).is_integer() or per_block * (1.0 - meter.overlap) != 1.0:
        # pragma: no cover - rates whose 100 ms hop is not whole samples: measure the plain way
        return float(meter.integrated_loudness(np.asarray(x, dtype=np.float64).T))
    sos, gain = k
    hop, n = int(hop_f), x.shape[1]
    n_blocks = int(np.round(((n / sr - meter.block_size) / (meter.block_size / per_block)))) + 1
    if n_blocks < 1:
        raise ValueError("audio shorter than one 400 ms loudness block")
    n_hops = n_blocks + per_block - 1
    zi = np.zeros((sos.shape[0], x.shape[0], 2))
    hops = np.zeros((x.shape[0], n_hops))
    piece = _PIECE_HOPS * hop
    for first in range(0, min(n, n_hops * hop), piece):
        seg = np.asarray(x[:, first: first + piece], dtype=np.float64)
        y, zi = signal.sosfilt(sos, seg, axis=-1, zi=zi)
        y *= gain
        m = -(-seg.shape[1] // hop)                         # hops touched, the last one maybe partial
        sq = np.zeros((x.shape[0], m * hop))
        sq[:, : seg.shape[1]] = y * y
        h0 = first // hop
        take = min(m, n_hops - h0)
        hops[:, h0: h0 + take] = sq.reshape(x.shape[0], m, hop).sum(axis=2)[:, :take]
    z = sum(hops[:, i: i + n_blocks] for i in range(per_block)) / (meter.block_size * sr)  # block mean squares
    weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41])[: x.shape[0], None]   # BS.1770 channel weights
    power = np.sum(weights * z, axis=0)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    above_abs = block_lufs >= -70.0
    if not above_abs.any():
        return float("-inf")
    gamma_r = -0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * z[:, above_abs].mean(axis=1))) - 10.0
    gated = (block_lufs > gamma_r) & (block_lufs > -70.0)
    with np.errstate(divide="ignore"):
        return float(-0.691 + 10.0 * np.log10(np.sum(weights[:, 0] * z[:, gated].mean(axis=1))))


def gain_to_reference(audio: np.ndarray, *, sr: int) -> float:
    """The constant linear gain that brings `audio` to REFERENCE_LUFS (nan if it is silent)."""
    lufs = integrated_lufs(audio, sr=sr)
    if not np.isfinite(lufs):
        return float("nan")
    return float(10.0 ** ((REFERENCE_LUFS - lufs) / 20.0))


def k_weighted_power(sos: np.ndarray, *, sr: int, seconds: float = 1.0) -> float:
    """Loudness-weighted power gain of a filter for unit white noise: the sum of squares of its impulse
    response after BS.1770 K-weighting. Lets a recipe predict each layer's share of the loudness."""
    k_sos, gain = _k_weighting(sr) or (np.array([[1.0, 0, 0, 1.0, 0, 0]]), 1.0)
    impulse = np.zeros(int(seconds * sr))
    impulse[0] = 1.0
    h = gain * signal.sosfilt(k_sos, signal.sosfilt(sos, impulse))
    return float(np.sum(h * h))

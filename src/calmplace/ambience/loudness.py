"""Loudness calibration: every bed leaves the ambience stage at one integrated loudness."""

from __future__ import annotations

import numpy as np
import pyloudnorm
from scipy import signal

REFERENCE_LUFS = -23.0  # every bed is rendered at this integrated loudness (EBU R128 programme level); the mixer applies level_db on top

# seconds measured per generator and seed: at least five 8-14 s ocean swells and ~20 wind gusts, so the
# level found holds for later minutes too (their 60 s loudness wanders by ~0.3 LU s.d. around it)
CALIBRATION_S = 60.0


def integrated_lufs(audio: np.ndarray, *, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4 / EBU R128) of a (channels, n) array; -inf for silence.

    Exactly pyloudnorm's Meter(sr).integrated_loudness (same K-weighting filters, 400 ms blocks with
    75 % overlap, -70 LUFS absolute and -10 LU relative gates), vectorised: a few times faster on a
    minute of audio, which matters as every bed is calibrated when it is opened.
    """
    x = np.array(audio, dtype=np.float64, ndmin=2)
    if not np.any(x):
        return float("-inf")
    meter = pyloudnorm.Meter(sr)
    stages = getattr(meter, "_filters", None)
    if not stages or x.shape[0] > 5:  # pragma: no cover - other pyloudnorm versions: let it measure
        return float(meter.integrated_loudness(x.T))
    sos = np.vstack([signal.tf2sos(stage.b, stage.a) for stage in stages.values()])
    gain = float(np.prod([stage.passband_gain for stage in stages.values()]))
    x = gain * signal.sosfilt(sos, x, axis=-1)
    n = x.shape[1]
    t_g, step = meter.block_size, 1.0 - meter.overlap
    n_blocks = int(np.round(((n / sr - t_g) / (t_g * step)))) + 1
    if n_blocks < 1:
        raise ValueError("audio shorter than one 400 ms loudness block")
    hop = t_g * step * sr
    per_block = int(round(1.0 / step))
    if float(hop).is_integer() and per_block * step == 1.0:
        # blocks are whole hops (4 x 100 ms): sum squares per hop, then add neighbouring hops
        hop = int(hop)
        n_hops = n_blocks + per_block - 1
        sq = np.zeros((x.shape[0], n_hops * hop))
        m = min(n, n_hops * hop)
        sq[:, :m] = x[:, :m] * x[:, :m]
        hops = sq.reshape(x.shape[0], n_hops, hop).sum(axis=2)
        z = sum(hops[:, i: i + n_blocks] for i in range(per_block)) / (t_g * sr)
    else:  # pragma: no cover - rates whose 100 ms hop is not whole samples
        j = np.arange(n_blocks, dtype=np.float64)
        lo = (t_g * (j * step) * sr).astype(np.int64)
        hi = np.minimum((t_g * (j * step + 1) * sr).astype(np.int64), n)
        sums = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x * x, axis=1)], axis=1)
        z = (sums[:, hi] - sums[:, lo]) / (t_g * sr)             # mean square per channel and block
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
    stages = pyloudnorm.Meter(sr)._filters.values()
    k_sos = np.vstack([signal.tf2sos(stage.b, stage.a) for stage in stages])
    gain = float(np.prod([stage.passband_gain for stage in stages]))
    impulse = np.zeros(int(seconds * sr))
    impulse[0] = 1.0
    h = gain * signal.sosfilt(k_sos, signal.sosfilt(sos, impulse))
    return float(np.sum(h * h))

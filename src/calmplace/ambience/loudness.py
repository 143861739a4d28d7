"""Loudness calibration: every bed leaves the ambience stage at one integrated loudness."""

from __future__ import annotations

import numpy as np

from ..kernels import sosfilt

# every bed is rendered at this integrated loudness (EBU R128 programme level); the mixer applies level_db on top
from . import REFERENCE_LUFS  # noqa: E402  (one definition, in the package)

# seconds measured per generator and seed: at least five 8-14 s ocean swells and ~20 wind gusts, so the
# level found holds for later minutes too (their 60 s loudness wanders by ~0.3 LU s.d. around it)
CALIBRATION_S = 60.0


def integrated_lufs(audio: np.ndarray, *, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4 / EBU R128) of a (channels, n) array; -inf for silence.

    The mastering stage's streamed meter (pyloudnorm's filters and gating, bounded memory), so a
    bed and the finished track are measured the same way."""
    from ..master import integrated_lufs as measure_integrated

    return measure_integrated(audio, sr=sr)


def gain_to_reference(audio: np.ndarray, *, sr: int) -> float:
    """The constant linear gain that brings `audio` to REFERENCE_LUFS (nan if it is silent)."""
    lufs = integrated_lufs(audio, sr=sr)
    if not np.isfinite(lufs):
        return float("nan")
    return float(10.0 ** ((REFERENCE_LUFS - lufs) / 20.0))


def k_weighted_power(sos: np.ndarray, *, sr: int, seconds: float = 1.0) -> float:
    """Loudness-weighted power gain of a filter for unit white noise: the sum of squares of its impulse
    response after BS.1770 K-weighting. Lets a recipe predict each layer's share of the loudness."""
    from ..master import k_weighting

    impulse = np.zeros(int(seconds * sr))
    impulse[0] = 1.0
    h, _ = sosfilt(k_weighting(sr), sosfilt(sos, impulse)[0])
    return float(np.sum(h * h))

"""IIR filtering in place: the kernel behind `scipy.signal.sosfilt`, called directly.

The public function copies its input (to float64 for float64 sections, whatever the input is),
moves the time axis last and makes it contiguous, then filters the copy. Code that filters long
audio a block at a time (the beds, the loudness meter) hands it a block it owns instead: the same
recursion, so the same numbers, with no whole-stretch temporaries.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

try:  # the in-place kernel behind scipy.signal.sosfilt: skips its input copy and axis shuffling
    from scipy.signal._sosfilt import _sosfilt as _kernel
except ImportError:  # pragma: no cover - a scipy that moved it: the public function gives the same numbers
    _kernel = None


def sosfilt_in_place(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Filter x (C-contiguous (channels, n)) in place from state zi ((channels, sections, 2)); sos,
    x and zi of one dtype. Returns the state after it (zi itself, updated, when scipy's kernel is
    there)."""
    if _kernel is not None:
        _kernel(sos, x, zi)
        return zi
    y, z = signal.sosfilt(sos, x, axis=-1, zi=zi.transpose(1, 0, 2))  # pragma: no cover
    x[...] = y  # pragma: no cover
    return np.ascontiguousarray(z.transpose(1, 0, 2), dtype=zi.dtype)  # pragma: no cover

"""What the meter reports of a track (`master.measure`, `encode.measure_mp3`).

A module of its own, with nothing heavy imported: a render worker hands its track's measurement
back to the build's process pickled, and unpickling imports the class's module. Kept in
`master`, it had the build's process import scipy and pyloudnorm (1.5 CPU-s here) for four
floats, while it only writes files."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    integrated_lufs: float     # ITU-R BS.1770-4 (pyloudnorm's K-weighting); -inf for silence
    true_peak_dbtp: float      # 4x oversampled (ITU-R BS.1770-4 Annex 2), max over channels
    loudness_range_lu: float   # EBU Tech 3342; nan for less than 3 s of signal above the gates
    sample_peak_dbfs: float

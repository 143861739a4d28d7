"""Mastering: a BS.1770 meter (loudness, true peak, loudness range) and `master`, which sets the
integrated loudness and holds true peaks under a ceiling with a look-ahead limiter.

Everything streams over the track in chunks of a few seconds, so an hour-long track costs a few
chunk-sized temporaries, never extra whole-track copies: `master_track`'s result keeps the input,
one gain and the limited stretches, and is read a block at a time (`Mastered`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import kernels
from .designs import tabled
from .errors import CalmplaceError
from .kernels import sosfilt_in_place
from .measurement import Measurement
from .units import db_to_gain, gain_to_db

TARGET_LUFS = -16.0   # -16 LUFS: Apple Podcasts delivery (within AES TD1008's -18..-16 for speech)
CEILING_DBTP = -1.0   # -1 dBTP: EBU R 128 / AES TD1008 maximum true peak for lossy delivery

# ITU-R BS.1770-4, Annex 1: 400 ms gating blocks, 75 % overlap, -70 LUFS absolute gate,
# -10 LU relative gate, -0.691 dB offset, channel weights 1.0 (L, R, C) and 1.41 (Ls, Rs).
_BLOCK_S = 0.4
_HOP_S = 0.1
_ABS_GATE_LUFS = -70.0
_REL_GATE_LU = -10.0
_LUFS_OFFSET = -0.691
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)

# EBU Tech 3342: 3 s short-term loudness at >= 10 Hz, -70 LUFS absolute and -20 LU relative gates,
# LRA = 95th minus 10th percentile.
_SHORT_TERM_S = 3.0
_LRA_REL_GATE_LU = -20.0
_LRA_PERCENTILES = (10.0, 95.0)

# ITU-R BS.1770-4 Annex 2 true peak: 4x oversampling. Our interpolator is a Kaiser-windowed sinc
# (24 taps per phase, beta 7): flat within 0.01 dB to 18 kHz, -0.3 dB at 19 kHz; phase 0 is the
# sample itself, so only the 3 points between samples are computed.
_OVERSAMPLE = 4
_TAPS = 24
_KAISER_BETA = 7.0
_TP_BLOCK = 32  # samples per block: blocks whose bound cannot reach the floor skip interpolation
_TP_GROUP = 32  # blocks per group: a group whose largest |x| x l1 is under the floor is not looked at block by block
_TP_PIECE = 64  # groups looked at per step (64 x 1024 samples x channels): temporaries stay in cache

_CHUNK_HOPS = 60  # processing chunk = 60 x 100 ms = 6 s
_K_BLOCK_HOPS = 16  # a stretch's K-weighting 1.6 s at a time: float64 blocks of 1.1 MB, cache-sized
# K-weighting settles long before this: its slowest poles (the 38 Hz high-pass, Q 0.5) decay with a
# 4.2 ms time constant, so a stretch measured apart after 0.2 s of run-in matches one measured in
# line to within float rounding (e^-48)
_WARMUP_S = 0.2

# Limiter: 3 ms look-ahead (ramp down before the peak, two cascaded boxes = S-shaped attack),
# 100 ms exponential release of the gain reduction; speech-limiter practice is 1.5-5 ms / 50-200 ms.
_LOOKAHEAD_S = 0.003
_RELEASE_S = 0.100
_GR_FLOOR_DB = 1e-3      # gain reduction below 0.001 dB is inaudible and set to exactly none
_PEAK_HEADROOM_DB = 2.0  # peaks are gathered 2 dB under the threshold: later passes may raise the gain
_LIMITER_MARGIN_DB = 0.05  # peaks are found on x; x * gain-ramp can interpolate a hair higher
_LOUDNESS_AIM_LU = 0.1   # iterate until this close; the contract allows ±0.5 LU
_LOUDNESS_TOL_LU = 0.5
_DELIVERY_TOL_LU = 1.0   # the contract's ±1 LU, for `accept_lufs`: the caller measures what it delivers
_MAX_PASSES = 6


def measure(samples: np.ndarray, *, sr: int) -> Measurement:
    """Integrated loudness, true peak, loudness range and sample peak of (channels, n) audio."""
    x = _as_audio(samples)
    scan = _scan(x, sr=sr, true_peak=True)
    return Measurement(
        integrated_lufs=_integrated(scan.energies, n=x.shape[1], sr=sr),
        true_peak_dbtp=gain_to_db(scan.true_peak),
        loudness_range_lu=_loudness_range(scan.energies, n=x.shape[1], sr=sr),
        sample_peak_dbfs=gain_to_db(scan.sample_peak),
    )


def integrated_lufs(samples: np.ndarray, *, sr: int) -> float:
    """Integrated loudness alone (ITU-R BS.1770-4), without the true-peak pass; -inf for silence."""
    x = _as_audio(samples)
    return _integrated(_scan(x, sr=sr, true_peak=False).energies, n=x.shape[1], sr=sr)


def integrated_from_energies(energies: np.ndarray, *, n: int, sr: int) -> float:
    """Integrated loudness of n samples from their K-weighted energies per 100 ms hop (as
    `InputMeter.energies` gives them)."""
    return _integrated(energies, n=n, sr=sr)


def k_weighting(sr: int) -> np.ndarray:
    """BS.1770 K-weighting at `sr` as second-order sections (passband gain folded in)."""
    return _k_weighting(sr)


def true_peak_dbtp(samples: np.ndarray, *, sr: int) -> float:
    """True peak in dBTP: 4x oversampled (ITU-R BS.1770-4 Annex 2), max over channels."""
    x = _as_audio(samples)
    peak = _sample_peak(x)
    return gain_to_db(max(peak, _true_peak(x, sr=sr, floor=peak)))


class Mastered:
    """A mastered track kept as its input, one gain and the stretches the limiter lowered:
    `read(start, stop)` gives those samples of the mastered track without the whole of it ever
    being made (an 11-minute track is 240 MB, which the encoder would only read once, a block
    at a time). `array()` makes all of it."""

    def __init__(self, x: np.ndarray, *, gain: float, patches: list[tuple[int, np.ndarray]],
                 lowered: list[tuple[int, int]]):
        self.x, self.gain = x, np.float32(gain)
        self.patches = patches   # (first sample, float32 (channels, m)): in order, apart
        self.lowered = lowered   # the stretches [a, b) where the limiter's gain is under 1
        self._starts = [a for a, _ in patches]

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as a new float32 (channels, stop - start) array."""
        out = np.multiply(self.x[:, start:stop], self.gain)
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        for a, patch in self.patches[i:]:
            if a >= stop:
                break
            lo, hi = max(a, start), min(a + patch.shape[1], stop)
            if hi > lo:
                out[:, lo - start:hi - start] = patch[:, lo - a:hi - a]
        return out

    def array(self) -> np.ndarray:
        return self.read(0, self.x.shape[1])


def master(samples: np.ndarray, *, sr: int, target_lufs: float = TARGET_LUFS,
           ceiling_dbtp: float = CEILING_DBTP, threads: int = 1, energies: np.ndarray | None = None) -> np.ndarray:
    """`master_track` as a new float32 (channels, n) array."""
    return master_track(samples, sr=sr, target_lufs=target_lufs, ceiling_dbtp=ceiling_dbtp, threads=threads,
                        energies=energies).array()


def master_track(samples: np.ndarray, *, sr: int, target_lufs: float = TARGET_LUFS,
                 ceiling_dbtp: float = CEILING_DBTP, threads: int = 1,
                 energies: np.ndarray | None = None, accept_lufs: float | None = None) -> Mastered:
    """Gain to `target_lufs` integrated, then a linked look-ahead true-peak limiter at
    `ceiling_dbtp`; repeated until both hold. Returns the result as a `Mastered`, which holds on
    to `samples` (do not change them while it is in use).

    The input is measured once (K-weighted energy per 100 ms, and the few samples whose true peak
    could reach the ceiling). A pass then re-measures only the stretches the limiter lowered, and
    0.2 s after each (the K-weighting's memory): elsewhere the output is the input times one gain,
    so its energy is the input's times that gain squared and its peaks stay under the limiter's
    threshold. The first pass's gain ignores what the limiter takes away: that pass estimates the
    loss (`_limited_energies`), and if by the estimate it misses the aim, corrects the gain without
    measuring, so the measurement falls on a pass that usually meets the target. `threads` measure
    the input's chunks side by side; the result does not depend on it. `energies`: the input's,
    from an `InputMeter` that measured it as it was written. `accept_lufs`: a loudness also
    accepted (within the same tolerance) when the passes cannot reach `target_lufs`, as when
    `encode.master_to_mp3` aims above its delivery target to make up for the encoder's loss and the
    limiter cannot get that loud; within ±1 LU of it, as the contract allows (the caller checks
    what it delivers)."""
    x = _as_audio(samples)
    n = x.shape[1]
    energies_x = _energies(x, sr=sr, threads=threads) if energies is None else energies
    lufs_in = _integrated(energies_x, n=n, sr=sr)
    if not math.isfinite(lufs_in):
        raise CalmplaceError("cannot master the track: it is silent (or shorter than 0.4 s)")
    gain_db = target_lufs - lufs_in
    threshold_db = ceiling_dbtp - _LIMITER_MARGIN_DB
    peaks: tuple[np.ndarray, np.ndarray] | None = None
    peaks_floor_db = math.inf
    lufs = tp = math.nan
    hop = _hop(sr)
    chunks = list(_chunks(n, sr=sr))
    for pass_index in range(_MAX_PASSES):
        if threshold_db - gain_db < peaks_floor_db:   # louder than the peaks were gathered for
            peaks_floor_db = threshold_db - gain_db - _PEAK_HEADROOM_DB
            peaks = _peaks(x, chunks, floor=db_to_gain(peaks_floor_db), sr=sr, threads=threads)
        gain = db_to_gain(gain_db)
        out = _limit(x, gain=gain, threshold=db_to_gain(threshold_db), sr=sr, peaks=peaks, threads=threads)
        energies = energies_x * (gain * gain)
        if pass_index == 0:   # its loudness is estimated first, not measured
            guess = _integrated(_limited_energies(out, energies, sr=sr), n=n, sr=sr)
            if abs(guess - target_lufs) > _LOUDNESS_AIM_LU:   # a measurement would only confirm it
                gain_db += target_lufs - guess
                continue
        tp = 0.0   # outside the lowered stretches out = x * gain stays under the threshold
        warm = int(round(_WARMUP_S * sr))

        def rescan(region: tuple[int, int]) -> ScanPart:
            start, stop = region
            lo, hi = max(0, start - warm), min(n, stop + _TAPS)
            return scan_part(out.read(lo, hi), offset=lo, start=start, stop=stop, n=n, sr=sr)

        for part in thread_map(rescan, _regions(out.lowered, n=n, sr=sr), threads=threads):
            energies[:, part.first_hop:part.first_hop + part.energies.shape[1]] = part.energies
            tp = max(tp, part.true_peak)
        assert energies.shape[1] == -(-n // hop)
        lufs, tp = _integrated(energies, n=n, sr=sr), gain_to_db(tp) if tp > 0 else -math.inf
        loud_ok, peak_ok = abs(lufs - target_lufs) <= _LOUDNESS_AIM_LU, tp <= ceiling_dbtp
        if loud_ok and peak_ok:
            return out
        if not loud_ok:
            gain_db += target_lufs - lufs
        if not peak_ok:
            threshold_db -= tp - ceiling_dbtp + _LIMITER_MARGIN_DB
    if tp <= ceiling_dbtp and (abs(lufs - target_lufs) <= _LOUDNESS_TOL_LU
                               or accept_lufs is not None and abs(lufs - accept_lufs) <= _DELIVERY_TOL_LU):
        return out
    raise CalmplaceError(
        f"cannot master the track to {target_lufs:g} LUFS with true peaks under {ceiling_dbtp:g} dBTP: "
        f"reached {lufs:.2f} LUFS, {tp:.2f} dBTP (peaks too far above the speech level)")


SPEECH_OVER_TRIGGER_LU = 2.0  # speech this far over the whole track's integrated loudness: the bed comes down ...
SPEECH_OVER_LU = 1.0      # ... until the speech is no further than this over it (modelled)
BED_TRIM_STEP_DB = 0.5    # the bed comes down in these steps ...
BED_TRIM_MARGIN_DB = 2.0  # ... then this much further, clear of the relative gate (right at it, mastering's
                          # limiting moved the bed in and out of the gate between passes: 10 LU jumps, no result)
BED_TRIM_LIMIT_DB = -24.0  # ... and no further (past it, the build's sparse-speech warning says what to do)


def bed_trim_db(energies: np.ndarray, speech: np.ndarray, *, n: int, sr: int) -> tuple[float, float]:
    """How far to lower the beds (dB, <= 0) so that the track's integrated loudness is set by its
    speech, not by long stretches of ambience; and how far over that loudness the speech stands
    untrimmed (LU). `energies`: the mix's per-hop K-weighted energies; `speech`: the hops holding
    a take (mix.speech_hops).

    BS.1770 gates out what is 10 LU under the mean: under a voice that speaks a third of the time,
    a bed 16-22 dB down is gated out and the track measures as its voice. As the pauses grow, the
    mean falls towards the bed, the bed passes the gate, and the track measures lower by up to
    14 LU at once; mastering to the target then lifts the voice that far, into the limiter (QA:
    one sentence, then a minute of forest: the forest came out 21 dB louder than after 30 s, the
    voice squashed). When the speech stands more than SPEECH_OVER_TRIGGER_LU over the whole, a bed
    lowered until it is within SPEECH_OVER_LU (and BED_TRIM_MARGIN_DB more) keeps the voice where
    any other track has it, the bed further under it than level_db asks. Modelled on
    the energies: hops without speech scale with the bed; those with speech are taken as unchanged
    (the bed under a voice is ducked, and counts little). (0, over) when no trim within
    BED_TRIM_LIMIT_DB is enough."""
    speech_lufs = _integrated(np.where(speech[np.newaxis, :energies.shape[1]], energies, 0.0), n=n, sr=sr)
    whole = _integrated(energies, n=n, sr=sr)
    if not (math.isfinite(speech_lufs) and math.isfinite(whole)) or speech_lufs - whole <= SPEECH_OVER_TRIGGER_LU:
        return 0.0, speech_lufs - whole if math.isfinite(speech_lufs - whole) else 0.0
    over = speech_lufs - whole
    steps = int(round(-BED_TRIM_LIMIT_DB / BED_TRIM_STEP_DB))
    for k in range(1, steps + 1):
        trim = -k * BED_TRIM_STEP_DB
        trimmed = np.where(speech[np.newaxis, :energies.shape[1]], energies, energies * db_to_gain(2 * trim))
        if speech_lufs - _integrated(trimmed, n=n, sr=sr) <= SPEECH_OVER_LU:
            return max(trim - BED_TRIM_MARGIN_DB, BED_TRIM_LIMIT_DB), over
    return 0.0, over


def _limited_energies(out: Mastered, energies: np.ndarray, *, sr: int) -> np.ndarray:
    """An estimate of `out`'s per-hop K-weighted energies from `energies`, those of the input times
    `out.gain`: each hop the limiter lowered keeps the share of its plain (unweighted) energy that
    the limiter left. The limiter's gain moves slowly against the K-weighting's shelf and
    high-pass, so both energies lose nearly the same share: on the shipped track the estimated
    integrated loudness was within 0.002 LU of the measured one, from 0.01 to 0.6 LU of limiting,
    at a fifth of the measuring's cost (no filtering, no true peak)."""
    hop, n = _hop(sr), out.x.shape[1]
    removed = np.zeros_like(energies)
    for a, patch in out.patches:
        b = a + patch.shape[1]
        lost = np.multiply(out.x[:, a:b], out.gain, dtype=np.float64)
        np.square(lost, out=lost)
        lost -= np.square(patch, dtype=np.float64)
        edges = _hop_edges(a, b, hop=hop)
        removed[:, a // hop:a // hop + edges.size] += np.add.reduceat(lost, edges, axis=1)
    estimated = energies.copy()
    for h in np.flatnonzero(removed.any(axis=0)).tolist():
        plain = np.multiply(out.x[:, h * hop:min(n, (h + 1) * hop)], out.gain, dtype=np.float64)
        total = np.einsum("ij,ij->i", plain, plain)
        estimated[:, h] *= np.clip(1.0 - removed[:, h] / np.maximum(total, 1e-30), 0.0, 1.0)
    return estimated


def _regions(lowered: list[tuple[int, int]], *, n: int, sr: int) -> list[tuple[int, int]]:
    """Whole hops to re-measure after limiting: each lowered stretch, from the hop holding the
    first sample a true-peak interpolation of it reads to the hop after the K-weighting has
    forgotten it (_WARMUP_S later); merged where they meet."""
    hop, tail = _hop(sr), int(round(_WARMUP_S * sr))
    regions: list[tuple[int, int]] = []
    for a, b in lowered:
        start = max(0, (a - _TAPS) // hop * hop)
        stop = min(n, -(-(b + tail + _TAPS) // hop) * hop)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], stop))
        else:
            regions.append((start, stop))
    return regions


def _energies(x: np.ndarray, *, sr: int, threads: int) -> np.ndarray:
    """K-weighted energy per 100 ms hop, measured in 30 s parts (side by side with threads)."""
    return InputMeter(x.shape[1], sr=sr).energies(x, threads=threads)


class InputMeter:
    """The K-weighted energies `master` starts from, measured while the track is still being
    written front to back (the mix calls `advance` as blocks become final), so mastering need not
    read the whole track again first. Same 30 s parts and arithmetic as `master` uses on its own:
    `master(x, energies=meter.energies(x))` gives the same bytes as `master(x)`."""

    def __init__(self, n: int, *, sr: int):
        step = 5 * _CHUNK_HOPS * _hop(sr)
        self.n, self.sr = n, sr
        self.bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
        self.parts: list[ScanPart] = []

    def _part(self, x: np.ndarray, bound: tuple[int, int]) -> ScanPart:
        start, stop = bound
        lo = max(0, start - int(round(_WARMUP_S * self.sr)))
        return scan_part(x[:, lo:stop], offset=lo, start=start, stop=stop, n=self.n, sr=self.sr, true_peak=False)

    def advance(self, x: np.ndarray, ready: int) -> None:
        """Measure the parts that end at or before sample `ready` (everything before it is final)."""
        while len(self.parts) < len(self.bounds) and self.bounds[len(self.parts)][1] <= ready:
            self.parts.append(self._part(x, self.bounds[len(self.parts)]))

    def energies(self, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
        rest = self.bounds[len(self.parts):]
        parts = self.parts + thread_map(lambda bound: self._part(x, bound), rest, threads=threads)
        return measurement_energies(parts, n=self.n, sr=self.sr)


def thread_map(fn, items: list, *, threads: int) -> list:
    """[fn(item) for item in items], `threads` at a time (numpy, scipy, LAME and libsndfile release
    the GIL in their heavy loops); in order, and the same results whatever `threads` is."""
    if threads > 1 and len(items) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
            return list(pool.map(fn, items))
    return [fn(item) for item in items]


# ------------------------------------------------------------------------------------------------
# Streaming meter


@dataclass(frozen=True)
class _Scan:
    energies: np.ndarray   # (channels, n_hops) sums of squared K-weighted samples per 100 ms hop
    sample_peak: float
    true_peak: float       # nan unless asked for


def _as_audio(samples: np.ndarray, *, rows: bool = False) -> np.ndarray:
    """(channels, n) float32 in C order; with `rows`, float32 whose rows are each contiguous (a
    slice of a track) is taken as it is: the meter reads it row by row, so a copy would be waste."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2 or x.shape[0] > len(_CHANNEL_WEIGHTS) or x.shape[0] > x.shape[1]:
        raise ValueError(f"expected (channels, n_samples) audio with 1-5 channels, got shape {x.shape}")
    if rows and x.dtype == np.float32 and x.strides[1] == x.itemsize:
        return x
    return np.ascontiguousarray(x, dtype=np.float32)


def _hop(sr: int) -> int:
    return int(round(_HOP_S * sr))


def _hop_edges(start: int, stop: int, *, hop: int) -> np.ndarray:
    """Where each hop touching samples [start, stop) begins, counted from `start` (the first is
    0 when `start` falls inside a hop): `np.add.reduceat` sums of a stretch per hop."""
    return np.maximum(np.arange(start // hop, -(-stop // hop)) * hop, start) - start


def _chunks(n: int, *, sr: int):
    step = _CHUNK_HOPS * _hop(sr)
    for start in range(0, n, step):
        yield start, min(start + step, n)


@lru_cache(maxsize=8)
@tabled
def _k_weighting(sr: int) -> np.ndarray:
    """ITU-R BS.1770 K-weighting as second-order sections, designed exactly as pyloudnorm's Meter."""
    from pyloudnorm.iirfilter import IIRfilter

    stages = (IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf"),
              IIRfilter(0.0, 0.5, 38.0, sr, "high_pass"))
    return np.array([np.r_[f.passband_gain * f.b / f.a[0], f.a / f.a[0]] for f in stages])


def _sample_peak(x: np.ndarray) -> float:
    peak = 0.0
    for start in range(0, x.shape[1], 1 << 20):
        block = x[:, start:start + (1 << 20)]
        peak = max(peak, float(block.max()), -float(block.min()))
    if not math.isfinite(peak):
        raise ValueError("samples contain NaN or infinity")
    return peak


def _scan(x: np.ndarray, *, sr: int, true_peak: bool) -> _Scan:
    """One pass: K-weighted energy per 100 ms hop, sample peak and (optionally) true peak."""
    channels, n = x.shape
    hop = _hop(sr)
    sos = _k_weighting(sr)
    zi = np.zeros((sos.shape[0], channels, 2))
    peak = _sample_peak(x)
    tp = peak if true_peak else math.nan
    energies: list[np.ndarray] = []
    for start, stop in _chunks(n, sr=sr):
        zi = _weigh_chunk(sos, x[:, start:stop], zi, hop=hop, out=energies)
        if true_peak:
            tp = max(tp, _tp_max(x, start, stop, floor=peak))
    return _Scan(np.concatenate(energies, axis=1) if energies else np.zeros((channels, 0)), peak, tp)


def _weigh_chunk(sos: np.ndarray, chunk: np.ndarray, zi: np.ndarray, *, hop: int, out: list) -> np.ndarray:
    """Append the K-weighted energy per hop of one `_chunks` chunk (its last hop may be short) to
    `out`; returns the filter state after it."""
    weighted, zi = kernels.sosfilt(sos, chunk, zi=zi)
    np.square(weighted, out=weighted)
    full = weighted.shape[1] // hop * hop
    out.append(weighted[:, :full].reshape(chunk.shape[0], -1, hop).sum(axis=-1))
    if full < weighted.shape[1]:
        out.append(weighted[:, full:].sum(axis=-1, keepdims=True))
    return zi


def integrated_lufs_joined(parts: Sequence[np.ndarray], *, sr: int) -> float:
    """`integrated_lufs` of mono float32 parts laid end to end (a voice's takes), without making
    the joined copy (60 MB for the shipped script's): each chunk the meter reads is joined from
    the parts it spans, so the numbers are those of the joined array."""
    n = sum(p.size for p in parts)
    sos, hop = _k_weighting(sr), _hop(sr)
    zi = np.zeros((sos.shape[0], 1, 2))
    energies: list[np.ndarray] = []
    k = pos = 0   # the part the next chunk starts in, and where in it
    for start, stop in _chunks(n, sr=sr):
        pieces, need = [], stop - start
        while need:
            take = parts[k][pos:pos + need]
            pieces.append(take)
            pos, need = pos + take.size, need - take.size
            if pos == parts[k].size:
                k, pos = k + 1, 0
        zi = _weigh_chunk(sos, np.concatenate(pieces).astype(np.float32, copy=False)[np.newaxis, :], zi,
                          hop=hop, out=energies)
    return _integrated(np.concatenate(energies, axis=1) if energies else np.zeros((1, 0)), n=n, sr=sr)


@dataclass(frozen=True)
class ScanPart:
    """What one stretch [start, stop) of a track adds to its measurement (see `scan_part`)."""

    first_hop: int
    energies: np.ndarray   # (channels, hops) K-weighted energy in hops first_hop, first_hop + 1, ...
    sample_peak: float
    true_peak: float


def scan_part(y: np.ndarray, *, offset: int, start: int, stop: int, n: int, sr: int,
              true_peak: bool = True) -> ScanPart:
    """Measure samples [start, stop) of an n-sample track of which `y` holds samples
    [offset, offset + y.shape[1]). Parts of a track can be measured apart (in threads, or from
    separately decoded stretches) and combined by `measurement_from_parts` into what `measure`
    gives for the whole track.

    `y` should start `_WARMUP_S` before `start` (or at 0) so the K-weighting filter has settled,
    and reach `_TAPS // 2` samples past `stop` (or to n) for the true-peak interpolator."""
    x = _as_audio(y, rows=True)
    hop = _hop(sr)
    if not (offset <= start < stop <= min(n, offset + x.shape[1])):
        raise ValueError(f"stretch [{start}, {stop}) is not inside y ([{offset}, {offset + x.shape[1]}))")
    warm = max(offset, start - int(round(_WARMUP_S * sr)))
    energies = _k_energies(x[:, warm - offset:stop - offset], run_in=start - warm, start=start, sr=sr)
    first_hop = start // hop
    own = x[:, start - offset:stop - offset]
    peak = max(float(own.max()), -float(own.min()))
    if not math.isfinite(peak):
        raise ValueError("samples contain NaN or infinity")
    if not true_peak:
        return ScanPart(first_hop, energies, peak, math.nan)
    # _tp_max zero-pads outside its array: right at the track's ends, and harmless elsewhere as
    # long as y reaches _TAPS // 2 samples beyond the stretch
    lo, hi = max(offset, start - _TAPS), min(offset + x.shape[1], stop + _TAPS)
    local = x[:, lo - offset:hi - offset]
    tp = max(peak, _tp_max(local, start - lo, stop - lo, floor=peak))
    return ScanPart(first_hop, energies, peak, tp)


def _k_energies(x: np.ndarray, *, run_in: int, start: int, sr: int) -> np.ndarray:
    """K-weighted energy per hop of x after its first `run_in` samples (the filter's run-in), x's
    sample run_in being track sample `start`: what `np.add.reduceat` of the squared K-weighted x
    gives per hop (`_hop_edges`), worked out `_K_BLOCK_HOPS` hops at a time in float64 copies of
    a block (one filter state carried through, blocks cut on hop edges: the same numbers as one
    pass over a float64 copy of the whole stretch, without its 28 MB per decoded stretch)."""
    sos, hop = _k_weighting(sr), _hop(sr)
    zi = np.zeros((x.shape[0], sos.shape[0], 2))
    if run_in:
        zi = sosfilt_in_place(sos, np.array(x[:, :run_in], dtype=np.float64), zi)
    stop = start + x.shape[1] - run_in
    parts, a = [], start
    while a < stop:
        b = min(stop, (a // hop + _K_BLOCK_HOPS) * hop)
        block = np.array(x[:, run_in + a - start:run_in + b - start], dtype=np.float64)
        zi = sosfilt_in_place(sos, block, zi)
        np.square(block, out=block)
        parts.append(np.add.reduceat(block, _hop_edges(a, b, hop=hop), axis=1))
        a = b
    return np.concatenate(parts, axis=1)


def measurement_energies(parts: list[ScanPart], *, n: int, sr: int) -> np.ndarray:
    """Per-hop energies of a whole n-sample track from parts that cover it exactly once."""
    energies = np.zeros((parts[0].energies.shape[0], -(-n // _hop(sr))))
    for part in parts:
        energies[:, part.first_hop:part.first_hop + part.energies.shape[1]] += part.energies
    return energies


def measurement_from_parts(parts: list[ScanPart], *, n: int, sr: int) -> Measurement:
    """The `measure` of a whole n-sample track from `scan_part`s that cover it exactly once."""
    energies = measurement_energies(parts, n=n, sr=sr)
    return Measurement(integrated_lufs=_integrated(energies, n=n, sr=sr),
                       true_peak_dbtp=gain_to_db(max(p.true_peak for p in parts)),
                       loudness_range_lu=_loudness_range(energies, n=n, sr=sr),
                       sample_peak_dbfs=gain_to_db(max(p.sample_peak for p in parts)))


def _true_peak(x: np.ndarray, *, sr: int, floor: float) -> float:
    tp = 0.0
    for start, stop in _chunks(x.shape[1], sr=sr):
        tp = max(tp, _tp_max(x, start, stop, floor=floor))
    return tp


def _integrated(energies: np.ndarray, *, n: int, sr: int) -> float:
    """Gated integrated loudness (ITU-R BS.1770-4 eq. 4-7) from per-hop energies, with
    pyloudnorm's block count (a last block may run past the end; it is zero-padded)."""
    hop = _hop(sr)
    per_block = int(round(_BLOCK_S / _HOP_S))
    n_blocks = int(np.round((n / sr - _BLOCK_S) / _HOP_S)) + 1
    if n < _BLOCK_S * sr or n_blocks < 1:
        return -math.inf
    e = np.zeros((energies.shape[0], n_blocks + per_block - 1))
    used = min(e.shape[1], energies.shape[1])
    e[:, :used] = energies[:, :used]
    z = sliding_window_view(e, per_block, axis=1).sum(axis=-1) / (per_block * hop)  # (ch, blocks)
    weights = np.array(_CHANNEL_WEIGHTS[:z.shape[0]])[:, np.newaxis]
    with np.errstate(divide="ignore"):
        block_lufs = _LUFS_OFFSET + 10 * np.log10((weights * z).sum(axis=0))
        above_abs = block_lufs >= _ABS_GATE_LUFS
        if not above_abs.any():
            return -math.inf
        gate = _LUFS_OFFSET + 10 * np.log10((weights * z[:, above_abs]).mean(axis=1).sum()) + _REL_GATE_LU
        gated = (block_lufs > gate) & (block_lufs > _ABS_GATE_LUFS)
        if not gated.any():
            return -math.inf
        return float(_LUFS_OFFSET + 10 * np.log10((weights * z[:, gated]).mean(axis=1).sum()))


def _short_term(energies: np.ndarray, *, n: int, sr: int) -> np.ndarray:
    """EBU Tech 3341 short-term loudness: 3 s windows every 100 ms (-inf where silent)."""
    hop = _hop(sr)
    per_window = int(round(_SHORT_TERM_S / _HOP_S))
    full_hops = n // hop  # a partial last hop is left out of the short-term windows
    if full_hops < per_window:
        return np.zeros(0)
    weights = np.array(_CHANNEL_WEIGHTS[:energies.shape[0]])[:, np.newaxis]
    power = (weights * energies[:, :full_hops]).sum(axis=0)
    csum = np.concatenate(([0.0], np.cumsum(power)))
    short_term = (csum[per_window:] - csum[:-per_window]) / (per_window * hop)
    with np.errstate(divide="ignore"):
        return _LUFS_OFFSET + 10 * np.log10(np.maximum(short_term, 0.0))


def short_term_lufs(samples: np.ndarray, *, sr: int) -> np.ndarray:
    """Short-term loudness (3 s window) every 100 ms; element i ends at (i + 30) * 100 ms."""
    x = _as_audio(samples)
    return _short_term(_scan(x, sr=sr, true_peak=False).energies, n=x.shape[1], sr=sr)


def _loudness_range(energies: np.ndarray, *, n: int, sr: int) -> float:
    """EBU Tech 3342 loudness range from 3 s short-term loudness sampled every 100 ms."""
    lufs = _short_term(energies, n=n, sr=sr)
    lufs = lufs[lufs >= _ABS_GATE_LUFS]
    if lufs.size == 0:
        return math.nan
    gate = 10 * np.log10(np.mean(10 ** (lufs / 10))) + _LRA_REL_GATE_LU
    low, high = np.percentile(lufs[lufs >= gate], _LRA_PERCENTILES)
    return float(high - low)


# ------------------------------------------------------------------------------------------------
# True peak (ITU-R BS.1770-4 Annex 2)


@lru_cache(maxsize=1)
def _interpolator() -> tuple[np.ndarray, float]:
    """The 3 between-sample phases of a 4x interpolator as one block-Toeplitz matrix, so a block of
    `_TP_BLOCK` outputs per phase is one matrix product; and the largest phase L1 norm, which bounds
    how far an interpolated value can exceed the largest sample under the filter."""
    k, b = _TAPS, _TP_BLOCK
    proto = _kaiser_lowpass(_OVERSAMPLE * k + 1, 1.0 / _OVERSAMPLE, _KAISER_BETA) * _OVERSAMPLE
    # phase p at time n + p/4 reads x[n - k/2 + 1 + j] with weight proto[p + 4 (k - 1 - j)]
    phases = np.stack([proto[p::_OVERSAMPLE][:k][::-1] for p in range(1, _OVERSAMPLE)])
    toeplitz = np.zeros((b + k - 1, _OVERSAMPLE - 1, b), dtype=np.float32)
    for out in range(b):
        toeplitz[out:out + k, :, out] = phases.T
    return toeplitz.reshape(b + k - 1, -1), float(np.abs(phases).sum(axis=1).max())


@tabled
def _kaiser_lowpass(numtaps: int, cutoff: float, beta: float) -> np.ndarray:
    """`scipy.signal.firwin`: a Kaiser-windowed sinc low-pass, cutoff relative to Nyquist."""
    from scipy import signal

    return signal.firwin(numtaps, cutoff, window=("kaiser", beta))


def _padded(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """`x[:, start:stop]` as a new float32 array, zero outside x (past the track's ends)."""
    n = x.shape[1]
    lo, hi = max(start, 0), min(stop, n)
    out = np.zeros((x.shape[0], stop - start), dtype=np.float32)
    if hi > lo:
        out[:, lo - start:hi - start] = x[:, lo:hi]
    return out


def _abs_max(x: np.ndarray, start: int, stop: int) -> float:
    """Largest |x[:, start:stop]| over the channels; 0 for none (zero outside x)."""
    seg = x[:, max(start, 0):max(min(stop, x.shape[1]), 0)]
    return max(float(seg.max(initial=0.0)), -float(seg.min(initial=0.0)))


def _block_abs_max(blocks: np.ndarray) -> np.ndarray:
    """(channels, m, length) samples -> (m,) largest |sample| of each block over the channels."""
    return np.maximum(blocks.max(axis=2), -blocks.min(axis=2)).max(axis=0)


def _tp_candidates(x: np.ndarray, start: int, stop: int, *, floor: float) -> np.ndarray:
    """The blocks of [start, stop) (block i: the `_TP_BLOCK` samples from start + i * _TP_BLOCK)
    whose interpolated points might exceed `floor`: l1 x near > floor, l1 the largest phase L1
    norm and near the largest |x| over the channels in the block, its two neighbours and the
    interpolator's reach before the first block and after the last (zero outside x).

    x is read in place, mostly in long runs, and block by block only in groups of `_TP_GROUP`
    blocks whose largest |x| times l1 exceeds the floor. A block elsewhere counts as 0: its own
    largest |x| times l1 is at most the floor (float32 rounding is monotonic), so it cannot decide
    whether a near it is part of exceeds the floor."""
    _, l1 = _interpolator()
    k, b, g = _TAPS, _TP_BLOCK, _TP_GROUP
    channels, n = x.shape
    n_blocks = -(-(stop - start) // b)
    if n_blocks <= 0:
        return np.zeros(0, dtype=np.intp)
    whole = max(0, min(n_blocks, (n - start) // b)) // g * g   # blocks in whole groups inside x
    n_groups = whole // g
    groups = x[:, start:start + whole * b].reshape(channels, n_groups, g * b)
    block_max = np.zeros(n_blocks, dtype=np.float32)   # exact in groups not ruled out, else 0
    group_max = np.empty(n_groups, dtype=np.float32)
    piece = _TP_PIECE
    for a in range(0, n_groups, piece):
        group_max[a:a + piece] = _block_abs_max(groups[:, a:a + piece])
    if whole < n_blocks:   # fewer blocks than a group after the whole groups: looked at one by one
        rest = x[:, start + whole * b:start + n_blocks * b]
        if rest.shape[1] < (n_blocks - whole) * b:   # past x's end: zero-padded
            rest = _padded(x, start + whole * b, start + n_blocks * b)
        block_max[whole:] = _block_abs_max(rest.reshape(channels, -1, b))
    hot = np.flatnonzero(group_max * l1 > floor)
    if hot.size:
        in_groups = block_max[:whole].reshape(-1, g)
        for i in range(0, hot.size, piece):
            mag = groups[:, hot[i:i + piece]]
            np.abs(mag, out=mag)
            mag = mag.max(axis=0).reshape(-1)
            in_groups[hot[i:i + piece]] = np.maximum.reduceat(mag, np.arange(0, mag.size, b)).reshape(-1, g)
    end = start + n_blocks * b
    near = block_max.copy()
    near[1:] = np.maximum(near[1:], block_max[:-1])
    near[:-1] = np.maximum(near[:-1], block_max[1:])
    near[0] = max(near[0], _abs_max(x, start - (k // 2 - 1), start))
    near[-1] = max(near[-1], _abs_max(x, end, end + k // 2))
    return np.flatnonzero(near * l1 > floor)


def _tp_blocks(x: np.ndarray, start: int, stop: int, *,
               floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true-peak work on samples [start, stop) of x, done only in the blocks that might exceed
    `floor` (`_tp_candidates`; elsewhere every |x| and interpolated point is at most near x l1 <=
    floor): those blocks, their samples (channels, blocks, _TP_BLOCK) and the largest of the 3
    interpolated points after each sample, over the channels (blocks, _TP_BLOCK). The last block
    may run past `stop`: callers drop what lies there."""
    toeplitz, _ = _interpolator()
    k, b = _TAPS, _TP_BLOCK
    channels, n = x.shape
    width, left = b + k - 1, k // 2 - 1
    candidates = _tp_candidates(x, start, stop, floor=floor)
    if candidates.size == 0:
        return candidates, np.zeros((channels, 0, b), dtype=np.float32), np.zeros((0, b), dtype=np.float32)
    first = start - left + candidates * b
    edge = (first < 0) | (first + width > n)   # reaching past x: zero there
    if not edge.any():
        windows = sliding_window_view(x, width, axis=1)[:, first]
    else:
        windows = np.zeros((channels, candidates.size, width), dtype=np.float32)
        if n >= width:
            windows[:, ~edge] = sliding_window_view(x, width, axis=1)[:, first[~edge]]
        for i in np.flatnonzero(edge).tolist():
            windows[:, i] = _padded(x, int(first[i]), int(first[i]) + width)
    # one matrix product per call, rows channel by channel in block order: BLAS computes the last
    # few rows of a product with other kernels, which can round differently, so splitting,
    # merging or reordering products could change a result's last bit
    y = np.abs(windows.reshape(-1, width) @ toeplitz).reshape(channels, -1, _OVERSAMPLE - 1, b)
    between = y[:, :, 0]
    for p in range(1, _OVERSAMPLE - 1):
        np.maximum(between, y[:, :, p], out=between)
    return candidates, windows[:, :, left:left + b], between.max(axis=0)


def _tp_max(x: np.ndarray, start: int, stop: int, *, floor: float) -> float:
    """The largest of the interpolated points after samples [start, stop) if it exceeds `floor`;
    else at most `floor` (0 if none is computed). The true peak is its max with the sample peak
    whenever `floor` is at most the true peak (e.g. the sample peak itself)."""
    candidates, _, between = _tp_blocks(x, start, stop, floor=floor)
    if candidates.size == 0:
        return 0.0
    inside = stop - start - int(candidates[-1]) * _TP_BLOCK   # of the last block, in [start, stop)
    return max(float(between[:-1].max(initial=0.0)), float(between[-1, :inside].max()))


def _tp_over(x: np.ndarray, start: int, stop: int, *, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the true-peak envelope (per sample n: the largest of |x[n]| and the 3 interpolated
    points between n and n + 1, over the channels) exceeds `floor` in [start, stop): positions
    from start, in order, and the float32 envelope there."""
    candidates, samples, between = _tp_blocks(x, start, stop, floor=floor)
    b = _TP_BLOCK
    env = np.maximum(np.abs(samples).max(axis=0), between).reshape(-1)
    over = np.flatnonzero(env > floor)
    at = candidates[over // b] * b + over % b
    keep = at < stop - start
    return at[keep], env[over[keep]]


# ------------------------------------------------------------------------------------------------
# Look-ahead true-peak limiter


def _peaks(x: np.ndarray, chunks: list[tuple[int, int]], *, floor: float, sr: int,
           threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the true-peak envelope of x exceeds `floor` (sample positions, in order) and its
    values there. Few samples do; the limiter needs no others."""

    def one(bound):
        start, stop = bound
        at, level = _tp_over(x, start, stop, floor=floor)
        return at + start, level

    parts = thread_map(one, chunks, threads=threads)
    return (np.concatenate([at for at, _ in parts]) if parts else np.zeros(0, dtype=np.intp),
            np.concatenate([level for _, level in parts]) if parts else np.zeros(0))


def _lookahead(sr: int) -> int:
    return 2 * int(math.ceil(_LOOKAHEAD_S * sr / 2))


def _limit(x: np.ndarray, *, gain: float, threshold: float, sr: int,
           peaks: tuple[np.ndarray, np.ndarray], threads: int = 1) -> Mastered:
    """x * gain * g, g the limiter gain: no peak of x * gain * g above `threshold` (linear).
    `peaks` come from `_peaks` with a floor at or under threshold / gain. The result holds the
    stretches [a, b) where g < 1, in order (`lowered`), and the samples around them.

    Gain reduction (dB) needed at each sample is held over the look-ahead window ahead of it,
    released exponentially, then smoothed by two cascaded moving averages spanning the look-ahead;
    every sample in those averages already carries the full reduction of the peak, so the gain is
    fully down when the peak arrives and ramps down smoothly before it (no clipping). Offline, so
    the look-ahead costs no delay: out stays sample-aligned with x.

    The reduction is worked out only where it is not zero: around each peak over the threshold,
    from the look-ahead before it until its release falls under `_GR_FLOOR_DB` (and the smoothing
    after that). Such segments are independent, so they are worked on side by side (`threads`);
    elsewhere out is x * gain. On the shipped track about a tenth of the samples are in one."""
    n = x.shape[1]
    lookahead = _lookahead(sr)
    box = lookahead // 2 + 1              # two boxes of box samples span lookahead + 1 samples
    edge = 2 * (box - 1)                  # how far the smoothing reaches past a reduction
    width = lookahead + 2                 # peaks in [m - 1, m + lookahead] all limit sample m
    block = _CHUNK_HOPS * _hop(sr)
    fall = np.exp(-np.arange(block) / (_RELEASE_S * sr))   # fall[i] = fall[1] ** i
    at, level = peaks
    level = level * gain
    hot = level > threshold
    at, over_db = at[hot], 20.0 * np.log10(level[hot]) - gain_to_db(threshold)
    # a reduction under the floor is set to none, and cannot raise a later one above it (the
    # release only falls): peaks that need less can be left out
    keep = over_db >= _GR_FLOOR_DB
    at, over_db = at[keep], over_db[keep]
    if at.size == 0:
        return Mastered(x, gain=gain, patches=[], lowered=[])
    # peak p lowers samples p - lookahead .. p + 1, then its release falls under the floor
    release = np.ceil(np.log(over_db / _GR_FLOOR_DB) * (_RELEASE_S * sr)).astype(np.int64)
    segments: list[list[int]] = []
    for a, b in zip((at - lookahead).tolist(), (at + 2 + release).tolist()):
        if segments and a < segments[-1][1] + edge:   # their smoothing would meet: one segment
            segments[-1][1] = max(segments[-1][1], b)
        else:
            segments.append([a, b])

    def apply(start: int, smooth: np.ndarray, patches: list) -> list[tuple[int, int]]:
        smooth = smooth[:max(0, n - start)]
        lowered = np.flatnonzero(smooth > 0.0)
        if lowered.size == 0:
            return []
        lo, hi = start + lowered[0], start + lowered[-1] + 1
        patch = np.multiply(x[:, lo:hi], np.float32(gain))
        patch *= np.exp(smooth[lo - start:hi - start].astype(np.float32) * np.float32(-math.log(10.0) / 20.0))
        patches.append((int(lo), patch))
        breaks = np.flatnonzero(np.diff(lowered) > 1)
        firsts = np.r_[lowered[0], lowered[breaks + 1]] + start
        lasts = np.r_[lowered[breaks], lowered[-1]] + start + 1
        return list(zip(firsts.tolist(), lasts.tolist()))

    def segment(bounds: list[int]) -> tuple[list[tuple[int, int]], list]:
        """One segment, a block at a time: released reduction carried over, smoothing's history too."""
        a, b = max(0, bounds[0]), min(n, bounds[1])
        stretches: list[tuple[int, int]] = []
        patches: list = []
        carry, history = 0.0, np.zeros(edge)
        for start in range(a, b, block):
            stop = min(start + block, b)
            need = np.zeros(stop - start + 1 + lookahead)    # for samples start - 1 .. stop + lookahead
            lo, hi = np.searchsorted(at, (start - 1, stop + lookahead))
            need[at[lo:hi] - (start - 1)] = over_db[lo:hi]
            held = kernels.maximum_filter1d(need, width)
            held = held[width // 2:width // 2 + stop - start]
            # release: r[m] = max(held[m], r[m-1] * fall[1]), solved as a running max of held / fall
            f = fall[:stop - start]
            released = np.maximum.accumulate(held / f)
            released *= f
            if carry:
                np.maximum(released, carry * fall[1] * f, out=released)
            carry = float(released[-1])
            released[released < _GR_FLOOR_DB] = 0.0
            history = np.concatenate((history, released))
            stretches += apply(start, _trailing_mean(_trailing_mean(history, box), box), patches)
            history = history[-edge:]
        # the smoothing runs on past the segment's last reduction
        tail = _trailing_mean(_trailing_mean(np.concatenate((history, np.zeros(edge))), box), box)
        return stretches + apply(b, tail, patches), patches

    parts = thread_map(segment, segments, threads=threads)
    return Mastered(x, gain=gain, patches=[p for _, patches in parts for p in patches],
                    lowered=[s for stretches, _ in parts for s in stretches])


def _trailing_mean(values: np.ndarray, length: int) -> np.ndarray:
    """Mean of each `length` consecutive values, ending at each index from `length - 1` on."""
    centred = kernels.uniform_filter1d(values, length)
    lag = length // 2
    trailing = centred[lag:lag + values.size - length + 1]
    trailing[trailing < 1e-9] = 0.0  # running-sum rounding where the values are all zero
    return trailing

"""Building blocks for streamed soundscapes: fixed-size chunks, stateful filters, smooth random curves, events.

Every generated bed is rendered in fixed chunks of `CHUNK` samples, one after another, whatever block
sizes the caller reads. Chunk k draws its random numbers from a generator seeded by (seed, salt, k), filters
carry their state from chunk to chunk, slow curves are defined by absolute sample time, and events that
ring past the end of a chunk are carried into the next one. So `read(a)` then `read(b)` is bitwise the same
audio as `read(a + b)`, and a source holds one chunk plus an event tail (and, just after its first opening,
the calibration minute it has not played yet), never the whole track.

Speed: the audio path is float32 (24-bit mantissa: rounding sits ~140 dB under the signal) and filters run
in place. A stateful IIR filter costs about the same per sample for one to three second-order sections
(its cost is the recursion's latency, not the arithmetic), so recipes cascade sections where they can and
run narrow layers at a quarter rate.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from functools import lru_cache
from typing import Callable

import numpy as np

from ..designs import tabled
from ..kernels import sosfilt_in_place


CHUNK = 1 << 18  # samples per render step: ~6 s at 44.1 kHz; per-call overhead fades, and it still streams
CTRL = 256       # samples per control point for slow gains: 5.8 ms, a tenth of the fastest modulation (>= 50 ms)

_U64 = 1 << 64
F32 = np.float32


def seed_words(seed: int, salt: int) -> tuple[int, int]:
    """A seed (any int, even negative) and a per-generator salt as SeedSequence entropy."""
    return (seed % _U64, salt)


_SIDE = None


def side_thread():
    """One worker thread per process for a recipe's GIL-free work (a long filter) beside its own;
    results never depend on it, only the time does."""
    global _SIDE
    if _SIDE is None:
        from concurrent.futures import ThreadPoolExecutor

        _SIDE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calmplace-bed-side")
    return _SIDE


class ChunkedBed:
    """A stereo `BedSource` that renders fixed chunks in order and serves reads of any size from them.

    Subclasses implement `_chunk(k, out)`, which renders chunk k into `out` (a (2, CHUNK) float32 array
    whose contents are arbitrary: the memory of a chunk already served) and returns it; it is called for
    k = 0, 1, 2, ... in order. `gain` is applied as the samples are served, so chunks rendered ahead for
    calibration are kept exactly as `_chunk` made them.
    """

    def __init__(self, *, sr: int, seed: int, salt: int):
        self.sr = int(sr)
        self.seed = int(seed)
        self._words = seed_words(seed, salt)
        self.gain = 1.0          # set once by calibration; applied to every chunk alike
        self._k = 0              # next chunk to render
        self._queue: deque[np.ndarray] = deque()   # chunks rendered ahead (calibration), not yet served
        self._cur = np.zeros((2, 0), dtype=F32)    # the chunk being served
        self._pos = 0                              # samples of _cur already served
        self._spare: np.ndarray | None = None      # a served chunk's array, to render the next one into
        self._scratch: dict[str, np.ndarray] = {}

    def rng(self, k: int, stream: int = 0) -> np.random.Generator:
        """The random generator for chunk k (independent stream per purpose)."""
        return np.random.default_rng([*self._words, stream, k])

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Render chunk k into `out`, a (2, CHUNK) float32 array of arbitrary contents; return it."""
        raise NotImplementedError

    def scratch(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 work array kept from chunk to chunk (contents arbitrary): allocating and freeing
        megabytes per chunk costs page faults and cache misses."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != shape:
            buf = self._scratch[name] = np.empty(shape, dtype=F32)
        return buf

    def render_next(self) -> np.ndarray:
        """Render the next chunk in order, (2, CHUNK) float32 without the gain."""
        out, self._spare = self._spare, None
        if out is None:
            out = np.empty((2, CHUNK), dtype=F32)
        block = self._chunk(self._k, out)
        if block is not out:   # a recipe that made its own array: keep it, with the right type
            block = np.array(block, dtype=F32, order="C")
        self._k += 1
        return block

    def prime(self, chunks: list[np.ndarray]) -> None:
        """Queue chunks already taken from `render_next` (for calibration) to be served before any new one."""
        assert self._pos == self._cur.shape[1] and not self._queue and self._k == len(chunks)
        self._queue.extend(chunks)

    def read(self, n_samples: int) -> np.ndarray:
        """The next (2, n_samples) float32 block."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        out = np.empty((2, n_samples), dtype=F32)
        gain = F32(self.gain)
        done = 0
        while done < n_samples:
            if self._pos >= self._cur.shape[1]:
                if self._cur.shape == (2, CHUNK):
                    self._spare = self._cur     # fully served: its memory takes the next chunk
                self._cur = self._queue.popleft() if self._queue else self.render_next()
                self._pos = 0
            take = min(n_samples - done, self._cur.shape[1] - self._pos)
            np.multiply(self._cur[:, self._pos: self._pos + take], gain, out=out[:, done: done + take])
            done += take
            self._pos += take
        return out


class Sos:
    """A second-order-sections filter that keeps its state between calls, for (channels, n) float32 blocks."""

    def __init__(self, sos: np.ndarray, *, channels: int = 2):
        self.sos = np.ascontiguousarray(np.atleast_2d(sos), dtype=F32)
        self.zi = np.zeros((channels, self.sos.shape[0], 2), dtype=F32)

    def inplace(self, x: np.ndarray) -> np.ndarray:
        """Filter x, a C-contiguous (channels, n) float32 array, in place; returns x."""
        self.zi = sosfilt_in_place(self.sos, x, self.zi)
        return x

    def driven(self, x: np.ndarray, gain: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The filter driven by gain * x, into `out` (C-contiguous float32, x's shape); x is left as it was.

        For slow gains (swells, gusts: >= 50 ms) and filters that ring for a few milliseconds this is the
        filtered x times the gain, one pass over memory cheaper than copying x and scaling afterwards."""
        np.multiply(x, gain, out=out)
        return self.inplace(out)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """x filtered, into `out` (C-contiguous float32, x's shape) or a new array; x is left as it was."""
        if out is None:
            return self.inplace(np.array(x, dtype=F32, order="C"))
        np.copyto(out, x)
        return self.inplace(out)


_CONVOLVE_TAPS = 11   # numpy.convolve has an unrolled loop for kernels up to 11 taps, ~5x faster than longer ones


def _fir(x: np.ndarray, g: np.ndarray, n: int) -> np.ndarray:
    """y[i] = sum_q g[q] x[i + len(g) - 1 - q] for i < n, x being (n + len(g) - 1,): numpy.convolve's
    'valid' part, run in pieces of at most _CONVOLVE_TAPS taps."""
    taps = len(g)
    y = None
    for j in range(0, taps, _CONVOLVE_TAPS):
        piece = g[j: j + _CONVOLVE_TAPS]
        start = taps - j - len(piece)
        part = np.convolve(x[start: start + n + len(piece) - 1], piece, mode="valid")
        if y is None:
            y = part
        else:
            y += part
    return y


class StereoSos:
    """A one-section stereo filter run as one complex signal, left + i right: the two channels' recursions
    then run side by side and the pass costs ~0.65 of two real ones. (With more sections the complex
    arithmetic outweighs it; with real coefficients the result is bitwise that of the real filter.)"""

    def __init__(self, sos: np.ndarray):
        self.sos = np.ascontiguousarray(np.atleast_2d(sos), dtype=np.complex64)
        self.zi = np.zeros((1, self.sos.shape[0], 2), dtype=np.complex64)
        self._buf = np.zeros((0, 2), dtype=F32)

    def add_driven(self, x: np.ndarray, gain: np.ndarray, out: np.ndarray, *, replace: bool = False) -> np.ndarray:
        """out += (or, with replace, out =) the filter driven by gain * x; x, gain (broadcastable) and out
        are (2, n) float32. For slow gains this is the filtered x times the gain (see `Sos.driven`)."""
        n = x.shape[1]
        if self._buf.shape[0] != n:
            self._buf = np.empty((n, 2), dtype=F32)
        buf = self._buf
        gain = np.broadcast_to(gain, x.shape)
        for c in (0, 1):
            np.multiply(x[c], gain[c], out=buf[:, c])
        z = buf.reshape(-1).view(np.complex64).reshape(1, n)
        self.zi = sosfilt_in_place(self.sos, z, self.zi)
        for c in (0, 1):
            if replace:
                out[c] = buf[:, c]
            else:
                out[c] += buf[:, c]
        return out


@lru_cache(maxsize=16)
@tabled
def _halfband(rate: float, pass_hz: float, min_rejection_db: float) -> np.ndarray:
    """The taps of the filtering phase of a half-band interpolator from rate / 2 to `rate`, gain 2.

    An equiripple low-pass with bands symmetric about rate / 4 (pass to `pass_hz`, stop from
    rate / 2 - pass_hz) is half-band: every other tap is zero but the centre one (1/2), so one output
    phase is the input itself, delayed, and only the other needs a convolution. The length grows
    until the stop band is `min_rejection_db` down (the pass band ripple is then far smaller)."""
    from scipy import signal

    for length in range(7, 400, 4):   # 4K - 1 taps: the centre one sits at an odd index
        h = signal.remez(length, [0.0, pass_hz, 0.5 * rate - pass_hz, 0.5 * rate], [1.0, 0.0], fs=rate)
        centre = (length - 1) // 2
        h[centre + 2:: 2] = 0.0
        h[centre - 2:: -2] = 0.0
        h[centre] = 0.5
        w, resp = signal.freqz(h, worN=1 << 14, fs=rate)
        if -20 * np.log10(np.abs(resp[w >= 0.5 * rate - pass_hz]).max() + 1e-30) >= min_rejection_db:
            return (2.0 * h[0::2]).astype(F32)
    raise ValueError(f"no half-band interpolator at {rate} Hz")  # pragma: no cover


class Upsampler:
    """Stateful upsampler by 2 or 4 for layers rendered at a lower rate (resonator banks and events < ~3 kHz).

    One or two half-band FIR stages, each doubling the rate: one output phase is the input delayed, the other
    a short convolution, and each stage carries its last taps from call to call, so chunk joins stay exact.
    The first stage passes up to `cutoff_hz` (0.8 of the low Nyquist at most) and puts the images of that
    band at least 64 dB down (at 44.1 kHz: 27 taps, 67 dB); the second passes up to 1.3 times that, where
    the guard below is 70 dB down, and puts its own images at least as far down (11 taps). Running a bank
    of filters at a quarter rate makes them about four times cheaper, and this costs less than one IIR
    pass at the full rate.

    Use: write the low-rate signal into `low(n)`, then `add_to(out)` adds the upsampled signal to out.
    Filtered layers that reach above the pass band end with the `guard` sections (a 4th-order elliptic
    low-pass at the pass band edge, 70 dB down from ~1.3 times it), so the low-rate signal has nothing
    between the pass band and its Nyquist to leak through the half-band transition. Cascaded onto a
    layer's own filter they cost next to nothing: a filter pass costs the same for one to three sections.
    """

    REJECTION_DB = 64.0
    GUARD_REACH = 1.3

    def __init__(self, factor: int, *, sr: int, cutoff_hz: float, channels: int = 2):
        self.factor = int(factor)
        if self.factor not in (1, 2, 4):
            raise ValueError(f"upsampling factor must be 1, 2 or 4, got {factor}")
        self.channels = channels
        self._taps: list[np.ndarray] = []      # each stage's filtering phase
        rate = sr / self.factor
        fp = min(float(cutoff_hz), 0.4 * rate)
        while rate < sr:
            rate *= 2
            self._taps.append(_halfband(rate, fp, self.REJECTION_DB))
            # later stages pass what the guard lets through (it is 70 dB down at 1.3 times the pass band)
            fp = min(self.GUARD_REACH * fp, 0.4 * rate)
        self._n = 0
        self._inputs: list[np.ndarray] = []    # per stage: carried input, then this call's input
        low_sr = sr / self.factor
        self.pass_hz = min(float(cutoff_hz), 0.4 * low_sr)
        self.guard = ellip_lowpass(4, 0.1, 70.0, self.pass_hz, low_sr) if self._taps else np.zeros((0, 6))

    def low(self, n: int) -> np.ndarray:
        """The (channels, n) buffer to write this call's low-rate signal into (contents arbitrary)."""
        if n != self._n:
            carried = [x[:, : len(g) - 1] for x, g in zip(self._inputs, self._taps)] or \
                [np.zeros((self.channels, len(g) - 1), dtype=F32) for g in self._taps]
            self._inputs = [np.concatenate([c, np.zeros((self.channels, n << s), dtype=F32)], axis=1)
                            for s, c in enumerate(carried)]
            if not self._taps:
                self._inputs = [np.zeros((self.channels, n), dtype=F32)]
            self._n = n
        x = self._inputs[0]
        return x[:, x.shape[1] - n:]

    def add_to(self, out: np.ndarray) -> np.ndarray:
        """Upsample the signal written into `low` and add it to out, (channels, n * factor)."""
        if not self._taps:
            out += self._inputs[0]
            return out
        last = len(self._taps) - 1
        for s, (g, x) in enumerate(zip(self._taps, self._inputs)):
            keep, n = len(g) - 1, self._n << s
            half = len(g) // 2
            if s < last:
                nxt = self._inputs[s + 1]
                dest = nxt[:, nxt.shape[1] - 2 * n:]
                for c in range(self.channels):
                    dest[c, 0::2] = _fir(x[c], g, n)
                dest[:, 1::2] = x[:, half: half + n]       # the centre tap: the input, delayed
            else:
                for c in range(self.channels):
                    out[c, 0::2] += _fir(x[c], g, n)
                out[:, 1::2] += x[:, half: half + n]
            x[:, :keep] = x[:, n:]                         # carried to the next call
        return out

    def __call__(self, low: np.ndarray) -> np.ndarray:
        """The upsampled signal as a new array."""
        self.low(low.shape[1])[...] = low
        return self.add_to(np.zeros((self.channels, low.shape[1] * self.factor), dtype=F32))


def low_rate_factor(sr: int) -> int:
    """4 at 32 kHz and above (the low rate stays >= 8 kHz, room for a bank below 4 kHz), else 1."""
    return 4 if sr >= 32000 else 1


def hz(f_hz: float, *, sr: int) -> float:
    """Clamp a design frequency below Nyquist so the recipes also build at low sample rates."""
    return min(float(f_hz), 0.45 * sr)


def butter(order: int, f_hz, btype: str, *, sr: int) -> np.ndarray:
    """A Butterworth filter as second-order sections (`scipy.signal.butter`), its band edges
    clamped below Nyquist."""
    f = tuple(hz(x, sr=sr) for x in f_hz) if isinstance(f_hz, (list, tuple)) else hz(f_hz, sr=sr)
    return _butter(order, f, btype, sr)


@tabled
def _butter(order: int, f_hz, btype: str, sr: int) -> np.ndarray:
    from scipy import signal

    return signal.butter(order, list(f_hz) if isinstance(f_hz, tuple) else f_hz, btype=btype, fs=sr, output="sos")


@tabled
def ellip_lowpass(order: int, ripple_db: float, stop_db: float, f_hz: float, sr: float) -> np.ndarray:
    """An elliptic low-pass as second-order sections (`scipy.signal.ellip`)."""
    from scipy import signal

    return signal.ellip(order, ripple_db, stop_db, f_hz, fs=sr, output="sos")


@tabled
def tf2sos(b, a) -> np.ndarray:
    """A transfer function as second-order sections (`scipy.signal.tf2sos`)."""
    from scipy import signal

    return signal.tf2sos(list(b), list(a))


def resonator(f_hz: float, q: float, *, sr: int) -> np.ndarray:
    """A two-pole band-pass with unit gain at f_hz (RBJ cookbook constant-peak band-pass), as one
    second-order section: its coefficients, normalised (a recipe may draw f_hz at random, so this
    is computed, not looked up: tf2sos would go through the roots and back for the same filter)."""
    w0 = 2 * np.pi * hz(f_hz, sr=sr) / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return np.concatenate((b / a[0], a / a[0]))[np.newaxis]


_UNIT_INT8 = 1.0 / np.sqrt((256.0 ** 2 - 1.0) / 12.0)   # uniform int8 -> unit variance


def white(rng: np.random.Generator, n_samples: int, *, corr: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """(2, n) float32 unit-variance white noise whose channels correlate by `corr` (into `out` if given).

    Uniform noise of 8-bit resolution, eight samples per 64-bit draw of the bit generator: the draws are
    what costs, and every recipe filters this noise, which makes it Gaussian and continuous anyway
    (central limit; the 256 levels are those of the noise itself, not a rounding of some signal). Its
    mean is half a step below zero (-43 dB re its RMS), and every recipe's filter removes DC.
    R = corr * L + sqrt(1 - corr^2) * independent.
    """
    raw = rng.bit_generator.random_raw((2 * n_samples + 7) // 8)
    ints = raw.view(np.int8)[: 2 * n_samples].reshape(2, n_samples)
    if out is None:
        out = np.empty((2, n_samples), dtype=F32)
    np.multiply(ints, F32(_UNIT_INT8), out=out, dtype=F32)
    if corr:   # in place, without a temporary: R = corr * (sqrt(1 - corr^2) / corr * R + L)
        out[1] *= F32(np.sqrt(1.0 - corr * corr) / corr)
        out[1] += out[0]
        out[1] *= F32(corr)
    return out


def pan_gains(pan: np.ndarray) -> np.ndarray:
    """Constant-power pan law: pan in [-1, 1] -> (2, N) gains with gL^2 + gR^2 = 1."""
    theta = (np.minimum(np.maximum(pan, -1.0), 1.0) + 1.0) * (np.pi / 4)
    return np.stack([np.cos(theta), np.sin(theta)])


def ramp_up(ctrl: np.ndarray, step: int = CTRL, out: np.ndarray | None = None) -> np.ndarray:
    """Control-rate values (..., m + 1) -> sample-rate values (..., m * step), linearly interpolated
    (into `out` if given).

    float32: these are gains, and float32 makes this six times faster than float64.
    """
    ctrl = np.asarray(ctrl, dtype=F32)
    shape = (*ctrl.shape[:-1], (ctrl.shape[-1] - 1) * step)
    if out is None:
        out = np.empty(shape, dtype=F32)
    start = ctrl[..., :-1, None]
    ramp = out.reshape(*ctrl.shape[:-1], ctrl.shape[-1] - 1, step)
    np.multiply(ctrl[..., 1:, None] - start, _frac(step), out=ramp)
    ramp += start
    return out


@lru_cache(maxsize=8)
def _frac(step: int) -> np.ndarray:
    return np.arange(step, dtype=F32) / F32(step)


def ctrl_times(k: int, *, n: int = CHUNK, step: int = CTRL) -> np.ndarray:
    """Absolute sample times of the control points covering chunk k (both ends included)."""
    return k * n + np.arange(0, n + 1, step, dtype=np.float64)


class SmoothRandom:
    """Smooth random curves in [0, 1], functions of absolute time (value noise).

    Uniform random knots every `period_s`, joined by Catmull-Rom splines (continuous slope, no kinks that
    would sound like steps). Knot j depends only on (seed, salt, j), so a curve is the same whatever the
    chunking. `words` is one entropy tuple (one curve: `at` returns t's shape) or a list of them (several
    independent curves with the same period, evaluated together: `at` returns (curves, *t.shape)).
    """

    _BLOCK = 256  # knots drawn per random generator

    def __init__(self, words, *, period_s: float, sr: int):
        self._several = isinstance(words, list)
        self._words = [tuple(w) for w in words] if self._several else [tuple(words)]
        self.period = period_s * sr
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _block(self, b: int) -> np.ndarray:
        """(4, curves, BLOCK) cubic coefficients of the spline on [j, j + 1) for the knots j of block b."""
        coef = self._cache.get(b)
        if coef is None:
            v = np.concatenate([self._knots(b * self._BLOCK - 1, b * self._BLOCK),
                                self._knots_of(b), self._knots_of(b + 1)[:, :2]], axis=1)
            p0, p1, p2, p3 = v[:, :-3], v[:, 1:-2], v[:, 2:-1], v[:, 3:]
            coef = np.stack([0.5 * (3 * (p1 - p2) + p3 - p0), p0 - 2.5 * p1 + 2 * p2 - 0.5 * p3, 0.5 * (p2 - p0), p1])
            self._cache[b] = coef
            if len(self._cache) > 4:
                self._cache.popitem(last=False)
        return coef

    def _knots_of(self, b: int) -> np.ndarray:
        """The uniform knots of block b, (curves, BLOCK): knot j depends on (words, j // BLOCK) only."""
        return np.stack([np.random.default_rng([*w, b % _U64]).random(self._BLOCK) for w in self._words])

    def _knots(self, j0: int, j1: int) -> np.ndarray:
        """Knots j0 .. j1 - 1 of every curve, (curves, j1 - j0)."""
        b0, b1 = j0 // self._BLOCK, (j1 - 1) // self._BLOCK
        vals = np.concatenate([self._knots_of(b) for b in range(b0, b1 + 1)], axis=1)
        start = j0 - b0 * self._BLOCK
        return vals[:, start: start + j1 - j0]

    def at(self, t_samples: np.ndarray) -> np.ndarray:
        u = np.asarray(t_samples, dtype=np.float64) / self.period
        j = np.floor(u)
        f = u - j
        j = j.astype(np.int64)
        b0, b1 = int(j.min()) // self._BLOCK, int(j.max()) // self._BLOCK
        if b0 == b1:
            coef = self._block(b0)
        else:
            coef = np.concatenate([self._block(b) for b in range(b0, b1 + 1)], axis=-1)
        # the spline on [j, j + 1) is a cubic in f; Horner (np.take: a C-ordered result, fast to work on)
        a, b, c, d = np.take(coef, j - b0 * self._BLOCK, axis=2)
        a *= f
        a += b
        a *= f
        a += c
        a *= f
        a += d
        np.maximum(a, 0.0, out=a)
        np.minimum(a, 1.0, out=a)
        return a if self._several else a[0]


class Leveller:
    """Gain that cancels level drift slower than `window_s`: 1 / sqrt(moving mean of a power curve).

    A smooth random modulator sometimes idles low or high for a minute, which would make one minute
    of a bed a dB or two louder than the next. `power_at(t)` gives the bed's expected power at absolute
    times t (e.g. the square of its gust envelope); its centred moving mean is taken on a fixed grid of
    absolute times, so the result too depends on absolute time only. Gusts and swells inside the window
    are untouched; only their long-run average is held steady. `power_at` must work point by point (its
    value at t may not depend on the other times asked): grid points already evaluated are reused.
    """

    def __init__(self, power_at: Callable[[np.ndarray], np.ndarray], *, sr: int, window_s: float = 30.0,
                 grid_s: float = 0.5):
        self.power_at = power_at
        self.grid = grid_s * sr
        self.half = int(round(window_s / grid_s / 2))
        self._first = 0                      # grid index of _power[..., 0]
        self._power: np.ndarray | None = None

    AHEAD = 64   # grid points evaluated past the last one asked for, so power_at runs once per ~30 s

    def _grid_power(self, first: int, last: int) -> np.ndarray:
        """power_at on grid points first .. last, from a cache that runs AHEAD points ahead."""
        have = self._power
        if have is None or first < self._first or last >= self._first + have.shape[-1]:
            start = first if have is None or first < self._first or first > self._first + have.shape[-1] \
                else self._first + have.shape[-1]
            more = np.asarray(self.power_at(np.arange(start, last + self.AHEAD + 1) * self.grid), dtype=np.float64)
            if start == first:
                have = more
            else:
                have = np.concatenate([have[..., first - self._first:], more], axis=-1)
            self._first, self._power = first, have
        elif first > self._first + self.AHEAD:   # drop what no later chunk can ask for
            self._power = have = have[..., first - self._first:]
            self._first = first
        return have[..., first - self._first: last + 1 - self._first]

    def at(self, t_samples: np.ndarray) -> np.ndarray:
        t = np.asarray(t_samples, dtype=np.float64)
        first = int(np.floor(t.min() / self.grid)) - self.half
        last = int(np.ceil(t.max() / self.grid)) + self.half
        power = self._grid_power(first, last)
        width = 2 * self.half + 1
        sums = np.concatenate([np.zeros(power.shape[:-1] + (1,)), np.cumsum(power, axis=-1)], axis=-1)
        mean = (sums[..., width:] - sums[..., :-width]) / width          # centred on grid points half..
        centres = (np.arange(first + self.half, last - self.half + 1)) * self.grid
        norm = 1.0 / np.sqrt(np.maximum(mean, 1e-12))
        if norm.ndim == 1:
            return np.interp(t, centres, norm)
        return np.stack([np.interp(t, centres, row) for row in norm.reshape(-1, norm.shape[-1])]).reshape(
            norm.shape[:-1] + t.shape)


class EventBus:
    """Overlap-adds short events into chunks of n samples; what rings past a chunk's end is carried into
    the next. float32, in one buffer kept from chunk to chunk (only the stretch events reached is cleared
    and carried), interleaved (sample, channel): each event is then one contiguous run of memory, and an
    add per event costs half of what it does on two separate channel rows."""

    def __init__(self, *, tail_samples: int, n: int = CHUNK):
        self.tail = int(tail_samples)
        self.n = int(n)
        self._buf = np.zeros((self.n + self.tail, 2), dtype=F32)
        self._flat = self._buf.reshape(-1)
        self._pending = np.zeros((0, 2), dtype=F32)
        self._used = 0    # samples of _buf that may be non-zero
        self._reach = 0
        self._open = False

    def begin(self) -> None:
        self._buf[: self._used] = 0.0
        p = self._pending.shape[0]
        self._buf[:p] = self._pending
        self._reach = self._used = p
        self._open = True

    def add(self, onsets: np.ndarray, waves: np.ndarray, gains: np.ndarray) -> None:
        """Add N mono events `waves` (N, L) starting at `onsets` (N,), chunk-relative, with (2, N) gains."""
        if len(onsets) == 0:
            return
        assert self._open
        onsets = np.asarray(onsets, dtype=np.int64)
        length = waves.shape[1]
        if onsets.min() < 0 or onsets.max() + length > self._buf.shape[0]:
            raise ValueError("event outside the chunk plus its tail")
        self._reach = max(self._reach, int(onsets.max()) + length)
        # (N, L, 2): every event in both channels at once, then one slice add per event (faster than a
        # scatter, and each slice is contiguous)
        gains = np.asarray(gains, dtype=F32)
        stereo = np.empty((len(onsets), length, 2), dtype=F32)
        for c in (0, 1):   # one channel at a time: numpy loops fast over L, slowly over a last axis of 2
            np.multiply(waves, gains[c][:, None], out=stereo[:, :, c])
        stereo = stereo.reshape(len(onsets), -1)
        flat, add, size = self._flat, np.add, 2 * length
        for start, wave in zip((2 * onsets).tolist(), stereo):
            run = flat[start: start + size]
            add(run, wave, out=run)

    def add_from(self, bank: np.ndarray, index: np.ndarray, onsets: np.ndarray, gains: np.ndarray) -> None:
        """Like `add`, event i being the prototype bank[index[i]] of a (P, L) bank."""
        if len(onsets):
            self.add(onsets, bank[index], gains)

    def end(self) -> np.ndarray:
        """The chunk's (2, n) samples: a view, valid until the next `begin`."""
        assert self._open
        self._open = False
        self._used = max(self._reach, self.n)
        self._pending = self._buf[self.n: self._used].copy()
        return self._buf[: self.n].T


def poisson_onsets(rng: np.random.Generator, *, rate_hz: float, sr: int, n: int = CHUNK) -> np.ndarray:
    """Sorted onsets (chunk-relative samples) of a Poisson process at `rate_hz` over n samples."""
    count = rng.poisson(rate_hz * n / sr)
    return np.sort(rng.integers(0, n, size=count))


def event_envelope(length: int, *, attack: np.ndarray, decay: np.ndarray) -> np.ndarray:
    """(N, length) float32 envelopes: raised-cosine attack, exponential decay, raised-cosine fade-out
    over the last 25 %.

    Every event starts and ends at exactly zero with a smooth slope, so none of them can click.
    `attack` and `decay` are per-event time constants in samples.
    """
    t = np.arange(length, dtype=F32)
    att = np.maximum(np.asarray(attack, dtype=F32), 1.0)[:, None]
    inv_decay = (1.0 / np.maximum(np.asarray(decay, dtype=F32), 1.0))[:, None]
    env = np.exp(np.minimum((att - t) * inv_decay, 0.0))         # 1 during the attack, then decays
    head = min(int(np.ceil(att.max())), length)
    u = np.minimum(t[:head] / att, 1.0)
    env[:, :head] *= 0.5 - 0.5 * np.cos(np.pi * u)
    env *= _taper(length)
    return env


def _taper(length: int) -> np.ndarray:
    tail_start = int(length * 0.75)
    taper = np.ones(length, dtype=F32)
    taper[tail_start:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(length - tail_start) / (length - tail_start))
    return taper

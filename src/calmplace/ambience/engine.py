"""Building blocks for streamed soundscapes: fixed-size chunks, stateful filters, smooth random curves, events.

Every generated bed is rendered in fixed chunks of `CHUNK` samples, one after another, whatever block
sizes the caller reads. Chunk k draws its random numbers from a generator seeded by (seed, salt, k), filters
carry their state (`sosfilt` zi) from chunk to chunk, slow curves are defined by absolute sample time, and
events that ring past the end of a chunk are carried into the next one. So `read(a)` then `read(b)` is
bitwise the same audio as `read(a + b)`, and a source holds one chunk plus an event tail (and, just
after its first opening, the calibration minute it has not played yet), never the whole track.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np
from scipy import signal

CHUNK = 1 << 16  # samples per render step: ~1.5 s at 44.1 kHz, long enough to vectorise, short enough to stream
CTRL = 64        # samples per control point for slow gains: 1.45 ms, far below any modulation we draw (>= 50 ms)

_U64 = 1 << 64


def seed_words(seed: int, salt: int) -> tuple[int, int]:
    """A seed (any int, even negative) and a per-generator salt as SeedSequence entropy."""
    return (seed % _U64, salt)


class ChunkedBed:
    """A stereo `BedSource` that renders fixed chunks in order and serves reads of any size from them.

    Subclasses implement `_chunk(k)` -> (2, CHUNK) float64, called for k = 0, 1, 2, ... in order.
    """

    def __init__(self, *, sr: int, seed: int, salt: int):
        self.sr = int(sr)
        self.seed = int(seed)
        self._words = seed_words(seed, salt)
        self.gain = 1.0          # set once by calibration; applied to every chunk alike
        self._k = 0              # next chunk to render
        self._buf = np.zeros((2, 0), dtype=np.float32)

    def rng(self, k: int, stream: int = 0) -> np.random.Generator:
        """The random generator for chunk k (independent stream per purpose)."""
        return np.random.default_rng([*self._words, stream, k])

    def _chunk(self, k: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def prime(self, chunks: list[np.ndarray]) -> None:
        """Queue chunks 0..m-1, already rendered (for calibration), exactly as `read` would make them."""
        assert self._k == 0 and self._buf.shape[1] == 0
        self._buf = np.concatenate([(c * self.gain).astype(np.float32) for c in chunks], axis=1)
        self._k = len(chunks)

    def read(self, n_samples: int) -> np.ndarray:
        """The next (2, n_samples) float32 block."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        pieces = [self._buf]
        have = self._buf.shape[1]
        while have < n_samples:
            block = self._chunk(self._k) * self.gain
            self._k += 1
            pieces.append(block.astype(np.float32))
            have += block.shape[1]
        whole = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
        self._buf = whole[:, n_samples:]
        return np.ascontiguousarray(whole[:, :n_samples])


class Sos:
    """A second-order-sections filter that keeps its state between calls (stereo or mono)."""

    def __init__(self, sos: np.ndarray, *, channels: int = 2):
        self.sos = np.atleast_2d(np.asarray(sos, dtype=np.float64))
        shape = (self.sos.shape[0], channels, 2) if channels > 1 else (self.sos.shape[0], 2)
        self.zi = np.zeros(shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = signal.sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y


class Upsampler:
    """Stateful integer upsampler for layers rendered at a lower rate (resonator banks below ~3 kHz).

    Zero-stuffing then an 8th-order elliptic low-pass (0.1 dB ripple, 80 dB stop band) whose state is
    carried like any other filter, so chunk joins stay exact. Parallel filters cost per sample and per
    call, so running a bank of them at a quarter rate makes those layers about four times cheaper.
    """

    def __init__(self, factor: int, *, sr: int, cutoff_hz: float):
        self.factor = int(factor)
        self.lowpass = Sos(signal.ellip(8, 0.1, 80.0, hz(cutoff_hz, sr=sr), fs=sr, output="sos")) \
            if self.factor > 1 else None

    def __call__(self, low: np.ndarray) -> np.ndarray:
        if self.lowpass is None:
            return low
        up = np.zeros(low.shape[:-1] + (low.shape[-1] * self.factor,))
        up[..., :: self.factor] = low * self.factor
        return self.lowpass(up)


def low_rate_factor(sr: int) -> int:
    """4 at 32 kHz and above (the low rate stays >= 8 kHz, room for a bank below 4 kHz), else 1."""
    return 4 if sr >= 32000 else 1


def hz(f_hz: float, *, sr: int) -> float:
    """Clamp a design frequency below Nyquist so the recipes also build at low sample rates."""
    return min(float(f_hz), 0.45 * sr)


def butter(order: int, f_hz, btype: str, *, sr: int) -> np.ndarray:
    f = [hz(x, sr=sr) for x in f_hz] if isinstance(f_hz, (list, tuple)) else hz(f_hz, sr=sr)
    return signal.butter(order, f, btype=btype, fs=sr, output="sos")


def resonator(f_hz: float, q: float, *, sr: int) -> np.ndarray:
    """A two-pole band-pass with unit gain at f_hz (RBJ cookbook constant-peak band-pass)."""
    w0 = 2 * np.pi * hz(f_hz, sr=sr) / sr
    alpha = np.sin(w0) / (2 * q)
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return signal.tf2sos(b / a[0], a / a[0])


def white(rng: np.random.Generator, n_samples: int, *, corr: float = 0.0) -> np.ndarray:
    """(2, n) unit-variance white noise whose channels correlate by `corr`.

    Uniform noise: four times cheaper to draw than Gaussian, and every recipe filters it, which makes
    it Gaussian anyway (central limit). R = corr * L + sqrt(1 - corr^2) * independent.
    """
    u = (rng.random((2, n_samples), dtype=np.float32) - np.float32(0.5)) * np.float32(np.sqrt(12.0))
    u = u.astype(np.float64)
    if corr:
        u[1] = corr * u[0] + np.sqrt(1.0 - corr * corr) * u[1]
    return u


def pan_gains(pan: np.ndarray) -> np.ndarray:
    """Constant-power pan law: pan in [-1, 1] -> (2, N) gains with gL^2 + gR^2 = 1."""
    theta = (np.clip(pan, -1.0, 1.0) + 1.0) * (np.pi / 4)
    return np.stack([np.cos(theta), np.sin(theta)])


def ramp_up(ctrl: np.ndarray, step: int = CTRL) -> np.ndarray:
    """Control-rate values (..., m + 1) -> sample-rate values (..., m * step), linearly interpolated.

    float32: these are gains, and float32 makes this six times faster than float64.
    """
    ctrl = np.asarray(ctrl, dtype=np.float32)
    frac = np.arange(step, dtype=np.float32) / np.float32(step)
    start = ctrl[..., :-1, None]
    out = start + (ctrl[..., 1:, None] - start) * frac
    return out.reshape(*ctrl.shape[:-1], -1)


def ctrl_times(k: int, *, n: int = CHUNK, step: int = CTRL) -> np.ndarray:
    """Absolute sample times of the control points covering chunk k (both ends included)."""
    return k * n + np.arange(0, n + 1, step, dtype=np.float64)


class SmoothRandom:
    """A smooth random curve in [0, 1], a function of absolute time (value noise).

    Uniform random knots every `period_s`, joined by Catmull-Rom splines (continuous slope, no kinks that
    would sound like steps). Knot j depends only on (seed, salt, j), so the curve is the same whatever
    the chunking.
    """

    _BLOCK = 256  # knots drawn per random generator

    def __init__(self, words: tuple[int, ...], *, period_s: float, sr: int):
        self._words = tuple(words)
        self.period = period_s * sr
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def _knots(self, j: np.ndarray) -> np.ndarray:
        out = np.empty(j.shape)
        blocks = j // self._BLOCK
        for b in np.unique(blocks):
            vals = self._cache.get(int(b))
            if vals is None:
                vals = np.random.default_rng([*self._words, int(b) % _U64]).random(self._BLOCK)
                self._cache[int(b)] = vals
                if len(self._cache) > 4:
                    self._cache.popitem(last=False)
            m = blocks == b
            out[m] = vals[j[m] - b * self._BLOCK]
        return out

    def at(self, t_samples: np.ndarray) -> np.ndarray:
        u = np.asarray(t_samples, dtype=np.float64) / self.period
        j = np.floor(u).astype(np.int64)
        f = u - j
        j0 = int(j.min()) - 1
        v = self._knots(np.arange(j0, int(j.max()) + 3))
        i = j - j0
        p0, p1, p2, p3 = v[i - 1], v[i], v[i + 1], v[i + 2]
        y = 0.5 * (2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f * f
                   + (3 * p1 - p0 - 3 * p2 + p3) * f * f * f)
        return np.clip(y, 0.0, 1.0)


class Leveller:
    """Gain that cancels level drift slower than `window_s`: 1 / sqrt(moving mean of a power curve).

    A smooth random modulator sometimes idles low or high for a minute, which would make one minute
    of a bed a dB or two louder than the next. `power_at(t)` gives the bed's expected power at absolute
    times t (e.g. the square of its gust envelope); its centred moving mean is taken on a fixed grid of
    absolute times, so the result too depends on absolute time only. Gusts and swells inside the window
    are untouched; only their long-run average is held steady.
    """

    def __init__(self, power_at: Callable[[np.ndarray], np.ndarray], *, sr: int, window_s: float = 30.0,
                 grid_s: float = 0.5):
        self.power_at = power_at
        self.grid = grid_s * sr
        self.half = int(round(window_s / grid_s / 2))

    def at(self, t_samples: np.ndarray) -> np.ndarray:
        t = np.asarray(t_samples, dtype=np.float64)
        first = int(np.floor(t.min() / self.grid)) - self.half
        last = int(np.ceil(t.max() / self.grid)) + self.half
        grid_t = np.arange(first, last + 1) * self.grid
        power = np.asarray(self.power_at(grid_t), dtype=np.float64)
        width = 2 * self.half + 1
        sums = np.concatenate([np.zeros(power.shape[:-1] + (1,)), np.cumsum(power, axis=-1)], axis=-1)
        mean = (sums[..., width:] - sums[..., :-width]) / width          # centred on grid_t[half:-half]
        centres = grid_t[self.half: len(grid_t) - self.half]
        norm = 1.0 / np.sqrt(np.maximum(mean, 1e-12))
        if norm.ndim == 1:
            return np.interp(t, centres, norm)
        return np.stack([np.interp(t, centres, row) for row in norm.reshape(-1, norm.shape[-1])]).reshape(
            norm.shape[:-1] + t.shape)


class EventBus:
    """Overlap-adds short events into chunks; what rings past a chunk's end is carried into the next."""

    def __init__(self, *, tail_samples: int):
        self.tail = int(tail_samples)
        self._pending = np.zeros((2, self.tail))
        self._out: np.ndarray | None = None

    def begin(self) -> None:
        self._out = np.zeros((2, CHUNK + self.tail))
        self._out[:, : self.tail] += self._pending

    def add(self, onsets: np.ndarray, waves: np.ndarray, gains: np.ndarray) -> None:
        """Add N mono events `waves` (N, L) starting at `onsets` (N,), chunk-relative, with (2, N) gains."""
        if len(onsets) == 0:
            return
        assert self._out is not None
        n_len = self._out.shape[1]
        onsets = np.asarray(onsets, dtype=np.int64)
        length = waves.shape[1]
        if onsets.min() < 0 or onsets.max() + length > n_len:
            raise ValueError("event outside the chunk plus its tail")
        for i, onset in enumerate(onsets.tolist()):  # a slice add per event: faster than a scatter
            self._out[:, onset: onset + length] += gains[:, i: i + 1] * waves[i]

    def end(self) -> np.ndarray:
        assert self._out is not None
        self._pending = self._out[:, CHUNK:].copy()
        out, self._out = self._out[:, :CHUNK], None
        return out


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
    t = np.arange(length, dtype=np.float32)
    att = np.maximum(np.asarray(attack, dtype=np.float32), 1.0)[:, None]
    inv_decay = (1.0 / np.maximum(np.asarray(decay, dtype=np.float32), 1.0))[:, None]
    env = np.exp(np.minimum((att - t) * inv_decay, 0.0))         # 1 during the attack, then decays
    head = min(int(np.ceil(att.max())), length)
    u = np.minimum(t[:head] / att, 1.0)
    env[:, :head] *= 0.5 - 0.5 * np.cos(np.pi * u)
    env *= _taper(length)
    return env


def _taper(length: int) -> np.ndarray:
    tail_start = int(length * 0.75)
    taper = np.ones(length, dtype=np.float32)
    taper[tail_start:] = 0.5 + 0.5 * np.cos(np.pi * np.arange(length - tail_start) / (length - tail_start))
    return taper

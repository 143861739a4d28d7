"""The built-in soundscapes, synthesised from physical recipes with numpy and scipy's filter kernel
(the designs are looked up: calmplace.designs).

Each is a `ChunkedBed`: noise through stateful filters, shaped by smooth random curves of absolute time,
plus short enveloped events (droplets, bubbles, chirps, pops) drawn per chunk from a seeded generator.
Nothing is looped, so nothing repeats. Levels inside a recipe are relative; the whole bed is brought to
REFERENCE_LUFS afterwards by one constant gain (see `open_builtin`).

Short events are not synthesised one by one: each bed draws a bank of a few hundred prototypes (pitches
spread over the recipe's range, each with its own attack, decay or grain) once per seed, and every event
is one of them at its own onset, level and pan. Hundreds of distinct prototypes, picked at random among
dozens of events a second, never form a pattern, and the bank costs nothing per chunk.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np

from ..kernels import sosfilt
from .engine import (CHUNK, CTRL, F32, ChunkedBed, EventBus, Leveller, SmoothRandom, Sos, StereoSos, Upsampler,
                     butter, ctrl_times, event_envelope, low_rate_factor, pan_gains, poisson_onsets, ramp_up,
                     resonator, side_thread, tf2sos, white)
from .loudness import CALIBRATION_S, gain_to_reference, k_weighted_power

TAU = 2 * np.pi


def _db(db):
    return np.exp(np.asarray(db) * (np.log(10.0) / 20.0))   # 10 ** (db / 20), in a cheaper form


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _bubble_decay_per_s(f0_hz: np.ndarray) -> np.ndarray:
    """Damping of a Minnaert bubble (1/s): van den Doel, "Physically based models for liquid sounds",
    ACM TAP 2(4), 2005, eq. 3 (viscous + thermal + radiation losses)."""
    return 0.043 * f0_hz + 0.0014 * f0_hz ** 1.5


def _bubbles(rng: np.random.Generator, n: int, *, f0_hz: np.ndarray, amp: np.ndarray, length: int,
             sr: int) -> np.ndarray:
    """(n, length) Minnaert bubbles: a damped sine whose pitch rises as the bubble nears the surface.

    f(t) = f0 (1 + xi d t) with xi = 0.1 (van den Doel 2005, eq. 4), decay d from `_bubble_decay_per_s`.
    A 0.3-0.8 ms raised-cosine attack replaces the physical instant onset so the bubble cannot click.
    """
    d = _bubble_decay_per_s(f0_hz)
    t = (np.arange(length, dtype=np.float32) / np.float32(sr))[None, :]
    f0, glide = f0_hz.astype(np.float32)[:, None], (0.5 * 0.1 * d).astype(np.float32)[:, None]
    phase = np.float32(TAU) * f0 * (t + glide * t * t)
    env = event_envelope(length, attack=rng.uniform(0.3e-3, 0.8e-3, n) * sr, decay=sr / d)
    return amp.astype(np.float32)[:, None] * env * np.sin(phase)


def _bank_pitches(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    """`size` pitches log-spaced over [lo, hi), one at a random place in each of `size` equal cells."""
    return lo * (hi / lo) ** ((np.arange(size) + rng.random(size)) / size)


def _bank_index(f_hz: np.ndarray, lo: float, hi: float, size: int) -> np.ndarray:
    """The cell of `_bank_pitches(.., lo, hi, size)` holding each pitch: within 1/size of the range."""
    cell = (np.log(f_hz * (1.0 / lo)) * (size / np.log(hi / lo))).astype(np.int64)   # >= 0 for f_hz >= lo
    return np.minimum(np.maximum(cell, 0), size - 1)


class Rain(ChunkedBed):
    """Steady rain: a dense band-limited hiss (countless distant drops) plus nearby Poisson droplets."""

    SALT = 11
    BANK = 512   # prototypes per kind of drop

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        # hiss band: below ~400 Hz rain is drowned by the environment, above ~7 kHz it gets harsh (by ear)
        self.hiss = Sos(np.vstack([butter(2, 400, "highpass", sr=sr), butter(2, 7000, "lowpass", sr=sr)]))
        self.intensity = SmoothRandom((*self._words, 1), period_s=4.0, sr=sr)  # showers thicken and thin
        self.bus = EventBus(tail_samples=1024)
        setup, m = np.random.default_rng([*self._words, 98]), self.BANK
        # impacts on leaves and ground: a short damped tone, 1.5-6 kHz (below Nyquist at any rate)
        f = np.minimum(_bank_pitches(setup, 1500.0, 6000.0, m), 0.4 * sr)
        env = event_envelope(512, attack=setup.uniform(0.15e-3, 0.4e-3, m) * sr,
                             decay=setup.uniform(0.6e-3, 2.5e-3, m) * sr)
        self.ticks = (9.0 * env * np.sin(TAU * f[:, None] * np.arange(512) / sr)).astype(F32)
        # drops on water: bubbles of 1-3.6 mm radius, with room below Nyquist for the upward glide
        f0 = np.minimum(_bank_pitches(setup, 900.0, 3500.0, m), 0.3 * sr)
        self.plinks = _bubbles(setup, m, f0_hz=f0, amp=np.full(m, 4.0), length=1024, sr=sr)

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        sr, rng = self.sr, self.rng(k)
        inten = self.intensity.at(ctrl_times(k))
        self.hiss.inplace(white(rng, CHUNK, corr=0.2, out=out))
        out *= ramp_up(_db(2.0 * (inten - 0.5)), out=self.scratch("gain", (CHUNK,)))   # +-1 dB swell, both ears

        self.bus.begin()
        # droplets: 40/s candidates thinned by the intensity curve -> 20..40 audible drops a second
        onsets = poisson_onsets(rng, rate_hz=40.0, sr=sr)
        if len(onsets):
            keep = rng.random(len(onsets)) < 0.5 + 0.5 * self.intensity.at(k * CHUNK + onsets.astype(float))
            onsets = onsets[keep]
        n = len(onsets)
        amp = _db(rng.uniform(-30.0, -4.0, n))          # many faint drops, a few close ones
        gains = pan_gains(rng.uniform(-0.9, 0.9, n)) * amp
        plink = rng.random(n) < 0.3                        # ~30 % land in puddles and ring as a bubble
        which = rng.integers(0, self.BANK, n)
        self.bus.add_from(self.ticks, which[~plink], onsets[~plink], gains[:, ~plink])
        self.bus.add_from(self.plinks, which[plink], onsets[plink], gains[:, plink])
        out += self.bus.end()
        return out


class Stream(ChunkedBed):
    """A shallow brook: band-limited rush of water, gurgling resonances and a stream of small bubbles."""

    SALT = 12
    BANK = 512            # bubble prototypes per size class
    RADIUS_M = (1.2e-3, 6e-3)
    # two size classes, ~3 decay times long each: big bubbles (< 1.1 kHz) ring up to 24 ms, small ones < 10 ms
    CLASSES = ((3.26 / 6e-3, 1100.0, 3072), (1100.0, 3.26 / 1.2e-3, 1536))   # (lo Hz, hi Hz, samples at sr)

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.rush = Sos(butter(2, [200, 2500], "bandpass", sr=sr))   # brook noise sits in 0.2-2.5 kHz (by ear)
        self.rush_mod = SmoothRandom([(*self._words, 10 + c) for c in range(2)], period_s=0.15, sr=sr)
        # gurgles: three resonant bands at per-seed pitches, each swelling at random several times a second
        setup = np.random.default_rng([*self._words, 99])
        self.gurgle_hz = np.sort(_log_uniform(setup, 350.0, 1400.0, 3))
        # the gurgles and the bubbles (all below ~3 kHz) run at sr / down, then upsample together
        self.down = low_rate_factor(sr)
        low_sr = sr // self.down
        self.up = Upsampler(self.down, sr=sr, cutoff_hz=4000.0)
        self.gurgles = [Sos(np.vstack([resonator(f, 5.0, sr=low_sr), self.up.guard])) for f in self.gurgle_hz]
        self.gurgle_mod = SmoothRandom([(*self._words, 20 + 2 * i + c) for i in range(3) for c in range(2)],
                                       period_s=0.11, sr=sr)
        self.bus = EventBus(tail_samples=3072 // self.down, n=CHUNK // self.down)
        bank_rng = np.random.default_rng([*self._words, 98])
        self.banks = [_bubbles(bank_rng, self.BANK, f0_hz=_bank_pitches(bank_rng, lo, hi, self.BANK),
                               amp=np.ones(self.BANK), length=length // self.down, sr=sr / self.down)
                      for lo, hi, length in self.CLASSES]

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        sr, rng, down = self.sr, self.rng(k), self.down
        n_low = CHUNK // down
        t = ctrl_times(k)

        self.bus.begin()
        onsets = poisson_onsets(rng, rate_hz=70.0, sr=sr / down, n=n_low)  # dense enough to babble, not to roar
        n = len(onsets)
        radius_m = _log_uniform(rng, *self.RADIUS_M, n)
        f0 = 3.26 / radius_m                               # Minnaert: f0 * r ~ 3.26 m/s for air in water
        amp = 2.0 * np.sqrt(radius_m / 6e-3) * _db(rng.uniform(-20.0, 0.0, n))   # bigger bubbles are louder
        gains = pan_gains(rng.uniform(-0.8, 0.8, n)) * amp
        low_noise = white(rng, n_low, corr=0.3, out=self.scratch("low noise", (2, n_low)))
        # the rush's noise drawn in its turn, then filtered in another thread (the filter releases the
        # GIL) while the bubbles and gurgles are made here: the same numbers, in half the time
        rush = side_thread().submit(self.rush.inplace, white(rng, CHUNK, corr=0.3, out=out))
        try:
            big = f0 < self.CLASSES[0][1]
            for bank, group, (lo, hi, _) in zip(self.banks, (big, ~big), self.CLASSES):
                self.bus.add_from(bank, _bank_index(f0[group], lo, hi, self.BANK), onsets[group], gains[:, group])
            low = self.up.low(n_low)
            low[...] = self.bus.end()
            swell = ramp_up(2.0 * self.gurgle_mod.at(t) ** 3, CTRL // down,               # mostly quiet,
                            out=self.scratch("swell", (2 * len(self.gurgles), n_low)))     # brief swells
            y = self.scratch("gurgle", (2, n_low))
            for i, filt in enumerate(self.gurgles):   # driven by the noise times the swell (resonators ring < 5 ms)
                low += filt.driven(low_noise, swell[2 * i: 2 * i + 2], out=y)
        finally:
            rush.result()
        out *= ramp_up(0.6 * _db(4.0 * (self.rush_mod.at(t) - 0.5)),                 # +-2 dB flutter per ear
                       out=self.scratch("gain", (2, CHUNK)))
        return self.up.add_to(out)


class Ocean(ChunkedBed):
    """Surf on a beach: low roar that swells every 8-14 s, a brighter surge, and foam hiss on each crest."""

    SALT = 13
    RISE = 0.6     # fraction of a wave period spent building up to the break
    REACH = 1.8    # a wave's wash dies out 1.8 periods after it starts, under the next ones
    MIX = (1.0, 0.8, 0.55)  # roar, surge, foam
    MAX_PERIOD_S = 14.0

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        bands = [np.vstack([butter(2, 30, "highpass", sr=sr), butter(2, 350, "lowpass", sr=sr)]),
                 butter(1, [350, 1800], "bandpass", sr=sr),
                 butter(2, [1800, 9000], "bandpass", sr=sr)]              # the spec's foam/wash band
        self.bands = [Sos(bands[0]), StereoSos(bands[1]), Sos(bands[2])]   # the surge: one section
        self.band_power = np.array([m * m * k_weighted_power(b, sr=sr) for m, b in zip(self.MIX, bands)])
        # waves from 80 s before time 0, so the track starts mid-swell and the leveller's window is full
        first = -(80.0 + np.random.default_rng([*self._words, 7]).uniform(0.0, 12.0)) * sr
        self._starts = [first]                  # wave i starts at _starts[i]; all kept (~330 an hour)
        self._params: list[tuple[float, float, float, float]] = []
        self.level = Leveller(lambda t: np.tensordot(self.band_power, np.mean(self._envelopes(t) ** 2, axis=1),
                                                     axes=1), sr=sr)

    def _wave(self, i: int) -> tuple[float, float, float, float]:
        """Period (samples), swell, foam and pan of wave i: a function of (seed, i) only."""
        r = np.random.default_rng([*self._words, 8, i])
        period = r.uniform(8.0, self.MAX_PERIOD_S) * self.sr   # swell periods of 8-14 s, as ocean swell
        amp = r.uniform(0.75, 1.0)
        return period, amp, amp * r.uniform(0.7, 1.0), r.uniform(-0.4, 0.4)

    def _envelopes(self, t: np.ndarray) -> np.ndarray:
        """(3, 2, m) roar, surge and foam envelopes per ear at absolute times t (any order, any range)."""
        t_min, t_max = t.min(), t.max()
        while self._starts[-1] <= t_max:
            self._params.append(self._wave(len(self._params)))
            self._starts.append(self._starts[-1] + self._params[-1][0])
        env = np.empty((3, 2, len(t)))
        env[0], env[1], env[2] = 0.45, 0.15, 0.08   # distant surf never stops
        # only waves started within one reach of the longest period can still sound at t_min
        first = max(bisect_left(self._starts, t_min - self.REACH * self.MAX_PERIOD_S * self.sr) - 1, 0)
        for i in range(first, len(self._params)):
            start, (period, amp, foam_amp, pan) = self._starts[i], self._params[i]
            if start > t_max:
                break
            if start + self.REACH * period < t_min:
                continue
            u = (t - start) / period
            active = (u > 0) & (u < self.REACH)
            if not active.any():
                continue
            uu = u[active]
            rise = 0.5 - 0.5 * np.cos(np.pi * np.minimum(uu / self.RISE, 1.0))
            after = np.maximum(uu - self.RISE, 0.0)
            taper = 0.5 + 0.5 * np.cos(np.pi * after / (self.REACH - self.RISE))
            swell = rise * np.exp(-after / 0.35) * taper
            # foam: spills from just before the crest (u=0.5) over ~1 s, then the wash recedes over ~3 s
            c_on = np.clip((uu - 0.5) / 0.12, 0.0, 1.0)
            foam = (0.5 - 0.5 * np.cos(np.pi * c_on)) * np.exp(-np.maximum(uu - 0.62, 0.0) / 0.3) * taper
            g = pan_gains(np.array([pan])) * np.sqrt(2.0)  # (2, 1), centre = 1 per ear
            env[0][:, active] += g * amp * swell
            env[1][:, active] += g * amp * swell * swell
            env[2][:, active] += g * foam_amp * foam
        return env

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        t = ctrl_times(k)
        env = self._envelopes(t) * self.level.at(t) * np.array(self.MIX)[:, None, None]
        noise = white(self.rng(k), CHUNK, corr=0.4, out=self.scratch("noise", (2, CHUNK)))
        gain = self.scratch("gain", (2, CHUNK))
        # each band driven by the noise times its envelope (seconds long: it commutes with the filters)
        self.bands[0].driven(noise, ramp_up(env[0], out=gain), out=out)
        self.bands[1].add_driven(noise, ramp_up(env[1], out=gain), out)
        noise *= ramp_up(env[2], out=gain)
        out += self.bands[2].inplace(noise)
        return out


class Wind(ChunkedBed):
    """Wind in the open: a band-pass that drifts slowly in pitch over noise, rising with each gust."""

    SALT = 14
    BANDS_HZ = 150.0 * 1.8 ** np.arange(4)  # 150 Hz .. 875 Hz: the howl range of wind past obstacles (by ear)

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.down = low_rate_factor(sr)     # body and bank run at sr / down, then upsample
        low_sr = sr // self.down
        bank = [resonator(f, 3.0, sr=low_sr) for f in self.BANDS_HZ]          # Q=3: airy, not a tone
        body = np.vstack([butter(2, 40, "highpass", sr=low_sr), butter(2, 250, "lowpass", sr=low_sr)])
        air = butter(1, [1500, 5000], "bandpass", sr=sr)                       # leaves and grass in gusts
        self.up = Upsampler(self.down, sr=sr, cutoff_hz=4000.0)
        self.low_filters = [Sos(np.vstack([x, self.up.guard])) for x in (body, *bank)]
        self.air = StereoSos(air)
        # loudness shares: white noise at the low rate has the same total power in a 4x narrower band
        self.power = np.array([k_weighted_power(x, sr=low_sr) for x in (body, *bank)]
                              + [k_weighted_power(air, sr=sr)])
        self.drift = SmoothRandom((*self._words, 1), period_s=11.0, sr=sr)
        self.gust = SmoothRandom((*self._words, 2), period_s=2.8, sr=sr)
        self.lag = 0.12 * sr  # each gust reaches one ear 120 ms after the other (by ear: moving air)
        self.level = Leveller(lambda t: np.tensordot(self.power, np.mean(self._gains(t) ** 2, axis=1), axes=1),
                              sr=sr)

    def _gains(self, t: np.ndarray) -> np.ndarray:
        """(6, 2, m) gains of body, the four bands and air, per ear, at absolute times t."""
        t2 = np.stack([t, t - self.lag]).ravel()
        gust = self.gust.at(t2).reshape(2, -1)
        drift = self.drift.at(t2).reshape(2, -1)
        centre_oct = np.log2(180.0) + 2.3 * (0.55 * drift + 0.45 * gust)     # 180 Hz .. ~900 Hz
        amp = 0.45 + 0.55 * gust * gust     # gusts rise ~7 dB over the lull: lively but calm
        # Gaussian weights in octaves around the drifting centre; (150/f)^0.5 evens out the bands' power
        # and the normalisation keeps the total power constant, so drifting changes pitch, not loudness
        w = np.exp(-0.5 * ((np.log2(self.BANDS_HZ)[:, None, None] - centre_oct) / 0.7) ** 2)
        w *= np.sqrt(150.0 / self.BANDS_HZ)[:, None, None]
        w *= 1.3 * amp / np.sqrt(np.sum(w * w, axis=0))
        return np.concatenate([(0.45 + 0.35 * gust)[None], w, (0.12 * gust * gust)[None]])

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        t = ctrl_times(k)
        gains = self._gains(t) * self.level.at(t)
        rng = self.rng(k)
        n_low, layers = CHUNK // self.down, len(self.low_filters)
        low_noise = white(rng, n_low, corr=0.3, out=self.scratch("low noise", (2, n_low)))
        low_gains = ramp_up(gains[:layers].reshape(2 * layers, -1), CTRL // self.down,
                            out=self.scratch("low gains", (2 * layers, n_low)))
        low, y = self.up.low(n_low), self.scratch("layer", (2, n_low))
        for i, filt in enumerate(self.low_filters):   # each driven by the noise times its (slow) gain
            layer = filt.driven(low_noise, low_gains[2 * i: 2 * i + 2], out=y)
            if i == 0:
                low[...] = layer
            else:
                low += layer
        air_noise = white(rng, CHUNK, corr=0.3, out=self.scratch("noise", (2, CHUNK)))
        self.air.add_driven(air_noise, ramp_up(gains[-1], out=self.scratch("gain", (2, CHUNK))), out, replace=True)
        return self.up.add_to(out)


class Forest(ChunkedBed):
    """A quiet wood: distant wind and rustling leaves with sparse songbirds around the listener."""

    SALT = 15
    SPECIES = 4
    PHRASE_RATE_HZ = 0.22    # one phrase every ~4.5 s on average: sparse, never a dawn chorus
    MAX_PHRASE_S = 4.0

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        # distant rustle, 300 Hz - 3 kHz, falling fast above 4 kHz so the birds' band stays clear
        leaves = np.vstack([butter(1, [300, 3000], "bandpass", sr=sr), butter(2, 4000, "lowpass", sr=sr)])
        distant = np.vstack([butter(2, 60, "highpass", sr=sr), butter(2, 450, "lowpass", sr=sr)])
        self.leaves, self.distant = Sos(leaves), Sos(distant)
        self.slow = SmoothRandom((*self._words, 1), period_s=4.5, sr=sr)   # breaths of breeze
        self.flicker = SmoothRandom([(*self._words, 2 + c) for c in range(2)], period_s=0.18, sr=sr)
        power = [k_weighted_power(x, sr=sr) for x in (leaves, distant)]
        self.level = Leveller(lambda t: power[0] * self._leaves_gain(self.slow.at(t)) ** 2
                              + power[1] * self._distant_gain(self.slow.at(t)) ** 2, sr=sr)
        self.species = self._make_species(np.random.default_rng([*self._words, 77]))
        self.bus = EventBus(tail_samples=int((self.MAX_PHRASE_S + 0.5) * sr))

    @staticmethod
    def _leaves_gain(slow: np.ndarray) -> np.ndarray:
        return 0.2 * (0.6 + 0.4 * slow)

    @staticmethod
    def _distant_gain(slow: np.ndarray) -> np.ndarray:
        return 0.6 * (0.65 + 0.35 * slow)

    @staticmethod
    def _make_species(r: np.random.Generator) -> list[dict]:
        """The birds of this wood (per seed): songbird pitch 2-5.5 kHz, notes 40-150 ms."""
        out = []
        for _ in range(Forest.SPECIES):
            lo, hi = [(1, 3), (3, 7), (4, 10)][r.integers(3)]
            out.append(dict(
                f0=float(_log_uniform(r, 2000.0, 5500.0, 1)[0]),
                note_s=float(r.uniform(0.04, 0.15)),
                gap_s=float(r.uniform(0.04, 0.18)),
                glide_oct=float(r.uniform(-0.9, 0.9)),
                shape=int(r.integers(3)),               # 0 linear glide, 1 arch, 2 dip
                trill_hz=float(r.uniform(18.0, 35.0)) if r.random() < 0.4 else 0.0,
                trill_depth=float(r.uniform(0.02, 0.07)),
                notes=(lo, hi),
                pan=float(r.uniform(-0.8, 0.8)),
                level=float(_db(r.uniform(-10.0, 0.0))),   # near and far birds
                harmonic=float(r.uniform(0.0, 0.25)),
            ))
        return out

    def _phrase(self, r: np.random.Generator, sp: dict) -> list[tuple[float, float, float, float]]:
        """(offset_s, note_s, f0, glide_oct) of each note in one phrase of species `sp`."""
        notes, t = [], 0.0
        pitch = sp["f0"] * r.uniform(0.94, 1.06)
        for _ in range(int(r.integers(sp["notes"][0], sp["notes"][1] + 1))):
            dur = sp["note_s"] * r.uniform(0.85, 1.15)
            if t + dur > self.MAX_PHRASE_S:
                break
            notes.append((t, dur, pitch * r.uniform(0.97, 1.03), sp["glide_oct"] * r.uniform(0.8, 1.2)))
            t += dur + sp["gap_s"] * r.uniform(0.8, 1.25)
        return notes

    def _birds(self, k: int) -> None:
        sr = self.sr
        r = self.rng(k, stream=1)
        onsets = poisson_onsets(r, rate_hz=self.PHRASE_RATE_HZ, sr=sr)
        rows = []  # onset, length, f0, glide, species
        for onset in onsets:
            s = int(r.integers(self.SPECIES))
            for off, dur, f0, glide in self._phrase(r, self.species[s]):
                rows.append((int(onset + off * sr), max(int(dur * sr), 16), f0, glide, s))
        if not rows:
            return
        length = max(row[1] for row in rows)
        t = np.arange(length)[None, :]
        lens = np.array([row[1] for row in rows], dtype=float)[:, None]
        u = np.minimum(t / lens, 1.0)
        sp = [self.species[row[4]] for row in rows]
        shape = np.array([x["shape"] for x in sp])[:, None]
        contour = np.where(shape == 0, u, np.where(shape == 1, np.sin(np.pi * u), -np.sin(np.pi * u)))
        glide = np.array([row[3] for row in rows])[:, None]
        f0 = np.array([row[2] for row in rows])[:, None]
        trill_hz = np.array([x["trill_hz"] for x in sp])[:, None]
        depth = np.array([x["trill_depth"] for x in sp])[:, None] * (trill_hz > 0)
        freq = np.minimum(f0 * 2.0 ** (glide * contour) * (1 + depth * np.sin(TAU * trill_hz * t / sr)), 0.45 * sr)
        phase = TAU * np.cumsum(freq, axis=1) / sr
        env = np.where(t < lens, np.sin(np.pi * u) ** 2, 0.0)     # Hann note: smooth onset and release
        harm = np.array([x["harmonic"] for x in sp])[:, None]
        waves = (env * (np.sin(phase) + harm * np.sin(2 * phase))
                 * np.array([x["level"] for x in sp])[:, None]).astype(F32)
        on = np.array([row[0] for row in rows])
        pan = np.array([x["pan"] for x in sp])
        self.bus.add(on, waves, pan_gains(pan))
        # one reflection off the trees, 30-70 ms later from the other side, 10 dB down
        delay = (r.uniform(0.03, 0.07, len(rows)) * sr).astype(int)
        self.bus.add(on + delay, waves, 0.3 * pan_gains(-0.7 * pan))

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        t = ctrl_times(k)
        slow = self.slow.at(t)
        level = self.level.at(t)
        flick = self.flicker.at(t)
        noise = white(self.rng(k), CHUNK, corr=0.15, out=self.scratch("noise", (2, CHUNK)))
        # each layer driven by the noise times its (slow) gain
        self.leaves.driven(noise, ramp_up(self._leaves_gain(slow) * level * (0.8 + 0.4 * flick),
                                          out=self.scratch("gain", (2, CHUNK))), out=out)
        noise *= ramp_up(self._distant_gain(slow) * level, out=self.scratch("mono gain", (CHUNK,)))
        out += self.distant.inplace(noise)
        self.bus.begin()
        self._birds(k)
        birds = self.bus.end()
        birds *= 2.0
        out += birds
        return out


class Fire(ChunkedBed):
    """A wood fire: low breathing rumble, a soft flame hiss, and bursts of crackle."""

    SALT = 16
    BANK = 1024   # crackle prototypes: each its own grain, attack, decays and "tock" pitch
    LENGTH = 384  # samples of a crackle; the room filter adds a ring of RING_S
    RING_S = 0.006

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.rumble = Sos(np.vstack([butter(2, 30, "highpass", sr=sr), butter(2, 160, "lowpass", sr=sr)]))
        self.hiss = StereoSos(butter(1, [500, 3000], "bandpass", sr=sr))
        self.breath = SmoothRandom([(*self._words, 1 + c) for c in range(2)], period_s=1.1, sr=sr)
        self.burst = SmoothRandom((*self._words, 3), period_s=1.6, sr=sr)
        # crackle is softened as heard across a room: 250 Hz - 4.5 kHz (by ear). The filter is linear, so
        # it is applied to each prototype once (with its ring: 6 ms takes its tail below -80 dB) rather
        # than to the sum of the crackles, chunk after chunk
        tone = np.vstack([butter(1, 250, "highpass", sr=sr), butter(2, 4500, "lowpass", sr=sr)])
        raw = self._crackle_bank(np.random.default_rng([*self._words, 98]), self.BANK, sr)
        ring = int(round(self.RING_S * sr))
        heard, _ = sosfilt(tone, np.pad(raw.astype(np.float64), ((0, 0), (0, ring))))
        fade = min(ring, 64)
        heard[:, -fade:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, fade + 1) / fade)   # ends at exactly 0
        self.crackles = heard.astype(F32)
        self.bus = EventBus(tail_samples=self.crackles.shape[1])

    @classmethod
    def _crackle_bank(cls, r: np.random.Generator, m: int, sr: int) -> np.ndarray:
        """(m, LENGTH) crackles: a noise burst plus the woody "tock" of splitting fibres, unit level."""
        length = cls.LENGTH
        attack = r.uniform(0.2e-3, 0.6e-3, m) * sr
        burst_env = event_envelope(length, attack=attack, decay=r.uniform(0.3e-3, 1.5e-3, m) * sr)
        tone_env = event_envelope(length, attack=attack, decay=r.uniform(0.5e-3, 2.5e-3, m) * sr)
        f = _log_uniform(r, 700.0, 3500.0, m)             # the "tock" (by ear)
        grain = r.random((m, length), dtype=np.float32) * 2.0 - 1.0      # bounded: no freak peaks
        return (burst_env * grain * 1.7
                + 0.7 * tone_env * np.sin(TAU * f[:, None] * np.arange(length) / sr)).astype(F32)

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        sr, rng = self.sr, self.rng(k)
        breath = self.breath.at(ctrl_times(k))
        noise = white(rng, CHUNK, corr=0.5, out=self.scratch("noise", (2, CHUNK)))
        gain = self.scratch("gain", (2, CHUNK))
        # each layer driven by the noise times its breathing gain (1.1 s curves: it commutes with the filters)
        self.rumble.driven(noise, ramp_up(0.55 + 0.45 * breath, out=gain), out=out)
        self.hiss.add_driven(noise, ramp_up(0.12 * (0.4 + 0.6 * breath) ** 2, out=gain), out)

        self.bus.begin()
        onsets = poisson_onsets(rng, rate_hz=40.0, sr=sr)
        # thinning by a slow burst curve: crackle comes in clusters, ~2/s between bursts, up to 40/s in one
        if len(onsets):
            keep = rng.random(len(onsets)) < 0.05 + 0.95 * self.burst.at(k * CHUNK + onsets.astype(float)) ** 3
            onsets = onsets[keep]
        n = len(onsets)
        amp = 1.6 * _db(rng.uniform(-30.0, -8.0, n))       # log-uniform: many ticks, the odd louder pop
        gains = pan_gains(rng.uniform(-0.7, 0.7, n)) * amp
        self.bus.add_from(self.crackles, rng.integers(0, self.BANK, n), onsets, gains)
        out += self.bus.end()
        return out


class Pink(ChunkedBed):
    """Pink noise (-3 dB per octave), softly decorrelated stereo."""

    SALT = 17
    # J. O. Smith, "Spectral Audio Signal Processing", pink noise section: 1/f within ~0.3 dB from
    # about 10 Hz to 20 kHz at 44.1 kHz (at other rates the band scales with the rate)
    B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.colour = Sos(np.vstack([tf2sos(self.B, self.A), butter(2, 20, "highpass", sr=sr)]))

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        return self.colour.inplace(white(self.rng(k), CHUNK, corr=0.25, out=out))


class Brown(ChunkedBed):
    """Brown (red) noise (-6 dB per octave), softly decorrelated stereo."""

    SALT = 18

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        # a leaky integrator: one pole at 25 Hz gives -6 dB/oct above it and keeps DC bounded,
        # then a 20 Hz high-pass removes the subsonic rumble that only eats headroom
        pole = np.exp(-TAU * 25.0 / sr)
        leaky = tf2sos([1.0 - pole], [1.0, -pole])
        self.colour = Sos(np.vstack([leaky, butter(2, 20, "highpass", sr=sr)]))

    def _chunk(self, k: int, out: np.ndarray) -> np.ndarray:
        return self.colour.inplace(white(self.rng(k), CHUNK, corr=0.25, out=out))


GENERATORS: dict[str, type[ChunkedBed]] = {
    "rain": Rain, "stream": Stream, "ocean": Ocean, "wind": Wind,
    "forest": Forest, "fire": Fire, "pink": Pink, "brown": Brown,
}


_GAINS: dict[tuple[str, int, int], float] = {}   # (name, seed, sr) -> calibrated gain
_MAX_GAINS = 512


def open_builtin(name: str, *, sr: int, seed: int) -> ChunkedBed:
    """A built-in bed at REFERENCE_LUFS.

    The gain is measured once per (name, seed, sr) on the first CALIBRATION_S seconds of the very same
    audio; the recipes are levelled beyond that scale, so every later block sits at the same level.
    On first use those seconds are kept and played out rather than rendered twice (a bounded 60 s
    buffer); later opens reuse the cached gain and start from scratch, with bitwise the same result.
    """
    bed = GENERATORS[name](sr=sr, seed=seed)
    key = (name, int(seed), int(sr))
    if key in _GAINS:
        bed.gain = _GAINS[key]
        return bed
    n_cal = int(round(CALIBRATION_S * sr))
    raw = [bed.render_next() for _ in range(-(-n_cal // CHUNK))]
    minute = np.empty((2, n_cal), dtype=F32)
    for i, chunk in enumerate(raw):
        piece = chunk[:, : n_cal - i * CHUNK]
        minute[:, i * CHUNK: i * CHUNK + piece.shape[1]] = piece
    gain = gain_to_reference(minute, sr=sr)
    if len(_GAINS) >= _MAX_GAINS:
        _GAINS.pop(next(iter(_GAINS)))
    _GAINS[key] = bed.gain = gain
    bed.prime(raw)
    return bed

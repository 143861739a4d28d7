"""The built-in soundscapes, synthesised from physical recipes with numpy and scipy.signal.

Each is a `ChunkedBed`: noise through stateful filters, shaped by smooth random curves of absolute time,
plus short enveloped events (droplets, bubbles, chirps, pops) drawn per chunk from a seeded generator.
Nothing is looped, so nothing repeats. Levels inside a recipe are relative; the whole bed is brought to
REFERENCE_LUFS afterwards by one constant gain (see `open_builtin`).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .engine import (CHUNK, CTRL, ChunkedBed, EventBus, Leveller, SmoothRandom, Sos, Upsampler, butter, ctrl_times,
                     event_envelope, low_rate_factor, pan_gains, poisson_onsets, ramp_up, resonator, white)
from .loudness import CALIBRATION_S, gain_to_reference, k_weighted_power

TAU = 2 * np.pi


def _db(db):
    return 10.0 ** (np.asarray(db) / 20.0)


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


class Rain(ChunkedBed):
    """Steady rain: a dense band-limited hiss (countless distant drops) plus nearby Poisson droplets."""

    SALT = 11

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        # hiss band: below ~400 Hz rain is drowned by the environment, above ~7 kHz it gets harsh (by ear)
        self.hiss = Sos(np.vstack([butter(2, 400, "highpass", sr=sr), butter(2, 7000, "lowpass", sr=sr)]))
        self.intensity = SmoothRandom((*self._words, 1), period_s=4.0, sr=sr)  # showers thicken and thin
        self.bus = EventBus(tail_samples=1024)

    def _chunk(self, k: int) -> np.ndarray:
        sr, rng = self.sr, self.rng(k)
        inten = self.intensity.at(ctrl_times(k))
        hiss = self.hiss(white(rng, CHUNK, corr=0.2)) * ramp_up(_db(2.0 * (inten - 0.5)))  # +-1 dB swell

        self.bus.begin()
        # droplets: 40/s candidates thinned by the intensity curve -> 20..40 audible drops a second
        onsets = poisson_onsets(rng, rate_hz=40.0, sr=sr)
        keep = rng.random(len(onsets)) < 0.5 + 0.5 * self.intensity.at(k * CHUNK + onsets.astype(float))
        onsets = onsets[keep]
        n = len(onsets)
        amp = _db(rng.uniform(-30.0, -4.0, n))          # many faint drops, a few close ones
        pan = rng.uniform(-0.9, 0.9, n)
        plink = rng.random(n) < 0.3                        # ~30 % land in puddles and ring as a bubble
        ticks = ~plink
        if ticks.any():                                    # impacts on leaves and ground: a short damped tone
            m = int(ticks.sum())
            f = np.minimum(_log_uniform(rng, 1500.0, 6000.0, m), 0.4 * sr)   # below Nyquist at any rate
            env = event_envelope(512, attack=rng.uniform(0.15e-3, 0.4e-3, m) * sr,
                                 decay=rng.uniform(0.6e-3, 2.5e-3, m) * sr)
            waves = 9.0 * amp[ticks, None] * env * np.sin(TAU * f[:, None] * np.arange(512) / sr)
            self.bus.add(onsets[ticks], waves, pan_gains(pan[ticks]))
        if plink.any():                                    # drops on water: bubbles of 1-3.6 mm radius
            m = int(plink.sum())
            f0 = np.minimum(_log_uniform(rng, 900.0, 3500.0, m), 0.3 * sr)   # room for the upward glide
            waves = _bubbles(rng, m, f0_hz=f0, amp=4.0 * amp[plink],
                             length=1024, sr=sr)
            self.bus.add(onsets[plink], waves, pan_gains(pan[plink]))
        return hiss + self.bus.end()


class Stream(ChunkedBed):
    """A shallow brook: band-limited rush of water, gurgling resonances and a stream of small bubbles."""

    SALT = 12

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.rush = Sos(butter(2, [200, 2500], "bandpass", sr=sr))   # brook noise sits in 0.2-2.5 kHz (by ear)
        self.rush_mod = [SmoothRandom((*self._words, 10 + c), period_s=0.15, sr=sr) for c in range(2)]
        # gurgles: three resonant bands at per-seed pitches, each swelling at random several times a second
        setup = np.random.default_rng([*self._words, 99])
        self.gurgle_hz = np.sort(_log_uniform(setup, 350.0, 1400.0, 3))
        self.down = low_rate_factor(sr)                   # the gurgles run at sr / down, then upsample
        self.gurgles = [Sos(resonator(f, 5.0, sr=sr // self.down)) for f in self.gurgle_hz]
        self.up = Upsampler(self.down, sr=sr, cutoff_hz=4000.0)
        self.gurgle_mod = [[SmoothRandom((*self._words, 20 + 2 * i + c), period_s=0.11, sr=sr) for c in range(2)]
                           for i in range(3)]
        self.bus = EventBus(tail_samples=3072)

    def _chunk(self, k: int) -> np.ndarray:
        sr, rng = self.sr, self.rng(k)
        t = ctrl_times(k)
        noise = white(rng, CHUNK, corr=0.3)
        flutter = np.stack([m.at(t) for m in self.rush_mod])
        out = 0.6 * self.rush(noise) * ramp_up(_db(4.0 * (flutter - 0.5)))    # +-2 dB flutter per ear
        low_noise = white(rng, CHUNK // self.down, corr=0.3)
        gurgle = np.zeros_like(low_noise)
        for filt, mods in zip(self.gurgles, self.gurgle_mod):
            g = np.stack([m.at(t) for m in mods]) ** 3                       # mostly quiet, brief swells
            gurgle += 2.0 * filt(low_noise) * ramp_up(g, CTRL // self.down)
        out += self.up(gurgle)

        self.bus.begin()
        onsets = poisson_onsets(rng, rate_hz=70.0, sr=sr)  # dense enough to babble, not to roar (by ear)
        n = len(onsets)
        radius_m = _log_uniform(rng, 1.2e-3, 6e-3, n)
        f0 = 3.26 / radius_m                               # Minnaert: f0 * r ~ 3.26 m/s for air in water
        amp = 2.0 * np.sqrt(radius_m / 6e-3) * _db(rng.uniform(-20.0, 0.0, n))   # bigger bubbles are louder
        gains = pan_gains(rng.uniform(-0.8, 0.8, n))
        # two lengths, ~3 decay times each: big bubbles (< 1.1 kHz) ring up to 24 ms, small ones < 10 ms
        for group, length in ((f0 < 1100.0, 3072), (f0 >= 1100.0, 1536)):
            if group.any():
                waves = _bubbles(rng, int(group.sum()), f0_hz=f0[group], amp=amp[group], length=length, sr=sr)
                self.bus.add(onsets[group], waves, gains[:, group])
        return out + self.bus.end()


class Ocean(ChunkedBed):
    """Surf on a beach: low roar that swells every 8-14 s, a brighter surge, and foam hiss on each crest."""

    SALT = 13
    RISE = 0.6     # fraction of a wave period spent building up to the break
    REACH = 1.8    # a wave's wash dies out 1.8 periods after it starts, under the next ones
    MIX = (1.0, 0.8, 0.55)  # roar, surge, foam

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        bands = [np.vstack([butter(2, 30, "highpass", sr=sr), butter(2, 350, "lowpass", sr=sr)]),
                 butter(1, [350, 1800], "bandpass", sr=sr),
                 butter(2, [1800, 9000], "bandpass", sr=sr)]              # the spec's foam/wash band
        self.bands = [Sos(b) for b in bands]
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
        period = r.uniform(8.0, 14.0) * self.sr        # swell periods of 8-14 s, as ocean swell
        amp = r.uniform(0.75, 1.0)
        return period, amp, amp * r.uniform(0.7, 1.0), r.uniform(-0.4, 0.4)

    def _envelopes(self, t: np.ndarray) -> np.ndarray:
        """(3, 2, m) roar, surge and foam envelopes per ear at absolute times t (any order, any range)."""
        while self._starts[-1] <= t.max():
            self._params.append(self._wave(len(self._params)))
            self._starts.append(self._starts[-1] + self._params[-1][0])
        env = np.empty((3, 2, len(t)))
        env[0], env[1], env[2] = 0.45, 0.15, 0.08   # distant surf never stops
        for start, (period, amp, foam_amp, pan) in zip(self._starts, self._params):
            if start > t.max() or start + self.REACH * period < t.min():
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

    def _chunk(self, k: int) -> np.ndarray:
        t = ctrl_times(k)
        env = self._envelopes(t) * self.level.at(t)
        noise = white(self.rng(k), CHUNK, corr=0.4)
        out = np.zeros((2, CHUNK))
        for mix, band, e in zip(self.MIX, self.bands, env):
            out += mix * band(noise) * ramp_up(e)
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
        self.low_filters = [Sos(x) for x in (body, *bank)]
        self.air = Sos(air)
        self.up = Upsampler(self.down, sr=sr, cutoff_hz=4000.0)
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

    def _chunk(self, k: int) -> np.ndarray:
        t = ctrl_times(k)
        gains = self._gains(t) * self.level.at(t)
        rng = self.rng(k)
        low_noise = white(rng, CHUNK // self.down, corr=0.3)
        low = np.zeros_like(low_noise)
        for g, filt in zip(gains[:-1], self.low_filters):
            low += filt(low_noise) * ramp_up(g, CTRL // self.down)
        return self.up(low) + self.air(white(rng, CHUNK, corr=0.3)) * ramp_up(gains[-1])


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
        self.flicker = [SmoothRandom((*self._words, 2 + c), period_s=0.18, sr=sr) for c in range(2)]
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
        waves = env * (np.sin(phase) + harm * np.sin(2 * phase)) * np.array([x["level"] for x in sp])[:, None]
        on = np.array([row[0] for row in rows])
        pan = np.array([x["pan"] for x in sp])
        self.bus.add(on, waves, pan_gains(pan))
        # one reflection off the trees, 30-70 ms later from the other side, 10 dB down
        delay = (r.uniform(0.03, 0.07, len(rows)) * sr).astype(int)
        self.bus.add(on + delay, 0.3 * waves, pan_gains(-0.7 * pan))

    def _chunk(self, k: int) -> np.ndarray:
        t = ctrl_times(k)
        slow = self.slow.at(t)
        level = self.level.at(t)
        flick = np.stack([m.at(t) for m in self.flicker])
        noise = white(self.rng(k), CHUNK, corr=0.15)
        bed = (self.leaves(noise) * ramp_up(self._leaves_gain(slow) * level * (0.8 + 0.4 * flick))
               + self.distant(noise) * ramp_up(self._distant_gain(slow) * level))
        self.bus.begin()
        self._birds(k)
        return bed + 2.0 * self.bus.end()


class Fire(ChunkedBed):
    """A wood fire: low breathing rumble, a soft flame hiss, and bursts of crackle."""

    SALT = 16

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.rumble = Sos(np.vstack([butter(2, 30, "highpass", sr=sr), butter(2, 160, "lowpass", sr=sr)]))
        self.hiss = Sos(butter(1, [500, 3000], "bandpass", sr=sr))
        # crackle is softened as heard across a room: 250 Hz - 4.5 kHz (by ear)
        self.crackle_tone = Sos(np.vstack([butter(1, 250, "highpass", sr=sr), butter(2, 4500, "lowpass", sr=sr)]))
        self.breath = [SmoothRandom((*self._words, 1 + c), period_s=1.1, sr=sr) for c in range(2)]
        self.burst = SmoothRandom((*self._words, 3), period_s=1.6, sr=sr)
        self.bus = EventBus(tail_samples=384)

    def _chunk(self, k: int) -> np.ndarray:
        sr, rng = self.sr, self.rng(k)
        t = ctrl_times(k)
        breath = np.stack([m.at(t) for m in self.breath])
        noise = white(rng, CHUNK, corr=0.5)
        bed = (self.rumble(noise) * ramp_up(0.55 + 0.45 * breath)
               + 0.12 * self.hiss(noise) * ramp_up((0.4 + 0.6 * breath) ** 2))

        self.bus.begin()
        onsets = poisson_onsets(rng, rate_hz=40.0, sr=sr)
        # thinning by a slow burst curve: crackle comes in clusters, ~2/s between bursts, up to 40/s in one
        keep = rng.random(len(onsets)) < 0.05 + 0.95 * self.burst.at(k * CHUNK + onsets.astype(float)) ** 3
        onsets = onsets[keep]
        n = len(onsets)
        if n:
            length = 384
            amp = _db(rng.uniform(-30.0, -8.0, n))         # log-uniform: many ticks, the odd louder pop
            attack = rng.uniform(0.2e-3, 0.6e-3, n) * sr
            burst_env = event_envelope(length, attack=attack, decay=rng.uniform(0.3e-3, 1.5e-3, n) * sr)
            tone_env = event_envelope(length, attack=attack, decay=rng.uniform(0.5e-3, 2.5e-3, n) * sr)
            f = _log_uniform(rng, 700.0, 3500.0, n)        # the woody "tock" of splitting fibres (by ear)
            grain = rng.random((n, length), dtype=np.float32) * 2.0 - 1.0      # bounded: no freak peaks
            waves = amp[:, None] * (burst_env * grain * 1.7
                                    + 0.7 * tone_env * np.sin(TAU * f[:, None] * np.arange(length) / sr))
            self.bus.add(onsets, waves, pan_gains(rng.uniform(-0.7, 0.7, n)))
        return bed + 1.6 * self.crackle_tone(self.bus.end())


class Pink(ChunkedBed):
    """Pink noise (-3 dB per octave), softly decorrelated stereo."""

    SALT = 17
    # J. O. Smith, "Spectral Audio Signal Processing", pink noise section: 1/f within ~0.3 dB from
    # about 10 Hz to 20 kHz at 44.1 kHz (at other rates the band scales with the rate)
    B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        self.colour = Sos(np.vstack([signal.tf2sos(self.B, self.A), butter(2, 20, "highpass", sr=sr)]))

    def _chunk(self, k: int) -> np.ndarray:
        return self.colour(white(self.rng(k), CHUNK, corr=0.25))


class Brown(ChunkedBed):
    """Brown (red) noise (-6 dB per octave), softly decorrelated stereo."""

    SALT = 18

    def __init__(self, *, sr: int, seed: int):
        super().__init__(sr=sr, seed=seed, salt=self.SALT)
        # a leaky integrator: one pole at 25 Hz gives -6 dB/oct above it and keeps DC bounded,
        # then a 20 Hz high-pass removes the subsonic rumble that only eats headroom
        pole = np.exp(-TAU * 25.0 / sr)
        leaky = signal.tf2sos([1.0 - pole], [1.0, -pole])
        self.colour = Sos(np.vstack([leaky, butter(2, 20, "highpass", sr=sr)]))

    def _chunk(self, k: int) -> np.ndarray:
        return self.colour(white(self.rng(k), CHUNK, corr=0.25))


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
    raw = []
    while len(raw) * CHUNK < n_cal:
        raw.append(bed._chunk(len(raw)))
    gain = gain_to_reference(np.concatenate(raw, axis=1)[:, :n_cal], sr=sr)
    if len(_GAINS) >= _MAX_GAINS:
        _GAINS.pop(next(iter(_GAINS)))
    _GAINS[key] = bed.gain = gain
    bed.prime(raw)
    return bed

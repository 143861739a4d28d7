"""Mixer arithmetic on small arrays: placement to the sample, ducking shape and depth, crossfades."""

from __future__ import annotations

import numpy as np
import pytest

from calmplace.mix import DUCK_LOOKAHEAD_S, DUCK_RELEASE_S, bed_gain_db, bed_runs, duck_amount, mix, speech_gain
from calmplace.script import Ambience
from calmplace.takes import Gap, Plan, SectionStart, Take
from calmplace.timeline import build_timeline

SR = 1000  # a small rate keeps the arithmetic readable; nothing in the mixer assumes 44.1 kHz


class ConstantBed:
    """A bed of constant ones, so the bed's gain curve can be read straight off the mix."""

    def __init__(self):
        self.read_samples = 0

    def read(self, n):
        self.read_samples += n
        return np.ones((2, n), dtype=np.float32)


def make_plan(events) -> Plan:
    return Plan("t", "en-GB", "T", None, None, None, (), tuple(events))


def take(n, section=0):
    return Take(n, section, f"take {n}", 0.0, 0.0)


def test_timeline_places_takes_and_gaps_to_the_sample():
    amb = Ambience("stream")
    p = make_plan([Gap(2.0, kind="lead_in"), SectionStart(0, "A", amb), take(1), Gap(0.5), take(2),
                   Gap(1.25, kind="section"), SectionStart(1, "B", amb), take(3), Gap(3.0, kind="tail")])
    tl = build_timeline(p, [100, 200, 300], sr=SR)
    assert [(s.start, s.end) for s in tl.takes] == [(2000, 2100), (2600, 2800), (4050, 4350)]
    assert [(s.start, s.end) for s in tl.sections] == [(0, 4050), (4050, 7350)]
    assert tl.n_samples == 7350


def test_speech_is_placed_exactly_and_centred():
    p = make_plan([Gap(1.0), SectionStart(0, None, None), take(1), Gap(2.0), take(2), Gap(1.0)])
    clips = [np.full(50, 0.25, np.float32), np.full(70, -0.5, np.float32)]
    tl = build_timeline(p, [50, 70], sr=SR)
    out = mix(tl, clips, open_bed=lambda *a, **k: ConstantBed(), seed_base="x")
    gain = speech_gain(clips, sr=SR)
    assert out.shape == (2, 1000 + 50 + 2000 + 70 + 1000)
    assert np.array_equal(out[0], out[1])
    np.testing.assert_allclose(out[0, 1000:1050], 0.25 * gain, rtol=1e-6)
    np.testing.assert_allclose(out[0, 3050:3120], -0.5 * gain, rtol=1e-6)
    assert not out[:, :1000].any() and not out[:, 1050:3050].any() and not out[:, 3120:].any()


def test_duck_amount_shape():
    sr = 10_000
    span = (20_000, 30_000)
    amt = duck_amount([span], start=0, stop=60_000, sr=sr)
    la, rel = int(DUCK_LOOKAHEAD_S * sr), int(DUCK_RELEASE_S * sr)
    assert amt[: span[0] - la].max() == 0.0                       # untouched before the look-ahead
    assert amt[span[0]: span[1]].min() == 1.0                      # fully down while the voice speaks
    assert 0.0 < amt[span[0] - la // 2] < 1.0                      # already on its way down before it
    assert amt[span[1] + rel:].max() == 0.0                        # fully back after the release
    assert np.all(np.diff(amt[span[1]: span[1] + rel]) <= 0)        # release is monotonic
    # smooth: no step bigger than the steepest raised-cosine slope allows (pi/2 per look-ahead)
    assert np.abs(np.diff(amt)).max() <= np.pi / 2 / la + 1e-9


def test_duck_amount_blockwise_equals_whole():
    spans = [(1000, 5000), (9000, 9500), (30000, 41000)]
    whole = duck_amount(spans, start=0, stop=50_000, sr=SR * 10)
    parts = np.concatenate([duck_amount(spans, start=a, stop=min(a + 777, 50_000), sr=SR * 10)
                            for a in range(0, 50_000, 777)])
    assert np.array_equal(whole, parts)


def test_bed_level_and_duck_depth_in_the_mix():
    sr = 8000
    amb = Ambience("stream", level_db=-20.0, duck_db=6.0, fade_in_s=0.5, fade_out_s=0.5)
    p = make_plan([Gap(3.0), SectionStart(0, None, amb), take(1), Gap(5.0), Gap(1.0, kind="tail")])
    clip = np.zeros(2 * sr, np.float32)  # a silent "voice": the mix is the bed alone
    tl = build_timeline(p, [clip.size], sr=sr)
    bed = ConstantBed()
    out = mix(tl, [clip], open_bed=lambda *a, **k: bed, seed_base="x", block=1000)
    level = 20 * np.log10(np.abs(out[0]) + 1e-12)
    assert bed.read_samples == tl.n_samples  # one pass over the bed, in blocks
    during = level[3 * sr + sr // 2: 4 * sr + sr // 2]
    pause = level[int(6.6 * sr): 10 * sr]  # after the 1.5 s release, before the fade-out
    # exact arithmetic on a constant bed: 1e-4 dB is float32 rounding
    assert np.allclose(during, -26.0, atol=1e-4)
    assert np.allclose(pause, -20.0, atol=1e-4)
    assert level[0] < -100  # the fade-in starts from silence
    assert abs(out[0, -1]) < 1e-4  # and the fade-out ends one sample short of silence (-80 dB)


def test_section_ambience_changes_crossfade():
    sr = 1000
    a, b = Ambience("rain", level_db=0.0, duck_db=0.0), Ambience("ocean", level_db=0.0, duck_db=0.0)
    p = make_plan([Gap(1.0), SectionStart(0, None, a), take(1), Gap(10.0), SectionStart(1, None, b), take(2),
                   Gap(10.0)])
    tl = build_timeline(p, [100, 100], sr=sr)
    runs = bed_runs(tl, seed_base="s")
    assert [r.ambience.sound for r in runs] == ["rain", "ocean"]
    boundary = tl.sections[1].start
    # the two runs overlap symmetrically around the boundary by the crossfade length (3 s)
    assert runs[0].end - boundary == boundary - runs[1].start == 1500
    g0 = 10 ** (bed_gain_db(tl, runs[0], start=boundary, stop=boundary + 1) / 20)
    g1 = 10 ** (bed_gain_db(tl, runs[1], start=boundary, stop=boundary + 1) / 20)
    # equal-power: the two gains' squares sum to one at the midpoint (sin^2 + cos^2)
    assert g0[0] ** 2 + g1[0] ** 2 == pytest.approx(1.0, abs=1e-6)
    assert runs[0].seed != runs[1].seed


def test_speech_gain_brings_voice_to_reference():
    import pyloudnorm

    sr = 44100
    t = np.arange(3 * sr) / sr
    clip = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    g = speech_gain([clip], sr=sr)
    measured = pyloudnorm.Meter(sr).integrated_loudness((clip * g).astype(np.float64))
    assert measured == pytest.approx(-23.0, abs=0.05)  # BS.1770 on a steady tone is exact to rounding


def test_on_ready_reports_only_final_samples_so_a_meter_can_measure_while_mixing():
    """The mix tells a meter which samples are final; measuring then must equal measuring the
    finished mix. Runs rain, ocean (crossfading into each other), none, ocean again, at 44.1 kHz
    (the meter's 30 s parts need a real rate)."""
    from calmplace.master import InputMeter

    sr = 44100
    rain, ocean = Ambience("rain", level_db=0.0, duck_db=6.0), Ambience("ocean", level_db=0.0, duck_db=6.0)
    # the rain-ocean crossfade (58.5-61.5 s) straddles the end of the meter's second part (60 s)
    p = make_plan([Gap(1.0), SectionStart(0, None, rain), take(1), Gap(58.0), SectionStart(1, None, ocean), take(2),
                   Gap(20.0), SectionStart(2, None, None), take(3), Gap(20.0), SectionStart(3, None, ocean), take(4),
                   Gap(45.0)])
    tl = build_timeline(p, [sr] * 4, sr=sr)
    assert [r.ambience.sound for r in bed_runs(tl, seed_base="s")] == ["rain", "ocean", "ocean"]
    clips = [np.full(sr, 0.1, np.float32)] * 4
    rng = np.random.default_rng(0)

    class NoiseBed:
        def read(self, n):
            return rng.standard_normal((2, n)).astype(np.float32)

    seen: list[tuple[int, bytes]] = []
    meter = InputMeter(tl.n_samples, sr=sr)

    def on_ready(out, ready):
        # what the meter reads must never change afterwards: remember each part as measured
        before = len(meter.parts)
        meter.advance(out, ready)
        for start, stop in meter.bounds[before:len(meter.parts)]:
            seen.append((start, out[:, max(0, start - sr):stop].tobytes()))

    out = mix(tl, clips, open_bed=lambda *a, **k: NoiseBed(), seed_base="s", on_ready=on_ready)
    assert len(meter.parts) >= 3   # most parts were measured during the mix
    for start, data in seen:
        stop = min(start + len(data) // 8 - min(start, sr), tl.n_samples)
        assert out[:, max(0, start - sr):stop].tobytes() == data
    assert np.array_equal(meter.energies(out), InputMeter(tl.n_samples, sr=sr).energies(out))

"""Mixer arithmetic on small arrays: placement to the sample, ducking shape and depth, crossfades."""

from __future__ import annotations

import numpy as np
import pytest

from calmplace import mix as mix_module
from calmplace.mix import (BLOCK, DUCK_HOLD_S, DUCK_LOOKAHEAD_S, DUCK_RELEASE_S, EDGE_FADE_MIN_S, BedPrefetch,
                           _duck_parts, _edge_envelope, bed_gain, bed_gain_db, bed_runs, duck_amount, mix,
                           speech_gain)
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


def test_bed_stays_down_through_pauses_too_short_to_settle():
    """Speech back within DUCK_HOLD_S: the bed holds its dip (a swell and a dip back within half a
    second pumps); after a longer pause it comes all the way up, and dips before the voice again.
    Read off the mix of a silent voice over a constant bed, as above."""
    sr = 8000
    amb = Ambience("stream", level_db=-20.0, duck_db=6.0, fade_in_s=0.5, fade_out_s=0.5)
    short, long = DUCK_HOLD_S, DUCK_HOLD_S + 1.0   # QA: a pause of exactly 3 s swelled and dipped back
    p = make_plan([Gap(3.0), SectionStart(0, None, amb), take(1), Gap(short), take(2), Gap(long), take(3),
                   Gap(3.0, kind="tail")])
    clip = np.zeros(sr, np.float32)
    tl = build_timeline(p, [sr, sr, sr], sr=sr)
    out = mix(tl, [clip] * 3, open_bed=lambda *a, **k: ConstantBed(), seed_base="x", block=1000)
    level = 20 * np.log10(np.abs(out[0]) + 1e-12)
    (s1, e1), (s2, e2), (s3, e3) = tl.speech_spans()
    # exact arithmetic on a constant bed: 1e-4 dB is float32 rounding
    assert np.allclose(level[s1:e2], -26.0, atol=1e-4)          # through the short pause too
    gap = level[e2:s3]
    assert abs(gap.max() - -20.0) < 1e-4                        # up to its level in the long one
    assert np.all(np.diff(gap[:round(DUCK_RELEASE_S * sr)]) >= 0)   # rising, no dip back meanwhile
    la = round(DUCK_LOOKAHEAD_S * sr)
    assert level[s3 - la] > -20.0 - 1e-4 and np.allclose(level[s3:e3], -26.0, atol=1e-4)   # dips over the look-ahead


def test_section_ambience_changes_crossfade():
    sr = 1000
    a, b = Ambience("rain", level_db=0.0, duck_db=0.0), Ambience("ocean", level_db=0.0, duck_db=0.0)
    p = make_plan([Gap(1.0), SectionStart(0, None, a), take(1), Gap(10.0), SectionStart(1, None, b), take(2),
                   Gap(10.0)])
    tl = build_timeline(p, [100, 100], sr=sr)
    runs = bed_runs(tl, seed_base="s")
    assert [r.ambience.sound for r in runs] == ["rain", "ocean"]
    boundary = tl.sections[1].start
    # the crossfade (3 s) fills the pause before the new section and ends where it starts (QA: centred
    # on it, the old scene was still fading out under the new section's first words)
    assert runs[0].end == boundary and boundary - runs[1].start == 3000
    assert 10 ** (bed_gain_db(tl, runs[1], start=boundary, stop=boundary + 1)[0] / 20) == pytest.approx(1.0)
    mid = boundary - 1500
    g0 = 10 ** (bed_gain_db(tl, runs[0], start=mid, stop=mid + 1) / 20)
    g1 = 10 ** (bed_gain_db(tl, runs[1], start=mid, stop=mid + 1) / 20)
    # equal-power: the two gains' squares sum to one at the midpoint (sin^2 + cos^2)
    assert g0[0] ** 2 + g1[0] ** 2 == pytest.approx(1.0, abs=1e-6)
    assert runs[0].seed != runs[1].seed


def test_speech_gain_brings_voice_to_reference():
    import pyloudnorm

    sr = 44100
    t = np.arange(3 * sr) / sr
    clip = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    g = speech_gain([clip], sr=sr)
    # measured as the mix lays it, in both channels, as the beds are measured (QA: measured as one
    # channel, the voice sat 3 dB over the reference and every bed 3 dB under its level_db)
    placed = np.stack([clip * g, clip * g], axis=1).astype(np.float64)
    measured = pyloudnorm.Meter(sr).integrated_loudness(placed)
    assert measured == pytest.approx(-23.0, abs=0.05)  # BS.1770 on a steady tone is exact to rounding


def test_fades_from_silence_are_raised_cosines_crossfades_equal_power():
    """From and to silence the bed fades along a raised cosine (-20 dB a fifth of the way in; the
    equal-power sine was there after 6 % and seemed to switch on, QA); where another bed crosses,
    the sine and cosine keep the summed power."""
    sr = 1000
    a, b = Ambience("rain", level_db=0.0, duck_db=0.0, fade_in_s=4.0), Ambience("ocean", level_db=0.0, duck_db=0.0)
    p = make_plan([Gap(5.0), SectionStart(0, None, a), take(1), Gap(10.0), SectionStart(1, None, b), take(2),
                   Gap(10.0), SectionStart(2, None, None), take(3), Gap(10.0), SectionStart(3, None, a), take(4),
                   Gap(10.0)])
    tl = build_timeline(p, [100] * 4, sr=sr)
    runs = bed_runs(tl, seed_base="s")
    assert [(r.fade_in_from, r.fade_out_to) for r in runs] == [("silence", "cross"), ("cross", "silence"),
                                                             ("silence", "silence")]
    assert runs[0].fade_in == 4000   # a 5 s lead-in: the whole 4 s fade fits before the first dip
    first = bed_gain(tl, runs[0], start=0, stop=4000)   # the 4 s fade-in at the start of the track
    # 0.5 - 0.5 cos(pi x): 0.0245 (-32 dB) at x = 0.1, 0.5 (-6 dB) at x = 0.5; float32 gains
    assert first[400] == pytest.approx(0.5 - 0.5 * np.cos(0.1 * np.pi), rel=1e-6)
    assert first[2000] == pytest.approx(0.5, rel=1e-6)
    # the ocean fades out into the silent section, and the rain back in from it, as raised cosines
    out_mid = (runs[1].end - runs[1].fade_out // 2)
    assert bed_gain(tl, runs[1], start=out_mid, stop=out_mid + 1)[0] == pytest.approx(0.5, rel=1e-3)
    in_mid = runs[2].start + runs[2].fade_in // 2
    assert bed_gain(tl, runs[2], start=in_mid, stop=in_mid + 1)[0] == pytest.approx(0.5, rel=1e-3)


def test_the_tracks_fades_end_before_the_first_dip_and_start_after_the_last_release():
    """QA: a 5 s fade in over a 4 s lead-in rose to 1.5 dB under the bed's level, dipped 6 dB for
    the first word and went on rising under the voice. The fade in now ends where the dip begins
    (look-ahead before the first word), the fade out starts where the last release ends; neither
    is shorter than EDGE_FADE_MIN_S."""
    sr = 1000
    a = Ambience("stream", level_db=0.0, duck_db=6.0, fade_in_s=5.0, fade_out_s=10.0)
    p = make_plan([Gap(4.0), SectionStart(0, None, a), take(1), Gap(2.0, kind="tail")])
    tl = build_timeline(p, [1000], sr=sr)
    (run,) = bed_runs(tl, seed_base="s")
    (s0, s1), = tl.speech_spans()
    la, rel = round(DUCK_LOOKAHEAD_S * sr), round(DUCK_RELEASE_S * sr)
    assert run.fade_in == s0 - la                                   # 3.7 s, not 5
    gain = bed_gain_db(tl, run, start=0, stop=tl.n_samples)
    assert np.all(np.diff(gain[:s0 - la]) > 0)                      # rising all the way to the dip
    assert gain[s0 - la] == pytest.approx(0.0, abs=1e-4)            # at the bed's level when the dip begins
    assert run.fade_out == round(EDGE_FADE_MIN_S * sr)              # 2 s tail, 1.5 s release: the 1 s floor
    short = make_plan([Gap(0.5), SectionStart(0, None, a), take(1), Gap(8.0, kind="tail")])
    tl = build_timeline(short, [1000], sr=sr)
    (run,) = bed_runs(tl, seed_base="s")
    assert run.fade_in == round(EDGE_FADE_MIN_S * sr)               # never under 1 s, even under the voice
    assert run.fade_out == tl.n_samples - (tl.speech_spans()[-1][1] + rel)   # 6.5 s: after the release


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


def reference_duck(spans, *, start, stop, sr):
    """duck_amount's definition written out per span (raised cosines from absolute sample times,
    max of the contributions), with nothing worked out ahead."""
    la, rel = round(DUCK_LOOKAHEAD_S * sr), round(DUCK_RELEASE_S * sr)
    amount = np.zeros(stop - start)
    t = np.arange(start, stop, dtype=np.float64)
    for s0, s1 in spans:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - (s0 - la)) / la, 0.0, 1.0))
        fall = 0.5 - 0.5 * np.cos(np.pi * np.clip(1.0 - (t - s1) / rel, 0.0, 1.0))
        curve = np.select([t < s0 - la, t < s0, t < s1, t < s1 + rel], [0.0, rise, 1.0, fall], default=0.0)
        np.maximum(amount, curve, out=amount)
    return amount


def reference_hold(spans, *, hold):
    """The speech spans with every gap shorter than `hold` samples filled in: what the bed ducks under."""
    out = []
    for s0, s1 in spans:
        if out and s0 - out[-1][1] <= hold:
            out[-1][1] = s1
        else:
            out.append([s0, s1])
    return [tuple(span) for span in out]


def reference_bed_gain(tl, run, *, start, stop, hold_s=DUCK_HOLD_S):
    """bed_gain's definition on every sample: level x float32(exp(duck x k)), times the fades."""
    duck = reference_duck(reference_hold(tl.speech_spans(), hold=round(hold_s * tl.sr)), start=start, stop=stop,
                          sr=tl.sr)
    gain = np.full(stop - start, 10.0 ** (run.ambience.level_db / 20.0), dtype=np.float32)
    gain *= np.exp(duck * (-run.ambience.duck_db * np.log(10.0) / 20.0)).astype(np.float32)
    return gain * _edge_envelope(run, start=start, stop=stop).astype(np.float32)


@pytest.mark.parametrize("hold_s", [DUCK_HOLD_S, 0.0])
def test_bed_gain_equals_its_definition_bit_for_bit(monkeypatch, hold_s):
    """bed_gain takes the lone rises and falls from a table and holds from one value; that must
    give the very bytes of computing every sample. Gaps shorter than the look-ahead, between it
    and the release, and longer, so ramps overlap holds, each other, or nothing (without the hold
    through short gaps, which otherwise fills all but the longest); odd block sizes cut through
    all of them."""
    monkeypatch.setattr(mix_module, "DUCK_HOLD_S", hold_s)
    sr = 1000
    la, rel = round(DUCK_LOOKAHEAD_S * sr), round(DUCK_RELEASE_S * sr)
    a = Ambience("stream", level_db=-17.3, duck_db=7.5, fade_in_s=0.5, fade_out_s=2.0)
    b = Ambience("rain", level_db=-21.0, duck_db=3.0)
    p = make_plan([Gap(0.05), SectionStart(0, None, a), take(1), Gap(0.1), take(2), Gap(1.0), take(3), Gap(4.0),
                   take(4), Gap(6.0, kind="section"), SectionStart(1, None, b), take(5), Gap(0.4), take(6),
                   Gap(3.0, kind="tail")])
    tl = build_timeline(p, [400, 700, 300, 900, 500, 600], sr=sr)
    runs = bed_runs(tl, seed_base="s")
    assert len(runs) == 2
    kinds = set()
    for run in runs:
        for block in (777, 1 << 12, run.end - run.start):
            for b0 in range(run.start, run.end, block):
                b1 = min(b0 + block, run.end)
                spans = reference_hold(tl.speech_spans(), hold=round(hold_s * sr))
                moving, holding = _duck_parts(spans, start=b0, stop=b1, la=la, rel=rel)
                kinds |= {m[2] for m in moving} | ({"hold"} if holding else set())
                assert np.array_equal(bed_gain(tl, run, start=b0, stop=b1),
                                      reference_bed_gain(tl, run, start=b0, stop=b1, hold_s=hold_s)), (b0, b1)
    # every path was taken: lone ramps, merged ones (only without the hold), holds
    assert kinds == ({"rise", "fall", "hold"} if hold_s else {"rise", "fall", None, "hold"})


def test_duck_amount_equals_its_definition_bit_for_bit():
    """duck_amount reads its raised cosines from tables by offset; same bytes as computing them."""
    sr = 44100
    spans = [(3000, 50_000), (52_000, 60_000), (100_000, 180_000), (181_000, 181_500)]
    for start, stop in ((0, 300_000), (4_321, 123_457), (59_999, 60_001), (200_000, 260_000)):
        assert np.array_equal(duck_amount(spans, start=start, stop=stop, sr=sr),
                              reference_duck(spans, start=start, stop=stop, sr=sr))


def test_bed_prefetch_reads_are_the_source_stream():
    """Reads of whole blocks (handed over uncopied), parts of blocks and several blocks at once
    give the source's samples in order, and what a read returned does not change afterwards."""

    class Counting:
        def __init__(self):
            self.pos = 0

        def read(self, n):
            block = np.arange(self.pos, self.pos + n, dtype=np.float32)[np.newaxis, :] * np.float32([[1], [-1]])
            self.pos += n
            return block

    prefetch = BedPrefetch(Counting, key=("count", 0), ahead_blocks=3)
    try:
        sizes = [BLOCK, BLOCK, 1000, BLOCK - 1000, 0, 2 * BLOCK + 5, BLOCK - 5, BLOCK]
        reads = [prefetch.read(n) for n in sizes]
        kept = [r.copy() for r in reads]
        prefetch.read(3 * BLOCK)  # the thread keeps writing blocks meanwhile
    finally:
        prefetch.close()
    assert [r.shape for r in reads] == [(2, n) for n in sizes]
    whole = np.concatenate(reads, axis=1)
    expected = np.arange(sum(sizes), dtype=np.float32)  # exact in float32: under 2**24
    assert np.array_equal(whole[0], expected) and np.array_equal(whole[1], -expected)
    assert all(np.array_equal(r, k) for r, k in zip(reads, kept))


def test_bed_prefetch_generates_no_more_than_the_mix_expects():
    """Once told how long the bed is read for, the prefetch makes that many blocks and stops (it
    no longer competes for the CPU with the rest of the track's rendering)."""
    import threading

    made = []
    release = threading.Event()

    class Source:
        def read(self, n):
            if len(made) >= 2:
                release.wait(5)   # hold the thread here until the length is known
            made.append(n)
            return np.zeros((2, n), np.float32)

    prefetch = BedPrefetch(Source, key=("zeros", 0))
    try:
        prefetch.expect(3 * BLOCK + 10)   # 4 blocks in all
        release.set()
        assert prefetch.read(3 * BLOCK + 10).shape == (2, 3 * BLOCK + 10)
        prefetch._thread.join(5)
        assert not prefetch._thread.is_alive()    # it stopped by itself, before close()
    finally:
        prefetch.close()
    assert made == [BLOCK] * 4


def test_bed_prefetch_stops_at_its_guess_until_told_the_length():
    """Before the mix says how long the bed is read for, the prefetch makes no more than the
    guess it was given, then waits; told a longer length, it goes on to exactly that."""
    import time

    made = []

    class Source:
        def read(self, n):
            made.append(n)
            return np.zeros((2, n), np.float32)

    prefetch = BedPrefetch(Source, key=("zeros", 0), likely_samples=2 * BLOCK - 100)   # a guess of 2 blocks
    try:
        deadline = time.monotonic() + 5
        while len(made) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)   # time enough to make more, if it did not wait
        assert made == [BLOCK] * 2
        prefetch.expect(5 * BLOCK - 10)
        assert prefetch.read(5 * BLOCK - 10).shape == (2, 5 * BLOCK - 10)
        prefetch._thread.join(5)
        assert not prefetch._thread.is_alive()
    finally:
        prefetch.close()
    assert made == [BLOCK] * 5


@pytest.mark.parametrize("level_db, duck_db", [(-20.0, 6.0), (-17.3, 7.5), (-23.9, 10.0), (-12.1, 0.0), (-31.4, 4.4),
                                               (-8.2, 13.7), (-26.6, 2.9), (-15.0, 18.1)])
def test_bed_gain_under_speech_equals_its_definition(level_db, duck_db):
    """The gain held under speech is one value, worked out once: it must round like the per-sample
    arithmetic (level in float32 times float32(exp(k))), not be rounded once from float64."""
    sr = 1000
    p = make_plan([Gap(2.0), SectionStart(0, None, Ambience("stream", level_db=level_db, duck_db=duck_db)),
                   take(1), Gap(2.0)])
    tl = build_timeline(p, [500], sr=sr)
    (run,) = bed_runs(tl, seed_base="s")
    assert np.array_equal(bed_gain(tl, run, start=0, stop=tl.n_samples),
                          reference_bed_gain(tl, run, start=0, stop=tl.n_samples))


def test_voice_laid_block_by_block_sums_as_if_laid_first():
    """The mix lays each block's voice just before its bed; every sample must come out as laying
    the whole voice first and adding the beds after it (same float32 sums in the same order), bit
    for bit, with blocks that cut takes anywhere and a section without a bed."""
    rain, ocean = Ambience("rain", level_db=-6.0, duck_db=6.0), Ambience("ocean", level_db=-3.0, duck_db=3.0)
    p = make_plan([Gap(0.5), SectionStart(0, None, rain), take(1), Gap(0.3), take(2), SectionStart(1, None, ocean),
                   take(3), Gap(4.0), SectionStart(2, None, None), take(4), Gap(3.0)])
    tl = build_timeline(p, [731, 1290, 517, 260], sr=SR)
    rng = np.random.default_rng(5)
    clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (731, 1290, 517, 260)]

    def beds():
        noise = np.random.default_rng(6)
        return lambda *a, **k: type("Noise", (), {"read": lambda self, n: noise.standard_normal((2, n)).astype(
            np.float32)})()

    out = mix(tl, clips, open_bed=beds(), seed_base="v", block=333)
    gain = speech_gain(clips, sr=SR)
    expected = np.zeros((2, tl.n_samples), np.float32)
    for span, clip in zip(tl.takes, clips):
        expected[:, span.start:span.end] += (clip * gain)[np.newaxis, :]
    runs, opener = bed_runs(tl, seed_base="v"), beds()
    assert len(runs) == 2 and runs[-1].end < tl.n_samples   # the last section has no bed
    for run in runs:
        source = opener()
        for b0 in range(run.start, run.end, 333):
            b1 = min(b0 + 333, run.end)
            expected[:, b0:b1] += source.read(b1 - b0) * bed_gain(tl, run, start=b0, stop=b1)[np.newaxis, :]
    assert np.array_equal(out, expected)

"""The real engine's processes: one zygote per speak() call forks a process per take (speech/tts.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from calmplace import SR
from calmplace.errors import CalmplaceError
from calmplace.speech import tts
from calmplace.speech.clips import _X2_TAPS, _upsample2, resample
from calmplace.speech.tts import TtsEngine
from calmplace.voices import load_voice

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not tts.zygote_supported(), reason="the zygote is Linux-only")

TEXTS = [
    "Let your shoulders soften.",
    "Notice the air, cool as it comes in and a little warmer as it leaves.",
    "Rest here for a while.",
    "Let your shoulders soften.",  # the same text again, in the same call
]


@pytest.fixture(scope="module")
def narrator() -> TtsEngine:
    return TtsEngine(load_voice("narrator", voices_dir=REPO / "voices"))


def _bytes(clips) -> list[bytes]:
    return [c.tobytes() for c in clips]


def test_clips_do_not_depend_on_jobs_order_or_batching(narrator: TtsEngine):
    serial = _bytes(narrator.speak_texts(TEXTS, locale="en-GB", sr=SR, jobs=1))
    assert serial[0] == serial[3] and len(set(serial)) == 3
    shuffled = [TEXTS[2], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1]]
    parallel = _bytes(narrator.speak_texts(shuffled, locale="en-GB", sr=SR, jobs=2))
    assert parallel == [serial[2], serial[1], serial[0], serial[2], serial[1]]
    one_by_one = [_bytes(narrator.speak_texts([t], locale="en-GB", sr=SR, jobs=3))[0] for t in TEXTS[1:3]]
    assert one_by_one == serial[1:3]


def test_clips_are_those_of_a_freshly_initialised_engine(narrator: TtsEngine):
    """What the zygote's takes give is what a freshly started engine gives for each text (the
    way every take was rendered before the zygote), so cached takes stay valid. (Both go
    through the same resampler: that it is scipy's, bit for bit, is the next test.)"""
    voice = narrator.voice_for("en-US")
    calls = [(t, voice.id, narrator.profile.rate_wpm, narrator.profile.volume) for t in TEXTS[:3]]
    fresh = tts.run_isolated("render", calls, jobs=2, timeout_s=60, labels=["a", "b", "c"])
    expected = [tts._finish(out["samples"], sr_in=out["sr"], sr=SR, what="x").tobytes() for out in fresh]
    assert _bytes(narrator.speak_texts(TEXTS[:3], locale="en-US", sr=SR, jobs=2)) == expected


def test_the_x2_resampler_is_scipys_bit_for_bit():
    from scipy.signal import firwin, resample_poly

    taps = firwin(41, 0.5, window=("kaiser", 5.0)).astype(np.float32)
    taps *= 2
    assert taps.tobytes() == _X2_TAPS.tobytes()
    rng = np.random.default_rng(7)
    signals = [rng.standard_normal(n).astype(np.float32) * 0.3 for n in (1, 2, 10, 11, 21, 22, 1000, 22050)]
    speech = (np.round(rng.standard_normal(20000) * 3000) / 32768).astype(np.float32)
    speech[:3000] = 0.0  # espeak's leading silence, and its quietest samples
    speech[5000:5100] = 1 / 32768
    signals += [speech, np.zeros(64, np.float32), np.full(64, -0.0, np.float32)]
    for x in signals:
        assert _upsample2(x).tobytes() == resample_poly(x, 2, 1).astype(np.float32).tobytes()
        assert resample(x, sr_in=22050, sr_out=44100).tobytes() == _upsample2(x).tobytes()


@pytest.fixture
def zygotes(monkeypatch) -> list[tts.ZygoteSynth]:
    made: list[tts.ZygoteSynth] = []

    class Recorded(tts.ZygoteSynth):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(tts, "ZygoteSynth", Recorded)
    return made


def _running_in_group(pgid: int, *, settle_s: float = 0.0) -> list[int]:
    """Processes of a process group still alive (not zombies), after up to `settle_s` for them to go."""
    deadline = time.monotonic() + settle_s
    while (alive := _alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def _alive(pgid: int, *, zombies: bool = False) -> list[int]:
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and (zombies or fields[0] not in "ZX"):
                alive.append(int(entry))
    return alive


def test_a_hung_take_is_named_and_killed(narrator: TtsEngine, zygotes):
    impatient = TtsEngine(narrator.profile, timeout_s=1.0)
    endless = "Breathe in, and breathe out, slowly. " * 400  # a quarter of an hour of speech
    with pytest.raises(CalmplaceError, match=r"timed out after 1 s on take 002"):
        impatient.speak_texts(["Rest.", endless, "Rest."], locale="en-GB", sr=SR, jobs=3)
    (zygote,) = zygotes
    assert zygote.proc.returncode is not None  # reaped, and it had killed and reaped its take
    assert _alive(zygote.proc.pid, zombies=True) == []


def test_a_dying_engine_is_an_error_not_a_traceback(narrator: TtsEngine, zygotes):
    def kill_engine(_i):
        os.killpg(zygotes[0].proc.pid, signal.SIGKILL)

    with pytest.raises(CalmplaceError, match=r"take 00[23]: the speech engine process died"):
        narrator.speak_texts(TEXTS[:3], locale="en-GB", sr=SR, on_done=kill_engine)
    # the take it was speaking was killed with it (init reaps it)
    assert _running_in_group(zygotes[0].proc.pid, settle_s=5) == []


def test_an_unknown_voice_stops_the_zygote_with_a_clear_error(zygotes):
    with pytest.raises(CalmplaceError, match="did not select voice 'xx/no-such-voice'"):
        tts.run_zygote(["Hello."], voice_id="xx/no-such-voice", rate_wpm=140, volume=1.0, jobs=1,
                       timeout_s=30, labels=["take 001"], on_samples=lambda i, pcm: None)
    assert zygotes[0].proc.returncode == 0


def test_the_zygote_hands_over_a_whole_take_without_waiting_for_the_reader(narrator: TtsEngine):
    """The pipes are widened to 1 MB: a finished take lies whole in the response pipe while the
    build's thread is busy elsewhere, and the zygote goes back to forking the next takes (with
    64 KB pipes it sat in its write until the build read, and the CPUs waited: speech alone on
    two CPUs took 0.84 s against 0.79 s, means of 4)."""
    import fcntl
    import termios

    from calmplace.speech import _tts_child

    zygote = tts.ZygoteSynth(narrator.voice_for("en-GB").id, narrator.profile.rate_wpm, narrator.profile.volume)
    try:
        assert zygote.receive(time.monotonic() + 30)[1] == _tts_child.READY
        zygote.send(0, "Breathe in slowly, and let the breath go again, as slowly as it came. " * 3)
        waiting, deadline = -1, time.monotonic() + 30
        while time.monotonic() < deadline:   # until the zygote has written all it will
            time.sleep(0.3)
            now = int.from_bytes(fcntl.ioctl(zygote.response_r, termios.FIONREAD, bytes(4)), "little")
            if now == waiting and now > 0:
                break
            waiting = now
        index, kind, body = zygote.receive(time.monotonic() + 5)
        assert (index, kind) == (0, _tts_child.SAMPLES)
        assert len(body) > 1 << 16   # more than a default pipe holds (64 KB: 1.5 s of 22.05 kHz 16-bit speech)
        assert waiting == _tts_child.RESPONSE.size + len(body)
    finally:
        zygote.close()


def test_trimmed_takes_keep_their_margins_and_end_softly():
    """Audio QA: espeak-ng starts a take on its first sample (no 50 ms lead margin) and stops a word
    dead (-18..-30 dB under the peak in the last 10 ms, then digital zeros). A clip like that: a
    tone from sample 0 that stops abruptly, then 60 ms of zeros."""
    from calmplace.speech.clips import EDGE_MARGIN_S, END_FADE_S, trim_silence

    sr = 44100
    t = np.arange(int(0.5 * sr)) / sr
    tone = (0.5 * np.sin(2 * np.pi * 220 * t + 0.3)).astype(np.float32)   # 0.15 at sample 0: no soft start
    clip = np.concatenate([tone, np.zeros(int(0.06 * sr), np.float32)])
    out = trim_silence(clip, sr=sr)
    margin = round(EDGE_MARGIN_S * sr)
    assert not out[:margin].any() and out[margin] == 0.0    # the lead margin, made up with silence (x0 of the fade)
    assert np.abs(out[margin + 1:margin + 20]).max() > 0    # and the sound right after it
    sound = np.flatnonzero(out)
    end = sound[-1] + 1
    assert out.size - end >= margin                         # the tail margin is there too
    fade = round(END_FADE_S * sr)
    # the last 20 ms fall along a raised cosine: under -20 dB of the peak in the last 2 ms (cos
    # reaches 0.5 + 0.5 cos(0.9 pi) = 0.024 there), and the last 10 ms at most half the tone's level
    assert np.abs(out[end - round(0.002 * sr):end]).max() < 0.5 * 0.1
    assert np.abs(out[end - fade // 2:end]).max() <= 0.5 * 0.5 + 1e-6
    assert np.abs(out[end - fade - round(0.01 * sr):end - fade]).max() > 0.45   # untouched before it

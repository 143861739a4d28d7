"""Takes recorded too quietly, or in stereo with one channel phase-inverted: status and split say
so, and an inverted pair is read from its better channel instead of cancelling to silence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calmplace import SR
from calmplace.speech.recorded import LEAD_MARGIN_S, TAIL_MARGIN_S, prepare, read_audio
from calmplace.split import plan_split

from test_recorded import (ESPEAK_SR, _build, recorded_take, room, run_cli, spoken, take_folder, tiny_plan,
                           write_takes)
from test_split_matching import EXPECTED, SR as SESSION_SR, TAKES, TOL_S, session, starts_of

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the reader is played by espeak-ng")


def _status(project: Path, monkeypatch):
    result = run_cli(project, monkeypatch, "takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
    lines = result.output.splitlines()
    notes: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith("  ") and line.strip()[:3].isdigit():
            current = line.strip()[:3]
            notes[current] = [line]
        elif line.startswith("        ") and current:
            notes[current].append(line.strip())
    return result, notes


def _peak_dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.max(np.abs(x))))


def test_a_very_quiet_take_is_warned_about(project: Path, monkeypatch):
    write_takes(project, skip=("002", "003"))
    folder = take_folder(project)
    the_plan = tiny_plan(project)
    # QA: a take peaking at -47 dBFS (the input level far too low) showed "ok" with no warning. The
    # room tone is scaled with the voice, as a low input gain scales both. espeak peaks at ~0.63
    # (-4 dBFS): -43 dB of gain puts the take's peak at about -47 dBFS
    quiet = recorded_take(the_plan.takes[1].text, sr=44100, channels=1, lead_s=0.4, tail_s=0.4, gain_db=0,
                          seed=2) * 10 ** (-43 / 20)
    sf.write(folder / "002.wav", quiet, 44100, subtype="PCM_24")
    # a soft reader 25 dB under full scale is within reason: no warning (the threshold is -40 dBFS)
    soft = recorded_take(the_plan.takes[2].text, sr=44100, channels=1, lead_s=0.4, tail_s=0.4, gain_db=0,
                         seed=3) * 10 ** (-21 / 20)
    sf.write(folder / "003.wav", soft, 44100, subtype="PCM_24")
    assert -48 < _peak_dbfs(quiet) < -45 and -28 < _peak_dbfs(soft) < -24
    result, notes = _status(project, monkeypatch)
    assert result.exit_code == 0, result.output  # advice: the take can be used
    want = f"very quiet (peak {_peak_dbfs(quiet):.1f} dBFS): raise the input level and record again"
    assert want in notes["002"], result.output
    assert result.output.count("very quiet") == 1, result.output
    assert "4 of 4 takes ok, 1 warning" in result.output
    # a build that prepares the takes says so too, for whoever never ran status (QA: it was silent)
    report, warnings = _build(project)
    assert report.exit_code == 0, report.problems
    assert [w for w in warnings if "very quiet" in w] == \
        [f"warning: tiny (en-GB) take 002: voices/therapist/tiny/en-GB/002.wav: {want}"], warnings


def test_split_warns_of_a_very_quiet_recording():
    data, _ = session([0, 1, 2, 3, 4, 5])
    data = data / np.max(np.abs(data)) * 10 ** (-47 / 20)  # the QA recording's peak: -47 dBFS
    result = plan_split(Path("quiet.wav"), data, SESSION_SR, TAKES, EXPECTED)
    assert any("very quiet (peak -47.0 dBFS): raise the input level and record again" in w
               for w in result.warnings), result.warnings
    normal, _ = session([0, 1, 2, 3, 4, 5])  # peaks at about -10 dBFS: no such warning
    assert not any("very quiet" in w for w in plan_split(Path("ok.wav"), normal, SESSION_SR, TAKES,
                                                          EXPECTED).warnings)


def inverted(x: np.ndarray, *, seed: int, right_gain: float = -1.0) -> np.ndarray:
    """(n, 2): one microphone's signal on the left and, phase-inverted, on the right, each with its
    own channel's noise (the converter's, independent per channel)."""
    return np.stack([x + room(x.size, sr=44100, seed=seed, dbfs=-80),
                     right_gain * x + room(x.size, sr=44100, seed=seed + 1, dbfs=-80)], axis=1)


def test_an_out_of_phase_stereo_take_uses_one_channel(project: Path, monkeypatch):
    write_takes(project, skip=("003",))
    folder = take_folder(project)
    the_plan = tiny_plan(project)
    text = the_plan.takes[2].text
    mono = recorded_take(text, sr=44100, channels=1, lead_s=0.5, tail_s=0.5, gain_db=-6, seed=3)[:, 0]
    # QA: the right channel exactly inverted: the average cancels to the converter noise alone, and
    # the take was "silent: no speech found"
    sf.write(folder / "003.wav", inverted(mono, seed=30), 44100, subtype="PCM_24")
    result, notes = _status(project, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "ok" in notes["003"][0] and "2 ch" in notes["003"][0], result.output
    assert "channels are out of phase: using the left channel" in notes["003"], result.output
    assert "no speech found" not in result.output
    report, warnings = _build(project)   # the build says which channel it used too
    assert report.exit_code == 0, report.problems
    assert [w for w in warnings if "out of phase" in w and "003.wav" in w and "left channel" in w], warnings
    # the prepared clip is the speech and its margins, as for a mono take (see test_recorded's
    # test_any_rate_and_channel_count for the -0.10..+0.03 s tolerance)
    data, sr = read_audio(folder / "003.wav")
    clip = prepare(data, sr, sr=SR, what="003.wav")
    extra = clip.size / SR - spoken(text).size / ESPEAK_SR - LEAD_MARGIN_S - TAIL_MARGIN_S
    assert -0.10 <= extra <= 0.03, extra
    # the right channel better (the left one's voice 6 dB down, inverted, over as much noise of its
    # own: 6 dB less speech above its floor): the right one is used
    voice = np.concatenate([np.zeros(22050), spoken(text, sr=44100) * 0.5, np.zeros(22050)])
    x = np.stack([-0.5 * voice + room(voice.size, sr=44100, seed=40),
                  voice + room(voice.size, sr=44100, seed=41)], axis=1)
    sf.write(folder / "003.wav", x, 44100, subtype="PCM_24")
    result, notes = _status(project, monkeypatch)
    assert "channels are out of phase: using the right channel" in notes["003"], result.output
    # ordinary stereo (the same signal on both sides, one quieter) is averaged as before: no note
    sf.write(folder / "003.wav", np.stack([mono, 0.8 * mono], axis=1), 44100, subtype="PCM_24")
    result, _ = _status(project, monkeypatch)
    assert "out of phase" not in result.output and "4 of 4 takes ok" in result.output, result.output


def test_split_reads_an_out_of_phase_recording_from_one_channel():
    data, starts = session([0, 1, 2, 3, 4, 5])
    stereo = np.concatenate([data, -data], axis=1)  # exactly inverted: the average is digital silence
    result = plan_split(Path("usb.wav"), stereo, SESSION_SR, TAKES, EXPECTED)
    assert np.allclose(starts_of(result), starts, atol=TOL_S)
    assert any("usb.wav: channels are out of phase: using the left channel" in w for w in result.warnings), \
        result.warnings

"""One continuous recording → the numbered takes: the therapist reads the whole script in one go,
with uneven silences between takes and pauses inside some of them, then builds from the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from calmplace.errors import CalmplaceError
from calmplace.script import load_script
from calmplace.split import CUT_AFTER_S, CUT_BEFORE_S, plan_split
from calmplace.takes import Take, plan

from test_recorded import _build, check_track, room, run_cli, spoken

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the therapist is played by espeak-ng")

SESSION = """\
title: Safe Place
author: Test Therapist
locales: [en-GB]
ambience: {sound: stream, level_db: -32, duck_db: 6, fade_in: 1s, fade_out: 2s}
lead_in: 2s
tail: 3s
sections:
  - title: Arriving
    text: |
      Find a comfortable position, and let your body settle. [pause 3s]
      Breathe in. [pause 2s]
      Notice the gentle rhythm of your breathing, the air moving in and out, slowly and kindly. [pause 4s]
    pause_after: 2s
  - title: The place
    text: |
      Now imagine a place where you feel safe. [pause 3s]
      Perhaps a beach, a forest, or a quiet room.

      Rest here. [pause 5s]
      Notice the colours, the sounds, and the warmth of this place around you. [pause 3s]
      When you are ready, open your eyes.
"""
# The bed is 32 dB under the voice (not the default 22) so that the pauses can be measured: see
# test_recorded.quieter_bed.

# How the therapist reads it: " | " is where she pauses inside a take, and for how long; between
# takes she leaves uneven silences (1.5-4 s), as people do while finding the next line.
READING = {
    3: ("Notice the gentle rhythm of your breathing, | the air moving in and out, slowly and kindly.", 1.1),
    7: ("Notice the colours, the sounds, | and the warmth of this place around you.", 0.85),
}
SILENCES_S = [1.6, 3.8, 2.2, 3.1, 1.5, 4.0, 2.5]
RATE = 32000  # an unusual rate, stereo: the takes are written at the recording's own rate and layout


def record_session(project: Path, *, clip_take: int | None = None,
                   retake: int | None = None) -> tuple[Path, dict[str, float]]:
    """The whole session in one stereo file; returns it and each take's true length (mid-take pause included)."""
    (project / "scripts" / "session.yaml").write_text(SESSION)
    (project / "voices" / "therapist.yaml").write_text("engine: recorded\n")
    takes = plan(load_script(project / "scripts" / "session.yaml"), "en-GB").takes
    assert len(takes) == 8
    parts, lengths = [np.zeros(RATE)], {}  # a second of room tone before the first word
    for take in takes:
        text, pause = READING.get(take.number, (take.text, 0.0))
        voice = spoken(text, pause_s=pause, sr=RATE) * 10 ** (-6 / 20)
        if take.number == clip_take:
            voice = voice * 4.0  # the reader leant into the microphone: 12 dB too hot
        if take.number == retake:  # it went wrong: she says the take's number and reads it again, slower
            parts += [voice, np.zeros(2 * RATE), spoken("five", sr=RATE) * 0.5, np.zeros(RATE)]
            voice = spoken(text, pause_s=pause, sr=RATE, rate=115) * 10 ** (-6 / 20)
        lengths[take.name] = voice.size / RATE
        parts.append(voice)
        parts.append(np.zeros(int(SILENCES_S[take.number - 1] * RATE) if take.number <= len(SILENCES_S) else 2 * RATE))
    x = np.concatenate(parts)
    data = np.stack([x + room(x.size, sr=RATE, seed=1), 0.8 * x + room(x.size, sr=RATE, seed=2)], axis=1)
    data = np.clip(data, -1.0, 1.0)  # the converter's full scale
    path = project / "session-recording.wav"
    sf.write(path, data, RATE, subtype="FLOAT")  # float: a clipped take stays exactly at full scale
    return path, lengths


def test_split_one_recording_then_build(project: Path, monkeypatch):
    recording, lengths = record_session(project)
    result = run_cli(project, monkeypatch, "takes", "split", "session", str(recording), "--voice", "therapist")
    assert result.exit_code == 0, result.output
    print("\n" + result.output)
    assert "found 10 speech chunks for 8 takes: joined the pauses inside takes 003, 007" in result.output
    folder = project / "voices" / "therapist" / "session" / "en-GB"
    files = sorted(folder.glob("*.wav"))
    assert [f.name for f in files] == [f"{n:03d}.wav" for n in range(1, 9)]
    errors = []
    for f in files:
        info = sf.info(str(f))
        assert (info.samplerate, info.channels, info.subtype) == (RATE, 2, "PCM_24")
        # Each file is its take's words (pauses inside it included) plus the room tone kept on either
        # side (CUT_BEFORE_S + CUT_AFTER_S; every silence here is long enough for both). ±0.3 s: the
        # chunk edges are found in 20 ms frames at thresholds relative to the room, and espeak's
        # softest word endings (under the room tone) are not found at all. A take in the wrong
        # place would be off by seconds: the takes' lengths differ by 0.4 s or more.
        errors.append(info.duration - lengths[f.stem] - CUT_BEFORE_S - CUT_AFTER_S)
    print("split length errors (s):", np.round(errors, 3).tolist())
    assert np.all(np.abs(errors) <= 0.3), errors
    record = json.loads((folder / "takes.json").read_text())["takes"]
    assert record["006"]["text"] == "Rest here." and len(record) == 8

    status = run_cli(project, monkeypatch, "takes", "status", "session", "--voice", "therapist")
    assert status.exit_code == 0 and "8 of 8 takes ok" in status.output, status.output

    report, warnings = _build(project, names=("session",))
    assert report.exit_code == 0, report.problems
    numbers = check_track(project, "session", "en-GB", "therapist")
    print("split recording:", {k: np.round(v, 1).tolist() for k, v in numbers.items()})

    # never overwrite without --force: nothing changes, and every existing file is named
    before = {f: f.read_bytes() for f in folder.iterdir()}
    again = run_cli(project, monkeypatch, "takes", "split", "session", str(recording), "--voice", "therapist")
    assert again.exit_code == 1
    assert "8 take files already exist; nothing was written. Use --force" in again.output
    assert all(f"{n:03d}.wav" in again.output for n in range(1, 9))
    assert {f: f.read_bytes() for f in folder.iterdir()} == before
    (folder / "004.mp3").write_bytes(b"an older take")  # a second file for take 004 goes with --force
    forced = run_cli(project, monkeypatch, "takes", "split", "session", str(recording), "--voice", "therapist",
                     "--force", "--format", "flac")
    assert forced.exit_code == 0, forced.output
    assert sorted(f.name for f in folder.glob("0*")) == [f"{n:03d}.flac" for n in range(1, 9)]
    # the takes replaced are kept, not deleted (therapist QA), where neither status nor the build looks
    (kept,) = (folder / "replaced").iterdir()
    assert sorted(f.name for f in kept.iterdir()) == sorted([f"{n:03d}.wav" for n in range(1, 9)] + ["004.mp3"])
    assert {f: f.read_bytes() for f in kept.iterdir() if f.suffix == ".wav"} == \
        {kept / f.name: data for f, data in before.items() if f.suffix == ".wav"}
    assert "kept the 9 take files replaced in " in forced.output


def test_clipped_take_is_warned_about(project: Path, monkeypatch):
    recording, _ = record_session(project, clip_take=4)
    result = run_cli(project, monkeypatch, "takes", "split", "session", str(recording), "--voice", "therapist")
    assert result.exit_code == 0, result.output
    assert "warning: take 004 is clipped" in result.output
    assert not any(f"take {n:03d} is clipped" in result.output for n in (1, 2, 3, 5, 6, 7, 8))
    status = run_cli(project, monkeypatch, "takes", "status", "session", "--voice", "therapist")
    lines = status.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("004"))
    assert "clipped:" in lines[at + 1] and status.output.count("clipped:") == 1, status.output


def test_a_take_read_again_keeps_the_last_reading(project: Path, monkeypatch):
    recording, lengths = record_session(project, retake=5)
    result = run_cli(project, monkeypatch, "takes", "split", "session", str(recording), "--voice", "therapist")
    assert result.exit_code == 0, result.output
    assert "found 12 speech chunks for 8 takes: joined the pauses inside takes 003, 007" in result.output
    assert "take 005 was read more than once: kept the last reading" in result.output
    take5 = sf.info(str(project / "voices" / "therapist" / "session" / "en-GB" / "005.wav")).duration
    # the second, slower reading with its margins (±0.3 s as in test_split_one_recording_then_build)
    assert take5 == pytest.approx(lengths["005"] + CUT_BEFORE_S + CUT_AFTER_S, abs=0.3)


def test_bad_recordings_write_nothing(project: Path, monkeypatch):
    (project / "scripts" / "session.yaml").write_text(SESSION)
    (project / "voices" / "therapist.yaml").write_text("engine: recorded\n")
    folder = project / "voices" / "therapist" / "session" / "en-GB"
    cases = {
        "silent.wav": (lambda p: sf.write(p, np.zeros((RATE * 20, 2)), RATE), "the recording is silent"),
        "room.flac": (lambda p: sf.write(p, room(RATE * 20, sr=RATE, seed=3), RATE), "no speech found"),
        "notes.wav": (lambda p: p.write_text("not a recording\n"), "not an audio file calmplace can read"),
        "empty.wav": (lambda p: sf.write(p, np.zeros((0, 1)), RATE), "the file holds no audio"),
        "missing.wav": (lambda p: None, "cannot read the file"),
    }
    for name, (make, message) in cases.items():
        make(project / name)
        result = run_cli(project, monkeypatch, "takes", "split", "session", name, "--voice", "therapist")
        assert result.exit_code == 1, (name, result.output)
        assert f"error: {name}: {message}" in result.output, (name, result.output)
        assert "Traceback" not in result.output
    assert not folder.exists()
    wrong = run_cli(project, monkeypatch, "takes", "split", "session", "silent.wav", "--voice", "nobody")
    assert wrong.exit_code == 1 and "unknown voice 'nobody'" in wrong.output


# ------------------------------------------------------------------------------------------------
# Matching chunks to takes, on synthetic "speech" (tone bursts): fast, and every length known


def bursts(segments: list[tuple], *, sr: int = 16000) -> np.ndarray:
    """("s", seconds[, pitch]) of voiced burst or ("-", seconds) of room tone, in order; (n, 1).
    Each take sounds different (its own pitch and vowel-like colour); a reading again sounds the same."""
    out = []
    for kind, seconds, *pitch in segments:
        n = int(seconds * sr)
        t = np.arange(n) / sr
        if kind == "s":
            f0 = pitch[0] if pitch else 150.0
            env = np.minimum(1.0, np.minimum(t, seconds - t) / 0.03)  # 30 ms ramps, like a word's edges
            colour = [1.0 / k if (k * f0 // 500) % 2 == 0 else 0.1 / k for k in range(1, 16)]
            out.append(0.1 * env * sum(c * np.sin(2 * np.pi * f0 * k * t) for k, c in enumerate(colour, 1)))
        else:
            out.append(np.zeros(n))
    x = np.concatenate(out)
    return (x + room(x.size, sr=sr, seed=4))[:, None]


def takes_of(lengths: list[float]) -> list[Take]:
    return [Take(i + 1, 0, f"take {i + 1}", 1.0, 1.0) for i in range(len(lengths))]


EXPECTED = [2.0, 3.5, 1.2, 4.0, 2.5, 3.0, 1.8, 2.2, 3.3, 1.5, 2.8]


def pitch(i: int) -> float:
    return 110.0 + 37.0 * (i % 7)


def reading(lengths: list[float], *, gaps: list[float], inside: dict[int, float] | None = None,
            scale: float = 1.0) -> list[tuple]:
    """Take i read at `scale` x its length; `inside[i]` seconds of pause splitting it in half."""
    segs: list[tuple] = [("-", 1.0)]
    for i, length in enumerate(lengths):
        length *= scale
        if inside and i in inside:
            segs += [("s", length / 2, pitch(i)), ("-", inside[i]), ("s", length / 2, pitch(i))]
        else:
            segs.append(("s", length, pitch(i)))
        segs.append(("-", gaps[i % len(gaps)]))
    return segs


def test_mid_take_pauses_and_a_slower_reader_are_resolved():
    # 30% slower than the synthetic voice, pauses of 0.8-1.2 s inside three takes, 1.5-4 s between
    data = bursts(reading(EXPECTED, gaps=[1.5, 3.0, 2.2, 4.0, 1.8], inside={1: 1.2, 4: 0.8, 8: 1.0}, scale=1.3))
    result = plan_split(Path("rec.wav"), data, 16000, takes_of(EXPECTED), EXPECTED)
    assert [len(c.chunks) for c in result.cuts] == [1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1]
    assert result.tempo == pytest.approx(1.3, abs=0.1)  # the reader's pace, learnt from the recording
    assert result.notes == ["found 14 speech chunks for 11 takes: joined the pauses inside takes 002, 005, 009"]


def test_mismatches_are_reported_clearly():
    # take 3 (1.2 s) was skipped and take 4 (4.0 s) read in its place, then again: as many chunks as
    # takes, but one of them three times too long; nothing is written
    segs = reading(EXPECTED[:2] + EXPECTED[3:], gaps=[1.5, 3.0, 2.2])
    segs[5:5] = [("s", EXPECTED[3], pitch(3)), ("-", 2.0)]
    with pytest.raises(CalmplaceError) as info:
        plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    message = str(info.value)
    print(message)
    assert message.startswith("rec.wav: found 11 speech chunks for 11 takes; take 003 looks 3.0 times as long as "
                              "expected (4.0 s at 0:11.0 in the recording; expected about 1.3 s)")
    assert "Check that every take was read once" in message
    # take 4 read, then (as the template advises when a take goes wrong) its number said and the
    # take read again; and a pause inside take 9: 14 chunks for 11 takes. The last reading is kept.
    # (Lengths are all there is to go on: had take 5 been as long as take 4, the second reading of
    # take 4 could as well be a false start of take 5. The note names the take, so one can check.)
    segs = reading(EXPECTED, gaps=[1.5, 3.0, 2.2], inside={8: 0.9})
    at = segs.index(("s", EXPECTED[3], pitch(3)))
    segs[at + 1: at + 1] = [("-", 2.0), ("s", 0.4, 300.0), ("-", 1.0), ("s", EXPECTED[3] * 1.1, pitch(3))]
    result = plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    print(result.notes)
    assert not result.warnings
    assert result.notes == ["found 14 speech chunks for 11 takes: joined the pauses inside take 009; take 004 was "
                            "read more than once: kept the last reading (at 0:21.8), left out 0:14.4-0:20.8"]
    assert result.cuts[3].chunks == (5,) and result.cuts[4].chunks == (6,)
    # take 5 read twice, where take 6 is about as long (2.5 and 3.0 s): the second reading could as
    # well be a false start of take 6 by their lengths; by their sound it is take 5 again
    segs = reading(EXPECTED, gaps=[1.5, 3.0, 2.2])
    at = segs.index(("s", EXPECTED[4], pitch(4)))
    segs[at + 1: at + 1] = [("-", 2.0), ("s", EXPECTED[4] * 1.1, pitch(4))]
    result = plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    assert "take 005 was read more than once" in result.notes[0], result.notes
    assert [c.chunks for c in result.cuts[4:6]] == [(5,), (6,)]
    # a false start (a third of take 7) then the whole take: the same
    segs = reading(EXPECTED, gaps=[2.5, 1.5, 3.5])
    at = segs.index(("s", EXPECTED[6], pitch(6)))
    segs[at: at] = [("s", EXPECTED[6] / 3, pitch(6)), ("-", 1.5)]
    result = plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    assert not result.warnings and "take 007 was read more than once" in result.notes[0]
    assert [len(c.chunks) for c in result.cuts] == [1] * 11


def test_neighbouring_takes_read_out_of_order_are_refused():
    # QA: takes 011 and 012 read the wrong way round were written with no word, each within the usual
    # lengths, and the track said the wrong sentences (8.4 and 6.7 s where 6.7 and 8.3 were expected).
    # Takes 5 and 6 (2.4 and 3.1 s) swapped here: each 1.3x or 0.77x its own length, the other's exactly
    expected = EXPECTED[:4] + [2.4, 3.1] + EXPECTED[6:]
    order = list(range(len(expected)))
    order[4], order[5] = 5, 4
    segs: list[tuple] = [("-", 1.0)]
    for k, i in enumerate(order):
        segs += [("s", expected[i], pitch(i)), ("-", [1.5, 3.0, 2.2][k % 3])]
    with pytest.raises(CalmplaceError) as info:
        plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(expected), expected)
    assert "takes 005 and 006 look read in each other's place: 005 is 3.1 s, as 006 is expected to be" \
        in str(info.value), info.value
    assert "Nothing was written" in str(info.value)
    # read in order at a reader's own uneven pace (each take 0.85-1.15x: 5 and 6 a little nearer each
    # other's lengths than their own), nothing is taken for a swap
    scale = [1.15, 0.85, 1.1, 0.9, 1.15, 0.85, 1.0, 1.1, 0.9, 1.0, 1.15]
    segs = [("-", 1.0)]
    for i, length in enumerate(expected):
        segs += [("s", length * scale[i], pitch(i)), ("-", [1.5, 3.0, 2.2][i % 3])]
    result = plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(expected), expected)
    assert [len(c.chunks) for c in result.cuts] == [1] * 11 and not result.warnings, result.warnings
    # with --accept-lengths the reader's word stands: written, with the warning
    order_segs = [("-", 1.0)]
    for k, i in enumerate(order):
        order_segs += [("s", expected[i], pitch(i)), ("-", [1.5, 3.0, 2.2][k % 3])]
    result = plan_split(Path("rec.wav"), bursts(order_segs), 16000, takes_of(expected), expected,
                        accept_lengths=True)
    assert any("look read in each other's place" in w for w in result.warnings)


def test_too_few_chunks_and_short_noises():
    # takes 3 and 4 run together without a pause: 10 chunks for 11 takes, even at shorter silences
    segs = reading(EXPECTED, gaps=[2.0])
    at = segs.index(("s", EXPECTED[2], pitch(2)))
    segs[at + 1] = ("-", 0.2)
    with pytest.raises(CalmplaceError, match=r"found 10 speech chunks for 11 takes: some takes are missing"):
        plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    # a cough (0.3 s) between takes 6 and 7 is left out, not taken for a take
    segs = reading(EXPECTED, gaps=[3.0])
    at = segs.index(("s", EXPECTED[5], pitch(5)))
    segs[at + 1: at + 2] = [("-", 1.4), ("s", 0.3, 300.0), ("-", 1.4)]
    result = plan_split(Path("rec.wav"), bursts(segs), 16000, takes_of(EXPECTED), EXPECTED)
    assert len(result.skipped) == 1 and all(len(c.chunks) == 1 for c in result.cuts)
    assert "left out 1 short sound between takes" in result.notes[0]


def test_writing_the_takes_is_all_or_nothing(tmp_path: Path, monkeypatch):
    import os

    from calmplace.split import write_split

    data = bursts(reading(EXPECTED, gaps=[2.0]))
    result = plan_split(Path("rec.wav"), data, 16000, takes_of(EXPECTED), EXPECTED)
    folder = tmp_path / "voices" / "maria" / "qa" / "en-GB"
    # QA: a folder where take 003 goes: 001 and 002 were written, no takes.json, and the error named
    # the internal temporary file
    (folder / "003.wav").mkdir(parents=True)
    with pytest.raises(CalmplaceError) as info:
        write_split(result, data, folder=folder, script_id="qa", locale="en-GB")
    assert "003.wav is a folder" in str(info.value) and ".tmp" not in str(info.value)
    assert [p.name for p in folder.iterdir()] == ["003.wav"]
    (folder / "003.wav").rmdir()
    # a failure while moving the files in (the disk, a permission): what was moved in goes again,
    # and a take replaced with --force comes back
    (folder / "005.wav").write_bytes(b"the older take 005")
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if str(dst).endswith("007.wav"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(CalmplaceError) as info:
        write_split(result, data, folder=folder, script_id="qa", locale="en-GB", force=True)
    assert str(info.value) == f"cannot write {folder / '007.wav'}: No space left on device; nothing was written"
    assert sorted(p.name for p in folder.iterdir()) == ["005.wav"]
    assert (folder / "005.wav").read_bytes() == b"the older take 005"
    monkeypatch.setattr(os, "replace", real)
    written, kept = write_split(result, data, folder=folder, script_id="qa", locale="en-GB", force=True)
    assert len(written) == 11 and (folder / "takes.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in written] + ["takes.json", "replaced"])
    assert [p.name for p in kept] == ["005.wav"] and kept[0].read_bytes() == b"the older take 005"

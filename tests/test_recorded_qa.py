"""QA of the recorded voice: what the build refuses (renumbered and truncated takes), that it names
every take problem at once, and that its advice names commands that work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import pdf_text
from test_recorded import _build, recorded_take, room, run_cli, take_folder, tiny_plan, write_takes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the therapist is played by espeak-ng")

STATUS = ("takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
BUILD = ("build", "tiny", "--voice", "therapist", "--locale", "en-GB")


def _texts(project: Path) -> list[str]:
    return [t.text for t in tiny_plan(project).takes]


def test_takes_renumbered_by_an_edit_stop_the_build(project: Path, monkeypatch):
    # QA: after a sentence was inserted before take 003, the build only warned, and with
    # --fallback-tts built 003.ogg and 004.mp3 one place early (exit 0); without it, it named only
    # take 005 as missing and suggested --fallback-tts
    write_takes(project)
    run_cli(project, monkeypatch, *STATUS, "--accept")
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("Let the breath slow down.", "Let the breath slow down. [pause 2s]\n"
                                                 "      Feel your feet on the floor."))
    for extra in ((), ("--fallback-tts",)):
        result = run_cli(project, monkeypatch, *BUILD, *extra)
        out = result.output
        assert result.exit_code == 1, out
        assert "Traceback" not in out
        rename_4 = ("voices/therapist/tiny/en-GB/004.mp3 was recorded for what is now take 005: "
                    "rename 004.mp3 to 005.mp3")
        rename_3 = ("voices/therapist/tiny/en-GB/003.ogg was recorded for what is now take 004: "
                    "rename 003.ogg to 004.ogg")
        assert rename_4 in out and rename_3 in out, out
        assert out.index(rename_4) < out.index(rename_3), out  # the highest number first: nothing is overwritten
        assert "calmplace takes status tiny --voice therapist --locale en-GB" in out, out
        # take 005 is no take to record: renaming 004.mp3 fills it
        assert "missing" not in out and "--fallback-tts" not in out, out
        assert not (project / "build" / "en-GB" / "tiny.mp3").exists()
    # renamed as told, the takes are ok and the only one missing is the new sentence, 003
    folder = take_folder(project)
    (folder / "004.mp3").rename(folder / "005.mp3")
    (folder / "003.ogg").rename(folder / "004.ogg")
    result = run_cli(project, monkeypatch, *BUILD)
    assert result.exit_code == 1 and "1 of 5 takes of tiny (en-GB) is missing" in result.output, result.output
    assert "voices/therapist/tiny/en-GB/003.wav" in result.output and "rename" not in result.output


def test_a_truncated_take_is_unreadable(project: Path, monkeypatch):
    # QA: a WAV cut off while copied, with part of its speech left, showed "ok" with a note in
    # status (exit 0), and the build used the partial sentence
    write_takes(project, skip=("003",))
    folder = take_folder(project)
    whole = recorded_take(_texts(project)[2], sr=44100, channels=1, lead_s=0.3, tail_s=0.3, gain_db=-6, seed=3)
    sf.write(folder / "003.wav", whole, 44100, subtype="PCM_16")
    raw = (folder / "003.wav").read_bytes()
    (folder / "003.wav").write_bytes(raw[:44 + 2 * int(0.5 * whole.shape[0])])  # half the take
    status = run_cli(project, monkeypatch, *STATUS)
    line = next(l for l in status.output.splitlines() if l.strip().startswith("003"))
    assert "unreadable" in line and "the file is truncated: its header promises" in line, status.output
    assert "3 of 4 takes ok, 1 unreadable" in status.output, status.output
    assert status.exit_code == 1
    report, _ = _build(project)
    assert report.exit_code == 1, report.problems
    text = "\n".join(report.problems)
    assert "voices/therapist/tiny/en-GB/003.wav: the file is truncated: its header promises" in text, text
    assert "record it again or copy it anew" in text and "cannot be read" in text, text
    assert not (project / "build" / "en-GB" / "tiny.mp3").exists()
    # regression QA: a whole WAV from a streaming writer (ffmpeg to a pipe) says 0xFFFFFFFF bytes in
    # its header, "as much as follows": that is no truncation
    streamed = bytearray(raw)
    at = streamed.index(b"data") + 4
    streamed[at:at + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    (folder / "003.wav").write_bytes(bytes(streamed))
    status = run_cli(project, monkeypatch, *STATUS)
    line = next(l for l in status.output.splitlines() if l.strip().startswith("003"))
    assert "truncated" not in status.output and "unreadable" not in line, status.output
    report, _ = _build(project)
    assert report.exit_code == 0, report.problems


def test_the_build_names_every_take_it_cannot_prepare(project: Path, monkeypatch):
    # QA: a silent take, one at too low a rate and one of NaN samples each stopped the build on its
    # own: every run named one more
    write_takes(project)
    monkeypatch.chdir(project)
    folder = take_folder(project)
    for old in folder.glob("00[124].*"):
        old.unlink()
    sf.write(folder / "001.wav", room(44100 * 2, sr=44100, seed=3)[:, None], 44100)   # room tone only
    sf.write(folder / "002.wav", recorded_take(_texts(project)[1], sr=7000, channels=1, lead_s=0.3, tail_s=0.3,
                                               gain_db=-6, seed=2), 7000)
    nan = recorded_take(_texts(project)[3], sr=44100, channels=1, lead_s=0.3, tail_s=0.3, gain_db=-6, seed=4)
    nan[1000:1010] = np.nan
    sf.write(folder / "004.wav", nan, 44100, subtype="FLOAT")
    report, _ = _build(project)
    assert report.exit_code == 1
    text = "\n".join(report.problems)
    one = "voices/therapist/tiny/en-GB/001.wav: no speech found"
    two = "voices/therapist/tiny/en-GB/002.wav: the sample rate is 7000 Hz"
    four = "voices/therapist/tiny/en-GB/004.wav: the file holds invalid samples"
    for message in (one, two, four):
        assert f"  {message}" in text, text
    assert text.index(one) < text.index(two) < text.index(four)  # in take order
    assert "3 take files of tiny (en-GB) cannot be used" in text, text
    assert str(project) not in text  # paths as the person knows them


def test_the_missing_takes_advice_names_the_template_for_this_voice(project: Path, monkeypatch):
    # QA: it said "calmplace template tiny prints their texts": that makes the narrator's template,
    # and writes a PDF
    write_takes(project, skip=("002",))
    report, _ = _build(project)
    text = "\n".join(report.problems)
    # QA: "writes their texts", but the template lists every take, the missing one unmarked: say which
    assert ("calmplace template tiny --voice therapist --locale en-GB lists every take's text "
            "(build/templates/en-GB/tiny-recording.pdf; these are take 002)") in text, text
    assert "prints" not in text
    # and the command does that
    result = run_cli(project, monkeypatch, "template", "tiny", "--voice", "therapist", "--locale", "en-GB")
    assert result.exit_code == 0, result.output
    assert "voices/therapist/tiny/en-GB/" in pdf_text(project / "build" / "templates" / "en-GB" / "tiny-recording.pdf")


def test_the_template_prints_the_split_command_without_backticks(project: Path, monkeypatch):
    # QA: the advice printed "`calmplace takes split`", backticks and all
    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "therapist")
    assert result.exit_code == 0, result.output
    text = pdf_text(project / "build" / "templates" / "en-GB" / "tiny-recording.pdf")
    flat = " ".join(text.split())
    assert "`" not in text
    assert "calmplace takes split tiny" in flat and "--voice therapist --locale en-GB" in flat, flat


def test_a_cough_after_the_words_is_named_by_status_and_the_build(project: Path, monkeypatch):
    """QA: a 0.35 s cough 1.7 s after a take's words was kept, heard in the track louder than the
    speech, and lowered the take's level by 2.3 LU; status said only that it peaked high. It is
    still kept (a reader may pause that long before a last word) but named, with where it is."""
    write_takes(project, skip=("003",))
    sr = 44100
    take = recorded_take(_texts(project)[2], sr=sr, channels=1, lead_s=0.4, tail_s=0.0, gain_db=-6, seed=3)[:, 0]
    rng = np.random.default_rng(5)
    cough = rng.normal(0, 0.3, int(0.35 * sr)) * np.hanning(int(0.35 * sr))   # a noisy burst, 0.35 s
    x = np.concatenate([take, room(int(1.7 * sr), sr=sr, seed=8), cough, room(int(0.4 * sr), sr=sr, seed=9)])
    sf.write(take_folder(project) / "003.wav", x, sr, subtype="PCM_24")
    at_s = (take.size + 1.7 * sr) / sr
    status = run_cli(project, monkeypatch, *STATUS)
    notes = [line.strip() for line in status.output.splitlines() if "a short sound" in line]
    assert len(notes) == 1, status.output
    # where: to the 10 ms frame the detector works in, and the cough's own rise (hanning) may be quiet
    # for its first few frames, hence 0.1 s; how far from the words: the same, from the other side
    where = float(notes[0].split("a short sound at ")[1].split(" s")[0])
    assert at_s - 0.05 <= where <= at_s + 0.15, (where, at_s)
    report, warnings = _build(project)
    assert report.exit_code == 0, report.problems
    assert [w for w in warnings if "003.wav" in w and "a short sound at" in w], warnings
    # the takes recorded cleanly get no such note
    assert not [w for w in warnings if "a short sound" in w and "003.wav" not in w], warnings
    # regression QA: a last word after a thoughtful pause is voiced, not a cough: no note
    word = recorded_take("out.", sr=sr, channels=1, lead_s=0.0, tail_s=0.3, gain_db=-6, seed=4)[:, 0]
    x = np.concatenate([take, room(int(1.6 * sr), sr=sr, seed=8), word])
    sf.write(take_folder(project) / "003.wav", x, sr, subtype="PCM_24")
    status = run_cli(project, monkeypatch, *STATUS)
    assert "a short sound" not in status.output, status.output
    # QA: the same cough between two phrases of a take, 1.3 s from each, was never mentioned
    x = np.concatenate([take, room(int(1.3 * sr), sr=sr, seed=8), cough, room(int(1.3 * sr), sr=sr, seed=9), word])
    sf.write(take_folder(project) / "003.wav", x, sr, subtype="PCM_24")
    status = run_cli(project, monkeypatch, *STATUS)
    notes = [line.strip() for line in status.output.splitlines() if "a short sound" in line]
    assert len(notes) == 1, status.output
    where = float(notes[0].split("a short sound at ")[1].split(" s")[0])
    at_s = (take.size + 1.3 * sr) / sr
    assert at_s - 0.05 <= where <= at_s + 0.15, (where, at_s)   # as above


def test_a_folder_named_like_a_take_is_said_to_be_in_the_way(project: Path, monkeypatch):
    """QA: a folder named 003.wav showed as a plain missing take, and --fallback-tts quietly spoke it."""
    write_takes(project, skip=("003",))
    (take_folder(project) / "003.wav").mkdir()
    status = run_cli(project, monkeypatch, *STATUS)
    assert status.exit_code == 1 and "(a folder named 003.wav is in the way)" in status.output, status.output
    report, _ = _build(project)
    assert report.exit_code == 1
    assert any("003.wav (a folder named 003.wav is in the way)" in p for p in report.problems), report.problems


def test_after_a_sentence_is_removed_a_text_said_twice_maps_to_the_right_take(project: Path, monkeypatch):
    """Regression QA: script 'Breathe in. / Let the shoulders soften. / Breathe in. / Good.' recorded
    and accepted; the second sentence removed. The build said to rename 003 to 001 (the first
    'Breathe in.') and left 004 as 'not a take of this script'. The texts are aligned in order:
    001 stays, 003 -> 002, 004 -> 003 (the lowest first, 002.wav moved away first)."""
    script = project / "scripts" / "tiny.yaml"
    script.write_text("title: Twice\nlocales: [en-GB]\nambience: none\nsections:\n  - text: \"Breathe in. [pause 2s] "
                      "Let the shoulders soften. [pause 2s] Breathe in. [pause 2s] Good.\"\n")
    (project / "voices" / "therapist.yaml").write_text("engine: recorded\n")
    folder = take_folder(project)
    folder.mkdir(parents=True)
    texts = _texts(project)
    for i, text in enumerate(texts):
        x = recorded_take(text, sr=44100, channels=1, lead_s=0.3, tail_s=0.3, gain_db=-6, seed=i)
        sf.write(folder / f"{i + 1:03d}.wav", x, 44100, subtype="PCM_24")
    accepted = run_cli(project, monkeypatch, *STATUS, "--accept")
    assert accepted.exit_code == 0, accepted.output
    script.write_text(script.read_text().replace("Let the shoulders soften. [pause 2s] ", ""))
    result = run_cli(project, monkeypatch, *BUILD)
    out = result.output
    assert result.exit_code == 1, out
    rename_3 = ("003.wav was recorded for what is now take 002: rename 003.wav to 002.wav "
                "(move 002.wav out of the way first)")
    rename_4 = "004.wav was recorded for what is now take 003: rename 004.wav to 003.wav"
    assert rename_3 in out and rename_4 in out and "take 001" not in out, out
    assert out.index(rename_3) < out.index(rename_4), out   # the lowest number first after a removal
    status = run_cli(project, monkeypatch, *STATUS)
    assert status.exit_code == 1 and "004.wav was recorded for \u201cGood.\u201d, what is now take 003" in status.output
    # done as told: 002.wav (the removed sentence) out of the way, then 003 -> 002, 004 -> 003
    (folder / "002.wav").rename(project / "removed.wav")
    (folder / "003.wav").rename(folder / "002.wav")
    (folder / "004.wav").rename(folder / "003.wav")
    report, _ = _build(project)
    assert report.exit_code == 0, report.problems

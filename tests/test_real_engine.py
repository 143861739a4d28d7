"""The real speech engine (pyttsx3 over espeak-ng) end to end: no stand-ins."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from calmplace import SR
from calmplace.build import build
from calmplace.captions import parse_webvtt
from calmplace.errors import CalmplaceError
from calmplace.script import Project
from calmplace.speech.tts import SystemVoice, TtsEngine, choose_voice, system_voices
from calmplace.voices import VoiceProfile, load_voice

from helpers import decode, ffmpeg_ebur128, ffprobe_chapters, integrated_lufs, true_peak_dbtp, window_rms_db

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def narrator() -> TtsEngine:
    return TtsEngine(load_voice("narrator", voices_dir=REPO / "voices"))


def test_voices_are_listed_and_chosen_by_preference():
    voices = system_voices()
    assert any("en-gb" in v.languages for v in voices)
    fake = [SystemVoice("a/x", "X", ("en-us",)), SystemVoice("a/y", "Y", ("en-gb",))]
    assert choose_voice(("Hazel", "en-gb"), locale="en-GB", voices=fake).id == "a/y"
    with pytest.raises(CalmplaceError, match="installed voices for 'en':\n  a/x .*\n  a/y "):
        choose_voice(("Nobody",), locale="en-GB", voices=fake)
    # QA: a language no voice speaks listed the first 30 voices of other languages, cut off unsaid
    with pytest.raises(CalmplaceError, match=r"no installed voice speaks 'zu' \(for zu-ZA\): none of the 2 "
                                             r"installed voices matches \['zu-za'\]; `calmplace voices` lists them$"):
        choose_voice(("zu-za",), locale="zu-ZA", voices=fake)
    many = [SystemVoice(f"a/{i}", f"V{i}", ("en-gb",)) for i in range(35)]
    with pytest.raises(CalmplaceError, match=r"  a/29 .*\n  \.\.\. and 5 more \(calmplace voices --locale en-GB\)$"):
        choose_voice(("Nobody",), locale="en-GB", voices=many)


def test_takes_are_deterministic_and_long_texts_complete(narrator: TtsEngine):
    long = ("Notice the places where your body is held: your feet on the floor, your back against the chair, "
            "the weight of your hands where they rest, and the slow rise and fall of your breathing.")
    clips = narrator.speak_texts([long, "Rest.", long, long], locale="en-GB", sr=SR, jobs=2)
    digests = {hashlib.sha256(c.tobytes()).hexdigest() for c in (clips[0], clips[2], clips[3])}
    assert len(digests) == 1  # the same text gives the same samples, whichever process renders it
    # ~35 words at 140 wpm: 13-17 s. A clip cut short by pyttsx3's early return would be far shorter
    assert 11.0 < clips[0].size / SR < 20.0
    assert clips[1].size < clips[0].size / 5
    for clip in clips:  # trimmed to a short margin: speech begins within 0.1 s
        onset = np.flatnonzero(np.abs(clip) > 0.02 * np.abs(clip).max())[0] / SR
        assert onset < 0.1


def test_rate_changes_the_pace(narrator: TtsEngine):
    text = "Let your attention turn to your breathing, slowly and kindly."
    slow = TtsEngine(VoiceProfile("slow", "tts", rate_wpm=100, prefer=narrator.profile.prefer))
    fast = TtsEngine(VoiceProfile("fast", "tts", rate_wpm=200, prefer=narrator.profile.prefer))
    n_slow = slow.speak_texts([text], locale="en-US", sr=SR)[0].size
    n_fast = fast.speak_texts([text], locale="en-US", sr=SR)[0].size
    assert 1.5 < n_slow / n_fast < 2.5  # twice the rate, about half the duration (pauses don't scale)


def test_unknown_voice_fails_with_the_list():
    engine = TtsEngine(VoiceProfile("odd", "tts", prefer={"en-GB": ("no-such-voice",)}))
    with pytest.raises(CalmplaceError) as info:
        engine.speak_texts(["Hello."], locale="en-GB", sr=SR)
    assert "no installed voice matches ['no-such-voice']" in str(info.value) and "gmw/en" in str(info.value)


def test_caption_boundaries_inside_a_real_take_fall_on_speech_onsets(narrator: TtsEngine):
    """espeak-ng pauses at full stops and commas; the cue boundaries inside a take move onto them:
    the 100 ms before each is silence in the clip (espeak writes digital zeros there; 30 dB covers
    a quiet breath), the 100 ms after it is speech."""
    from calmplace.captions import _snap, speech_gaps, split_cues, split_sentences

    text = "Notice the air on your skin. Is it cool, or warm? Is there a gentle breeze?"
    (clip,) = narrator.speak_texts([text], locale="en-GB", sr=SR)
    units = [c for s in split_sentences(text) for c in split_cues(s)]
    assert len(units) == 3
    total, acc, inner = sum(map(len, units)), 0, []
    for unit in units[:-1]:
        acc += len(unit)
        inner.append(clip.size * acc // total)
    snapped = _snap(inner, speech_gaps(clip, sr=SR), sr=SR)
    tenth = SR // 10
    for bound in snapped:
        assert window_rms_db(clip, bound, bound + tenth) - window_rms_db(clip, bound - tenth, bound) > 30, bound / SR


@pytest.mark.slow
def test_real_voice_track_end_to_end(project: Path):
    report = build(Project(project), jobs=2)
    assert report.exit_code == 0, report.problems
    mp3 = project / "build" / "en-GB" / "tiny.mp3"
    samples, sr = decode(mp3)
    assert integrated_lufs(samples, sr) == pytest.approx(-16.0, abs=1.0)
    assert true_peak_dbtp(samples) <= -0.95  # 0.05 dB: this test's 4x interpolator vs BS.1770's
    ff = ffmpeg_ebur128(mp3)
    if ff:
        assert ff["I"] == pytest.approx(-16.0, abs=1.0) and ff["peak"] <= -1.0
    cues = parse_webvtt((project / "build" / "en-GB" / "tiny.vtt").read_text())
    assert cues[0][2].startswith("Settle in")
    # speech is where the captions say, and the pause after the first take is quieter by far
    first_start, first_end = int(cues[0][0] * SR), int(cues[0][1] * SR)
    assert window_rms_db(samples, first_start, first_end) - window_rms_db(samples, first_end + SR, first_end + 3 * SR) > 10
    chapters = ffprobe_chapters(mp3)
    if chapters is not None:
        assert [c[2] for c in chapters] == ["Arriving", "Resting"]


def test_check_fails_for_a_locale_no_installed_voice_speaks(project: Path):
    # QA: `check` said OK, and the build failed at once with no installed voice for zu-ZA
    from helpers import invoke_cli

    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("locales: [en-GB, en-US]", "locales: [en-GB, zu-ZA]")
                      .replace("en-US: {colour: color}", "zu-ZA: {colour: color}"))
    result = invoke_cli(project, "check")
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    # at the locale in the script (QA: the message had no line and column), with the line and a caret
    assert lines[0].startswith("scripts/tiny.yaml:5:18: error: voice narrator: no installed voice speaks 'zu' "
                               "(for zu-ZA)"), result.output
    assert lines[1:3] == ["    locales: [en-GB, zu-ZA]", " " * 21 + "^"]
    assert "Traceback" not in result.output
    # the build stops before building anything, as for a script's other errors (QA: it built the
    # script's en-GB track, then failed zu-ZA)
    result = invoke_cli(project, "build")
    assert result.exit_code == 1, result.output
    assert lines[0] in result.output and "nothing built: fix the errors above first" in result.output
    assert not (project / "build" / "en-GB").exists()


def test_voices_for_a_locale_list_its_own_first(monkeypatch):
    # author QA: `voices --locale en-GB` listed the Caribbean and American voices among the British
    from click.testing import CliRunner

    from calmplace.cli import main
    from calmplace.speech import tts

    fake = [SystemVoice("a/us", "US", ("en-us",)), SystemVoice("a/gb", "GB", ("en-gb",)),
            SystemVoice("a/rp", "RP", ("en-gb-x-rp",)), SystemVoice("a/fr", "FR", ("fr-fr",))]
    monkeypatch.setattr(tts, "system_voices", lambda: fake)
    lines = CliRunner().invoke(main, ["voices", "--locale", "en-GB"]).output.splitlines()
    assert [ln.split()[0] for ln in lines] == ["a/gb", "a/rp", "other", "a/us"], lines
    lines = CliRunner().invoke(main, ["voices", "--locale", "en"]).output.splitlines()
    assert [ln.split()[0] for ln in lines] == ["a/us", "a/gb", "a/rp"], lines


def test_clean_unused_removes_only_the_takes_no_script_uses(project: Path):
    """The command, with the real voice: a take replaced by an edit goes, the rest stay."""
    from helpers import invoke_cli

    assert build(Project(project), locales=("en-GB",)).exit_code == 0
    result = invoke_cli(project, "clean", "--unused")
    assert (result.exit_code, result.output.strip()) == (0, "nothing to remove")
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("Rest here for a while.", "Rest here for a little while."))
    assert build(Project(project), locales=("en-GB",)).exit_code == 0
    before = set((project / "build" / ".cache").rglob("*.npy"))
    result = invoke_cli(project, "clean", "--unused")
    assert result.exit_code == 0 and result.output.strip() == "removed 1 unused cached take from build/.cache/"
    after = set((project / "build" / ".cache").rglob("*.npy"))
    assert after < before and len(before - after) == 1
    # what is left is what the edited script reads: building it from scratch speaks nothing new
    report = build(Project(project), locales=("en-GB",), out_dir=project / "again", cache_dir=project / "build" / ".cache")
    assert report.exit_code == 0 and report.built == 1
    assert set((project / "build" / ".cache").rglob("*.npy")) == after

"""The whole pipeline on a tiny script with the fast stand-in voice, measured with independent tools."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from mutagen.id3 import ID3

from calmplace import SR
from calmplace.build import Settings, build, gather
from calmplace.captions import parse_webvtt
from calmplace.cli import main
from calmplace.script import Project, load_script
from calmplace.speech.fake import FakeEngine
from calmplace.takes import plan
from calmplace.timeline import build_timeline

from helpers import decode, ffmpeg_ebur128, ffprobe_chapters, integrated_lufs, pdf_text, true_peak_dbtp, window_rms_db


def fake_build(project: Path, **kwargs):
    return build(Project(project), engine_factory=lambda profile: FakeEngine(), **kwargs)


def expected_timeline(project: Path, locale: str):
    script = load_script(project / "scripts" / "tiny.yaml")
    p = plan(script, locale)
    engine = FakeEngine()
    return p, build_timeline(p, [engine.speak_text(t.text, sr=SR).size for t in p.takes], sr=SR)


@pytest.fixture
def built(project: Path) -> Path:
    report = fake_build(project)
    assert report.exit_code == 0, report.problems
    assert (report.built, report.cached, report.failed) == (2, 0, 0)
    return project


def test_mp3_format_loudness_and_peak(built: Path):
    path = built / "build" / "en-GB" / "tiny.mp3"
    from mutagen.mp3 import MP3

    info = MP3(str(path)).info
    assert (info.sample_rate, info.channels, info.bitrate) == (44100, 2, 192000)
    samples, sr = decode(path)
    _, tl = expected_timeline(built, "en-GB")
    # the decoder hands back exactly the timeline's samples: LAME's delay and padding are trimmed
    # (by the Info tag) to within one 1152-sample MP3 frame
    assert abs(samples.shape[1] - tl.n_samples) <= 1152
    # contract: -16 LUFS ±1 LU and ≤ -1 dBTP, measured on what the MP3 decodes to
    assert integrated_lufs(samples, sr) == pytest.approx(-16.0, abs=1.0)
    assert true_peak_dbtp(samples) <= -1.0 + 0.05  # 0.05 dB: resample_poly's interpolator vs BS.1770's FIR
    ff = ffmpeg_ebur128(path)
    if ff:
        assert ff["I"] == pytest.approx(-16.0, abs=1.0)
        assert ff["peak"] <= -1.0


def test_speech_sits_where_the_timeline_says(built: Path):
    samples, _ = decode(built / "build" / "en-US" / "tiny.mp3")
    _, tl = expected_timeline(built, "en-US")
    for span in tl.takes:
        inside = window_rms_db(samples, span.start, span.end)
        before = window_rms_db(samples, span.start - SR // 2, span.start - SR // 4)  # in the pause before
        assert inside - before > 10  # the voice stands well above the ducked bed


def test_chapters_read_back(built: Path):
    path = built / "build" / "en-GB" / "tiny.mp3"
    _, tl = expected_timeline(built, "en-GB")
    tags = ID3(str(path))
    assert tags["TIT2"].text == ["Tiny Calm"] and tags["TPE1"].text == ["Test Author"]
    assert tags["TALB"].text == ["Test Collection"] and tags["TLAN"].text == ["eng"]
    chaps = sorted(tags.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.sub_frames["TIT2"].text[0] for c in chaps] == ["Arriving", "Resting"]
    # ID3 CHAP times are whole milliseconds
    assert [c.start_time for c in chaps] == [round(s.start / SR * 1000) for s in tl.sections]
    assert len(tags.getall("CTOC")) == 1
    probed = ffprobe_chapters(path)
    if probed is not None:
        assert [t for _, _, t in probed] == ["Arriving", "Resting"]
        assert probed[1][0] == pytest.approx(tl.sections[1].start / SR, abs=0.001)


def test_pdf_and_captions_follow_the_locale(built: Path):
    gb = pdf_text(built / "build" / "en-GB" / "tiny.pdf")
    us = pdf_text(built / "build" / "en-US" / "tiny.pdf")
    assert "colour of the light" in gb and "color of the light" in us
    assert "pause, 4 seconds" in gb
    _, tl = expected_timeline(built, "en-US")
    start = tl.sections[1].start // SR
    assert f"Resting · {start // 60}:{start % 60:02d}" in us
    cues = parse_webvtt((built / "build" / "en-US" / "tiny.vtt").read_text())
    assert "color" in cues[0][2]
    spans = [(s.start / SR, s.end / SR) for s in tl.takes]
    for begin, end, _ in cues:  # every cue lies within a take's speech (1 ms: cue time rounding)
        assert any(a - 0.001 <= begin and end <= b + 0.001 for a, b in spans)


def test_noop_rebuild_touches_nothing(built: Path):
    files = sorted((built / "build").rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in files if p.is_file()}
    report = fake_build(built)
    assert (report.built, report.cached, report.exit_code) == (0, 2, 0)
    assert {p: p.stat().st_mtime_ns for p in files if p.is_file()} == before


def _count_hashing(monkeypatch) -> list[Path]:
    import calmplace.build as build_module

    hashed: list[Path] = []
    real = build_module.sha256_file

    def counting(path):
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(build_module, "sha256_file", counting)
    return hashed


def test_noop_reads_no_output_the_last_build_wrote(built: Path, monkeypatch):
    stats = json.loads((built / "build" / ".cache" / "output-stats.json").read_text())
    assert len(stats) == 6   # 2 tracks x mp3, pdf, vtt
    hashed = _count_hashing(monkeypatch)
    report = fake_build(built)
    assert (report.built, report.cached, report.exit_code) == (0, 2, 0)
    assert hashed == []   # every output's stat matched what the build recorded: its sha256 was not re-read


def test_an_output_changed_in_place_is_rebuilt_even_with_its_old_mtime(built: Path, monkeypatch):
    vtt = built / "build" / "en-GB" / "tiny.vtt"
    good, st = vtt.read_bytes(), vtt.stat()
    vtt.write_bytes(good.replace(b"-->", b"==>", 1))   # the same size, other bytes
    os.utime(vtt, ns=(st.st_atime_ns, st.st_mtime_ns))   # `touch -d` back: the change time still moved
    hashed = _count_hashing(monkeypatch)
    report = fake_build(built)
    assert (report.built, report.cached, report.exit_code) == (1, 1, 0)
    assert vtt in hashed and len(hashed) == 1   # only the file whose stat changed was read
    assert vtt.read_bytes() == good


def test_output_folders_sharing_a_cache_keep_each_others_stats(project: Path, tmp_path, monkeypatch):
    cache = tmp_path / "shared-cache"
    for out in ("a", "b"):
        assert fake_build(project, out_dir=tmp_path / out, cache_dir=cache).built == 2
    hashed = _count_hashing(monkeypatch)
    for out in ("a", "b"):
        assert fake_build(project, out_dir=tmp_path / out, cache_dir=cache).cached == 2
    assert hashed == []
    # an output folder deleted: its records leave with the next build that writes the file
    import shutil

    shutil.rmtree(tmp_path / "a")
    assert fake_build(project, out_dir=tmp_path / "c", cache_dir=cache).built == 2
    names = json.loads((cache / "output-stats.json").read_text())
    assert {Path(name).parent.parent.name for name in names} == {"b", "c"}


def test_damaged_output_stats_mean_hashing_as_before(built: Path, monkeypatch):
    (built / "build" / ".cache" / "output-stats.json").write_text('{"x": [1, 2]')
    hashed = _count_hashing(monkeypatch)
    report = fake_build(built)
    assert (report.built, report.cached, report.exit_code) == (0, 2, 0)
    assert len(set(hashed)) == 6


def test_manifest_lists_outputs(built: Path):
    manifest = json.loads((built / "build" / "manifest.json").read_text())["outputs"]
    assert set(manifest) == {f"{loc}/tiny.{ext}" for loc in ("en-GB", "en-US") for ext in ("mp3", "pdf", "vtt")}
    mp3 = manifest["en-GB/tiny.mp3"]
    assert mp3["integrated_lufs"] == pytest.approx(-16.0, abs=1.0) and mp3["true_peak_dbtp"] <= -1.0


def test_bad_script_writes_nothing_and_keeps_old_outputs(built: Path):
    old = (built / "build" / "en-GB" / "tiny.mp3").read_bytes()
    script = built / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("[pause 4s]", "[pause 4ss]"))
    (built / "scripts" / "second.yaml").write_text("title: Second\nlocales: [en-GB]\nsections: [{text: Hi.}]\n")
    report = fake_build(built)
    assert report.exit_code == 1
    assert any("tiny.yaml:14:" in p and "[pause 4ss]" in p for p in report.problems)
    assert (built / "build" / "en-GB" / "tiny.mp3").read_bytes() == old
    assert not (built / "build" / "en-GB" / "second.mp3").exists()  # gather everything first, then write
    # QA read "0 built, 0 unchanged, 1 failed" as every other track lost
    assert report.summary() == "nothing built: fix the errors above first (every script is checked before any is built)"
    assert not [p for p in (built / "build").rglob("*") if p.name.startswith(".")  and p.suffix == ".tmp"]


def test_cli_check_points_at_line_and_column(project: Path):
    (project / "scripts" / "tiny.yaml").write_text(
        (project / "scripts" / "tiny.yaml").read_text().replace("[pause 6s]", "[paws 6s]"))
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = runner.invoke(main, ["check"])
        usage = runner.invoke(main, ["build", "--jobs", "zero"])
        ok = runner.invoke(main, ["check", "--help"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1
    assert "scripts/tiny.yaml:19:30: error: unknown marker [paws 6s]; did you mean [pause 6s]?" in result.output
    assert "Traceback" not in result.output
    assert usage.exit_code == 2
    assert ok.exit_code == 0


def test_check_a_folder_sums_up_and_locales_ignore_case(project: Path, monkeypatch):
    """QA: `check scripts/` was "no such script"; a failing check said nothing of the scripts that
    passed; `--locale en-us` matched no script's en-US."""
    (project / "scripts" / "broken.yaml").write_text("title: Broken\nlocales: [en-GB]\nsections:\n  - text: [paws]\n")
    monkeypatch.chdir(project)
    result = CliRunner().invoke(main, ["check", "scripts/"])
    assert result.exit_code == 1 and "scripts/broken.yaml:4:11: error" in result.output, result.output
    assert result.output.rstrip().endswith("1 script with errors, 1 OK"), result.output
    (project / "scripts" / "broken.yaml").unlink()
    result = CliRunner().invoke(main, ["check", "scripts"])
    assert result.exit_code == 0 and "1 script OK" in result.output, result.output
    report = fake_build(project, locales=("en-us",))
    assert report.exit_code == 0 and report.built == 1, report.problems
    assert (project / "build" / "en-US" / "tiny.mp3").is_file() and not (project / "build" / "en-us").exists()


@pytest.mark.parametrize("locales, jobs", [(("en-GB",), 2), ((), 1), ((), 2)])
def test_a_take_that_cannot_be_cached_fails_the_build(project: Path, monkeypatch, locales, jobs):
    """New takes are written to the cache from a thread of their own (a lone track is rendered from
    its clips in memory meanwhile); a write that fails still fails the build, with the OS's reason
    and exit 1 from the command line, not a traceback."""
    from calmplace.build import TakeCache

    def refuse(self, key, clip):
        raise OSError(28, "No space left on device", str(self.path(key)))

    monkeypatch.setattr(TakeCache, "put", refuse)
    with pytest.raises(OSError, match="No space left on device"):
        fake_build(project, locales=locales, jobs=jobs)
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(project)
    try:
        # --force: a lone track's outputs were written (from its clips in memory) and recorded in the
        # manifest before the failed cache write was noticed, so they are not stale
        result = runner.invoke(main, ["build", "--fake-speech", "--force", "--jobs", str(jobs)]
                               + [arg for loc in locales for arg in ("--locale", loc)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 1
    # worded as every command words an OS error (review: it was the raw '[Errno 28] No space left...')
    assert "error: cannot write " in result.output and ".npy" in result.output, result.output
    assert result.output.rstrip().endswith(": the disk is full") and "Errno" not in result.output, result.output
    assert "Traceback" not in result.output


def test_output_key_covers_the_code_and_the_libraries(project: Path, tmp_path: Path, monkeypatch):
    """CI QA: outputs built by older code of the same version counted as up to date, and a restored
    cache shipped them. The output key holds a hash of calmplace's source and of the versions of
    the libraries that shape the bytes: a changed byte of code, or another numpy, changes it."""
    import shutil

    import calmplace
    from calmplace import build as b

    package = tmp_path / "calmplace"
    shutil.copytree(Path(calmplace.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    versions = b._installed_versions()
    assert versions.get("numpy") and versions.get("lameenc") and versions.get("reportlab")
    first = b._fingerprint(package, versions)
    assert b._fingerprint(package, dict(versions)) == first == b.code_fingerprint()
    pdf = package / "pdf.py"
    pdf.write_bytes(pdf.read_bytes() + b"\n")
    assert b._fingerprint(package, versions) != first
    pdf.write_bytes(pdf.read_bytes()[:-1])
    assert b._fingerprint(package, versions) == first
    table = package / "designs.json"   # the filter designs looked up (calmplace.designs) are code too
    table.write_text(table.read_text() + " ")
    assert b._fingerprint(package, versions) != first
    assert b._fingerprint(package, {**versions, "numpy": "9.9.9"}) != first
    job = gather(Project(project), ("tiny",))[0][0]
    keys = []
    for code in ("a", "b"):
        monkeypatch.setattr(b, "code_fingerprint", lambda code=code: code)
        keys.append(b.output_key(job, settings=Settings(), take_keys=["k"], ambience_hashes={}))
    assert keys[0] != keys[1]


def test_settings_key_covers_every_field(project: Path):
    """Every field that shapes the outputs is in the settings key; the two that select inputs
    (`voice`, `fallback_tts`) are not, as what they select is keyed already: the voice profile and
    the take keys are part of every output key (a build with --voice naming the script's own
    voice changes no byte, and is not stale)."""
    import dataclasses

    from calmplace.build import make_engine, output_key
    from calmplace.errors import CalmplaceError
    from calmplace.speech.fake import FakeEngine
    from calmplace.takes import plan

    base = Settings()
    shaping = {"sr": 48000, "target_lufs": -14.0, "ceiling_dbtp": -2.0, "bitrate_kbps": 256}
    selectors = {"voice": "other", "fallback_tts": True}
    assert set(shaping) | set(selectors) == {f.name for f in dataclasses.fields(Settings)}  # a new field needs a line
    assert set(selectors) == set(Settings.INPUT_SELECTORS)
    for name, value in shaping.items():
        assert dataclasses.replace(base, **{name: value}).key() != base.key(), name
    for name, value in selectors.items():
        assert dataclasses.replace(base, **{name: value}).key() == base.key(), name

    # --voice: another voice's profile is another output key; the script's own voice is the same one
    (project / "voices" / "other.yaml").write_text((project / "voices" / "narrator.yaml").read_text()
                                                   .replace("rate: 140", "rate: 120"))

    def key(settings: Settings) -> str:
        jobs, problems = gather(Project(project), ("tiny",), locales=("en-GB",), settings=settings)
        assert not problems and len(jobs) == 1
        keys = FakeEngine().take_keys(plan(jobs[0].script, "en-GB").takes, script_id="tiny", locale="en-GB", sr=SR)
        return output_key(jobs[0], settings=settings, take_keys=keys, ambience_hashes={})

    assert key(Settings(voice="narrator")) == key(base) != key(Settings(voice="other"))
    # --fallback-tts: a recorded voice missing takes has none without it, the synthetic voice's with it
    (project / "voices" / "reader.yaml").write_text("engine: recorded\n")
    profile = gather(Project(project), ("tiny",), settings=Settings(voice="reader"))[0][0].profile
    takes = plan(load_script(project / "scripts" / "tiny.yaml"), "en-GB").takes
    with pytest.raises(CalmplaceError):
        make_engine(profile, Settings()).take_keys(takes, script_id="tiny", locale="en-GB", sr=SR)
    keys = make_engine(profile, Settings(fallback_tts=True)).take_keys(takes, script_id="tiny", locale="en-GB", sr=SR)
    assert len(keys) == len(takes) == len(set(keys))


class _Lines:
    """A UI that keeps what the build says."""

    def __init__(self):
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    detail = info

    def progress(self, label: str, total: int):
        from calmplace.build import _NullProgress

        return _NullProgress()


def test_summary_line_of_a_one_take_track_under_3_s(project: Path):
    """QA: '1 takes' and 'LRA nan LU' (loudness range needs 3 s of short-term loudness)."""
    (project / "scripts" / "tiny.yaml").unlink()
    (project / "scripts" / "wee.yaml").write_text(
        "title: Wee\nlocales: [en-GB]\nlead_in: 0s\ntail: 0.5s\nsections:\n  - text: Hello there.\n")
    ui = _Lines()
    report = fake_build(project, ui=ui)
    assert report.exit_code == 0, report.problems
    (line,) = [ln for ln in ui.lines if ln.startswith("wee (en-GB):")]
    assert ", 1 take, " in line and "LRA n/a" in line and "nan" not in line, line


def test_unknown_locale_names_the_locales_there_are(project: Path):
    report = fake_build(project, locales=("fr-FR",))
    assert report.exit_code == 1
    assert "error: no script has locale 'fr-FR' (they have en-GB, en-US)" in report.problems


def _sparse(project: Path, name: str, *, pause: str, level_db: float) -> None:
    (project / "scripts" / f"{name}.yaml").write_text(
        f"title: Sparse\nlocales: [en-GB]\nlead_in: 0s\ntail: 0s\nambience: {{sound: stream, level_db: {level_db}}}\n"
        f"sections:\n  - text: Breathe in and out, slowly. [pause {pause}]\n      Rest.\n")


def test_sparse_speech_lowers_the_bed_not_lifts_the_voice(project: Path):
    """A few words over a minute of ambience: at level_db the bed passes BS.1770's relative gate,
    the track measures mostly as its bed, and mastering to -16 LUFS integrated lifted the voice 12
    LU into the limiter (QA: the forest 21 dB louder after a minute's pause than after 30 s, the
    voice squashed). The bed comes down instead, and the voice is as loud after a long pause as
    after a short one. The shipped kind of script, with speech throughout, is left as it is."""
    _sparse(project, "short", pause="8s", level_db=-20)
    _sparse(project, "long", pause="1m", level_db=-20)
    ui = _Lines()
    report = fake_build(project, ui=ui, locales=("en-GB",))
    assert report.exit_code == 0, report.problems
    warned = [ln for ln in ui.lines if "warning" in ln]
    assert [ln.split(":")[0] for ln in warned] == ["long (en-GB)"], warned
    assert "the ambience is" in warned[0] and "dB further under the voice than level_db asks" in warned[0]
    voice, bed = {}, {}
    for name in ("short", "long"):
        samples, sr = decode(project / "build" / "en-GB" / f"{name}.mp3")
        cues = parse_webvtt((project / "build" / "en-GB" / f"{name}.vtt").read_text())
        voice[name] = window_rms_db(samples, int(cues[0][0] * sr), int(cues[0][1] * sr))
        pause_mid = (cues[0][1] + cues[1][0]) / 2
        bed[name] = window_rms_db(samples, int((pause_mid - 3) * sr), int((pause_mid + 3) * sr))
    # the voice within 1.5 dB after an 8 s pause and after a 1 min one (RMS over its first
    # phrase: the same words, limited alike; untrimmed, the long one read 10 dB louder)
    assert abs(voice["long"] - voice["short"]) < 1.5, voice
    # the bed at least level_db (20 dB) under the voice in the long pause, where it was 7 dB under
    assert voice["long"] - bed["long"] >= 20.0, (voice, bed)
    for name in ("short", "long"):   # and the track still delivers -16 LUFS (±0.5 LU: mastering's aim)
        assert integrated_lufs(*decode(project / "build" / "en-GB" / f"{name}.mp3")) == pytest.approx(-16.0, abs=0.5)
    # the manifest says how far, for `calmplace plot` to draw the beds where they are
    outputs = json.loads((project / "build" / "manifest.json").read_text())["outputs"]
    trim = float(warned[0].split("the ambience is ")[1].split(" dB")[0])
    assert outputs["en-GB/long.mp3"]["bed_trim_db"] == -trim and "bed_trim_db" not in outputs["en-GB/short.mp3"]


def test_sparse_speech_the_bed_cannot_make_up_for_is_warned_about(project: Path):
    """A bed 10 dB under a few words and ten minutes of pause would have to come down more than 24
    dB: the build warns, as before, with what keeps the voice clear."""
    _sparse(project, "sparse", pause="10m", level_db=-10)
    ui = _Lines()
    report = fake_build(project, ui=ui, locales=("en-GB",))
    assert report.exit_code == 0, report.problems
    warned = [ln for ln in ui.lines if "warning: the voice will be mastered to about" in ln]
    assert [ln.split(":")[0] for ln in warned] == ["sparse (en-GB)"], ui.lines
    assert "LU over the track's -16 LUFS" in warned[0] and "level_db" in warned[0]
    # QA: the advice was to raise level_db, which trades the squashed voice for a louder bed; the
    # remedies that keep the voice clear are silence in the long stretches, shorter ones, or less loudness
    assert "`ambience: none`" in warned[0] and "--loudness" in warned[0] and "Raise" not in warned[0]


def test_a_silent_section_builds_as_a_chapter_of_ambience(project: Path):
    """QA: a "silent practice" chapter (a text of pauses alone) was refused as having no words."""
    (project / "scripts" / "tiny.yaml").unlink()
    (project / "scripts" / "quiet.yaml").write_text(
        "title: Quiet\nlocales: [en-GB]\nlead_in: 1s\ntail: 2s\nambience: stream\nsections:\n"
        "  - {title: Settling, text: Settle in.}\n  - {title: In silence, text: '[pause 20s]'}\n"
        "  - {title: Returning, text: Come back.}\n")
    report = fake_build(project)
    assert report.exit_code == 0, report.problems
    mp3 = project / "build" / "en-GB" / "quiet.mp3"
    chapters = sorted((f.start_time, f.end_time, str(f.sub_frames["TIT2"])) for f in ID3(mp3).getall("CHAP"))
    assert [c[2] for c in chapters] == ["Settling", "In silence", "Returning"]
    start_ms, end_ms, _ = chapters[1]
    assert end_ms - start_ms == pytest.approx(21_500, abs=1)   # its pause and its pause_after (ID3 counts ms)
    samples, sr = decode(mp3)
    # the ambience plays on in the silent part, 5-15 s into it
    assert window_rms_db(samples, (start_ms + 5000) * sr // 1000, (start_ms + 15000) * sr // 1000) > -60
    assert "In silence" in pdf_text(project / "build" / "en-GB" / "quiet.pdf")

"""Take files that are not what their names say: an M4A renamed .mp3, a damaged MP3. The message
says what is wrong, libmpg123's own notes never reach the terminal, and the hints list every take
format (TAKE_EXTS)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from calmplace.errors import CalmplaceError
from calmplace.speech.recorded import TAKE_EXTS, _decoder_chatter_hidden, read_audio, sniff

from test_recorded import _build, recorded_take, run_cli, take_folder, write_takes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the therapist is played by espeak-ng")

EVERY_FORMAT = "use WAV, FLAC, OGG, OGA, MP3, AIF, AIFF, OPUS, M4A, AAC, MP4, 3GP, CAF, WEBM or WMA"


def m4a_bytes(tmp: Path) -> bytes:
    """A real AAC-in-MP4 file from ffmpeg when there is one; else an MP4 header and zeros (what the
    first bytes say is all that is looked at before decoding)."""
    if shutil.which("ffmpeg"):
        import soundfile as sf

        data = recorded_take("Rest here for a while.", sr=44100, channels=1, lead_s=0.3, tail_s=0.3,
                             gain_db=-6, seed=2)
        sf.write(tmp / "t.wav", data, 44100)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp / "t.wav"), "-c:a", "aac", str(tmp / "t.m4a")],
                       check=True)
        return (tmp / "t.m4a").read_bytes()
    return b"\x00\x00\x00\x1cftypM4A \x00\x00\x02\x00M4A isommp42" + bytes(60000)


def test_an_m4a_renamed_mp3_and_a_damaged_mp3(project: Path, monkeypatch, capfd, tmp_path: Path):
    write_takes(project)
    folder = take_folder(project)
    (folder / "004.mp3").unlink()
    # QA: an iPhone memo renamed 004.mp3 said "(File does not exist or is not a regular file
    # (possibly a pipe?))", and libmpg123 printed "Note: Illegal Audio-MPEG-Header ..." on stderr
    (folder / "004.mp3").write_bytes(m4a_bytes(tmp_path))
    (folder / "002.flac").unlink()
    (folder / "002.mp3").write_bytes(np.random.default_rng(4).bytes(50000))  # no MP3 at all
    capfd.readouterr()
    status = run_cli(project, monkeypatch, "takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
    out = status.output
    assert status.exit_code == 1 and "2 unreadable" in out, out
    assert ("004.mp3: not a valid MP3 file: it holds MP4/M4A (AAC) audio under the wrong extension; "
            "rename it to 004.m4a") in out, out
    assert "002.mp3: not a valid MP3 file (damaged, or another format with the wrong extension)" in out, out
    assert "possibly a pipe" not in out
    report, _ = _build(project)
    problems = "\n".join(report.problems)
    assert report.exit_code == 1 and "004.mp3: not a valid MP3 file: it holds MP4/M4A" in problems, problems
    assert "002.mp3: not a valid MP3 file (damaged" in problems, problems
    for name in ("002.mp3", "004.mp3"):
        with pytest.raises(CalmplaceError, match="not a valid MP3 file"):
            read_audio(folder / name)
    err = capfd.readouterr().err  # the C-level stderr (fd 2) as well as Python's
    assert "Illegal Audio-MPEG-Header" not in err and "resync" not in err, err


def test_hints_name_every_take_format(project: Path):
    write_takes(project)
    folder = take_folder(project)
    (folder / "002.flac").write_text("this is not audio\n")
    report, _ = _build(project)
    assert any("002.flac: not an audio file calmplace can read" in p and EVERY_FORMAT in p
               for p in report.problems), report.problems
    with pytest.raises(CalmplaceError, match=EVERY_FORMAT):
        read_audio(folder / "002.flac")
    assert EVERY_FORMAT.endswith(" or ".join(e.upper() for e in TAKE_EXTS[-2:]))


def test_a_damaged_file_is_called_damaged(tmp_path: Path):
    # QA: a FLAC cut short in its frames was "not an audio file calmplace can read ...; use WAV,
    # FLAC, ..." (use FLAC, for a FLAC file)
    import soundfile as sf

    data = recorded_take("Rest here for a while.", sr=44100, channels=1, lead_s=0.3, tail_s=0.3, gain_db=-6, seed=2)
    sf.write(tmp_path / "t.flac", data, 44100)
    raw = bytearray((tmp_path / "t.flac").read_bytes())
    raw[200:4000] = bytes(3800)   # the stream info survives, the first frames do not
    (tmp_path / "004.flac").write_bytes(bytes(raw))
    with pytest.raises(CalmplaceError) as info:
        read_audio(tmp_path / "004.flac")
    assert "004.flac: a damaged FLAC file" in str(info.value) and "use WAV" not in str(info.value), info.value


def test_a_misnamed_file_that_decodes_by_its_content_still_works(tmp_path: Path):
    import soundfile as sf

    data = recorded_take("Rest here for a while.", sr=44100, channels=1, lead_s=0.3, tail_s=0.3, gain_db=-6, seed=2)
    sf.write(tmp_path / "001.flac", data, 44100, format="WAV")  # a WAV named .flac: libsndfile reads it
    back, sr = read_audio(tmp_path / "001.flac")
    assert sr == 44100 and back.shape == data.shape
    assert sniff(tmp_path / "001.flac")[0] == "WAV"


def test_only_the_decoders_notes_are_hidden(tmp_path: Path, capfd):
    capfd.readouterr()
    with _decoder_chatter_hidden(tmp_path / "x.mp3"):
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 48260.\n")
        os.write(2, b"Note: Trying to resync...\n")
        os.write(2, b"another thread's warning\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "another thread's warning\nafter\n"


def test_the_recording_template_lists_every_take_format(project: Path, monkeypatch):
    from helpers import pdf_text

    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "therapist")
    assert result.exit_code == 0, result.output
    text = " ".join(pdf_text(project / "build" / "templates" / "en-GB" / "tiny-recording.pdf").split())
    # it said "Any of .wav, .flac, .ogg or .mp3 works", though .opus, .aiff or .m4a takes are read too
    every = ", ".join(f".{e}" for e in TAKE_EXTS[:-1]) + f" or .{TAKE_EXTS[-1]} works"
    assert every in text, text

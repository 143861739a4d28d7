"""Issue 3 measured on real beds: ducking depth, section crossfades; the ambience and plot commands."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from calmplace import SR
from calmplace.mix import bed_opener, mix
from calmplace.script import Ambience
from calmplace.takes import Gap, Plan, SectionStart, Take
from calmplace.timeline import build_timeline

from helpers import decode, invoke_cli, window_rms_db


def _plan(events) -> Plan:
    return Plan("duck", "en-GB", "Duck", None, None, None, (), tuple(events))


@pytest.mark.parametrize("sound, duck_db", [("stream", 6.0), ("rain", 10.0), ("pink", 0.0)])
def test_bed_dips_by_duck_db_under_speech(tmp_path: Path, sound: str, duck_db: float):
    amb = Ambience(sound, level_db=-20.0, duck_db=duck_db, fade_in_s=1.0, fade_out_s=1.0)
    takes = [Take(i, 0, "x", 0.0, 0.0) for i in (1, 2)]
    plan = _plan([Gap(2.0), SectionStart(0, None, amb), takes[0], Gap(12.0), takes[1], Gap(2.0)])
    silent_voice = [np.zeros(10 * SR, np.float32)] * 2  # a silent voice: what remains is the bed alone
    tl = build_timeline(plan, [c.size for c in silent_voice], sr=SR)
    out = mix(tl, silent_voice, open_bed=bed_opener(tmp_path, sr=SR), seed_base="t")
    speech = tl.takes[1]
    during = window_rms_db(out, speech.start + SR, speech.end - SR)      # well inside the speech span
    pause = window_rms_db(out, tl.takes[0].end + 3 * SR, speech.start - SR)  # after the 1.5 s release
    # ±1 dB: the bed's own level wanders by a fraction of a dB between two 8 s windows
    assert pause - during == pytest.approx(duck_db, abs=1.0)


def test_section_ambience_crossfades_without_a_gap(tmp_path: Path):
    rain, pink = Ambience("rain", duck_db=0.0), Ambience("pink", duck_db=0.0)  # two steady beds
    plan = _plan([Gap(1.0), SectionStart(0, None, rain), Take(1, 0, "x", 0, 0), Gap(10.0),
                  SectionStart(1, None, pink), Take(2, 1, "y", 0, 0), Gap(10.0)])
    voice = [np.zeros(SR, np.float32)] * 2
    tl = build_timeline(plan, [SR, SR], sr=SR)
    out = mix(tl, voice, open_bed=bed_opener(tmp_path, sr=SR), seed_base="t")
    boundary = tl.sections[1].start
    quarter = SR // 4
    before = window_rms_db(out, boundary - 4 * SR, boundary - 2 * SR)
    after = window_rms_db(out, boundary + 2 * SR, boundary + 4 * SR)
    during = [window_rms_db(out, a, a + quarter) for a in range(boundary - 3 * SR // 2, boundary + 3 * SR // 2, quarter)]
    # no hole at the change: equal-power fades of uncorrelated beds stay within 1.5 dB of the quieter
    # bed (a linear crossfade of two equal beds would dip 3 dB at the midpoint)
    assert min(during) > min(before, after) - 1.5


def test_ambience_list_and_preview(project: Path):
    listing = invoke_cli(project, "ambience", "list")
    assert listing.exit_code == 0
    assert [line.split()[0] for line in listing.output.splitlines()] == \
        ["rain", "stream", "ocean", "wind", "forest", "fire", "pink", "brown"]
    preview = invoke_cli(project, "ambience", "preview", "forest", "--seconds", "6", "--out", "forest.mp3")
    assert preview.exit_code == 0, preview.output
    samples, sr = decode(project / "forest.mp3")
    assert samples.shape == (2, 6 * SR)  # exact length: the MP3 carries its encoder delay and padding
    unknown = invoke_cli(project, "ambience", "preview", "waterfall")
    assert unknown.exit_code == 1 and "built-ins are rain, stream" in unknown.output
    blocked = invoke_cli(project, "ambience", "preview", "forest", "--seconds", "2", "--out", "forest.mp3/x.mp3")
    assert blocked.exit_code == 1, blocked.output   # was a FileExistsError traceback
    assert "error: cannot write the preview: forest.mp3: a file is in the way where a folder should be" \
        in blocked.output
    wav = invoke_cli(project, "ambience", "preview", "forest", "--seconds", "2", "--out", "forest.wav")
    assert wav.exit_code == 2 and "the preview is an MP3; name it forest.mp3" in wav.output   # MP3 bytes were written
    assert not (project / "forest.wav").exists()


def test_plot_draws_the_track(project: Path, monkeypatch: pytest.MonkeyPatch):
    from calmplace.build import build
    from calmplace.script import Project
    from calmplace.speech.fake import FakeEngine

    assert build(Project(project), engine_factory=lambda p: FakeEngine()).exit_code == 0
    import calmplace.build as b

    # the stand-in voice again, so the plot finds the takes the build cached
    monkeypatch.setattr(b, "make_engine", lambda *args, **kwargs: FakeEngine())
    result = invoke_cli(project, "plot", "tiny", "--locale", "en-US")
    assert result.exit_code == 0, result.output
    png = project / "build" / "en-US" / "tiny-timeline.png"
    import matplotlib.image

    image = matplotlib.image.imread(str(png))
    assert image.shape[:2] == (600, 1400)  # 14 x 6 inches at 100 dpi
    assert image[..., :3].std() > 0.05     # not a blank canvas
    assert "out of date" not in result.output and "not built" not in result.output
    # QA: after an edit the old track's loudness was drawn under the new timeline
    script = project / "scripts" / "tiny.yaml"
    edited = script.read_text().replace("[pause 4s]", "[pause 5s]")
    assert edited != script.read_text()
    script.write_text(edited)
    stale = invoke_cli(project, "plot", "tiny", "--locale", "en-US")
    assert stale.exit_code == 0, stale.output
    assert "tiny.mp3 is out of date (" in stale.output and "plotting without its loudness" in stale.output
    # review: an edit that keeps the length (a bed's level) draws the loudness, and says it may be old
    script.write_text(script.read_text().replace("[pause 5s]", "[pause 4s]").replace("level_db: -20", "level_db: -24"))
    same = invoke_cli(project, "plot", "tiny", "--locale", "en-US")
    assert same.exit_code == 0 and "was built from another version of the script or with other options" in same.output
    unknown = invoke_cli(project, "plot", "nosuch")
    assert unknown.exit_code == 1   # QA: "error: nosuch: error: no such script"
    assert unknown.output.startswith("nosuch: error: no such script")
    # QA: plot wrote into build/ without the build lock, so a build starting meanwhile could sweep
    # its temp file away. It waits for a build holding the lock (held here by another open file)
    import fcntl
    import os
    import threading

    png.unlink()
    results = []
    fd = os.open(project / "build" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        plotting = threading.Thread(target=lambda: results.append(invoke_cli(project, "plot", "tiny", "--locale",
                                                                              "en-US")))
        plotting.start()
        plotting.join(1.0)   # still waiting (or, on a slow machine, still drawing: the message below tells)
        assert plotting.is_alive() and not png.exists()
    finally:
        os.close(fd)
    plotting.join(60)
    assert results[0].exit_code == 0 and png.is_file(), results[0].output
    assert "waiting for another calmplace build" in results[0].output
    # a path it cannot write: a message and exit 1, not a traceback
    (project / "a-file").write_text("")
    bad = invoke_cli(project, "plot", "tiny", "--locale", "en-US", "--out", "a-file/plot.png")
    assert bad.exit_code == 1, bad.output
    assert "error: cannot write the plot: a-file: a file is in the way where a folder should be" in bad.output


def test_plot_of_a_track_without_ambience_draws_without_warnings():
    """Regression QA: with no bed, `plot` printed matplotlib's 'No artists with labels found to put
    in legend' warning (the section lines counted as lines to label). Warnings are errors here."""
    import matplotlib.image

    from calmplace.plot import plot_track

    events = (Gap(2.0, kind="lead_in"), SectionStart(0, "Only", None), Take(1, 0, "Hello.", 2.0, 3.0),
              Gap(3.0, kind="tail"))
    tl = build_timeline(Plan("q", "en-GB", "Q", None, None, None, (), events), [SR], sr=SR)
    png = plot_track(tl, title="Q (en-GB)", seed_base="q", short_term_lufs=None)
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (600, 1400) and image[..., :3].std() > 0.05

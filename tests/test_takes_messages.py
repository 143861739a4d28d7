"""Messages of the takes commands: OS errors said plainly, and the build's word on re-recorded
takes not yet accepted, as takes status has it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from test_recorded import _build, recorded_take, run_cli, take_folder, write_takes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the therapist is played by espeak-ng")


def test_the_build_mentions_new_recordings_not_yet_accepted(project: Path, monkeypatch):
    write_takes(project)
    accepted = run_cli(project, monkeypatch, "takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB",
                       "--accept")
    assert accepted.exit_code == 0, accepted.output
    folder = take_folder(project)
    again = recorded_take("Let the breath slow down.", sr=44100, channels=1, lead_s=0.5, tail_s=0.5, gain_db=-8, seed=9)
    (folder / "002.flac").unlink()
    sf.write(folder / "002.flac", again, 44100)  # recorded again since takes.json was written
    status = run_cli(project, monkeypatch, "takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
    assert "new recording, not yet accepted" in status.output and status.exit_code == 0, status.output
    monkeypatch.chdir(project)
    report, warnings = _build(project)
    assert report.exit_code == 0, report.problems
    # the build said nothing of it, while status did
    new = [w for w in warnings if "not yet accepted" in w]
    assert len(new) == 1 and "1 new recording" in new[0] and "voices/therapist/tiny/en-GB/002.flac" in new[0], warnings
    assert "--accept" in new[0] and "stale" not in new[0].split("(so that")[0]


def test_write_errors_are_said_plainly(project: Path, monkeypatch):
    # the take cache in the way: template still works (the cache only saves time next time)
    (project / "build").mkdir()
    (project / "build" / ".cache").write_text("not a folder")
    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "therapist")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    # the output folder cannot be made: it said "[Errno 20] Not a directory: 'out/templates/en-GB'"
    (project / "out").mkdir()
    (project / "out" / "templates").write_text("a file")
    result = run_cli(project, monkeypatch, "template", "tiny", "--locale", "en-GB", "--voice", "therapist",
                     "--out", "out")
    assert result.exit_code == 1, result.output
    assert "error: cannot write the template: out/templates/en-GB: a file is in the way where a folder should be" \
        in result.output, result.output
    assert "Errno" not in result.output
    # an OS error from writing the takes that write_split does not explain itself
    write_takes(project)
    import calmplace.split

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "voices/therapist/tiny/en-GB/001.wav")

    monkeypatch.setattr(calmplace.split, "write_split", refused)
    x = np.concatenate([recorded_take(t, sr=22050, channels=1, lead_s=1.0, tail_s=1.5, gain_db=-6, seed=i)
                        for i, t in enumerate(["Settle in and notice the colour of the light.",
                                               "Let the breath slow down.", "Rest here for a while.",
                                               "Come back when you are ready."])])
    sf.write(project / "session.wav", x, 22050)
    result = run_cli(project, monkeypatch, "takes", "split", "tiny", "session.wav", "--voice", "therapist",
                     "--locale", "en-GB", "--force")
    assert result.exit_code == 1, result.output
    assert "error: cannot write the takes: voices/therapist/tiny/en-GB/001.wav: permission denied" in result.output, \
        result.output
    assert "Errno" not in result.output

"""`calmplace takes rename`: after a sentence is added, removed or moved, the take files recorded
for what is now another take go to that take's number, in an order that overwrites nothing, and
takes.json follows them; the build and status then see every such take as ok."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from test_recorded import run_cli, take_folder, write_takes

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the therapist is played by espeak-ng")

STATUS = ("takes", "status", "tiny", "--voice", "therapist", "--locale", "en-GB")
RENAME = ("takes", "rename", "tiny", "--voice", "therapist", "--locale", "en-GB")
BUILD = ("build", "tiny", "--voice", "therapist", "--locale", "en-GB")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(project: Path, old: str, new: str) -> None:
    script = project / "scripts" / "tiny.yaml"
    text = script.read_text()
    assert old in text
    script.write_text(text.replace(old, new))


def _recorded_and_accepted(project: Path, monkeypatch) -> dict[str, str]:
    """The four takes recorded and accepted; each file's sha256 by name."""
    write_takes(project)
    assert run_cli(project, monkeypatch, *STATUS, "--accept").exit_code == 0
    return {p.name: _sha(p) for p in take_folder(project).iterdir() if p.name != "takes.json"}


def _take_lines(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines() if line.strip()[:3].isdigit()}


def test_after_an_inserted_sentence(project: Path, monkeypatch):
    shas = _recorded_and_accepted(project, monkeypatch)
    _edit(project, "Let the breath slow down.", "Let the breath slow down. [pause 2s]\n      Feel your feet on the floor.")
    folder = take_folder(project)
    refused = run_cli(project, monkeypatch, *BUILD)
    assert refused.exit_code == 1
    assert "calmplace takes rename tiny --voice therapist --locale en-GB" in refused.output, refused.output
    status = run_cli(project, monkeypatch, *STATUS)
    assert "calmplace takes rename tiny --voice therapist --locale en-GB" in status.output, status.output

    record_before = (folder / "takes.json").read_bytes()
    dry = run_cli(project, monkeypatch, *RENAME, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "004.mp3 -> 005.mp3" in dry.output and "003.ogg -> 004.ogg" in dry.output
    assert "2 to rename (--dry-run: nothing changed)" in dry.output
    assert {p.name: _sha(p) for p in folder.iterdir() if p.name != "takes.json"} == shas   # untouched
    assert (folder / "takes.json").read_bytes() == record_before

    done = run_cli(project, monkeypatch, *RENAME)
    assert done.exit_code == 0, done.output
    out = done.output
    # the highest number first: 004.mp3 leaves 004 before 003.ogg arrives
    assert out.index("004.mp3 -> 005.mp3") < out.index("003.ogg -> 004.ogg"), out
    assert "\u201cRest here for a while.\u201d" in out   # what 003.ogg was recorded for
    assert "renamed 2 take files" in out
    assert _sha(folder / "005.mp3") == shas["004.mp3"] and _sha(folder / "004.ogg") == shas["003.ogg"]
    assert not (folder / "003.ogg").exists() and not (folder / "004.mp3").exists()
    record = json.loads((folder / "takes.json").read_text())["takes"]
    assert record["004"] == {"text": "Rest here for a while.", "sha256": shas["003.ogg"], "file": "004.ogg"}
    assert record["005"] == {"text": "Come back when you are ready.", "sha256": shas["004.mp3"], "file": "005.mp3"}
    assert "003" not in record   # the new sentence: nothing recorded for it yet

    lines = _take_lines(run_cli(project, monkeypatch, *STATUS).output)
    assert "missing" in lines["003"]
    for name in ("001", "002", "004", "005"):
        assert " ok " in lines[name], lines[name]
    build = run_cli(project, monkeypatch, *BUILD)
    assert build.exit_code == 1 and "1 of 5 takes of tiny (en-GB) is missing" in build.output, build.output
    assert "rename" not in build.output
    again = run_cli(project, monkeypatch, *RENAME)
    assert again.exit_code == 0 and "nothing to rename" in again.output


def test_two_takes_that_trade_places_go_through_a_temporary_name(project: Path, monkeypatch):
    write_takes(project)
    folder = take_folder(project)
    for name in ("003.ogg", "004.mp3"):   # both WAV: each one's new name is the other's old one
        data, sr = sf.read(folder / name)
        sf.write(folder / f"{name[:3]}.wav", data, sr)
        (folder / name).unlink()
    assert run_cli(project, monkeypatch, *STATUS, "--accept").exit_code == 0
    shas = {name: _sha(folder / name) for name in ("003.wav", "004.wav")}
    _edit(project, "Rest here for a while. [pause 6s]\n      Come back when you are ready.",
          "Come back when you are ready. [pause 6s]\n      Rest here for a while.")
    refused = run_cli(project, monkeypatch, *BUILD)
    # no order of plain renames is safe: the build's list says so (QA: it said rename 003.wav to
    # 004.wav, then 004.wav to 003.wav, which loses a take)
    assert "rename 003.wav to 004.wav (004.wav is still there: give it a temporary name first)" in refused.output
    done = run_cli(project, monkeypatch, *RENAME)
    assert done.exit_code == 0, done.output
    assert "003.wav -> 004.wav" in done.output and "004.wav -> 003.wav" in done.output
    assert _sha(folder / "003.wav") == shas["004.wav"] and _sha(folder / "004.wav") == shas["003.wav"]
    assert sorted(p.name for p in folder.iterdir()) == ["001.wav", "002.flac", "003.wav", "004.wav", "takes.json"]
    status = run_cli(project, monkeypatch, *STATUS)
    assert status.exit_code == 0 and "4 of 4 takes ok" in status.output, status.output
    assert "stale" not in status.output and "not yet accepted" not in status.output


def test_a_removed_sentence_whose_file_is_in_the_way(project: Path, monkeypatch):
    shas = _recorded_and_accepted(project, monkeypatch)
    _edit(project, "[pause 4s]\n      Let the breath slow down.\n", "\n")
    folder = take_folder(project)
    refused = run_cli(project, monkeypatch, *RENAME)
    assert refused.exit_code == 1
    # 002.flac was recorded for the sentence removed: whether to keep it is the person's call
    assert "nothing renamed" in refused.output
    assert "003.ogg was recorded for take 002, but 002.flac is there" in refused.output, refused.output
    assert "Traceback" not in refused.output
    assert {p.name: _sha(p) for p in folder.iterdir() if p.name != "takes.json"} == shas   # untouched

    (folder / "002.flac").unlink()
    done = run_cli(project, monkeypatch, *RENAME)
    assert done.exit_code == 0, done.output
    # the lowest number first; 004.mp3, past the last take now, is moved too
    assert done.output.index("003.ogg -> 002.ogg") < done.output.index("004.mp3 -> 003.mp3"), done.output
    assert _sha(folder / "002.ogg") == shas["003.ogg"] and _sha(folder / "003.mp3") == shas["004.mp3"]
    status = run_cli(project, monkeypatch, *STATUS)
    assert status.exit_code == 0 and "3 of 3 takes ok" in status.output, status.output
    assert "note" not in status.output   # no file left over


def test_a_run_stopped_half_way_is_finished_by_running_it_again(project: Path, monkeypatch):
    shas = _recorded_and_accepted(project, monkeypatch)
    _edit(project, "Let the breath slow down.", "Let the breath slow down. [pause 2s]\n      Feel your feet on the floor.")
    folder = take_folder(project)
    import calmplace.speech.recorded as recorded

    real_rename, calls = recorded.os.rename, []

    def rename_once(src, dst):   # the second rename fails, as on a disk that went away
        calls.append(src)
        if len(calls) > 1:
            raise PermissionError(13, "Permission denied", str(src))
        real_rename(src, dst)

    monkeypatch.setattr(recorded.os, "rename", rename_once)
    stopped = run_cli(project, monkeypatch, *RENAME)
    assert stopped.exit_code == 1
    assert "004.mp3 -> 005.mp3" in stopped.output and "cannot rename the takes" in stopped.output
    assert "run it again" in stopped.output and "Traceback" not in stopped.output
    monkeypatch.setattr(recorded.os, "rename", real_rename)
    done = run_cli(project, monkeypatch, *RENAME)
    assert done.exit_code == 0, done.output
    assert "003.ogg -> 004.ogg" in done.output and "004.mp3" not in done.output
    assert _sha(folder / "005.mp3") == shas["004.mp3"] and _sha(folder / "004.ogg") == shas["003.ogg"]
    record = json.loads((folder / "takes.json").read_text())["takes"]
    # both entries under their new numbers, the one renamed by the stopped run too
    assert record["004"] == {"text": "Rest here for a while.", "sha256": shas["003.ogg"], "file": "004.ogg"}
    assert record["005"] == {"text": "Come back when you are ready.", "sha256": shas["004.mp3"], "file": "005.mp3"}
    lines = _take_lines(run_cli(project, monkeypatch, *STATUS).output)
    assert all(" ok " in lines[name] for name in ("001", "002", "004", "005")), lines

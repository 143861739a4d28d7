"""CI safety (QA pass): clean touches only calmplace's own files, damaged caches and manifests
count as missing, nothing outside calmplace's own files is swept, no traceback ever."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from calmplace.build import Manifest, TakeCache, build
from calmplace.cli import main
from calmplace.script import Project
from calmplace.speech.fake import FakeEngine

from test_ci_builds import CountingEngine


def cli(project: Path, monkeypatch, *args: str):
    monkeypatch.chdir(project)
    monkeypatch.delenv("CALMPLACE_CACHE", raising=False)
    return CliRunner().invoke(main, list(args))


def run(project: Path, engine=None, **kwargs):
    engine = engine or FakeEngine()
    return build(Project(project), engine_factory=lambda profile: engine, **kwargs)


# -- 1. clean ------------------------------------------------------------------------------------


def test_clean_refuses_the_project_folder_and_the_outputs(project: Path, monkeypatch):
    assert cli(project, monkeypatch, "build", "--fake-speech", "-j", "1").exit_code == 0
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    for args in (["--cache-dir", "."], ["--cache-dir", str(project)], ["--cache-dir", str(project.parent)],
                 ["--cache-dir", "build"], ["--out", "build/x", "--cache-dir", "build"]):
        result = cli(project, monkeypatch, "clean", *args)
        assert result.exit_code == 1, (args, result.output)
        assert "refusing to clean" in result.output and "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before   # nothing went


def test_clean_removes_only_calmplaces_own_files(project: Path, monkeypatch, tmp_path_factory):
    shared = tmp_path_factory.mktemp("ci-cache")
    (shared / "other-tool").mkdir()
    (shared / "other-tool" / "data.bin").write_bytes(b"x")
    (shared / "notes.txt").write_text("keep me")
    assert cli(project, monkeypatch, "build", "--fake-speech", "-j", "1", "--cache-dir", str(shared)).exit_code == 0
    takes = list((shared / "takes").rglob("*.npy"))
    assert len(takes) == 8
    assert (shared / "output-stats.json").is_file()   # what the outputs were when written: calmplace's too
    (shared / "takes" / "README").write_text("someone else's")
    result = cli(project, monkeypatch, "clean", "--cache-dir", str(shared))
    assert result.exit_code == 0 and "removed 8 cached takes" in result.output
    assert not any(p.exists() for p in takes)
    assert (shared / "notes.txt").read_text() == "keep me" and (shared / "other-tool" / "data.bin").exists()
    assert (shared / "takes" / "README").exists()
    assert not (shared / "output-stats.json").exists()
    assert all((project / "build" / loc / "tiny.mp3").exists() for loc in ("en-GB", "en-US"))
    # the default cache (build/.cache) is removed whole once emptied; the outputs stay
    assert cli(project, monkeypatch, "build", "--fake-speech", "-j", "1").exit_code == 0
    take_dir = project / "build" / ".cache" / "takes" / "ab"
    take_dir.mkdir(parents=True, exist_ok=True)
    (take_dir / ".abff.npy.abcdefgh.tmp").write_bytes(b"half a take")   # left by a killed build
    result = cli(project, monkeypatch, "clean")
    # the temp file is no cached take: named apart (it was counted as one). No take is in this
    # cache: the build before had nothing to build (its takes are in the shared cache)
    assert result.output.strip() == "removed 1 unfinished file a stopped build left from build/.cache/"
    assert result.exit_code == 0 and not (project / "build" / ".cache").exists()
    assert (project / "build" / "manifest.json").exists()
    assert cli(project, monkeypatch, "clean").output.strip() == "nothing to remove"


def test_empty_folder_options_are_usage_errors(project: Path, monkeypatch):
    for args in (["build", "--fake-speech", "--out", ""], ["build", "--fake-speech", "--cache-dir", ""],
                 ["clean", "--out", ""], ["clean", "--cache-dir", " "]):
        result = cli(project, monkeypatch, *args)
        assert result.exit_code == 2 and "must not be empty" in result.output, args
    assert not (project / "en-GB").exists()


# -- 2. manifest of the wrong shape --------------------------------------------------------------


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "5", '{"outputs": []}', '{"outputs": {"en-GB/tiny.mp3": 5}}',
                                  '{"outputs": {"en-GB/tiny.mp3": null, "en-GB/tiny.pdf": "x"}}'])
def test_a_manifest_of_the_wrong_shape_counts_as_missing(project: Path, text: str):
    assert run(project, jobs=1).exit_code == 0
    manifest = project / "build" / "manifest.json"
    manifest.write_text(text)
    check = run(project, jobs=1, check_only=True)
    assert check.exit_code == 1 and check.stale == 2 and not check.failed   # stale, said as such: no AttributeError
    assert check.summary() == "0 up to date, 2 missing or stale"
    report = run(project, jobs=1)
    assert report.exit_code == 0 and report.built == 2
    assert isinstance(Manifest(manifest).entry("en-GB/tiny.mp3").get("sha256"), str)
    fine = run(project, jobs=1, check_only=True)
    assert fine.exit_code == 0 and fine.summary() == "2 up to date, 0 missing or stale"   # review: "0 built, 2 unchanged"


def test_a_folder_where_the_manifest_goes_fails_before_rendering(project: Path, monkeypatch):
    (project / "build" / "manifest.json").mkdir(parents=True)
    result = cli(project, monkeypatch, "build", "--fake-speech", "-j", "1")
    assert result.exit_code == 1 and "manifest.json is a folder" in result.output
    assert "Traceback" not in result.output and not (project / "build" / "en-GB").exists()


# -- 4, 5. damaged take cache entries -------------------------------------------------------------


def _entries(project: Path) -> list[Path]:
    return sorted((project / "build" / ".cache" / "takes").rglob("*.npy"))


@pytest.mark.parametrize("damage", ["nan", "inf", "zip", "pickle", "2d", "samples", "no checksum"])
def test_a_take_that_is_not_a_finite_plain_array_is_spoken_again(project: Path, damage: str):
    assert run(project, jobs=1, locales=("en-GB",)).exit_code == 0
    entry = _entries(project)[0]
    clip = np.load(entry)
    if damage == "samples":   # CI QA: still a valid array, its samples changed in place: was used
        raw = bytearray(entry.read_bytes())
        at = 128 + 4 * (len(clip) // 2)
        raw[at:at + 400] = np.full(100, 0.5, dtype=np.float32).tobytes()
        entry.write_bytes(bytes(raw))
    elif damage == "no checksum":   # an entry of a calmplace before the checksum: spoken again, once
        np.save(entry, clip)
    elif damage in ("nan", "inf"):
        clip[len(clip) // 2] = np.nan if damage == "nan" else np.inf
        np.save(entry, clip)
    elif damage == "zip":
        np.savez(entry.with_suffix(".tmpz"), clip=clip)
        entry.with_suffix(".tmpz.npz").replace(entry)
        assert entry.read_bytes()[:2] == b"PK"
    elif damage == "pickle":
        np.save(entry, np.array([clip], dtype=object), allow_pickle=True)
    else:
        np.save(entry, np.stack([clip, clip]))
    assert TakeCache(project / "build" / ".cache").get(entry.stem) is None
    (project / "build" / "en-GB" / "tiny.mp3").unlink()
    engine = CountingEngine()
    report = run(project, engine, jobs=1, locales=("en-GB",))
    assert report.exit_code == 0 and report.built == 1 and len(engine.spoken) == 1, report.problems
    assert TakeCache(project / "build" / ".cache").get(entry.stem) is not None


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_folder_where_a_take_goes_is_replaced(project: Path, jobs: int):
    assert run(project, jobs=1).exit_code == 0
    entry = _entries(project)[0]
    entry.unlink()
    (entry / "junk").mkdir(parents=True)
    (project / "build" / "en-GB" / "tiny.mp3").unlink()
    (project / "build" / "en-US" / "tiny.mp3").unlink()
    engine = CountingEngine()
    report = run(project, engine, jobs=jobs)
    assert report.exit_code == 0 and report.built == 2 and len(engine.spoken) == 1, report.problems
    assert entry.is_file() and TakeCache(project / "build" / ".cache").get(entry.stem) is not None
    engine = CountingEngine()
    assert run(project, engine, jobs=jobs).cached == 2 and not engine.spoken


# -- 10. the manifest is saved after each track ----------------------------------------------------


def test_tracks_finished_before_a_failure_are_not_built_again(project: Path, monkeypatch):
    import calmplace.build as build_module

    real = build_module.atomic_write

    def failing(path, data):
        if "en-US" in str(path):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(build_module, "atomic_write", failing)
    with pytest.raises(OSError):
        run(project, jobs=1)
    monkeypatch.setattr(build_module, "atomic_write", real)
    report = run(project, jobs=1)
    assert report.exit_code == 0 and (report.built, report.cached) == (1, 1)


# -- 7, 8. sweeping temp files ----------------------------------------------------------------------


def test_sweep_takes_calmplaces_temp_files_only_in_its_folders(project: Path, tmp_path_factory):
    import fcntl

    cache = tmp_path_factory.mktemp("ci-cache")
    out = project / "build"
    assert run(project, jobs=1, out_dir=out, cache_dir=cache).exit_code == 0
    take_dir = next((cache / "takes").iterdir())
    ours = [out / ".manifest.json.a1b2c3d4.tmp", out / "en-GB" / ".tiny.mp3.x_9k2m1q.tmp",
            out / "en-US" / ".tiny.vtt.00000000.tmp", cache / ".output-stats.json.k2m4p6q8.tmp",
            take_dir / f".{take_dir.name}ff.npy.abcdefgh.tmp"]
    theirs = [out / ".foo.tmp", out / "en-GB" / ".notes.txt.abcdefgh.tmp", out / "en-GB" / ".tiny.mp3.tmp",
              out / "other" / "deep" / ".x.mp3.abcdefgh.tmp", cache / ".tool.json.abcdefgh.tmp"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    # another build using the shared cache: its temp files there are not swept from under it
    fd = os.open(cache / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        assert run(project, jobs=1, out_dir=out, cache_dir=cache).exit_code == 0
        assert all(p.exists() for p in ours[-2:]) and not any(p.exists() for p in ours[:-2])
    finally:
        os.close(fd)
    assert run(project, jobs=1, out_dir=out, cache_dir=cache).exit_code == 0
    assert not any(p.exists() for p in ours)
    assert all(p.read_bytes() == b"partial" for p in theirs)


# -- 12. read-only cache and output folders -------------------------------------------------------


def _read_only(monkeypatch, folder: Path) -> None:
    """Writes under `folder` fail as on a read-only file system (the tests run as root, for whom
    chmod does not stop a write)."""
    import errno
    import tempfile

    import calmplace.build as build_module

    def under(path) -> bool:
        return Path(path).resolve().is_relative_to(folder.resolve())

    real_write, real_mkstemp = build_module.atomic_write, tempfile.mkstemp

    def atomic_write(path, data):
        if under(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_write(path, data)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and under(dir):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(build_module, "atomic_write", atomic_write)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


class Messages:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def detail(self, message: str) -> None: ...

    def progress(self, label: str, total: int):
        from calmplace.build import _NullProgress

        return _NullProgress()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_read_only_cache_warns_once_and_builds_without_caching(project: Path, monkeypatch, tmp_path_factory,
                                                                 jobs: int):
    cache = tmp_path_factory.mktemp("ro-cache")
    assert run(project, jobs=1, cache_dir=cache, locales=("en-GB",)).exit_code == 0   # en-GB's takes cached
    _read_only(monkeypatch, cache)
    before = sorted(cache.rglob("*"))
    (project / "build" / "en-GB" / "tiny.mp3").unlink()   # both tracks to build
    ui, engine = Messages(), CountingEngine()
    report = run(project, engine, jobs=jobs, cache_dir=cache, ui=ui)
    assert report.exit_code == 0 and report.built == 2, report.problems
    assert len(engine.spoken) == 4   # en-US's takes; en-GB's come from the read-only cache
    assert [line for line in ui.lines if "warning" in line] == [
        f"warning: cannot write the take cache {cache}/ (the disk is read-only): going on without caching; "
        "new takes will be spoken again next time"]
    assert sorted(cache.rglob("*")) == before


def test_temporary_take_caches_of_killed_builds_are_removed(project: Path, monkeypatch, tmp_path_factory):
    """A build that cannot write its cache speaks into a temporary one and removes it at the end;
    killed with SIGKILL, it cannot, so the next such build removes those of builds no longer
    running (named by their pid), and no others."""
    import subprocess
    import tempfile

    from calmplace.build import SPILL_PREFIX

    temp = tmp_path_factory.mktemp("system-temp")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    finished = subprocess.Popen(["true"])
    finished.wait()   # reaped: its pid runs nothing now
    dead = temp / f"{SPILL_PREFIX}{finished.pid}-abc123"
    dead.mkdir()
    (dead / "takes").mkdir()
    alive = temp / f"{SPILL_PREFIX}{os.getpid()}-def456"   # this test's own process: running
    alive.mkdir()
    other = temp / "calmplace-takes-notes"                  # not a name calmplace makes
    other.mkdir()
    cache = tmp_path_factory.mktemp("ro-cache2")
    assert run(project, jobs=1, cache_dir=cache, locales=("en-GB",)).exit_code == 0
    _read_only(monkeypatch, cache)
    (project / "build" / "en-GB" / "tiny.mp3").unlink()
    report = run(project, CountingEngine(), jobs=1, cache_dir=cache, ui=Messages())
    assert report.exit_code == 0, report.problems
    assert not dead.exists() and alive.is_dir() and other.is_dir()
    assert sorted(p.name for p in temp.iterdir()) == sorted([alive.name, other.name])   # its own spill is gone too


def test_a_cache_folder_that_is_a_file_does_not_fail_the_build(project: Path, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    ui = Messages()
    report = run(project, jobs=1, cache_dir=blocker, ui=ui)
    assert report.exit_code == 0 and report.built == 2 and any("cannot write the take cache" in m for m in ui.lines)


def test_a_read_only_output_folder_is_fine_when_nothing_needs_building(project: Path, monkeypatch):
    import errno

    from calmplace.build import BuildLock

    assert run(project, jobs=1).exit_code == 0

    def read_only(self):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(BuildLock, "_open_for_writing", read_only)
    report = run(project, jobs=1)
    assert report.exit_code == 0 and report.cached == 2
    (project / "build" / "en-GB" / "tiny.vtt").unlink()
    monkeypatch.chdir(project)
    with pytest.raises(Exception) as info:
        run(project, jobs=1)
    assert str(info.value) == "cannot write the outputs in build/: the disk is read-only" or \
        str(info.value).endswith("build/: the disk is read-only")


# -- 9. flags that change no byte mark nothing stale ------------------------------------------------


def test_naming_the_scripts_own_voice_marks_nothing_stale(project: Path, monkeypatch):
    assert cli(project, monkeypatch, "build", "--fake-speech", "-j", "1").exit_code == 0
    result = cli(project, monkeypatch, "build", "--fake-speech", "--check", "--voice", "narrator")
    assert result.exit_code == 0, result.output
    result = cli(project, monkeypatch, "build", "--fake-speech", "-j", "1", "--voice", "narrator")
    assert result.exit_code == 0 and "0 built, 2 unchanged" in result.output


def test_another_locales_spelling_rebuilds_only_that_locale(project: Path):
    assert run(project, jobs=1).built == 2
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("en-US: {colour: color}", "en-US: {colour: color, breath: breeth}"))
    report = run(project, jobs=1)
    assert (report.built, report.cached) == (1, 1) and report.tracks[0]["label"] == "tiny (en-US)"
    # what en-GB's outputs show still rebuilds them: its words, its title
    script.write_text(script.read_text().replace("title: Tiny Calm", "title: Tiny Calm Again"))
    assert run(project, jobs=1).built == 2


# -- 13. outputs of deleted scripts ------------------------------------------------------------------


def test_outputs_of_deleted_scripts_and_locales_are_removed_unless_changed(project: Path):
    other = project / "scripts" / "other.yaml"
    other.write_text("title: Other\nlocales: [en-GB, en-US]\nsections:\n  - text: A second script.\n")
    assert run(project, jobs=1).built == 4
    out = project / "build"
    (out / "en-GB" / "other.pdf").write_bytes(b"my own notes")   # changed by the user: kept
    (out / "notes.txt").write_text("mine")
    (out / "en-US" / "other-timeline.png").write_bytes(b"a plot")   # `calmplace plot`'s, of a track that goes
    (out / "en-GB" / "tiny-timeline.png").write_bytes(b"a plot")    # of a track that stays
    other.unlink()
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("locales: [en-GB, en-US]", "locales: [en-GB]")
                      .replace("spelling:\n  en-US: {colour: color}\n", ""))
    # a build of one script or one locale removes nothing
    assert run(project, jobs=1, locales=("en-GB",)).removed == []
    assert run(project, names=("tiny",), jobs=1).removed == []
    assert (out / "en-GB" / "other.mp3").exists()
    ui = Messages()
    report = run(project, jobs=1, ui=ui)
    assert report.exit_code == 0 and report.cached == 1
    assert sorted(Path(p).relative_to(out).as_posix() for p in report.removed) == [
        "en-GB/other.mp3", "en-GB/other.vtt", "en-US/other-timeline.png", "en-US/other.mp3", "en-US/other.pdf",
        "en-US/other.vtt", "en-US/tiny.mp3", "en-US/tiny.pdf", "en-US/tiny.vtt"]
    assert "9 removed" in report.summary() and (out / "en-GB" / "tiny-timeline.png").exists()
    assert any("kept" in line and "other.pdf" in line for line in ui.lines)
    assert (out / "en-GB" / "other.pdf").read_bytes() == b"my own notes" and (out / "notes.txt").exists()
    assert not (out / "en-US").exists() and (out / "en-GB" / "tiny.mp3").exists()
    assert sorted(Manifest(out / "manifest.json").data["outputs"]) == ["en-GB/tiny.mp3", "en-GB/tiny.pdf",
                                                                       "en-GB/tiny.vtt"]
    assert run(project, jobs=1).removed == []


def test_a_manifest_entry_outside_the_outputs_is_never_removed(project: Path, tmp_path_factory):
    import json

    assert run(project, jobs=1).built == 2
    victim = tmp_path_factory.mktemp("elsewhere") / "precious.mp3"
    victim.write_bytes(b"x")
    manifest = project / "build" / "manifest.json"
    data = json.loads(manifest.read_text())
    from calmplace.fsio import sha256_file

    data["outputs"][f"../../{victim.parent.name}/precious.mp3"] = {"sha256": sha256_file(victim)}
    data["outputs"][str(victim)] = {"sha256": sha256_file(victim)}
    # a folder in the outputs that is a link to another place: 'xx/precious.mp3' has the shape of an
    # output's name, but the file is not in the outputs
    (project / "build" / "xx").symlink_to(victim.parent, target_is_directory=True)
    data["outputs"]["xx/precious.mp3"] = {"sha256": sha256_file(victim)}
    manifest.write_text(json.dumps(data))
    report = run(project, jobs=1)
    assert report.exit_code == 0 and victim.exists() and report.removed == []


# -- 14. messages ------------------------------------------------------------------------------------


def test_check_lists_only_the_missing_or_stale_files(project: Path):
    assert run(project, jobs=1).built == 2
    (project / "build" / "en-GB" / "tiny.vtt").unlink()
    report = run(project, jobs=1, check_only=True)
    assert report.exit_code == 1 and len(report.problems) == 1
    assert report.problems[0].startswith("tiny (en-GB): outputs are missing or stale: ")
    assert report.problems[0].endswith("tiny.vtt") and ".mp3" not in report.problems[0]


def test_a_full_disk_names_the_file(tmp_path: Path, monkeypatch):
    import errno

    import calmplace.fsio as fsio

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio.os, "fsync", full)
    target = tmp_path / "out" / "x.mp3"
    with pytest.raises(OSError) as info:
        fsio.atomic_write(target, b"data")
    assert str(info.value) == f"[Errno 28] No space left on device: '{target}'"
    assert list(target.parent.iterdir()) == []


def test_verbose_says_which_takes_are_spoken_again(project: Path):
    assert run(project, jobs=1, locales=("en-GB",)).exit_code == 0
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("Rest here for a while.", "Rest here a while."))

    class Details(Messages):
        def detail(self, message: str) -> None:
            self.lines.append(message)

    ui = Details()
    assert run(project, jobs=1, locales=("en-GB",), ui=ui).built == 1
    assert "speaking 1 of 4 takes of tiny (en-GB): 003" in ui.lines


def test_outputs_follow_the_umask(tmp_path: Path):
    """CI QA: outputs were 0644 whatever the umask (mkstemp's 0600, then a fixed chmod); a file
    written atomically gets the mode open() would give it. In a fresh process: the umask is read
    once, at import."""
    import subprocess
    import sys

    code = ("import os, sys\nos.umask(int(sys.argv[2], 8))\nfrom calmplace.fsio import atomic_write\n"
            "atomic_write(sys.argv[1], b'x')\nprint(oct(os.stat(sys.argv[1]).st_mode & 0o777))\n")
    for mask, mode in (("022", "0o644"), ("077", "0o600"), ("002", "0o664")):
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"f{mask}"), mask], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == mode, (mask, out)

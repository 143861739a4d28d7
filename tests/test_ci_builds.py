"""CI-grade builds: caches, incremental rebuilds, parallel = serial, reproducibility, atomicity."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


from calmplace.build import TakeCache, build
from calmplace.script import Project
from calmplace.speech.fake import FakeEngine

OUTPUTS = [f"{loc}/tiny.{ext}" for loc in ("en-GB", "en-US") for ext in ("mp3", "pdf", "vtt")]


class CountingEngine(FakeEngine):
    """The stand-in voice, counting which texts it was asked to speak."""

    def __init__(self):
        super().__init__()
        self.spoken: list[str] = []

    def speak(self, takes, **kwargs):
        self.spoken.extend(t.text for t in takes)
        return super().speak(takes, **kwargs)


def run(project: Path, engine=None, **kwargs):
    engine = engine or CountingEngine()
    report = build(Project(project), engine_factory=lambda profile: engine, **kwargs)
    return report, engine


def read_outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def test_parallel_equals_serial_and_rebuilds_are_byte_identical(project: Path):
    serial, _ = run(project, out_dir=project / "one", jobs=1)
    parallel, _ = run(project, out_dir=project / "two", jobs=2)
    assert serial.exit_code == parallel.exit_code == 0
    first = read_outputs(project / "one")
    assert first == read_outputs(project / "two")
    forced, engine = run(project, out_dir=project / "one", jobs=2, force=True)
    assert forced.built == 2 and len(engine.spoken) == 8  # --force speaks every take again
    assert read_outputs(project / "one") == first


def test_one_track_with_cpus_to_spare_is_byte_identical(project: Path):
    # one track and jobs=2: rendered in this process with two threads, its bed generated ahead
    # while the takes are spoken (mix.BedPrefetch)
    serial, _ = run(project, out_dir=project / "one", jobs=1, locales=("en-GB",))
    threaded, _ = run(project, out_dir=project / "two", jobs=2, locales=("en-GB",))
    assert serial.exit_code == threaded.exit_code == 0 and serial.built == threaded.built == 1
    outputs = [name for name in OUTPUTS if name.startswith("en-GB/")]
    assert outputs and all((project / "one" / name).read_bytes() == (project / "two" / name).read_bytes()
                           for name in outputs)


def test_editing_one_word_rebuilds_one_script_and_one_take(project: Path):
    (project / "scripts" / "other.yaml").write_text(
        "title: Other\nlocales: [en-GB]\nsections:\n  - text: A second script. [pause 2s] Second take.\n")
    first, engine = run(project)
    assert (first.built, first.cached) == (3, 0) and len(engine.spoken) == 10
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("Let the breath slow down.", "Let the breath slow right down."))
    second, engine = run(project)
    assert (second.built, second.cached) == (2, 1)  # tiny's two locales; other.yaml untouched
    assert engine.spoken == ["Let the breath slow right down."] * 2  # one changed take in each locale


def test_corrupt_cache_entry_is_respoken(project: Path):
    run(project)
    entries = sorted((project / "build" / ".cache" / "takes").rglob("*.npy"))
    assert len(entries) == 8
    for entry in entries:
        entry.write_bytes(b"not a numpy file")
    (project / "build" / "en-GB" / "tiny.mp3").unlink()  # force a rebuild of that track
    report, engine = run(project)
    assert report.exit_code == 0 and report.built == 1 and len(engine.spoken) == 4  # en-GB's four takes
    cache = TakeCache(project / "build" / ".cache")
    assert sum(cache.get(e.stem) is not None for e in entries) == 4


def test_check_lists_missing_and_stale_outputs(project: Path):
    report, engine = run(project, check_only=True)
    assert report.exit_code == 1 and len(report.problems) == 2 and not engine.spoken
    assert not (project / "build" / "en-GB").exists()
    run(project)
    assert run(project, check_only=True)[0].exit_code == 0
    (project / "build" / "en-US" / "tiny.vtt").write_text("WEBVTT\n")  # a damaged output is stale too
    report, _ = run(project, check_only=True)
    assert report.exit_code == 1 and "tiny (en-US)" in report.problems[0]


def _cli(project: Path, *args: str, quiet: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "calmplace", *(["-q"] if quiet else []), "build", "--fake-speech", *args]
    return subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout_s: float = 120) -> tuple[int, str]:
    """Wait for a build and close its pipes; (exit code, stderr)."""
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def test_sigkill_at_any_moment_leaves_old_or_new_outputs(project: Path):
    assert _finish(_cli(project, "-j", "1"))[0] == 0
    old = read_outputs(project / "build")
    script = project / "scripts" / "tiny.yaml"
    script.write_text(script.read_text().replace("Rest here for a while.", "Rest here for a little while."))
    reference = project / "reference"
    assert _finish(_cli(project, "-j", "1", "--out", str(reference)))[0] == 0
    new = read_outputs(reference)
    # kill the real build at spread-out moments: during start-up, speech, mixing, encoding, writing
    for delay_s in (0.3, 0.8, 1.5, 2.5, 3.5, 5.0):
        proc = _cli(project, "-j", "1")
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        _finish(proc, 30)
        for name in OUTPUTS:
            data = (project / "build" / name).read_bytes()
            assert data in (old[name], new[name]), f"{name} is neither the old nor the new file after {delay_s}s"
    code, err = _finish(_cli(project, "-j", "1"))
    assert code == 0, err
    assert read_outputs(project / "build") == new
    assert not list((project / "build").rglob(".*.tmp"))  # temp files of killed builds were swept


def test_second_build_waits_for_the_first(project: Path):
    first = _cli(project, "-j", "1")
    time.sleep(0.5)
    second = _cli(project, "-j", "1", quiet=False)
    assert _finish(first)[0] == 0
    code, err = _finish(second)
    assert code == 0
    assert "waiting for another calmplace build" in err
    assert "0 built, 2 unchanged" in err  # it saw the first build's outputs once the lock was free

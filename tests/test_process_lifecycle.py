"""The render pool's processes end with the build: after a SIGKILL, and on Ctrl-C (Linux: the
tests read /proc to find the build's process group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _group(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in a process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            out.append((int(entry.name), cmdline))
    return out


def _wait_for(condition, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _start(project: Path) -> subprocess.Popen:
    """A two-locale build with two jobs (so a process pool renders the tracks), in its own group,
    with Ctrl-C handled as in a terminal; its messages go to project/err.txt (a pipe would stay
    open as long as any process left behind holds it)."""
    cmd = [sys.executable, "-m", "calmplace", "-q", "build", "--fake-speech", "-j", "2"]
    with open(project / "err.txt", "w") as err:
        return subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def test_a_killed_build_leaves_no_process_behind(project: Path):
    """SIGKILL left the pool's workers waiting for work for ever, and with them the forkserver and
    the resource tracker (QA: 650 MB in 4 processes, still there after 2 minutes)."""
    proc = _start(project)
    try:
        # kill it once both workers are forked (the forkserver and its two children are up)
        assert _wait_for(lambda: sum("forkserver" in cmd for _, cmd in _group(proc.pid)) >= 3, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # the workers look for the build every 0.5 s; 10 s leaves room for a loaded machine
        assert _wait_for(lambda: not _group(proc.pid), 10), _group(proc.pid)
    finally:
        for pid, _ in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_while_the_forkserver_imports_is_quiet(project: Path):
    """Ctrl-C reaches the whole process group; the forkserver, importing scipy and the rest for
    about 1.5 s, printed a KeyboardInterrupt traceback (QA). Now: 'Aborted!', exit 130 (128 +
    SIGINT: interrupted, not failed; it was 1), nothing left."""
    proc = _start(project)
    try:
        assert _wait_for(lambda: any("forkserver" in cmd for _, cmd in _group(proc.pid)), 60)
        time.sleep(0.4)   # into its imports (about 1.5 s), past the interpreter's own start
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        err = (project / "err.txt").read_text()
        assert "Traceback" not in err and "Aborted!" in err, err
        assert _wait_for(lambda: not _group(proc.pid), 10), _group(proc.pid)
    finally:
        for pid, _ in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


def _sleep(started: str, seconds: float) -> str:
    Path(started).write_text("started")
    time.sleep(seconds)
    return "finished"


def test_an_interrupted_build_stops_its_render_workers_mid_task(tmp_path: Path):
    """CI QA: SIGINT to the build's process (not its group) waited 9-17 s while the tracks being
    rendered finished. On KeyboardInterrupt the pool's workers are ended mid-task: here one busy
    for a minute is gone, its task never finished."""
    import concurrent.futures
    import multiprocessing

    from calmplace.build import _stop_workers

    pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        started = tmp_path / "started"
        busy = pool.submit(_sleep, str(started), 60.0)
        assert _wait_for(started.exists, 60)   # the worker is in its task (not still starting up)
        (worker,) = list(pool._processes.values())
        _stop_workers(pool)
        worker.join(30)
        assert not worker.is_alive() and worker.exitcode == -signal.SIGTERM
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            busy.result(timeout=30)
    finally:
        pool.shutdown(cancel_futures=True)

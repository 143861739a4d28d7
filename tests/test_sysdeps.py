"""tools/sysdeps.sh, which `make tracks` and `make test` run first: it installs what is missing
with apt-get, and waits for another apt (unattended-upgrades, a second `make` in a fresh clone)
instead of failing at once. Run against stand-ins on PATH: no real package is installed."""

import os
import shutil
import subprocess
from pathlib import Path

SYSDEPS = Path(__file__).resolve().parents[1] / "tools" / "sysdeps.sh"

# an apt-get that logs its arguments and fails while a counter file says it is still locked
FAKE_APT = """#!/bin/bash
echo "$*" >> "$FAKE_DIR/calls"
left=$(cat "$FAKE_DIR/locked")
if [ "$left" -gt 0 ]; then
  echo $((left - 1)) > "$FAKE_DIR/locked"
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 42 (apt-get)" >&2
  exit 100
fi
if [ -n "${FAKE_APT_FAIL:-}" ]; then echo "E: $FAKE_APT_FAIL" >&2; exit 100; fi
echo "noise on stdout"
"""


def _run(tmp_path: Path, *, locked: int, fail: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """sysdeps.sh as root on Linux with nothing installed: PATH holds only stand-ins (apt-get, id,
    uname, ldconfig, a sleep that does not wait) and the real tools the script reads with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {"apt-get": FAKE_APT, "id": "#!/bin/sh\necho 0\n", "uname": "#!/bin/sh\necho Linux\n",
                 "ldconfig": "#!/bin/sh\nexit 0\n", "sleep": "#!/bin/sh\nexit 0\n"}
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in ("grep", "cat", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (tmp_path / "locked").write_text(f"{locked}\n")
    (tmp_path / "calls").write_text("")
    env = {"PATH": str(bin_dir), "FAKE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    if fail:
        env["FAKE_APT_FAIL"] = fail
    done = subprocess.run([shutil.which("bash"), str(SYSDEPS)], env=env, capture_output=True, text=True,
                          timeout=60)
    return done, (tmp_path / "calls").read_text().splitlines()


def test_installs_what_is_missing(tmp_path):
    done, calls = _run(tmp_path, locked=0)
    assert done.returncode == 0, done.stderr
    assert len(calls) == 2
    assert "update" in calls[0]
    assert "install" in calls[1]
    for package in ("libespeak-ng1", "espeak-ng", "ffmpeg", "poppler-utils", "gcc", "libc6-dev"):
        assert package in calls[1]
    assert "noise on stdout" not in done.stdout   # apt-get's own chatter stays quiet
    assert "waiting" not in done.stderr


def test_waits_for_another_apt_to_let_go_of_its_locks(tmp_path):
    done, calls = _run(tmp_path, locked=3)
    assert done.returncode == 0, done.stderr
    # three refused updates, then the update and the install
    assert ["update" in c for c in calls] == [True] * 4 + [False]
    assert "install" in calls[-1]
    assert all("DPkg::Lock::Timeout=600" in c for c in calls)   # dpkg's own lock: apt waits itself
    assert done.stderr.count("waiting for another apt-get to finish") == 1


def test_any_other_apt_error_fails_at_once_and_is_shown(tmp_path):
    done, calls = _run(tmp_path, locked=0, fail="Unable to locate package ffmpeg")
    assert done.returncode == 1
    assert len(calls) == 1   # the update failed: no retry, no install
    assert "Unable to locate package ffmpeg" in done.stderr
    assert "apt-get install" in done.stderr and "failed" in done.stderr


def test_a_lock_held_for_ever_gives_up(tmp_path):
    done, calls = _run(tmp_path, locked=10_000)
    assert done.returncode == 1
    assert len(calls) == 120   # 10 minutes of 5-second waits, then the lock error is shown
    assert "Could not get lock" in done.stderr


def test_nothing_to_do_when_everything_is_there(tmp_path):
    """The real machine has what the tests need (they ran sysdeps.sh first): exit 0, no apt."""
    (tmp_path / "apt-get").write_text("#!/bin/sh\nexit 99\n")   # fails if called
    (tmp_path / "apt-get").chmod(0o755)
    done = subprocess.run([shutil.which("bash"), str(SYSDEPS)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert done.returncode == 0
    assert done.stdout == "" and done.stderr == ""


def test_no_compiler_without_root_is_a_note_not_a_failure(tmp_path):
    """Everything else there, no C compiler, not root: the .venv is made without calmplace's
    compiled filter loop (same bytes, slower), so the script says so and lets the build go on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins = {"apt-get": "#!/bin/sh\nexit 99\n", "id": "#!/bin/sh\necho 1000\n",
                 "uname": "#!/bin/sh\necho Linux\n", "ldconfig": "#!/bin/sh\necho libespeak-ng.so.1\n",
                 "espeak-ng": "", "ffmpeg": "", "pdftotext": ""}
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text or "#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("grep", "cat", "bash"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([shutil.which("bash"), str(SYSDEPS)], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    assert "no C compiler" in done.stderr and "same bytes" in done.stderr

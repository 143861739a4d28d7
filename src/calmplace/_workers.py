"""Render pool workers end with the build that started them (`follow_parent`)."""

from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 0.5


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (not gone, not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True   # no /proc (macOS): kill(pid, 0) said it exists


def follow_parent(build_pid: int) -> None:
    """A pool initializer: end this worker when the build process is gone. A build killed with
    SIGKILL leaves its workers waiting for work for ever (they hold their own queue's pipe open),
    and with them the forkserver and the resource tracker: 650 MB in 4 processes (QA); a worker in
    the middle of a track went on for its 30 CPU-seconds."""
    def watch() -> None:
        while _alive(build_pid):
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="calmplace-follow-build", daemon=True).start()

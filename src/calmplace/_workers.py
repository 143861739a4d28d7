"""Render pool workers: they end with the build that started them (`follow_parent`), and know
the CPUs the build's other tracks have freed (`SPARE_CPUS`)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class SpareCpus:
    """CPUs a track's encoder may borrow (`encode._executor`): `semaphore` (a multiprocessing one,
    shared by the build and its render workers) counts those free now, and `most` is as many as
    there could ever be (the build's --jobs less the track's own threads). Here, not in `encode`:
    the build's process makes one, and must not import what `encode` imports (numpy, scipy's kernels, LAME)."""
    semaphore: object
    most: int


SPARE_CPUS: SpareCpus | None = None   # in a render worker (`start_worker`)


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


def start_worker(build_pid: int, spare_cpus) -> None:
    """The render pool's initializer: `follow_parent`, and keep the build's `SpareCpus`."""
    global SPARE_CPUS
    SPARE_CPUS = spare_cpus
    follow_parent(build_pid)

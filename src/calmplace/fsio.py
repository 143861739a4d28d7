"""The only place calmplace writes files: atomically (temp file in the same folder, fsync, rename)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

# atomic_write's temp files: mkstemp's `.{name}.{8 random characters}.tmp` beside `name`, for
# the kinds of file calmplace writes (the sweep leaves anyone else's `.*.tmp` alone)
TEMP_NAME = re.compile(r"\.[^/]+\.(?:mp3|pdf|vtt|json|npy|png|csv)\.[a-z0-9_]{8}\.tmp\Z")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `data` so that `path` is either the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # as open() would make it (mkstemp makes 0600; CI QA: 0644 always)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:   # a write's ENOSPC names no file
            exc.filename = str(path)
        raise


def _umask() -> int:
    """The process's umask, read by setting it and setting it back (there is no other way): once,
    at import, before any thread could create a file in between."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def sweep_temp_files(folder: Path, *, min_age_s: float = 0.0, of: str | None = None) -> list[Path]:
    """Remove atomic_write's temp files directly in `folder` (left by a build that was killed
    mid-write), those at least `min_age_s` old, and with `of` only those of that file name; return
    them. Other files are never touched; a folder that cannot be read or written is left as it is."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed, now = [], time.time()
    for entry in entries:
        if not TEMP_NAME.match(entry.name) or of is not None and not entry.name.startswith(f".{of}."):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if min_age_s and now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed

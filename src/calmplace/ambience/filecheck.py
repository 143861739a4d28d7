"""The cheap checks of a user's ambience file, for `calmplace check` and every build's validation:
headers only, with soundfile alone. Kept apart from `userfile`, which needs scipy.signal (about a
second to import), so a no-op build of a script that uses an ambience file stays well under a second."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

MIN_FILE_S = 1.0        # shorter files cannot loop without an audible pulse


def check_file(path: Path, *, shown: str) -> str | None:
    """Header-only checks (cheap): the error message for a file that cannot be a bed, or None."""
    if path.is_dir():
        return f"ambience sound {shown} is a folder, not an audio file"
    if path.stat().st_size == 0:
        return f"ambience file {shown} is empty (0 bytes)"
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile reports unreadable formats in several exception types
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return f"ambience file {shown} is not audio that soundfile can read ({reason})"
    if info.frames <= 0:
        return f"ambience file {shown} is empty (no audio frames)"
    seconds = info.frames / info.samplerate
    if seconds < MIN_FILE_S:
        return f"ambience file {shown} is only {seconds:.2f} s long: a loop needs at least {MIN_FILE_S:g} s"
    return None

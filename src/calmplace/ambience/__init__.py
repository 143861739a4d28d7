"""Ambience stage: the soundscape bed under the voice, as an endless, seamless stereo stream.

A bed is either a built-in generated in code (rain, stream, ocean, ...) or a recording in the ambience
folder, looped without a seam. Every bed comes out at REFERENCE_LUFS; blocks of any size can be read in
turn and join exactly as one long read would, so hour-long tracks stream in constant memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import CalmplaceError

# The generators and the meter pull in numpy's and scipy's kernels (calmplace.kernels), the file loader
# scipy.signal (about a second to import): they are imported where audio is made, so `calmplace check`
# and no-op builds stay fast.
REFERENCE_LUFS = -23.0  # EBU R128 programme level; every bed is rendered at it
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")  # what libsndfile reads

__all__ = ["REFERENCE_LUFS", "BUILTINS", "BedSource", "open_bed", "render_bed", "validate_sound"]

BUILTINS: dict[str, str] = {
    "rain": "steady rain: a soft hiss with droplets ticking and plinking around you",
    "stream": "a shallow brook over stones, close and steady, with small gurgles and bubbles",
    "ocean": "surf on a beach: slow 8-14 s swells, each breaking into a hiss of foam",
    "wind": "wind in the open, drifting in pitch and rising in slow gusts",
    "forest": "a quiet wood: leaves in a light breeze and the occasional songbird",
    "fire": "a wood fire: a low breathing rumble with soft bursts of crackle",
    "pink": "pink noise: an even, soft hiss (-3 dB per octave)",
    "brown": "brown noise: a deep, steady rumble (-6 dB per octave)",
}

_MAX_LISTED = 20  # files named in an error message before "... and N more"


@runtime_checkable
class BedSource(Protocol):
    sr: int

    def read(self, n_samples: int) -> np.ndarray:
        """The next (2, n_samples) float32 block, continuing seamlessly from the previous one."""
        ...


def _available(ambience_dir: Path) -> str:
    """'built-ins are ...; files in <dir>: ...' for error messages."""
    text = f"built-ins are {', '.join(BUILTINS)}"
    files: list[str] = []
    if ambience_dir.is_dir():
        files = sorted(p.relative_to(ambience_dir).as_posix() for p in ambience_dir.rglob("*")
                       if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(ambience_dir).parts))
    if files:
        shown = files[:_MAX_LISTED] + ([f"... and {len(files) - _MAX_LISTED} more"] if len(files) > _MAX_LISTED else [])
        return f"{text}; files in {ambience_dir}: {', '.join(shown)}"
    return f"{text}; {ambience_dir} has no audio files"


def _locate(sound: str, *, ambience_dir: Path) -> tuple[Path | None, str | None]:
    """(path, None) for a readable-looking file in ambience_dir, else (None, error message)."""
    name = sound.strip()
    if not name:
        return None, f"ambience sound is empty: {_available(ambience_dir)}"
    given = Path(name)
    if given.is_absolute() or given.drive:
        return None, (f"ambience sound {sound!r} is an absolute path: name a file inside {ambience_dir} "
                      f"relative to it, e.g. 'rain.wav'")
    try:
        root = ambience_dir.resolve()
        full = (root / given).resolve()   # follows symlinks, so a link pointing elsewhere is caught too
        present = full.exists()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte, a symlink loop, no permission
        return None, f"ambience sound {sound!r} is not a usable file name ({exc})"
    if not full.is_relative_to(root):
        return None, f"ambience sound {sound!r} points outside {ambience_dir}: only files inside it can be used"
    if not present:
        hint = ""
        if not given.suffix:
            matches = sorted(p.name for p in full.parent.glob(given.name + ".*")
                             if p.suffix.lower() in AUDIO_SUFFIXES) if full.parent.is_dir() else []
            if matches:
                hint = f" (did you mean {matches[0]!r}?)"
        if not hint and given.parts[:1] == (ambience_dir.name,) and (root / Path(*given.parts[1:])).is_file():
            # QA: `ambience/hum.wav`: names are relative to the ambience folder already
            hint = f" (did you mean {Path(*given.parts[1:]).as_posix()!r}? names are relative to {ambience_dir.name}/)"
        if not hint:  # `Stream`, `strem`: a built-in's name in the wrong case or misspelt; `humm.wav`: a file's
            import difflib

            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES) if root.is_dir() else []
            close = [b for b in BUILTINS if b == name.lower()] or difflib.get_close_matches(
                name.lower(), list(BUILTINS), n=1, cutoff=0.75) or difflib.get_close_matches(
                name, files, n=1, cutoff=0.8)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        return None, f"unknown ambience sound {sound!r}{hint}: {_available(ambience_dir)}"
    return full, None


def _shown(sound: str, ambience_dir: Path) -> str:
    return (ambience_dir / sound.strip()).as_posix()


def validate_sound(sound: str, *, ambience_dir: Path) -> str | None:
    """A cheap check for `calmplace check` (headers only, no rendering): an error message, or None if fine."""
    if sound in BUILTINS:
        return None
    ambience_dir = Path(ambience_dir)
    path, message = _locate(sound, ambience_dir=ambience_dir)
    if message:
        return message
    assert path is not None
    from .filecheck import check_file

    return check_file(path, shown=_shown(sound, ambience_dir))


def open_bed(sound: str, *, sr: int, seed: int, ambience_dir: Path,
             n_samples_hint: int | None = None) -> BedSource:
    """A stereo bed at REFERENCE_LUFS to read block by block: a built-in name or a file in ambience_dir.

    Deterministic for (sound, sr, seed). `n_samples_hint` (the expected total length) is accepted for
    callers' convenience but never changes the audio: a block is the same whatever length follows it.
    Raises CalmplaceError for an unknown name, a path leaving ambience_dir, or an unusable file.
    """
    if int(sr) < 8000:
        raise CalmplaceError(f"sample rate {sr} Hz is too low for ambience (need at least 8000 Hz)")
    if sound in BUILTINS:
        from .generators import open_builtin

        return open_builtin(sound, sr=int(sr), seed=int(seed))
    ambience_dir = Path(ambience_dir)
    path, message = _locate(sound, ambience_dir=ambience_dir)
    if message:
        raise CalmplaceError(message)
    assert path is not None
    from .userfile import open_file

    return open_file(path, shown=_shown(sound, ambience_dir), sr=int(sr), seed=int(seed))


def render_bed(sound: str, *, n_samples: int, sr: int, seed: int, ambience_dir: Path) -> np.ndarray:
    """Convenience: the first n_samples of `open_bed(...)`, as a (2, n_samples) float32 array."""
    return open_bed(sound, sr=sr, seed=seed, ambience_dir=ambience_dir, n_samples_hint=n_samples).read(n_samples)

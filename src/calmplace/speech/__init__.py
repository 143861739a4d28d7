"""Speech stage: one module per engine behind one small interface.

An engine turns takes into mono float32 clips at the library rate, with leading and trailing
silence trimmed to a short natural margin, so the script's pauses (not the engine's or the
reader's) set the rhythm of the track. The take is the unit: each clip is cached under a key
that the engine derives from everything that shapes it.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Protocol, Sequence

import numpy as np

from ..takes import Take


class Engine(Protocol):
    def identity(self, *, locale: str) -> str:
        """What, besides the takes, shapes this engine's clips (engine, version, voice, rate...)."""

    def take_keys(self, takes: Sequence[Take], *, script_id: str, locale: str, sr: int) -> list[str]:
        """One cache key per take; raises CalmplaceError for takes that cannot be made (missing files)."""

    def speak(self, takes: Sequence[Take], *, script_id: str, locale: str, sr: int, jobs: int = 1,
              on_done: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Clips for the given takes, in order; `on_done(i)` is called as each finishes."""


def text_key(identity: str, text: str, *, sr: int) -> str:
    """The cache key of a synthesised take: the engine's identity, the rate and the words."""
    return hashlib.sha256(f"{identity}\x00{sr}\x00{text}".encode()).hexdigest()


def take_label(script_id: str, locale: str, take: Take) -> str:
    return f"{script_id} ({locale}) take {take.name}"   # as a track is named: "id (locale)"

"""Speech stage: one module per engine behind one small interface.

An engine turns the text of one take into a mono float32 clip at the library rate, with
leading and trailing silence trimmed to a short natural margin, so the script's pauses
(not the engine's) set the rhythm of the track.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    def identity(self, *, locale: str) -> str:
        """Everything besides the text that shapes a clip (engine, version, voice, rate...): the cache key."""

    def speak_many(self, texts: list[str], *, locale: str, sr: int, jobs: int = 1, on_done=None,
                   labels: list[str] | None = None) -> list[np.ndarray]:
        """Clips for many takes, in order; `on_done(i)` is called as each finishes; `labels`
        name the takes in errors."""

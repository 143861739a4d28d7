"""A fast, deterministic stand-in engine for unit tests: each word is a short voiced burst.

Not speech, but shaped like it (a 120-200 Hz harmonic tone with syllable-rate envelopes), so
loudness, ducking and timing can be measured on it in milliseconds instead of seconds.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..units import seconds_to_samples
from . import text_key

WORD_S = 0.32  # 0.32 s a word with its gap: about 150 words a minute, the narrator's pace


class FakeEngine:
    def __init__(self, *, word_s: float = WORD_S):
        self.word_s = word_s

    def identity(self, *, locale: str) -> str:
        return f"fake:{self.word_s}:{locale}"

    def speak_text(self, text: str, *, sr: int) -> np.ndarray:
        words = text.split()
        n_word = seconds_to_samples(self.word_s, sr=sr)
        voiced = int(n_word * 0.8)
        t = np.arange(voiced, dtype=np.float64) / sr
        env = np.sin(np.pi * np.arange(voiced) / voiced) ** 2
        out = np.zeros(n_word * len(words), dtype=np.float32)
        for i, word in enumerate(words):
            f0 = 120.0 + int(hashlib.sha256(word.encode()).hexdigest()[:4], 16) % 80
            tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            out[i * n_word: i * n_word + voiced] = (0.3 * env * tone).astype(np.float32)
        return out

    def take_keys(self, takes, *, script_id, locale, sr):
        return [text_key(self.identity(locale=locale), t.text, sr=sr) for t in takes]

    def speak(self, takes, *, script_id, locale, sr, jobs=1, on_done=None):
        clips = []
        for i, take in enumerate(takes):
            clips.append(self.speak_text(take.text, sr=sr))
            if on_done:
                on_done(i)
        return clips

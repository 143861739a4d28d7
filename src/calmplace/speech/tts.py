"""System text-to-speech through pyttsx3 (espeak-ng on Linux, NSSpeech on macOS, SAPI5 on Windows).

Designed around pyttsx3 2.99's pitfalls on Linux, each seen here:
- two `save_to_file` calls before one `runAndWait` write only the last file, and the same text
  rendered twice in one process can differ by a few samples: so every take is rendered by a
  freshly initialised engine in a worker process of its own (a pool with one task per child,
  forked from a clean forkserver: a few milliseconds a take, and byte-identical output);
- an unknown voice is silently ignored: the selected voice is read back and checked;
- `runAndWait` can hang: every take has a timeout that names it.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import CalmplaceError
from ..voices import VoiceProfile
from . import _tts_child
from .clips import check_clip, resample, trim_silence

TAKE_TIMEOUT_S = 60.0  # espeak renders a sentence in ~50 ms; a minute means it hung


@dataclass(frozen=True)
class SystemVoice:
    id: str
    name: str
    languages: tuple[str, ...]

    def matches(self, wanted: str) -> bool:
        w = wanted.strip().lower()
        return w in (self.id.lower(), self.id.lower().rsplit("/", 1)[-1], self.name.lower()) or \
            w in (lang.lower() for lang in self.languages)


def _context():
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["calmplace.speech._tts_child"])
        return ctx
    return multiprocessing.get_context("spawn")


def _run_isolated(fn, *args, timeout_s: float, what: str):
    """Run one call in a fresh process and return its result, or fail with `what` named."""
    with _context().Pool(1, maxtasksperchild=1) as pool:
        try:
            return pool.apply_async(fn, args).get(timeout=timeout_s)
        except multiprocessing.TimeoutError:
            pool.terminate()
            raise CalmplaceError(f"speech engine timed out after {timeout_s:.0f} s on {what}") from None
        except Exception as exc:  # the engine failed to start: no driver, no espeak-ng library
            raise CalmplaceError(f"the speech engine failed on {what}: {exc}. "
                                 f"On Debian/Ubuntu: apt-get install espeak-ng libespeak-ng1") from None


@lru_cache(maxsize=1)
def system_info() -> dict:
    """The installed voices and engine versions, asked of a fresh process (cached per run)."""
    return _run_isolated(_tts_child.list_voices, timeout_s=TAKE_TIMEOUT_S, what="listing voices")


def system_voices() -> list[SystemVoice]:
    return [SystemVoice(v["id"], v["name"], tuple(v["languages"])) for v in system_info()["voices"]]


def choose_voice(prefer: tuple[str, ...], *, locale: str, voices: list[SystemVoice] | None = None) -> SystemVoice:
    """The first preference that names an installed voice (by id, name or language) wins."""
    voices = system_voices() if voices is None else voices
    for wanted in prefer:
        for voice in voices:
            if voice.matches(wanted):
                return voice
    lang = locale.split("-")[0].lower()
    near = [v for v in voices if any(l.lower().startswith(lang) for l in v.languages)] or voices
    listing = "\n".join(f"  {v.id}  ({v.name}; {', '.join(v.languages)})" for v in near[:30])
    raise CalmplaceError(f"no installed voice matches {list(prefer)} for {locale}; installed voices:\n{listing}")


class TtsEngine:
    def __init__(self, profile: VoiceProfile, *, timeout_s: float = TAKE_TIMEOUT_S):
        self.profile = profile
        self.timeout_s = timeout_s

    def voice_for(self, locale: str) -> SystemVoice:
        return choose_voice(self.profile.prefer_for(locale), locale=locale)

    def identity(self, *, locale: str) -> str:
        info = system_info()
        voice = self.voice_for(locale)
        return (f"pyttsx3 {info['pyttsx3']}|espeak-ng {info['espeak']}|{voice.id}|rate {self.profile.rate_wpm}"
                f"|volume {self.profile.volume}|trim v1")

    def speak_many(self, texts: list[str], *, locale: str, sr: int, jobs: int = 1, on_done=None,
                   labels: list[str] | None = None) -> list[np.ndarray]:
        """Render each text in a fresh process, `jobs` at a time; clips come back in order."""
        voice = self.voice_for(locale)
        labels = labels or [f"take {i + 1:03d}" for i in range(len(texts))]
        clips: list[np.ndarray] = []
        with _context().Pool(max(1, jobs), maxtasksperchild=1) as pool:
            pending = [pool.apply_async(_tts_child.render, (t, voice.id, self.profile.rate_wpm, self.profile.volume))
                       for t in texts]
            for i, result in enumerate(pending):
                try:
                    out = result.get(timeout=self.timeout_s)
                except multiprocessing.TimeoutError:
                    pool.terminate()
                    raise CalmplaceError(f"speech engine timed out after {self.timeout_s:.0f} s on {labels[i]} "
                                         f"({texts[i][:60]!r})") from None
                if "error" in out:
                    pool.terminate()
                    raise CalmplaceError(f"{labels[i]}: {out['error']}")
                clip = resample(check_clip(out["samples"], what=labels[i]), sr_in=out["sr"], sr_out=sr)
                clips.append(trim_silence(clip, sr=sr))
                if on_done:
                    on_done(i)
        return clips

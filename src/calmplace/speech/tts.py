"""System text-to-speech through pyttsx3 (espeak-ng on Linux, NSSpeech on macOS, SAPI5 on Windows).

Designed around pyttsx3 2.99's pitfalls on Linux, each seen here:
- two `save_to_file` calls before one `runAndWait` write only the last file, and the same text
  rendered twice in one process can differ by a few samples: so every take is rendered by a
  freshly initialised engine in a process of its own (forked from the parent, which never
  initialises an engine itself: a few milliseconds a take, and byte-identical output);
- `runAndWait` returns before espeak-ng has finished a long text (see _tts_child);
- an unknown voice is silently ignored: the selected voice is read back and checked;
- `runAndWait` can hang: every take has a timeout that names it.
"""

from __future__ import annotations

import multiprocessing
import sys
import warnings
import time
from multiprocessing.connection import wait
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import CalmplaceError
from ..voices import VoiceProfile
from . import _tts_child, take_label, text_key
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
    """Fork on Linux: each child starts with the parent's imports but no engine (the parent
    never initialises one), in milliseconds. Elsewhere (NSSpeech and SAPI5 dislike forking) spawn."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_isolated(fn_name: str, calls: list[tuple], *, jobs: int, timeout_s: float, labels: list[str],
                 on_done=None) -> list[dict]:
    """Run `_tts_child.<fn_name>(*args)` for each args tuple, each in a fresh process, `jobs` at a time.

    Processes are our own (not a Pool) so that a finished one is reaped at once and a hung
    one is killed after `timeout_s`, with its take named in the error."""
    ctx = _context()
    results: list[dict | None] = [None] * len(calls)
    running: dict = {}  # reader connection -> (index, process, deadline)
    next_i = 0
    try:
        while next_i < len(calls) or running:
            while len(running) < max(1, jobs) and next_i < len(calls):
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_tts_child.child_main, args=(writer, fn_name, calls[next_i]), daemon=True)
                with warnings.catch_warnings():  # Python 3.12+ warns on fork with idle BLAS threads around
                    warnings.simplefilter("ignore", DeprecationWarning)
                    proc.start()
                writer.close()
                running[reader] = (next_i, proc, time.monotonic() + timeout_s)
                next_i += 1
            soonest = min(deadline for _, _, deadline in running.values())
            for reader in wait(list(running), timeout=max(0.0, soonest - time.monotonic())):
                i, proc, _ = running.pop(reader)
                try:
                    results[i] = reader.recv()
                except EOFError:
                    proc.join(5)
                    results[i] = {"error": f"the speech engine process died (exit code {proc.exitcode})"}
                reader.close()
                proc.join(5)
                if "error" in results[i]:
                    raise CalmplaceError(f"{labels[i]}: {results[i]['error']}")
                if on_done:
                    on_done(i)
            now = time.monotonic()
            for i, _proc, deadline in running.values():
                if now >= deadline:
                    raise CalmplaceError(f"the speech engine timed out after {timeout_s:.0f} s on {labels[i]}")
    finally:
        for reader, (_, proc, _) in running.items():
            proc.kill()
            proc.join(5)
            reader.close()
    return results  # type: ignore[return-value]


@lru_cache(maxsize=1)
def system_info() -> dict:
    """The installed voices and engine versions, asked of a fresh process (cached per run)."""
    try:
        return run_isolated("list_voices", [()], jobs=1, timeout_s=TAKE_TIMEOUT_S, labels=["listing voices"])[0]
    except CalmplaceError as exc:
        raise CalmplaceError(f"{exc}. Is espeak-ng installed? On Debian/Ubuntu: "
                             f"apt-get install espeak-ng libespeak-ng1") from None


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

    def take_keys(self, takes, *, script_id: str, locale: str, sr: int) -> list[str]:
        identity = self.identity(locale=locale)
        return [text_key(identity, t.text, sr=sr) for t in takes]

    def speak(self, takes, *, script_id: str, locale: str, sr: int, jobs: int = 1, on_done=None) -> list[np.ndarray]:
        return self.speak_texts([t.text for t in takes], locale=locale, sr=sr, jobs=jobs, on_done=on_done,
                                labels=[take_label(script_id, locale, t) for t in takes])

    def speak_texts(self, texts: list[str], *, locale: str, sr: int, jobs: int = 1, on_done=None,
                    labels: list[str] | None = None) -> list[np.ndarray]:
        """Render each text in a fresh process, `jobs` at a time; clips come back in order."""
        voice = self.voice_for(locale)
        labels = labels or [f"take {i + 1:03d}" for i in range(len(texts))]
        calls = [(t, voice.id, self.profile.rate_wpm, self.profile.volume) for t in texts]
        outs = run_isolated("render", calls, jobs=jobs, timeout_s=self.timeout_s, labels=labels, on_done=on_done)
        clips = []
        for label, out in zip(labels, outs):
            clip = resample(check_clip(out["samples"], what=label), sr_in=out["sr"], sr_out=sr)
            clips.append(trim_silence(clip, sr=sr))
        return clips

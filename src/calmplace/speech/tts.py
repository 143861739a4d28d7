"""System text-to-speech through pyttsx3 (espeak-ng on Linux, NSSpeech on macOS, SAPI5 on Windows).

Designed around pyttsx3 2.99's pitfalls on Linux, each seen here:
- two `save_to_file` calls before one `runAndWait` write only the last file, and the same text
  rendered twice in one process could differ by a few samples: so no process ever speaks
  two takes. On Linux one "zygote" process per speak() call initialises pyttsx3 and espeak-ng
  once, applies the voice, rate and volume, speaks nothing itself, and forks one process per
  take from that state (ZygoteSynth, _tts_child.serve): every take starts from the same state,
  whatever was spoken before it, in whichever order and however many at a time, and pays
  for synthesis only (espeak-ng's initialisation was ~22 ms of the ~50 ms a take took in a
  freshly initialised process). Elsewhere each take still gets a fresh process (run_isolated);
- `runAndWait` returns before espeak-ng has finished a long text (see _tts_child);
- an unknown voice is silently ignored: the selected voice is read back and checked;
- `runAndWait` can hang: every take has a timeout that names it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
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
    never initialises one), in milliseconds; there it only lists the voices (takes go to a
    zygote). Elsewhere (NSSpeech and SAPI5 dislike forking) spawn."""
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


_LISTED_VOICES = 30   # in the message of a voice not found


def choose_voice(prefer: tuple[str, ...], *, locale: str, voices: list[SystemVoice] | None = None) -> SystemVoice:
    """The first preference that names an installed voice (by id, name or language) wins."""
    voices = system_voices() if voices is None else voices
    for wanted in prefer:
        for voice in voices:
            if voice.matches(wanted):
                return voice
    lang = locale.split("-")[0].lower()
    near = [v for v in voices if any(l.lower().split("-")[0] == lang for l in v.languages)]
    if not near:   # QA: zu-ZA listed the first 30 voices of any language, cut off without saying so
        raise CalmplaceError(f"no installed voice speaks {lang!r} (for {locale}): none of the {len(voices)} "
                             f"installed voices matches {list(prefer)}; `calmplace voices` lists them")
    listing = "\n".join(f"  {v.id}  ({v.name}; {', '.join(v.languages)})" for v in near[:_LISTED_VOICES])
    more = f"\n  ... and {len(near) - _LISTED_VOICES} more (calmplace voices --locale {locale})" \
        if len(near) > _LISTED_VOICES else ""
    raise CalmplaceError(f"no installed voice matches {list(prefer)} for {locale}; installed voices for "
                         f"{lang!r}:\n{listing}{more}")


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
                f"|volume {self.profile.volume}|trim v2")

    def take_keys(self, takes, *, script_id: str, locale: str, sr: int) -> list[str]:
        identity = self.identity(locale=locale)
        return [text_key(identity, t.text, sr=sr) for t in takes]

    def speak(self, takes, *, script_id: str, locale: str, sr: int, jobs: int = 1, on_done=None) -> list[np.ndarray]:
        return self.speak_texts([t.text for t in takes], locale=locale, sr=sr, jobs=jobs, on_done=on_done,
                                labels=[take_label(script_id, locale, t) for t in takes])

    def speak_texts(self, texts: list[str], *, locale: str, sr: int, jobs: int = 1, on_done=None,
                    labels: list[str] | None = None) -> list[np.ndarray]:
        """Render each text in a process of its own, `jobs` at a time; clips come back in order."""
        voice = self.voice_for(locale)
        labels = labels or [f"take {i + 1:03d}" for i in range(len(texts))]
        if zygote_supported():
            clips: list[np.ndarray | None] = [None] * len(texts)

            def finish(i: int, pcm: bytes) -> None:  # runs while the next takes are being spoken
                samples = _tts_child.pcm16_to_float(pcm)
                clips[i] = _finish(samples, sr_in=_tts_child.ESPEAK_SR, sr=sr, what=labels[i])
                if on_done:
                    on_done(i)

            run_zygote(texts, voice_id=voice.id, rate_wpm=self.profile.rate_wpm, volume=self.profile.volume,
                       jobs=jobs, timeout_s=self.timeout_s, labels=labels, on_samples=finish)
            return clips  # type: ignore[return-value]
        calls = [(t, voice.id, self.profile.rate_wpm, self.profile.volume) for t in texts]
        outs = run_isolated("render", calls, jobs=jobs, timeout_s=self.timeout_s, labels=labels, on_done=on_done)
        return [_finish(out["samples"], sr_in=out["sr"], sr=sr, what=label) for label, out in zip(labels, outs)]


def _finish(samples: np.ndarray, *, sr_in: int, sr: int, what: str) -> np.ndarray:
    clip = resample(check_clip(samples, what=what), sr_in=sr_in, sr_out=sr)
    return trim_silence(clip, sr=sr)


# ------------------------------------------------------------------------------------------------
# The zygote (Linux)


def zygote_supported() -> bool:
    """Forking an initialised engine is safe with espeak-ng in synchronous mode (no threads);
    NSSpeech and SAPI5 dislike forking."""
    return sys.platform.startswith("linux")


class ZygoteSynth:
    """A zygote process (see _tts_child.serve) for one voice, rate and volume, and its two pipes.

    It is a fresh interpreter, not a fork of this process: it imports pyttsx3 alone (not numpy
    nor this package) and is small, so forking it per take costs well under a millisecond
    where forking this process cost ~8 ms. It runs in a session of its own, so on any failure
    the whole group (zygote and takes) can be killed; normally it reaps its takes itself."""

    # `python -c`: run _tts_child.py as __main__ without the current directory on sys.path
    BOOT = ("import runpy, sys\n"
            "if sys.path and sys.path[0] == '': del sys.path[0]\n"
            "runpy.run_path(sys.argv.pop(1), run_name='__main__')\n")

    def __init__(self, voice_id: str, rate_wpm: int, volume: float):
        self.proc: subprocess.Popen | None = None
        request_r, self.request_w = os.pipe()
        self.response_r, response_w = os.pipe()
        _tts_child.widen_pipe(response_w)   # the zygote relays a take at once and goes back to forking
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self.BOOT, _tts_child.__file__, str(request_r), str(response_w),
                 voice_id, str(int(rate_wpm)), repr(float(volume))],
                pass_fds=(request_r, response_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True)
        except OSError as exc:
            self.close()
            raise CalmplaceError(f"could not start the speech engine ({exc})") from None
        finally:
            os.close(request_r)
            os.close(response_w)

    def send(self, index: int, text: str) -> None:
        data = text.encode("utf-8")
        _tts_child.write_all(self.request_w, _tts_child.REQUEST.pack(index, len(data)), data)

    def receive(self, deadline: float) -> tuple[int, int, bytes] | None:
        """The next response, or None if none began by `deadline`; EOFError if the zygote is gone."""
        import select

        poll = select.poll()
        poll.register(self.response_r, select.POLLIN)
        if not poll.poll(max(0, int((deadline - time.monotonic()) * 1000) + 1)):
            return None
        index, kind, size = _tts_child.RESPONSE.unpack(self._read(_tts_child.RESPONSE.size))
        return index, kind, self._read(size)

    def _read(self, size: int) -> bytes:
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            n = os.readv(self.response_r, [view[got:]])
            if n == 0:
                raise EOFError
            got += n
        return bytes(buffer)

    def died(self) -> str:
        try:
            code = self.proc.wait(5) if self.proc else None
        except subprocess.TimeoutExpired:
            code = None
        return f"the speech engine process died (exit code {code})"

    def close(self) -> None:
        """End the zygote: closing its request pipe makes it kill and reap any take still
        running and exit; if it does not within 5 s, its whole process group is killed."""
        for name in ("request_w", "response_r"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_zygote(texts: list[str], *, voice_id: str, rate_wpm: int, volume: float, jobs: int, timeout_s: float,
               labels: list[str], on_samples) -> None:
    """Speak each text in a process forked from one zygote, `jobs` at a time, calling
    `on_samples(i, pcm16_bytes)` as each finishes (the next takes are already being spoken).

    A take not back within `timeout_s` of its start is named in the error, and its process
    killed with the zygote."""
    if not texts:
        return
    zygote = ZygoteSynth(voice_id, rate_wpm, volume)
    running: dict[int, float] = {}  # take index -> deadline
    try:
        try:
            ready = zygote.receive(time.monotonic() + timeout_s)
        except EOFError:
            raise CalmplaceError(zygote.died()) from None
        if ready is None:
            raise CalmplaceError(f"the speech engine did not start within {timeout_s:.0f} s")
        if ready[1] != _tts_child.READY:
            raise CalmplaceError(f"{labels[0]}: {ready[2].decode('utf-8', 'replace')}")
        todo = iter(range(len(texts)))

        def fill() -> None:
            while len(running) < max(1, jobs):
                i = next(todo, None)
                if i is None:
                    return
                try:
                    zygote.send(i, texts[i])
                except BrokenPipeError:
                    raise CalmplaceError(f"{labels[i]}: {zygote.died()}") from None
                running[i] = time.monotonic() + timeout_s

        fill()
        while running:
            soonest = min(running, key=running.__getitem__)
            try:
                response = zygote.receive(running[soonest])
            except EOFError:
                raise CalmplaceError(f"{labels[soonest]}: {zygote.died()}") from None
            if response is None:
                raise CalmplaceError(f"the speech engine timed out after {timeout_s:.0f} s on {labels[soonest]}")
            i, kind, payload = response
            if i not in running:  # the zygote itself failed
                raise CalmplaceError(payload.decode("utf-8", "replace") or "the speech engine failed")
            del running[i]
            if kind != _tts_child.SAMPLES:
                raise CalmplaceError(f"{labels[i]}: {payload.decode('utf-8', 'replace')}")
            fill()
            on_samples(i, payload)
    finally:
        zygote.close()

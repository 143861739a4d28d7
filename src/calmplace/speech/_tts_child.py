"""What runs inside a fresh worker process for each take (see tts.py for why).

Kept tiny and importable without side effects: the forkserver preloads it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def _quiet():
    """pyttsx3 prints "Audio saved to ..." on stdout; keep the CLI's output clean."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def list_voices() -> dict:
    import pyttsx3

    with _quiet():
        engine = pyttsx3.init()
        voices = [
            {"id": v.id, "name": v.name or "", "languages": [_lang(x) for x in (v.languages or [])]}
            for v in engine.getProperty("voices")
        ]
    return {"voices": voices, "pyttsx3": getattr(pyttsx3, "__version__", "2.x"), "espeak": _espeak_version()}


def render(text: str, voice_id: str, rate_wpm: int, volume: float) -> dict:
    """Speak one take to a temporary WAV with a freshly initialised engine; return its samples."""
    import pyttsx3
    import soundfile as sf

    with _quiet():
        engine = pyttsx3.init()
        engine.setProperty("voice", voice_id)
        selected = engine.getProperty("voice")
        if selected != voice_id:  # pyttsx3 ignores unknown voices silently: check it really took
            return {"error": f"the engine did not select voice {voice_id!r} (it has {selected!r})"}
        engine.setProperty("rate", int(rate_wpm))
        engine.setProperty("volume", float(volume))
        fd, path = tempfile.mkstemp(suffix=".wav", prefix="calmplace-take-")
        os.close(fd)
        try:
            engine.save_to_file(text, path)
            engine.runAndWait()
            samples, sr = sf.read(path, dtype="float32", always_2d=False)
        finally:
            os.unlink(path)
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return {"samples": samples, "sr": sr}


def _lang(value) -> str:
    if isinstance(value, bytes):  # some drivers report languages as b"\x05en-gb"
        value = value.decode("utf-8", "replace").lstrip("\x00\x01\x02\x03\x04\x05")
    return str(value)


def _espeak_version() -> str:
    try:
        import ctypes
        import ctypes.util

        lib = ctypes.cdll.LoadLibrary(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
        lib.espeak_Info.restype = ctypes.c_char_p
        return lib.espeak_Info(None).decode()
    except Exception:  # not on Linux, or a driver other than espeak
        return "native"

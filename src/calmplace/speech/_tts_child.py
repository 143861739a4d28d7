"""What runs inside a fresh worker process for each take (see tts.py for why).

Importable without side effects: the parent imports it (and pyttsx3, numpy, soundfile with it)
but never initialises an engine, so each forked per-take process starts with a clean one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy
import pyttsx3
import soundfile as sf


@contextlib.contextmanager
def _quiet():
    """pyttsx3 prints "Audio saved to ..." on stdout; keep the CLI's output clean."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def list_voices() -> dict:
    with _quiet():
        engine = pyttsx3.init()
        voices = [
            {"id": v.id, "name": v.name or "", "languages": [_lang(x) for x in (v.languages or [])]}
            for v in engine.getProperty("voices")
        ]
    return {"voices": voices, "pyttsx3": getattr(pyttsx3, "__version__", "2.x"), "espeak": _espeak_version()}


def render(text: str, voice_id: str, rate_wpm: int, volume: float) -> dict:
    """Speak one take with a freshly initialised engine; return its samples (mono, engine rate)."""
    with _quiet():
        synchronous = _espeak_synchronous()
        engine = pyttsx3.init()
        # setProperty is queued and applied inside runAndWait, so the voice is checked after it.
        engine.setProperty("voice", voice_id)
        engine.setProperty("rate", int(rate_wpm))
        engine.setProperty("volume", float(volume))
        fd, path = tempfile.mkstemp(suffix=".wav", prefix="calmplace-take-")
        os.close(fd)
        try:
            engine.save_to_file(text, path)
            engine.runAndWait()
            selected = engine.getProperty("voice")
            if (selected or "").lower() != voice_id.lower():  # pyttsx3 ignores unknown voices silently
                return {"error": f"the engine did not select voice {voice_id!r} (it spoke with {selected!r})"}
            if synchronous:
                samples, sr = _synchronous_samples(engine), 22050
            else:
                samples, sr = sf.read(path, dtype="float32", always_2d=False)
        finally:
            os.unlink(path)
    if samples.size == 0:
        return {"error": "the engine produced no audio"}
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return {"samples": samples, "sr": sr}


def _espeak_synchronous() -> bool:
    """On Linux, initialise espeak-ng in synchronous mode before pyttsx3 does; True if done.

    pyttsx3 2.99's espeak driver initialises espeak-ng in AUDIO_OUTPUT_RETRIEVAL mode, where
    synthesis runs on espeak's own thread. Seen here: `runAndWait` returns after ~10 ms, before
    a long text is finished, and about one take in ten came out at espeak's default rate
    (200 wpm) instead of the profile's, because the rate change raced the text through espeak's
    command queue. In AUDIO_OUTPUT_SYNCHRONOUS mode every call (rate, voice, text) runs in order
    on this thread and `runAndWait` returns when the audio is complete: identical each time.
    The driver skips its own initialisation when the module is marked initialised."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    from pyttsx3.drivers import _espeak
    from pyttsx3.drivers.espeak import EspeakDriver

    if not EspeakDriver._moduleInitialized:
        if _espeak.Initialize(_espeak.AUDIO_OUTPUT_SYNCHRONOUS, 1000) == -1:
            raise RuntimeError("could not initialise espeak-ng")
        EspeakDriver._defaultVoice = "gmw/en"
        EspeakDriver._moduleInitialized = True
    return True


def _synchronous_samples(engine) -> "numpy.ndarray":
    """The driver's audio buffer after a synchronous run (16-bit mono at 22.05 kHz).

    In synchronous mode espeak-ng sends no end-of-message event, so the driver keeps the
    samples it collected instead of writing its WAV file; they are all there once
    runAndWait has returned."""
    buffer = engine.proxy._driver._data_buffer
    return numpy.frombuffer(buffer, dtype="<i2").astype(numpy.float32) / 32768.0


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


def child_main(conn, fn_name: str, args: tuple) -> None:
    """Entry point of a per-take process: run, send the result, and leave at once.

    `os._exit` skips interpreter teardown, which otherwise waits seconds on espeak-ng's
    synthesis thread after every take."""
    try:
        result = globals()[fn_name](*args)
    except Exception as exc:  # reported to the parent, which names the take
        result = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        conn.send(result)
        conn.close()
    finally:
        os._exit(0)

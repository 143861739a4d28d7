"""What runs inside the speech engine's own processes (see tts.py for why).

Two ways in:
- `serve`: the zygote of tts.ZygoteSynth, on Linux. A fresh interpreter (started with
  `python -c`, running this file without importing the calmplace package or numpy, so it
  starts in about 0.1 s) initialises pyttsx3 and espeak-ng once, applies one voice, rate and
  volume, and then forks one process per take from that state. A take's process speaks its
  text, sends the 16-bit samples back through the zygote and exits.
- `child_main`: a process started by tts.run_isolated for one call (listing the voices, and
  rendering a take where there is no zygote: macOS and Windows, where forking is unsafe).

Importable without side effects: numpy, soundfile and pyttsx3 are imported where needed.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile

# zygote <-> parent protocol, over two pipes:
#   request  (parent -> zygote): REQUEST header (take index, text length), then the UTF-8 text;
#   response (zygote -> parent): RESPONSE header (take index, kind, payload length), then payload.
# The zygote's own messages (READY, or an ERROR at start-up) carry the index -1.
REQUEST = struct.Struct("<iQ")
RESPONSE = struct.Struct("<iBQ")
READY, SAMPLES, ERROR = 0, 1, 2


@contextlib.contextmanager
def _quiet():
    """pyttsx3 prints "Audio saved to ..." on stdout; keep the CLI's output clean."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


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
    """Speak one take with a freshly initialised engine; return its samples (mono, engine rate).

    The path where there is no zygote; on Linux, `serve` and `_speak` give the same samples."""
    import pyttsx3

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
                samples, sr = pcm16_to_float(engine.proxy._driver._data_buffer), 22050
            else:
                import soundfile as sf

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


ESPEAK_SR = 22050  # espeak-ng's output: 16-bit mono at 22.05 kHz


def pcm16_to_float(buffer: bytes):
    """The driver's audio buffer after a synchronous run as float32 in [-1, 1).

    In synchronous mode espeak-ng sends no end-of-message event, so the driver keeps the
    samples it collected instead of writing its WAV file; they are all there once the text
    has been synthesised. The parent converts what the zygote sends with this same function."""
    import numpy

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
    """Entry point of a process started by tts.run_isolated: run, send the result, and leave at once.

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


# ------------------------------------------------------------------------------------------------
# The zygote


class VoiceNotSelected(LookupError):
    pass


PIPE_BYTES = 1 << 20   # Linux's default most for an unprivileged process (/proc/sys/fs/pipe-max-size)


def widen_pipe(fd: int) -> None:
    """Let a pipe hold a whole take (up to 1 MB, about 24 s at 22.05 kHz) instead of 64 KB, so its
    writer hands it over and goes on without waiting for the reader; where the system refuses
    (another OS, a lower limit), the pipe keeps its size and only the waiting comes back."""
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def write_all(fd: int, *parts: bytes) -> None:
    """Write every byte of `parts` to a pipe (os.write may write less than it is given)."""
    for part in parts:
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def _prepare(voice_id: str, rate_wpm: int, volume: float):
    """Initialise espeak-ng (synchronous) and pyttsx3 and apply the voice, rate and volume:
    the same calls, in the same order, as `render` makes before it speaks.

    Returns the engine (pyttsx3 itself keeps only weak references to it). Nothing is ever
    spoken in the zygote, so every take's process starts from this state, whatever other
    takes were spoken before it or beside it."""
    import pyttsx3

    with _quiet():
        if not _espeak_synchronous():
            raise RuntimeError("the zygote needs espeak-ng (Linux)")
        engine = pyttsx3.init()
        engine.setProperty("voice", voice_id)
        engine.setProperty("rate", int(rate_wpm))
        engine.setProperty("volume", float(volume))
        engine.runAndWait()  # applies the queued properties; nothing to say, so nothing is spoken
        selected = engine.getProperty("voice")
    if (selected or "").lower() != voice_id.lower():  # pyttsx3 ignores unknown voices silently
        raise VoiceNotSelected(f"the engine did not select voice {voice_id!r} (it spoke with {selected!r})")
    return engine


def _speak(engine, text: str) -> bytes:
    """In a take's process: synthesise `text` and return its 16-bit samples.

    Calls the driver's synthesis directly rather than runAndWait: after one runAndWait (the
    zygote's) pyttsx3 2.99's proxy is idle, so a second one would run its end-of-loop command
    before the loop starts and never return in synchronous mode. In synchronous mode the text
    is complete when Synth returns; espeak-ng sees the same calls as in `render`."""
    driver = engine.proxy._driver
    driver._text_to_say = text
    driver._start_synthesis(text)
    return bytes(driver._data_buffer)


def _take_process(engine, text: str, write_fd: int, *, close: tuple[int, ...]) -> None:
    """The body of a take's process (forked from the zygote): speak, send the samples (or an
    error) to the zygote, exit. Never returns."""
    try:
        for fd in close:  # the zygote's pipes: only the zygote talks to the parent
            os.close(fd)
        try:
            samples = _speak(engine, text)
            if samples:
                write_all(write_fd, bytes([SAMPLES]), samples)
            else:
                write_all(write_fd, bytes([ERROR]), b"the engine produced no audio")
        except Exception as exc:
            write_all(write_fd, bytes([ERROR]), f"{type(exc).__name__}: {exc}".encode())
    finally:
        os._exit(0)


def serve(request_fd: int, response_fd: int, voice_id: str, rate_wpm: int, volume: float) -> None:
    """The zygote: fork a process per requested take from one prepared engine; relay results.

    It runs until the parent closes the request pipe (or stops reading responses); then it
    kills and reaps any take still running and exits. It never speaks itself, so it never
    hangs in espeak-ng: the parent times out takes, not the zygote."""
    import select
    import signal

    try:
        engine = _prepare(voice_id, rate_wpm, volume)
    except Exception as exc:
        message = (str(exc) if isinstance(exc, VoiceNotSelected) else f"{type(exc).__name__}: {exc}").encode()
        write_all(response_fd, RESPONSE.pack(-1, ERROR, len(message)), message)
        return
    write_all(response_fd, RESPONSE.pack(-1, READY, 0))

    poll = select.poll()  # not epoll: a forked take must share no kernel state with the zygote
    poll.register(request_fd, select.POLLIN)
    takes: dict[int, tuple[int, int, list[bytes]]] = {}  # read fd -> (index, pid, chunks)
    pending = b""
    try:
        while True:
            for fd, _event in poll.poll():
                if fd == request_fd:
                    data = os.read(request_fd, 1 << 16)
                    if not data:
                        return  # the parent is done (or gone)
                    pending += data
                    while len(pending) >= REQUEST.size:
                        index, size = REQUEST.unpack_from(pending)
                        if len(pending) < REQUEST.size + size:
                            break
                        text = pending[REQUEST.size:REQUEST.size + size].decode("utf-8")
                        pending = pending[REQUEST.size + size:]
                        read_fd, write_fd = os.pipe()
                        widen_pipe(read_fd)
                        pid = os.fork()
                        if pid == 0:
                            _take_process(engine, text, write_fd, close=(request_fd, response_fd, read_fd, *takes))
                        os.close(write_fd)
                        takes[read_fd] = (index, pid, [])
                        poll.register(read_fd, select.POLLIN)
                else:
                    data = os.read(fd, 1 << 20)
                    index, pid, chunks = takes[fd]
                    if data:
                        chunks.append(data)
                        continue
                    poll.unregister(fd)
                    os.close(fd)
                    del takes[fd]
                    _pid, status = os.waitpid(pid, 0)
                    body = b"".join(chunks)
                    if os.waitstatus_to_exitcode(status) != 0 or not body:
                        code = os.waitstatus_to_exitcode(status)
                        how = f"signal {-code}" if code < 0 else f"exit code {code}"
                        kind, body = ERROR, f"the speech engine process died ({how})".encode()
                    else:
                        kind, body = body[0], body[1:]
                    write_all(response_fd, RESPONSE.pack(index, kind, len(body)), body)
    except BrokenPipeError:
        return  # the parent stopped reading
    finally:
        for fd, (_index, pid, _chunks) in takes.items():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(fd)


if __name__ == "__main__":  # the zygote, started by tts.ZygoteSynth (see its BOOT)
    try:
        serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    except BaseException as exc:  # a bug or an interrupt: tell the parent if it still listens
        with contextlib.suppress(Exception):
            message = f"the speech engine's zygote failed: {type(exc).__name__}: {exc}".encode()
            write_all(int(sys.argv[2]), RESPONSE.pack(-1, ERROR, len(message)), message)
    finally:
        os._exit(0)  # no interpreter teardown (espeak-ng's)

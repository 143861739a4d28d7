"""MP3 export: LAME (via lameenc) at a constant bitrate, a Xing/Info + LAME tag frame for gapless,
sample-aligned decoding, and ID3v2 tags with chapters (CHAP/CTOC) written by mutagen.

Encoder delay. LAME starts its output 576 samples late (encoder delay) and pads the end to whole
frames; the MPEG synthesis filterbank adds 529 more samples of decoder delay. lameenc writes no
LAME tag, and without one both libsndfile/mpg123 and ffmpeg decode 1105 = 576 + 529 samples of
priming silence before the audio (measured by cross-correlation) and a padded end. We therefore
write the Info frame LAME would write (`lame_get_lametag_frame`, LAME tag spec rev 0) carrying the
delay and padding; mpg123, ffmpeg, mutagen and other gapless decoders then trim both ends and
decode exactly the input samples, sample-aligned (offset 0, same length). Chapters are timed on
that PCM timeline.
"""

from __future__ import annotations

import io
import re
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import lameenc
import numpy as np
import soundfile as sf
from mutagen.id3 import CHAP, COMM, CTOC, ID3, TALB, TDRC, TIT2, TLAN, TPE1, CTOCFlags, Encoding

from . import SR, mp3stream
from .errors import CalmplaceError
from .master import CEILING_DBTP, TARGET_LUFS, Mastered, ScanPart, master_track, measurement_from_parts, scan_part
from .measurement import Measurement

DEFAULT_BITRATE_KBPS = 192
# LAME -q 7 (LAME's "fast" setting; ffmpeg's default is -q 5, LAME's own -q 3). CPU for 681 s of
# the shipped track at 192 kbps here: -q 3 12.8 s, -q 5 10.4 s, -q 7 5.9 s. At 192 kbps the
# difference is where the noise goes, not how much: on 120 s of that track the coding noise of
# -q 7 was 1-5 dB lower than -q 3's from 100 Hz to 9.5 kHz (median per critical band per 46 ms)
# and higher below 100 Hz (SNR 19 dB against 26) and from 9.5 to 15.5 kHz (1-6 dB against 7-9),
# i.e. in the bed's hiss, under it; overall SNR 29.8 dB against 28.6. -q 7 skips noise shaping
# (psychoacoustics still pick block types and M/S). The speed is what lets a build stay under
# half the time of a naive pydub export (README, Performance).
LAME_QUALITY = 7

LAME_ENCODER_DELAY = 576   # samples LAME shifts the audio by at 44.1 kHz (measured: 1105 - 529)
DECODER_DELAY = 529        # MP3 synthesis filterbank delay decoders add (LAME tag spec, mpg123)
# What a gapless decoder (one that reads the LAME tag) shows: nothing; the PCM timeline holds.
ENCODER_DELAY_S = 0.0

_MPEG1_L3_BITRATES_KBPS = mp3stream.BITRATES_KBPS
_MIN_BITRATE_KBPS = 128     # calmplace delivery spec: CBR at 128 kbps or more
_SAMPLES_PER_FRAME = mp3stream.SAMPLES_PER_FRAME
_SIDE_INFO_BYTES = 32       # MPEG-1 stereo side information, before the Xing/Info tag
_ID3_PADDING = 1024         # room for later tag edits without rewriting the audio
_LANGUAGE = re.compile(r"[a-z]{3}")
_ENCODE_BLOCK = 1 << 18     # samples converted to 16-bit PCM at a time
# Parallel encoding (see _lame and mp3stream): pieces of ~40 s; each piece's encoder starts 24 frames
# (0.6 s) early so its psychoacoustic state, block-switching and reservoir have settled by the
# join, which may fall anywhere in the 16 frames (0.4 s) after the nominal cut (on the shipped
# track 14 of 15 joins fell on the first frame, one on the second); 4 more frames give LAME's
# look-ahead (576-sample delay plus one granule) real audio past the last candidate.
_PIECE_FRAMES = 1536
_WARMUP_FRAMES = 24
_SEARCH_FRAMES = 16
_TAIL_FRAMES = 4
_PREROLL_FRAMES = 10   # 2 for the decoder's reservoir and overlap, 8 (0.21 s) for the meter's run-in
_MAX_ENCODE_TRIES = 4
_OVERSHOOT_MARGIN_DB = 0.1  # extra headroom when the decoded MP3 overshoots the ceiling
_MP3_LOUDNESS_AIM_LU = 0.5  # re-encode beyond ±0.5 LU, half the ±1 LU allowed for the MP3
_MIN_PROGRESS_LU = 0.05     # a re-encode that gets less than this much closer is not worth another
# LAME's level loss on the shipped track, measured here (LAME 3.100, -q 7, 240 s): the first pass
# aims this much louder so the delivered MP3 lands on the target without a second encode
_LAME_LOSS_LU = {128: 0.45, 160: 0.45, 192: 0.26, 224: 0.18, 256: 0.0, 320: 0.0}


@dataclass(frozen=True)
class Tags:
    title: str
    artist: str | None = None
    album: str | None = None
    language: str = "eng"   # ISO 639-2 for ID3 TLAN
    comment: str | None = None
    year: str | None = None


@dataclass(frozen=True)
class Chapter:
    title: str
    start_s: float
    end_s: float


def encode_mp3(samples: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int = DEFAULT_BITRATE_KBPS, tags: Tags,
               chapters: Sequence[Chapter] = (), threads: int = 1) -> bytes:
    """(2, n) float audio at 44.1 kHz (an array, or a `master.Mastered` read a block at a time) to
    CBR MP3 bytes: ID3v2.3 tag, LAME Info frame, audio. Deterministic: the same input gives the
    same bytes, whatever `threads` is."""
    return _encode(samples, sr=sr, bitrate_kbps=bitrate_kbps, tags=tags, chapters=chapters, threads=threads,
                   measure=False)[0]


def encode_and_measure(samples: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int = DEFAULT_BITRATE_KBPS, tags: Tags,
                       chapters: Sequence[Chapter] = (), threads: int = 1,
                       spare_cpus=None) -> tuple[bytes, Measurement]:
    """`encode_mp3`, and `measure_mp3` of its bytes, in one pipeline: each stretch of the stream
    is decoded and measured as soon as its frames are final, beside the pieces still being
    encoded. Same bytes as `encode_mp3`, same measurement as `measure_mp3`."""
    return _encode(samples, sr=sr, bitrate_kbps=bitrate_kbps, tags=tags, chapters=chapters, threads=threads,
                   measure=True, spare_cpus=spare_cpus)


def _encode(samples: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int, tags: Tags, chapters: Sequence[Chapter],
            threads: int, measure: bool, spare_cpus=None) -> tuple[bytes, Measurement | None]:
    x = samples if isinstance(samples, Mastered) else np.asarray(samples)
    if sr != SR:
        raise ValueError(f"MP3 export is at {SR} Hz, got sr={sr}")
    if len(x.shape) != 2 or x.shape[0] not in (1, 2) or x.shape[1] == 0:
        raise ValueError(f"expected (1 or 2, n > 0) audio, got shape {x.shape}")
    if bitrate_kbps not in _MPEG1_L3_BITRATES_KBPS or bitrate_kbps < _MIN_BITRATE_KBPS:
        allowed = ", ".join(str(b) for b in _MPEG1_L3_BITRATES_KBPS if b >= _MIN_BITRATE_KBPS)
        raise ValueError(f"bitrate_kbps must be one of {allowed}, got {bitrate_kbps}")
    n = x.shape[1]
    tag = _id3(tags, chapters, duration_s=n / sr)
    meter = _StreamMeter(n_samples=n, sr=sr) if measure else None
    audio, info = _lame(x, sr=sr, bitrate_kbps=bitrate_kbps, threads=threads, meter=meter, spare_cpus=spare_cpus)
    data = tag + info + audio
    return data, meter.measurement() if meter else None


def _decode_bytes(data: bytes, *, frames: int) -> np.ndarray:
    """Up to `frames` samples of MP3 bytes as (channels, n) float32. On Linux libsndfile reads them
    from an in-memory file descriptor with its own IO: a BytesIO would call back into Python for
    every read, holding the GIL, so stretches decoded in threads would take turns."""
    import os

    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("calmplace-mp3")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.lseek(fd, 0, os.SEEK_SET)
            with sf.SoundFile(fd, closefd=False) as f:
                return f.read(frames=frames, dtype="float32", always_2d=True).T
        finally:
            os.close(fd)
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.read(frames=frames, dtype="float32", always_2d=True).T


def decode_mp3(data: bytes) -> tuple[np.ndarray, int]:
    """MP3 bytes to ((channels, n) float32, sr) with libsndfile (mpg123, gapless)."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        sr, channels = f.samplerate, f.channels
        parts, out, pos = [], np.empty((channels, max(f.frames, 0)), dtype=np.float32), 0
        for block in f.blocks(blocksize=_ENCODE_BLOCK, dtype="float32", always_2d=True):
            if pos + len(block) <= out.shape[1]:
                out[:, pos:pos + len(block)] = block.T
            else:  # the header's length was short: collect the rest
                parts.append(block.T.copy())
            pos += len(block)
    if parts:
        return np.concatenate([out] + parts, axis=1), sr
    return out[:, :pos], sr


def master_to_mp3(samples: np.ndarray, *, sr: int, target_lufs: float = TARGET_LUFS,
                  ceiling_dbtp: float = CEILING_DBTP, bitrate_kbps: int = DEFAULT_BITRATE_KBPS,
                  tags: Tags, chapters: Sequence[Chapter] = (), threads: int = 1,
                  energies: np.ndarray | None = None, spare_cpus=None) -> tuple[bytes, Measurement]:
    """Master, encode, and measure what the MP3 decodes to; redo with a corrected loudness target
    and a lower limiter ceiling until the decoded MP3 is within ±1 LU of `target_lufs` (we aim for
    ±0.5) and under `ceiling_dbtp`. Returns the MP3 bytes and the decoded MP3's measurement.
    `threads` encode and measure pieces side by side; the bytes do not depend on it. `energies`:
    the input's K-weighted energies if already measured (master.InputMeter). `spare_cpus`: see
    `_executor`."""
    aim_lufs, limiter_ceiling_dbtp = target_lufs + _LAME_LOSS_LU.get(bitrate_kbps, 0.2), ceiling_dbtp
    best: tuple[bytes, Measurement] | None = None
    previous: float | None = None   # the last try's loudness error
    for _ in range(_MAX_ENCODE_TRIES):
        # the aim sits above the target by the encoder's loss; a loud target (-10 LUFS) can be
        # more than the limiter can give, and then the target itself will do
        try:
            mastered = master_track(samples, sr=sr, target_lufs=aim_lufs, ceiling_dbtp=limiter_ceiling_dbtp,
                                    threads=threads, energies=energies, accept_lufs=target_lufs)
        except CalmplaceError:
            if best is None:
                raise
            break   # a retry for a closer fit failed: the MP3 already made meets the target
        data, got = encode_and_measure(mastered, sr=sr, bitrate_kbps=bitrate_kbps, tags=tags, chapters=chapters,
                                       threads=threads, spare_cpus=spare_cpus)
        del mastered
        loudness_error = got.integrated_lufs - target_lufs
        if got.true_peak_dbtp <= ceiling_dbtp and abs(loudness_error) <= 1.0:
            if best is None or abs(loudness_error) < abs(best[1].integrated_lufs - target_lufs):
                best = (data, got)
            if abs(loudness_error) <= _MP3_LOUDNESS_AIM_LU:
                break
            if previous is not None and abs(loudness_error) > abs(previous) - _MIN_PROGRESS_LU:
                break   # aiming louder no longer gets louder: the limiter is at its limit
        previous = loudness_error
        # LAME quantisation and its low-pass cost 0.2-0.8 LU at 128-192 kbps; MP3 coding can move
        # true peaks a few tenths of a dB either way
        aim_lufs -= loudness_error
        if got.true_peak_dbtp > ceiling_dbtp:
            limiter_ceiling_dbtp -= got.true_peak_dbtp - ceiling_dbtp + _OVERSHOOT_MARGIN_DB
    if best is None:
        raise CalmplaceError(
            f"the MP3 does not meet {target_lufs:g} LUFS ±1 LU with true peaks under {ceiling_dbtp:g} dBTP "
            f"after {_MAX_ENCODE_TRIES} tries: it decodes to {got.integrated_lufs:.2f} LUFS, "
            f"{got.true_peak_dbtp:.2f} dBTP")
    return best


def measure_mp3(data: bytes, *, n_samples: int, sr: int, threads: int = 1) -> Measurement:
    """`master.measure` of what an MP3 from `encode_mp3` (n_samples long) decodes to, decoded and
    measured in stretches of `_PIECE_FRAMES` frames, `threads` at a time (see `_stretch`)."""
    start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10])) if data[:3] == b"ID3" else 0
    if data[start + 4 + _SIDE_INFO_BYTES:start + 8 + _SIDE_INFO_BYTES] != b"Info":
        raise CalmplaceError("not an MP3 written by encode_mp3 (no Info frame after the ID3 tag)")
    audio = data[start + mp3stream.frame_bytes(int.from_bytes(data[start:start + 4], "big")):]
    _, offsets = _frames(audio)
    meter = _StreamMeter(n_samples=n_samples, sr=sr)
    with _executor(threads) as submit:
        meter.advance(audio, offsets, submit=submit, n_frames=len(offsets))
    return meter.measurement()


def _stretch(audio: bytes | bytearray, offsets: list[int], first: int, *, n_frames: int | None, n_samples: int,
             sr: int) -> Callable[[], ScanPart | None]:
    """A job measuring the decode of frames [first, first + _PIECE_FRAMES) of a stream; it holds
    a copy of the bytes it needs, so `audio` may grow meanwhile. `offsets` are the frames' byte
    offsets, through the frame after the stretch (two frames more; fewer at the end);
    `n_frames` is the stream's length in frames, None while that is not known (then the
    stretch must not reach the end).

    The stretch is decoded from its own bytes: `_PREROLL_FRAMES` frames before it give the
    decoder its bit reservoir and overlap (two frames suffice; the output then matches a
    whole-file decode sample for sample, tested) and the K-weighting its run-in; an Info frame
    made for the stretch tells libsndfile its exact length. The parts combine to what measuring
    a whole-file decode gives."""
    spf, delay = _SAMPLES_PER_FRAME, LAME_ENCODER_DELAY + DECODER_DELAY
    last = first + _PIECE_FRAMES if n_frames is None else min(first + _PIECE_FRAMES, n_frames)
    t0, t1 = max(0, first * spf - delay), min(n_samples, last * spf - delay)
    f0 = max(0, first - _PREROLL_FRAMES)
    f1 = last + 2 if n_frames is None else min(n_frames, last + 2)   # the true-peak interpolator looks ahead
    ends = n_frames is not None and f1 == n_frames
    chunk = bytes(audio[offsets[f0]:offsets[f1]])
    # with the Info frame's delay (576 + the decoder's 529) skipped, output sample j is track
    # sample f0 * spf + j; for the stretch that ends the track the Info frame also trims LAME's
    # padding, elsewhere it keeps everything (the minimum padding, 529)
    offset = f0 * spf
    length = n_samples - offset if ends else (f1 - f0) * spf - delay
    local = [o - offsets[f0] for o in offsets[f0:f1]]

    def job() -> ScanPart | None:
        if t1 <= t0:
            return None
        y = _decode_bytes(_info_frame(chunk, n_samples=length, offsets=local, music_crc=False) + chunk, frames=length)
        if y.shape[1] != length:
            raise CalmplaceError(f"the MP3 decodes to {y.shape[1]} samples where {length} were expected")
        usable = 2 * spf - delay if f0 > 0 else 0   # frames f0, f0 + 1 may lack reservoir and overlap
        return scan_part(y[:, usable:], offset=offset + usable, start=t0, stop=t1, n=n_samples, sr=sr)

    return job


class _StreamMeter:
    """`measure_mp3` of a stream while it is being written: `advance` submits a job for each
    stretch whose frames are all final, and for the rest once it is told the stream's length."""

    def __init__(self, *, n_samples: int, sr: int):
        self.n_samples, self.sr = n_samples, sr
        self.next_first = 0
        self.parts: list = []   # futures of ScanPart | None, in stretch order

    def advance(self, audio: bytes | bytearray, offsets: list[int], *, submit, n_frames: int | None = None) -> None:
        """Start measuring every stretch the final frames cover; offsets[i] for every final frame i."""
        final = len(offsets) if n_frames is None else n_frames
        known = offsets + [len(audio)]
        while self.next_first < final:
            need = self.next_first + _PIECE_FRAMES + 2
            if n_frames is None and need > final:
                break
            self.parts.append(submit(_stretch(audio, known, self.next_first, n_frames=n_frames,
                                              n_samples=self.n_samples, sr=self.sr)))
            self.next_first += _PIECE_FRAMES

    def restart(self) -> None:
        self.next_first, self.parts = 0, []

    def measurement(self) -> Measurement:
        parts = [p.result() for p in self.parts]
        return measurement_from_parts([p for p in parts if p is not None], n=self.n_samples, sr=self.sr)


# ------------------------------------------------------------------------------------------------
# LAME


def _lame(x: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int, threads: int = 1,
          meter: "_StreamMeter | None" = None, spare_cpus=None) -> tuple[bytes, bytes]:
    """Raw CBR MPEG-1 Layer III frames from LAME, and the Info frame that goes before them
    (`_info_frame`, worked out while the `meter`'s last stretches are still being measured); float
    full scale = 16-bit full scale (32768).

    A track longer than two pieces is cut into pieces of about `_PIECE_FRAMES` frames that LAME
    encodes independently, `threads` at a time (lameenc releases the GIL), and joined into one
    stream by `mp3stream.Joiner` as they come. The cut points depend only on the length, so the
    bytes are the same whatever `threads` is. A `meter` is handed each stretch of the stream as
    soon as its frames are final, and measures it on the same threads."""
    total_frames = -(-(x.shape[1] + LAME_ENCODER_DELAY + DECODER_DELAY) // _SAMPLES_PER_FRAME)
    n_pieces = max(1, total_frames // _PIECE_FRAMES)
    with _executor(threads, spare_cpus=spare_cpus if n_pieces > 1 else None) as submit:
        if n_pieces > 1:
            try:
                audio, offsets = _lame_in_pieces(x, sr=sr, bitrate_kbps=bitrate_kbps, n_pieces=n_pieces,
                                                 submit=submit, meter=meter)
                return audio, _info_frame(audio, n_samples=x.shape[1], offsets=offsets)
            except mp3stream.StreamError:
                # no frame near a cut where the pieces join (on the shipped track every join fell
                # on the first frame tried): encode in one piece, slower but the same whatever
                # `threads` is; what was measured of the pieces is thrown away
                if meter:
                    meter.restart()
        audio = _lame_piece(x, sr=sr, bitrate_kbps=bitrate_kbps, start=0, stop=x.shape[1])
        _, offsets = _frames(audio)
        if meter:
            meter.advance(audio, offsets, submit=submit, n_frames=len(offsets))
        return audio, _info_frame(audio, n_samples=x.shape[1], offsets=offsets)


def _lame_in_pieces(x: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int, n_pieces: int, submit,
                    meter: "_StreamMeter | None") -> tuple[bytes, list[int]]:
    bounds = [k * _PIECE_FRAMES for k in range(1, n_pieces)]
    spans = []  # (first track frame, first sample, last sample) of each piece
    for k in range(n_pieces):
        first = 0 if k == 0 else bounds[k - 1] - _WARMUP_FRAMES
        stop = x.shape[1] if k + 1 == n_pieces else \
            min(x.shape[1], (bounds[k] + _SEARCH_FRAMES + _TAIL_FRAMES) * _SAMPLES_PER_FRAME)
        spans.append((first, first * _SAMPLES_PER_FRAME, stop))

    def encode(span):
        first, start, stop = span
        data = _lame_piece(x, sr=sr, bitrate_kbps=bitrate_kbps, start=start, stop=stop)
        return mp3stream.Piece(mp3stream.parse(data), first)

    # the last piece, up to twice as long as the others, is started first so it is not the one
    # the other threads wait for at the end
    last = submit(encode, spans[-1])
    pieces = [submit(encode, span) for span in spans[:-1]] + [last]
    joiner = mp3stream.Joiner(boundaries=bounds, search_frames=_SEARCH_FRAMES)
    for k, piece in enumerate(pieces):
        joiner.add(piece.result())
        pieces[k] = None   # joined: its frames are in the joiner now
        if meter:
            meter.advance(joiner.out, joiner.offsets, submit=submit)
    audio = joiner.finish()
    if meter:
        meter.advance(audio, joiner.offsets, submit=submit, n_frames=len(joiner.offsets))
    return audio, joiner.offsets


@contextmanager
def _executor(threads: int, *, spare_cpus=None):
    """A `submit(fn, *args) -> Future` running jobs `threads` at a time (in the calling thread,
    at once, for one). Leaving the block waits for every job; failing in it cancels those not
    started.

    `spare_cpus` (a `_workers.SpareCpus`): CPUs the build's other tracks no longer use. A job
    that finds none of this track's `threads` CPUs free borrows one of those for as long as it
    runs, so the last track of a build encodes on the CPUs the others freed."""
    if threads <= 1 and spare_cpus is None:
        yield _run_now
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads + (spare_cpus.most if spare_cpus is not None else 0))
    submit = pool.submit
    if spare_cpus is not None:
        gate = _CpuGate(threads, spare_cpus.semaphore)

        def submit(fn, *args):
            return pool.submit(gate.run, fn, *args)
    try:
        yield submit
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class _CpuGate:
    """Runs a job on one of `own` CPUs, or on one borrowed from `spare` (a semaphore) while none
    of its own is free; a borrowed CPU goes back when the job ends."""

    WAIT_S = 0.1   # how often a waiting job looks for a CPU to borrow again (a job takes 0.1-0.5 s)

    def __init__(self, own: int, spare):
        import threading

        self.own, self.spare = threading.Semaphore(own), spare

    def run(self, fn, *args):
        while True:
            if self.own.acquire(False):
                cpu = self.own
                break
            if self.spare.acquire(False):
                cpu = self.spare
                break
            if self.own.acquire(timeout=self.WAIT_S):
                cpu = self.own
                break
        try:
            return fn(*args)
        finally:
            cpu.release()


def _run_now(fn, *args):
    """`Executor.submit` without threads: runs fn now; returns a finished Future."""
    from concurrent.futures import Future

    future: Future = Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:
        future.set_exception(exc)
    return future


def _lame_piece(x: np.ndarray | Mastered, *, sr: int, bitrate_kbps: int, start: int, stop: int) -> bytes:
    """LAME on samples [start, stop) of x, flushed: its frames start at sample `start`; one
    channel is encoded as two alike."""
    read = x.read if isinstance(x, Mastered) else lambda a, b: x[:, a:b]
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate_kbps)
    encoder.set_in_sample_rate(sr)
    encoder.set_out_sample_rate(sr)
    encoder.set_channels(2)
    encoder.set_quality(LAME_QUALITY)
    out = []
    for block_start in range(start, stop, _ENCODE_BLOCK):
        block = read(block_start, min(block_start + _ENCODE_BLOCK, stop)).T * np.float32(32768.0)
        if block.shape[1] == 1:
            block = np.repeat(block, 2, axis=1)
        if not np.isfinite(block).all():
            raise ValueError("samples contain NaN or infinity")
        np.rint(block, out=block)
        np.clip(block, -32768, 32767, out=block)
        out.append(bytes(encoder.encode(block.astype("<i2").tobytes(order="C"))))
    out.append(bytes(encoder.flush()))
    return b"".join(out)


def _frames(audio: bytes) -> tuple[int, list[int]]:
    """The first frame header and the byte offset of every frame; checks they are one CBR stream."""
    try:
        first, offsets, _ = mp3stream.frame_offsets(audio)
    except mp3stream.StreamError as exc:
        raise CalmplaceError(f"LAME output is not one CBR MPEG-1 Layer III stream: {exc}") from None
    return first, offsets


def _info_frame(audio: bytes, *, n_samples: int, offsets: list[int] | None = None, music_crc: bool = True) -> bytes:
    """The Xing "Info" frame with LAME extension (LAME tag spec rev 0) for a CBR stream: frame and
    byte counts, seek TOC, and the encoder delay and padding that gapless decoders trim.

    `offsets` (the frames' byte offsets, if known) and `music_crc=False` (the CRC of the audio,
    which decoders do not check) save time for the throwaway frames of `measure_mp3`'s stretches."""
    if offsets is None:
        first, offsets = _frames(audio)
    else:
        first = int.from_bytes(audio[:4], "big")
    n_frames = len(offsets)
    padding = n_frames * _SAMPLES_PER_FRAME - LAME_ENCODER_DELAY - n_samples
    # the last input sample leaves the decoder DECODER_DELAY samples late: the padding covers it
    if not DECODER_DELAY <= padding < 4096:
        raise CalmplaceError(f"unexpected LAME padding of {padding} samples")
    header = (first & ~(1 << 9)) | (1 << 16)     # same stream, no padding slot, no CRC
    size = mp3stream.frame_bytes(header)
    frame = bytearray(size)
    struct.pack_into(">I", frame, 0, header)
    total = size + len(audio)
    toc = bytes(min(255, (size + offsets[i * n_frames // 100]) * 256 // total) for i in range(100))
    mode = (header >> 6) & 3                      # header: stereo, joint, dual, mono
    lame_mode = (1, 3, 2, 0)[mode]                # LAME tag: mono 0, stereo 1, dual 2, joint 3
    source_rate = 1                               # 44.1 kHz
    noise_shaping = 1 if LAME_QUALITY <= 6 else 0  # LAME's init_qval: -q 7..9 shape no noise
    bitrate_kbps = _MPEG1_L3_BITRATES_KBPS[((header >> 12) & 0xF) - 1]
    tag = b"".join((
        b"Info",
        struct.pack(">III", 0x0F, n_frames, total),  # flags: frames, bytes, TOC, quality
        toc,
        struct.pack(">I", 100 - 10 * 4 - LAME_QUALITY),        # LAME's quality indicator (VBR_q 4)
        b"LAME3.100",                                           # the LAME bundled in lameenc
        bytes((0x01,                                            # tag revision 0, method 1 = CBR
               0)),                                             # lowpass unknown
        bytes(4 + 2 + 2),                                       # peak and ReplayGain: not computed
        bytes((0,                                               # encoding flags / ATH type
               min(bitrate_kbps, 255))),
        ((LAME_ENCODER_DELAY << 12) | padding).to_bytes(3, "big"),
        bytes(((source_rate << 6) | (lame_mode << 2) | noise_shaping,
               0)),                                             # MP3 gain
        bytes(2),                                               # surround / preset: none
        struct.pack(">IH", total, _crc16(audio) if music_crc else 0),  # music length and CRC
    ))
    start = 4 + _SIDE_INFO_BYTES
    frame[start:start + len(tag)] = tag
    crc_at = start + len(tag)                     # the tag CRC covers the frame up to itself
    struct.pack_into(">H", frame, crc_at, _crc16(bytes(frame[:crc_at])))
    return bytes(frame)


@lru_cache(maxsize=1)
def _crc16_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ 0xA001, table >> 1)
    return table.astype(np.uint16)


def _crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005 reflected, initial 0), the LAME tag's CRC. Long inputs are
    cut into equal lanes run side by side, then combined: the CRC is linear, so
    crc(a + b) = crc(a) advanced over len(b) zero bytes, xor crc(b)."""
    table = _crc16_table()
    buf = np.frombuffer(data, dtype=np.uint8)
    lanes = 16384   # ~1000 rows for a 16 MB track: numpy steps long enough to beat the Python loop
    length = len(buf) // lanes
    crc = 0
    if length >= 16:
        body = np.ascontiguousarray(buf[:lanes * length].reshape(lanes, length).T)
        lane_crc = np.zeros(lanes, dtype=np.uint16)
        for row in body:
            lane_crc = (lane_crc >> 8) ^ table[(lane_crc ^ row) & 0xFF]
        # advancing a CRC over `length` zero bytes is linear in its two bytes: tabulate both
        advance = np.concatenate((np.arange(256), np.arange(256) << 8)).astype(np.uint16)
        for _ in range(length):
            advance = (advance >> 8) ^ table[advance & 0xFF]
        low, high = advance[:256].tolist(), advance[256:].tolist()
        for value in lane_crc.tolist():
            crc = low[crc & 0xFF] ^ high[crc >> 8] ^ value
        buf = buf[lanes * length:]
    table_list = table.tolist()
    for byte in buf.tolist():
        crc = (crc >> 8) ^ table_list[(crc ^ byte) & 0xFF]
    return crc


# ------------------------------------------------------------------------------------------------
# ID3v2


def _id3(tags: Tags, chapters: Sequence[Chapter], *, duration_s: float) -> bytes:
    """ID3v2.3 (the version every player reads; mutagen stores TDRC as TYER there) with text
    frames, and one CHAP per chapter under a top-level ordered CTOC."""
    if not tags.title.strip():
        raise CalmplaceError("the MP3 needs a title")
    if not _LANGUAGE.fullmatch(tags.language):
        raise CalmplaceError(f"language {tags.language!r} is not an ISO 639-2 code such as 'eng'")
    id3 = ID3()
    utf8 = Encoding.UTF8  # mutagen converts to UTF-16 for ID3v2.3
    id3.add(TIT2(encoding=utf8, text=[tags.title]))
    if tags.artist:
        id3.add(TPE1(encoding=utf8, text=[tags.artist]))
    if tags.album:
        id3.add(TALB(encoding=utf8, text=[tags.album]))
    id3.add(TLAN(encoding=utf8, text=[tags.language]))
    if tags.comment:
        id3.add(COMM(encoding=utf8, lang=tags.language, desc="", text=[tags.comment]))
    if tags.year:
        id3.add(TDRC(encoding=utf8, text=[tags.year]))
    ids = []
    for i, (start_ms, end_ms, title) in enumerate(_chapter_times(chapters, duration_s=duration_s)):
        ids.append(f"chp{i}")
        id3.add(CHAP(element_id=ids[-1], start_time=start_ms, end_time=end_ms,
                     start_offset=0xFFFFFFFF, end_offset=0xFFFFFFFF,  # ID3 chapters: offsets unused
                     sub_frames=[TIT2(encoding=utf8, text=[title])]))
    if ids:
        id3.add(CTOC(element_id="toc", flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
                     child_element_ids=ids, sub_frames=[]))
    out = io.BytesIO()
    id3.save(out, v2_version=3, padding=lambda info: _ID3_PADDING)
    return _chapters_in_order(out.getvalue(), ids)


def _chapters_in_order(tag: bytes, chapter_ids: list[str]) -> bytes:
    """mutagen writes frames shortest first, so CHAP frames land out of order, and players that
    list chapters in file order (ffmpeg) show them shuffled: keep the other frames as they are,
    then the CTOC, then the CHAPs in time order. ID3v2.3 frame: 4-byte id, 32-bit size, 2 flags."""
    rank = {chapter_id.encode("latin-1"): i for i, chapter_id in enumerate(chapter_ids)}
    end = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(tag[6:10]))  # syncsafe size
    keyed, pos = [], 10
    while pos + 10 <= end and tag[pos] != 0:  # zero bytes: the padding after the last frame
        frame = tag[pos:pos + 10 + int.from_bytes(tag[pos + 4:pos + 8], "big")]
        if frame[:4] == b"CHAP":
            key = (2, rank[frame[10:frame.index(0, 10)]])  # the element id ends with a zero byte
        else:
            key = (1, 0) if frame[:4] == b"CTOC" else (0, len(keyed))
        keyed.append((key, frame))
        pos += len(frame)
    return tag[:10] + b"".join(frame for _, frame in sorted(keyed)) + tag[pos:]


def _chapter_times(chapters: Sequence[Chapter], *, duration_s: float) -> list[tuple[int, int, str]]:
    """Chapters in whole milliseconds, checked: titled, in order, not overlapping, inside the track."""
    duration_ms = int(round(duration_s * 1000))
    out, previous_end = [], 0
    for ch in chapters:
        start_ms, end_ms = int(round(ch.start_s * 1000)), int(round(ch.end_s * 1000))
        if not ch.title.strip():
            raise CalmplaceError(f"chapter at {ch.start_s:.3f} s has no title")
        if start_ms < previous_end or end_ms <= start_ms or end_ms > duration_ms:
            raise CalmplaceError(
                f"chapter {ch.title!r} ({ch.start_s:.3f}-{ch.end_s:.3f} s) must start after the previous "
                f"one ends, end after it starts, and end within the track ({duration_s:.3f} s)")
        out.append((start_ms, end_ms, ch.title))
        previous_end = end_ms
    return out

"""Long tracks: encoded in pieces side by side and joined (mp3stream), measured in decoded stretches."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import helpers
from calmplace import encode, mp3stream
from calmplace.encode import Tags, decode_mp3, encode_mp3, measure_mp3
from calmplace.master import measure

SR = 44_100
SECONDS = 95.0   # 3 pieces of 1536 frames (40 s) or more: two joins


@pytest.fixture(scope="module")
def pcm() -> np.ndarray:
    x = helpers.speech_like(SECONDS, sr=SR, seed=11, max_pause_s=3.0, clicks_at=(int(41.0 * SR),))
    return x * np.float32(0.8 / np.abs(x).max())


@pytest.fixture(scope="module")
def encoded(pcm) -> dict[int, bytes]:
    return {threads: encode_mp3(pcm, sr=SR, tags=Tags(title="pieces"), threads=threads) for threads in (1, 3)}


def test_pieces_are_cut_by_length_alone(encoded):
    assert encoded[1] == encoded[3]   # byte-identical whatever the thread count


def test_joined_stream_decodes_whole_sample_aligned_and_without_clicks(pcm, encoded):
    decoded, sr = decode_mp3(encoded[1])
    assert sr == SR and decoded.shape == pcm.shape
    n = pcm.shape[1]
    one = encode._lame_piece(pcm, sr=SR, bitrate_kbps=192, start=0, stop=n)   # the same, in one piece
    single, _ = decode_mp3(encode._info_frame(one, n_samples=n) + one)
    exact = np.clip(np.rint(pcm * 32768), -32768, 32767) / 32768

    def frame_error_db(y):
        m = n // 1152
        return 10 * np.log10((((y - exact)[:, :m * 1152]).reshape(2, m, 1152) ** 2).mean(axis=(0, 2)) + 1e-15)

    joined_db, single_db = frame_error_db(decoded), frame_error_db(single)
    joins = list(range(encode._PIECE_FRAMES, n // 1152, encode._PIECE_FRAMES))
    assert len(joins) >= 2
    for b in joins:   # the join falls within _SEARCH_FRAMES after each nominal cut
        near = slice(b - 2, b + encode._SEARCH_FRAMES + 2)
        # a join that broke the MDCT overlap-add or lost main data leaves a frame whose error is
        # 20-40 dB above the encoder's usual; two encodes of the same audio differ frame by frame
        # by a few dB (the rest of the track shows the spread), so allow that spread plus 3 dB
        spread = np.abs(joined_db - single_db)[b + encode._SEARCH_FRAMES + 50:b + encode._PIECE_FRAMES - 50].max()
        assert (joined_db[near] - single_db[near]).max() < spread + 3.0, b


def test_joined_main_data_is_each_pieces_own(pcm):
    """Re-laying the bit reservoir moves main data, never changes it: every frame of the joined
    stream carries exactly the main data its piece's encoder wrote for it."""
    x = pcm[:, : int(60 * SR)]
    one = encode._lame_piece(x, sr=SR, bitrate_kbps=192, start=0, stop=x.shape[1])
    cut = 900
    first = mp3stream.Piece(mp3stream.parse(encode._lame_piece(x, sr=SR, bitrate_kbps=192, start=0,
                                                               stop=(cut + 60) * 1152)), 0)
    second = mp3stream.Piece(mp3stream.parse(encode._lame_piece(x, sr=SR, bitrate_kbps=192,
                                                                start=(cut - 24) * 1152, stop=x.shape[1])), cut - 24)
    joined, joins = mp3stream.join([first, second], boundaries=[cut], search_frames=48)
    out = mp3stream.parse(joined)
    assert len(out) == len(mp3stream.parse(one))
    (f,) = joins
    assert cut <= f < cut + 48
    for i in range(len(out)):
        piece = first if i < f else second
        assert out.main_data(i) == piece.frames.main_data(i - piece.first_frame), i
        assert out.main_data_begin[i] <= 511


def test_measured_in_stretches_equals_measuring_the_whole_decode(pcm, encoded):
    whole = measure(decode_mp3(encoded[1])[0], sr=SR)
    for threads in (1, 2):
        parts = measure_mp3(encoded[1], n_samples=pcm.shape[1], sr=SR, threads=threads)
        # same samples, same filter: equal up to float summation order (1e-9 LU / dB)
        assert parts.integrated_lufs == pytest.approx(whole.integrated_lufs, abs=1e-9)
        assert parts.true_peak_dbtp == pytest.approx(whole.true_peak_dbtp, abs=1e-9)
        assert parts.sample_peak_dbfs == pytest.approx(whole.sample_peak_dbfs, abs=1e-9)
        assert parts.loudness_range_lu == pytest.approx(whole.loudness_range_lu, abs=1e-9)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_decodes_the_joined_stream_without_errors(encoded, tmp_path):
    path = tmp_path / "joined.mp3"
    path.write_bytes(encoded[1])
    run = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == ""   # no "invalid main data" / reservoir complaints


def test_measured_while_encoding_equals_measuring_the_bytes(pcm, encoded):
    # each stretch is measured as soon as its frames are final, beside the pieces still encoding
    for threads in (1, 2):
        data, got = encode.encode_and_measure(pcm, sr=SR, tags=Tags(title="pieces"), threads=threads)
        assert data == encoded[1]
        assert got == measure_mp3(data, n_samples=pcm.shape[1], sr=SR)   # the same parts: exactly equal


def test_pieces_that_cannot_be_joined_fall_back_to_one_piece(pcm, monkeypatch):
    def refuse(*args, **kwargs):
        raise mp3stream.StreamError("no frame near frame 1536 where the pieces can be joined")

    x = pcm[:, : int(85 * SR)]
    joined = encode._lame(x, sr=SR, bitrate_kbps=192, threads=2)[0]
    monkeypatch.setattr(mp3stream.Joiner, "add", refuse)
    single = encode._lame_piece(x, sr=SR, bitrate_kbps=192, start=0, stop=x.shape[1])
    assert joined != single and encode._lame(x, sr=SR, bitrate_kbps=192, threads=2)[0] == single
    # what was measured of the pieces before the join failed is not counted
    data, got = encode.encode_and_measure(x, sr=SR, tags=Tags(title="fallback"), threads=2)
    assert data.endswith(single) and got == measure_mp3(data, n_samples=x.shape[1], sr=SR)


def test_a_mastered_track_read_block_by_block_encodes_as_its_array(pcm):
    """The encoder reads a `master.Mastered` a block at a time (x * gain, limited stretches
    patched in) and never makes the whole track: the bytes are those of the materialised array,
    across piece cuts and limited stretches alike."""
    from calmplace.master import master_track

    mastered = master_track(pcm, sr=SR)
    assert mastered.patches   # the click at 41 s, in the second piece, was limited
    tags = Tags(title="mastered")
    assert encode_mp3(mastered, sr=SR, tags=tags, threads=2) == encode_mp3(mastered.array(), sr=SR, tags=tags)


def test_a_track_borrows_the_cpus_other_tracks_freed_and_gives_them_back(pcm, encoded):
    """`_workers.SpareCpus`: with none free a one-thread track encodes a piece at a time; with one,
    two at once; the bytes and the measurement are the same either way, and every CPU borrowed
    goes back."""
    import threading
    import time

    from calmplace._workers import SpareCpus

    def most_at_once(spare: SpareCpus) -> int:
        running, most, lock = [0], [0], threading.Lock()

        def job():
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.1)   # long enough for a second thread's job to start beside it
            with lock:
                running[0] -= 1

        with encode._executor(1, spare_cpus=spare) as submit:
            for _ in range(4):
                submit(job)
        return most[0]

    assert most_at_once(SpareCpus(threading.Semaphore(0), most=1)) == 1
    free = threading.Semaphore(1)
    assert most_at_once(SpareCpus(free, most=1)) == 2
    assert free.acquire(blocking=False) and not free.acquire(blocking=False)   # given back: one, as lent
    data, got = encode.encode_and_measure(pcm, sr=SR, tags=Tags(title="pieces"), threads=1,
                                          spare_cpus=SpareCpus(threading.Semaphore(1), most=1))
    assert data == encoded[1] and got == measure_mp3(data, n_samples=pcm.shape[1], sr=SR)

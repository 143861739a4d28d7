"""mp3stream's bulk paths (frames walked and checked at once, the bit reservoir laid out with
running sums, main data and frames copied in runs) against the frame-by-frame rules they replace,
on real LAME streams and on made-up frame tables."""

from __future__ import annotations

import numpy as np
import pytest

import helpers
from calmplace import encode, mp3stream

SR = 44_100


@pytest.fixture(scope="module")
def stream() -> bytes:
    """20 s of speech-like stereo from LAME at 192 kbps: raw frames, no tag (at 192 kbps LAME's
    reservoir fills up in the pauses, and it leaves its ancillary bytes between two frames' data)."""
    x = helpers.speech_like(20.0, sr=SR, seed=5, max_pause_s=2.0)
    x = x * np.float32(0.8 / np.abs(x).max())
    return encode._lame_piece(x, sr=SR, bitrate_kbps=192, start=0, stop=x.shape[1])


def _frame_by_frame_offsets(data: bytes) -> tuple[list[int], list[int]]:
    """The walk frame_offsets replaced: each header read in turn, its own size added."""
    offsets, sizes, pos = [], [], 0
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos:pos + 4], "big")
        offsets.append(pos)
        sizes.append(mp3stream.frame_bytes(header))
        pos += sizes[-1]
    assert pos == len(data)
    return offsets, sizes


def test_frames_walked_at_once_are_the_frames_read_one_by_one(stream):
    first, offsets, sizes = mp3stream.frame_offsets(stream)
    assert (offsets, sizes) == _frame_by_frame_offsets(stream)
    assert first == int.from_bytes(stream[:4], "big")
    assert set(sizes) == {626, 627}   # 192 kbps at 44.1 kHz: 626 bytes, or 627 with the padding slot


def test_bad_streams_are_named_where_they_go_wrong(stream):
    _, offsets, sizes = mp3stream.frame_offsets(stream)
    with pytest.raises(mp3stream.StreamError, match="ends inside a frame"):
        mp3stream.frame_offsets(stream[:-10])
    with pytest.raises(mp3stream.StreamError, match="ends inside a frame"):
        mp3stream.frame_offsets(stream[:3])
    broken = bytearray(stream)
    broken[offsets[7]] = 0x00                                   # frame 7 loses its sync
    with pytest.raises(mp3stream.StreamError, match=f"not an MPEG-1 Layer III frame at byte {offsets[7]}$"):
        mp3stream.frame_offsets(bytes(broken))
    other_rate = bytearray(stream)
    other_rate[offsets[3] + 2] = (other_rate[offsets[3] + 2] & 0xF3) | 0x04   # 48 kHz from frame 3 on
    with pytest.raises(mp3stream.StreamError, match="changes bitrate, sample rate or channel count"):
        mp3stream.frame_offsets(bytes(other_rate))
    mono = bytearray(stream)
    mono[offsets[5] + 3] |= 0xC0                                 # frame 5 says mono
    with pytest.raises(mp3stream.StreamError, match="changes bitrate, sample rate or channel count"):
        mp3stream.frame_offsets(bytes(mono))
    with pytest.raises(mp3stream.StreamError, match="at byte 0"):
        mp3stream.frame_offsets(b"ID3" + stream)


class _StepLayout:
    """The frame-by-frame placement `_Layout` replaced (each frame's data as early as its
    main_data_begin allows, after the previous frame's)."""

    def __init__(self, area_end: int = 0, data_end: int = 0):
        self.area_end, self.data_end, self.begins = area_end, data_end, []

    def put(self, area: int, data: int, own_begin: int) -> bool:
        begin = min(self.area_end - self.data_end, 511)
        end, area_end = self.area_end - begin + data, self.area_end + area
        if end > area_end:
            raise mp3stream.StreamError("main data does not fit")
        self.area_end, self.data_end = area_end, end
        self.begins.append(begin)
        return begin >= own_begin


def _frames(area: np.ndarray, data: np.ndarray, begin: np.ndarray) -> mp3stream.Frames:
    """A frame table with these areas, data sizes and main_data_begins (no bytes: layout only)."""
    n = len(area)
    return mp3stream.Frames(data=b"", offset=[0] * n, side_bytes=32, area_bytes=area.tolist(),
                            main_data_begin=begin.tolist(), data_bytes=data.tolist(),
                            long_left=np.ones((n, 2), bool), long_right=np.ones((n, 2), bool), areas=b"",
                            area_at=(np.cumsum(area) - area).tolist())


@pytest.mark.parametrize("seed", range(40))
def test_the_reservoir_laid_out_at_once_is_laid_out_frame_by_frame(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    area = rng.integers(380, 420, n)
    # data sizes around the area size, with bursts above it that draw on the reservoir, and now and
    # then a frame too big for what is left (a misfit)
    data = np.clip(area + rng.normal(0, 120 if seed % 3 else 400, n).astype(np.int64), 0, 2000)
    begin = rng.integers(0, 512, n)
    frames = _frames(area, data, begin)
    piece = mp3stream.Piece(frames, first_frame=100)
    start_area, start_data = int(rng.integers(0, 5000)), 0
    start_data = start_area - int(rng.integers(0, 700))
    lo = int(rng.integers(0, n))

    def fresh():
        fast = mp3stream._Layout()
        fast.area_end, fast.data_end = start_area, start_data
        return fast, _StepLayout(start_area, start_data)

    # place(): every frame, or the error
    fast, step = fresh()
    try:
        for i in range(lo, n):
            step.put(area[i], data[i], begin[i])
        expected = None
    except mp3stream.StreamError:
        expected = "misfit"
    if expected:
        with pytest.raises(mp3stream.StreamError, match="does not fit"):
            fast.place(piece, 100 + lo, 100 + n)
    else:
        fast.place(piece, 100 + lo, 100 + n)
        assert (fast.begins, fast.area_end, fast.data_end) == (step.begins, step.area_end, step.data_end)

    # place_until_settled(): up to and with the first frame that starts no later than in its own
    # stream, or False at a misfit before it
    fast, step = fresh()
    try:
        settled_ok = True
        for i in range(lo, n):
            if step.put(area[i], data[i], begin[i]):
                break
    except mp3stream.StreamError:
        settled_ok = False
    assert fast.place_until_settled(piece, 100 + lo) is settled_ok
    if settled_ok:
        assert (fast.begins, fast.area_end, fast.data_end) == (step.begins, step.area_end, step.data_end)


def test_a_join_through_ancillary_bytes_keeps_them_out(stream):
    """LAME may leave bytes between two frames' main data (when the reservoir is full); the joined
    stream has zeros there, as the frame-by-frame copy left it, and the same main data."""
    frames = mp3stream.parse(stream)
    a = frames.arrays
    gaps = np.flatnonzero(a["area_at"][1:] - a["main_data_begin"][1:]
                          > a["area_at"][:-1] - a["main_data_begin"][:-1] + a["data_bytes"][:-1])
    assert gaps.size, "no gap to look at"
    assert any(frames.areas[a["area_at"][g] - a["main_data_begin"][g] + a["data_bytes"][g]:
                            a["area_at"][g + 1] - a["main_data_begin"][g + 1]].strip(b"\0") for g in gaps.tolist())
    out = mp3stream.join([mp3stream.Piece(frames, 0)], boundaries=[], search_frames=1)[0]
    joined = mp3stream.parse(out)
    assert len(joined) == len(frames)
    for i in range(len(frames)):
        assert joined.main_data(i) == frames.main_data(i)
    ja = joined.arrays
    for g in gaps.tolist():   # where frame g's data ends and frame g + 1's begins, in the joined stream
        lo = ja["area_at"][g] - ja["main_data_begin"][g] + ja["data_bytes"][g]
        hi = ja["area_at"][g + 1] - ja["main_data_begin"][g + 1]
        assert joined.areas[lo:hi] == bytes(hi - lo)

"""MPEG-1 Layer III bitstreams: frames, side information, and joining pieces encoded apart.

Why. LAME is single-threaded. To encode a long track on several cores it is cut into pieces
that are encoded independently, each starting some frames early (a warm-up, thrown away) and
running some frames late, so that around every join both encoders saw the same audio. The pieces
are joined on a frame boundary where both encoders chose compatible MDCT windows, so the decoder's
overlap-add across the join is that of one stream.

The bit reservoir. A frame's main data (scale factors and Huffman codes) may start up to 511 bytes
before the frame, in the unused tail of earlier frames (`main_data_begin`, ISO/IEC 11172-3
2.4.1.7). The first kept frame of a piece points into frames that were thrown away, so the joined
stream's main data is re-laid: every frame's data is placed as early as the reservoir allows
after the previous frame's data, and `main_data_begin` is rewritten. Placing data earlier than the
encoder did never makes a later frame unplaceable, so once a re-laid frame starts no later than it
did in its own stream, every frame after it fits too. Headers and side information are otherwise
copied unchanged: the audio is exactly what the pieces' encoders wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLES_PER_FRAME = 1152
_MAX_MAIN_DATA_BEGIN = 511   # 9 bits (MPEG-1)
BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_RATES_HZ = (44100, 48000, 32000)


class StreamError(ValueError):
    """Bytes that are not a CBR-compatible MPEG-1 Layer III stream we can re-lay."""


@dataclass(frozen=True)
class Frames:
    """One stream's frames, indexed by frame (plain lists: the join walks them one by one)."""

    data: bytes
    offset: list[int]            # byte offset of each frame header
    side_bytes: int              # side-information bytes (17 mono, 32 stereo)
    area_bytes: list[int]        # bytes after header and side information
    main_data_begin: list[int]   # bytes before the frame's own area where its main data starts
    data_bytes: list[int]        # bytes of main data (part2_3 lengths summed, rounded up)
    long_left: np.ndarray        # (frames, channels): granule 0's window opens like a long block
    long_right: np.ndarray       # (frames, channels): granule 1's window closes like a long block
    areas: bytes                 # every frame's area, end to end: the main-data stream
    area_at: list[int]           # where each frame's area starts in `areas`

    def __len__(self) -> int:
        return len(self.offset)

    def main_data(self, i: int) -> bytes:
        """Frame i's main data, gathered from its own and earlier frames' areas."""
        start = self.area_at[i] - self.main_data_begin[i]
        if start < 0:
            raise StreamError(f"frame {i} points {self.main_data_begin[i]} bytes before the stream")
        if start + self.data_bytes[i] > self.area_at[i] + self.area_bytes[i]:
            raise StreamError(f"frame {i}'s main data runs past its own frame")
        return self.areas[start:start + self.data_bytes[i]]


def frame_bytes(header: int) -> int:
    """Bytes in the frame this 32-bit header starts (MPEG-1 Layer III, padding slot included)."""
    return 144 * BITRATES_KBPS[((header >> 12) & 0xF) - 1] * 1000 // _RATES_HZ[(header >> 10) & 0x3] + ((header >> 9) & 1)


def frame_offsets(data: bytes) -> tuple[int, list[int], list[int]]:
    """The first frame header, and the byte offset and size of every frame; checks the bytes are
    whole MPEG-1 Layer III frames at one bitrate, sample rate and channel count."""
    offsets, sizes, pos, first = [], [], 0, None
    while pos + 4 <= len(data):
        header = int.from_bytes(data[pos:pos + 4], "big")
        bitrate_index, rate_index = (header >> 12) & 0xF, (header >> 10) & 0x3
        # sync, MPEG-1, Layer III, a listed bitrate (not free format), a listed sample rate
        if header >> 21 != 0x7FF or (header >> 17) & 0xF != 0b1101 or bitrate_index in (0, 15) or rate_index == 3:
            raise StreamError(f"not an MPEG-1 Layer III frame at byte {pos}")
        if first is None:
            first = header
        elif (header ^ first) & 0xFFFFFC00 or ((header ^ first) >> 6) & 3 == 3:  # rate or mono/stereo changed
            raise StreamError("the stream changes bitrate, sample rate or channel count")
        offsets.append(pos)
        sizes.append(frame_bytes(header))
        pos += sizes[-1]
    if first is None or pos != len(data):
        raise StreamError("the stream ends inside a frame")
    return first, offsets, sizes


def parse(data: bytes) -> Frames:
    """Every frame of an MPEG-1 Layer III stream without CRC (what LAME writes by default)."""
    first, offsets, sizes = frame_offsets(data)
    if not (first >> 16) & 1:
        raise StreamError("frames with CRC are not supported")
    channels = 1 if (first >> 6) & 3 == 3 else 2
    side_bytes = 17 if channels == 1 else 32
    offset = np.array(offsets, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    side = raw[(offset + 4)[:, None] + np.arange(side_bytes)]
    bits = np.unpackbits(side, axis=1).astype(np.int64)

    def field(start: int, width: int) -> np.ndarray:
        return bits[:, start:start + width] @ (1 << np.arange(width - 1, -1, -1))

    # ISO/IEC 11172-3 2.4.1.7: main_data_begin 9, private bits 5 (mono) / 3, scfsi 4 per channel,
    # then per granule and channel 59 bits: part2_3_length 12, big_values 9, global_gain 8,
    # scalefac_compress 4, window_switching_flag 1, block_type 2, ...
    start = 9 + (5 if channels == 1 else 3) + 4 * channels
    part2_3 = np.zeros(len(offset), dtype=np.int64)
    block = np.zeros((len(offset), 2, channels), dtype=np.int64)
    for gr in range(2):
        for ch in range(channels):
            at = start + 59 * (gr * channels + ch)
            part2_3 += field(at, 12)
            switching = field(at + 12 + 9 + 8 + 4, 1)
            block[:, gr, ch] = np.where(switching == 1, field(at + 34, 2), 0)
    # window halves: types 0 normal and 1 start open long; 0 and 3 stop close long
    size = np.array(sizes, dtype=np.int64)
    area_bytes = size - 4 - side_bytes
    head = offset + 4 + side_bytes
    areas = b"".join(data[a:a + n] for a, n in zip(head.tolist(), area_bytes.tolist()))
    return Frames(data=data, offset=offsets, side_bytes=side_bytes, area_bytes=area_bytes.tolist(),
                  main_data_begin=field(0, 9).tolist(), data_bytes=((part2_3 + 7) // 8).tolist(),
                  long_left=np.isin(block[:, 0], (0, 1)), long_right=np.isin(block[:, 1], (0, 3)),
                  areas=areas, area_at=(np.cumsum(area_bytes) - area_bytes).tolist())


@dataclass(frozen=True)
class Piece:
    """An independently encoded stream whose frame i is frame `first_frame + i` of the track."""

    frames: Frames
    first_frame: int


def join(pieces: list[Piece], *, boundaries: list[int], search_frames: int) -> tuple[bytes, list[int]]:
    """One stream from consecutive pieces: piece k supplies the frames from its join to the next.

    `boundaries[k - 1]` is where piece k's frames should take over from piece k - 1's; the join is
    made at the first frame at or after it, within `search_frames`, where the MDCT windows on both
    sides match and the main data can be re-laid. Returns the stream and the joins chosen."""
    if len(boundaries) != len(pieces) - 1:
        raise ValueError("one boundary between each two pieces")
    joiner = Joiner(boundaries=boundaries, search_frames=search_frames)
    for piece in pieces:
        joiner.add(piece)
    return joiner.finish(), joiner.joins


class Joiner:
    """`join`, a piece at a time, writing frames out as soon as they are final: a frame's bytes
    are final once the main data laid so far reaches past its area (later frames' data is laid
    after it). A caller can decode the start of the stream while later pieces are being encoded."""

    def __init__(self, *, boundaries: list[int], search_frames: int):
        self.boundaries, self.search_frames = list(boundaries), search_frames
        self.joins: list[int] = []
        self.out = bytearray()        # the final frames, end to end
        self.offsets: list[int] = []  # byte offset of each final frame in `out`
        self._layout = _Layout()
        self._last: Piece | None = None
        self._start = 0
        self._areas = bytearray()     # the joined main-data stream, as laid so far
        self._pending: list[tuple[bytes, int]] = []   # (header + side info, area bytes) not yet out
        self._out_area = 0            # where the first pending frame's area starts

    def add(self, piece: Piece) -> None:
        """The next piece: joins the previous one to it, and writes out what is final."""
        if self._last is None:
            self._last, self._start = piece, piece.first_frame
            return
        k = len(self.joins)
        if k == len(self.boundaries):
            raise ValueError("more pieces than boundaries + 1")
        previous = self._last
        for f in range(self.boundaries[k], self.boundaries[k] + self.search_frames):
            if not _windows_match(previous, piece, f):
                continue
            trial = self._layout.copy()
            trial.place(previous, self._start, f)
            if trial.place_until_settled(piece, f):
                break
        else:
            raise StreamError(f"no frame near frame {self.boundaries[k]} where the pieces can be joined")
        self._lay(previous, self._start, f)
        self.joins.append(f)
        self._start, self._last = f, piece

    def finish(self) -> bytes:
        """The last piece's frames to its end; the whole stream."""
        if self._last is None or len(self.joins) != len(self.boundaries):
            raise ValueError("one boundary between each two pieces")
        self._lay(self._last, self._start, self._last.first_frame + len(self._last.frames))
        self._write_out(final_area=len(self._areas))
        return bytes(self.out)

    def _lay(self, piece: Piece, start: int, end: int) -> None:
        layout, frames = self._layout, piece.frames
        area_pos, laid = layout.area_end, len(layout.begins)   # where the first of these frames goes
        layout.place(piece, start, end)
        self._areas.extend(bytes(layout.area_end - len(self._areas)))
        for f, begin in zip(range(start, end), layout.begins[laid:]):
            i = f - piece.first_frame
            main = frames.main_data(i)
            self._areas[area_pos - begin:area_pos - begin + len(main)] = main
            o = frames.offset[i]
            head = bytearray(frames.data[o:o + 4 + frames.side_bytes])
            head[4] = begin >> 1                                  # main_data_begin, 9 bits
            head[5] = (head[5] & 0x7F) | ((begin & 1) << 7)
            self._pending.append((bytes(head), frames.area_bytes[i]))
            area_pos += frames.area_bytes[i]
        self._write_out(final_area=layout.data_end)

    def _write_out(self, *, final_area: int) -> None:
        done = 0
        for head, size in self._pending:
            if self._out_area + size > final_area:
                break
            self.offsets.append(len(self.out))
            self.out += head
            self.out += self._areas[self._out_area:self._out_area + size]
            self._out_area += size
            done += 1
        del self._pending[:done]


def _windows_match(a: Piece, b: Piece, f: int) -> bool:
    """Piece a's frame f - 1 closes its window as piece b's frame f opens, in every channel."""
    ia, ib = f - 1 - a.first_frame, f - b.first_frame
    if not (0 <= ia < len(a.frames) and 1 <= ib < len(b.frames)):
        return False
    return bool(np.array_equal(a.frames.long_right[ia], b.frames.long_left[ib]))


class _Layout:
    """Main-data placement over the joined stream: frame areas laid end to end, each frame's data
    as early as main_data_begin allows and after the previous frame's data."""

    def __init__(self):
        self.area_end = 0     # end of the last placed frame's area, in joined main-data bytes
        self.data_end = 0     # end of the last placed frame's main data
        self.begins: list[int] = []

    def copy(self) -> "_Layout":
        other = _Layout()
        other.area_end, other.data_end, other.begins = self.area_end, self.data_end, list(self.begins)
        return other

    def _put(self, frames: Frames, i: int) -> tuple[int, bool]:
        """Place frame i; return its main_data_begin and whether its data starts no later than in
        its own stream."""
        area_start = self.area_end
        begin = min(area_start - self.data_end, _MAX_MAIN_DATA_BEGIN)
        end = area_start - begin + frames.data_bytes[i]
        area_end = area_start + frames.area_bytes[i]
        if end > area_end:
            raise StreamError("main data does not fit")
        self.area_end, self.data_end = area_end, end
        self.begins.append(begin)
        return begin, begin >= frames.main_data_begin[i]

    def place(self, piece: Piece, start: int, end: int) -> None:
        for f in range(start, end):
            self._put(piece.frames, f - piece.first_frame)

    def place_until_settled(self, piece: Piece, start: int) -> bool:
        """Place frames from `start` until one starts no later than in its own stream (from then
        on every frame fits, see the module docstring); False if one does not fit first."""
        try:
            for f in range(start, piece.first_frame + len(piece.frames)):
                if self._put(piece.frames, f - piece.first_frame)[1]:
                    return True
        except StreamError:
            return False
        return True

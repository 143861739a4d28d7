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
from functools import cached_property

import numpy as np

SAMPLES_PER_FRAME = 1152
_MAX_MAIN_DATA_BEGIN = 511   # 9 bits (MPEG-1)
BITRATES_KBPS = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_RATES_HZ = (44100, 48000, 32000)


class StreamError(ValueError):
    """Bytes that are not a CBR-compatible MPEG-1 Layer III stream we can re-lay."""


@dataclass(frozen=True)
class Frames:
    """One stream's frames, indexed by frame (lists, and `arrays` for the join's bulk work)."""

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

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """offset, area_bytes, main_data_begin, data_bytes and area_at as int64 arrays."""
        return {name: np.asarray(getattr(self, name), dtype=np.int64)
                for name in ("offset", "area_bytes", "main_data_begin", "data_bytes", "area_at")}

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
    whole MPEG-1 Layer III frames at one bitrate, sample rate and channel count.

    At one bitrate and rate a frame's size is that of the first frame without its padding slot,
    plus the slot if its own header has one: the frames are walked with that alone, then every
    header is checked at once."""
    if len(data) < 4:
        raise StreamError("the stream ends inside a frame")
    first = int.from_bytes(data[:4], "big")
    if not _valid_header(first):
        raise StreamError("not an MPEG-1 Layer III frame at byte 0")
    unpadded = frame_bytes(first & ~0x200)
    raw = np.frombuffer(data, dtype=np.uint8)
    slot = ((raw[2:] >> 1) & 1).tobytes()   # the padding bit, if a header's third byte were here
    offsets, pos, end = [], 0, len(data) - 4
    while pos <= end:
        offsets.append(pos)
        pos += unpadded + slot[pos]
    at = np.asarray(offsets, dtype=np.int64)
    header = (raw[at].astype(np.int64) << 24) | (raw[at + 1].astype(np.int64) << 16) | \
        (raw[at + 2].astype(np.int64) << 8) | raw[at + 3]
    valid = _valid_header(header)
    # the same bitrate, rate and version as the first frame; mono stays mono, and stereo (joint,
    # dual or plain: mode 0-2) stays two channels (the frame-by-frame walk only caught mono against
    # plain stereo, not against joint stereo, LAME's usual mode)
    same = (((header ^ first) & 0xFFFFFC00) == 0) & (((header >> 6) & 3 == 3) == ((first >> 6) & 3 == 3))
    bad = np.flatnonzero(~(valid & same))
    if bad.size:
        i = int(bad[0])
        if not valid[i]:
            raise StreamError(f"not an MPEG-1 Layer III frame at byte {offsets[i]}")
        raise StreamError("the stream changes bitrate, sample rate or channel count")
    if pos != len(data):
        raise StreamError("the stream ends inside a frame")
    return first, offsets, (unpadded + ((header >> 9) & 1)).tolist()


def _valid_header(header):
    """Sync, MPEG-1, Layer III, a listed bitrate (not free format), a listed sample rate (an int, or
    an array of them)."""
    bitrate_index, rate_index = (header >> 12) & 0xF, (header >> 10) & 0x3
    return (header >> 21 == 0x7FF) & ((header >> 17) & 0xF == 0b1101) & (bitrate_index != 0) & \
        (bitrate_index != 15) & (rate_index != 3)


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
        self._areas = bytearray()     # the joined main-data stream laid so far, from _out_area on
        # frames laid but not yet out: (headers + side info, one row a frame; their area sizes)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._out_area = 0            # where the first pending frame's area starts (in the whole stream)

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
        self._write_out(final_area=self._out_area + len(self._areas))
        return bytes(self.out)

    def _lay(self, piece: Piece, start: int, end: int) -> None:
        """Place frames [start, end) of `piece` and copy their main data and headers in.

        In bulk, not frame by frame: where consecutive frames' data moved by the same amount
        (once a piece has settled, every frame: its data lies where its own encoder put it) their
        main data is one copy, with the bytes between two frames' data (an encoder's ancillary
        bits) zeroed, as frame-by-frame laying left them."""
        layout, frames = self._layout, piece.frames
        area_pos, laid = layout.area_end, len(layout.begins)   # where the first of these frames goes
        layout.place(piece, start, end)
        if end <= start:
            self._write_out(final_area=layout.data_end)
            return
        a = frames.arrays
        idx = np.arange(start - piece.first_frame, end - piece.first_frame)
        begin = np.asarray(layout.begins[laid:], dtype=np.int64)
        area_bytes, area_at, n_bytes = a["area_bytes"][idx], a["area_at"][idx], a["data_bytes"][idx]
        src = area_at - a["main_data_begin"][idx]   # where each frame's data is in its own stream
        bad = np.flatnonzero(src < 0)
        if bad.size:
            i = int(idx[bad[0]])
            raise StreamError(f"frame {i} points {frames.main_data_begin[i]} bytes before the stream")
        if (src + n_bytes > area_at + area_bytes).any():
            i = int(idx[np.flatnonzero(src + n_bytes > area_at + area_bytes)[0]])
            raise StreamError(f"frame {i}'s main data runs past its own frame")
        # and in the joined stream, from the first area not yet written out
        dst = area_pos + np.cumsum(area_bytes) - area_bytes - begin - self._out_area
        self._areas.extend(bytes(layout.area_end - self._out_area - len(self._areas)))
        cuts = [0, *(np.flatnonzero(np.diff(dst - src)) + 1).tolist(), len(idx)]
        for lo, hi in zip(cuts, cuts[1:]):   # runs of frames whose data moved by one amount
            s0, s1 = int(src[lo]), int(src[hi - 1] + n_bytes[hi - 1])
            d0 = int(dst[lo])
            self._areas[d0:d0 + s1 - s0] = frames.areas[s0:s1]
            ends, starts = dst[lo:hi - 1] + n_bytes[lo:hi - 1], dst[lo + 1:hi]
            for g in np.flatnonzero(starts > ends).tolist():
                self._areas[ends[g]:starts[g]] = bytes(int(starts[g] - ends[g]))
        head = np.frombuffer(frames.data, dtype=np.uint8)[a["offset"][idx, None] + np.arange(4 + frames.side_bytes)]
        head[:, 4] = begin >> 1                                   # main_data_begin, 9 bits
        head[:, 5] = (head[:, 5] & 0x7F) | ((begin & 1) << 7)
        self._pending.append((head, area_bytes))
        self._write_out(final_area=layout.data_end)

    def _write_out(self, *, final_area: int) -> None:
        """Write out the pending frames whose area is final (ends by `final_area`, in the whole
        stream): each one's header and side information, then its area of the joined main data,
        which then leaves `_areas` (no later frame's data goes there)."""
        if not self._pending:
            return
        heads = np.concatenate([h for h, _ in self._pending])
        sizes = np.concatenate([n for _, n in self._pending])
        area_end = np.cumsum(sizes)   # from _out_area
        k = int(np.searchsorted(area_end, final_area - self._out_area, side="right"))
        if k:
            width, head_bytes, ends = heads.shape[1], heads[:k].tobytes(), area_end[:k].tolist()
            areas = bytes(self._areas[:ends[-1]])
            parts, at, a = [], len(self.out), 0
            for i, e in enumerate(ends):
                self.offsets.append(at)
                parts += (head_bytes[i * width:(i + 1) * width], areas[a:e])
                at += width + e - a
                a = e
            self.out += b"".join(parts)
            del self._areas[:ends[-1]]
            self._out_area += ends[-1]
        self._pending = [(heads[k:], sizes[k:])] if k < len(sizes) else []


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

    def _plan(self, frames: Frames, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frames i0..i1-1 placed after the frames placed so far, without placing them: each one's
        main_data_begin, area end and data end, and whether its data fits before its area ends.

        Frame by frame, the reservoir r (bytes between the last data and the next area) goes
        r' = min(r, 511) + area - data; unrolled, r_j = P_j + min(r_0, 511 - max(P_0..P_j-1)),
        with P the running sums of area - data: the same integers, without a Python loop."""
        a = frames.arrays
        area, data = a["area_bytes"][i0:i1], a["data_bytes"][i0:i1]
        steps = np.cumsum(area - data)
        reservoir = np.empty(i1 - i0, dtype=np.int64)
        reservoir[:1] = self.area_end - self.data_end
        if i1 - i0 > 1:
            highest = np.maximum.accumulate(np.concatenate([[0], steps[:-2]]))
            reservoir[1:] = steps[:-1] + np.minimum(reservoir[0], _MAX_MAIN_DATA_BEGIN - highest)
        begin = np.minimum(reservoir, _MAX_MAIN_DATA_BEGIN)
        area_end = self.area_end + np.cumsum(area)
        return begin, area_end, area_end - area - begin + data, data - begin <= area

    def _take(self, begin: np.ndarray, area_end: np.ndarray, data_end: np.ndarray, k: int) -> None:
        """Keep the first k frames of a `_plan`."""
        if k:
            self.begins.extend(begin[:k].tolist())
            self.area_end, self.data_end = int(area_end[k - 1]), int(data_end[k - 1])

    def place(self, piece: Piece, start: int, end: int) -> None:
        i0 = start - piece.first_frame
        begin, area_end, data_end, fits = self._plan(piece.frames, i0, i0 + max(0, end - start))
        if not fits.all():
            raise StreamError("main data does not fit")
        self._take(begin, area_end, data_end, len(begin))

    def place_until_settled(self, piece: Piece, start: int) -> bool:
        """Place frames from `start` until one starts no later than in its own stream (from then
        on every frame fits, see the module docstring); False if one does not fit first."""
        i0 = start - piece.first_frame
        begin, area_end, data_end, fits = self._plan(piece.frames, i0, len(piece.frames))
        settled = fits & (begin >= piece.frames.arrays["main_data_begin"][i0:])
        first_misfit = int(np.argmin(fits)) if not fits.all() else len(fits)
        first_settled = int(np.argmax(settled)) if settled.any() else len(fits)
        if first_misfit < first_settled:
            return False
        self._take(begin, area_end, data_end, min(first_settled + 1, len(fits)))
        return True

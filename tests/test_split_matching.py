"""`takes split` matching, on espeak-ng readings: speech that is no take (a remark after the last
take, a take read again out of order, a false start before the first) never replaces a real
reading; takes far from their length, or read out of order, are refused unless accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from calmplace.errors import CalmplaceError
from calmplace.split import plan_split
from calmplace.takes import Take

from test_recorded import room, spoken

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the reader is played by espeak-ng")

SR = 22050
TEXTS = ["Find a comfortable position, and let your body settle.", "Breathe in.",
         "Notice the gentle rhythm of your breathing, the air moving in and out.",
         "Now imagine a place where you feel safe.", "Perhaps a beach, a forest, or a quiet room.",
         "When you are ready, open your eyes."]
TAKES = [Take(i + 1, 0, t, 1.0, 1.0) for i, t in enumerate(TEXTS)]
# Expected lengths as the template has them: the synthetic voice, here espeak a little faster (150
# words a minute against the reader's 130), so the reader's own pace is learnt as in real use
EXPECTED = [spoken(t, rate=150).size / SR for t in TEXTS]


def session(order: list) -> tuple[np.ndarray, list[float]]:
    """Items read in turn with 2 s of room between: a take index, or (text) for other speech, or
    (index, fraction) for the start of a take. Returns (n, 1) samples and where each item starts."""
    parts, starts, at = [np.zeros(SR)], [], SR
    for item in order:
        if isinstance(item, int):
            voice = spoken(TEXTS[item])
        elif isinstance(item, str):
            voice = spoken(item)
        else:
            whole = spoken(TEXTS[item[0]])
            voice = whole[: int(whole.size * item[1])]
        voice = voice * 10 ** (-6 / 20)
        starts.append(at / SR)
        parts += [voice, np.zeros(2 * SR)]
        at += voice.size + 2 * SR
    x = np.concatenate(parts)
    return (x + room(x.size, sr=SR, seed=5))[:, None], starts


def starts_of(plan) -> list[float]:
    return [c.speech_start / SR for c in plan.cuts]


# Where a take was found is compared with where it was put, ±0.15 s: chunk edges are found in
# 20 ms frames at thresholds relative to the room; the wrong reading would be seconds away
TOL_S = 0.15


@pytest.mark.parametrize("extra, where", [
    ("That one went rather well, I think.", "after"),  # a remark after the last take
    (2, "after"),                                       # take 3 read again after the last take
    ((3, 0.4), "before"),                               # the start of take 4 before the first take
])
def test_speech_that_is_no_take_is_left_out_and_reported(extra, where):
    order = list(range(6)) + [extra] if where == "after" else [extra] + list(range(6))
    data, starts = session(order)
    take_starts = starts[:6] if where == "after" else starts[1:]
    result = plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED)
    assert starts_of(result) == pytest.approx(take_starts, abs=TOL_S), result.notes
    assert not any("read more than once" in n for n in result.notes), result.notes
    extra_at = starts[-1] if where == "after" else starts[0]
    warning = next(w for w in result.warnings if "left out" in w)
    assert f"of speech {where} the" in warning and f"at 0:{extra_at:04.1f}" in warning, result.warnings
    if extra == 2:
        assert "sounds like take 003 read again" in warning
    if isinstance(extra, tuple):
        assert "sounds like the start of take 004" in warning


def test_the_last_take_read_again_keeps_its_last_reading():
    data, starts = session(list(range(6)) + [5])
    result = plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED)
    assert starts_of(result) == pytest.approx(starts[:5] + [starts[6]], abs=TOL_S)
    assert "take 006 was read more than once: kept the last reading" in result.notes[0]
    data, starts = session([(0, 0.4)] + list(range(6)))  # a false start of take 1: the same
    result = plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED)
    assert starts_of(result) == pytest.approx(starts[1:], abs=TOL_S)


def test_takes_out_of_order_or_skipped_are_refused_unless_accepted():
    data, starts = session([0, 2, 1, 3, 4, 5])  # takes 2 and 3 swapped
    with pytest.raises(CalmplaceError) as info:
        plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED)
    message = str(info.value)
    assert "take 002 looks" in message and f"at 0:{starts[1]:04.1f} in the recording" in message, message
    assert "Nothing was written" in message and "--accept-lengths" in message
    result = plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED, accept_lengths=True)
    assert any("take 002 looks" in w and "accepted with --accept-lengths" in w for w in result.warnings)
    # take 5 skipped (take 4 is about as long) and take 6 read twice: as many readings as takes
    data, starts = session([0, 1, 2, 3, 5, 5])
    with pytest.raises(CalmplaceError, match=r"take 005 .* sounds like take 006 .*the same words read twice"):
        plan_split(Path("rec.wav"), data, SR, TAKES, EXPECTED)

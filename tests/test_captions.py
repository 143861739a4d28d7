"""WebVTT captions: one cue per sentence, inside the speech it belongs to (contract §5)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from calmplace.captions import (LINE_CHARS, _snap, cues, format_timestamp, parse_webvtt, speech_gaps, split_cues,
                                split_sentences, webvtt, wrap)
from calmplace.script import load_script
from calmplace.takes import plan
from calmplace.timeline import build_timeline

SR = 44_100
SECONDS_PER_WORD = 0.4
MS = 0.001
ROUNDING = 0.0005 + 1e-9  # cue times are rounded to the millisecond: at most half a millisecond off

SCRIPT = """\
title: Calm Place Imagery
locales: [en-GB, en-US]
spelling:
  en-US: {colour: color}
sections:
  - title: Settling in
    text: |
      Find a position where you can be comfortable. Let your eyes close. [pause 3s]
      Notice the colour of the light behind your eyelids! Is it warm? [pause 10s]
  - text: |
      Dr. Lee suggests a place, e.g. a beach or a garden, that feels safe.

      Breathe in… and out. [pause]
      Notice the temperature of the air on your skin, the weight of your body against the chair or the floor, and the gentle rise and fall of your breathing as it finds its own easy rhythm without any effort at all.
      Rest here.
"""
# sentences per take, counted by hand (Dr. and e.g. do not end one; "… and" goes on)
SENTENCES = [
    ["Find a position where you can be comfortable.", "Let your eyes close."],
    ["Notice the colour of the light behind your eyelids!", "Is it warm?"],
    ["Dr. Lee suggests a place, e.g. a beach or a garden, that feels safe."],
    ["Breathe in… and out."],
    ["Notice the temperature of the air on your skin, the weight of your body against the chair or the floor, "
     "and the gentle rise and fall of your breathing as it finds its own easy rhythm without any effort at all.",
     "Rest here."],
]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("scripts")) / "calm-place.yaml"
    path.write_text(SCRIPT, encoding="utf-8")
    return load_script(path)


def make(script, locale: str = "en-GB", lengths=None):
    p = plan(script, locale)
    if lengths is None:
        lengths = [int(SECONDS_PER_WORD * len(t.text.split()) * SR) for t in p.takes]
    return p, build_timeline(p, lengths, sr=SR)


def owner(cue, timeline):
    """The take span a cue lies in (to the millisecond), or None."""
    start, end, _ = cue
    for span in timeline.takes:
        if start >= span.start / SR - ROUNDING and end <= span.end / SR + ROUNDING:
            return span
    return None


def flat(text: str) -> str:
    return " ".join(text.split())


def test_one_cue_per_sentence_and_nothing_lost(script):
    p, tl = make(script)
    assert [split_sentences(t.text) for t in p.takes] == SENTENCES
    cues = parse_webvtt(webvtt(p, tl))
    # every sentence is one cue, except the 200-character one, which cannot fit two lines of 42
    long = SENTENCES[4][0]
    assert len(cues) == sum(map(len, SENTENCES)) - 1 + len(split_cues(long))
    assert len(split_cues(long)) >= 3
    assert flat(" ".join(c[2] for c in cues)) == flat(" ".join(t.text for t in p.takes))
    assert flat(cues[0][2]) == SENTENCES[0][0]


def test_cues_lie_inside_their_take_in_order_without_overlap(script):
    p, tl = make(script)
    cues = parse_webvtt(webvtt(p, tl))
    for start, end, text in cues:
        assert end > start, text
        span = owner((start, end, text), tl)
        assert span is not None, text
        assert flat(text) in span.take.text
    for (s0, e0, _), (s1, e1, _) in zip(cues, cues[1:]):
        assert s1 > s0 and s1 >= e0  # ordered, touching at most
    # the first cue starts with the first word, the last ends with the last (millisecond rounding)
    assert cues[0][0] == pytest.approx(tl.takes[0].start / SR, abs=ROUNDING)
    assert cues[-1][1] == pytest.approx(tl.takes[-1].end / SR, abs=ROUNDING)
    # each take's cues cover its whole span
    for span in tl.takes:
        mine = [c for c in cues if owner(c, tl) is span]
        assert mine[0][0] == pytest.approx(span.start / SR, abs=ROUNDING)
        assert mine[-1][1] == pytest.approx(span.end / SR, abs=ROUNDING)


def test_sentences_share_a_take_by_character_count(script):
    p, tl = make(script)
    cues = parse_webvtt(webvtt(p, tl))
    span = tl.takes[0]
    a, b = (c for c in cues if owner(c, tl) is span)
    total = (span.end - span.start) / SR
    share = len(SENTENCES[0][0]) / (len(SENTENCES[0][0]) + len(SENTENCES[0][1]))
    # each boundary is rounded once to the millisecond: the share is off by at most 1 ms of the take
    assert (a[1] - a[0]) == pytest.approx(share * total, abs=2 * MS)
    assert (b[1] - b[0]) == pytest.approx((1 - share) * total, abs=2 * MS)


def test_lines_are_at_most_two_of_42_characters(script):
    p, tl = make(script)
    for _, _, text in parse_webvtt(webvtt(p, tl)):
        lines = text.split("\n")
        assert 1 <= len(lines) <= 2, text
        assert all(len(line) <= LINE_CHARS for line in lines), text


def test_long_sentence_splits_at_commas(script):
    parts = split_cues(SENTENCES[4][0])
    assert " ".join(parts) == SENTENCES[4][0]
    assert parts[0] == "Notice the temperature of the air on your skin,"
    assert all(len(wrap(part)) <= 2 for part in parts)


def test_spelling_follows_the_locale(script):
    gb = webvtt(*make(script, "en-GB"))
    us = webvtt(*make(script, "en-US"))
    assert "colour" in gb and "color " not in gb
    assert "color" in us and "colour" not in us


def test_format_header_and_timestamps(script):
    p, tl = make(script)
    text = webvtt(p, tl)
    assert text.startswith("WEBVTT\n\nNOTE Calm Place Imagery")
    assert text.endswith("\n") and not text.endswith("\n\n")
    timings = re.findall(r"^(\S+) --> (\S+)$", text, flags=re.M)
    assert len(timings) == len(parse_webvtt(text))
    for start, end in timings:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", start) and re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", end)
    assert format_timestamp(0) == "00:00:00.000"
    assert format_timestamp(3_723_004) == "01:02:03.004"
    assert webvtt(p, tl) == text  # a pure function


def test_split_sentences_keeps_abbreviations_and_quotes():
    text = "Mr. Jones said hi. Then, e.g. the sea! P. Gilbert wrote it… and more. “Done.” Next?"
    assert split_sentences(text) == [
        "Mr. Jones said hi.", "Then, e.g. the sea!", "P. Gilbert wrote it… and more.", "“Done.”", "Next?"]
    assert split_sentences("No full stop at the end") == ["No full stop at the end"]
    assert split_sentences("Wait... Now.") == ["Wait...", "Now."]


def test_wrap_balances_two_lines():
    assert wrap("Short.") == ["Short."]
    lines = wrap("Notice the colour of the light behind your eyelids.")
    assert len(lines) == 2 and all(len(x) <= LINE_CHARS for x in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 10  # balanced, not greedy (greedy would give 42 + 8)


def test_wrap_keeps_a_sign_with_the_numbers_it_binds():
    # QA: "... half a breath, 3" / "× 4 – simple; and rest." (the most even break fell inside 3 × 4)
    for text in ("Breathe in slowly 3 × 4 and let the air fill.",          # evenest: "... 3 ×" / "4 and ..."
                 "Breathe in for four, out for six – half a breath, 3 × 4 – simple; and rest."):
        lines = wrap(text)
        assert len(lines) == 2 and all(len(x) <= LINE_CHARS for x in lines) and " ".join(lines) == text
        assert "3 × 4" in lines[0] or "3 × 4" in lines[1], lines


def test_escaping_round_trips(tmp_path):
    path = tmp_path / "amp.yaml"
    path.write_text('title: "A --> B"\nlocales: [en-GB]\nsections:\n  - text: "Salt & pepper <3 --> here."\n',
                    encoding="utf-8")
    p, tl = make(load_script(path))
    text = webvtt(p, tl)
    assert "&amp;" in text and "&lt;3" in text and "--&gt;" in text
    assert text.count("-->") == 1  # only the timing line; not the title, not the cue text
    assert parse_webvtt(text)[0][2] == "Salt & pepper <3 --> here."


def test_tiny_takes_still_give_valid_cues(script):
    p = plan(script, "en-GB")
    # a take of 3 samples (under a millisecond) and one of 2 ms with two sentences
    lengths = [int(SR * 0.002), 3] + [SR * 2] * (len(p.takes) - 2)
    p, tl = make(script, lengths=lengths)
    cues = parse_webvtt(webvtt(p, tl))
    assert all(e > s for s, e, _ in cues)
    assert all(s1 >= e0 for (_, e0, _), (s1, _, _) in zip(cues, cues[1:]))
    assert all(owner(c, tl) is not None for c in cues)


def test_parse_webvtt_reads_ids_settings_and_notes():
    text = ("\ufeffWEBVTT\r\n\r\nNOTE a note\r\n\r\nintro\r\n00:01.500 --> 00:02.000 align:start\r\n"
            "<v Narrator>Hello</v> &amp; welcome\r\nsecond line\r\n\r\n01:00:00.000 --> 01:00:01.250\r\nBye\r\n")
    assert parse_webvtt(text) == [(1.5, 2.0, "Hello & welcome\nsecond line"), (3600.0, 3601.25, "Bye")]
    with pytest.raises(ValueError):
        parse_webvtt("1\n00:00:01.000 --> 00:00:02.000\nx\n")


# ------------------------------------------------------------------------------------------------
# Timing inside a take, from its audio


def _bursts(*parts: tuple[str, float], sr: int) -> np.ndarray:
    """('s', seconds) of speech-like noise and ('q', seconds) of silence, in turn."""
    rng = np.random.default_rng(3)
    return np.concatenate([(0.2 * rng.standard_normal(int(sec * sr)) if kind == "s" else np.zeros(int(sec * sr)))
                           for kind, sec in parts]).astype(np.float32)


def test_speech_gaps_finds_the_pauses_between_words_not_the_closures():
    sr = 8000
    clip = _bursts(("q", 0.3), ("s", 1.0), ("q", 0.45), ("s", 0.6), ("q", 0.05), ("s", 0.5), ("q", 0.2),
                   ("s", 0.8), ("q", 0.5), sr=sr)
    # 10 ms frames: a pause is found to the frame; the 50 ms closure is no pause; the silence
    # before the first sound and after the last are not inside the take
    assert speech_gaps(clip, sr=sr) == [(int(1.3 * sr), int(1.75 * sr)), (int(2.9 * sr), int(3.1 * sr))]
    assert speech_gaps(np.zeros(sr, np.float32), sr=sr) == []


def test_cues_inside_a_take_start_where_their_words_do(tmp_path):
    """The characters put the second sentence's start mid-word; the take's audio has a full
    stop's pause later, and a comma's earlier: the cue starts where the speech does after the
    longer pause (QA: the shipped track's cues inside takes were up to 0.53 s early or late)."""
    sr = 8000
    path = tmp_path / "timing.yaml"
    path.write_text("title: T\nlocales: [en-GB]\nlead_in: 1s\ntail: 0s\nsections:\n"
                    "  - text: Breathe in slowly now, and out. Rest.\n", encoding="utf-8")
    p = plan(load_script(path), "en-GB")
    clip = _bursts(("s", 1.0), ("q", 0.22), ("s", 1.4), ("q", 0.45), ("s", 1.5), sr=sr)   # "Rest." said slowly
    tl = build_timeline(p, [clip.size], sr=sr)
    gaps = [speech_gaps(clip, sr=sr)]
    start = tl.takes[0].start
    plain = cues(p, tl)
    timed = cues(p, tl, gaps=gaps)
    assert [c[2] for c in plain] == [c[2] for c in timed] == ["Breathe in slowly now, and out.", "Rest."]
    # by characters the boundary falls 0.87 s into the last word (31 of 36 characters of 4.57 s)
    assert plain[1][0] - (start + int(3.07 * sr)) * 1000 // sr == pytest.approx(870, abs=10)
    assert timed[1][0] == timed[0][1] == (start + int(3.07 * sr)) * 1000 // sr   # the last word's onset
    assert timed[0][0] == plain[0][0] and timed[1][1] == plain[1][1]             # the take's ends hold
    vtt = parse_webvtt(webvtt(p, tl, gaps=gaps))
    assert vtt[1][0] == pytest.approx(1.0 + 3.07, abs=0.001)


def test_a_boundary_with_no_pause_near_stays_where_the_characters_put_it():
    # bounds at 1 s and 2 s, one pause near the second only: the first stays, order holds
    sr = 1000
    assert _snap([1000, 2000], [(2300, 2600)], sr=sr) == [1000, 2600]
    assert _snap([1000, 2000], [], sr=sr) == [1000, 2000]
    assert _snap([1000, 2000], [(5000, 5400)], sr=sr) == [1000, 2000]   # beyond reach (1.2 s)


def test_punctuation_alone_never_gets_a_cue_of_its_own():
    """A unit with nothing to read joins the one before it (or, first, the one after): a lone '.'
    at a take's start had a cue of its own, and timed by the take's pauses it pushed every cue
    after it a sentence late (QA)."""
    from calmplace.captions import _with_words

    assert _with_words([".", "Breathe in slowly.", "…", "Then out."]) == [". Breathe in slowly. …", "Then out."]
    assert _with_words(["...", "!"]) == ["... !"]
    assert _with_words([]) == []

from __future__ import annotations

import numpy as np
import pytest

from calmplace.script import apply_spelling
from calmplace.units import db_to_gain, format_clock, format_seconds_spoken, gain_to_db, parse_duration


@pytest.mark.parametrize("text, seconds", [
    (2.5, 2.5), (3, 3.0), ("2.5", 2.5), ("500ms", 0.5), ("3s", 3.0), ("1.5s", 1.5), ("2m", 120.0),
    ("2min", 120.0), ("1m30s", 90.0), ("1M30S", 90.0), ("2MIN", 120.0), (".5s", 0.5), ("1m500ms", 60.5),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize("bad", ["3ss", "s", "", "1.5.2s", "3 s s", "-2s", -1, True, None, "1h", "30s1m2"])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_db_gain_round_trip():
    assert db_to_gain(-6.0) == pytest.approx(0.501187, rel=1e-6)
    arr = np.array([-20.0, 0.0, 6.0])
    assert np.allclose(gain_to_db(db_to_gain(arr)), arr)
    assert gain_to_db(0.0) == -200.0  # silence is floored, not -inf


def test_spoken_and_clock_formats():
    assert format_seconds_spoken(10) == "10 seconds"
    assert format_seconds_spoken(1) == "1 second"
    assert format_seconds_spoken(90) == "1 minute 30 seconds"
    assert format_seconds_spoken(120) == "2 minutes"
    assert format_seconds_spoken(1.5) == "1.5 seconds"
    assert format_seconds_spoken(0.5) == "500 milliseconds"
    assert format_clock(0) == "0:00"
    assert format_clock(125.9) == "2:05"   # floored: a heading never announces a time after its start
    assert format_clock(3725) == "1:02:05"


def test_spelling_whole_words_and_case():
    table = {"colour": "color", "favourite": "favorite", "centre": "center"}
    assert apply_spelling("Colour, colour, COLOUR and colourful", table) == "Color, color, COLOR and colourful"
    assert apply_spelling("the centre's favourite", table) == "the center's favorite"
    assert apply_spelling("nothing here", {}) == "nothing here"


def test_spelling_keeps_the_texts_case_whatever_the_tables():
    """QA: `Gate: Gateway` turned "a gate" into "a Gateway" mid-sentence. An entry written
    capitalised follows the text's case; capitals of the replacement's own stay."""
    assert apply_spelling("a gate, Gate, GATE", {"Gate": "Gateway"}) == "a gateway, Gateway, GATEWAY"
    assert apply_spelling("the tv and the ipad", {"tv": "TV", "ipad": "iPad"}) == "the TV and the iPad"
    assert apply_spelling("watch tv", {"TV": "television"}) == "watch television"
    # regression QA: a name with capitals inside stays as written for a lowercase word
    assert apply_spelling("mcdonald, McDonald, MCDONALD", {"McDonald": "MacDonald"}) == \
        "MacDonald, MacDonald, MACDONALD"


def test_os_problem_names_the_folder_that_takes_no_file(tmp_path):
    """Regression QA: plot --out /proc/x.png said '/proc/.x.png.<random>.tmp: no such folder', naming
    a temp file the user never asked for, in a folder that exists."""
    import errno

    from calmplace.errors import os_problem

    there = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / ".x.png.abc123.tmp"))
    assert os_problem(there) == f"{tmp_path}: new files cannot be made there"
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "gone" / "x.png"))
    assert os_problem(gone) == f"{tmp_path / 'gone' / 'x.png'}: no such folder"
    assert os_problem(PermissionError(errno.EACCES, "Permission denied"), path=False) == "permission denied"

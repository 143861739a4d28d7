"""Unit converters, kept in one place (librosa's core/convert.py habit)."""

from __future__ import annotations

import math
import re

import numpy as np


def db_to_gain(db: float | np.ndarray) -> float | np.ndarray:
    """Decibels to a linear amplitude factor."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 20.0) if isinstance(db, np.ndarray) else 10.0 ** (db / 20.0)


def gain_to_db(gain: float | np.ndarray, *, floor_db: float = -200.0) -> float | np.ndarray:
    """Linear amplitude factor to decibels, floored so that silence is finite."""
    g = np.maximum(np.abs(np.asarray(gain, dtype=np.float64)), 10.0 ** (floor_db / 20.0))
    out = 20.0 * np.log10(g)
    return out if isinstance(gain, np.ndarray) else float(out)


def seconds_to_samples(seconds: float, *, sr: int) -> int:
    """Seconds to a whole number of samples, rounded to the nearest sample."""
    return int(round(seconds * sr))


def samples_to_seconds(n_samples: int, *, sr: int) -> float:
    return n_samples / sr


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|min|m|s)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}
# units as people write them out, for hints ("3 seconds": did you mean 3s)
UNIT_WORDS = {"millisecond": "ms", "milliseconds": "ms", "msec": "ms", "msecs": "ms", "second": "s", "seconds": "s",
              "sec": "s", "secs": "s", "minute": "m", "minutes": "m", "mins": "m"}


def parse_duration(value: object) -> float:
    """A contract duration to seconds: a bare number, or number-unit parts (`1m30s`, `500ms`, `2min`).

    A bare number in a string is read as a decimal (`010` is 10 s); the other ways YAML 1.1 writes
    numbers (`0b11`, `0x10`, `0o7`, `1:30`, `.nan`, `.inf`) are refused. Raises ValueError with a
    message fit for an author.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 3s, 500ms or 1m30s, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration: use a number of seconds such as 3 or 2.5")
        if value < 0:
            raise ValueError(f"a duration cannot be negative ({value})")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 3s, 500ms or 1m30s, got {value!r}")
    text = value.strip()
    if re.fullmatch(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)", text):
        seconds = float(text)
        if seconds < 0:
            raise ValueError(f"a duration cannot be negative ({text})")
        return seconds + 0.0  # -0 → 0
    if re.fullmatch(r"[-+]?0[box][0-9a-f_]+", text, re.IGNORECASE):
        raise ValueError(f"{value!r} is not a duration: write seconds as a decimal number (3, 2.5), "
                         f"not in binary, octal or hexadecimal")
    if re.fullmatch(r"[-+]?\d[\d_]*(?::[0-5]?\d)+(?:\.\d*)?", text):
        raise ValueError(f"{value!r} is not a duration: write minutes and seconds as e.g. 1m30s, not 1:30")
    if re.fullmatch(r"[-+]?\.(?:nan|inf)", text, re.IGNORECASE):
        raise ValueError(f"{value!r} is not a duration: use a number of seconds such as 3 or 2.5")
    pos, total, parts = 0, 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
        pos, parts = m.end(), parts + 1
    if parts == 0 or pos != len(text):
        raise ValueError(f"{value!r} is not a duration: "
                         f"{duration_hint(text) or 'use e.g. 3s, 1.5s, 500ms, 2m, 2min or 1m30s'}")
    return total


def duration_hint(text: str) -> str | None:
    """What to write instead of a text that is no duration, for the mistakes that have a fix of
    their own (QA: `2 s`, `-5s` and `1h` were told only the general form); None for the rest."""
    text = text.strip()
    if text.startswith("-") and _is_duration(text[1:]):
        return "a duration cannot be negative"
    joined = re.sub(r"\s+", "", text)
    if joined != text and joined and _is_duration(joined):
        return f"did you mean {joined}? (no spaces inside a duration)"
    if re.fullmatch(r"\d+(?:\.\d+)?\s*(?:h|hr|hrs|hours?)", text, re.IGNORECASE):
        return "hours are not a unit here: use minutes (a pause lasts at most 10m)"
    # units in words, as a person says them (QA: `3 seconds` got only the general form)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text, re.IGNORECASE)
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*[a-z]+\s*(?:and\s*)?)+", text, re.IGNORECASE) \
            and all(u.lower() in UNIT_WORDS or u.lower() in _UNIT_SECONDS for _, u in parts):
        fixed = "".join(f"{n}{UNIT_WORDS.get(u.lower(), u.lower())}" for n, u in parts)
        if _is_duration(fixed):
            return f"did you mean {fixed}?"
    return None


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def format_seconds_spoken(seconds: float) -> str:
    """A duration as a person reads it: '10 seconds', '1 minute 30 seconds', '500 milliseconds'."""
    if seconds < 1.0:
        ms = int(round(seconds * 1000))
        return f"{ms} millisecond{'s' if ms != 1 else ''}"
    whole = round(seconds, 1)
    minutes, secs = divmod(whole, 60)
    minutes = int(minutes)
    secs_text = f"{secs:g}"
    parts = []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if secs or not minutes:
        parts.append(f"{secs_text} second{'s' if secs != 1 else ''}")
    return " ".join(parts)


def format_clock(seconds: float) -> str:
    """m:ss (or h:mm:ss) for section start times printed in the PDF."""
    total = int(seconds)  # floor: a section that starts at 1:59.6 is announced at 1:59, never late
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

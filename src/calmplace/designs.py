"""Filter designs made with scipy.signal once, when calmplace is written, and looked up at build time.

The built-in soundscapes and the meter use a few dozen fixed filters (Butterworth band edges, a
half-band interpolator, the K-weighting...), each a function of constants and the sample rate.
Designing them needs `scipy.signal`, whose import costs 1.1-1.6 CPU-s here: more than all the
designs it would make, paid at the start of every build while the takes are spoken. So a function
marked `@tabled` looks its result up in `designs.json` (what scipy gave for those arguments, to the
bit) and designs it only for arguments the table does not hold (another sample rate): the same
numbers either way, at the cost of the import then.

`python tools/designs.py` rewrites the table: it makes every built-in soundscape and the meter at
the sample rates in `RATES` and keeps every design they asked for. A test checks that each entry
is what scipy gives now, and that building needs no design outside the table.
"""

from __future__ import annotations

import ast
import functools
import json
import threading
from pathlib import Path
from typing import Callable

import numpy as np

TABLE_PATH = Path(__file__).with_name("designs.json")
RATES = (32000, 44100, 48000)   # the MPEG-1 Layer III sample rates (see mp3stream)

_lock = threading.Lock()
_table: dict[str, np.ndarray] | None = None
_recording: dict[str, dict] | None = None   # set by `recording()`: every design asked for


def _canonical(value):
    """Arguments as plain Python values, so their repr is a stable key (no np.float64(...))."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)


def key(name: str, args: tuple) -> str:
    return f"{name}{_canonical(args)!r}"


def _load() -> dict[str, np.ndarray]:
    global _table
    with _lock:
        if _table is None:
            _table = {e["key"]: np.array(e["values"], dtype=e["dtype"]).reshape(e["shape"])
                      for e in (entries() if TABLE_PATH.is_file() else [])}
        return _table


def tabled(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """`func(*args)` (positional arguments only; it returns a float array) from the table when the
    table holds it, else made by calling it. The caller gets its own copy."""
    name = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def lookup(*args):
        k = key(name, args)
        found = _load().get(k)
        value = found.copy() if found is not None else func(*args)
        if _recording is not None:
            _recording[k] = {"key": k, "design": name, "args": repr(_canonical(args)),
                             "dtype": value.dtype.name, "shape": list(value.shape),
                             "values": [float(v) for v in value.ravel()]}
        return value

    return lookup


def recording() -> dict[str, dict]:
    """Design everything afresh with scipy from now on, whatever the table holds, and keep every
    design asked for (for tools/designs.py); returns the dict they are kept in."""
    global _recording, _table
    with _lock:
        _table = {}
    _recording = {}
    return _recording


def entries() -> list[dict]:
    """The table as stored: each entry's key, design (module.function), args (a literal), dtype,
    shape and values."""
    return json.loads(TABLE_PATH.read_text())


def args_of(entry: dict) -> tuple:
    return ast.literal_eval(entry["args"])

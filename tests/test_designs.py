"""The filter designs a build looks up (`calmplace.designs`) and the scipy kernels it loads on their
own (`calmplace.kernels`): the same numbers as scipy's public functions, bit for bit, and a build
that needs neither scipy.signal, scipy.ndimage nor pyloudnorm (their imports cost more CPU than
the rest of a build's start: see calmplace.kernels)."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, signal

from calmplace import designs, kernels
from calmplace.ambience import engine


def _design_afresh(entry: dict) -> np.ndarray:
    module, _, name = entry["design"].rpartition(".")
    func = inspect.unwrap(getattr(importlib.import_module(module), name))   # past lru_cache and the lookup
    return np.asarray(func(*designs.args_of(entry)))


def test_every_tabled_design_is_what_scipy_makes_now():
    table = designs._load()
    entries = designs.entries()
    assert len(entries) == len(table) > 50
    for entry in entries:
        assert designs.key(entry["design"], designs.args_of(entry)) == entry["key"]
        want = _design_afresh(entry)
        got = table[entry["key"]]
        assert got.dtype == want.dtype and got.shape == want.shape, entry["key"]
        assert np.array_equal(got, want), entry["key"]   # exact: JSON keeps every float64 bit (repr round-trips)


def test_a_design_the_table_lacks_is_made_with_scipy():
    assert not any("22050)" in k for k in designs._load())   # 22.05 kHz is not an MP3 rate we table
    got = engine.butter(2, 1234.0, "lowpass", sr=22050)
    assert np.array_equal(got, signal.butter(2, 1234.0, btype="lowpass", fs=22050, output="sos"))
    got = engine.butter(2, [300, 3000], "bandpass", sr=44100)   # from the table: the same as designing it
    assert np.array_equal(got, signal.butter(2, [300.0, 3000.0], btype="bandpass", fs=44100, output="sos"))
    got[0, 0] = 7.0   # each caller has its own copy
    assert engine.butter(2, [300, 3000], "bandpass", sr=44100)[0, 0] != 7.0


@pytest.mark.parametrize("f_hz", [350.0, 517.3, 1399.9, 4000.0])
def test_the_resonator_is_the_filter_tf2sos_gives(f_hz):
    """Computed from its formula, not through the roots and back: the same filter to float64
    rounding (tf2sos's round trip moves coefficients by a few ulps; 1e-12 is far above that and
    far below anything audible)."""
    w0 = 2 * np.pi * f_hz / 11025
    alpha = np.sin(w0) / 10
    b, a = np.array([alpha, 0.0, -alpha]), np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    got = engine.resonator(f_hz, 5.0, sr=11025)
    assert got.shape == (1, 6)
    np.testing.assert_allclose(got, signal.tf2sos(b / a[0], a / a[0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_sosfilt_kernel_gives_scipys_numbers(dtype):
    rng = np.random.default_rng(3)
    sos = signal.butter(4, [200, 3000], btype="bandpass", fs=44100, output="sos")
    x = rng.standard_normal((2, 10_000)).astype(dtype)
    zi = rng.standard_normal((sos.shape[0], 2, 2))
    got, state = kernels.sosfilt(sos, x, zi=zi)
    want, want_state = signal.sosfilt(sos, x, axis=-1, zi=zi)
    assert np.array_equal(got, want) and np.array_equal(state, want_state)
    assert np.array_equal(kernels.sosfilt(sos, x)[0], signal.sosfilt(sos, x, axis=-1))
    assert np.array_equal(kernels.sosfilt(sos, x[1])[0], signal.sosfilt(sos, x[1]))
    block = x.astype(np.float64)   # in place, a block at a time, the state carried: one pass's numbers
    z = np.zeros((2, sos.shape[0], 2))
    kernels.sosfilt_in_place(sos, block[:, :4000].copy(), z)
    tail = block[:, 4000:].copy()
    kernels.sosfilt_in_place(sos, tail, z)
    assert np.array_equal(tail, signal.sosfilt(sos, block, axis=-1)[:, 4000:])


def test_calmplaces_section_loop_is_compiled_and_loaded():
    """`pip install -e .` (the Makefile's set-up) compiles `_sos.c`; a build without it would give
    the same bytes, slower (about 0.5 s of a cold one-locale build here)."""
    assert set(kernels._fast_sos()) == {np.dtype(np.float32), np.dtype(np.float64)}, \
        "calmplace._sos did not compile or load: reinstall with a C compiler (`make` does)"


def test_a_section_loop_that_differs_from_scipys_kernel_by_one_bit_is_not_used():
    """A compiler that fused or reordered the arithmetic would change the outputs' last bits on
    that machine only: the loop is checked against scipy's kernel on a probe before it is used."""
    loops = kernels._load_fast_sos()
    assert kernels._agrees(loops)

    def one_ulp_off(sos, x, zi, run=loops[np.dtype(np.float64)]):
        run(sos, x, zi)
        x[-1, -1] = np.nextafter(x[-1, -1], np.inf)

    assert not kernels._agrees({**loops, np.dtype(np.float64): one_ulp_off})


def _scipy_kernel(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    kernels._extension("signal", "_sosfilt")._sosfilt(sos, x, zi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sections", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_calmplaces_section_loop_gives_scipys_kernels_numbers_bit_for_bit(dtype, sections, channels):
    """The same operations in the same order as scipy's kernel, so the same bits: on noise, from a
    state that is not zero, carried over two calls; and on an impulse ringing down through the
    subnormal numbers (no flush to zero either way). Every section count (the loop has one path
    per count up to 4, another beyond) and an odd channel out (filtered alone)."""
    rng = np.random.default_rng(sections * 10 + channels)
    sos = signal.butter(2 * sections, [200, 3000], btype="bandpass", fs=44100, output="sos")
    sos = np.ascontiguousarray(sos[:sections], dtype=dtype)
    noise = (rng.standard_normal((channels, 20_000)) * 0.3).astype(dtype)
    impulse = np.zeros((channels, 400_000), dtype=dtype)
    impulse[:, 0] = 1.0
    for x in (noise, impulse):
        state = (rng.standard_normal((channels, sections, 2)) * 0.01).astype(dtype) if x is noise \
            else np.zeros((channels, sections, 2), dtype=dtype)
        want, want_state = x.copy(), state.copy()
        _scipy_kernel(sos, want, want_state)
        head, tail, got_state = x[:, :7001].copy(), x[:, 7001:].copy(), state.copy()
        kernels.sosfilt_in_place(sos, head, got_state)   # two calls, the state carried
        kernels.sosfilt_in_place(sos, tail, got_state)
        got = np.concatenate([head, tail], axis=1)
        assert got.tobytes() == want.tobytes() and got_state.tobytes() == want_state.tobytes()
    assert np.any((impulse == 0) & (want != 0) & (np.abs(want) < np.finfo(dtype).tiny)), "no subnormals reached"


@pytest.mark.parametrize("size", [1, 2, 7, 64])
def test_the_ndimage_kernels_give_scipys_numbers(size):
    rng = np.random.default_rng(size)
    x = np.where(rng.random(3000) < 0.2, rng.standard_normal(3000), 0.0)
    assert np.array_equal(kernels.maximum_filter1d(x, size), ndimage.maximum_filter1d(x, size=size, mode="constant"))
    assert np.array_equal(kernels.uniform_filter1d(x, size), ndimage.uniform_filter1d(x, size, mode="constant"))


_PROBE = """
import json, sys
from pathlib import Path
from calmplace import designs, kernels
kernels.sosfilt_in_place   # loaded before scipy.signal is: the package must still import and work
from calmplace.cli import main
from calmplace.ambience import BUILTINS, open_bed
try:
    main(["-q", "build", "--fake-speech", "-j", "1"], standalone_mode=False)
except SystemExit as exc:
    assert not exc.code, exc.code
assert json.loads(Path("build/manifest.json").read_text())
if True:
    heavy = sorted(m for m in sys.modules if m.startswith(("scipy.signal", "scipy.ndimage", "pyloudnorm"))
                   and m not in ("scipy.signal._sosfilt", "scipy.ndimage._nd_image"))
    for sr in designs.RATES:
        for sound in BUILTINS:
            open_bed(sound, sr=sr, seed=11, ambience_dir=Path("ambience")).read(sr // 2)
    heavy_beds = sorted(m for m in sys.modules if m.startswith(("scipy.signal", "scipy.ndimage", "pyloudnorm"))
                        and m not in ("scipy.signal._sosfilt", "scipy.ndimage._nd_image"))
    print(json.dumps({"build": heavy, "beds": heavy_beds}))
    import scipy.signal, scipy.ndimage
    print(scipy.signal.sosfilt([[1, 0, 0, 1, -0.5, 0]], [1.0, 0, 0]).tolist())
"""


def test_a_build_needs_neither_scipy_signal_ndimage_nor_pyloudnorm(project: Path):
    """A fake-speech build of both locales in one process (-j 1), then every built-in bed at every
    tabled rate with another seed: nothing asks for a design the table lacks. Then scipy.signal
    imports and runs with its kernel already loaded by calmplace."""
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=project, capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert json.loads(out[0]) == {"build": [], "beds": []}, \
        "a design is missing from calmplace/designs.json: run `.venv/bin/python tools/designs.py`"
    assert out[1] == "[1.0, 0.5, 0.25]"


_RACE = """
import sys, threading, time
import numpy as np
import scipy
from calmplace import kernels
sys.setswitchinterval(1e-6)   # threads take turns as often as they can: inside the loading too
failures = []

def call(k):
    time.sleep(k * 20e-6)   # arriving at every moment of another thread's loading (about 1 ms)
    try:
        kernels.sosfilt(np.array([[1.0, 0, 0, 1, -0.5, 0]]), np.ones(4))
        kernels.maximum_filter1d(np.ones(4), 3)
    except Exception as exc:
        failures.append(repr(exc))

threads = [threading.Thread(target=call, args=(k,)) for k in range(64)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(set(failures)))
"""


def test_threads_loading_the_kernels_at_once_all_get_them():
    """64 threads ask for both kernels, 20 µs apart, in a fresh interpreter, ten times: no thread
    may be handed a module another thread has not finished loading. The build's bed and mix
    threads do this; 2 cold builds of 3 failed with "module 'scipy.signal._sosfilt' has no
    attribute '_sosfilt'" when the lock-free lookup read sys.modules (this test failed then too)."""
    for _ in range(10):
        out = subprocess.run([sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=60,
                             check=True).stdout.strip()
        assert out == "[]"

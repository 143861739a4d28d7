"""scipy's compiled filter kernels, without importing `scipy.signal` or `scipy.ndimage`.

A build filters with three C kernels of scipy's: the second-order-section recursion behind
`scipy.signal.sosfilt` and the running maximum and mean behind `scipy.ndimage.maximum_filter1d`
and `uniform_filter1d`. Importing those packages costs far more than the kernels: `import
scipy.signal` took 1.1-1.6 CPU-s here and `scipy.ndimage` 0.5 more (they pull in scipy.stats,
optimize, interpolate, linalg...), against about 0.03 s for loading the two extension modules
that hold the kernels. The build pays that import while its takes are spoken, on the CPU the
speech wants, and its bed cannot start before.

So the extension modules are loaded from their files directly and registered under their own
names: a later `import scipy.signal` finds them in `sys.modules` and uses them as its own. If that
ever fails (a scipy that moved them), the packages are imported the ordinary way: slower, the
same numbers. The wrappers below call the kernels exactly as scipy's public functions do, so
the numbers are the same bit for bit (tested against them).

The section filter has a faster loop of calmplace's own (`_sos.c`, compiled when the package is
installed): the same arithmetic, the same numbers bit for bit (tested), 2-2.5 times as fast on
stereo blocks. If it was not compiled, scipy's kernel does the work.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np

_LOCK = threading.Lock()
_LOADED: dict[str, ModuleType] = {}   # modules whose loading has finished (sys.modules has them earlier)
_MODE_CONSTANT = 4   # scipy.ndimage._ni_support._extend_mode_to_code("constant")


def _extension(package: str, name: str) -> ModuleType:
    """The extension module scipy.<package>.<name>, loaded without its package's __init__. Every
    kernel call asks for it, so once loaded it is found without taking the lock: in `_LOADED`, not
    in `sys.modules`, which holds a module from before its `exec_module` has run (a thread that
    found it there called a kernel the module did not have yet)."""
    full = f"scipy.{package}.{name}"
    module = _LOADED.get(full)
    if module is not None:
        return module
    with _LOCK:
        module = _LOADED.get(full) or _load(package, name, full)
        _LOADED[full] = module
        return module


def _load(package: str, name: str, full: str) -> ModuleType:
    """`_extension`'s loading, under its lock. A module `sys.modules` has already (`import
    scipy.signal` ran, or is running in another thread) comes from the import system, which
    waits for it to be complete."""
    if full not in sys.modules:
        try:
            import scipy

            folder = Path(scipy.__file__).parent / package
            path = next(p for suffix in importlib.machinery.EXTENSION_SUFFIXES
                        if (p := folder / f"{name}{suffix}").is_file())
            loader = importlib.machinery.ExtensionFileLoader(full, str(path))
            spec = importlib.util.spec_from_file_location(full, path, loader=loader)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            loader.exec_module(module)
            return module
        except Exception:  # noqa: BLE001 - any trouble: the ordinary import below
            sys.modules.pop(full, None)
    return importlib.import_module(full)


def sosfilt_in_place(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Filter x (C-contiguous (channels, n)) in place from state zi ((channels, sections, 2)); sos,
    x and zi of one dtype (float32 or float64). Returns zi, updated to the state after x.

    The kernel behind `scipy.signal.sosfilt`: the public function copies its input (to float64
    for float64 sections), moves the time axis last and makes it contiguous, then runs this on
    the copy. Code that filters long audio a block at a time hands it a block it owns instead.
    calmplace's own loop runs it when it can (`_fast_sos`); scipy's kernel otherwise."""
    run = _fast_sos().get(x.dtype)
    if (run is not None and sos.dtype == x.dtype and zi.dtype == x.dtype and x.ndim == 2 and sos.ndim == 2
            and sos.shape[1] == 6 and zi.shape == (x.shape[0], sos.shape[0], 2) and sos.flags.c_contiguous
            and x.flags.c_contiguous and x.flags.writeable and zi.flags.c_contiguous and zi.flags.writeable):
        run(sos, x, zi)
        return zi
    _extension("signal", "_sosfilt")._sosfilt(sos, x, zi)
    return zi


Loop = Callable[[np.ndarray, np.ndarray, np.ndarray], None]   # (sos, x, zi), x and zi filtered in place


@lru_cache(maxsize=1)
def _fast_sos() -> dict[np.dtype, Loop]:
    """calmplace's section loop (`_sos.c`) per dtype, if it was compiled, loads, and gives scipy's
    kernel's numbers on a probe (`_agrees`); else empty, and scipy's kernel does the work."""
    loops = _load_fast_sos()
    return loops if loops and _agrees(loops) else {}


def _load_fast_sos() -> dict[np.dtype, Loop]:
    """The loops of `_sos.c`, loaded with ctypes (which lets go of the GIL while they run)."""
    try:
        import ctypes

        spec = importlib.util.find_spec("calmplace._sos")
        if spec is None or not spec.origin:
            return {}
        library = ctypes.CDLL(spec.origin)
        p, size = ctypes.c_void_p, ctypes.c_ssize_t
        loops = {}
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            loop = getattr(library, f"calmplace_sos_{dtype.name}")
            loop.argtypes, loop.restype = [p, size, p, size, size, p], None

            def run(sos: np.ndarray, x: np.ndarray, zi: np.ndarray, loop=loop) -> None:
                loop(sos.ctypes.data, sos.shape[0], x.ctypes.data, x.shape[0], x.shape[1], zi.ctypes.data)

            loops[dtype] = run
        return loops
    except (ImportError, OSError, AttributeError):
        return {}


def _agrees(loops: dict[np.dtype, Loop]) -> bool:
    """Whether every loop gives scipy's kernel's numbers bit for bit on a probe: 1-5 sections, 1-3
    channels, from a state, on noise. `_sos.c` is compiled without fused multiply-adds or fast-math,
    but on a machine whose compiler did otherwise, the outputs would differ from every other
    machine's in their last bits; this keeps the bytes the same there (and the build slower)."""
    kernel = _extension("signal", "_sosfilt")._sosfilt
    rng = np.random.default_rng(1770)
    for dtype, loop in loops.items():
        for sections, channels in ((1, 2), (2, 2), (3, 2), (4, 2), (1, 1), (2, 1), (3, 3), (4, 1), (5, 2)):
            radius, angle = rng.uniform(0.5, 0.99, sections), rng.uniform(0.05, 3.0, sections)
            sos = np.column_stack([rng.uniform(-1.0, 1.0, (sections, 3)), np.ones(sections),
                                   -2.0 * radius * np.cos(angle), radius * radius]).astype(dtype)   # stable poles
            x = rng.standard_normal((channels, 1000)).astype(dtype)
            zi = (rng.standard_normal((channels, sections, 2)) * 0.1).astype(dtype)
            want, want_zi, got, got_zi = x.copy(), zi.copy(), x.copy(), zi.copy()
            kernel(sos, want, want_zi)
            loop(sos, got, got_zi)
            if got.tobytes() != want.tobytes() or got_zi.tobytes() != want_zi.tobytes():
                return False
    return True


def sosfilt(sos: np.ndarray, x: np.ndarray, *, zi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)` for float64 sections and (channels, n) or
    (n,) x, as a new float64 array, and the final state (zeros before x when zi is None; zi and
    the state in scipy's layout, (sections, channels, 2) or (sections, 2))."""
    sos = np.asarray(sos, dtype=np.float64)
    y = np.array(x, dtype=np.float64, order="C", ndmin=2)
    state = np.zeros((y.shape[0], sos.shape[0], 2)) if zi is None else \
        np.ascontiguousarray(np.asarray(zi, dtype=np.float64).reshape(sos.shape[0], -1, 2).transpose(1, 0, 2))
    sosfilt_in_place(sos, y, state)
    if np.ndim(x) == 1:
        return y[0], state[0]
    return y, state.transpose(1, 0, 2)


def maximum_filter1d(x: np.ndarray, size: int) -> np.ndarray:
    """`scipy.ndimage.maximum_filter1d(x, size, mode="constant")` for 1-D real x."""
    x = np.asarray(x)
    out = np.zeros(x.shape, dtype=x.dtype.name)
    _extension("ndimage", "_nd_image").min_or_max_filter1d(x, size, 0, out, _MODE_CONSTANT, 0.0, 0, 0)
    return out


def uniform_filter1d(x: np.ndarray, size: int) -> np.ndarray:
    """`scipy.ndimage.uniform_filter1d(x, size, mode="constant")` for 1-D real x."""
    x = np.asarray(x)
    out = np.zeros(x.shape, dtype=x.dtype.name)
    _extension("ndimage", "_nd_image").uniform_filter1d(x, size, 0, out, _MODE_CONSTANT, 0.0, 0)
    return out

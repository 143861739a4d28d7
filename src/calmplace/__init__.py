"""calmplace: guided-imagery scripts rendered to mastered audio, PDF scripts and captions."""

import os as _os

# calmplace parallelises itself (`--jobs`: worker processes, and threads inside a track); BLAS's own
# threads only spin beside them (measured: master() used 8.4 CPU-s for 4.5 s of wall time with
# OpenBLAS's default threads, 4.5 CPU-s with one). Set before numpy is first imported; a user's
# own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.6.0"

SR = 44_100  # 44.1 kHz: the contract's MP3 rate, used for every array inside the library

"""calmplace: guided-imagery scripts rendered to mastered audio, PDF scripts and captions."""

import os as _os

# calmplace parallelises itself (`--jobs`: worker processes, and threads inside a track); BLAS's own
# threads only spin beside them (measured: master() used 8.4 CPU-s for 4.5 s of wall time with
# OpenBLAS's default threads, 4.5 CPU-s with one). Set before numpy is first imported; a user's
# own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.7.0"

SR = 44_100  # 44.1 kHz: the contract's MP3 rate, used for every array inside the library

# Python's cyclic garbage collector while building (build._fewer_collections, and the render pool's
# forkserver): a first-generation pass every 20,000 allocations more than frees, not 700. A build
# allocates few objects that form cycles, but its imports (scipy, reportlab) make hundreds of
# thousands: by default 270 collections, 25 of them older generations and 2 of everything, took
# 0.18 s of one track's build here, and 0.05 s at this threshold
GC_GEN0_THRESHOLD = 20_000

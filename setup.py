"""The one compiled part of calmplace: `_sos.c`, a faster loop for scipy's second-order-section
filter (same numbers bit for bit). Optional: if it does not compile, calmplace uses scipy's own
kernel (calmplace.kernels)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "calmplace._sos", ["src/calmplace/_sos.c"],
    # no fused multiply-add, no fast-math: every product and sum rounds on its own, as in scipy's kernel
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
    optional=True,
)])

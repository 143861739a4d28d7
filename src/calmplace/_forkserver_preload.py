"""Imported first by the render pool's forkserver, and only there (`build._speak_and_render`).

While the forkserver imports the rendering modules (about 1.5 s), a Ctrl-C from the terminal
reaches it too, and it printed a KeyboardInterrupt traceback from inside scipy or numpy (QA). Here
SIGINT ends it at once, quietly; multiprocessing's forkserver then ignores SIGINT itself, and hands
this handler on to the workers it forks, so a worker interrupted with the build ends quietly too
(the build itself prints "Aborted!"). Never import this in the build's own process.

It also has the garbage collector run less often, as the build does (`GC_GEN0_THRESHOLD`), in the
forkserver's imports and in the workers it forks."""

from __future__ import annotations

import gc
import os
import signal

from . import GC_GEN0_THRESHOLD

gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _quit(signum, frame) -> None:   # noqa: ARG001 - a signal handler's signature
    os._exit(128 + signum)


if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:   # an ignored Ctrl-C stays ignored
    signal.signal(signal.SIGINT, _quit)

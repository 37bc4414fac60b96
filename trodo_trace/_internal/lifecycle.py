"""Process lifecycle hooks: flush at interpreter exit, reset in a forked child, flush when a
``multiprocessing`` child ends (it exits with ``os._exit``, which skips atexit), and flush on
``SIGTERM`` (whose default action skips atexit too).

The runtime installs its exit and after-fork functions here when it is built; this module knows
nothing of the runtime itself.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from .core.errors import internal_error

_at_exit: Callable[[], None] | None = None


def install(at_exit: Callable[[], None], after_fork_in_child: Callable[[], None]) -> None:
    """Run ``at_exit`` at interpreter exit and ``after_fork_in_child`` in a forked child (registered
    once per process), and hook ``multiprocessing`` children if it is loaded."""
    global _at_exit
    if _at_exit is None:
        _at_exit = at_exit
        atexit.register(at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=after_fork_in_child)
        _hook_sigterm()
    hook_multiprocessing()


def _hook_sigterm() -> None:
    """On ``SIGTERM`` (how orchestrators stop services) run the exit flush, then what was there
    before: the application's own handler, or the default action (the process still ends by the
    signal, exit status 143). Only from the main thread (Python delivers signals there); a
    ``SIG_IGN`` or a handler installed outside Python is left alone, and a handler the application
    installs later simply replaces this one (its normal exit then flushes through atexit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return
    if previous is signal.SIG_IGN or previous is None:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> object:
        if _at_exit is not None:
            try:
                _at_exit()
            except Exception:
                internal_error("SIGTERM flush")
        if callable(previous):
            return previous(signum, frame)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # the default action, as if we had not been here
        return None

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):  # pragma: no cover - not the main interpreter
        pass


class _Anchor:
    """A weakly referenceable object for ``multiprocessing.util.register_after_fork``."""


_MP_ANCHOR = _Anchor()
_mp_hooked = False


def hook_multiprocessing() -> None:
    """A ``multiprocessing`` child ends with ``os._exit`` (no atexit), but runs its finalizers: have
    each child register one that flushes (after multiprocessing clears the inherited ones)."""
    global _mp_hooked
    if _mp_hooked or "multiprocessing" not in sys.modules:
        return
    try:
        from multiprocessing import util

        util.register_after_fork(_MP_ANCHOR, _flush_when_process_ends)
        _mp_hooked = True
    except Exception:  # pragma: no cover - multiprocessing unusable
        internal_error("multiprocessing hook")


def _flush_when_process_ends(_anchor: object) -> None:
    from multiprocessing import util

    if _at_exit is not None:
        util.Finalize(None, _at_exit, exitpriority=100)

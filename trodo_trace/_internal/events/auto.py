"""Auto events: one ``server_error`` per uncaught exception.

``init(auto_events=True)`` wraps ``sys.excepthook``, ``threading.excepthook`` and the running
asyncio loop's exception handler (:func:`install_asyncio_handler` covers loops created later).
Each wrapper queues the event, calls the hook that was there before (so the traceback still
prints and the exit code is unchanged), then waits a bounded time for delivery. ``shutdown()``
puts the previous hooks back; a wrapper someone else has wrapped in turn cannot be unhooked, so
it is switched off and only passes through.

An exception is reported once: it is marked when reported, so stacked installations, or
``capture_error`` followed by the same exception going uncaught, send one event. The run is
found from the exception itself (``decorators.record_error`` notes the run it escaped from),
since by the time a hook runs the context of the failed code is gone.
"""

from __future__ import annotations

import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from .. import runtime as runtime_mod
from ..core.errors import RAISE_INTERNAL, log_once
from .sink import current_sink
from .track import SERVER_GLOBAL, send_server_error

#: Longest a hook waits for the event to be delivered before letting the process go on (or die).
CRASH_FLUSH_TIMEOUT_S = 2.0


class _Installation:
    """Our hooks of one ``install()``; ``active`` turns them into pass-throughs."""

    def __init__(self) -> None:
        self.active = True
        self.previous_sys: Callable[..., Any] | None = None
        self.previous_threading: Callable[..., Any] | None = None
        self.sys_hook: Callable[..., Any] | None = None
        self.threading_hook: Callable[..., Any] | None = None


_lock = threading.RLock()
_installed: _Installation | None = None
#: loop -> (our handler, the loop's previous handler or None for the default)
_loops: weakref.WeakKeyDictionary[Any, tuple[Callable[..., Any], Callable[..., Any] | None]] = (
    weakref.WeakKeyDictionary()
)


def report(exc: BaseException, source: str, severity: str, tb: Any = None, **extra: Any) -> bool:
    """Queue a ``server_error`` (distinct id ``server_global``) for an uncaught exception.

    ``KeyboardInterrupt`` and other non-``Exception`` exits are not errors and are skipped.
    Never raises (an SDK failure is logged); ``True`` when an event was queued.
    """
    if not isinstance(exc, Exception):
        return False
    try:
        return send_server_error(exc, SERVER_GLOBAL, severity, {"source": source, **extra}, tb=tb)
    except Exception:
        _hook_failed("report")
        return False


def _deliver() -> None:
    """Wait (bounded) until queued events are delivered."""
    try:
        sink = current_sink()
        if sink is not None and not sink.closed:
            sink.flush(CRASH_FLUSH_TIMEOUT_S)
    except Exception:
        _hook_failed("deliver")


def _hook_failed(where: str) -> None:
    """An SDK failure inside an exception hook: never raise out of the hook."""
    if RAISE_INTERNAL:  # the test suite: make it visible on stderr
        traceback.print_exc()
    log_once("autoevents:" + where, "trodo_trace: auto events failed in %s", where, exc_info=True)


# -- sys / threading -------------------------------------------------------------------------
def _make_sys_hook(state: _Installation) -> Callable[..., Any]:
    def trodo_excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
        reported = (
            state.active and isinstance(exc, BaseException) and report(exc, "sys.excepthook", "critical", tb)
        )
        previous = state.previous_sys or sys.__excepthook__
        try:
            previous(exc_type, exc, tb)
        finally:
            if reported:
                _deliver()

    return trodo_excepthook


def _make_threading_hook(state: _Installation) -> Callable[..., Any]:
    def trodo_threading_excepthook(args: Any) -> None:
        exc = args.exc_value
        reported = False
        if state.active and isinstance(exc, BaseException):
            thread = args.thread
            extra = {"thread_name": thread.name} if thread is not None else {}
            reported = report(exc, "threading.excepthook", "error", args.exc_traceback, **extra)
        previous = state.previous_threading or threading.__excepthook__
        try:
            previous(args)
        finally:
            if reported:
                _deliver()

    return trodo_threading_excepthook


def install() -> None:
    """Install the process-wide hooks, and the handler of the running asyncio loop (idempotent)."""
    global _installed
    with _lock:
        if _installed is None:
            state = _Installation()
            state.previous_sys = sys.excepthook
            state.previous_threading = threading.excepthook
            state.sys_hook = _make_sys_hook(state)
            state.threading_hook = _make_threading_hook(state)
            sys.excepthook = state.sys_hook
            threading.excepthook = state.threading_hook
            _installed = state
    asyncio = sys.modules.get("asyncio")  # a running loop means asyncio is already imported
    if asyncio is not None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        install_asyncio_handler(loop)


def uninstall() -> None:
    """Put back the hooks found at install time (ours are switched off if wrapped since)."""
    global _installed
    with _lock:
        state = _installed
        _installed = None
        if state is not None:
            state.active = False
            if sys.excepthook is state.sys_hook:
                sys.excepthook = state.previous_sys or sys.__excepthook__
            if threading.excepthook is state.threading_hook:
                threading.excepthook = state.previous_threading or threading.__excepthook__
        for loop, (handler, previous) in list(_loops.items()):
            _loops.pop(loop, None)
            if not loop.is_closed() and loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)
            handler.active = False  # type: ignore[attr-defined]


def installed() -> bool:
    """Whether the process-wide hooks are installed."""
    return _installed is not None


# -- asyncio ---------------------------------------------------------------------------------
def install_asyncio_handler(loop: Any = None) -> None:
    """Report exceptions nobody retrieved from tasks and callbacks of ``loop`` as ``server_error``.

    ``init(auto_events=True)`` does this for the loop running at that moment; call this for a loop
    created afterwards (for instance at the top of the coroutine given to ``asyncio.run``). The
    loop's previous handler still runs (by default it logs the traceback); ``shutdown()`` puts it
    back. Installing twice on the same loop changes nothing.

    Args:
        loop: The loop; by default the running one.

    Raises:
        RuntimeError: no ``loop`` given and no loop running in this thread.

    Example:
        >>> import asyncio, trodo_trace as trodo
        >>> async def main():
        ...     trodo.install_asyncio_handler()
        ...     ...  # tasks whose exceptions nobody awaits are reported
        >>> asyncio.run(main())
    """
    import asyncio

    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "install_asyncio_handler() needs a running event loop, or the loop as argument"
            ) from None
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
    with _lock:
        current = loop.get_exception_handler()
        entry = _loops.get(loop)
        if entry is not None and entry[0] is current:
            return
        previous = current

        def trodo_asyncio_handler(loop: Any, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            reported = False
            if trodo_asyncio_handler.active and isinstance(exc, BaseException):  # type: ignore[attr-defined]
                extra = {"asyncio_message": str(context.get("message") or "")}
                reported = report(exc, "asyncio", "error", **extra)
            try:
                if previous is not None:
                    previous(loop, context)
                else:
                    loop.default_exception_handler(context)
            finally:
                if reported:
                    _deliver()

        trodo_asyncio_handler.active = True  # type: ignore[attr-defined]
        loop.set_exception_handler(trodo_asyncio_handler)
        _loops[loop] = (trodo_asyncio_handler, previous)


# -- lifecycle hooks -------------------------------------------------------------------------
def _on_init(runtime: Any) -> None:
    if runtime.config.auto_events:
        install()
    else:
        uninstall()


def _on_shutdown(runtime: Any) -> None:
    uninstall()


runtime_mod.INIT_HOOKS.append(_on_init)
runtime_mod.SHUTDOWN_HOOKS.append(_on_shutdown)

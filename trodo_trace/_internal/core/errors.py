"""The guard that keeps telemetry failures away from user code."""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger("trodo_trace")

#: Set by the test suite (``TRODO_RAISE_INTERNAL=1``) so internal bugs surface instead of being logged.
RAISE_INTERNAL = os.environ.get("TRODO_RAISE_INTERNAL", "") == "1"

_seen: set[str] = set()
_seen_lock = threading.Lock()


def log_once(
    key: str, message: str, *args: object, level: int = logging.WARNING, exc_info: bool = False
) -> None:
    """Log ``message`` the first time ``key`` is seen in this process."""
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    logger.log(level, message, *args, exc_info=exc_info)


def internal_error(where: str) -> None:
    """Report an SDK failure (call from an ``except`` block): logged once per place, never raised.

    Under the test suite (``RAISE_INTERNAL``) the exception is re-raised so bugs are seen.
    """
    if RAISE_INTERNAL:
        raise
    log_once(
        "internal:" + where, "trodo_trace: internal error in %s (tracing continues)", where, exc_info=True
    )

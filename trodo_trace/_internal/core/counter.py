"""A thread-safe event counter that costs one C call to increment.

``increment`` is the ``__next__`` of an ``itertools.count``: a single C call, atomic under the GIL,
with no Python frame and no lock on the hot path. Reading is rare (``stats()``, ``flush()``), so it
takes a lock, advances the count once more and subtracts the advances made by earlier reads. Only
public APIs are used (no ``__reduce__``, which Python 3.12 deprecates for ``itertools`` objects).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable


class Counter:
    """Counts events from any thread; ``increment()`` is cheap, ``value`` is exact."""

    __slots__ = ("_count", "_lock", "_reads", "increment")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._lock = threading.Lock()
        self._reads = 0
        self.increment: Callable[[], int] = self._count.__next__

    @property
    def value(self) -> int:
        """How many times ``increment()`` was called so far."""
        with self._lock:
            advanced = next(self._count)
            reads = self._reads
            self._reads = reads + 1
        return advanced - reads

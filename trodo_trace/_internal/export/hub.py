"""The spool side of OTLP delivery, shared by every signal of a runtime.

A :class:`Hub` holds the disk spool, one sender per signal, and whether each signal's collector is
treated as down. Its drain sends spooled files oldest first — this process's own, and those left
by processes that are gone — and credits each file to the delivery that wrote it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..core.errors import internal_error
from .otlp_transport import SIGNALS, Attempt, Sender, count_items
from .spool import Spool, SpoolFile, pid_alive

_RESCAN_S = 5.0
#: How long one opportunistic drain may keep starting new sends.
DRAIN_BUDGET_S = 1.0
_STALE_OWNER_NS = 10 * 60 * 10**9


class Delivery(Protocol):
    """What the hub asks of a signal's delivery (:class:`~.delivery.SignalDelivery`), which registers
    itself in :attr:`Hub.deliveries`."""

    stopping: bool

    def spool_resolved(self, count: int, rejected: int, attempt: Attempt) -> None: ...

    def note_error(self, attempt: Attempt) -> None: ...

    def log_rejection(self, attempt: Attempt, count: int) -> None: ...


def new_owner() -> str:
    """This process's (and this runtime's) mark on the spool files it writes."""
    return f"{os.getpid():x}x{secrets.token_hex(4)}"


class _Circuit:
    """Whether a signal's collector is treated as down, and until when.

    ``down_until`` is our own backoff (a flush may try before it); ``hold_until`` is what the
    collector asked for with ``Retry-After`` (nothing is sent before it)."""

    __slots__ = ("down_until", "failures", "hold_until")

    def __init__(self) -> None:
        self.down_until = 0.0
        self.hold_until = 0.0
        self.failures = 0

    def is_open(self, force: bool = False) -> bool:
        now = time.monotonic()
        return self.hold_until > now or (not force and self.down_until > now)

    def fail(self, retry_after: float | None) -> None:
        self.failures += 1
        now = time.monotonic()
        if retry_after is not None:
            self.hold_until = now + retry_after
            self.down_until = now + retry_after
        else:
            delay = min(30.0, 0.5 * 2 ** min(self.failures - 1, 8)) * random.uniform(0.8, 1.2)
            self.down_until = now + delay

    def succeed(self) -> None:
        self.failures = 0
        self.down_until = 0.0
        self.hold_until = 0.0


class Hub:
    """Per runtime: the spool, one sender per signal, and the drain that sends spooled files."""

    def __init__(
        self,
        spool: Spool | None,
        sender_factory: Callable[[str], Sender],
        *,
        attempt_timeout_s: float,
        owner: str,
    ):
        self.spool = spool
        self.owner = owner
        self.attempt_timeout_s = attempt_timeout_s
        self._sender_factory = sender_factory
        self.deliveries: dict[str, Delivery] = {}
        self._init_state()

    def _init_state(self) -> None:
        self._pid = os.getpid()
        self._senders: dict[str, Sender] = {}
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._drain_requested = 0
        self._drain_done = 0
        self._drain_deadline = 0.0
        self._next_scan = 0.0
        self.recovered = 0
        self.recovered_rejected = 0

    def after_fork_in_child(self) -> None:
        """New owner mark; senders (with the parent's sockets) are rebuilt on first use. Called by
        each signal's delivery; only the first call in a process does anything."""
        if self._pid == os.getpid():
            return
        self.owner = new_owner()
        if self.spool is not None:
            self.spool.after_fork_in_child(self.owner)
        self._init_state()

    def sender(self, signal: str) -> Sender:
        sender = self._senders.get(signal)
        if sender is None:
            with self._lock:
                sender = self._senders.get(signal)
                if sender is None:
                    sender = self._senders[signal] = self._sender_factory(signal)
        return sender

    def circuit(self, signal: str) -> _Circuit:
        circuit = self._circuits.get(signal)
        if circuit is None:
            circuit = self._circuits.setdefault(signal, _Circuit())
        return circuit

    def close(self) -> None:
        for sender in list(self._senders.values()):
            sender.close()

    # -- draining the spool ------------------------------------------------------------------
    def backlog(self) -> bool:
        return self.spool is not None and self.spool.has_files()

    def idle(self) -> None:
        """Called by a pipeline's worker between batches: answer a flush, or send what waits."""
        if self.spool is None:
            return
        if self._drain_requested != self._drain_done:
            with self._cond:
                seq, deadline = self._drain_requested, self._drain_deadline
            self.drain(deadline, force=True)
            with self._cond:
                self._drain_done = max(self._drain_done, seq)
                self._cond.notify_all()
            return
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + _RESCAN_S
            self.spool.files()
        if self.spool.has_files():
            self.drain(now + DRAIN_BUDGET_S)

    def request_drain(self, deadline: float, wake: Callable[[], bool]) -> bool:
        """Ask a worker for a drain that ignores the down-collector backoff; wait for it until
        ``deadline``. ``wake`` wakes a worker (``False`` when none runs: then drain here)."""
        with self._cond:
            self._drain_requested += 1
            seq = self._drain_requested
            self._drain_deadline = max(self._drain_deadline, deadline)
        if not wake():
            self.drain(deadline, force=True)
            with self._cond:
                self._drain_done = max(self._drain_done, seq)
            return True
        with self._cond:
            while self._drain_done < seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True

    def drain(self, deadline: float, force: bool = False) -> None:
        """Send spooled files oldest first until ``deadline``, the spool is empty, or a signal's
        collector fails (its files wait for the next try)."""
        if self.spool is None or not self._drain_lock.acquire(blocking=False):
            return
        try:
            self._drain(deadline, force)
        except Exception:
            internal_error("spool drain")
        finally:
            self._drain_lock.release()

    def _drain(self, deadline: float, force: bool) -> None:
        """``force`` (a flush): try even a collector in backoff, and cut each send at ``deadline``.
        Otherwise ``deadline`` only stops new sends; each gets the full attempt timeout, so a slow
        collector is still reached."""
        assert self.spool is not None
        blocked: set[str] = set()
        alive: dict[int, bool] = {}
        for entry in self.spool.files():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            signal = entry.signal
            if signal in blocked or signal not in SIGNALS or not self._drainable(entry, alive):
                continue
            circuit = self.circuit(signal)
            if circuit.is_open(force):
                blocked.add(signal)
                continue
            delivery = self.deliveries.get(signal)
            if delivery is not None and delivery.stopping:
                continue
            with self.spool.claim(entry) as claim:
                if claim is None:
                    continue
                count = count_items(signal, claim.body)
                if count is None:  # not a request this SDK wrote: never send it
                    claim.delete()
                    continue
                if count != entry.count:
                    entry = dataclasses.replace(entry, count=count)
                timeout = min(self.attempt_timeout_s, remaining) if force else self.attempt_timeout_s
                attempt = self.sender(signal).send(claim.body, timeout)
                if not attempt.ok and attempt.retryable:
                    circuit.fail(attempt.retry_after)
                    blocked.add(signal)
                    if delivery is not None:
                        delivery.note_error(attempt)
                    continue
                claim.delete()
                if attempt.ok:
                    circuit.succeed()
                self._credit(entry, attempt)

    def _drainable(self, entry: SpoolFile, alive: dict[int, bool]) -> bool:
        """Our own files, and those of processes that are gone (or that wrote long ago)."""
        if entry.owner == self.owner:
            return True
        pid = entry.pid
        if pid is None or pid == os.getpid():
            return True
        if time.time_ns() - entry.written_ns > _STALE_OWNER_NS:
            return True
        if pid not in alive:
            alive[pid] = pid_alive(pid)
        return not alive[pid]

    def _credit(self, entry: SpoolFile, attempt: Attempt) -> None:
        rejected = entry.count if not attempt.ok else min(attempt.rejected, entry.count)
        delivery = self.deliveries.get(entry.signal)
        if entry.owner == self.owner and delivery is not None:
            delivery.spool_resolved(entry.count, rejected, attempt)
            return
        with self._lock:
            self.recovered += entry.count - rejected
            self.recovered_rejected += rejected
        if rejected and delivery is not None:
            delivery.log_rejection(attempt, rejected)

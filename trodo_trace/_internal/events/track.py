"""Product events: ``trodo.track``, ``trodo.for_user`` and ``capture_error``.

An event is validated and normalised on the caller's thread (a few type checks and one pass over
the properties), stamped with the current run and trace context, and handed to the runtime's
:class:`~trodo_trace._internal.events.sink.EventSink` — a second export pipeline beside the span
pipeline. Developer mistakes raise ``ValueError``/``TypeError`` naming the argument; recoverable
ones (reserved or non-JSON properties, a name that is not snake_case) warn once with
:class:`EventWarning` and the event is still sent.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping
from random import getrandbits
from typing import Any, TypeVar, overload

from opentelemetry import trace as trace_api

from .. import api
from .. import runtime as runtime_mod
from ..core import spans
from ..core.errors import internal_error
from ..core.values import encodable, key_text, to_plain
from .sink import EVENT_OVERHEAD, Event, data_bytes, sink_for

R = TypeVar("R")

#: Property names a browser SDK fills in; a server event must not fake them.
RESERVED_PROPERTIES = frozenset(
    {
        "page",
        "current_url",
        "referrer",
        "timestamp",
        "user_agent",
        "screen_width",
        "viewport_width",
        "page_title",
        "url",
        "href",
    }
)
SERVER_ERROR = "server_error"
SERVER_GLOBAL = "server_global"
ERROR_CATEGORY = "error"
SEVERITIES = ("critical", "error", "warning")
MAX_NAME_LENGTH = 255
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*\Z")
_warn_lock = threading.Lock()


class EventWarning(UserWarning):
    """An event was sent, but not exactly as given (reserved or non-JSON properties, naming)."""


# -- validation ------------------------------------------------------------------------------
def _check_text(name: str, value: Any, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"{name} must be at most {max_length} characters, got {len(value)}")
    return value


def _check_properties(properties: Any) -> Mapping[Any, Any] | None:
    if properties is not None and not isinstance(properties, Mapping):
        raise TypeError(f"properties must be a mapping, got {type(properties).__name__}")
    return properties


def _check_severity(severity: Any) -> str:
    if not isinstance(severity, str):
        raise TypeError(f"severity must be a string, got {type(severity).__name__}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    return severity


# -- property normalisation ------------------------------------------------------------------
def _clean_properties(
    warned: set[Any],
    event_name: str,
    properties: Mapping[Any, Any] | None,
    stacklevel: int,
    limit: int | None = None,
) -> dict[str, Any]:
    """Strip reserved names and convert non-JSON values (strings cut at ``limit``, containers at
    1,000 items); warn once per kind of problem."""
    if not properties:
        return {}
    result: dict[str, Any] = {}
    stripped: list[str] = []
    changed: list[str] = []
    for key, value in properties.items():
        if not isinstance(key, str):
            key = key_text(key)
            changed.append(key)
        else:
            key = encodable(key)
        if key in RESERVED_PROPERTIES:
            stripped.append(key)
            continue
        converted = [False]
        result[key] = to_plain(value, converted=converted, limit=limit)
        if converted[0]:
            changed.append(key)
    if stripped:
        _warn_once(
            warned,
            ("reserved", event_name, tuple(stripped)),
            f"trodo_trace: event {event_name!r}: reserved propert{'y' if len(stripped) == 1 else 'ies'} "
            f"{', '.join(stripped)} removed (browser SDKs set these; use another name)",
            stacklevel + 1,
        )
    if changed:
        _warn_once(
            warned,
            ("converted", event_name, tuple(changed)),
            f"trodo_trace: event {event_name!r}: propert{'y' if len(changed) == 1 else 'ies'} "
            f"{', '.join(changed)} not JSON-serialisable and converted (to text or plain JSON data)",
            stacklevel + 1,
        )
    return result


def _warn_once(warned: set[Any], key: Any, message: str, stacklevel: int) -> None:
    with _warn_lock:
        if key in warned:
            return
        warned.add(key)
    warnings.warn(message, EventWarning, stacklevel=stacklevel + 1)


def _check_snake_case(warned: set[Any], event_name: str, stacklevel: int) -> None:
    if _SNAKE_CASE.match(event_name) is None:
        _warn_once(
            warned,
            ("snake", event_name),
            f"trodo_trace: event name {event_name!r} is not snake_case (e.g. 'signup_completed')",
            stacklevel + 1,
        )


# -- building and sending ------------------------------------------------------------------
def _context_ids() -> tuple[str | None, int, int, int]:
    """Run id, trace id, span id and trace flags of the current context (zeros when none)."""
    span = trace_api.get_current_span()
    span_context = span.get_span_context()
    run = spans.run_from_context()
    run_id = run.run_id if run is not None else None
    if not span_context.is_valid:
        return run_id, 0, 0, 0
    return run_id, span_context.trace_id, span_context.span_id, int(span_context.trace_flags)


def _origin(exc: BaseException) -> tuple[str, int, int] | None:
    """The run and span an exception escaped from (recorded by ``decorators.record_error``),
    looking along its ``__cause__``/``__context__`` chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        origin = getattr(current, "__trodo_origin__", None)
        if isinstance(origin, tuple) and len(origin) == 3:
            return origin
        current = current.__cause__ or current.__context__
    return None


def _send(
    distinct_id: str,
    event_name: str,
    properties: Mapping[Any, Any] | None,
    category: str,
    *,
    stacklevel: int,
    exc: BaseException | None = None,
    severity: str | None = None,
    error_fields: Mapping[str, Any] | None = None,
) -> None:
    """Validate-free part of every entry point: normalise, stamp context, submit."""
    runtime = spans.RUNTIME or runtime_mod.get()
    if not runtime.enabled:
        return
    sink = sink_for(runtime)
    _check_snake_case(sink.warned, event_name, stacklevel + 1)
    try:
        props = _clean_properties(
            sink.warned, event_name, properties, stacklevel + 1, getattr(runtime, "max_value_length", None)
        )
        # An error belongs to the span it escaped from, if any; otherwise to the current one.
        origin = _origin(exc) if exc is not None else None
        run_id: str | None
        if origin is not None:
            (run_id, trace_id, span_id), flags = origin, 1
        else:
            run_id, trace_id, span_id, flags = _context_ids()
        if error_fields is not None:
            props.update(error_fields)
        event = Event(
            f"{getrandbits(128):032x}",
            spans.now_ns(),
            encodable(event_name),
            encodable(distinct_id),
            encodable(category),
            props,
            run_id,
            trace_id,
            span_id,
            flags,
            severity,
            EVENT_OVERHEAD + data_bytes(props),
        )
        sink.submit(event)
    except Exception:
        internal_error("track")


def track(
    distinct_id: str,
    event_name: str,
    properties: Mapping[str, Any] | None = None,
    category: str = "custom",
) -> None:
    """Record a product event for a user: an OTLP log record, or a row in the local store.

    Inside a run the event carries ``trodo.run.id`` and the current trace context. Events are
    batched (``init(batch_size=..., batch_flush_interval_ms=...)``); with ``batch_enabled=False``
    the call returns once the event is delivered (or after a few seconds at most).

    Args:
        distinct_id: The user (or account, or device) the event belongs to; non-empty.
        event_name: A snake_case name such as ``"signup_completed"``; non-empty, at most 255 characters.
        properties: JSON values describing the event. Reserved browser names (``page``, ``url``,
            ``timestamp``, ...) are removed and other values converted, each with one warning.
        category: A free grouping label, ``"custom"`` by default.

    Raises:
        TypeError: an argument of the wrong type (the message names it).
        ValueError: an empty ``distinct_id``/``event_name``/``category``, or a name over 255 characters.

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.track("user-42", "plan_upgraded", {"from": "free", "to": "pro", "seats": 5})
    """
    _check_text("distinct_id", distinct_id)
    _check_text("event_name", event_name, MAX_NAME_LENGTH)
    _check_text("category", category, MAX_NAME_LENGTH)
    _check_properties(properties)
    _send(distinct_id, event_name, properties, category, stacklevel=2)


def error_fields(
    exc: BaseException, severity: str | None, runtime: Any = None, tb: Any = None
) -> dict[str, Any]:
    """The ``server_error`` properties of ``exc``: type, message, stack trace, runtime, severity.

    The message and trace go through the runtime's secret redaction; with ``capture_content=False``
    the message is left out and the trace keeps its frames only.
    """
    runtime = runtime or spans.RUNTIME or runtime_mod.get()
    tb = exc.__traceback__ if tb is None else tb
    stack = spans.format_stack(exc, tb, content=runtime.capture_content)
    limit = getattr(runtime, "max_value_length", 32768)
    if len(stack) > limit:
        stack = "…[truncated]\n" + stack[-limit:]
    fields: dict[str, Any] = {"error_type": spans._qualified_name(type(exc))}
    if runtime.capture_content:
        fields["error_message"] = spans._safe_message(exc)
    fields["stack_trace"] = stack
    fields["runtime"] = "python"
    if severity is not None:
        fields["severity"] = severity
    redact = getattr(runtime, "redact", None)
    if redact is not None:
        for key in ("error_message", "stack_trace"):
            if key in fields:
                fields[key] = redact(fields[key])
    return fields


def send_server_error(
    exc: BaseException,
    distinct_id: str,
    severity: str,
    properties: Mapping[str, Any] | None = None,
    *,
    stacklevel: int = 1,
    tb: Any = None,
) -> bool:
    """Queue one ``server_error`` for ``exc`` unless it was already reported; ``True`` if queued."""
    if getattr(exc, "__trodo_reported__", False):
        return False
    runtime = spans.RUNTIME or runtime_mod.get()
    fields = error_fields(exc, severity, runtime, tb)
    _send(
        distinct_id,
        SERVER_ERROR,
        properties,
        ERROR_CATEGORY,
        stacklevel=stacklevel + 1,
        exc=exc,
        severity=severity,
        error_fields=fields,
    )
    try:
        exc.__trodo_reported__ = True  # type: ignore[attr-defined]
    except Exception:  # an exception type without a __dict__
        pass
    return True


class UserContext:
    """Events, errors and runs bound to one user; returned by :func:`for_user`."""

    __slots__ = ("distinct_id",)

    def __init__(self, distinct_id: str):
        self.distinct_id = _check_text("distinct_id", distinct_id)

    def __repr__(self) -> str:
        return f"UserContext(distinct_id={self.distinct_id!r})"

    def track(
        self, event_name: str, properties: Mapping[str, Any] | None = None, category: str = "custom"
    ) -> None:
        """Record a product event for this user (see :func:`track`).

        Example:
            >>> import trodo_trace as trodo
            >>> trodo.for_user("user-42").track("report_exported", {"format": "pdf"})
        """
        _check_text("event_name", event_name, MAX_NAME_LENGTH)
        _check_text("category", category, MAX_NAME_LENGTH)
        _check_properties(properties)
        _send(self.distinct_id, event_name, properties, category, stacklevel=2)

    def capture_error(
        self, exc: BaseException, severity: str = "error", properties: Mapping[str, Any] | None = None
    ) -> None:
        """Report a handled exception as a ``server_error`` event of this user.

        Properties: ``error_type``, ``error_message``, ``stack_trace``, ``runtime`` (``"python"``),
        ``severity``, plus your ``properties`` (the error fields win on a name clash). An exception that
        escaped a traced function carries the run and span it escaped from; any other carries the
        current run, if any. An exception reported here is not reported again if it goes uncaught.

        Args:
            exc: The exception instance.
            severity: ``"critical"``, ``"error"`` or ``"warning"``.
            properties: Extra JSON values (same rules as :func:`track`).

        Example:
            >>> import trodo_trace as trodo
            >>> user = trodo.for_user("user-42")
            >>> try:
            ...     1 / 0
            ... except ZeroDivisionError as exc:
            ...     user.capture_error(exc, severity="warning", properties={"invoice": "A-17"})
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"exc must be an exception instance, got {type(exc).__name__}")
        _check_severity(severity)
        _check_properties(properties)
        send_server_error(exc, self.distinct_id, severity, properties, stacklevel=2)

    @overload
    def wrap_agent(  # type: ignore[overload-overlap]
        self,
        name: str,
        fn: Callable[[spans.Run], Awaitable[R]],
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Awaitable[tuple[R, str]]: ...
    @overload
    def wrap_agent(
        self,
        name: str,
        fn: Callable[[spans.Run], R],
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[R, str]: ...
    def wrap_agent(
        self,
        name: str,
        fn: Callable[[spans.Run], Any],
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Any:
        """``trodo.wrap_agent`` with this user as the run's ``distinct_id``; returns ``(result, run_id)``.

        Example:
            >>> import trodo_trace as trodo
            >>> result, run_id = trodo.for_user("user-42").wrap_agent("triage", lambda run: "done")
            >>> trodo.last_run().distinct_id
            'user-42'
        """
        return api.wrap_agent(
            name,
            fn,
            distinct_id=self.distinct_id,
            conversation_id=conversation_id,
            parent_run_id=parent_run_id,
            metadata=metadata,
        )


def for_user(distinct_id: str) -> UserContext:
    """A handle that tracks events, reports errors and runs agents for one user.

    Raises:
        TypeError: ``distinct_id`` is not a string.
        ValueError: ``distinct_id`` is empty.

    Example:
        >>> import trodo_trace as trodo
        >>> user = trodo.for_user("user-42")
        >>> user.track("checkout_started", {"cart_value": 42.5})
    """
    return UserContext(distinct_id)

"""One run across threads, processes and services.

- **Threads**: ``threading.Thread.start`` and ``ThreadPoolExecutor.submit`` carry the current
  OpenTelemetry context into the new thread or work item (installed at import, switched by
  ``init(propagate_threads=...)``, paused by ``shutdown()`` until the next runtime); only thread
  creation and submission pay, never span start/end.
- **Processes and queues**: :func:`run_context` makes a small picklable token, :func:`join_run`
  runs code inside the run it names.
- **Services**: :func:`propagation_headers` (``X-Trodo-Run-Id`` + W3C ``traceparent``/``tracestate``);
  the middleware in ``trodo_trace.integrations`` read them back (``read_headers`` + ``join_context``).

Spans recorded in a joined run carry ``trodo.run.joined`` so the local store can add them to the
rollups of the run's root, which was written by another process.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from . import runtime as runtime_mod
from .core import spans

logger = logging.getLogger("trodo_trace")

RUN_HEADER = "X-Trodo-Run-Id"
#: Set on every span recorded in a run joined from elsewhere (its root's rollups do not count it).
JOINED = "trodo.run.joined"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
_PROPAGATOR = TraceContextTextMapPropagator()
_CHILD_FLUSH_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class RunContext:
    """A picklable hand-off of the current run: its id, the current span and the run's user.

    Made by :func:`run_context`; passed to :func:`join_run` in a worker process or a queue consumer.
    ``trace_id``/``span_id`` are lowercase hex (``None`` when the run is known by id only).
    """

    run_id: str
    trace_id: str | None = None
    span_id: str | None = None
    trace_flags: int = 1
    tracestate: str | None = None
    distinct_id: str | None = None
    conversation_id: str | None = None

    def headers(self) -> dict[str, str]:
        """The same hand-off as HTTP/message headers (without the user ids, which stay private).

        Example:
            >>> RunContext("r1", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331").headers()
            {'X-Trodo-Run-Id': 'r1', 'traceparent': '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'}
        """
        headers = {RUN_HEADER: self.run_id}
        if self.trace_id and self.span_id:
            headers["traceparent"] = f"00-{self.trace_id}-{self.span_id}-{self.trace_flags & 0xFF:02x}"
            if self.tracestate:
                headers["tracestate"] = self.tracestate
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any]) -> RunContext | None:
        """Read ``X-Trodo-Run-Id``/``traceparent``/``tracestate`` (any case); ``None`` without a
        valid run id. A malformed ``traceparent`` is dropped with a debug log.

        Example:
            >>> RunContext.from_headers({"x-trodo-run-id": "r1"}).run_id
            'r1'
        """
        run_id, span_context = read_headers(_lower(headers).get)
        if run_id is None:
            return None
        return token_for(run_id, span_context, None, None)


class JoinedRun(spans.RunRef):
    """The run of a :func:`join_run` block: known by id, rolled up where its root lives.

    ``local`` is true only so that the runtime hands every finished span to :meth:`account`,
    which marks it ``trodo.run.joined``; there is no root here (``root`` is ``None``).
    """

    __slots__ = ("tracestate",)
    local = True
    root = None

    def __init__(
        self,
        run_id: str,
        distinct_id: str | None = None,
        conversation_id: str | None = None,
        tracestate: str | None = None,
    ):
        super().__init__(run_id, distinct_id, conversation_id)
        self.tracestate = tracestate

    def __repr__(self) -> str:
        return f"JoinedRun(run_id={self.run_id!r})"

    def account(self, span: spans.TrodoSpan) -> None:
        span.attributes[JOINED] = True


# -- reading and writing the hand-off --------------------------------------------------------------
def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    wanted = ("x-trodo-run-id", "traceparent", "tracestate")
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        name = name.lower()
        if name in wanted:
            found[name] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return found


def read_headers(get: Callable[[str], str | None]) -> tuple[str | None, SpanContext | None]:
    """The run id and remote span context in incoming headers; malformed values are dropped."""
    run_id = get("x-trodo-run-id")
    if run_id is not None:
        run_id = run_id.strip()
        if not _RUN_ID.match(run_id):
            logger.debug("trodo_trace: ignoring malformed %s header %r", RUN_HEADER, run_id[:200])
            run_id = None
    span_context = None
    traceparent = get("traceparent")
    if traceparent is not None:
        carrier = {"traceparent": traceparent}
        tracestate = get("tracestate")
        if tracestate is not None:
            carrier["tracestate"] = tracestate
        span_context = trace_api.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
        if not span_context.is_valid:
            logger.debug("trodo_trace: ignoring malformed traceparent header %r", traceparent[:200])
            span_context = None
    return run_id, span_context


def token_for(
    run_id: str, span_context: SpanContext | None, distinct_id: str | None, conversation_id: str | None
) -> RunContext:
    if span_context is None:
        return RunContext(run_id, distinct_id=distinct_id, conversation_id=conversation_id)
    tracestate = span_context.trace_state.to_header() if span_context.trace_state else None
    return RunContext(
        run_id,
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
        int(span_context.trace_flags),
        tracestate or None,
        distinct_id,
        conversation_id,
    )


def run_context() -> RunContext | None:
    """A picklable token for the current run and span (``None`` outside a run).

    Pass it to a worker process or put it in a queue message; :func:`join_run` there records
    spans in this run, under the current span.

    Example:
        >>> import pickle
        >>> import trodo_trace as trodo
        >>> trodo.run_context() is None
        True
        >>> with trodo.agent("planner"):
        ...     token = trodo.run_context()   # hand it to a worker: ProcessPoolExecutor, a queue, ...
        >>> pickle.loads(pickle.dumps(token)) == token
        True
        >>> token.run_id == trodo.last_run().run_id
        True
    """
    ctx = otel_context.get_current()
    run = spans.run_from_context(ctx)
    if run is None:
        return None
    span_context = trace_api.get_current_span(ctx).get_span_context()
    token = token_for(
        run.run_id, span_context if span_context.is_valid else None, run.distinct_id, run.conversation_id
    )
    if token.tracestate is None and isinstance(run, JoinedRun) and run.tracestate and token.trace_id:
        token = dataclasses.replace(token, tracestate=run.tracestate)  # carried through our spans
    return token


def propagation_headers() -> dict[str, str]:
    """Headers that make the callee's spans part of the current run: ``X-Trodo-Run-Id`` and W3C
    ``traceparent`` (and ``tracestate``). Empty outside a run.

    Example:
        >>> import trodo_trace as trodo
        >>> trodo.propagation_headers()
        {}
        >>> with trodo.agent("caller"):
        ...     sorted(trodo.propagation_headers())   # e.g. httpx.get(url, headers=...)
        ['X-Trodo-Run-Id', 'traceparent']
    """
    token = run_context()
    return {} if token is None else token.headers()


# -- joining a run -----------------------------------------------------------------------------
def join_context(
    token: RunContext, base: otel_context.Context | None = None
) -> tuple[otel_context.Context, JoinedRun]:
    run = JoinedRun(token.run_id, token.distinct_id, token.conversation_id, token.tracestate)
    ctx = otel_context.set_value(spans.RUN_KEY, run, base)
    span: trace_api.Span = trace_api.INVALID_SPAN
    if token.trace_id and token.span_id:
        try:
            trace_state = TraceState.from_header([token.tracestate]) if token.tracestate else None
            span_context = SpanContext(
                int(token.trace_id, 16),
                int(token.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(token.trace_flags & 0xFF),
                trace_state=trace_state,
            )
        except ValueError:
            span_context = None
        if span_context is not None and span_context.is_valid:
            span = NonRecordingSpan(span_context)
    return trace_api.set_span_in_context(span, ctx), run


def _as_token(value: Any) -> RunContext | None:
    if value is None or isinstance(value, RunContext):
        if value is not None and not (isinstance(value.run_id, str) and _RUN_ID.match(value.run_id)):
            raise ValueError(f"token_or_run_id has a malformed run id: {value.run_id!r}")
        return value
    if isinstance(value, str):
        if not _RUN_ID.match(value):
            raise ValueError(f"token_or_run_id must be a run id or a RunContext, got {value!r}")
        return RunContext(value)
    if isinstance(value, Mapping):
        return RunContext.from_headers(value)
    raise TypeError(
        "token_or_run_id must be a RunContext, a run id string, a mapping of propagation headers "
        f"or None, got {type(value).__name__}"
    )


class _Joined:
    """``with trodo.join_run(token):`` — attach the run's context for the block."""

    __slots__ = ("_token", "_tokens")

    def __init__(self, token: RunContext | None):
        self._token = token
        self._tokens: list[object] = []

    def __enter__(self) -> JoinedRun | None:
        if self._token is None:
            return None
        ctx, run = join_context(self._token, otel_context.get_current())
        self._tokens.append(otel_context.attach(ctx))
        return run

    def __exit__(self, *exc_info: Any) -> None:
        if self._tokens:
            otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]
            _flush_in_worker_process()

    async def __aenter__(self) -> JoinedRun | None:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.__exit__(*exc_info)


def _flush_in_worker_process() -> None:
    """multiprocessing workers end with ``os._exit`` (no atexit): deliver their spans now."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or multiprocessing.parent_process() is None:
        return
    runtime = runtime_mod.current()
    if runtime is not None:
        runtime.flush(_CHILD_FLUSH_TIMEOUT_S)


P = ParamSpec("P")
R = TypeVar("R")
#: What :func:`join_run` joins: a token, a mapping of propagation headers, a run id, or ``None``.
JoinTarget = RunContext | Mapping[str, str] | str | None


@overload
def join_run(token_or_run_id: JoinTarget, /) -> _Joined: ...
@overload
def join_run(token_or_run_id: JoinTarget, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
def join_run(token_or_run_id: Any, fn: Callable[..., Any] | None = None, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` inside another process's (or service's) run and return its result;
    without ``fn``, a context manager for a block.

    ``token_or_run_id`` is a :class:`RunContext` from :func:`run_context` (spans nest under the
    span that made it), a mapping of :func:`propagation_headers` (e.g. a queue message's headers),
    or a bare run id string: then spans carry the run id but start a new trace, since there is
    no span to parent to. ``None`` (a token made outside any run) joins nothing. An async ``fn``
    returns an awaitable. In a ``multiprocessing`` worker the block flushes its spans as it ends.

    Example:
        >>> import trodo_trace as trodo
        >>> with trodo.agent("planner"):
        ...     token = trodo.run_context()
        >>> trodo.join_run(token, len, "flights")       # in a worker process: len(...) in the run
        7
        >>> with trodo.join_run(token.headers()):       # e.g. a queue message's headers
        ...     trodo.tool("pack")(lambda: "packed")()
        'packed'

    Raises:
        TypeError: ``token_or_run_id`` of another type, or ``fn`` not callable.
        ValueError: a malformed run id.
    """
    token = _as_token(token_or_run_id)
    if fn is None:
        if args or kwargs:
            raise TypeError("join_run() got arguments for fn but no fn")
        return _Joined(token)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):

        async def run_async() -> Any:
            with _Joined(token):
                return await fn(*args, **kwargs)

        return run_async()
    with _Joined(token):
        return fn(*args, **kwargs)


# -- threads -------------------------------------------------------------------------------------
_EMPTY = otel_context.Context()
_patch_lock = threading.Lock()
_originals: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}  # name: (original, ours)
_enabled = False
#: The runtime shut down last: while it is still the runtime, threads no longer inherit context.
_stopped: Any = None


def _bind_thread(thread: threading.Thread, ctx: otel_context.Context) -> Callable[[], None]:
    """Make ``thread.run`` run inside ``ctx`` (an instance attribute, so subclasses' ``run`` too);
    returns the undo, which the thread also applies when ``run`` returns (no reference cycle left)."""
    instance = thread.__dict__
    had_own_run = "run" in instance
    previous = instance.get("run")
    run = thread.run

    def restore() -> None:
        if had_own_run:
            instance["run"] = previous
        else:
            instance.pop("run", None)

    def run_in_context() -> None:
        token = otel_context.attach(ctx)
        try:
            run()
        finally:
            otel_context.detach(token)
            restore()

    instance["run"] = run_in_context
    return restore


def _patched_start(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def start(self: threading.Thread, *args: Any, **kwargs: Any) -> Any:
        if (
            _enabled
            and (_stopped is None or spans.RUNTIME is not _stopped)
            and not self.name.startswith("trodo-")
        ):
            ctx = otel_context.get_current()
            if ctx:
                restore = _bind_thread(self, ctx)
                try:
                    return original(self, *args, **kwargs)
                except BaseException:
                    restore()
                    raise
        return original(self, *args, **kwargs)

    start.__trodo_patch__ = True  # type: ignore[attr-defined]
    return start


def _patched_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not _enabled or (_stopped is not None and spans.RUNTIME is _stopped):
            return original(self, fn, *args, **kwargs)
        ctx = otel_context.get_current()
        if not ctx:
            return original(self, fn, *args, **kwargs)

        def call_in_context(*call_args: Any, **call_kwargs: Any) -> Any:
            token = otel_context.attach(ctx)
            try:
                return fn(*call_args, **call_kwargs)
            finally:
                otel_context.detach(token)

        # The pool's own worker threads (started by submit) must not keep this context for life.
        token = otel_context.attach(_EMPTY)
        try:
            return original(self, call_in_context, *args, **kwargs)
        finally:
            otel_context.detach(token)

    submit.__trodo_patch__ = True  # type: ignore[attr-defined]
    return submit


_TARGETS: tuple[tuple[type, str, Callable[..., Any]], ...] = (
    (threading.Thread, "start", _patched_start),
    (ThreadPoolExecutor, "submit", _patched_submit),
)


def install_thread_propagation() -> None:
    """Carry the current context into threads started and pool work submitted from now on (idempotent)."""
    global _enabled
    with _patch_lock:
        _enabled = True
        for cls, name, make in _TARGETS:
            current = getattr(cls, name)
            if not getattr(current, "__trodo_patch__", False):  # (also true when wrapped on top of ours)
                patched = make(current)
                _originals[name] = (current, patched)
                setattr(cls, name, patched)


def uninstall_thread_propagation() -> None:
    """Stop carrying context into threads; put the original methods back unless another library
    has wrapped ours since (then ours stays in place, switched off)."""
    global _enabled
    with _patch_lock:
        _enabled = False
        for cls, name, _make in _TARGETS:
            original, patched = _originals.get(name, (None, None))
            if patched is not None and getattr(cls, name) is patched:
                setattr(cls, name, original)
                del _originals[name]


def thread_propagation_enabled() -> bool:
    """Whether threads and pool work currently inherit the submitting context."""
    return _enabled and (_stopped is None or spans.RUNTIME is not _stopped)


def _on_init(runtime: Any) -> None:
    global _stopped
    _stopped = None
    if runtime.config.propagate_threads:
        install_thread_propagation()
    else:
        uninstall_thread_propagation()


def _on_shutdown(runtime: Any) -> None:
    # Switched off, not unpatched: a runtime built later (by init() or lazily by the next span)
    # propagates again without anyone having to reinstall anything.
    global _stopped
    _stopped = runtime


# Installed when a runtime is built (by init() or lazily by the first span), not at import.
runtime_mod.INIT_HOOKS.append(_on_init)
runtime_mod.SHUTDOWN_HOOKS.append(_on_shutdown)

"""Spans and runs on the application thread.

A :class:`TrodoSpan` is an OpenTelemetry API span (so any OpenTelemetry instrumentation
parents its own spans to it through the normal context) that does the least possible work
while the user's code runs: ids, a timestamp and a plain attribute dict. Validation and
conversion to the SDK's ``ReadableSpan`` happen later, on the export thread.

A :class:`Run` is one execution of an agent: the root span of a tree plus its bookkeeping
(ids, user, conversation, rollups written onto the root when it ends).
"""

from __future__ import annotations

import json
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from random import getrandbits
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from . import attrs
from .errors import internal_error
from .values import to_json

KINDS = ("run", "agent", "llm", "tool", "retrieval", "chain", "function")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

#: Context key under which a joined (remote or handed-over) run travels when the parent span is not ours.
RUN_KEY = otel_context.create_key("trodo-run")


# Indirections the test kit replaces for deterministic ids and clocks.
def new_span_id() -> int:
    return getrandbits(64) or 1


def new_trace_id() -> int:
    return getrandbits(128) or 1


def new_run_id() -> str:
    return f"{getrandbits(128):032x}"


now_ns = time_ns

#: The active runtime (set by ``runtime._install``); spans report to it when they end.
RUNTIME: Any = None

#: Builds the runtime from the environment when the first span needs one (``runtime.get``). The
#: runtime module registers it when it loads; the span layer never imports the runtime.
BUILD_RUNTIME: Callable[[], Any] | None = None


def get_runtime() -> Any:
    """The active runtime, built from the environment on first use."""
    runtime = RUNTIME
    if runtime is None:
        assert BUILD_RUNTIME is not None, "trodo_trace._internal.runtime is not loaded"
        runtime = BUILD_RUNTIME()
    return runtime


#: Incremented in a forked child: spans started before the fork belong to the parent.
fork_generation = 0

#: How a run shows itself in IPython/Jupyter: ``"html"`` (``run -> str | None``) and ``"pretty"``
#: (``run, printer, cycle -> None``). The display layer registers them when it loads; the span
#: layer never imports it.
RUN_RENDERERS: dict[str, Any] = {}

# Displays (Jupyter, ``trodo.show``) render a run from the spans it keeps in memory, so they never
# wait for the exporter. Memory stays bounded in long-running servers: a run keeps at most its newest
# RUN_SPAN_LIMIT finished spans, and only the KEEP_SPANS_OF_RUNS most recently finished runs keep
# theirs (an older run releases them; its display then reads the local store).
RUN_SPAN_LIMIT = 512
KEEP_SPANS_OF_RUNS = 16
#: The most recently finished runs of this process, oldest first.
RECENT_RUNS: deque[Run] = deque()


class RunRef:
    """A run known by id only (joined from another process or service)."""

    __slots__ = ("conversation_id", "distinct_id", "run_id")

    def __init__(self, run_id: str, distinct_id: str | None = None, conversation_id: str | None = None):
        self.run_id = run_id
        self.distinct_id = distinct_id
        self.conversation_id = conversation_id

    local = False
    #: The root span of a local run (set by ``Run``; ``None`` for a joined run); a run known by id
    #: only has none.
    root: TrodoSpan | None

    def account(self, span: TrodoSpan) -> None:
        """Remote runs are rolled up where their root lives."""


class Run(RunRef):
    """A live run: an agent's execution, from its root span to its end.

    Handed to ``wrap_agent``'s function and returned by ``trodo.current_run()``. As the value of a
    notebook cell it displays as a waterfall of its spans (``_repr_html_``; text in a terminal).
    """

    __slots__ = (
        "_lock",
        "_spans",
        "cost",
        "cost_incomplete",
        "error_count",
        "metadata",
        "name",
        "parent_run_id",
        "root",
        "span_count",
        "status",
        "tokens_in",
        "tokens_out",
        "tool_count",
    )
    local = True
    root: TrodoSpan

    def __init__(
        self,
        run_id: str,
        name: str,
        root: TrodoSpan,
        *,
        distinct_id: str | None,
        conversation_id: str | None,
        parent_run_id: str | None,
        metadata: Mapping[str, Any] | None,
    ):
        super().__init__(run_id, distinct_id, conversation_id)
        self.name = name
        self.root = root
        self.parent_run_id = parent_run_id
        self.metadata = dict(metadata) if metadata else {}
        self.status: str | None = None
        self._lock = threading.Lock()
        self.span_count = 0
        self.tool_count = 0
        self.error_count = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.cost_incomplete = False
        self._spans: deque[TrodoSpan] | None = deque(maxlen=RUN_SPAN_LIMIT)

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, name={self.name!r}, status={self.status!r})"

    # -- display (Jupyter / IPython) -------------------------------------------------------------
    def _repr_html_(self) -> str | None:
        render = RUN_RENDERERS.get("html")
        return render(self) if render is not None else None

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        render = RUN_RENDERERS.get("pretty")
        if render is None:
            printer.text(repr(self))
            return
        render(self, printer, cycle)

    # -- the handle's setters ------------------------------------------------------------------
    def set_input(self, value: Any) -> None:
        """Record the run's input (on its root span)."""
        self.root.set_input(value)

    def set_output(self, value: Any) -> None:
        """Record the run's output (on its root span)."""
        self.root.set_output(value)

    def set_metadata(self, metadata: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Merge metadata into the run's ``trodo.metadata``."""
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a mapping")
        self.metadata.update(metadata or {}, **more)
        self.root.attributes[attrs.METADATA] = _metadata_json(self.metadata)

    def set_error_summary(self, summary: str) -> None:
        """Set ``trodo.run.error_summary``: a one-line account of what went wrong."""
        self.root.attributes[attrs.RUN_ERROR_SUMMARY] = str(summary)

    # -- bookkeeping ---------------------------------------------------------------------------
    def account(self, span: TrodoSpan) -> None:
        """Add a finished span of this run to the rollups (a few integer adds under a short lock)."""
        attributes = span.attributes
        tokens_in = attributes.get(attrs.USAGE_INPUT)
        tokens_out = attributes.get(attrs.USAGE_OUTPUT)
        cost = attributes.get(attrs.LLM_COST)
        with self._lock:
            spans = self._spans
            if spans is not None:
                spans.append(span)
            self.span_count += 1
            if span.kind == "tool":
                self.tool_count += 1
            if span.status_code is StatusCode.ERROR:
                self.error_count += 1
            if tokens_in is not None or tokens_out is not None:
                self.tokens_in += tokens_in or 0
                self.tokens_out += tokens_out or 0
                if cost is None:
                    self.cost_incomplete = True
            if cost is not None:
                self.cost += cost

    def finish(self) -> None:
        """Write the rollups onto the root span (called as the root ends)."""
        root = self.root
        attributes = root.attributes
        self.status = "error" if root.status_code is StatusCode.ERROR else "ok"
        attributes[attrs.RUN_STATUS] = self.status
        attributes[attrs.RUN_DURATION_MS] = round(((root.end_ns or root.start_ns) - root.start_ns) / 1e6, 3)
        attributes[attrs.RUN_TOKENS_IN] = self.tokens_in
        attributes[attrs.RUN_TOKENS_OUT] = self.tokens_out
        attributes[attrs.RUN_SPAN_COUNT] = self.span_count
        attributes[attrs.RUN_TOOL_COUNT] = self.tool_count
        attributes[attrs.RUN_ERROR_COUNT] = self.error_count
        if self.cost or not self.cost_incomplete:
            attributes[attrs.RUN_COST] = round(self.cost, 10)
        if self.cost_incomplete:
            attributes[attrs.RUN_COST_INCOMPLETE] = True
        if self.status == "error" and attrs.RUN_ERROR_SUMMARY not in attributes:
            attributes[attrs.RUN_ERROR_SUMMARY] = root.status_message or "error"
        recent = RECENT_RUNS
        recent.append(self)
        while len(recent) > KEEP_SPANS_OF_RUNS:
            recent.popleft()._spans = None


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    return to_json(metadata)


class TrodoSpan(trace_api.Span):
    """A span of trodo_trace: the OpenTelemetry API span plus the handle's setters.

    Returned by ``trodo.current_span()`` and by the ``with trodo.tool(...) as span`` forms.
    """

    __slots__ = (
        "_context",
        "attributes",
        "end_ns",
        "events",
        "fork_generation",
        "kind",
        "links",
        "name",
        "parent_remote",
        "parent_span_id",
        "run",
        "span_id",
        "start_ns",
        "status_code",
        "status_message",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        trace_id: int,
        span_id: int,
        parent_span_id: int | None,
        run: RunRef | None,
        attributes: dict[str, Any],
        start_ns: int | None = None,
        parent_remote: bool = False,
    ):
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.parent_remote = parent_remote
        self.run = run
        self.attributes = attributes
        self.events: list[tuple[str, int, dict[str, Any]]] | None = None
        self.links: list[trace_api.Link] | None = None
        self.status_code: StatusCode = StatusCode.UNSET
        self.status_message: str | None = None
        self.start_ns = start_ns or now_ns()
        self.end_ns: int | None = None
        self.fork_generation = fork_generation
        self._context: SpanContext | None = None

    def __repr__(self) -> str:
        return f"TrodoSpan(name={self.name!r}, kind={self.kind!r}, span_id={self.span_id:016x})"

    @property
    def run_id(self) -> str | None:
        """The id of the run this span belongs to."""
        return self.run.run_id if self.run is not None else None

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    # -- OpenTelemetry API -----------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        ctx = self._context
        if ctx is None:
            ctx = self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)
        return ctx

    def is_recording(self) -> bool:
        return self.end_ns is None

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (values are validated on the export thread)."""
        if self.end_ns is None:
            self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes at once."""
        if self.end_ns is None:
            self.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        if self.end_ns is None:
            if self.events is None:
                self.events = []
            self.events.append((name, timestamp or now_ns(), dict(attributes or {})))

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self.end_ns is None and context is not None and context.is_valid:
            if self.links is None:
                self.links = []
            self.links.append(trace_api.Link(context, dict(attributes or {})))

    def update_name(self, name: str) -> None:
        if self.end_ns is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_ns is not None:
            return
        if isinstance(status, Status):
            description = status.description
            status = status.status_code
        if self.status_code is StatusCode.OK and status is not StatusCode.OK:
            return  # OK is final, as in the OpenTelemetry SDK
        self.status_code = status
        self.status_message = description if status is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        exc_type = type(exception)
        event_attributes = {
            "exception.type": _qualified_name(exc_type),
            "exception.message": _safe_message(exception),
            "exception.stacktrace": format_stack(exception, exception.__traceback__),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns is not None:
            return
        self.end_ns = end_time or now_ns()
        if self.status_code is StatusCode.UNSET:
            self.status_code = StatusCode.OK
        try:
            RUNTIME.on_end(self)
        except Exception:
            internal_error("span end")

    # -- trodo handle ------------------------------------------------------------------------
    def set_input(self, value: Any) -> None:
        """Record the span's input (JSON text in ``input.value``)."""
        RUNTIME.capture(self, attrs.INPUT_VALUE, attrs.INPUT_MIME, value)

    def set_output(self, value: Any) -> None:
        """Record the span's output (JSON text in ``output.value``)."""
        RUNTIME.capture(self, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, value)

    def set_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Record token usage; ``input_tokens`` counts all prompt tokens, cached ones included."""
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_tokens", cache_write_tokens),
            ("reasoning_tokens", reasoning_tokens),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        attrs.write_usage(
            self.attributes,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
        )

    def set_model(self, model: str, provider: str | None = None) -> None:
        """Record the model (and provider) an LLM span called."""
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        attrs.write_model(self.attributes, model, provider)

    def record_error(self, exception: BaseException) -> None:
        """Mark the span failed with ``exception``: status ERROR, ``error.type`` and an exception event."""
        self.attributes[attrs.ERROR_TYPE] = _qualified_name(type(exception))
        self.record_exception(exception, escaped=True)
        if self.run is not None and not hasattr(exception, "__trodo_origin__"):
            # Where the exception escaped from (innermost span wins): auto events read it once
            # the failed code's context is gone. An exception without a __dict__ is skipped.
            try:
                exception.__trodo_origin__ = (self.run.run_id, self.trace_id, self.span_id)  # type: ignore[attr-defined]
            except AttributeError:
                pass
        self.status_code = StatusCode.ERROR
        self.status_message = f"{type(exception).__name__}: {_safe_message(exception)}"[:1024]


class NonRecordingSpan(TrodoSpan):
    """The handle given when tracing is off or a span could not start: every setter is a no-op."""

    def __init__(self) -> None:
        super().__init__("", "function", 0, 0, None, None, {}, start_ns=1)

    def __repr__(self) -> str:
        return "NonRecordingSpan()"

    def is_recording(self) -> bool:
        return False

    def get_span_context(self) -> SpanContext:
        return trace_api.INVALID_SPAN_CONTEXT

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def add_event(
        self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None
    ) -> None:
        pass

    def end(self, end_time: int | None = None) -> None:
        pass

    def set_input(self, value: Any) -> None:
        pass

    def set_output(self, value: Any) -> None:
        pass

    def set_usage(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_model(self, model: str, provider: str | None = None) -> None:
        pass

    def record_error(self, exception: BaseException) -> None:
        pass


def _qualified_name(exc_type: type) -> str:
    module = exc_type.__module__
    if module in ("builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def format_stack(exception: BaseException, tb: Any, content: bool | None = None) -> str:
    """The traceback text of ``exception``. Without content (``capture_content=False``, the
    runtime's setting by default) every exception of the chain and of exception groups is shown as
    its type only and every frame as its file, line number and function: no message, no notes, no
    source text (neither the code lines of the frames nor a ``SyntaxError``'s)."""
    if content is None:
        content = RUNTIME is None or RUNTIME.capture_content
    if content:
        return "".join(traceback.format_exception(type(exception), exception, tb))
    try:
        top = traceback.TracebackException(type(exception), exception, tb, compact=True, lookup_lines=False)
        pending, seen = [top], set()
        while pending:
            node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if not hasattr(node, "_str"):
                raise LookupError("unknown TracebackException layout")
            fields = vars(node)  # private layout, checked above; a change falls back below
            fields["_str"] = ""
            node.stack = _frames_only(node.stack)
            if fields.get("__notes__"):
                fields["__notes__"] = None
            for field in ("text", "msg"):  # a SyntaxError's source line and message
                if getattr(node, field, None):
                    setattr(node, field, None)
            pending.extend(n for n in (node.__cause__, node.__context__) if n is not None)
            pending.extend(getattr(node, "exceptions", None) or ())
        return "".join(top.format())
    except Exception:  # an interpreter whose TracebackException differs: frames and type only
        frames = traceback.StackSummary.extract(traceback.walk_tb(tb), lookup_lines=False)
        return (
            "Traceback (most recent call last):\n"
            + "".join(_frames_only(frames).format())
            + (_qualified_name(type(exception)) + "\n")
        )


def _frames_only(stack: traceback.StackSummary) -> traceback.StackSummary:
    """``stack`` without source text: file, line number and function of each frame."""
    return traceback.StackSummary.from_list(
        [(frame.filename, frame.lineno or 0, frame.name, "") for frame in stack]
    )


def _safe_message(exception: BaseException) -> str:
    try:
        return str(exception)
    except Exception:
        return f"<unprintable {type(exception).__name__}>"


def span_from_context(ctx: otel_context.Context | None = None) -> TrodoSpan | None:
    """The current span when it is one of ours."""
    span = trace_api.get_current_span(ctx)
    return span if isinstance(span, TrodoSpan) else None


def run_from_context(ctx: otel_context.Context | None = None) -> RunRef | None:
    span = trace_api.get_current_span(ctx)
    if isinstance(span, TrodoSpan):
        return span.run
    ref = otel_context.get_value(RUN_KEY, ctx)
    return ref if isinstance(ref, RunRef) else None


def json_list(values: Sequence[Any]) -> str:
    return json.dumps(list(values))

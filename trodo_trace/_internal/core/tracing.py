"""Starting spans and runs, and the OpenTelemetry ``Tracer`` that ``trodo.get_tracer()`` returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.context.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace import propagation as trace_propagation
from opentelemetry.trace.status import Status, StatusCode

from . import attrs, spans
from .spans import Run, RunRef, TrodoSpan

_SPAN_KEY = trace_propagation._SPAN_KEY  # the key get_current_span() reads; read directly on the hot path
_BASE_ATTRIBUTES = {
    kind: {attrs.SPAN_KIND: kind, attrs.OI_KIND: oi} for kind, oi in attrs.OPENINFERENCE_KIND.items()
}


# -- the current OpenTelemetry context, on the hot path -------------------------------------------
# OpenTelemetry keeps the current context in one ContextVar (its default runtime context). While
# that runtime context is in place, spans read, attach and detach it directly: the same operations
# as ``opentelemetry.context.get_current`` / ``attach(set_span_in_context(span))`` / ``detach``,
# without their layers of calls and the double copy of the context. Any other runtime context (one
# chosen with ``OTEL_PYTHON_CONTEXT``) goes through the OpenTelemetry functions.
def _default_runtime() -> tuple[object, ContextVar[Context] | None]:
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime) is ContextVarsRuntimeContext and type(var) is ContextVar and issubclass(Context, dict):
        return runtime, var
    return object(), None


_RUNTIME_CONTEXT, _CONTEXT_VAR = _default_runtime()
_new_context: Any = Context
_set_entry = dict.__setitem__
if _CONTEXT_VAR is not None:
    _var_get, _var_set, _var_reset = _CONTEXT_VAR.get, _CONTEXT_VAR.set, _CONTEXT_VAR.reset


def current_context() -> Context:
    """The current OpenTelemetry context (``opentelemetry.context.get_current()``)."""
    if otel_context._RUNTIME_CONTEXT is _RUNTIME_CONTEXT:
        return _var_get()
    return otel_context.get_current()


def attach_span(span: trace_api.Span) -> Token[Context]:
    """Make ``span`` the current span (``attach(set_span_in_context(span))``); the token restores
    the context before it (:func:`detach`)."""
    if otel_context._RUNTIME_CONTEXT is _RUNTIME_CONTEXT:
        ctx = _new_context(_var_get())
        _set_entry(ctx, _SPAN_KEY, span)
        return _var_set(ctx)
    return otel_context.attach(trace_api.set_span_in_context(span))


def attach(ctx: Context) -> Token[Context]:
    """Make ``ctx`` the current context (``opentelemetry.context.attach``)."""
    if otel_context._RUNTIME_CONTEXT is _RUNTIME_CONTEXT:
        return _var_set(ctx)
    return otel_context.attach(ctx)


def detach(token: Token[Context]) -> None:
    """Restore the context ``token`` was attached over (``opentelemetry.context.detach``: a token
    that cannot be reset, e.g. used in another task, is logged by OpenTelemetry, not raised)."""
    try:
        _var_reset(token)
    except Exception:  # not a token of the default runtime context, or it cannot be reset here
        otel_context.detach(token)


class RunOptions:
    """What a span that starts a run says about it."""

    __slots__ = ("conversation_id", "distinct_id", "force", "metadata", "parent_run_id")

    def __init__(
        self,
        *,
        force: bool = False,
        distinct_id: str | None = None,
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ):
        self.force = force
        self.distinct_id = distinct_id
        self.conversation_id = conversation_id
        self.parent_run_id = parent_run_id
        self.metadata = metadata


def start_span(
    name: str,
    kind: str,
    attributes: Mapping[str, Any] | None = None,
    run_options: RunOptions | None = None,
    ctx: otel_context.Context | None = None,
    start_ns: int | None = None,
) -> TrodoSpan:
    """Start a span under the current context; it starts a run when none is active (or when forced)."""
    return open_span(name, kind, base_attributes(kind, attributes), run_options, ctx, start_ns)


def base_attributes(kind: str, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """The attributes a span of ``kind`` starts with: its kind's, then ``attributes``."""
    merged = _BASE_ATTRIBUTES[kind].copy()
    if attributes:
        merged.update(attributes)
    return merged


def open_span(
    name: str,
    kind: str,
    merged: dict[str, Any],
    run_options: RunOptions | None = None,
    ctx: otel_context.Context | None = None,
    start_ns: int | None = None,
) -> TrodoSpan:
    """:func:`start_span` with its attributes already merged (``merged`` becomes the span's own
    attribute dict: pass a fresh one)."""
    runtime = spans.RUNTIME or spans.get_runtime()
    if ctx is None:
        ctx = current_context()
    parent = ctx.get(_SPAN_KEY)
    if type(parent) is TrodoSpan:
        trace_id = parent.trace_id
        parent_id: int | None = parent.span_id
        run: RunRef | None = parent.run
        remote = False
    else:
        if not isinstance(parent, trace_api.Span):
            parent = trace_api.INVALID_SPAN
        span_context = parent.get_span_context()
        if span_context.is_valid:
            trace_id = span_context.trace_id
            parent_id = span_context.span_id
            remote = span_context.is_remote
        else:
            trace_id = spans.new_trace_id()
            parent_id = None
            remote = False
        if isinstance(parent, TrodoSpan):
            run = parent.run
        else:
            ref = ctx.get(spans.RUN_KEY)
            run = ref if isinstance(ref, RunRef) else None
    span = TrodoSpan(name, kind, trace_id, spans.new_span_id(), parent_id, run, merged, start_ns, remote)
    if run is None or (run_options is not None and run_options.force):
        _start_run(span, name, run, run_options)
    else:
        merged[attrs.RUN_ID] = run.run_id
    runtime.started_counter.increment()
    return span


def _start_run(span: TrodoSpan, name: str, parent_run: RunRef | None, options: RunOptions | None) -> None:
    options = options or RunOptions()
    distinct_id = options.distinct_id
    conversation_id = options.conversation_id
    parent_run_id = options.parent_run_id
    if parent_run is not None:
        distinct_id = distinct_id or parent_run.distinct_id
        conversation_id = conversation_id or parent_run.conversation_id
        parent_run_id = parent_run_id or parent_run.run_id
    run = Run(
        spans.new_run_id(),
        name,
        span,
        distinct_id=distinct_id,
        conversation_id=conversation_id,
        parent_run_id=parent_run_id,
        metadata=options.metadata,
    )
    span.run = run
    attributes = span.attributes
    if span.kind == "agent":
        span.kind = "run"
        attributes[attrs.SPAN_KIND] = "run"
    attributes[attrs.RUN_ID] = run.run_id
    attributes[attrs.AGENT_NAME] = name
    if distinct_id:
        attributes[attrs.DISTINCT_ID] = distinct_id
        attributes[attrs.USER_ID] = distinct_id
    if conversation_id:
        attributes[attrs.CONVERSATION_ID] = conversation_id
        attributes[attrs.SESSION_ID] = conversation_id
        attributes[attrs.GEN_AI_CONVERSATION_ID] = conversation_id
    if parent_run_id:
        attributes[attrs.PARENT_RUN_ID] = parent_run_id
    if run.metadata:
        attributes[attrs.METADATA] = spans._metadata_json(run.metadata)


def check_kind(kind: str) -> str:
    if kind not in attrs.OPENINFERENCE_KIND:
        raise ValueError(f"kind must be one of {', '.join(spans.KINDS)}, got {kind!r}")
    return kind


class TrodoTracer(trace_api.Tracer):
    """An OpenTelemetry tracer whose spans join trodo runs (kind ``function`` unless
    ``trodo.span.kind`` is given as an attribute)."""

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> TrodoSpan:
        trodo_kind = "function"
        if attributes and attributes.get(attrs.SPAN_KIND) in attrs.OPENINFERENCE_KIND:
            trodo_kind = attributes[attrs.SPAN_KIND]
        span = start_span(name, trodo_kind, attributes, ctx=context, start_ns=start_time)
        for link in links or ():
            span.add_link(link.context, link.attributes)
        return span

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[TrodoSpan]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        token = otel_context.attach(trace_api.set_span_in_context(span))
        try:
            yield span
        except BaseException as exc:
            if record_exception:
                span.record_error(exc) if set_status_on_exception else span.record_exception(
                    exc, escaped=True
                )
            elif set_status_on_exception:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            if end_on_exit:
                span.end()


TRACER = TrodoTracer()

"""Dual export: ``init(tracer_provider=provider)`` joins trodo to a TracerProvider the app already has.

Both ways, never replacing the global provider:

* trodo's spans, once converted on the export thread, are also handed to that provider's span
  processors (``on_end``), so the app's own exporters send them to its backend too;
* a :class:`RunJoinProcessor` added to that provider gives every span started inside a run (an HTTP
  client's, a database driver's) the ``trodo.run.id`` attribute, and passes it to trodo's pipeline
  when it ends, so it joins the run's tree in trodo's backend as well. Spans outside any run are
  left to the app's provider alone.

OpenTelemetry's own GenAI instrumentation (``opentelemetry-instrumentation-openai-v2``) writing to
that provider traces the same provider calls as trodo. Its span of a call trodo also traces is
*shadowed*: trodo's span of the call takes the same span id and parent (see
``integrations/providers/_common.py``), the app's provider keeps the instrumentation's span and
not trodo's copy, trodo's backend keeps trodo's span and not the instrumentation's. So each backend
shows the call once, with one id that the call's child spans point to in both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from ..core import attrs
from ..core import spans as spans_mod
from ..core.errors import log_once
from .otel_compat import active_span_processor

_SCOPE_NAME = "trodo_trace"
#: Scopes of OpenTelemetry's GenAI instrumentations (the legacy path and the util-genai handler).
GENAI_SCOPES = ("opentelemetry.instrumentation.openai_v2", "opentelemetry.util.genai")
_STARTED_IN: dict[int, otel_context.Context] = {}  # GenAI span id -> the context it started in
_NOT_JOINED: set[int] = set()  # GenAI spans that trodo's span of the same call stands for
_NOT_FORWARDED: set[int] = set()  # trodo spans whose call the app's provider has a GenAI span of


def is_genai_span(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    name = getattr(scope, "name", None)
    return isinstance(name, str) and name.startswith(GENAI_SCOPES)


def genai_started_in(span_id: int) -> otel_context.Context | None:
    """The context the attached provider's GenAI span ``span_id`` started in (``None``: not one of its)."""
    return _STARTED_IN.get(span_id)


def shadow(span_id: int, *, same_id: bool) -> None:
    """Trodo stands for the call of GenAI span ``span_id`` in its backend: that span is not joined to
    the run. ``same_id``: trodo's span of the call has its id, and is not handed to the provider."""
    _NOT_JOINED.add(span_id)
    if same_id:
        _NOT_FORWARDED.add(span_id)


class RunJoinProcessor(SpanProcessor):
    """Added to the app's provider: spans inside a run carry ``trodo.run.id`` and reach trodo too."""

    def __init__(self, provider: Any):
        self.provider = provider

    def on_start(self, span: Any, parent_context: otel_context.Context | None = None) -> None:
        run = spans_mod.run_from_context(parent_context)
        run_id = run.run_id if run is not None else None
        if run_id is None:  # nested in another of the provider's spans that is inside a run
            parent = trace_api.get_current_span(parent_context)
            attributes = getattr(parent, "attributes", None)
            if attributes:
                run_id = attributes.get(attrs.RUN_ID)
        if run_id is not None:
            span.set_attribute(attrs.RUN_ID, run_id)
        if is_genai_span(span):
            _STARTED_IN[span.context.span_id] = (
                parent_context if parent_context is not None else otel_context.get_current()
            )

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == _SCOPE_NAME:
            return  # one of ours, handed to this provider by the forwarder
        span_id = span.context.span_id if span.context is not None else 0
        if _STARTED_IN.pop(span_id, None) is not None and span_id in _NOT_JOINED:
            _NOT_JOINED.discard(span_id)
            return  # trodo's span of the same call stands for it in trodo's backend
        attributes = span.attributes
        if not attributes or attrs.RUN_ID not in attributes:
            return
        runtime = spans_mod.RUNTIME
        if runtime is None or not runtime.enabled or runtime.config.tracer_provider is not self.provider:
            return
        runtime.pipeline.submit(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def attach_provider(provider: Any) -> Callable[[list[Any]], None] | None:
    """Add the :class:`RunJoinProcessor` to ``provider`` (once) and return the function that hands
    trodo's converted spans to its processors (``None`` when it is not an SDK provider)."""
    add = getattr(provider, "add_span_processor", None)
    processors = active_span_processor(provider)
    if add is None or processors is None:
        log_once(
            "dual-export-provider",
            "trodo_trace: tracer_provider %r is not an OpenTelemetry SDK TracerProvider; dual export is off",
            type(provider).__name__,
        )
        return None
    if not getattr(provider, "_trodo_run_join", False):
        add(RunJoinProcessor(provider))
        provider._trodo_run_join = True

    def forward(readables: list[Any]) -> None:
        for readable in readables:
            if _NOT_FORWARDED and readable.context.span_id in _NOT_FORWARDED:
                _NOT_FORWARDED.discard(readable.context.span_id)
                continue  # the provider has the GenAI instrumentation's span of this call
            processors.on_end(readable)

    return forward

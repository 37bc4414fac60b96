"""Dual export: ``init(tracer_provider=provider)`` joins trodo to a TracerProvider the app already has.

Both ways, never replacing the global provider:

* trodo's spans, once converted on the export thread, are also handed to that provider's span
  processors (``on_end``), so the app's own exporters send them to its backend too;
* a :class:`RunJoinProcessor` added to that provider gives every span started inside a run (an HTTP
  client's, a database driver's) the ``trodo.run.id`` attribute, and passes it to trodo's pipeline
  when it ends, so it joins the run's tree in trodo's backend as well. Spans outside any run are
  left to the app's provider alone.
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

    def on_end(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == _SCOPE_NAME:
            return  # one of ours, handed to this provider by the forwarder
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
            processors.on_end(readable)

    return forward

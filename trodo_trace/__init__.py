"""trodo_trace: tracing for LLM agents.

Decorate agents, tools, retrievals and LLM calls; every execution becomes a run, a tree of
OpenTelemetry spans, exported over OTLP or kept in a local store.

Example:
    >>> import trodo_trace as trodo
    >>> @trodo.agent
    ... def answer(question: str) -> str:
    ...     return "42"
"""

from __future__ import annotations

from ._internal.api import (
    agent,
    chain,
    current_run,
    current_span,
    flush,
    function,
    get_tracer,
    init,
    last_run,
    llm,
    retrieval,
    shutdown,
    stats,
    tool,
    trace,
    with_span,
    wrap_agent,
)
from ._internal.decorators import SpanSpec
from ._internal.runtime import VERSION as __version__
from ._internal.spans import Run, RunRef, TrodoSpan

Span = TrodoSpan

__all__ = [
    "Run",
    "RunRef",
    "Span",
    "SpanSpec",
    "__version__",
    "agent",
    "chain",
    "current_run",
    "current_span",
    "flush",
    "function",
    "get_tracer",
    "init",
    "last_run",
    "llm",
    "retrieval",
    "shutdown",
    "stats",
    "tool",
    "trace",
    "with_span",
    "wrap_agent",
]

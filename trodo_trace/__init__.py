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
from ._internal.core.decorators import SpanSpec
from ._internal.core.spans import Run, RunRef, TrodoSpan
from ._internal.display.runview import show
from ._internal.events.auto import install_asyncio_handler
from ._internal.events.feedback import feedback
from ._internal.events.track import for_user, track
from ._internal.propagation import RunContext, join_run, propagation_headers, run_context
from ._internal.version import VERSION as __version__
from .integrations import fastapi_middleware, instrument_httpx, instrument_requests
from .integrations.frameworks import instrument_langchain, instrument_llamaindex
from .integrations.providers import (
    instrument_anthropic,
    instrument_bedrock,
    instrument_cohere,
    instrument_gemini,
    instrument_litellm,
    instrument_mistral,
    instrument_openai,
)
from .ui import ui

Span = TrodoSpan

__all__ = [
    "Run",
    "RunContext",
    "RunRef",
    "Span",
    "SpanSpec",
    "__version__",
    "agent",
    "chain",
    "current_run",
    "current_span",
    "fastapi_middleware",
    "feedback",
    "flush",
    "for_user",
    "function",
    "get_tracer",
    "init",
    "install_asyncio_handler",
    "instrument_anthropic",
    "instrument_bedrock",
    "instrument_cohere",
    "instrument_gemini",
    "instrument_httpx",
    "instrument_langchain",
    "instrument_litellm",
    "instrument_llamaindex",
    "instrument_mistral",
    "instrument_openai",
    "instrument_requests",
    "join_run",
    "last_run",
    "llm",
    "propagation_headers",
    "retrieval",
    "run_context",
    "show",
    "shutdown",
    "stats",
    "tool",
    "trace",
    "track",
    "ui",
    "with_span",
    "wrap_agent",
]

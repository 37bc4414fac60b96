"""OpenLLMetry (``traceloop-sdk``) decorators: ``@agent`` / ``@tool`` / ``@task``; OTLP to ``<api_endpoint>/v1/traces``.

traceloop has no decorator for an LLM call (its LLM spans come from provider instrumentations),
so the llm step is a ``@task``.
"""

from __future__ import annotations

import os
from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import agent as agent_
    from traceloop.sdk.decorators import task, tool

    Traceloop.init(
        app_name="bench",
        api_endpoint=endpoint,
        api_key="tl-bench",
        telemetry_enabled=False,
        disable_batch=False,
    )

    @tool(name="search")
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @tool(name="fetch")
    def fetch(url):
        return {"url": url, "status": 200}

    @task(name="complete")
    def complete(prompt, temperature=0.2):
        return {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}

    @agent_(name="agent")
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    def flush(timeout: float) -> None:
        from traceloop.sdk.tracing.tracing import TracerWrapper

        TracerWrapper().flush()  # the singleton's processors; force_flush with their default bound

    return {"agent": agent, "flush": flush}

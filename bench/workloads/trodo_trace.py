"""trodo_trace decorators: ``@trodo.agent`` / ``@trodo.tool`` / ``@trodo.llm``."""

from __future__ import annotations

from typing import Any


def setup(endpoint: str | None) -> dict[str, Any]:
    import importlib.util

    import trodo_trace as trodo

    if importlib.util.find_spec("trodo_trace._internal.export.otlp") is None:
        endpoint = None  # no OTLP exporter in this checkout: measure the local-store mode instead
    trodo.init(endpoint=endpoint, service_name="bench")

    @trodo.tool
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @trodo.tool
    def fetch(url):
        return {"url": url, "status": 200}

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt, temperature=0.2):
        return {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}

    @trodo.agent
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    @trodo.tool
    def step(i):
        return i

    @trodo.agent
    def wide(n):
        for i in range(n - 1):
            step(i)
        return n

    return {"agent": agent, "wide": wide, "flush": trodo.flush, "stats": trodo.stats}

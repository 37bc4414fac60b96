"""Phoenix / OpenInference: ``phoenix.otel.register(endpoint=...)`` and its ``OITracer`` decorators."""

from __future__ import annotations

from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    from phoenix.otel import register

    provider = register(
        project_name="bench",
        endpoint=endpoint + "/v1/traces",
        protocol="http/protobuf",
        batch=True,
        set_global_tracer_provider=False,
        verbose=False,
    )
    tracer = provider.get_tracer("bench")

    @tracer.tool
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @tracer.tool
    def fetch(url):
        return {"url": url, "status": 200}

    @tracer.llm
    def complete(prompt, temperature=0.2):
        return {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}

    @tracer.agent
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    def flush(timeout: float) -> bool:
        return provider.force_flush(int(timeout * 1000))

    return {"agent": agent, "flush": flush}

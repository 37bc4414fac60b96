"""Langfuse ``@observe`` (v3+, OpenTelemetry-based; exports OTLP to ``/api/public/otel/v1/traces``)."""

from __future__ import annotations

from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    from langfuse import Langfuse, observe

    client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=endpoint)

    @observe(as_type="tool")
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @observe(as_type="tool")
    def fetch(url):
        return {"url": url, "status": 200}

    @observe(as_type="generation")
    def complete(prompt, temperature=0.2):
        result = {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}
        client.update_current_generation(
            model="gpt-4o-mini",
            model_parameters={"temperature": temperature},
            usage_details={"input": 120, "output": 30},
        )
        return result

    @observe(as_type="agent")
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    def flush(timeout: float) -> None:
        client.flush()

    return {"agent": agent, "flush": flush}

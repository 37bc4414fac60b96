"""LangSmith ``@traceable`` (posts runs to ``<endpoint>/runs/multipart`` or ``/runs/batch``)."""

from __future__ import annotations

import os
from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    os.environ.update(
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT=endpoint,
        LANGSMITH_API_KEY="lsv2-bench",
        LANGSMITH_PROJECT="bench",
    )
    from langsmith import Client, traceable

    client = Client(api_url=endpoint, api_key="lsv2-bench")

    @traceable(run_type="tool", client=client)
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @traceable(run_type="tool", client=client)
    def fetch(url):
        return {"url": url, "status": 200}

    @traceable(
        run_type="llm",
        client=client,
        metadata={"ls_provider": "openai", "ls_model_name": "gpt-4o-mini", "ls_temperature": 0.2},
    )
    def complete(prompt, temperature=0.2):
        return {
            "text": "answer",
            "usage": {"prompt_tokens": 120, "completion_tokens": 30},
            "usage_metadata": {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150},
        }

    @traceable(run_type="chain", name="agent", client=client)
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    def flush(timeout: float) -> None:
        client.flush(timeout)

    return {"agent": agent, "flush": flush}

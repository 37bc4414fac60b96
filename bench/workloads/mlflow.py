"""MLflow ``@mlflow.trace`` (mlflow-tracing), exporting OTLP through ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``."""

from __future__ import annotations

import os
from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint + "/v1/traces"
    os.environ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/protobuf"
    # mlflow-tracing resolves a tracking server even when it exports OTLP; point it at the sink too
    os.environ["MLFLOW_TRACKING_URI"] = endpoint
    import mlflow
    from mlflow.entities import SpanType

    @mlflow.trace(span_type=SpanType.TOOL)
    def search(query, limit=3):
        return [{"id": i, "title": "result"} for i in range(limit)]

    @mlflow.trace(span_type=SpanType.TOOL)
    def fetch(url):
        return {"url": url, "status": 200}

    @mlflow.trace(span_type=SpanType.LLM, attributes={"model": "gpt-4o-mini"})
    def complete(prompt, temperature=0.2):
        return {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}

    @mlflow.trace(span_type=SpanType.AGENT)
    def agent(question):
        search(question)
        fetch("https://example.com")
        return complete("prompt: " + question)

    def flush(timeout: float) -> bool:
        from mlflow.tracing.provider import provider

        return provider.get().force_flush(int(timeout * 1000))

    return {"agent": agent, "flush": flush}

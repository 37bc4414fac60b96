"""Raw OpenTelemetry: ``start_as_current_span`` with the attributes set by hand, BatchSpanProcessor."""

from __future__ import annotations

import json
from typing import Any


def setup(endpoint: str) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    tracer = provider.get_tracer("bench")

    def search(query, limit=3):
        with tracer.start_as_current_span("search") as span:
            span.set_attribute("openinference.span.kind", "TOOL")
            span.set_attribute("tool.name", "search")
            span.set_attribute("input.value", json.dumps({"query": query, "limit": limit}))
            result = [{"id": i, "title": "result"} for i in range(limit)]
            span.set_attribute("output.value", json.dumps(result))
            return result

    def fetch(url):
        with tracer.start_as_current_span("fetch") as span:
            span.set_attribute("openinference.span.kind", "TOOL")
            span.set_attribute("tool.name", "fetch")
            span.set_attribute("input.value", json.dumps({"url": url}))
            result = {"url": url, "status": 200}
            span.set_attribute("output.value", json.dumps(result))
            return result

    def complete(prompt, temperature=0.2):
        with tracer.start_as_current_span("complete") as span:
            span.set_attribute("openinference.span.kind", "LLM")
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            span.set_attribute("gen_ai.request.temperature", temperature)
            span.set_attribute("input.value", json.dumps({"prompt": prompt, "temperature": temperature}))
            result = {"text": "answer", "usage": {"prompt_tokens": 120, "completion_tokens": 30}}
            span.set_attribute("gen_ai.usage.input_tokens", 120)
            span.set_attribute("gen_ai.usage.output_tokens", 30)
            span.set_attribute("output.value", json.dumps(result))
            return result

    def agent(question):
        with tracer.start_as_current_span("agent") as span:
            span.set_attribute("openinference.span.kind", "AGENT")
            span.set_attribute("input.value", json.dumps({"question": question}))
            search(question)
            fetch("https://example.com")
            result = complete("prompt: " + question)
            span.set_attribute("output.value", json.dumps(result))
            return result

    def step(i):
        with tracer.start_as_current_span("step") as span:
            span.set_attribute("openinference.span.kind", "TOOL")
            span.set_attribute("input.value", json.dumps({"i": i}))
            span.set_attribute("output.value", json.dumps(i))
            return i

    def wide(n):
        with tracer.start_as_current_span("wide") as span:
            span.set_attribute("openinference.span.kind", "AGENT")
            span.set_attribute("input.value", json.dumps({"n": n}))
            for i in range(n - 1):
                step(i)
            span.set_attribute("output.value", json.dumps(n))
            return n

    def flush(timeout: float) -> bool:
        return provider.force_flush(int(timeout * 1000))

    return {"agent": agent, "wide": wide, "flush": flush}

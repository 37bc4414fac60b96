"""Interop with a real backend: a run exported over OTLP is read back from Arize Phoenix's REST API."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import trodo_trace as trodo

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = pytest.mark.interop
PROJECT = "trodo-interop"


def _get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _phoenix_spans(base, expected, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            spans = _get(f"{base}/v1/projects/{PROJECT}/spans?limit=1000")["data"]
        except OSError:
            spans = []
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)


def _agent():
    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def complete(prompt):
        return {"text": "it is sunny", "usage": {"prompt_tokens": 42, "completion_tokens": 7}}

    @trodo.tool
    def weather(city):
        return {"city": city, "sky": "clear"}

    @trodo.retrieval
    def search_docs(query):
        return [{"id": "doc-1", "content": "Paris is in France.", "score": 0.92}]

    @trodo.agent("weather-bot", distinct_id="user-7")
    def bot(question):
        search_docs(question)
        with trodo.agent("planner"):
            weather("Paris")
        return complete(question)["text"]

    return bot


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_phoenix_reads_back_the_whole_run(phoenix, protocol, monkeypatch):
    """Every span arrives in Phoenix with its parent, its OpenInference kind and the LLM token counts."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={PROJECT}")
    endpoint = phoenix["grpc"] if protocol == "grpc" else phoenix["http"]
    trodo.init(endpoint=endpoint, protocol=protocol, service_name="interop", schedule_delay_ms=50)
    from trodo_trace.testing import capture

    with capture() as local:
        assert _agent()("weather in Paris?") == "it is sunny"
    assert trodo.flush(10.0) is True
    sent = {span.span_id: span for span in local.spans}
    trace_id = next(iter(sent.values())).trace_id
    spans = [s for s in _phoenix_spans(phoenix["http"], len(sent)) if s["context"]["trace_id"] == trace_id]
    deadline = time.monotonic() + 30
    while len(spans) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.3)
        spans = [s for s in _phoenix_spans(phoenix["http"], 0, 0) if s["context"]["trace_id"] == trace_id]

    got = {s["context"]["span_id"]: s for s in spans}
    assert set(got) == set(sent)
    assert {sid: s["parent_id"] for sid, s in got.items()} == {sid: s.parent_id for sid, s in sent.items()}
    assert {s["name"]: s["span_kind"] for s in spans} == {
        "weather-bot": "AGENT",
        "planner": "AGENT",
        "weather": "TOOL",
        "search_docs": "RETRIEVER",
        "complete": "LLM",
    }
    llm = next(s for s in spans if s["name"] == "complete")["attributes"]
    assert (
        llm["llm.token_count.prompt"],
        llm["llm.token_count.completion"],
        llm["llm.token_count.total"],
    ) == (
        42,
        7,
        49,
    )
    assert llm["llm.model_name"] == "gpt-4o-mini"
    root = next(s for s in spans if s["name"] == "weather-bot")["attributes"]
    assert (root["trodo.run.total_tokens_in"], root["user.id"]) == (42, "user-7")
    docs = next(s for s in spans if s["name"] == "search_docs")["attributes"]
    assert docs["retrieval.documents.0.document.content"] == "Paris is in France."

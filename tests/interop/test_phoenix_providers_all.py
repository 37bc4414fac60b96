"""Interop with a real backend: one run calling every instrumented provider (provider_calls.CALLS),
read back from Arize Phoenix — every LLM span carries input and output messages Phoenix understands."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

import trodo_trace as trodo
from trodo_trace.testing import capture

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from provider_calls import CALLS
from test_phoenix import PROJECT, _phoenix_spans
from test_phoenix_providers import _flat

pytestmark = pytest.mark.interop


def test_every_provider_in_phoenix(phoenix, monkeypatch):
    """Phoenix reads one LLM span per provider, each with the prompt and the completion as messages."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={PROJECT}")
    trodo.init(endpoint=phoenix["http"], service_name="interop-every-provider", schedule_delay_ms=50)
    with ExitStack() as stack, capture() as local:
        fakes = {entry.key: stack.enter_context(entry.fake()) for entry in CALLS}
        for entry in CALLS:
            fakes[entry.key].reply(f"Answer from {entry.key}.", usage=entry.usage)

        @trodo.agent("every-provider")
        def bot():
            return [entry.call(fakes[entry.key]) for entry in CALLS]

        bot()
    assert trodo.flush(10.0) is True
    trace_id = local.spans[0].trace_id
    deadline = time.monotonic() + 30
    spans = []
    while len(spans) < len(CALLS) + 1 and time.monotonic() < deadline:
        spans = [s for s in _phoenix_spans(phoenix["http"], 0, 0) if s["context"]["trace_id"] == trace_id]
        time.sleep(0.3)
    kinds = {s["name"]: s["span_kind"] for s in spans}
    assert kinds == {"every-provider": "AGENT", **{entry.span: "LLM" for entry in CALLS}}
    for entry in CALLS:
        attributes = _flat(next(s for s in spans if s["name"] == entry.span)["attributes"])
        assert attributes["llm.input_messages.0.message.role"] == "user", entry.key
        assert attributes["llm.input_messages.0.message.content"] == "Weather in Paris?", entry.key
        assert attributes["llm.output_messages.0.message.role"] == "assistant", entry.key
        assert attributes["llm.output_messages.0.message.content"] == f"Answer from {entry.key}.", entry.key
        assert (attributes["llm.token_count.prompt"], attributes["llm.token_count.completion"]) == entry.usage

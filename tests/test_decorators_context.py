"""Decorated calls and the OpenTelemetry context: the same trees whichever runtime context holds the
current context, the context restored after every call, values captured alike from many threads, and
an LLM function's parameters (given, defaulted or given as None) written as the call says."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from contextvars import ContextVar, Token

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.context.context import Context, _RuntimeContext

import trodo_trace as trodo
from trodo_trace._internal.core import tracing
from trodo_trace.testing import capture


class CountingRuntimeContext(_RuntimeContext):
    """A runtime context of its own (as ``OTEL_PYTHON_CONTEXT`` would select), counting its use."""

    def __init__(self) -> None:
        self._var: ContextVar[Context] = ContextVar("counting", default=Context())  # noqa: B039 - immutable (as OpenTelemetry's own)
        self.attached = 0
        self.detached = 0

    def attach(self, context: Context) -> Token[Context]:
        self.attached += 1
        return self._var.set(context)

    def get_current(self) -> Context:
        return self._var.get()

    def detach(self, token: Token[Context]) -> None:
        self.detached += 1
        self._var.reset(token)


def _run_tree() -> tuple[list[tuple[str, str, str | None]], dict[str, str]]:
    """A run of an agent, a tool and a generator; the tree as (name, kind, parent name) and what the
    OpenTelemetry API saw as the current span inside each call."""
    seen: dict[str, str] = {}

    def current_name() -> str:
        return getattr(trace_api.get_current_span(), "name", "<none>")

    @trodo.tool
    def lookup(order_id):
        seen["lookup"] = current_name()
        return {"order": order_id}

    @trodo.tool
    def stream(n):
        for i in range(n):
            seen["stream"] = current_name()
            yield i

    @trodo.agent
    def support(question):
        seen["support"] = current_name()
        lookup("A-17")
        return list(stream(2))

    with capture(deterministic=True) as traces:
        assert support("where is my order?") == [0, 1]
        seen["after"] = current_name()
    by_id = {span.span_id: span.name for span in traces.spans}
    tree = [(span.name, span.kind, by_id.get(span.parent_id)) for span in traces.spans]
    return sorted(tree), seen


EXPECTED_TREE = [("lookup", "tool", "support"), ("stream", "tool", "support"), ("support", "run", None)]
EXPECTED_SEEN = {"support": "support", "lookup": "lookup", "stream": "stream", "after": "<none>"}


def test_decorated_calls_set_and_restore_the_default_context():
    """Under OpenTelemetry's default runtime context each call's span is current inside it, and the
    context before the call is back after it."""
    tree, seen = _run_tree()
    assert tree == EXPECTED_TREE
    assert seen == EXPECTED_SEEN
    assert trace_api.get_current_span() is trace_api.INVALID_SPAN


def test_another_runtime_context_gets_the_same_tree_through_its_own_methods(monkeypatch):
    """With a runtime context other than the default one the spans go through its attach/detach and the
    tree is the same."""
    runtime_context = CountingRuntimeContext()
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", runtime_context)
    tree, seen = _run_tree()
    assert tree == EXPECTED_TREE
    assert seen == EXPECTED_SEEN
    assert runtime_context.attached >= 4  # support, lookup and each step of the generator
    assert runtime_context.attached == runtime_context.detached
    assert runtime_context.get_current() == {}


def test_a_token_that_cannot_be_reset_here_is_logged_not_raised(caplog):
    """A token attached in another contextvars context is reported by OpenTelemetry's detach (logged),
    never raised; the current context is untouched."""
    span = trace_api.NonRecordingSpan(trace_api.INVALID_SPAN_CONTEXT)
    token = contextvars.copy_context().run(tracing.attach_span, span)
    before = otel_context.get_current()
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        tracing.detach(token)
    assert "Failed to detach context" in caplog.text
    assert otel_context.get_current() is before


def test_the_same_value_captured_from_many_threads_at_once_is_encoded_whole():
    """Eight threads capturing one shared nested value at once: every span has the full JSON text (no
    thread sees another's value as a cycle), and a real cycle still becomes "<cycle>"."""
    shared = {"items": [{"id": i, "tags": ["a", "b"], "meta": {"depth": [i, {"x": i}]}} for i in range(50)]}
    expected = json.dumps({"payload": shared}, separators=(",", ":"))
    barrier = threading.Barrier(8)

    @trodo.tool
    def ingest(payload):
        return len(payload["items"])

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            ingest(shared)

    with capture() as traces:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cyclic: dict = {"name": "loop"}
        cyclic["self"] = cyclic
        ingest({"items": [cyclic]})
    inputs = [span.attributes["input.value"] for span in traces.spans]
    assert len(inputs) == 401
    assert inputs.count(expected) == 400
    assert json.loads(inputs[-1]) == {"payload": {"items": [{"name": "loop", "self": "<cycle>"}]}}


@pytest.mark.parametrize(
    ("call", "model", "temperature", "provider"),
    [
        (lambda chat: chat("hi"), "gpt-4o-mini", 0.7, "openai"),  # the defaults
        (lambda chat: chat("hi", "gpt-4.1"), "gpt-4.1", 0.7, "openai"),  # model given by position
        (lambda chat: chat("hi", temperature=None), "gpt-4o-mini", None, "openai"),  # no temperature
        (lambda chat: chat("hi", model=None), "gpt-4o-mini", 0.7, "openai"),  # the decorator's model
        (lambda chat: chat("hi", provider="azure"), "gpt-4o-mini", 0.7, "azure"),
    ],
)
def test_llm_parameters_given_defaulted_or_none(call, model, temperature, provider):
    """An LLM function's model and temperature: given, by position or keyword, win over its defaults;
    temperature=None records none; model=None keeps the decorator's model."""

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def chat(prompt, model=None, temperature=0.7, provider=None):
        return "ok"

    with capture() as traces:
        call(chat)
    attributes = traces.by_name("chat").attributes
    assert attributes["gen_ai.request.model"] == attributes["llm.model_name"] == model
    assert attributes.get("gen_ai.request.temperature") == temperature
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == provider

"""What LlamaIndex's instrumentation events add to the span they name.

LLM and embedding calls report a start event, stream chunks (``InProgress``) and an end event
(or an ``ExceptionEvent`` when a stream fails or is closed). A call nested in another call of
the same object (``acomplete`` calling ``complete``) reports the same response again, so only the
outermost call's result counts; sibling calls under one merged span add up.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation.events.chat_engine import StreamChatErrorEvent
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent
from llama_index.core.instrumentation.events.exception import ExceptionEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent

from .._internal.core import attrs, spans
from .._internal.core.decorators import record_error
from . import _llamaindex_extract as extract
from . import _messages as oi_messages
from ._llamaindex_records import Entry, Rec, State


def start_call(core: State, entry: Entry) -> bool:
    """Count one started call of ``entry``'s span; ``True`` when it is the outermost one."""
    rec = entry.rec
    assert rec is not None
    with core.lock:
        top = rec.depth == 0
        entry.started = True
        entry.calls.append(top)
        rec.depth += 1
    return top


def end_call(core: State, entry: Entry) -> bool | None:
    """Close the last started call of ``entry``'s span: ``None`` when none is open, else whether
    it was the outermost one (only its result counts)."""
    rec = entry.rec
    assert rec is not None
    with core.lock:
        if not entry.calls:
            return None
        rec.depth -= 1
        return entry.calls.pop()


def close_calls(core: State, entry: Entry) -> bool:
    """Close every call ``entry``'s span left open; ``True`` when there was one."""
    rec = entry.rec
    assert rec is not None
    with core.lock:
        count = len(entry.calls)
        rec.depth -= count
        entry.calls.clear()
    return count > 0


def llm_start(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.LLM or not start_call(core, entry):
        return
    attributes = rec.span.attributes
    if isinstance(event, LLMCompletionStartEvent):
        attributes[attrs.GEN_AI_OPERATION] = "text_completion"
        value = event.prompt
        listed = [{"role": "user", "content": value}] if isinstance(value, str) else None
    else:
        value = listed = core.extract("messages", extract.messages, event.messages)
    if oi_messages.INVOCATION_PARAMETERS not in attributes:
        parameters = core.extract("llm parameters", extract.llm_parameters, rec.instance, event.model_dict)
        core.extract("invocation parameters", oi_messages.write_parameters, attributes, parameters)
    if attrs.INPUT_VALUE not in attributes and value is not None:
        spans.RUNTIME.capture(rec.span, attrs.INPUT_VALUE, attrs.INPUT_MIME, value)
        if listed and spans.RUNTIME.capture_content:
            core.extract("input messages", oi_messages.write_messages, attributes, "input", listed)
    if attrs.REQUEST_MODEL not in attributes:
        model = core.extract("model", extract.model_from_payload, event.model_dict)
        if model:
            attrs.write_model(attributes, model, core.extract("provider", extract.provider, rec.instance))


def llm_progress(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.LLM or rec.first_token:
        return
    rec.first_token = True
    if core.lazy.get(id(rec.instance)) is rec:
        core.lazy.pop(id(rec.instance), None)
    span = rec.span
    span.attributes[attrs.TTFT_MS] = round((spans.now_ns() - span.start_ns) / 1e6, 3)


def llm_end(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.LLM:
        return
    if end_call(core, entry) and event.response is not None:
        llm_response(core, rec, event.response)
    core.maybe_end(rec)


def llm_response(core: State, rec: Rec, response: Any) -> None:
    """Output, token usage (from the raw provider response) and response model of one LLM call."""
    value = core.extract("llm output", extract.response_output, response)
    if value is not None:
        core.output(rec, value)
        if spans.RUNTIME.capture_content:
            message = value if isinstance(value, dict) else {"role": "assistant", "content": value}
            core.extract(
                "output messages", oi_messages.write_messages, rec.span.attributes, "output", [message]
            )
    usage = core.extract("llm usage", extract.response_usage, response)
    if usage is not None:
        add_usage(core, rec, tuple(usage))
    model = core.extract("response model", extract.response_model, response)
    if model:
        attributes = rec.span.attributes
        attributes[attrs.RESPONSE_MODEL] = model
        if attrs.REQUEST_MODEL not in attributes:
            attrs.write_model(attributes, model, None)


def add_usage(core: State, rec: Rec, usage: tuple[int | None, ...]) -> None:
    with core.lock:
        if rec.usage is None:
            rec.usage = list(usage)
        else:
            rec.usage = [
                None if a is None and b is None else (a or 0) + (b or 0)
                for a, b in zip(rec.usage, usage, strict=False)
            ]


def exception(core: State, entry: Entry, event: Any) -> None:
    """A streamed LLM call failed, or its stream was closed before the end."""
    rec = entry.rec
    if rec is None or rec.role != extract.LLM:
        return
    top = end_call(core, entry)
    if top is None:
        return
    if not top:
        pass  # the outermost call reports the same exception
    elif isinstance(event.exception, GeneratorExit):
        rec.span.attributes[attrs.GENERATOR_CLOSED_EARLY] = True
    else:
        record_error(rec.span, event.exception)
    core.maybe_end(rec)


def stream_chat_error(core: State, entry: Entry, event: Any) -> None:
    """A chat engine's stream failed in the thread writing it to memory."""
    if entry.rec is not None:
        record_error(entry.rec.span, event.exception)


def embedding_start(core: State, entry: Entry, event: Any) -> None:
    if entry.rec is not None and entry.rec.role == extract.EMBEDDING:
        start_call(core, entry)


def embedding_end(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.EMBEDDING or not end_call(core, entry):
        return
    tokens = core.extract("embedding tokens", extract.token_count, event.chunks)
    if tokens is not None:
        add_usage(core, rec, (tokens, None, None, None, None))
    if event.embeddings and isinstance(event.embeddings[0], list):
        rec.span.attributes["gen_ai.embeddings.dimension.count"] = len(event.embeddings[0])


def _documents(core: State, rec: Rec, prefix: str, nodes: Any) -> None:
    runtime = spans.RUNTIME
    documents = core.extract(
        "rerank documents", extract.node_documents, nodes, runtime.max_value_length, runtime.capture_content
    )
    attributes = rec.span.attributes
    for suffix, value in (documents or {}).items():
        attributes[prefix + suffix] = value


def rerank_start(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.RERANKER:
        return
    attributes = rec.span.attributes
    if event.model_name:
        attributes["reranker.model_name"] = event.model_name
    attributes["reranker.top_k"] = event.top_n
    if event.query is not None and spans.RUNTIME.capture_content:
        attributes["reranker.query"] = str(extract.query_text(event.query))
    _documents(core, rec, "reranker.input_documents", event.nodes)


def rerank_end(core: State, entry: Entry, event: Any) -> None:
    rec = entry.rec
    if rec is None or rec.role != extract.RERANKER:
        return
    _documents(core, rec, "reranker.output_documents", event.nodes)
    rec.span.attributes[attrs.RETRIEVAL_COUNT] = len(event.nodes)


#: The events that matter, by class (subclasses are matched once, then cached by the core).
HANDLERS: dict[type, Any] = {
    LLMChatStartEvent: llm_start,
    LLMCompletionStartEvent: llm_start,
    LLMChatInProgressEvent: llm_progress,
    LLMCompletionInProgressEvent: llm_progress,
    LLMChatEndEvent: llm_end,
    LLMCompletionEndEvent: llm_end,
    ExceptionEvent: exception,
    StreamChatErrorEvent: stream_chat_error,
    EmbeddingStartEvent: embedding_start,
    EmbeddingEndEvent: embedding_end,
    ReRankStartEvent: rerank_start,
    ReRankEndEvent: rerank_end,
}
try:  # sparse embeddings report their own end event (newer llama-index-core)
    from llama_index.core.instrumentation.events.embedding import SparseEmbeddingEndEvent

    HANDLERS[SparseEmbeddingEndEvent] = embedding_end
except ImportError:  # pragma: no cover - older llama-index-core
    pass

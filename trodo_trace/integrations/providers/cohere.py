"""The ``cohere`` SDK's v2 client (``cohere.ClientV2`` / ``AsyncClientV2``): ``chat``,
``chat_stream``, ``embed`` and ``rerank``, sync and async.

The methods are patched on the SDK's raw v2 client, which every v2 client (made before or after)
and ``with_raw_response`` go through: the SDK copies a client's ``chat`` and ``chat_stream``
methods onto the instance when the client is made, so a patch of the public class would miss
clients made before tracing started. A stream's span starts when the request is sent (the first
iteration) and ends with the stream.

A rerank is a ``retrieval`` span with OpenInference ``RERANKER`` attributes; its cost is the
model's per-search price times the billed search units.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import Usage, extract_usage
from ..._internal.core.extract import token_count as count
from . import _common as C
from . import _shape
from ._fields import field, fields, plain

PATCHES = C.Patches()
PROVIDER = "cohere"
SPAN_NAMES = {
    "chat": "cohere.chat",
    "stream": "cohere.chat",
    "embed": "cohere.embed",
    "rerank": "cohere.rerank",
}
_NOT_PARAMETERS = frozenset(
    {"messages", "tools", "documents", "texts", "images", "inputs", "query", "request_options"}
)

RERANK_QUERY = "reranker.query"
RERANK_MODEL = "reranker.model_name"
RERANK_TOP_K = "reranker.top_k"
RERANK_INPUT = "reranker.input_documents.{}.document.{}"
RERANK_OUTPUT = "reranker.output_documents.{}.document.{}"
SEARCH_UNITS = "cohere.billed_units.search_units"

#: USD per 1,000 searches (cohere.com/pricing, as of 2026-11-29); a search is up to 100 documents.
RERANK_PRICES = {
    "rerank-v4.0-pro": 2.5,
    "rerank-v4.0-fast": 2.0,
    "rerank-v3.5": 2.0,
    "rerank-english-v3.0": 2.0,
    "rerank-multilingual-v3.0": 2.0,
}

#: (module, class, method, operation, is_async)
TARGETS = (
    ("cohere.v2.raw_client", "RawV2Client", "chat", "chat", False),
    ("cohere.v2.raw_client", "AsyncRawV2Client", "chat", "chat", True),
    ("cohere.v2.raw_client", "RawV2Client", "embed", "embed", False),
    ("cohere.v2.raw_client", "AsyncRawV2Client", "embed", "embed", True),
    ("cohere.v2.raw_client", "RawV2Client", "rerank", "rerank", False),
    ("cohere.v2.raw_client", "AsyncRawV2Client", "rerank", "rerank", True),
    ("cohere.v2.raw_client", "RawV2Client", "chat_stream", "stream", False),
    ("cohere.v2.raw_client", "AsyncRawV2Client", "chat_stream", "stream", True),
)


def instrument() -> None:
    """Patch the installed ``cohere`` SDK (idempotent)."""
    for module_name, class_name, method, operation, is_async in TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = getattr(module, class_name, None)
        if owner is not None and method in owner.__dict__:
            PATCHES.wrap(owner, method, _wrapper(operation, is_async))


def uninstrument() -> None:
    PATCHES.restore()


# -- wrappers ----------------------------------------------------------------------------------
def _wrapper(operation: str, is_async: bool) -> Callable[..., Any]:
    if operation == "stream":

        def stream_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            manager = wrapped(*args, **kwargs)
            if not C.should_trace():
                return manager
            return _stream_manager(manager, dict(kwargs), is_async)

        return stream_wrapper

    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not C.should_trace():
                return await wrapped(*args, **kwargs)
            call = _start(operation, kwargs)
            try:
                with C.use_call(call):
                    result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                call.error(exc)
                call.end()
                raise
            return _finish(call, operation, result)

        return async_wrapper

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not C.should_trace():
            return wrapped(*args, **kwargs)
        call = _start(operation, kwargs)
        try:
            with C.use_call(call):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.error(exc)
            call.end()
            raise
        return _finish(call, operation, result)

    return wrapper


def _start(operation: str, kwargs: dict[str, Any]) -> C.Call:
    C.materialise(kwargs, "messages")
    if operation == "embed":
        kind, attributes = "function", {A.OI_KIND: "EMBEDDING", A.GEN_AI_OPERATION: "embeddings"}
    elif operation == "rerank":
        kind, attributes = "retrieval", {A.OI_KIND: "RERANKER", A.GEN_AI_OPERATION: "rerank"}
    else:
        kind, attributes = "llm", {A.GEN_AI_OPERATION: "chat"}
    call = C.Call.start(SPAN_NAMES[operation], kind, attributes, merge=operation != "rerank")
    call.guard("request", _REQUEST[operation], kwargs)
    return call


def _finish(call: C.Call, operation: str, result: Any) -> Any:
    """The raw client returns an ``HttpResponse``: its ``data`` is the parsed response."""
    status = getattr(getattr(result, "response", None), "status_code", None)
    if isinstance(status, int) and call.own:
        call.set(C.HTTP_STATUS, status)
    call.guard("response", _RESPONSE[operation], getattr(result, "data", result))
    call.end()
    return result


def _stream_manager(manager: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    """The raw ``chat_stream`` is a context manager: entering it sends the request and gives a
    response whose ``data`` iterates the events; the span sees them through a wrapped ``data``."""
    import wrapt

    def begin() -> C.Call:
        return _start("stream", kwargs)

    def attach(call: C.Call, response: Any) -> Any:
        state = _stream_state(call)
        status = getattr(response, "status_code", None)
        call.set(C.HTTP_STATUS, status if isinstance(status, int) else None)
        data = getattr(response, "_data", None)
        if data is None:
            state.finish()
            return state
        response._data = C.wrap_stream(data, state, is_async)
        return state

    if is_async:

        class AsyncManager(wrapt.ObjectProxy):  # type: ignore[type-arg]
            async def __aenter__(self) -> Any:
                call = begin()
                try:
                    with C.use_call(call):
                        response = await self.__wrapped__.__aenter__()
                except BaseException as exc:
                    call.error(exc)
                    call.end()
                    raise
                self._self_state = attach(call, response)
                return response

            async def __aexit__(self, *exc: Any) -> Any:
                try:
                    return await self.__wrapped__.__aexit__(*exc)
                finally:
                    state = getattr(self, "_self_state", None)
                    if state is not None:
                        state.finish(
                            exc[1] if exc[1] is not None and not isinstance(exc[1], GeneratorExit) else None,
                            closed_early=True,
                        )

        return AsyncManager(manager)

    class Manager(wrapt.ObjectProxy):  # type: ignore[type-arg]
        def __enter__(self) -> Any:
            call = begin()
            try:
                with C.use_call(call):
                    response = self.__wrapped__.__enter__()
            except BaseException as exc:
                call.error(exc)
                call.end()
                raise
            self._self_state = attach(call, response)
            return response

        def __exit__(self, *exc: Any) -> Any:
            try:
                return self.__wrapped__.__exit__(*exc)
            finally:
                state = getattr(self, "_self_state", None)
                if state is not None:
                    state.finish(
                        exc[1] if exc[1] is not None and not isinstance(exc[1], GeneratorExit) else None,
                        closed_early=True,
                    )

    return Manager(manager)


# -- requests ----------------------------------------------------------------------------------
def _parameters(call: C.Call, kwargs: dict[str, Any]) -> None:
    _shape.request(call, kwargs, PROVIDER, PROVIDER, _NOT_PARAMETERS)
    top_p = _shape.number(kwargs.get("p"))
    if top_p is not None:
        call.set(C.REQUEST_TOP_P, top_p)


def _chat_request(call: C.Call, kwargs: dict[str, Any]) -> None:
    _parameters(call, kwargs)
    _shape.tools(call, kwargs.get("tools"))
    _shape.input_messages(call, kwargs.get("messages"))


def _embed_request(call: C.Call, kwargs: dict[str, Any]) -> None:
    _parameters(call, kwargs)
    call.set(C.OI_EMBEDDING_MODEL, kwargs.get("model"))
    texts = kwargs.get("texts")
    strings = [text for text in texts if isinstance(text, str)] if isinstance(texts, (list, tuple)) else []
    for index, text in enumerate(strings):
        call.content(C.OI_EMBEDDING_TEXT.format(index), text)
    inputs = kwargs.get("inputs")
    if strings or _shape.given(inputs):
        call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, strings or C.to_plain(inputs))


def _rerank_request(call: C.Call, kwargs: dict[str, Any]) -> None:
    _parameters(call, kwargs)
    model = kwargs.get("model")
    call.set(RERANK_MODEL, model if isinstance(model, str) else None)
    top_n = kwargs.get("top_n")
    if isinstance(top_n, int) and not isinstance(top_n, bool):
        call.set(RERANK_TOP_K, top_n)
    query = kwargs.get("query")
    call.content(RERANK_QUERY, query if isinstance(query, str) else None)
    documents = kwargs.get("documents")
    for index, document in enumerate(documents if isinstance(documents, (list, tuple)) else ()):
        call.content(RERANK_INPUT.format(index, "content"), C.text_of(document))
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"query": query, "documents": C.to_plain(documents)})


_REQUEST: dict[str, Callable[[C.Call, dict[str, Any]], None]] = {
    "chat": _chat_request,
    "stream": _chat_request,
    "embed": _embed_request,
    "rerank": _rerank_request,
}


# -- responses ---------------------------------------------------------------------------------
def _chat_response(call: C.Call, response: Any) -> None:
    found = fields(response)
    if found is None:
        found = {key: C.get(response, key) for key in ("id", "finish_reason", "usage", "message")}
    response_id = found.get("id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    reason = found.get("finish_reason")
    if isinstance(reason, str):
        call.set(C.FINISH_REASONS, [reason])
    call.usage(_usage(found.get("usage")))
    message = found.get("message")
    texts = [field(part, "text") for part in field(message, "content") or ()]
    text = "".join(t for t in texts if isinstance(t, str)) if texts else None
    plan = field(message, "tool_plan")
    if not text and isinstance(plan, str) and plan:
        text = plan  # a tool-calling reply says what it is about to do in its tool plan
    output = _shape.output_message(
        call, 0, {"role": "assistant", "content": text, "tool_calls": field(message, "tool_calls")}
    )
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, output)


def _usage(block: Any) -> Usage | None:
    """Billed units (what Cohere charges), else the raw token counts."""
    for key in ("billed_units", "tokens"):
        units = field(block, key)
        found = fields(units)
        if found is not None and units is not None:  # Cohere's shape, read directly
            input_tokens, output_tokens = count(found.get("input_tokens")), count(found.get("output_tokens"))
            if input_tokens is not None or output_tokens is not None:
                return Usage(input_tokens, output_tokens)
        usage = extract_usage({"usage": plain(units)})
        if usage is not None and (usage.input_tokens is not None or usage.output_tokens is not None):
            return usage
    return None


def _embed_response(call: C.Call, response: Any) -> None:
    response_id = C.get(response, "id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    usage = _usage(C.get(response, "meta"))
    if usage is not None:
        call.usage(usage._replace(output_tokens=None))
    embeddings = C.get(response, "embeddings")
    vectors: Any = None
    for kind in ("float_", "float", "int8", "uint8", "binary", "ubinary"):
        vectors = C.get(embeddings, kind)
        if vectors:
            break
    summary: dict[str, Any] = {"embeddings": len(vectors) if isinstance(vectors, list) else 0}
    if isinstance(vectors, list) and vectors and hasattr(vectors[0], "__len__"):
        summary["dimensions"] = len(vectors[0])
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, summary)
    _shape.embedding_cost(call)


def _rerank_response(call: C.Call, response: Any) -> None:
    response_id = C.get(response, "id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    ranked = []
    for position, result in enumerate(C.get(response, "results") or ()):
        index, score = C.get(result, "index"), C.get(result, "relevance_score")
        call.set(RERANK_OUTPUT.format(position, "id"), str(index))
        if isinstance(score, (int, float)):
            call.set(RERANK_OUTPUT.format(position, "score"), float(score))
        document = _document(call, index)
        call.content(RERANK_OUTPUT.format(position, "content"), document)
        ranked.append({"index": index, "relevance_score": score})
    call.set(A.RETRIEVAL_COUNT, len(ranked))
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, ranked)
    units = C.get(C.get(C.get(response, "meta"), "billed_units"), "search_units")
    if isinstance(units, (int, float)) and not isinstance(units, bool):
        call.set(SEARCH_UNITS, int(units))
        model = call.span.attributes.get(RERANK_MODEL)
        price = RERANK_PRICES.get(model) if isinstance(model, str) else None
        if price is not None:
            call.set(A.LLM_COST, units * price / 1000)


def _document(call: C.Call, index: Any) -> str | None:
    if not isinstance(index, int):
        return None
    value = call.span.attributes.get(RERANK_INPUT.format(index, "content"))
    return value if isinstance(value, str) else None


_RESPONSE: dict[str, Callable[[C.Call, Any], None]] = {
    "chat": _chat_response,
    "embed": _embed_response,
    "rerank": _rerank_response,
}


# -- streams -----------------------------------------------------------------------------------
def _stream_state(call: C.Call) -> C.StreamState:
    """Accumulate v2 stream events into the response they spell."""
    seen: dict[str, Any] = {"id": None, "text": [], "plan": [], "tools": {}, "finish": None, "usage": None}

    def on_item(event: Any) -> None:
        kind = C.get(event, "type")
        message = C.get(C.get(event, "delta"), "message")
        if kind == "message-start":
            seen["id"] = C.get(event, "id")
        elif kind == "content-delta":
            text = C.get(C.get(message, "content"), "text")
            if isinstance(text, str):
                call.first_token()
                seen["text"].append(text)
        elif kind == "tool-plan-delta":
            plan = C.get(message, "tool_plan")
            if isinstance(plan, str):
                call.first_token()
                seen["plan"].append(plan)
        elif kind in ("tool-call-start", "tool-call-delta"):
            call.first_token()
            tool_call = C.get(message, "tool_calls")
            slot = seen["tools"].setdefault(
                C.get(event, "index") or 0, {"id": None, "name": None, "arguments": []}
            )
            if isinstance(C.get(tool_call, "id"), str):
                slot["id"] = C.get(tool_call, "id")
            function = C.get(tool_call, "function")
            if isinstance(C.get(function, "name"), str):
                slot["name"] = C.get(function, "name")
            if isinstance(C.get(function, "arguments"), str):
                slot["arguments"].append(C.get(function, "arguments"))
        elif kind == "message-end":
            delta = C.get(event, "delta")
            seen["finish"] = C.get(delta, "finish_reason")
            seen["usage"] = C.get(delta, "usage")

    def on_end() -> None:
        tool_calls = [
            {
                "id": slot["id"],
                "type": "function",
                "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])},
            }
            for _, slot in sorted(seen["tools"].items())
        ]
        message: dict[str, Any] = {"role": "assistant", "tool_calls": tool_calls}
        if seen["text"]:
            message["content"] = [{"type": "text", "text": "".join(seen["text"])}]
        if seen["plan"]:
            message["tool_plan"] = "".join(seen["plan"])
        response = {
            "id": seen["id"],
            "finish_reason": seen["finish"],
            "message": message,
            "usage": seen["usage"],
        }
        _chat_response(call, response)

    return C.StreamState(call, on_item, on_end)

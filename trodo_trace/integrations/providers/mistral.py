"""The ``mistralai`` SDK (3.x, ``mistralai.client.Mistral``): ``chat.complete``, ``chat.stream`` and
``embeddings.create``, each also ``*_async``, with tool calls.

The SDK's ``Chat`` and ``Embeddings`` classes are patched, so every client, made before or after, is
covered (``chat.parse`` goes through ``complete`` and is traced there). Provider ``mistral_ai``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import extract_usage
from . import _common as C
from . import _shape

PATCHES = C.Patches()
PROVIDER = "mistral_ai"
OI_PROVIDER = "mistralai"
SPAN_CHAT = "mistral.chat"
SPAN_EMBEDDINGS = "mistral.embeddings"
_NOT_PARAMETERS = frozenset(
    {"messages", "tools", "inputs", "retries", "server_url", "timeout_ms", "http_headers", "stream"}
)

#: (module, class, method, operation, is_async)
TARGETS = (
    ("mistralai.client.chat", "Chat", "complete", "chat", False),
    ("mistralai.client.chat", "Chat", "complete_async", "chat", True),
    ("mistralai.client.chat", "Chat", "stream", "stream", False),
    ("mistralai.client.chat", "Chat", "stream_async", "stream", True),
    ("mistralai.client.embeddings", "Embeddings", "create", "embeddings", False),
    ("mistralai.client.embeddings", "Embeddings", "create_async", "embeddings", True),
)


def instrument() -> None:
    """Patch the installed ``mistralai`` SDK (idempotent)."""
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


def _wrapper(operation: str, is_async: bool) -> Callable[..., Any]:
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
            return _finish(call, operation, result, True)

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
        return _finish(call, operation, result, False)

    return wrapper


def _start(operation: str, kwargs: dict[str, Any]) -> C.Call:
    C.materialise(kwargs, "messages")
    if operation == "embeddings":
        call = C.Call.start(
            SPAN_EMBEDDINGS, "function", {A.OI_KIND: "EMBEDDING", A.GEN_AI_OPERATION: "embeddings"}
        )
    else:
        call = C.Call.start(SPAN_CHAT, "llm", {A.GEN_AI_OPERATION: "chat"})
    call.guard("request", _request, kwargs, operation)
    return call


def _finish(call: C.Call, operation: str, result: Any, is_async: bool) -> Any:
    if operation == "stream":
        if result is None:
            call.end()
            return result
        return C.wrap_stream(result, _shape.chat_stream(call, unwrap="data"), is_async)
    if operation == "embeddings":
        call.guard("response", _embeddings_response, result)
    else:
        call.guard("response", _shape.chat_response, result)
    call.end()
    return result


def _request(call: C.Call, kwargs: dict[str, Any], operation: str) -> None:
    _shape.request(call, kwargs, PROVIDER, OI_PROVIDER, _NOT_PARAMETERS)
    if operation == "embeddings":
        call.set(C.OI_EMBEDDING_MODEL, kwargs.get("model"))
        inputs = kwargs.get("inputs")
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        for index, text in enumerate(t for t in texts if isinstance(t, str)):
            call.content(C.OI_EMBEDDING_TEXT.format(index), text)
        call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, C.to_plain(inputs))
        return
    _shape.tools(call, kwargs.get("tools"))
    _shape.input_messages(call, kwargs.get("messages"))


def _embeddings_response(call: C.Call, result: Any) -> None:
    response_id = C.get(result, "id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    model = C.get(result, "model")
    if isinstance(model, str) and model:
        call.set(A.RESPONSE_MODEL, model)
    usage = extract_usage(result)
    if usage is not None:
        call.usage(usage._replace(output_tokens=None))
    data = C.get(result, "data") or []
    vector: Any = C.get(data[0], "embedding") if data else None
    summary: dict[str, Any] = {"embeddings": len(data)}
    if hasattr(vector, "__len__"):
        summary["dimensions"] = len(vector)
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, summary)
    _shape.embedding_cost(call)

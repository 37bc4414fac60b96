"""The ``anthropic`` SDK: ``messages.create`` (also ``stream=True``) and the ``messages.stream(...)``
helper, sync and async, with tool use and prompt-caching usage.

The resource classes' methods are patched, so every client, made before or after, is covered.
Recent releases start their own OpenTelemetry span for each API call (``anthropic.messages.create``,
through the global tracer provider); while a call is traced here that span is not started, so a call
appears once in every backend (and, joined to a run by dual export, is not a second LLM row).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..._internal.core import attrs as A
from . import _common as C

PATCHES = C.Patches()
SPAN_NAME = "anthropic.messages"
PROVIDER = "anthropic"
_NOT_PARAMETERS = frozenset(
    {"messages", "system", "tools", "extra_headers", "extra_query", "extra_body", "timeout"}
)


def instrument() -> None:
    """Patch the installed ``anthropic`` SDK (idempotent)."""
    try:
        module = importlib.import_module("anthropic.resources.messages")
    except ImportError:
        return
    for class_name, is_async in (("Messages", False), ("AsyncMessages", True)):
        owner = getattr(module, class_name, None)
        if owner is None:
            continue
        if "create" in owner.__dict__:
            PATCHES.wrap(owner, "create", _async_create if is_async else _create)
        if "stream" in owner.__dict__:
            PATCHES.wrap(owner, "stream", _async_stream if is_async else _stream)
    try:
        base_client = importlib.import_module("anthropic._base_client")
    except ImportError:
        return
    if "start_api_call_span" in base_client.__dict__:
        PATCHES.wrap(base_client, "start_api_call_span", _no_sdk_span)


def uninstrument() -> None:
    PATCHES.restore()


# -- wrappers ----------------------------------------------------------------------------------
def _no_sdk_span(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """The SDK's own call span is left out while the call is traced here."""
    if C.IN_CALL.get():
        return None
    return wrapped(*args, **kwargs)


def _start(kwargs: dict[str, Any]) -> C.Call:
    C.materialise(kwargs, "messages")
    call = C.Call.start(SPAN_NAME, "llm", {A.GEN_AI_OPERATION: "chat"})
    call.guard("request", _request, kwargs)
    return call


def _create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not C.should_trace():
        return wrapped(*args, **kwargs)
    call = _start(kwargs)
    try:
        with C.use_call(call):
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.error(exc)
        call.end()
        raise
    return _finish(call, kwargs, result, False)


async def _async_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not C.should_trace():
        return await wrapped(*args, **kwargs)
    call = _start(kwargs)
    try:
        with C.use_call(call):
            result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        call.error(exc)
        call.end()
        raise
    return _finish(call, kwargs, result, True)


def _finish(call: C.Call, kwargs: dict[str, Any], result: Any, is_async: bool) -> Any:
    if kwargs.get("stream") is True and hasattr(result, "__iter__" if not is_async else "__aiter__"):
        return C.wrap_stream(result, _stream_state(call), is_async)
    parsed = result
    if hasattr(result, "http_response") and hasattr(result, "parse"):  # with_raw_response
        status = getattr(result.http_response, "status_code", None)
        call.set(C.HTTP_STATUS, status if isinstance(status, int) else None)
        if kwargs.get("stream") is True:
            call.end()
            return result
        try:
            parsed = result.parse()
        except Exception:
            call.end()
            return result
    call.guard("response", _response, parsed)
    call.end()
    return result


def _stream(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    manager = wrapped(*args, **kwargs)
    if not C.should_trace():
        return manager
    return _manager_proxy(manager, kwargs, False)


def _async_stream(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    manager = wrapped(*args, **kwargs)
    if not C.should_trace():
        return manager
    return _manager_proxy(manager, kwargs, True)


def _manager_proxy(manager: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
    """``messages.stream(...)``: the request is sent when the manager is entered, so the span starts
    there; the helper's stream reads the raw event stream, which is wrapped so the span sees every
    event however the helper is consumed (iteration, ``text_stream``, ``get_final_message()``)."""
    import wrapt

    kwargs = dict(kwargs)

    def begin() -> tuple[C.Call, C.use_call]:
        call = _start(kwargs)
        return call, C.use_call(call)

    def attach(call: C.Call, message_stream: Any) -> None:
        state = _stream_state(call)
        raw = getattr(message_stream, "_raw_stream", None)
        if raw is None:
            state.finish()
            return
        message_stream._raw_stream = C.wrap_stream(raw, state, is_async)

    if is_async:

        class AsyncManager(wrapt.ObjectProxy):  # type: ignore[type-arg]
            async def __aenter__(self) -> Any:
                call, scope = begin()
                try:
                    with scope:
                        message_stream = await self.__wrapped__.__aenter__()
                except BaseException as exc:
                    call.error(exc)
                    call.end()
                    raise
                call.guard("stream", attach, message_stream)
                return message_stream

            async def __aexit__(self, *exc: Any) -> Any:
                return await self.__wrapped__.__aexit__(*exc)

        return AsyncManager(manager)

    class Manager(wrapt.ObjectProxy):  # type: ignore[type-arg]
        def __enter__(self) -> Any:
            call, scope = begin()
            try:
                with scope:
                    message_stream = self.__wrapped__.__enter__()
            except BaseException as exc:
                call.error(exc)
                call.end()
                raise
            call.guard("stream", attach, message_stream)
            return message_stream

        def __exit__(self, *exc: Any) -> Any:
            return self.__wrapped__.__exit__(*exc)

    return Manager(manager)


# -- request -------------------------------------------------------------------------------------
def _request(call: C.Call, kwargs: dict[str, Any]) -> None:
    found: dict[str, Any] = {}
    model = kwargs.get("model")
    if isinstance(model, str) and model:
        found[A.REQUEST_MODEL] = found[A.OI_MODEL] = model
    found[A.PROVIDER] = found[A.OI_PROVIDER] = PROVIDER
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        found[A.TEMPERATURE] = float(temperature)
    max_tokens = kwargs.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        found[C.REQUEST_MAX_TOKENS] = max_tokens
    top_p = kwargs.get("top_p")
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool):
        found[C.REQUEST_TOP_P] = float(top_p)
    parameters = C.parameters(kwargs, _NOT_PARAMETERS)
    found[C.INVOCATION_PARAMETERS] = C.to_json(parameters)
    call.set_many(found)
    tools: Any = kwargs.get("tools")
    if C.given(tools):
        for index, tool in enumerate(tools):
            call.content(C.OI_TOOL_SCHEMA.format(index), C.to_json(C.to_plain(tool)))
    messages: list[Any] = []
    system = kwargs.get("system")
    if C.given(system):
        messages.append({"role": "system", "content": C.text_of(C.to_plain(system))})
    for message in kwargs.get("messages") or ():
        messages.append(C.to_plain(message))
    for index, message in enumerate(messages):
        _input_message(call, index, message)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": messages})


def _input_message(call: C.Call, index: int, message: Any) -> None:
    role = C.get(message, "role")
    if isinstance(role, str):
        call.content(C.OI_INPUT.format(index, "role"), role)
    content = C.get(message, "content")
    blocks = content if isinstance(content, list) else None
    texts = [C.get(b, "text") for b in blocks or () if C.get(b, "type") == "text"]
    others = [b for b in blocks or () if C.get(b, "type") not in ("text", "tool_use")]
    if blocks is None:
        call.content(C.OI_INPUT.format(index, "content"), C.text_of(content))
    else:
        pieces = [t for t in texts if isinstance(t, str)] + [C.to_json(C.to_plain(b)) for b in others]
        call.content(C.OI_INPUT.format(index, "content"), "\n".join(pieces) if pieces else None)
    position = 0
    for block in blocks or ():
        if C.get(block, "type") == "tool_use":
            call.content(C.OI_INPUT_TOOL_CALL.format(index, position, "function.name"), C.get(block, "name"))
            call.content(
                C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments"),
                C.to_json(C.to_plain(C.get(block, "input"))),
            )
            position += 1


# -- response ------------------------------------------------------------------------------------
def _response(call: C.Call, message: Any) -> None:
    response_id = C.get(message, "id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    model = C.get(message, "model")
    if isinstance(model, str) and model:
        call.set(A.RESPONSE_MODEL, model)
    reason = C.get(message, "stop_reason")
    if isinstance(reason, str):
        call.set(C.FINISH_REASONS, (reason,))
    call.usage(C.usage_of(message, "anthropic"))
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in C.get(message, "content") or ():
        kind = C.get(block, "type")
        if kind == "text" and isinstance(C.get(block, "text"), str):
            texts.append(C.get(block, "text"))
        elif kind in ("tool_use", "server_tool_use"):
            tool_calls.append(
                {
                    "id": C.get(block, "id"),
                    "function": {
                        "name": C.get(block, "name"),
                        "arguments": C.to_json(C.to_plain(C.get(block, "input"))),
                    },
                }
            )
    role = C.get(message, "role") or "assistant"
    text = "".join(texts) if texts else None
    call.content(C.OI_OUTPUT.format(0, "role"), role)
    call.content(C.OI_OUTPUT.format(0, "content"), text)
    for position, tool in enumerate(tool_calls):
        function = tool["function"]
        call.content(C.OI_TOOL_CALL.format(0, position, "function.name"), function["name"])
        call.content(C.OI_TOOL_CALL.format(0, position, "function.arguments"), function["arguments"])
        if isinstance(tool["id"], str):
            call.content(C.OI_TOOL_CALL.format(0, position, "id"), tool["id"])
    output: dict[str, Any] = {"role": role, "content": text}
    if tool_calls:
        output["tool_calls"] = tool_calls
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, output)


def _stream_state(call: C.Call) -> C.StreamState:
    """Accumulate raw message events into the message they spell."""
    message: dict[str, Any] = {"content": [], "usage": {}}
    blocks: dict[int, dict[str, Any]] = {}

    def on_item(event: Any) -> None:
        kind = C.get(event, "type")
        if kind == "message_start":
            start = C.get(event, "message")
            for key in ("id", "model", "role"):
                if isinstance(C.get(start, key), str):
                    message[key] = C.get(start, key)
            _merge_usage(message["usage"], C.get(start, "usage"))
        elif kind == "content_block_start":
            content_block = C.get(event, "content_block")
            text = C.get(content_block, "text")
            if isinstance(text, str) and C.get(content_block, "type") == "text":
                block: dict[str, Any] = {"type": "text", "text": text}  # all a text block is read for
            else:
                block = C.to_plain(content_block) or {}
            if block.get("type") in ("tool_use", "server_tool_use"):
                block["partial_json"] = []
            blocks[C.get(event, "index") or 0] = block
        elif kind == "content_block_delta":
            delta = C.get(event, "delta")
            block = blocks.setdefault(C.get(event, "index") or 0, {"type": "text", "text": ""})
            delta_type = C.get(delta, "type")
            if delta_type == "text_delta":
                call.first_token()
                block["text"] = (block.get("text") or "") + (C.get(delta, "text") or "")
            elif delta_type == "input_json_delta":
                call.first_token()
                block.setdefault("partial_json", []).append(C.get(delta, "partial_json") or "")
            elif delta_type == "thinking_delta":
                call.first_token()
        elif kind == "message_delta":
            reason = C.get(C.get(event, "delta"), "stop_reason")
            if isinstance(reason, str):
                message["stop_reason"] = reason
            _merge_usage(message["usage"], C.get(event, "usage"))

    def on_end() -> None:
        import json

        content = []
        for _, block in sorted(blocks.items()):
            pieces = block.pop("partial_json", None)
            if pieces is not None:
                try:
                    block["input"] = json.loads("".join(pieces)) if "".join(pieces) else {}
                except ValueError:
                    block["input"] = "".join(pieces)
            content.append(block)
        message["content"] = content
        if not message["usage"]:
            message.pop("usage")
        call.guard("stream response", _response, message)

    return C.StreamState(call, on_item, on_end)


def _merge_usage(usage: dict[str, Any], block: Any) -> None:
    for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
        value = C.get(block, key)
        if isinstance(value, int) and not isinstance(value, bool):
            usage[key] = value

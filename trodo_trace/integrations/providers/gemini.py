"""Gemini and Vertex AI through ``google-genai``: ``models.generate_content``,
``generate_content_stream`` and ``embed_content``, sync and ``client.aio``.

The ``Models`` / ``AsyncModels`` methods are patched, so every client, made before or after, is
covered (``chats`` go through them too). The provider is ``gcp.vertex_ai`` for ``vertexai=True``
clients and ``gcp.gemini`` otherwise. Usage comes from ``usage_metadata``: cached prompt tokens
and thinking tokens (counted as output, as Google bills them) included. Roles are written as
OpenInference expects them: Gemini's ``model`` is ``assistant``, a turn of function responses is ``tool``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import Usage, extract_usage
from ..._internal.core.extract import token_count as count
from . import _common as C
from ._fields import field, fields, plain

PATCHES = C.Patches()
OI_PROVIDER = "google"
SPAN_NAMES = {"generate": "gemini.generate_content", "embed": "gemini.embed_content"}
#: method -> (operation, streamed)
METHODS = {
    "generate_content": ("generate", False),
    "generate_content_stream": ("generate", True),
    "embed_content": ("embed", False),
}
_NOT_PARAMETERS = frozenset({"system_instruction", "tools", "http_options", "automatic_function_calling"})


def instrument() -> None:
    """Patch the installed ``google-genai`` (idempotent)."""
    try:
        module = importlib.import_module("google.genai.models")
    except ImportError:
        return
    for class_name, is_async in (("Models", False), ("AsyncModels", True)):
        owner = getattr(module, class_name, None)
        for method, (operation, streamed) in METHODS.items():
            if owner is not None and method in owner.__dict__:
                PATCHES.wrap(owner, method, _wrapper(operation, streamed, is_async))


def uninstrument() -> None:
    PATCHES.restore()


def _provider(instance: Any) -> str:
    client = getattr(instance, "_api_client", None)
    return "gcp.vertex_ai" if getattr(client, "vertexai", False) else "gcp.gemini"


# -- wrappers ----------------------------------------------------------------------------------
def _wrapper(operation: str, streamed: bool, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not C.should_trace():
                return await wrapped(*args, **kwargs)
            call = _start(operation, instance, kwargs)
            try:
                with C.use_call(call):
                    result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                _fail(call, exc)
                raise
            return _finish(call, operation, streamed, result, True)

        return async_wrapper

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not C.should_trace():
            return wrapped(*args, **kwargs)
        call = _start(operation, instance, kwargs)
        try:
            with C.use_call(call):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _fail(call, exc)
            raise
        return _finish(call, operation, streamed, result, False)

    return wrapper


def _fail(call: C.Call, exc: BaseException) -> None:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        call.set(C.HTTP_STATUS, code)
    call.error(exc)
    call.end()


def _start(operation: str, instance: Any, kwargs: dict[str, Any]) -> C.Call:
    if operation == "embed":
        kind, attributes = "function", {A.OI_KIND: "EMBEDDING", A.GEN_AI_OPERATION: "embeddings"}
    else:
        kind, attributes = "llm", {A.GEN_AI_OPERATION: "chat"}
    call = C.Call.start(SPAN_NAMES[operation], kind, attributes)
    call.guard("request", _request, instance, kwargs, operation)
    return call


def _finish(call: C.Call, operation: str, streamed: bool, result: Any, is_async: bool) -> Any:
    if streamed:
        if hasattr(result, "__anext__" if is_async else "__next__"):
            return C.wrap_stream(result, _stream_state(call), is_async)
        call.end()
        return result
    if operation == "embed":
        call.guard("response", _embed_response, result)
    else:
        call.guard("response", _response, result)
    call.end()
    return result


# -- request -------------------------------------------------------------------------------------
def _fields(value: Any) -> dict[str, Any]:
    """A config (pydantic model or dict) as a dict of its set fields."""
    if value is None:
        return {}
    found = fields(value)
    if found is not None:
        return {k: v for k, v in found.items() if v is not None}
    names = getattr(type(value), "model_fields", None) or {}
    return {name: getattr(value, name) for name in names if getattr(value, name, None) is not None}


def _request(call: C.Call, instance: Any, kwargs: dict[str, Any], operation: str) -> None:
    model = kwargs.get("model")
    call.model(model, _provider(instance), OI_PROVIDER)
    config = _fields(kwargs.get("config"))
    temperature = config.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        call.set(A.TEMPERATURE, float(temperature))
    max_tokens = config.get("max_output_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        call.set(C.REQUEST_MAX_TOKENS, max_tokens)
    top_p = config.get("top_p")
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool):
        call.set(C.REQUEST_TOP_P, float(top_p))
    parameters = {k: C.to_plain(v) for k, v in config.items() if k not in _NOT_PARAMETERS}
    parameters["model"] = model
    call.set(C.INVOCATION_PARAMETERS, C.to_json(parameters))
    contents = kwargs.get("contents")
    if operation == "embed":
        call.set(C.OI_EMBEDDING_MODEL, model)
        texts = [contents] if isinstance(contents, str) else list(contents or ())
        texts = [t if isinstance(t, str) else _content_text(t) for t in texts]
        for index, text in enumerate(texts):
            call.content(C.OI_EMBEDDING_TEXT.format(index), text)
        call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"input": texts})
        return
    for index, schema in enumerate(_tool_schemas(config.get("tools"))):
        call.content(C.OI_TOOL_SCHEMA.format(index), C.to_json(schema))
    messages: list[dict[str, Any]] = []
    system = config.get("system_instruction")
    if system is not None:
        messages.append(
            {"role": "system", "content": system if isinstance(system, str) else _content_text(system)}
        )
    messages.extend(_messages(contents))
    for index, message in enumerate(messages):
        _input_message(call, index, message)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": messages})


def _tool_schemas(tools: Any) -> list[Any]:
    """One schema per function declaration; a Python function as its name and docstring; other
    tools (search, code execution) as they are."""
    schemas: list[Any] = []
    for tool in tools or ():
        if callable(tool) and not hasattr(tool, "function_declarations"):
            schemas.append({"name": getattr(tool, "__name__", repr(tool)), "description": tool.__doc__})
            continue
        declarations = C.get(tool, "function_declarations")
        if declarations:
            schemas.extend(C.to_plain(d) for d in declarations)
        else:
            schemas.append(C.to_plain(tool))
    return schemas


def _is_content(item: Any) -> bool:
    return C.get(item, "parts") is not None or (isinstance(item, dict) and "role" in item)


def _messages(contents: Any) -> list[dict[str, Any]]:
    """``contents`` (a string, parts, or Content turns) as OpenAI-style messages."""
    if contents is None:
        return []
    if isinstance(contents, str) or not isinstance(contents, (list, tuple)):
        contents = [contents]
    messages: list[dict[str, Any]] = []
    loose: list[Any] = []
    for item in contents:
        if type(item) is not str and _is_content(item):
            if loose:
                messages.append(_message("user", loose))
                loose = []
            messages.append(_message(C.get(item, "role") or "user", C.get(item, "parts") or []))
        else:
            loose.append(item)
    if loose:
        messages.append(_message("user", loose))
    return messages


def _message(role: str, parts: Any) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    responses = 0
    for part in parts if isinstance(parts, (list, tuple)) else [parts]:
        if isinstance(part, str):
            texts.append(part)
            continue
        text = C.get(part, "text")
        call = C.get(part, "function_call")
        response = C.get(part, "function_response")
        if isinstance(text, str) and not C.get(part, "thought"):
            texts.append(text)
        elif call is not None:
            tool_calls.append(_tool_call(call))
        elif response is not None:
            responses += 1
            texts.append(C.to_json(C.to_plain(response)))
        elif not isinstance(text, str):
            texts.append(C.to_json(C.to_plain(part)))
    if role == "model":
        role = "assistant"
    elif responses and responses == len(texts):
        role = "tool"
    message: dict[str, Any] = {"role": role, "content": "\n".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _tool_call(call: Any) -> dict[str, Any]:
    return {
        "id": C.get(call, "id"),
        "function": {
            "name": C.get(call, "name"),
            "arguments": C.to_json(C.to_plain(C.get(call, "args") or {})),
        },
    }


def _content_text(content: Any) -> str | None:
    parts = C.get(content, "parts")
    if parts is None:
        text = C.get(content, "text")
        return text if isinstance(text, str) else C.to_json(C.to_plain(content))
    content_text: str | None = _message("user", parts)["content"]
    return content_text


def _input_message(call: C.Call, index: int, message: dict[str, Any]) -> None:
    call.content(C.OI_INPUT.format(index, "role"), message.get("role"))
    call.content(C.OI_INPUT.format(index, "content"), message.get("content"))
    for position, tool in enumerate(message.get("tool_calls") or ()):
        function = tool["function"]
        call.content(C.OI_INPUT_TOOL_CALL.format(index, position, "function.name"), function["name"])
        call.content(
            C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments"), function["arguments"]
        )


# -- response ------------------------------------------------------------------------------------
def _reason(value: Any) -> str | None:
    if value is None:
        return None
    name = getattr(value, "value", value)
    return name if isinstance(name, str) else str(name)


def _response(call: C.Call, response: Any) -> None:
    found = fields(response)
    if found is None:
        found = {key: C.get(response, key) for key in ("response_id", "model_version", "candidates")}
    response_id = found.get("response_id")
    if isinstance(response_id, str) and response_id:
        call.set(C.RESPONSE_ID, response_id)
    model = found.get("model_version")
    if isinstance(model, str) and model:
        call.set(A.RESPONSE_MODEL, model)
    call.usage(_usage(found.get("usage_metadata")) or extract_usage(plain(response)))  # see _fields
    candidates = list(found.get("candidates") or ())
    reasons = [_reason(field(c, "finish_reason")) for c in candidates]
    if any(reasons):
        call.set(C.FINISH_REASONS, [r for r in reasons if r])
    outputs = [_message("model", field(field(c, "content"), "parts") or []) for c in candidates]
    _outputs(call, outputs)


def _usage(metadata: Any) -> Usage | None:
    """Gemini's ``usage_metadata`` read field by field (what ``extract_usage`` makes of it)."""
    found = fields(metadata)
    prompt = count(found.get("prompt_token_count")) if found is not None and metadata is not None else None
    if prompt is None:
        return None
    thoughts = count(found.get("thoughts_token_count")) or 0
    output = (count(found.get("candidates_token_count")) or 0) + thoughts
    return Usage(prompt, output, count(found.get("cached_content_token_count")), None, thoughts or None)


def _outputs(call: C.Call, outputs: list[dict[str, Any]]) -> None:
    for index, message in enumerate(outputs):
        call.content(C.OI_OUTPUT.format(index, "role"), message["role"])
        call.content(C.OI_OUTPUT.format(index, "content"), message.get("content"))
        for position, tool in enumerate(message.get("tool_calls") or ()):
            function = tool["function"]
            call.content(C.OI_TOOL_CALL.format(index, position, "function.name"), function["name"])
            call.content(C.OI_TOOL_CALL.format(index, position, "function.arguments"), function["arguments"])
            if isinstance(tool.get("id"), str):
                call.content(C.OI_TOOL_CALL.format(index, position, "id"), tool["id"])
    if outputs:
        shown = [{k: v for k, v in m.items() if v is not None} for m in outputs]
        call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, shown[0] if len(shown) == 1 else shown)


def _embed_response(call: C.Call, response: Any) -> None:
    embeddings = list(C.get(response, "embeddings") or ())
    tokens = C.get(C.get(response, "usage_metadata"), "prompt_token_count")
    if not isinstance(tokens, int):
        counts = [C.get(C.get(e, "statistics"), "token_count") for e in embeddings]
        numbers = [int(n) for n in counts if isinstance(n, (int, float))]
        tokens = sum(numbers) if numbers else None
    if isinstance(tokens, int):
        call.usage(Usage(tokens, None))
        model = call.span.attributes.get(A.REQUEST_MODEL)
        if call.own and isinstance(model, str):
            cost = call.runtime.pricing.cost(model, call.span.attributes.get(A.PROVIDER), input_tokens=tokens)
            if cost is not None:
                call.set(A.LLM_COST, cost)
    summary: dict[str, Any] = {"embeddings": len(embeddings)}
    values: Any = C.get(embeddings[0], "values") if embeddings else None
    if hasattr(values, "__len__"):
        summary["dimensions"] = len(values)
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, summary)


def _stream_state(call: C.Call) -> C.StreamState:
    """Accumulate streamed chunks (each a partial response) into the response they spell."""
    parts: dict[int, list[Any]] = {}
    seen: dict[str, Any] = {}

    def on_item(chunk: Any) -> None:
        for key in ("response_id", "model_version", "usage_metadata"):
            value = C.get(chunk, key)
            if value is not None:
                seen[key] = value
        for position, candidate in enumerate(C.get(chunk, "candidates") or ()):
            index = C.get(candidate, "index")
            index = index if isinstance(index, int) else position
            new = list(C.get(C.get(candidate, "content"), "parts") or ())
            if new:
                call.first_token()
                parts.setdefault(index, []).extend(new)
            reason = _reason(C.get(candidate, "finish_reason"))
            if reason:
                seen.setdefault("reasons", {})[index] = reason

    def on_end() -> None:
        call.guard("stream response", _stream_end, parts, seen)

    return C.StreamState(call, on_item, on_end)


def _stream_end(call: C.Call, parts: dict[int, list[Any]], seen: dict[str, Any]) -> None:
    if isinstance(seen.get("response_id"), str):
        call.set(C.RESPONSE_ID, seen["response_id"])
    if isinstance(seen.get("model_version"), str):
        call.set(A.RESPONSE_MODEL, seen["model_version"])
    call.usage(extract_usage({"usage_metadata": seen.get("usage_metadata")}))
    reasons = seen.get("reasons") or {}
    if reasons:
        call.set(C.FINISH_REASONS, [reasons[i] for i in sorted(reasons)])
    outputs = []
    for index in sorted(parts):
        message = _message("model", parts[index])
        texts = [
            C.get(p, "text")
            for p in parts[index]
            if isinstance(C.get(p, "text"), str) and not C.get(p, "thought")
        ]
        if texts:  # streamed text pieces join without a separator
            message["content"] = "".join(texts)
        outputs.append(message)
    _outputs(call, outputs)

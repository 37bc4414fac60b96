"""The ``openai`` SDK: chat completions (``create``, ``parse``, streams, raw responses), the
Responses API and embeddings, sync and async, OpenAI and Azure OpenAI clients.

The resource classes' methods are patched (``openai.resources...Completions.create`` and so on), so
every client, made before or after, is covered. Each extractor below reads one part of a request or
a response and is run in isolation: a shape it does not know drops its attributes, never the call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context

from ..._internal.core import attrs as A
from . import _common as C
from .hosts import provider_for_url

PATCHES = C.Patches()

#: (module, class, method, operation) — a class or module a release lacks is skipped.
TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", "chat"),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", "chat"),
    ("openai.resources.chat.completions", "Completions", "parse", "chat"),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", "chat"),
    ("openai.resources.beta.chat.completions", "Completions", "parse", "chat"),
    ("openai.resources.beta.chat.completions", "AsyncCompletions", "parse", "chat"),
    ("openai.resources.responses", "Responses", "create", "responses"),
    ("openai.resources.responses", "AsyncResponses", "create", "responses"),
    ("openai.resources.responses", "Responses", "parse", "responses"),
    ("openai.resources.responses", "AsyncResponses", "parse", "responses"),
    ("openai.resources.embeddings", "Embeddings", "create", "embeddings"),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", "embeddings"),
)

SPAN_NAMES = {
    "chat": "openai.chat.completions",
    "responses": "openai.responses",
    "embeddings": "openai.embeddings",
}
_NOT_PARAMETERS = frozenset(
    {"messages", "input", "instructions", "tools", "extra_headers", "extra_query", "extra_body", "timeout"}
)
_RAW_HEADER = "X-Stainless-Raw-Response"


def instrument() -> None:
    """Patch the installed ``openai`` SDK (idempotent)."""
    for module_name, class_name, method, operation in TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = getattr(module, class_name, None)
        if owner is None or method not in owner.__dict__:
            continue
        is_async = class_name.startswith("Async")
        PATCHES.wrap(owner, method, _wrapper(operation, is_async))


def uninstrument() -> None:
    PATCHES.restore()


# -- the wrappers ----------------------------------------------------------------------------
def _wrapper(operation: str, is_async: bool) -> Callable[..., Any]:
    """The patch of one method. When OpenTelemetry's GenAI instrumentation patched it first (its
    wrapper is inside ours), the call goes through that wrapper first and is traced inside its span,
    in the context the call was made in (see ``_common``)."""
    if is_async:

        async def async_traced(wrapped: Any, instance: Any, args: Any, kwargs: Any, parent: Any) -> Any:
            call = _start(operation, instance, kwargs, parent)
            try:
                with C.use_call(call):
                    result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                call.error(exc)
                call.end()
                raise
            return _finish(call, operation, kwargs, result, True)

        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not C.should_trace():
                return await wrapped(*args, **kwargs)
            genai = C.genai_wrapper(wrapped)
            if genai is not None:
                inner, parent = wrapped.__wrapped__, otel_context.get_current()
                return await genai(
                    lambda *a, **k: async_traced(inner, instance, a, k, parent), instance, args, kwargs
                )
            return await async_traced(wrapped, instance, args, kwargs, None)

        return async_wrapper

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any, parent: Any) -> Any:
        call = _start(operation, instance, kwargs, parent)
        try:
            with C.use_call(call):
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.error(exc)
            call.end()
            raise
        return _finish(call, operation, kwargs, result, False)

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not C.should_trace():
            return wrapped(*args, **kwargs)
        genai = C.genai_wrapper(wrapped)
        if genai is not None:
            inner, parent = wrapped.__wrapped__, otel_context.get_current()
            return genai(lambda *a, **k: traced(inner, instance, a, k, parent), instance, args, kwargs)
        return traced(wrapped, instance, args, kwargs, None)

    return wrapper


def _start(operation: str, instance: Any, kwargs: dict[str, Any], parent: Any = None) -> C.Call:
    C.materialise(kwargs, "messages")
    if operation == "embeddings":
        kind, attributes = "function", {A.OI_KIND: "EMBEDDING", A.GEN_AI_OPERATION: "embeddings"}
    else:
        kind, attributes = "llm", {A.GEN_AI_OPERATION: "chat"}
    call = C.Call.start(SPAN_NAMES[operation], kind, attributes, parent=parent)
    call.guard("request", _request, instance, kwargs, operation)
    return call


def _finish(call: C.Call, operation: str, kwargs: dict[str, Any], result: Any, is_async: bool) -> Any:
    """Record a returned value; a stream is handed back wrapped, and its span ends with it."""
    raw = _raw_mode(kwargs)
    streaming = kwargs.get("stream") is True
    if raw is not None and hasattr(result, "parse"):
        call.guard("raw response", _raw_status, result)
        if raw == "stream":
            call.end()  # a streamed raw response: the body is the caller's to read
            return result
        if streaming:
            return _raw_stream_proxy(result, call, operation, is_async)
        try:
            parsed = result.parse()  # cached by the SDK: the caller's parse() returns the same object
        except Exception:
            call.end()
            return result
        call.guard("response", _RESPONSE[operation], parsed)
        call.end()
        return result
    if streaming:
        return C.wrap_stream(result, _stream_state(call, operation), is_async)
    call.guard("response", _RESPONSE[operation], result)
    call.end()
    return result


def _raw_mode(kwargs: dict[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    if isinstance(headers, dict):
        value = headers.get(_RAW_HEADER)
        return value if isinstance(value, str) else None
    return None


def _raw_status(call: C.Call, raw: Any) -> None:
    status = getattr(getattr(raw, "http_response", None), "status_code", None)
    if isinstance(status, int):
        call.set(C.HTTP_STATUS, status)


def _raw_stream_proxy(raw: Any, call: C.Call, operation: str, is_async: bool) -> Any:
    """``with_raw_response.create(stream=True)``: ``parse()`` gives the stream, wrapped."""
    import wrapt

    state = _stream_state(call, operation)

    class RawStream(wrapt.ObjectProxy):  # type: ignore[type-arg]
        def parse(self, *args: Any, **kwargs: Any) -> Any:
            stream = self.__wrapped__.parse(*args, **kwargs)
            if getattr(self, "_self_stream", None) is None:
                self._self_stream = C.wrap_stream(stream, state, is_async)
            return self._self_stream

        def __del__(self) -> None:
            if getattr(self, "_self_stream", None) is None and not state.done:
                state.finish(closed_early=True)

    return RawStream(raw)


# -- request -----------------------------------------------------------------------------------
#: id(base_url) -> (base_url, client type, provider_hosts, answer): a client's provider is read once
#: per base URL object (a client given a new ``base_url`` gets a new URL object, so a new answer).
_PROVIDERS: dict[int, tuple[Any, type, Any, tuple[str, str]]] = {}
_PROVIDERS_MAX = 256


def _provider(instance: Any) -> tuple[str, str]:
    client = getattr(instance, "_client", None)
    base_url = getattr(client, "base_url", None)
    hosts = getattr(C.runtime().config, "provider_hosts", None)
    cls = type(client)
    cached = _PROVIDERS.get(id(base_url))
    if cached is not None and cached[0] is base_url and cached[1] is cls and cached[2] is hosts:
        return cached[3]
    answer = _provider_of(cls, base_url, hosts)
    if len(_PROVIDERS) >= _PROVIDERS_MAX:
        _PROVIDERS.clear()
    _PROVIDERS[id(base_url)] = (base_url, cls, hosts, answer)  # holds base_url: its id is not reused
    return answer


def _provider_of(cls: type, base_url: Any, hosts: Any) -> tuple[str, str]:
    if cls.__name__.startswith(("AzureOpenAI", "AsyncAzureOpenAI")):
        return "azure.ai.openai", "azure"
    # OpenAI-compatible hosts (Groq, DeepSeek, Ollama, ...): the provider the base URL names
    if base_url is None:
        return "openai", "openai"
    return provider_for_url(str(base_url), hosts)


#: Per message index: its role, content, name and tool_call_id attribute keys.
_INPUT_KEYS = [
    tuple(C.OI_INPUT.format(i, key) for key in ("role", "content", "name", "tool_call_id")) for i in range(32)
]


def _request(call: C.Call, instance: Any, kwargs: dict[str, Any], operation: str) -> None:
    """Everything the request says, written at once (content attributes only when captured)."""
    provider, oi_provider = _provider(instance)
    found: dict[str, Any] = {}
    model = kwargs.get("model")
    if isinstance(model, str) and model:
        found[A.REQUEST_MODEL] = found[A.OI_MODEL] = model
    found[A.PROVIDER] = provider
    found[A.OI_PROVIDER] = oi_provider
    parameters = C.parameters(kwargs, _NOT_PARAMETERS)
    temperature = kwargs.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        found[A.TEMPERATURE] = float(temperature)
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            found[C.REQUEST_MAX_TOKENS] = value
            break
    top_p = kwargs.get("top_p")
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool):
        found[C.REQUEST_TOP_P] = float(top_p)
    found[C.INVOCATION_PARAMETERS] = C.to_json(parameters)
    if operation == "embeddings":
        found[C.OI_EMBEDDING_MODEL] = model
        call.set_many(found)
        _embedding_input(call, kwargs.get("input"))
        return
    capture = call.capture
    tools: Any = kwargs.get("tools")
    if capture and C.given(tools):
        for index, tool in enumerate(tools):
            found[C.OI_TOOL_SCHEMA.format(index)] = C.to_json(C.to_plain(tool))
    if not capture:
        call.set_many(found)
        return
    messages = _chat_input(kwargs) if operation == "chat" else _responses_input(kwargs)
    for index, message in enumerate(messages):
        if type(message) is dict and index < len(_INPUT_KEYS):
            _plain_input_message(found, _INPUT_KEYS[index], index, message)
        else:
            _input_message(found, index, message)
    call.set_many(found)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": messages})


def _chat_input(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    messages: Any = kwargs.get("messages")
    if not C.given(messages):
        return []
    return [C.to_plain(message) for message in messages]


def _responses_input(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = kwargs.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    items: Any = kwargs.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif C.given(items):
        for item in items:
            plain = C.to_plain(item)
            if not isinstance(plain, dict):
                messages.append({"role": "user", "content": C.text_of(plain)})
            elif plain.get("type") == "function_call":
                messages.append(
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"function": {"name": plain.get("name"), "arguments": plain.get("arguments")}}
                        ],
                    }
                )
            elif plain.get("type") == "function_call_output":
                messages.append(
                    {"role": "tool", "content": plain.get("output"), "tool_call_id": plain.get("call_id")}
                )
            else:
                messages.append(plain)
    return messages


def _plain_input_message(
    found: dict[str, Any], keys: tuple[str, ...], index: int, message: dict[str, Any]
) -> None:
    """:func:`_input_message` for a plain dict message (what the SDKs are called with)."""
    role = message.get("role")
    if isinstance(role, str):
        found[keys[0]] = role
    content = message.get("content")
    if content is not None:
        found[keys[1]] = content if type(content) is str else C.text_of(content)
    name = message.get("name")
    if isinstance(name, str):
        found[keys[2]] = name
    tool_call_id = message.get("tool_call_id")
    if isinstance(tool_call_id, str):
        found[keys[3]] = tool_call_id
    if message.get("tool_calls"):
        _input_tool_calls(found, index, message["tool_calls"])


def _input_message(found: dict[str, Any], index: int, message: Any) -> None:
    role = C.get(message, "role")
    if isinstance(role, str):
        found[C.OI_INPUT.format(index, "role")] = role
    content = C.text_of(C.get(message, "content"))
    if content is not None:
        found[C.OI_INPUT.format(index, "content")] = content
    for key in ("name", "tool_call_id"):
        value = C.get(message, key)
        if isinstance(value, str):
            found[C.OI_INPUT.format(index, key)] = value
    _input_tool_calls(found, index, C.get(message, "tool_calls"))


def _input_tool_calls(found: dict[str, Any], index: int, tool_calls: Any) -> None:
    for position, tool_call in enumerate(tool_calls or ()):
        function = C.get(tool_call, "function")
        name = C.get(function, "name")
        if name is not None:
            found[C.OI_INPUT_TOOL_CALL.format(index, position, "function.name")] = name
        arguments = C.get(function, "arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = C.to_json(arguments)
        if arguments is not None:
            found[C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments")] = arguments


def _embedding_input(call: C.Call, value: Any) -> None:
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    strings = [text for text in texts if isinstance(text, str)]
    for index, text in enumerate(strings):
        call.content(C.OI_EMBEDDING_TEXT.format(index), text)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, value if strings else C.to_plain(value))


# -- responses ---------------------------------------------------------------------------------
def _response_common(call: C.Call, result: Any, usage_shape: str = "") -> None:
    found: dict[str, Any] = {}
    _response_ids(found, result)
    call.set_many(found)
    call.usage(C.usage_of(result, usage_shape))


def _response_ids(found: dict[str, Any], result: Any) -> None:
    response_id = C.get(result, "id")
    if isinstance(response_id, str):
        found[C.RESPONSE_ID] = response_id
    model = C.get(result, "model")
    if isinstance(model, str) and model:
        found[A.RESPONSE_MODEL] = model


def _chat_response(call: C.Call, result: Any) -> None:
    found: dict[str, Any] = {}
    _response_ids(found, result)
    call.set_many(found)
    call.usage(C.usage_of(result, "openai"))
    found = {}
    outputs = []
    reasons = []
    capture = call.capture
    for index, choice in enumerate(C.get(result, "choices") or ()):
        message = C.get(choice, "message")
        reason = C.get(choice, "finish_reason")
        if isinstance(reason, str):
            reasons.append(reason)
        outputs.append(_output_message(found, capture, index, message))
    if reasons:
        found[C.FINISH_REASONS] = tuple(reasons)  # a tuple: hashable, so the exporter can reuse its encoding
    call.set_many(found)
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, outputs[0] if len(outputs) == 1 else outputs)


def _output_message(found: dict[str, Any], capture: bool, index: int, message: Any) -> dict[str, Any]:
    """The output message's attributes (into ``found`` when content is captured), and its plain form."""
    role = C.get(message, "role") or "assistant"
    content = C.get(message, "content")
    text = (content if type(content) is str else C.text_of(content)) if content is not None else None
    if text is None:
        text = C.get(message, "refusal")
    output: dict[str, Any] = {"role": role, "content": text}
    if capture:
        found[C.OI_OUTPUT.format(index, "role")] = role
        if text is not None:
            found[C.OI_OUTPUT.format(index, "content")] = text
    calls = []
    for position, tool_call in enumerate(C.get(message, "tool_calls") or ()):
        function = C.get(tool_call, "function")
        name, arguments = C.get(function, "name"), C.get(function, "arguments")
        tool_id = C.get(tool_call, "id")
        if capture:
            if name is not None:
                found[C.OI_TOOL_CALL.format(index, position, "function.name")] = name
            if arguments is not None:
                found[C.OI_TOOL_CALL.format(index, position, "function.arguments")] = arguments
            if isinstance(tool_id, str):
                found[C.OI_TOOL_CALL.format(index, position, "id")] = tool_id
        calls.append({"id": tool_id, "function": {"name": name, "arguments": arguments}})
    if calls:
        output["tool_calls"] = calls
    return output


def _responses_response(call: C.Call, result: Any) -> None:
    _response_common(call, result)
    status = C.get(result, "status")
    reason = C.get(C.get(result, "incomplete_details"), "reason")
    if isinstance(reason, str):
        call.set(C.FINISH_REASONS, (reason,))
    elif isinstance(status, str):
        call.set(C.FINISH_REASONS, (status,))
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in C.get(result, "output") or ():
        kind = C.get(item, "type")
        if kind == "message":
            for part in C.get(item, "content") or ():
                text = C.get(part, "text")
                if isinstance(text, str):
                    texts.append(text)
                elif isinstance(C.get(part, "refusal"), str):
                    texts.append(C.get(part, "refusal"))
        elif kind == "function_call":
            tool_calls.append(
                {
                    "id": C.get(item, "call_id"),
                    "function": {"name": C.get(item, "name"), "arguments": C.get(item, "arguments")},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    found: dict[str, Any] = {}
    output = _output_message(found, call.capture, 0, message)
    call.set_many(found)
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, output)


def _embeddings_response(call: C.Call, result: Any) -> None:
    _response_common(call, result, "openai")
    data = C.get(result, "data") or []
    vector: Any = C.get(data[0], "embedding") if data else None
    summary: dict[str, Any] = {"embeddings": len(data)}
    if hasattr(vector, "__len__"):
        summary["dimensions"] = len(vector)
    call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, summary)
    _embedding_cost(call)


def _embedding_cost(call: C.Call) -> None:
    """Embedding spans are not LLM spans, so the runtime does not price them: price here."""
    attributes = call.span.attributes
    tokens = attributes.get(A.USAGE_INPUT)
    model = attributes.get(A.RESPONSE_MODEL) or attributes.get(A.REQUEST_MODEL)
    if call.own and isinstance(tokens, int) and model:
        cost = call.runtime.pricing.cost(model, attributes.get(A.PROVIDER), input_tokens=tokens)
        if cost is not None:
            call.set(A.LLM_COST, cost)


_RESPONSE: dict[str, Callable[[C.Call, Any], None]] = {
    "chat": _chat_response,
    "responses": _responses_response,
    "embeddings": _embeddings_response,
}


# -- streams -----------------------------------------------------------------------------------
def _stream_state(call: C.Call, operation: str) -> C.StreamState:
    if operation == "responses":
        return _responses_stream(call)
    return _chat_stream(call)


def _chat_stream(call: C.Call) -> C.StreamState:
    """Accumulate chat completion chunks into the message(s) they spell."""
    seen: dict[str, Any] = {"id": None, "model": None, "usage": None}
    choices: dict[int, dict[str, Any]] = {}

    def on_item(chunk: Any) -> None:
        for key in ("id", "model"):
            value = C.get(chunk, key)
            if isinstance(value, str) and value:
                seen[key] = value
        usage = C.get(chunk, "usage")
        if usage is not None:
            seen["usage"] = chunk
        for choice in C.get(chunk, "choices") or ():
            call.first_token()
            index = C.get(choice, "index") or 0
            entry = choices.setdefault(index, {"role": None, "content": [], "tools": {}, "finish": None})
            delta = C.get(choice, "delta")
            role = C.get(delta, "role")
            if isinstance(role, str):
                entry["role"] = role
            content = C.get(delta, "content")
            if isinstance(content, str):
                entry["content"].append(content)
            for tool_delta in C.get(delta, "tool_calls") or ():
                position = C.get(tool_delta, "index") or 0
                tool = entry["tools"].setdefault(position, {"id": None, "name": None, "arguments": []})
                if C.get(tool_delta, "id"):
                    tool["id"] = C.get(tool_delta, "id")
                function = C.get(tool_delta, "function")
                if C.get(function, "name"):
                    tool["name"] = C.get(function, "name")
                if isinstance(C.get(function, "arguments"), str):
                    tool["arguments"].append(C.get(function, "arguments"))
            reason = C.get(choice, "finish_reason")
            if isinstance(reason, str):
                entry["finish"] = reason

    def on_end() -> None:
        result = {
            "id": seen["id"],
            "model": seen["model"],
            "choices": [
                {
                    "finish_reason": entry["finish"],
                    "message": {
                        "role": entry["role"] or "assistant",
                        "content": "".join(entry["content"]) if entry["content"] else None,
                        "tool_calls": [
                            {
                                "id": tool["id"],
                                "function": {"name": tool["name"], "arguments": "".join(tool["arguments"])},
                            }
                            for _, tool in sorted(entry["tools"].items())
                        ],
                    },
                }
                for _, entry in sorted(choices.items())
            ],
        }
        call.guard("stream response", _chat_response, result)
        if seen["usage"] is not None:
            call.guard("stream usage", lambda c, chunk: c.usage(C.usage_of(chunk, "openai")), seen["usage"])

    return C.StreamState(call, on_item, on_end)


def _responses_stream(call: C.Call) -> C.StreamState:
    """Responses API events: the final ``response.completed`` event carries the whole response."""
    seen: dict[str, Any] = {"response": None, "text": []}

    def on_item(event: Any) -> None:
        kind = C.get(event, "type")
        if kind == "response.output_text.delta":
            call.first_token()
            delta = C.get(event, "delta")
            if isinstance(delta, str):
                seen["text"].append(delta)
        elif kind in ("response.created", "response.in_progress"):
            if seen["response"] is None:
                seen["response"] = C.get(event, "response")
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            seen["response"] = C.get(event, "response")
            seen["final"] = True

    def on_end() -> None:
        response = seen["response"]
        if seen.get("final") and response is not None:
            _responses_response(call, response)
            return
        if response is not None:
            _response_common(call, response)
        if seen["text"]:
            found: dict[str, Any] = {}
            output = _output_message(
                found, call.capture, 0, {"role": "assistant", "content": "".join(seen["text"])}
            )
            call.set_many(found)
            call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, output)

    return C.StreamState(call, on_item, on_end)

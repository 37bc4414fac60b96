"""Readers for the OpenAI chat shape that Mistral's API and LiteLLM's responses share: request
parameters, prompt messages, the completion (with tool calls) and streamed chunks.

Each function is run through ``Call.guard`` by its caller: a shape it does not know drops its
attributes, never the call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import Usage, extract_usage
from ..._internal.core.extract import token_count as count
from . import _common as C
from ._fields import field, fields


def given(value: Any) -> bool:
    """False for ``None``, the OpenAI/Anthropic sentinels, Cohere's omitted (``...``) and the
    Speakeasy SDKs' ``Unset``."""
    return value is not Ellipsis and C.given(value) and type(value).__name__ != "Unset"


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def request(
    call: C.Call,
    kwargs: dict[str, Any],
    provider: str,
    oi_provider: str,
    not_parameters: frozenset[str],
    model: Any = None,
) -> None:
    """Model, provider, sampling parameters and ``llm.invocation_parameters``."""
    call.model(model if model is not None else kwargs.get("model"), provider, oi_provider)
    parameters: dict[str, Any] = {}
    for key, value in kwargs.items():  # one pass: scalars as they are, the rest made plain
        if value is None or value is Ellipsis or key in not_parameters:
            continue  # Ellipsis: Cohere's omitted parameters, one per parameter it has
        if type(value) in _SCALARS:
            parameters[key] = value
        elif given(value):
            parameters[key] = C.to_plain(value)
    temperature = number(parameters.get("temperature"))
    if temperature is not None:
        call.set(A.TEMPERATURE, temperature)
    for key in ("max_tokens", "max_completion_tokens"):
        value = parameters.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            call.set(C.REQUEST_MAX_TOKENS, value)
            break
    top_p = number(parameters.get("top_p"))
    if top_p is not None:
        call.set(C.REQUEST_TOP_P, top_p)
    call.set(C.INVOCATION_PARAMETERS, C.to_json(parameters))


_SCALARS = frozenset({str, int, float, bool})
_INPUT_FIELDS = ("role", "content", "name", "tool_call_id")
_OUTPUT_FIELDS = ("role", "content")
#: ``llm.input_messages.<i>.message.<field>`` / ``llm.output_messages...`` names for the first
#: messages, made once (a later index formats its names per call).
_INPUT_KEYS = [tuple(C.OI_INPUT.format(i, f) for f in _INPUT_FIELDS) for i in range(32)]
_OUTPUT_KEYS = [tuple(C.OI_OUTPUT.format(i, f) for f in _OUTPUT_FIELDS) for i in range(8)]


def _keys(cache: list[tuple[str, ...]], pattern: str, names: tuple[str, ...], index: int) -> tuple[str, ...]:
    return cache[index] if index < len(cache) else tuple(pattern.format(index, f) for f in names)


def tools(call: C.Call, value: Any) -> None:
    if given(value) and call.capture:
        for index, tool in enumerate(value):
            call.content(C.OI_TOOL_SCHEMA.format(index), C.to_json(C.to_plain(tool)))


def _flat(message: Any) -> bool:
    """A dict of strings only: already its own plain value (``to_plain`` would copy it as is)."""
    return type(message) is dict and all(type(k) is str and type(v) is str for k, v in message.items())


def input_messages(call: C.Call, messages: Any) -> list[Any]:
    """Write ``llm.input_messages.*`` and ``input.value`` (content only: nothing without capture);
    return the plain messages."""
    if not call.capture or not given(messages):
        return []
    plain = [message if _flat(message) else C.to_plain(message) for message in messages]
    content = call.content
    for index, message in enumerate(plain):
        found = fields(message)
        if found is None:
            found = {key: C.get(message, key) for key in (*_INPUT_FIELDS, "tool_calls")}
        keys = _keys(_INPUT_KEYS, C.OI_INPUT, _INPUT_FIELDS, index)
        role = found.get("role")
        if isinstance(role, str):
            content(keys[0], role)
        text = found.get("content")
        content(keys[1], text if type(text) is str else C.text_of(text))
        for position, name in ((2, "name"), (3, "tool_call_id")):
            value = found.get(name)
            if isinstance(value, str):
                content(keys[position], value)
        for position, tool_call in enumerate(found.get("tool_calls") or ()):
            function = C.get(tool_call, "function")
            name = C.OI_INPUT_TOOL_CALL.format(index, position, "function.name")
            content(name, C.get(function, "name"))
            arguments = C.get(function, "arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = C.to_json(arguments)
            content(C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments"), arguments)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": plain})
    return plain


def output_message(call: C.Call, index: int, message: Any) -> dict[str, Any]:
    """Write ``llm.output_messages.<index>.*`` (with tool calls); return it as a plain dict."""
    found = fields(message)
    if found is None:
        found = {key: C.get(message, key) for key in ("role", "content", "tool_calls")}
    role = found.get("role")
    role = role if isinstance(role, str) and role else "assistant"
    content = found.get("content")
    text = content if type(content) is str else C.text_of(content) if given(content) else None
    keys = _keys(_OUTPUT_KEYS, C.OI_OUTPUT, _OUTPUT_FIELDS, index)
    call.content(keys[0], role)
    call.content(keys[1], text)
    output: dict[str, Any] = {"role": role, "content": text}
    calls = []
    tool_calls = found.get("tool_calls")
    for position, tool_call in enumerate(tool_calls if given(tool_calls) else ()):
        function = field(tool_call, "function")
        name, arguments = field(function, "name"), field(function, "arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = C.to_json(C.to_plain(arguments))
        call.content(C.OI_TOOL_CALL.format(index, position, "function.name"), name)
        call.content(C.OI_TOOL_CALL.format(index, position, "function.arguments"), arguments)
        tool_id = field(tool_call, "id")
        if isinstance(tool_id, str):
            call.content(C.OI_TOOL_CALL.format(index, position, "id"), tool_id)
        calls.append(
            {
                "id": tool_id if isinstance(tool_id, str) else None,
                "function": {"name": name, "arguments": arguments},
            }
        )
    if calls:
        output["tool_calls"] = calls
    return output


def usage(block: Any) -> Usage | None:
    """An OpenAI-shaped ``usage`` block (``prompt_tokens`` / ``completion_tokens`` and their
    details) read field by field; any other shape through ``extract_usage``."""
    found = fields(block)
    if found is not None and block is not None:
        prompt, completion = count(found.get("prompt_tokens")), count(found.get("completion_tokens"))
        if prompt is not None or completion is not None:
            cached = count(field(found.get("prompt_tokens_details"), "cached_tokens"))
            reasoning = count(field(found.get("completion_tokens_details"), "reasoning_tokens"))
            return Usage(prompt, completion, cached, None, reasoning)
    return extract_usage({"usage": block}) if block is not None else None


def chat_response(call: C.Call, result: Any) -> None:
    """A chat completion (a dict or the SDK's model): id, model, usage, finish reasons, the output
    message(s)."""
    found = fields(result)
    if found is None:
        found = {key: C.get(result, key) for key in ("id", "model", "usage", "choices")}
    response_id = found.get("id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    model = found.get("model")
    if isinstance(model, str) and model:
        call.set(A.RESPONSE_MODEL, model)
    call.usage(usage(found.get("usage")))
    outputs, reasons = [], []
    for index, choice in enumerate(found.get("choices") or ()):
        reason = field(choice, "finish_reason")
        if isinstance(reason, str):
            reasons.append(reason)
        outputs.append(output_message(call, index, field(choice, "message")))
    if reasons:
        call.set(C.FINISH_REASONS, reasons)
    if outputs:
        call.capture_value(A.OUTPUT_VALUE, A.OUTPUT_MIME, outputs[0] if len(outputs) == 1 else outputs)


def chat_stream(call: C.Call, unwrap: str | None = None) -> C.StreamState:
    """Accumulate chat chunks (``unwrap``: the attribute holding the chunk, Mistral's ``data``)."""
    seen: dict[str, Any] = {"id": None, "model": None, "usage": None}
    choices: dict[int, dict[str, Any]] = {}

    def on_item(item: Any) -> None:
        chunk = C.get(item, unwrap) if unwrap else item
        for key in ("id", "model"):
            value = C.get(chunk, key)
            if isinstance(value, str) and value:
                seen[key] = value
        usage = C.get(chunk, "usage")
        if given(usage) and usage:
            seen["usage"] = chunk
        for choice in C.get(chunk, "choices") or ():
            index = C.get(choice, "index") or 0
            entry = choices.setdefault(index, {"role": None, "content": [], "tools": {}, "finish": None})
            delta = C.get(choice, "delta")
            role = C.get(delta, "role")
            if isinstance(role, str) and role:
                entry["role"] = role
            content = C.get(delta, "content")
            if isinstance(content, str) and content:
                call.first_token()
                entry["content"].append(content)
            tool_deltas = C.get(delta, "tool_calls")
            for position, tool_delta in enumerate(tool_deltas if given(tool_deltas) else ()):
                call.first_token()
                slot = C.get(tool_delta, "index")
                slot = slot if isinstance(slot, int) else position
                tool = entry["tools"].setdefault(slot, {"id": None, "name": None, "arguments": []})
                if isinstance(C.get(tool_delta, "id"), str):
                    tool["id"] = C.get(tool_delta, "id")
                function = C.get(tool_delta, "function")
                if isinstance(C.get(function, "name"), str) and C.get(function, "name"):
                    tool["name"] = C.get(function, "name")
                arguments = C.get(function, "arguments")
                if isinstance(arguments, str):
                    tool["arguments"].append(arguments)
                elif given(arguments):
                    tool["arguments"].append(C.to_json(C.to_plain(arguments)))
            reason = C.get(choice, "finish_reason")
            if isinstance(reason, str):
                entry["finish"] = reason

    def on_end() -> None:
        call.guard("stream response", chat_response, assembled(seen, choices.items()))
        if seen["usage"] is not None:
            call.guard("stream usage", lambda c, chunk: c.usage(extract_usage(chunk)), seen["usage"])

    return C.StreamState(call, on_item, on_end)


def assembled(seen: dict[str, Any], choices: Iterable[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    return {
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
                        for _, tool in sorted(tool_entries(entry))
                    ],
                },
            }
            for _, entry in sorted(choices)
        ],
    }


def tool_entries(entry: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return list(entry["tools"].items())


def embedding_cost(call: C.Call) -> None:
    """Embedding spans are not LLM spans, so the runtime does not price them: price here."""
    attributes = call.span.attributes
    tokens = attributes.get(A.USAGE_INPUT)
    model = attributes.get(A.RESPONSE_MODEL) or attributes.get(A.REQUEST_MODEL)
    if call.own and isinstance(tokens, int) and model:
        cost = call.runtime.pricing.cost(model, attributes.get(A.PROVIDER), input_tokens=tokens)
        if cost is not None:
            call.set(A.LLM_COST, cost)

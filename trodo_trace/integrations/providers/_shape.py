"""Readers for the OpenAI chat shape that Mistral's API and LiteLLM's responses share: request
parameters, prompt messages, the completion (with tool calls) and streamed chunks.

Each function is run through ``Call.guard`` by its caller: a shape it does not know drops its
attributes, never the call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..._internal.core import attrs as A
from ..._internal.core.extract import extract_usage
from . import _common as C


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
    temperature = number(kwargs.get("temperature"))
    if temperature is not None:
        call.set(A.TEMPERATURE, temperature)
    for key in ("max_tokens", "max_completion_tokens"):
        value = kwargs.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            call.set(C.REQUEST_MAX_TOKENS, value)
            break
    top_p = number(kwargs.get("top_p"))
    if top_p is not None:
        call.set(C.REQUEST_TOP_P, top_p)
    parameters = {k: C.to_plain(v) for k, v in kwargs.items() if k not in not_parameters and given(v)}
    call.set(C.INVOCATION_PARAMETERS, C.to_json(parameters))


def tools(call: C.Call, value: Any) -> None:
    if given(value):
        for index, tool in enumerate(value):
            call.content(C.OI_TOOL_SCHEMA.format(index), C.to_json(C.to_plain(tool)))


def input_messages(call: C.Call, messages: Any) -> list[Any]:
    """Write ``llm.input_messages.*`` and ``input.value``; return the plain messages."""
    plain = [C.to_plain(message) for message in messages] if given(messages) else []
    for index, message in enumerate(plain):
        role = C.get(message, "role")
        if isinstance(role, str):
            call.content(C.OI_INPUT.format(index, "role"), role)
        call.content(C.OI_INPUT.format(index, "content"), C.text_of(C.get(message, "content")))
        for key in ("name", "tool_call_id"):
            value = C.get(message, key)
            if isinstance(value, str):
                call.content(C.OI_INPUT.format(index, key), value)
        for position, tool_call in enumerate(C.get(message, "tool_calls") or ()):
            function = C.get(tool_call, "function")
            name = C.OI_INPUT_TOOL_CALL.format(index, position, "function.name")
            call.content(name, C.get(function, "name"))
            arguments = C.get(function, "arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = C.to_json(arguments)
            call.content(C.OI_INPUT_TOOL_CALL.format(index, position, "function.arguments"), arguments)
    call.capture_value(A.INPUT_VALUE, A.INPUT_MIME, {"messages": plain})
    return plain


def output_message(call: C.Call, index: int, message: Any) -> dict[str, Any]:
    """Write ``llm.output_messages.<index>.*`` (with tool calls); return it as a plain dict."""
    role = C.get(message, "role")
    role = role if isinstance(role, str) and role else "assistant"
    content = C.get(message, "content")
    text = C.text_of(content) if given(content) else None
    call.content(C.OI_OUTPUT.format(index, "role"), role)
    call.content(C.OI_OUTPUT.format(index, "content"), text)
    output: dict[str, Any] = {"role": role, "content": text}
    calls = []
    tool_calls = C.get(message, "tool_calls")
    for position, tool_call in enumerate(tool_calls if given(tool_calls) else ()):
        function = C.get(tool_call, "function")
        name, arguments = C.get(function, "name"), C.get(function, "arguments")
        if arguments is not None and not isinstance(arguments, str):
            arguments = C.to_json(C.to_plain(arguments))
        call.content(C.OI_TOOL_CALL.format(index, position, "function.name"), name)
        call.content(C.OI_TOOL_CALL.format(index, position, "function.arguments"), arguments)
        tool_id = C.get(tool_call, "id")
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


def chat_response(call: C.Call, result: Any) -> None:
    """A chat completion: id, model, usage, finish reasons, the output message(s)."""
    response_id = C.get(result, "id")
    if isinstance(response_id, str):
        call.set(C.RESPONSE_ID, response_id)
    model = C.get(result, "model")
    if isinstance(model, str) and model:
        call.set(A.RESPONSE_MODEL, model)
    call.usage(extract_usage(result))
    outputs, reasons = [], []
    for index, choice in enumerate(C.get(result, "choices") or ()):
        reason = C.get(choice, "finish_reason")
        if isinstance(reason, str):
            reasons.append(reason)
        outputs.append(output_message(call, index, C.get(choice, "message")))
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

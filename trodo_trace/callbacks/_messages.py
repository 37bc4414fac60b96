"""OpenInference message, tool and parameter attributes for the framework handlers' LLM spans.

Messages are plain dicts, ``{"role", "content", "tool_calls": [{"id", "name", "arguments"}],
"tool_call_id"}``, which the LangChain and LlamaIndex extractors build from their own types; the
writers here flatten them to ``llm.input_messages.N.message.*`` / ``llm.output_messages.N.message.*``,
``llm.tools.N.tool.json_schema`` and ``llm.invocation_parameters``. Every writer is isolated by its
caller (``_safe`` / ``core.extract``); message content is written only when content is captured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

INVOCATION_PARAMETERS = "llm.invocation_parameters"
TAGS = "tag.tags"
_MESSAGE = "llm.{}_messages.{}.message.{}"
_TOOL_CALL = "llm.{}_messages.{}.message.tool_calls.{}.tool_call.{}"
_TOOL_SCHEMA = "llm.tools.{}.tool.json_schema"
#: LangChain message types and LlamaIndex roles, as the chat roles OpenInference uses.
_ROLES = {
    "human": "user",
    "ai": "assistant",
    "chatbot": "assistant",
    "model": "assistant",
    "function": "tool",
}
#: Invocation parameters that are content or written elsewhere.
_NOT_PARAMETERS = frozenset({"tools", "functions", "messages", "prompt", "api_key", "openai_api_key"})


#: One encoder for every call (``json.dumps`` with options builds a new one each time).
_encode = json.JSONEncoder(default=repr, ensure_ascii=False, sort_keys=True).encode
try:  # the C encoder with the same options, called directly (``encode`` rebuilds it per call)
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    _c_encode: Any = c_make_encoder(None, repr, c_encode_basestring, None, ": ", ", ", True, False, True)
except (ImportError, TypeError):  # pragma: no cover - interpreters without the C accelerator
    _c_encode = None


def _json(value: Any) -> str:
    """``value`` as sorted-key JSON (anything JSON cannot encode as its ``repr``)."""
    if _c_encode is not None:
        try:
            return "".join(_c_encode(value, 0))
        except Exception:  # a cycle (no markers kept): the checking encoder reports it
            pass
    return _encode(value)


_KEYS: dict[tuple[str, int], tuple[str, str, str]] = {}


def _keys(direction: str, index: int) -> tuple[str, str, str]:
    """The role, content and tool call id attribute names of message ``index`` (built once)."""
    keys = _KEYS.get((direction, index))
    if keys is None:
        keys = (
            _MESSAGE.format(direction, index, "role"),
            _MESSAGE.format(direction, index, "content"),
            _MESSAGE.format(direction, index, "tool_call_id"),
        )
        if len(_KEYS) < 1024:
            _KEYS[(direction, index)] = keys
    return keys


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            text = part.get("text") if isinstance(part, Mapping) else getattr(part, "text", None)
            parts.append(text if isinstance(text, str) else _json(part))
        return "\n".join(parts)
    return _json(content)


def role(value: Any) -> str | None:
    if type(value) is not str:
        value = getattr(value, "value", value)
        if not isinstance(value, str):
            return None
    return _ROLES.get(value, value)


def write_messages(attributes: dict[str, Any], direction: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """Write ``messages`` as ``llm.{direction}_messages.N.message.*``."""
    for index, message in enumerate(messages):
        role_key, content_key, tool_call_id_key = _keys(direction, index)
        name = role(message.get("role"))
        if name:
            attributes[role_key] = name
        content = message.get("content")
        if type(content) is not str:
            content = _text(content)
        if content:
            attributes[content_key] = content
        tool_call_id = message.get("tool_call_id")
        if isinstance(tool_call_id, str):
            attributes[tool_call_id_key] = tool_call_id
        tool_calls = message.get("tool_calls")
        if not tool_calls:
            continue
        for position, call in enumerate(tool_calls):
            function = call.get("function") if isinstance(call.get("function"), Mapping) else call
            arguments = function.get("arguments", function.get("args"))
            if arguments is not None and not isinstance(arguments, str):
                arguments = _json(arguments)
            if function.get("name") is not None:
                attributes[_TOOL_CALL.format(direction, index, position, "function.name")] = str(
                    function["name"]
                )
            if arguments is not None:
                attributes[_TOOL_CALL.format(direction, index, position, "function.arguments")] = arguments
            if isinstance(call.get("id"), str):
                attributes[_TOOL_CALL.format(direction, index, position, "id")] = call["id"]


def write_tools(attributes: dict[str, Any], tools: Any) -> None:
    """Tool definitions as ``llm.tools.N.tool.json_schema``."""
    if isinstance(tools, Sequence) and not isinstance(tools, str):
        for index, tool in enumerate(tools):
            dump = getattr(tool, "model_dump", None)
            attributes[_TOOL_SCHEMA.format(index)] = _json(dump() if callable(dump) else tool)


def write_parameters(attributes: dict[str, Any], parameters: Any) -> None:
    """Request parameters (minus content and secrets) as ``llm.invocation_parameters`` JSON."""
    if isinstance(parameters, Mapping):
        kept = {
            key: v
            for k, v in parameters.items()
            if k not in _NOT_PARAMETERS and not (key := k if type(k) is str else str(k)).startswith("_")
        }
        if kept:
            attributes[INVOCATION_PARAMETERS] = _json(kept)


def write_tags(attributes: dict[str, Any], tags: Any, hidden: str | None = None) -> None:
    """LangChain tags as OpenInference ``tag.tags``."""
    if type(tags) is list or (isinstance(tags, Sequence) and not isinstance(tags, str)):
        kept = [str(tag) for tag in tags if tag != hidden]
        if kept:
            attributes[TAGS] = kept

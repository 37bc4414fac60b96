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


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False, sort_keys=True)


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
    value = getattr(value, "value", value)
    return _ROLES.get(value, value) if isinstance(value, str) else None


def write_messages(attributes: dict[str, Any], direction: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """Write ``messages`` as ``llm.{direction}_messages.N.message.*``."""
    for index, message in enumerate(messages):
        name = role(message.get("role"))
        if name:
            attributes[_MESSAGE.format(direction, index, "role")] = name
        content = _text(message.get("content"))
        if content:
            attributes[_MESSAGE.format(direction, index, "content")] = content
        if isinstance(message.get("tool_call_id"), str):
            attributes[_MESSAGE.format(direction, index, "tool_call_id")] = message["tool_call_id"]
        for position, call in enumerate(message.get("tool_calls") or ()):
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
            str(k): v
            for k, v in parameters.items()
            if k not in _NOT_PARAMETERS and not str(k).startswith("_")
        }
        if kept:
            attributes[INVOCATION_PARAMETERS] = _json(kept)


def write_tags(attributes: dict[str, Any], tags: Any, hidden: str | None = None) -> None:
    """LangChain tags as OpenInference ``tag.tags``."""
    if isinstance(tags, Sequence) and not isinstance(tags, str):
        kept = [str(tag) for tag in tags if tag != hidden]
        if kept:
            attributes[TAGS] = kept

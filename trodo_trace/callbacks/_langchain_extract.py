"""What the LangChain handler reads out of LangChain callback arguments: names and kinds of runs,
models, providers, temperatures, messages, outputs, tool calls, token usage and identities.

Every reader takes LangChain objects and returns plain values (or writes into an attribute dict
it is given). The handler calls each one in isolation, so a shape one does not know costs only
that field. Imported only by ``trodo_trace.callbacks.langchain`` (which imports langchain-core).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue

from .._internal.core import attrs
from .._internal.core.extract import Usage, extract_usage

#: Runs LangChain and LangGraph mark as internal plumbing: no span, their children go to the parent.
HIDDEN_TAG = "langsmith:hidden"

#: Attribute names this integration adds beside the wire contract.
LANGGRAPH_NODE = "langgraph.node"
LANGGRAPH_STEP = "langgraph.step"
TOOL_CALL_ID = "gen_ai.tool.call.id"
MAX_TOKENS = "gen_ai.request.max_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INTERRUPTED = "trodo.langgraph.interrupt"

_AGENT_NAMES = frozenset({"AgentExecutor"})
_ROLES: dict[str | None, str] = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "HumanMessageChunk": "user",
    "AIMessageChunk": "assistant",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "function",
}
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "model_path")
_IDENTITY_KEYS = frozenset(
    {"trodo_distinct_id", "distinct_id", "conversation_id", "session_id", "thread_id", "user_id"}
)
_INTERNAL_PREFIXES = ("ls_", "langgraph_", "lc_", "__")
_INTERNAL_KEYS = frozenset({"checkpoint_ns", "checkpoint_id", "run_attempt"})
_BUBBLE_UP = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"})


# -- names and kinds -------------------------------------------------------------------------
def run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The run's name: LangChain's ``name`` argument, else the serialized name or class."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        ids = serialized.get("id")
        if isinstance(ids, list) and ids and isinstance(ids[-1], str):
            return ids[-1]
    return default


def is_agent(name: str, serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> bool:
    """An agent executor or a compiled LangGraph graph (not one of its nodes)."""
    if metadata and metadata.get("ls_integration") == "langgraph" and "langgraph_node" not in metadata:
        return True
    if name in _AGENT_NAMES:
        return True
    if serialized:
        ids = serialized.get("id")
        if isinstance(ids, list) and ids and ids[-1] in _AGENT_NAMES:
            return True
    return False


def graph_attributes(attributes: dict[str, Any], metadata: Mapping[str, Any] | None) -> None:
    """LangGraph's node name and step for a node's span."""
    if not metadata:
        return
    node = metadata.get("langgraph_node")
    if isinstance(node, str):
        attributes[LANGGRAPH_NODE] = node
        step = metadata.get("langgraph_step")
        if isinstance(step, int) and not isinstance(step, bool):
            attributes[LANGGRAPH_STEP] = step


# -- identity --------------------------------------------------------------------------------
def identity(metadata: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """``(distinct_id, conversation_id)`` from an invocation's metadata."""
    if not metadata:
        return None, None
    distinct_id = _first_str(metadata, ("trodo_distinct_id", "distinct_id", "user_id"))
    conversation_id = _first_str(metadata, ("conversation_id", "session_id", "thread_id"))
    return distinct_id, conversation_id


def run_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's own invocation metadata (LangChain's and LangGraph's bookkeeping keys dropped)."""
    if not metadata:
        return {}
    return {
        key: value
        for key, value in metadata.items()
        if isinstance(key, str)
        and key not in _IDENTITY_KEYS
        and key not in _INTERNAL_KEYS
        and not key.startswith(_INTERNAL_PREFIXES)
    }


def _first_str(mapping: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


# -- models ----------------------------------------------------------------------------------
def model_attributes(
    attributes: dict[str, Any],
    metadata: Mapping[str, Any] | None,
    invocation_params: Mapping[str, Any] | None,
) -> None:
    """Model, provider, temperature and max tokens from the invocation parameters and ``ls_*`` metadata."""
    params = invocation_params or {}
    meta = metadata or {}
    model = _first_str(params, _MODEL_KEYS) or _first_str(meta, ("ls_model_name",))
    provider = meta.get("ls_provider")
    provider = provider if isinstance(provider, str) and provider else None
    if model:
        attrs.write_model(attributes, model, provider)
    elif provider:
        attributes[attrs.PROVIDER] = attributes[attrs.OI_PROVIDER] = provider
    temperature = _number(params.get("temperature"))
    if temperature is None:
        temperature = _number(meta.get("ls_temperature"))
    if temperature is not None:
        attributes[attrs.TEMPERATURE] = float(temperature)
    max_tokens = _number(params.get("max_tokens"))
    if max_tokens is None:
        max_tokens = _number(meta.get("ls_max_tokens"))
    if max_tokens is not None:
        attributes[MAX_TOKENS] = int(max_tokens)


def _number(value: Any) -> float | int | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


# -- messages and values ---------------------------------------------------------------------
def message(msg: BaseMessage) -> dict[str, Any]:
    """A message as ``{"role", "content"}`` plus its name, tool calls or tool call id."""
    fields = _fields(msg)  # pydantic fields; a missing attribute costs microseconds through getattr
    kind = fields.get("type")
    role = _ROLES.get(kind) or fields.get("role") or kind
    result: dict[str, Any] = {"role": role, "content": fields.get("content")}
    if fields.get("name"):
        result["name"] = fields["name"]
    tool_calls = fields.get("tool_calls")
    if tool_calls:
        result["tool_calls"] = [_tool_call(call) for call in tool_calls]
    tool_call_id = fields.get("tool_call_id")
    if tool_call_id:
        result["tool_call_id"] = tool_call_id
    return result


def _fields(obj: Any) -> dict[str, Any]:
    """An object's attribute dict (pydantic models keep their fields there)."""
    return getattr(obj, "__dict__", None) or {}


def _tool_call(call: Any) -> dict[str, Any]:
    if isinstance(call, Mapping):
        return {"id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")}
    return {"id": None, "name": None, "arguments": call}


def chat_input(messages: Sequence[Sequence[BaseMessage]]) -> list[dict[str, Any]]:
    """The first message list of ``on_chat_model_start`` (LangChain starts one run per list)."""
    return [message(m) for m in messages[0]] if messages else []


#: Types whose values :func:`compact` returns unchanged without looking inside.
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})


def compact(value: Any) -> Any:
    """Messages and prompt values as plain role/content dicts; anything else unchanged."""
    tp = type(value)
    if tp in _PLAIN:
        return value
    if tp is dict:
        for item in value.values():
            if type(item) not in _PLAIN and _has_messages(item):
                return {key: compact(item) for key, item in value.items()}
        return value
    if isinstance(value, BaseMessage):
        return message(value)
    if isinstance(value, PromptValue):
        messages = getattr(value, "messages", None)
        if messages is not None:
            return [message(m) for m in messages]
        return value.to_string()
    if isinstance(value, list):
        if value and isinstance(value[0], BaseMessage):
            return [message(m) if isinstance(m, BaseMessage) else m for m in value]
        return value
    if isinstance(value, dict):
        for item in value.values():
            if _has_messages(item):
                return {key: compact(item) for key, item in value.items()}
    return value


def _has_messages(item: Any) -> bool:
    return isinstance(item, (BaseMessage, PromptValue)) or (
        isinstance(item, list) and bool(item) and isinstance(item[0], BaseMessage)
    )


# -- LLM results -----------------------------------------------------------------------------
def _generations(response: Any) -> list[Any]:
    generations = _fields(response).get("generations")
    if generations and isinstance(generations[0], list):
        return generations[0]
    return []


def generation_output(response: Any) -> Any:
    """The generated text, or the assistant message (content and tool calls) of a chat model."""
    outputs = []
    for generation in _generations(response):
        fields = _fields(generation)
        msg = fields.get("message")
        outputs.append(message(msg) if isinstance(msg, BaseMessage) else fields.get("text"))
    if len(outputs) == 1:
        return outputs[0]
    return outputs or None


def usage(response: Any) -> Usage | None:
    """Token usage from the messages' ``usage_metadata``, else from ``llm_output``."""
    for generation in _generations(response):
        msg = _fields(generation).get("message")
        if msg is not None:
            block = _fields(msg).get("usage_metadata")
            if block:
                found = extract_usage({"usage_metadata": block})
                if found is not None:
                    return found
    llm_output = _fields(response).get("llm_output")
    if isinstance(llm_output, Mapping):
        block = llm_output.get("token_usage") or llm_output.get("usage")
        if block:
            return extract_usage({"usage": block})
    return None


def response_model(response: Any) -> str | None:
    """The model that answered: the message's ``response_metadata``, else ``llm_output``."""
    for generation in _generations(response):
        msg = _fields(generation).get("message")
        if msg is not None:
            meta = _fields(msg).get("response_metadata")
            if meta:
                model = _first_str(meta, ("model_name", "model", "model_id"))
                if model:
                    return model
    llm_output = _fields(response).get("llm_output")
    if isinstance(llm_output, Mapping):
        return _first_str(llm_output, ("model_name", "model", "model_id"))
    return None


def finish_reasons(response: Any) -> list[str] | None:
    reasons = []
    for generation in _generations(response):
        fields = _fields(generation)
        reason = (fields.get("generation_info") or {}).get("finish_reason")
        if reason is None and fields.get("message") is not None:
            meta = _fields(fields["message"]).get("response_metadata") or {}
            reason = meta.get("finish_reason") or meta.get("stop_reason")
        if isinstance(reason, str):
            reasons.append(reason)
    return reasons or None


# -- tools, agents, retries, errors ------------------------------------------------------------
def tool_output(output: Any) -> tuple[Any, str | None]:
    """A tool's output (a ``ToolMessage``'s content) and its error text when the tool reported one."""
    if isinstance(output, BaseMessage):
        error = None
        if getattr(output, "status", None) == "error":
            content = output.content
            error = content if isinstance(content, str) else "tool error"
        return output.content, error
    return output, None


def agent_action(action: Any) -> dict[str, Any]:
    return {
        "agent.tool": str(getattr(action, "tool", "")),
        "agent.tool_input": text(getattr(action, "tool_input", None)),
        "agent.log": text(getattr(action, "log", None)),
    }


def agent_finish(finish: Any) -> dict[str, Any]:
    return {
        "agent.return_values": text(getattr(finish, "return_values", None)),
        "agent.log": text(getattr(finish, "log", None)),
    }


def retry(retry_state: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"retry.attempt": int(getattr(retry_state, "attempt_number", 0) or 0)}
    outcome = getattr(retry_state, "outcome", None)
    if outcome is not None and outcome.failed:
        exc = outcome.exception()
        event["exception.type"] = type(exc).__name__
        event["exception.message"] = str(exc)[:1024]
    return event


def is_bubble_up(error: BaseException) -> bool:
    """LangGraph's interrupts and parent commands: control flow, not failures."""
    return any(cls.__name__ in _BUBBLE_UP for cls in type(error).__mro__)


def text(value: Any) -> str:
    if isinstance(value, str):
        return value[:4096]
    from .._internal.core.values import to_json

    return to_json(value, 4096)

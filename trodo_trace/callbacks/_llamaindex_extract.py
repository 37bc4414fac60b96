"""What the LlamaIndex handler reads out of LlamaIndex objects: which spans to keep, their names,
inputs and outputs, models, providers, token usage and documents.

Every reader takes LlamaIndex objects and returns plain values; the handler calls each one in
isolation, so a shape one does not know costs only that field. Imported only by
``trodo_trace.callbacks.llamaindex`` (which imports llama-index-core).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import BaseTool
from pydantic import BaseModel

from .._internal.core.extract import Usage, extract_response_model, extract_usage
from .._internal.core.values import to_json

try:  # llama-index-workflows, split out of llama-index-core in 0.12.x
    from workflows import Workflow
    from workflows.events import Event, StopEvent
except ImportError:  # pragma: no cover - older llama-index-core
    from llama_index.core.workflow import Event, StopEvent, Workflow  # type: ignore[no-redef,unused-ignore]

# -- which LlamaIndex spans become trodo spans ------------------------------------------------
# A role names what a kept span is; every other LlamaIndex span (private helpers such as
# ``_query``, ``_retrieve``, ``get_response``, text splitters, prompt programs) is collapsed:
# its children attach to its nearest kept ancestor.
LLM = "llm"
EMBEDDING = "embedding"
RETRIEVER = "retriever"
RERANKER = "reranker"
QUERY = "query"
CHAT = "chat"
SYNTH = "synthesizer"
TOOL = "tool"
AGENT = "agent"
WORKFLOW = "workflow"
STEP = "step"
AGENT_STEP = "agent_step"

KIND = {
    LLM: "llm",
    EMBEDDING: "function",
    RETRIEVER: "retrieval",
    RERANKER: "function",
    QUERY: "chain",
    CHAT: "chain",
    SYNTH: "chain",
    TOOL: "tool",
    AGENT: "agent",
    WORKFLOW: "chain",
    STEP: "chain",
    AGENT_STEP: "agent",
}

#: Roles whose nested spans on the same object merge into one trodo span (``predict`` calling
#: ``complete``, ``acall`` calling ``call``, ``get_text_embedding_batch`` calling itself).
MERGED = frozenset({LLM, EMBEDDING, TOOL, RERANKER, RETRIEVER})

_LLM_METHODS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "a")
    for name in (
        "chat",
        "complete",
        "stream_chat",
        "stream_complete",
        "predict",
        "stream",
        "structured_predict",
        "stream_structured_predict",
        "chat_with_tools",
        "stream_chat_with_tools",
    )
)
_EMBEDDING_METHODS = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "a")
    for name in (
        "get_query_embedding",
        "get_text_embedding",
        "get_text_embedding_batch",
        "get_agg_embedding_from_queries",
    )
)
_RULES: tuple[tuple[type, frozenset[str], str], ...] = (
    (BaseLLM, _LLM_METHODS, LLM),
    (BaseEmbedding, _EMBEDDING_METHODS, EMBEDDING),
    (BaseRetriever, frozenset({"retrieve", "aretrieve"}), RETRIEVER),
    (BaseQueryEngine, frozenset({"query", "aquery"}), QUERY),
    (BaseChatEngine, frozenset({"chat", "achat", "stream_chat", "astream_chat"}), CHAT),
    (BaseSynthesizer, frozenset({"synthesize", "asynthesize"}), SYNTH),
    (
        BaseNodePostprocessor,
        frozenset({"postprocess_nodes", "apostprocess_nodes", "_postprocess_nodes", "_apostprocess_nodes"}),
        RERANKER,
    ),
    (BaseTool, frozenset({"call", "acall", "__call__"}), TOOL),
)
_AGENT_CLASSES: tuple[type, ...] = ()
try:  # the agent workflows live in llama-index-core; older releases lack some of them
    from llama_index.core.agent.workflow import AgentWorkflow, BaseWorkflowAgent

    _AGENT_CLASSES = (BaseWorkflowAgent, AgentWorkflow)
except ImportError:  # pragma: no cover
    AgentWorkflow = None  # type: ignore[assignment,misc]


def classify(instance: Any, method: str) -> str | None:
    """The role of a span of ``instance``'s ``method``, or ``None`` when it is collapsed."""
    if isinstance(instance, Workflow):
        if method != "run":
            return None
        return AGENT if isinstance(instance, _AGENT_CLASSES) else WORKFLOW
    for cls, methods, role in _RULES:
        if method in methods and isinstance(instance, cls):
            return role
    return None


def is_multi_agent(instance: Any) -> bool:
    return AgentWorkflow is not None and isinstance(instance, AgentWorkflow)


# -- names ------------------------------------------------------------------------------------
def span_name(role: str, qualname: str, instance: Any) -> str:
    """``Class.method`` (without a leading underscore on the method), or the tool's, agent's or
    embedding model's own name."""
    if role == TOOL:
        name = getattr(getattr(instance, "metadata", None), "name", None)
        if isinstance(name, str) and name:
            return name
    elif role == AGENT:
        name = getattr(instance, "name", None)
        if isinstance(name, str) and name and name != "Agent":
            return name
        return type(instance).__name__
    elif role == EMBEDDING:
        return f"embeddings {embedding_model(instance) or type(instance).__name__}"
    cls, _, method = qualname.rpartition(".")
    return f"{cls}.{method.lstrip('_')}" if cls else qualname


def agent_step_name(bound_args: Any) -> str | None:
    """The agent a multi-agent workflow's ``run_agent_step`` runs."""
    event = bound_args.arguments.get("ev")
    name = getattr(event, "current_agent_name", None)
    return name if isinstance(name, str) and name else None


# -- models and providers ---------------------------------------------------------------------
_PROVIDERS = {
    "openai": "openai",
    "openai_like": "openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "gemini": "gcp.gemini",
    "google_genai": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "ibm": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
    "ollama": "ollama",
    "together": "together_ai",
    "fireworks": "fireworks",
    "huggingface": "huggingface",
}


def provider(instance: Any) -> str | None:
    """The GenAI provider name of an LLM or embedding class, from its package
    (``llama_index.llms.openai`` → ``openai``)."""
    parts = type(instance).__module__.split(".")
    if len(parts) >= 3 and parts[0] == "llama_index" and parts[1] in ("llms", "embeddings"):
        return _PROVIDERS.get(parts[2], parts[2])
    return None


_PYDANTIC_GETATTR = getattr(BaseModel, "__getattr__", None)
#: Whether a pydantic model class has a class attribute (a property, say) by this name; the
#: metaclass answers a miss through its own ``__getattr__``, as slowly as an instance does.
_ON_CLASS: dict[tuple[type, str], bool] = {}


def _on_class(cls: type, name: str) -> bool:
    found = _ON_CLASS.get((cls, name))
    if found is None:
        found = hasattr(cls, name)
        if len(_ON_CLASS) < 4096:
            _ON_CLASS[(cls, name)] = found
    return found


def attr(obj: Any, name: str) -> Any:
    """``getattr(obj, name, None)`` without pydantic's slow path for a name a model lacks (its
    ``__getattr__`` costs microseconds per miss): fields are read from the instance dict, and a
    pydantic model with no such field, extra or class attribute answers ``None`` at once."""
    fields = getattr(obj, "__dict__", None)
    if fields is not None and name in fields:
        return fields[name]
    if (
        _PYDANTIC_GETATTR is not None
        and getattr(type(obj), "__getattr__", None) is _PYDANTIC_GETATTR
        and not _on_class(type(obj), name)
        and name not in (obj.__pydantic_extra__ or ())
        and not name.startswith("_")
    ):
        return None
    return getattr(obj, name, None)


def _model_name(value: Any) -> str | None:
    if isinstance(value, str) and value and value != "unknown":
        return value
    return None


def llm_request(instance: Any) -> tuple[str | None, float | None]:
    """The model and temperature an LLM object is configured with (read from its fields)."""
    model = _model_name(attr(instance, "model")) or _model_name(attr(instance, "model_name"))
    temperature = attr(instance, "temperature")
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        temperature = None
    return model, temperature


def llm_parameters(instance: Any, model_dict: Mapping[str, Any] | None) -> dict[str, Any]:
    """An LLM call's parameters: the LLM's metadata from the start event plus its request fields."""
    parameters = {k: v for k, v in (model_dict or {}).items() if k != "class_name"}
    for key in ("model", "temperature", "max_tokens", "top_p", "additional_kwargs"):
        value = attr(instance, key)
        if isinstance(value, (str, int, float, bool)) or (isinstance(value, Mapping) and value):
            parameters[key] = value
    return parameters


def model_from_payload(model_dict: Mapping[str, Any]) -> str | None:
    """The model named by the ``model_dict`` of an LLM start event."""
    return _model_name(model_dict.get("model")) or _model_name(model_dict.get("model_name"))


def embedding_model(instance: Any) -> str | None:
    return _model_name(attr(instance, "model_name")) or _model_name(attr(instance, "model"))


# -- inputs and outputs -----------------------------------------------------------------------
def query_text(value: Any) -> Any:
    """A query as text (a ``QueryBundle`` becomes its ``query_str``)."""
    if isinstance(value, QueryBundle):
        return value.query_str
    return value


def span_input(role: str, bound_args: Any, tags: Mapping[str, Any] | None) -> Any:
    """What a kept span records as its input, or ``None`` for nothing."""
    arguments = bound_args.arguments
    if role in (QUERY, RETRIEVER):
        return query_text(arguments.get("str_or_query_bundle", arguments.get("query_bundle")))
    if role == SYNTH:
        return query_text(arguments.get("query"))
    if role == CHAT:
        return arguments.get("message")
    if role == EMBEDDING:
        for key in ("query", "text", "texts", "queries"):
            if key in arguments:
                return arguments[key]
        return None
    if role == RERANKER:
        return query_text(arguments.get("query_bundle") or arguments.get("query_str"))
    if role == TOOL:
        args = arguments.get("args") or ()
        kwargs = dict(arguments.get("kwargs") or {})
        if "input" in arguments:
            return arguments["input"]
        if args:
            return {"args": list(args), **kwargs}
        return kwargs
    if role in (AGENT, WORKFLOW):
        event = arguments.get("start_event")
        if event is None:
            return None
        user_msg = getattr(event, "user_msg", None)
        if role == AGENT and user_msg is not None:
            return message_content(user_msg)
        return event_fields(event)
    if role in (STEP, AGENT_STEP):
        for value in arguments.values():
            if isinstance(value, Event):
                chat = getattr(value, "input", None)
                if role == AGENT_STEP and isinstance(chat, list):
                    return messages(chat)
                return event_fields(value)
        return tags.get("llamaindex.step.input_summary") if tags else None
    return None


def event_fields(event: Any) -> dict[str, Any]:
    """A workflow event as one mapping of its declared and its dynamic fields."""
    data = dict(event)
    for name in type(event).model_fields:
        data.setdefault(name, getattr(event, name, None))
    return data


def span_output(role: str, result: Any) -> Any:
    """What a kept span records as its output (``None`` for nothing)."""
    if result is None:
        return None
    if role in (QUERY, SYNTH, CHAT):
        return getattr(result, "response", None)  # text, or a PydanticResponse's model
    if role == TOOL:
        content = getattr(result, "content", None)
        return content if content is not None else result
    if role in (AGENT, WORKFLOW, STEP, AGENT_STEP):
        value = result.result if isinstance(result, StopEvent) else result
        response = getattr(value, "response", None)  # an agent's AgentOutput
        if response is not None and hasattr(response, "blocks"):
            return message_content(response)
        return event_fields(value) if isinstance(value, Event) else value
    return None


def message_content(message: Any) -> Any:
    content = getattr(message, "content", None)
    return content if content is not None else message


def message_dict(message: Any) -> dict[str, Any]:
    """A chat message as ``{"role", "content"}`` plus its tool calls or tool call id."""
    role = getattr(message, "role", None)
    result: dict[str, Any] = {
        "role": getattr(role, "value", role),
        "content": getattr(message, "content", None),
    }
    extra = getattr(message, "additional_kwargs", None) or {}
    calls = [
        {"id": block.tool_call_id, "name": block.tool_name, "arguments": block.tool_kwargs}
        for block in getattr(message, "blocks", ()) or ()
        if getattr(block, "block_type", None) == "tool_call"
    ]
    if extra.get("tool_calls"):
        calls.extend(extra["tool_calls"])
    if calls:
        result["tool_calls"] = calls
    if extra.get("tool_call_id"):
        result["tool_call_id"] = extra["tool_call_id"]
    return result


def messages(values: Sequence[Any]) -> list[dict[str, Any]]:
    return [message_dict(message) for message in values]


def response_output(response: Any) -> Any:
    """A chat response as its message dict, a completion response as its text."""
    message = getattr(response, "message", None)
    if message is not None:
        return message_dict(message)
    return getattr(response, "text", None)


def response_usage(response: Any) -> Usage | None:
    """Token usage of a chat or completion response: the raw provider response's usage block
    first, then the token counts LlamaIndex integrations put in ``additional_kwargs``."""
    usage = extract_usage(getattr(response, "raw", None))
    if usage is not None:
        return usage
    extra = getattr(response, "additional_kwargs", None)
    if isinstance(extra, Mapping):
        return extract_usage({"usage": extra})
    return None


def response_model(response: Any) -> str | None:
    return extract_response_model(getattr(response, "raw", None))


def token_count(chunks: Sequence[str]) -> int:
    """Tokens in embedded texts, counted with LlamaIndex's global tokenizer (as its own
    ``TokenCountingHandler`` does)."""
    from llama_index.core.utils import get_tokenizer

    tokenizer = get_tokenizer()
    return sum(len(tokenizer(chunk)) for chunk in chunks)


def node_documents(nodes: Sequence[Any], limit: int, capture_content: bool) -> dict[str, Any]:
    """``NodeWithScore`` objects as ``.N.document.id|content|score`` attribute suffixes."""
    attributes: dict[str, Any] = {}
    for index, item in enumerate(nodes[:100]):
        node = getattr(item, "node", item)
        node_id = getattr(node, "node_id", None)
        if node_id is not None:
            attributes[f".{index}.document.id"] = str(node_id)
        score = getattr(item, "score", None)
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            attributes[f".{index}.document.score"] = float(score)
        if capture_content:
            content = node.get_content() if hasattr(node, "get_content") else None
            if isinstance(content, str):
                if len(content) > limit:
                    content = content[:limit] + f"…[truncated: {len(content)} chars total]"
                attributes[f".{index}.document.content"] = content
            metadata = getattr(node, "metadata", None)
            metadata = dict(metadata) if isinstance(metadata, Mapping) and metadata else {}
            ref_doc_id = getattr(node, "ref_doc_id", None)  # the source document's id
            if isinstance(ref_doc_id, str) and ref_doc_id:
                metadata["doc_id"] = ref_doc_id
            if metadata:
                attributes[f".{index}.document.metadata"] = to_json(metadata, limit)
    return attributes

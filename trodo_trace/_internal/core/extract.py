"""Reading token usage, models and documents out of the shapes LLM libraries return.

Each extractor is isolated: a shape it does not know gives ``None``, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class Usage(NamedTuple):
    """Token usage, normalised: ``input_tokens`` counts every prompt token, cached ones included."""

    input_tokens: int | None
    output_tokens: int | None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if type(obj) is dict or isinstance(obj, Mapping):  # a plain dict skips the ABC check
        return obj.get(key)
    return getattr(obj, key, None)


def token_count(value: Any) -> int | None:
    """A token count: an int (not a bool), or a float with an integral value; else None."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _usage_from_block(block: Any) -> Usage | None:
    """Normalise one usage block of any of the common providers' shapes."""
    if block is None:
        return None
    # OpenAI Chat Completions
    prompt = token_count(_get(block, "prompt_tokens"))
    completion = token_count(_get(block, "completion_tokens"))
    if prompt is not None or completion is not None:
        cached = token_count(_get(_get(block, "prompt_tokens_details"), "cached_tokens"))
        reasoning = token_count(_get(_get(block, "completion_tokens_details"), "reasoning_tokens"))
        return Usage(prompt, completion, cached, None, reasoning)
    # Gemini
    prompt = token_count(_get(block, "prompt_token_count"))
    if prompt is not None:
        candidates = token_count(_get(block, "candidates_token_count")) or 0
        thoughts = token_count(_get(block, "thoughts_token_count")) or 0
        cached = token_count(_get(block, "cached_content_token_count"))
        return Usage(prompt, candidates + thoughts, cached, None, thoughts or None)
    # Anthropic, OpenAI Responses, LangChain usage_metadata, Cohere billed units
    input_tokens = token_count(_get(block, "input_tokens"))
    output_tokens = token_count(_get(block, "output_tokens"))
    if input_tokens is None and output_tokens is None:
        for nested in ("billed_units", "tokens"):
            inner = _get(block, nested)
            if inner is not None:
                return _usage_from_block(inner)
        return None
    cache_read = token_count(_get(block, "cache_read_input_tokens"))
    cache_write = token_count(_get(block, "cache_creation_input_tokens"))
    if cache_read is not None or cache_write is not None:
        # Anthropic: input_tokens excludes cache reads and writes.
        total_in = (input_tokens or 0) + (cache_read or 0) + (cache_write or 0)
        return Usage(total_in, output_tokens, cache_read, cache_write, None)
    details = _get(block, "input_token_details")  # LangChain
    if details is not None:
        reasoning = token_count(_get(_get(block, "output_token_details"), "reasoning"))
        return Usage(
            input_tokens,
            output_tokens,
            token_count(_get(details, "cache_read")),
            token_count(_get(details, "cache_creation")),
            reasoning,
        )
    details = _get(block, "input_tokens_details")  # OpenAI Responses
    reasoning = token_count(_get(_get(block, "output_tokens_details"), "reasoning_tokens"))
    return Usage(input_tokens, output_tokens, token_count(_get(details, "cached_tokens")), None, reasoning)


def extract_usage(result: Any) -> Usage | None:
    """Token usage from an LLM call's return value, or ``None`` when it carries none."""
    if result is None or isinstance(result, (str, bytes, int, float)):
        return None
    try:
        for key in ("usage_metadata", "usage"):
            usage = _usage_from_block(_get(result, key))
            if usage is not None:
                return usage
        meta = _get(result, "meta")  # Cohere v1
        if meta is not None:
            return _usage_from_block(_get(meta, "billed_units"))
        # LangChain LLMResult / ChatResult
        llm_output = _get(result, "llm_output")
        if isinstance(llm_output, Mapping):
            return _usage_from_block(llm_output.get("token_usage") or llm_output.get("usage"))
    except Exception:
        return None
    return None


def extract_response_model(result: Any) -> str | None:
    """The model named by a response (OpenAI ``model``, LangChain ``response_metadata``)."""
    if result is None or isinstance(result, (str, bytes, int, float, list, tuple)):
        return None
    try:
        model = _get(result, "model")
        if isinstance(model, str) and model:
            return model
        meta = _get(result, "response_metadata")
        if isinstance(meta, Mapping):
            for key in ("model_name", "model", "model_id"):
                value = meta.get(key)
                if isinstance(value, str) and value:
                    return value
        model = _get(result, "model_version")  # Gemini
        if isinstance(model, str) and model:
            return model
    except Exception:
        return None
    return None


class Document(NamedTuple):
    id: str | None
    content: str | None
    score: float | None
    metadata: dict[str, Any] | None = None


def _document(item: Any) -> Document | None:
    score = None
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (int, float)):
        item, score = item  # LangChain similarity_search_with_score
    if isinstance(item, str):
        return Document(None, item, score)
    node = _get(item, "node")
    if node is not None and not isinstance(item, Mapping):  # LlamaIndex NodeWithScore
        score = _get(item, "score")
        item = node
    content = None
    for key in ("page_content", "text", "content"):
        value = _get(item, key)
        if isinstance(value, str):
            content = value
            break
    if content is None:
        get_content = getattr(item, "get_content", None)
        if callable(get_content):
            content = str(get_content())
    doc_id = None
    for key in ("id", "node_id", "doc_id", "id_"):
        value = _get(item, key)
        if value is not None and not callable(value):
            doc_id = str(value)
            break
    if doc_id is None:
        metadata = _get(item, "metadata")
        if isinstance(metadata, Mapping) and metadata.get("id") is not None:
            doc_id = str(metadata["id"])
    if score is None:
        value = _get(item, "score")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            score = value
    if content is None and doc_id is None:
        return None
    metadata = _get(item, "metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) and metadata else None
    ref_doc_id = _get(item, "ref_doc_id")  # LlamaIndex: the source document of a node
    if isinstance(ref_doc_id, str) and ref_doc_id:
        metadata = {**(metadata or {}), "doc_id": ref_doc_id}
    return Document(doc_id, content, float(score) if score is not None else None, metadata)


def extract_documents(result: Any, limit: int = 100) -> list[Document] | None:
    """Documents from a retriever's return value (a list of docs, nodes, dicts or strings)."""
    try:
        items = result
        if isinstance(result, Mapping):
            items = result.get("documents") or result.get("nodes") or result.get("source_nodes")
        elif not isinstance(result, (list, tuple)):
            items = _get(result, "source_nodes") or _get(result, "nodes")
        if not isinstance(items, (list, tuple)):
            return None
        documents = []
        for item in items[:limit]:
            document = _document(item)
            if document is not None:
                documents.append(document)
        return documents
    except Exception:
        return None

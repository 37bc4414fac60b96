"""Attribute names of the wire contract, and the small writers that fill them."""

from __future__ import annotations

from typing import Any

SPAN_KIND = "trodo.span.kind"
RUN_ID = "trodo.run.id"
OI_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
INPUT_MIME = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME = "output.mime_type"
ERROR_TYPE = "error.type"

AGENT_NAME = "trodo.agent.name"
DISTINCT_ID = "trodo.distinct_id"
USER_ID = "user.id"
CONVERSATION_ID = "trodo.conversation_id"
SESSION_ID = "session.id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
PARENT_RUN_ID = "trodo.parent_run_id"
METADATA = "trodo.metadata"
RUN_STATUS = "trodo.run.status"
RUN_ERROR_SUMMARY = "trodo.run.error_summary"
RUN_DURATION_MS = "trodo.run.duration_ms"
RUN_TOKENS_IN = "trodo.run.total_tokens_in"
RUN_TOKENS_OUT = "trodo.run.total_tokens_out"
RUN_COST = "trodo.run.total_cost"
RUN_COST_INCOMPLETE = "trodo.run.cost_incomplete"
RUN_SPAN_COUNT = "trodo.run.span_count"
RUN_TOOL_COUNT = "trodo.run.tool_count"
RUN_ERROR_COUNT = "trodo.run.error_count"

GEN_AI_OPERATION = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
PROVIDER = "gen_ai.provider.name"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
TEMPERATURE = "gen_ai.request.temperature"
LLM_COST = "trodo.llm.cost"
TTFT_MS = "trodo.llm.time_to_first_token_ms"
OI_MODEL = "llm.model_name"
OI_PROVIDER = "llm.provider"
OI_PROMPT_TOKENS = "llm.token_count.prompt"
OI_COMPLETION_TOKENS = "llm.token_count.completion"
OI_TOTAL_TOKENS = "llm.token_count.total"
OI_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OI_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
OI_REASONING = "llm.token_count.completion_details.reasoning"

TOOL_NAME = "trodo.tool.name"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
OI_TOOL_NAME = "tool.name"

RETRIEVAL_COUNT = "trodo.retrieval.result_count"
RETRIEVAL_DOC = "retrieval.documents.{}.document.{}"

GENERATOR_ITEMS = "trodo.generator.items"
GENERATOR_CLOSED_EARLY = "trodo.generator.closed_early"
CANCELLED = "trodo.cancelled"

OPENINFERENCE_KIND = {
    "run": "AGENT",
    "agent": "AGENT",
    "llm": "LLM",
    "tool": "TOOL",
    "retrieval": "RETRIEVER",
    "chain": "CHAIN",
    "function": "CHAIN",
}

JSON_MIME = "application/json"


def write_usage(
    attributes: dict[str, Any],
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> None:
    """Write token usage in both the GenAI and the OpenInference conventions."""
    if input_tokens is not None:
        attributes[USAGE_INPUT] = input_tokens
        attributes[OI_PROMPT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[USAGE_OUTPUT] = output_tokens
        attributes[OI_COMPLETION_TOKENS] = output_tokens
    if input_tokens is not None or output_tokens is not None:
        attributes[OI_TOTAL_TOKENS] = (attributes.get(USAGE_INPUT) or 0) + (attributes.get(USAGE_OUTPUT) or 0)
    if cache_read:
        attributes[OI_CACHE_READ] = cache_read
    if cache_write:
        attributes[OI_CACHE_WRITE] = cache_write
    if reasoning:
        attributes[OI_REASONING] = reasoning


def write_model(attributes: dict[str, Any], model: str, provider: str | None = None) -> None:
    attributes[REQUEST_MODEL] = model
    attributes[OI_MODEL] = model
    if provider:
        attributes[PROVIDER] = provider
        attributes[OI_PROVIDER] = provider

"""LiteLLM: ``litellm.completion`` and ``litellm.acompletion`` (also ``stream=True``).

One LLM span per call, named ``litellm.completion``, with the provider LiteLLM resolved for the
model (``anthropic/claude-haiku-4-5`` -> ``anthropic``), mapped to OpenTelemetry's provider names.
While the call runs, provider SDK calls LiteLLM makes underneath pass through untraced (LiteLLM
reaches OpenAI through the client's low-level ``post``, which the ``openai`` patches do not see
anyway), so each call appears once and counts once.

The module attributes ``litellm.completion`` / ``litellm.acompletion`` are patched: a name
imported with ``from litellm import completion`` before tracing started keeps the original.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..._internal.core import attrs as A
from . import _common as C
from . import _shape
from ._fields import field

PATCHES = C.Patches()
SPAN_NAME = "litellm.completion"
MODULES = ("litellm", "litellm.chat_completions.dispatch")
LITELLM_MODEL = "trodo.llm.litellm.model"
_NOT_PARAMETERS = frozenset(
    {
        "messages",
        "tools",
        "api_key",
        "api_base",
        "base_url",
        "extra_headers",
        "headers",
        "metadata",
        "timeout",
    }
)
#: LiteLLM's provider names -> ``gen_ai.provider.name`` (others are kept as LiteLLM names them).
PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "bedrock": "aws.bedrock",
    "sagemaker": "aws.sagemaker",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}


def instrument() -> None:
    """Patch the installed ``litellm`` (idempotent)."""
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, is_async in (("completion", False), ("acompletion", True)):
            if callable(module.__dict__.get(name)):
                PATCHES.wrap(module, name, _async_completion if is_async else _completion)


def uninstrument() -> None:
    PATCHES.restore()


def _completion(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not C.should_trace():
        return wrapped(*args, **kwargs)
    call = _start(args, kwargs)
    try:
        with C.use_call(call):
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        call.guard("provider", _resolved, exc)
        call.error(exc)
        call.end()
        raise
    if hasattr(result, "__await__"):  # completion(..., acompletion=True) returns a coroutine
        return _awaited(call, result)
    return _finish(call, result, False)


async def _async_completion(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not C.should_trace():
        return await wrapped(*args, **kwargs)
    call = _start(args, kwargs)
    return await _awaited(call, wrapped(*args, **kwargs))


async def _awaited(call: C.Call, awaitable: Any) -> Any:
    try:
        with C.use_call(call):
            result = await awaitable
    except BaseException as exc:
        call.guard("provider", _resolved, exc)
        call.error(exc)
        call.end()
        raise
    return _finish(call, result, True)


def _start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> C.Call:
    C.materialise(kwargs, "messages")
    call = C.Call.start(SPAN_NAME, "llm", {A.GEN_AI_OPERATION: "chat"})
    call.guard("request", _request, args, kwargs)
    return call


def _finish(call: C.Call, result: Any, is_async: bool) -> Any:
    call.guard("provider", _resolved, result)
    if type(result).__name__ == "CustomStreamWrapper" or not hasattr(result, "choices"):
        if hasattr(result, "__aiter__" if is_async else "__iter__"):
            return C.wrap_stream(result, _shape.chat_stream(call), is_async)
    call.guard("response", _shape.chat_response, result)
    call.end()
    return result


def _request(call: C.Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    model = kwargs.get("model", args[0] if args else None)
    messages = kwargs.get("messages", args[1] if len(args) > 1 else None)
    explicit = kwargs.get("custom_llm_provider")
    prefix = model.split("/", 1)[0] if isinstance(model, str) and "/" in model else None
    provider = explicit if isinstance(explicit, str) else prefix  # LiteLLM's answer replaces it below
    _shape.request(call, kwargs, *_names(provider or "litellm"), _NOT_PARAMETERS, model)
    _shape.tools(call, kwargs.get("tools"))
    _shape.input_messages(call, messages)


def _names(provider: str) -> tuple[str, str]:
    """``gen_ai.provider.name`` and ``llm.provider`` for one of LiteLLM's provider names."""
    return PROVIDERS.get(provider, provider), provider


def _resolved(call: C.Call, source: Any) -> None:
    """The provider and model LiteLLM resolved: a response's hidden params, a stream's or an error's
    attributes (reading them costs nothing, unlike asking LiteLLM to resolve the model again)."""
    private = getattr(source, "__pydantic_private__", None)  # a response's private attributes
    if type(private) is dict and "_hidden_params" in private:
        hidden = private["_hidden_params"]  # what ``ModelResponse.hidden_params`` reads, no lookup miss
    else:
        hidden = C.get(source, "_hidden_params")
    provider = (
        C.get(hidden, "custom_llm_provider")
        or C.get(source, "custom_llm_provider")
        or C.get(source, "llm_provider")
    )
    if isinstance(provider, str) and provider:
        gen_ai, oi = _names(provider)
        call.set(A.PROVIDER, gen_ai)
        call.set(A.OI_PROVIDER, oi)
    model = field(source, "model")
    if isinstance(model, str) and model:
        call.set(LITELLM_MODEL, model)

"""Provider SDK auto-instrumentation: calls to ``openai`` and ``anthropic`` become LLM spans.

When the runtime starts (``trodo.init()`` or the first span) every supported provider SDK that is
installed is instrumented (the ``instrument`` option, ``TRODO_INSTRUMENT``, narrows or turns this
off). An SDK that is not imported yet is patched right after its import, so starting the runtime
imports no provider SDK. ``trodo.shutdown()`` restores the original methods.

One module per provider (``openai``, ``anthropic``), each with ``instrument()`` / ``uninstrument()``
and its extractors; ``_common`` holds the span of a call, the stream proxies and the counted-once rule.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any

from ..._internal.core.errors import internal_error, log_once

#: Provider name -> the SDK's top-level module.
SUPPORTED: dict[str, str] = {"openai": "openai", "anthropic": "anthropic"}
# Amazon Bedrock (botocore) and Gemini / Vertex AI (google-genai)
SUPPORTED.update({"bedrock": "botocore", "gemini": "google.genai"})
# Cohere (v2 client), Mistral (mistralai 3.x) and LiteLLM
SUPPORTED.update({"cohere": "cohere", "mistral": "mistralai", "litellm": "litellm"})
#: Where the post-import hook waits when it is not the top-level module (``mistralai`` is a namespace
#: package: its import runs no hook, ``mistralai.client`` is the SDK).
HOOK_MODULES: dict[str, str] = {"mistral": "mistralai.client"}

_lock = threading.RLock()
#: Providers that should be patched (set by the runtime's configuration or an explicit call).
_wanted: set[str] = set()
#: Providers whose patches are in place.
_active: set[str] = set()
#: Providers for which a post-import hook is registered (wrapt keeps hooks for the process).
_hooked: set[str] = set()

__all__ = ["SUPPORTED", "instrument", "instrument_anthropic", "instrument_openai", "uninstrument"]
__all__ += ["instrument_bedrock", "instrument_gemini"]
__all__ += ["instrument_cohere", "instrument_litellm", "instrument_mistral"]


def _module(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


def _apply(name: str) -> None:
    """Patch ``name`` now (its SDK is imported)."""
    with _lock:
        if name not in _wanted or name in _active:
            return
        try:
            _module(name).instrument()
            _active.add(name)
        except Exception:
            internal_error(f"instrument {name}")


def _on_import(name: str) -> Any:
    def hook(_module_object: Any) -> None:
        _apply(name)

    return hook


def instrument(name: str, *, required: bool = False) -> bool:
    """Instrument one provider SDK: now when it is imported, else right after its import.

    Returns whether the SDK is installed. With ``required`` a missing SDK or wrapt raises ImportError.
    """
    if name not in SUPPORTED:
        raise ValueError(f"unknown provider {name!r}; supported: {', '.join(sorted(SUPPORTED))}")
    top = SUPPORTED[name]
    installed = top in sys.modules or _findable(top)
    if not installed:
        if required:
            raise ImportError(f"instrument_{name}() needs the {name} SDK: pip install 'trodo-trace[{name}]'")
        return False
    try:
        import wrapt
    except ImportError:
        if required:
            raise ImportError(f"instrument_{name}() needs wrapt: pip install 'trodo-trace[{name}]'") from None
        log_once(
            f"no-wrapt-{name}",
            "trodo_trace: %s is installed but wrapt is not; pip install 'trodo-trace[%s]' to trace its calls",
            name,
            name,
        )
        return False
    hook_module = HOOK_MODULES.get(name, top)
    with _lock:
        _wanted.add(name)
        if hook_module in sys.modules:
            _apply(name)
        elif name not in _hooked:
            _hooked.add(name)
            wrapt.register_post_import_hook(_on_import(name), hook_module)
    return True


def _findable(top: str) -> bool:
    try:
        return importlib.util.find_spec(top) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


def uninstrument(name: str | None = None) -> None:
    """Restore the original methods of one provider SDK (or of all)."""
    names = [name] if name is not None else list(SUPPORTED)
    with _lock:
        for each in names:
            _wanted.discard(each)
            if each in _active:
                _active.discard(each)
                try:
                    _module(each).uninstrument()
                except Exception:
                    internal_error(f"uninstrument {each}")


def instrumented() -> frozenset[str]:
    """The providers whose patches are in place."""
    return frozenset(_active)


def instrument_openai() -> None:
    """Trace every ``openai`` SDK call: chat completions (also streamed, raw and ``parse``), the
    Responses API and embeddings, sync and async, OpenAI and Azure OpenAI clients (idempotent).

    Done automatically when tracing starts; call it when ``instrument`` narrowed or turned that off.

    Raises:
        ImportError: the openai SDK or wrapt is not installed (``pip install 'trodo-trace[openai]'``).

    Example:
        >>> import openai
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeOpenAI, capture
        >>> trodo.instrument_openai()
        >>> with FakeOpenAI() as fake, capture() as traces:
        ...     client = openai.OpenAI(base_url=fake.base_url, api_key="test")
        ...     reply = client.chat.completions.create(
        ...         model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        ...     )
        >>> [(span.name, span.attributes["gen_ai.usage.input_tokens"]) for span in traces.spans]
        [('openai.chat.completions', 10)]
    """
    instrument("openai", required=True)


def instrument_anthropic() -> None:
    """Trace every ``anthropic`` SDK ``messages.create`` / ``messages.stream`` call, sync and async
    (idempotent). Done automatically when tracing starts.

    Raises:
        ImportError: the anthropic SDK or wrapt is not installed (``pip install 'trodo-trace[anthropic]'``).

    Example:
        >>> import anthropic
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeAnthropic, capture
        >>> trodo.instrument_anthropic()
        >>> with FakeAnthropic() as fake, capture() as traces:
        ...     client = anthropic.Anthropic(base_url=fake.base_url, api_key="test")
        ...     message = client.messages.create(
        ...         model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ...     )
        >>> [(span.name, span.attributes["gen_ai.usage.output_tokens"]) for span in traces.spans]
        [('anthropic.messages', 5)]
    """
    instrument("anthropic", required=True)


# -- Amazon Bedrock, Gemini / Vertex AI --------------------------------------------------------
def instrument_bedrock() -> None:
    """Trace Amazon Bedrock calls made with boto3: ``bedrock-runtime``'s ``converse``,
    ``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream``, for clients
    made before or after (idempotent). Other AWS services' calls are left alone.

    Done automatically when tracing starts; call it when ``instrument`` narrowed or turned that off.

    Raises:
        ImportError: botocore or wrapt is not installed (``pip install 'trodo-trace[bedrock]'``).

    Example:
        >>> import boto3
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeBedrock, capture
        >>> trodo.instrument_bedrock()
        >>> with FakeBedrock() as fake, capture() as traces:
        ...     client = boto3.client(
        ...         "bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url,
        ...         aws_access_key_id="test", aws_secret_access_key="test",
        ...     )
        ...     reply = client.converse(
        ...         modelId="amazon.nova-lite-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}]
        ...     )
        >>> [(span.name, span.attributes["gen_ai.provider.name"]) for span in traces.spans]
        [('bedrock.converse', 'aws.bedrock')]
    """
    instrument("bedrock", required=True)


def instrument_gemini() -> None:
    """Trace ``google-genai`` calls: ``models.generate_content``, ``generate_content_stream`` and
    ``embed_content``, sync and ``client.aio``, for Gemini API and Vertex AI clients (idempotent).

    Done automatically when tracing starts; call it when ``instrument`` narrowed or turned that off.

    Raises:
        ImportError: google-genai or wrapt is not installed (``pip install 'trodo-trace[gemini]'``).

    Example:
        >>> from google import genai
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeGemini, capture
        >>> trodo.instrument_gemini()
        >>> with FakeGemini() as fake, capture() as traces:
        ...     client = genai.Client(api_key="test", http_options={"base_url": fake.base_url})
        ...     reply = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
        >>> [(span.name, span.attributes["gen_ai.provider.name"]) for span in traces.spans]
        [('gemini.generate_content', 'gcp.gemini')]
    """
    instrument("gemini", required=True)


# -- Cohere, Mistral, LiteLLM ----------------------------------------------------------------------
def instrument_cohere() -> None:
    """Trace every ``cohere`` v2 client call (``cohere.ClientV2`` and ``AsyncClientV2``): ``chat``,
    ``chat_stream``, ``embed`` and ``rerank`` (idempotent). Done automatically when tracing starts.

    Raises:
        ImportError: the cohere SDK or wrapt is not installed (``pip install 'trodo-trace[cohere]'``).

    Example:
        >>> import cohere
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeCohere, capture
        >>> trodo.instrument_cohere()
        >>> with FakeCohere() as fake, capture() as traces:
        ...     client = cohere.ClientV2(api_key="test", base_url=fake.base_url)
        ...     reply = client.chat(model="command-a-03-2025", messages=[{"role": "user", "content": "hi"}])
        >>> [(span.name, span.attributes["gen_ai.usage.input_tokens"]) for span in traces.spans]
        [('cohere.chat', 10)]
    """
    instrument("cohere", required=True)


def instrument_mistral() -> None:
    """Trace every ``mistralai`` call (``mistralai.client.Mistral``): ``chat.complete``,
    ``chat.stream`` and ``embeddings.create``, sync and ``*_async`` (idempotent). Done automatically
    when tracing starts.

    Raises:
        ImportError: the mistralai SDK or wrapt is not installed (``pip install 'trodo-trace[mistral]'``).

    Example:
        >>> from mistralai.client import Mistral
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeMistral, capture
        >>> trodo.instrument_mistral()
        >>> with FakeMistral() as fake, capture() as traces:
        ...     client = Mistral(api_key="test", server_url=fake.base_url)
        ...     reply = client.chat.complete(
        ...         model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}]
        ...     )
        >>> [(span.name, span.attributes["gen_ai.provider.name"]) for span in traces.spans]
        [('mistral.chat', 'mistral_ai')]
    """
    instrument("mistral", required=True)


def instrument_litellm() -> None:
    """Trace every ``litellm.completion`` / ``litellm.acompletion`` call, also streamed (idempotent):
    one LLM span per call, with the provider LiteLLM resolved; the provider SDK calls it makes
    underneath are not counted again. Done automatically when tracing starts.

    Raises:
        ImportError: litellm or wrapt is not installed (``pip install 'trodo-trace[litellm]'``).

    Example:
        >>> import litellm
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import FakeOpenAI, capture
        >>> trodo.instrument_litellm()
        >>> with FakeOpenAI() as fake, capture() as traces:
        ...     reply = litellm.completion(
        ...         model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
        ...         api_base=fake.base_url, api_key="test",
        ...     )
        >>> [(span.name, span.attributes["gen_ai.provider.name"]) for span in traces.spans]
        [('litellm.completion', 'openai')]
    """
    instrument("litellm", required=True)


# -- runtime hooks -------------------------------------------------------------------------------
def _on_runtime_start(runtime: Any) -> None:
    """Instrument what the configuration asks for; auto-instrumented providers it no longer names
    are restored."""
    setting = getattr(runtime.config, "instrument", True)
    if not getattr(runtime, "enabled", True) or setting is False:
        names: tuple[str, ...] = ()
    elif setting is True:
        names = tuple(SUPPORTED)
    else:
        names = tuple(setting)
    for name in SUPPORTED:
        if name in names:
            instrument(name)
        elif name in _wanted:
            uninstrument(name)


def _on_runtime_shutdown(runtime: Any) -> None:
    uninstrument()


def _register() -> None:
    from ..._internal import runtime as runtime_mod

    if _on_runtime_start not in runtime_mod.INIT_HOOKS:
        runtime_mod.INIT_HOOKS.append(_on_runtime_start)
    if _on_runtime_shutdown not in runtime_mod.SHUTDOWN_HOOKS:
        runtime_mod.SHUTDOWN_HOOKS.append(_on_runtime_shutdown)


_register()

"""Which provider an ``openai`` client really talks to, from its ``base_url``.

Many providers serve the OpenAI API (Groq, Together, DeepSeek, OpenRouter, Fireworks, xAI, Azure)
and so do local servers (Ollama on port 11434, LM Studio on port 1234, vLLM). A call made through the
``openai`` SDK gets ``gen_ai.provider.name`` from the host it is sent to; an unknown host is
``openai``. The ``provider_hosts`` option (``TRODO_PROVIDER_HOSTS``) names more hosts, such as a
vLLM server: ``{"gpu-box:8000": "vllm"}``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["KNOWN_HOSTS", "provider_for_url"]

#: Host (or parent domain) -> (gen_ai.provider.name, OpenInference llm.provider).
KNOWN_HOSTS: dict[str, tuple[str, str]] = {
    "api.openai.com": ("openai", "openai"),
    "openai.azure.com": ("azure.ai.openai", "azure"),
    "cognitiveservices.azure.com": ("azure.ai.openai", "azure"),
    "services.ai.azure.com": ("azure.ai.inference", "azure"),
    "models.inference.ai.azure.com": ("azure.ai.inference", "azure"),
    "api.groq.com": ("groq", "groq"),
    "api.together.xyz": ("together_ai", "together_ai"),
    "api.together.ai": ("together_ai", "together_ai"),
    "api.deepseek.com": ("deepseek", "deepseek"),
    "openrouter.ai": ("openrouter", "openrouter"),
    "api.fireworks.ai": ("fireworks_ai", "fireworks_ai"),
    "api.x.ai": ("x_ai", "xai"),
    "api.mistral.ai": ("mistral_ai", "mistralai"),
    "generativelanguage.googleapis.com": ("gcp.gemini", "google"),
    "api.perplexity.ai": ("perplexity", "perplexity"),
}
#: OpenInference's own names for providers it knows (others use the gen_ai name).
_OI_NAMES = {
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "xai",
    "mistral_ai": "mistralai",
}
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})
#: Default ports of local OpenAI-compatible servers: Ollama on any host, LM Studio on this machine.
_OLLAMA_PORT = 11434
_LM_STUDIO_PORT = 1234
DEFAULT = ("openai", "openai")


def _split(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


def provider_for_url(url: object, extra: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(gen_ai.provider.name, llm.provider)`` for a client's base URL.

    ``extra`` maps ``host`` or ``host:port`` to a provider name and wins over the built-in table.

    Example:
        >>> from trodo_trace.integrations.providers.hosts import provider_for_url
        >>> provider_for_url("https://api.groq.com/openai/v1")
        ('groq', 'groq')
        >>> provider_for_url("http://localhost:11434/v1")
        ('ollama', 'ollama')
        >>> provider_for_url("http://gpu-box:8000/v1", {"gpu-box:8000": "vllm"})
        ('vllm', 'vllm')
        >>> provider_for_url("https://llm.internal.example/v1")
        ('openai', 'openai')
    """
    if not isinstance(url, str) or not url:
        return DEFAULT
    if extra:
        host, port = _split(url)
        for key in (f"{host}:{port}" if port is not None else None, host):
            name = extra.get(key) if key else None
            if name:
                return name, _OI_NAMES.get(name, name)
    return _builtin(url)


@functools.lru_cache(maxsize=256)
def _builtin(url: str) -> tuple[str, str]:
    host, port = _split(url)
    if not host:
        return DEFAULT
    if port == _OLLAMA_PORT:
        return "ollama", "ollama"
    if port == _LM_STUDIO_PORT and host in _LOOPBACK:
        return "lm_studio", "lm_studio"
    labels = host.split(".")
    for start in range(len(labels)):
        found = KNOWN_HOSTS.get(".".join(labels[start:]))
        if found is not None:
            return found
    return DEFAULT

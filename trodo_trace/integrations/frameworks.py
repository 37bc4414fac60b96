"""Public entry points of the framework integrations (LangChain, LlamaIndex) that load their framework
only when called; ``trodo_trace`` re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the frameworks load only when these are called
    from ..callbacks.langchain import TrodoCallbackHandler
    from ..callbacks.llamaindex import TrodoLlamaIndexHandler


def instrument_langchain(
    *,
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> TrodoCallbackHandler:
    """Trace every LangChain and LangGraph invocation in this process, with no callbacks to pass.

    Adds a :class:`~trodo_trace.callbacks.langchain.TrodoCallbackHandler` to every LangChain
    callback manager that has none (an explicitly passed handler is not duplicated) and returns
    it. Calling it again with no arguments keeps the installed handler.

    Args:
        distinct_id: End user of the runs the handler starts (else ``metadata["trodo_distinct_id"]``
            of the invocation).
        conversation_id: Their conversation (else the invocation's ``conversation_id``,
            ``session_id`` or ``thread_id`` metadata).
        metadata: Added to ``trodo.metadata`` of the runs the handler starts.

    Raises:
        ImportError: langchain-core is not installed (``pip install 'trodo-trace[langchain]'``).

    Example:
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> import trodo_trace as trodo
        >>> handler = trodo.instrument_langchain()
        >>> FakeListChatModel(responses=["hello"]).invoke("hi").content   # any runnable or graph
        'hello'
        >>> trodo.last_run().name
        'FakeListChatModel'
    """
    try:
        from ..callbacks import langchain
    except ImportError as exc:
        raise ImportError(
            "instrument_langchain() needs langchain-core: pip install 'trodo-trace[langchain]'"
        ) from exc
    return langchain.instrument(distinct_id=distinct_id, conversation_id=conversation_id, metadata=metadata)


def instrument_llamaindex() -> TrodoLlamaIndexHandler:
    """Trace every LlamaIndex call in this process: query and chat engines, retrievals, LLM calls,
    embeddings, agents and workflows become trodo spans (the outermost one a run, or part of the
    current run).

    Registers a :class:`~trodo_trace.callbacks.llamaindex.TrodoLlamaIndexHandler` with LlamaIndex's
    root instrumentation dispatcher and returns it (``handler.detach()`` turns it off). Calling it
    again keeps the installed handler.

    Raises:
        ImportError: llama-index-core is not installed (``pip install 'trodo-trace[llamaindex]'``).

    Example:
        >>> from llama_index.core.llms import MockLLM
        >>> import trodo_trace as trodo
        >>> handler = trodo.instrument_llamaindex()
        >>> MockLLM().complete("What is a run?").text     # any index, engine, LLM or agent
        'What is a run?'
        >>> trodo.last_run().name
        'MockLLM.complete'
        >>> handler.detach()
    """
    try:
        from ..callbacks import llamaindex
    except ImportError as exc:
        raise ImportError(
            "instrument_llamaindex() needs llama-index-core: pip install 'trodo-trace[llamaindex]'"
        ) from exc
    return llamaindex.instrument()

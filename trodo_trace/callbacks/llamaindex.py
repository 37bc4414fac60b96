"""LlamaIndex instrumentation: LlamaIndex's spans and events become trodo spans and runs.

LlamaIndex reports every instrumented call to the span handlers of its root dispatcher
(``llama_index.core.instrumentation``) and every event (LLM start/stream/end, embeddings,
rerank, exceptions) to its event handlers, each event naming the span it belongs to.
:class:`TrodoLlamaIndexHandler` registers one of each:

- query engines, chat engines and synthesizers are ``chain`` spans, retrievers ``retrieval``
  spans, rerankers and embeddings ``function`` spans, LLM calls ``llm`` spans, tools ``tool``
  spans, agents ``agent`` spans (a run when outermost) and workflow steps ``chain`` spans;
- the private helpers LlamaIndex also reports (``_query``, ``_retrieve``, ``get_response``,
  text splitters, the agents' bookkeeping steps) are collapsed into their nearest kept ancestor,
  and nested calls on the same LLM, embedding, tool or retriever (``predict`` → ``complete``)
  merge into one span;
- a span with no LlamaIndex parent joins the current trodo run (or starts one); while a kept
  span is open it is the current OpenTelemetry span, so ``@trodo`` functions called inside nest;
- a streamed LLM call stays open until its stream ends (time to first token from the first
  chunk), and a streaming query's spans until its response stream is consumed.

Example:
    >>> import trodo_trace as trodo
    >>> handler = trodo.instrument_llamaindex()          # every LlamaIndex call in this process
    >>> from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler
    >>> with TrodoLlamaIndexHandler():                    # or only while a block runs
    ...     pass
"""

from __future__ import annotations

import threading
from typing import Any

try:
    # re-exported by llama-index-core without __all__ (defined there in older releases)
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined,unused-ignore]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trodo_trace.callbacks.llamaindex needs llama-index-core: pip install 'trodo-trace[llamaindex]'"
    ) from exc
from pydantic import PrivateAttr

from ._llamaindex_spans import Core

__all__ = ["TrodoLlamaIndexHandler", "instrument"]


def _core_of(handler: Any) -> Core:
    """A handler's :class:`Core`, read from pydantic's private-attribute dict: ``handler._core``
    goes through pydantic's ``__getattr__`` (microseconds per read, and LlamaIndex makes three
    calls per span it reports)."""
    private = handler.__pydantic_private__
    return private["_core"] if private is not None else handler._core  # type: ignore[no-any-return]


class _SpanHandler(BaseSpanHandler[Any]):
    """Receives LlamaIndex's span enter/exit/drop notices. The core keeps its own map (spans of a
    stream outlive their LlamaIndex span), so nothing goes to the base class's ``open_spans``."""

    _core: Core = PrivateAttr()

    def __init__(self, core: Core):
        super().__init__()
        self._core = core

    @classmethod
    def class_name(cls) -> str:
        return "TrodoSpanHandler"

    def new_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        core = _core_of(self)
        try:
            core.enter(id_, bound_args, instance, parent_span_id, tags)
        except Exception:
            core.fail("span start")

    def prepare_to_exit_span(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        core = _core_of(self)
        try:
            core.exit(id_, result)
        except Exception:
            core.fail("span exit")

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        core = _core_of(self)
        try:
            core.drop(id_, err)
        except Exception:
            core.fail("span drop")

    def close(self) -> None:
        """Called by ``Dispatcher.shutdown()``: end the spans still open."""
        self._core.detach_all()


class _EventHandler(BaseEventHandler):
    """Receives LlamaIndex's events and applies them to the span they name."""

    _core: Core = PrivateAttr()

    def __init__(self, core: Core):
        super().__init__()
        self._core = core

    @classmethod
    def class_name(cls) -> str:
        return "TrodoEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        core = _core_of(self)
        try:
            core.event(event)
        except Exception:
            core.fail("event " + type(event).__name__)


class TrodoLlamaIndexHandler:
    """Traces LlamaIndex through its instrumentation dispatcher while attached.

    ``trodo.instrument_llamaindex()`` attaches one process-wide handler to LlamaIndex's root
    dispatcher. Create your own to choose when tracing is on: :meth:`attach` / :meth:`detach`,
    or use it as a context manager. While attached it sees every LlamaIndex call in the process.
    ``span_handler`` and ``event_handler`` are the two objects it registers.

    Example:
        >>> from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler
        >>> with TrodoLlamaIndexHandler():
        ...     pass  # index.as_query_engine().query("...") here becomes a run
    """

    def __init__(self) -> None:
        #: SDK failures seen (each logged once); the traced calls go on regardless.
        self.internal_errors = 0
        self._core = Core(self)
        self.span_handler = _SpanHandler(self._core)
        self.event_handler = _EventHandler(self._core)
        self._dispatcher: Any = None
        self._lock = threading.Lock()

    @property
    def attached(self) -> bool:
        """Whether the handler is registered with a dispatcher."""
        return self._dispatcher is not None

    def attach(self, dispatcher: Any = None) -> TrodoLlamaIndexHandler:
        """Register with ``dispatcher`` (default: LlamaIndex's root dispatcher); idempotent.

        Example:
            >>> handler = TrodoLlamaIndexHandler().attach()
            >>> handler.detach()
        """
        dispatcher = dispatcher if dispatcher is not None else get_dispatcher()
        with self._lock:
            if self._dispatcher is dispatcher:
                return self
            if self._dispatcher is not None:
                self._remove()
            dispatcher.add_span_handler(self.span_handler)
            dispatcher.add_event_handler(self.event_handler)
            self._dispatcher = dispatcher
        return self

    def detach(self) -> None:
        """Unregister; spans still open end as they are.

        Example:
            >>> TrodoLlamaIndexHandler().attach().detach()
        """
        with self._lock:
            if self._dispatcher is None:
                return
            self._remove()
        self._core.detach_all()

    def _remove(self) -> None:
        dispatcher = self._dispatcher
        # New lists rather than in-place removal, so a dispatch running in another thread is unaffected.
        dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not self.span_handler]
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not self.event_handler]
        self._dispatcher = None

    def __enter__(self) -> TrodoLlamaIndexHandler:
        return self.attach()

    def __exit__(self, *exc_info: Any) -> None:
        self.detach()


_GLOBAL: TrodoLlamaIndexHandler | None = None
_GLOBAL_LOCK = threading.Lock()


def instrument() -> TrodoLlamaIndexHandler:
    """Attach the process-wide handler to LlamaIndex's root dispatcher (idempotent) and return it.

    Example:
        >>> from trodo_trace.callbacks.llamaindex import instrument
        >>> handler = instrument()
    """
    global _GLOBAL
    with _GLOBAL_LOCK:
        if _GLOBAL is None:
            _GLOBAL = TrodoLlamaIndexHandler()
        return _GLOBAL.attach()

"""LangChain and LangGraph: :class:`TrodoCallbackHandler` and :func:`instrument`.

Pass ``config={"callbacks": [TrodoCallbackHandler()]}`` to any runnable, or call
``trodo.instrument_langchain()`` once to trace every invocation in the process. Chains become
``chain`` spans, an agent executor or a compiled LangGraph graph an ``agent`` span (a run when it is
outermost), graph nodes ``chain`` spans, chat models and LLMs ``llm`` spans, tools ``tool`` spans,
retrievers ``retrieval`` spans with their documents.

How the tree is built (the registry and the context handling live in ``_langchain_runs``):

- A run's parent is found through LangChain's ``parent_run_id`` in one lock-guarded map shared by
  every handler instance; an outermost LangChain run takes the current OpenTelemetry context as
  parent (so inside ``@trodo.agent`` it joins that run), or starts a run of its own. Two handlers
  seeing the same run (``instrument_langchain()`` plus an explicit handler) record it once.
- Each run's span is current while it runs (``run_inline`` keeps async callbacks in the caller's
  task), so ``@trodo.*`` functions and other OpenTelemetry spans called from a tool or runnable nest
  under it; once the run ends, no copy of the context LangChain made still names it. A chat model's
  span stops being current at its first streamed token (the stream then runs in its consumer).
- When an outermost run ends, spans of its tree whose end callback never came (a cancelled async
  tool, say) are ended too. An outermost run that finds, on its own thread and outside any LangChain
  runnable, a LangChain span still current whose end never came does not nest under it.

The handler never raises into LangChain (``raise_error`` is false; under the SDK's own test suite,
``TRODO_RAISE_INTERNAL=1``, it is true so handler bugs fail the tests); every attribute extractor
is isolated, and failures are logged once. LangChain's callbacks carry no timestamps, so spans use
the clock at each callback, which ``run_inline`` makes the moment LangChain fires it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from uuid import UUID

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tracers.context import register_configure_hook
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "trodo_trace.callbacks.langchain needs langchain-core: pip install 'trodo-trace[langchain]'"
    ) from exc

from opentelemetry.trace.status import StatusCode

from .._internal import runtime as runtime_mod
from .._internal.core import attrs, errors, spans
from .._internal.core.decorators import record_documents, record_error
from .._internal.core.errors import internal_error
from .._internal.core.tracing import RunOptions
from . import _langchain_extract as extract
from . import _langchain_runs as runs
from . import _messages as lc_messages

__all__ = ["TrodoCallbackHandler", "instrument", "uninstrument"]

_DEFERRED = {"input": ""}  # what LangChain passes as a stream's input until the stream has run


def _safe(fn: Callable[..., Any], *args: Any) -> Any:
    """Call one extractor; a failure costs only its field."""
    try:
        return fn(*args)
    except Exception:
        _failed(fn)
        return None


def _failed(fn: Callable[..., Any]) -> None:
    """Log an extractor's failure (the hot callbacks guard their extractors inline, as ``_safe``)."""
    internal_error(f"langchain extractor {fn.__name__}")


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a callback under the internal-error guard: a failure is logged once, the chain goes on.
    The callbacks every run makes (start and end of chains, models, tools, retrievers) have the
    same guard written inline, which saves a call layer per callback."""
    where = f"langchain {method.__name__}"

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            internal_error(where)
            return None

    return guarded


class TrodoCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that records LangChain and LangGraph runs as trodo spans.

    Args:
        distinct_id: The end user of the runs this handler starts (else the invocation's
            ``metadata["trodo_distinct_id"]``).
        conversation_id: Their conversation (else ``metadata`` ``conversation_id``,
            ``session_id`` or ``thread_id``).
        metadata: Written to ``trodo.metadata`` of the runs this handler starts, merged with the
            invocation's own metadata.

    Example:
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> from trodo_trace.callbacks.langchain import TrodoCallbackHandler
        >>> handler = TrodoCallbackHandler(distinct_id="user-42")
        >>> chain = FakeListChatModel(responses=["hello"])   # any runnable
        >>> chain.invoke("hi", config={"callbacks": [handler]}).content
        'hello'
    """

    run_inline = True  # async callbacks run in the caller's task, so the span becomes current there
    raise_error = False

    def __init__(
        self,
        *,
        distinct_id: str | None = None,
        conversation_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("distinct_id", distinct_id), ("conversation_id", conversation_id)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string, got {type(value).__name__}")
            if value == "":
                raise ValueError(f"{name} must not be empty")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a mapping")
        self.distinct_id = distinct_id
        self.conversation_id = conversation_id
        self.metadata = dict(metadata) if metadata else None
        self.raise_error = errors.RAISE_INTERNAL

    def __repr__(self) -> str:
        return f"TrodoCallbackHandler(distinct_id={self.distinct_id!r})"

    # -- span lifecycle --------------------------------------------------------------------------
    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        kind: str,
        metadata: Mapping[str, Any] | None,
        tags: Sequence[str] | None = None,
    ) -> runs.Entry | None:
        runtime = spans.RUNTIME or runtime_mod.get()
        if not runtime.enabled:
            return None
        entry = runs.start(run_id, parent_run_id, name, kind, lambda: self._run_options(metadata))
        if entry is not None and tags:
            try:
                lc_messages.write_tags(entry.span.attributes, tags, extract.HIDDEN_TAG)
            except Exception:
                _failed(lc_messages.write_tags)
        return entry

    def _run_options(self, metadata: Mapping[str, Any] | None) -> RunOptions:
        distinct_id, conversation_id = extract.identity(metadata) if metadata else (None, None)
        run_metadata = extract.run_metadata(metadata) if metadata else None
        if self.metadata:
            run_metadata = {**self.metadata, **(run_metadata or {})}
        return RunOptions(
            distinct_id=self.distinct_id or distinct_id,
            conversation_id=self.conversation_id or conversation_id,
            metadata=run_metadata or None,
        )

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        entry = runs.pop(run_id)
        if entry is None:
            return
        try:
            if extract.is_bubble_up(error):
                entry.span.attributes[extract.INTERRUPTED] = type(error).__name__
            else:
                record_error(entry.span, error)
        finally:
            runs.close(entry)

    # -- chains ----------------------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            if tags and extract.HIDDEN_TAG in tags:
                runs.HIDDEN[run_id] = parent_run_id
                return
            name = extract.run_name(serialized, kwargs, "chain")
            kind = "agent" if extract.is_agent(name, serialized, metadata) else "chain"
            entry = self._start(run_id, parent_run_id, name, kind, metadata, tags)
            if entry is None:
                return
            span = entry.span
            if metadata and "langgraph_node" in metadata:
                _safe(extract.graph_attributes, span.attributes, metadata)
            if "defers_inputs" not in kwargs or inputs != _DEFERRED:
                _capture(span, attrs.INPUT_VALUE, attrs.INPUT_MIME, inputs)
        except Exception:
            internal_error("langchain on_chain_start")

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            entry = runs.pop(run_id)
            if entry is None:
                return
            try:
                span = entry.span
                if kwargs.get("inputs") is not None:
                    _capture(span, attrs.INPUT_VALUE, attrs.INPUT_MIME, kwargs["inputs"])
                _capture(span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, outputs)
            finally:
                runs.close(entry)
        except Exception:
            internal_error("langchain on_chain_end")

    @_guarded
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    @_guarded
    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is not None:
            entry.span.add_event("agent.action", _safe(extract.agent_action, action))

    @_guarded
    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is not None:
            entry.span.add_event("agent.finish", _safe(extract.agent_finish, finish))

    # -- chat models and LLMs ----------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._llm_start(serialized, messages, "chat", run_id, parent_run_id, metadata, kwargs, tags)
        except Exception:
            internal_error("langchain on_chat_model_start")

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._llm_start(
                serialized, prompts, "text_completion", run_id, parent_run_id, metadata, kwargs, tags
            )
        except Exception:
            internal_error("langchain on_llm_start")

    def _llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompt: Any,
        operation: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
        tags: Sequence[str] | None = None,
    ) -> None:
        name = extract.run_name(serialized, kwargs, "llm")
        entry = self._start(run_id, parent_run_id, name, "llm", metadata, tags)
        if entry is None:
            return
        span = entry.span
        attributes = span.attributes
        attributes[attrs.GEN_AI_OPERATION] = operation
        parameters = kwargs.get("invocation_params")
        try:
            extract.model_attributes(attributes, metadata, parameters)
        except Exception:
            _failed(extract.model_attributes)
        try:
            lc_messages.write_parameters(attributes, parameters)
        except Exception:
            _failed(lc_messages.write_parameters)
        if spans.RUNTIME.capture_content:
            if operation == "chat":
                try:
                    value = extract.chat_input(prompt)
                except Exception:
                    _failed(extract.chat_input)
                    value = None
                if value:
                    try:
                        lc_messages.write_messages(attributes, "input", value)
                    except Exception:
                        _failed(lc_messages.write_messages)
            else:
                value = prompt[0] if len(prompt) == 1 else prompt
                if isinstance(value, str):
                    _safe(
                        lc_messages.write_messages, attributes, "input", [{"role": "user", "content": value}]
                    )
            if isinstance(parameters, Mapping):
                tools = parameters.get("tools") or parameters.get("functions")
                if tools:
                    _safe(lc_messages.write_tools, attributes, tools)
            if value is not None:
                spans.RUNTIME.capture(span, attrs.INPUT_VALUE, attrs.INPUT_MIME, value)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is None or entry.first_token:
            return
        try:
            self._first_token(entry)
        except Exception:
            internal_error("langchain on_llm_new_token")

    def on_stream_event(self, event: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is None or entry.first_token:
            return
        try:
            if isinstance(event, Mapping) and event.get("event") == "content-block-delta":
                self._first_token(entry)
        except Exception:
            internal_error("langchain on_stream_event")

    @staticmethod
    def _first_token(entry: runs.Entry) -> None:
        entry.first_token = True
        span = entry.span
        span.attributes[attrs.TTFT_MS] = round((spans.now_ns() - span.start_ns) / 1e6, 3)
        # The model has answered; the rest of its stream runs inside whoever consumes it.
        runs.release(entry.ctx, entry.token)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            entry = runs.pop(run_id)
            if entry is None:
                return
            try:
                _record_llm_result(entry.span, response)
            finally:
                runs.close(entry)
        except Exception:
            internal_error("langchain on_llm_end")

    @_guarded
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    @_guarded
    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is not None:
            entry.span.add_event("retry", _safe(extract.retry, retry_state))

    # -- tools -------------------------------------------------------------------------------------
    @_guarded
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = extract.run_name(serialized, kwargs, "tool")
        entry = self._start(run_id, parent_run_id, name, "tool", metadata, tags)
        if entry is None:
            return
        span = entry.span
        attributes = span.attributes
        attributes[attrs.TOOL_NAME] = attributes[attrs.GEN_AI_TOOL_NAME] = attributes[attrs.OI_TOOL_NAME] = (
            name
        )
        tool_call_id = kwargs.get("tool_call_id")
        if isinstance(tool_call_id, str):
            attributes[extract.TOOL_CALL_ID] = tool_call_id
        _capture(span, attrs.INPUT_VALUE, attrs.INPUT_MIME, inputs if inputs is not None else input_str)

    @_guarded
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.pop(run_id)
        if entry is None:
            return
        try:
            span = entry.span
            value, error = _safe(extract.tool_output, output) or (output, None)
            _capture(span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, value)
            if error is not None:
                span.attributes[attrs.ERROR_TYPE] = "ToolError"
                span.set_status(StatusCode.ERROR, error[:1024])
        finally:
            runs.close(entry)

    @_guarded
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # -- retrievers --------------------------------------------------------------------------------
    @_guarded
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = extract.run_name(serialized, kwargs, "retriever")
        entry = self._start(run_id, parent_run_id, name, "retrieval", metadata, tags)
        if entry is not None:
            _capture(entry.span, attrs.INPUT_VALUE, attrs.INPUT_MIME, query)

    @_guarded
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.pop(run_id)
        if entry is None:
            return
        try:
            _safe(record_documents, entry.span, list(documents))
        finally:
            runs.close(entry)

    @_guarded
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._fail(run_id, error)

    # -- custom events -----------------------------------------------------------------------------
    @_guarded
    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        entry = runs.RUNS.get(run_id)
        if entry is not None:
            entry.span.add_event(str(name), {"data": _safe(extract.text, data) or ""})


# -- helpers ---------------------------------------------------------------------------------------
def _capture(span: spans.TrodoSpan, key: str, mime_key: str, value: Any) -> None:
    runtime = spans.RUNTIME
    if runtime.capture_content:
        try:
            compacted = extract.compact(value)
        except Exception:
            _failed(extract.compact)
            compacted = None
        runtime.capture(span, key, mime_key, value if compacted is None else compacted)


def _record_llm_result(span: spans.TrodoSpan, response: Any) -> None:
    attributes = span.attributes
    if spans.RUNTIME.capture_content:
        output = _safe(extract.generation_output, response)
        if output is not None:
            spans.RUNTIME.capture(span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, output)
            outputs = output if isinstance(output, list) else [output]
            _safe(
                lc_messages.write_messages,
                attributes,
                "output",
                [o if isinstance(o, Mapping) else {"role": "assistant", "content": o} for o in outputs],
            )
    usage = _safe(extract.usage, response)
    if usage is not None:
        attrs.write_usage(attributes, *usage)
    model = _safe(extract.response_model, response)
    if model:
        attributes[attrs.RESPONSE_MODEL] = model
        if attrs.REQUEST_MODEL not in attributes:
            attrs.write_model(attributes, model, attributes.get(attrs.PROVIDER))
    reasons = _safe(extract.finish_reasons, response)
    if reasons:
        attributes[extract.FINISH_REASONS] = reasons


# -- process-wide instrumentation -----------------------------------------------------------------
_hook: tuple[ContextVar[Any], TrodoCallbackHandler] | None = None
_hook_lock = threading.Lock()


def instrument(
    *,
    distinct_id: str | None = None,
    conversation_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> TrodoCallbackHandler:
    """Trace every LangChain invocation in this process (LangChain's configure hook adds a handler
    to each callback manager that has no :class:`TrodoCallbackHandler` yet). Calling it again
    with no arguments keeps the installed handler; with arguments it replaces it.

    Example:
        >>> from langchain_core.language_models.fake_chat_models import FakeListChatModel
        >>> from trodo_trace.callbacks.langchain import instrument, uninstrument
        >>> handler = instrument()
        >>> FakeListChatModel(responses=["hello"]).invoke("hi").content   # traced, no callbacks passed
        'hello'
        >>> uninstrument()
    """
    global _hook
    with _hook_lock:
        if _hook is not None and distinct_id is None and conversation_id is None and metadata is None:
            return _hook[1]
        handler = TrodoCallbackHandler(
            distinct_id=distinct_id, conversation_id=conversation_id, metadata=metadata
        )
        if _hook is not None:
            _unregister(_hook[0])
        var: ContextVar[Any] = ContextVar("trodo_langchain_handler", default=handler)
        register_configure_hook(var, True, TrodoCallbackHandler)
        _hook = (var, handler)
        return handler


def uninstrument() -> None:
    """Undo :func:`instrument` (explicitly passed handlers keep working).

    Example:
        >>> from trodo_trace.callbacks.langchain import uninstrument
        >>> uninstrument()
    """
    global _hook
    with _hook_lock:
        if _hook is not None:
            _unregister(_hook[0])
            _hook = None


def _unregister(var: ContextVar[Any]) -> None:
    from langchain_core.tracers import context as tracer_context

    hooks = getattr(tracer_context, "_configure_hooks", None)
    if isinstance(hooks, list):
        hooks[:] = [hook for hook in hooks if hook[0] is not var]
    else:  # pragma: no cover - a LangChain without the hook list
        var.set(None)

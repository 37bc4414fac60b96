"""The LlamaIndex handler's state: which trodo span each LlamaIndex span feeds, and when it ends.

Every LlamaIndex span id maps to an :class:`Entry` in one lock-guarded dict. A kept span owns a
:class:`Rec` (one trodo span); a nested call on the same object joins its parent's record; any
other span is collapsed and only points at its nearest kept ancestor. A record ends when every
LlamaIndex span feeding it has exited, every streamed call it started has reported its end, and
every span under it (kept or collapsed) and every response stream it waits on has finished — so
a streaming query or chat stays open, and its run's rollups include the LLM call, until the
stream is consumed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api

from .._internal import runtime as runtime_mod
from .._internal.core import attrs, spans
from .._internal.core.decorators import record_error
from .._internal.core.errors import log_once
from .._internal.core.tracing import start_span
from . import _llamaindex_events as events
from . import _llamaindex_extract as extract
from . import _llamaindex_stream as streams
from ._llamaindex_records import Entry, Rec

_set_span = trace_api.set_span_in_context
_get_current_span = trace_api.get_current_span
_STREAMS = (Generator, AsyncGenerator)
_UNKNOWN: Any = object()


class Core:
    """The state shared by the span and the event handler of one ``TrodoLlamaIndexHandler``."""

    def __init__(self, handler: Any):
        self.handler = handler
        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.roles: dict[tuple[type, str], str | None] = {}
        self.lazy: dict[int, Rec] = {}  # LLM streams handed back and not started, by LLM object
        self.events: dict[type, Any] = dict(events.HANDLERS)

    def fail(self, where: str) -> None:
        """Record an SDK failure (call from an ``except`` block). The dispatcher swallows whatever
        a handler raises, so failures are counted (``internal_errors``) and logged once instead."""
        self.handler.internal_errors += 1
        log_once(
            "llamaindex:" + where,
            "trodo_trace: LlamaIndex instrumentation failed in %s (the query goes on)",
            where,
            exc_info=True,
        )

    def extract(self, where: str, fn: Any, *args: Any) -> Any:
        """Run one extractor; a failure drops only its field."""
        try:
            return fn(*args)
        except Exception:
            self.fail(where)
            return None

    # -- span start ------------------------------------------------------------------------------
    def enter(self, id_: str, bound_args: Any, instance: Any, parent_id: str | None, tags: Any) -> None:
        runtime = spans.RUNTIME or runtime_mod.get()
        if not runtime.enabled:
            return
        entries = self.entries
        parent = entries.get(parent_id) if parent_id else None
        parent_rec = parent.rec if parent is not None else None
        qualname = id_.partition("-")[0]
        if instance is None:
            role = self._step_role(qualname, parent)
        else:
            key = (type(instance), qualname.rpartition(".")[2])
            role = self.roles.get(key, _UNKNOWN)
            if role is _UNKNOWN:
                role = self.roles[key] = extract.classify(instance, key[1])
        if role is None:
            entry = Entry(parent_rec, member=False)
            with self.lock:
                entries[id_] = entry
                if parent_rec is not None:
                    parent_rec.holds += 1
        elif (merge := self._merge_target(role, instance, parent_rec)) is not None:
            entry = Entry(merge, member=True)
            with self.lock:
                entries[id_] = entry
                merge.open += 1
                merge.members.append(id_)
        else:
            rec = self._open(id_, role, qualname, instance, bound_args, tags, parent_rec)
            entry = Entry(rec, member=True, own=True)
            entry.token = otel_context.attach(_set_span(rec.span))
            with self.lock:
                entries[id_] = entry

    def _merge_target(self, role: str, instance: Any, parent_rec: Rec | None) -> Rec | None:
        """The record a nested call on the same object joins: its parent's, or (for an LLM) a
        stream the object returned under the same parent that has not produced a chunk yet — the
        call that stream makes lazily on its first step (``astream_complete`` over
        ``stream_complete``)."""
        if role not in extract.MERGED:
            return None
        if parent_rec is not None and parent_rec.instance is instance and parent_rec.role == role:
            return None if parent_rec.done else parent_rec
        if role == extract.LLM:
            lazy = self.lazy.get(id(instance))
            if (
                lazy is not None
                and lazy.instance is instance
                and lazy.parent is parent_rec
                and not lazy.first_token
                and not lazy.done
            ):
                return lazy
        return None

    @staticmethod
    def _step_role(qualname: str, parent: Entry | None) -> str | None:
        if parent is None or not parent.own or parent.rec is None:
            return None
        rec = parent.rec
        if rec.role == extract.WORKFLOW:
            return extract.STEP
        if (
            rec.role == extract.AGENT
            and qualname.endswith(".run_agent_step")
            and extract.is_multi_agent(rec.instance)
        ):
            return extract.AGENT_STEP
        return None  # an agent's own bookkeeping steps are collapsed into the agent

    def _open(
        self,
        id_: str,
        role: str,
        qualname: str,
        instance: Any,
        bound_args: Any,
        tags: Any,
        parent_rec: Rec | None,
    ) -> Rec:
        name = None
        if role == extract.AGENT_STEP:
            name = self.extract("step name", extract.agent_step_name, bound_args)
        if name is None:
            name = self.extract("span name", extract.span_name, role, qualname, instance) or qualname
        attributes: dict[str, Any] = {}
        if role == extract.LLM:
            attributes[attrs.GEN_AI_OPERATION] = "chat"
            model, temperature = self.extract("llm request", extract.llm_request, instance) or (None, None)
            if model:
                attrs.write_model(attributes, model, self.extract("provider", extract.provider, instance))
            if temperature is not None:
                attributes[attrs.TEMPERATURE] = float(temperature)
        elif role == extract.EMBEDDING:
            attributes[attrs.OI_KIND] = "EMBEDDING"
            attributes[attrs.GEN_AI_OPERATION] = "embeddings"
            model = self.extract("embedding model", extract.embedding_model, instance)
            if model:
                attributes[attrs.REQUEST_MODEL] = attributes["embedding.model_name"] = model
            provider = self.extract("provider", extract.provider, instance)
            if provider:
                attributes[attrs.PROVIDER] = provider
        elif role == extract.TOOL:
            attributes[attrs.TOOL_NAME] = attributes[attrs.GEN_AI_TOOL_NAME] = attributes[
                attrs.OI_TOOL_NAME
            ] = name
        elif role == extract.RERANKER:
            attributes[attrs.OI_KIND] = "RERANKER"
        span = start_span(name, extract.KIND[role], attributes, ctx=self._parent_context(parent_rec))
        rec = Rec(span, role, instance, parent_rec, id_)
        if parent_rec is not None:
            with self.lock:
                parent_rec.holds += 1
        value = self.extract("input", extract.span_input, role, bound_args, tags)
        if value is not None:
            spans.RUNTIME.capture(span, attrs.INPUT_VALUE, attrs.INPUT_MIME, value)
        return rec

    @staticmethod
    def _parent_context(parent_rec: Rec | None) -> otel_context.Context | None:
        """The LlamaIndex parent's span, unless the current span is one of ours opened inside it
        (a ``@trodo`` function the LlamaIndex call made); with no LlamaIndex parent, the current
        context (the spans join the current run, or start one)."""
        if parent_rec is None:
            return None
        parent = parent_rec.span
        current = _get_current_span()
        if current is parent:
            return None
        if (
            isinstance(current, spans.TrodoSpan)
            and current.end_ns is None
            and current.trace_id == parent.trace_id
            and current.start_ns >= parent.start_ns
        ):
            return None
        return _set_span(parent)

    # -- span end --------------------------------------------------------------------------------
    def exit(self, id_: str, result: Any) -> None:
        entry = self.entries.get(id_)
        if entry is None:
            return
        if entry.own:
            streams.detach(entry.token)
            self._record_result(entry, result)
        if entry.member and entry.calls:
            if isinstance(result, _STREAMS):
                self._watch_stream(entry, result)  # its end event comes when the stream ends
            else:
                events.close_calls(self, entry)  # an end event that never came: the call is over
        self._leave(id_, entry)

    def drop(self, id_: str, err: BaseException | None) -> None:
        entry = self.entries.get(id_)
        if entry is None:
            return
        rec = entry.rec
        if entry.own:
            streams.detach(entry.token)
            if err is not None and rec is not None:
                record_error(rec.span, err)
        if entry.member and rec is not None:
            events.close_calls(self, entry)
        self._leave(id_, entry)

    def _leave(self, id_: str, entry: Entry) -> None:
        rec = entry.rec
        with self.lock:
            if not entry.member:
                self.entries.pop(id_, None)
                if rec is None:
                    return
                rec.holds -= 1
            elif rec is None:
                return
            else:
                rec.open -= 1
            if rec.done or rec.open > 0 or rec.depth > 0 or rec.holds > 0:
                return  # still waiting (the usual case for a collapsed span): no second lock round
        self.maybe_end(rec)

    def maybe_end(self, rec: Rec | None) -> None:
        """End ``rec`` once nothing keeps it open, then its parent if that was all it waited for."""
        while rec is not None:
            with self.lock:
                if rec.done or rec.open > 0 or rec.depth > 0 or rec.holds > 0:
                    return
                rec.done = True
                for member in rec.members:
                    self.entries.pop(member, None)
                if self.lazy and self.lazy.get(id(rec.instance)) is rec:
                    del self.lazy[id(rec.instance)]
                parent = rec.parent
                if parent is not None:
                    parent.holds -= 1
            self._end(rec)
            rec = parent

    def _end(self, rec: Rec) -> None:
        span = rec.span
        try:
            if rec.result is not None and not rec.output_set:
                value = extract.span_output(rec.role, rec.result)
                if value is not None:
                    self.output(rec, value)
            usage = rec.usage
            if usage is not None:
                attrs.write_usage(span.attributes, *usage)
                if rec.role == extract.EMBEDDING and usage[0]:
                    _embedding_cost(span)
        except Exception:
            self.fail("span end")
        span.end()

    def release(self, rec: Rec) -> None:
        """A stream ``rec`` waited on has finished."""
        with self.lock:
            rec.holds -= 1
        self.maybe_end(rec)

    def detach_all(self) -> None:
        """End every span still open (the handler is leaving the dispatcher)."""
        with self.lock:
            recs = {id(e.rec): e.rec for e in self.entries.values() if e.member and e.rec and not e.rec.done}
            for rec in recs.values():
                rec.done = True
            self.entries.clear()
            self.lazy.clear()
        for rec in recs.values():
            rec.span.end()

    # -- results ---------------------------------------------------------------------------------
    def _record_result(self, entry: Entry, result: Any) -> None:
        rec = entry.rec
        assert rec is not None
        role = rec.role
        try:
            if role == extract.RETRIEVER:
                self._documents(rec, result)
            elif role == extract.LLM:
                if isinstance(result, _STREAMS):
                    if rec.depth > 0 and not rec.first_token:
                        self.lazy[id(rec.instance)] = rec
                elif not entry.started and not rec.output_set:
                    events.llm_response(self, rec, result)  # an LLM that reports no events
            elif isinstance(result, (StreamingResponse, AsyncStreamingResponse)):
                streams.hold(self, rec, rec.members[0], result)
            elif role == extract.CHAT:
                rec.result = result  # a streaming chat response has its text only once streamed
            elif role not in (extract.EMBEDDING, extract.RERANKER):
                value = extract.span_output(role, result)
                if value is not None:
                    self.output(rec, value)
        except Exception:
            self.fail("span result")

    def _documents(self, rec: Rec, nodes: Any) -> None:
        """``retrieval.documents.N.document.id|content|score`` (content bounded) and the count."""
        if not isinstance(nodes, list):
            return
        runtime = spans.RUNTIME
        attributes = rec.span.attributes
        attributes[attrs.RETRIEVAL_COUNT] = len(nodes)
        documents = self.extract(
            "documents", extract.node_documents, nodes, runtime.max_value_length, runtime.capture_content
        )
        for suffix, value in (documents or {}).items():
            attributes["retrieval.documents" + suffix] = value

    def output(self, rec: Rec, value: Any) -> None:
        rec.output_set = True
        spans.RUNTIME.capture(rec.span, attrs.OUTPUT_VALUE, attrs.OUTPUT_MIME, value)

    def _watch_stream(self, entry: Entry, stream: Any) -> None:
        """A call handed back its stream unconsumed: if the stream is dropped before the call
        reports its end, the call is over (closed early)."""
        weakref.finalize(stream, self._abandoned, entry).atexit = False

    def _abandoned(self, entry: Entry) -> None:
        rec = entry.rec
        if rec is None or rec.done or not events.close_calls(self, entry):
            return  # the call reported its end: the stream was consumed
        rec.span.attributes[attrs.GENERATOR_CLOSED_EARLY] = True
        self.maybe_end(rec)

    # -- events ----------------------------------------------------------------------------------
    def event(self, event: Any) -> None:
        handlers = self.events
        handle = handlers.get(type(event), _UNKNOWN)
        if handle is _UNKNOWN:
            handle = next((fn for cls, fn in list(handlers.items()) if isinstance(event, cls)), None)
            handlers[type(event)] = handle
        if handle is None or not event.span_id:
            return
        entry = self.entries.get(event.span_id)
        if entry is not None and entry.rec is not None:
            handle(self, entry, event)


def _embedding_cost(span: spans.TrodoSpan) -> None:
    """Embedding spans are ``function`` spans, which the runtime does not price: price them here."""
    attributes = span.attributes
    model = attributes.get(attrs.REQUEST_MODEL)
    if model:
        cost = spans.RUNTIME.pricing.cost(
            model, attributes.get(attrs.PROVIDER), input_tokens=attributes[attrs.USAGE_INPUT]
        )
        if cost is not None:
            attributes[attrs.LLM_COST] = cost

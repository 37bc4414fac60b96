"""Response token streams of LlamaIndex queries, held open until they are consumed.

A streaming query returns at once with a ``StreamingResponse`` whose ``response_gen`` makes the
LLM call only when the caller starts reading it. The handler swaps that generator for a proxy
(:class:`StreamProxy` / :class:`AsyncStreamProxy`) that runs each step with the synthesizer's
span current — in LlamaIndex's ``active_span_id`` and in the OpenTelemetry context — so the LLM
call nests under it, and that ends the spans waiting on the stream when it ends (or is dropped).
Each step sets and resets both context variables around one ``next``, so nothing leaks into the
caller's context between steps.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.instrumentation.span import active_span_id
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api

from .._internal.core import attrs
from .._internal.core.decorators import record_error
from ._llamaindex_records import Rec, State

_TEXT_LIMIT = 1 << 20  # characters of streamed text kept for the output


def detach(token: Any) -> None:
    """Undo an attach while still in the context that made it; a span exiting in another context
    (a future's done-callback) leaves that context alone instead of logging a detach failure."""
    var = getattr(token, "var", None)
    if var is None:
        otel_context.detach(token)
        return
    try:
        var.reset(token)
    except (ValueError, RuntimeError):
        pass


class StreamState:
    """A response token stream and the spans it holds open until it is consumed."""

    __slots__ = ("core", "ctx", "done", "li_id", "parts", "recs", "size")

    def __init__(self, core: State, li_id: str | None):
        self.core = core
        self.li_id = li_id
        self.recs: list[Rec] = []
        self.parts: list[str] = []
        self.size = 0
        self.done = False
        self.ctx: otel_context.Context | None = None

    def enter(self) -> tuple[Any, Any]:
        ctx = self.ctx
        if ctx is None:
            span = self.recs[0].span if self.recs else trace_api.get_current_span()
            ctx = self.ctx = trace_api.set_span_in_context(span)
        return active_span_id.set(self.li_id), otel_context.attach(ctx)

    @staticmethod
    def leave(tokens: tuple[Any, Any]) -> None:
        detach(tokens[1])
        try:
            active_span_id.reset(tokens[0])
        except ValueError:
            pass

    def item(self, item: Any) -> None:
        if isinstance(item, str) and self.size < _TEXT_LIMIT:
            self.parts.append(item)
            self.size += len(item)

    def finish(self, exc: BaseException | None, completed: bool = True) -> None:
        core = self.core
        with core.lock:
            if self.done:
                return
            self.done = True
            recs = list(self.recs)
        text = "".join(self.parts)
        for rec in recs:
            try:
                if exc is not None:
                    record_error(rec.span, exc)
                if not rec.output_set and (text or (completed and exc is None)):
                    core.output(rec, text)
            except Exception:
                core.fail("stream end")
            core.release(rec)

    def abandon(self) -> None:
        """The stream was closed or dropped before it ended."""
        if not self.done:
            for rec in self.recs:
                rec.span.attributes[attrs.GENERATOR_CLOSED_EARLY] = True
            self.finish(None, completed=False)


class StreamProxy(Generator[Any, Any, Any]):
    """Stands in for a ``StreamingResponse.response_gen``."""

    __slots__ = ("__weakref__", "_gen", "state")

    def __init__(self, gen: Generator[Any, Any, Any], state: StreamState):
        self._gen = gen
        self.state = state
        weakref.finalize(self, state.abandon).atexit = False

    def send(self, value: Any) -> Any:
        return self._step(self._gen.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self._gen.throw, *args)

    def close(self) -> None:
        try:
            self._gen.close()
        finally:
            self.state.abandon()

    def _step(self, operation: Any, *args: Any) -> Any:
        state = self.state
        tokens = state.enter()
        try:
            item = operation(*args)
        except StopIteration:
            state.finish(None)
            raise
        except BaseException as exc:
            state.finish(exc)
            raise
        finally:
            state.leave(tokens)
        state.item(item)
        return item


class AsyncStreamProxy(AsyncGenerator[Any, Any]):
    """Stands in for an ``AsyncStreamingResponse.response_gen``."""

    __slots__ = ("__weakref__", "_gen", "state")

    def __init__(self, gen: AsyncGenerator[Any, Any], state: StreamState):
        self._gen = gen
        self.state = state
        weakref.finalize(self, state.abandon).atexit = False

    async def asend(self, value: Any) -> Any:
        return await self._step(self._gen.asend, value)

    async def athrow(self, *args: Any) -> Any:
        return await self._step(self._gen.athrow, *args)

    async def aclose(self) -> None:
        try:
            await self._gen.aclose()
        finally:
            self.state.abandon()

    async def _step(self, operation: Any, *args: Any) -> Any:
        state = self.state
        tokens = state.enter()
        try:
            item = await operation(*args)
        except StopAsyncIteration:
            state.finish(None)
            raise
        except BaseException as exc:
            state.finish(exc)
            raise
        finally:
            state.leave(tokens)
        state.item(item)
        return item


def hold(core: State, rec: Rec, li_id: str, response: Any) -> None:
    """Keep ``rec`` open until ``response``'s token stream is consumed (the first span to see the
    response wraps its stream; the spans it is returned through join the wait)."""
    stream = response.response_gen
    if isinstance(stream, (StreamProxy, AsyncStreamProxy)):
        state = stream.state
    elif isinstance(stream, Generator):
        state = StreamState(core, li_id)
        response.response_gen = StreamProxy(stream, state)
    elif isinstance(stream, AsyncGenerator):
        state = StreamState(core, li_id)
        response.response_gen = AsyncStreamProxy(stream, state)
    else:
        return
    with core.lock:
        if state.done:
            return
        rec.holds += 1
        state.recs.append(rec)

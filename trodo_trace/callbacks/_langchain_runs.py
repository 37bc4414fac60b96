"""The open LangChain runs of :mod:`trodo_trace.callbacks.langchain` and the OpenTelemetry context
attached for each.

One lock-guarded map, shared by every handler instance, from LangChain's run id to the open run's
:class:`Entry`. Each run's span is made current while it runs; LangChain copies the context for the
run's body right after the start callback and calls async end callbacks in yet another copy, so a
plain detach cannot undo the attach everywhere. The attached context is therefore a
:class:`RunContext`: once the run is released its span entry resolves, at every lookup, through the
context that was current before, so every copy stops naming the finished run; where the release
runs in the very context of the attach, the context variable is also reset.
"""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from langchain_core.runnables.config import var_child_runnable_config
from opentelemetry import trace as trace_api
from opentelemetry.context import Context

from .._internal.core import spans
from .._internal.core.errors import log_once
from .._internal.core.tracing import attach as _attach
from .._internal.core.tracing import current_context as _get_current
from .._internal.core.tracing import start_span

UNFINISHED = "trodo.langchain.unfinished"

#: The OpenTelemetry context key of the current span (read off the API, not imported privately).
_SPAN_KEY = next(iter(trace_api.set_span_in_context(trace_api.INVALID_SPAN, Context())))
_thread_id = threading.get_ident

#: Open LangChain runs beyond this many mean end callbacks are being missed: the oldest is ended.
MAX_OPEN_RUNS = 10_000


class RunContext(Context):
    """The OpenTelemetry context attached while a LangChain run is current: the context that was
    current before (``prev``) plus the run's span.

    Once the run is released its span entry resolves through ``prev`` at every lookup, so a run
    released before its parent follows the parent's own release later on.
    """

    prev: Context
    released: bool

    def __init__(self, prev: Context, span: spans.TrodoSpan):
        while type(prev) is RunContext and prev.released:
            prev = prev.prev  # keep chains short: released links are skipped for good
        super().__init__(prev)
        dict.__setitem__(self, _SPAN_KEY, span)
        self.prev: Context = prev
        self.released = False
        self.thread = _thread_id()

    def get(self, key: str, default: Any = None) -> Any:
        if self.released and key == _SPAN_KEY:
            return self._target().get(key, default)
        return dict.get(self, key, default)

    def _target(self) -> Context:
        prev = self.prev
        while type(prev) is RunContext and prev.released:
            prev = prev.prev
        self.prev = prev
        return prev


class Entry:
    """One open LangChain run: its span, the context attached for it, and its outermost run."""

    __slots__ = ("children", "ctx", "first_token", "root", "run_id", "span", "token")

    def __init__(
        self, run_id: UUID, span: spans.TrodoSpan, ctx: RunContext, token: Any, root: Entry | None
    ) -> None:
        self.run_id = run_id
        self.span = span
        self.ctx = ctx
        self.token = token
        self.root = root or self
        #: Open descendants; kept on the outermost run only.
        self.children: set[Entry] | None = None if root else set()
        self.first_token = False


RUNS: dict[UUID, Entry] = {}
HIDDEN: dict[UUID, UUID | None] = {}  # hidden run id -> its parent's run id
LOCK = threading.Lock()


def release(ctx: RunContext, token: Any) -> None:
    """Stop ``ctx`` naming its run's span, in every context that holds it (its span entry now
    resolves through the context from before the run); reset the context variable too when this
    is the context the run was attached in and nothing was attached since."""
    if ctx.released:
        return
    ctx.released = True
    target = ctx._target().get(_SPAN_KEY)
    if target is None:  # the stored value, for contexts later copied from this one
        dict.pop(ctx, _SPAN_KEY, None)
    else:
        dict.__setitem__(ctx, _SPAN_KEY, target)
    if _get_current() is ctx:
        var = getattr(token, "var", None)
        if var is not None:
            try:
                var.reset(token)
            except (ValueError, RuntimeError):
                pass  # attached in another context (LangChain's copy): the lookup above suffices


def outer_context() -> Context | None:
    """The parent context of an outermost LangChain run: the current one, unless what is current is
    a LangChain run of ours left behind on this thread (its end never came) while no LangChain
    runnable is running here; then the context from before it, which is also put back."""
    current = _get_current()
    if (
        type(current) is not RunContext
        or current.released
        or current.thread != _thread_id()
        or var_child_runnable_config.get() is not None
    ):
        return None
    clean: Context = current
    while type(clean) is RunContext:
        clean = clean.prev
    _attach(clean)  # the stale context is abandoned, not detached: it has no live owner here
    return clean


def start(
    run_id: UUID,
    parent_run_id: UUID | None,
    name: str,
    kind: str,
    run_options: Any,
) -> Entry | None:
    """Open the span of LangChain run ``run_id`` under its LangChain parent (else the current
    context, where ``run_options()`` says how a new trodo run starts) and make it current;
    ``None`` when another handler instance already records this run."""
    if run_id in RUNS:
        return None
    parent = RUNS.get(parent_run_id) if parent_run_id is not None else None
    if parent is None and parent_run_id is not None and parent_run_id in HIDDEN:
        parent = visible_parent(parent_run_id)
    if parent is not None:
        ctx = parent.ctx if not parent.ctx.released else trace_api.set_span_in_context(parent.span)
        span = start_span(name, kind, None, None, ctx)
    else:
        span = start_span(name, kind, None, run_options(), outer_context())
    run_ctx = RunContext(_get_current(), span)
    entry = Entry(run_id, span, run_ctx, _attach(run_ctx), parent.root if parent else None)
    with LOCK:
        RUNS[run_id] = entry
        if parent is not None:
            entry.root.children.add(entry)  # type: ignore[union-attr]
        crowded = len(RUNS) > MAX_OPEN_RUNS
    if crowded:
        evict_oldest()
    return entry


def pop(run_id: UUID) -> Entry | None:
    """Take run ``run_id`` out of the map (``None`` for a hidden or unknown run)."""
    with LOCK:
        entry = RUNS.pop(run_id, None)
        if entry is None:
            HIDDEN.pop(run_id, None)
            return None
        if entry.root is not entry:
            entry.root.children.discard(entry)  # type: ignore[union-attr]
    return entry


def close(entry: Entry) -> None:
    """End the run's span (after its unfinished descendants, for an outermost run) and release it."""
    try:
        if entry.children:
            end_unfinished(entry)
        entry.span.end()
    finally:
        release(entry.ctx, entry.token)


def visible_parent(run_id: UUID) -> Entry | None:
    """The nearest recorded ancestor of a hidden run."""
    seen = 0
    current: UUID | None = run_id
    while current is not None and seen < 64:
        entry = RUNS.get(current)
        if entry is not None:
            return entry
        current = HIDDEN.get(current)
        seen += 1
    return None


def end_unfinished(root: Entry) -> None:
    """End the spans of ``root``'s tree whose end callback never came, before ``root`` itself."""
    with LOCK:
        orphans = list(root.children or ())
        root.children = set()
        for orphan in orphans:
            RUNS.pop(orphan.run_id, None)
    for orphan in sorted(orphans, key=lambda entry: -entry.span.start_ns):
        abandon(orphan)


def abandon(entry: Entry) -> None:
    try:
        entry.span.attributes[UNFINISHED] = True
        entry.span.end()
    finally:
        release(entry.ctx, entry.token)


def evict_oldest() -> None:
    with LOCK:
        if len(RUNS) <= MAX_OPEN_RUNS:
            return
        run_id = next(iter(RUNS))
        entry = RUNS.pop(run_id)
        if entry.root is not entry:
            entry.root.children.discard(entry)  # type: ignore[union-attr]
    log_once(
        "langchain-evict",
        "trodo_trace: more than %d LangChain runs open (end callbacks missed?); ending the oldest",
        MAX_OPEN_RUNS,
    )
    abandon(entry)

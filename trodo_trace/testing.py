"""Test kit: capture finished spans and runs in memory and assert on whole trees.

Example:
    >>> import trodo_trace as trodo
    >>> from trodo_trace.testing import capture
    >>> with capture(deterministic=True) as traces:
    ...     _ = trodo.agent("bot")(lambda: trodo.tool("search")(lambda: 1)())()
    >>> traces.tree()
    [{'name': 'bot', 'kind': 'run', 'status': 'OK', 'children': [{'name': 'search', 'kind': 'tool', 'status': 'OK', 'children': []}]}]

With pytest, the ``trodo_capture`` fixture gives the same object.

``FakeOpenAI`` and ``FakeAnthropic`` are local servers that speak those APIs (JSON, event streams,
tool calls, error bodies), so an agent that calls the real SDKs can be tested offline.
``FakeCohere`` and ``FakeMistral`` do the same for Cohere's v2 API and Mistral's API.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ._testing_bedrock import FakeBedrock
from ._testing_cohere import FakeCohere
from ._testing_gemini import FakeGemini
from ._testing_mistral import FakeMistral
from ._testing_providers import FakeAnthropic, FakeOpenAI, FakeReply, ReceivedRequest

__all__ = [
    "Capture",
    "CapturedSpan",
    "FakeAnthropic",
    "FakeCohere",
    "FakeMistral",
    "FakeOpenAI",
    "FakeReply",
    "ReceivedRequest",
    "capture",
    "trodo_capture",
]
__all__ += ["FakeBedrock", "FakeGemini"]


@dataclass(frozen=True)
class CapturedSpan:
    """A finished span as it is exported."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    run_id: str | None
    status: str
    status_message: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    @property
    def is_run_root(self) -> bool:
        return "trodo.run.span_count" in self.attributes


class Capture:
    """Spans captured while active, in the order they ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[CapturedSpan] = []

    def _add(self, span: CapturedSpan) -> None:
        with self._lock:
            self._spans.append(span)

    @property
    def spans(self) -> list[CapturedSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def runs(self) -> list[CapturedSpan]:
        """The root span of every finished run, in the order the runs started."""
        return sorted((s for s in self.spans if s.is_run_root), key=lambda s: s.start_ns)

    def run(self, run_id: str) -> CapturedSpan:
        """The root span of run ``run_id``."""
        for span in self.spans:
            if span.run_id == run_id and span.is_run_root:
                return span
        raise KeyError(f"no finished run {run_id!r}")

    def run_spans(self, run_id: str) -> list[CapturedSpan]:
        """Every captured span of run ``run_id`` (not its sub-runs), by start time."""
        return sorted((s for s in self.spans if s.run_id == run_id), key=lambda s: s.start_ns)

    def by_name(self, name: str) -> CapturedSpan:
        """The only captured span called ``name``."""
        found = [s for s in self.spans if s.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} spans named {name!r}")
        return found[0]

    def tree(
        self,
        keys: Iterable[str] = (),
        *,
        run_id: str | None = None,
        spans: Sequence[CapturedSpan] | None = None,
    ) -> list[dict[str, Any]]:
        """The captured spans as nested dicts (``name``, ``kind``, ``status``, the chosen attribute
        ``keys`` under ``attributes`` when present, and ``children`` by start time).

        Spans whose parent was not captured are roots. ``run_id`` keeps one run's spans only.
        """
        keys = tuple(keys)
        selected = list(spans if spans is not None else self.spans)
        if run_id is not None:
            selected = [s for s in selected if s.run_id == run_id]
        by_id = {s.span_id: s for s in selected}
        children: dict[str | None, list[CapturedSpan]] = {}
        for span in selected:
            parent = span.parent_id if span.parent_id in by_id else None
            children.setdefault(parent, []).append(span)

        def node(span: CapturedSpan) -> dict[str, Any]:
            result: dict[str, Any] = {"name": span.name, "kind": span.kind, "status": span.status}
            if keys:
                result["attributes"] = {k: span.attributes[k] for k in keys if k in span.attributes}
            result["children"] = [
                node(child)
                for child in sorted(children.get(span.span_id, []), key=lambda s: (s.start_ns, s.name))
            ]
            return result

        return [node(root) for root in sorted(children.get(None, []), key=lambda s: (s.start_ns, s.name))]


def _captured(readable: Any) -> CapturedSpan:
    attributes = dict(readable.attributes or {})
    parent = readable.parent
    return CapturedSpan(
        name=readable.name,
        kind=str(attributes.get("trodo.span.kind", "function")),
        trace_id=f"{readable.context.trace_id:032x}",
        span_id=f"{readable.context.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        run_id=attributes.get("trodo.run.id"),
        status=readable.status.status_code.name,
        status_message=readable.status.description,
        start_ns=readable.start_time,
        end_ns=readable.end_time,
        attributes=attributes,
        events=[
            {"name": e.name, "timestamp": e.timestamp, "attributes": dict(e.attributes or {})}
            for e in readable.events
        ],
    )


@contextmanager
def capture(deterministic: bool = False) -> Iterator[Capture]:
    """Capture every span that ends inside the block (all threads), converted as for export.

    With ``deterministic=True`` span, trace and run ids are counters and the clock advances
    exactly 1 ms per reading, so whole trees and durations can be compared literally.

    Example:
        >>> import trodo_trace as trodo
        >>> from trodo_trace.testing import capture
        >>> with capture(deterministic=True) as traces:
        ...     result, run_id = trodo.wrap_agent("triage", lambda run: trodo.tool("lookup")(len)("A-17"))
        >>> result
        4
        >>> [span.name for span in traces.run_spans(run_id)]
        ['triage', 'lookup']
        >>> traces.by_name("lookup").kind, traces.by_name("lookup").duration_ms
        ('tool', 1.0)
        >>> traces.runs()[0].attributes["trodo.run.tool_count"]
        1
    """
    from ._internal import runtime as runtime_mod
    from ._internal.core import spans as spans_mod
    from ._internal.export.convert import to_readable
    from ._internal.runtime import SCOPE

    runtime = runtime_mod.get()
    result = Capture()

    def listener(span: Any) -> None:
        result._add(_captured(to_readable(span, runtime.resource, SCOPE)))

    saved = (spans_mod.new_span_id, spans_mod.new_trace_id, spans_mod.new_run_id, spans_mod.now_ns)
    if deterministic:
        span_ids, trace_ids, run_ids = itertools.count(1), itertools.count(1), itertools.count(1)
        clock = itertools.count(1_700_000_000_000_000_000, 1_000_000)
        spans_mod.new_span_id = lambda: next(span_ids)
        spans_mod.new_trace_id = lambda: next(trace_ids)
        spans_mod.new_run_id = lambda: f"{next(run_ids):032x}"
        spans_mod.now_ns = lambda: next(clock)
    runtime.listeners.append(listener)
    try:
        yield result
    finally:
        if listener in runtime.listeners:
            runtime.listeners.remove(listener)
        current = runtime_mod.current()
        if current is not None and current is not runtime and listener in current.listeners:
            current.listeners.remove(listener)
        if deterministic:
            spans_mod.new_span_id, spans_mod.new_trace_id, spans_mod.new_run_id, spans_mod.now_ns = saved


try:  # the pytest fixture, when pytest is present
    import pytest

    @pytest.fixture
    def trodo_capture() -> Iterator[Capture]:
        """Spans finished during the test, captured in memory (the pytest plugin registers it).

        Example:
            >>> import trodo_trace as trodo
            >>> def test_triage_uses_one_tool(trodo_capture):
            ...     trodo.wrap_agent("triage", lambda run: trodo.tool("lookup")(len)("A-17"))
            ...     assert trodo_capture.runs()[0].attributes["trodo.run.tool_count"] == 1
        """
        with capture() as captured:
            yield captured

except ImportError:  # pragma: no cover
    pass

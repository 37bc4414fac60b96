"""The LlamaIndex handler's records, shared by its span, event and stream modules: :class:`Rec`
(one trodo span and what keeps it open), :class:`Entry` (one LlamaIndex span) and :class:`State`,
what the event and stream modules use of the handler's state (``_llamaindex_spans.Core``).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .._internal.core import spans


class Rec:
    """One trodo span and what it waits for before it ends: ``open`` LlamaIndex spans feeding it,
    ``depth`` started LLM/embedding calls that have not reported their end, ``holds`` spans under
    it and response streams not finished."""

    __slots__ = (
        "depth",
        "done",
        "first_token",
        "holds",
        "instance",
        "members",
        "open",
        "output_set",
        "parent",
        "result",
        "role",
        "span",
        "usage",
    )

    def __init__(self, span: spans.TrodoSpan, role: str, instance: Any, parent: Rec | None, li_id: str):
        self.span = span
        self.role = role
        self.instance = instance
        self.parent = parent
        self.members = [li_id]
        self.open = 1
        self.depth = 0
        self.holds = 0
        self.done = False
        self.first_token = False
        self.output_set = False
        self.result: Any = None  # a result whose output is read when the span ends
        self.usage: list[int | None] | None = None


class Entry:
    """A LlamaIndex span: the record it feeds (``member``; ``own`` when it opened it) or, when
    collapsed, its nearest kept ancestor's record (``None`` when there is none)."""

    __slots__ = ("calls", "member", "own", "rec", "started", "token")

    def __init__(self, rec: Rec | None, member: bool, own: bool = False):
        self.rec = rec
        self.member = member
        self.own = own
        self.started = False  # it reported a call (LLM and embedding spans)
        self.calls: list[bool] = []  # its calls that have not reported their end: outermost or not
        self.token: Any = None


class State(Protocol):
    """The part of ``_llamaindex_spans.Core`` the event and stream modules use."""

    lock: threading.Lock
    lazy: dict[int, Rec]

    def fail(self, where: str) -> None: ...

    def extract(self, where: str, fn: Any, *args: Any) -> Any: ...

    def maybe_end(self, rec: Rec | None) -> None: ...

    def release(self, rec: Rec) -> None: ...

    def output(self, rec: Rec, value: Any) -> None: ...

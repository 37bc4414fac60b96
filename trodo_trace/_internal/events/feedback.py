"""``trodo.feedback``: a score, label or comment attached to a finished run, from any process.

Feedback is an event named ``trodo.feedback`` carrying ``trodo.run.id`` (category ``feedback``;
body: ``name``, ``score``, ``label``, ``comment`` and ``span_id`` when given). It goes where the
runtime's events go: an OTLP log record, or a row of the local store's ``events`` table plus one of
its ``feedback`` table. Only the run id is needed, so a web handler can attach a user's thumbs-up to
a run an agent process finished minutes ago.
"""

from __future__ import annotations

import math
import re
from random import getrandbits
from typing import Any

from .. import runtime as runtime_mod
from ..core import spans
from ..core.errors import internal_error
from ..core.values import encodable
from ..store.feedback import EVENT_NAME
from .sink import Event, sink_for

CATEGORY = "feedback"
MAX_LABEL_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_COMMENT_LENGTH = 10_000
_SPAN_ID = re.compile(r"[0-9a-f]{16}\Z")


def _text(argument: str, value: Any, limit: int, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{argument} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{argument} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{argument} must be at most {limit} characters, got {len(value)}")
    return value


def build_event(
    run_id: Any,
    *,
    score: Any = None,
    label: Any = None,
    comment: Any = None,
    name: Any = "feedback",
    distinct_id: Any = None,
    span_id: Any = None,
) -> Event:
    """The validated ``trodo.feedback`` event (``ValueError`` naming the bad argument)."""
    run_id = _text("run_id", run_id, 255, required=True)
    name = _text("name", name, MAX_NAME_LENGTH, required=True)
    label = _text("label", label, MAX_LABEL_LENGTH)
    comment = _text("comment", comment, MAX_COMMENT_LENGTH)
    distinct_id = _text("distinct_id", distinct_id, 255)
    if distinct_id is not None and not distinct_id.strip():
        raise ValueError("distinct_id must be a non-empty string when given")
    if span_id is not None:
        if not isinstance(span_id, str) or _SPAN_ID.match(span_id.lower()) is None:
            raise ValueError(f"span_id must be 16 hexadecimal characters, got {span_id!r}")
        span_id = span_id.lower()
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise ValueError(f"score must be a number, got {type(score).__name__}")
        if not math.isfinite(score):
            raise ValueError(f"score must be a finite number, got {score!r}")
        score = float(score)
    if score is None and label is None and comment is None:
        raise ValueError("feedback needs a score, a label or a comment")
    properties: dict[str, Any] = {"name": encodable(name)}
    for key, value in (("score", score), ("label", label), ("comment", comment), ("span_id", span_id)):
        if value is not None:
            properties[key] = encodable(value) if isinstance(value, str) else value
    return Event(
        f"{getrandbits(128):032x}",
        spans.now_ns(),
        EVENT_NAME,
        encodable(distinct_id) if distinct_id is not None else None,
        CATEGORY,
        properties,
        encodable(run_id),
        0,
        0,
        0,
        None,
    )


def feedback(
    run_id: str,
    *,
    score: float | None = None,
    label: str | None = None,
    comment: str | None = None,
    name: str = "feedback",
    distinct_id: str | None = None,
    span_id: str | None = None,
) -> None:
    """Attach feedback (a score, a label, a comment) to a run, after it finished, from any process.

    The feedback is an event named ``trodo.feedback`` with ``trodo.run.id``: an OTLP log record when
    an endpoint is configured, otherwise rows in the local store that ``trodo-trace show`` and the
    dashboard display beside the run. Several feedbacks per run are kept (``name`` tells them apart,
    e.g. ``"helpfulness"``, ``"user_thumbs"``).

    Args:
        run_id: The run's id (``run.run_id``, or the id ``wrap_agent`` returned).
        score: A finite number, e.g. ``1`` for a thumbs-up and ``0`` for a thumbs-down.
        label: A category such as ``"correct"``; at most 255 characters.
        comment: Free text from the user or a reviewer.
        name: What is being scored; ``"feedback"`` by default.
        distinct_id: The user who gave the feedback.
        span_id: The span (16 hex characters) the feedback is about, when narrower than the run.

    Raises:
        ValueError: an empty ``run_id``, a score that is not a finite number, a label over 255
            characters, a malformed ``span_id``, or none of score, label and comment given.

    Example:
        >>> import trodo_trace as trodo
        >>> @trodo.agent
        ... def answer(question: str) -> str:
        ...     return "42"
        >>> _ = answer("meaning of life?")
        >>> trodo.feedback(trodo.last_run().run_id, score=1, comment="spot on", distinct_id="user-42")
    """
    event = build_event(
        run_id,
        score=score,
        label=label,
        comment=comment,
        name=name,
        distinct_id=distinct_id,
        span_id=span_id,
    )
    runtime = spans.RUNTIME or runtime_mod.get()
    if not runtime.enabled:
        return
    try:
        sink_for(runtime).submit(event)
    except Exception:
        internal_error("feedback")

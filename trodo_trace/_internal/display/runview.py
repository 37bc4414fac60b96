"""A run as a person looks at it: a snapshot of its spans, live or stored, that displays itself.

``Run`` objects, the pair ``wrap_agent`` returns and ``trodo.show(run_id)`` all render through
:class:`RunView`: a waterfall in Jupyter (``_repr_html_``, built by ``waterfall.py``) and the CLI's
text tree everywhere else (``_repr_pretty_``, ``repr``, ``print``).

A live run renders from the finished spans it keeps in memory (bounded: see ``spans.RUN_SPAN_LIMIT``),
so a display never waits for the exporter. ``show`` reads the local store for runs this process no
longer holds in memory (older runs, runs of other processes).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.trace.status import StatusCode

from .. import runtime as runtime_mod
from ..config import default_store_path
from ..core import attrs
from ..core import spans as spans_mod
from ..core.errors import internal_error

#: Sub-runs of a stored run placed in its waterfall (each costs a store query).
MAX_SUB_RUNS = 50
_RESULT_PREVIEW = 300
_NO_RESULT: Any = object()
_STATUS = {StatusCode.OK: "ok", StatusCode.ERROR: "error", StatusCode.UNSET: "unset"}


# -- live objects -> the store's shapes ----------------------------------------------------------
def span_record(span: spans_mod.TrodoSpan) -> dict[str, Any]:
    """A live span in the shape ``LocalStore.get_spans`` returns (status ``running`` until it ends)."""
    attributes = dict(span.attributes)
    start, end = span.start_ns, span.end_ns
    status = "running" if end is None else _STATUS.get(span.status_code, "unset")
    events: list[dict[str, Any]] = [
        {"name": name, "timestamp": ts, "attributes": dict(event_attrs)}
        for name, ts, event_attrs in list(span.events or ())
    ]
    error_type = attributes.get(attrs.ERROR_TYPE)
    if error_type is None and status == "error":
        error_type = next(
            (e["attributes"].get("exception.type") for e in events if e["name"] == "exception"), None
        )
    parent = span.parent_span_id
    return {
        "trace_id": span.trace_id_hex,
        "span_id": span.span_id_hex,
        "parent_span_id": f"{parent:016x}" if parent is not None else None,
        "run_id": span.run_id,
        "name": span.name,
        "kind": span.kind,
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6 if end is not None else None,
        "status": status,
        "status_message": span.status_message,
        "error_type": error_type,
        "attributes": attributes,
        "events": events,
    }


def run_summary(run: spans_mod.Run) -> dict[str, Any]:
    """A live run in the shape ``LocalStore.get_run`` returns (rollups so far while it runs)."""
    root = run.root
    attributes = root.attributes
    with run._lock:
        spans, tools, errors = run.span_count, run.tool_count, run.error_count
        tokens_in, tokens_out = run.tokens_in, run.tokens_out
        cost, incomplete = run.cost, run.cost_incomplete
    finished = run.status is not None
    if finished:
        duration = attributes.get(attrs.RUN_DURATION_MS)
        cost_value = attributes.get(attrs.RUN_COST)
    else:
        duration = None
        cost_value = round(cost, 10) if cost or not incomplete else None
    return {
        "run_id": run.run_id,
        "trace_id": root.trace_id_hex,
        "root_span_id": root.span_id_hex,
        "name": run.name,
        "kind": root.kind,
        "distinct_id": run.distinct_id,
        "conversation_id": run.conversation_id,
        "parent_run_id": run.parent_run_id,
        "status": run.status or ("running" if root.end_ns is None else "unset"),
        "error_summary": attributes.get(attrs.RUN_ERROR_SUMMARY),
        "start_ns": root.start_ns,
        "end_ns": root.end_ns,
        "duration_ms": duration,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": cost_value,
        "cost_incomplete": incomplete,
        "span_count": spans,
        "tool_count": tools,
        "error_count": errors,
        "metadata": dict(run.metadata) or None,
    }


def _sub_run_entry(run: spans_mod.Run) -> dict[str, Any]:
    parent = run.root.parent_span_id
    return {**run_summary(run), "parent_span_id": f"{parent:016x}" if parent is not None else None}


def _default_store_path() -> Path:
    runtime = runtime_mod.current()
    return runtime.store_path if runtime is not None else default_store_path().expanduser().absolute()


class RunView:
    """A run's summary, spans and sub-runs, ready to display; what ``trodo.show(run_id)`` returns.

    In Jupyter it renders as a waterfall (``_repr_html_``); ``print(view)`` and ``repr`` give the
    same text tree as ``trodo-trace show``. ``run``, ``spans`` and ``sub_runs`` are plain dicts in
    the local store's shapes.
    """

    def __init__(
        self,
        run: Mapping[str, Any],
        spans: Iterable[Mapping[str, Any]],
        sub_runs: Iterable[Mapping[str, Any]] = (),
        parent_run: Mapping[str, Any] | None = None,
        notes: Iterable[str] = (),
        source: str = "memory",
    ):
        self.run = dict(run)
        self.spans = [dict(span) for span in spans]
        self.sub_runs = [dict(sub) for sub in sub_runs]
        self.parent_run = dict(parent_run) if parent_run is not None else None
        self.notes = list(notes)
        self.source = source

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id"))

    @property
    def name(self) -> str | None:
        return self.run.get("name")

    @property
    def status(self) -> str | None:
        return self.run.get("status")

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run: spans_mod.Run) -> RunView:
        """The view of a live run, from the spans it keeps in memory (the store if it released them)."""
        with run._lock:
            spans = run._spans  # read once: finishing another run may release it meanwhile
            kept = list(spans) if spans is not None else None
            counted = run.span_count
        notes = []
        if kept is None:
            try:
                return cls.from_store(run.run_id)
            except (ValueError, OSError, sqlite3.Error) as exc:
                kept = []
                notes.append(
                    f"the spans of this run are no longer in memory and not readable in the store: {exc}"
                )
        elif counted > len(kept):
            notes.append(
                f"showing the newest {len(kept)} of {counted} spans; "
                f"trodo.show({run.run_id!r}) reads them all from the local store"
            )
        root = run.root
        if not any(span is root for span in kept):
            kept.append(root)
        sub_runs = sorted(
            (
                _sub_run_entry(r)
                for r in list(spans_mod.RECENT_RUNS)
                if r.parent_run_id == run.run_id and r is not run
            ),
            key=lambda sub: sub["start_ns"] or 0,
        )
        parent = next((r for r in list(spans_mod.RECENT_RUNS) if r.run_id == run.parent_run_id), None)
        return cls(
            run_summary(run),
            (span_record(s) for s in kept),
            sub_runs,
            run_summary(parent) if parent is not None else None,
            notes=notes,
            source="memory",
        )

    @classmethod
    def from_store(cls, run_id: str, store_path: str | os.PathLike[str] | None = None) -> RunView:
        """The view of a run read from the local store (this process's or ``store_path``).

        Raises:
            ValueError: no store file, no such run, or a prefix matching several runs.
        """
        from ..store.local import LocalStore

        path = Path(store_path).expanduser() if store_path is not None else _default_store_path()
        if not path.is_file():
            raise ValueError(f"no local store at {path}")
        store = LocalStore(path, create=False)
        try:
            matches = store.resolve_run_ids(run_id)
            if len(matches) > 1:
                raise ValueError(
                    f"run_id {run_id!r} matches several runs in {path}: {', '.join(matches[:5])}"
                )
            if not matches:
                spans = store.get_spans(run_id)
                if not spans:
                    raise ValueError(
                        f"no run {run_id!r} in {path} (not exported yet? trodo.flush() waits for it)"
                    )
                return cls(
                    _summary_from_spans(run_id, spans),
                    spans,
                    notes=["the run's root span is not in the store yet (still running?)"],
                    source="store",
                )
            run = store.get_run(matches[0])
            if run is None:  # pragma: no cover - deleted between the two reads
                raise ValueError(f"no run {run_id!r} in {path}")
            spans = store.get_spans(run["run_id"])
            subs = sorted(store.sub_runs(run["run_id"]), key=lambda sub: sub.get("start_ns") or 0)
            sub_runs = [_placed_sub_run(store, sub) for sub in subs[:MAX_SUB_RUNS]]
            parent = store.get_run(run["parent_run_id"]) if run.get("parent_run_id") else None
        finally:
            store.close()
        return cls(run, spans, sub_runs, parent, source="store")

    # -- rendering -----------------------------------------------------------------------------
    def to_html(self, result: Any = _NO_RESULT) -> str:
        """The waterfall as one self-contained HTML fragment (``result``: a value shown above it)."""
        from .waterfall import waterfall_html

        caption = None if result is _NO_RESULT else _preview(result)
        return waterfall_html(self.run, self.spans, self.sub_runs, self.parent_run, self.notes, caption)

    def to_text(self) -> str:
        """The run as the text tree ``trodo-trace show`` prints."""
        from .render import format_run_tree

        text = format_run_tree(self.run, self.spans, self.sub_runs, self.parent_run)
        return "\n".join([text, *(f"note: {note}" for note in self.notes)])

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        _print_lines(printer, self.to_text())

    def __repr__(self) -> str:
        return self.to_text()


def _placed_sub_run(store: Any, sub: dict[str, Any]) -> dict[str, Any]:
    """A stored sub-run with the span it hangs under (the parent of its root span)."""
    root = next((s for s in store.get_spans(sub["run_id"]) if s["span_id"] == sub["root_span_id"]), None)
    return {**sub, "parent_span_id": root["parent_span_id"] if root else None}


def _summary_from_spans(run_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """What the stored spans of a run whose root is not stored yet say about it."""
    starts = [s["start_ns"] for s in spans if s.get("start_ns") is not None]
    return {"run_id": run_id, "status": "running", "start_ns": min(starts, default=None)}


def _preview(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= _RESULT_PREVIEW else text[: _RESULT_PREVIEW - 1] + "…"


def _print_lines(printer: Any, text: str) -> None:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if index:
            printer.break_()
        printer.text(line)


# -- the hooks Run and wrap_agent's pair call --------------------------------------------------
def run_html(run: spans_mod.Run, result: Any = _NO_RESULT) -> str | None:
    """``Run._repr_html_``: the waterfall, or ``None`` (IPython then shows the text) on an SDK failure."""
    try:
        return RunView.from_run(run).to_html(result)
    except Exception:
        internal_error("run display")
        return None


def run_pretty(run: spans_mod.Run, printer: Any, cycle: bool, prefix: str | None = None) -> None:
    """``Run._repr_pretty_``: the text tree (IPython's text/plain)."""
    text = repr(run)
    if not cycle:
        try:
            text = RunView.from_run(run).to_text()
        except Exception:
            internal_error("run display")
    _print_lines(printer, text if prefix is None else f"{prefix}\n{text}")


class RunResult(tuple):  # type: ignore[type-arg]
    """``(result, run_id)`` as ``wrap_agent`` returns it; as a notebook cell's value it shows the run.

    Unpacks, indexes, compares and hashes as the plain tuple; copies and pickles as one.
    """

    run: spans_mod.Run

    def __new__(cls, result: Any, run: spans_mod.Run) -> RunResult:
        self = super().__new__(cls, (result, run.run_id))
        self.run = run
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (tuple(self),))

    def _repr_html_(self) -> str | None:
        return run_html(self.run, self[0])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        run_pretty(self.run, printer, cycle, prefix=tuple.__repr__(self))


def _find_in_memory(run_id: str) -> spans_mod.Run | None:

    runtime = runtime_mod.current()
    candidates = list(spans_mod.RECENT_RUNS)
    if runtime is not None and runtime.last_run is not None:
        candidates.append(runtime.last_run)
    for run in candidates:
        if run.run_id == run_id:
            return run
    if len(run_id) >= 6:
        found = {run.run_id: run for run in candidates if run.run_id.startswith(run_id)}
        if len(found) == 1:
            return next(iter(found.values()))
    return None


def show(run_id: str, *, store: str | os.PathLike[str] | None = None) -> RunView:
    """Any run, as a waterfall in Jupyter (a text tree elsewhere): put it last in a cell.

    A run this process finished recently renders from memory at once, whatever the exporter is
    doing; any other run is read from the local store (the configured one, or ``store``).
    ``run_id`` may be a unique prefix of at least 6 characters.

    Example:
        >>> import trodo_trace as trodo
        >>> result, run_id = trodo.wrap_agent("triage", lambda run: "done")
        >>> trodo.show(run_id).name
        'triage'
        >>> print(trodo.show(run_id[:8]))  # doctest: +ELLIPSIS
        Run ...  triage  [OK]
        ...
        [run] triage  ...

    Raises:
        TypeError: ``run_id`` is not a string.
        ValueError: ``run_id`` is empty, unknown or ambiguous, or there is no store file.
    """
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a string, got {type(run_id).__name__}")
    if not run_id:
        raise ValueError("run_id must not be empty")
    if store is None:
        run = _find_in_memory(run_id)
        if run is not None:
            with run._lock:
                spans = run._spans
                complete = spans is not None and len(spans) == run.span_count
            if complete:
                return RunView.from_run(run)
            try:
                return RunView.from_store(run.run_id)
            except (ValueError, OSError, sqlite3.Error):
                return RunView.from_run(run)
    return RunView.from_store(run_id, store)


# A run renders itself through these (``Run._repr_html_`` / ``Run._repr_pretty_``).
spans_mod.RUN_RENDERERS.update(html=run_html, pretty=run_pretty)

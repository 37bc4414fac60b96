"""Turning finished spans and events into rows, and writing a batch of them in one transaction.

A :class:`Batch` is plain data (tuples of text and numbers), so a batch the writer cannot take yet
can wait in the disk spool as JSON and be written later exactly as it would have been now.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ..core.spans import TrodoSpan
from ..core.values import dumps, encodable, to_plain
from ..export.convert import clean_attributes

SPAN_COLUMNS = tuple(
    "trace_id span_id parent_span_id run_id name kind start_ns end_ns status status_message"
    " error_type attributes events resource_id joined".split()
)
#: Where a span row (:class:`Batch`) holds its resource's JSON text; the table holds its id.
RESOURCE = SPAN_COLUMNS.index("resource_id")
RUN_COLUMNS = tuple(
    "run_id trace_id root_span_id name kind distinct_id conversation_id parent_run_id status"
    " error_summary start_ns end_ns duration_ms tokens_in tokens_out cost span_count tool_count"
    " error_count metadata service_name cost_incomplete".split()
)
EVENT_COLUMNS = tuple("dedup_key ts_ns name distinct_id category run_id trace_id span_id properties".split())


def _insert_sql(verb: str, table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({marks})"


def _insert_span_sql(resource: str) -> str:
    """``INSERT`` of a span row whose resource parameter is bound through ``resource`` (one ``?``)."""
    marks = ["?"] * len(SPAN_COLUMNS)
    marks[RESOURCE] = resource
    return f"INSERT OR REPLACE INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES ({', '.join(marks)})"


# Rows sharing one resource (the usual batch) carry its id; a mixed batch looks each one up by text.
INSERT_SPAN = _insert_span_sql("?")
INSERT_SPAN_MIXED = _insert_span_sql("(SELECT id FROM resources WHERE attributes = ?)")
UPSERT_RUN = _insert_sql("INSERT OR REPLACE", "runs", RUN_COLUMNS)
# A run root without rollups only fills a gap; it never overwrites a full row.
INSERT_RUN_FALLBACK = _insert_sql("INSERT OR IGNORE", "runs", RUN_COLUMNS)
INSERT_EVENT = _insert_sql("INSERT OR IGNORE", "events", EVENT_COLUMNS)

JOINED = "trodo.run.joined"


def _dumps_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# One encoder for every row: ``json.dumps`` with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_dumps_default).encode
# The C encoder behind it, called directly for span attributes (the per-call set-up of
# ``JSONEncoder.encode`` is a fifth of the cost); attributes are flat, so no circularity check.
_encode_attributes: Callable[[dict[str, Any]], str] = _encode
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_c_basestring = getattr(json.encoder, "c_encode_basestring", None)
if _c_make_encoder is not None and _c_basestring is not None:
    _c_encode = _c_make_encoder(None, _dumps_default, _c_basestring, None, ":", ",", False, False, True)

    def _encode_c(attrs: dict[str, Any]) -> str:
        return "".join(_c_encode(attrs, 0))

    _encode_attributes = _encode_c


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def number(value: Any, cast: Callable[[Any], Any]) -> Any:
    """``cast(value)``, or None for missing, boolean or non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return cast(value)
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return value if type(value) is str else str(value)


_resource_cache: dict[int, tuple[Any, str]] = {}


def _resource_json(resource: Any) -> str:
    """The resource's JSON text, computed once per resource object (every span of a process shares one)."""
    if resource is None:
        return "{}"
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    text = dumps(to_plain(dict(resource.attributes), leaves=False))
    if len(_resource_cache) > 64:
        _resource_cache.clear()
    _resource_cache[id(resource)] = (resource, text)
    return text


def _events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [
        {
            "name": event.name,
            "timestamp": event.timestamp,
            "attributes": to_plain(dict(event.attributes or {}), leaves=False),
        }
        for event in span.events
    ]


_OK, _ERROR = StatusCode.OK, StatusCode.ERROR


def _exception_type(events: list[dict[str, Any]]) -> Any:
    for event in events:
        if event["name"] == "exception" and event["attributes"].get("exception.type"):
            return event["attributes"]["exception.type"]
    return None


def _row(
    trace_id: int,
    span_id: int,
    parent_id: int | None,
    name: str,
    start: int | None,
    end: int | None,
    code: StatusCode,
    message: str | None,
    attrs: dict[str, Any],
    events: list[dict[str, Any]] | None,
    resource_text: str,
) -> tuple[Any, ...]:
    """The ``spans`` row; every span of a batch passes here, so each attribute is looked up once
    and the common types take no function call."""
    get = attrs.get
    status_name = "ok" if code is _OK else "error" if code is _ERROR else "unset"
    error_type = get("error.type")
    if error_type is None and status_name == "error" and events:
        error_type = _exception_type(events)
    try:
        attributes_text = _encode_attributes(attrs)
    except (TypeError, ValueError):
        attributes_text = dumps(to_plain(attrs, leaves=False))
    run_id = get("trodo.run.id")
    kind = get("trodo.span.kind")
    return (
        f"{trace_id:032x}",
        f"{span_id:016x}",
        f"{parent_id:016x}" if parent_id is not None else None,
        run_id if run_id is None or type(run_id) is str else str(run_id),
        name,
        kind if kind is None or type(kind) is str else str(kind),
        start,
        end,
        status_name,
        message,
        error_type if error_type is None or type(error_type) is str else str(error_type),
        attributes_text,
        dumps(events) if events else "[]",
        resource_text,
        1 if get(JOINED) is True else None,
    )


def span_row(span: ReadableSpan, attrs: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """The ``spans`` row of an SDK span (``attrs``: its attributes as a dict, when the caller has them)."""
    if attrs is None:
        attrs = dict(span.attributes or {})
    status = span.status
    context = span.context
    parent = span.parent
    return _row(
        context.trace_id,
        context.span_id,
        parent.span_id if parent is not None else None,
        span.name,
        span.start_time,
        span.end_time,
        status.status_code,
        status.description,
        attrs,
        _events(span) if span.events else None,
        _resource_json(span.resource),
    )


def light_span_row(span: TrodoSpan, resource_text: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The valid attributes and the ``spans`` row of one of our own finished spans, the row equal to
    that of its SDK span (:func:`..export.convert.to_readable`), without building the SDK span."""
    attrs = clean_attributes(span.attributes)
    events = None
    if span.events:
        events = [
            {
                "name": name if type(name) is str and name.isascii() else encodable(str(name)),
                "timestamp": timestamp,
                "attributes": to_plain(clean_attributes(attributes), leaves=False),
            }
            for name, timestamp, attributes in span.events
        ]
    code = span.status_code
    message = span.status_message
    message = (message and encodable(message)) if code is _ERROR else None
    name = span.name
    return attrs, _row(
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        name if type(name) is str and name.isascii() else encodable(str(name)),
        span.start_ns,
        span.end_ns,
        code,
        message,
        attrs,
        events,
        resource_text,
    )


def _int(value: Any) -> int | None:
    return value if type(value) is int else number(value, int)


def _float(value: Any) -> float | None:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    return float(value) if kind is int else number(value, float)


def run_row(row: tuple[Any, ...], attrs: Mapping[str, Any], service_name: Any) -> tuple[Any, ...]:
    """The ``runs`` row a run's root span summarises, from that span's ``spans`` row and attributes."""
    get = attrs.get
    status = get("trodo.run.status") or ("error" if row[8] == "error" else "ok")
    start, end = row[6], row[7]
    duration = _float(get("trodo.run.duration_ms"))
    if duration is None and start is not None and end is not None:
        duration = (end - start) / 1e6
    metadata = get("trodo.metadata")
    if metadata is not None and not isinstance(metadata, str):
        metadata = dumps(to_plain(metadata, leaves=False))
    return (
        row[3],
        row[0],
        row[1],
        _str_or_none(get("trodo.agent.name")) or row[4],
        row[5],
        _str_or_none(get("trodo.distinct_id")),
        _str_or_none(get("trodo.conversation_id")),
        _str_or_none(get("trodo.parent_run_id")),
        _str_or_none(status),
        _str_or_none(get("trodo.run.error_summary")),
        start,
        end,
        duration,
        _int(get("trodo.run.total_tokens_in")),
        _int(get("trodo.run.total_tokens_out")),
        _float(get("trodo.run.total_cost")),
        _int(get("trodo.run.span_count")),
        _int(get("trodo.run.tool_count")),
        _int(get("trodo.run.error_count")),
        metadata,
        _str_or_none(service_name),
        1 if get("trodo.run.cost_incomplete") is True else None,
    )


@dataclass
class Batch:
    """Rows of a batch of finished spans, ready for one transaction."""

    spans: list[tuple[Any, ...]] = field(default_factory=list)
    runs: list[tuple[Any, ...]] = field(default_factory=list)
    fallback_runs: list[tuple[Any, ...]] = field(default_factory=list)
    #: Runs that received spans recorded in another process (their rollups are recomputed).
    joined_runs: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.spans)

    def to_json(self) -> bytes:
        data = [self.spans, self.runs, self.fallback_runs, sorted(self.joined_runs)]
        return _encode(data).encode("utf-8")

    @classmethod
    def from_json(cls, body: bytes) -> Batch:
        spans, runs, fallback, joined = json.loads(body)
        return cls(
            [tuple(r) for r in spans], [tuple(r) for r in runs], [tuple(r) for r in fallback], set(joined)
        )


def prepare(spans: Sequence[Any], resource: Any = None) -> Batch:
    """The rows of ``spans`` (and of the runs their roots summarise): SDK ``ReadableSpan`` objects,
    or our own finished spans as they are (then ``resource`` is the process's resource)."""
    batch = Batch()
    span_rows, runs, fallback, joined = batch.spans, batch.runs, batch.fallback_runs, batch.joined_runs
    add_span = span_rows.append
    light_resource = _resource_json(resource)
    light_service = resource.attributes.get("service.name") if resource is not None else None
    for span in spans:
        light = type(span) is TrodoSpan
        if light:
            attrs, row = light_span_row(span, light_resource)
        else:
            attrs = dict(span.attributes or {})
            row = span_row(span, attrs)
        add_span(row)
        if "trodo.run.id" not in attrs:
            continue
        full = "trodo.run.span_count" in attrs
        if full or row[2] is None or row[5] == "run":
            if light:
                service = light_service
            else:
                service = span.resource.attributes.get("service.name") if span.resource is not None else None
            (runs if full else fallback).append(run_row(row, attrs, service))
        if row[-1] == 1:
            joined.add(str(attrs["trodo.run.id"]))
    return batch


_IN, _OUT, _COST = (
    f"json_extract(attributes, '$.\"{key}\"')"
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "trodo.llm.cost")
)
_JOINED_TOTALS = (
    f"SELECT COUNT(*), SUM(kind = 'tool'), SUM(status = 'error'), SUM({_IN}), SUM({_OUT}), SUM({_COST}),"
    f" SUM(({_IN} IS NOT NULL OR {_OUT} IS NOT NULL) AND {_COST} IS NULL) FROM spans"
    " WHERE run_id = ? AND joined = 1"
)
_ROOT_ATTRIBUTES = (
    "SELECT s.attributes FROM runs r JOIN spans s ON s.run_id = r.run_id AND s.span_id = r.root_span_id"
    " AND s.trace_id = r.trace_id WHERE r.run_id = ? AND r.span_count IS NOT NULL"
)


_ANY_JOINED = "SELECT 1 FROM spans WHERE joined = 1 LIMIT 1"


def _add_joined_spans(conn: Any, run_id: str) -> None:
    """Set a run's rollups to its root's (the root's process) plus its spans marked ``trodo.run.joined``
    (other processes or services); recomputed from stored rows, so arrival order and re-exports don't matter."""
    root = conn.execute(_ROOT_ATTRIBUTES, (run_id,)).fetchone()
    totals = conn.execute(_JOINED_TOTALS, (run_id,)).fetchone() if root is not None else None
    if totals is None or not totals[0]:
        return  # no full root yet (its arrival recomputes), or nothing joined
    base = loads(root[0], {})
    base = base if isinstance(base, Mapping) else {}
    sums = [
        (number(base.get(f"trodo.run.{key}"), int) or 0) + int(extra or 0)
        for key, extra in zip(
            ("span_count", "tool_count", "error_count", "total_tokens_in", "total_tokens_out"),
            totals[:5],
            strict=True,
        )
    ]
    cost = (number(base.get("trodo.run.total_cost"), float) or 0.0) + (totals[5] or 0.0)
    incomplete = bool(base.get("trodo.run.cost_incomplete")) or bool(totals[6])
    conn.execute(
        "UPDATE runs SET span_count = ?, tool_count = ?, error_count = ?, tokens_in = ?, tokens_out = ?,"
        " cost = ?, cost_incomplete = ? WHERE run_id = ?",
        (*sums, round(cost, 10) if cost or not incomplete else None, 1 if incomplete else None, run_id),
    )


def _resource_id(conn: Any, text: str) -> int:
    """The id of this resource text, added if new (inside the caller's transaction)."""
    conn.execute("INSERT OR IGNORE INTO resources (attributes) VALUES (?)", (text,))
    return int(conn.execute("SELECT id FROM resources WHERE attributes = ?", (text,)).fetchone()[0])


def write(conn: Any, batch: Batch) -> None:
    """Write ``batch`` inside the caller's transaction."""
    rows = batch.spans
    texts = {row[RESOURCE] for row in rows}
    if len(texts) == 1 and (text := texts.pop()):
        rid = _resource_id(conn, text)
        conn.executemany(INSERT_SPAN, [(*row[:RESOURCE], rid, *row[RESOURCE + 1 :]) for row in rows])
    elif rows:
        rows = [row if row[RESOURCE] else (*row[:RESOURCE], "{}", *row[RESOURCE + 1 :]) for row in rows]
        for text in {row[RESOURCE] for row in rows}:
            _resource_id(conn, text)
        conn.executemany(INSERT_SPAN_MIXED, rows)
    if batch.fallback_runs:
        conn.executemany(INSERT_RUN_FALLBACK, batch.fallback_runs)
    if batch.runs:
        conn.executemany(UPSERT_RUN, batch.runs)
    rollups = set(batch.joined_runs)
    if batch.runs and conn.execute(_ANY_JOINED).fetchone() is not None:
        # A full root arriving after spans joined from elsewhere: only those runs need recomputing
        # (a store that never took a joined span, the common case, skips the lookup).
        ids = sorted({str(row[0]) for row in batch.runs} - rollups)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found = conn.execute(
                f"SELECT DISTINCT run_id FROM spans WHERE joined = 1 AND run_id IN ({marks})", chunk
            ).fetchall()
            rollups.update(str(row[0]) for row in found)
    for run_id in sorted(rollups):
        _add_joined_spans(conn, run_id)


def event_values(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    values = []
    for row in rows:
        props = row.get("properties")
        if props is not None and not isinstance(props, str):
            props = dumps(to_plain(props, leaves=False))
        values.append(tuple(props if col == "properties" else row.get(col) for col in EVENT_COLUMNS))
    return values

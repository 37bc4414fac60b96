"""The dashboard's reads: SQL over the local store's ``runs``, ``spans``, ``events`` and ``feedback`` tables.

Every query runs on a connection opened read-only (``mode=ro``), one per request. List queries
are built from a fixed set of filters and sort columns (never from request text), walk the
``runs_start_ns`` / ``runs_distinct_id`` / ``runs_conversation_id`` / ``runs_parent_run_id`` /
``spans_run_id`` / ``events_ts_ns`` indexes the store already has, and stop at a page; nothing
scans the store when the server starts.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .._internal.store import feedback as feedback_store
from .._internal.store.local import SCHEMA_VERSION, LocalStore, StoreUnavailable
from .._internal.store.queries import ROOT_OF_RUN, SPANS

PAGE_SIZE = 50
#: Sort keys of the runs list and the SQL each orders by (descending unless ``asc``).
SORTS = {
    "started": "r.start_ns",
    "name": "r.name",
    "status": "r.status",
    "user": "r.distinct_id",
    "conversation": "r.conversation_id",
    "duration": "r.duration_ms",
    "tokens": "(COALESCE(r.tokens_in, 0) + COALESCE(r.tokens_out, 0))",
    "cost": "r.cost",
    "spans": "r.span_count",
}
_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to the store file (``ValueError`` if it is missing)."""
    if not os.path.isfile(path):
        raise ValueError(f"no local store at {path}")
    conn = _connect_ro(path)
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
        # A store written by an earlier release: migrated once, as the CLI and the SDK do.
        conn.close()
        store = LocalStore(path, create=False)
        try:
            store.open()
        except StoreUnavailable as exc:
            raise ValueError(str(exc)) from None
        finally:
            store.close()
        conn = _connect_ro(path)
    return conn


def _connect_ro(path: str | os.PathLike[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{feedback_store.pathlib_uri(path)}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA query_only = ON")
    return conn


def _loads(text: Any, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _float(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _time_ns(text: str | None) -> int | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` (UTC) as nanoseconds, or None."""
    if not text:
        return None
    from datetime import datetime, timezone

    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(text.strip(), fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        return int(moment.timestamp() * 1e9)
    return None


@dataclass
class RunFilters:
    """The runs list's filters, sort and page, as read from (and written back to) the URL."""

    name: str = ""
    user: str = ""
    conversation: str = ""
    status: str = ""
    model: str = ""
    q: str = ""
    since: str = ""
    until: str = ""
    min_cost: str = ""
    min_duration: str = ""
    sort: str = "started"
    order: str = "desc"
    page: int = 1
    errors: list[str] = field(default_factory=list)

    FIELDS = "name user conversation status model q since until min_cost min_duration sort order".split()

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> RunFilters:
        filters = cls()
        for key in cls.FIELDS:
            setattr(filters, key, str(params.get(key, "") or "").strip()[:500])
        if filters.sort not in SORTS:
            filters.sort = "started"
        if filters.order not in ("asc", "desc"):
            filters.order = "desc"
        if filters.status not in ("", "ok", "error"):
            filters.errors.append("status must be ok or error")
            filters.status = ""
        for key in ("since", "until"):
            if getattr(filters, key) and _time_ns(getattr(filters, key)) is None:
                filters.errors.append(f"{key} must look like 2026-01-31 or 2026-01-31T14:05 (UTC)")
        for key in ("min_cost", "min_duration"):
            if getattr(filters, key) and _float(getattr(filters, key)) is None:
                filters.errors.append(f"{key.replace('_', ' ')} must be a number")
        try:
            filters.page = max(1, min(int(params.get("page", "1") or 1), 100_000))
        except ValueError:
            filters.page = 1
        return filters

    def active(self) -> bool:
        return any(getattr(self, key) for key in self.FIELDS if key not in ("sort", "order"))

    def query_string(self, **changes: Any) -> str:
        """The URL query of these filters with ``changes`` applied (empty values left out)."""
        values = {key: getattr(self, key) for key in self.FIELDS}
        values["page"] = self.page
        values.update(changes)
        if values.get("sort") == "started" and values.get("order") == "desc":
            values.pop("sort"), values.pop("order")
        if values.get("page") == 1:
            values.pop("page")
        return "&".join(f"{key}={quote(str(value), safe='')}" for key, value in values.items() if value)

    def where(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for key, column in (
            ("name", "r.name"),
            ("user", "r.distinct_id"),
            ("conversation", "r.conversation_id"),
            ("status", "r.status"),
        ):
            value = getattr(self, key)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        since, until = _time_ns(self.since), _time_ns(self.until)
        if since is not None:
            clauses.append("r.start_ns >= ?")
            params.append(since)
        if until is not None:
            clauses.append("r.start_ns < ?")
            params.append(until)
        min_cost, min_duration = _float(self.min_cost), _float(self.min_duration)
        if min_cost is not None:
            clauses.append("r.cost >= ?")
            params.append(min_cost)
        if min_duration is not None:
            clauses.append("r.duration_ms >= ?")
            params.append(min_duration)
        if self.model:
            # A LIKE on the raw JSON first: json_extract runs only on spans that mention the model.
            keys = " OR ".join(f"json_extract(s.attributes, '$.\"{key}\"') = ?" for key in _MODEL_KEYS)
            clauses.append(
                "EXISTS (SELECT 1 FROM spans s WHERE s.run_id = r.run_id"
                f" AND s.attributes LIKE ? ESCAPE '\\' AND ({keys}))"
            )
            params.extend([_like(self.model), *[self.model] * len(_MODEL_KEYS)])
        if self.q:
            clauses.append(
                f"EXISTS (SELECT 1 FROM spans s WHERE {ROOT_OF_RUN}"
                " AND s.attributes LIKE ? ESCAPE '\\'"
                " AND (COALESCE(json_extract(s.attributes, '$.\"input.value\"'), '') || ' ' ||"
                " COALESCE(json_extract(s.attributes, '$.\"output.value\"'), '')) LIKE ? ESCAPE '\\')"
            )
            params.extend([_like(self.q), _like(self.q)])
        return clauses, params


#: Longest a runs-list query may take: a text or model filter that few runs match reads every span.
QUERY_BUDGET_S = 5.0


class QueryTooSlow(Exception):
    """A list query ran out of its time budget (see :data:`QUERY_BUDGET_S`)."""


def list_runs(conn: sqlite3.Connection, filters: RunFilters) -> tuple[list[dict[str, Any]], bool]:
    """One page of runs and whether there is a next page (:class:`QueryTooSlow` past the budget)."""
    deadline = time.monotonic() + QUERY_BUDGET_S
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        return _list_runs(conn, filters)
    except sqlite3.OperationalError as exc:
        if "interrupt" in str(exc):
            raise QueryTooSlow(
                f"the filter read the store for over {QUERY_BUDGET_S:.0f} s without filling a page;"
                " narrow it with a time range, an agent or a user"
            ) from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _list_runs(conn: sqlite3.Connection, filters: RunFilters) -> tuple[list[dict[str, Any]], bool]:
    clauses, params = filters.where()
    sql = "SELECT r.* FROM runs r"
    if (filters.min_cost or filters.min_duration) and not (filters.user or filters.conversation):
        # A threshold on an unindexed column: one pass over the table and a top-N sort beats
        # walking the start_ns index through every row when few runs pass.
        sql += " NOT INDEXED"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    direction = "ASC" if filters.order == "asc" else "DESC"
    column = SORTS[filters.sort]
    if filters.sort == "started":  # the start_ns index gives this order without sorting
        sql += f" ORDER BY r.start_ns {direction}, r.run_id {direction}"
    else:
        sql += f" ORDER BY {column} IS NULL, {column} {direction}, r.start_ns DESC, r.run_id DESC"
    sql += " LIMIT ? OFFSET ?"
    params += [PAGE_SIZE + 1, (filters.page - 1) * PAGE_SIZE]
    rows = [dict(row) for row in conn.execute(sql, params).fetchall()]
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    decorate_runs(conn, rows)
    return rows, more


def runs_since(conn: sqlite3.Connection, filters: RunFilters, after_ns: int) -> list[dict[str, Any]]:
    """Runs started after ``after_ns`` that match the filters, newest first (for live updates)."""
    clauses, params = filters.where()
    clauses.append("r.start_ns > ?")
    params.append(after_ns)
    sql = f"SELECT r.* FROM runs r WHERE {' AND '.join(clauses)} ORDER BY r.start_ns DESC LIMIT ?"
    rows = [dict(row) for row in conn.execute(sql, [*params, PAGE_SIZE]).fetchall()]
    decorate_runs(conn, rows)
    return rows


def decorate_runs(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """Add ``turns`` (runs of its conversation), ``cost_incomplete`` and ``feedback`` (count) to each row."""
    has_feedback = feedback_store.has_table(conn)
    turns: dict[str, int] = {}
    for row in rows:
        conversation = row.get("conversation_id")
        if conversation and conversation not in turns:
            turns[conversation] = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE conversation_id = ? AND parent_run_id IS NULL",
                (conversation,),
            ).fetchone()[0]
        row["turns"] = turns.get(conversation or "", 0)
        root = conn.execute(
            "SELECT json_extract(attributes, '$.\"trodo.run.cost_incomplete\"') FROM spans"
            " WHERE run_id = ? AND span_id = ? AND trace_id = ?",
            (row.get("run_id"), row.get("root_span_id"), row.get("trace_id")),
        ).fetchone()
        row["cost_incomplete"] = bool(root and root[0])
        row["feedback"] = (
            conn.execute("SELECT COUNT(*) FROM feedback WHERE run_id = ?", (row["run_id"],)).fetchone()[0]
            if has_feedback
            else 0
        )


def newest_start(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(start_ns) FROM runs").fetchone()
    return int(row[0] or 0)


def distinct_names(conn: sqlite3.Connection, limit: int = 200) -> list[str]:
    """Agent names for the filter's suggestions, from the newest runs (a bounded read)."""
    rows = conn.execute(
        "SELECT DISTINCT name FROM (SELECT name FROM runs ORDER BY start_ns DESC LIMIT 5000)"
        " WHERE name IS NOT NULL ORDER BY name LIMIT ?",
        (limit,),
    ).fetchall()
    return [row[0] for row in rows]


# -- one run ------------------------------------------------------------------------------------
def span_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data.pop("resource_id", None)
    data["attributes"] = _loads(data.get("attributes"), {})
    data["events"] = _loads(data.get("events"), [])
    data["resource"] = _loads(data.get("resource"), {})
    start, end = data.get("start_ns"), data.get("end_ns")
    data["duration_ms"] = (end - start) / 1e6 if start is not None and end is not None else None
    return data


def get_run(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    run = dict(row)
    run["metadata"] = _loads(run.get("metadata"))
    decorate_runs(conn, [run])
    return run


def get_spans(conn: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT * FROM {SPANS} WHERE run_id = ? ORDER BY start_ns, span_id", (run_id,))
    return [span_dict(row) for row in rows.fetchall()]


def get_span(conn: sqlite3.Connection, run_id: str, span_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT * FROM {SPANS} WHERE run_id = ? AND span_id = ?", (run_id, span_id)
    ).fetchone()
    return span_dict(row) if row is not None else None


def sub_runs(conn: sqlite3.Connection, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Sub-runs of a run, oldest first, each with the span it hangs under (``parent_span_id``)."""
    sql = (
        "SELECT r.*, s.parent_span_id AS parent_span_id FROM runs r {hint} LEFT JOIN spans s"
        f" ON {ROOT_OF_RUN}"
        " WHERE r.parent_run_id = ? ORDER BY r.start_ns, r.run_id LIMIT ?"
    )
    try:
        # Most runs have no parent: statistics then call this index useless, but it is the fast path.
        rows = conn.execute(sql.format(hint="INDEXED BY runs_parent_run_id"), (run_id, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such index" not in str(exc):
            raise
        rows = conn.execute(sql.format(hint=""), (run_id, limit)).fetchall()
    return [dict(row) for row in rows]


def run_events(conn: sqlite3.Connection, run: Mapping[str, Any], limit: int = 500) -> list[dict[str, Any]]:
    """Events stamped with the run (tracked while it ran, up to a minute after), plus its feedback."""
    start = run.get("start_ns") or 0
    end = run.get("end_ns") or start
    rows = conn.execute(
        "SELECT * FROM events WHERE ts_ns BETWEEN ? AND ? AND run_id = ? ORDER BY ts_ns, id LIMIT ?",
        (start - 1_000_000_000, end + 60_000_000_000, run["run_id"], limit),
    ).fetchall()
    events = [event_dict(row) for row in rows if row["name"] != feedback_store.EVENT_NAME]
    for item in feedback_store.for_run(conn, str(run["run_id"])):
        events.append(
            {
                "name": feedback_store.EVENT_NAME,
                "category": "feedback",
                "ts_ns": item["ts_ns"],
                "distinct_id": item["distinct_id"],
                "run_id": item["run_id"],
                "properties": {
                    k: item[k]
                    for k in ("name", "score", "label", "comment", "span_id")
                    if item[k] is not None
                },
                "feedback": item,
            }
        )
    events.sort(key=lambda event: event.get("ts_ns") or 0)
    return events


def event_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    props = _loads(data.get("properties"), {})
    data["properties"] = props if isinstance(props, dict) else {"value": props}
    return data


# -- conversations, users, events ---------------------------------------------------------------
def conversation_runs(
    conn: sqlite3.Connection, conversation_id: str, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM runs WHERE conversation_id = ? ORDER BY start_ns + 0, run_id LIMIT ?",
        (conversation_id, limit),
    ).fetchall()
    return [dict(row) for row in rows]


def user_timeline(conn: sqlite3.Connection, distinct_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """A user's runs and events interleaved, newest first (``type``: ``run`` or ``event``)."""
    runs = conn.execute(
        "SELECT * FROM runs WHERE distinct_id = ? ORDER BY start_ns + 0 DESC LIMIT ?", (distinct_id, limit)
    ).fetchall()
    events = conn.execute(
        "SELECT * FROM events WHERE distinct_id = ? ORDER BY ts_ns DESC, id DESC LIMIT ?",
        (distinct_id, limit),
    ).fetchall()
    items = [{"type": "run", "ts_ns": row["start_ns"] or 0, **dict(row)} for row in runs]
    items += [{"type": "event", **event_dict(row)} for row in events]
    for item in items:
        item["ts_ns"] = item.get("ts_ns") or 0
    items.sort(key=lambda item: item["ts_ns"], reverse=True)
    return items[:limit]


@dataclass
class EventFilters:
    name: str = ""
    category: str = ""
    user: str = ""
    run: str = ""
    page: int = 1

    FIELDS = ("name", "category", "user", "run")

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> EventFilters:
        filters = cls()
        for key in cls.FIELDS:
            setattr(filters, key, str(params.get(key, "") or "").strip()[:500])
        try:
            filters.page = max(1, min(int(params.get("page", "1") or 1), 100_000))
        except ValueError:
            filters.page = 1
        return filters

    def query_string(self, **changes: Any) -> str:
        values: dict[str, Any] = {key: getattr(self, key) for key in self.FIELDS}
        values["page"] = self.page if self.page != 1 else ""
        values.update(changes)
        return "&".join(f"{key}={quote(str(value), safe='')}" for key, value in values.items() if value)


def list_events(conn: sqlite3.Connection, filters: EventFilters) -> tuple[list[dict[str, Any]], bool]:
    clauses, params = [], []
    for key, column in (
        ("name", "name"),
        ("category", "category"),
        ("user", "distinct_id"),
        ("run", "run_id"),
    ):
        value = getattr(filters, key)
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT * FROM events"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY ts_ns DESC, id DESC LIMIT ? OFFSET ?"
    rows = conn.execute(sql, [*params, PAGE_SIZE + 1, (filters.page - 1) * PAGE_SIZE]).fetchall()
    return [event_dict(row) for row in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


# -- overview -----------------------------------------------------------------------------------
def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def overview(conn: sqlite3.Connection, days: int = 14, now_ns: int | None = None) -> dict[str, Any]:
    """Per-day and per-agent figures over the last ``days`` days, and the costliest / slowest runs."""
    now_ns = now_ns if now_ns is not None else time.time_ns()
    newest = newest_start(conn)
    if newest and newest < now_ns - days * 86_400 * 10**9:
        now_ns = newest  # an old store: show its last active days rather than empty charts
    day_ns = 86_400 * 10**9
    first_day = (now_ns // day_ns - days + 1) * day_ns
    rows = conn.execute(
        "SELECT start_ns, name, status, duration_ms, tokens_in, tokens_out, cost FROM runs"
        " WHERE start_ns >= ? ORDER BY start_ns",
        (first_day,),
    ).fetchall()
    by_day: dict[int, dict[str, Any]] = {
        first_day + i * day_ns: {"runs": 0, "errors": 0, "durations": [], "tokens": 0, "cost": 0.0}
        for i in range(days)
    }
    by_agent: dict[str, dict[str, Any]] = {}
    for row in rows:
        day = by_day.get((row["start_ns"] // day_ns) * day_ns)
        agent = by_agent.setdefault(
            row["name"] or "?", {"runs": 0, "errors": 0, "durations": [], "tokens": 0, "cost": 0.0}
        )
        for bucket in (day, agent):
            if bucket is None:
                continue
            bucket["runs"] += 1
            bucket["errors"] += row["status"] == "error"
            if row["duration_ms"] is not None:
                bucket["durations"].append(row["duration_ms"])
            bucket["tokens"] += (row["tokens_in"] or 0) + (row["tokens_out"] or 0)
            bucket["cost"] += row["cost"] or 0.0
    for bucket in [*by_day.values(), *by_agent.values()]:
        durations = bucket.pop("durations")
        bucket["p50"] = _percentile(durations, 0.5)
        bucket["p95"] = _percentile(durations, 0.95)
        bucket["error_rate"] = bucket["errors"] / bucket["runs"] if bucket["runs"] else 0.0
    top = " FROM runs WHERE start_ns >= ? AND {0} IS NOT NULL ORDER BY {0} DESC LIMIT 10"
    costly = [dict(r) for r in conn.execute("SELECT *" + top.format("cost"), (first_day,)).fetchall()]
    slowest = [dict(r) for r in conn.execute("SELECT *" + top.format("duration_ms"), (first_day,)).fetchall()]
    return {
        "days": sorted(by_day.items()),
        "agents": sorted(by_agent.items(), key=lambda item: -item[1]["runs"])[:20],
        "costly": costly,
        "slowest": slowest,
        "total": len(rows),
    }

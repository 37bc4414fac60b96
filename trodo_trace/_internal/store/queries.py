"""Reading the store: runs with filters, a run's spans and sub-runs, conversations, events.

:class:`Queries` is mixed into :class:`~.local.LocalStore`, which supplies ``_query``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .writer import loads

#: The shortest run id prefix ``show`` and the other commands accept.
MIN_PREFIX = 6

#: A run's root span (``s``) of the run ``r``, found through the ``spans_run_id`` index.
ROOT_OF_RUN = "s.run_id = r.run_id AND s.span_id = r.root_span_id AND s.trace_id = r.trace_id"

#: Runs with ``closed_early``: the root span says a generator's caller stopped it before the end.
RUNS = (
    "(SELECT r.*, (SELECT json_extract(s.attributes, '$.\"trodo.generator.closed_early\"') FROM spans s"
    f" WHERE {ROOT_OF_RUN}) AS closed_early FROM runs r)"
)

#: Spans with their resource's text (stored once in ``resources``).
SPANS = (
    "(SELECT s.*, res.attributes AS resource FROM spans s LEFT JOIN resources res ON res.id = s.resource_id)"
)

_MODEL_KEYS = ("gen_ai.request.model", "gen_ai.response.model", "llm.model_name")


def run_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["metadata"] = loads(data.get("metadata"))
    for flag in ("cost_incomplete", "closed_early"):
        if flag in data:
            data[flag] = bool(data[flag])
    return data


def span_dict(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data.pop("joined", None)
    data.pop("resource_id", None)
    data["attributes"] = loads(data.get("attributes"), {})
    data["events"] = loads(data.get("events"), [])
    data["resource"] = loads(data.get("resource"), {})
    start, end = data.get("start_ns"), data.get("end_ns")
    data["duration_ms"] = (end - start) / 1e6 if start is not None and end is not None else None
    return data


def event_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "properties": loads(row["properties"], {})}


class Queries:
    """Read methods of the store."""

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:  # pragma: no cover
        raise NotImplementedError

    def _select(
        self, table: str, filters: Mapping[str, Any], order: str, limit: int | None = None
    ) -> list[sqlite3.Row]:
        """``SELECT *`` with equality filters (None means no filter), ordering and limit."""
        used = {column: value for column, value in filters.items() if value is not None}
        sql = f"SELECT * FROM {RUNS if table == 'runs' else SPANS if table == 'spans' else table}"
        if used:
            sql += " WHERE " + " AND ".join(f"{column} = ?" for column in used)
        params = list(used.values())
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(int(limit), 0))
        return self._query(sql, params)

    def list_runs(
        self,
        user: str | None = None,
        conversation: str | None = None,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = 20,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, filtered by user, conversation, status, exact name, start time
        (``since_ns`` <= start < ``until_ns``) and model (requested or answering, on any span)."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("distinct_id", user),
            ("conversation_id", conversation),
            ("status", status),
            ("name", name),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since_ns is not None:
            where.append("start_ns >= ?")
            params.append(since_ns)
        if until_ns is not None:
            where.append("start_ns < ?")
            params.append(until_ns)
        if model is not None:
            tests = " OR ".join(f"json_extract(attributes, '$.\"{key}\"') = ?" for key in _MODEL_KEYS)
            where.append(f"run_id IN (SELECT run_id FROM spans WHERE {tests})")
            params.extend([model] * len(_MODEL_KEYS))
        sql = f"SELECT * FROM {RUNS}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_ns DESC, run_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(int(limit), 0))
        return [run_dict(row) for row in self._query(sql, params)]

    def count_runs(self) -> tuple[int, int]:
        """How many runs the store holds, and how many of them are sub-runs."""
        row = self._query("SELECT COUNT(*), COUNT(parent_run_id) FROM runs")[0]
        return int(row[0]), int(row[1])

    def resolve_run_ids(self, run_id: str) -> list[str]:
        """Run ids equal to ``run_id`` or, for 6+ characters, starting with it (at most 10)."""
        exact = self._query("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        if exact or len(run_id) < MIN_PREFIX:
            return [row["run_id"] for row in exact]
        pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query(
            "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 10",
            (pattern,),
        )
        # LIKE is case-insensitive for ASCII; keep only true prefixes.
        return [row["run_id"] for row in rows if row["run_id"].startswith(run_id)]

    def prefix_matches(self, prefix: str) -> int:
        """How many run ids start with ``prefix`` (any length; for messages about short prefixes)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._query("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 100", (pattern,))
        return sum(1 for row in rows if row["run_id"].startswith(prefix))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run with this id, or with this unique prefix of at least 6 characters."""
        matches = self.resolve_run_ids(run_id)
        if len(matches) != 1:
            return None
        rows = self._query(f"SELECT * FROM {RUNS} WHERE run_id = ?", (matches[0],))
        return run_dict(rows[0]) if rows else None

    def get_spans(self, run_id: str) -> list[dict[str, Any]]:
        """Spans of a run ordered by start time."""
        rows = self._select("spans", {"run_id": run_id}, "start_ns, span_id")
        return [span_dict(row) for row in rows]

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        """Every stored span of a trace (all its runs), ordered by start time."""
        rows = self._select("spans", {"trace_id": trace_id}, "start_ns, span_id")
        return [span_dict(row) for row in rows]

    def sub_runs(self, run_id: str) -> list[dict[str, Any]]:
        """Runs whose parent run is ``run_id``, newest first; ``parent_span_id`` is the span of the
        parent run that was current when each started (the parent of its root span)."""
        rows = self._query(
            f"SELECT r.*, (SELECT s.parent_span_id FROM spans s WHERE {ROOT_OF_RUN}) AS parent_span_id FROM {RUNS} r WHERE r.parent_run_id = ?"
            " ORDER BY r.start_ns DESC, r.run_id DESC",
            (run_id,),
        )
        return [run_dict(row) for row in rows]

    def conversation_runs(self, conversation_id: str) -> list[dict[str, Any]]:
        """Runs of a conversation, oldest first."""
        rows = self._select("runs", {"conversation_id": conversation_id}, "start_ns, run_id")
        return [run_dict(row) for row in rows]

    def list_events(
        self, user: str | None = None, name: str | None = None, limit: int | None = 100
    ) -> list[dict[str, Any]]:
        """Stored events newest first, filtered by user and exact name."""
        rows = self._select("events", {"distinct_id": user, "name": name}, "ts_ns DESC, id DESC", limit)
        return [event_dict(row) for row in rows]

    # -- whole history, for push and export ------------------------------------------------------
    def iter_runs(
        self, *, since_ns: int | None = None, run_id: str | None = None, page: int = 200
    ) -> Iterator[dict[str, Any]]:
        """Runs oldest first (all of them, or one), paged so memory stays small."""
        if run_id is not None:
            rows = self._query(f"SELECT * FROM {RUNS} WHERE run_id = ?", (run_id,))
            yield from (run_dict(row) for row in rows)
            return
        last: tuple[int, str] = (-(2**63), "")
        while True:
            sql = f"SELECT * FROM {RUNS} WHERE (COALESCE(start_ns, 0), run_id) > (?, ?)"
            params: list[Any] = [*last]
            if since_ns is not None:
                sql += " AND start_ns >= ?"
                params.append(since_ns)
            rows = self._query(sql + " ORDER BY COALESCE(start_ns, 0), run_id LIMIT ?", [*params, page])
            if not rows:
                return
            for row in rows:
                yield run_dict(row)
            last = (rows[-1]["start_ns"] or 0, rows[-1]["run_id"])

    def iter_events(self, *, since_ns: int | None = None, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Events oldest first, paged."""
        last = 0
        while True:
            sql = "SELECT * FROM events WHERE id > ?"
            params: list[Any] = [last]
            if since_ns is not None:
                sql += " AND ts_ns >= ?"
                params.append(since_ns)
            rows = self._query(sql + " ORDER BY id LIMIT ?", [*params, page])
            if not rows:
                return
            for row in rows:
                yield event_dict(row)
            last = rows[-1]["id"]

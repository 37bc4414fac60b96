"""Plain-text rendering of stored runs and spans (no third-party dependencies)."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_BRANCH = "├─ "
_LAST = "└─ "
_PIPE = "│  "
_SPACE = "   "
_MAX_CELL = 32
_MAX_ERROR = 200


#: Characters a terminal may act on (C0 and C1 controls but tab and newline, DEL, bidi overrides):
#: stored names, ids and errors are user-controlled (a forged run id header reaches the store).
CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` without characters a terminal would interpret (escape sequences, ``\\r``, bidi
    overrides); newlines and tabs are kept.

    Example:
        >>> terminal_safe("run\\x1b]0;pwned\\x07 ok\\nnext")
        'run]0;pwned ok\\nnext'
    """
    return CONTROL_CHARS.sub("", text)


def format_time(ns: int | None, *, precise: bool = True) -> str:
    """UTC ISO time for a nanosecond timestamp, or ``-``."""
    if ns is None:
        return "-"
    moment = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)
    if precise:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_duration(ms: float | None) -> str:
    """``850 µs`` below a millisecond, ``123.4 ms`` below one second, ``12.35 s`` above; ``-`` when
    unknown.

    Example:
        >>> format_duration(0.0415), format_duration(0.85), format_duration(123.44), format_duration(12345)
        ('42 µs', '850 µs', '123.4 ms', '12.35 s')
    """
    if ms is None:
        return "-"
    if ms < 0.9995:  # what rounds to 1000 µs reads 1.0 ms
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def format_cost(cost: float | None) -> str:
    """``$0.001234`` style, ``-`` when unknown."""
    if cost is None:
        return "-"
    return f"${cost:.6f}"


def format_run_cost(run: Mapping[str, Any]) -> str:
    """The run's cost, marked ``(incomplete)`` when a model in it has no price (the figure is then
    a lower bound, or ``?`` when nothing was priced).

    Example:
        >>> format_run_cost({"cost": 0.0012, "cost_incomplete": True})
        '$0.001200 (incomplete)'
        >>> format_run_cost({"cost": None, "cost_incomplete": True})
        '? (incomplete)'
    """
    cost = run.get("cost")
    if not run.get("cost_incomplete"):
        return format_cost(cost)
    return f"{format_cost(cost) if cost else '?'} (incomplete)"


def run_status(run: Mapping[str, Any]) -> str:
    """The status a person should read: ``closed early`` for a generator run its caller stopped
    before the end (stored as ``ok`` with ``trodo.generator.closed_early``)."""
    status = str(run.get("status") or "-")
    if run.get("closed_early") and status == "ok":
        return "closed early"
    return status


def format_tokens(tokens_in: Any, tokens_out: Any) -> str:
    """``120→45``; ``-`` when both are unknown."""
    if tokens_in is None and tokens_out is None:
        return "-"
    left = "?" if tokens_in is None else str(tokens_in)
    right = "?" if tokens_out is None else str(tokens_out)
    return f"{left}→{right}"


def _one_line(text: Any, limit: int = _MAX_ERROR) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return _one_line(value, _MAX_CELL)


def _span_duration(span: Mapping[str, Any]) -> float | None:
    if span.get("duration_ms") is not None:
        duration: float = span["duration_ms"]
        return duration
    start: int | None = span.get("start_ns")
    end: int | None = span.get("end_ns")
    if start is None or end is None:
        return None
    return (end - start) / 1e6


def span_error(span: Mapping[str, Any]) -> str | None:
    """``ValueError: message`` for an error span, else None."""
    if span.get("status") != "error":
        return None
    attrs = span.get("attributes") or {}
    err_type = span.get("error_type") or attrs.get("error.type")
    message = None
    for event in span.get("events") or ():
        if event.get("name") == "exception":
            ev_attrs = event.get("attributes") or {}
            err_type = err_type or ev_attrs.get("exception.type")
            message = ev_attrs.get("exception.message")
            break
    message = message or span.get("status_message")
    if message and err_type and str(message).startswith(f"{err_type}: "):
        message = str(message)[len(err_type) + 2 :]
    parts = [str(part) for part in (err_type, message) if part]
    return _one_line(": ".join(parts)) if parts else ""


def format_span_line(span: Mapping[str, Any]) -> str:
    """``[kind] name  123.4 ms  tokens 120→45  $0.000123  ERROR ValueError: message``."""
    attrs = span.get("attributes") or {}
    parts = [f"[{span.get('kind') or 'span'}] {span.get('name') or '?'}"]
    parts.append(format_duration(_span_duration(span)))
    tokens_in = attrs.get("gen_ai.usage.input_tokens")
    tokens_out = attrs.get("gen_ai.usage.output_tokens")
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"tokens {format_tokens(tokens_in, tokens_out)}")
    cost = attrs.get("trodo.llm.cost")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        parts.append(format_cost(float(cost)))
    elif span.get("kind") == "llm" and (tokens_in is not None or tokens_out is not None):
        parts.append("cost unknown (no price for the model)")
    if attrs.get("trodo.generator.closed_early"):
        items = attrs.get("trodo.generator.items")
        parts.append(f"CLOSED EARLY after {items} items" if items is not None else "CLOSED EARLY")
    error = span_error(span)
    if error is not None:
        parts.append(f"ERROR {error}".rstrip())
    return "  ".join(parts)


_CONTENT_LIMIT = 200
_MESSAGE_CONTENT = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.content$")


def content_text(value: Any, limit: int = _CONTENT_LIMIT) -> str:
    """A captured value on one line: control characters stripped, cut at ``limit`` characters.

    Example:
        >>> content_text("rain\\x1b[31m  and\\n  wind " * 3, limit=24)
        'rain[31m and wind rain[…'
    """
    text = value if isinstance(value, str) else str(value)
    return _one_line(terminal_safe(text).replace("\x1b", ""), limit)


def _content_lines(span: Mapping[str, Any]) -> list[str]:
    attrs = span.get("attributes") or {}
    found: dict[str, Any] = {}
    for label, key in (("input", "input.value"), ("output", "output.value")):
        if attrs.get(key) not in (None, ""):
            found[label] = attrs[key]
    if len(found) < 2:  # LLM spans may carry only their messages
        messages: dict[str, list[tuple[int, str]]] = {}
        for key, value in attrs.items():
            match = _MESSAGE_CONTENT.match(key)
            if match and value not in (None, ""):
                messages.setdefault(match.group(1), []).append((int(match.group(2)), str(value)))
        for label in ("input", "output"):
            if label not in found and label in messages:
                found[label] = " | ".join(text for _, text in sorted(messages[label]))
    return [f"{label}: {content_text(found[label])}" for label in ("input", "output") if label in found]


def _sub_run_marker(sub: Mapping[str, Any]) -> dict[str, Any]:
    """A pseudo-span placed where a sub-run was started in its parent's tree."""
    return {
        "span_id": f"sub-run:{sub.get('run_id')}",
        "parent_span_id": sub.get("parent_span_id"),
        "start_ns": sub.get("start_ns"),
        "sub_run": sub,
    }


def _marker_line(sub: Mapping[str, Any]) -> str:
    return (
        f"↳ sub-run {str(sub.get('run_id'))[:12]} {sub.get('name') or '-'}  {run_status(sub)}"
        f"  {format_duration(sub.get('duration_ms'))}  (trodo-trace show {str(sub.get('run_id'))[:12]})"
    )


def _tree_lines(spans: Sequence[Mapping[str, Any]], *, content: bool = False) -> list[str]:
    ordered = sorted(spans, key=lambda s: (s.get("start_ns") or 0, str(s.get("span_id"))))
    ids = {span.get("span_id") for span in ordered}
    children: dict[Any, list[Mapping[str, Any]]] = {}
    roots: list[Mapping[str, Any]] = []
    for span in ordered:
        parent = span.get("parent_span_id")
        if parent is not None and parent in ids and parent != span.get("span_id"):
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)

    lines: list[str] = []
    seen: set[Any] = set()

    def walk(top: Mapping[str, Any]) -> None:
        # Iterative depth-first walk: (span, prefix for its line, prefix for its children).
        stack: list[tuple[Mapping[str, Any], str, str]] = [(top, "", "")]
        while stack:
            span, line_prefix, child_prefix = stack.pop()
            key = span.get("span_id")
            if key in seen:
                continue
            seen.add(key)
            if "sub_run" in span:
                lines.append(line_prefix + _marker_line(span["sub_run"]))
                continue
            lines.append(line_prefix + format_span_line(span))
            kids = [kid for kid in children.get(key, ()) if kid.get("span_id") not in seen]
            if content:
                pad = child_prefix + (_PIPE if kids else _SPACE)
                lines.extend(pad + line for line in _content_lines(span))
            for index in range(len(kids) - 1, -1, -1):
                last = index == len(kids) - 1
                stack.append(
                    (
                        kids[index],
                        child_prefix + (_LAST if last else _BRANCH),
                        child_prefix + (_SPACE if last else _PIPE),
                    )
                )

    for root in roots:
        walk(root)
    # Spans caught in a parent cycle are never reached from a root; show them at top level.
    for span in ordered:
        if span.get("span_id") not in seen:
            walk(span)
    return lines


def _run_brief(run: Mapping[str, Any]) -> str:
    return "  ".join(str(part) for part in (run.get("run_id"), run.get("name") or "-", run_status(run)))


def format_run_tree(
    run: Mapping[str, Any],
    spans: Sequence[Mapping[str, Any]],
    sub_runs: Iterable[Mapping[str, Any]] = (),
    parent_run: Mapping[str, Any] | None = None,
    *,
    content: bool = False,
) -> str:
    """A run header, its span tree (with ``↳ sub-run`` where each sub-run was started, for sub-runs
    that carry ``parent_span_id``), then its parent run and sub-runs; ``content`` adds each span's
    input and output under it."""
    status = run_status(run)
    lines = [
        f"Run {run.get('run_id')}  {run.get('name') or '-'}  [{status.upper()}]",
        f"  user: {run.get('distinct_id') or '-'}   conversation: {run.get('conversation_id') or '-'}",
        f"  started: {format_time(run.get('start_ns'))}   duration: {format_duration(run.get('duration_ms'))}",
        f"  tokens: {run.get('tokens_in') if run.get('tokens_in') is not None else '-'} in"
        f" / {run.get('tokens_out') if run.get('tokens_out') is not None else '-'} out"
        f"   cost: {format_run_cost(run)}",
        f"  spans: {_cell(run.get('span_count'))}   tools: {_cell(run.get('tool_count'))}"
        f"   errors: {_cell(run.get('error_count'))}",
    ]
    if run.get("error_summary"):
        lines.append(f"  error: {_one_line(run['error_summary'])}")
    lines.append("")
    subs = list(sub_runs)
    markers = [_sub_run_marker(sub) for sub in subs if sub.get("parent_span_id")]
    tree = _tree_lines([*spans, *markers], content=content) if spans else []
    lines.extend(tree if tree else ["(no spans stored for this run)"])
    if parent_run is not None:
        lines.append("")
        lines.append(f"Parent run: {_run_brief(parent_run)}")
    elif run.get("parent_run_id"):
        lines.append("")
        lines.append(f"Parent run: {run['parent_run_id']}")
    if subs:
        lines.append("")
        lines.append("Sub-runs:")
        lines.extend(f"  {_run_brief(sub)}" for sub in subs)
    return terminal_safe("\n".join(lines))


_TABLE_HEADERS = (
    "RUN ID",
    "NAME",
    "STATUS",
    "USER",
    "CONVERSATION",
    "STARTED (UTC)",
    "DURATION",
    "TOKENS",
    "COST",
    "SPANS",
)


def _table_row(run: Mapping[str, Any], name_prefix: str = "") -> tuple[str, ...]:
    return (
        str(run.get("run_id") or "-")[:12],
        name_prefix + _cell(run.get("name")),
        _cell(run_status(run)),
        _cell(run.get("distinct_id")),
        _cell(run.get("conversation_id")),
        format_time(run.get("start_ns"), precise=False),
        format_duration(run.get("duration_ms")),
        format_tokens(run.get("tokens_in"), run.get("tokens_out")),
        format_run_cost(run),
        _cell(run.get("span_count")),
    )


def _align(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return terminal_safe(
        "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        )
    )


def format_runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """Aligned columns, one line per run, under a header line (a sub-run's PARENT column names
    its parent run)."""
    headers = (*_TABLE_HEADERS, "PARENT")
    rows = [headers, *((*_table_row(run), str(run.get("parent_run_id") or "-")[:12]) for run in runs)]
    return _align(rows)


def conversation_order(runs: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """The runs of a conversation as ``(run, depth)``: turns (runs whose parent is not in the
    conversation) oldest first, each followed by its sub-runs, nested."""
    ids = {run.get("run_id") for run in runs}
    children: dict[Any, list[Mapping[str, Any]]] = {}
    turns = []
    for run in runs:
        parent = run.get("parent_run_id")
        if parent and parent in ids and parent != run.get("run_id"):
            children.setdefault(parent, []).append(run)
        else:
            turns.append(run)
    ordered: list[tuple[Mapping[str, Any], int]] = []
    seen: set[Any] = set()

    def visit(run: Mapping[str, Any], depth: int) -> None:
        if run.get("run_id") in seen:
            return
        seen.add(run.get("run_id"))
        ordered.append((run, depth))
        for child in children.get(run.get("run_id"), ()):
            visit(child, depth + 1)

    for turn in turns:
        visit(turn, 0)
    for run in runs:  # a parent cycle: still listed
        visit(run, 0)
    return ordered


def format_conversation(conversation_id: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """A conversation's turns, oldest first, each sub-run indented under the run that started it."""
    ordered = conversation_order(runs)
    turns = sum(1 for _, depth in ordered if depth == 0)
    subs = len(ordered) - turns
    title = f"Conversation {conversation_id}: {turns} turn{'s' if turns != 1 else ''}"
    if subs:
        title += f" (+{subs} sub-run{'s' if subs != 1 else ''})"
    headers = ("TURN", *_TABLE_HEADERS, "PARENT")
    rows: list[tuple[str, ...]] = [headers]
    number = 0
    for run, depth in ordered:
        if depth == 0:
            number += 1
        prefix = "   " * (depth - 1) + "└─ " if depth else ""
        rows.append(
            (
                str(number) if depth == 0 else "",
                *_table_row(run, prefix),
                str(run.get("parent_run_id") or "-")[:12] if depth else "-",
            )
        )
    return terminal_safe(title) + "\n" + _align(rows)

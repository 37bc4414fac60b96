"""What the dashboard's pages show, computed from stored rows: chat messages, conversation turns,
inline SVG charts. Everything returned as markup is built here with every value escaped."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from .._internal.display.render import format_cost, format_duration, format_time, format_tokens

_MESSAGE_KEY = re.compile(r"llm\.(input|output)_messages\.(\d+)\.message\.(.+)\Z")
_TOOL_CALL_KEY = re.compile(r"tool_calls\.(\d+)\.tool_call\.(.+)\Z")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def chat_messages(attributes: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{"input": [...], "output": [...]}`` from OpenInference ``llm.*_messages.N.message.*`` attributes.

    Each message: ``role``, ``content``, ``tool_calls`` (``name``, ``arguments``, ``id``),
    ``tool_call_id`` and ``name`` when present.
    """
    found: dict[str, dict[int, dict[str, Any]]] = {"input": {}, "output": {}}
    for key, value in attributes.items():
        match = _MESSAGE_KEY.match(key)
        if match is None:
            continue
        side, index, rest = match.group(1), int(match.group(2)), match.group(3)
        message = found[side].setdefault(index, {"role": "", "content": None, "tool_calls": {}})
        call = _TOOL_CALL_KEY.match(rest)
        if call is not None:
            entry = message["tool_calls"].setdefault(int(call.group(1)), {})
            field = call.group(2).replace("function.", "")
            entry[field] = value
        elif rest in ("role", "content", "name", "tool_call_id"):
            message[rest] = value
        elif rest.startswith("contents."):
            text = message.get("content") or ""
            if rest.endswith("message_content.text"):
                message["content"] = f"{text}\n{value}".strip()
    result: dict[str, list[dict[str, Any]]] = {}
    for side, messages in found.items():
        result[side] = [
            {**message, "tool_calls": [call for _, call in sorted(message["tool_calls"].items())]}
            for _, message in sorted(messages.items())
        ]
    return result


def pretty(value: Any, limit: int = 20_000) -> str:
    """A value as indented JSON when it is (or holds) JSON, else as text; cut at ``limit`` characters."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, (dict, list)):
            value = parsed
        elif isinstance(parsed, str):
            return parsed[:limit]
        else:
            return value[:limit]
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return text if len(text) <= limit else text[:limit] + f"… [{len(text) - limit} more characters]"


def compact(value: Any, limit: int = 2000) -> str:
    """A value as one line of JSON (non-ASCII kept), cut at ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def exception_stack(span: Mapping[str, Any]) -> str | None:
    for event in span.get("events") or ():
        if isinstance(event, Mapping) and event.get("name") == "exception":
            attributes = event.get("attributes") or {}
            return str(attributes.get("exception.stacktrace") or attributes.get("exception.message") or "")
    return None


def conversation_turns(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turns of a conversation, oldest first: runs whose parent is not in it, each with its
    sub-runs nested (``children``) and per-turn totals (``total_tokens``, ``total_cost``)."""
    by_id = {run["run_id"]: {**run, "children": []} for run in runs}
    turns = []
    for run in by_id.values():
        parent = run.get("parent_run_id")
        if parent and parent in by_id:
            by_id[parent]["children"].append(run)
        else:
            turns.append(run)

    def totals(run: dict[str, Any]) -> tuple[int, float]:
        tokens = (run.get("tokens_in") or 0) + (run.get("tokens_out") or 0)
        cost = run.get("cost") or 0.0
        for child in run["children"]:
            child_tokens, child_cost = totals(child)
            tokens, cost = tokens + child_tokens, cost + child_cost
        run["total_tokens"], run["total_cost"] = tokens, cost
        return tokens, cost

    for turn in turns:
        totals(turn)
    return turns


# -- filters for the templates --------------------------------------------------------------------
def fmt_time(ns: Any) -> str:
    return format_time(ns if isinstance(ns, int) else None, precise=False)


def fmt_duration(ms: Any) -> str:
    return format_duration(ms if isinstance(ms, (int, float)) else None)


def fmt_cost(cost: Any) -> str:
    return format_cost(cost if isinstance(cost, (int, float)) else None)


def fmt_tokens(run: Mapping[str, Any]) -> str:
    if run.get("tokens_in") is None and run.get("tokens_out") is None:
        return "-"
    return format_tokens(run.get("tokens_in"), run.get("tokens_out"))


# -- charts ---------------------------------------------------------------------------------------
def bar_chart(
    title: str,
    points: Sequence[tuple[str, float | None]],
    unit: str = "",
    width: int = 460,
    height: int = 150,
) -> Markup:
    """One inline SVG bar chart (labels under the bars, the largest value on the axis)."""
    values = [value or 0.0 for _, value in points]
    top = max(values, default=0.0) or 1.0
    left, inner_h = 44, height - 40
    step = (width - left - 4) / max(len(points), 1)
    bars = []
    for index, (label, value) in enumerate(points):
        h = (value or 0.0) / top * inner_h
        x = left + index * step + step * 0.15
        y = 10 + inner_h - h
        shown = _value_text(value, unit)
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}">'
            f"<title>{_e(label)}: {_e(shown)}</title></rect>"
        )
        if index % max(math.ceil(len(points) / 7), 1) == 0:
            bars.append(
                f'<text class="lbl" x="{x + step * 0.35:.1f}" y="{height - 6}" text-anchor="middle">'
                f"{_e(label[-5:])}</text>"
            )
    axis = (
        f'<text class="lbl" x="{left - 4}" y="16" text-anchor="end">{_e(_value_text(top, unit))}</text>'
        f'<text class="lbl" x="{left - 4}" y="{10 + inner_h}" text-anchor="end">0</text>'
        f'<line class="axis" x1="{left}" y1="{10 + inner_h}" x2="{width}" y2="{10 + inner_h}"/>'
    )
    return Markup(
        f'<figure class="chart"><figcaption>{_e(title)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{_e(title)}">'
        f"{axis}{''.join(bars)}</svg></figure>"
    )


def _value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "$":
        return format_cost(value)
    if unit == "ms":
        return format_duration(value)
    if unit == "%":
        return f"{value * 100:.0f}%"
    return f"{value:,.0f}"

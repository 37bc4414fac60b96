"""The HTML waterfall of a run, for Jupyter.

One self-contained fragment: a ``<style>`` block and markup, no scripts, fonts, images or URLs, so it
renders the same offline, in exported notebooks and in VS Code. Colours follow the JupyterLab / VS Code
theme variables where present and ``prefers-color-scheme`` otherwise. Every piece of text from a run
(names, inputs, outputs, errors) is HTML-escaped.

Input is the local store's shapes (a run summary, span dicts, sub-run summaries), so a live run and a
stored one render alike. Each span row is a ``<details>`` element: the summary line shows the indented
name, kind badge, a bar on the run's time axis, duration, tokens and cost; opening it shows the input,
output, error and attributes. Rows carry their numbers as ``data-*`` attributes for tools and tests.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .render import format_cost, format_duration, format_time, format_tokens, span_error

#: Rows rendered at most (a note says how many more there are).
MAX_ROWS = 1000
#: Characters of one input/output/attribute value shown in a row's details.
VALUE_PREVIEW = 4000
INDENT_PX = 16

_KIND_RGB = {
    "run": (139, 92, 246),
    "agent": (168, 85, 247),
    "llm": (59, 130, 246),
    "tool": (234, 149, 12),
    "retrieval": (16, 185, 129),
    "chain": (6, 182, 212),
    "function": (148, 163, 184),
}
_HIDDEN_ATTRIBUTES = frozenset(
    {"input.value", "input.mime_type", "output.value", "output.mime_type", "trodo.span.kind", "trodo.run.id"}
)

_CSS = """
.trodo-run{--tr-fg:var(--jp-content-font-color1,var(--vscode-editor-foreground,#1f2328));
--tr-muted:var(--jp-content-font-color2,var(--vscode-descriptionForeground,#59636e));
--tr-line:var(--jp-border-color2,rgba(128,128,128,.28));--tr-soft:rgba(128,128,128,.09);
--tr-err:#cf222e;--tr-ok:#1a7f37;--tr-bg0:transparent;
--tr-mono:var(--jp-code-font-family,ui-monospace,SFMono-Regular,Menlo,Consolas,monospace);
font-family:var(--jp-ui-font-family,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);
font-size:12.5px;line-height:1.45;color:var(--tr-fg);background:var(--jp-layout-color0,var(--tr-bg0));
max-width:100%;overflow-x:auto;margin:2px 0;padding:2px 4px}
@media (prefers-color-scheme:dark){.trodo-run{
--tr-fg:var(--jp-content-font-color1,var(--vscode-editor-foreground,#e6edf3));
--tr-muted:var(--jp-content-font-color2,var(--vscode-descriptionForeground,#9198a1));
--tr-err:#ff7b72;--tr-ok:#3fb950;--tr-bg0:#0d1117}}
body.vscode-light .trodo-run,body.vscode-dark .trodo-run,body.vscode-high-contrast .trodo-run{--tr-bg0:transparent}
body[data-jp-theme-light="true"] .trodo-run,body.vscode-light .trodo-run{--tr-err:#cf222e;--tr-ok:#1a7f37}
body[data-jp-theme-light="false"] .trodo-run,body.vscode-dark .trodo-run{--tr-err:#ff7b72;--tr-ok:#3fb950}
.trodo-run code,.trodo-run pre,.trodo-run .tr-num,.trodo-run .tr-axis{font-family:var(--tr-mono);font-size:11.5px}
.trodo-run .tr-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px;margin-bottom:2px}
.trodo-run .tr-title{font-weight:600;font-size:13.5px}
.trodo-run .tr-meta,.trodo-run .tr-note,.trodo-run .tr-result{color:var(--tr-muted);margin:1px 0}
.trodo-run .tr-meta b{color:var(--tr-fg);font-weight:500}
.trodo-run .tr-errsum{color:var(--tr-err);margin:2px 0}
.trodo-run .tr-status{font-weight:600;text-transform:uppercase;font-size:10.5px}
.trodo-run .tr-s-ok{color:var(--tr-ok)}.trodo-run .tr-s-error{color:var(--tr-err)}
.trodo-run .tr-s-running,.trodo-run .tr-s-unset{color:var(--tr-muted)}
.trodo-run a{color:inherit;text-decoration:underline dotted}
.trodo-run .tr-grid{display:grid;grid-template-columns:minmax(15em,2fr) minmax(9em,3fr) 6.5em 7.5em 7.5em;
gap:0 8px;align-items:center;padding:1px 4px}
.trodo-run .tr-cols{border-bottom:1px solid var(--tr-line);color:var(--tr-muted);margin-top:6px}
.trodo-run details.tr-span>summary{list-style:none;cursor:pointer;border-bottom:1px solid var(--tr-line)}
.trodo-run details.tr-span>summary::-webkit-details-marker{display:none}
.trodo-run details.tr-span>summary:hover{background:var(--tr-soft)}
.trodo-run .tr-name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.trodo-run .tr-caret{display:inline-block;width:1em;color:var(--tr-muted);transition:transform .1s}
.trodo-run details[open]>summary .tr-caret{transform:rotate(90deg)}
.trodo-run .tr-badge{display:inline-block;padding:0 5px;margin-right:5px;border-radius:8px;font-size:10.5px;
border:1px solid var(--tr-line);background:var(--tr-soft);color:var(--tr-fg);vertical-align:1px}
.trodo-run .tr-errmsg{color:var(--tr-err);margin-left:6px}
.trodo-run .tr-err .tr-label{color:var(--tr-err);font-weight:600}
.trodo-run .tr-track{position:relative;height:10px;background:var(--tr-soft);border-radius:2px}
.trodo-run .tr-bar{position:absolute;top:1px;bottom:1px;min-width:2px;border-radius:2px;background:#94a3b8}
.trodo-run .tr-err .tr-bar{background:var(--tr-err)}
.trodo-run .tr-running .tr-bar{opacity:.5}
.trodo-run .tr-axis{position:relative;height:1.4em}
.trodo-run .tr-tick{position:absolute;top:0;transform:translateX(-50%);white-space:nowrap}
.trodo-run .tr-tick:first-child{transform:none}.trodo-run .tr-tick.tr-end{transform:translateX(-100%)}
.trodo-run .tr-num{text-align:right;white-space:nowrap}
.trodo-run .tr-total{color:var(--tr-muted)}
.trodo-run .tr-body{padding:4px 8px 8px 24px;border-bottom:1px solid var(--tr-line);background:var(--tr-soft)}
.trodo-run .tr-body pre{margin:2px 0 6px;padding:6px 8px;max-height:22em;overflow:auto;white-space:pre-wrap;
word-break:break-word;background:var(--tr-soft);border:1px solid var(--tr-line);border-radius:4px;color:var(--tr-fg)}
.trodo-run .tr-body .tr-err-text{color:var(--tr-err)}
.trodo-run .tr-label-sm{color:var(--tr-muted);font-size:11px;text-transform:uppercase;letter-spacing:.03em}
.trodo-run table.tr-attrs{border-collapse:collapse;margin:2px 0 4px}
.trodo-run table.tr-attrs td{padding:1px 10px 1px 0;vertical-align:top;text-align:left;border:0;
font-family:var(--tr-mono);font-size:11.5px;word-break:break-word}
.trodo-run table.tr-attrs td:first-child{color:var(--tr-muted);white-space:nowrap}
"""
_CSS = "".join(line.strip() for line in _CSS.strip().splitlines()) + "".join(
    f".trodo-run .tr-k-{kind} .tr-bar{{background:rgb({r},{g},{b})}}"
    f".trodo-run .tr-k-{kind} .tr-badge{{background:rgba({r},{g},{b},.16);border-color:rgba({r},{g},{b},.6)}}"
    for kind, (r, g, b) in _KIND_RGB.items()
)


def _e(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def anchor_link(run_id: str) -> str:
    """The default link to another run: its waterfall's anchor on the same page (a notebook)."""
    return f"#trodo-run-{run_id}"


def _data(value: Any) -> str:
    return "" if value is None else repr(value)


# -- the tree -------------------------------------------------------------------------------------
def _ordered_rows(
    run: Mapping[str, Any], spans: Sequence[Mapping[str, Any]], sub_runs: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], int, str | None, bool]]:
    """Spans and sub-runs in tree order: (item, depth, parent id shown, is a sub-run)."""
    items: list[tuple[str, str | None, Mapping[str, Any], bool]] = []
    for span in spans:
        items.append((str(span.get("span_id")), span.get("parent_span_id"), span, False))
    ids = {key for key, _, _, _ in items}
    root_id = run.get("root_span_id")
    for sub in sub_runs:
        key = str(sub.get("root_span_id") or f"run:{sub.get('run_id')}")
        if key in ids:
            continue
        parent = sub.get("parent_span_id")
        if parent not in ids:
            parent = root_id if root_id in ids else None
        items.append((key, parent, sub, True))
        ids.add(key)
    children: dict[str | None, list[tuple[str, str | None, Mapping[str, Any], bool]]] = {}
    for item in items:
        key, parent = item[0], item[1]
        children.setdefault(parent if parent in ids and parent != key else None, []).append(item)
    for group in children.values():
        group.sort(key=lambda item: (item[2].get("start_ns") or 0, item[0]))

    rows: list[tuple[Mapping[str, Any], int, str | None, bool]] = []
    seen: set[str] = set()

    def walk(top: tuple[str, str | None, Mapping[str, Any], bool]) -> None:
        stack = [(top, 0)]
        while stack:
            (key, parent, item, is_sub), depth = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            rows.append((item, depth, parent if parent in ids else None, is_sub))
            for child in reversed(children.get(key, ())):
                stack.append((child, depth + 1))

    for top in children.get(None, ()):
        walk(top)
    for item in items:  # spans caught in a parent cycle
        if item[0] not in seen:
            walk(item)
    return rows


# -- pieces ---------------------------------------------------------------------------------------
def _pretty_value(text: object) -> str:
    if not isinstance(text, str):
        text = json.dumps(text, ensure_ascii=False, default=str, indent=2)
    else:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(parsed, (dict, list)):
                text = json.dumps(parsed, ensure_ascii=False, indent=2)
            elif isinstance(parsed, str):
                text = parsed
    if len(text) > VALUE_PREVIEW:
        text = f"{text[:VALUE_PREVIEW]}… [{len(text) - VALUE_PREVIEW} more characters]"
    return text


def _labelled_pre(label: str, text: Any, css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<div class="tr-label-sm">{_e(label)}</div><pre{klass}>{_e(_pretty_value(text))}</pre>'


def _attributes_table(attributes: Mapping[str, Any]) -> str:
    shown = sorted((k, v) for k, v in attributes.items() if k not in _HIDDEN_ATTRIBUTES)
    if not shown:
        return ""
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_pretty_value(v))}</td></tr>" for k, v in shown)
    return f'<div class="tr-label-sm">attributes</div><table class="tr-attrs">{rows}</table>'


def _span_body(span: Mapping[str, Any], full: bool = True) -> str:
    attributes = span.get("attributes") or {}
    parts = [
        f'<div class="tr-meta">span <code>{_e(span.get("span_id"))}</code> · started '
        f"{_e(format_time(span.get('start_ns')))} · status {_e(span.get('status') or '-')}</div>"
    ]
    if not full:
        return parts[0]
    error = span_error(span)
    if error is not None:
        stack = next(
            (
                (event.get("attributes") or {}).get("exception.stacktrace")
                for event in span.get("events") or ()
                if event.get("name") == "exception"
            ),
            None,
        )
        parts.append(_labelled_pre("error", stack or error or "error", "tr-err-text"))
    if "input.value" in attributes:
        parts.append(_labelled_pre("input", attributes["input.value"]))
    if "output.value" in attributes:
        parts.append(_labelled_pre("output", attributes["output.value"]))
    parts.append(_attributes_table(attributes))
    events = [e for e in span.get("events") or () if e.get("name") != "exception"]
    if events:
        lines = "\n".join(
            f"{format_time(e.get('timestamp'))}  {e.get('name')}  "
            f"{json.dumps(e.get('attributes') or {}, ensure_ascii=False, default=str)}"
            for e in events
        )
        parts.append(_labelled_pre("events", lines))
    return "".join(parts)


def _sub_run_body(sub: Mapping[str, Any]) -> str:
    run_id = sub.get("run_id")
    parts = [
        f'<div class="tr-meta">sub-run <code>{_e(run_id)}</code> · status {_e(sub.get("status") or "-")}'
        f" · {_e(sub.get('span_count') if sub.get('span_count') is not None else '-')} spans"
        f" · user {_e(sub.get('distinct_id') or '-')}</div>",
        f'<div class="tr-meta">its spans: <code>trodo.show({_e(repr(str(run_id)))})</code></div>',
    ]
    if sub.get("error_summary"):
        parts.append(f'<div class="tr-errsum">{_e(sub["error_summary"])}</div>')
    return "".join(parts)


@dataclass
class _Cells:
    """What one row shows."""

    key: str
    kind: str
    status: str
    label: str
    error: str | None
    tokens_in: Any
    tokens_out: Any
    cost: float | None
    totals: bool  # a run's rollups rather than the span's own usage
    body: str


def _span_cells(span: Mapping[str, Any], full: bool = True) -> _Cells:
    attributes = span.get("attributes") or {}
    kind = str(span.get("kind") or "span")
    totals = "trodo.run.span_count" in attributes
    rollups = ("trodo.run.total_tokens_in", "trodo.run.total_tokens_out", "trodo.run.total_cost")
    keys = (
        rollups if totals else ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "trodo.llm.cost")
    )
    return _Cells(
        key=str(span.get("span_id") or ""),
        kind=kind,
        status=str(span.get("status") or "unset"),
        label=f'<span class="tr-badge">{_e(kind)}</span><span class="tr-label">{_e(span.get("name") or "?")}</span>',
        error=span_error(span),
        tokens_in=attributes.get(keys[0]),
        tokens_out=attributes.get(keys[1]),
        cost=_number(attributes.get(keys[2])),
        totals=totals,
        body=_span_body(span, full),
    )


def _sub_run_cells(sub: Mapping[str, Any], link: Callable[[str], str]) -> _Cells:
    run_id = str(sub.get("run_id"))
    status = str(sub.get("status") or "unset")
    return _Cells(
        key=str(sub.get("root_span_id") or ""),
        kind="run",
        status=status,
        label=(
            f'<span class="tr-badge">sub-run</span><span class="tr-label">{_e(sub.get("name") or "?")}</span>'
            f' <a class="tr-runlink" href="{_e(link(run_id))}"><code>{_e(run_id[:12])}</code></a>'
        ),
        error=sub.get("error_summary") if status == "error" else None,
        tokens_in=sub.get("tokens_in"),
        tokens_out=sub.get("tokens_out"),
        cost=_number(sub.get("cost")),
        totals=True,
        body=_sub_run_body(sub),
    )


def _row(
    item: Mapping[str, Any],
    depth: int,
    parent: str | None,
    is_sub: bool,
    axis: tuple[int, int, int],
    link: Callable[[str], str],
    bodies: bool,
) -> str:
    t0, total, now = axis
    cells = _sub_run_cells(item, link) if is_sub else _span_cells(item, bodies)
    start, end = item.get("start_ns"), item.get("end_ns")
    duration = (end - start) / 1e6 if start is not None and end is not None else None
    label = cells.label
    if cells.error:
        label += f'<span class="tr-errmsg">{_e(cells.error)}</span>'
    classes = ["tr-span", f"tr-k-{_e(cells.kind)}"]
    classes += [
        css
        for flag, css in (
            (cells.status == "error", "tr-err"),
            (cells.status == "running", "tr-running"),
            (is_sub, "tr-subrun"),
        )
        if flag
    ]
    bar = ""
    if start is not None:
        left = (start - t0) / total * 100
        width = max(((end if end is not None else now) - start) / total * 100, 0.0)
        bar = f'<span class="tr-bar" style="left:{left:.3f}%;width:{width:.3f}%"></span>'
    tokens_in, tokens_out, cost = cells.tokens_in, cells.tokens_out, cells.cost
    tokens_text = "" if tokens_in is None and tokens_out is None else format_tokens(tokens_in, tokens_out)
    cost_text = "" if cost is None else format_cost(cost)
    if cells.totals and not (tokens_in or tokens_out):  # a run without LLM calls: no 0→0 / $0.000000 noise
        tokens_text = ""
        cost_text = "" if not cost else cost_text
    numbers = "tr-num tr-total" if cells.totals else "tr-num"
    data = {
        "data-span-id": cells.key,
        "data-parent-id": parent or "",
        "data-depth": depth,
        "data-kind": cells.kind,
        "data-status": cells.status,
        "data-duration-ms": _data(duration),
        "data-tokens-in": _data(tokens_in),
        "data-tokens-out": _data(tokens_out),
        "data-cost": _data(cost),
    }
    if is_sub:
        data["data-run-id"] = item.get("run_id") or ""
    data_attrs = " ".join(f'{name}="{_e(value)}"' for name, value in data.items())
    indent = f"padding-left:{depth * INDENT_PX}px"
    return (
        f'<details class="{" ".join(classes)}" {data_attrs}><summary class="tr-grid">'
        f'<span class="tr-name" style="{indent}"><span class="tr-caret">▸</span>{label}</span>'
        f'<span class="tr-track">{bar}</span>'
        f'<span class="tr-num tr-dur">{_e(format_duration(duration))}</span>'
        f'<span class="{numbers} tr-tok">{_e(tokens_text)}</span>'
        f'<span class="{numbers} tr-cost">{_e(cost_text)}</span>'
        f'</summary><div class="tr-body">{cells.body}</div></details>'
    )


def axis_ticks(total_ms: float) -> list[tuple[float, str]]:
    """Where the time axis of a ``total_ms`` run is labelled: ``(fraction of the width, label)`` at
    round values (a step of 1, 2 or 5 times a power of ten), at most four steps, so that the labels
    stay apart however narrow the column.

    Example:
        >>> axis_ticks(0.134)
        [(0.0, '0'), (0.373..., '50 µs'), (0.746..., '100 µs')]
        >>> [label for _, label in axis_ticks(1.911)]
        ['0', '500 µs', '1 ms', '1.5 ms']
    """
    if not total_ms > 0 or not math.isfinite(total_ms):
        return [(0.0, "0")]
    power = 10.0 ** math.floor(math.log10(total_ms / 4))
    step = next(m * power for m in (1, 2, 5, 10) if total_ms / (m * power) <= 4)
    ticks = [(0.0, "0")]
    value = step
    while value <= total_ms * (1 + 1e-9):
        ticks.append((min(value / total_ms, 1.0), _tick_label(value)))
        value = round(value + step, 12)
    return ticks


def _tick_label(ms: float) -> str:
    if ms < 1:
        return f"{round(ms * 1000, 6):g} µs"
    if ms < 1000:
        return f"{round(ms, 6):g} ms"
    return f"{round(ms / 1000, 6):g} s"


def _axis(total_ms: float) -> str:
    ticks = "".join(
        f'<span class="tr-tick{" tr-end" if fraction > 0.9 else ""}" style="left:{fraction * 100:.1f}%">'
        f"{_e(label)}</span>"
        for fraction, label in axis_ticks(total_ms)
    )
    return f'<span class="tr-axis">{ticks}</span>'


def _header(
    run: Mapping[str, Any],
    parent_run: Mapping[str, Any] | None,
    caption: str | None,
    link: Callable[[str], str],
) -> str:
    status = str(run.get("status") or "unset")
    run_id = str(run.get("run_id"))
    tokens = format_tokens(run.get("tokens_in"), run.get("tokens_out"))
    cost = format_cost(_number(run.get("cost")))
    if run.get("cost_incomplete"):
        cost += " (incomplete)"

    def field(label: str, value: Any) -> str:
        return f"{_e(label)} <b>{_e(value if value not in (None, '') else '-')}</b>"

    meta = " · ".join(
        (
            field("user", run.get("distinct_id")),
            field("conversation", run.get("conversation_id")),
            field("started", format_time(run.get("start_ns"))),
            field("duration", format_duration(_number(run.get("duration_ms")))),
            field("tokens", tokens),
            field("cost", cost),
            field("spans", run.get("span_count")),
            field("tools", run.get("tool_count")),
            field("errors", run.get("error_count")),
        )
    )
    parts = [
        f'<div class="tr-head"><span class="tr-badge">{_e(run.get("kind") or "run")}</span>'
        f'<span class="tr-title">{_e(run.get("name") or "?")}</span>'
        f'<span class="tr-status tr-s-{_e(status)}">{_e(status)}</span><code>{_e(run_id)}</code></div>',
        f'<div class="tr-meta">{meta}</div>',
    ]
    if run.get("error_summary"):
        parts.append(f'<div class="tr-errsum">error: {_e(run["error_summary"])}</div>')
    parent_id = run.get("parent_run_id")
    if parent_id:
        name = f" ({_e(parent_run.get('name'))})" if parent_run and parent_run.get("name") else ""
        parts.append(
            f'<div class="tr-meta">parent run <a class="tr-runlink" href="{_e(link(str(parent_id)))}">'
            f"<code>{_e(parent_id)}</code></a>{name}</div>"
        )
    if caption is not None:
        parts.append(f'<div class="tr-result">result <code>{_e(caption)}</code></div>')
    return "".join(parts)


def waterfall_html(
    run: Mapping[str, Any],
    spans: Sequence[Mapping[str, Any]],
    sub_runs: Sequence[Mapping[str, Any]] = (),
    parent_run: Mapping[str, Any] | None = None,
    notes: Iterable[str] = (),
    caption: str | None = None,
    link: Callable[[str], str] = anchor_link,
    bodies: bool = True,
) -> str:
    """The run's waterfall as one self-contained HTML fragment (``caption``: a result shown above it;
    ``link``: the URL of another run, for sub-run and parent links — an anchor on the page by default,
    ``/runs/<id>`` in the dashboard; ``bodies=False``: an opened span row shows its id, start and
    status only — the dashboard shows the rest in its span panel)."""
    notes = list(notes)
    now = time.time_ns()
    rows = _ordered_rows(run, spans, sub_runs)
    starts: list[int] = [item["start_ns"] for item, _, _, _ in rows if item.get("start_ns") is not None]
    ends: list[int] = [
        item.get("end_ns") or now for item, _, _, _ in rows if item.get("start_ns") is not None
    ]
    t0 = min(starts, default=0)
    total = max(max(ends, default=t0) - t0, 1)
    if len(rows) > MAX_ROWS:
        notes.append(f"{len(rows) - MAX_ROWS} more spans are not shown")
        rows = rows[:MAX_ROWS]
    run_id = str(run.get("run_id"))
    axis = (t0, total, now)
    body = "".join(
        _row(item, depth, parent, is_sub, axis, link, bodies) for item, depth, parent, is_sub in rows
    )
    if not rows:
        body = '<div class="tr-note">(no spans recorded for this run)</div>'
    columns = (
        '<div class="tr-grid tr-cols"><span>span</span>'
        f"{_axis(total / 1e6)}"
        '<span class="tr-num">duration</span><span class="tr-num">tokens</span><span class="tr-num">cost</span></div>'
    )
    footer = "".join(f'<div class="tr-note">{_e(note)}</div>' for note in notes)
    return (
        f'<div class="trodo-run" id="trodo-run-{_e(run_id)}" data-run-id="{_e(run_id)}">'
        f"<style>{_CSS}</style>{_header(run, parent_run, caption, link)}{columns}{body}{footer}</div>"
    )

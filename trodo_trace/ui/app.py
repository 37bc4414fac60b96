"""The dashboard's Starlette app: pages over the local store, one JSON endpoint for live updates,
one form endpoint for feedback.

Pages are Jinja2 templates with autoescape on; the only markup built in Python (the waterfall, the
charts) escapes every value itself. Links are built from ids with ``quote`` only. A strict
Content-Security-Policy allows the package's own script and no inline script, so even text that
slipped through could not run. The store is opened read-only per request; the feedback form is the
only write, made through the same code as ``trodo.feedback``.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._internal.display.waterfall import waterfall_html
from . import queries, views

HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        b" connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the CSP and friends to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def run_url(run_id: str) -> str:
    return "/runs/" + quote(str(run_id), safe="")


def conversation_url(conversation_id: str) -> str:
    return "/conversations/" + quote(str(conversation_id), safe="")


def user_url(distinct_id: str) -> str:
    return "/users/" + quote(str(distinct_id), safe="")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
    )
    env.filters.update(
        time=views.fmt_time,
        duration=views.fmt_duration,
        cost=views.fmt_cost,
        tokens=views.fmt_tokens,
        pretty=views.pretty,
        compact=views.compact,
        run_url=run_url,
        conversation_url=conversation_url,
        user_url=user_url,
        q=lambda value: quote(str(value), safe=""),
    )
    return Jinja2Templates(env=env)


class Dashboard:
    """Request handlers bound to one store file."""

    def __init__(self, store: Path):
        self.store = Path(store)
        self.templates = _templates()
        self.token = secrets.token_urlsafe(24)  # the feedback form's anti-forgery token

    def _page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.update(store=str(self.store), token=self.token, nav=name.split(".")[0])
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def _read(self, request: Request, body: Callable[[sqlite3.Connection], Response]) -> Response:
        try:
            conn = queries.connect(self.store)
        except (ValueError, sqlite3.Error) as exc:
            return self._page(request, "error.html", 503, message=f"cannot open the store: {exc}")
        try:
            return body(conn)
        except sqlite3.Error as exc:
            return self._page(request, "error.html", 503, message=f"cannot read the store: {exc}")
        finally:
            conn.close()

    def _not_found(self, request: Request, what: str) -> Response:
        return self._page(request, "error.html", 404, message=f"{what} not found in {self.store}")

    # -- pages ------------------------------------------------------------------------------------
    def runs(self, request: Request) -> Response:
        filters = queries.RunFilters.from_query(request.query_params)

        def body(conn: sqlite3.Connection) -> Response:
            try:
                rows, more = queries.list_runs(conn, filters)
            except queries.QueryTooSlow as exc:
                rows, more = [], False
                filters.errors.append(str(exc))
            return self._page(
                request,
                "runs.html",
                runs=rows,
                more=more,
                filters=filters,
                names=queries.distinct_names(conn),
                newest=max((row.get("start_ns") or 0 for row in rows), default=0),
                live=filters.page == 1 and filters.sort == "started" and filters.order == "desc",
            )

        return self._read(request, body)

    def runs_since(self, request: Request) -> Response:
        filters = queries.RunFilters.from_query(request.query_params)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return JSONResponse({"error": "after must be an integer (nanoseconds)"}, status_code=400)

        def body(conn: sqlite3.Connection) -> Response:
            rows = queries.runs_since(conn, filters, after)
            template = self.templates.get_template("_run_rows.html")
            return JSONResponse(
                {
                    "count": len(rows),
                    "newest": max((row.get("start_ns") or 0 for row in rows), default=after),
                    "html": template.render(runs=rows),
                }
            )

        return self._read(request, body)

    def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def body(conn: sqlite3.Connection) -> Response:
            run = queries.get_run(conn, run_id)
            if run is None:
                return self._not_found(request, f"run {run_id}")
            spans = queries.get_spans(conn, run_id)
            subs = queries.sub_runs(conn, run_id)
            parent = queries.get_run(conn, run["parent_run_id"]) if run.get("parent_run_id") else None
            waterfall = Markup(
                waterfall_html(run, spans, subs, parent, link=run_url, bodies=False)
            )  # escapes its text
            return self._page(
                request,
                "run.html",
                run=run,
                parent=parent,
                subs=subs,
                waterfall=waterfall,
                events=queries.run_events(conn, run),
                span_count=len(spans),
            )

        return self._read(request, body)

    def span(self, request: Request) -> Response:
        run_id, span_id = request.path_params["run_id"], request.path_params["span_id"]

        def body(conn: sqlite3.Connection) -> Response:
            span = queries.get_span(conn, run_id, span_id)
            if span is None:
                return HTMLResponse("<p>span not found</p>", status_code=404)
            attributes = span["attributes"] if isinstance(span["attributes"], dict) else {}
            return self._page(
                request,
                "span.html",
                span=span,
                attributes=sorted(attributes.items()),
                messages=views.chat_messages(attributes),
                stack=views.exception_stack(span),
                plain_input=attributes.get("input.value"),
                plain_output=attributes.get("output.value"),
            )

        return self._read(request, body)

    def conversation(self, request: Request) -> Response:
        conversation_id = request.path_params["conversation_id"]

        def body(conn: sqlite3.Connection) -> Response:
            runs = queries.conversation_runs(conn, conversation_id)
            if not runs:
                return self._not_found(request, f"conversation {conversation_id}")
            turns = views.conversation_turns(runs)
            return self._page(
                request,
                "conversation.html",
                conversation_id=conversation_id,
                turns=turns,
                total_tokens=sum(turn["total_tokens"] for turn in turns),
                total_cost=sum(turn["total_cost"] for turn in turns),
            )

        return self._read(request, body)

    def user(self, request: Request) -> Response:
        distinct_id = request.path_params["distinct_id"]

        def body(conn: sqlite3.Connection) -> Response:
            items = queries.user_timeline(conn, distinct_id)
            return self._page(request, "user.html", distinct_id=distinct_id, items=items)

        return self._read(request, body)

    def events(self, request: Request) -> Response:
        filters = queries.EventFilters.from_query(request.query_params)

        def body(conn: sqlite3.Connection) -> Response:
            events, more = queries.list_events(conn, filters)
            return self._page(request, "events.html", events=events, more=more, filters=filters)

        return self._read(request, body)

    def overview(self, request: Request) -> Response:
        def body(conn: sqlite3.Connection) -> Response:
            data = queries.overview(conn)
            days = [(views.fmt_time(day)[:10], bucket) for day, bucket in data["days"]]
            agents = [(name, bucket) for name, bucket in data["agents"]]
            charts = []
            for title, key, unit in (
                ("Runs per day", "runs", ""),
                ("Error rate per day", "error_rate", "%"),
                ("p50 latency per day", "p50", "ms"),
                ("p95 latency per day", "p95", "ms"),
                ("Tokens per day", "tokens", ""),
                ("Cost per day", "cost", "$"),
            ):
                charts.append(views.bar_chart(title, [(label, b[key]) for label, b in days], unit))
            agent_charts = [
                views.bar_chart(title, [(name, b[key]) for name, b in agents], unit)
                for title, key, unit in (
                    ("Runs per agent", "runs", ""),
                    ("Cost per agent", "cost", "$"),
                    ("p95 latency per agent", "p95", "ms"),
                )
            ]
            return self._page(
                request, "overview.html", data=data, charts=charts, agent_charts=agent_charts, agents=agents
            )

        return self._read(request, body)

    # -- the one write ------------------------------------------------------------------------------
    async def add_feedback(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        form = await _form(request)
        if form is None:
            return self._page(request, "error.html", 400, message="expected a form of at most 64 KB")
        token = str(form.get("token") or "")
        if not hmac.compare_digest(token, self.token):
            return self._page(request, "error.html", 403, message="the form expired: reload the page")
        score_text = str(form.get("score") or "")
        comment = str(form.get("comment") or "").strip() or None
        score = {"up": 1.0, "down": 0.0}.get(score_text)
        try:
            write_feedback(self.store, run_id, score=score, comment=comment)
        except ValueError as exc:
            return self._page(request, "error.html", 400, message=str(exc))
        return RedirectResponse(run_url(run_id) + "#feedback", status_code=303)


async def _form(request: Request, limit: int = 65536) -> dict[str, str] | None:
    """The urlencoded form body (the only kind the page sends), or None if it is not one or too long."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def write_feedback(store: Path, run_id: str, *, score: float | None, comment: str | None) -> None:
    """Validate and store one feedback exactly as ``trodo.feedback`` does (event row + feedback row)."""
    from .._internal.events.feedback import build_event
    from .._internal.events.sink import to_rows
    from .._internal.store import feedback as feedback_store
    from .._internal.store.local import LocalStore

    conn = queries.connect(store)
    try:
        if queries.get_run(conn, run_id) is None:
            raise ValueError(f"no run {run_id} in {store}")
    finally:
        conn.close()
    event = build_event(run_id, score=score, comment=comment, name="feedback", distinct_id="dashboard")
    rows = to_rows([event])
    local = LocalStore(store, create=False)
    try:
        local.write_events(rows)
    finally:
        local.close()
    feedback_store.write(store, feedback_store.rows_from_events(rows))


def create_app(store: str | Path, *, allowed_hosts: set[str] | None = None) -> Starlette:
    """The dashboard app over the store file at ``store`` (``allowed_hosts``: Host header values
    accepted; empty or None accepts any)."""
    dashboard = Dashboard(Path(store))
    routes = [
        Route("/", dashboard.runs),
        Route("/favicon.ico", lambda request: RedirectResponse("/static/favicon.svg", status_code=301)),
        Route("/overview", dashboard.overview),
        Route("/events", dashboard.events),
        Route("/api/runs", dashboard.runs_since),
        Route("/runs/{run_id:str}", dashboard.run),
        Route("/runs/{run_id:str}/spans/{span_id:str}", dashboard.span),
        Route("/runs/{run_id:str}/feedback", dashboard.add_feedback, methods=["POST"]),
        Route("/conversations/{conversation_id:path}", dashboard.conversation),
        Route("/users/{distinct_id:path}", dashboard.user),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=sorted(allowed_hosts)))
    return Starlette(routes=routes, middleware=middleware)

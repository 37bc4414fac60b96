"""The dashboard over HTTP (no browser): ``trodo-trace ui`` as a subprocess serving a store the SDK
wrote; filters, pages, the JSON endpoint, the feedback form's guards, security headers, the
read-only store, and ``trodo.ui()`` in-process."""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import sqlite3
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest
from ui_browser import build_store, dashboard

import trodo_trace as trodo
from trodo_trace.ui import server as ui_server


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("ui") / "trodo.db")


@pytest.fixture(scope="module")
def url(store):
    with dashboard(store) as address:
        yield address


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read().decode()


def _post(url: str, fields: dict[str, str], content_type: str = "application/x-www-form-urlencoded") -> int:
    request = urllib.request.Request(
        url, data=urlencode(fields).encode(), headers={"Content-Type": content_type}, method="POST"
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code


def _runs(store, where: str = "1") -> list[dict]:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM runs WHERE {where} ORDER BY start_ns DESC")]
    finally:
        conn.close()


def _listed(html: str) -> list[str]:
    return re.findall(r'<tr class="run-row[^"]*" data-run-id="([0-9a-f]+)"', html)


def test_every_single_filter_selects_the_matching_runs(store, url):
    """Each filter of the runs list, alone, lists exactly the runs it should, newest first."""
    runs = _runs(store)
    ids = {r["name"]: r["run_id"] for r in runs}
    travel = [r["run_id"] for r in runs if r["name"] == "travel-assistant"]
    conversation = runs[-1]["conversation_id"]
    slowest = max(runs, key=lambda r: r["duration_ms"])
    cases = {
        "name=travel-assistant": travel,
        "user=alice": [ids["support-bot"]],
        f"conversation={conversation}": [r["run_id"] for r in runs if r["conversation_id"] == conversation],
        "status=ok": [r["run_id"] for r in runs],
        "status=error": [],
        "model=gpt-4o-mini": _with_model(store, "gpt-4o-mini"),
        "q=umbrella": [r["run_id"] for r in runs if "umbrella" in _root_io(store, r).lower()],
        "q=A-17": [ids["support-bot"]],
        f"min_duration={slowest['duration_ms'] - 0.001}": [slowest["run_id"]],
        "min_cost=0.0001": [r["run_id"] for r in runs if (r["cost"] or 0) >= 0.0001],
        "since=2000-01-01": [r["run_id"] for r in runs],
        "until=2000-01-01": [],
    }
    for query, expected in cases.items():
        status, _, html = _get(f"{url}/?{query}")
        assert status == 200, query
        assert sorted(_listed(html)) == sorted(expected), query
        assert _listed(html) == [r["run_id"] for r in runs if r["run_id"] in expected], query


def _with_model(store, model: str) -> list[str]:
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute(
            "SELECT DISTINCT run_id FROM spans WHERE json_extract(attributes, '$.\"gen_ai.request.model\"') = ?",
            (model,),
        ).fetchall()
    finally:
        conn.close()
    assert rows
    return [row[0] for row in rows]


def _root_io(store, run: dict) -> str:
    conn = sqlite3.connect(store)
    try:
        (attributes,) = conn.execute(
            "SELECT attributes FROM spans WHERE trace_id = ? AND span_id = ?",
            (run["trace_id"], run["root_span_id"]),
        ).fetchone()
    finally:
        conn.close()
    data = json.loads(attributes)
    return f"{data.get('input.value', '')} {data.get('output.value', '')}"


def test_bad_filter_values_are_reported_not_crashing(url):
    """A malformed date or number is shown as a message; the list still renders."""
    status, _, html = _get(f"{url}/?since=yesterday&min_cost=lots&status=maybe&sort=evil&page=x")
    assert status == 200
    assert "since must look like 2026-01-31" in html
    assert "min cost must be a number" in html
    assert "status must be ok or error" in html


def test_pages_answer_with_security_headers_and_404s(store, url):
    """Every page carries a CSP without inline script; unknown ids are 404 pages, not errors."""
    run = _runs(store)[0]
    for path in (
        "/",
        "/overview",
        "/events",
        f"/runs/{run['run_id']}",
        "/users/alice",
        "/conversations/support-1",
    ):
        status, headers, html = _get(url + path)
        assert status == 200, path
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert (
            "'unsafe-inline'" not in headers["content-security-policy"].split("script-src")[1].split(";")[0]
        )
        assert headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in html and '<script src="/static/app.js" defer></script>' in html
    for path in (
        "/runs/0000",
        "/conversations/none",
        "/runs/x/spans/0000000000000000",
        "/static/../queries.py",
    ):
        status, _, _ = _get(url + path)
        assert status == 404, path


def test_live_endpoint_returns_newer_runs_only(store, url):
    """/api/runs?after=NS returns the rows of runs started after NS, rendered and escaped."""
    runs = _runs(store)
    status, _, body = _get(f"{url}/api/runs?after={runs[1]['start_ns']}")
    assert status == 200
    data = json.loads(body)
    assert data["count"] == 1 and data["newest"] == runs[0]["start_ns"]
    assert _listed(data["html"]) == [runs[0]["run_id"]]
    status, _, body = _get(f"{url}/api/runs?after={runs[0]['start_ns']}&user=alice")
    assert json.loads(body)["count"] == 0
    assert _get(f"{url}/api/runs?after=soon")[0] == 400


def test_feedback_form_needs_the_page_token_and_an_existing_run(store, url):
    """Posts without the page's token, with another content type or for an unknown run are refused."""
    run_id = _runs(store)[0]["run_id"]
    _, _, html = _get(f"{url}/runs/{run_id}")
    token = re.search(r'name="token" value="([^"]+)"', html).group(1)
    before = _feedback_count(store)
    assert _post(f"{url}/runs/{run_id}/feedback", {"score": "up"}) == 403
    assert _post(f"{url}/runs/{run_id}/feedback", {"score": "up", "token": "forged"}) == 403
    assert _post(f"{url}/runs/{run_id}/feedback", {"token": token}, "text/plain") == 400
    assert _post(f"{url}/runs/nope/feedback", {"score": "up", "token": token}) == 400
    assert _post(f"{url}/runs/{run_id}/feedback", {"token": token}) == 400  # no score, no comment
    assert _feedback_count(store) == before
    assert _post(f"{url}/runs/{run_id}/feedback", {"score": "up", "token": token, "comment": "ok"}) == 303
    assert _feedback_count(store) == before + 1


def _feedback_count(store) -> int:
    conn = sqlite3.connect(store)
    try:
        return conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    finally:
        conn.close()


def test_a_foreign_host_header_is_refused(url):
    """On loopback, a request naming another host (DNS rebinding) gets 400."""
    assert _get(url + "/", {"Host": "attacker.example"})[0] == 400
    assert _get(url + "/", {"Host": "localhost"})[0] == 200


def test_reading_pages_does_not_change_the_store(tmp_path):
    """The store is opened read-only: browsing every page leaves the database file byte for byte."""
    store = build_store(tmp_path / "trodo.db")
    digest = hashlib.sha256(store.read_bytes()).hexdigest()
    runs = _runs(store)
    with dashboard(store) as address:
        for path in ["/", "/overview", "/events", "/users/alice", *(f"/runs/{r['run_id']}" for r in runs)]:
            assert _get(address + path)[0] == 200
    assert hashlib.sha256(store.read_bytes()).hexdigest() == digest


def test_non_loopback_hosts_are_warned_about(capsys):
    """Loopback names pass quietly; any other bind address prints that the content is exposed."""
    assert [ui_server.is_loopback(h) for h in ("127.0.0.1", "127.0.0.5", "::1", "[::1]", "localhost")] == [
        True
    ] * 5
    assert [ui_server.is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.com")] == [False] * 4
    ui_server._warn_exposed("127.0.0.1")
    assert capsys.readouterr().err == ""
    ui_server._warn_exposed("0.0.0.0")
    assert "WARNING: the dashboard listens on 0.0.0.0" in capsys.readouterr().err


def test_cli_ui_without_a_store_is_a_clear_error(tmp_path, capsys):
    """trodo-trace ui on a missing store exits 1 with one line naming the path."""
    from trodo_trace import cli

    assert cli.main(["ui", "--store", str(tmp_path / "none.db")]) == 1
    assert f"no local store at {tmp_path / 'none.db'}" in capsys.readouterr().err


def test_trodo_ui_starts_once_in_a_thread_and_returns_its_url(store):
    """trodo.ui() serves the store in the background and returns the URL; a second call reuses it."""
    ui_module = importlib.import_module("trodo_trace.ui")  # the package (trodo_trace.ui is the function)

    try:
        address = trodo.ui(port=0, store=store)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", address)
        status, _, html = _get(address)
        assert status == 200 and "support-bot" in html
        assert trodo.ui(port=int(address.rsplit(":", 1)[1].strip("/")), store=store) == address
        assert len(ui_module._servers) == 1
        with pytest.raises(ValueError, match="no local store at"):
            trodo.ui(port=0, store=store.parent / "missing.db")
    finally:
        for running in ui_module._servers.values():
            running.stop()
        ui_module._servers.clear()


def test_trodo_ui_in_a_notebook_displays_a_link(store):
    """In an IPython shell (as in Jupyter), trodo.ui() also displays the URL as an escaped link."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ui_module = importlib.import_module("trodo_trace.ui")
    shell = InteractiveShell.instance()
    try:
        with capture_output() as shown:
            address = trodo.ui(port=0, store=store)
        (output,) = shown.outputs
        assert output.data["text/html"] == (
            f'<a href="{address}" target="_blank" rel="noopener">trodo dashboard: {address}</a>'
        )
    finally:
        for running in ui_module._servers.values():
            running.stop()
        ui_module._servers.clear()
        InteractiveShell.clear_instance()
        del shell

"""The dashboard in a real browser: headless system Chromium driven by Playwright against
``trodo-trace ui`` serving a store the SDK wrote (the demo, an OpenAI-SDK support bot, events, feedback).

Each test saves a screenshot of every page it visits under its tmp dir.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from urllib.parse import quote

import pytest
from ui_browser import browser_page, build_store, dashboard

pytestmark = pytest.mark.serial  # a browser and a server process each: heavy for the parallel part


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("ui") / "trodo.db")


def _runs(store, where: str = "1", params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(store)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM runs WHERE {where} ORDER BY start_ns", params)]
    finally:
        conn.close()


def _axis_labels(page) -> list[tuple[str, float, float]]:
    """The waterfall's time-axis labels as the browser lays them out: (text, left, right) in pixels."""
    return [
        (box["text"], box["left"], box["right"])
        for box in page.eval_on_selector_all(
            "#waterfall .tr-axis .tr-tick",
            "els => els.map(e => { const r = e.getBoundingClientRect();"
            " return {text: e.textContent, left: r.left, right: r.right}; })",
        )
    ]


def test_runs_list_filters_and_run_page_with_spans_and_sub_run_links(store, tmp_path):
    """Runs list with badges → filter by agent (state in the URL) → a run's waterfall → a span's chat
    messages → the sub-run link and back to the parent."""
    runs = _runs(store)
    parent = next(
        r for r in runs if r["run_id"] == _runs(store, "parent_run_id IS NOT NULL")[0]["parent_run_id"]
    )
    sub = _runs(store, "parent_run_id IS NOT NULL")[0]
    with dashboard(store) as url, browser_page() as page:
        page.goto(url + "/")
        rows = page.locator("tr.run-row")
        assert rows.count() == len(runs) == 4
        assert [rows.nth(i).get_attribute("data-run-id") for i in range(4)] == [
            r["run_id"] for r in reversed(runs)
        ]
        assert page.locator("tr.run-row a.badge.conv").first.inner_text() in (
            "Conversation · 2",
            "Conversation · 1",
        )
        badges = {page.locator(f'tr[data-run-id="{r["run_id"]}"] .badge.conv').inner_text() for r in runs[:3]}
        assert badges == {"Conversation · 2"}  # two turns; the sub-run is not a turn
        page.screenshot(path=str(tmp_path / "runs-list.png"), full_page=True)

        page.fill("input[name=name]", "travel-assistant")
        page.click("form#run-filters button[type=submit]")
        page.wait_for_url("**/?name=travel-assistant*")
        assert page.locator("tr.run-row").count() == 2
        assert set(page.locator("tr.run-row td.name a").all_inner_texts()) == {"travel-assistant"}
        page.reload()
        assert page.input_value("input[name=name]") == "travel-assistant"  # the filter lives in the URL

        page.goto(url + "/?q=" + quote("umbrella"))
        assert {r.get_attribute("data-run-id") for r in page.locator("tr.run-row").all()} == {
            r["run_id"] for r in runs if "umbrella" in r["name"] or r["run_id"] == parent["run_id"]
        }
        page.goto(url + "/?sort=cost&order=asc")
        costs = [r["cost"] for r in _runs(store) if r["cost"] is not None]
        assert page.locator("tr.run-row").first.get_attribute("data-run-id") == next(
            r["run_id"] for r in runs if r["cost"] == min(costs)
        )

        # The support bot: an LLM span with chat messages (roles, tool call, tool result).
        support = next(r for r in runs if r["name"] == "support-bot")
        page.goto(url + "/")
        page.click(f'tr[data-run-id="{support["run_id"]}"] td.name a')
        page.wait_for_url(f"**/runs/{support['run_id']}")
        spans = page.locator("#waterfall details.tr-span")
        assert spans.count() == support["span_count"]
        llm = page.locator('#waterfall details.tr-span[data-kind="llm"]').nth(1)
        llm.locator("summary").click()
        assert llm.get_attribute("open") is not None  # expanded in place
        page.wait_for_selector("#span-panel .span-detail")
        panel = page.locator("#span-panel")
        roles = panel.locator("ol.chat li .role").all_inner_texts()
        assert [r.split(" ·")[0].lower() for r in roles] == [
            "system",
            "user",
            "assistant",
            "tool",
            "assistant",
        ]
        assert "lookup_order" in panel.locator(".tool-call").first.inner_text()
        assert "Your order A-17 ships tomorrow." in panel.inner_text()
        page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
        feedback_items = page.locator("#run-events .feedback-item").all_inner_texts()
        assert len(feedback_items) == 1 and "fast answer" in feedback_items[0]
        assert "order_status_viewed" in page.locator("#run-events").inner_text()

        # Sub-run links, both ways.
        page.goto(url + "/runs/" + parent["run_id"])
        page.click("#sub-runs a.sub-link")
        page.wait_for_url(f"**/runs/{sub['run_id']}")
        assert "triggered this run" in page.locator("#parent-link").inner_text()
        page.screenshot(path=str(tmp_path / "sub-run.png"), full_page=True)
        # A run of a fraction of a millisecond to a few: the axis keeps its labels apart and distinct.
        for width in (1400, 1024, 800):
            page.set_viewport_size({"width": width, "height": 900})
            labels = _axis_labels(page)
            texts = [text for text, _, _ in labels]
            assert texts[0] == "0" and 2 <= len(texts) <= 5 and len(set(texts)) == len(texts), labels
            assert all(a[2] + 4 <= b[1] for a, b in itertools.pairwise(labels)), (width, labels)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.click("#parent-link a")
        page.wait_for_url(f"**/runs/{parent['run_id']}")
        sub_row = page.locator(f'#waterfall details.tr-subrun[data-run-id="{sub["run_id"]}"]')
        assert sub_row.count() == 1
        sub_row.locator("a.tr-runlink").click()
        page.wait_for_url(f"**/runs/{sub['run_id']}")
        assert page.trodo_problems == []


def test_conversation_user_events_and_overview_pages(store, tmp_path):
    """The conversation stacks its turns with the sub-run nested; the user page interleaves runs and
    events; the events page filters server_error with its stack trace; the overview draws SVG charts."""
    runs = _runs(store)
    conversation = runs[0]["conversation_id"]
    with dashboard(store) as url, browser_page() as page:
        page.goto(url + "/")
        page.locator("tr.run-row a.badge.conv").last.click()
        page.wait_for_url(f"**/conversations/{conversation}")
        turns = page.locator("#turns > li.turn")
        assert turns.count() == 2
        assert page.locator("h1").inner_text() == "Conversation · 2"
        assert turns.nth(0).locator(".turn-run.depth-1").count() == 0
        nested = turns.nth(1).locator(".turn-run.depth-1")
        assert nested.count() == 1 and "umbrella-advisor" in nested.inner_text()
        page.screenshot(path=str(tmp_path / "conversation.png"), full_page=True)

        page.goto(url + "/users/alice")
        items = page.locator("#user-timeline > li")
        kinds = [item.get_attribute("class").split()[0] for item in items.all()]
        assert sorted(kinds) == ["tl-event", "tl-event", "tl-event", "tl-run"]  # track, error, feedback + run
        assert kinds[0] == "tl-event"  # newest first: the feedback came last
        page.screenshot(path=str(tmp_path / "user.png"), full_page=True)

        page.goto(url + "/events")
        page.fill("input[name=name]", "server_error")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**/events?name=server_error*")
        rows = page.locator("#events-table tbody tr")
        assert rows.count() == 1
        assert "ConnectionError: payment gateway unreachable" in rows.first.inner_text()
        rows.first.locator("details summary").click()
        assert "raise ConnectionError" in rows.first.locator("pre.stack").inner_text()
        page.screenshot(path=str(tmp_path / "events.png"), full_page=True)

        page.goto(url + "/overview")
        assert page.locator("figure.chart svg").count() == 9
        assert page.locator("figure.chart svg rect.bar").count() > 0
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        page.click("#theme-toggle")
        assert page.evaluate("document.documentElement.getAttribute('data-theme')") == "dark"
        page.screenshot(path=str(tmp_path / "overview-dark.png"), full_page=True)
        assert page.trodo_problems == []


def test_feedback_from_the_page_and_new_runs_without_reload(tmp_path):
    """Thumbs-down + comment on a run appears on its timeline and in the feedback table; a run written
    by another process shows up on the open runs list without a reload."""
    store = build_store(tmp_path / "trodo.db")
    target = _runs(store)[0]
    with dashboard(store) as url, browser_page() as page:
        page.goto(url + "/runs/" + target["run_id"])
        page.check("#feedback-form input[value=down]")
        page.fill("#feedback-form input[name=comment]", "wrong city <b>bold</b>")
        page.click("#feedback-form button[type=submit]")
        page.wait_for_url(f"**/runs/{target['run_id']}#feedback")
        item = page.locator("#run-events .feedback-item")
        assert item.count() == 1
        assert "▼ bad" in item.inner_text() and "wrong city <b>bold</b>" in item.inner_text()
        page.screenshot(path=str(tmp_path / "feedback.png"), full_page=True)
        conn = sqlite3.connect(store)
        try:
            rows = conn.execute(
                "SELECT run_id, name, score, comment FROM feedback WHERE comment LIKE 'wrong%'"
            ).fetchall()
        finally:
            conn.close()
        assert rows == [(target["run_id"], "feedback", 0.0, "wrong city <b>bold</b>")]

        page.goto(url + "/")
        before = page.locator("tr.run-row").count()
        script = (
            "import sys, trodo_trace as trodo\n"
            "trodo.init(store_path=sys.argv[1])\n"
            "trodo.wrap_agent('late-agent', lambda run: 'done', distinct_id='bob')\n"
            "trodo.shutdown(10.0)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "TRODO_RAISE_INTERNAL"}
        subprocess.run([sys.executable, "-c", script, str(store)], check=True, timeout=60, env=env)
        page.wait_for_selector("tr.run-row.fresh", timeout=15_000)
        assert page.locator("tr.run-row").count() == before + 1
        assert page.locator("tr.run-row").first.locator("td.name").inner_text().startswith("late-agent")
        assert "1 new run" in page.locator("#live-note").inner_text()
        assert page.trodo_problems == []


HOSTILE_MARKERS = ("<script>alert('script')</script>", '"><img src=x onerror=alert("img")>')


def test_hostile_store_executes_nothing(tmp_path):
    """Names, ids, inputs, errors, events and feedback full of markup and javascript: URLs render as
    text on every page: no dialog, no console error, no page error, no javascript: link."""
    store = build_store(tmp_path / "hostile.db", hostile=True)
    runs = _runs(store)
    conn = sqlite3.connect(store)
    try:
        span_rows = conn.execute("SELECT run_id, span_id FROM spans").fetchall()
    finally:
        conn.close()
    with dashboard(store) as url, browser_page() as page:
        pages = ["/", "/overview", "/events", "/events?name=server_error"]
        pages += [f"/runs/{r['run_id']}" for r in runs]
        pages += [f"/users/{quote(r['distinct_id'], safe='')}" for r in runs]
        pages += [f"/conversations/{quote(r['conversation_id'], safe='')}" for r in runs]
        pages += [
            f"/?user={quote(r['distinct_id'], safe='')}&q={quote(HOSTILE_MARKERS[0])}" for r in runs[:1]
        ]
        for index, path in enumerate(pages):
            response = page.goto(url + path)
            assert response is not None and response.status == 200, path
            hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
            assert not [h for h in hrefs if h.strip().lower().startswith(("javascript:", "data:"))], path
            assert page.locator("script:not([src])").count() == 0, path
            assert page.locator("img").count() == 0 and page.locator("svg[onload]").count() == 0, path
            if path.startswith("/runs/"):
                for summary in page.locator("#waterfall details.tr-span:not(.tr-subrun) > summary").all():
                    summary.click()
                    page.wait_for_selector("#span-panel .span-detail")
            page.screenshot(path=str(tmp_path / f"hostile-{index}.png"), full_page=True)
        page.goto(url + "/runs/" + runs[0]["run_id"])
        text = page.locator("main").inner_text()
        assert HOSTILE_MARKERS[0] in text  # shown as text
        assert json.dumps(span_rows)  # every span was clicked above
        assert page.trodo_problems == [], page.trodo_problems

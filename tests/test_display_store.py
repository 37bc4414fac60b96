"""Displays that involve the exporter and the local store: other processes, a blocked or broken store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from display_html import external_references, parse, row_tree, rows
from IPython.lib.pretty import pretty

import trodo_trace as trodo
from trodo_trace import cli
from trodo_trace._internal import runtime as runtime_mod
from trodo_trace._internal.core import spans as spans_mod
from trodo_trace._internal.store.local import LocalStore


@pytest.fixture(autouse=True)
def _no_recent_runs():
    """Runs finished by earlier tests are not looked up by id."""
    spans_mod.RECENT_RUNS.clear()
    yield
    spans_mod.RECENT_RUNS.clear()


CHILD = textwrap.dedent(
    """
    import trodo_trace as trodo

    @trodo.tool
    def lookup(city):
        return {"city": city}

    @trodo.tool
    def broken():
        raise ValueError("bad <input>")

    @trodo.llm(model="gpt-4o-mini", provider="openai")
    def plan(question):
        return {"usage": {"prompt_tokens": 50, "completion_tokens": 5}}

    @trodo.agent("helper", sub_run=True)
    def helper():
        return lookup("Oslo")

    def main(run):
        lookup("Paris")
        plan("where to?")
        helper()
        try:
            broken()
        except ValueError:
            pass
        return "ok"

    _, run_id = trodo.wrap_agent("planner", main, distinct_id="u-7")
    print(run_id)
    """
)


def _leaf(name: str, kind: str, status: str = "ok") -> dict:
    return {"name": name, "kind": kind, "status": status, "children": []}


def test_show_renders_a_run_stored_by_another_process(capsys):
    """show(run_id) reads a run another process wrote: waterfall, sub-run row, and the CLI's text tree."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    run_id = done.stdout.strip()
    view = trodo.show(run_id)
    assert view.source == "store" and view.name == "planner" and view.run["distinct_id"] == "u-7"
    document = parse(view.to_html())
    assert external_references(document) == []
    assert row_tree(document) == [
        {
            "name": "planner",
            "kind": "run",
            "status": "ok",
            "children": [
                _leaf("lookup", "tool"),
                _leaf("plan", "llm"),
                _leaf("helper", "run"),
                _leaf("broken", "tool", "error"),
            ],
        }
    ]
    by_name = {row.find("tr-label").text(): row for row in rows(document)}
    assert by_name["plan"].find("tr-tok").text() == "50→5"
    (sub,) = view.sub_runs
    assert by_name["helper"].attrs["data-run-id"] == sub["run_id"]
    assert by_name["helper"].attrs["data-parent-id"] == view.run["root_span_id"]
    assert "tr-err" in by_name["broken"].classes
    assert by_name["broken"].find("tr-errmsg").text() == "ValueError: bad <input>"

    assert cli.main(["show", run_id]) == 0
    assert capsys.readouterr().out == view.to_text() + "\n" == pretty(view) + "\n"
    assert trodo.show(run_id[:8]).run_id == run_id
    sub_view = trodo.show(sub["run_id"])
    assert row_tree(parse(sub_view.to_html())) == [
        {"name": "helper", "kind": "run", "status": "ok", "children": [_leaf("lookup", "tool")]}
    ]
    assert f"Parent run: {run_id}  planner  ok" in sub_view.to_text()


EXPECTED = [
    {
        "name": "checkout",
        "kind": "run",
        "status": "ok",
        "children": [_leaf("lookup", "tool"), _leaf("plan", "llm")],
    }
]


def _checkout(run):
    trodo.tool("lookup")(lambda: 1)()
    with trodo.llm("plan", model="gpt-4o-mini") as span:
        span.set_usage(input_tokens=10, output_tokens=2)
    return "paid"


@pytest.mark.serial
def test_display_right_after_the_call_while_the_exporter_is_blocked(tmp_path):
    """With the export worker stuck on a locked store, the run still displays at once from memory."""
    path = tmp_path / "locked.db"
    with LocalStore(path) as store:
        store.open()
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        trodo.init(store_path=str(path), schedule_delay_ms=10)
        pair = trodo.wrap_agent("checkout", _checkout)
        deadline = time.monotonic() + 5
        while trodo.stats()["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # the worker has taken the batch and waits on the lock
        started = time.monotonic()
        shown = [pair._repr_html_(), trodo.last_run()._repr_html_(), trodo.show(pair[1]).to_html()]
        text = pretty(trodo.last_run())
        assert time.monotonic() - started < 1.0
        assert trodo.stats()["exported"] == 0
        assert [row_tree(parse(markup)) for markup in shown] == [EXPECTED] * 3
        assert "[llm] plan" in text and "tokens 10→2" in text
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert trodo.flush(30)
    assert row_tree(parse(trodo.show(pair[1], store=path).to_html())) == EXPECTED


def test_display_works_when_the_store_cannot_be_written(tmp_path):
    """A store path that cannot be created fails the export, never the display."""
    blocked_dir = tmp_path / "not-a-directory"
    blocked_dir.write_text("a file where the store's directory should be")
    trodo.init(store_path=str(blocked_dir / "trodo.db"))
    pair = trodo.wrap_agent("checkout", _checkout)
    assert not trodo.flush(5)
    assert trodo.stats()["exported"] == 0
    assert row_tree(parse(pair._repr_html_())) == EXPECTED
    assert row_tree(parse(trodo.show(pair[1]).to_html())) == EXPECTED


def test_run_end_exports_at_once_only_in_interactive_sessions():
    """Outside IPython spans wait for the batch interval; in IPython a finished run is exported at once."""
    trodo.init(schedule_delay_ms=60_000)
    runtime = runtime_mod.current()
    assert runtime.wake_on_run_end is False  # pytest is no IPython shell
    trodo.wrap_agent("server-run", _checkout)
    time.sleep(0.3)
    assert trodo.stats()["exported"] == 0
    runtime.wake_on_run_end = True  # what the runtime sets up inside IPython / Jupyter
    trodo.wrap_agent("notebook-run", _checkout)
    deadline = time.monotonic() + 5
    while trodo.stats()["exported"] < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trodo.stats()["exported"] == 6
    assert time.monotonic() < deadline - 3.5


def test_show_a_run_whose_root_is_not_stored_yet():
    """A run still running elsewhere shows the spans already stored, marked as running."""
    with trodo.agent("long-job"):
        trodo.tool("step")(lambda: 1)()
        run_id = trodo.current_run().run_id
        assert trodo.flush(10)
        view = trodo.show(run_id, store=os.environ["TRODO_STORE"])
    assert (view.source, view.status, view.name) == ("store", "running", None)
    assert view.notes == ["the run's root span is not in the store yet (still running?)"]
    assert row_tree(parse(view.to_html())) == [_leaf("step", "tool")]
    assert view.to_text().startswith(f"Run {run_id}  -  [RUNNING]")

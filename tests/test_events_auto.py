"""Auto events: uncaught exceptions in the main thread, worker threads and asyncio become one `server_error`."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from otlp_receiver import OtlpReceiver

import trodo_trace as trodo
from trodo_trace._internal.events import auto as autoevents
from trodo_trace._internal.store.local import LocalStore
from trodo_trace.testing import capture

CRASH_SCRIPT = Path(__file__).parent / "crash_scripts" / "crash.py"


@pytest.fixture(autouse=True)
def _no_hooks_left():
    """No test leaves exception hooks installed."""
    yield
    autoevents.uninstall()


class Recorder:
    """A previous hook that remembers how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, *args) -> None:
        self.calls.append(args)


@pytest.fixture
def previous_hooks(monkeypatch):
    """Recording sys/threading hooks in place before init (pytest's own thread hook stays out of it)."""
    sys_hook, thread_hook = Recorder(), Recorder()
    monkeypatch.setattr(sys, "excepthook", sys_hook)
    monkeypatch.setattr(threading, "excepthook", thread_hook)
    return sys_hook, thread_hook


def server_errors() -> list[dict]:
    """Stored server_error events, oldest first (flushes first)."""
    trodo.flush(5.0)
    path = Path(os.environ["TRODO_STORE"])
    if not path.exists():
        return []
    with LocalStore(path) as store:
        return list(reversed(store.list_events(name="server_error", limit=None)))


def summary(row: dict) -> dict:
    """The stable part of a stored server_error."""
    props = row["properties"]
    return {
        "distinct_id": row["distinct_id"],
        "category": row["category"],
        "run_id": row["run_id"],
        "properties": {k: v for k, v in props.items() if k != "stack_trace"},
    }


def raise_and_catch(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def crash_in_thread(target, name: str = "worker-1") -> None:
    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join()


def _fail() -> None:
    raise RuntimeError("worker failed")


# -- installation and restoration -----------------------------------------------------------------
def test_shutdown_restores_previous_hooks(previous_hooks):
    """init(auto_events=True) replaces sys/threading hooks; shutdown() puts the previous ones back."""
    sys_hook, thread_hook = previous_hooks
    trodo.init(auto_events=True)
    assert sys.excepthook is not sys_hook
    assert threading.excepthook is not thread_hook
    assert autoevents.installed()
    trodo.shutdown()
    assert sys.excepthook is sys_hook
    assert threading.excepthook is thread_hook
    assert not autoevents.installed()


def test_without_auto_events_no_hook_is_installed(previous_hooks):
    """init() without auto_events leaves the hooks alone; re-init without it removes ours."""
    sys_hook, thread_hook = previous_hooks
    trodo.init()
    assert (sys.excepthook, threading.excepthook) == (sys_hook, thread_hook)
    trodo.init(auto_events=True)
    trodo.init(auto_events=False)
    assert (sys.excepthook, threading.excepthook) == (sys_hook, thread_hook)


def test_uncaught_exception_in_main_thread_is_one_server_error(previous_hooks):
    """The sys.excepthook wrapper reports one server_error (server_global) and chains to the previous hook."""
    sys_hook, _ = previous_hooks
    trodo.init(auto_events=True)
    exc = raise_and_catch(ValueError("bad config"))
    sys.excepthook(ValueError, exc, exc.__traceback__)
    assert sys_hook.calls == [(ValueError, exc, exc.__traceback__)]
    rows = server_errors()
    assert [summary(row) for row in rows] == [
        {
            "distinct_id": "server_global",
            "category": "error",
            "run_id": None,
            "properties": {
                "error_type": "ValueError",
                "error_message": "bad config",
                "runtime": "python",
                "severity": "critical",
                "source": "sys.excepthook",
            },
        }
    ]
    assert rows[0]["properties"]["stack_trace"].endswith("ValueError: bad config\n")


def test_uncaught_exception_in_thread_is_one_server_error(previous_hooks):
    """A worker thread's uncaught exception gives one server_error; the previous thread hook still runs."""
    _, thread_hook = previous_hooks
    trodo.init(auto_events=True)
    crash_in_thread(_fail)
    assert len(thread_hook.calls) == 1
    assert thread_hook.calls[0][0].thread.name == "worker-1"
    assert [summary(row) for row in server_errors()] == [
        {
            "distinct_id": "server_global",
            "category": "error",
            "run_id": None,
            "properties": {
                "error_type": "RuntimeError",
                "error_message": "worker failed",
                "runtime": "python",
                "severity": "error",
                "source": "threading.excepthook",
                "thread_name": "worker-1",
            },
        }
    ]


def test_crash_inside_run_carries_the_run_id(previous_hooks):
    """An exception escaping a run reaches the hook with the run gone from context; the event still has its id."""
    trodo.init(auto_events=True)

    @trodo.tool
    def step() -> None:
        raise KeyError("missing")

    @trodo.agent("nightly-job")
    def job() -> None:
        step()

    with capture() as traces:
        crash_in_thread(job)
    run = traces.runs()[0]
    tool = traces.by_name("step")
    (row,) = server_errors()
    assert (row["run_id"], row["trace_id"], row["span_id"]) == (run.run_id, tool.trace_id, tool.span_id)


def test_keyboard_interrupt_is_not_reported(previous_hooks):
    """Ctrl-C (KeyboardInterrupt) is not a server error: nothing is sent, the previous hook still runs."""
    sys_hook, _ = previous_hooks
    trodo.init(auto_events=True)
    exc = raise_and_catch(KeyboardInterrupt())
    sys.excepthook(KeyboardInterrupt, exc, exc.__traceback__)
    assert len(sys_hook.calls) == 1
    assert server_errors() == []


def test_installing_twice_reports_once(previous_hooks):
    """init(auto_events=True) twice, plus a direct install, still gives one event per exception."""
    sys_hook, _ = previous_hooks
    trodo.init(auto_events=True)
    trodo.init(auto_events=True)
    autoevents.install()
    exc = raise_and_catch(ValueError("once"))
    sys.excepthook(ValueError, exc, exc.__traceback__)
    crash_in_thread(_fail)
    assert len(sys_hook.calls) == 1
    assert [row["properties"]["source"] for row in server_errors()] == [
        "sys.excepthook",
        "threading.excepthook",
    ]


def test_hook_wrapped_by_another_library_is_switched_off_not_doubled(previous_hooks):
    """If another library wrapped our hook, shutdown switches ours off; a new install still reports once."""
    sys_hook, _ = previous_hooks
    trodo.init(auto_events=True)
    ours = sys.excepthook

    def other_library_hook(*args):
        ours(*args)

    sys.excepthook = other_library_hook
    trodo.shutdown()
    assert sys.excepthook is other_library_hook  # cannot be unwrapped, so it stays, passing through
    exc = raise_and_catch(ValueError("after shutdown"))
    sys.excepthook(ValueError, exc, exc.__traceback__)
    trodo.init(auto_events=True)
    exc = raise_and_catch(ValueError("reinstalled"))
    sys.excepthook(ValueError, exc, exc.__traceback__)
    assert len(sys_hook.calls) == 2
    assert [row["properties"]["error_message"] for row in server_errors()] == ["reinstalled"]


def test_captured_error_is_not_reported_again_when_uncaught(previous_hooks):
    """An exception already sent with capture_error is not sent again by the uncaught-exception hook."""
    trodo.init(auto_events=True)
    exc = raise_and_catch(ValueError("seen"))
    trodo.for_user("u-1").capture_error(exc)
    sys.excepthook(ValueError, exc, exc.__traceback__)
    assert [row["distinct_id"] for row in server_errors()] == ["u-1"]


def test_secrets_in_error_message_are_redacted(previous_hooks):
    """An uncaught exception's message and stack trace go through secret redaction."""
    trodo.init(auto_events=True)
    exc = raise_and_catch(RuntimeError("auth failed for key sk-proj-abcdefghijklmnopqrstuvwxyz123456"))
    sys.excepthook(RuntimeError, exc, exc.__traceback__)
    (row,) = server_errors()
    assert row["properties"]["error_message"] == "auth failed for key [REDACTED]"
    assert "sk-proj-" not in row["properties"]["stack_trace"]


# -- asyncio --------------------------------------------------------------------------------------
async def _fail_async() -> None:
    raise LookupError("task failed")


def _collect_earlier_garbage() -> None:
    """Collect what earlier tests in this worker left for the garbage collector first (an SDK's
    unclosed event loop, say), so that the collection below sees only this test's task. What it
    finds is printed, not attributed to this test."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: print(
        f"garbage left by an earlier test: {unraisable.exc_value!r}", file=sys.stderr
    )
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous


async def _drop_failed_task() -> None:
    _collect_earlier_garbage()
    task = asyncio.get_running_loop().create_task(_fail_async())
    await asyncio.sleep(0.01)
    del task
    gc.collect()
    await asyncio.sleep(0)


async def test_running_loop_handler_reports_unretrieved_task_exception(previous_hooks):
    """init(auto_events=True) inside a loop wraps its exception handler: one event, previous handler chained."""
    loop = asyncio.get_running_loop()
    handler = Recorder()
    loop.set_exception_handler(handler)
    trodo.init(auto_events=True)
    assert loop.get_exception_handler() is not handler
    await _drop_failed_task()
    assert len(handler.calls) == 1
    assert handler.calls[0][1]["message"] == "Task exception was never retrieved"
    assert [summary(row) for row in server_errors()] == [
        {
            "distinct_id": "server_global",
            "category": "error",
            "run_id": None,
            "properties": {
                "error_type": "LookupError",
                "error_message": "task failed",
                "runtime": "python",
                "severity": "error",
                "source": "asyncio",
                "asyncio_message": "Task exception was never retrieved",
            },
        }
    ]
    trodo.shutdown()
    assert loop.get_exception_handler() is handler


def test_install_asyncio_handler_on_a_loop_created_later(previous_hooks, caplog):
    """install_asyncio_handler() covers a loop created after init; installing twice reports once."""
    trodo.init(auto_events=True)

    async def main() -> None:
        trodo.install_asyncio_handler()
        trodo.install_asyncio_handler()
        await _drop_failed_task()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
        assert [row["properties"]["source"] for row in server_errors()] == ["asyncio"]
        assert "Task exception was never retrieved" in caplog.text  # the default handler still logged it
        trodo.shutdown()
        assert loop.get_exception_handler() is None
    finally:
        loop.close()


def test_install_asyncio_handler_rejects_bad_calls():
    """install_asyncio_handler() needs a running loop or a loop argument."""
    with pytest.raises(RuntimeError, match="running event loop"):
        trodo.install_asyncio_handler()
    with pytest.raises(TypeError, match="loop"):
        trodo.install_asyncio_handler("not a loop")


def test_loop_handler_ignores_context_without_exception(previous_hooks):
    """A loop message without an exception (e.g. a slow callback warning) sends nothing."""
    loop = asyncio.new_event_loop()
    try:
        trodo.install_asyncio_handler(loop)
        handler = loop.get_exception_handler()
        seen = []
        loop.default_exception_handler = seen.append  # type: ignore[method-assign]
        handler(loop, {"message": "something odd"})
        assert seen == [{"message": "something odd"}]
        assert server_errors() == []
    finally:
        loop.close()


# -- real processes that crash ------------------------------------------------------------------------
EXPECTED = {
    "main": (1, "RuntimeError: boom in main", "sys.excepthook", "critical"),
    "thread": (0, "Exception in thread worker-1", "threading.excepthook", "error"),
    "asyncio": (0, "Task exception was never retrieved", "asyncio", "error"),
}


def run_crash(mode: str, tmp_path: Path, *args: str, endpoint: str | None = None) -> tuple[str, str, Path]:
    """Run the crash script; return the run id it printed, its stderr and its store path."""
    store = tmp_path / "crash.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRODO_", "OTEL_"))}
    env["TRODO_STORE"] = str(store)
    if endpoint is not None:
        env["TRODO_ENDPOINT"] = endpoint
    result = subprocess.run(
        [sys.executable, str(CRASH_SCRIPT), mode, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    code, marker, _, _ = EXPECTED[mode]
    assert result.returncode == code, result.stderr
    assert marker in result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert f"RuntimeError: boom in {mode}" in result.stderr
    assert "Error in sys.excepthook" not in result.stderr
    assert "trodo_trace" not in result.stderr.replace("trodo_trace/_internal/core/decorators.py", "")
    return result.stdout.strip(), result.stderr, store


def expected_event(mode: str, run_id: str) -> dict:
    _, _, source, severity = EXPECTED[mode]
    properties = {
        "error_type": "RuntimeError",
        "error_message": f"boom in {mode}",
        "runtime": "python",
        "severity": severity,
        "source": source,
    }
    if mode == "thread":
        properties["thread_name"] = "worker-1"
    if mode == "asyncio":
        properties["asyncio_message"] = "Task exception was never retrieved"
    return {"distinct_id": "server_global", "category": "error", "run_id": run_id, "properties": properties}


@pytest.mark.parametrize("mode", ["main", "thread", "asyncio"])
def test_crashing_process_stores_one_server_error(mode, tmp_path):
    """A process crashing in the main thread, a worker thread or an asyncio task stores exactly one
    server_error with its run id, and exits with the usual traceback and exit code."""
    run_id, _, store = run_crash(mode, tmp_path)
    with LocalStore(store) as local:
        rows = local.list_events(limit=None)
    assert [summary(row) for row in rows] == [expected_event(mode, run_id)]
    assert 'in crash\n    raise RuntimeError(f"boom in {where}")' in rows[0]["properties"]["stack_trace"]


def receiver_event(record: dict) -> dict:
    attributes = record["attributes"]
    return {
        "distinct_id": attributes["trodo.distinct_id"],
        "category": attributes["trodo.event.category"],
        "run_id": attributes.get("trodo.run.id"),
        "properties": {k: v for k, v in record["body"].items() if k != "stack_trace"},
    }


@pytest.mark.serial  # the hook waits a bounded 2 s for delivery
@pytest.mark.parametrize("mode", ["main", "thread", "asyncio"])
@pytest.mark.parametrize("hard_exit", [False, True], ids=["exit", "hard-exit"])
def test_crashing_process_sends_one_server_error_over_otlp(mode, hard_exit, tmp_path):
    """A crashing process delivers exactly one server_error log record to the OTLP receiver before it
    dies — also when the SDK's exit flush never runs (the hook's own bounded wait delivered it)."""
    with OtlpReceiver("http") as receiver:
        run_id, _, _ = run_crash(
            mode, tmp_path, *(["--hard-exit"] if hard_exit else []), endpoint=receiver.url
        )
        records = [r for r in receiver.logs() if r["event_name"] == "server_error"]
    assert [receiver_event(r) for r in records] == [expected_event(mode, run_id)]
    assert records[0]["attributes"]["event.name"] == "server_error"


def test_thread_started_inside_run_reports_the_span_it_escaped_from(previous_hooks):
    """A traced worker thread started inside a run reports the worker's own span and the run."""
    trodo.init(auto_events=True)

    @trodo.tool
    def worker() -> None:
        raise ValueError("worker span")

    @trodo.agent("dispatcher")
    def dispatch() -> None:
        crash_in_thread(worker, name="traced")

    with capture() as traces:
        dispatch()
    run = traces.runs()[0]
    (row,) = server_errors()
    assert (row["run_id"], row["trace_id"], row["span_id"]) == (
        run.run_id,
        run.trace_id,
        traces.by_name("worker").span_id,
    )

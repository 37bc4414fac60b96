"""Exit paths, fork and multiprocessing in real subprocesses: every span is exported once."""

from __future__ import annotations

from collections import Counter

import pytest
from otlp_receiver import OtlpReceiver, run_script

from trodo_trace.testing import Capture

# A long interval: what arrives was sent by the exit path, not by the periodic export.
ENV = {"OTEL_BSP_SCHEDULE_DELAY": "5000"}


@pytest.fixture
def receiver():
    with OtlpReceiver("http") as server:
        yield server


def _run(code, tmp_path, receiver, **env):
    return run_script(code, tmp_path, env={"TRODO_ENDPOINT": receiver.url, **ENV, **env})


def _names(receiver):
    return Counter(span.name for span in receiver.spans())


def _bot_tree(status="OK"):
    return [
        {
            "name": "exit-bot",
            "kind": "run",
            "status": status,
            "children": [{"name": "step", "kind": "tool", "status": "OK", "children": []}],
        }
    ]


BOT = """
import sys, trodo_trace as trodo

@trodo.tool
def step():
    return 1

@trodo.agent("exit-bot")
def bot(fail=False):
    step()
    if fail:
        raise RuntimeError("boom")
"""


def test_script_that_never_calls_shutdown_delivers_at_exit(tmp_path, receiver):
    """A script ends normally without flush() or shutdown(): its spans are exported by the exit hook."""
    result = _run(BOT + "bot()\n", tmp_path, receiver)
    assert result.returncode == 0, result.stderr
    assert Capture().tree(spans=receiver.spans()) == _bot_tree()


def test_sys_exit_delivers(tmp_path, receiver):
    """sys.exit(3) after a run: exit code kept, spans delivered."""
    result = _run(BOT + "bot()\nsys.exit(3)\n", tmp_path, receiver)
    assert result.returncode == 3
    assert Capture().tree(spans=receiver.spans()) == _bot_tree()


def test_uncaught_exception_delivers_the_failed_run(tmp_path, receiver):
    """An uncaught exception ends the script: the traceback is printed and the failed run is exported."""
    result = _run(BOT + "bot(fail=True)\n", tmp_path, receiver)
    assert result.returncode == 1
    assert "RuntimeError: boom" in result.stderr
    assert Capture().tree(spans=receiver.spans()) == _bot_tree("ERROR")


def test_spans_of_threads_still_running_after_main_ends_are_delivered(tmp_path, receiver):
    """Non-daemon threads keep tracing after the main thread ends: their spans are exported too."""
    code = """
    import threading, time, trodo_trace as trodo

    def worker(k):
        for i in range(20):
            with trodo.agent(f"thread-{k}"):
                time.sleep(0.01)

    for k in range(3):
        threading.Thread(target=worker, args=(k,)).start()
    """
    result = _run(code, tmp_path, receiver)
    assert result.returncode == 0, result.stderr
    assert _names(receiver) == {"thread-0": 20, "thread-1": 20, "thread-2": 20}


def test_os_fork_child_exports_its_own_spans_and_parent_spans_once(tmp_path, receiver):
    """os.fork: the child exports its spans, the parent's queued pre-fork spans are exported once (by the parent)."""
    code = """
    import os, sys, trodo_trace as trodo

    @trodo.tool
    def step(name):
        return name

    with trodo.agent("before-fork"):
        step("a")

    with trodo.agent("across"):
        pid = os.fork()
        if pid == 0:
            step("in-child")
            trodo.flush(5.0)
            os._exit(0)
        os.waitpid(pid, 0)

    pid = os.fork()
    if pid == 0:
        with trodo.agent("child"):
            step("c")
        sys.exit(0)
    with trodo.agent("parent"):
        step("p")
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
    result = _run(code, tmp_path, receiver)
    assert result.returncode == 0, result.stderr
    spans = receiver.spans()
    assert len(spans) == len({s.span_id for s in spans}) == 8
    trees = {node["name"]: node for node in Capture().tree(spans=spans)}
    assert trees == {
        "before-fork": _run_node("before-fork"),
        "across": _run_node("across"),
        "child": _run_node("child"),
        "parent": _run_node("parent"),
    }


def _run_node(name):
    return {
        "name": name,
        "kind": "run",
        "status": "OK",
        "children": [{"name": "step", "kind": "tool", "status": "OK", "children": []}],
    }


def test_multiprocessing_fork_children_export_their_spans(tmp_path, receiver):
    """multiprocessing (fork): a Process and Pool workers (closed and joined) export their spans once."""
    code = """
    import multiprocessing as mp, trodo_trace as trodo

    @trodo.tool
    def step(i):
        return i

    def work(i):
        with trodo.agent(f"mp-{i}"):
            step(i)
        return i

    if __name__ == "__main__":
        ctx = mp.get_context("fork")
        with trodo.agent("parent-run"):
            step(-1)
        process = ctx.Process(target=work, args=(0,))
        process.start()
        process.join()
        pool = ctx.Pool(2)
        assert pool.map(work, [1, 2, 3]) == [1, 2, 3]
        pool.close()
        pool.join()
    """
    result = _run(code, tmp_path, receiver)
    assert result.returncode == 0, result.stderr
    assert _names(receiver) == {"parent-run": 1, "mp-0": 1, "mp-1": 1, "mp-2": 1, "mp-3": 1, "step": 5}
    trees = Capture().tree(spans=receiver.spans())
    assert sorted(node["name"] for node in trees) == ["mp-0", "mp-1", "mp-2", "mp-3", "parent-run"]
    assert all(len(node["children"]) == 1 for node in trees)

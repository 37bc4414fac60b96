"""Thread propagation: work handed to threads inside a run nests under the span that handed it over."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from apps.helpers import canonical

import trodo_trace as trodo
from trodo_trace._internal import propagation
from trodo_trace.testing import capture

ORIGINAL_START = getattr(threading.Thread.start, "__wrapped__", threading.Thread.start)
ORIGINAL_SUBMIT = getattr(ThreadPoolExecutor.submit, "__wrapped__", ThreadPoolExecutor.submit)


@pytest.fixture(autouse=True)
def _as_after_import():
    """Each test starts with propagation as ``import trodo_trace`` leaves it (on by default)."""
    propagation.install_thread_propagation()
    yield
    propagation.install_thread_propagation()


@trodo.tool
def score(item: str) -> int:
    return len(item)


def tool_node(name: str, value: str, children: list | None = None) -> dict:
    return {
        "name": name,
        "kind": "tool",
        "status": "OK",
        "attributes": {"input.value": value},
        "children": children or [],
    }


def test_thread_pool_map_nests_tools_under_the_agent():
    """ThreadPoolExecutor.map of decorated tools inside an agent gives one tree, one trace, one run."""

    @trodo.agent("ranker")
    def ranker(items: list[str]) -> list[int]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(score, items))

    with capture() as traces:
        assert ranker(["a", "bb", "ccc", "dddd"]) == [1, 2, 3, 4]
    assert canonical(traces.tree(keys=("input.value",))) == canonical(
        [
            {
                "name": "ranker",
                "kind": "run",
                "status": "OK",
                "attributes": {"input.value": '{"items":["a","bb","ccc","dddd"]}'},
                "children": [tool_node("score", f'{{"item":"{s}"}}') for s in ("a", "bb", "ccc", "dddd")],
            }
        ]
    )
    assert len({span.trace_id for span in traces.spans}) == 1
    assert len({span.run_id for span in traces.spans}) == 1
    assert traces.runs()[0].attributes["trodo.run.span_count"] == 5
    assert traces.runs()[0].attributes["trodo.run.tool_count"] == 4


def test_thread_and_subclass_and_timer_nest_under_the_starting_span():
    """threading.Thread (target or overridden run) and Timer started in a span nest under that span."""

    class Worker(threading.Thread):
        def run(self) -> None:
            score("subclass")

    @trodo.chain
    def fan_out() -> None:
        threads = [
            threading.Thread(target=score, args=("target",)),
            Worker(),
            threading.Timer(0.0, score, args=("timer",)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    @trodo.agent("dispatcher")
    def dispatcher() -> None:
        fan_out()

    with capture() as traces:
        dispatcher()
    tree = traces.tree(keys=("input.value",))
    assert canonical(tree) == canonical(
        [
            {
                "name": "dispatcher",
                "kind": "run",
                "status": "OK",
                "attributes": {"input.value": "{}"},
                "children": [
                    {
                        "name": "fan_out",
                        "kind": "chain",
                        "status": "OK",
                        "attributes": {"input.value": "{}"},
                        "children": [
                            tool_node("score", '{"item":"target"}'),
                            tool_node("score", '{"item":"subclass"}'),
                            tool_node("score", '{"item":"timer"}'),
                        ],
                    }
                ],
            }
        ]
    )


async def test_asyncio_to_thread_and_run_in_executor_nest():
    """asyncio.to_thread and loop.run_in_executor (default and explicit pool) nest under the caller."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)

    @trodo.agent("async-agent")
    async def agent() -> list[int]:
        return [
            await asyncio.to_thread(score, "to_thread"),
            await loop.run_in_executor(None, score, "default_executor"),
            await loop.run_in_executor(pool, score, "own_pool"),
        ]

    try:
        with capture() as traces:
            assert await agent() == [9, 16, 8]
    finally:
        pool.shutdown()
    assert traces.tree(keys=("input.value",)) == [
        {
            "name": "async-agent",
            "kind": "run",
            "status": "OK",
            "attributes": {"input.value": "{}"},
            "children": [
                tool_node("score", '{"item":"to_thread"}'),
                tool_node("score", '{"item":"default_executor"}'),
                tool_node("score", '{"item":"own_pool"}'),
            ],
        }
    ]


def test_pool_worker_threads_do_not_keep_the_submitting_context():
    """A pool thread first started by work inside a run does not carry that run into later work."""
    pool = ThreadPoolExecutor(max_workers=1)

    @trodo.agent("first")
    def first() -> None:
        pool.submit(score, "inside").result()

    try:
        with capture() as traces:
            first()
            pool.submit(score, "outside").result()
            started_inside = threading.Thread(target=score, args=("sdk",), name="trodo-test-worker")
            first_thread = threading.Thread(target=lambda: None)
            with trodo.chain("launch"):
                started_inside.start()
                first_thread.start()
            started_inside.join()
            first_thread.join()
    finally:
        pool.shutdown()
    assert traces.tree(keys=("input.value",)) == [
        {
            "name": "first",
            "kind": "run",
            "status": "OK",
            "attributes": {"input.value": "{}"},
            "children": [tool_node("score", '{"item":"inside"}')],
        },
        tool_node("score", '{"item":"outside"}'),
        {"name": "launch", "kind": "chain", "status": "OK", "attributes": {}, "children": []},
        tool_node("score", '{"item":"sdk"}'),
    ]
    assert "run" not in first_thread.__dict__  # the per-thread binding is removed when run() returns


def _pool_and_thread_tree() -> list[dict]:
    @trodo.agent("agent")
    def agent() -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(score, "pool").result()
        thread = threading.Thread(target=score, args=("thread",), name="thread-in-agent")
        thread.start()
        thread.join()

    with capture() as traces:
        agent()
    return traces.tree()


NESTED = [
    {
        "name": "agent",
        "kind": "run",
        "status": "OK",
        "children": [
            {"name": "score", "kind": "tool", "status": "OK", "children": []},
            {"name": "score", "kind": "tool", "status": "OK", "children": []},
        ],
    }
]
SEPARATE = [
    {"name": "agent", "kind": "run", "status": "OK", "children": []},
    {"name": "score", "kind": "tool", "status": "OK", "children": []},
    {"name": "score", "kind": "tool", "status": "OK", "children": []},
]


def test_propagate_threads_false_really_turns_it_off_and_init_turns_it_back_on():
    """init(propagate_threads=False) restores threading's own methods (threads start their own runs);
    init() turns propagation back on."""
    trodo.init(propagate_threads=False)
    assert threading.Thread.start is ORIGINAL_START
    assert not propagation.thread_propagation_enabled()
    assert _pool_and_thread_tree() == SEPARATE
    trodo.init()
    assert threading.Thread.start is not ORIGINAL_START
    assert _pool_and_thread_tree() == NESTED


async def test_to_thread_keeps_context_even_when_propagation_is_off():
    """asyncio.to_thread copies contextvars itself, so it nests even with propagate_threads=False."""
    trodo.init(propagate_threads=False)

    @trodo.agent("agent")
    async def agent() -> int:
        return await asyncio.to_thread(score, "x")

    with capture() as traces:
        await agent()
    assert traces.tree() == [
        {
            "name": "agent",
            "kind": "run",
            "status": "OK",
            "children": [{"name": "score", "kind": "tool", "status": "OK", "children": []}],
        }
    ]


def test_shutdown_pauses_propagation_until_the_next_runtime():
    """After trodo.shutdown() threads no longer inherit context; the next runtime (built lazily by a
    span, or by init()) propagates again without reinstalling anything."""
    from trodo_trace._internal import runtime as runtime_mod

    trodo.init()
    trodo.shutdown()
    assert not propagation.thread_propagation_enabled()
    assert _pool_and_thread_tree() == SEPARATE
    runtime_mod.reset_for_tests()  # what a fresh process would have: no runtime yet, built by the next span
    assert _pool_and_thread_tree() == NESTED
    trodo.shutdown()
    trodo.init()
    assert propagation.thread_propagation_enabled()
    assert _pool_and_thread_tree() == NESTED


def test_uninstall_leaves_a_wrapper_added_on_top_and_switches_ours_off(monkeypatch):
    """When another library wrapped Thread.start after us, turning propagation off keeps its wrapper
    (ours stays inside it, inactive) instead of silently removing it."""
    ours = threading.Thread.start
    calls = []

    @functools.wraps(ours)
    def theirs(self, *args, **kwargs):
        calls.append(self.name)
        return ours(self, *args, **kwargs)

    monkeypatch.setattr(threading.Thread, "start", theirs)
    trodo.init(propagate_threads=False)
    assert threading.Thread.start is theirs
    assert _pool_and_thread_tree() == SEPARATE
    assert "thread-in-agent" in calls
    trodo.init()
    assert threading.Thread.start is theirs
    assert _pool_and_thread_tree() == NESTED


_FRESH = textwrap.dedent(
    """
    import json, threading
    from concurrent.futures import ThreadPoolExecutor
    import trodo_trace as trodo
    from trodo_trace.testing import capture

    @trodo.tool
    def score(item):
        return len(item)

    @trodo.agent("agent")
    def agent():
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(score, "pool").result()
        thread = threading.Thread(target=score, args=("thread",))
        thread.start()
        thread.join()

    with capture() as traces:
        agent()
    print(json.dumps(traces.tree()))
    """
)


@pytest.mark.parametrize(("env_value", "expected"), [(None, NESTED), ("false", SEPARATE)])
def test_fresh_interpreter_propagates_by_default_without_init(tmp_path, env_value, expected):
    """A plain ``import trodo_trace`` (no init) propagates into threads; TRODO_PROPAGATE_THREADS=false does not."""
    env = {k: v for k, v in os.environ.items() if k != "TRODO_PROPAGATE_THREADS"}
    env["TRODO_STORE"] = str(tmp_path / "fresh.db")
    if env_value is not None:
        env["TRODO_PROPAGATE_THREADS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", _FRESH], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == expected

"""Processes and queues: ``run_context()`` tokens and ``join_run`` put remote work in the caller's run."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor

import pytest
from apps import workers
from apps.helpers import canonical, store_tree, stored_run, stored_spans

import trodo_trace as trodo
from trodo_trace import RunContext
from trodo_trace.testing import capture

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@trodo.tool
def lookup(order_id: str) -> str:
    return f"order {order_id}"


def test_run_context_is_a_small_picklable_token():
    """run_context() names the run, the current span and the run's user; it pickles and turns into headers."""

    @trodo.agent("support", distinct_id="user-7", conversation_id="conv-3")
    def support() -> tuple[RunContext, dict, str, str]:
        with trodo.chain("plan") as span:
            return trodo.run_context(), trodo.propagation_headers(), span.span_id_hex, span.trace_id_hex

    token, headers, span_id, trace_id = support()
    run_id = trodo.last_run().run_id
    assert token == RunContext(run_id, trace_id, span_id, 1, None, "user-7", "conv-3")
    assert pickle.loads(pickle.dumps(token)) == token
    assert len(pickle.dumps(token)) < 400
    assert (
        headers == token.headers() == {"X-Trodo-Run-Id": run_id, "traceparent": f"00-{trace_id}-{span_id}-01"}
    )
    assert RunContext.from_headers({"x-trodo-run-id": run_id, "TraceParent": headers["traceparent"]}) == (
        RunContext(run_id, trace_id, span_id, 1)
    )
    assert trodo.run_context() is None
    assert trodo.propagation_headers() == {}


def test_join_run_by_token_nests_under_the_callers_span():
    """Spans in join_run(token, fn) get the caller's run id and parent to the span that made the token."""

    @trodo.agent("dispatcher")
    def dispatcher() -> RunContext:
        with trodo.chain("fan_out"):
            return trodo.run_context()

    with capture() as traces:
        token = dispatcher()
        assert trodo.join_run(token, lookup, "A1") == "order A1"
        with trodo.join_run(token) as joined:
            lookup("B2")
    run_id = token.run_id
    assert joined.run_id == run_id
    assert traces.tree(keys=("trodo.run.id", "trodo.run.joined")) == [
        {
            "name": "dispatcher",
            "kind": "run",
            "status": "OK",
            "attributes": {"trodo.run.id": run_id},
            "children": [
                {
                    "name": "fan_out",
                    "kind": "chain",
                    "status": "OK",
                    "attributes": {"trodo.run.id": run_id},
                    "children": [
                        {
                            "name": "lookup",
                            "kind": "tool",
                            "status": "OK",
                            "attributes": {"trodo.run.id": run_id, "trodo.run.joined": True},
                            "children": [],
                        },
                        {
                            "name": "lookup",
                            "kind": "tool",
                            "status": "OK",
                            "attributes": {"trodo.run.id": run_id, "trodo.run.joined": True},
                            "children": [],
                        },
                    ],
                }
            ],
        }
    ]
    assert {span.trace_id for span in traces.spans} == {token.trace_id}


async def test_join_run_with_an_async_function_and_async_with():
    """join_run(token, async_fn) returns an awaitable; ``async with join_run(token)`` works too."""
    token = RunContext("run-async-1", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")

    @trodo.tool
    async def fetch(n: int) -> int:
        return n

    with capture() as traces:
        assert await trodo.join_run(token, fetch, 1) == 1
        async with trodo.join_run(token):
            await fetch(2)
    assert [(s.name, s.run_id, s.trace_id, s.parent_id) for s in traces.spans] == [
        ("fetch", "run-async-1", token.trace_id, token.span_id),
        ("fetch", "run-async-1", token.trace_id, token.span_id),
    ]


def test_join_run_by_bare_run_id_joins_the_run_in_a_new_trace():
    """A bare run id gives spans that run id but no parent: each top-level span starts a new trace."""
    with capture() as traces:
        with trodo.join_run("a1b2c3d4e5f60718"):
            with trodo.chain("step"):
                lookup("1")
            lookup("2")
    assert traces.tree(keys=("trodo.run.id",)) == [
        {
            "name": "step",
            "kind": "chain",
            "status": "OK",
            "attributes": {"trodo.run.id": "a1b2c3d4e5f60718"},
            "children": [
                {
                    "name": "lookup",
                    "kind": "tool",
                    "status": "OK",
                    "attributes": {"trodo.run.id": "a1b2c3d4e5f60718"},
                    "children": [],
                }
            ],
        },
        {
            "name": "lookup",
            "kind": "tool",
            "status": "OK",
            "attributes": {"trodo.run.id": "a1b2c3d4e5f60718"},
            "children": [],
        },
    ]
    step, _, second = sorted(traces.spans, key=lambda s: s.start_ns)
    assert step.trace_id != second.trace_id
    assert not step.is_run_root  # no run was started: the run's root lives elsewhere


def test_join_run_from_queue_message_headers():
    """A queue consumer joins with the message's headers; malformed headers join nothing (a run of its own)."""
    message = {"body": "A1", "headers": {"X-Trodo-Run-Id": "queue-run-1", "traceparent": TRACEPARENT}}
    bad = {"body": "B2", "headers": {"X-Trodo-Run-Id": "bad id\n", "traceparent": "00-zz-yy-01"}}
    with capture() as traces:
        for item in (message, bad):
            trodo.join_run(item["headers"], lookup, item["body"])
    joined, alone = traces.spans
    assert (joined.run_id, joined.trace_id, joined.parent_id) == (
        "queue-run-1",
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert alone.parent_id is None and alone.is_run_root and alone.run_id != "queue-run-1"


def test_sub_run_inside_a_joined_run_inherits_user_and_parent_run():
    """wrap_agent inside a joined run starts a sub-run of it, with the token's user and conversation."""
    token = RunContext("parent-run-9", distinct_id="user-1", conversation_id="conv-1")
    with capture() as traces:
        _result, sub_run_id = trodo.join_run(token, trodo.wrap_agent, "researcher", lambda run: "ok")
    root = traces.run(sub_run_id)
    assert {
        k: root.attributes.get(k) for k in ("trodo.parent_run_id", "trodo.distinct_id", "session.id")
    } == {
        "trodo.parent_run_id": "parent-run-9",
        "trodo.distinct_id": "user-1",
        "session.id": "conv-1",
    }
    assert "trodo.run.joined" not in root.attributes


def test_join_run_none_and_bad_arguments():
    """join_run(None, fn) just calls fn; bad tokens and stray arguments raise naming the problem."""
    with capture() as traces:
        assert trodo.join_run(None, lookup, "7") == "order 7"
    assert traces.tree() == [{"name": "lookup", "kind": "tool", "status": "OK", "children": []}]
    with pytest.raises(ValueError, match="token_or_run_id"):
        trodo.join_run("")
    with pytest.raises(ValueError, match="token_or_run_id"):
        trodo.join_run("has spaces")
    with pytest.raises(TypeError, match="token_or_run_id"):
        trodo.join_run(42)
    with pytest.raises(TypeError, match="no fn"):
        trodo.join_run("run-1", None, 1)
    with pytest.raises(TypeError, match="fn must be callable"):
        trodo.join_run("run-1", "not callable")


def test_malformed_headers_are_logged_at_debug(caplog):
    """RunContext.from_headers drops a malformed run id or traceparent with a debug log, never raising."""
    with caplog.at_level(logging.DEBUG, logger="trodo_trace"):
        assert RunContext.from_headers({"X-Trodo-Run-Id": "ok-run", "traceparent": "garbage"}) == RunContext(
            "ok-run"
        )
        assert RunContext.from_headers({"X-Trodo-Run-Id": "x" * 500}) is None
        assert RunContext.from_headers({}) is None
    messages = [record.getMessage() for record in caplog.records]
    assert any("malformed traceparent" in m for m in messages)
    assert any("malformed X-Trodo-Run-Id" in m for m in messages)


def test_process_pool_worker_joins_the_callers_run(tmp_path, monkeypatch):
    """Spans of a ProcessPoolExecutor worker (spawned, same store file) land in the caller's run under
    the caller's span, and the stored run's rollups count them."""
    store = tmp_path / "shared.db"
    monkeypatch.setenv("TRODO_STORE", str(store))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "worker")
    trodo.init(service_name="planner")
    context = multiprocessing.get_context("spawn")

    @trodo.agent("planner")
    def planner(items: list[str]) -> list[int]:
        with trodo.chain("fan_out"):
            token = trodo.run_context()
            with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
                pids = set(pool.map(workers.worker_pid, range(2)))
                return list(pool.map(functools.partial(trodo.join_run, token, workers.score), items)), pids

    scores, pids = planner(["ab", "cde"])
    assert scores == [4, 6]
    assert pids and multiprocessing.current_process().pid not in pids
    run_id = trodo.last_run().run_id
    trodo.flush()
    spans = stored_spans(store, run_id, 6)
    tool = {"name": "score", "kind": "tool", "status": "ok", "service": "worker"}
    chain = {"name": "rank", "kind": "chain", "status": "ok", "service": "worker", "children": []}
    assert canonical(store_tree(spans, keys=("input.value",))) == canonical(
        [
            {
                "name": "planner",
                "kind": "run",
                "status": "ok",
                "service": "planner",
                "attributes": {"input.value": '{"items":["ab","cde"]}'},
                "children": [
                    {
                        "name": "fan_out",
                        "kind": "chain",
                        "status": "ok",
                        "service": "planner",
                        "attributes": {},
                        "children": [
                            {
                                **tool,
                                "attributes": {"input.value": '{"item":"ab"}'},
                                "children": [{**chain, "attributes": {"input.value": '{"item":"ab"}'}}],
                            },
                            {
                                **tool,
                                "attributes": {"input.value": '{"item":"cde"}'},
                                "children": [{**chain, "attributes": {"input.value": '{"item":"cde"}'}}],
                            },
                        ],
                    }
                ],
            }
        ]
    )
    assert len({span["trace_id"] for span in spans}) == 1
    run = stored_run(store, run_id)
    assert (run["span_count"], run["tool_count"], run["error_count"]) == (6, 2, 0)


def test_forked_worker_delivers_its_spans_before_exiting(tmp_path, monkeypatch):
    """A forked multiprocessing worker ends with os._exit (no atexit): join_run flushes its spans first."""
    store = tmp_path / "forked.db"
    monkeypatch.setenv("TRODO_STORE", str(store))
    monkeypatch.setenv("OTEL_SERVICE_NAME", "forker")
    context = multiprocessing.get_context("fork")

    @trodo.agent("parent")
    def parent() -> int | None:
        process = context.Process(target=workers.score_in_run, args=(trodo.run_context(), "xyz"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() of a threaded process
            process.start()
        process.join(60)
        return process.exitcode

    assert parent() == 0
    run_id = trodo.last_run().run_id
    trodo.flush()
    spans = stored_spans(store, run_id, 3)
    assert store_tree(spans) == [
        {
            "name": "parent",
            "kind": "run",
            "status": "ok",
            "service": "forker",
            "children": [
                {
                    "name": "score",
                    "kind": "tool",
                    "status": "ok",
                    "service": "forker",
                    "children": [
                        {"name": "rank", "kind": "chain", "status": "ok", "service": "forker", "children": []}
                    ],
                }
            ],
        }
    ]
